// HARNESS-API-STABLE
//! A deterministic, packet-level model of N flows sharing one bottleneck queue, for testing and
//! plotting congestion controllers.
//!
//! Contract: [`run`] drives any `&mut dyn CongestionControl` (built-ins, eBPF programs) in
//! virtual time and returns a [`Trace`]. The same [`Config`], flows and controllers always
//! give the same trace: the only randomness (ECN marking, random loss) comes from a
//! [`weir_base::Rng`] seeded with [`Config::seed`], and simultaneous events are ordered by the
//! order they were scheduled. Nothing here reads a clock or panics on odd input: a controller
//! that asks for a zero window, a zero rate or a timer in the past is run as asked (a zero rate
//! stalls its flow; a window below one packet still lets one packet be in flight; a timer is
//! fired at most once per instant).
//!
//! The model, per data packet of [`Config::packet`] bytes:
//!
//! * **Sender.** Each flow has data from [`FlowSpec::start`] until [`FlowSpec::stop`] (or until
//!   [`FlowSpec::size`] bytes are acknowledged) and sends as fast as its controller's
//!   [`crate::Limits`] allow: a packet may leave when bytes in flight plus the packet fit the
//!   window (`None`: no window; with nothing in flight one packet always may), one packet-time
//!   at the pacing rate after the previous packet (`None`: unpaced), and never faster than the
//!   NIC ([`Config::nic_rate`]). Retransmissions go first. Every packet is reported with
//!   [`CongestionControl::on_sent`].
//! * **Fabric.** A packet reaches the bottleneck a quarter of the flow's base RTT after leaving
//!   the NIC. It may be lost at random there ([`Config::loss`]); if the queue (which counts the
//!   packet being transmitted) would exceed [`Config::buffer`] it is dropped or trimmed
//!   ([`Overflow`]). The queue is FIFO and drains at the link rate, which may change at
//!   [`Config::rate_steps`]. On departure a packet is ECN-marked with RED's probability on the
//!   backlog it leaves behind ([`Red`], as the DCQCN/HPCC switch models mark on dequeue) and
//!   stamped with INT ([`IntHops`]). It reaches the receiver a quarter base RTT later.
//! * **Receiver.** It acknowledges every [`Config::ack_every`] packets (or after
//!   [`Config::ack_delay`], or at once when it sees a hole or sends a CNP). An ACK carries the
//!   acked bytes, the ECN-marked bytes, an RTT sample from the send time of the packet that
//!   triggered it, the host delay ([`Config::host_delay`], part of that sample), that packet's
//!   INT records and the CNP bit ([`Config::cnp_interval`]). It reaches the sender after the
//!   host delay and the remaining half base RTT; the reverse path never queues.
//! * **Loss recovery.** A dropped packet is reported lost ([`LossKind::Detected`]) by the ACK
//!   of the next packet of its flow to arrive (one FIFO path: no reordering); a trimmed one is
//!   NACKed at once ([`LossKind::Trimmed`] or [`LossKind::TrimmedLastHop`]). Lost bytes are
//!   sent again. When a flow with bytes in flight gets no ACK progress for [`Config::rto`]
//!   (doubling on every consecutive timeout, up to 64×), everything in flight is declared lost,
//!   the controller gets a [`Feedback`] with `rto` set, and the bytes are sent again.
//!
//! The unloaded RTT of a flow, the value given as [`PathInfo::base_rtt`] by
//! [`Config::path_info`], is its base RTT plus one packet's serialisation at the NIC and at the
//! bottleneck; an RTT sample adds queueing and the host delay to it.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BinaryHeap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

use weir_base::{Duration, Instant, Rate, Rng, Scheduled};

use crate::{CongestionControl, Feedback, HopTelemetry, LossKind, PathInfo, Sent};

/// RED / DCQCN congestion-point marking: no marks below `kmin` bytes of backlog, a probability
/// rising linearly to `pmax` at `kmax`, every packet above `kmax` (DCQCN §3.1, Fig. 4).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Red {
    /// Backlog (bytes) below which nothing is marked.
    pub kmin: u64,
    /// Backlog (bytes) at and above which everything is marked.
    pub kmax: u64,
    /// Marking probability just below `kmax`.
    pub pmax: f64,
}

impl Red {
    /// Kmin 100 KB, Kmax 400 KB, Pmax 0.2: the DCQCN marking the HPCC authors' ns-3 runs use
    /// per 25 Gb/s (<https://github.com/alibaba-edu/High-Precision-Congestion-Control>,
    /// `simulation/run.py`), which also keeps 100 Gb/s queues short.
    pub const fn dcqcn() -> Self {
        Red {
            kmin: 100_000,
            kmax: 400_000,
            pmax: 0.2,
        }
    }

    /// Marking probability for a backlog of `qlen` bytes, in [0, 1].
    pub fn probability(&self, qlen: u64) -> f64 {
        if qlen <= self.kmin {
            0.0
        } else if qlen >= self.kmax {
            1.0
        } else {
            let p = self.pmax * (qlen - self.kmin) as f64 / (self.kmax - self.kmin) as f64;
            if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) }
        }
    }
}

/// What the bottleneck does with a packet that does not fit in its buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Drop it; the sender learns from the next ACK ([`LossKind::Detected`]) or its RTO.
    Drop,
    /// Trim it to a header and forward that at once; the receiver NACKs it
    /// ([`LossKind::Trimmed`]).
    Trim,
    /// As [`Overflow::Trim`], reported as [`LossKind::TrimmedLastHop`] (receiver incast).
    TrimLastHop,
}

/// Which hops stamp INT records ([`Feedback::hops`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntHops {
    /// No INT (HPCC-style controllers see an empty slice).
    Off,
    /// One record: the bottleneck port.
    Bottleneck,
    /// Two records: the sender's NIC port (never queues: the sender paces itself), then the
    /// bottleneck.
    NicAndBottleneck,
}

/// The bottleneck, the hosts and the run. Build with struct update syntax from
/// [`Config::default`].
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Bottleneck link rate at time zero. Default 100 Gb/s.
    pub link_rate: Rate,
    /// Each sender's NIC rate, also [`PathInfo::line_rate`]; `None`: the initial link rate.
    pub nic_rate: Option<Rate>,
    /// Bytes per data packet on the wire, also [`PathInfo::mtu`]. Default 4096 (at least 64
    /// is used).
    pub packet: u32,
    /// Propagation RTT of a flow whose [`FlowSpec::base_rtt`] is `None`. Default 10 µs.
    pub base_rtt: Duration,
    /// Largest random extra delay of a data packet on its way to the bottleneck (uniform,
    /// never reordering a flow's packets). It breaks the phase locking a perfectly periodic
    /// model shows with drop-tail queues (Floyd & Jacobson, "On Traffic Phase Effects in
    /// Packet-Switched Gateways", 1991). Default 100 ns.
    pub jitter: Duration,
    /// Time the receiver holds a packet before its ACK leaves. Default 0.
    pub host_delay: Duration,
    /// Bottleneck buffer in bytes. Default 1 MB.
    pub buffer: u64,
    /// What happens to a packet that does not fit. Default [`Overflow::Drop`].
    pub overflow: Overflow,
    /// ECN marking at the bottleneck; `None` marks nothing. Default [`Red::dcqcn`].
    pub ecn: Option<Red>,
    /// INT stamping. Default [`IntHops::Bottleneck`].
    pub int: IntHops,
    /// If set, the receiver acts as a DCQCN notification point: an ACK carrying a CE-marked
    /// packet also carries a CNP, at most one per this interval per flow. Default `None`
    /// (marks are only echoed in [`Feedback::ecn_bytes`]).
    pub cnp_interval: Option<Duration>,
    /// Probability that a data packet is lost at random before the bottleneck. Default 0.
    pub loss: f64,
    /// If set, [`Config::loss`] applies only to packets reaching the bottleneck in
    /// `[from, to)` (a loss episode). Default `None`: the whole run.
    pub loss_period: Option<(Instant, Instant)>,
    /// The receiver acknowledges every this many packets (at least 1). Default 1.
    pub ack_every: u32,
    /// Longest a partial batch of packets waits for its ACK. Default 2 µs.
    pub ack_delay: Duration,
    /// Retransmission timeout (doubling per consecutive timeout, up to 64×). Default 200 µs.
    pub rto: Duration,
    /// Bottleneck rate changes: at each instant the link switches to the rate given (a packet
    /// being transmitted finishes at the old rate).
    pub rate_steps: Vec<(Instant, Rate)>,
    /// Trace sample interval. Default 10 µs.
    pub sample_interval: Duration,
    /// Length of the run. Default 5 ms.
    pub duration: Duration,
    /// Seed of the marking and loss randomness.
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            link_rate: Rate::from_gbps(100),
            nic_rate: None,
            packet: 4096,
            base_rtt: Duration::from_micros(10),
            jitter: Duration::from_nanos(100),
            host_delay: Duration::ZERO,
            buffer: 1_000_000,
            overflow: Overflow::Drop,
            ecn: Some(Red::dcqcn()),
            int: IntHops::Bottleneck,
            cnp_interval: None,
            loss: 0.0,
            loss_period: None,
            ack_every: 1,
            ack_delay: Duration::from_micros(2),
            rto: Duration::from_micros(200),
            rate_steps: Vec::new(),
            sample_interval: Duration::from_micros(10),
            duration: Duration::from_millis(5),
            seed: 1,
        }
    }
}

