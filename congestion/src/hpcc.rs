//! HPCC, High Precision Congestion Control (Li et al., "HPCC: High Precision Congestion
//! Control", SIGCOMM 2019), driven by in-band network telemetry (INT).
//!
//! Contract: [`Hpcc`] is a window controller that also paces. [`Limits::window`] is always
//! `Some(w)` with `W_min <= w <= W_init`, and [`Limits::rate`] is always `Some(w / T)` within
//! [1 bit/s, line rate], where `T` is the base RTT (see [`HpccParams::base_rtt`]),
//! `W_init = line rate × T` and `W_min = min_rate × T` (at least one byte). [`Limits::path_hint`]
//! is always `None`. [`CongestionControl::needs_int`] is `true`: a transport whose path
//! carries no INT must refuse this controller at start-up. If, at run time, feedback keeps
//! arriving without INT records anyway, HPCC does **not** degrade to something else: it holds
//! the window (no growth, no cut) and counts every such acknowledgement in
//! [`Hpcc::acks_without_int`], which logs and tests can watch. HPCC has no timer
//! ([`CongestionControl::next_timeout`] is always `None`) and does not use `now`: its clock
//! is the switches' INT timestamps.
//!
//! The law (the paper's Algorithm 1, one instance per path):
//!
//! * **Measure in-flight (per ACK).** For every hop `j` of the echoed INT, against the
//!   previous record of the same hop: `txRate_j = Δtx_bytes_j / Δts_j`, and
//!   `u'_j = min(qlen_j, qlen_j,prev) / (B_j·T) + txRate_j / B_j`. The largest `u'` wins, with
//!   its `τ = Δts`; then `τ ← min(τ, T)` and `U ← (1 − τ/T)·U + (τ/T)·u'`. `U` starts at 1,
//!   as in the authors' ns-3 model.
//! * **Compute the window.** If `U ≥ η` or `incStage ≥ maxStage`: `W = W_c / (U/η) + W_AI`
//!   (multiplicative step towards η, plus the additive term), `incStage ← 0`; otherwise
//!   `W = W_c + W_AI`, `incStage ← incStage + 1`.
//! * **Reference window once per RTT, fast reaction per ACK.** When an ACK acknowledges data
//!   sent after the last reference update (`ack.seq > lastUpdateSeq`), the new `W` also
//!   becomes `W_c` (and `incStage` is stored), and `lastUpdateSeq ← snd_nxt`. Every other ACK
//!   recomputes `W` from the unchanged `W_c` and `incStage` ("fast react",
//!   [`HpccParams::fast_react`]), so the sender reacts within one ACK but commits at most one
//!   step per RTT.
//! * **Pacing.** `R = W / T`.
//!
//! Choices that differ from a literal transcription, and why:
//!
//! * **Sequence numbers from byte counts.** The trait carries no sequence numbers, so
//!   `lastUpdateSeq ← snd_nxt` becomes "the delivered-bytes mark is the bytes delivered so far
//!   plus [`Feedback::in_flight`]", and `ack.seq > lastUpdateSeq` becomes "bytes delivered
//!   now exceed that mark". With accurate `in_flight` this is the same round boundary; the
//!   transport must report `in_flight` (with `0`, every ACK ends a round).
//! * **W_AI as a rate.** The ns-3 model (and its `run.py`) sets HPCC's additive step as a
//!   rate, `RATE_AI = 10 Mb/s` per 25 Gb/s of line rate, i.e. `W_AI = RATE_AI × T`; that is
//!   the paper's `W_AI = W_init·(1 − η)/N` with `N = 125`. [`HpccParams::rate_ai`] keeps that
//!   form; `0` (the default) derives it from the line rate.
//! * **Losses and timeouts are not inputs.** HPCC was designed for a lossless fabric; the
//!   queue that would overflow is already in the INT it reads, and a loss on lossy Ethernet
//!   is often corruption. Trims, detected losses and RTOs leave the window alone (the
//!   transport retransmits).
//! * **One path per instance.** INT deltas only mean something between records of the same
//!   switch port. When the feedback's [`Feedback::path`] or hop count changes, the stored
//!   records are replaced without a measurement (counted in [`HpccStats::rebaselines`]).
//!   A sprayed connection should run one instance per path. At most [`MAX_HOPS`] hops are
//!   read; further hops are ignored.
//! * **Unusable hop records are skipped.** A hop with a zero link rate or a timestamp that did
//!   not advance gives no `u'`; if no hop of an ACK is usable, `U` and the window hold (as the
//!   ns-3 model does when no hop was updated).
//! * **Floors.** `W` never goes below `min_rate × T` (the ns-3 `MinRate`), nor above
//!   `W_init`; `U` is floored at 10⁻⁹ in the division so an idle path gives `W_init`, not ∞.
//! * **Floating point.** `U`, `W` and `W_c` are `f64`, as the paper writes them; the outputs
//!   are rounded to whole bytes and bit/s.
//!
//! Known limit of the published law (measured on the bottleneck model, `testing` under feature
//! `testing`, kept as is): the queue term is sampled when the flow's *own* packets leave the
//! queue, so it counts what the other flows queued behind them, and a flow with a large share
//! sees a shorter queue and a lower `U` than a small one. With 4 KB packets one packet of queue
//! is 3–7 % of `U` on a 40–100 Gb/s, ~10 µs path, while the default `W_AI` restores only
//! ≈ 0.3–0.4 % per RTT: flows started apart drift to an unfair share (Jain ≈ 0.36 for 4 flows
//! at 40 Gb/s, 0.85–0.96 for 8 at 100 Gb/s). At the paper's 1000-byte packets 8 flows converge
//! (Jain 0.99); so does a larger [`HpccParams::rate_ai`] (0.4 Gb/s at 100 Gb/s: Jain 0.999,
//! 4 KB packets).

