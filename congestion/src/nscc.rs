//! NSCC, the Ultra Ethernet Network-Signal Congestion Control (UE 1.0), as the UEC reference
//! simulator implements it (`ultraethernet/uet-htsim`, `htsim/sim/uec.cpp`, "Fixed issue
//! with NSCC not matching specs", #129), whose design paper is SMaRTT (arXiv 2404.01630).
//! Facts: the UE 1.0 specification (Ultra Ethernet Consortium, June 2025), its NSCC and
//! packet-trimming sections; defaults: uet-htsim's `initNsccParams`
//! (<https://github.com/ultraethernet/uet-htsim>, `htsim/sim/uec.cpp`).
//!
//! Contract: [`Nscc`] is a window controller. [`Limits::window`] is always `Some(cwnd)` with
//! `MTU <= cwnd <= maxwnd` (`maxwnd = 1.5 × BDP`, at least one MTU; see [`Nscc::max_window`]),
//! [`Limits::rate`] is always `None` (NSCC sends at line rate within its window), and
//! [`Limits::path_hint`] names the path of the current feedback when the law says to move
//! off it (it is recomputed on every feedback event). NSCC has no timer of its own
//! ([`CongestionControl::next_timeout`] is always `None`): its periods (MD spacing, the
//! QuickAdapt epoch, the fulfil period) are checked when feedback arrives, as in the
//! reference code. `now` going backwards is treated as "no time passed".
//!
//! The law, per acknowledgement (`delay` = RTT − base RTT, `ECN` = the ACK echoes CE):
//!
//! * **Delay.** The base RTT is the configured one, lowered to the smallest RTT sample seen
//!   (the host's part, [`Feedback::host_delay`], removed first); `maxwnd = 1.5·base_RTT·line
//!   rate` follows it. `avg_delay` is an EWMA (gain 0.0125) of the delay samples, except that
//!   an unmarked sample above the target pulls it towards `base_RTT/4` instead: a high delay
//!   without ECN is not taken as congestion on this path.
//! * **Four quadrants.** No ECN, delay < target: *proportional increase*,
//!   `inc += α·(target − delay)` per acked byte, or, once the delay has stayed under 1 µs for
//!   a whole window of bytes, *fast increase*: `cwnd += 0.25·a` per acked byte at once.
//!   No ECN, delay ≥ target: *fair increase*, `inc += fi` per acked byte. ECN, delay ≥
//!   target: *multiplicative decrease*, `cwnd ← cwnd·max(1 − γ·(avg_delay − target)/avg_delay,
//!   0.5)` if `avg_delay > target`, at most once per base RTT. ECN, delay < target: no change;
//!   move off this path ([`NsccParams::path_hint`]).
//! * **Fulfil.** Every 8 MTU acknowledged or every network RTT, `cwnd += inc / cwnd` (an
//!   additive-per-RTT shape), plus `η` once per network RTT; `inc ← 0`.
//! * **QuickAdapt.** Once per epoch of `base_RTT + target`: if a trim NACK arrived, or the
//!   delay exceeds `4 × target`, and the bytes delivered in the last epoch are below
//!   `maxwnd / 2^qa_gate`, set `cwnd` to those bytes and ignore ECN-marked feedback for the
//!   bytes then in flight.
//! * **Trim NACK.** `cwnd −= NACKed bytes` (unless QuickAdapt just ran or is ignoring), the
//!   delay average takes a sample of one network RTT, and QuickAdapt is armed. A last-hop trim
//!   does the same unless [`NsccParams::last_hop_trim_decrease`] is off (for when RCCC owns
//!   the last hop). A fabric trim also asks to move off the path.
//! * **Timeout.** `cwnd −= lost bytes` (the reference marks the packet for retransmission and
//!   takes it out of the window).
//!
//! Scaling (htsim `initNsccParams`): `a = BDP / (100 Gb/s × 12 µs)` with
//! `BDP = network RTT × line rate`, `b = target / 12 µs`; `α = 4·MSS·a·b / target`,
//! `fi = 5·MSS·a`, `η = 0.15·MSS·a`; the target is the network RTT, or 0.75 of it with
//! trimming. Every constant is a named parameter of [`NsccParams`].
//!
//! Choices where the specification (or the reference code) leaves something open, and why:
//!
//! * **Base and network RTT.** Unset, they come from [`PathInfo::base_rtt`], else 12 µs (the
//!   spec's reference RTT). The network RTT (the fabric-wide RTT the constants scale with)
//!   defaults to this connection's base RTT, since a controller cannot see the fabric.
//! * **What counts as an ECN echo.** Weir's ACKs report CE-marked bytes
//!   ([`Feedback::ecn_bytes`]); any marked byte (or a CNP) makes the ACK an "ECN" ACK, as the
//!   reference's per-ACK echo bit does.
//! * **Losses other than trims.** A loss detected from SACK holes ([`LossKind::Detected`])
//!   changes nothing, as in the reference (its SACK-based recovery does not touch the window;
//!   on a sprayed, lossy fabric it is often reordering or corruption).
//!   [`LossKind::ReceiverNoResources`] is not congestion and is ignored.
//! * **Receiver push-back** (`rcv_cwnd_pend`) is not implemented: [`Feedback`] has no field
//!   for it.
//! * **Large-delay gain.** The reference uses a fixed 0.0125 for samples above 5 base RTTs;
//!   kept as [`LARGE_DELAY_EWMA`] (equal to the default gain).
//! * **Degenerate samples.** An RTT sample of zero is ignored; a host delay at least as long
//!   as the RTT is ignored (the RTT is used whole).
//! * **Hot reload** ([`Nscc::set_params`]) keeps the measured base RTT, the window and all
//!   epoch state; derived constants are recomputed and the window clamped.
//! * **Floating point** for the window and the accumulators, as in the reference.
//!
//! Known limit of the law (measured on the bottleneck model, `testing` under feature
//! `testing`): NSCC needs either trimming or a buffer deeper than its target delay. ECN with a
//! delay under the target is read as path congestion (no cut) and SACK-detected losses are
//! ignored, so behind a drop-tail buffer whose full queue is shallower than the target (64 KB
//! at 100 Gb/s against a 9 µs target) only timeouts cut the window: 16 flows end at Jain ≈ 0.5
//! with over a hundred RTOs. The same buffer with trimming recovers (Jain 0.96).

use weir_base::{Duration, Instant, Rate};

use crate::params::convert::{flag, from_gbps, from_micros, gbps, micros};
use crate::params::{ParamError, ParamSpec, Params, Unit, check};
use crate::{CongestionControl, Feedback, Limits, LossKind, PathHint, PathInfo, Sent};

/// Base RTT when neither [`NsccParams::base_rtt`] nor [`PathInfo::base_rtt`] gives one: the
/// spec's reference network RTT, 12 µs.
pub const FALLBACK_BASE_RTT: Duration = Duration::from_micros(12);

/// EWMA gain the reference code uses for delay samples above five base RTTs.
pub const LARGE_DELAY_EWMA: f64 = 0.0125;

