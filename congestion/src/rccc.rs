//! RCCC, the Ultra Ethernet receiver-credit congestion control (UE 1.0 CMS), for last-hop
//! incast. Facts: the UE 1.0 specification (Ultra Ethernet Consortium, June 2025), its
//! congestion-management sublayer (RCCC, and NSCC, which handles the fabric while RCCC
//! handles the last hop); defaults: the UEC's reference simulator, uet-htsim
//! (<https://github.com/ultraethernet/uet-htsim>, `htsim/sim/uec.cpp`); lineage: NDP, whose
//! receiver paces PULLs at its link rate (Handley et al., "Re-architecting Datacenter Networks
//! and Stacks for Low Latency and High Performance", SIGCOMM 2017,
//! doi:10.1145/3098822.3098825).
//!
//! Two halves, both sans-IO:
//!
//! * [`CreditScheduler`], the **receiver** side. One per endpoint, because the last hop (the
//!   receiver's downlink) is shared by all its connections. Flows register a cumulative demand
//!   in bytes ([`CreditScheduler::set_demand`]); [`CreditScheduler::poll`] hands out the next
//!   grant of at most one pull quantum, round-robin over the flows with outstanding demand,
//!   paced so that granted bytes never exceed the receiver's link rate;
//!   [`CreditScheduler::next_timeout`] says when the next grant is due. State is bounded by
//!   the number of flows it was built for; nothing panics, all arithmetic saturates.
//! * [`Rccc`], the **sender** side, a [`CongestionControl`]. It keeps the credit account of
//!   one connection: a speculative first window, the cumulative credit the receiver granted,
//!   the bytes spent (every data packet, retransmissions included, counted in wire bytes via
//!   [`CongestionControl::on_sent`]), and the cumulative demand it last asked for. The
//!   transport asks it whether a packet may go ([`Rccc::allows`]) and whether to send a
//!   credit request ([`Rccc::poll_request`]), and reports grants ([`Rccc::on_credit`]).
//!   [`Limits::window`] is always `Some(maxwnd)`, [`Limits::rate`] `None`: credit, not the
//!   window, is what paces the sender after its speculative window.
//!
//! All credit quantities are **cumulative** byte counts (as TCP's windows are): a CREDIT says
//! "you may have sent this many bytes in total beyond your speculative window", a
//! CREDIT_REQ says "I need this many in total". A lost, duplicated or reordered credit packet
//! is therefore repaired by any later one (both sides keep the maximum). A sender that waits
//! for credit it asked for re-sends its request after [`RcccParams::request_timeout`]
//! (doubling while nothing arrives, up to 64×); the request also carries the credit the sender
//! has seen, so a receiver whose last CREDIT was lost repeats it at once.
//!
//! Choices where the specification leaves something open, and why:
//!
//! * **Units.** Credit counts wire bytes of data packets (header + payload), so grants paced
//!   at the link rate fill the link exactly; the transport converts its backlog to wire bytes.
//! * **Request size.** `demand = spent + min(backlog, cap) − speculative`, with
//!   `cap = maxwnd + MTU` (the spec: the request is capped at cwnd + MTU). It never decreases
//!   when the sender sends, so the receiver can keep the maximum.
//! * **When to ask.** When the demand grew by a pull quantum since the last request, or grew
//!   at all while the next packet is blocked for lack of credit, or on the retry timer.
//!   Asking per packet would double the packet rate towards the receiver.
//! * **Speculative window** is granted once, at start ([`RcccParams::speculative`]); it is
//!   not restored after idle periods (as in htsim, where credit starts at maxwnd).
//! * **Loss, ECN, delay** change nothing here: RCCC owns the last hop only; run NSCC for the
//!   fabric (the spec lets the two run together).

use alloc::collections::{BTreeMap, VecDeque};

use weir_base::{Duration, Instant, Rate};

use crate::params::convert::{flag, from_gbps, from_micros, gbps, micros};
use crate::params::{ParamError, ParamSpec, Params, Unit, check};
use crate::{CongestionControl, Feedback, Limits, PathInfo, Sent};

/// RTT used to derive maxwnd when neither the parameter nor [`PathInfo::base_rtt`] gives one:
/// the reference network RTT of UEC's NSCC, 12 µs (uet-htsim, `htsim/sim/uec.cpp`).
pub const FALLBACK_RTT: Duration = Duration::from_micros(12);

