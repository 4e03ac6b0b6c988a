//! Swift (Kumar et al., "Swift: Delay is Simple and Effective for Congestion Control in the
//! Datacenter", SIGCOMM 2020): a delay-targeting window controller, in integer arithmetic.
//!
//! Contract: [`Swift`] is a window controller. [`Limits::window`] is always `Some(bytes)`, at
//! least one `mtu`; while the window is at least one packet, [`Limits::rate`] is `None`. Below
//! one packet Swift paces instead (paper: "Large-scale incast"): the window reported is one
//! `mtu` and [`Limits::rate`] is `Some(cwnd·mtu/srtt)`, within [1 bit/s, line rate]. The
//! controller has no timer ([`CongestionControl::next_timeout`] is always `None`); the
//! transport reports retransmission timeouts through [`Feedback::rto`]. `now` going backwards
//! is treated as "no time passed".
//!
//! # The law
//!
//! Two windows, each run by the same AIMD rule against its own delay and target
//! (paper, Algorithm 1 and "Separating fabric and endpoint congestion"):
//!
//! * the **fabric** window `fcwnd` against the fabric delay, `rtt − host_delay`
//!   ([`Feedback::rtt`] minus [`Feedback::host_delay`], or the whole RTT when the host delay is
//!   unknown), and the fabric target
//!   `base_target + hops·per_hop + fs(fcwnd)` (topology and flow scaling, "Scaling the target
//!   delay"). `hops` is the number of INT records in [`Feedback::hops`] when there are any, else
//!   [`SwiftParams::hops`]. The flow-scaling term is
//!   `fs(c) = clamp(α/√c + β', 0, fs_range)` with α and β' chosen so that `fs` is `fs_range` at
//!   `c = fs_min_cwnd` and 0 at `c = fs_max_cwnd`: many flows, hence small windows, get a
//!   larger target, so that their sum still fills the link;
//! * the **endpoint** window `ecwnd` against [`Feedback::host_delay`] and
//!   [`SwiftParams::host_target`]. It only moves on feedback that reports a host delay and
//!   starts at `max_cwnd`, so it binds only once the receiver is the bottleneck.
//!
//! The effective window is `cwnd = min(fcwnd, ecwnd)`. For each window, on an ACK with delay
//! `d` and target `t`:
//!
//! * `d < t`: additive increase, `c += ai·acked/c` if `c ≥ 1` packet, else `c += ai·acked`
//!   (`acked` in packets: [`Feedback::acked_bytes`]`/mtu`, or [`Feedback::acked_packets`] when
//!   no byte count is given);
//! * otherwise, if the window's last decrease is at least one `srtt` old:
//!   `c ← c·max(1 − β·(d − t)/d, 1 − max_mdf)`.
//!
//! Losses and timeouts (Algorithm 1, "On fast recovery" / "On retransmit timeout"):
//!
//! * a loss ([`LossKind::Detected`], [`LossKind::Trimmed`], [`LossKind::TrimmedLastHop`]) is
//!   fast recovery: the retransmit count is cleared and, if allowed by the once-per-RTT guard,
//!   `fcwnd ← fcwnd·(1 − max_mdf)`;
//! * [`LossKind::ReceiverNoResources`] is endpoint congestion: `ecwnd ← ecwnd·(1 − max_mdf)`
//!   under the endpoint window's guard (as Falcon's NIC window does on a resource NACK);
//! * [`Feedback::rto`]: the retransmit count rises; at [`SwiftParams::retx_reset`] `fcwnd`
//!   drops to `min_cwnd`, before that it is cut by `1 − max_mdf` under the guard;
//! * any acknowledged data clears the retransmit count.
//!
//! Each window is finally clamped into `[min_cwnd, max_cwnd]`; a window that ends lower than it
//! started records `now` as its last decrease.
//!
//! # Fixed-point representation (normative: an integer-only twin must match bit for bit)
//!
//! Everything on the per-event path is `u64` integer arithmetic; every division truncates
//! (rounds towards zero, all operands being non-negative); no intermediate exceeds 2⁶⁰.
//!
//! * **Windows** are Q16 packets: `c_q = c·65536`, `ONE = 65536` is one packet of `mtu` bytes.
//! * **Gains** `ai`, `β`, `max_mdf` are Q16 (`beta_q = round(β·65536)`, and so on).
//! * **Delays** are nanoseconds: a sample `x` ps becomes `min(⌊x/1000⌋, 2³² − 1)`. Targets are
//!   nanoseconds too. `now` stays in picoseconds.
//! * **Constants** ([`SwiftFixed`]) are derived from [`SwiftParams`] once, when the controller is
//!   built or reloaded; that conversion may use `f64` and rounds half up (`⌊x + 0.5⌋`). The
//!   twin should take the integers from [`Swift::fixed`] rather than recompute them.
//!
//! Per [`CongestionControl::on_feedback`], in this order (`S` is the state, `K` the constants):
//!
//! 1. `now ← max(now, S.now)`.
//! 2. If `rtt` is present: `rtt_ns` as above; `S.srtt ← max(1, ⌊(3·S.srtt + rtt_ns)/4⌋)`.
//!    (`S.srtt` starts at [`PathInfo::base_rtt`] or, without one, `K.base_target_ns`, at least 1.)
//! 3. `acked_q = min(⌊min(acked_bytes, 2⁴⁰)·65536 / K.mtu⌋, 2³²)` if `acked_bytes > 0`, else
//!    `min(acked_packets·65536, 2³²)`. If `acked_bytes > 0` or `acked_packets > 0`:
//!    `S.retx ← 0`.
//! 4. If `rtt` is present:
//!    * `host_ns` = converted `host_delay` if present; `fabric_ns = rtt_ns − host_ns` (saturating
//!      at 0; `host_ns = 0` when absent);
//!    * `hops = min(len(fb.hops), 255)` if non-zero, else `K.hops`;
//!    * `target = K.base_target_ns + hops·K.per_hop_ns + fs(S.fcwnd)`, where
//!      `inv(c) = ⌊2³² / isqrt(c·65536)⌋` (`isqrt` = floor of the square root) and
//!      `fs(c) = 0` if `inv(c) ≤ K.fs_inv_hi`, `K.fs_range_ns` if `inv(c) ≥ K.fs_inv_lo`, else
//!      `⌊K.fs_range_ns·(inv(c) − K.fs_inv_hi) / (K.fs_inv_lo − K.fs_inv_hi)⌋`;
//!    * `S.fcwnd ← aimd(S.fcwnd, fabric_ns, target)`; if `host_delay` is present,
//!      `S.ecwnd ← aimd(S.ecwnd, host_ns, K.host_target_ns)`, each with its own guard.
//!
//!    `aimd(c, d, t)`: if `d < t`: `c + ⌊K.ai_q·acked_q / c⌋` when `c ≥ 65536`, else
//!    `c + ⌊K.ai_q·acked_q / 65536⌋`. Otherwise, if the guard allows (never decreased, or
//!    `now − last_decrease ≥ S.srtt·1000` ps): `dec = min(⌊K.beta_q·(d − t) / d⌋, K.mdf_q)` (0 if
//!    `d = 0`) and `c ← ⌊c·(65536 − dec) / 65536⌋`. Then clamp into `[K.min_cwnd_q,
//!    K.max_cwnd_q]`; if the result is below the `c` it started from, `last_decrease ← now`.
//! 5. Loss: `Detected | Trimmed | TrimmedLastHop`: `S.retx ← 0`, then if the fabric guard
//!    allows, `S.fcwnd ← ⌊S.fcwnd·(65536 − K.mdf_q) / 65536⌋`, clamp, record a decrease as
//!    above. `ReceiverNoResources`: the same on `S.ecwnd` with its guard.
//! 6. If `rto`: `S.retx ← min(S.retx + 1, 2³² − 1)`; if `S.retx ≥ K.retx_reset`:
//!    `S.fcwnd ← K.min_cwnd_q`, else the step-5 cut under the fabric guard. Clamp and record as
//!    above.
//!
//! [`CongestionControl::limits`]: with `c = min(S.fcwnd, S.ecwnd)`: if `c ≥ 65536`, window
//! `⌊c·K.mtu / 65536⌋` bytes and no rate; else window `K.mtu` and rate
//! `clamp(⌊c·K.mtu·15 625 000 / (S.srtt·128)⌋, 1, K.line_bps)` bit/s, which is
//! `c/65536 · mtu · 8 bit / (srtt ns · 10⁻⁹)` with the constant factors reduced.
//!
//! # Choices that differ from a literal transcription, and why
//!
//! * **Integer arithmetic and explicit rounding**, for the eBPF twin (see above). The
//!   truncations bias the window down by less than one Q16 unit per event.
//! * **`srtt` is an EWMA with gain 1/4** seeded with the path's base RTT, as Falcon's RUE
//!   smooths its RTT state (α = 0.75); it drives the once-per-RTT guard and the pacing rate.
//! * **Additive increase counts bytes**: `acked_bytes/mtu` packets, so partial packets count
//!   partially.
//! * **The endpoint window starts at `max_cwnd`** (the paper does not say; starting it at the
//!   initial fabric window would cap the fabric window there until host delays arrive).
//! * **Below one packet the window reported is one `mtu`** and the pacing rate limits, so a
//!   transport that enforces the window can still send the paced packet.
//! * **Decrease means lower than before.** Algorithm 1 records the decrease time when
//!   `cwnd ≤ cwnd_prev`; like htsim we require `<`, so a window pinned at `max_cwnd` (or
//!   `min_cwnd`) does not block the next decrease.

