//! The engine's whole packet-in surface: two `weir_transport::Endpoint`s (fixed seeds) connected
//! through an in-memory exchange that this target drives itself, with sends, receives and
//! writes posted on registered memory, and the fuzzer's bytes interleaved as datagrams.
//!
//! # Input
//!
//! Byte 0 shapes the run: bit 0 set = virtual payloads (`register_virtual`, header-only
//! datagrams, `RxMeta { virtual_payload: true }`), clear = real memory; bit 1 set =
//! `Config::go_back_n()`, clear = `Config::default()`; bit 2 set = every region receives
//! past the caches (`stream_region_bytes` 1: non-temporal stores for payloads from 2 KiB,
//! at whatever offsets the packets name). The rest is a sequence of ops, an op byte
//! (taken mod 6) followed by its operands; a truncated last op is dropped.
//!
//! | op | operands | effect |
//! |---|---|---|
//! | 0, 1 | `flags: u8`, `len: u16 LE`, `len` bytes | deliver the bytes as one datagram to endpoint A (0) or B (1); `flags & 3` = ECN, `flags & 4` = from a stranger's address instead of the peer's |
//! | 2 | `idx: u8`, `n: u8`, `n % 9` × (`pos: u16 LE`, `val: u8`, `how: u8`) | copy one of the last 64 legit datagrams, edit it (`how % 4`: xor `val` at `pos`, overwrite with `val`, truncate at `pos`, append `val`) and deliver it again to its destination |
//! | 3 | `us: u16 LE` | advance virtual time by `us` µs and call `handle_timeout` on both |
//! | 4 | `n: u8` | `n % 16 + 1` rounds of legit exchange (see [`World::round`]) |
//! | 5 | `sel: u8`, `len: u16 LE` | post one more request on endpoint `sel & 1`: `sel / 2 % 3` = send, receive, write (`sel & 8`: with notify), of `len % 16384` bytes |
//!
//! A connects to B (which listens) at once and posts its initial sends and writes (its
//! receives on `Connected`, see `A_RECVS_BEFORE_HANDSHAKE`); B posts its work when it accepts.
//! The handshake itself is therefore exposed to the fuzzer's datagrams.
//!
//! # Invariants (checked on every input)
//!
//! * Nothing panics.
//! * `poll_transmit` writes at most the buffer's length ([`MAX_HEADER_LEN`]) of header; every
//!   datagram it describes parses, with `payload_len` equal to the payload descriptor's length;
//!   a `Payload::Region` resolves through `Endpoint::payload` to exactly `len` bytes (and only
//!   real regions give `Region`, only virtual ones `Virtual`); a data packet's payload bytes are
//!   the bytes of its message at the header's `msg_offset`.
//! * Every completion is for a request posted on that connection and is reported once, with
//!   the posted kind and (sends and writes) length; a write's completion tag is zero (but see
//!   `on_completion`: a write failed by a lost connection reports its remote offset). When a
//!   connection is lost or closed, none of its requests is still outstanding.
//! * Only A reports `Connected` (once), only B reports `Accepted`, once per connection.
//! * With real memory, at the end: no send region changed, and no byte of a receive region
//!   outside the posted receive buffers changed, whatever the input.
//!
//! # Content checks and taint
//!
//! The exchange carries no ICRC, and deliberately so: the fuzzer's datagrams must reach the
//! parser and the connection logic, and a CRC over them would stop almost all of them at the
//! datapath. Without it a corrupted datagram that still carries a valid token can legitimately
//! place wrong bytes. So content is asserted only on an endpoint that no injected datagram
//! reached: every op-0/1/2 delivery that the endpoint did not count as dropped (malformed,
//! unknown connection, bad token, wrong peer, handshake) *taints* that endpoint for the rest
//! of the run, except an op-2 copy whose edits left it identical to the legit datagram (a
//! network duplicate, which the engine must tolerate). A delivery dropped as a handshake
//! packet taints the peer too when it claims to come from the peer, since a refused SYN is
//! answered with a CLOSE to its sender. On an untainted receiver:
//!
//! * the k-th receive posted gets the peer's k-th send (same tag and length), completes `Ok`
//!   or `Truncated { message, buffer }` exactly as the lengths say, and (real memory) holds the
//!   sent bytes;
//! * a write with notify is reported once as `WriteReceived` with its immediate and length,
//!   and (real memory) its bytes are in the region; so are those of a write whose writer
//!   (untainted too) saw it complete.
//!
//! Liveness, at the end of the input: when neither endpoint is tainted, both sides are
//! connected and neither connection was lost, the exchange runs until every send and write has
//! completed, every receive that has a matching send has completed and every notify was
//! reported (bounded by a round budget; running out of it is a failure).
#![no_main]

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ptr::NonNull;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use weir_base::{Duration, Instant};
use weir_transport::{
    Completion, CompletionKind, Config, ConnId, Ecn, Endpoint, EndpointStats, Event, Payload,
    RegionId, RemoteRegion, RxMeta, Transmit, WorkRequest, WrError, WrId,
};
use weir_wire::{Ext, MAX_HEADER_LEN, MsgKind, PayloadMode, parse};