/// Room for one packet's headers on top of the MTU, so the request cap always covers at least
/// one whole packet (the largest Weir data header is far below this).
pub const HEADER_ALLOWANCE: u64 = 512;

/// Most doublings of the request retry interval.
const MAX_BACKOFF: u32 = 6;

/// RCCC parameters; defaults from uet-htsim (`htsim/sim/uec.cpp`).
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct RcccParams {
    /// Credit granted per pull, in MTU-sized quanta. Default 4 (htsim: 4 MTUs per pull).
    pub pull_mtus: u32,
    /// maxwnd in bytes: the speculative first window and the credit cap. Zero (default):
    /// one BDP, line rate × base RTT ([`PathInfo::base_rtt`], else [`FALLBACK_RTT`]).
    pub max_wnd: u64,
    /// Send a speculative first window of maxwnd bytes before any credit (default on).
    pub speculative: bool,
    /// Receiver's link rate at which credit is paced. Zero (default): the transport's line
    /// rate.
    pub link_rate: Rate,
    /// Most bytes one request asks for beyond what is spent. Zero (default): maxwnd + MTU.
    pub request_cap: u64,
    /// Re-send a credit request after this long without the credit asked for. Default 50 µs.
    pub request_timeout: Duration,
}

impl RcccParams {
    /// The UEC reference simulator's defaults (the [`Default`]).
    pub const fn uec() -> Self {
        RcccParams {
            pull_mtus: 4,
            max_wnd: 0,
            speculative: true,
            link_rate: Rate::ZERO,
            request_cap: 0,
            request_timeout: Duration::from_micros(50),
        }
    }

    /// Bytes per pull for packets of `packet` wire bytes (at least one byte).
    pub fn pull_bytes(&self, packet: u64) -> u64 {
        u64::from(self.pull_mtus.max(1))
            .saturating_mul(packet)
            .max(1)
    }
}

impl Default for RcccParams {
    fn default() -> Self {
        Self::uec()
    }
}

pub(crate) const SPECS: &[ParamSpec] = &[
    ParamSpec {
        name: "pull_mtus",
        unit: Unit::Packets,
        min: 1.0,
        max: 1024.0,
        doc: "credit per pull in MTU-sized quanta; 4 (uet-htsim RCCC: 4 MTUs per pull)",
    },
    ParamSpec {
        name: "max_wnd",
        unit: Unit::Bytes,
        min: 0.0,
        max: 1e12,
        doc: "maxwnd: speculative first window and credit cap; 0 = line rate x base RTT (UE 1.0 RCCC)",
    },
    ParamSpec {
        name: "speculative",
        unit: Unit::Bool,
        min: 0.0,
        max: 1.0,
        doc: "send a speculative first window of maxwnd before credit; 1 (UE 1.0 RCCC, htsim)",
    },
    ParamSpec {
        name: "link_rate",
        unit: Unit::Gbps,
        min: 0.0,
        max: 100_000.0,
        doc: "receiver link rate credit is paced at; 0 = the transport's line rate (UE 1.0 RCCC)",
    },
    ParamSpec {
        name: "request_cap",
        unit: Unit::Bytes,
        min: 0.0,
        max: 1e12,
        doc: "most bytes one credit request asks for; 0 = maxwnd + MTU (UE 1.0 RCCC)",
    },
    ParamSpec {
        name: "request_timeout",
        unit: Unit::Micros,
        min: 1.0,
        max: 1_000_000.0,
        doc: "re-send a credit request after this long without credit; 50 us (Weir)",
    },
];

impl Params for RcccParams {
    const ALGORITHM: &'static str = "rccc";

