//! The simulated network: switch output queues, PFC, host NICs driving real `Endpoint`s, the
//! intra-server interconnect, faults, time-series sampling, and the message bookkeeping.
//!
//! Contract: single-threaded and deterministic; every random draw comes from one seeded
//! [`Rng`] in event order. The transport runs unchanged in length-only mode
//! (`RxMeta::virtual_payload`): only headers travel, payload lengths count on the wire.
//!
//! Model (store-and-forward, no switch latency):
//! * a host NIC pulls one datagram from its endpoint (`poll_transmit`) whenever its port is
//!   idle and not paused, so the endpoint's own pacing and CC decide what leaves; timers are
//!   driven from `poll_timeout`;
//! * a switch output port is a FIFO with a byte buffer plus a priority FIFO for trimmed
//!   headers (served first); RED ECN marks on enqueue by the queue in bytes; INT records are
//!   stamped when a packet starts serialising (queue behind it, rate, bytes sent, time) and
//!   handed to the endpoint at delivery: all hops but the last are written into the header
//!   with `weir_wire` (parse, push, emit), the last goes through `RxMeta::int_hop`;
//! * PFC (one priority class): every switch counts the bytes each ingress port has buffered
//!   (from arrival until the packet starts leaving); at `pfc_xoff_bytes` it sends PAUSE to the
//!   upstream port, which stops starting new packets one link delay later (the frame being
//!   serialised finishes); at `pfc_xon_bytes` it sends RESUME. Admission is then per ingress
//!   port (`buffer_bytes` each), and validation guarantees xoff + headroom fits, so nothing
//!   drops; head-of-line blocking and pause propagation follow from the one class;
//! * every link may lose a packet with `link_loss` (or a per-link loss set by a fault event);
//!   a failed link loses what is sent on it or was in flight on it, and routes are recomputed;
//! * a message's `Send` is handed to the transport once its sender is ready *and* its `Recv`
//!   is posted (rendezvous, as NCCL's receiver-posted buffers enforce; the credit is modelled
//!   as free), so a collective rank never runs ahead of its receivers into unexpected buffers;
//! * messages between GPUs of one server take the intra-server link: serialised on the source
//!   GPU's egress and the destination GPU's ingress at the interconnect rate, delivered after
//!   its latency (no packets).
//!
//! After every event, [`Net::settle`] runs the consequences to a fixed point: completions
//! release dependent messages or advance collective ranks, which post work requests, whose
//! hosts are then serviced.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use weir_base::{Duration, Instant, Rate, Rng};
use weir_transport::{
    CompletionKind, Config, ConnId, Ecn, Endpoint, Event, RegionId, RxMeta, WorkRequest, WrId,
};
use weir_wire::{Flags, IntHop, MAX_HEADER_LEN, Opcode, PayloadMode};

use crate::Progress;
use crate::event::{Ev, EventQueue, MAX_NODES};
use crate::hugepages::HugePages;
use crate::scenario::{FaultAction, FaultEvent, QueuePolicy, Routing, SwitchConfig};
use crate::topology::Graph;
use crate::workload::{Driver, NEVER, NVLINK, Work};

/// Most samples the time series keeps.
pub(crate) const MAX_SAMPLES: usize = 20_000;

/// Header bytes a packet keeps inline: a data header (72 B), an ACK with up to four SACK words
/// (96 B). Longer ones (INT lists, long SACK bitmaps) go to [`PktExtra`].
const INLINE_HDR: usize = 96;

/// A packet in flight: two cache lines, its header inline, so that forwarding it at a switch
/// reads one line and delivering it to a host two, with nothing behind a pointer to wait for
/// (the header used to be a vector of its own: one more cold line at every delivery, and one
/// more step in the chain of prefetches).
#[derive(Debug)]
#[repr(C, align(64))]
struct Pkt {
    src: u32,
    dst: u32,
    /// Bytes on the wire (frame overhead, header, payload).
    wire: u32,
    entropy: u16,
    /// Port of the current node the packet arrived on.
    in_port: u16,
    /// Header length (`hdr` holds it when it fits, else `extra`).
    hdr_len: u16,
    ecn: Ecn,
    data: bool,
    int: bool,
    trimmed: bool,
    /// Counted against `in_port`'s PFC ingress bytes.
    counted: bool,
    /// A long header, INT records; kept (emptied) when the slot is reused.
    extra: Option<Box<PktExtra>>,
    hdr: [u8; INLINE_HDR],
}

const _: () = assert!(std::mem::size_of::<Pkt>() <= 128);

/// What does not fit a [`Pkt`]'s two lines.
#[derive(Debug, Default)]
struct PktExtra {
    hdr: Vec<u8>,
    hops: Vec<IntHop>,
}

impl Pkt {
    /// The header bytes.
    fn header(&self) -> &[u8] {
        let n = usize::from(self.hdr_len);
        match (self.hdr.get(..n), &self.extra) {
            (Some(h), _) => h,
            (None, Some(x)) => &x.hdr,
            (None, None) => &[],
        }
    }

    fn set_header(&mut self, b: &[u8]) {
        // At most `MAX_HEADER_LEN` (a u16, checked by `weir_wire`).
        self.hdr_len = b.len() as u16;
        if let Some(inline) = self.hdr.get_mut(..b.len()) {
            inline.copy_from_slice(b);
        } else {
            let x = self.extra.get_or_insert_with(Box::default);
            x.hdr.clear();
            x.hdr.extend_from_slice(b);
        }
    }

    /// INT records stamped so far.
    fn hops(&self) -> &[IntHop] {
        self.extra.as_ref().map_or(&[], |x| &x.hops)
    }
}

/// An output port (one direction of a link). Three cache lines, hottest first: what every
/// packet reads (line 0), the queues (line 1), then the rest (the byte count a transmission
/// adds to, PFC and sampling state).
#[derive(Debug)]
#[repr(C, align(64))]
pub(crate) struct Port {
    /// Serialising until then (idle once `now` reaches it).
    busy_until: Instant,
    pub(crate) queued: u64,
    prio_queued: u64,
    pub(crate) rate: Rate,
    delay: Duration,
    loss: f64,
    pub(crate) peer: u32,
    peer_port: u16,
    /// Switch ports: a `PortFree` wake-up is scheduled (only while packets wait).
    wake: bool,
    /// PFC: transmission paused by the peer.
    paused: bool,
    pub(crate) up: bool,
    /// PFC: this node has paused the peer.
    pause_sent: bool,
    queue: VecDeque<Queued>,
    prio: VecDeque<Queued>,
    pub(crate) tx_bytes: u64,
    /// PFC: bytes buffered at this node that arrived through this port.
    ingress: u64,
    paused_since: Instant,
    pub(crate) paused_ps: u64,
    sampled: u64,
}