const A: usize = 0;
const B: usize = 1;
const SEEDS: [u64; 2] = [0x5745_4952_0000_000a, 0x5745_4952_0000_000b];
const USER_DATA: u64 = 0x00c0_ffee;
/// Size of each registered region (send, receive, remotely writable) on each endpoint.
const REGION: usize = 64 << 10;
/// Untouched bytes between receive buffers.
const GUARD: usize = 16;
/// Legit datagrams kept for op 2.
const CAPTURE: usize = 64;
/// Virtual time one round of exchange takes when something moved.
const STEP: Duration = Duration::from_micros(1);
/// A stuck `poll_transmit` (never `None` at one instant) is a bug, not a long burst.
const MAX_BURST: usize = 10_000;
/// Rounds the final liveness drain may take.
const DRAIN_ROUNDS: usize = 4_000;
/// What receive and writable regions start as, and what the gaps between receive buffers must
/// still hold at the end.
static ZEROS: [u8; REGION] = [0; REGION];
/// Whether A posts receives (its initial ones, and op 5's) right after `connect` (true) or
/// only once `Connected` (false). Receives posted before the handshake completes are dropped
/// by the engine today: on the SYN-ACK, `Conn::apply_handshake` replaces the receive state, so
/// they never complete, not even with an error. Set this to true once that is fixed.
const A_RECVS_BEFORE_HANDSHAKE: bool = true;

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let Some(shape) = input.u8() else { return };
    let mut w = World::new(shape & 1 != 0, shape & 2 != 0, shape & 4 != 0);
    while let Some(op) = input.u8() {
        if w.op(op % 6, &mut input).is_none() {
            break;
        }
    }
    w.finish();
});

/// The fuzzer's bytes, consumed front to back.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.u8()?, self.u8()?]))
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
}

fn addr(host: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, host)), 4791)
}

/// Addresses of A and B.
fn ep_addr(i: usize) -> SocketAddr {
    addr(i as u8 + 1)
}

/// Someone who is neither A nor B.
fn stranger() -> SocketAddr {
    addr(99)
}

/// The contents of endpoint `ep`'s send region (computed once; compared with `==`, a
/// `memcmp`, so the checks stay cheap).
fn pattern(ep: usize) -> &'static [u8] {
    static P: OnceLock<[Box<[u8]>; 2]> = OnceLock::new();
    let p = P.get_or_init(|| {
        [0u32, 1].map(|e| {
            (0..REGION as u32)
                .map(|off| {
                    let x = off.wrapping_mul(0x9e37_79b1) ^ (e + 1).wrapping_mul(0x85eb_ca6b);
                    (x >> 24) as u8 ^ (x >> 8) as u8
                })
                .collect()
        })
    });
    &p[ep]
}

/// Whether `got` is `ep`'s send region at `off`.
fn is_pattern(ep: usize, off: usize, got: &[u8]) -> bool {
    pattern(ep).get(off..off.saturating_add(got.len())) == Some(got)
}