    fn specs() -> &'static [ParamSpec] {
        SPECS
    }

    fn get(&self, name: &str) -> Option<f64> {
        Some(match name {
            "pull_mtus" => f64::from(self.pull_mtus),
            "max_wnd" => self.max_wnd as f64,
            "speculative" => flag(self.speculative),
            "link_rate" => gbps(self.link_rate),
            "request_cap" => self.request_cap as f64,
            "request_timeout" => micros(self.request_timeout),
            _ => return None,
        })
    }

    fn set(&mut self, name: &str, value: f64) -> Result<(), ParamError> {
        let spec = check(Self::ALGORITHM, SPECS, name, value)?;
        match spec.name {
            "pull_mtus" => self.pull_mtus = value as u32,
            "max_wnd" => self.max_wnd = value as u64,
            "speculative" => self.speculative = value == 1.0,
            "link_rate" => self.link_rate = from_gbps(value),
            "request_cap" => self.request_cap = value as u64,
            "request_timeout" => self.request_timeout = from_micros(value),
            _ => unreachable!("every spec has a field"),
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Receiver side.

/// One grant from a [`CreditScheduler`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The flow it is for.
    pub flow: u32,
    /// Bytes newly granted (at most one pull quantum, at least 1).
    pub bytes: u64,
    /// Cumulative bytes granted to the flow, this grant included: what a CREDIT carries.
    pub total: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Flow {
    /// Largest cumulative demand seen.
    requested: u64,
    /// Cumulative bytes granted.
    granted: u64,
    /// In the round-robin ring.
    active: bool,
}

/// The receiver's credit pacer: grants at most `rate` worth of bytes, one pull quantum at a
/// time, round-robin over flows with outstanding demand. See the module documentation.
///
/// Calling order: feed demand with [`CreditScheduler::set_demand`]; call
/// [`CreditScheduler::poll`] until `None` whenever [`CreditScheduler::next_timeout`] has
/// passed (or after new demand), sending one CREDIT per grant.
#[derive(Clone, Debug)]
pub struct CreditScheduler {
    rate: Rate,
    pull: u64,
    max_flows: usize,
    flows: BTreeMap<u32, Flow>,
    ring: VecDeque<u32>,
    next_at: Instant,
    grants: u64,
    granted_bytes: u64,
}

impl CreditScheduler {
    /// A scheduler pacing at `rate` (at least 1 kbit/s), granting `pull` bytes (at least 1)
    /// per poll, for at most `max_flows` flows at once (at least 1).
    pub fn new(rate: Rate, pull: u64, max_flows: usize) -> Self {
        CreditScheduler {
            rate: rate.max(Rate::from_bps(1000)),
            pull: pull.max(1),
            max_flows: max_flows.max(1),
            flows: BTreeMap::new(),
            ring: VecDeque::new(),
            next_at: Instant::ZERO,
            grants: 0,
            granted_bytes: 0,
        }
    }

    /// The pacing rate.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Pace at `rate` (at least 1 kbit/s) from the next grant on; demands, grants and the
    /// round-robin order are kept (the receiver's link changed speed, or its operator
    /// reloaded the configuration).
    pub fn set_rate(&mut self, rate: Rate) {
        self.rate = rate.max(Rate::from_bps(1000));
    }

    /// Bytes per pull.
    pub fn pull(&self) -> u64 {
        self.pull
    }

    /// Raise `flow`'s cumulative demand to `cumulative` bytes (a smaller value changes
    /// nothing: demands only grow). Returns false, changing nothing, when the flow is new and
    /// the scheduler already tracks `max_flows` flows.
    pub fn set_demand(&mut self, flow: u32, cumulative: u64) -> bool {
        if !self.flows.contains_key(&flow) && self.flows.len() >= self.max_flows {
            return false;
        }
        let f = self.flows.entry(flow).or_default();
        f.requested = f.requested.max(cumulative);
        if f.requested > f.granted && !f.active {
            f.active = true;
            self.ring.push_back(flow);
        }
        true
    }

    /// Cumulative bytes granted to `flow` (`None`: unknown flow).
    pub fn granted(&self, flow: u32) -> Option<u64> {
        self.flows.get(&flow).map(|f| f.granted)
    }

    /// Cumulative demand of `flow` (`None`: unknown flow).
    pub fn requested(&self, flow: u32) -> Option<u64> {
        self.flows.get(&flow).map(|f| f.requested)
    }

    /// Forget `flow` (its connection closed).
    pub fn remove(&mut self, flow: u32) {
        if self.flows.remove(&flow).is_some_and(|f| f.active) {
            self.ring.retain(|&x| x != flow);
        }
    }

    /// Flows tracked.
    pub fn flows(&self) -> usize {
        self.flows.len()
    }

    /// Grants handed out so far, and their bytes.
    pub fn totals(&self) -> (u64, u64) {
        (self.grants, self.granted_bytes)
    }

    /// The next grant, if one is due at `now`: the flow at the head of the round-robin ring
    /// gets `min(pull, outstanding demand)` bytes, and the next grant is due that many bytes'
    /// serialisation time later (never earlier than `now` for a scheduler that was idle).
    pub fn poll(&mut self, now: Instant) -> Option<Grant> {
        if now < self.next_at {
            return None;
        }
        while let Some(id) = self.ring.pop_front() {
            let Some(f) = self.flows.get_mut(&id) else {
                continue;
            };
            let pending = f.requested.saturating_sub(f.granted);
            if pending == 0 {
                f.active = false;
                continue;
            }
            let bytes = pending.min(self.pull);
            f.granted = f.granted.saturating_add(bytes);
            if f.requested > f.granted {
                self.ring.push_back(id);
            } else {
                f.active = false;
            }
            //= Ultra Ethernet Specification v1.0 (UEC, June 2025)#rccc
            //# The receiver meters credits to its active senders at its own link rate.
            //= https://doi.org/10.1145/3098822.3098825
            //# NDP: the receiver paces PULLs at its link rate.
            let start = if self.next_at > now {
                self.next_at
            } else {
                now
            };
            self.next_at = start.saturating_add(self.rate.serialization_time(bytes));
            self.grants = self.grants.saturating_add(1);
            self.granted_bytes = self.granted_bytes.saturating_add(bytes);
            return Some(Grant {
                flow: id,
                bytes,
                total: f.granted,
            });
        }
        None
    }

    /// When [`CreditScheduler::poll`] will next return a grant (`None`: no demand
    /// outstanding). May lie in the past: a grant is due now.
    pub fn next_timeout(&self) -> Option<Instant> {
        (!self.ring.is_empty()).then_some(self.next_at)
    }
}

// ---------------------------------------------------------------------------------------------
// Sender side.

/// A credit request to send: the cumulative demand and the credit seen so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreditRequest {
    /// Cumulative credit the sender needs beyond its speculative window.
    pub demand: u64,
    /// Cumulative credit the sender has seen granted.
    pub granted: u64,
}

/// Counters of one sender.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RcccStats {
    /// Credit updates that raised the granted total.
    pub credits: u64,
    /// Requests sent.
    pub requests: u64,
    /// Requests re-sent because the retry timer fired.
    pub retries: u64,
}

