//! Shared helpers for Weir's cross-crate integration tests (the test files are in `tests/tests/`).
//!
//! [`Net`] is a deterministic in-memory network with virtual time: endpoints exchange
//! datagrams over links with latency, a serialisation rate and seeded impairments (loss,
//! reordering, duplication, corruption, ECN marks). It can carry real payload bytes or only
//! headers with length-only payloads (the simulator's mode). Nothing here sleeps or reads a clock.
//!
//! For adversarial and multipath tests the network can also
//!
//! * use other impairments per direction ([`Net::set_link`]) and lose datagrams of some entropy
//!   values more often than others ([`Link::lossy_entropy`]);
//! * record every datagram an endpoint sends ([`Net::capture`]), exactly as the engine wrote it
//!   (no integrity trailer);
//! * pass every datagram through a tap that may rewrite, delay or drop it before the link's
//!   impairments ([`Net::tap`], [`Fate`]);
//! * deliver forged, replayed or mangled datagrams that bypass the integrity check
//!   ([`Net::inject`], [`Net::deliver`]);
//! * count data packets per sender and entropy value ([`Net::data_by_entropy`]);
//! * put a last-hop bottleneck in front of an endpoint ([`Net::set_ingress`]): a drop-tail
//!   FIFO of a given rate and buffer that every datagram to it crosses after its link, with
//!   its occupancy and drops recorded ([`Net::ingress_stats`]); this models the receiver's
//!   downlink, where incast congests;
//! * surround a region with guard bytes to prove nothing was written past it
//!   ([`Net::guarded_region`], [`Net::guards_intact`]), and read regions back safely
//!   ([`Net::bytes`]).
//!
//! Random draws happen in a fixed order per datagram (loss, per-entropy loss, duplication, per
//! copy: corruption, reordering, ECN; an impairment whose probability is zero draws nothing).
//! Only the corrupted byte's position depends on the datagram's length, so without corruption a
//! run with real payloads and the same run with virtual payloads draw the same numbers.
#![allow(clippy::unwrap_used)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ptr::NonNull;

use weir_base::{Duration, Instant, Rate, Rng};
use weir_transport::{
    Completion, Config, ConnId, Ecn, Endpoint, Event, Payload, RegionId, RxMeta, WorkRequest,
};
use weir_wire::{MAX_HEADER_LEN, Opcode};

/// The byte [`Net::guarded_region`] puts around a region.
pub const GUARD: u8 = 0xA5;

/// Impairments and shape of every link in a [`Net`].
#[derive(Clone, Copy, Debug)]
pub struct Link {
    /// One-way propagation delay.
    pub latency: Duration,
    /// Serialisation rate of each sender's link.
    pub rate: Rate,
    /// Drop probability per datagram.
    pub loss: f64,
    /// Probability a datagram is delayed by an extra `reorder_delay` (so later ones overtake).
    pub reorder: f64,
    /// Extra delay of reordered datagrams.
    pub reorder_delay: Duration,
    /// Probability a datagram is delivered twice.
    pub duplicate: f64,
    /// Probability one random byte is flipped.
    pub corrupt: f64,
    /// Probability a datagram arrives with ECN CE.
    pub ecn: f64,
    /// Carry only headers; payloads are lengths (the simulator's mode).
    pub virtual_payload: bool,
    /// Drop every datagram sent with one of these entropy values (dead paths).
    pub dead_entropy: Option<(u16, u16)>,
    /// `(lo, hi, p)`: datagrams sent with an entropy value in `lo..=hi` are dropped with
    /// probability `p` (on top of `loss`): lossy paths.
    pub lossy_entropy: Option<(u16, u16, f64)>,
    /// The sender's link acts as an INT hop: packets that ask for telemetry arrive with a
    /// record of that link (backlog when the packet entered it, rate, bytes sent, departure
    /// time).
    pub int: bool,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            latency: Duration::from_micros(5),
            rate: Rate::from_gbps(100),
            loss: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_micros(20),
            duplicate: 0.0,
            corrupt: 0.0,
            ecn: 0.0,
            virtual_payload: false,
            dead_entropy: None,
            lossy_entropy: None,
            int: false,
        }
    }
}