fn drops(s: &EndpointStats) -> u64 {
    s.drop_malformed + s.drop_unknown_conn + s.drop_bad_token + s.drop_wrong_peer + s.drop_handshake
}

/// Memory registered with an endpoint (real-payload runs only).
///
/// Allocated as a `Box<[u8]>` and then held only through the raw pointer `Box::into_raw`
/// returns: the engine writes received bytes through its own copy of that pointer, and a live
/// `Box` (which asserts unique access) next to those writes would be an aliasing violation.
/// Freed in `Drop`, after the endpoints are gone (see [`World::finish`]).
struct Mem {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mem {
    fn new(init: &[u8]) -> Mem {
        let b: Box<[u8]> = init.into();
        let len = b.len();
        let ptr = NonNull::new(Box::into_raw(b).cast::<u8>()).expect("a Box is non-null");
        Mem { ptr, len }
    }

    /// Bytes `off..off + len`. The caller must not hold the slice across an engine call, and
    /// must only ask for bytes that are not part of an outstanding request (receives: after
    /// their completion; writes: after the write completed, on an untainted receiver).
    fn bytes(&self, off: usize, len: usize) -> &[u8] {
        assert!(off.checked_add(len).is_some_and(|end| end <= self.len));
        // SAFETY: in bounds of the live allocation (checked above). The engine accesses this
        // memory only inside its own calls, and this target is single-threaded, so nothing
        // writes it while the returned slice lives (the caller's obligation above).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(off), len) }
    }
}

impl Drop for Mem {
    fn drop(&mut self) {
        let slice = std::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.len);
        // SAFETY: `ptr`/`len` are exactly what `Box::into_raw` of a `Box<[u8]>` returned in
        // `Mem::new`, and this is the only place that frees it.
        drop(unsafe { Box::from_raw(slice) });
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Send,
    Recv,
    Write,
}

/// A request posted and not completed yet.
#[derive(Clone, Copy, Debug)]
struct Posted {
    conn: ConnId,
    kind: Kind,
    /// Offset in the send region (send, write) or receive region (receive).
    off: usize,
    /// Length (receives: capacity).
    len: u64,
    /// Send: the tag.
    tag: u64,
    /// Receive: its position among this side's receives.
    index: usize,
}

/// One endpoint's bookkeeping.
#[derive(Debug, Default)]
struct Side {
    /// The connection work is posted on (A: the one it opened; B: the first it accepted).
    conn: Option<ConnId>,
    /// A: `Connected` seen; B: `Accepted` seen.
    up: bool,
    /// The connection was lost or closed.
    lost: bool,
    /// An injected datagram reached a connection or created one (see the module docs).
    tainted: bool,
    regions: Option<[RegionId; 3]>,
    send_next: usize,
    recv_next: usize,
    /// Sends in posting order: (tag, offset, length).
    sends: Vec<(u64, usize, u64)>,
    /// Receives in posting order.
    recvs: Vec<WrId>,
    /// Receive buffers: (offset, capacity).
    slots: Vec<(usize, usize)>,
    posted: HashMap<WrId, Posted>,
    ever_posted: HashSet<WrId>,
    /// Writes with notify this side posted and the peer has not reported: imm → (offset, len).
    notify: HashMap<u32, (usize, u64)>,
    next_imm: u32,
    accepted: HashSet<ConnId>,
}

impl Side {
    /// The send region (`Send`), the receive region (`Recv`) or the remotely writable region
    /// (`Write`).
    fn region(&self, k: Kind) -> Option<RegionId> {
        let r = self.regions?;
        Some(match k {
            Kind::Send => r[0],
            Kind::Recv => r[1],
            Kind::Write => r[2],
        })
    }
}

/// A legit datagram kept for op 2.
struct Captured {
    dst: usize,
    from: SocketAddr,
    ecn: Ecn,
    bytes: Vec<u8>,
}

/// The two endpoints, their memory and the exchange. Field order matters: the endpoints drop
/// before the memory they were given.
struct World {
    eps: [Endpoint; 2],
    side: [Side; 2],
    now: Instant,
    virt: bool,
    captured: VecDeque<Captured>,
    /// Per endpoint: send, receive, writable region (empty with virtual payloads).
    mem: Vec<[Mem; 3]>,
}

impl World {
    fn new(virt: bool, gbn: bool, stream: bool) -> World {
        let mut config = if gbn {
            Config::go_back_n()
        } else {
            Config::default()
        };
        if stream {
            config.stream_region_bytes = 1;
        }
        let mk = |i: usize| Endpoint::new(config, ep_addr(i), SEEDS[i]).expect("config is valid");
        let mut w = World {
            eps: [mk(A), mk(B)],
            side: [Side::default(), Side::default()],
            now: Instant::ZERO,
            virt,
            captured: VecDeque::new(),
            mem: Vec::new(),
        };
        w.eps[B].listen(true);
        for i in [A, B] {
            let ep = &mut w.eps[i];
            let regions = if virt {
                [false, false, true].map(|rw| ep.register_virtual(REGION as u64, rw))
            } else {
                let m = [Mem::new(pattern(i)), Mem::new(&ZEROS), Mem::new(&ZEROS)];
                let regions = [(&m[0], false), (&m[1], false), (&m[2], true)].map(|(m, rw)| {
                    // SAFETY: `m` is a live allocation of `REGION` bytes that is never moved
                    // and is freed only after both endpoints are dropped (`finish`; also the
                    // field order of `World`). The target touches it only between engine calls
                    // and never bytes of an outstanding request (see `Mem::bytes`); receive
                    // and writable regions are not read while the engine could write them.
                    unsafe { ep.register(m.ptr, REGION as u64, rw) }
                });
                w.mem.push(m);
                regions
            };
            w.side[i].regions = Some(regions);
        }
        let conn = w.eps[A].connect(w.now, ep_addr(B), USER_DATA);
        w.side[A].conn = Some(conn);
        w.post_initial(A);
        w
    }