/// The sender half of RCCC: one connection's credit account. See the module documentation.
#[derive(Clone, Debug)]
pub struct Rccc {
    params: RcccParams,
    max_wnd: u64,
    spec: u64,
    cap: u64,
    step: u64,
    granted: u64,
    spent: u64,
    requested: u64,
    retry_at: Option<Instant>,
    retry_due: bool,
    backoff: u32,
    stats: RcccStats,
}

impl Rccc {
    /// A sender for a connection described by `path`.
    pub fn new(_now: Instant, path: &PathInfo, params: RcccParams) -> Self {
        let mtu = u64::from(path.mtu.max(1));
        let max_wnd = if params.max_wnd > 0 {
            params.max_wnd
        } else {
            let rtt = path
                .base_rtt
                .filter(|d| *d > Duration::ZERO)
                .unwrap_or(FALLBACK_RTT);
            path.line_rate.bytes_in(rtt)
        }
        .max(mtu);
        //= Ultra Ethernet Specification v1.0 (UEC, June 2025)#rccc
        //# The sender asks for credit equal to its backlog, capped at cwnd + MTU.
        let cap = if params.request_cap > 0 {
            params.request_cap
        } else {
            max_wnd.saturating_add(mtu)
        }
        .max(mtu.saturating_add(HEADER_ALLOWANCE));
        //# The sender may send a speculative first window.
        let spec = if params.speculative { max_wnd } else { 0 };
        Rccc {
            params,
            max_wnd,
            spec,
            cap,
            step: params.pull_bytes(mtu),
            granted: 0,
            spent: 0,
            requested: 0,
            retry_at: None,
            retry_due: false,
            backoff: 0,
            stats: RcccStats::default(),
        }
    }

    /// Hot reload: new parameters (and the windows and pull size derived from them for
    /// `path`) while the credit account carries on. Granted, spent and requested bytes, the
    /// request timer and the speculative allowance stay: the receiver's cumulative grant keeps
    /// counting from where it was, so a fresh account would read its next echo as credit
    /// never spent.
    pub fn set_params(&mut self, now: Instant, path: &PathInfo, params: RcccParams) {
        let fresh = Rccc::new(now, path, params);
        *self = Rccc {
            spec: self.spec,
            granted: self.granted,
            spent: self.spent,
            requested: self.requested,
            retry_at: self.retry_at,
            retry_due: self.retry_due,
            backoff: self.backoff,
            stats: self.stats,
            ..fresh
        };
    }