impl Config {
    /// The NIC rate of every sender.
    pub fn nic(&self) -> Rate {
        self.nic_rate.unwrap_or(self.link_rate)
    }

    /// The propagation RTT of `flow`.
    pub fn flow_rtt(&self, flow: &FlowSpec) -> Duration {
        flow.base_rtt.unwrap_or(self.base_rtt)
    }

    /// The facts a controller for `flow` is built with: packet size, NIC rate, unloaded RTT
    /// (propagation plus one packet's serialisation at the NIC and at the bottleneck), one path.
    pub fn path_info(&self, flow: &FlowSpec) -> PathInfo {
        let pkt = u64::from(self.packet_bytes());
        PathInfo {
            mtu: self.packet_bytes(),
            line_rate: self.nic(),
            base_rtt: Some(
                self.flow_rtt(flow)
                    + self.nic().serialization_time(pkt)
                    + self.link_rate.serialization_time(pkt),
            ),
            paths: 1,
        }
    }

    fn packet_bytes(&self) -> u32 {
        self.packet.max(64)
    }
}

/// One flow's timing and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowSpec {
    /// When it starts sending.
    pub start: Instant,
    /// When it stops sending (bytes in flight are still acknowledged); `None`: never.
    pub stop: Option<Instant>,
    /// Bytes to deliver; the flow is done once they are acknowledged. `None`: unlimited.
    pub size: Option<u64>,
    /// Its propagation RTT; `None`: [`Config::base_rtt`].
    pub base_rtt: Option<Duration>,
}

impl FlowSpec {
    /// An unlimited flow starting at `start`.
    pub const fn at(start: Instant) -> Self {
        FlowSpec {
            start,
            stop: None,
            size: None,
            base_rtt: None,
        }
    }

    /// `n` unlimited flows all starting at `start` (an incast when they start together).
    pub fn many(n: usize, start: Instant) -> Vec<FlowSpec> {
        (0..n).map(|_| FlowSpec::at(start)).collect()
    }

    /// The same flow, stopping at `stop`.
    pub const fn until(mut self, stop: Instant) -> Self {
        self.stop = Some(stop);
        self
    }

    /// The same flow, with `bytes` to deliver.
    pub const fn sized(mut self, bytes: u64) -> Self {
        self.size = Some(bytes);
        self
    }

    /// The same flow, with its own propagation RTT.
    pub const fn rtt(mut self, rtt: Duration) -> Self {
        self.base_rtt = Some(rtt);
        self
    }

    fn active_over(&self, from: Instant, to: Instant) -> bool {
        self.start <= from && self.stop.is_none_or(|s| s >= to)
    }
}

impl Default for FlowSpec {
    fn default() -> Self {
        FlowSpec::at(Instant::ZERO)
    }
}

/// Result of a run: samples every [`Trace::interval`] plus per-flow and link totals.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    /// Sample interval.
    pub interval: Duration,
    /// The flows as run.
    pub specs: Vec<FlowSpec>,
    /// Controller name of each flow.
    pub names: Vec<&'static str>,
    /// One sample per interval, in time order; sample `k` covers `((k)·interval, (k+1)·interval]`.
    pub samples: Vec<Sample>,
    /// Per-flow totals.
    pub flows: Vec<FlowSummary>,
    /// Bottleneck totals.
    pub link: LinkSummary,
}

/// The state at the end of one sample interval.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// End of the interval.
    pub t: Instant,
    /// Bottleneck backlog at `t`, bytes (including the packet being transmitted).
    pub queue: u64,
    /// Largest backlog during the interval.
    pub queue_max: u64,
    /// Bottleneck rate at `t`.
    pub capacity: Rate,
    /// Bytes the link could have sent during the interval.
    pub capacity_bytes: u64,
    /// Bytes the link sent during the interval.
    pub link_bytes: u64,
    /// Per-flow state, indexed like [`Trace::specs`].
    pub flows: Vec<FlowSample>,
}

/// One flow at the end of one sample interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowSample {
    /// Bytes newly acknowledged during the interval (goodput; retransmissions count once).
    pub acked_bytes: u64,
    /// The controller's pacing rate at the end of the interval.
    pub rate: Option<Rate>,
    /// The controller's window at the end of the interval.
    pub window: Option<u64>,
    /// Bytes in flight at the end of the interval.
    pub in_flight: u64,
    /// Mean RTT sample during the interval, if any arrived.
    pub rtt: Option<Duration>,
    /// Whether the flow had started and was neither stopped nor done.
    pub active: bool,
}

/// Totals for one flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowSummary {
    /// Bytes acknowledged (goodput).
    pub acked_bytes: u64,
    /// Bytes put on the wire, retransmissions included.
    pub sent_bytes: u64,
    /// Bytes retransmitted.
    pub retransmitted_bytes: u64,
    /// Packets dropped at the bottleneck (overflow or random loss).
    pub dropped: u64,
    /// Packets trimmed.
    pub trimmed: u64,
    /// Packets ECN-marked.
    pub marked: u64,
    /// CNPs sent by the receiver.
    pub cnps: u64,
    /// Retransmission timeouts.
    pub rtos: u64,
    /// For a sized flow that finished: time from start to the last byte acknowledged.
    pub completion: Option<Duration>,
}

/// Totals for the bottleneck.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkSummary {
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Packets dropped because the buffer was full.
    pub overflow_drops: u64,
    /// Packets lost at random.
    pub random_losses: u64,
    /// Packets trimmed.
    pub trims: u64,
    /// Packets ECN-marked.
    pub marks: u64,
    /// Largest backlog seen, bytes.
    pub max_queue: u64,
}

impl Trace {
    /// Number of flows.
    pub fn flow_count(&self) -> usize {
        self.specs.len()
    }

    /// End of the last sample (time zero for an empty trace).
    pub fn end(&self) -> Instant {
        self.samples.last().map_or(Instant::ZERO, |s| s.t)
    }