const _: () = assert!(std::mem::size_of::<Port>() <= 192);

/// A packet waiting at a switch port, with its size: a port that frees starts the next one
/// without reading the packet itself.
#[derive(Clone, Copy, Debug)]
struct Queued {
    id: u32,
    wire: u32,
}

impl Port {
    /// A RESUME (or the link failing) ends a pause: count its duration. False when the port
    /// was not paused.
    fn unpause(&mut self, now: Instant) -> bool {
        if !self.paused {
            return false;
        }
        self.paused = false;
        self.paused_ps += now.saturating_since(self.paused_since).as_ps();
        true
    }

    /// Time paused so far, counting a pause still in force until `now`.
    fn paused_total(&self, now: Instant) -> u64 {
        let open = if self.paused {
            now.saturating_since(self.paused_since).as_ps()
        } else {
            0
        };
        self.paused_ps + open
    }
}

/// Network-wide counters.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counters {
    pub(crate) drops: u64,
    pub(crate) fault_drops: u64,
    pub(crate) trims: u64,
    pub(crate) ecn_marks: u64,
    pub(crate) max_queue: u64,
    pub(crate) events: u64,
    pub(crate) packets: u64,
    pub(crate) int_records: u64,
    pub(crate) pauses: u64,
}

/// The sampled time series, raw.
#[derive(Debug, Default)]
pub(crate) struct SeriesRec {
    pub(crate) t: Vec<u64>,
    pub(crate) qmax: Vec<u64>,
    pub(crate) qmean: Vec<f64>,
    /// Per sample, bytes each directed port sent in the interval (port order of `ports`,
    /// flattened).
    pub(crate) bytes: Vec<u32>,
    pub(crate) nports: usize,
}

/// The whole simulation state.
pub(crate) struct Net {
    pub(crate) now: Instant,
    pub(crate) g: Graph,
    pub(crate) ports: Vec<Vec<Port>>,
    pub(crate) eps: Vec<Endpoint>,
    timer: Vec<Option<Instant>>,
    q: EventQueue,
    pkts: Vec<Pkt>,
    free: Vec<u32>,
    rng: Rng,
    sw: SwitchConfig,
    /// Bytes each node holds in its output queues' shared buffer (`shared_buffer_bytes`).
    shared_used: Vec<u64>,
    overhead: u32,
    pub(crate) c: Counters,
    hdr: Vec<u8>,
    pub(crate) w: Work,
    pub(crate) conns: Vec<(Option<ConnId>, Option<ConnId>)>,
    accepted: usize,
    /// Connections whose connecting side completed its handshake.
    connected: usize,
    sends: HashMap<(u32, WrId), u32>,
    region: Vec<RegionId>,
    /// Intra-server link: when each GPU's egress and ingress are free.
    nv_free: Vec<Instant>,
    nv_in_free: Vec<Instant>,
    pfc: Option<(u64, u64)>,
    done_q: VecDeque<(u32, bool)>,
    dirty: Vec<u32>,
    is_dirty: Vec<bool>,
    scratch: Vec<u32>,
    /// Time zero of the workload (after the handshakes).
    pub(crate) start: Instant,
    pub(crate) msgs_done: usize,
    faults: Vec<FaultEvent>,
    sample_every: Duration,
    pub(crate) series: SeriesRec,
    progress_every: u64,
    /// Prefetch the state of upcoming events ([`Net::prefetch_for`]); a hint, on from
    /// [`PREFETCH_MIN_HOSTS`] hosts.
    pub(crate) prefetch: bool,
    /// Back the heap with transparent huge pages ([`HugePages`]); a hint, on from
    /// [`HUGE_MIN_HOSTS`] hosts.
    pub(crate) huge: Option<HugePages>,
}

/// How far ahead (in events of the current wheel slot) each prefetch stage looks
/// ([`Net::prefetch_for`]).
const PREFETCH_AHEAD: [usize; 4] = [4, 3, 2, 1];
/// Hosts from which the simulator prefetches: below, its state mostly stays in cache and the
/// hints cost more than they save (user CPU with huge pages on, without and with prefetching:
/// rail-1024 10.4 → 12.8 s, whose ring keeps few connections active; perm-1024 2.1 → 1.8 s).
const PREFETCH_MIN_HOSTS: u32 = 2048;
/// Hosts from which the simulator backs its heap with huge pages: from there its state (tens
/// of megabytes and more) misses the TLB. User + system CPU without and with them (medians):
/// 512-host rail 2.48 → 1.99 s, perm-1024 2.66 → 2.26 s, incast-1024 0.50 → 0.38 s,
/// rail-1024 12.4 → 11.4 s. Below they gain little and cost memory (websearch-320: 1.45 →
/// 1.42 s, 69 → 102 MB; perm-128 unchanged).
const HUGE_MIN_HOSTS: u32 = 512;

/// Events between two [`HugePages::poll`] calls (the heap grows as the run goes on).
const HUGE_EVERY: u64 = 1 << 12;