use weir_base::{Duration, Instant, Rate};

use crate::params::convert::{from_micros, micros};
use crate::params::{self, ParamError, ParamSpec, Params, Unit};
use crate::{CongestionControl, Feedback, Limits, LossKind, PathInfo, Sent};

/// Swift parameters. The law is the paper's; it publishes few numbers, so the defaults are
/// those of Google's Falcon rate-update-engine model (Isekai, `swift.cc`
/// `DefaultConfiguration`, itself taken from Swift in production), noted per field, with the
/// htsim model's where they differ noted too.
///
/// Values set directly on the struct are sanitised when a controller is built or reloaded
/// (windows into [1/65536, 2²⁰] packets with `min ≤ init ≤ max`, gains into [0, 1], `ai` into
/// [0, 1024], delays up to 2³² − 1 ns); [`Params::set`] refuses out-of-range values instead.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct SwiftParams {
    /// Fabric base target delay. Default 25 µs (Falcon RUE; htsim uses 20 µs).
    pub base_target: Duration,
    /// Topology scaling: target added per switch hop. Default 1 µs (Falcon RUE
    /// `topo_scaling_per_hop`; htsim uses base_target/6.55).
    pub per_hop: Duration,
    /// Hop count assumed when the feedback carries no INT records. Default 1 (Weir's choice:
    /// one switch, a single-tier path).
    pub hops: u32,
    /// Flow scaling: largest target added for a small window. Default 100 µs (Falcon RUE
    /// `max_flow_scaling`; htsim uses 5·base_target).
    pub fs_range: Duration,
    /// Flow scaling: window (packets) at and below which the whole `fs_range` is added.
    /// Default 0.1 (Falcon RUE and htsim).
    pub fs_min_cwnd: f64,
    /// Flow scaling: window (packets) at and above which nothing is added. Default 256 (Falcon
    /// RUE, = its `max_cwnd`; htsim uses 100).
    pub fs_max_cwnd: f64,
    /// Endpoint (host) target delay. Default 100 µs (Weir's choice; the paper gives no value,
    /// Falcon targets a receive-buffer level instead).
    pub host_target: Duration,
    /// Additive increment per RTT, packets. Default 1 (Falcon RUE, htsim).
    pub ai: f64,
    /// Multiplicative decrease factor β. Default 0.8 (Falcon RUE, htsim).
    pub beta: f64,
    /// Largest multiplicative decrease in one step. Default 0.5 (Falcon RUE, htsim).
    pub max_mdf: f64,
    /// Smallest window, packets. Default 0.01 (Falcon RUE).
    pub min_cwnd: f64,
    /// Largest window, packets. Default 256 (Falcon RUE).
    pub max_cwnd: f64,
    /// Initial fabric window, packets. Default 32 (Falcon RUE's initial fcwnd).
    pub init_cwnd: f64,
    /// Consecutive retransmission timeouts that reset the fabric window to `min_cwnd`.
    /// Default 3 (Falcon RUE `retransmit_limit`; htsim uses 5).
    pub retx_reset: u32,
}

/// The integer constants the per-event path runs on, derived from [`SwiftParams`] and the
/// [`PathInfo`] (see the module documentation for each one's definition).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SwiftFixed {
    /// Bytes per packet, `PathInfo::mtu` clamped into [1, 2²⁰].
    pub mtu: u64,
    /// Line rate, bit/s, at least 1.
    pub line_bps: u64,
    /// Fabric base target, ns.
    pub base_target_ns: u64,
    /// Target per hop, ns.
    pub per_hop_ns: u64,
    /// Default hop count, at most 255.
    pub hops: u64,
    /// Flow-scaling range, ns.
    pub fs_range_ns: u64,
    /// `inv(fs_min_cwnd_q)`: 1/√window in Q16 at the small end of the flow-scaling range.
    pub fs_inv_lo: u64,
    /// `inv(fs_max_cwnd_q)`, at most `fs_inv_lo`.
    pub fs_inv_hi: u64,
    /// Endpoint target, ns.
    pub host_target_ns: u64,
    /// Additive increment, Q16 packets.
    pub ai_q: u64,
    /// β, Q16.
    pub beta_q: u64,
    /// max_mdf, Q16.
    pub mdf_q: u64,
    /// Smallest window, Q16 packets, at least 1.
    pub min_cwnd_q: u64,
    /// Largest window, Q16 packets, in [min_cwnd_q, 2³⁶].
    pub max_cwnd_q: u64,
    /// Initial fabric window, Q16 packets, in [min_cwnd_q, max_cwnd_q].
    pub init_cwnd_q: u64,
    /// Timeouts that reset the fabric window, at least 1.
    pub retx_reset: u32,
}

/// Counters for tests, logs and plots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SwiftStats {
    /// Delay-based multiplicative decreases (either window).
    pub decreases: u64,
    /// Fast-recovery decreases (losses and trims).
    pub loss_decreases: u64,
    /// Timeout decreases, including resets to `min_cwnd`.
    pub timeout_decreases: u64,
    /// Resets to `min_cwnd` after `retx_reset` timeouts.
    pub resets: u64,
}

/// Swift window controller for one connection. See the module documentation for the law and
/// its exact integer form.
///
/// Call order: the transport feeds [`CongestionControl::on_feedback`] for every ACK, NACK and
/// retransmission timeout and reads [`CongestionControl::limits`] before sending;
/// [`CongestionControl::on_sent`] and [`CongestionControl::on_timeout`] do nothing.
#[derive(Clone, Debug)]
pub struct Swift {
    params: SwiftParams,
    k: SwiftFixed,
    fabric: Window,
    host: Window,
    /// Smoothed RTT, ns, at least 1.
    srtt: u64,
    /// Consecutive retransmission timeouts.
    retx: u32,
    /// Latest time seen.
    now: Instant,
    stats: SwiftStats,
}