    /// The samples whose whole interval lies in `[from, to]`.
    pub fn samples_in(&self, from: Instant, to: Instant) -> impl Iterator<Item = &Sample> + '_ {
        let iv = self.interval;
        self.samples
            .iter()
            .filter(move |s| s.t - iv >= from && s.t <= to && s.t >= from)
    }

    /// Bytes flow `flow` had acknowledged in the samples of `[from, to]`.
    pub fn acked(&self, flow: usize, from: Instant, to: Instant) -> u64 {
        self.samples_in(from, to)
            .filter_map(|s| s.flows.get(flow))
            .map(|f| f.acked_bytes)
            .fold(0u64, u64::saturating_add)
    }

    /// Goodput of `flow` over `[from, to]` (sample-aligned; zero for an empty window).
    pub fn throughput(&self, flow: usize, from: Instant, to: Instant) -> Rate {
        let span = self.span(from, to);
        if span == Duration::ZERO {
            return Rate::ZERO;
        }
        Rate::from_bps_f64(self.acked(flow, from, to) as f64 * 8.0 / span.as_secs_f64())
    }

    /// Goodput of every flow over `[from, to]`.
    pub fn throughputs(&self, from: Instant, to: Instant) -> Vec<Rate> {
        (0..self.flow_count())
            .map(|i| self.throughput(i, from, to))
            .collect()
    }

    /// Jain's fairness index (Σx)²/(n·Σx²) of the goodput over `[from, to]` of the flows that
    /// were running over all of it (started by `from`, neither stopped nor finished before
    /// `to`). 1.0 when fewer than two such flows exist or none delivered anything.
    pub fn jain(&self, from: Instant, to: Instant) -> f64 {
        let xs: Vec<f64> = (0..self.flow_count())
            .filter(|&i| {
                let spec = &self.specs[i];
                let finished = self
                    .flows
                    .get(i)
                    .and_then(|f| f.completion)
                    .is_some_and(|c| spec.start + c < to);
                spec.active_over(from, to) && !finished
            })
            .map(|i| self.acked(i, from, to) as f64)
            .collect();
        jain(&xs)
    }

    /// Bytes sent by the bottleneck over bytes it could have sent, over `[from, to]`.
    pub fn utilisation(&self, from: Instant, to: Instant) -> f64 {
        let (sent, cap) = self.samples_in(from, to).fold((0u64, 0u64), |(a, b), s| {
            (
                a.saturating_add(s.link_bytes),
                b.saturating_add(s.capacity_bytes),
            )
        });
        if cap == 0 {
            0.0
        } else {
            sent as f64 / cap as f64
        }
    }

    /// Largest backlog during the samples of `[from, to]`, bytes.
    pub fn max_queue(&self, from: Instant, to: Instant) -> u64 {
        self.samples_in(from, to)
            .map(|s| s.queue_max)
            .max()
            .unwrap_or(0)
    }

    /// Mean of the sampled backlog over `[from, to]`, bytes.
    pub fn mean_queue(&self, from: Instant, to: Instant) -> f64 {
        let (sum, n) = self
            .samples_in(from, to)
            .fold((0f64, 0u64), |(a, n), s| (a + s.queue as f64, n + 1));
        if n == 0 { 0.0 } else { sum / n as f64 }
    }

    /// After `after` (say, an incast), how long until the queue had drained: the start of
    /// the first sample interval, after the backlog first exceeded `below` bytes, during which
    /// it stayed at or below `below`, minus `after`. `Some(ZERO)` when the backlog never
    /// exceeded `below`; `None` when it never drained by the end of the trace.
    pub fn drain_time(&self, after: Instant, below: u64) -> Option<Duration> {
        let mut rest = self.samples.iter().filter(|s| s.t > after);
        if !rest.any(|s| s.queue_max > below) {
            return Some(Duration::ZERO);
        }
        rest.find(|s| s.queue_max <= below)
            .map(|s| (s.t - self.interval) - after)
    }

    /// How long after `after` the backlog last exceeded `level` bytes: the end of the last
    /// sample interval whose largest backlog was above it, minus `after` (zero if it never
    /// was). Unlike [`Trace::drain_time`], a later rebound above `level` counts.
    pub fn settled_after(&self, after: Instant, level: u64) -> Duration {
        self.samples
            .iter()
            .filter(|s| s.t > after && s.queue_max > level)
            .map(|s| s.t - after)
            .max()
            .unwrap_or(Duration::ZERO)
    }

    /// Time from `after` to the end of the first sample after it in which the link carried
    /// at least `percent` % of its capacity (`None`: never).
    pub fn recovered(&self, after: Instant, percent: u64) -> Option<Duration> {
        self.samples
            .iter()
            .find(|s| s.t > after && s.link_bytes * 100 >= s.capacity_bytes * percent)
            .map(|s| s.t - after)
    }

    /// Retransmission timeouts, all flows together.
    pub fn rtos(&self) -> u64 {
        self.flows.iter().map(|f| f.rtos).sum()
    }

    /// A compact text table for snapshot tests: one row per block of `every` samples (at
    /// least 1; a last partial block is left out) with the block's end time (µs), the backlog
    /// at that time and the largest in the block (KB), the link utilisation over the block
    /// (%), and per flow its goodput over the block (Gb/s), the controller's rate (Gb/s, `-`
    /// for none) and window (KB, `-` for none) at the block's end. Values are rounded so that
    /// tiny numeric changes do not show.
    pub fn table(&self, every: usize) -> String {
        let every = every.max(1);
        let mut out = String::from("t_us   q_KB qmax_KB util%");
        for i in 0..self.flow_count() {
            let _ = write!(out, " | f{i}:gput/rate/win");
        }
        out.push('\n');
        let span = self.interval.saturating_mul(every as u64).as_secs_f64();
        for block in self.samples.chunks_exact(every) {
            let Some(last) = block.last() else { continue };
            let (link, cap) = block.iter().fold((0u64, 0u64), |(a, b), s| {
                (
                    a.saturating_add(s.link_bytes),
                    b.saturating_add(s.capacity_bytes),
                )
            });
            let util = if cap == 0 {
                0.0
            } else {
                100.0 * link as f64 / cap as f64
            };
            let qmax = block.iter().map(|s| s.queue_max).max().unwrap_or(0);
            let _ = write!(
                out,
                "{:<6} {:>4} {:>7} {:>5.0}",
                last.t.as_ps() / 1_000_000,
                last.queue / 1000,
                qmax / 1000,
                util
            );
            for (i, f) in last.flows.iter().enumerate() {
                let acked = block
                    .iter()
                    .filter_map(|s| s.flows.get(i))
                    .fold(0u64, |a, f| a.saturating_add(f.acked_bytes));
                let gput = acked as f64 * 8.0 / span / 1e9;
                let _ = write!(out, " | {gput:>5.1}/");
                match f.rate {
                    Some(r) => {
                        let _ = write!(out, "{:.1}/", r.bps_f64() / 1e9);
                    }
                    None => out.push_str("-/"),
                }
                match f.window {
                    Some(w) => {
                        let _ = write!(out, "{}", w / 1000);
                    }
                    None => out.push('-'),
                }
            }
            out.push('\n');
        }
        out
    }

    /// Every sample as CSV: `t_us, queue_bytes, queue_max_bytes, capacity_gbps, link_gbps`,
    /// then per flow `fI_goodput_gbps, fI_rate_gbps, fI_window_bytes, fI_inflight_bytes,
    /// fI_rtt_us` (empty where the controller gives no rate/window or no RTT was sampled).
    pub fn to_csv(&self) -> String {
        let mut out = String::from("t_us,queue_bytes,queue_max_bytes,capacity_gbps,link_gbps");
        for i in 0..self.flow_count() {
            let _ = write!(
                out,
                ",f{i}_goodput_gbps,f{i}_rate_gbps,f{i}_window_bytes,f{i}_inflight_bytes,f{i}_rtt_us"
            );
        }
        out.push('\n');
        let secs = self.interval.as_secs_f64();
        for s in &self.samples {
            let _ = write!(
                out,
                "{:.3},{},{},{:.3},{:.3}",
                s.t.as_ps() as f64 / 1e6,
                s.queue,
                s.queue_max,
                s.capacity.bps_f64() / 1e9,
                s.link_bytes as f64 * 8.0 / secs / 1e9
            );
            for f in &s.flows {
                let _ = write!(out, ",{:.3},", f.acked_bytes as f64 * 8.0 / secs / 1e9);
                if let Some(r) = f.rate {
                    let _ = write!(out, "{:.3}", r.bps_f64() / 1e9);
                }
                out.push(',');
                if let Some(w) = f.window {
                    let _ = write!(out, "{w}");
                }
                let _ = write!(out, ",{},", f.in_flight);
                if let Some(r) = f.rtt {
                    let _ = write!(out, "{:.3}", r.as_ps() as f64 / 1e6);
                }
            }
            out.push('\n');
        }
        out
    }

    /// Length of the sample-aligned part of `[from, to]`.
    fn span(&self, from: Instant, to: Instant) -> Duration {
        self.interval
            .saturating_mul(self.samples_in(from, to).count() as u64)
    }
}

/// Jain's fairness index (Σx)²/(n·Σx²) of `xs`; 1.0 for fewer than two values or all zero.
pub fn jain(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return 1.0;
    }
    let sum: f64 = xs.iter().sum();
    let squares: f64 = xs.iter().map(|x| x * x).sum();
    if squares <= 0.0 || !squares.is_finite() {
        return 1.0;
    }
    sum * sum / (xs.len() as f64 * squares)
}

/// Runs `flows` (flow `i` driven by `ccs[i]`) through the bottleneck of `cfg` for
/// [`Config::duration`]. Build each controller at its flow's start with
/// [`Config::path_info`]. Only the first `min(flows.len(), ccs.len())` flows run.
pub fn run(cfg: &Config, flows: &[FlowSpec], ccs: &mut [&mut dyn CongestionControl]) -> Trace {
    let n = flows.len().min(ccs.len());
    Sim::new(cfg, &flows[..n]).run(&mut ccs[..n])
}