use weir_base::{Duration, Instant, Rate};

use crate::params::convert::{flag, from_gbps, from_micros, gbps, micros};
use crate::params::{ParamError, ParamSpec, Params, Unit, check};
use crate::{CongestionControl, Feedback, HopTelemetry, Limits, PathInfo, Sent};

/// Most INT hops one instance remembers (the ns-3 model's `IntHeader::maxHop` is 5).
pub const MAX_HOPS: usize = 8;

/// `T` used when neither [`HpccParams::base_rtt`] nor [`PathInfo::base_rtt`] gives one:
/// 13 µs, the base RTT of the paper's ns-3 fat-tree (the `run.py` comment on DCTCP's AI).
pub const FALLBACK_BASE_RTT: Duration = Duration::from_micros(13);

/// Smallest `U` used as a divisor.
const U_FLOOR: f64 = 1e-9;

/// HPCC parameters. Defaults are the SIGCOMM 2019 paper's (η = 0.95, maxStage = 5; Li et al.,
/// doi:10.1145/3341302.3342085, §3.2) and the authors' ns-3 model's (`W_AI`, minimum rate,
/// fast reaction on: <https://github.com/alibaba-edu/High-Precision-Congestion-Control>,
/// `simulation/run.py`); on maxStage see the authors' page, <https://hpcc-group.github.io/>.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct HpccParams {
    /// Target utilisation η. Paper: 0.95 (the authors later recommend 0.99).
    pub eta: f64,
    /// Additive-increase stages before a multiplicative step is forced. Paper: 5. The
    /// authors' page says the simulations actually ran with 0 ("a typo" in the paper).
    pub max_stage: u32,
    /// Additive increase as a rate, `W_AI = rate_ai × T`. Zero (default): 10 Mb/s per
    /// 25 Gb/s of line rate, as the ns-3 `run.py` sets `RATE_AI` (40 Mb/s at 100 Gb/s).
    pub rate_ai: Rate,
    /// Base RTT `T`. Zero (default): [`PathInfo::base_rtt`], else [`FALLBACK_BASE_RTT`].
    pub base_rtt: Duration,
    /// Lowest pacing rate; the window floor is `min_rate × T`. Default 1 Gb/s (`MIN_RATE`
    /// in the ns-3 `run.py`).
    pub min_rate: Rate,
    /// Per-ACK fast reaction between reference updates. Default on (`FAST_REACT 1`).
    pub fast_react: bool,
}

impl HpccParams {
    /// The paper's defaults (the [`Default`]).
    pub const fn paper() -> Self {
        HpccParams {
            eta: 0.95,
            max_stage: 5,
            rate_ai: Rate::ZERO,
            base_rtt: Duration::ZERO,
            min_rate: Rate::from_gbps(1),
            fast_react: true,
        }
    }

    /// What the authors' ns-3 evaluation actually ran: [`HpccParams::paper`] with
    /// maxStage = 0.
    pub const fn simulation() -> Self {
        let mut p = Self::paper();
        p.max_stage = 0;
        p
    }
}

impl Default for HpccParams {
    fn default() -> Self {
        Self::paper()
    }
}

pub(crate) const SPECS: &[ParamSpec] = &[
    ParamSpec {
        name: "eta",
        unit: Unit::Scalar,
        min: 0.5,
        max: 1.0,
        doc: "target utilisation η; 0.95 (HPCC SIGCOMM'19 §3.2; authors later suggest 0.99)",
    },
    ParamSpec {
        name: "max_stage",
        unit: Unit::Scalar,
        min: 0.0,
        max: 1_000_000.0,
        doc: "additive stages before a forced multiplicative step; 5 (HPCC §3.2; its ns-3 runs used 0)",
    },
    ParamSpec {
        name: "rate_ai",
        unit: Unit::Gbps,
        min: 0.0,
        max: 10_000.0,
        doc: "additive increase W_AI = rate_ai·T; 0 = 10 Mb/s per 25 Gb/s of line rate (HPCC ns-3 run.py)",
    },
    ParamSpec {
        name: "base_rtt",
        unit: Unit::Micros,
        min: 0.0,
        max: 1_000_000.0,
        doc: "base RTT T; 0 = the path's base RTT, else 13 us (HPCC ns-3 fat-tree)",
    },
    ParamSpec {
        name: "min_rate",
        unit: Unit::Gbps,
        min: 0.000_001,
        max: 10_000.0,
        doc: "lowest rate, window floor min_rate·T; 1 Gbit/s (HPCC ns-3 run.py MIN_RATE)",
    },
    ParamSpec {
        name: "fast_react",
        unit: Unit::Bool,
        min: 0.0,
        max: 1.0,
        doc: "per-ACK reaction between reference-window updates; 1 (HPCC Algorithm 1, ns-3 FAST_REACT)",
    },
];

impl Params for HpccParams {
    const ALGORITHM: &'static str = "hpcc";