    /// The parameters.
    pub fn params(&self) -> &RcccParams {
        &self.params
    }

    /// maxwnd in bytes.
    pub fn max_window(&self) -> u64 {
        self.max_wnd
    }

    /// The request cap in bytes (at least one MTU plus headers).
    pub fn request_cap(&self) -> u64 {
        self.cap
    }

    /// Bytes the sender may still send: speculative window + credit − spent.
    pub fn available(&self) -> u64 {
        self.spec
            .saturating_add(self.granted)
            .saturating_sub(self.spent)
    }

    /// Whether a packet of `wire_bytes` may go now.
    pub fn allows(&self, wire_bytes: u64) -> bool {
        wire_bytes <= self.available()
    }

    /// Cumulative credit granted so far.
    pub fn granted(&self) -> u64 {
        self.granted
    }

    /// Cumulative bytes spent (sent).
    pub fn spent(&self) -> u64 {
        self.spent
    }

    /// Largest demand requested so far.
    pub fn requested(&self) -> u64 {
        self.requested
    }

    /// Counters.
    pub fn stats(&self) -> RcccStats {
        self.stats
    }

    /// The cumulative demand for a backlog of `backlog` wire bytes (new data and queued
    /// retransmissions): `spent + min(backlog, cap) − speculative`.
    pub fn demand(&self, backlog: u64) -> u64 {
        self.spent
            .saturating_add(backlog.min(self.cap))
            .saturating_sub(self.spec)
    }

    /// A CREDIT arrived carrying `total` cumulative bytes. Returns whether it raised the
    /// granted total (a stale or duplicate CREDIT does not).
    pub fn on_credit(&mut self, now: Instant, total: u64) -> bool {
        if total <= self.granted {
            return false;
        }
        self.granted = total;
        self.stats.credits = self.stats.credits.saturating_add(1);
        self.backoff = 0;
        let wait = self.retry_interval();
        self.retry_at = (self.requested > self.granted).then(|| now.saturating_add(wait));
        true
    }

    /// Whether to send a credit request now, for a backlog of `backlog` wire bytes; `blocked`:
    /// the next packet waits for credit. When it returns a request, the caller sends it.
    pub fn poll_request(
        &mut self,
        now: Instant,
        backlog: u64,
        blocked: bool,
    ) -> Option<CreditRequest> {
        let demand = self.demand(backlog);
        let grown = demand.saturating_sub(self.requested);
        let retry = self.retry_due && backlog > 0 && (self.requested > self.granted || grown > 0);
        if !(retry || grown >= self.step || (grown > 0 && blocked)) {
            self.retry_due = false;
            return None;
        }
        if retry {
            self.stats.retries = self.stats.retries.saturating_add(1);
        }
        self.retry_due = false;
        self.requested = self.requested.max(demand);
        self.stats.requests = self.stats.requests.saturating_add(1);
        let wait = self.retry_interval();
        self.retry_at = (self.requested > self.granted).then(|| now.saturating_add(wait));
        Some(CreditRequest {
            demand: self.requested,
            granted: self.granted,
        })
    }

    /// The request timeout (at least 1 ns), doubled per unanswered retry.
    fn retry_interval(&self) -> Duration {
        self.params
            .request_timeout
            .max(Duration::from_nanos(1))
            .saturating_mul(1 << self.backoff.min(MAX_BACKOFF))
    }
}

impl CongestionControl for Rccc {
    fn on_sent(&mut self, _now: Instant, sent: &Sent) {
        //= Ultra Ethernet Specification v1.0 (UEC, June 2025)#rccc
        //# After the speculative window, the sender sends only against credit.
        self.spent = self.spent.saturating_add(u64::from(sent.bytes));
    }