    /// A's sends and writes are posted at once (sent after the handshake), its receives too or
    /// on `Connected` (see [`A_RECVS_BEFORE_HANDSHAKE`]); B's work when it accepts.
    fn post_initial(&mut self, me: usize) {
        if me == A {
            for len in [0, 1, 8192, 20_000] {
                self.post(A, Kind::Send, len, false);
            }
            self.post(A, Kind::Write, 3000, true);
            self.post(A, Kind::Write, 17_000, false);
            if A_RECVS_BEFORE_HANDSHAKE {
                self.post_a_recvs();
            }
        } else {
            for len in [100, 9000, 0] {
                self.post(B, Kind::Send, len, false);
            }
            self.post(B, Kind::Write, 64, true);
            for cap in [16, 1, 8192, 24_000] {
                self.post(B, Kind::Recv, cap, false);
            }
        }
    }

    fn post_a_recvs(&mut self) {
        // B sends 100, 9000 (truncated by 8000) and 0 bytes.
        for cap in [4096, 8000, 1] {
            self.post(A, Kind::Recv, cap, false);
        }
    }

    fn post(&mut self, me: usize, kind: Kind, len: usize, notify: bool) {
        let peer = 1 - me;
        let Some(conn) = self.side[me].conn else {
            return;
        };
        if kind == Kind::Recv && !self.side[me].up && !A_RECVS_BEFORE_HANDSHAKE {
            return;
        }
        // Sends and writes read from the send region; receives land in the receive region.
        let local = if kind == Kind::Recv {
            Kind::Recv
        } else {
            Kind::Send
        };
        let Some(region) = self.side[me].region(local) else {
            return;
        };
        let s = &mut self.side[me];
        let (off, wr) = match kind {
            Kind::Send | Kind::Write => {
                let off = s.send_next;
                if off + len > REGION {
                    return;
                }
                s.send_next += len;
                let wr = if kind == Kind::Send {
                    WorkRequest::Send {
                        region,
                        offset: off as u64,
                        len: len as u64,
                        tag: ((me as u64) << 32) | off as u64,
                    }
                } else {
                    let Some(dst) = self.side[peer].region(Kind::Write) else {
                        return;
                    };
                    // A write's bytes land at the same offset in the peer's writable region as
                    // they come from in our send region (ranges are handed out once).
                    WorkRequest::Write {
                        region,
                        offset: off as u64,
                        len: len as u64,
                        remote: RemoteRegion {
                            rkey: self.eps[peer].rkey(dst),
                            offset: off as u64,
                        },
                        notify: notify.then_some(0x1000 + self.side[me].next_imm),
                    }
                };
                (off, wr)
            }
            Kind::Recv => {
                let off = s.recv_next;
                if off + len + GUARD > REGION {
                    return;
                }
                s.recv_next += len + GUARD;
                let wr = WorkRequest::Recv {
                    region,
                    offset: off as u64,
                    len: len as u64,
                    tag: None,
                };
                (off, wr)
            }
        };
        let Ok(id) = self.eps[me].post(self.now, conn, wr) else {
            return;
        };
        let s = &mut self.side[me];
        assert!(s.ever_posted.insert(id), "post returned {id:?} twice");
        let mut p = Posted {
            conn,
            kind,
            off,
            len: len as u64,
            tag: 0,
            index: 0,
        };
        match wr {
            WorkRequest::Send { tag, .. } => {
                p.tag = tag;
                s.sends.push((tag, off, len as u64));
            }
            WorkRequest::Recv { .. } => {
                p.index = s.recvs.len();
                s.recvs.push(id);
                s.slots.push((off, len));
            }
            WorkRequest::Write { notify, .. } => {
                if let Some(imm) = notify {
                    s.notify.insert(imm, (off, len as u64));
                    s.next_imm += 1;
                }
            }
        }
        s.posted.insert(id, p);
    }