    fn specs() -> &'static [ParamSpec] {
        SPECS
    }

    fn get(&self, name: &str) -> Option<f64> {
        Some(match name {
            "eta" => self.eta,
            "max_stage" => f64::from(self.max_stage),
            "rate_ai" => gbps(self.rate_ai),
            "base_rtt" => micros(self.base_rtt),
            "min_rate" => gbps(self.min_rate),
            "fast_react" => flag(self.fast_react),
            _ => return None,
        })
    }

    fn set(&mut self, name: &str, value: f64) -> Result<(), ParamError> {
        let spec = check(Self::ALGORITHM, SPECS, name, value)?;
        match spec.name {
            "eta" => self.eta = value,
            "max_stage" => self.max_stage = value as u32,
            "rate_ai" => self.rate_ai = from_gbps(value),
            "base_rtt" => self.base_rtt = from_micros(value),
            "min_rate" => self.min_rate = from_gbps(value),
            "fast_react" => self.fast_react = value == 1.0,
            _ => unreachable!("every spec has a field"),
        }
        Ok(())
    }
}

/// Counters for tests, logs and plots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HpccStats {
    /// Acknowledgements that carried no INT record; the window was held.
    pub acks_without_int: u64,
    /// Feedback whose hop records replaced the stored ones without a measurement (first INT,
    /// a new path, a different hop count).
    pub rebaselines: u64,
    /// Reference-window updates (one per RTT).
    pub reference_updates: u64,
    /// Per-ACK fast reactions.
    pub fast_reacts: u64,
}

/// Values derived from the parameters and the path.
#[derive(Clone, Copy, Debug)]
struct Derived {
    /// Base RTT T.
    t_dur: Duration,
    /// T in seconds (> 0).
    t: f64,
    /// Line rate, bit/s (>= 1).
    line: f64,
    /// The same, exact.
    line_bps: u64,
    /// W_init = line·T, bytes (>= 1).
    w_max: f64,
    /// min_rate·T, bytes, in [1, w_max].
    w_min: f64,
    /// W_AI, bytes.
    w_ai: f64,
    /// η, in (0, 1].
    eta: f64,
}

impl Derived {
    fn new(path: &PathInfo, p: &HpccParams) -> Self {
        let t_dur = if p.base_rtt > Duration::ZERO {
            p.base_rtt
        } else {
            path.base_rtt
                .filter(|d| *d > Duration::ZERO)
                .unwrap_or(FALLBACK_BASE_RTT)
        };
        let t = t_dur.as_secs_f64();
        let line = path.line_rate.bps_f64().max(1.0);
        let w_max = (line * t / 8.0).max(1.0);
        let w_min = (p.min_rate.bps_f64() * t / 8.0).clamp(1.0, w_max);
        // ns-3 run.py: RATE_AI = 10 Mb/s × (bw / 25 Gb/s).
        let rate_ai = if p.rate_ai > Rate::ZERO {
            p.rate_ai.bps_f64()
        } else {
            line * (10e6 / 25e9)
        };
        let eta = if p.eta.is_finite() && p.eta > 0.0 {
            p.eta.min(1.0)
        } else {
            0.95
        };
        Derived {
            t_dur,
            t,
            line,
            line_bps: path.line_rate.bps().max(1),
            w_max,
            w_min,
            w_ai: rate_ai * t / 8.0,
            eta,
        }
    }

    fn clamp(&self, w: f64) -> f64 {
        if w.is_nan() {
            self.w_min
        } else {
            w.clamp(self.w_min, self.w_max)
        }
    }
}

/// HPCC sender for one path. See the module documentation for the law.
#[derive(Clone, Debug)]
pub struct Hpcc {
    params: HpccParams,
    path: PathInfo,
    d: Derived,
    /// Current window W, bytes.
    w: f64,
    /// Reference window W_c, bytes.
    wc: f64,
    /// Smoothed utilisation U.
    u: f64,
    inc_stage: u32,
    /// INT records of the previous ACK, `hops` of them.
    last: [HopTelemetry; MAX_HOPS],
    hops: usize,
    /// Path the stored records came from; `None` until the first INT.
    int_path: Option<u16>,
    /// Bytes acknowledged so far.
    delivered: u64,
    /// The delivered-bytes mark standing for `lastUpdateSeq`.
    update_mark: u64,
    stats: HpccStats,
}

impl Hpcc {
    /// A controller starting at `W = W_c = W_init` (line rate), `U = 1`, stage 0. A zero line
    /// rate is taken as 1 bit/s; see [`HpccParams`] for how `T` is chosen.
    pub fn new(_now: Instant, path: &PathInfo, params: HpccParams) -> Self {
        let d = Derived::new(path, &params);
        Hpcc {
            params,
            path: *path,
            d,
            w: d.w_max,
            wc: d.w_max,
            u: 1.0,
            inc_stage: 0,
            last: [HopTelemetry::default(); MAX_HOPS],
            hops: 0,
            int_path: None,
            delivered: 0,
            update_mark: 0,
            stats: HpccStats::default(),
        }
    }

    /// The parameters this controller runs with.
    pub fn params(&self) -> &HpccParams {
        &self.params
    }

    /// Hot reload: new parameters apply from the next event. The window, reference window,
    /// `U`, stage and INT records are kept; the windows are clamped into the new bounds.
    pub fn set_params(&mut self, p: HpccParams) {
        self.params = p;
        self.d = Derived::new(&self.path, &p);
        self.w = self.d.clamp(self.w);
        self.wc = self.d.clamp(self.wc);
    }