/// As [`run`], building flow `i`'s controller with `make(i, start, &path_info)`.
pub fn run_with<F>(cfg: &Config, flows: &[FlowSpec], mut make: F) -> Trace
where
    F: FnMut(usize, Instant, &PathInfo) -> Box<dyn CongestionControl>,
{
    let mut boxes: Vec<Box<dyn CongestionControl>> = flows
        .iter()
        .enumerate()
        .map(|(i, f)| make(i, f.start, &cfg.path_info(f)))
        .collect();
    let mut refs: Vec<&mut dyn CongestionControl> = boxes
        .iter_mut()
        .map(|b| b.as_mut() as &mut dyn CongestionControl)
        .collect();
    run(cfg, flows, &mut refs)
}

/// Bytes of a trimmed packet's header.
const TRIM_HEADER: u32 = 64;
/// Largest RTO backoff exponent (64×).
const MAX_BACKOFF: u32 = 6;

/// A data packet in the model.
#[derive(Clone, Copy, Debug)]
struct Packet {
    flow: usize,
    id: u64,
    bytes: u32,
    sent: Instant,
    ce: bool,
    hops: [HopTelemetry; 2],
    nhops: u8,
}

/// An acknowledgement on its way back.
#[derive(Clone, Debug)]
struct Ack {
    packets: Vec<(u64, u32)>,
    ecn_bytes: u64,
    cnp: bool,
    /// Send time of the packet that triggered the ACK.
    sent: Instant,
    hops: [HopTelemetry; 2],
    nhops: u8,
    lost: Vec<u64>,
}

#[derive(Debug)]
enum Ev {
    Start(usize),
    Stop(usize),
    Send(usize, u64),
    Arrive(Packet),
    Depart,
    Deliver(Packet),
    AckFlush(usize, u64),
    Ack(usize, Box<Ack>),
    Nack(usize, u64),
    CcTimer(usize, u64),
    Rto(usize, u64),
    Step(Rate),
    Sample,
}

/// A queued model event: due time, push order, the event.
type Entry = Scheduled<Instant, Ev>;

/// Per-flow model state (sender and receiver).
#[derive(Debug, Default)]
struct Flow {
    spec: FlowSpec,
    up: Duration,
    down: Duration,
    back: Duration,
    started: bool,
    stopped: bool,
    done: bool,
    /// New bytes not yet sent (`u64::MAX`: unlimited).
    new_left: u64,
    /// Bytes waiting for retransmission.
    retx: u64,
    next_id: u64,
    /// Packets in flight: id → bytes.
    outstanding: BTreeMap<u64, u32>,
    in_flight: u64,
    last_send: Option<(Instant, u32)>,
    /// Arrival time at the bottleneck of the last packet sent.
    last_arrival: Instant,
    send_at: Option<Instant>,
    send_gen: u64,
    cc_at: Option<Instant>,
    cc_gen: u64,
    cc_last_fire: Option<Instant>,
    rto_gen: u64,
    rto_armed: bool,
    backoff: u32,
    nic_tx: u64,
    // Receiver.
    batch: Vec<(u64, u32)>,
    batch_ecn: u64,
    batch_cnp: bool,
    batch_gen: u64,
    dropped: VecDeque<u64>,
    lost: Vec<u64>,
    cnp_last: Option<Instant>,
    /// Send time and INT of the last packet of the open batch (what its ACK echoes).
    last_trigger: Option<(Instant, [HopTelemetry; 2], u8)>,
    // Accounting.
    acked_total: u64,
    iv_acked: u64,
    iv_rtt_sum: u128,
    iv_rtt_n: u64,
    sum: FlowSummary,
}

struct Sim<'c> {
    cfg: &'c Config,
    pkt: u32,
    nic: Rate,
    heap: BinaryHeap<Entry>,
    seq: u64,
    rng: Rng,
    flows: Vec<Flow>,
    queue: VecDeque<Packet>,
    qbytes: u64,
    busy: bool,
    capacity: Rate,
    tx_bytes: u64,
    iv_link: u64,
    iv_qmax: u64,
    iv_cap_from: Instant,
    iv_cap_bytes: u64,
    link: LinkSummary,
    samples: Vec<Sample>,
}

impl<'c> Sim<'c> {
    fn new(cfg: &'c Config, specs: &[FlowSpec]) -> Self {
        let flows = specs
            .iter()
            .map(|s| {
                let rtt = cfg.flow_rtt(s);
                let up = rtt.div(4);
                let down = rtt.div(4);
                Flow {
                    spec: *s,
                    up,
                    down,
                    back: rtt - up - down,
                    new_left: s.size.unwrap_or(u64::MAX),
                    ..Flow::default()
                }
            })
            .collect();
        Sim {
            cfg,
            pkt: cfg.packet_bytes(),
            nic: cfg.nic(),
            heap: BinaryHeap::new(),
            seq: 0,
            rng: Rng::new(cfg.seed),
            flows,
            queue: VecDeque::new(),
            qbytes: 0,
            busy: false,
            capacity: cfg.link_rate,
            tx_bytes: 0,
            iv_link: 0,
            iv_qmax: 0,
            iv_cap_from: Instant::ZERO,
            iv_cap_bytes: 0,
            link: LinkSummary::default(),
            samples: Vec::new(),
        }
    }

    fn push(&mut self, at: Instant, ev: Ev) {
        self.seq += 1;
        self.heap.push(Entry {
            at,
            seq: self.seq,
            ev,
        });
    }

    fn run(mut self, ccs: &mut [&mut dyn CongestionControl]) -> Trace {
        let end = Instant::ZERO + self.cfg.duration;
        for (i, cc) in ccs.iter().enumerate() {
            let spec = self.flows[i].spec;
            self.push(spec.start, Ev::Start(i));
            if let Some(s) = spec.stop {
                self.push(s, Ev::Stop(i));
            }
            self.sync_cc_timer(i, &**cc, spec.start);
        }
        for &(t, r) in &self.cfg.rate_steps {
            self.push(t, Ev::Step(r));
        }
        let iv = self.cfg.sample_interval.max(Duration::from_nanos(1));
        if iv <= self.cfg.duration {
            self.push(Instant::ZERO + iv, Ev::Sample);
        }
        while let Some(Entry { at: now, ev, .. }) = self.heap.pop() {
            if now > end {
                break;
            }
            match ev {
                Ev::Start(i) => {
                    self.flows[i].started = true;
                    self.pump(i, &mut *ccs[i], now);
                }
                Ev::Stop(i) => self.flows[i].stopped = true,
                Ev::Send(i, g) => {
                    if self.flows[i].send_gen == g {
                        self.flows[i].send_at = None;
                        self.pump(i, &mut *ccs[i], now);
                    }
                }
                Ev::Arrive(p) => self.arrive(now, p),
                Ev::Depart => self.depart(now),
                Ev::Deliver(p) => self.deliver(now, p),
                Ev::AckFlush(i, g) => {
                    if self.flows[i].batch_gen == g && !self.flows[i].batch.is_empty() {
                        self.flush(i, now);
                    }
                }
                Ev::Ack(i, a) => self.on_ack(i, &mut *ccs[i], now, &a),
                Ev::Nack(i, id) => self.on_nack(i, &mut *ccs[i], now, id),
                Ev::CcTimer(i, g) => {
                    if self.flows[i].cc_gen == g {
                        self.flows[i].cc_at = None;
                        self.flows[i].cc_last_fire = Some(now);
                        ccs[i].on_timeout(now);
                        self.sync_cc_timer(i, &*ccs[i], now);
                        self.pump(i, &mut *ccs[i], now);
                    }
                }
                Ev::Rto(i, g) => {
                    if self.flows[i].rto_gen == g && self.flows[i].rto_armed {
                        self.on_rto(i, &mut *ccs[i], now);
                    }
                }
                Ev::Step(r) => {
                    self.account_capacity(now);
                    self.capacity = r;
                }
                Ev::Sample => {
                    self.sample(now, ccs);
                    let next = now + iv;
                    if next <= end {
                        self.push(next, Ev::Sample);
                    }
                }
            }
        }
        Trace {
            interval: iv,
            specs: self.flows.iter().map(|f| f.spec).collect(),
            names: ccs.iter().map(|c| c.name()).collect(),
            samples: self.samples,
            flows: self.flows.iter().map(|f| f.sum).collect(),
            link: self.link,
        }
    }