    /// One op; `None` when the input ran out.
    fn op(&mut self, op: u8, input: &mut Input<'_>) -> Option<()> {
        match op {
            0 | 1 => {
                let dst = op as usize;
                let flags = input.u8()?;
                let len = input.u16()? as usize;
                let bytes = input.take(len);
                let from = if flags & 4 != 0 {
                    stranger()
                } else {
                    ep_addr(1 - dst)
                };
                self.inject(dst, from, Ecn::from_bits(flags), bytes, false);
            }
            2 => {
                let idx = input.u8()? as usize;
                let n = input.u8()? % 9;
                let mut edits = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    edits.push((input.u16()? as usize, input.u8()?, input.u8()? % 4));
                }
                if self.captured.is_empty() {
                    return Some(());
                }
                let c = &self.captured[idx % self.captured.len()];
                let (dst, from, ecn) = (c.dst, c.from, c.ecn);
                let mut bytes = c.bytes.clone();
                for (pos, val, how) in edits {
                    if how == 3 {
                        bytes.push(val);
                        continue;
                    }
                    if bytes.is_empty() {
                        continue;
                    }
                    let pos = pos % bytes.len();
                    match how {
                        0 => bytes[pos] ^= val,
                        1 => bytes[pos] = val,
                        _ => bytes.truncate(pos),
                    }
                }
                let pristine = bytes == self.captured[idx % self.captured.len()].bytes;
                self.inject(dst, from, ecn, &bytes, pristine);
            }
            3 => {
                let us = input.u16()?;
                self.now += Duration::from_micros(us as u64);
                for i in [A, B] {
                    self.eps[i].handle_timeout(self.now);
                }
                self.drain_events();
            }
            4 => {
                let n = input.u8()? % 16 + 1;
                for _ in 0..n {
                    self.round();
                }
            }
            _ => {
                let sel = input.u8()?;
                let len = input.u16()? as usize % 16_384;
                let kind = [Kind::Send, Kind::Recv, Kind::Write][(sel / 2 % 3) as usize];
                self.post((sel & 1) as usize, kind, len, sel & 8 != 0);
                self.drain_events();
            }
        }
        Some(())
    }