/// One AIMD window and its once-per-RTT guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Window {
    /// Q16 packets.
    cwnd: u64,
    last_decrease: Option<Instant>,
}

impl SwiftParams {
    /// The defaults (see each field).
    pub const fn falcon() -> Self {
        SwiftParams {
            base_target: Duration::from_micros(25),
            per_hop: Duration::from_micros(1),
            hops: 1,
            fs_range: Duration::from_micros(100),
            fs_min_cwnd: 0.1,
            fs_max_cwnd: 256.0,
            host_target: Duration::from_micros(100),
            ai: 1.0,
            beta: 0.8,
            max_mdf: 0.5,
            min_cwnd: 0.01,
            max_cwnd: 256.0,
            init_cwnd: 32.0,
            retx_reset: 3,
        }
    }
}

impl Default for SwiftParams {
    fn default() -> Self {
        Self::falcon()
    }
}

impl SwiftFixed {
    /// The integer constants for `p` on a path with `mtu` bytes per packet and `line` rate.
    pub fn new(p: &SwiftParams, mtu: u32, line: Rate) -> Self {
        let min_cwnd_q = q16(p.min_cwnd, MAX_CWND_Q).max(1);
        let max_cwnd_q = q16(p.max_cwnd, MAX_CWND_Q).max(min_cwnd_q);
        let init_cwnd_q = q16(p.init_cwnd, MAX_CWND_Q).clamp(min_cwnd_q, max_cwnd_q);
        let fs_lo = q16(p.fs_min_cwnd, MAX_CWND_Q).max(1);
        let fs_hi = q16(p.fs_max_cwnd, MAX_CWND_Q).max(fs_lo);
        SwiftFixed {
            mtu: u64::from(mtu).clamp(1, MAX_MTU),
            line_bps: line.bps().max(1),
            base_target_ns: to_ns(p.base_target),
            per_hop_ns: to_ns(p.per_hop),
            hops: u64::from(p.hops.min(255)),
            fs_range_ns: to_ns(p.fs_range),
            fs_inv_lo: inv_sqrt(fs_lo),
            fs_inv_hi: inv_sqrt(fs_hi),
            host_target_ns: to_ns(p.host_target),
            ai_q: q16(p.ai, MAX_AI_Q),
            beta_q: q16(p.beta, ONE),
            mdf_q: q16(p.max_mdf, ONE),
            min_cwnd_q,
            max_cwnd_q,
            init_cwnd_q,
            retx_reset: p.retx_reset.max(1),
        }
    }

    /// The fabric target delay (ns) for `hops` hops and fabric window `cwnd_q`.
    pub fn target_ns(&self, hops: u64, cwnd_q: u64) -> u64 {
        //= https://doi.org/10.1145/3387514.3406591#scaling-the-target-delay
        //# target = base_target + #hops × h + clamp(α/√fcwnd + β, 0, fs_range)
        self.base_target_ns
            .saturating_add(hops.saturating_mul(self.per_hop_ns))
            .saturating_add(self.flow_scaling_ns(cwnd_q))
    }

    /// The flow-scaling part of the target (ns) for fabric window `cwnd_q`.
    pub fn flow_scaling_ns(&self, cwnd_q: u64) -> u64 {
        let inv = inv_sqrt(cwnd_q);
        if inv <= self.fs_inv_hi {
            0
        } else if inv >= self.fs_inv_lo {
            self.fs_range_ns
        } else {
            // fs_range_ns < 2^32 and inv < 2^25: the product fits.
            self.fs_range_ns * (inv - self.fs_inv_hi) / (self.fs_inv_lo - self.fs_inv_hi)
        }
    }
}

impl Swift {
    /// A controller with the fabric window at `init_cwnd` and the endpoint window at
    /// `max_cwnd`. The smoothed RTT starts at `path.base_rtt` (or the base target).
    pub fn new(now: Instant, path: &PathInfo, params: SwiftParams) -> Self {
        let k = SwiftFixed::new(&params, path.mtu, path.line_rate);
        let srtt = path.base_rtt.map_or(k.base_target_ns, to_ns).max(1);
        Swift {
            params,
            k,
            fabric: Window::new(k.init_cwnd_q),
            host: Window::new(k.max_cwnd_q),
            srtt,
            retx: 0,
            now,
            stats: SwiftStats::default(),
        }
    }

    /// The parameters this controller runs with.
    pub fn params(&self) -> &SwiftParams {
        &self.params
    }

    /// Hot reload: replaces the parameters, keeping both windows, the smoothed RTT, the
    /// decrease times and the retransmit count. The new values apply from the next event; the
    /// windows are only moved into the new `[min_cwnd, max_cwnd]` if they fall outside.
    pub fn set_params(&mut self, p: SwiftParams) {
        self.params = p;
        let mtu = u32::try_from(self.k.mtu).unwrap_or(u32::MAX);
        self.k = SwiftFixed::new(&p, mtu, Rate::from_bps(self.k.line_bps));
        for w in [&mut self.fabric, &mut self.host] {
            w.cwnd = w.cwnd.clamp(self.k.min_cwnd_q, self.k.max_cwnd_q);
        }
    }

    /// The integer constants in use (for an integer twin of this controller).
    pub fn fixed(&self) -> &SwiftFixed {
        &self.k
    }

    /// Fabric window, Q16 packets.
    pub fn fcwnd_q16(&self) -> u64 {
        self.fabric.cwnd
    }

    /// Endpoint window, Q16 packets.
    pub fn ecwnd_q16(&self) -> u64 {
        self.host.cwnd
    }

    /// Effective window `min(fcwnd, ecwnd)`, Q16 packets.
    pub fn cwnd_q16(&self) -> u64 {
        self.fabric.cwnd.min(self.host.cwnd)
    }

    /// Effective window in packets (for reports; not used by the law).
    pub fn cwnd_packets(&self) -> f64 {
        self.cwnd_q16() as f64 / ONE as f64
    }

    /// Smoothed RTT.
    pub fn srtt(&self) -> Duration {
        Duration::from_nanos(self.srtt)
    }

    /// Consecutive retransmission timeouts so far.
    pub fn retransmit_count(&self) -> u32 {
        self.retx
    }

    /// The fabric target delay the next ACK would be judged against, for `hops` hops.
    pub fn fabric_target(&self, hops: u64) -> Duration {
        Duration::from_nanos(self.k.target_ns(hops, self.fabric.cwnd))
    }

    /// Counters since creation.
    pub fn stats(&self) -> SwiftStats {
        self.stats
    }

    /// Whether `w` may decrease at `now` (at most once per smoothed RTT).
    fn can_decrease(&self, w: Window, now: Instant) -> bool {
        //= https://doi.org/10.1145/3387514.3406591#algorithm-1
        //# can_decrease ← (now − t_last_decrease ≥ rtt)
        w.last_decrease
            .is_none_or(|t| (now - t).as_ps() >= self.srtt.saturating_mul(1000))
    }

    /// Delay-based AIMD of one window (step 4 of the module documentation).
    fn aimd(&mut self, host: bool, delay: u64, target: u64, acked_q: u64, now: Instant) {
        let w = if host { self.host } else { self.fabric };
        let before = w.cwnd;
        let mut c = before;
        if delay < target {
            //= https://doi.org/10.1145/3387514.3406591#algorithm-1
            //# if delay < target_delay: if cwnd ≥ 1: cwnd ← cwnd + ai/cwnd·num_acked
            //#                          else cwnd ← cwnd + ai·num_acked
            // ai_q < 2^27 and acked_q ≤ 2^32: the product fits.
            let inc = if c >= ONE {
                self.k.ai_q * acked_q / c
            } else {
                self.k.ai_q * acked_q / ONE
            };
            c = c.saturating_add(inc);
        } else if self.can_decrease(w, now) {
            //# else if can_decrease:
            //#   cwnd ← max(1 − β·(delay − target_delay)/delay, 1 − max_mdf)·cwnd
            let dec = (self.k.beta_q * (delay - target))
                .checked_div(delay)
                .unwrap_or(0)
                .min(self.k.mdf_q);
            c = c * (ONE - dec) / ONE;
            if c < before {
                self.stats.decreases += 1;
            }
        }
        self.store(host, c, before, now);
    }