struct InFlight {
    dst: usize,
    meta: RxMeta,
    bytes: Vec<u8>,
    /// Injected: handed to the engine as is, without the integrity check.
    raw: bool,
    /// Bytes on the wire (header and payload, real or virtual).
    wire: u64,
    /// Still has to cross the destination's ingress bottleneck.
    via_ingress: bool,
}

/// What a last-hop bottleneck ([`Net::set_ingress`]) did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IngressStats {
    /// Datagrams forwarded to the endpoint.
    pub forwarded: u64,
    /// Wire bytes forwarded.
    pub forwarded_bytes: u64,
    /// Datagrams dropped because the buffer was full.
    pub dropped: u64,
    /// Largest occupancy seen, in bytes (the datagram being serialised included).
    pub max_queue: u64,
}

/// A drop-tail FIFO in front of one endpoint.
#[derive(Clone, Copy, Debug)]
struct Ingress {
    rate: Rate,
    buffer: u64,
    busy_until: Instant,
    stats: IngressStats,
}

/// A datagram an endpoint sent, as the engine wrote it (header and, with real payloads, the
/// payload; no integrity trailer).
#[derive(Clone, Debug)]
pub struct Captured {
    /// When it was sent.
    pub at: Instant,
    /// Index of the sending endpoint.
    pub src: usize,
    /// Index of the destination endpoint (`None`: an address outside the net).
    pub dst: Option<usize>,
    /// Destination address.
    pub to: SocketAddr,
    /// The entropy the engine chose.
    pub entropy: u16,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl Captured {
    /// The opcode byte, if the datagram has one.
    pub fn opcode(&self) -> Option<Opcode> {
        Opcode::try_from(*self.bytes.get(1)?).ok()
    }
}

/// What a [`Tap`] sees of a datagram besides its bytes.
#[derive(Clone, Copy, Debug)]
pub struct Tapped {
    /// When it was sent.
    pub at: Instant,
    /// Index of the sending endpoint.
    pub src: usize,
    /// Index of the destination endpoint (`None`: an address outside the net).
    pub dst: Option<usize>,
    /// The entropy the engine chose.
    pub entropy: u16,
    /// Number of datagrams the net carried before this one (0-based sequence number).
    pub seq: u64,
}

/// What a [`Tap`] does with a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Hand it to the link (and its impairments).
    Pass,
    /// Drop it.
    Drop,
    /// Hand it to the link, and delay it by this much on top of whatever the link does.
    Delay(Duration),
}

/// A tap on every datagram sent: it may rewrite the bytes (header and payload, without the
/// integrity trailer, which is computed afterwards) and decides the datagram's [`Fate`]. It
/// runs after the sender's serialisation and before the link's impairments.
pub type Tap = Box<dyn FnMut(&Tapped, &mut Vec<u8>) -> Fate>;

/// Counters of what the network did.
#[derive(Clone, Copy, Debug, Default)]
pub struct NetStats {
    /// Datagrams sent by endpoints.
    pub sent: u64,
    /// Payload bytes carried on the wire (0 in virtual mode).
    pub payload_bytes_on_wire: u64,
    /// Payload bytes described (real or virtual).
    pub payload_bytes_described: u64,
    /// Dropped by the link.
    pub dropped: u64,
    /// Delivered datagrams.
    pub delivered: u64,
    /// Datagrams whose integrity check failed (dropped before the engine).
    pub corrupt_dropped: u64,
    /// Datagrams the tap dropped.
    pub tap_dropped: u64,
    /// Datagrams the tap rewrote.
    pub tap_rewritten: u64,
    /// Datagrams injected with [`Net::inject`] or [`Net::deliver`].
    pub injected: u64,
}

