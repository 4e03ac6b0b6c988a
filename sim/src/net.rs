//! The simulated network: switch output queues, host NICs driving real `Endpoint`s, and the
//! workload bookkeeping.
//!
//! Contract: single-threaded and deterministic; every random draw comes from one seeded
//! [`Rng`] in event order. The transport runs unchanged in length-only mode
//! (`RxMeta::virtual_payload`): only headers travel, payload lengths count on the wire.
//!
//! Model (store-and-forward, no switch latency):
//! * a host NIC pulls one datagram from its endpoint (`poll_transmit`) whenever its port is
//!   idle, so the endpoint's own pacing and CC decide what leaves; timers are driven from
//!   `poll_timeout`;
//! * a switch output port is a FIFO with a byte buffer plus a priority FIFO for trimmed
//!   headers (served first); RED ECN marks on enqueue by the queue in bytes; INT records are
//!   stamped when a packet starts serialising (queue behind it, rate, bytes sent, time) and
//!   handed to the endpoint at delivery: all hops but the last are written into the header
//!   with `weir_wire` (parse, push, emit), the last goes through `RxMeta::int_hop`;
//! * every link may lose a packet with `link_loss`.
//!
//! Not modelled yet: PFC, switch processing latency, cut-through forwarding.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use weir_base::{Duration, Instant, Rate, Rng};
use weir_transport::{
    CompletionKind, Config, ConnId, Ecn, Endpoint, Event, RegionId, RxMeta, WorkRequest, WrId,
};
use weir_wire::{Flags, IntHop, MAX_HEADER_LEN, Opcode, PayloadMode};

use crate::event::{Ev, EventQueue};
use crate::scenario::{QueuePolicy, Routing, SwitchConfig};
use crate::topology::Graph;

/// A packet in flight.
#[derive(Debug, Default)]
struct Pkt {
    hdr: Vec<u8>,
    src: u32,
    dst: u32,
    entropy: u16,
    /// Bytes on the wire (frame overhead, header, payload).
    wire: u32,
    ecn: Ecn,
    data: bool,
    int: bool,
    trimmed: bool,
    hops: Vec<IntHop>,
}

/// An output port.
#[derive(Debug)]
struct Port {
    peer: u32,
    rate: Rate,
    delay: Duration,
    queue: VecDeque<u32>,
    prio: VecDeque<u32>,
    queued: u64,
    prio_queued: u64,
    busy: bool,
    tx_bytes: u64,
}

/// One flow of the workload.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Flow {
    pub(crate) src: u32,
    pub(crate) dst: u32,
    pub(crate) bytes: u64,
    pub(crate) src_conn: Option<ConnId>,
    pub(crate) dst_conn: Option<ConnId>,
    pub(crate) send_done: Option<Instant>,
    pub(crate) recv_done: Option<Instant>,
    /// Completions with an error, a wrong length, or more than one per request.
    pub(crate) bad: u32,
}

/// Network-wide counters.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counters {
    pub(crate) drops: u64,
    pub(crate) trims: u64,
    pub(crate) ecn_marks: u64,
    pub(crate) max_queue: u64,
    pub(crate) events: u64,
    pub(crate) packets: u64,
    pub(crate) int_records: u64,
}

/// The whole simulation state.
#[allow(missing_debug_implementations)] // Endpoint is not Debug
pub(crate) struct Net {
    pub(crate) now: Instant,
    g: Graph,
    ports: Vec<Vec<Port>>,
    pub(crate) eps: Vec<Endpoint>,
    timer: Vec<Option<Instant>>,
    q: EventQueue,
    pkts: Vec<Pkt>,
    free: Vec<u32>,
    rng: Rng,
    sw: SwitchConfig,
    overhead: u32,
    pub(crate) flows: Vec<Flow>,
    /// (host, request) → (flow, is send).
    wrs: HashMap<(u32, WrId), (usize, bool)>,
    pub(crate) c: Counters,
    hdr: Vec<u8>,
}

/// Address of host `h`.
pub(crate) fn addr(h: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0A00_0000u32 + h + 1)), 4791)
}