    /// Deliver a datagram that did not come from `poll_transmit` as is (`pristine`: an exact
    /// copy of one that did).
    fn inject(&mut self, dst: usize, from: SocketAddr, ecn: Ecn, bytes: &[u8], pristine: bool) {
        let meta = RxMeta {
            from,
            ecn,
            virtual_payload: self.virt,
            int_hop: None,
        };
        let before = *self.eps[dst].stats();
        self.eps[dst].handle(self.now, meta, bytes);
        let after = self.eps[dst].stats();
        if !pristine && drops(after) == drops(&before) {
            self.side[dst].tainted = true;
        }
        // A refused SYN is dropped but answered with a CLOSE to its sender, carrying the
        // SYN's connection id and nonce: a replayed SYN with its mode changed makes B close
        // A's connection. So that drop reaches the peer when the datagram claims to be from it.
        if !pristine && after.drop_handshake != before.drop_handshake && from == ep_addr(1 - dst) {
            self.side[1 - dst].tainted = true;
        }
        self.drain_events();
    }

    /// One round of legit exchange: everything A and B want to send is delivered, then time
    /// moves on by one step (or, when nothing moved, to the earliest timer) and timers fire.
    fn round(&mut self) -> usize {
        let moved = self.pump(A) + self.pump(B);
        self.drain_events();
        if moved == 0 {
            let next = [A, B]
                .iter()
                .filter_map(|&i| self.eps[i].poll_timeout())
                .min();
            if let Some(t) = next
                && t > self.now
            {
                self.now = t;
            }
        } else {
            self.now += STEP;
        }
        for i in [A, B] {
            self.eps[i].handle_timeout(self.now);
        }
        self.drain_events();
        moved
    }

    /// Everything `src` wants to send now, each datagram checked and delivered at once.
    fn pump(&mut self, src: usize) -> usize {
        let mut hdr = [0u8; MAX_HEADER_LEN];
        let mut n = 0;
        while let Some(t) = self.eps[src].poll_transmit(self.now, &mut hdr) {
            n += 1;
            assert!(
                n <= MAX_BURST,
                "poll_transmit never returns None at {:?}",
                self.now
            );
            assert!(
                t.header_len <= hdr.len(),
                "header_len {} > buffer {}",
                t.header_len,
                hdr.len()
            );
            let mut dgram = hdr[..t.header_len].to_vec();
            match t.payload {
                Payload::None => {}
                Payload::Region { len, .. } => {
                    assert!(!self.virt, "a Region payload from a virtual region: {t:?}");
                    let bytes = self.eps[src]
                        .payload(&t.payload)
                        .unwrap_or_else(|| panic!("Region payload does not resolve: {t:?}"));
                    assert_eq!(bytes.len(), len as usize, "resolved payload length: {t:?}");
                    dgram.extend_from_slice(bytes);
                }
                Payload::Virtual(_) => {
                    assert!(self.virt, "a Virtual payload from a real region: {t:?}");
                }
            }
            self.check_emitted(src, &t, &dgram);
            let dst = [A, B].into_iter().find(|&i| ep_addr(i) == t.meta.to);
            let Some(dst) = dst else { continue };
            let from = ep_addr(src);
            if self.captured.len() == CAPTURE {
                self.captured.pop_front();
            }
            self.captured.push_back(Captured {
                dst,
                from,
                ecn: t.meta.ecn,
                bytes: dgram.clone(),
            });
            let meta = RxMeta {
                from,
                ecn: t.meta.ecn,
                virtual_payload: self.virt,
                int_hop: None,
            };
            self.eps[dst].handle(self.now, meta, &dgram);
        }
        n
    }