/// A deterministic in-memory network of endpoints.
#[allow(missing_debug_implementations)]
pub struct Net {
    /// Current virtual time.
    pub now: Instant,
    /// The endpoints.
    pub eps: Vec<Endpoint>,
    /// Their addresses.
    pub addrs: Vec<SocketAddr>,
    /// Events each endpoint produced, in order.
    pub events: Vec<Vec<Event>>,
    /// Link shape.
    pub link: Link,
    /// Counters.
    pub stats: NetStats,
    /// When `Some`, every datagram sent is appended here (see [`Captured`]).
    pub capture: Option<Vec<Captured>>,
    /// Called for every datagram sent (see [`Tap`]).
    pub tap: Option<Tap>,
    /// Data packets sent, by (sending endpoint, entropy), retransmissions included.
    pub data_by_entropy: BTreeMap<(usize, u16), u64>,
    links: HashMap<(usize, usize), Link>,
    rng: Rng,
    queue: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    packets: std::collections::HashMap<u64, InFlight>,
    seq: u64,
    busy_until: Vec<Instant>,
    /// Bytes each endpoint's link has carried (the INT hop's transmit counter).
    tx_bytes: Vec<u64>,
    memory: Vec<Box<[u8]>>,
    ingress: HashMap<usize, Ingress>,
}