    /// Sends what the controller allows now, and schedules a wake-up when pacing is what
    /// holds the flow back.
    fn pump(&mut self, i: usize, cc: &mut dyn CongestionControl, now: Instant) {
        loop {
            let f = &self.flows[i];
            if !f.started || f.stopped || f.done {
                return;
            }
            let avail = f.retx.saturating_add(f.new_left);
            if avail == 0 {
                return;
            }
            let size = u64::from(self.pkt).min(avail) as u32;
            let limits = cc.limits();
            if let Some(w) = limits.window
                && f.in_flight > 0
                && f.in_flight.saturating_add(u64::from(size)) > w
            {
                return;
            }
            let mut ready = now;
            if let Some((t, b)) = f.last_send {
                ready = ready.max(t + self.nic.serialization_time(u64::from(b)));
                if let Some(r) = limits.rate {
                    ready = ready.max(t + r.serialization_time(u64::from(b)));
                }
            }
            if ready > now {
                if f.send_at != Some(ready) {
                    let f = &mut self.flows[i];
                    f.send_gen += 1;
                    f.send_at = Some(ready);
                    let g = f.send_gen;
                    self.push(ready, Ev::Send(i, g));
                }
                return;
            }
            self.send(i, cc, now, size);
        }
    }

    fn send(&mut self, i: usize, cc: &mut dyn CongestionControl, now: Instant, size: u32) {
        let nic = self.nic;
        let jitter = match self.cfg.jitter.as_ps() {
            0 => Duration::ZERO,
            j => Duration::from_ps(self.rng.below(j.saturating_add(1))),
        };
        let f = &mut self.flows[i];
        let retransmit = f.retx > 0;
        if retransmit {
            f.retx = f.retx.saturating_sub(u64::from(size));
            f.sum.retransmitted_bytes += u64::from(size);
        } else if f.new_left != u64::MAX {
            f.new_left = f.new_left.saturating_sub(u64::from(size));
        }
        let id = f.next_id;
        f.next_id += 1;
        f.outstanding.insert(id, size);
        f.in_flight += u64::from(size);
        f.sum.sent_bytes += u64::from(size);
        f.nic_tx = f.nic_tx.wrapping_add(u64::from(size));
        f.last_send = Some((now, size));
        let mut hops = [HopTelemetry::default(); 2];
        let mut nhops = 0;
        if self.cfg.int == IntHops::NicAndBottleneck {
            hops[0] = HopTelemetry {
                qlen: 0,
                rate: nic,
                tx_bytes: f.nic_tx,
                ts: now,
            };
            nhops = 1;
        }
        let p = Packet {
            flow: i,
            id,
            bytes: size,
            sent: now,
            ce: false,
            hops,
            nhops,
        };
        let arrive = now + nic.serialization_time(u64::from(size)) + f.up + jitter;
        // FIFO per flow: loss detection relies on it.
        let arrive = arrive.max(f.last_arrival);
        f.last_arrival = arrive;
        let in_flight = f.in_flight;
        let arm = !f.rto_armed;
        self.push(arrive, Ev::Arrive(p));
        cc.on_sent(
            now,
            &Sent {
                bytes: size,
                path: 0,
                retransmit,
                in_flight,
            },
        );
        if arm {
            self.arm_rto(i, now);
        }
        self.sync_cc_timer(i, cc, now);
    }

    fn arrive(&mut self, now: Instant, p: Packet) {
        let lossy = self
            .cfg
            .loss_period
            .is_none_or(|(from, to)| now >= from && now < to);
        if lossy && self.rng.chance(self.cfg.loss) {
            self.link.random_losses += 1;
            self.flows[p.flow].sum.dropped += 1;
            self.flows[p.flow].dropped.push_back(p.id);
            return;
        }
        if self.qbytes.saturating_add(u64::from(p.bytes)) > self.cfg.buffer {
            let f = &mut self.flows[p.flow];
            match self.cfg.overflow {
                Overflow::Drop => {
                    self.link.overflow_drops += 1;
                    f.sum.dropped += 1;
                    f.dropped.push_back(p.id);
                }
                Overflow::Trim | Overflow::TrimLastHop => {
                    self.link.trims += 1;
                    f.sum.trimmed += 1;
                    // The header skips the queue (trimmed headers go out at high priority),
                    // the receiver NACKs it at once.
                    let at = now
                        + self.capacity.serialization_time(u64::from(TRIM_HEADER))
                        + f.down
                        + self.cfg.host_delay
                        + f.back;
                    self.push(at, Ev::Nack(p.flow, p.id));
                }
            }
            return;
        }
        self.qbytes += u64::from(p.bytes);
        self.iv_qmax = self.iv_qmax.max(self.qbytes);
        self.link.max_queue = self.link.max_queue.max(self.qbytes);
        self.queue.push_back(p);
        if !self.busy {
            self.start_tx(now);
        }
    }

    fn start_tx(&mut self, now: Instant) {
        if let Some(head) = self.queue.front() {
            self.busy = true;
            let t = self.capacity.serialization_time(u64::from(head.bytes));
            self.push(now + t, Ev::Depart);
        } else {
            self.busy = false;
        }
    }

    fn depart(&mut self, now: Instant) {
        let Some(mut p) = self.queue.pop_front() else {
            self.busy = false;
            return;
        };
        self.qbytes = self.qbytes.saturating_sub(u64::from(p.bytes));
        self.tx_bytes = self.tx_bytes.wrapping_add(u64::from(p.bytes));
        self.iv_link += u64::from(p.bytes);
        self.link.tx_bytes += u64::from(p.bytes);
        //= https://doi.org/10.1145/2785956.2787484#section-3.1
        //# CP: RED-like marking, probability 0 below Kmin, rising linearly to Pmax at Kmax,
        //# 1 above Kmax.
        if let Some(red) = self.cfg.ecn
            && self.rng.chance(red.probability(self.qbytes))
        {
            p.ce = true;
            self.link.marks += 1;
            self.flows[p.flow].sum.marked += 1;
        }
        if self.cfg.int != IntHops::Off && usize::from(p.nhops) < p.hops.len() {
            //= https://doi.org/10.1145/3341302.3342085#section-3.2
            //# Each switch egress pushes (qlen, txBytes, ts, B) into the packet's INT stack.
            p.hops[usize::from(p.nhops)] = HopTelemetry {
                qlen: self.qbytes,
                rate: self.capacity,
                tx_bytes: self.tx_bytes,
                ts: now,
            };
            p.nhops += 1;
        }
        let down = self.flows[p.flow].down;
        self.push(now + down, Ev::Deliver(p));
        self.start_tx(now);
    }

    fn deliver(&mut self, now: Instant, p: Packet) {
        let every = self.cfg.ack_every.max(1) as usize;
        let cnp_interval = self.cfg.cnp_interval;
        let f = &mut self.flows[p.flow];
        while f.dropped.front().is_some_and(|&d| d < p.id) {
            if let Some(d) = f.dropped.pop_front() {
                f.lost.push(d);
            }
        }
        let open = f.batch.is_empty();
        f.batch.push((p.id, p.bytes));
        if p.ce {
            f.batch_ecn += u64::from(p.bytes);
        }
        let mut cnp_now = false;
        if let (true, Some(gap)) = (p.ce, cnp_interval) {
            //= https://doi.org/10.1145/2785956.2787484#section-3.2
            //# NP: at most one CNP per flow per N µs when CE-marked packets arrive.
            if f.cnp_last.is_none_or(|l| now >= l + gap) {
                f.cnp_last = Some(now);
                f.batch_cnp = true;
                f.sum.cnps += 1;
                cnp_now = true;
            }
        }
        if f.batch.len() >= every || !f.lost.is_empty() || cnp_now {
            self.flush_with(p.flow, now, p.sent, p.hops, p.nhops);
        } else if open {
            let g = f.batch_gen;
            let at = now + self.cfg.ack_delay;
            // Remember the trigger packet for a delayed flush: the last one in the batch.
            self.push(at, Ev::AckFlush(p.flow, g));
            self.flows[p.flow].last_trigger = Some((p.sent, p.hops, p.nhops));
        } else {
            self.flows[p.flow].last_trigger = Some((p.sent, p.hops, p.nhops));
        }
    }

    fn flush(&mut self, i: usize, now: Instant) {
        let (sent, hops, nhops) =
            self.flows[i]
                .last_trigger
                .unwrap_or((now, [HopTelemetry::default(); 2], 0));
        self.flush_with(i, now, sent, hops, nhops);
    }

    fn flush_with(
        &mut self,
        i: usize,
        now: Instant,
        sent: Instant,
        hops: [HopTelemetry; 2],
        nhops: u8,
    ) {
        let f = &mut self.flows[i];
        let ack = Ack {
            packets: core::mem::take(&mut f.batch),
            ecn_bytes: core::mem::take(&mut f.batch_ecn),
            cnp: core::mem::take(&mut f.batch_cnp),
            sent,
            hops,
            nhops,
            lost: core::mem::take(&mut f.lost),
        };
        f.batch_gen += 1;
        f.last_trigger = None;
        let at = now + self.cfg.host_delay + f.back;
        self.push(at, Ev::Ack(i, Box::new(ack)));
    }