    /// Acknowledgements that arrived without any INT record (the window was held for each).
    /// On a path that is supposed to carry INT, a growing count means telemetry is missing.
    pub fn acks_without_int(&self) -> u64 {
        self.stats.acks_without_int
    }

    /// Counters since creation.
    pub fn stats(&self) -> HpccStats {
        self.stats
    }

    /// Current window W in bytes (unrounded).
    pub fn window(&self) -> f64 {
        self.w
    }

    /// Reference window W_c in bytes.
    pub fn reference_window(&self) -> f64 {
        self.wc
    }

    /// Smoothed bottleneck utilisation U.
    pub fn utilisation(&self) -> f64 {
        self.u
    }

    /// Additive stages since the last multiplicative step.
    pub fn inc_stage(&self) -> u32 {
        self.inc_stage
    }

    /// The base RTT T in use.
    pub fn base_rtt(&self) -> Duration {
        self.d.t_dur
    }

    /// Stores `hops` as the previous records.
    fn store(&mut self, path: u16, hops: &[HopTelemetry]) {
        let n = hops.len().min(MAX_HOPS);
        self.last[..n].copy_from_slice(&hops[..n]);
        self.hops = n;
        self.int_path = Some(path);
    }

    /// Algorithm 1, MeasureInflight: updates U from `hops` against the stored records and
    /// stores `hops`. Returns whether any hop gave a measurement.
    fn measure(&mut self, hops: &[HopTelemetry]) -> bool {
        let n = hops.len().min(MAX_HOPS);
        let t = self.d.t;
        let mut best: Option<(f64, f64)> = None;
        for (new, old) in hops[..n].iter().zip(&self.last[..n]) {
            let b = new.rate.bps_f64();
            let Some(tau) = new.ts.checked_since(old.ts).filter(|d| *d > Duration::ZERO) else {
                continue;
            };
            if b <= 0.0 {
                continue;
            }
            let tau = tau.as_secs_f64();
            //= https://doi.org/10.1145/3341302.3342085#algorithm-1
            //# txRate = (ack.L[i].txBytes − L[i].txBytes) / (ack.L[i].ts − L[i].ts);
            //# u' = min(ack.L[i].qlen, L[i].qlen) / (ack.L[i].B·T) + txRate / ack.L[i].B
            let tx_bits = new.tx_bytes.wrapping_sub(old.tx_bytes) as f64 * 8.0;
            let q_bits = new.qlen.min(old.qlen) as f64 * 8.0;
            let u = q_bits / (b * t) + tx_bits / tau / b;
            if best.is_none_or(|(bu, _)| u > bu) {
                best = Some((u, tau));
            }
        }
        self.store(self.int_path.unwrap_or(0), hops);
        let Some((u, tau)) = best else { return false };
        //= https://doi.org/10.1145/3341302.3342085#algorithm-1
        //# τ = min(τ, T); U = (1 − τ/T)·U + τ/T·u
        let f = (tau / t).min(1.0);
        let next = (1.0 - f) * self.u + f * u;
        if next.is_finite() {
            self.u = next.max(0.0);
        }
        true
    }

    /// Algorithm 1, ComputeWind.
    fn compute_wind(&mut self, update_wc: bool) {
        let eta = self.d.eta;
        //= https://doi.org/10.1145/3341302.3342085#algorithm-1
        //# if U ≥ η or incStage ≥ maxStage: W = W_c/(U/η) + W_AI, incStage = 0;
        //# else W = W_c + W_AI, incStage++ — W_c and incStage only stored on the
        //# once-per-RTT update.
        let (w, stage) = if self.u >= eta || self.inc_stage >= self.params.max_stage {
            (self.wc / (self.u.max(U_FLOOR) / eta) + self.d.w_ai, 0)
        } else {
            (self.wc + self.d.w_ai, self.inc_stage.saturating_add(1))
        };
        self.w = self.d.clamp(w);
        if update_wc {
            self.wc = self.w;
            self.inc_stage = stage;
            self.stats.reference_updates += 1;
        } else {
            self.stats.fast_reacts += 1;
        }
    }
}

impl CongestionControl for Hpcc {
    fn on_sent(&mut self, _now: Instant, _sent: &Sent) {}

    fn on_feedback(&mut self, _now: Instant, fb: &Feedback<'_>) {
        self.delivered = self.delivered.saturating_add(fb.acked_bytes);
        let acks = fb.acked_bytes > 0 || fb.acked_packets > 0;
        if fb.hops.is_empty() {
            // INT missing: hold W (neither grow nor cut) and make it visible.
            if acks {
                self.stats.acks_without_int += 1;
            }
            return;
        }
        let n = fb.hops.len().min(MAX_HOPS);
        if self.int_path != Some(fb.path) || self.hops != n {
            // First INT (ns-3: "first RTT"), a new path or a different hop count: nothing to
            // take deltas against yet. The round starts here.
            self.store(fb.path, fb.hops);
            self.update_mark = self.delivered.saturating_add(fb.in_flight);
            self.stats.rebaselines += 1;
            return;
        }
        let measured = self.measure(fb.hops);
        //= https://doi.org/10.1145/3341302.3342085#algorithm-1
        //# if ack.seq > lastUpdateSeq: W = ComputeWind(U, True); lastUpdateSeq = snd_nxt
        //# else: W = ComputeWind(U, False)
        if self.delivered > self.update_mark {
            if measured {
                self.compute_wind(true);
            }
            self.update_mark = self.delivered.saturating_add(fb.in_flight);
        } else if measured && self.params.fast_react {
            self.compute_wind(false);
        }
    }