    fn on_feedback(&mut self, _now: Instant, _fb: &Feedback<'_>) {}

    fn on_timeout(&mut self, now: Instant) {
        if self.retry_at.is_some_and(|t| now >= t) {
            self.retry_at = None;
            self.retry_due = true;
            self.backoff = self.backoff.saturating_add(1).min(MAX_BACKOFF);
        }
    }

    fn next_timeout(&self) -> Option<Instant> {
        self.retry_at
    }

    fn limits(&self) -> Limits {
        //= Ultra Ethernet Specification v1.0 (UEC, June 2025)#rccc
        //# Its credit is capped at maxwnd.
        Limits {
            window: Some(self.max_wnd.max(1)),
            rate: None,
            path_hint: None,
        }
    }

    fn name(&self) -> &'static str {
        "rccc"
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use super::*;

    fn path() -> PathInfo {
        PathInfo {
            mtu: 4096,
            line_rate: Rate::from_gbps(100),
            base_rtt: None,
            paths: 1,
        }
    }

    #[test]
    fn a_reload_keeps_the_credit_account() {
        let mut r = Rccc::new(Instant::ZERO, &path(), RcccParams::default());
        assert!(r.on_credit(Instant::ZERO, 100_000));
        r.on_sent(
            Instant::ZERO,
            &Sent {
                bytes: 40_000,
                ..Sent::default()
            },
        );
        let before = (r.granted(), r.spent(), r.requested(), r.available());
        let p = RcccParams {
            max_wnd: 1 << 20,
            ..RcccParams::default()
        };
        r.set_params(Instant::ZERO, &path(), p);
        assert_eq!(r.max_window(), 1 << 20);
        assert_eq!(
            (r.granted(), r.spent(), r.requested(), r.available()),
            before
        );
    }

    #[test]
    fn params_round_trip_and_refuse_bad_values() {
        let mut p = RcccParams::default();
        for s in RcccParams::specs() {
            let v = p.get(s.name).unwrap();
            p.set(s.name, v.max(s.min)).unwrap();
        }
        p.set("pull_mtus", 8.0).unwrap();
        p.set("link_rate", 25.0).unwrap();
        p.set("request_timeout", 10.0).unwrap();
        assert_eq!(p.pull_mtus, 8);
        assert_eq!(p.link_rate, Rate::from_gbps(25));
        assert_eq!(p.request_timeout, Duration::from_micros(10));
        assert!(p.set("pull_mtus", 0.0).is_err());
        assert!(p.set("speculative", 0.5).is_err());
        assert!(p.set("nope", 1.0).is_err());
        assert!(p.set("max_wnd", f64::NAN).is_err());
        assert_eq!(p.get("nope"), None);
    }

    #[test]
    fn grants_are_paced_exactly_at_the_link_rate() {
        // 100 Gb/s, 10 000-byte pulls: one grant every 800 ns.
        let mut s = CreditScheduler::new(Rate::from_gbps(100), 10_000, 16);
        let t0 = Instant::from_nanos(1_000);
        assert_eq!(s.next_timeout(), None);
        assert!(s.set_demand(7, 1_000_000));
        let mut now = t0;
        let mut times = Vec::new();
        while let Some(at) = s.next_timeout() {
            now = now.max(at);
            while let Some(g) = s.poll(now) {
                assert_eq!(g.flow, 7);
                times.push((now, g.bytes, g.total));
            }
        }
        assert_eq!(times.len(), 100);
        for (i, &(t, bytes, total)) in times.iter().enumerate() {
            assert_eq!(t, t0 + Duration::from_nanos(800 * i as u64), "grant {i}");
            assert_eq!(bytes, 10_000);
            assert_eq!(total, 10_000 * (i as u64 + 1));
        }
        assert_eq!(s.totals(), (100, 1_000_000));
        // Nothing owed: no timer, no grant, however late.
        assert_eq!(s.poll(Instant::MAX), None);
    }

    #[test]
    fn a_partial_last_grant_takes_proportional_time() {
        let mut s = CreditScheduler::new(Rate::from_gbps(100), 10_000, 4);
        s.set_demand(1, 12_500);
        let g = s.poll(Instant::ZERO).unwrap();
        assert_eq!(g.bytes, 10_000);
        assert_eq!(s.poll(Instant::from_nanos(799)), None);
        let g = s.poll(Instant::from_nanos(800)).unwrap();
        assert_eq!((g.bytes, g.total), (2_500, 12_500));
        // 2 500 bytes at 100 Gb/s = 200 ns; but nothing is owed any more.
        assert_eq!(s.next_timeout(), None);
        s.set_demand(1, 13_000);
        assert_eq!(s.next_timeout(), Some(Instant::from_nanos(1_000)));
        assert_eq!(s.poll(Instant::from_nanos(999)), None);
        assert_eq!(s.poll(Instant::from_nanos(1_000)).unwrap().bytes, 500);
    }

    #[test]
    fn grants_are_fair_across_flows() {
        let mut s = CreditScheduler::new(Rate::from_gbps(400), 4096, 64);
        // Unequal demands: flows 0..8 want 1 MB, flows 8..16 want 40 KB.
        for f in 0..16u32 {
            let want = if f < 8 { 1 << 20 } else { 40_000 };
            assert!(s.set_demand(f, want));
        }
        let mut per = [0u64; 16];
        let mut order = Vec::new();
        let mut now = Instant::ZERO;
        while let Some(at) = s.next_timeout() {
            now = now.max(at);
            let g = s.poll(now).unwrap();
            per[g.flow as usize] += g.bytes;
            order.push(g.flow);
        }
        for (f, &got) in per.iter().enumerate() {
            assert_eq!(got, if f < 8 { 1 << 20 } else { 40_000 }, "flow {f}");
        }
        // While all 16 are active, every round of 16 grants serves each flow once.
        for round in order[..16 * 9].chunks(16) {
            let mut r = round.to_vec();
            r.sort_unstable();
            assert_eq!(r, (0..16).collect::<Vec<_>>());
        }
        // Any window of 8 consecutive grants among the big flows (after the small ones
        // finished) is a permutation of them.
        let tail = &order[order.len() - 8 * 8..];
        for w in tail.chunks(8) {
            let mut r = w.to_vec();
            r.sort_unstable();
            assert_eq!(r, (0..8).collect::<Vec<_>>());
        }
    }

    #[test]
    fn demands_only_grow_and_state_is_bounded() {
        let mut s = CreditScheduler::new(Rate::ZERO, 0, 2);
        assert!(s.set_demand(1, 100));
        assert!(s.set_demand(1, 50));
        assert_eq!(s.requested(1), Some(100));
        assert!(s.set_demand(2, 0));
        assert!(!s.set_demand(3, 10), "a third flow is refused");
        assert_eq!(s.flows(), 2);
        s.remove(1);
        assert!(s.set_demand(3, u64::MAX));
        // A pathological rate and pull are clamped, never a panic or a zero step.
        let g = s.poll(Instant::ZERO).unwrap();
        assert_eq!((g.flow, g.bytes), (3, 1));
        assert!(s.next_timeout().unwrap() > Instant::ZERO);
        assert_eq!(s.poll(Instant::MAX).map(|g| g.flow), Some(3));
        s.remove(3);
        assert_eq!(s.next_timeout(), None);
        assert_eq!(s.granted(3), None);
    }

    #[test]
    fn a_removed_flow_gets_nothing() {
        let mut s = CreditScheduler::new(Rate::from_gbps(100), 1000, 8);
        s.set_demand(1, 10_000);
        s.set_demand(2, 10_000);
        s.remove(1);
        let mut now = Instant::ZERO;
        while let Some(at) = s.next_timeout() {
            now = now.max(at);
            assert_eq!(s.poll(now).unwrap().flow, 2);
        }
        assert_eq!(s.granted(2), Some(10_000));
    }

    fn sent(bytes: u32) -> Sent {
        Sent {
            bytes,
            ..Sent::default()
        }
    }

    #[test]
    fn sender_spends_its_speculative_window_then_only_credit() {
        let p = RcccParams {
            max_wnd: 20_000,
            ..RcccParams::default()
        };
        let mut r = Rccc::new(Instant::ZERO, &path(), p);
        assert_eq!(r.name(), "rccc");
        assert_eq!(r.limits().window, Some(20_000));
        assert_eq!(r.request_cap(), 20_000 + 4096);
        assert_eq!(r.available(), 20_000);
        let t = Instant::ZERO;
        for _ in 0..4 {
            assert!(r.allows(4168));
            r.on_sent(t, &sent(4168));
        }
        assert_eq!(r.available(), 20_000 - 4 * 4168);
        assert!(!r.allows(4168));
        // Backlog of 1 MB: demand = spent + cap − speculative.
        let backlog = 1 << 20;
        assert_eq!(r.demand(backlog), 4 * 4168 + 24_096 - 20_000);
        let q = r.poll_request(t, backlog, true).unwrap();
        assert_eq!(q.demand, r.demand(backlog));
        assert_eq!(q.granted, 0);
        assert!(
            r.poll_request(t, backlog, true).is_none(),
            "nothing new to ask"
        );
        assert!(!r.on_credit(t, 0));
        assert!(r.on_credit(t, 8000));
        assert!(!r.on_credit(t, 7000), "stale credit is ignored");
        assert_eq!(r.available(), 20_000 + 8000 - 4 * 4168);
        r.on_feedback(t, &Feedback::default());
        assert_eq!(r.available(), 20_000 + 8000 - 4 * 4168);
    }

    #[test]
    fn without_speculation_the_first_request_goes_at_once() {
        let p = RcccParams {
            max_wnd: 64_000,
            speculative: false,
            ..RcccParams::default()
        };
        let mut r = Rccc::new(Instant::ZERO, &path(), p);
        assert_eq!(r.available(), 0);
        assert!(!r.allows(1));
        let q = r.poll_request(Instant::ZERO, 10_000, true).unwrap();
        assert_eq!(q.demand, 10_000);
        // Small growth while not blocked waits for a pull's worth.
        assert!(r.on_credit(Instant::ZERO, 10_000));
        r.on_sent(Instant::ZERO, &sent(4168));
        assert!(r.poll_request(Instant::ZERO, 10_000, false).is_none());
        assert!(r.poll_request(Instant::ZERO, 10_000, true).is_some());
    }

    #[test]
    fn an_unanswered_request_is_repeated_with_backoff() {
        let p = RcccParams {
            speculative: false,
            request_timeout: Duration::from_micros(10),
            ..RcccParams::default()
        };
        let mut r = Rccc::new(Instant::ZERO, &path(), p);
        let t0 = Instant::ZERO;
        let first = r.poll_request(t0, 50_000, true).unwrap();
        assert_eq!(r.next_timeout(), Some(t0 + Duration::from_micros(10)));
        r.on_timeout(t0 + Duration::from_micros(9));
        assert!(r.poll_request(t0, 50_000, true).is_none());
        let t1 = t0 + Duration::from_micros(10);
        r.on_timeout(t1);
        let again = r.poll_request(t1, 50_000, true).unwrap();
        assert_eq!(again, first, "the same cumulative request");
        assert_eq!(r.next_timeout(), Some(t1 + Duration::from_micros(20)));
        assert_eq!(r.stats().retries, 1);
        // Credit arrives: the retry timer restarts from the base interval.
        let t2 = t1 + Duration::from_micros(5);
        assert!(r.on_credit(t2, 20_000));
        assert_eq!(r.next_timeout(), Some(t2 + Duration::from_micros(10)));
        assert!(r.on_credit(t2, first.demand));
        assert_eq!(r.next_timeout(), None, "everything asked for arrived");
    }

    #[test]
    fn demand_never_shrinks_as_packets_go() {
        let p = RcccParams {
            max_wnd: 30_000,
            ..RcccParams::default()
        };
        let mut r = Rccc::new(Instant::ZERO, &path(), p);
        let mut backlog: u64 = 200_000;
        let mut last = 0;
        while backlog > 0 {
            let d = r.demand(backlog);
            assert!(d >= last);
            last = d;
            let n = backlog.min(4168);
            r.on_sent(Instant::ZERO, &sent(n as u32));
            backlog -= n;
        }
        // Once everything is sent the demand equals what was spent beyond the speculation.
        assert_eq!(r.demand(0), 200_000 - 30_000);
    }

    #[test]
    fn degenerate_inputs_never_panic_and_stay_positive() {
        let p = RcccParams {
            pull_mtus: 0,
            request_timeout: Duration::ZERO,
            ..RcccParams::default()
        };
        let path = PathInfo {
            mtu: 0,
            line_rate: Rate::ZERO,
            base_rtt: Some(Duration::ZERO),
            paths: 0,
        };
        let mut r = Rccc::new(Instant::MAX, &path, p);
        assert!(r.limits().window.unwrap() >= 1);
        r.on_sent(Instant::MAX, &sent(u32::MAX));
        r.on_credit(Instant::MAX, u64::MAX);
        let _ = r.poll_request(Instant::MAX, u64::MAX, true);
        r.on_timeout(Instant::MAX);
        assert_eq!(r.max_window(), 1);
        assert_eq!(r.request_cap(), 1 + HEADER_ALLOWANCE);
        assert_eq!(
            r.demand(u64::MAX),
            u64::from(u32::MAX) + r.request_cap() - 1
        );
        assert!(r.limits().window.unwrap() >= 1);
    }
}