    /// What the engine emitted is a valid packet, and a data packet carries its message's
    /// bytes at `msg_offset`.
    fn check_emitted(&self, src: usize, t: &Transmit, dgram: &[u8]) {
        let mode = if self.virt {
            PayloadMode::Virtual
        } else {
            PayloadMode::Bytes
        };
        let p = parse(dgram, mode)
            .unwrap_or_else(|e| panic!("emitted datagram does not parse ({e:?}): {t:?}"));
        assert_eq!(p.header_len, t.header_len);
        assert_eq!(
            p.header.common.payload_len as usize,
            t.payload.len(),
            "{t:?}"
        );
        if let Ext::Data(d) = p.header.ext
            && !self.virt
        {
            // Sends are tagged (endpoint << 32 | offset); a write's tag is its remote offset,
            // which equals its offset in our send region.
            let base = match d.kind {
                MsgKind::Send => d.tag & 0xffff_ffff,
                MsgKind::Write => d.tag,
            } as usize
                + d.msg_offset as usize;
            if !is_pattern(src, base, p.payload) {
                // Which offset of the send region the payload does come from, if any.
                let from = (0..REGION).find(|&o| is_pattern(src, o, p.payload));
                panic!(
                    "data packet carries the wrong bytes (expected send region offset {base}, \
                     found {from:?}): {t:?} {:?}",
                    p.header
                );
            }
        }
    }

    fn drain_events(&mut self) {
        for me in [A, B] {
            while let Some(ev) = self.eps[me].poll_event() {
                self.on_event(me, ev);
            }
        }
    }

    fn on_event(&mut self, me: usize, ev: Event) {
        match ev {
            Event::Connected { conn } => {
                assert_eq!(me, A, "only A connects: {ev:?}");
                assert_eq!(Some(conn), self.side[A].conn, "{ev:?}");
                assert!(!self.side[A].up, "Connected reported twice");
                self.side[A].up = true;
                if !A_RECVS_BEFORE_HANDSHAKE {
                    self.post_a_recvs();
                }
            }
            Event::Accepted {
                conn,
                peer,
                user_data,
            } => {
                assert_eq!(me, B, "A does not listen: {ev:?}");
                let s = &mut self.side[B];
                assert!(s.accepted.insert(conn), "{conn:?} accepted twice");
                if s.conn.is_none() {
                    if !s.tainted {
                        assert_eq!((peer, user_data), (ep_addr(A), USER_DATA), "{ev:?}");
                    }
                    s.conn = Some(conn);
                    s.up = true;
                    self.post_initial(B);
                }
            }
            Event::Completion(c) => self.on_completion(me, c),
            Event::ConnectionLost { conn, .. } | Event::Closed { conn } => {
                let s = &mut self.side[me];
                let left: Vec<_> = s.posted.iter().filter(|(_, p)| p.conn == conn).collect();
                assert!(
                    left.is_empty(),
                    "{ev:?} with requests outstanding: {left:?}"
                );
                if s.conn == Some(conn) {
                    s.lost = true;
                }
            }
        }
    }