    /// The largest allowed decrease, under the guard (fast recovery and timeouts).
    fn cut_max(&mut self, host: bool, now: Instant) -> bool {
        let w = if host { self.host } else { self.fabric };
        if !self.can_decrease(w, now) {
            return false;
        }
        //= https://doi.org/10.1145/3387514.3406591#algorithm-1
        //# On fast recovery / on retransmit timeout: if can_decrease:
        //#   cwnd ← (1 − max_mdf)·cwnd
        let c = w.cwnd * (ONE - self.k.mdf_q) / ONE;
        self.store(host, c, w.cwnd, now)
    }

    /// Clamps and stores a window; records a decrease. Returns whether it decreased.
    fn store(&mut self, host: bool, c: u64, before: u64, now: Instant) -> bool {
        //# cwnd ← clamp(min_cwnd, cwnd, max_cwnd); if cwnd < cwnd_prev: t_last_decrease ← now
        let c = c.clamp(self.k.min_cwnd_q, self.k.max_cwnd_q);
        let w = if host {
            &mut self.host
        } else {
            &mut self.fabric
        };
        w.cwnd = c;
        let decreased = c < before;
        if decreased {
            w.last_decrease = Some(now);
        }
        decreased
    }

    /// `acked` in Q16 packets (step 3).
    fn acked_q(&self, fb: &Feedback<'_>) -> u64 {
        if fb.acked_bytes > 0 {
            (fb.acked_bytes.min(1 << 40) * ONE / self.k.mtu).min(MAX_ACKED_Q)
        } else {
            (u64::from(fb.acked_packets) * ONE).min(MAX_ACKED_Q)
        }
    }
}

impl Window {
    fn new(cwnd: u64) -> Self {
        Window {
            cwnd,
            last_decrease: None,
        }
    }
}

impl CongestionControl for Swift {
    fn on_sent(&mut self, _now: Instant, _sent: &Sent) {}

    fn on_feedback(&mut self, now: Instant, fb: &Feedback<'_>) {
        let now = now.max(self.now);
        self.now = now;
        let rtt_ns = fb.rtt.map(to_ns);
        if let Some(rtt) = rtt_ns {
            self.srtt = ((3 * self.srtt + rtt) / 4).max(1);
        }
        let acked_q = self.acked_q(fb);
        if fb.acked_bytes > 0 || fb.acked_packets > 0 {
            //= https://doi.org/10.1145/3387514.3406591#algorithm-1
            //# On receiving ACK: retransmit_cnt ← 0
            self.retx = 0;
        }
        if let Some(rtt) = rtt_ns {
            //= https://doi.org/10.1145/3387514.3406591#separating-fabric-and-endpoint-congestion
            //# fabric delay = RTT − endpoint (host) delay; each has its own window and target,
            //# and the effective window is the smaller of the two.
            let host_ns = fb.host_delay.map(to_ns);
            let fabric_ns = rtt.saturating_sub(host_ns.unwrap_or(0));
            let hops = match fb.hops.len() {
                0 => self.k.hops,
                n => n.min(255) as u64,
            };
            let target = self.k.target_ns(hops, self.fabric.cwnd);
            self.aimd(false, fabric_ns, target, acked_q, now);
            if let Some(h) = host_ns {
                self.aimd(true, h, self.k.host_target_ns, acked_q, now);
            }
        }
        let cut = match fb.loss {
            Some(LossKind::Detected | LossKind::Trimmed | LossKind::TrimmedLastHop) => {
                //= https://doi.org/10.1145/3387514.3406591#algorithm-1
                //# On fast recovery: retransmit_cnt ← 0; if can_decrease: cwnd ← (1 − max_mdf)·cwnd
                self.retx = 0;
                self.cut_max(false, now)
            }
            Some(LossKind::ReceiverNoResources) => self.cut_max(true, now),
            None => false,
        };
        if cut {
            self.stats.loss_decreases += 1;
        }
        if fb.rto {
            //= https://doi.org/10.1145/3387514.3406591#algorithm-1
            //# On retransmit timeout: retransmit_cnt ← retransmit_cnt + 1;
            //# if retransmit_cnt ≥ RETX_RESET_THRESHOLD: cwnd ← min_cwnd
            //# else if can_decrease: cwnd ← (1 − max_mdf)·cwnd
            self.retx = self.retx.saturating_add(1);
            if self.retx >= self.k.retx_reset {
                let before = self.fabric.cwnd;
                if self.store(false, self.k.min_cwnd_q, before, now) {
                    self.stats.timeout_decreases += 1;
                }
                self.stats.resets += 1;
            } else if self.cut_max(false, now) {
                self.stats.timeout_decreases += 1;
            }
        }
    }

    fn on_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    fn next_timeout(&self) -> Option<Instant> {
        None
    }

    fn limits(&self) -> Limits {
        let c = self.cwnd_q16();
        let mtu = self.k.mtu;
        if c >= ONE {
            // c ≤ 2^36 and mtu ≤ 2^20.
            Limits {
                window: Some(c * mtu / ONE),
                rate: None,
                path_hint: None,
            }
        } else {
            //= https://doi.org/10.1145/3387514.3406591#large-scale-incast
            //# if cwnd < 1: pacing_delay ← rtt/cwnd (one packet every rtt/cwnd)
            // c < 2^16, mtu ≤ 2^20, 15_625_000 < 2^24: below 2^60.
            let bps = c * mtu * 15_625_000 / (self.srtt * 128);
            Limits {
                window: Some(mtu),
                rate: Some(Rate::from_bps(bps.clamp(1, self.k.line_bps))),
                path_hint: None,
            }
        }
    }

    fn name(&self) -> &'static str {
        "swift"
    }
}

impl Params for SwiftParams {
    const ALGORITHM: &'static str = "swift";

    fn specs() -> &'static [ParamSpec] {
        SPECS
    }

    fn get(&self, name: &str) -> Option<f64> {
        Some(match name {
            "base_target" => micros(self.base_target),
            "per_hop" => micros(self.per_hop),
            "hops" => f64::from(self.hops),
            "fs_range" => micros(self.fs_range),
            "fs_min_cwnd" => self.fs_min_cwnd,
            "fs_max_cwnd" => self.fs_max_cwnd,
            "host_target" => micros(self.host_target),
            "ai" => self.ai,
            "beta" => self.beta,
            "max_mdf" => self.max_mdf,
            "min_cwnd" => self.min_cwnd,
            "max_cwnd" => self.max_cwnd,
            "init_cwnd" => self.init_cwnd,
            "retx_reset" => f64::from(self.retx_reset),
            _ => return None,
        })
    }

    fn set(&mut self, name: &str, value: f64) -> Result<(), ParamError> {
        let spec = params::check(Self::ALGORITHM, SPECS, name, value)?;
        match spec.name {
            "base_target" => self.base_target = from_micros(value),
            "per_hop" => self.per_hop = from_micros(value),
            "hops" => self.hops = round(value) as u32,
            "fs_range" => self.fs_range = from_micros(value),
            "fs_min_cwnd" => self.fs_min_cwnd = value,
            "fs_max_cwnd" => self.fs_max_cwnd = value,
            "host_target" => self.host_target = from_micros(value),
            "ai" => self.ai = value,
            "beta" => self.beta = value,
            "max_mdf" => self.max_mdf = value,
            "min_cwnd" => self.min_cwnd = value,
            "max_cwnd" => self.max_cwnd = value,
            "init_cwnd" => self.init_cwnd = value,
            "retx_reset" => self.retx_reset = round(value) as u32,
            _ => unreachable!("every spec has a setter"),
        }
        Ok(())
    }
}