    fn on_ack(&mut self, i: usize, cc: &mut dyn CongestionControl, now: Instant, a: &Ack) {
        let f = &mut self.flows[i];
        let (mut acked, mut pkts, mut lost) = (0u64, 0u32, 0u64);
        for &(id, _) in &a.packets {
            if let Some(b) = f.outstanding.remove(&id) {
                acked += u64::from(b);
                pkts += 1;
            }
        }
        for id in &a.lost {
            if let Some(b) = f.outstanding.remove(id) {
                lost += u64::from(b);
            }
        }
        if acked == 0 && lost == 0 && !a.cnp {
            // Only packets already declared lost by a timeout: nothing new to report.
            return;
        }
        f.in_flight = f.in_flight.saturating_sub(acked + lost);
        f.retx = f.retx.saturating_add(lost);
        f.acked_total = f.acked_total.saturating_add(acked);
        f.iv_acked += acked;
        f.sum.acked_bytes = f.acked_total;
        let rtt = now - a.sent;
        f.iv_rtt_sum += u128::from(rtt.as_ps());
        f.iv_rtt_n += 1;
        if let Some(size) = f.spec.size
            && !f.done
            && f.acked_total >= size
        {
            f.done = true;
            f.sum.completion = Some(now - f.spec.start);
        }
        let progress = acked > 0;
        if progress {
            f.backoff = 0;
        }
        let fb = Feedback {
            acked_bytes: acked,
            acked_packets: pkts,
            ecn_bytes: a.ecn_bytes,
            cnp: a.cnp,
            rtt: Some(rtt),
            host_delay: Some(self.cfg.host_delay),
            hops: &a.hops[..usize::from(a.nhops).min(a.hops.len())],
            loss: (lost > 0).then_some(LossKind::Detected),
            lost_bytes: lost,
            rto: false,
            path: 0,
            in_flight: f.in_flight,
        };
        cc.on_feedback(now, &fb);
        if progress || self.flows[i].in_flight == 0 {
            self.arm_rto(i, now);
        }
        self.sync_cc_timer(i, cc, now);
        self.pump(i, cc, now);
    }

    fn on_nack(&mut self, i: usize, cc: &mut dyn CongestionControl, now: Instant, id: u64) {
        let kind = if self.cfg.overflow == Overflow::TrimLastHop {
            LossKind::TrimmedLastHop
        } else {
            LossKind::Trimmed
        };
        let f = &mut self.flows[i];
        let Some(b) = f.outstanding.remove(&id) else {
            return;
        };
        f.in_flight = f.in_flight.saturating_sub(u64::from(b));
        f.retx = f.retx.saturating_add(u64::from(b));
        let fb = Feedback {
            loss: Some(kind),
            lost_bytes: u64::from(b),
            in_flight: f.in_flight,
            ..Feedback::default()
        };
        cc.on_feedback(now, &fb);
        if self.flows[i].in_flight == 0 {
            self.arm_rto(i, now);
        }
        self.sync_cc_timer(i, cc, now);
        self.pump(i, cc, now);
    }

    fn on_rto(&mut self, i: usize, cc: &mut dyn CongestionControl, now: Instant) {
        let f = &mut self.flows[i];
        f.rto_armed = false;
        if f.in_flight == 0 {
            return;
        }
        let lost = f.in_flight;
        f.outstanding.clear();
        f.in_flight = 0;
        f.retx = f.retx.saturating_add(lost);
        f.backoff = (f.backoff + 1).min(MAX_BACKOFF);
        f.sum.rtos += 1;
        let fb = Feedback {
            rto: true,
            lost_bytes: lost,
            in_flight: 0,
            ..Feedback::default()
        };
        cc.on_feedback(now, &fb);
        self.sync_cc_timer(i, cc, now);
        self.pump(i, cc, now);
    }

    /// (Re)starts the RTO from `now` while bytes are in flight; stops it otherwise.
    fn arm_rto(&mut self, i: usize, now: Instant) {
        let rto = self.cfg.rto.max(Duration::from_nanos(1));
        let f = &mut self.flows[i];
        f.rto_gen += 1;
        f.rto_armed = f.in_flight > 0;
        if f.rto_armed {
            let at = now + rto.saturating_mul(1 << f.backoff);
            let g = f.rto_gen;
            self.push(at, Ev::Rto(i, g));
        }
    }

    /// Schedules the controller's timer if it moved. A timer already fired at `now` is not
    /// fired again before the next nanosecond, so a controller cannot stall virtual time.
    fn sync_cc_timer(&mut self, i: usize, cc: &dyn CongestionControl, now: Instant) {
        let f = &mut self.flows[i];
        let floor = if f.cc_last_fire == Some(now) {
            now + Duration::from_nanos(1)
        } else {
            now
        };
        let want = cc.next_timeout().map(|t| t.max(floor));
        if want != f.cc_at {
            f.cc_gen += 1;
            f.cc_at = want;
            if let Some(t) = want {
                let g = f.cc_gen;
                self.push(t, Ev::CcTimer(i, g));
            }
        }
    }

    fn account_capacity(&mut self, now: Instant) {
        let d = now - self.iv_cap_from;
        self.iv_cap_bytes = self.iv_cap_bytes.saturating_add(self.capacity.bytes_in(d));
        self.iv_cap_from = now;
    }

    fn sample(&mut self, now: Instant, ccs: &[&mut dyn CongestionControl]) {
        self.account_capacity(now);
        let flows = self
            .flows
            .iter_mut()
            .zip(ccs.iter())
            .map(|(f, cc)| {
                let limits = cc.limits();
                let rtt = if f.iv_rtt_n > 0 {
                    let mean = f.iv_rtt_sum / u128::from(f.iv_rtt_n);
                    Some(Duration::from_ps(u64::try_from(mean).unwrap_or(u64::MAX)))
                } else {
                    None
                };
                let s = FlowSample {
                    acked_bytes: f.iv_acked,
                    rate: limits.rate,
                    window: limits.window,
                    in_flight: f.in_flight,
                    rtt,
                    active: f.started && !f.stopped && !f.done,
                };
                f.iv_acked = 0;
                f.iv_rtt_sum = 0;
                f.iv_rtt_n = 0;
                s
            })
            .collect();
        self.samples.push(Sample {
            t: now,
            queue: self.qbytes,
            queue_max: self.iv_qmax,
            capacity: self.capacity,
            capacity_bytes: self.iv_cap_bytes,
            link_bytes: self.iv_link,
            flows,
        });
        self.iv_qmax = self.qbytes;
        self.iv_link = 0;
        self.iv_cap_bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use alloc::string::ToString;
    use alloc::vec;

    use super::*;
    use crate::{Fixed, Limits};

    fn us(n: u64) -> Instant {
        Instant::ZERO + Duration::from_micros(n)
    }

    fn gbps(r: Rate) -> f64 {
        r.bps_f64() / 1e9
    }

    /// A controller with fixed limits that records what it was told.
    #[derive(Debug, Default)]
    struct Probe {
        limits: Limits,
        sent: u64,
        acks: u64,
        ecn_bytes: u64,
        losses: Vec<LossKind>,
        rtos: u64,
        max_hops: usize,
        max_qlen: u64,
        min_rtt: Option<Duration>,
        last_hop_rate: Option<Rate>,
        in_flight_ok: bool,
        timeout: Option<Instant>,
        timeouts: u64,
        max_acked_packets: u32,
        cnps: u64,
    }

    impl Probe {
        fn window(w: u64) -> Self {
            Probe {
                limits: Fixed::new(w, None).limits(),
                in_flight_ok: true,
                ..Probe::default()
            }
        }
    }

    impl CongestionControl for Probe {
        fn on_sent(&mut self, _now: Instant, sent: &Sent) {
            self.sent += u64::from(sent.bytes);
        }
        fn on_feedback(&mut self, _now: Instant, fb: &Feedback<'_>) {
            if fb.acked_bytes > 0 {
                self.acks += 1;
            }
            self.max_acked_packets = self.max_acked_packets.max(fb.acked_packets);
            self.cnps += u64::from(fb.cnp);
            self.ecn_bytes += fb.ecn_bytes;
            if let Some(k) = fb.loss {
                self.losses.push(k);
            }
            if fb.rto {
                self.rtos += 1;
                self.in_flight_ok &= fb.in_flight == 0;
            }
            self.max_hops = self.max_hops.max(fb.hops.len());
            if let Some(h) = fb.hops.last() {
                self.max_qlen = self.max_qlen.max(h.qlen);
                self.last_hop_rate = Some(h.rate);
            }
            if let Some(r) = fb.rtt {
                self.min_rtt = Some(self.min_rtt.map_or(r, |m| m.min(r)));
            }
        }
        fn on_timeout(&mut self, now: Instant) {
            self.timeouts += 1;
            // Ask again for "now": the harness must still move on.
            self.timeout = Some(now);
        }
        fn next_timeout(&self) -> Option<Instant> {
            self.timeout
        }
        fn limits(&self) -> Limits {
            self.limits
        }
        fn name(&self) -> &'static str {
            "probe"
        }
    }