impl Net {
    /// `n` endpoints with the same config, all listening.
    pub fn new(n: usize, config: Config, link: Link, seed: u64) -> Net {
        let mut rng = Rng::new(seed);
        let addrs: Vec<SocketAddr> = (0..n)
            .map(|i| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i as u8 + 1)), 4791))
            .collect();
        let eps = addrs
            .iter()
            .map(|&a| {
                let mut e = Endpoint::new(config, a, rng.next_u64()).unwrap();
                e.listen(true);
                e
            })
            .collect();
        Net {
            now: Instant::ZERO,
            eps,
            addrs,
            events: vec![Vec::new(); n],
            link,
            stats: NetStats::default(),
            capture: None,
            tap: None,
            data_by_entropy: BTreeMap::new(),
            links: HashMap::new(),
            rng,
            queue: BinaryHeap::new(),
            packets: Default::default(),
            seq: 0,
            busy_until: vec![Instant::ZERO; n],
            tx_bytes: vec![0; n],
            memory: Vec::new(),
            ingress: HashMap::new(),
        }
    }

    /// Allocate `len` bytes (filled with `fill`) and register them on endpoint `ep` (or a
    /// virtual region in virtual mode). Returns the region and a pointer for reading back.
    pub fn region(
        &mut self,
        ep: usize,
        len: usize,
        fill: impl Fn(usize) -> u8,
        remote_write: bool,
    ) -> (RegionId, *mut u8) {
        if self.link.virtual_payload {
            return (
                self.eps[ep].register_virtual(len as u64, remote_write),
                std::ptr::null_mut(),
            );
        }
        let mut mem: Box<[u8]> = (0..len.max(1)).map(&fill).collect();
        let ptr = mem.as_mut_ptr();
        // SAFETY: the box lives in `self.memory` as long as the endpoints do and is never
        // moved (boxes keep their heap address).
        let id =
            unsafe { self.eps[ep].register(NonNull::new(ptr).unwrap(), len as u64, remote_write) };
        self.memory.push(mem);
        (id, ptr)
    }

    /// Like [`Net::region`], with `guard` bytes of [`GUARD`] right before and right after the
    /// region in the same allocation, so a test can check nothing was written outside it
    /// ([`Net::guards_intact`]). Returns the region and a pointer to its first byte.
    pub fn guarded_region(
        &mut self,
        ep: usize,
        len: usize,
        guard: usize,
        fill: impl Fn(usize) -> u8,
        remote_write: bool,
    ) -> (RegionId, *mut u8) {
        if self.link.virtual_payload {
            return self.region(ep, len, fill, remote_write);
        }
        let mut mem: Box<[u8]> = (0..len + 2 * guard)
            .map(|i| {
                if i < guard || i >= guard + len {
                    GUARD
                } else {
                    fill(i - guard)
                }
            })
            .collect();
        // SAFETY: in bounds of the allocation (`guard <= len + 2 * guard`).
        let ptr = unsafe { mem.as_mut_ptr().add(guard) };
        // SAFETY: as in `region`: the box lives in `self.memory` and never moves.
        let id =
            unsafe { self.eps[ep].register(NonNull::new(ptr).unwrap(), len as u64, remote_write) };
        self.memory.push(mem);
        (id, ptr)
    }

    /// Whether the `guard` bytes around the region of `len` bytes at `ptr` (from
    /// [`Net::guarded_region`]) still hold [`GUARD`]. Panics if `ptr` is not such a region.
    pub fn guards_intact(&self, ptr: *const u8, len: usize, guard: usize) -> bool {
        let mem = self
            .memory
            .iter()
            .find(|m| {
                m.len() == len + 2 * guard && std::ptr::eq(m.as_ptr().wrapping_add(guard), ptr)
            })
            .expect("not a guarded region of this net");
        mem[..guard]
            .iter()
            .chain(&mem[guard + len..])
            .all(|&b| b == GUARD)
    }

    /// The bytes of a region of `len` bytes at `ptr` returned by [`Net::region`] or
    /// [`Net::guarded_region`] (read only after the requests using it completed). Panics if
    /// `ptr` does not point into memory of this net.
    pub fn bytes(&self, ptr: *const u8, len: usize) -> &[u8] {
        let mem = self
            .memory
            .iter()
            .find(|m| {
                let start = m.as_ptr() as usize;
                let p = ptr as usize;
                p >= start && p + len <= start + m.len()
            })
            .expect("not memory of this net");
        let off = ptr as usize - mem.as_ptr() as usize;
        &mem[off..off + len]
    }

    /// Connect endpoint `a` to `b` and run until both sides know. Returns (conn at a, conn at b).
    /// Only events from this call count, so it also works for a second connection between the
    /// same endpoints.
    pub fn connect(
        &mut self,
        a: usize,
        b: usize,
        limit: Duration,
    ) -> Option<(weir_transport::ConnId, weir_transport::ConnId)> {
        let seen = (self.events[a].len(), self.events[b].len());
        let ca = self.eps[a].connect(self.now, self.addrs[b], 77);
        let deadline = self.now + limit;
        while self.now < deadline {
            if !self.step(deadline) {
                break;
            }
            let connected = self.events[a][seen.0..]
                .iter()
                .any(|e| matches!(e, Event::Connected { conn } if *conn == ca));
            let cb = self.events[b][seen.1..].iter().find_map(|e| match e {
                Event::Accepted { conn, peer, .. } if *peer == self.addrs[a] => Some(*conn),
                _ => None,
            });
            if let (true, Some(cb)) = (connected, cb) {
                return Some((ca, cb));
            }
        }
        None
    }

    /// One round: every endpoint transmits what it can, events are collected, then time jumps
    /// to the next arrival or timer (never past `limit`). Returns false when there is nothing
    /// left to do before `limit`.
    pub fn step(&mut self, limit: Instant) -> bool {
        self.flush();
        let next_pkt = self.queue.peek().map(|Reverse((t, _, _))| *t);
        let next_timer = self.eps.iter().filter_map(|e| e.poll_timeout()).min();
        let next = match (next_pkt, next_timer) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => match a.or(b) {
                Some(t) => t,
                None => return false,
            },
        };
        if next > limit {
            self.now = limit;
            return false;
        }
        if next > self.now {
            self.now = next;
        }
        while let Some(Reverse((t, id, _))) = self.queue.peek().copied() {
            if t > self.now {
                break;
            }
            self.queue.pop();
            if let Some(p) = self.packets.remove(&id) {
                if p.via_ingress {
                    self.enter_ingress(id, p);
                    continue;
                }
                if p.raw {
                    self.eps[p.dst].handle(self.now, p.meta, &p.bytes);
                    continue;
                }
                match weir_wire::icrc::verify(&p.bytes) {
                    Ok(body) => {
                        self.stats.delivered += 1;
                        self.eps[p.dst].handle(self.now, p.meta, body);
                    }
                    Err(_) => self.stats.corrupt_dropped += 1,
                }
            }
        }
        for e in &mut self.eps {
            if e.poll_timeout().is_some_and(|t| t <= self.now) {
                e.handle_timeout(self.now);
            }
        }
        self.flush();
        true
    }

    /// Run until `done` returns true or `limit` of virtual time passes. Returns whether `done`.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Net) -> bool) -> bool {
        let deadline = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            if !self.step(deadline) {
                return done(self);
            }
        }
    }

    /// Use `link`'s impairments (everything but `virtual_payload`, which is the net's) for
    /// datagrams from endpoint `src` to endpoint `dst`.
    pub fn set_link(&mut self, src: usize, dst: usize, link: Link) {
        self.links.insert((src, dst), link);
    }

    /// Put a last-hop bottleneck in front of endpoint `dst`: every datagram to it (after its
    /// sender's link, latency and impairments) joins a drop-tail FIFO served at `rate`, which
    /// holds at most `buffer` bytes (the datagram being serialised included); one that does
    /// not fit is dropped. Injected datagrams bypass it.
    pub fn set_ingress(&mut self, dst: usize, rate: Rate, buffer: u64) {
        self.ingress.insert(
            dst,
            Ingress {
                rate,
                buffer,
                busy_until: self.now,
                stats: IngressStats::default(),
            },
        );
    }

    /// Change the rate of the bottleneck in front of `dst` (its queue and counters are kept):
    /// a link-rate step.
    pub fn set_ingress_rate(&mut self, dst: usize, rate: Rate) {
        if let Some(q) = self.ingress.get_mut(&dst) {
            q.rate = rate;
        }
    }

    /// Counters of the bottleneck in front of `dst`, if it has one.
    pub fn ingress_stats(&self, dst: usize) -> Option<IngressStats> {
        self.ingress.get(&dst).map(|q| q.stats)
    }

    /// A datagram reached the bottleneck in front of its destination at `self.now`: queue it
    /// (scheduling its delivery when it has been serialised) or drop it.
    fn enter_ingress(&mut self, id: u64, mut p: InFlight) {
        let Some(q) = self.ingress.get_mut(&p.dst) else {
            return;
        };
        let backlog = q.rate.bytes_in(q.busy_until.saturating_since(self.now));
        let occupancy = backlog + p.wire;
        if occupancy > q.buffer {
            q.stats.dropped += 1;
            self.stats.dropped += 1;
            return;
        }
        let depart = q.busy_until.max(self.now) + q.rate.serialization_time(p.wire);
        q.busy_until = depart;
        q.stats.forwarded += 1;
        q.stats.forwarded_bytes += p.wire;
        q.stats.max_queue = q.stats.max_queue.max(occupancy);
        p.via_ingress = false;
        let dst = p.dst;
        self.packets.insert(id, p);
        self.queue.push(Reverse((depart, id, dst)));
    }

    /// The impairments of datagrams from `src` to `dst`.
    pub fn link_between(&self, src: usize, dst: usize) -> Link {
        self.links.get(&(src, dst)).copied().unwrap_or(self.link)
    }

    /// Schedule `bytes` to arrive at endpoint `dst` after `delay`, as if sent from `from`.
    /// The datagram bypasses the integrity check and every impairment: the engine sees these
    /// exact bytes.
    pub fn inject(&mut self, dst: usize, from: SocketAddr, bytes: Vec<u8>, delay: Duration) {
        self.stats.injected += 1;
        let meta = RxMeta {
            from,
            ecn: Ecn::NotEct,
            virtual_payload: self.link.virtual_payload,
            int_hop: None,
        };
        self.seq += 1;
        self.packets.insert(
            self.seq,
            InFlight {
                dst,
                meta,
                bytes,
                raw: true,
                wire: 0,
                via_ingress: false,
            },
        );
        self.queue.push(Reverse((self.now + delay, self.seq, dst)));
    }

    /// Hand `bytes` to endpoint `dst` now, as if sent from `from` (no integrity check), then
    /// collect what it transmits and reports.
    pub fn deliver(&mut self, dst: usize, from: SocketAddr, bytes: &[u8]) {
        self.stats.injected += 1;
        let meta = RxMeta {
            from,
            ecn: Ecn::NotEct,
            virtual_payload: self.link.virtual_payload,
            int_hop: None,
        };
        self.eps[dst].handle(self.now, meta, bytes);
        self.flush();
    }

    /// One message, the common case of the tests: at `now`, endpoint `to.0` posts an untagged
    /// receive of `len` bytes at the start of region `to.2` on connection `to.1`, then endpoint
    /// `from.0` a send of `len` bytes from the start of `from.2`, tag 0, on `from.1`. Panics
    /// if either post is refused.
    pub fn post_transfer(
        &mut self,
        now: Instant,
        from: (usize, ConnId, RegionId),
        to: (usize, ConnId, RegionId),
        len: u64,
    ) {
        let recv = WorkRequest::Recv {
            region: to.2,
            offset: 0,
            len,
            tag: None,
        };
        self.eps[to.0]
            .post(now, to.1, recv)
            .expect("post the receive");
        let send = WorkRequest::Send {
            region: from.2,
            offset: 0,
            len,
            tag: 0,
        };
        self.eps[from.0]
            .post(now, from.1, send)
            .expect("post the send");
    }

    /// The completions endpoint `ep` reported so far, in order.
    pub fn completions(&self, ep: usize) -> impl Iterator<Item = &Completion> + '_ {
        self.events[ep].iter().filter_map(|e| match e {
            Event::Completion(c) => Some(c),
            _ => None,
        })
    }

    /// Whether endpoint `ep` reported a lost or closed connection `conn`.
    pub fn conn_failed(&self, ep: usize, conn: ConnId) -> bool {
        self.events[ep].iter().any(|e| {
            matches!(e, Event::ConnectionLost { conn: c, .. } | Event::Closed { conn: c } if *c == conn)
        })
    }

    /// Data packets endpoint `src` sent on each entropy value (retransmissions included).
    pub fn entropy_counts(&self, src: usize) -> BTreeMap<u16, u64> {
        self.data_by_entropy
            .iter()
            .filter(|((s, _), _)| *s == src)
            .map(|(&(_, e), &n)| (e, n))
            .collect()
    }

    fn flush(&mut self) {
        let mut hdr = [0u8; MAX_HEADER_LEN];
        for src in 0..self.eps.len() {
            while let Some(t) = self.eps[src].poll_transmit(self.now, &mut hdr) {
                self.stats.sent += 1;
                let plen = t.payload.len();
                self.stats.payload_bytes_described += plen as u64;
                let mut bytes = hdr[..t.header_len].to_vec();
                if hdr[1] == Opcode::Data as u8 {
                    *self
                        .data_by_entropy
                        .entry((src, t.meta.entropy))
                        .or_default() += 1;
                }
                if !self.link.virtual_payload {
                    match t.payload {
                        Payload::Region { .. } => {
                            let p = self.eps[src].payload(&t.payload).expect("payload resolves");
                            bytes.extend_from_slice(p);
                            self.stats.payload_bytes_on_wire += plen as u64;
                        }
                        Payload::Virtual(_) => panic!("virtual payload in a real-payload net"),
                        Payload::None => {}
                    }
                } else {
                    assert!(
                        !matches!(t.payload, Payload::Region { .. }),
                        "real payload in virtual mode"
                    );
                }
                let dst = self.addrs.iter().position(|a| *a == t.meta.to);
                if let Some(log) = self.capture.as_mut() {
                    log.push(Captured {
                        at: self.now,
                        src,
                        dst,
                        to: t.meta.to,
                        entropy: t.meta.entropy,
                        bytes: bytes.clone(),
                    });
                }
                let link = dst.map_or(self.link, |d| self.link_between(src, d));
                let wire = (t.header_len + plen) as u64;
                let start = self.busy_until[src].max(self.now);
                let depart = start + link.rate.serialization_time(wire);
                let backlog = link
                    .rate
                    .bytes_in(self.busy_until[src].saturating_since(self.now));
                self.busy_until[src] = depart;
                self.tx_bytes[src] = self.tx_bytes[src].wrapping_add(wire);
                let int_hop = link.int.then(|| weir_wire::IntHop {
                    qlen: backlog.min(u64::from(u32::MAX)) as u32,
                    rate_mbps: (link.rate.bps() / 1_000_000).min(u64::from(u32::MAX)) as u32,
                    tx_bytes: self.tx_bytes[src],
                    ts_ns: depart.as_nanos(),
                });
                let mut extra_delay = Duration::ZERO;
                if let Some(tap) = self.tap.as_mut() {
                    let info = Tapped {
                        at: self.now,
                        src,
                        dst,
                        entropy: t.meta.entropy,
                        seq: self.stats.sent - 1,
                    };
                    let before = bytes.clone();
                    match tap(&info, &mut bytes) {
                        Fate::Pass => {}
                        Fate::Drop => {
                            self.stats.tap_dropped += 1;
                            continue;
                        }
                        Fate::Delay(d) => extra_delay = d,
                    }
                    if bytes != before {
                        self.stats.tap_rewritten += 1;
                    }
                }
                let Some(dst) = dst else {
                    continue;
                };
                // Integrity trailer, as the datapath adds it (the engine never sees it).
                weir_wire::icrc::mark(&mut bytes).unwrap();
                let crc = weir_wire::icrc::compute(&[&bytes]);
                bytes.extend_from_slice(&crc);
                if let Some((lo, hi)) = link.dead_entropy
                    && (lo..=hi).contains(&t.meta.entropy)
                {
                    self.stats.dropped += 1;
                    continue;
                }
                if self.rng.chance(link.loss) {
                    self.stats.dropped += 1;
                    continue;
                }
                if let Some((lo, hi, p)) = link.lossy_entropy
                    && (lo..=hi).contains(&t.meta.entropy)
                    && self.rng.chance(p)
                {
                    self.stats.dropped += 1;
                    continue;
                }
                let copies = if self.rng.chance(link.duplicate) {
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    let mut b = bytes.clone();
                    if self.rng.chance(link.corrupt) && !b.is_empty() {
                        let i = self.rng.below(b.len() as u64) as usize;
                        b[i] ^= 1 << self.rng.below(8);
                    }
                    let mut at = depart + link.latency + extra_delay;
                    if self.rng.chance(link.reorder) {
                        at += link.reorder_delay;
                    }
                    let ecn = if self.rng.chance(link.ecn) {
                        Ecn::Ce
                    } else {
                        t.meta.ecn
                    };
                    let meta = RxMeta {
                        from: self.addrs[src],
                        ecn,
                        virtual_payload: self.link.virtual_payload,
                        int_hop,
                    };
                    self.seq += 1;
                    self.packets.insert(
                        self.seq,
                        InFlight {
                            dst,
                            meta,
                            bytes: b,
                            raw: false,
                            wire,
                            via_ingress: self.ingress.contains_key(&dst),
                        },
                    );
                    self.queue.push(Reverse((at, self.seq, dst)));
                }
            }
            while let Some(e) = self.eps[src].poll_event() {
                self.events[src].push(e);
            }
        }
    }
}