/// The smallest window a parameter may name: one Q16 unit.
const MIN_PKTS: f64 = 1.0 / 65536.0;
/// The largest: 2^20 packets.
const MAX_PKTS: f64 = 1_048_576.0;
/// The largest delay parameter, µs (2^32 − 1 ns, rounded down).
const MAX_DELAY_US: f64 = 4_294_967.0;

pub(crate) const SPECS: &[ParamSpec] = &[
    ParamSpec {
        name: "base_target",
        unit: Unit::Micros,
        min: 0.0,
        max: MAX_DELAY_US,
        doc: "fabric base target delay (default 25, Falcon RUE; htsim 20)",
    },
    ParamSpec {
        name: "per_hop",
        unit: Unit::Micros,
        min: 0.0,
        max: MAX_DELAY_US,
        doc: "topology scaling: target added per switch hop (default 1, Falcon RUE)",
    },
    ParamSpec {
        name: "hops",
        unit: Unit::Scalar,
        min: 0.0,
        max: 255.0,
        doc: "hop count when the feedback has no INT records (default 1, Weir's choice)",
    },
    ParamSpec {
        name: "fs_range",
        unit: Unit::Micros,
        min: 0.0,
        max: MAX_DELAY_US,
        doc: "flow scaling: most target added for small windows (default 100, Falcon RUE)",
    },
    ParamSpec {
        name: "fs_min_cwnd",
        unit: Unit::Packets,
        min: MIN_PKTS,
        max: MAX_PKTS,
        doc: "flow scaling: window getting all of fs_range (default 0.1, Falcon RUE, htsim)",
    },
    ParamSpec {
        name: "fs_max_cwnd",
        unit: Unit::Packets,
        min: MIN_PKTS,
        max: MAX_PKTS,
        doc: "flow scaling: window getting none of it (default 256, Falcon RUE; htsim 100)",
    },
    ParamSpec {
        name: "host_target",
        unit: Unit::Micros,
        min: 0.0,
        max: MAX_DELAY_US,
        doc: "endpoint (host) delay target (default 100, Weir's choice)",
    },
    ParamSpec {
        name: "ai",
        unit: Unit::Packets,
        min: 0.0,
        max: 1024.0,
        doc: "additive increment per RTT (default 1, Falcon RUE, htsim)",
    },
    ParamSpec {
        name: "beta",
        unit: Unit::Scalar,
        min: 0.0,
        max: 1.0,
        doc: "multiplicative decrease factor (default 0.8, Falcon RUE, htsim)",
    },
    ParamSpec {
        name: "max_mdf",
        unit: Unit::Scalar,
        min: 0.0,
        max: 1.0,
        doc: "largest multiplicative decrease per step (default 0.5, Falcon RUE, htsim)",
    },
    ParamSpec {
        name: "min_cwnd",
        unit: Unit::Packets,
        min: MIN_PKTS,
        max: MAX_PKTS,
        doc: "smallest window; below 1 the flow is paced (default 0.01, Falcon RUE)",
    },
    ParamSpec {
        name: "max_cwnd",
        unit: Unit::Packets,
        min: MIN_PKTS,
        max: MAX_PKTS,
        doc: "largest window (default 256, Falcon RUE)",
    },
    ParamSpec {
        name: "init_cwnd",
        unit: Unit::Packets,
        min: MIN_PKTS,
        max: MAX_PKTS,
        doc: "initial fabric window (default 32, Falcon RUE)",
    },
    ParamSpec {
        name: "retx_reset",
        unit: Unit::Scalar,
        min: 1.0,
        max: 255.0,
        doc: "timeouts in a row that reset the window to min_cwnd (default 3, Falcon RUE)",
    },
];

/// One packet in Q16.
const ONE: u64 = 1 << 16;
/// Largest window, Q16: 2^20 packets.
const MAX_CWND_Q: u64 = 1 << 36;
/// Largest additive increment, Q16: 1024 packets.
const MAX_AI_Q: u64 = 1 << 26;
/// Largest acknowledgement counted in one event, Q16: 65536 packets.
const MAX_ACKED_Q: u64 = 1 << 32;
/// Largest packet.
const MAX_MTU: u64 = 1 << 20;
/// Largest delay, ns.
const MAX_NS: u64 = (1 << 32) - 1;

/// `x` packets (or a gain) in Q16, rounded half up, within [0, max]; NaN is 0.
fn q16(x: f64, max: u64) -> u64 {
    if x.is_nan() || x <= 0.0 {
        0
    } else {
        round(x * ONE as f64).min(max)
    }
}

/// A duration as whole nanoseconds, at most 2^32 − 1.
fn to_ns(d: Duration) -> u64 {
    (d.as_ps() / 1000).min(MAX_NS)
}

/// `⌊2^32 / isqrt(c·65536)⌋`: 1/√c in Q16 for a Q16 window `c` (c ≥ 1, c ≤ 2^36).
fn inv_sqrt(c_q: u64) -> u64 {
    let c = c_q.clamp(1, MAX_CWND_Q);
    (1u64 << 32) / isqrt(c << 16)
}