/// NSCC parameters, named after the htsim variables; defaults from `initNsccParams`
/// (uet-htsim, `htsim/sim/uec.cpp`).
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct NsccParams {
    /// Configured base RTT. Zero (default): [`PathInfo::base_rtt`], else
    /// [`FALLBACK_BASE_RTT`]. Lowered at run time to the smallest RTT sample.
    pub base_rtt: Duration,
    /// Network RTT the constants scale with. Zero (default): the configured base RTT.
    pub network_rtt: Duration,
    /// Target queueing delay. Zero (default): the network RTT, × 0.75 with trimming.
    pub target_qdelay: Duration,
    /// The fabric trims (default on): lowers the derived target to 0.75 × network RTT.
    pub trimming: bool,
    /// γ of the multiplicative decrease. Default 0.8.
    pub gamma: f64,
    /// Smallest fraction of the window one decrease keeps (htsim `max_md_jump`). Default 0.5.
    pub md_floor: f64,
    /// EWMA gain of the average delay. Default 0.0125.
    pub delay_ewma: f64,
    /// QuickAdapt on (default).
    pub quick_adapt: bool,
    /// QuickAdapt runs only if the epoch delivered less than `maxwnd / 2^qa_gate`. Default 3.
    pub qa_gate: u8,
    /// QuickAdapt delay trigger, in multiples of the target. Default 4.
    pub qa_threshold: f64,
    /// Proportional gain in MSS: `α = alpha_mss·MSS·a·b / target`. Default 4.
    pub alpha_mss: f64,
    /// Fair increase in MSS: `fi = fi_mss·MSS·a`. Default 5.
    pub fi_mss: f64,
    /// Per-period increase in MSS: `η = eta_mss·MSS·a`. Default 0.15.
    pub eta_mss: f64,
    /// Fast increase per acked byte, before scaling by `a`. Default 0.25.
    pub fast_increase_scale: f64,
    /// Fast increase needs the delay below this for a whole window. Default 1 µs.
    pub fast_increase_delay: Duration,
    /// Fulfil after this many MTUs acknowledged. Default 8.
    pub adjust_mtus: u32,
    /// `maxwnd` in BDPs. Default 1.5.
    pub max_wnd_bdp: f64,
    /// Reference link rate of the scaling. Default 100 Gb/s.
    pub reference_rate: Rate,
    /// Reference RTT of the scaling. Default 12 µs.
    pub reference_rtt: Duration,
    /// Ask to move off a path on ECN-without-delay, fabric trims and timeouts (default on).
    pub path_hint: bool,
    /// A last-hop trim decreases the window too (default on; off when RCCC handles the last
    /// hop, as the reference skips it with RCCC active).
    pub last_hop_trim_decrease: bool,
}

impl NsccParams {
    /// The UEC reference simulator's defaults (the [`Default`]).
    pub const fn uec() -> Self {
        NsccParams {
            base_rtt: Duration::ZERO,
            network_rtt: Duration::ZERO,
            target_qdelay: Duration::ZERO,
            trimming: true,
            gamma: 0.8,
            md_floor: 0.5,
            delay_ewma: 0.0125,
            quick_adapt: true,
            qa_gate: 3,
            qa_threshold: 4.0,
            alpha_mss: 4.0,
            fi_mss: 5.0,
            eta_mss: 0.15,
            fast_increase_scale: 0.25,
            fast_increase_delay: Duration::from_micros(1),
            adjust_mtus: 8,
            max_wnd_bdp: 1.5,
            reference_rate: Rate::from_gbps(100),
            reference_rtt: Duration::from_micros(12),
            path_hint: true,
            last_hop_trim_decrease: true,
        }
    }
}

impl Default for NsccParams {
    fn default() -> Self {
        Self::uec()
    }
}

pub(crate) const SPECS: &[ParamSpec] = &[
    ParamSpec {
        name: "base_rtt",
        unit: Unit::Micros,
        min: 0.0,
        max: 1_000_000.0,
        doc: "configured base RTT; 0 = the path's, else 12 us (UEC reference RTT); lowered to the min RTT sample",
    },
    ParamSpec {
        name: "network_rtt",
        unit: Unit::Micros,
        min: 0.0,
        max: 1_000_000.0,
        doc: "network RTT the constants scale with; 0 = the base RTT (uet-htsim _network_rtt)",
    },
    ParamSpec {
        name: "target_qdelay",
        unit: Unit::Micros,
        min: 0.0,
        max: 1_000_000.0,
        doc: "target queueing delay; 0 = network RTT, x0.75 with trimming (uet-htsim initNsccParams)",
    },
    ParamSpec {
        name: "trimming",
        unit: Unit::Bool,
        min: 0.0,
        max: 1.0,
        doc: "the fabric trims: derived target 0.75 x network RTT; 1 (UEC 1.0 trimming, htsim)",
    },
    ParamSpec {
        name: "gamma",
        unit: Unit::Scalar,
        min: 0.0,
        max: 1.0,
        doc: "multiplicative-decrease gain; 0.8 (UEC 1.0 NSCC, uet-htsim _gamma)",
    },
    ParamSpec {
        name: "md_floor",
        unit: Unit::Scalar,
        min: 0.0,
        max: 1.0,
        doc: "fraction of the window one decrease keeps at least; 0.5 (uet-htsim max_md_jump)",
    },
    ParamSpec {
        name: "delay_ewma",
        unit: Unit::Scalar,
        min: 0.0,
        max: 1.0,
        doc: "EWMA gain of the average queueing delay; 0.0125 (uet-htsim _delay_alpha)",
    },
    ParamSpec {
        name: "quick_adapt",
        unit: Unit::Bool,
        min: 0.0,
        max: 1.0,
        doc: "QuickAdapt on; 1 (UEC 1.0 NSCC)",
    },
    ParamSpec {
        name: "qa_gate",
        unit: Unit::Scalar,
        min: 0.0,
        max: 63.0,
        doc: "QuickAdapt only below maxwnd/2^qa_gate delivered per epoch; 3 (uet-htsim _qa_gate)",
    },
    ParamSpec {
        name: "qa_threshold",
        unit: Unit::Scalar,
        min: 0.0,
        max: 1_000.0,
        doc: "QuickAdapt delay trigger in multiples of the target; 4 (uet-htsim _qa_threshold)",
    },
    ParamSpec {
        name: "alpha_mss",
        unit: Unit::Scalar,
        min: 0.0,
        max: 1_000.0,
        doc: "proportional gain alpha = alpha_mss*MSS*a*b/target; 4 (uet-htsim _alpha)",
    },
    ParamSpec {
        name: "fi_mss",
        unit: Unit::Scalar,
        min: 0.0,
        max: 1_000.0,
        doc: "fair increase fi = fi_mss*MSS*a per RTT; 5 (uet-htsim _fi)",
    },
    ParamSpec {
        name: "eta_mss",
        unit: Unit::Scalar,
        min: 0.0,
        max: 1_000.0,
        doc: "increase eta = eta_mss*MSS*a per network RTT; 0.15 (uet-htsim _eta)",
    },
    ParamSpec {
        name: "fast_increase_scale",
        unit: Unit::Scalar,
        min: 0.0,
        max: 100.0,
        doc: "fast increase per acked byte, times a; 0.25 (uet-htsim _fi_scale)",
    },
    ParamSpec {
        name: "fast_increase_delay",
        unit: Unit::Micros,
        min: 0.0,
        max: 1_000.0,
        doc: "fast increase when the delay stays below this for a window; 1 us (uet-htsim fast_increase)",
    },
    ParamSpec {
        name: "adjust_mtus",
        unit: Unit::Packets,
        min: 1.0,
        max: 1_000_000.0,
        doc: "fulfil the accumulated increase every this many MTUs acked; 8 (uet-htsim _adjust_bytes_threshold)",
    },
    ParamSpec {
        name: "max_wnd_bdp",
        unit: Unit::Scalar,
        min: 0.1,
        max: 100.0,
        doc: "maxwnd in BDPs; 1.5 (UEC 1.0 NSCC, uet-htsim initNscc)",
    },
    ParamSpec {
        name: "reference_rate",
        unit: Unit::Gbps,
        min: 0.001,
        max: 100_000.0,
        doc: "reference link rate of the scaling factor a; 100 Gbit/s (UEC 1.0 NSCC)",
    },
    ParamSpec {
        name: "reference_rtt",
        unit: Unit::Micros,
        min: 0.001,
        max: 1_000_000.0,
        doc: "reference RTT of the scaling factors a and b; 12 us (UEC 1.0 NSCC)",
    },
    ParamSpec {
        name: "path_hint",
        unit: Unit::Bool,
        min: 0.0,
        max: 1.0,
        doc: "ask to leave a path on ECN-without-delay, fabric trim, timeout; 1 (UEC 1.0 NSCC)",
    },
    ParamSpec {
        name: "last_hop_trim_decrease",
        unit: Unit::Bool,
        min: 0.0,
        max: 1.0,
        doc: "a last-hop trim cuts the window; 1 (uet-htsim skips it only when RCCC runs)",
    },
];