/// A SYN as a connector would send it (initial PSN 1000, 1 KiB payloads, 8 paths, Weir mode,
/// a 256-packet window, one receive port), from connection `src_conn` with `nonce`, the given
/// user data, MAC (`echo_nonce`; 0: none) and token (0, or a cookie for a confirm). For tests
/// that forge handshakes.
pub fn syn_datagram(src_conn: u32, nonce: u64, user_data: u64, mac: u64, token: u64) -> Vec<u8> {
    let h = weir_wire::Header {
        common: weir_wire::Common {
            opcode: Opcode::Syn,
            flags: weir_wire::Flags::empty(),
            src_conn,
            dst_conn: 0,
            psn: 0,
            entropy: 0,
            payload_len: 0,
            token,
        },
        ext: weir_wire::Ext::Handshake(weir_wire::HandshakeExt {
            nonce,
            echo_nonce: mac,
            user_data,
            initial_psn: 1000,
            max_payload: 1024,
            paths: 8,
            mode: weir_wire::Mode::Weir,
            rwnd_pkts: 256,
            rx_ports: 0,
        }),
        int: weir_wire::IntList::new(),
    };
    let mut buf = vec![0u8; MAX_HEADER_LEN];
    let n = h.emit(&mut buf).expect("a SYN always fits");
    buf.truncate(n);
    buf
}