    fn no_ecn() -> Config {
        Config {
            ecn: None,
            duration: Duration::from_millis(2),
            ..Config::default()
        }
    }

    fn fixed(cfg: &Config, flows: &[FlowSpec], window: u64, rate: Option<Rate>) -> Trace {
        run_with(cfg, flows, |_, _, _| Box::new(Fixed::new(window, rate)))
    }

    #[test]
    fn a_window_limited_flow_gets_window_over_rtt() {
        let cfg = no_ecn();
        let flows = [FlowSpec::default()];
        let w = 16 * 4096;
        let t = fixed(&cfg, &flows, w, None);
        let rtt = cfg.path_info(&flows[0]).base_rtt.expect("set");
        let want = w as f64 * 8.0 / rtt.as_secs_f64() / 1e9;
        let got = gbps(t.throughput(0, us(200), us(2000)));
        assert!((got - want).abs() / want < 0.01, "got {got} want {want}");
        assert!(
            t.max_queue(us(200), us(2000)) <= 2 * 4096,
            "no standing queue"
        );
        assert_eq!(t.names, ["fixed"]);
        assert_eq!(t.link.overflow_drops + t.link.random_losses, 0);
    }

    #[test]
    fn the_rtt_sample_is_the_unloaded_rtt_plus_host_delay() {
        let cfg = Config {
            host_delay: Duration::from_micros(3),
            ..no_ecn()
        };
        let flows = [FlowSpec::default()];
        let mut p = Probe::window(4096);
        run(&cfg, &flows, &mut [&mut p]);
        let base = cfg.path_info(&flows[0]).base_rtt.expect("set");
        let min = p.min_rtt.expect("sampled");
        let want = base + Duration::from_micros(3);
        assert!(min >= want && min <= want + cfg.jitter, "{min} {want}");
    }

    #[test]
    fn a_large_window_fills_the_link_and_queues_the_excess() {
        let cfg = no_ecn();
        let flows = FlowSpec::many(2, Instant::ZERO);
        let w = 50 * 4096;
        let t = fixed(&cfg, &flows, w, None);
        let (from, to) = (us(500), us(2000));
        assert!(
            t.utilisation(from, to) > 0.999,
            "{}",
            t.utilisation(from, to)
        );
        assert!(t.jain(from, to) > 0.99);
        let bdp = cfg
            .link_rate
            .bytes_in(cfg.path_info(&flows[0]).base_rtt.expect("set"));
        let want = (2 * w - bdp) as f64;
        let q = t.mean_queue(from, to);
        assert!((q - want).abs() / want < 0.05, "queue {q} want {want}");
        assert_eq!(t.link.overflow_drops, 0);
    }

    #[test]
    fn an_overflowing_queue_drops_and_the_flows_recover() {
        let cfg = Config {
            buffer: 100_000,
            ..no_ecn()
        };
        let flows = FlowSpec::many(4, Instant::ZERO);
        let mut ps: Vec<Probe> = (0..4).map(|_| Probe::window(200 * 4096)).collect();
        let mut refs: Vec<&mut dyn CongestionControl> = ps
            .iter_mut()
            .map(|p| p as &mut dyn CongestionControl)
            .collect();
        let t = run(&cfg, &flows, &mut refs);
        assert!(t.link.overflow_drops > 0);
        assert!(t.link.max_queue <= 100_000);
        assert!(t.utilisation(us(500), us(2000)) > 0.95);
        for (p, f) in ps.iter().zip(&t.flows) {
            assert!(p.losses.contains(&LossKind::Detected));
            assert!(f.retransmitted_bytes > 0);
            assert!(f.acked_bytes <= f.sent_bytes);
            assert_eq!(p.sent, f.sent_bytes);
        }
    }

    #[test]
    fn trimming_nacks_instead_of_dropping() {
        for (overflow, kind) in [
            (Overflow::Trim, LossKind::Trimmed),
            (Overflow::TrimLastHop, LossKind::TrimmedLastHop),
        ] {
            let cfg = Config {
                buffer: 100_000,
                overflow,
                ..no_ecn()
            };
            let flows = FlowSpec::many(2, Instant::ZERO);
            let mut a = Probe::window(100 * 4096);
            let mut b = Probe::window(100 * 4096);
            let t = run(&cfg, &flows, &mut [&mut a, &mut b]);
            assert_eq!(t.link.overflow_drops, 0);
            assert!(t.link.trims > 0);
            assert!(a.losses.iter().all(|&k| k == kind) && !a.losses.is_empty());
            assert_eq!(a.rtos + b.rtos, 0, "trims are recovered without timeouts");
        }
    }

    #[test]
    fn red_marks_between_kmin_and_kmax() {
        let red = Red::dcqcn();
        assert_eq!(red.probability(0), 0.0);
        assert_eq!(red.probability(100_000), 0.0);
        assert!((red.probability(250_000) - 0.1).abs() < 1e-9);
        assert_eq!(red.probability(400_000), 1.0);
        // A standing queue of about 267 KB: some but not all packets marked.
        let cfg = Config {
            ecn: Some(red),
            ..no_ecn()
        };
        let flows = FlowSpec::many(2, Instant::ZERO);
        let mut a = Probe::window(50 * 4096);
        let mut b = Probe::window(50 * 4096);
        let t = run(&cfg, &flows, &mut [&mut a, &mut b]);
        let pkts = t.link.tx_bytes / 4096;
        let frac = t.link.marks as f64 / pkts as f64;
        assert!(frac > 0.05 && frac < 0.15, "marked {frac}");
        // Every echo is a mark; marks still in flight at the end are not echoed yet.
        let marked = t.flows[0].marked * 4096;
        assert!(a.ecn_bytes <= marked && a.ecn_bytes + 8 * 4096 >= marked);
        // A queue that never reaches Kmin is never marked.
        let t = fixed(&cfg, &flows, 8 * 4096, None);
        assert_eq!(t.link.marks, 0);
    }

    #[test]
    fn coalesced_acks_carry_several_packets() {
        let cfg = Config {
            ack_every: 4,
            ..no_ecn()
        };
        let mut p = Probe::window(64 * 4096);
        let t = run(&cfg, &[FlowSpec::default()], &mut [&mut p]);
        assert_eq!(p.max_acked_packets, 4);
        let pkts = t.flows[0].acked_bytes / 4096;
        assert!(
            p.acks >= pkts / 4 && p.acks <= pkts / 4 + 1,
            "{} acks",
            p.acks
        );
        // A window of 3 packets never completes a batch of 4: the delayed ACK flushes it.
        let mut q = Probe::window(3 * 4096);
        let t = run(&cfg, &[FlowSpec::default()], &mut [&mut q]);
        assert!(q.acks > 100 && t.flows[0].rtos == 0);
        assert_eq!(q.max_acked_packets, 3);
    }

    #[test]
    fn the_receiver_paces_cnps() {
        // A standing queue above Kmax: every packet is marked, but CNPs go out at most once
        // per 50 µs per flow.
        let cfg = Config {
            ecn: Some(Red {
                kmin: 0,
                kmax: 1,
                pmax: 1.0,
            }),
            cnp_interval: Some(Duration::from_micros(50)),
            ..no_ecn()
        };
        let mut a = Probe::window(64 * 4096);
        let mut b = Probe::window(64 * 4096);
        let t = run(
            &cfg,
            &FlowSpec::many(2, Instant::ZERO),
            &mut [&mut a, &mut b],
        );
        assert!(t.link.marks > 1000);
        assert!((39..=41).contains(&a.cnps), "{} CNPs", a.cnps);
        assert!(t.flows[0].cnps >= a.cnps && t.flows[0].cnps <= a.cnps + 1);
    }