impl Params for NsccParams {
    const ALGORITHM: &'static str = "nscc";

    fn specs() -> &'static [ParamSpec] {
        SPECS
    }

    fn get(&self, name: &str) -> Option<f64> {
        Some(match name {
            "base_rtt" => micros(self.base_rtt),
            "network_rtt" => micros(self.network_rtt),
            "target_qdelay" => micros(self.target_qdelay),
            "trimming" => flag(self.trimming),
            "gamma" => self.gamma,
            "md_floor" => self.md_floor,
            "delay_ewma" => self.delay_ewma,
            "quick_adapt" => flag(self.quick_adapt),
            "qa_gate" => f64::from(self.qa_gate),
            "qa_threshold" => self.qa_threshold,
            "alpha_mss" => self.alpha_mss,
            "fi_mss" => self.fi_mss,
            "eta_mss" => self.eta_mss,
            "fast_increase_scale" => self.fast_increase_scale,
            "fast_increase_delay" => micros(self.fast_increase_delay),
            "adjust_mtus" => f64::from(self.adjust_mtus),
            "max_wnd_bdp" => self.max_wnd_bdp,
            "reference_rate" => gbps(self.reference_rate),
            "reference_rtt" => micros(self.reference_rtt),
            "path_hint" => flag(self.path_hint),
            "last_hop_trim_decrease" => flag(self.last_hop_trim_decrease),
            _ => return None,
        })
    }

    fn set(&mut self, name: &str, value: f64) -> Result<(), ParamError> {
        let spec = check(Self::ALGORITHM, SPECS, name, value)?;
        let on = value == 1.0;
        match spec.name {
            "base_rtt" => self.base_rtt = from_micros(value),
            "network_rtt" => self.network_rtt = from_micros(value),
            "target_qdelay" => self.target_qdelay = from_micros(value),
            "trimming" => self.trimming = on,
            "gamma" => self.gamma = value,
            "md_floor" => self.md_floor = value,
            "delay_ewma" => self.delay_ewma = value,
            "quick_adapt" => self.quick_adapt = on,
            "qa_gate" => self.qa_gate = value as u8,
            "qa_threshold" => self.qa_threshold = value,
            "alpha_mss" => self.alpha_mss = value,
            "fi_mss" => self.fi_mss = value,
            "eta_mss" => self.eta_mss = value,
            "fast_increase_scale" => self.fast_increase_scale = value,
            "fast_increase_delay" => self.fast_increase_delay = from_micros(value),
            "adjust_mtus" => self.adjust_mtus = value as u32,
            "max_wnd_bdp" => self.max_wnd_bdp = value,
            "reference_rate" => self.reference_rate = from_gbps(value),
            "reference_rtt" => self.reference_rtt = from_micros(value),
            "path_hint" => self.path_hint = on,
            "last_hop_trim_decrease" => self.last_hop_trim_decrease = on,
            _ => unreachable!("every spec has a field"),
        }
        Ok(())
    }
}

/// Counters for tests, logs and plots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NsccStats {
    /// ACKs in the proportional-increase quadrant (including fast increases).
    pub proportional: u64,
    /// ACKs that applied a fast increase.
    pub fast: u64,
    /// ACKs in the fair-increase quadrant.
    pub fair: u64,
    /// Multiplicative decreases applied.
    pub decreases: u64,
    /// ECN-with-low-delay ACKs (no window change).
    pub ecn_low_delay: u64,
    /// QuickAdapt resets of the window.
    pub quick_adapts: u64,
    /// Feedback ignored after a QuickAdapt.
    pub ignored: u64,
    /// Trim NACKs seen.
    pub trims: u64,
    /// Retransmission timeouts seen.
    pub timeouts: u64,
    /// Fulfil steps.
    pub fulfils: u64,
}

/// Values derived from the parameters and the path.
#[derive(Clone, Copy, Debug)]
struct Derived {
    /// MSS (the path's MTU), bytes, >= 1; also the minimum window.
    mss: f64,
    /// Line rate, bit/s, >= 1.
    line: f64,
    /// Network RTT.
    network_rtt: Duration,
    /// Target queueing delay.
    target: Duration,
    /// Proportional increase per acked byte and picosecond of headroom: α·a·b/target.
    alpha: f64,
    fi: f64,
    eta: f64,
    fi_scale: f64,
    gamma: f64,
    md_floor: f64,
    ewma: f64,
    /// QuickAdapt delay trigger, ps.
    qa_threshold: f64,
    /// Fulfil byte threshold.
    adjust_bytes: u64,
    max_wnd_bdp: f64,
}

/// The configured base RTT: the parameter, else the path's, else [`FALLBACK_BASE_RTT`].
fn configured_base(path: &PathInfo, p: &NsccParams) -> Duration {
    if p.base_rtt > Duration::ZERO {
        p.base_rtt
    } else {
        path.base_rtt
            .filter(|d| *d > Duration::ZERO)
            .unwrap_or(FALLBACK_BASE_RTT)
    }
}

/// `x` clamped into `[lo, hi]`, or `default` when `x` is NaN.
fn sane(x: f64, lo: f64, hi: f64, default: f64) -> f64 {
    if x.is_nan() { default } else { x.clamp(lo, hi) }
}

impl Derived {
    fn new(path: &PathInfo, p: &NsccParams, base: Duration) -> Self {
        let d = NsccParams::uec();
        let mss = f64::from(path.mtu.max(1));
        let line = path.line_rate.bps_f64().max(1.0);
        let network_rtt = if p.network_rtt > Duration::ZERO {
            p.network_rtt
        } else {
            base
        };
        //= uet-htsim htsim/sim/uec.cpp#initNsccParams
        //# target_Qdelay = network_rtt × 0.75 with trimming, else network_rtt
        let target = if p.target_qdelay > Duration::ZERO {
            p.target_qdelay
        } else if p.trimming {
            network_rtt.mul_f64(0.75)
        } else {
            network_rtt
        };
        let ref_rtt = p.reference_rtt.as_ps() as f64;
        let ref_bdp = p.reference_rate.bps_f64() * ref_rtt;
        //# scaling_factor_a = network BDP / reference BDP (100 Gb/s × 12 µs)
        let a = network_rtt.as_ps() as f64 * line / ref_bdp;
        let a = if a.is_finite() && a > 0.0 { a } else { 1.0 };
        //# alpha = 4·MSS·a·b / target with b = target / 12 µs, so α·(target − delay) per
        //# acked byte is 4·MSS·a·(target − delay) / 12 µs.
        let alpha = sane(p.alpha_mss, 0.0, 1e6, d.alpha_mss) * mss * a / ref_rtt.max(1.0);
        Derived {
            mss,
            line,
            network_rtt,
            target,
            alpha,
            //# fi = 5·MSS·a; eta = 0.15·MSS·a; fi_scale = 0.25·a
            fi: sane(p.fi_mss, 0.0, 1e6, d.fi_mss) * mss * a,
            eta: sane(p.eta_mss, 0.0, 1e6, d.eta_mss) * mss * a,
            fi_scale: sane(p.fast_increase_scale, 0.0, 1e6, d.fast_increase_scale) * a,
            gamma: sane(p.gamma, 0.0, 1.0, d.gamma),
            md_floor: sane(p.md_floor, 0.0, 1.0, d.md_floor),
            ewma: sane(p.delay_ewma, 0.0, 1.0, d.delay_ewma),
            //# qa_threshold = 4 × target_Qdelay
            qa_threshold: sane(p.qa_threshold, 0.0, 1e6, d.qa_threshold) * target.as_ps() as f64,
            //# adjust_bytes_threshold = 8 × MTU; adjust_period_threshold = network_rtt
            adjust_bytes: u64::from(p.adjust_mtus.max(1))
                .saturating_mul(u64::from(path.mtu.max(1))),
            max_wnd_bdp: sane(p.max_wnd_bdp, 1e-3, 1e6, d.max_wnd_bdp),
        }
    }
}