/// Floor of the square root, digit by digit (no floating point).
fn isqrt(x: u64) -> u64 {
    let mut rem = x;
    let mut root = 0u64;
    let mut bit = 1u64 << 62;
    while bit > x {
        bit >>= 2;
    }
    while bit != 0 {
        if rem >= root + bit {
            rem -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    root
}

/// `x` rounded half up to an integer (`⌊x + 0.5⌋`); NaN and negatives give 0, huge values
/// saturate. (`f64::round` is not in `core`.)
fn round(x: f64) -> u64 {
    (x + 0.5) as u64
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::HopTelemetry;

    fn path() -> PathInfo {
        PathInfo {
            mtu: 4096,
            line_rate: Rate::from_gbps(100),
            base_rtt: Some(Duration::from_micros(10)),
            paths: 1,
        }
    }

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    fn at(n: u64) -> Instant {
        Instant::ZERO + us(n)
    }

    fn swift(p: SwiftParams) -> Swift {
        Swift::new(Instant::ZERO, &path(), p)
    }

    /// One packet acknowledged with RTT `rtt`.
    fn ack(rtt: Duration) -> Feedback<'static> {
        Feedback {
            acked_bytes: 4096,
            acked_packets: 1,
            rtt: Some(rtt),
            ..Feedback::default()
        }
    }

    fn pkts(q: u64) -> f64 {
        q as f64 / 65536.0
    }

    /// A controller with the fabric window set to `c` packets (Q16) and a known srtt.
    fn at_window(p: SwiftParams, c_q: u64) -> Swift {
        let mut s = swift(p);
        s.fabric.cwnd = c_q;
        s
    }

    /// The default fabric target for the default window and one hop: 25 + 1 + fs(32 pkts).
    fn target_default(s: &Swift) -> u64 {
        s.k.target_ns(1, s.fabric.cwnd)
    }

    #[test]
    fn defaults_and_constants() {
        let p = SwiftParams::default();
        assert_eq!(p, SwiftParams::falcon());
        let s = swift(p);
        let k = *s.fixed();
        assert_eq!(k.mtu, 4096);
        assert_eq!(k.base_target_ns, 25_000);
        assert_eq!(k.per_hop_ns, 1_000);
        assert_eq!(k.fs_range_ns, 100_000);
        assert_eq!(k.ai_q, 65536);
        assert_eq!(k.beta_q, 52429); // round(0.8 · 65536)
        assert_eq!(k.mdf_q, 32768);
        assert_eq!(k.min_cwnd_q, 655); // round(0.01 · 65536)
        assert_eq!(k.max_cwnd_q, 256 << 16);
        assert_eq!(k.init_cwnd_q, 32 << 16);
        // inv(0.1 pkt = 6554) = 2^32 / isqrt(6554·65536) = 2^32 / 20724 = 207_246.
        assert_eq!(k.fs_inv_lo, 207_246);
        // inv(256 pkts) = 2^32 / 2^20 = 4096 (exactly 1/16 in Q16).
        assert_eq!(k.fs_inv_hi, 4096);
        assert_eq!(s.cwnd_q16(), 32 << 16);
        assert_eq!(s.ecwnd_q16(), 256 << 16);
        assert_eq!(s.srtt(), us(10));
        assert_eq!(
            s.limits(),
            Limits {
                window: Some(32 * 4096),
                rate: None,
                path_hint: None
            }
        );
        assert_eq!(s.next_timeout(), None);
        assert_eq!(s.name(), "swift");
    }

    #[test]
    fn isqrt_and_inv_sqrt_are_exact_floors() {
        for x in [
            0u64,
            1,
            2,
            3,
            4,
            15,
            16,
            17,
            1 << 52,
            (1 << 52) - 1,
            u64::MAX,
        ] {
            let r = isqrt(x);
            assert!(u128::from(r) * u128::from(r) <= u128::from(x), "{x}");
            assert!(u128::from(r + 1) * u128::from(r + 1) > u128::from(x), "{x}");
        }
        assert_eq!(inv_sqrt(ONE), ONE); // 1/√1 = 1
        assert_eq!(inv_sqrt(4 * ONE), ONE / 2);
        assert_eq!(inv_sqrt(1), 1 << 24); // 1/√(2^-16) = 256
        assert_eq!(inv_sqrt(0), 1 << 24);
    }

    #[test]
    fn flow_scaling_spans_fs_range_between_its_windows() {
        let k = *swift(SwiftParams::default()).fixed();
        assert_eq!(k.flow_scaling_ns(655), 100_000, "0.01 pkt: the whole range");
        assert_eq!(k.flow_scaling_ns(6554), 100_000, "0.1 pkt: the whole range");
        assert_eq!(k.flow_scaling_ns(256 << 16), 0);
        // 1 packet: 100 µs · (65536 − 4096) / (207246 − 4096) = 30.243... µs.
        assert_eq!(k.flow_scaling_ns(ONE), 30_243);
        // 32 packets: inv = 2^32 / isqrt(2^37) = 2^32 / 370727 = 11585.
        assert_eq!(
            k.flow_scaling_ns(32 << 16),
            100_000 * (11585 - 4096) / 203_150
        );
        // Monotone: smaller windows get larger targets.
        let mut last = 0;
        for c in (1..=256u64).rev() {
            let f = k.flow_scaling_ns(c << 16);
            assert!(f >= last);
            last = f;
        }
    }

    #[test]
    fn target_scales_with_hops_from_int_or_the_parameter() {
        let s = swift(SwiftParams::default());
        let fs = s.k.flow_scaling_ns(s.fabric.cwnd);
        assert_eq!(s.fabric_target(1), Duration::from_nanos(26_000 + fs));
        assert_eq!(s.fabric_target(5), Duration::from_nanos(30_000 + fs));
        // An RTT just under the 1-hop target increases; with 5 INT hops a longer RTT still does.
        let hops = [HopTelemetry::default(); 5];
        let rtt = Duration::from_nanos(29_000 + fs);
        let mut s = swift(SwiftParams::default());
        s.on_feedback(at(1), &ack(rtt));
        assert!(s.cwnd_q16() < 32 << 16, "1 hop: above target, decrease");
        let mut s = swift(SwiftParams::default());
        s.on_feedback(
            at(1),
            &Feedback {
                hops: &hops,
                ..ack(rtt)
            },
        );
        assert!(
            s.cwnd_q16() > 32 << 16,
            "5 INT hops: below target, increase"
        );
        // The parameter sets the default hop count.
        let mut s = swift(SwiftParams {
            hops: 5,
            ..SwiftParams::default()
        });
        s.on_feedback(at(1), &ack(rtt));
        assert!(s.cwnd_q16() > 32 << 16);
    }

    #[test]
    fn additive_increase_above_and_below_one_packet() {
        // 32 packets, one packet acked under target: + 1/32 packet = 2048 Q16.
        let mut s = swift(SwiftParams::default());
        s.on_feedback(at(1), &ack(us(10)));
        assert_eq!(s.cwnd_q16(), (32 << 16) + 2048);
        // 3 packets in one ACK (bytes count): 3·65536·65536/(32·65536 + 2048).
        let before = s.cwnd_q16();
        s.on_feedback(
            at(2),
            &Feedback {
                acked_bytes: 3 * 4096,
                ..ack(us(10))
            },
        );
        assert_eq!(s.cwnd_q16(), before + 65536 * 3 * 65536 / before);
        // Half a packet of bytes counts half.
        let mut s = at_window(SwiftParams::default(), 4 << 16);
        s.on_feedback(
            at(1),
            &Feedback {
                acked_bytes: 2048,
                rtt: Some(us(10)),
                ..Feedback::default()
            },
        );
        assert_eq!(s.cwnd_q16(), (4 << 16) + 8192);
        // Below one packet: + ai · acked, not divided by the window.
        let mut s = at_window(SwiftParams::default(), ONE / 4);
        s.on_feedback(at(1), &ack(us(10)));
        assert_eq!(s.cwnd_q16(), ONE / 4 + ONE);
        // Packets only when no byte count is given.
        let mut s = at_window(SwiftParams::default(), ONE / 4);
        s.on_feedback(
            at(1),
            &Feedback {
                acked_packets: 2,
                rtt: Some(us(10)),
                ..Feedback::default()
            },
        );
        assert_eq!(s.cwnd_q16(), ONE / 4 + 2 * ONE);
        // Capped at max_cwnd.
        let mut s = at_window(SwiftParams::default(), 256 << 16);
        s.on_feedback(at(1), &ack(us(10)));
        assert_eq!(s.cwnd_q16(), 256 << 16);
        // An RTT sample acknowledging nothing changes nothing.
        let mut s = swift(SwiftParams::default());
        s.on_feedback(
            at(1),
            &Feedback {
                rtt: Some(us(10)),
                ..Feedback::default()
            },
        );
        assert_eq!(s.cwnd_q16(), 32 << 16);
    }

    #[test]
    fn multiplicative_decrease_follows_the_excess_and_is_capped() {
        let mut s = swift(SwiftParams::default());
        let t = target_default(&s);
        // delay = 1.25·t: dec = β·0.2 = 0.16 → ⌊52429·(d − t)/d⌋.
        let d = t * 5 / 4;
        s.on_feedback(at(1), &ack(Duration::from_nanos(d)));
        let dec = 52429 * (d - t) / d;
        assert_eq!(s.cwnd_q16(), (32 << 16) * (65536 - dec) / 65536);
        assert_eq!(s.stats().decreases, 1);
        // delay = 10·t: β·0.9 = 0.72 > max_mdf: halved.
        let mut s = swift(SwiftParams::default());
        s.on_feedback(at(1), &ack(Duration::from_nanos(10 * t)));
        assert_eq!(s.cwnd_q16(), 16 << 16);
        // Exactly at target: a decrease of zero (delay ≥ target is the MD branch).
        let mut s = swift(SwiftParams::default());
        s.on_feedback(at(1), &ack(Duration::from_nanos(t)));
        assert_eq!(s.cwnd_q16(), 32 << 16);
        assert_eq!(s.stats().decreases, 0);
        // Never below min_cwnd.
        let mut s = at_window(SwiftParams::default(), 700);
        s.on_feedback(at(1), &ack(us(10_000)));
        assert_eq!(s.cwnd_q16(), 655);
    }

    #[test]
    fn at_most_one_decrease_per_srtt() {
        let mut s = swift(SwiftParams::default());
        let big = ack(us(1000));
        s.on_feedback(at(100), &big);
        assert_eq!(s.cwnd_q16(), 16 << 16);
        // srtt is now ⌊(3·10 + 1000)/4⌋ = 257.5 µs → 257_500 ns.
        assert_eq!(s.srtt(), Duration::from_nanos(257_500));
        for k in 1..5 {
            s.on_feedback(at(100 + k * 10), &big);
            assert_eq!(s.cwnd_q16(), 16 << 16, "within one srtt");
        }
        // srtt after four more samples of 1000 µs: 257500 → 443125 → 582343 → 686757 → 765067.
        assert_eq!(s.srtt(), Duration::from_nanos(765_067));
        s.on_feedback(at(100 + 764), &big);
        assert_eq!(s.cwnd_q16(), 16 << 16, "srtt (now 765 µs+) not yet passed");
        s.on_feedback(at(100 + 900), &big);
        assert_eq!(s.cwnd_q16(), 8 << 16, "one srtt later");
        // Increases are not limited by the guard.
        s.on_feedback(at(1001), &ack(us(10)));
        assert!(s.cwnd_q16() > 8 << 16);
    }

    #[test]
    fn fabric_and_host_delays_drive_their_own_windows() {
        let mut s = swift(SwiftParams::default());
        // RTT 300 µs of which 290 µs in the host: fabric 10 µs (increase), host 290 µs > 100.
        let fb = Feedback {
            host_delay: Some(us(290)),
            ..ack(us(300))
        };
        s.on_feedback(at(1), &fb);
        assert_eq!(s.fcwnd_q16(), (32 << 16) + 2048);
        // Host: dec = min(⌊52429·190/290⌋, 32768) = 32768 → halved.
        assert_eq!(s.ecwnd_q16(), 128 << 16);
        assert_eq!(s.cwnd_q16(), s.fcwnd_q16());
        // Keep the host congested: one halving per srtt until it binds.
        let mut now = 1;
        for _ in 0..6 {
            now += 1000;
            s.on_feedback(at(now), &fb);
        }
        assert_eq!(s.ecwnd_q16(), 2 << 16);
        assert_eq!(s.cwnd_q16(), 2 << 16);
        assert_eq!(s.limits().window, Some(2 * 4096));
        // Without a host delay the whole RTT is fabric delay and the host window stays.
        let mut s = swift(SwiftParams::default());
        s.on_feedback(at(1), &ack(us(300)));
        assert_eq!(s.fcwnd_q16(), 16 << 16);
        assert_eq!(s.ecwnd_q16(), 256 << 16);
    }

    #[test]
    fn below_one_packet_it_paces() {
        let mut s = at_window(SwiftParams::default(), ONE / 4);
        // srtt 10 µs, a quarter packet of 4096 bytes: 1024·8 bit / 10 µs = 819.2 Mb/s.
        assert_eq!(
            s.limits(),
            Limits {
                window: Some(4096),
                rate: Some(Rate::from_bps(819_200_000)),
                path_hint: None
            }
        );
        // The minimum window: 655/65536·4096·8 / 10 µs = 32.75 Mb/s.
        s.fabric.cwnd = 655;
        assert_eq!(s.limits().rate, Some(Rate::from_bps(32_750_000)));
        // Sustained congestion drives it there and keeps it positive.
        let mut s = swift(SwiftParams::default());
        for k in 0..100 {
            s.on_feedback(at(k * 2000), &ack(us(500)));
        }
        assert_eq!(s.cwnd_q16(), 655);
        let r = s.limits().rate.unwrap().bps();
        assert!(r > 0 && r < 1_000_000, "{r}");
    }

    #[test]
    fn losses_cut_once_per_rtt_and_receiver_refusals_cut_the_host_window() {
        for kind in [
            LossKind::Detected,
            LossKind::Trimmed,
            LossKind::TrimmedLastHop,
        ] {
            let mut s = swift(SwiftParams::default());
            let fb = Feedback {
                loss: Some(kind),
                lost_bytes: 4096,
                ..Feedback::default()
            };
            s.on_feedback(at(1), &fb);
            assert_eq!(s.fcwnd_q16(), 16 << 16, "{kind:?}");
            s.on_feedback(at(2), &fb);
            assert_eq!(s.fcwnd_q16(), 16 << 16, "{kind:?}: guarded");
            s.on_feedback(at(12), &fb);
            assert_eq!(s.fcwnd_q16(), 8 << 16, "{kind:?}: one srtt later");
            assert_eq!(s.stats().loss_decreases, 2);
        }
        let mut s = swift(SwiftParams::default());
        s.on_feedback(
            at(1),
            &Feedback {
                loss: Some(LossKind::ReceiverNoResources),
                ..Feedback::default()
            },
        );
        assert_eq!(s.fcwnd_q16(), 32 << 16);
        assert_eq!(s.ecwnd_q16(), 128 << 16);
    }

    #[test]
    fn timeouts_cut_then_reset_and_acks_clear_the_count() {
        let rto = Feedback {
            rto: true,
            ..Feedback::default()
        };
        let mut s = swift(SwiftParams::default());
        s.on_feedback(at(1), &rto);
        assert_eq!((s.fcwnd_q16(), s.retransmit_count()), (16 << 16, 1));
        s.on_feedback(at(2), &rto); // guarded: no cut
        assert_eq!((s.fcwnd_q16(), s.retransmit_count()), (16 << 16, 2));
        s.on_feedback(at(3), &rto); // third: reset, regardless of the guard
        assert_eq!((s.fcwnd_q16(), s.retransmit_count()), (655, 3));
        assert_eq!(s.stats().resets, 1);
        // An ACK clears the count; so does fast recovery.
        s.on_feedback(at(4), &ack(us(10)));
        assert_eq!(s.retransmit_count(), 0);
        s.on_feedback(at(100), &rto);
        s.on_feedback(
            at(101),
            &Feedback {
                loss: Some(LossKind::Detected),
                ..Feedback::default()
            },
        );
        assert_eq!(s.retransmit_count(), 0);
        // With retx_reset 1 the first timeout resets.
        let mut s = swift(SwiftParams {
            retx_reset: 1,
            ..SwiftParams::default()
        });
        s.on_feedback(at(1), &rto);
        assert_eq!(s.fcwnd_q16(), 655);
    }

    #[test]
    fn recovers_from_the_minimum_window() {
        let mut s = at_window(SwiftParams::default(), 655);
        let mut now = 0;
        // Every ACK under target adds ai·acked while below one packet.
        s.on_feedback(at(now), &ack(us(10)));
        assert_eq!(s.cwnd_q16(), 655 + ONE);
        while s.cwnd_q16() < 32 << 16 {
            now += 1;
            s.on_feedback(at(now), &ack(us(10)));
        }
        // From 1 to 32 packets at +1/cwnd per packet is about 32²/2 ACKs.
        assert!((400..600).contains(&now), "{now}");
        assert_eq!(s.limits().rate, None);
    }

    #[test]
    fn time_going_backwards_is_no_time_passing() {
        let mut s = swift(SwiftParams::default());
        s.on_feedback(at(100), &ack(us(1000)));
        assert_eq!(s.cwnd_q16(), 16 << 16);
        // "Earlier" feedback is taken as now: still inside the guard.
        s.on_feedback(at(0), &ack(us(1000)));
        assert_eq!(s.cwnd_q16(), 16 << 16);
    }

    #[test]
    fn hot_reload_keeps_state_and_applies_from_the_next_event() {
        let mut s = swift(SwiftParams::default());
        s.on_feedback(at(1), &ack(us(1000)));
        let srtt = s.srtt();
        s.set_params(SwiftParams {
            ai: 4.0,
            ..SwiftParams::default()
        });
        assert_eq!(s.cwnd_q16(), 16 << 16);
        assert_eq!(s.srtt(), srtt);
        assert_eq!(s.params().ai, 4.0);
        s.on_feedback(at(2), &ack(us(10)));
        assert_eq!(s.cwnd_q16(), (16 << 16) + 4 * 4096);
        // The guard survives the reload.
        s.on_feedback(at(3), &ack(us(1000)));
        assert_eq!(s.cwnd_q16(), (16 << 16) + 4 * 4096);
        // A lower max_cwnd pulls the windows in.
        s.set_params(SwiftParams {
            max_cwnd: 8.0,
            ..SwiftParams::default()
        });
        assert_eq!((s.fcwnd_q16(), s.ecwnd_q16()), (8 << 16, 8 << 16));
    }

    #[test]
    fn degenerate_paths_and_params_are_sanitised() {
        let odd = PathInfo {
            mtu: 0,
            line_rate: Rate::ZERO,
            base_rtt: Some(Duration::ZERO),
            paths: 0,
        };
        let mut s = Swift::new(Instant::ZERO, &odd, SwiftParams::default());
        assert_eq!(s.fixed().mtu, 1);
        assert_eq!(s.srtt(), Duration::from_nanos(1));
        s.on_feedback(at(1), &ack(Duration::ZERO));
        let l = s.limits();
        assert!(l.window.unwrap() >= 1);
        let p = SwiftParams {
            min_cwnd: f64::NAN,
            max_cwnd: -3.0,
            init_cwnd: f64::INFINITY,
            fs_min_cwnd: 1e9,
            fs_max_cwnd: 0.0,
            beta: 9.0,
            max_mdf: 2.0,
            ai: 1e12,
            retx_reset: 0,
            base_target: Duration::MAX,
            ..SwiftParams::default()
        };
        let k = SwiftFixed::new(&p, 4096, Rate::from_gbps(100));
        assert_eq!((k.min_cwnd_q, k.max_cwnd_q, k.init_cwnd_q), (1, 1, 1));
        assert!(k.fs_inv_hi <= k.fs_inv_lo);
        assert_eq!((k.beta_q, k.mdf_q, k.ai_q), (ONE, ONE, MAX_AI_Q));
        assert_eq!(k.retx_reset, 1);
        assert_eq!(k.base_target_ns, MAX_NS);
        let mut s = swift(p);
        for k in 0..20 {
            s.on_feedback(at(k * 100), &ack(Duration::MAX));
            s.on_feedback(at(k * 100 + 50), &ack(Duration::ZERO));
            let l = s.limits();
            assert!(l.window.unwrap() >= 1);
            assert!(l.rate.is_none_or(|r| r.bps() >= 1));
        }
    }

    #[test]
    fn params_by_name() {
        crate::params::assert_defaults_round_trip::<SwiftParams>();
        let mut p = SwiftParams::default();
        p.set("base_target", 12.5).unwrap();
        assert_eq!(p.base_target, Duration::from_nanos(12_500));
        p.set("hops", 3.0).unwrap();
        assert_eq!(p.get("hops"), Some(3.0));
        let e = p.set("base_targte", 1.0).unwrap_err();
        assert_eq!(
            alloc::format!("{e}"),
            "unknown parameter `base_targte` for swift"
        );
        let e = p.set("max_mdf", 1.5).unwrap_err();
        assert_eq!(
            alloc::format!("{e}"),
            "`max_mdf` = 1.5 is out of range [0, 1]"
        );
        assert!(p.set("min_cwnd", 0.0).is_err());
        assert!(p.set("ai", f64::INFINITY).is_err());
        assert!(p.set("retx_reset", 0.0).is_err());
        assert_eq!(p.get("nope"), None);
        assert_eq!(SwiftParams::ALGORITHM, "swift");
    }

    #[derive(Clone, Debug)]
    struct Ev {
        wait: u64,
        acked_bytes: u64,
        acked_packets: u32,
        rtt: Option<u64>,
        host: Option<u64>,
        hops: usize,
        loss: Option<LossKind>,
        rto: bool,
    }

    fn any_u64() -> impl Strategy<Value = u64> {
        prop_oneof![
            3 => 0u64..2_000_000_000,
            1 => Just(0u64),
            1 => any::<u64>(),
            1 => Just(u64::MAX),
        ]
    }

    fn any_ev() -> impl Strategy<Value = Ev> {
        (
            (any_u64(), any_u64(), any::<u32>()),
            (
                proptest::option::of(any_u64()),
                proptest::option::of(any_u64()),
                0usize..8,
            ),
            (
                prop_oneof![
                    4 => Just(None),
                    1 => Just(Some(LossKind::Detected)),
                    1 => Just(Some(LossKind::Trimmed)),
                    1 => Just(Some(LossKind::TrimmedLastHop)),
                    1 => Just(Some(LossKind::ReceiverNoResources)),
                ],
                any::<bool>(),
            ),
        )
            .prop_map(
                |((wait, acked_bytes, acked_packets), (rtt, host, hops), (loss, rto))| Ev {
                    wait,
                    acked_bytes,
                    acked_packets,
                    rtt,
                    host,
                    hops,
                    loss,
                    rto,
                },
            )
    }

    proptest! {
        #[test]
        fn limits_stay_positive_and_bounded(
            seq in proptest::collection::vec(any_ev(), 1..200),
            mtu in prop_oneof![Just(0u32), 1u32..10_000, Just(u32::MAX)],
            beta in 0.0f64..=1.0,
            max_mdf in 0.0f64..=1.0,
            min_cwnd in 0.00002f64..4.0,
        ) {
            let p = SwiftParams { beta, max_mdf, min_cwnd, ..SwiftParams::default() };
            let path = PathInfo { mtu, ..path() };
            let mut s = Swift::new(Instant::ZERO, &path, p);
            let k = *s.fixed();
            let int = [HopTelemetry::default(); 8];
            let mut now = Instant::ZERO;
            for ev in seq {
                now += Duration::from_ps(ev.wait);
                let fb = Feedback {
                    acked_bytes: ev.acked_bytes,
                    acked_packets: ev.acked_packets,
                    rtt: ev.rtt.map(Duration::from_ps),
                    host_delay: ev.host.map(Duration::from_ps),
                    hops: &int[..ev.hops],
                    loss: ev.loss,
                    rto: ev.rto,
                    ..Feedback::default()
                };
                s.on_feedback(now, &fb);
                for w in [s.fcwnd_q16(), s.ecwnd_q16()] {
                    prop_assert!((k.min_cwnd_q..=k.max_cwnd_q).contains(&w), "{}", w);
                }
                let l = s.limits();
                let w = l.window.expect("always a window");
                prop_assert!(w >= k.mtu, "window {} below one packet", w);
                prop_assert!(w <= k.max_cwnd_q.max(ONE) * k.mtu / ONE);
                if let Some(r) = l.rate {
                    prop_assert!(s.cwnd_q16() < ONE);
                    prop_assert!((1..=100_000_000_000).contains(&r.bps()), "rate {}", r.bps());
                } else {
                    prop_assert!(s.cwnd_q16() >= ONE);
                }
                prop_assert!(pkts(s.cwnd_q16()) > 0.0);
            }
        }
    }
}