    #[test]
    fn int_records_report_the_hops() {
        let cfg = Config {
            int: IntHops::NicAndBottleneck,
            ..no_ecn()
        };
        let flows = FlowSpec::many(2, Instant::ZERO);
        let mut a = Probe::window(200 * 4096);
        let mut b = Probe::window(200 * 4096);
        run(&cfg, &flows, &mut [&mut a, &mut b]);
        assert_eq!(a.max_hops, 2);
        assert!(a.max_qlen > 200_000, "{}", a.max_qlen);
        assert_eq!(a.last_hop_rate, Some(cfg.link_rate));
        let cfg = Config {
            int: IntHops::Off,
            ..no_ecn()
        };
        let mut c = Probe::window(4096);
        run(&cfg, &flows[..1], &mut [&mut c]);
        assert_eq!(c.max_hops, 0);
    }

    #[test]
    fn a_rate_step_changes_the_capacity() {
        let cfg = Config {
            rate_steps: vec![(us(1000), Rate::from_gbps(40))],
            ..no_ecn()
        };
        let flows = FlowSpec::many(2, Instant::ZERO);
        let t = fixed(&cfg, &flows, 100 * 4096, None);
        assert!(t.utilisation(us(1200), us(2000)) > 0.99);
        let total: f64 = t
            .throughputs(us(1200), us(2000))
            .into_iter()
            .map(gbps)
            .sum();
        assert!((total - 40.0).abs() < 0.5, "{total}");
        let before: f64 = t.throughputs(us(500), us(1000)).into_iter().map(gbps).sum();
        assert!((before - 100.0).abs() < 1.0, "{before}");
    }

    #[test]
    fn a_paced_flow_gets_its_rate() {
        let t = fixed(
            &no_ecn(),
            &[FlowSpec::default()],
            u64::MAX,
            Some(Rate::from_gbps(10)),
        );
        let got = gbps(t.throughput(0, us(200), us(2000)));
        assert!((got - 10.0).abs() < 0.05, "{got}");
    }

    #[test]
    fn random_loss_is_recovered_and_seeded() {
        let cfg = Config {
            loss: 0.01,
            ..no_ecn()
        };
        let flows = FlowSpec::many(2, Instant::ZERO);
        let t1 = fixed(&cfg, &flows, 64 * 4096, None);
        let t2 = fixed(&cfg, &flows, 64 * 4096, None);
        assert_eq!(t1, t2, "same seed, same trace");
        assert!(t1.link.random_losses > 0);
        assert!(t1.utilisation(us(500), us(2000)) > 0.9);
        let t3 = fixed(&Config { seed: 2, ..cfg }, &flows, 64 * 4096, None);
        assert_ne!(t1, t3);
    }

    #[test]
    fn a_loss_period_bounds_the_loss() {
        let cfg = Config {
            loss: 0.5,
            loss_period: Some((us(500), us(600))),
            ..no_ecn()
        };
        let t = fixed(&cfg, &FlowSpec::many(2, Instant::ZERO), 64 * 4096, None);
        assert!(t.link.random_losses > 0);
        assert!(t.utilisation(us(100), us(500)) > 0.99);
        assert!(t.utilisation(us(1500), us(2000)) > 0.99, "recovered");
        // Lossy, but not stalled.
        assert!(t.utilisation(us(500), us(600)) > 0.1);
    }

    #[test]
    fn a_stalled_flow_times_out_with_backoff() {
        let cfg = Config {
            loss: 1.0,
            ..no_ecn()
        };
        let mut p = Probe::window(8 * 4096);
        let t = run(&cfg, &[FlowSpec::default()], &mut [&mut p]);
        // RTOs at 200, 600, 1400 µs (doubling) within 2 ms.
        assert_eq!(t.flows[0].rtos, 3);
        assert_eq!(p.rtos, 3);
        assert!(p.in_flight_ok);
        assert_eq!(t.flows[0].acked_bytes, 0);
    }

    #[test]
    fn a_sized_flow_completes() {
        let flows = [FlowSpec::default().sized(1_000_000)];
        let t = fixed(&no_ecn(), &flows, u64::MAX, None);
        let fct = t.flows[0].completion.expect("done");
        // 1 MB at 100 Gb/s is 80 µs, plus about one RTT.
        assert!(
            fct > Duration::from_micros(80) && fct < Duration::from_micros(95),
            "{fct}"
        );
        assert_eq!(t.flows[0].acked_bytes, 1_000_000);
        assert!(!t.samples.last().expect("sampled").flows[0].active);
    }

    #[test]
    fn finished_flows_do_not_count_towards_fairness() {
        let flows = [
            FlowSpec::default().sized(100_000),
            FlowSpec::default(),
            FlowSpec::default(),
        ];
        let t = fixed(&no_ecn(), &flows, 32 * 4096, None);
        assert!(t.flows[0].completion.is_some());
        assert!(
            t.jain(us(0), us(2000)) > 0.99,
            "{}",
            t.jain(us(0), us(2000))
        );
        let xs: Vec<f64> = (0..3).map(|i| t.acked(i, us(0), us(2000)) as f64).collect();
        assert!(jain(&xs) < 0.7);
    }

    #[test]
    fn an_incast_queue_drains_after_the_senders_stop() {
        let flows: Vec<FlowSpec> = (0..16)
            .map(|_| FlowSpec::at(us(100)).until(us(300)))
            .collect();
        let t = fixed(&no_ecn(), &flows, 16 * 4096, None);
        assert!(t.link.max_queue > 800_000, "{}", t.link.max_queue);
        let d = t.drain_time(us(300), 10_000).expect("drains");
        // At most 1 MB left at 100 Gb/s: about 80 µs.
        assert!(d < Duration::from_micros(100), "{d}");
        assert_eq!(t.drain_time(us(1500), 10_000), Some(Duration::ZERO));
        // Fair while it lasts.
        assert!(t.jain(us(150), us(300)) > 0.95);
    }

    #[test]
    fn per_flow_rtts_are_honoured() {
        let flows = [
            FlowSpec::default(),
            FlowSpec::default().rtt(Duration::from_micros(30)),
        ];
        let t = fixed(&no_ecn(), &flows, 8 * 4096, None);
        let a = gbps(t.throughput(0, us(200), us(2000)));
        let b = gbps(t.throughput(1, us(200), us(2000)));
        assert!(a > 2.5 * b, "{a} {b}");
    }

    #[test]
    fn degenerate_controllers_cannot_stall_the_model() {
        let mut zero = Probe {
            limits: Limits {
                window: Some(0),
                rate: Some(Rate::ZERO),
                path_hint: None,
            },
            timeout: Some(Instant::ZERO),
            ..Probe::default()
        };
        let mut tiny = Probe {
            limits: Limits {
                window: Some(1),
                rate: None,
                path_hint: None,
            },
            ..Probe::default()
        };
        let cfg = Config {
            packet: 0,
            sample_interval: Duration::ZERO,
            duration: Duration::from_micros(100),
            ..no_ecn()
        };
        let t = run(
            &cfg,
            &FlowSpec::many(2, Instant::ZERO),
            &mut [&mut zero, &mut tiny],
        );
        // The zero-rate flow sends its first packet, then nothing.
        assert_eq!(t.flows[0].sent_bytes, 64);
        // A self-rearming timer fires about once per nanosecond, not forever.
        assert!(zero.timeouts > 0 && zero.timeouts <= 100_001);
        // A window below one packet still allows one packet per RTT.
        assert!(t.flows[1].acked_bytes > 0);
        assert!(!t.samples.is_empty());
        // Fewer controllers than flows: only those run.
        let t = run(
            &no_ecn(),
            &FlowSpec::many(3, Instant::ZERO),
            &mut [&mut tiny],
        );
        assert_eq!(t.flow_count(), 1);
    }

    #[test]
    fn table_and_csv_have_one_row_per_sample() {
        let cfg = Config {
            duration: Duration::from_micros(100),
            ..Config::default()
        };
        let t = fixed(&cfg, &FlowSpec::many(2, Instant::ZERO), 64 * 4096, None);
        assert_eq!(t.samples.len(), 10);
        assert_eq!(t.to_csv().lines().count(), 11);
        assert_eq!(t.table(5).lines().count(), 3);
        let row = t.to_csv().lines().nth(10).expect("row").to_string();
        assert!(row.starts_with("100.000,"), "{row}");
        assert_eq!(row.split(',').count(), 5 + 2 * 5);
    }

    #[test]
    fn jain_index() {
        assert_eq!(jain(&[1.0, 1.0, 1.0]), 1.0);
        assert!((jain(&[1.0, 0.0]) - 0.5).abs() < 1e-12);
        assert_eq!(jain(&[]), 1.0);
        assert_eq!(jain(&[0.0, 0.0]), 1.0);
    }
}