    fn on_timeout(&mut self, _now: Instant) {}

    fn next_timeout(&self) -> Option<Instant> {
        None
    }

    fn limits(&self) -> Limits {
        let w = self.d.clamp(self.w);
        // R = W / T.
        let rate = (w * 8.0 / self.d.t).clamp(1.0, self.d.line);
        // Both are positive and finite here; round to the nearest byte and bit/s.
        Limits {
            window: Some(((w + 0.5) as u64).max(1)),
            rate: Some(
                Rate::from_bps_f64(rate + 0.5)
                    .min(Rate::from_bps(self.d.line_bps))
                    .max(Rate::from_bps(1)),
            ),
            path_hint: None,
        }
    }

    fn name(&self) -> &'static str {
        "hpcc"
    }

    fn needs_int(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::LossKind;

    fn path() -> PathInfo {
        PathInfo {
            mtu: 4096,
            line_rate: Rate::from_gbps(100),
            base_rtt: Some(Duration::from_micros(10)),
            paths: 1,
        }
    }

    fn us(t: u64) -> Instant {
        Instant::from_ps(t * 1_000_000)
    }

    fn hpcc(p: HpccParams) -> Hpcc {
        Hpcc::new(Instant::ZERO, &path(), p)
    }

    /// One hop at 100 Gb/s with queue `qlen` whose port sent `tx` bytes by `ts`.
    fn hop(qlen: u64, tx: u64, ts: Instant) -> HopTelemetry {
        HopTelemetry {
            qlen,
            rate: Rate::from_gbps(100),
            tx_bytes: tx,
            ts,
        }
    }

    fn ack<'a>(hops: &'a [HopTelemetry], acked: u64, in_flight: u64) -> Feedback<'a> {
        Feedback {
            acked_bytes: acked,
            acked_packets: 1,
            hops,
            in_flight,
            ..Feedback::default()
        }
    }

    /// W_init at 100 Gb/s × 10 µs.
    const W_INIT: f64 = 125_000.0;
    /// W_AI = 40 Mb/s × 10 µs.
    const W_AI: f64 = 50.0;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-6 * b.abs().max(1.0)
    }

    #[test]
    fn starts_at_line_rate_and_needs_int() {
        let h = hpcc(HpccParams::default());
        let l = h.limits();
        assert_eq!(l.window, Some(125_000));
        assert_eq!(l.rate, Some(Rate::from_gbps(100)));
        assert!(h.needs_int());
        assert_eq!(h.name(), "hpcc");
        assert_eq!(h.next_timeout(), None);
        assert_eq!(h.utilisation(), 1.0);
    }

    /// u' = min(q, q_prev)/(B·T) + txRate/B for one hop; τ = T makes U = u'.
    #[test]
    fn utilisation_from_one_hop() {
        let mut h = hpcc(HpccParams::default());
        let h0 = [hop(50_000, 0, us(0))];
        h.on_feedback(us(0), &ack(&h0, 1000, 1_000_000));
        // 10 µs later: 100 KB queue (min with 50 KB = 50 KB), 112.5 KB sent in 10 µs = 90 Gb/s.
        let h1 = [hop(100_000, 112_500, us(10))];
        h.on_feedback(us(10), &ack(&h1, 1000, 1_000_000));
        let expected = 50_000.0 * 8.0 / (100e9 * 10e-6) + 0.9;
        assert!(close(h.utilisation(), expected), "{}", h.utilisation());
    }

    /// τ < T blends: U ← (1 − τ/T)·U + τ/T·u'.
    #[test]
    fn utilisation_is_an_ewma_over_the_base_rtt() {
        let mut h = hpcc(HpccParams::default());
        h.on_feedback(us(0), &ack(&[hop(0, 0, us(0))], 1000, 1_000_000));
        // 2.5 µs at 50 Gb/s, no queue: u' = 0.5, weight 1/4.
        h.on_feedback(
            us(3),
            &ack(
                &[hop(0, 15_625, us(2) + Duration::from_nanos(500))],
                1000,
                1_000_000,
            ),
        );
        assert!(close(h.utilisation(), 0.75 * 1.0 + 0.25 * 0.5));
        // A gap longer than T counts as T: U = u'.
        h.on_feedback(
            us(50),
            &ack(
                &[hop(0, 15_625 + 312_500, us(42) + Duration::from_nanos(500))],
                1000,
                1_000_000,
            ),
        );
        assert!(close(h.utilisation(), 0.625), "{}", h.utilisation());
    }

    #[test]
    fn the_most_loaded_hop_wins() {
        let mut h = hpcc(HpccParams::default());
        let a = [hop(0, 0, us(0)), hop(0, 0, us(0))];
        h.on_feedback(us(0), &ack(&a, 1000, 1_000_000));
        // Hop 0 at 30 Gb/s, hop 1 at 80 Gb/s plus 25 KB of queue (0.2).
        let b = [hop(0, 37_500, us(10)), hop(25_000, 100_000, us(10))];
        h.on_feedback(us(10), &ack(&b, 1000, 1_000_000));
        // min(q, q_prev) = min(25 KB, 0) = 0 on this first delta.
        assert!(close(h.utilisation(), 0.8));
        let d = [hop(0, 75_000, us(20)), hop(25_000, 200_000, us(20))];
        h.on_feedback(us(20), &ack(&d, 1000, 1_000_000));
        assert!(close(h.utilisation(), 1.0), "{}", h.utilisation());
    }

    /// Overload: U ≥ η gives W = W_c/(U/η) + W_AI, committed once per round.
    #[test]
    fn multiplicative_step_when_over_target() {
        let mut h = hpcc(HpccParams::default());
        h.on_feedback(us(0), &ack(&[hop(0, 0, us(0))], 1000, 10_000));
        // 100 Gb/s and 62.5 KB queue for a full T: U = 1.5 (min(q, 0) = 0 → use two steps).
        h.on_feedback(
            us(10),
            &ack(&[hop(62_500, 125_000, us(10))], 20_000, 10_000),
        );
        // delivered 21 000 > mark 1 000 + 10 000: a reference update with U = 1.0.
        assert!(close(h.utilisation(), 1.0));
        let w1 = W_INIT / (1.0 / 0.95) + W_AI;
        assert!(
            close(h.reference_window(), w1.min(W_INIT)),
            "{}",
            h.reference_window()
        );
        h.on_feedback(
            us(20),
            &ack(&[hop(62_500, 250_000, us(20))], 20_000, 10_000),
        );
        assert!(close(h.utilisation(), 1.5));
        let w2 = w1 / (1.5 / 0.95) + W_AI;
        assert!(close(h.reference_window(), w2));
        assert!(close(h.window(), w2));
        assert_eq!(h.inc_stage(), 0);
        assert_eq!(h.limits().window, Some((w2 + 0.5) as u64));
        // R = W/T.
        let r = h.limits().rate.unwrap().bps() as f64;
        assert!((r - w2 * 8.0 / 10e-6).abs() < 2.0, "{r}");
    }

    /// Under target: W = W_c + W_AI and incStage++ per round, until maxStage forces a
    /// multiplicative step (which, under target, raises W towards η).
    #[test]
    fn additive_stages_then_forced_multiplicative() {
        let mut h = hpcc(HpccParams::default());
        // Bring W_c down first: a round at U = 2.
        h.on_feedback(us(0), &ack(&[hop(0, 0, us(0))], 1000, 0));
        h.on_feedback(us(10), &ack(&[hop(125_000, 250_000, us(10))], 1000, 0));
        h.on_feedback(us(20), &ack(&[hop(125_000, 500_000, us(20))], 1000, 0));
        assert!(close(h.utilisation(), 3.0), "{}", h.utilisation());
        let mut wc = h.reference_window();
        // Now 40 Gb/s, no queue, a round per ACK (in_flight 0): U = 0.4 after one full T.
        let mut tx = 500_000;
        for k in 0..7u64 {
            tx += 50_000;
            let t = us(30 + 10 * k);
            h.on_feedback(t, &ack(&[hop(0, tx, t)], 1000, 0));
            assert!(close(h.utilisation(), 0.4));
            if k < 5 {
                wc += W_AI;
                assert_eq!(h.inc_stage(), k as u32 + 1, "round {k}");
            } else if k == 5 {
                // incStage = 5 = maxStage: W = W_c/(0.4/0.95) + W_AI.
                wc = (wc / (0.4 / 0.95) + W_AI).min(W_INIT);
                assert_eq!(h.inc_stage(), 0);
            } else {
                wc += W_AI;
                assert_eq!(h.inc_stage(), 1);
            }
            assert!(
                close(h.reference_window(), wc),
                "round {k}: {} vs {wc}",
                h.reference_window()
            );
        }
        // max_stage = 0 (the authors' simulations): every round is multiplicative.
        let mut h = hpcc(HpccParams::simulation());
        h.on_feedback(us(0), &ack(&[hop(0, 0, us(0))], 1000, 0));
        h.on_feedback(us(10), &ack(&[hop(0, 50_000, us(10))], 1000, 0));
        assert_eq!(h.inc_stage(), 0);
        assert!(close(h.reference_window(), W_INIT), "W capped at W_init");
    }

    /// Between reference updates, each ACK recomputes W from the unchanged W_c.
    #[test]
    fn fast_react_uses_the_reference_window() {
        let mut h = hpcc(HpccParams::default());
        h.on_feedback(us(0), &ack(&[hop(0, 0, us(0))], 1000, 500_000));
        // Inside the round (delivered ≤ 1000 + 500 000): fast reaction only.
        h.on_feedback(us(10), &ack(&[hop(62_500, 125_000, us(10))], 1000, 500_000));
        h.on_feedback(us(20), &ack(&[hop(62_500, 250_000, us(20))], 1000, 500_000));
        assert!(close(h.utilisation(), 1.5));
        assert!(close(h.reference_window(), W_INIT), "W_c unchanged");
        assert!(close(h.window(), W_INIT / (1.5 / 0.95) + W_AI));
        assert_eq!(h.stats().reference_updates, 0);
        assert_eq!(h.stats().fast_reacts, 2);
        // The same without fast reaction: W holds until the round ends.
        let mut h = hpcc(HpccParams {
            fast_react: false,
            ..HpccParams::default()
        });
        h.on_feedback(us(0), &ack(&[hop(0, 0, us(0))], 1000, 500_000));
        h.on_feedback(us(10), &ack(&[hop(62_500, 125_000, us(10))], 1000, 500_000));
        assert!(close(h.window(), W_INIT));
        // The round ends once the bytes in flight at the mark are delivered.
        h.on_feedback(
            us(20),
            &ack(&[hop(62_500, 250_000, us(20))], 500_000, 500_000),
        );
        assert_eq!(h.stats().reference_updates, 1);
        assert!(close(h.reference_window(), W_INIT / (1.5 / 0.95) + W_AI));
    }

    #[test]
    fn acks_without_int_hold_the_window_and_are_counted() {
        let mut h = hpcc(HpccParams::default());
        h.on_feedback(us(0), &ack(&[hop(0, 0, us(0))], 1000, 0));
        h.on_feedback(us(10), &ack(&[hop(125_000, 250_000, us(10))], 1000, 0));
        let w = h.window();
        assert!(w < W_INIT);
        for k in 0..100 {
            h.on_feedback(us(20 + k), &ack(&[], 4096, 0));
        }
        assert_eq!(h.acks_without_int(), 100);
        assert_eq!(h.window(), w, "held, not grown");
        // Only acknowledgements count; a bare loss report is not one.
        h.on_feedback(
            us(200),
            &Feedback {
                loss: Some(LossKind::Detected),
                lost_bytes: 4096,
                ..Feedback::default()
            },
        );
        assert_eq!(h.acks_without_int(), 100);
    }

    #[test]
    fn losses_and_timeouts_leave_the_window_alone() {
        let mut h = hpcc(HpccParams::default());
        for kind in [
            LossKind::Detected,
            LossKind::Trimmed,
            LossKind::TrimmedLastHop,
            LossKind::ReceiverNoResources,
        ] {
            h.on_feedback(
                us(1),
                &Feedback {
                    loss: Some(kind),
                    lost_bytes: 1 << 20,
                    rto: true,
                    ecn_bytes: 1 << 20,
                    cnp: true,
                    ..Feedback::default()
                },
            );
        }
        h.on_timeout(us(1000));
        assert_eq!(h.limits().window, Some(125_000));
    }

    #[test]
    fn a_new_path_or_hop_count_rebaselines() {
        let mut h = hpcc(HpccParams::default());
        h.on_feedback(us(0), &ack(&[hop(0, 0, us(0))], 1000, 0));
        // Different hop count: no delta taken (a delta would be nonsense: huge tx_bytes).
        h.on_feedback(
            us(10),
            &ack(&[hop(0, u64::MAX / 2, us(10)), hop(0, 0, us(10))], 1000, 0),
        );
        assert_eq!(h.utilisation(), 1.0);
        // Different path.
        let two = [hop(0, 7, us(20)), hop(0, 9, us(20))];
        let fb = Feedback {
            path: 3,
            ..ack(&two, 1000, 0)
        };
        h.on_feedback(us(20), &fb);
        assert_eq!(h.utilisation(), 1.0);
        assert_eq!(h.stats().rebaselines, 3);
        assert!(close(h.window(), W_INIT));
    }

    #[test]
    fn tx_counter_wraps_and_bad_records_are_skipped() {
        let mut h = hpcc(HpccParams::default());
        h.on_feedback(
            us(0),
            &ack(&[hop(0, u64::MAX - 999, us(0))], 1000, 1_000_000),
        );
        // 125 000 bytes across the wrap in 10 µs: 100 Gb/s.
        h.on_feedback(us(10), &ack(&[hop(0, 124_000, us(10))], 1000, 1_000_000));
        assert!(close(h.utilisation(), 1.0));
        // Timestamp not advancing, zero link rate: skipped; U holds.
        h.on_feedback(us(11), &ack(&[hop(0, 500_000, us(10))], 1000, 1_000_000));
        let mut z = hop(0, 900_000, us(20));
        z.rate = Rate::ZERO;
        h.on_feedback(us(20), &ack(&[z], 1000, 1_000_000));
        assert!(close(h.utilisation(), 1.0));
    }

    #[test]
    fn window_floor_and_ceiling() {
        let mut h = hpcc(HpccParams::default());
        h.on_feedback(us(0), &ack(&[hop(0, 0, us(0))], 1000, 0));
        let mut t = 0;
        for _ in 0..50 {
            t += 10;
            h.on_feedback(us(t), &ack(&[hop(u64::MAX, 0, us(t))], 1000, 0));
        }
        // Floor: 1 Gb/s × 10 µs = 1250 bytes.
        assert_eq!(h.limits().window, Some(1250));
        assert_eq!(h.limits().rate, Some(Rate::from_gbps(1)));
        // Idle path with max_stage 0: W jumps back to W_init, never above.
        let mut h = hpcc(HpccParams::simulation());
        h.on_feedback(us(0), &ack(&[hop(0, 0, us(0))], 1000, 0));
        for k in 1..20 {
            h.on_feedback(us(10 * k), &ack(&[hop(0, 0, us(10 * k))], 1000, 0));
        }
        assert_eq!(h.limits().window, Some(125_000));
        assert_eq!(h.limits().rate, Some(Rate::from_gbps(100)));
    }

    #[test]
    fn base_rtt_comes_from_params_then_path_then_fallback() {
        let h = hpcc(HpccParams {
            base_rtt: Duration::from_micros(20),
            ..HpccParams::default()
        });
        assert_eq!(h.limits().window, Some(250_000));
        let p = PathInfo {
            base_rtt: None,
            ..path()
        };
        let h = Hpcc::new(Instant::ZERO, &p, HpccParams::default());
        assert_eq!(h.base_rtt(), FALLBACK_BASE_RTT);
        assert_eq!(h.limits().window, Some(162_500));
    }

    #[test]
    fn hot_reload_keeps_state() {
        let mut h = hpcc(HpccParams::default());
        h.on_feedback(us(0), &ack(&[hop(0, 0, us(0))], 1000, 0));
        h.on_feedback(us(10), &ack(&[hop(62_500, 125_000, us(10))], 1000, 0));
        let (u, wc) = (h.utilisation(), h.reference_window());
        let mut p = *h.params();
        p.eta = 0.99;
        p.rate_ai = Rate::from_mbps(500);
        h.set_params(p);
        assert_eq!(h.params().eta, 0.99);
        assert_eq!((h.utilisation(), h.reference_window()), (u, wc));
        // The next round uses the new η and W_AI (500 Mb/s × 10 µs = 625 bytes).
        h.on_feedback(us(20), &ack(&[hop(62_500, 250_000, us(20))], 1000, 0));
        let u2 = h.utilisation();
        assert!(close(h.reference_window(), wc / (u2 / 0.99) + 625.0));
        // A smaller T shrinks the bounds; the window is clamped into them.
        p.base_rtt = Duration::from_micros(1);
        h.set_params(p);
        assert!(h.limits().window.unwrap() <= 12_500);
    }

    #[test]
    fn params_by_name() {
        crate::params::assert_defaults_round_trip::<HpccParams>();
        let mut p = HpccParams::default();
        p.set("eta", 0.99).unwrap();
        p.set("base_rtt", 12.5).unwrap();
        p.set("rate_ai", 0.05).unwrap();
        p.set("max_stage", 0.0).unwrap();
        p.set("fast_react", 0.0).unwrap();
        assert_eq!(p.base_rtt, Duration::from_nanos(12_500));
        assert_eq!(p.rate_ai, Rate::from_mbps(50));
        assert_eq!(p.get("eta"), Some(0.99));
        assert!(!p.fast_react);
        assert!(p.set("eta", 1.5).is_err());
        assert!(p.set("eta", f64::NAN).is_err());
        assert!(p.set("etta", 0.9).is_err());
        assert!(p.get("etta").is_none());
        assert_eq!(HpccParams::ALGORITHM, "hpcc");
    }

    fn any_hop() -> impl Strategy<Value = HopTelemetry> {
        (
            prop_oneof![Just(0u64), 0u64..10_000_000, any::<u64>()],
            prop_oneof![Just(0u64), 1u64..1_000_000_000_000, any::<u64>()],
            any::<u64>(),
            prop_oneof![0u64..100_000_000_000, any::<u64>()],
        )
            .prop_map(|(qlen, rate, tx_bytes, ts)| HopTelemetry {
                qlen,
                rate: Rate::from_bps(rate),
                tx_bytes,
                ts: Instant::from_ps(ts),
            })
    }

    fn any_params() -> impl Strategy<Value = HpccParams> {
        (
            prop_oneof![Just(0.95), any::<f64>()],
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<bool>(),
        )
            .prop_map(|(eta, max_stage, ai, rtt, min, fast_react)| HpccParams {
                eta,
                max_stage,
                rate_ai: Rate::from_bps(ai),
                base_rtt: Duration::from_ps(rtt),
                min_rate: Rate::from_bps(min),
                fast_react,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        /// Whatever the feedback, parameters and path: a window ≥ 1 and a rate in
        /// [1, line], both finite, and U finite and non-negative.
        #[test]
        fn limits_stay_positive(
            params in any_params(),
            line in prop_oneof![Just(0u64), 1u64..1_000_000_000_000, any::<u64>()],
            base in proptest::option::of(any::<u64>()),
            events in proptest::collection::vec(
                (any::<u64>(), any::<u64>(), any::<u16>(), proptest::collection::vec(any_hop(), 0..4), 0u8..4),
                1..100),
        ) {
            let path = PathInfo { mtu: 4096, line_rate: Rate::from_bps(line), base_rtt: base.map(Duration::from_ps), paths: 1 };
            let mut h = Hpcc::new(Instant::ZERO, &path, params);
            let mut now = Instant::ZERO;
            for (dt, acked, p, hops, kind) in events {
                now += Duration::from_ps(dt % 100_000_000);
                match kind {
                    0 => h.on_sent(now, &Sent::default()),
                    1 => h.on_timeout(now),
                    2 => h.set_params(HpccParams { eta: f64::from(p) / 1000.0, ..params }),
                    _ => h.on_feedback(now, &Feedback { acked_bytes: acked, hops: &hops, in_flight: acked / 3, path: p % 2, ..Feedback::default() }),
                }
                let l = h.limits();
                let w = l.window.unwrap();
                let r = l.rate.unwrap().bps();
                prop_assert!(w >= 1);
                prop_assert!(r >= 1 && r <= line.max(1));
                prop_assert!(h.window().is_finite() && h.reference_window().is_finite());
                prop_assert!(h.utilisation().is_finite() && h.utilisation() >= 0.0);
            }
        }
    }
}