/// NSCC sender for one congestion-control context. See the module documentation.
#[derive(Clone, Debug)]
pub struct Nscc {
    params: NsccParams,
    path: PathInfo,
    d: Derived,
    cwnd: f64,
    base_rtt: Duration,
    maxwnd: f64,
    /// Average queueing delay, ps.
    avg_delay: f64,
    /// Accumulated increase (bytes², applied as `inc / cwnd`).
    inc: f64,
    /// Bytes acked since the last fulfil.
    received: u64,
    /// Bytes acked in the current QuickAdapt epoch.
    achieved: u64,
    bytes_ignored: u64,
    bytes_to_ignore: u64,
    /// End of the QuickAdapt epoch; `None` before the first ACK.
    qa_end: Option<Instant>,
    trigger_qa: bool,
    /// Bytes acked with the delay under the fast-increase threshold.
    fi_count: u64,
    fast: bool,
    last_decrease: Option<Instant>,
    last_adjust: Instant,
    hint: Option<PathHint>,
    now: Instant,
    stats: NsccStats,
}

impl Nscc {
    /// A controller starting at `cwnd = maxwnd` (line rate, no slow start). A zero line rate
    /// is taken as 1 bit/s and a zero MTU as one byte.
    pub fn new(now: Instant, path: &PathInfo, params: NsccParams) -> Self {
        let base = configured_base(path, &params);
        let d = Derived::new(path, &params, base);
        let mut n = Nscc {
            params,
            path: *path,
            d,
            cwnd: 0.0,
            base_rtt: base,
            maxwnd: 0.0,
            avg_delay: 0.0,
            inc: 0.0,
            received: 0,
            achieved: 0,
            bytes_ignored: 0,
            bytes_to_ignore: 0,
            qa_end: None,
            trigger_qa: false,
            fi_count: 0,
            fast: false,
            last_decrease: None,
            last_adjust: now,
            hint: None,
            now,
            stats: NsccStats::default(),
        };
        n.maxwnd = n.max_window_for(base);
        n.cwnd = n.maxwnd;
        n
    }

    /// The parameters this controller runs with.
    pub fn params(&self) -> &NsccParams {
        &self.params
    }

    /// Hot reload: new parameters apply from the next event. The measured base RTT, the
    /// window, the average delay and the epoch state are kept; derived constants are
    /// recomputed (a configured base RTT only lowers the measured one) and the window is
    /// clamped into the new bounds.
    pub fn set_params(&mut self, p: NsccParams) {
        if p.base_rtt > Duration::ZERO && p.base_rtt < self.base_rtt {
            self.base_rtt = p.base_rtt;
        }
        self.params = p;
        self.d = Derived::new(&self.path, &p, configured_base(&self.path, &p));
        self.maxwnd = self.max_window_for(self.base_rtt);
        self.bound();
    }

    /// Current window in bytes (unrounded).
    pub fn cwnd(&self) -> f64 {
        self.cwnd
    }

    /// Largest window: `max_wnd_bdp × base RTT × line rate`, at least one MTU.
    pub fn max_window(&self) -> f64 {
        self.maxwnd
    }

    /// Base RTT in use (configured, lowered by samples).
    pub fn base_rtt(&self) -> Duration {
        self.base_rtt
    }

    /// Target queueing delay.
    pub fn target_qdelay(&self) -> Duration {
        self.d.target
    }

    /// Average queueing delay.
    pub fn avg_delay(&self) -> Duration {
        Duration::from_ps(self.avg_delay as u64)
    }

    /// Counters since creation.
    pub fn stats(&self) -> NsccStats {
        self.stats
    }

    fn max_window_for(&self, base: Duration) -> f64 {
        let bdp = base.as_secs_f64() * self.d.line / 8.0;
        let w = self.d.max_wnd_bdp * bdp;
        if w.is_finite() {
            w.max(self.d.mss)
        } else {
            f64::MAX
        }
    }

    /// Keeps `cwnd` in [MSS, maxwnd] (htsim `set_cwnd_bounds`); NaN goes to the minimum.
    fn bound(&mut self) {
        self.cwnd = if self.cwnd.is_nan() {
            self.d.mss
        } else {
            self.cwnd.clamp(self.d.mss, self.maxwnd.max(self.d.mss))
        };
    }

    fn target_ps(&self) -> f64 {
        self.d.target.as_ps() as f64
    }

    fn hint(&mut self, path: u16) {
        if self.params.path_hint && self.path.paths > 1 {
            self.hint = Some(PathHint { avoid: path });
        }
    }

    /// htsim `update_delay`: one delay sample (ps) into the average.
    fn update_delay(&mut self, delay: f64, ecn: bool) {
        let base = self.base_rtt.as_ps() as f64;
        let g = self.d.ewma;
        //= uet-htsim htsim/sim/uec.cpp#update_delay
        //# unmarked and above target: decay towards base_rtt/4; above 5 base RTTs: gain
        //# 0.0125; else the configured gain.
        let next = if !ecn && delay > self.target_ps() {
            g * base * 0.25 + (1.0 - g) * self.avg_delay
        } else if delay > 5.0 * base {
            LARGE_DELAY_EWMA * delay + (1.0 - LARGE_DELAY_EWMA) * self.avg_delay
        } else {
            g * delay + (1.0 - g) * self.avg_delay
        };
        if next.is_finite() {
            self.avg_delay = next.max(0.0);
        }
    }

    /// htsim `quick_adapt`. Returns whether QuickAdapt ran or the feedback is being ignored
    /// (then the accumulated increase is dropped).
    fn quick_adapt(
        &mut self,
        now: Instant,
        is_loss: bool,
        ecn: bool,
        delay: f64,
        in_flight: u64,
    ) -> bool {
        if !self.params.quick_adapt {
            return false;
        }
        let mut done = false;
        if self.bytes_ignored < self.bytes_to_ignore && ecn {
            done = true;
            self.stats.ignored += 1;
        } else if self.qa_end.is_none_or(|end| now > end) {
            //= uet-htsim htsim/sim/uec.cpp#quick_adapt
            //# once per (base_rtt + target) epoch: on a trim, a loss or delay > qa_threshold,
            //# if achieved_bytes < maxwnd >> qa_gate: cwnd = max(achieved_bytes, min_cwnd) and
            //# ignore the bytes in flight.
            let gate = self.maxwnd / (1u64 << self.params.qa_gate.min(63)) as f64;
            if self.qa_end.is_some()
                && (self.trigger_qa || is_loss || delay > self.d.qa_threshold)
                && (self.achieved as f64) < gate
            {
                self.cwnd = (self.achieved as f64).max(self.d.mss);
                self.bytes_to_ignore = in_flight;
                self.bytes_ignored = 0;
                self.trigger_qa = false;
                self.stats.quick_adapts += 1;
                done = true;
            }
            self.achieved = 0;
            self.qa_end = Some(now + self.base_rtt + self.d.target);
        }
        if done {
            self.inc = 0.0;
            self.received = 0;
        }
        done
    }