    fn on_completion(&mut self, me: usize, c: Completion) {
        let peer = 1 - me;
        let clean = !self.side[me].tainted;
        if let CompletionKind::WriteReceived { imm } = c.kind {
            assert_eq!(c.wr, WrId(u64::MAX), "{c:?}");
            if clean {
                assert_eq!(Some(c.conn), self.side[me].conn, "{c:?}");
                let (off, len) = self.side[peer]
                    .notify
                    .remove(&imm)
                    .unwrap_or_else(|| panic!("WriteReceived not posted, or twice: {c:?}"));
                assert_eq!(c.len, len, "{c:?}");
                assert_eq!(c.status, Ok(()), "{c:?}");
                if !self.virt {
                    let got = self.mem[me][2].bytes(off, len as usize);
                    assert!(
                        is_pattern(peer, off, got),
                        "notified write's bytes are wrong: {c:?}"
                    );
                }
            }
            return;
        }
        let p = self.side[me]
            .posted
            .remove(&c.wr)
            .unwrap_or_else(|| panic!("completion of a request not outstanding: {c:?}"));
        assert_eq!(c.conn, p.conn, "{c:?} {p:?}");
        match p.kind {
            Kind::Send => {
                assert_eq!(c.kind, CompletionKind::Send, "{c:?}");
                assert_eq!(c.len, p.len, "{c:?}");
            }
            Kind::Write => {
                assert_eq!(c.kind, CompletionKind::Write, "{c:?}");
                assert_eq!(c.len, p.len, "{c:?}");
                // `Completion::tag` is documented as zero for writes, but a write failed by a
                // lost or closed connection reports its remote offset (`flush_requests` passes
                // the message's tag field, which holds it); accept that until it is settled.
                let flushed = c.status.is_err() && c.tag == p.off as u64;
                assert!(
                    c.tag == 0 || flushed,
                    "a write's completion tag is not zero: {c:?}"
                );
                // The bytes landed in the peer's region, if nothing else could write there and
                // no forged ACK could have completed the write early.
                if c.status.is_ok() && clean && !self.side[peer].tainted && !self.virt {
                    let got = self.mem[peer][2].bytes(p.off, p.len as usize);
                    assert!(
                        is_pattern(me, p.off, got),
                        "completed write's bytes are wrong: {c:?}"
                    );
                }
            }
            Kind::Recv => {
                assert_eq!(c.kind, CompletionKind::Recv, "{c:?}");
                if !clean || matches!(c.status, Err(WrError::ConnectionLost(_) | WrError::Closed)) {
                    return;
                }
                let Some(&(tag, off, len)) = self.side[peer].sends.get(p.index) else {
                    panic!(
                        "receive #{} completed, the peer posted no such send: {c:?}",
                        p.index
                    );
                };
                assert_eq!((c.tag, c.len), (tag, len), "receive #{}: {c:?}", p.index);
                let want = if len > p.len {
                    Err(WrError::Truncated {
                        message: len,
                        buffer: p.len,
                    })
                } else {
                    Ok(())
                };
                assert_eq!(c.status, want, "{c:?}");
                if !self.virt {
                    let n = len.min(p.len) as usize;
                    let got = self.mem[me][1].bytes(p.off, n);
                    assert!(
                        is_pattern(peer, off, got),
                        "received bytes are wrong: {c:?}"
                    );
                }
            }
        }
    }

    /// Every send and write completed, every receive with a matching send completed, every
    /// notify reported.
    fn settled(&self) -> bool {
        [A, B].into_iter().all(|me| {
            let s = &self.side[me];
            let matched = s.recvs.len().min(self.side[1 - me].sends.len());
            s.posted
                .values()
                .all(|p| p.kind == Kind::Recv && p.index >= matched)
                && s.notify.is_empty()
        })
    }

    fn finish(mut self) {
        let clean = [A, B].iter().all(|&i| {
            let s = &self.side[i];
            !s.tainted && s.up && !s.lost
        });
        if clean {
            let mut rounds = 0;
            while !self.settled() {
                rounds += 1;
                assert!(
                    rounds <= DRAIN_ROUNDS,
                    "no progress in {DRAIN_ROUNDS} clean rounds: A {:?} {:?} {:?} B {:?} {:?} {:?}",
                    self.side[A],
                    self.eps[A].stats(),
                    self.eps[A].conn_stats(self.side[A].conn.expect("up")),
                    self.side[B],
                    self.eps[B].stats(),
                    self.eps[B].conn_stats(self.side[B].conn.expect("up")),
                );
                self.round();
            }
        }
        let World { eps, side, mem, .. } = self;
        drop(eps);
        // The engine is gone: every byte may be read now.
        for (i, m) in mem.iter().enumerate() {
            assert!(m[0].bytes(0, REGION) == pattern(i), "a send region changed");
            // Receive buffers are handed out in increasing order, GUARD bytes apart.
            let mut gap_start = 0;
            for &(off, len) in side[i].slots.iter().chain([&(REGION, 0)]) {
                let gap = m[1].bytes(gap_start, off - gap_start);
                assert!(
                    gap == &ZEROS[..gap.len()],
                    "receive region written outside the receive buffers, in {gap_start}..{off}"
                );
                gap_start = off + len;
            }
        }
    }
}