fn host_of(a: SocketAddr) -> Option<u32> {
    match a.ip() {
        IpAddr::V4(v) => u32::from(v).checked_sub(0x0A00_0001),
        IpAddr::V6(_) => None,
    }
}

/// splitmix64 finaliser: the ECMP hash.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Net {
    pub(crate) fn new(
        g: Graph,
        config: Config,
        sw: SwitchConfig,
        overhead: u32,
        seed: u64,
    ) -> Result<Net, String> {
        let mut rng = Rng::new(seed);
        let mut eps = Vec::with_capacity(g.hosts as usize);
        for h in 0..g.hosts {
            let mut e =
                Endpoint::new(config, addr(h), rng.next_u64()).map_err(|e| e.to_string())?;
            e.listen(true);
            eps.push(e);
        }
        let ports = g
            .ports
            .iter()
            .map(|ps| {
                ps.iter()
                    .map(|p| Port {
                        peer: p.peer,
                        rate: p.rate,
                        delay: p.delay,
                        queue: VecDeque::new(),
                        prio: VecDeque::new(),
                        queued: 0,
                        prio_queued: 0,
                        busy: false,
                        tx_bytes: 0,
                    })
                    .collect()
            })
            .collect();
        Ok(Net {
            now: Instant::ZERO,
            timer: vec![None; g.hosts as usize],
            g,
            ports,
            eps,
            q: EventQueue::default(),
            pkts: Vec::new(),
            free: Vec::new(),
            rng,
            sw,
            overhead,
            flows: Vec::new(),
            wrs: HashMap::new(),
            c: Counters::default(),
            hdr: vec![0; MAX_HEADER_LEN],
        })
    }

    /// Hosts in the network.
    pub(crate) fn hosts(&self) -> u32 {
        self.g.hosts
    }

    /// Links on a shortest path between two hosts.
    pub(crate) fn path_links(&self, src: u32, dst: u32) -> u64 {
        self.g.path_links(src, dst)
    }

    /// Open the connection of every flow and run until all are established (or `limit`).
    pub(crate) fn connect_all(&mut self, limit: Instant) -> bool {
        for i in 0..self.flows.len() {
            let f = self.flows[i];
            let c = self.eps[f.src as usize].connect(self.now, addr(f.dst), i as u64);
            self.flows[i].src_conn = Some(c);
            self.service(f.src, false);
        }
        self.run_until(limit, |n| {
            n.flows
                .iter()
                .all(|f| f.src_conn.is_some() && f.dst_conn.is_some())
        })
    }

    /// Post every flow's receive and send now.
    pub(crate) fn start_flows(&mut self) -> Result<(), String> {
        for i in 0..self.flows.len() {
            let f = self.flows[i];
            let (Some(sc), Some(dc)) = (f.src_conn, f.dst_conn) else {
                return Err(format!("flow {i} has no connection"));
            };
            let now = self.now;
            let rr: RegionId = self.eps[f.dst as usize].register_virtual(f.bytes, false);
            let rw = self.eps[f.dst as usize]
                .post(
                    now,
                    dc,
                    WorkRequest::Recv {
                        region: rr,
                        offset: 0,
                        len: f.bytes,
                        tag: Some(i as u64),
                    },
                )
                .map_err(|e| format!("flow {i}: recv: {e:?}"))?;
            self.wrs.insert((f.dst, rw), (i, false));
            let sr = self.eps[f.src as usize].register_virtual(f.bytes, false);
            let sw = self.eps[f.src as usize]
                .post(
                    now,
                    sc,
                    WorkRequest::Send {
                        region: sr,
                        offset: 0,
                        len: f.bytes,
                        tag: i as u64,
                    },
                )
                .map_err(|e| format!("flow {i}: send: {e:?}"))?;
            self.wrs.insert((f.src, sw), (i, true));
        }
        for h in 0..self.g.hosts {
            self.service(h, false);
        }
        Ok(())
    }

    /// Process events until `done` holds or the next event is past `limit`.
    pub(crate) fn run_until(&mut self, limit: Instant, done: impl Fn(&Net) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            let Some((at, ev)) = self.q.pop() else {
                return false;
            };
            if at > limit {
                self.q.push(at, ev);
                return false;
            }
            self.now = at;
            self.c.events += 1;
            match ev {
                Ev::Arrive { node, pkt } => {
                    if node < self.g.hosts {
                        self.deliver(node, pkt);
                    } else {
                        self.forward(node, pkt);
                    }
                }
                Ev::PortFree { node, port } => {
                    if let Some(p) = self.port(node, port) {
                        p.busy = false;
                    }
                    if node < self.g.hosts {
                        self.service(node, false);
                    } else {
                        self.start_tx(node, port);
                    }
                }
                Ev::Timer { host, at } => {
                    if self.timer[host as usize] == Some(at) {
                        self.timer[host as usize] = None;
                        self.eps[host as usize].handle_timeout(self.now);
                        self.service(host, true);
                    }
                }
            }
        }
    }

    fn port(&mut self, node: u32, port: u16) -> Option<&mut Port> {
        self.ports
            .get_mut(node as usize)
            .and_then(|p| p.get_mut(usize::from(port)))
    }

    /// After any input to host `h`: collect events, let the NIC pull a datagram, re-arm the
    /// timer.
    fn service(&mut self, h: u32, from_timer: bool) {
        let hi = h as usize;
        self.drain_events(h);
        if !self.ports[hi][0].busy {
            let mut hdr = std::mem::take(&mut self.hdr);
            hdr.resize(MAX_HEADER_LEN, 0);
            if let Some(t) = self.eps[hi].poll_transmit(self.now, &mut hdr) {
                let hlen = t.header_len.min(hdr.len());
                if let Some(dst) = host_of(t.meta.to).filter(|&d| d < self.g.hosts) {
                    let parsed = weir_wire::parse(&hdr[..hlen], PayloadMode::Virtual).ok();
                    let (data, int) = parsed.map_or((false, false), |p| {
                        let c = &p.header.common;
                        (
                            c.opcode == Opcode::Data,
                            c.opcode == Opcode::Data && c.flags.contains(Flags::INT),
                        )
                    });
                    let wire = (hlen + t.payload.len()) as u32 + self.overhead;
                    let id = self.alloc(Pkt {
                        hdr: Vec::new(),
                        src: h,
                        dst,
                        entropy: t.meta.entropy,
                        wire,
                        ecn: t.meta.ecn,
                        data,
                        int,
                        trimmed: false,
                        hops: Vec::new(),
                    });
                    let p = &mut self.pkts[id as usize];
                    p.hdr.clear();
                    p.hdr.extend_from_slice(&hdr[..hlen]);
                    self.c.packets += 1;
                    self.transmit(h, 0, id);
                }
                self.drain_events(h);
            }
            self.hdr = hdr;
        }
        if let Some(t) = self.eps[hi].poll_timeout() {
            let floor = if from_timer {
                self.now + Duration::from_nanos(1)
            } else {
                self.now
            };
            let t = t.max(floor);
            if self.timer[hi].is_none_or(|cur| t < cur) {
                self.timer[hi] = Some(t);
                self.q.push(t, Ev::Timer { host: h, at: t });
            }
        }
    }

    fn drain_events(&mut self, h: u32) {
        while let Some(e) = self.eps[h as usize].poll_event() {
            match e {
                Event::Accepted {
                    conn, user_data, ..
                } => {
                    if let Some(f) = self.flows.get_mut(user_data as usize)
                        && f.dst == h
                    {
                        f.dst_conn = Some(conn);
                    }
                }
                Event::Completion(c) => {
                    let Some(&(i, send)) = self.wrs.get(&(h, c.wr)) else {
                        continue;
                    };
                    let f = &mut self.flows[i];
                    let slot = if send {
                        &mut f.send_done
                    } else {
                        &mut f.recv_done
                    };
                    let kind_ok = matches!(
                        (send, c.kind),
                        (true, CompletionKind::Send) | (false, CompletionKind::Recv)
                    );
                    if c.status.is_ok() && kind_ok && c.len == f.bytes && slot.is_none() {
                        *slot = Some(self.now);
                    } else {
                        f.bad += 1;
                    }
                }
                _ => {}
            }
        }
    }

    /// Host `h` receives packet `id`.
    fn deliver(&mut self, h: u32, id: u32) {
        let mut p = std::mem::take(&mut self.pkts[id as usize]);
        self.free.push(id);
        let mut int_hop = None;
        if let Some(last) = p.hops.pop() {
            int_hop = Some(last);
            if !p.hops.is_empty()
                && let Ok(parsed) = weir_wire::parse(&p.hdr, PayloadMode::Virtual)
            {
                let mut header = parsed.header;
                for &hop in &p.hops {
                    let _ = header.int.push(hop);
                }
                let mut buf = [0u8; MAX_HEADER_LEN];
                if let Ok(n) = header.emit(&mut buf) {
                    p.hdr.clear();
                    p.hdr.extend_from_slice(&buf[..n]);
                }
            }
        }
        let meta = RxMeta {
            from: addr(p.src),
            ecn: p.ecn,
            virtual_payload: true,
            int_hop,
        };
        self.eps[h as usize].handle(self.now, meta, &p.hdr);
        // Recycle the allocations.
        p.hops.clear();
        self.pkts[id as usize] = Pkt {
            hdr: p.hdr,
            hops: p.hops,
            ..Pkt::default()
        };
        self.service(h, false);
    }

    /// Switch `node` received packet `id`: pick the output port and enqueue.
    fn forward(&mut self, node: u32, id: u32) {
        let p = &self.pkts[id as usize];
        let (src, dst, entropy) = (p.src, p.dst, p.entropy);
        let tor = self.g.host_tor[dst as usize];
        let port = if self.g.tors[tor as usize] == node {
            self.g.host_port[dst as usize]
        } else {
            let hops = self.g.next_hops(node, tor);
            match hops.len() {
                0 => {
                    self.c.drops += 1;
                    self.release(id);
                    return;
                }
                1 => hops[0],
                n => {
                    let i = match self.sw.routing {
                        Routing::Ecmp => {
                            let key = (u64::from(src) << 40)
                                ^ (u64::from(dst) << 16)
                                ^ u64::from(entropy)
                                ^ (u64::from(node) << 56).rotate_left(7);
                            mix(key) % n as u64
                        }
                        Routing::Spray => self.rng.below(n as u64),
                    };
                    hops[i as usize]
                }
            }
        };
        self.enqueue(node, port, id);
    }

    fn enqueue(&mut self, node: u32, port: u16, id: u32) {
        let sw = self.sw;
        let Some(q) = self
            .ports
            .get_mut(node as usize)
            .and_then(|p| p.get_mut(usize::from(port)))
        else {
            self.c.drops += 1;
            self.release(id);
            return;
        };
        let p = &mut self.pkts[id as usize];
        let wire = u64::from(p.wire);
        // RED marking on the queue the packet joins (Floyd & Jacobson 1993; DCQCN's
        // Kmin/Kmax/Pmax profile, reference/transport-cc.md §5.1).
        if let (Some(kmin), Some(kmax)) = (sw.ecn_kmin_bytes, sw.ecn_kmax_bytes)
            && p.ecn != Ecn::NotEct
            && q.queued > kmin
        {
            let mark = if q.queued >= kmax {
                true
            } else {
                let frac = (q.queued - kmin) as f64 / (kmax - kmin).max(1) as f64;
                self.rng.chance(sw.ecn_pmax * frac)
            };
            if mark {
                p.ecn = Ecn::Ce;
                self.c.ecn_marks += 1;
            }
        }
        if q.queued + wire <= sw.buffer_bytes {
            q.queued += wire;
            q.queue.push_back(id);
            self.c.max_queue = self.c.max_queue.max(q.queued);
        } else if sw.policy == QueuePolicy::Trim && p.data && !p.trimmed {
            // UET packet trimming: forward the header at priority; the receiver NACKs it.
            let mut buf = [0u8; MAX_HEADER_LEN];
            let ok = weir_wire::parse(&p.hdr, PayloadMode::Virtual)
                .ok()
                .and_then(|parsed| {
                    let mut h = parsed.header;
                    h.common.flags.set(Flags::TRIMMED, true);
                    h.emit(&mut buf).ok()
                });
            if let Some(n) = ok {
                p.hdr.clear();
                p.hdr.extend_from_slice(&buf[..n]);
            }
            match ok {
                Some(n)
                    if q.prio_queued + n as u64 + u64::from(self.overhead) <= sw.buffer_bytes =>
                {
                    p.trimmed = true;
                    p.wire = n as u32 + self.overhead;
                    q.prio_queued += u64::from(p.wire);
                    q.prio.push_back(id);
                    self.c.trims += 1;
                }
                _ => {
                    self.c.drops += 1;
                    self.release(id);
                    return;
                }
            }
        } else {
            self.c.drops += 1;
            self.release(id);
            return;
        }
        if !q.busy {
            self.start_tx(node, port);
        }
    }

    /// Start serialising the next queued packet of a switch port, if idle.
    fn start_tx(&mut self, node: u32, port: u16) {
        let Some(q) = self
            .ports
            .get_mut(node as usize)
            .and_then(|p| p.get_mut(usize::from(port)))
        else {
            return;
        };
        if q.busy {
            return;
        }
        let id = if let Some(id) = q.prio.pop_front() {
            q.prio_queued = q
                .prio_queued
                .saturating_sub(u64::from(self.pkts[id as usize].wire));
            id
        } else if let Some(id) = q.queue.pop_front() {
            q.queued = q
                .queued
                .saturating_sub(u64::from(self.pkts[id as usize].wire));
            id
        } else {
            return;
        };
        let p = &mut self.pkts[id as usize];
        if self.sw.int && p.int && p.data {
            p.hops.push(IntHop {
                qlen: q.queued.min(u64::from(u32::MAX)) as u32,
                rate_mbps: (q.rate.bps() / 1_000_000).min(u64::from(u32::MAX)) as u32,
                tx_bytes: q.tx_bytes.wrapping_add(u64::from(p.wire)),
                ts_ns: self.now.as_nanos(),
            });
            self.c.int_records += 1;
        }
        self.transmit(node, port, id);
    }

    /// Put packet `id` on the wire of `node`'s `port` (idle).
    fn transmit(&mut self, node: u32, port: u16, id: u32) {
        let wire = u64::from(self.pkts[id as usize].wire);
        let q = &mut self.ports[node as usize][usize::from(port)];
        q.busy = true;
        q.tx_bytes = q.tx_bytes.wrapping_add(wire);
        let done = self.now + q.rate.serialization_time(wire);
        let arrive = done + q.delay;
        let peer = q.peer;
        self.q.push(done, Ev::PortFree { node, port });
        if self.sw.link_loss > 0.0 && self.rng.chance(self.sw.link_loss) {
            self.c.drops += 1;
            self.release(id);
        } else {
            self.q.push(
                arrive,
                Ev::Arrive {
                    node: peer,
                    pkt: id,
                },
            );
        }
    }

    fn alloc(&mut self, p: Pkt) -> u32 {
        if let Some(id) = self.free.pop() {
            let slot = &mut self.pkts[id as usize];
            let (hdr, hops) = (
                std::mem::take(&mut slot.hdr),
                std::mem::take(&mut slot.hops),
            );
            *slot = Pkt { hdr, hops, ..p };
            id
        } else {
            self.pkts.push(p);
            (self.pkts.len() - 1) as u32
        }
    }

    fn release(&mut self, id: u32) {
        if let Some(p) = self.pkts.get_mut(id as usize) {
            p.hops.clear();
            self.free.push(id);
        }
    }

    /// Sum of the senders' retransmissions.
    pub(crate) fn retransmits(&self) -> u64 {
        self.flows
            .iter()
            .filter_map(|f| {
                f.src_conn
                    .and_then(|c| self.eps[f.src as usize].conn_stats(c))
                    .map(|s| s.retransmits)
            })
            .sum()
    }
}