    /// htsim `fast_increase`; returns whether it applied.
    fn fast_increase(&mut self, acked: u64, delay: f64) -> bool {
        //= uet-htsim htsim/sim/uec.cpp#fast_increase
        //# delay under 1 µs for a whole cwnd of acked bytes: cwnd += acked × fi_scale
        if delay < self.params.fast_increase_delay.as_ps() as f64 {
            self.fi_count = self.fi_count.saturating_add(acked);
            if self.fi_count as f64 > self.cwnd || self.fast {
                self.cwnd += acked as f64 * self.d.fi_scale;
                self.fast = true;
                self.stats.fast += 1;
                return true;
            }
        } else {
            self.fi_count = 0;
        }
        self.fast = false;
        false
    }

    fn multiplicative_decrease(&mut self, now: Instant) {
        self.fast = false;
        self.fi_count = 0;
        let avg = self.avg_delay;
        let target = self.target_ps();
        //= uet-htsim htsim/sim/uec.cpp#multiplicative_decrease
        //# if avg_delay > target and now − last_dec > base_rtt:
        //# cwnd *= max(1 − γ·(avg_delay − target)/avg_delay, 0.5)
        if avg > target
            && self
                .last_decrease
                .is_none_or(|t| now.saturating_since(t) > self.base_rtt)
        {
            let keep = (1.0 - self.d.gamma * (avg - target) / avg).max(self.d.md_floor);
            self.cwnd *= keep;
            self.last_decrease = Some(now);
            self.stats.decreases += 1;
        }
    }

    /// htsim `fulfill_adjustment`.
    fn fulfil(&mut self, now: Instant) {
        //= uet-htsim htsim/sim/uec.cpp#fulfill_adjustment
        //# cwnd += inc_bytes / cwnd; once per adjust period also cwnd += eta
        self.cwnd += self.inc / self.cwnd.max(1.0);
        if now.saturating_since(self.last_adjust) >= self.d.network_rtt {
            self.cwnd += self.d.eta;
            self.last_adjust = now;
        }
        self.inc = 0.0;
        self.received = 0;
        self.stats.fulfils += 1;
    }

    /// One acknowledgement (htsim `processAck` + `updateCwndOnAck_NSCC`).
    fn on_ack(&mut self, now: Instant, fb: &Feedback<'_>) {
        let acked = fb.acked_bytes;
        self.achieved = self.achieved.saturating_add(acked);
        self.received = self.received.saturating_add(acked);
        self.bytes_ignored = self.bytes_ignored.saturating_add(acked);
        let ecn = fb.ecn_bytes > 0 || fb.cnp;

        let sample = fb
            .rtt
            .filter(|r| *r > Duration::ZERO)
            .map(|rtt| match fb.host_delay {
                Some(h) if h < rtt => rtt - h,
                _ => rtt,
            });
        let delay = match sample {
            Some(raw) => {
                if raw < self.base_rtt {
                    // htsim update_base_rtt: BDP and maxwnd follow the smallest RTT.
                    self.base_rtt = raw;
                    self.maxwnd = self.max_window_for(raw);
                }
                let delay = (raw - self.base_rtt).as_ps() as f64;
                self.update_delay(delay, ecn);
                delay
            }
            None => self.avg_delay,
        };

        if self.quick_adapt(now, false, ecn, delay, fb.in_flight) {
            self.bound();
            return;
        }
        let target = self.target_ps();
        //= uet-htsim htsim/sim/uec.cpp#updateCwndOnAck_NSCC
        //# four quadrants of (ECN, delay ≥ target)
        match (ecn, delay >= target) {
            (false, true) => {
                //# fair increase: inc_bytes += fi × acked
                self.inc += self.d.fi * acked as f64;
                self.stats.fair += 1;
            }
            (false, false) => {
                self.stats.proportional += 1;
                if !self.fast_increase(acked, delay) {
                    //# proportional increase: inc_bytes += α × acked × (target − delay)
                    self.inc += self.d.alpha * acked as f64 * (target - delay);
                }
            }
            (true, true) => self.multiplicative_decrease(now),
            (true, false) => {
                // No window change: the congestion is on this path, not in the flow's queue.
                self.stats.ecn_low_delay += 1;
                self.hint(fb.path);
            }
        }
        self.bound();
        if self.received > self.d.adjust_bytes
            || now.saturating_since(self.last_adjust) > self.d.network_rtt
        {
            self.fulfil(now);
        }
        self.bound();
    }

    /// A trim NACK (htsim `updateCwndOnNack_NSCC`).
    fn on_trim(&mut self, now: Instant, fb: &Feedback<'_>, last_hop: bool) {
        self.stats.trims += 1;
        let nacked = if fb.lost_bytes > 0 {
            fb.lost_bytes
        } else {
            self.d.mss as u64
        };
        self.bytes_ignored = self.bytes_ignored.saturating_add(nacked);
        //= uet-htsim htsim/sim/uec.cpp#updateCwndOnNack_NSCC
        //# the network RTT stands in for the delay of a trimmed packet; arm QuickAdapt;
        //# unless it ran, cwnd −= nacked bytes (skipped for last-hop trims under RCCC)
        self.update_delay(self.d.network_rtt.as_ps() as f64, true);
        self.trigger_qa = true;
        let adapted = self.quick_adapt(now, true, true, 0.0, fb.in_flight);
        if !adapted && (self.params.last_hop_trim_decrease || !last_hop) {
            self.cwnd -= nacked as f64;
        }
        if !last_hop {
            self.hint(fb.path);
        }
        self.bound();
    }
}

impl CongestionControl for Nscc {
    fn on_sent(&mut self, now: Instant, _sent: &Sent) {
        self.now = self.now.max(now);
    }

    fn on_feedback(&mut self, now: Instant, fb: &Feedback<'_>) {
        let now = now.max(self.now);
        self.now = now;
        self.hint = None;
        if fb.acked_bytes > 0
            || fb.acked_packets > 0
            || fb.rtt.is_some()
            || fb.ecn_bytes > 0
            || fb.cnp
        {
            self.on_ack(now, fb);
        }
        match fb.loss {
            Some(LossKind::Trimmed) => self.on_trim(now, fb, false),
            Some(LossKind::TrimmedLastHop) => self.on_trim(now, fb, true),
            // Detected losses and receiver refusals: see the module documentation.
            Some(LossKind::Detected | LossKind::ReceiverNoResources) | None => {}
        }
        if fb.rto {
            //= uet-htsim htsim/sim/uec.cpp#mark_packet_for_retransmission
            //# on a retransmission timeout: cwnd = max(cwnd − pkt_size, MTU)
            self.stats.timeouts += 1;
            let lost = if fb.lost_bytes > 0 {
                fb.lost_bytes as f64
            } else {
                self.d.mss
            };
            self.cwnd -= lost;
            self.hint(fb.path);
            self.bound();
        }
    }

    fn on_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    fn next_timeout(&self) -> Option<Instant> {
        None
    }

    fn limits(&self) -> Limits {
        let w = if self.cwnd.is_nan() {
            self.d.mss
        } else {
            self.cwnd
        };
        Limits {
            window: Some(((w + 0.5) as u64).max(1)),
            rate: None,
            path_hint: self.hint,
        }
    }

    fn name(&self) -> &'static str {
        "nscc"
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn path() -> PathInfo {
        PathInfo {
            mtu: 4096,
            line_rate: Rate::from_gbps(100),
            base_rtt: Some(Duration::from_micros(12)),
            paths: 8,
        }
    }