/// Ask the CPU to bring the cache line holding `r` closer.
#[inline(always)]
fn prefetch<T>(r: &T) {
    weir_base::prefetch::lines(r, 1);
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

/// Settings of a [`Net`] besides the graph and the workload.
pub(crate) struct NetConfig {
    pub(crate) transport: Config,
    pub(crate) switch: SwitchConfig,
    pub(crate) overhead: u32,
    pub(crate) seed: u64,
    pub(crate) faults: Vec<FaultEvent>,
    pub(crate) sample_every: Duration,
    pub(crate) progress_every: u64,
    /// Prefetching and huge pages forced on or off; `None`: prefetching from
    /// `PREFETCH_MIN_HOSTS`, huge pages from `HUGE_MIN_HOSTS`.
    pub(crate) hints: Option<bool>,
}

impl Net {
    pub(crate) fn new(g: Graph, w: Work, cfg: NetConfig) -> Result<Net, String> {
        let prefetch = cfg.hints.unwrap_or(g.hosts >= PREFETCH_MIN_HOSTS);
        let huge = cfg.hints.unwrap_or(g.hosts >= HUGE_MIN_HOSTS);
        if g.ports.len() as u64 >= MAX_NODES {
            return Err(format!(
                "{} nodes: at most {}",
                g.ports.len(),
                MAX_NODES - 1
            ));
        }
        let mut rng = Rng::new(cfg.seed);
        let hosts = g.hosts as usize;
        let mut eps = Vec::with_capacity(hosts);
        let mut region = Vec::with_capacity(hosts);
        for h in 0..g.hosts {
            let mut e =
                Endpoint::new(cfg.transport, addr(h), rng.next_u64()).map_err(|e| e.to_string())?;
            e.listen(true);
            // One virtual region per host covers every message (payloads are lengths only).
            region.push(e.register_virtual(1 << 40, false));
            eps.push(e);
        }
        let sw = cfg.switch;
        let nodes = g.ports.len();
        let ports: Vec<Vec<Port>> = g
            .ports
            .iter()
            .map(|ps| {
                ps.iter()
                    .map(|p| Port {
                        peer: p.peer,
                        peer_port: p.peer_port,
                        rate: p.rate,
                        delay: p.delay,
                        queue: VecDeque::new(),
                        prio: VecDeque::new(),
                        queued: 0,
                        prio_queued: 0,
                        busy_until: Instant::ZERO,
                        wake: false,
                        tx_bytes: 0,
                        paused: false,
                        paused_since: Instant::ZERO,
                        paused_ps: 0,
                        ingress: 0,
                        pause_sent: false,
                        up: true,
                        loss: sw.link_loss,
                        sampled: 0,
                    })
                    .collect()
            })
            .collect();
        let nports = ports.iter().map(Vec::len).sum();
        let pfc = sw.pfc_xoff_bytes.zip(sw.pfc_xon_bytes);
        Ok(Net {
            now: Instant::ZERO,
            timer: vec![None; hosts],
            conns: vec![(None, None); w.pairs.len()],
            accepted: 0,
            connected: 0,
            sends: HashMap::new(),
            region,
            nv_free: vec![Instant::ZERO; hosts],
            nv_in_free: vec![Instant::ZERO; hosts],
            pfc,
            done_q: VecDeque::new(),
            dirty: Vec::new(),
            is_dirty: vec![false; hosts],
            scratch: Vec::new(),
            start: Instant::ZERO,
            msgs_done: 0,
            faults: cfg.faults,
            sample_every: cfg.sample_every,
            series: SeriesRec {
                nports,
                ..SeriesRec::default()
            },
            progress_every: cfg.progress_every.max(1),
            prefetch,
            huge: huge.then(HugePages::new),
            g,
            ports,
            eps,
            q: EventQueue::default(),
            pkts: Vec::new(),
            free: Vec::new(),
            rng,
            sw,
            overhead: cfg.overhead,
            c: Counters::default(),
            shared_used: vec![0; nodes],
            hdr: vec![0; MAX_HEADER_LEN],
            w,
        })
    }

    /// Hosts in the network.
    pub(crate) fn hosts(&self) -> u32 {
        self.g.hosts
    }

    /// Open one connection per host pair that needs one and run until both ends of every one
    /// have it (or `limit`).
    pub(crate) fn connect_all(
        &mut self,
        limit: Instant,
        progress: &mut dyn FnMut(Progress),
    ) -> bool {
        for i in 0..self.w.pairs.len() {
            let (src, dst) = self.w.pairs[i];
            let c = self.eps[src as usize].connect(self.now, addr(dst), i as u64);
            self.conns[i].0 = Some(c);
            self.mark_dirty(src);
        }
        self.settle();
        let pairs = self.w.pairs.len();
        // Both ends: the acceptor has the connection once the connector's confirm arrives,
        // the connector half a round trip later (`docs/transport.md`, "Connection set-up").
        self.run_until(
            limit,
            &|n: &Net| n.accepted >= pairs && n.connected >= pairs,
            progress,
        )
    }

    /// Time zero of the workload: schedule the jobs, the samples and the faults.
    pub(crate) fn start_workload(&mut self) {
        self.start = self.now;
        if let Some(h) = &mut self.huge {
            h.advise();
        }
        for j in 0..self.w.jobs.len() {
            let at = self.start + Duration::from_ps(self.w.jobs[j].start_ps);
            self.q.push(at, Ev::JobStart { job: j as u32 });
        }
        for (i, f) in self.faults.iter().enumerate() {
            let at = self.start + Duration::from_micros(f.at_us);
            self.q.push(at, Ev::Fault { idx: i as u32 });
        }
        if self.sample_every > Duration::ZERO {
            self.q.push(self.start, Ev::Sample);
        }
    }

    /// Whether every message completed.
    pub(crate) fn all_done(&self) -> bool {
        self.msgs_done >= self.w.msgs.len()
    }

    /// Process events until `done` holds or the next event is past `limit`.
    pub(crate) fn run_until(
        &mut self,
        limit: Instant,
        done: &dyn Fn(&Net) -> bool,
        progress: &mut dyn FnMut(Progress),
    ) -> bool {
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
            if self.prefetch {
                for (stage, &k) in PREFETCH_AHEAD.iter().enumerate() {
                    if let Some(ev) = self.q.peek_ahead(k) {
                        self.prefetch_for(ev, stage);
                    }
                }
            }
            self.c.events += 1;
            if self.c.events.is_multiple_of(HUGE_EVERY)
                && let Some(h) = &mut self.huge
            {
                h.poll();
            }
            if self.c.events.is_multiple_of(self.progress_every) {
                progress(Progress {
                    now_ps: self.now.saturating_since(self.start).as_ps(),
                    events: self.c.events,
                    messages_done: self.msgs_done as u64,
                    messages: self.w.msgs.len() as u64,
                });
            }
            self.dispatch(ev);
            self.settle();
        }
    }

    fn dispatch(&mut self, ev: Ev) {
        match ev {
            Ev::Arrive { node, pkt } => {
                let in_port = self.pkts[pkt as usize].in_port;
                let link_up = self.port(node, in_port).is_some_and(|p| p.up);
                if !link_up {
                    // In flight on a link that failed meanwhile.
                    self.c.drops += 1;
                    self.c.fault_drops += 1;
                    self.release(pkt);
                } else if node < self.g.hosts {
                    self.deliver(node, pkt);
                } else {
                    self.forward(node, pkt);
                }
            }
            Ev::PortFree { node, port } => {
                if let Some(p) = self.port(node, port) {
                    p.wake = false;
                }
                if node < self.g.hosts {
                    self.service(node, false);
                } else {
                    self.start_tx(node, port);
                }
            }
            Ev::Timer { host } => {
                if self.timer[host as usize] == Some(self.now) {
                    self.timer[host as usize] = None;
                    self.eps[host as usize].handle_timeout(self.now);
                    self.service(host, true);
                }
            }
            Ev::Pause { node, port, on } => self.pause(node, port, on),
            Ev::JobStart { job } => self.job_start(job as usize),
            Ev::Start { msg } => self.post_both(msg),
            Ev::NvDone { msg } => {
                self.done_q.push_back((msg, false));
                self.done_q.push_back((msg, true));
            }
            Ev::Sample => self.sample(),
            Ev::Fault { idx } => self.fault(idx as usize),
        }
    }

    /// Prefetch the state event `ev` will touch (a hint; nothing observable changes). Stage 0
    /// runs furthest ahead and asks for what the event names directly (its packet, port,
    /// endpoint); each later stage, one event nearer, reads the lines the previous one asked
    /// for (cached by then) to reach one step further: the port a packet arrived on and its
    /// header bytes, then the connection the endpoint will use. At thousands of hosts every
    /// event's state is cold and the simulator waits on memory; the current wheel slot is
    /// sorted, so the next events are known.
    fn prefetch_for(&self, ev: Ev, stage: usize) {
        let host = |n: u32| {
            (n < self.g.hosts)
                .then(|| self.eps.get(n as usize))
                .flatten()
        };
        let port_of = |n: u32, i: u16| {
            self.ports
                .get(n as usize)
                .and_then(|ps| ps.get(usize::from(i)))
        };
        match ev {
            Ev::Arrive { node, pkt } => {
                let Some(p) = self.pkts.get(pkt as usize) else {
                    return;
                };
                match stage {
                    0 => {
                        // Both lines: a host reads the header, which runs into the second.
                        weir_base::prefetch::lines(p, 2);
                        if let Some(ps) = self.ports.get(node as usize) {
                            prefetch(ps);
                        }
                    }
                    1 => {
                        if let Some(q) = port_of(node, p.in_port) {
                            prefetch(q);
                        }
                        if let Some(ep) = host(node) {
                            ep.prefetch_state();
                        }
                    }
                    2 | 3 => {
                        if let Some(ep) = host(node) {
                            if stage == 2 {
                                ep.prefetch_handle(p.header());
                            }
                        } else if let Some(q) =
                            self.route_hint(node, p).and_then(|o| port_of(node, o))
                        {
                            if stage == 2 {
                                weir_base::prefetch::lines(q, 3);
                            } else if let Some(x) = q.queue.back() {
                                prefetch(x);
                            }
                        }
                    }
                    _ => {}
                }
            }
            Ev::PortFree { node, port } => {
                // The nodes' port vectors (a few hundred kilobytes) stay cached: the port
                // itself is asked for first.
                let Some(q) = port_of(node, port) else {
                    return;
                };
                if let Some(ep) = host(node) {
                    match stage {
                        0 => {
                            weir_base::prefetch::lines(q, 3);
                            ep.prefetch_state();
                        }
                        1 => ep.prefetch_transmit(true),
                        2 => ep.prefetch_transmit(false),
                        _ => {}
                    }
                    return;
                }
                match stage {
                    0 => weir_base::prefetch::lines(q, 3),
                    1 => {
                        let (a, b) = q.prio.as_slices();
                        let (c, _) = q.queue.as_slices();
                        if let Some(x) = a.first().or(b.first()).or(c.first()) {
                            prefetch(x);
                        }
                    }
                    2 => {
                        if let Some(x) = q.prio.front().or(q.queue.front())
                            && let Some(p) = self.pkts.get(x.id as usize)
                        {
                            prefetch(p);
                        }
                    }
                    _ => {}
                }
            }
            Ev::Timer { host: h } => {
                if let Some(ep) = host(h) {
                    match stage {
                        0 => ep.prefetch_state(),
                        1 | 2 => ep.prefetch_timeout(stage == 1),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }

    /// The output port `forward` will most likely pick for `p` at switch `node` (a prefetch
    /// hint: `None` where the choice draws from the RNG or scans queues).
    fn route_hint(&self, node: u32, p: &Pkt) -> Option<u16> {
        let tor = *self.g.host_tor.get(p.dst as usize)?;
        if *self.g.tors.get(tor as usize)? == node {
            return self.g.host_port.get(p.dst as usize).copied();
        }
        let hops = self.g.next_hops(node, tor);
        match hops.len() {
            0 => None,
            1 => Some(hops[0]),
            n if self.sw.routing == Routing::Ecmp => {
                let key = (u64::from(p.src) << 40)
                    ^ (u64::from(p.dst) << 16)
                    ^ u64::from(p.entropy)
                    ^ (u64::from(node) << 56).rotate_left(7);
                Some(hops[(mix(key) % n as u64) as usize])
            }
            _ => None,
        }
    }

    fn port(&mut self, node: u32, port: u16) -> Option<&mut Port> {
        self.ports
            .get_mut(node as usize)
            .and_then(|p| p.get_mut(usize::from(port)))
    }

    fn mark_dirty(&mut self, h: u32) {
        if let Some(d) = self.is_dirty.get_mut(h as usize)
            && !*d
        {
            *d = true;
            self.dirty.push(h);
        }
    }

    /// Run completions and host services to a fixed point.
    fn settle(&mut self) {
        loop {
            if let Some((m, send)) = self.done_q.pop_front() {
                self.side_done(m, send);
            } else if let Some(h) = self.dirty.pop() {
                self.is_dirty[h as usize] = false;
                self.service(h, false);
            } else {
                return;
            }
        }
    }

    // ----- workload -----

    fn job_start(&mut self, j: usize) {
        let job = &self.w.jobs[j];
        let (first, count) = (job.first_msg, job.msgs);
        if count == 0 {
            self.w.jobs[j].done_at = self.now;
            return;
        }
        match &job.driver {
            Driver::Dag { .. } => {
                for m in first..first + count {
                    if self.w.msgs[m as usize].deps_left == 0 {
                        self.release_msg(m);
                    }
                }
            }
            Driver::Steps(p) => {
                for r in 0..p.pending.len() {
                    self.advance(j, r);
                }
            }
        }
    }

    /// A DAG message whose dependencies are delivered: post it at its start time.
    fn release_msg(&mut self, m: u32) {
        let msg = self.w.msgs[m as usize];
        let job = &self.w.jobs[msg.job as usize];
        let Driver::Dag { start_off, .. } = &job.driver else {
            return;
        };
        let off = start_off
            .get((m - job.first_msg) as usize)
            .copied()
            .unwrap_or(0);
        let at = self.start + Duration::from_ps(job.start_ps.saturating_add(off));
        if at > self.now {
            self.q.push(at, Ev::Start { msg: m });
        } else {
            self.post_both(m);
        }
    }

    /// Rank `r` of collective job `j` enters its current group: post its sides.
    fn advance(&mut self, j: usize, r: usize) {
        let Driver::Steps(p) = &mut self.w.jobs[j].driver else {
            return;
        };
        let g = p.cur[r] as usize;
        if g + 1 >= p.rank_groups[r + 1] as usize {
            return; // this rank is done
        }
        let (a, b) = (p.gstart[g] as usize, p.gstart[g + 1] as usize);
        p.pending[r] = (b - a) as u32;
        let mut items = std::mem::take(&mut self.scratch);
        items.clear();
        items.extend_from_slice(&p.items[a..b]);
        for &m in &items {
            if self.w.msgs[m as usize].src_rank == r as u32 {
                self.post_send(m);
            } else {
                self.post_recv(m);
            }
        }
        self.scratch = items;
    }

    fn post_both(&mut self, m: u32) {
        self.post_recv(m);
        self.post_send(m);
    }

    /// The sender is ready to send `m`. The send starts once the receive is posted too
    /// (rendezvous: NCCL's receiver-posted buffers and credits; the credit is free here).
    fn post_send(&mut self, m: u32) {
        let msg = &mut self.w.msgs[m as usize];
        msg.send_ready = self.now;
        if msg.recv_ready != NEVER {
            self.start_send(m);
        }
    }

    /// Both sides of `m` are posted: hand the send to the transport (or the intra-server link).
    fn start_send(&mut self, m: u32) {
        let now = self.now;
        let msg = &mut self.w.msgs[m as usize];
        if msg.pair == NVLINK {
            self.nv_start(m);
            return;
        }
        let (src, len) = (msg.src, u64::from(msg.bytes));
        let Some(conn) = self.conns.get(msg.pair as usize).and_then(|c| c.0) else {
            msg.bad = msg.bad.saturating_add(1);
            return;
        };
        let wr = WorkRequest::Send {
            region: self.region[src as usize],
            offset: 0,
            len,
            tag: u64::from(m),
        };
        match self.eps[src as usize].post(now, conn, wr) {
            Ok(id) => {
                self.sends.insert((src, id), m);
                self.mark_dirty(src);
            }
            Err(_) => {
                let msg = &mut self.w.msgs[m as usize];
                msg.bad = msg.bad.saturating_add(1);
            }
        }
    }

    fn post_recv(&mut self, m: u32) {
        let now = self.now;
        let msg = &mut self.w.msgs[m as usize];
        msg.recv_ready = now;
        if msg.pair == NVLINK {
            if msg.send_ready != NEVER {
                self.nv_start(m);
            }
            return;
        }
        let waiting = msg.send_ready != NEVER;
        let (dst, len) = (msg.dst, u64::from(msg.bytes));
        let Some(conn) = self.conns.get(msg.pair as usize).and_then(|c| c.1) else {
            msg.bad = msg.bad.saturating_add(1);
            return;
        };
        let wr = WorkRequest::Recv {
            region: self.region[dst as usize],
            offset: 0,
            len,
            tag: Some(u64::from(m)),
        };
        if self.eps[dst as usize].post(now, conn, wr).is_ok() {
            self.mark_dirty(dst);
        } else {
            let msg = &mut self.w.msgs[m as usize];
            msg.bad = msg.bad.saturating_add(1);
        }
        if waiting {
            self.start_send(m);
        }
    }

    /// Both sides of an intra-server message are posted: serialise it once the source GPU's
    /// egress and the destination GPU's ingress are free (each direction of a GPU's links
    /// carries one transfer at a time, at the full per-direction rate), deliver after the
    /// latency.
    fn nv_start(&mut self, m: u32) {
        let msg = self.w.msgs[m as usize];
        let (rate, lat) = self.g.nvlink;
        let (s, d) = (msg.src as usize, msg.dst as usize);
        let begin = self.nv_free[s].max(self.nv_in_free[d]).max(self.now);
        let end = begin + rate.serialization_time(u64::from(msg.bytes));
        self.nv_free[s] = end;
        self.nv_in_free[d] = end;
        self.q.push(end + lat, Ev::NvDone { msg: m });
    }

    /// One side of message `m` completed (`send`: the sender's; else the receiver's).
    fn side_done(&mut self, m: u32, send: bool) {
        let now = self.now;
        let Some(msg) = self.w.msgs.get_mut(m as usize) else {
            return;
        };
        let slot = if send {
            &mut msg.send_done
        } else {
            &mut msg.recv_done
        };
        if *slot != NEVER {
            msg.bad = msg.bad.saturating_add(1);
            return;
        }
        *slot = now;
        let msg = *msg;
        let j = msg.job as usize;
        let first = self.w.jobs[j].first_msg;
        match &mut self.w.jobs[j].driver {
            Driver::Steps(p) => {
                let r = if send { msg.src_rank } else { msg.dst_rank } as usize;
                p.pending[r] = p.pending[r].saturating_sub(1);
                if p.pending[r] == 0 {
                    p.cur[r] += 1;
                    self.advance(j, r);
                }
            }
            Driver::Dag {
                dep_off,
                dependents,
                ..
            } => {
                if !send {
                    let l = (m - first) as usize;
                    let (a, b) = (dep_off[l] as usize, dep_off[l + 1] as usize);
                    let mut ready = std::mem::take(&mut self.scratch);
                    ready.clear();
                    for &d in &dependents[a..b] {
                        let dm = &mut self.w.msgs[(first + d) as usize];
                        dm.deps_left = dm.deps_left.saturating_sub(1);
                        if dm.deps_left == 0 {
                            ready.push(first + d);
                        }
                    }
                    for &d in &ready {
                        self.release_msg(d);
                    }
                    self.scratch = ready;
                }
            }
        }
        if self.w.msgs[m as usize].complete() {
            self.msgs_done += 1;
            let job = &mut self.w.jobs[j];
            job.left = job.left.saturating_sub(1);
            if job.left == 0 {
                job.done_at = now;
            }
        }
    }

    // ----- hosts -----

    /// After any input to host `h`: collect events, let the NIC pull a datagram, re-arm the
    /// timer.
    fn service(&mut self, h: u32, from_timer: bool) {
        let hi = h as usize;
        self.drain_events(h);
        let nic = &self.ports[hi][0];
        if self.now >= nic.busy_until && !nic.paused {
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
                    let id = self.alloc(h, dst, t.meta.entropy, wire, t.meta.ecn, data, int);
                    self.pkts[id as usize].set_header(&hdr[..hlen]);
                    self.c.packets += 1;
                    self.transmit(h, 0, id, wire);
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
                self.q.push(t, Ev::Timer { host: h });
            }
        }
    }

    fn drain_events(&mut self, h: u32) {
        while let Some(e) = self.eps[h as usize].poll_event() {
            match e {
                Event::Accepted {
                    conn, user_data, ..
                } => {
                    if let Some(&(_, dst)) = self.w.pairs.get(user_data as usize)
                        && dst == h
                        && self.conns[user_data as usize].1.is_none()
                    {
                        self.conns[user_data as usize].1 = Some(conn);
                        self.accepted += 1;
                    }
                }
                Event::Connected { .. } => self.connected += 1,
                Event::Completion(c) => {
                    let (m, send) = match c.kind {
                        CompletionKind::Send => match self.sends.remove(&(h, c.wr)) {
                            Some(m) => (m, true),
                            None => continue,
                        },
                        CompletionKind::Recv => match u32::try_from(c.tag) {
                            Ok(m) if self.w.msgs.get(m as usize).is_some_and(|x| x.dst == h) => {
                                (m, false)
                            }
                            _ => continue,
                        },
                        _ => continue,
                    };
                    let msg = &mut self.w.msgs[m as usize];
                    if c.status.is_ok() && c.len == u64::from(msg.bytes) {
                        self.done_q.push_back((m, send));
                    } else {
                        msg.bad = msg.bad.saturating_add(1);
                    }
                }
                _ => {}
            }
        }
    }

    /// Host `h` receives packet `id`.
    fn deliver(&mut self, h: u32, id: u32) {
        self.free.push(id);
        let p = &mut self.pkts[id as usize];
        // The last hop's INT record goes through `RxMeta::int_hop`, the others into the header.
        let int_hop = p.extra.as_mut().and_then(|x| x.hops.pop());
        if int_hop.is_some()
            && !p.hops().is_empty()
            && let Ok(parsed) = weir_wire::parse(p.header(), PayloadMode::Virtual)
        {
            let mut header = parsed.header;
            for &hop in p.hops() {
                let _ = header.int.push(hop);
            }
            let mut buf = [0u8; MAX_HEADER_LEN];
            if let Ok(n) = header.emit(&mut buf) {
                p.set_header(&buf[..n]);
            }
        }
        let meta = RxMeta {
            from: addr(p.src),
            ecn: p.ecn,
            virtual_payload: true,
            int_hop,
        };
        self.eps[h as usize].handle(self.now, meta, self.pkts[id as usize].header());
        self.service(h, false);
    }

    // ----- switches -----

    /// Switch `node` received packet `id`: PFC ingress accounting, pick the output port,
    /// enqueue.
    fn forward(&mut self, node: u32, id: u32) {
        let wire = u64::from(self.pkts[id as usize].wire);
        if let Some((xoff, _)) = self.pfc {
            let in_port = self.pkts[id as usize].in_port;
            let buffer = self.sw.buffer_bytes;
            let Some(ing) = self.port(node, in_port) else {
                self.drop_pkt(node, id);
                return;
            };
            if ing.ingress + wire > buffer {
                // Only reachable when the headroom check was bypassed.
                self.drop_pkt(node, id);
                return;
            }
            ing.ingress += wire;
            let send = ing.ingress >= xoff && !ing.pause_sent;
            let (peer, peer_port, delay) = (ing.peer, ing.peer_port, ing.delay);
            if send {
                ing.pause_sent = true;
                self.c.pauses += 1;
                self.q.push(
                    self.now + delay,
                    Ev::Pause {
                        node: peer,
                        port: peer_port,
                        on: true,
                    },
                );
            }
            self.pkts[id as usize].counted = true;
        }
        let p = &self.pkts[id as usize];
        let (src, dst, entropy) = (p.src, p.dst, p.entropy);
        let tor = self.g.host_tor[dst as usize];
        let port = if self.g.tors[tor as usize] == node {
            self.g.host_port[dst as usize]
        } else {
            let hops = self.g.next_hops(node, tor);
            let key = (u64::from(src) << 40)
                ^ (u64::from(dst) << 16)
                ^ u64::from(entropy)
                ^ (u64::from(node) << 56).rotate_left(7);
            match hops.len() {
                0 => {
                    self.drop_pkt(node, id);
                    return;
                }
                1 => hops[0],
                n => match self.sw.routing {
                    Routing::Ecmp => hops[(mix(key) % n as u64) as usize],
                    Routing::Spray => hops[self.rng.below(n as u64) as usize],
                    Routing::Adaptive => {
                        // Least-queued egress; the hash picks where the scan starts, so ties
                        // spread like ECMP.
                        let ps = &self.ports[node as usize];
                        let now = self.now;
                        let start = (mix(key) % n as u64) as usize;
                        let mut best = hops[start];
                        let mut best_q = u64::MAX;
                        for k in 0..n {
                            let h = hops[(start + k) % n];
                            let p = &ps[usize::from(h)];
                            let q = p.queued + p.prio_queued + u64::from(p.busy_until > now);
                            if q < best_q {
                                best_q = q;
                                best = h;
                            }
                        }
                        best
                    }
                },
            }
        };
        if self.ports[node as usize]
            .get(usize::from(port))
            .is_none_or(|p| !p.up)
        {
            self.c.fault_drops += 1;
            self.drop_pkt(node, id);
            return;
        }
        self.enqueue(node, port, id);
    }

    /// Drop packet `id` at switch `node`.
    fn drop_pkt(&mut self, node: u32, id: u32) {
        self.c.drops += 1;
        self.uncount(node, id);
        self.release(id);
    }

    /// Packet `id` leaves switch `node`'s buffer: PFC ingress accounting, RESUME.
    fn uncount(&mut self, node: u32, id: u32) {
        // Without PFC nothing is counted (and the packet is not read: at a switch port that
        // frees, its queue entry says all `start_tx` needs).
        let Some((_, xon)) = self.pfc else {
            return;
        };
        let p = &mut self.pkts[id as usize];
        if !p.counted {
            return;
        }
        p.counted = false;
        let (in_port, wire) = (p.in_port, u64::from(p.wire));
        let now = self.now;
        let Some(ing) = self.port(node, in_port) else {
            return;
        };
        ing.ingress = ing.ingress.saturating_sub(wire);
        if ing.pause_sent && ing.ingress <= xon {
            ing.pause_sent = false;
            let ev = Ev::Pause {
                node: ing.peer,
                port: ing.peer_port,
                on: false,
            };
            let at = now + ing.delay;
            self.q.push(at, ev);
        }
    }

    /// A PAUSE or RESUME reaches output port `port` of `node`.
    fn pause(&mut self, node: u32, port: u16, on: bool) {
        let now = self.now;
        let Some(p) = self.port(node, port) else {
            return;
        };
        if on {
            if !p.paused {
                p.paused = true;
                p.paused_since = now;
            }
            return;
        }
        if !p.unpause(now) {
            return;
        }
        if node < self.g.hosts {
            self.mark_dirty(node);
        } else {
            self.start_tx(node, port);
        }
    }

    fn enqueue(&mut self, node: u32, port: u16, id: u32) {
        let sw = self.sw;
        let pfc = self.pfc.is_some();
        let q = &mut self.ports[node as usize][usize::from(port)];
        let p = &mut self.pkts[id as usize];
        let wire = u64::from(p.wire);
        // RED marking on the queue the packet joins (Floyd & Jacobson 1993; DCQCN's
        // Kmin/Kmax/Pmax profile, https://doi.org/10.1145/2785956.2787484 §3.1).
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
        // With PFC the ingress admission above bounds the buffer; without it, the output
        // queue's own buffer does.
        let fits = q.queued + wire <= sw.buffer_bytes
            && sw.shared_buffer_bytes.is_none_or(|total| {
                // Dynamic thresholds (Choudhury & Hahne 1998): the queue may grow to
                // α × (free shared buffer), and the switch's total stays within the pool.
                let used = self.shared_used[node as usize];
                let free = total.saturating_sub(used);
                used + wire <= total && (q.queued + wire) as f64 <= sw.dt_alpha * free as f64
            });
        let admitted = if p.trimmed && !pfc {
            // A header trimmed upstream keeps its priority at every later hop (UET; uet-htsim's
            // CompositeQueue queues every header-only packet in its high-priority queue): a
            // full data queue downstream must not drop the one packet that tells the sender
            // to resend.
            // (uet-htsim htsim/sim/compositequeue.cpp, CompositeQueue::receivePacket:
            // header-only packets join the high-priority queue; paraphrased.)
            if q.prio_queued + wire <= sw.buffer_bytes {
                q.prio_queued += wire;
                q.prio.push_back(Queued { id, wire: p.wire });
                true
            } else {
                false
            }
        } else if pfc || fits {
            if sw.shared_buffer_bytes.is_some() {
                self.shared_used[node as usize] += wire;
            }
            q.queued += wire;
            q.queue.push_back(Queued { id, wire: p.wire });
            self.c.max_queue = self.c.max_queue.max(q.queued);
            true
        } else if sw.policy == QueuePolicy::Trim && p.data && !p.trimmed {
            // UET packet trimming: forward the header at priority; the receiver NACKs it.
            let mut buf = [0u8; MAX_HEADER_LEN];
            let ok = weir_wire::parse(p.header(), PayloadMode::Virtual)
                .ok()
                .and_then(|parsed| {
                    let mut h = parsed.header;
                    h.common.flags.set(Flags::TRIMMED, true);
                    h.emit(&mut buf).ok()
                });
            if let Some(n) = ok {
                p.set_header(&buf[..n]);
            }
            match ok {
                Some(n)
                    if q.prio_queued + n as u64 + u64::from(self.overhead) <= sw.buffer_bytes =>
                {
                    p.trimmed = true;
                    p.wire = n as u32 + self.overhead;
                    q.prio_queued += u64::from(p.wire);
                    q.prio.push_back(Queued { id, wire: p.wire });
                    self.c.trims += 1;
                    true
                }
                _ => false,
            }
        } else {
            false
        };
        if !admitted {
            self.drop_pkt(node, id);
            return;
        }
        self.start_tx(node, port);
    }

    /// Start serialising the next queued packet of a switch port, if idle and not paused; if
    /// busy, make sure a wake-up is scheduled for when it frees. A port with an empty queue
    /// schedules no wake-up at all (one event per packet and hop saved on idle links).
    fn start_tx(&mut self, node: u32, port: u16) {
        let now = self.now;
        let Some(q) = self
            .ports
            .get_mut(node as usize)
            .and_then(|p| p.get_mut(usize::from(port)))
        else {
            return;
        };
        if q.paused || (q.queue.is_empty() && q.prio.is_empty()) {
            return;
        }
        if now < q.busy_until {
            if !q.wake {
                q.wake = true;
                let at = q.busy_until;
                self.q.push(at, Ev::PortFree { node, port });
            }
            return;
        }
        let Queued { id, wire } = if let Some(x) = q.prio.pop_front() {
            q.prio_queued = q.prio_queued.saturating_sub(u64::from(x.wire));
            x
        } else if let Some(x) = q.queue.pop_front() {
            let wire = u64::from(x.wire);
            q.queued = q.queued.saturating_sub(wire);
            if self.sw.shared_buffer_bytes.is_some() {
                let used = &mut self.shared_used[node as usize];
                *used = used.saturating_sub(wire);
            }
            x
        } else {
            return;
        };
        let (queued, rate, tx_bytes) = (q.queued, q.rate, q.tx_bytes);
        let p = &mut self.pkts[id as usize];
        if self.sw.int && p.int && p.data {
            let hops = &mut p.extra.get_or_insert_with(Box::default).hops;
            hops.push(IntHop {
                qlen: queued.min(u64::from(u32::MAX)) as u32,
                rate_mbps: (rate.bps() / 1_000_000).min(u64::from(u32::MAX)) as u32,
                tx_bytes: tx_bytes.wrapping_add(u64::from(p.wire)),
                ts_ns: self.now.as_nanos(),
            });
            self.c.int_records += 1;
        }
        self.uncount(node, id);
        self.transmit(node, port, id, wire);
        let q = &mut self.ports[node as usize][usize::from(port)];
        let waiting = !q.queue.is_empty() || !q.prio.is_empty();
        if waiting && !q.wake {
            q.wake = true;
            let at = q.busy_until;
            self.q.push(at, Ev::PortFree { node, port });
        }
    }

    /// Put packet `id` (`wire` bytes) on the wire of `node`'s `port` (idle).
    fn transmit(&mut self, node: u32, port: u16, id: u32, wire: u32) {
        let wire = u64::from(wire);
        let q = &mut self.ports[node as usize][usize::from(port)];
        q.tx_bytes = q.tx_bytes.wrapping_add(wire);
        let done = self.now + q.rate.serialization_time(wire);
        q.busy_until = done;
        let arrive = done + q.delay;
        let (peer, peer_port, up, loss) = (q.peer, q.peer_port, q.up, q.loss);
        if node < self.g.hosts {
            // The NIC pulls its next datagram from the endpoint when it frees.
            self.q.push(done, Ev::PortFree { node, port });
        }
        if !up {
            self.c.drops += 1;
            self.c.fault_drops += 1;
            self.release(id);
        } else if loss > 0.0 && self.rng.chance(loss) {
            self.c.drops += 1;
            self.release(id);
        } else {
            self.pkts[id as usize].in_port = peer_port;
            self.q.push(
                arrive,
                Ev::Arrive {
                    node: peer,
                    pkt: id,
                },
            );
        }
    }

    /// A new packet from host `src` (its header set next): a free slot, or a new one.
    #[allow(clippy::too_many_arguments)]
    fn alloc(
        &mut self,
        src: u32,
        dst: u32,
        entropy: u16,
        wire: u32,
        ecn: Ecn,
        data: bool,
        int: bool,
    ) -> u32 {
        let id = self.free.pop().unwrap_or_else(|| {
            self.pkts.push(Pkt {
                src,
                dst,
                wire,
                entropy,
                in_port: 0,
                hdr_len: 0,
                ecn,
                data,
                int,
                trimmed: false,
                counted: false,
                extra: None,
                hdr: [0; INLINE_HDR],
            });
            (self.pkts.len() - 1) as u32
        });
        // Field by field: the slot's header bytes are overwritten by `set_header` anyway.
        let p = &mut self.pkts[id as usize];
        (p.src, p.dst, p.wire, p.entropy) = (src, dst, wire, entropy);
        (p.in_port, p.hdr_len, p.ecn) = (0, 0, ecn);
        (p.data, p.int, p.trimmed, p.counted) = (data, int, false, false);
        if let Some(x) = &mut p.extra {
            x.hops.clear();
        }
        id
    }

    fn release(&mut self, id: u32) {
        if let Some(p) = self.pkts.get_mut(id as usize) {
            p.counted = false;
            self.free.push(id);
        }
    }

    // ----- faults and sampling -----

    fn fault(&mut self, idx: usize) {
        let Some(f) = self.faults.get(idx).copied() else {
            return;
        };
        let mut affected: Vec<(u32, u16)> = Vec::new();
        if let Some([a, b]) = f.link {
            if let Some(i) = self
                .ports
                .get(a as usize)
                .and_then(|ps| ps.iter().position(|p| p.peer == b))
            {
                let back = self.ports[a as usize][i].peer_port;
                affected.push((a, i as u16));
                affected.push((b, back));
            }
        } else if let Some(s) = f.switch
            && let Some(ps) = self.ports.get(s as usize)
        {
            for (i, p) in ps.iter().enumerate() {
                affected.push((s, i as u16));
                affected.push((p.peer, p.peer_port));
            }
        }
        let now = self.now;
        for &(n, i) in &affected {
            let link_loss = self.sw.link_loss;
            let Some(p) = self.port(n, i) else { continue };
            match f.action {
                FaultAction::Down => {
                    p.up = false;
                    p.unpause(now);
                }
                FaultAction::Up => p.up = true,
                FaultAction::Loss => p.loss = if f.loss > 0.0 { f.loss } else { link_loss },
                FaultAction::Set => {
                    if let Some(r) = f.rate_gbps {
                        p.rate = Rate::from_gbps(r);
                    }
                    if let Some(d) = f.delay_ns {
                        p.delay = Duration::from_nanos(d);
                    }
                }
            }
        }
        if matches!(f.action, FaultAction::Down | FaultAction::Up) {
            let ports = &self.ports;
            let up = |n: u32, i: u16| {
                ports
                    .get(n as usize)
                    .and_then(|p| p.get(usize::from(i)))
                    .is_some_and(|p| p.up)
            };
            self.g.reroute(&up);
            for &(n, i) in &affected {
                if n < self.g.hosts {
                    self.mark_dirty(n);
                } else {
                    self.start_tx(n, i);
                }
            }
        }
    }

    fn sample(&mut self) {
        let s = &mut self.series;
        if s.t.len() >= MAX_SAMPLES {
            return;
        }
        s.t.push(self.now.saturating_since(self.start).as_ps());
        let (mut max, mut sum, mut n) = (0u64, 0u64, 0u64);
        for (node, ps) in self.ports.iter_mut().enumerate() {
            let switch = node >= self.g.hosts as usize;
            for p in ps {
                if switch {
                    let q = p.queued + p.prio_queued;
                    max = max.max(q);
                    sum += q;
                    n += 1;
                }
                let d = p.tx_bytes.wrapping_sub(p.sampled);
                p.sampled = p.tx_bytes;
                s.bytes.push(d.min(u64::from(u32::MAX)) as u32);
            }
        }
        s.qmax.push(max);
        s.qmean
            .push(if n > 0 { sum as f64 / n as f64 } else { 0.0 });
        self.q.push(self.now + self.sample_every, Ev::Sample);
    }

    /// Close the books at the end of the run: pauses still in force count until now.
    pub(crate) fn paused_ps(&self) -> u64 {
        self.ports
            .iter()
            .flatten()
            .map(|p| p.paused_total(self.now))
            .sum()
    }

    /// Sums of the per-connection statistics the report shows: the senders' retransmits,
    /// RTO events and TLPs, the receivers' duplicates (out-of-order drops at go-back-N
    /// receivers), and the senders' resends shown spurious, in that order.
    pub(crate) fn conn_totals(&self) -> (u64, u64, u64, u64, u64) {
        let mut t = (0, 0, 0, 0, 0);
        for (c, &(src, dst)) in self.conns.iter().zip(&self.w.pairs) {
            if let Some(s) = c.0.and_then(|c| self.eps[src as usize].conn_stats(c)) {
                t.0 += s.retransmits;
                t.1 += s.rto_events;
                t.2 += s.tlp_probes;
                t.4 += s.spurious_retransmits;
            }
            if let Some(s) = c.1.and_then(|c| self.eps[dst as usize].conn_stats(c)) {
                t.3 += s.rx_duplicates;
            }
        }
        t
    }
}