    fn us(t: u64) -> Instant {
        Instant::from_ps(t * 1_000_000)
    }

    fn ns(t: u64) -> Instant {
        Instant::from_ps(t * 1_000)
    }

    fn nscc(p: NsccParams) -> Nscc {
        Nscc::new(Instant::ZERO, &path(), p)
    }

    /// An ACK of `acked` bytes with an RTT of `rtt_ns`, optionally ECN-marked.
    fn ack(acked: u64, rtt_ns: u64, ecn: bool) -> Feedback<'static> {
        Feedback {
            acked_bytes: acked,
            acked_packets: 1,
            ecn_bytes: if ecn { acked } else { 0 },
            rtt: Some(Duration::from_nanos(rtt_ns)),
            in_flight: 100_000,
            path: 5,
            ..Feedback::default()
        }
    }

    fn trim(bytes: u64, last_hop: bool) -> Feedback<'static> {
        Feedback {
            loss: Some(if last_hop {
                LossKind::TrimmedLastHop
            } else {
                LossKind::Trimmed
            }),
            lost_bytes: bytes,
            path: 2,
            in_flight: 100_000,
            ..Feedback::default()
        }
    }

    /// maxwnd at 100 Gb/s × 12 µs × 1.5.
    const MAXWND: f64 = 225_000.0;
    const MSS: f64 = 4096.0;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-6 * b.abs().max(1.0)
    }

    /// A fresh controller whose window was set to `w`.
    fn at_window(p: NsccParams, w: f64) -> Nscc {
        let mut n = nscc(p);
        n.cwnd = w;
        n
    }

    #[test]
    fn starts_at_maxwnd_with_the_spec_scaling() {
        let n = nscc(NsccParams::default());
        assert_eq!(n.limits().window, Some(225_000));
        assert_eq!(n.limits().rate, None);
        assert_eq!(n.limits().path_hint, None);
        assert_eq!(n.target_qdelay(), Duration::from_micros(9));
        assert!(close(n.d.fi, 5.0 * MSS));
        assert!(close(n.d.eta, 0.15 * MSS));
        assert!(close(n.d.fi_scale, 0.25));
        // α·(target − 0) per byte = 4·MSS·a·b = 4·4096·0.75.
        assert!(close(n.d.alpha * 9e6, 4.0 * MSS * 0.75));
        assert_eq!(n.name(), "nscc");
        assert!(!n.needs_int());
        assert_eq!(n.next_timeout(), None);
        // Without trimming the target is the whole network RTT; 200 Gb/s doubles a.
        let n = Nscc::new(
            Instant::ZERO,
            &PathInfo {
                line_rate: Rate::from_gbps(200),
                ..path()
            },
            NsccParams {
                trimming: false,
                ..NsccParams::default()
            },
        );
        assert_eq!(n.target_qdelay(), Duration::from_micros(12));
        assert!(close(n.d.fi, 10.0 * MSS));
    }

    #[test]
    fn base_rtt_follows_the_smallest_sample_without_host_delay() {
        let mut n = nscc(NsccParams::default());
        let fb = Feedback {
            host_delay: Some(Duration::from_micros(3)),
            ..ack(4096, 13_000, false)
        };
        n.on_feedback(us(1), &fb);
        assert_eq!(n.base_rtt(), Duration::from_micros(10));
        assert!(close(n.max_window(), 1.5 * 125_000.0));
        // The window follows the new, smaller maxwnd.
        assert!(n.cwnd() <= n.max_window());
        // The target and the constants stay on the network RTT.
        assert_eq!(n.target_qdelay(), Duration::from_micros(9));
        // A host delay longer than the RTT is not believed; zero RTTs are ignored.
        let fb = Feedback {
            host_delay: Some(Duration::from_micros(30)),
            ..ack(4096, 20_000, false)
        };
        n.on_feedback(us(2), &fb);
        n.on_feedback(us(3), &ack(4096, 0, false));
        assert_eq!(n.base_rtt(), Duration::from_micros(10));
    }

    /// No ECN, delay < target: α·(target − delay) per acked byte, applied as inc/cwnd at the
    /// fulfil step (after more than 8 MTU, or a network RTT).
    #[test]
    fn proportional_increase_then_fulfil() {
        let mut n = at_window(NsccParams::default(), 100_000.0);
        // Delay 3 µs (RTT 15 µs): headroom 6 µs.
        let per_byte = 4.0 * MSS * 6.0 / 12.0;
        let mut inc = 0.0;
        for k in 0..8 {
            n.on_feedback(ns(1000 + k), &ack(4096, 15_000, false));
            inc += per_byte * 4096.0;
            assert!(close(n.cwnd(), 100_000.0), "accumulating");
        }
        // The ninth MTU passes the 8-MTU threshold.
        n.on_feedback(ns(1010), &ack(4096, 15_000, false));
        inc += per_byte * 4096.0;
        assert!(close(n.cwnd(), 100_000.0 + inc / 100_000.0), "{}", n.cwnd());
        assert_eq!(n.stats().fulfils, 1);
        assert_eq!(n.stats().proportional, 9);
        // After a network RTT without a fulfil, the next ACK fulfils and adds η.
        let w = n.cwnd();
        n.on_feedback(us(13), &ack(4096, 15_000, false));
        assert!(close(n.cwnd(), w + per_byte * 4096.0 / w + 0.15 * MSS));
    }

    /// No ECN, delay ≥ target: fi per acked byte.
    #[test]
    fn fair_increase() {
        let mut n = at_window(NsccParams::default(), 100_000.0);
        for k in 0..9 {
            // Delay 10 µs > 9 µs target.
            n.on_feedback(ns(1000 + k), &ack(4096, 22_000, false));
        }
        assert_eq!(n.stats().fair, 9);
        assert!(close(
            n.cwnd(),
            100_000.0 + 9.0 * 4096.0 * 5.0 * MSS / 100_000.0
        ));
    }

    /// Delay under 1 µs for a whole window of bytes: cwnd += 0.25·a per acked byte.
    #[test]
    fn fast_increase_after_a_window_of_low_delay() {
        let mut n = at_window(NsccParams::default(), 20_000.0);
        // RTT = base: delay 0. The first 16 384 bytes only count.
        for k in 0..4 {
            n.on_feedback(ns(100 + k), &ack(4096, 12_000, false));
        }
        assert_eq!(n.stats().fast, 0);
        let w = n.cwnd();
        n.on_feedback(ns(200), &ack(4096, 12_000, false));
        assert_eq!(n.stats().fast, 1);
        assert!(close(n.cwnd(), w + 0.25 * 4096.0), "{} vs {w}", n.cwnd());
        // Stays fast while the delay stays low...
        n.on_feedback(ns(201), &ack(4096, 12_500, false));
        assert_eq!(n.stats().fast, 2);
        // ...and stops at the first delay ≥ 1 µs.
        n.on_feedback(ns(202), &ack(4096, 13_500, false));
        assert_eq!(n.stats().fast, 2);
    }

    /// ECN and delay ≥ target: cut by γ·(avg − target)/avg, floored at 0.5, once per base RTT.
    #[test]
    fn multiplicative_decrease_by_average_delay() {
        let mut n = at_window(NsccParams::default(), 200_000.0);
        n.avg_delay = 18e6; // 18 µs average, twice the target
        n.on_feedback(us(1), &ack(4096, 30_000, true));
        // avg moved by the sample: 0.0125·18 µs + 0.9875·18 µs.
        let avg = 0.0125 * 18e6 + 0.9875 * 18e6;
        let keep = 1.0 - 0.8 * (avg - 9e6) / avg;
        assert!(close(n.cwnd(), 200_000.0 * keep), "{}", n.cwnd());
        assert_eq!(n.stats().decreases, 1);
        // Within a base RTT: no second cut.
        n.on_feedback(us(5), &ack(4096, 30_000, true));
        assert_eq!(n.stats().decreases, 1);
        // A huge average: the cut is floored at half (and this ACK, a network RTT after the
        // start, also fulfils: + η).
        let w = n.cwnd();
        n.avg_delay = 1e12;
        n.on_feedback(us(20), &ack(4096, 30_000, true));
        assert!(close(n.cwnd(), w * 0.5 + 0.15 * MSS), "{}", n.cwnd());
        // ECN with an average under the target: no cut.
        let mut n = at_window(NsccParams::default(), 200_000.0);
        n.on_feedback(us(1), &ack(4096, 30_000, true));
        assert_eq!(n.stats().decreases, 0);
    }

    /// ECN with delay < target: no window change, but move off the path.
    #[test]
    fn ecn_without_delay_steers_off_the_path() {
        let mut n = at_window(NsccParams::default(), 100_000.0);
        n.on_feedback(ns(10), &ack(4096, 14_000, true));
        assert!(close(n.cwnd(), 100_000.0));
        assert_eq!(n.limits().path_hint, Some(PathHint { avoid: 5 }));
        // The next unmarked ACK clears the hint.
        n.on_feedback(ns(20), &ack(4096, 14_000, false));
        assert_eq!(n.limits().path_hint, None);
        // One path only, or hints off: no hint.
        let mut n = Nscc::new(
            Instant::ZERO,
            &PathInfo { paths: 1, ..path() },
            NsccParams::default(),
        );
        n.on_feedback(ns(10), &ack(4096, 14_000, true));
        assert_eq!(n.limits().path_hint, None);
        let mut n = nscc(NsccParams {
            path_hint: false,
            ..NsccParams::default()
        });
        n.on_feedback(ns(10), &ack(4096, 14_000, true));
        assert_eq!(n.limits().path_hint, None);
    }

    /// An unmarked delay above the target pulls the average towards base/4; marked or below
    /// target, the sample itself.
    #[test]
    fn delay_average_rules() {
        let mut n = nscc(NsccParams::default());
        n.on_feedback(ns(1), &ack(4096, 32_000, false)); // 20 µs, unmarked
        assert!(close(n.avg_delay, 0.0125 * 3e6));
        let before = n.avg_delay;
        n.on_feedback(ns(2), &ack(4096, 32_000, true)); // 20 µs, marked
        assert!(close(n.avg_delay, 0.0125 * 20e6 + 0.9875 * before));
        let before = n.avg_delay;
        n.on_feedback(ns(3), &ack(4096, 17_000, false)); // 5 µs, below target
        assert!(close(n.avg_delay, 0.0125 * 5e6 + 0.9875 * before));
        // Samples above 5 base RTTs use the fixed gain even with another configured gain.
        let mut n = nscc(NsccParams {
            delay_ewma: 0.5,
            ..NsccParams::default()
        });
        n.on_feedback(ns(1), &ack(4096, 112_000, true)); // 100 µs
        assert!(close(n.avg_delay, LARGE_DELAY_EWMA * 100e6));
        n.on_feedback(ns(2), &ack(4096, 16_000, true)); // 4 µs
        assert!(close(
            n.avg_delay,
            0.5 * 4e6 + 0.5 * LARGE_DELAY_EWMA * 100e6
        ));
    }

    /// QuickAdapt: at the end of an epoch in which little was delivered and the delay was
    /// above 4 × target, the window drops to what was delivered; ECN feedback for the bytes
    /// then in flight is ignored.
    #[test]
    fn quick_adapt_sets_the_window_to_delivered_bytes() {
        let mut n = nscc(NsccParams::default());
        // First ACK starts the epoch (base 12 µs + target 9 µs = 21 µs).
        n.on_feedback(us(1), &ack(4096, 12_000, false));
        // 5 more KB in the epoch, far below maxwnd/8 = 28 125.
        n.on_feedback(us(10), &ack(5000, 12_000, false));
        assert_eq!(n.stats().quick_adapts, 0);
        // After the epoch, a 40 µs delay (> 36 µs): QuickAdapt to the 5000 + 4096 bytes
        // delivered since the epoch began (the ACK's own bytes count).
        let fb = Feedback {
            in_flight: 50_000,
            ..ack(4096, 52_000, false)
        };
        n.on_feedback(us(23), &fb);
        assert_eq!(n.stats().quick_adapts, 1);
        assert!(close(n.cwnd(), 9096.0), "{}", n.cwnd());
        // Marked feedback for the 50 000 bytes in flight is ignored (no decrease).
        let w = n.cwnd();
        for k in 0..10 {
            n.on_feedback(us(24 + k), &ack(4096, 52_000, true));
        }
        assert!(close(n.cwnd(), w));
        assert_eq!(n.stats().ignored, 10);
        // Unmarked feedback is not ignored.
        n.on_feedback(us(40), &ack(4096, 22_000, false));
        assert_eq!(n.stats().fair, 1);
    }

    #[test]
    fn quick_adapt_needs_low_delivery_and_a_trigger() {
        // Plenty delivered: no QuickAdapt whatever the delay.
        let mut n = nscc(NsccParams::default());
        n.on_feedback(us(1), &ack(4096, 12_000, false));
        n.on_feedback(us(10), &ack(100_000, 12_000, false));
        n.on_feedback(us(23), &ack(4096, 52_000, false));
        assert_eq!(n.stats().quick_adapts, 0);
        // Little delivered but no trigger (delay below 4 × target): none either.
        let mut n = nscc(NsccParams::default());
        n.on_feedback(us(1), &ack(4096, 12_000, false));
        n.on_feedback(us(23), &ack(4096, 20_000, false));
        assert_eq!(n.stats().quick_adapts, 0);
        // Switched off.
        let mut n = nscc(NsccParams {
            quick_adapt: false,
            ..NsccParams::default()
        });
        n.on_feedback(us(1), &ack(4096, 12_000, false));
        n.on_feedback(us(23), &ack(4096, 52_000, false));
        assert_eq!(n.stats().quick_adapts, 0);
    }

    /// A trim NACK: cwnd −= NACKed bytes, the average delay takes a network-RTT sample, and
    /// QuickAdapt is armed for the end of the epoch.
    #[test]
    fn trim_nack_decreases_and_arms_quick_adapt() {
        let mut n = nscc(NsccParams::default());
        n.on_feedback(us(1), &ack(4096, 12_000, false)); // starts the epoch
        let w = n.cwnd();
        n.on_feedback(us(2), &trim(4096, false));
        assert!(close(n.cwnd(), w - 4096.0));
        assert!(close(n.avg_delay, 0.0125 * 12e6));
        assert_eq!(n.limits().path_hint, Some(PathHint { avoid: 2 }));
        // Epoch over with little delivered and the trim armed: QuickAdapt on the next ACK,
        // even with a low delay.
        n.on_feedback(us(30), &ack(4096, 12_000, false));
        assert_eq!(n.stats().quick_adapts, 1);
        assert!(close(n.cwnd(), 4096.0), "the one ACK delivered this epoch");
        // Last-hop trims: the same decrease by default, no path hint (spraying cannot help),
        // and no decrease when RCCC owns the last hop.
        let mut n = nscc(NsccParams::default());
        let w = n.cwnd();
        n.on_feedback(us(1), &trim(8192, true));
        assert!(close(n.cwnd(), w - 8192.0));
        assert_eq!(n.limits().path_hint, None);
        let mut n = nscc(NsccParams {
            last_hop_trim_decrease: false,
            ..NsccParams::default()
        });
        n.on_feedback(us(1), &trim(8192, true));
        assert!(close(n.cwnd(), w));
        // Zero NACKed bytes count as one MTU.
        let mut n = nscc(NsccParams::default());
        n.on_feedback(us(1), &trim(0, false));
        assert!(close(n.cwnd(), w - MSS));
    }

    #[test]
    fn timeout_removes_the_lost_bytes_and_other_losses_do_nothing() {
        let mut n = nscc(NsccParams::default());
        let w = n.cwnd();
        n.on_feedback(
            us(1),
            &Feedback {
                rto: true,
                lost_bytes: 10_000,
                path: 4,
                ..Feedback::default()
            },
        );
        assert!(close(n.cwnd(), w - 10_000.0));
        assert_eq!(n.limits().path_hint, Some(PathHint { avoid: 4 }));
        let w = n.cwnd();
        for kind in [LossKind::Detected, LossKind::ReceiverNoResources] {
            n.on_feedback(
                us(2),
                &Feedback {
                    loss: Some(kind),
                    lost_bytes: 1 << 20,
                    ..Feedback::default()
                },
            );
        }
        assert!(close(n.cwnd(), w));
        // Huge losses stop at one MTU.
        n.on_feedback(
            us(3),
            &Feedback {
                rto: true,
                lost_bytes: u64::MAX,
                ..Feedback::default()
            },
        );
        assert_eq!(n.limits().window, Some(4096));
    }

    #[test]
    fn window_never_exceeds_maxwnd() {
        let mut n = nscc(NsccParams::default());
        for k in 0..1000 {
            n.on_feedback(ns(100 * k), &ack(65_536, 12_000, false));
        }
        assert_eq!(n.limits().window, Some(MAXWND as u64));
    }

    #[test]
    fn hot_reload_keeps_state() {
        let mut n = nscc(NsccParams::default());
        n.on_feedback(us(1), &ack(4096, 11_000, false));
        let base = n.base_rtt();
        n.cwnd = 100_000.0;
        let mut p = *n.params();
        p.fi_mss = 10.0;
        p.max_wnd_bdp = 0.5;
        n.set_params(p);
        assert_eq!(n.base_rtt(), base);
        assert_eq!(n.params().fi_mss, 10.0);
        // maxwnd = 0.5 × 11 µs × 100 Gb/s = 68 750: the window is clamped into it.
        assert!(close(n.max_window(), 68_750.0));
        assert!(close(n.cwnd(), 68_750.0));
        // The constants still scale with the configured network RTT (12 µs), not the sample.
        assert!(close(n.d.fi, 10.0 * MSS));
    }

    #[test]
    fn params_by_name() {
        crate::params::assert_defaults_round_trip::<NsccParams>();
        let mut p = NsccParams::default();
        p.set("target_qdelay", 4.5).unwrap();
        p.set("reference_rate", 400.0).unwrap();
        p.set("qa_gate", 2.0).unwrap();
        p.set("trimming", 0.0).unwrap();
        assert_eq!(p.target_qdelay, Duration::from_nanos(4500));
        assert_eq!(p.reference_rate, Rate::from_gbps(400));
        assert_eq!(p.qa_gate, 2);
        assert!(!p.trimming);
        assert!(p.set("gamma", 1.5).is_err());
        assert!(p.set("qa_gate", f64::INFINITY).is_err());
        assert!(p.set("gama", 0.5).is_err());
        assert!(p.get("gama").is_none());
        assert_eq!(NsccParams::ALGORITHM, "nscc");
    }

    fn any_params() -> impl Strategy<Value = NsccParams> {
        let odd = (
            (any::<u64>(), any::<u64>(), any::<u64>(), any::<bool>()),
            (
                any::<f64>(),
                any::<f64>(),
                any::<f64>(),
                any::<u8>(),
                any::<f64>(),
            ),
            (
                any::<f64>(),
                any::<f64>(),
                any::<f64>(),
                any::<f64>(),
                any::<u32>(),
            ),
            (any::<f64>(), any::<u64>(), any::<u64>(), any::<u64>()),
        )
            .prop_map(|(a, b, c, e)| {
                let mut p = NsccParams {
                    base_rtt: Duration::from_ps(a.0),
                    network_rtt: Duration::from_ps(a.1),
                    target_qdelay: Duration::from_ps(a.2),
                    trimming: a.3,
                    ..NsccParams::default()
                };
                (p.gamma, p.md_floor, p.delay_ewma, p.qa_gate, p.qa_threshold) = b;
                (
                    p.alpha_mss,
                    p.fi_mss,
                    p.eta_mss,
                    p.fast_increase_scale,
                    p.adjust_mtus,
                ) = c;
                p.max_wnd_bdp = e.0;
                p.reference_rate = Rate::from_bps(e.1);
                p.reference_rtt = Duration::from_ps(e.2);
                p.fast_increase_delay = Duration::from_ps(e.3);
                p
            });
        prop_oneof![Just(NsccParams::default()), odd]
    }

    fn any_fb() -> impl Strategy<Value = (Feedback<'static>, u64)> {
        let big = || prop_oneof![0u64..1_000_000, Just(0u64), any::<u64>()];
        (
            (
                big(),
                big(),
                any::<bool>(),
                proptest::option::of(big()),
                proptest::option::of(big()),
            ),
            (
                prop_oneof![
                    Just(None),
                    Just(Some(LossKind::Detected)),
                    Just(Some(LossKind::Trimmed)),
                    Just(Some(LossKind::TrimmedLastHop)),
                    Just(Some(LossKind::ReceiverNoResources)),
                ],
                big(),
                any::<bool>(),
                any::<u16>(),
                big(),
            ),
            0u64..50_000_000,
        )
            .prop_map(
                |((acked, ecn, cnp, rtt, host), (loss, lost, rto, path, fl), dt)| {
                    (
                        Feedback {
                            acked_bytes: acked,
                            acked_packets: 1,
                            ecn_bytes: ecn,
                            cnp,
                            rtt: rtt.map(Duration::from_ps),
                            host_delay: host.map(Duration::from_ps),
                            loss,
                            lost_bytes: lost,
                            rto,
                            path,
                            in_flight: fl,
                            ..Feedback::default()
                        },
                        dt,
                    )
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        /// Whatever the feedback, parameters and path: a window of at least one byte, within
        /// [MSS, maxwnd], finite; never a rate.
        #[test]
        fn limits_stay_positive(
            params in any_params(),
            reload in any_params(),
            mtu in prop_oneof![Just(0u32), 1u32..10_000, any::<u32>()],
            line in prop_oneof![Just(0u64), 1u64..1_000_000_000_000, any::<u64>()],
            base in proptest::option::of(any::<u64>()),
            events in proptest::collection::vec(any_fb(), 1..100),
        ) {
            let path = PathInfo { mtu, line_rate: Rate::from_bps(line), base_rtt: base.map(Duration::from_ps), paths: 4 };
            let mut n = Nscc::new(Instant::ZERO, &path, params);
            let mut now = Instant::ZERO;
            for (i, (fb, dt)) in events.iter().enumerate() {
                now += Duration::from_ps(*dt);
                if i == 50 {
                    n.set_params(reload);
                }
                n.on_feedback(now, fb);
                let w = n.limits().window.unwrap();
                prop_assert!(w >= 1);
                prop_assert!(n.cwnd().is_finite() && n.cwnd() >= n.d.mss && n.cwnd() <= n.max_window().max(n.d.mss));
                prop_assert!(n.limits().rate.is_none());
                prop_assert!(n.avg_delay.is_finite() && n.avg_delay >= 0.0);
            }
        }
    }
}
