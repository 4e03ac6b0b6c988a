//! TIMELY (Mittal et al., "TIMELY: RTT-based Congestion Control for the Datacenter",
//! SIGCOMM 2015): a rate controller driven by the gradient of the round-trip time.
//!
//! Contract: [`Timely`] is a pure rate controller. [`Limits::rate`] is always `Some(rate)` with
//! `min_rate <= rate <= line_rate` (see [`Timely::new`]); [`Limits::window`] is always `None`,
//! as in the paper, where TIMELY only drives the NIC's per-flow rate limiter. The controller has
//! no timer ([`CongestionControl::next_timeout`] is always `None`) and never reads a clock: every
//! decision is taken on a feedback event. All arithmetic on the per-event path is integer
//! (rates in bit/s, times in picoseconds, gains in parts per million), so the trajectory is exact
//! and platform independent; a hostile input (a zero, a `u64::MAX`) saturates instead of
//! overflowing.
//!
//! The law (paper §4, Algorithm 1), run once per *completion event*:
//!
//! * `new_rtt_diff = new_rtt − prev_rtt`, `prev_rtt ← new_rtt`;
//!   `rtt_diff ← (1 − α)·rtt_diff + α·new_rtt_diff`; `g = rtt_diff / min_rtt`.
//! * `new_rtt < T_low`: `R ← R + δ`.
//! * `new_rtt > T_high`: `R ← R·(1 − β·(1 − T_high/new_rtt))`.
//! * otherwise, `g ≤ 0`: `R ← R + N·δ`, with `N = hai_factor` (5) once the previous
//!   `hai_threshold` (5) updates were all increases (hyper-active increase, HAI), else `N = 1`.
//! * otherwise (`g > 0`): `R ← R·(1 − β·g)`.
//!
//! Then `R` is clamped into `[min_rate, line_rate]`.
//!
//! Choices that differ from a literal transcription, and why:
//!
//! * **Completion events from ACKed bytes.** The paper computes a rate per completed segment
//!   (16 KB in its evaluation, §6); Weir's transport acknowledges packets. Acknowledged bytes
//!   are counted and one update runs on the feedback that completes [`TimelyParams::segment`]
//!   bytes, with that feedback's RTT sample (or, if it has none, the newest sample since the
//!   previous update; with no sample at all the update waits for one). One feedback runs at
//!   most one update, whatever it acknowledges, and the remainder below one segment is kept.
//!   `segment = 0` updates on every RTT sample. This keeps the paper's property that a flow
//!   updates in proportion to the bytes it moves.
//! * **At most one update per `min_rtt`.** A completion that comes sooner than `min_rtt` after
//!   the previous update is deferred (its bytes stay counted) until one that is not, as in
//!   Zhu et al.'s model of TIMELY (update interval `τ* = max(Seg/R, D_minRTT)`, CoNEXT 2016
//!   §4). Without it, a 100 Gb/s flow completes a 16 KB segment every 1.3 µs, many times per
//!   RTT, and the stale gradient is applied again on each one.
//! * **The HAI counter counts increases.** The paper switches to `N = 5` "if the gradient was
//!   negative for five completion events"; like the HPCC authors' ns-3 model we count
//!   consecutive updates that raised the rate (a `T_low` increase counts, any decrease resets
//!   the count). HAI applies only in the gradient band, as in Algorithm 1; below `T_low` the
//!   step is always `δ`.
//! * **No reaction to loss, ECN or timeouts.** TIMELY's law has no such input (the paper runs
//!   over a lossless fabric); losses are the transport's business. A retransmission timeout or
//!   NACK therefore leaves the rate as it is.
//! * **The first RTT sample has a zero difference** (`prev_rtt` starts at the first sample),
//!   as in eRPC's implementation.
//! * **Integer arithmetic.** α and β are kept in parts per million (`round(x·10⁶)`, so any
//!   value written with up to six decimals is exact); RTT samples are capped at 2⁴⁰ ps (1.1 s);
//!   `rtt_diff` is an `i64` in picoseconds, updated as
//!   `⌊((10⁶ − α)·rtt_diff + α·new_rtt_diff) / 10⁶⌋` (rounded towards −∞); a decrease removes
//!   `⌊R·β·num / (den·10⁶)⌋`, where `num/den` is the normalised gradient `rtt_diff/min_rtt` or
//!   the `T_high` excess `(rtt − T_high)/rtt`, exactly. Products are taken in 128 bits, where
//!   the caps above make them fit.
//!
//! Known limitations of the law with these defaults (measured in `tests/scenarios_timely.rs`;
//! not bugs of this implementation):
//!
//! * **Fairness comes late.** Below `segment/min_rtt` (16 KB/20 µs = 6.55 Gb/s) a flow updates
//!   once per segment, at a frequency proportional to its rate, so its increases and decreases
//!   both scale with its rate and rate ratios between flows persist (Zhu et al., "ECN or Delay:
//!   Lessons Learnt from Analysis of DCQCN and TIMELY", CoNEXT 2016, show TIMELY has no unique
//!   fixed point). Only above that rate do all flows update once per `min_rtt` and converge
//!   like AIMD. Eight flows joining 1 ms apart on 100 Gb/s reach a Jain index of 0.95 only
//!   after about 140 ms.
//! * **It over-reacts to a sudden queue.** The gradient stays positive for a whole (inflated)
//!   RTT, every update in it cuts again, and rates collapse to `min_rate`.
//! * **δ = 10 Mb/s was sized for 10 Gb/s NICs.** Below `T_low` the step is δ per update (HAI
//!   applies only in the gradient band), at most 0.5 Gb/s per ms at one update per 20 µs.
//! * **Buffers below `T_low`·C (625 KB at 100 Gb/s) hide congestion**: the RTT never leaves the
//!   `T_low` region, the rate only rises, and overflow losses are all TIMELY sees (it ignores
//!   them). The paper assumes a lossless (PFC) fabric.

use weir_base::{Duration, Instant, Rate};

use crate::params::convert::{from_gbps, from_micros, gbps, micros};
use crate::params::{self, ParamError, ParamSpec, Params, Unit};
use crate::{CongestionControl, Feedback, Limits, PathInfo, Sent};

/// TIMELY parameters. Defaults are the paper's (§6: segment 16 KB, `T_low` 50 µs, `T_high`
/// 500 µs, δ 10 Mb/s, β 0.8) where it gives them, and the HPCC authors' ns-3 reproduction's
/// (α 0.875, minRTT 20 µs, HAI after 5 increases with 5·δ) where it does not.
///
/// Out-of-range values set directly on the struct are clamped when a controller is built or
/// reloaded (gains into [0, 1], `min_rtt` to at least 1 ps, `min_rate` into
/// [1 bit/s, line rate]); [`Params::set`] refuses them instead.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct TimelyParams {
    /// Below this RTT the rate rises by δ whatever the gradient. Default 50 µs (paper §6).
    pub t_low: Duration,
    /// Above this RTT the rate is cut in proportion to the excess. Default 500 µs (paper §6).
    pub t_high: Duration,
    /// The paper's minRTT, which normalises the gradient. Default 20 µs (HPCC ns-3).
    pub min_rtt: Duration,
    /// EWMA weight of the newest RTT difference, in [0, 1]. Default 0.875 (HPCC ns-3).
    pub alpha: f64,
    /// Multiplicative decrease factor β, in [0, 1]. Default 0.8 (paper §6).
    pub beta: f64,
    /// Additive increment δ. Default 10 Mb/s (paper §6, for 10 Gb/s NICs).
    pub delta: Rate,
    /// Consecutive increases after which the gradient-band step becomes `hai_factor`·δ.
    /// Default 5 (paper §4.3).
    pub hai_threshold: u32,
    /// The HAI multiplier N. Default 5 (paper §4.3). 1 disables HAI.
    pub hai_factor: u32,
    /// Bytes acknowledged per completion event (one rate update). Default 16 KB (paper §6).
    /// Zero: one update per RTT sample.
    pub segment: u64,
    /// Lowest rate. Default 1 Gb/s, the `MIN_RATE` of HPCC's ns-3 model (`run.py`), which
    /// several other defaults here come from; the paper gives none. A floor of one δ
    /// (10 Mb/s) left a flow that collapsed on a sudden queue (see the module doc) needing
    /// seconds to move a few MiB on the UDP datapath.
    pub min_rate: Rate,
}

/// Counters for tests, logs and plots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimelyStats {
    /// Rate updates run (completion events with an RTT sample).
    pub updates: u64,
    /// Updates that raised (or tried to raise) the rate.
    pub increases: u64,
    /// Of those, hyper-active increases (N > 1).
    pub hai: u64,
    /// Updates that cut the rate.
    pub decreases: u64,
}

/// TIMELY rate controller for one connection. See the module documentation for the law.
///
/// Call order: the transport feeds [`CongestionControl::on_feedback`] for every ACK (with its
/// RTT sample when it has one) and reads [`CongestionControl::limits`] whenever it paces.
/// [`CongestionControl::on_sent`] and [`CongestionControl::on_timeout`] do nothing.
#[derive(Clone, Debug)]
pub struct Timely {
    params: TimelyParams,
    k: Consts,
    /// Current rate R, bit/s, in [k.min, k.line].
    rate: u64,
    /// Previous RTT sample (ps); `None` before the first update.
    prev_rtt: Option<u64>,
    /// EWMA of RTT differences (ps).
    rtt_diff: i64,
    /// Consecutive increases so far.
    streak: u32,
    /// Bytes acknowledged since the last completion event.
    acked: u64,
    /// Newest RTT sample not yet used by an update (ps).
    pending_rtt: Option<u64>,
    /// When the last update ran.
    last_update: Option<Instant>,
    /// Latest time seen.
    now: Instant,
    stats: TimelyStats,
}

/// The parameters in the integer form the per-event path uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Consts {
    line: u64,
    min: u64,
    t_low: u64,
    t_high: u64,
    min_rtt: u64,
    /// α in parts per million.
    alpha: i128,
    /// β in parts per million.
    beta: u128,
    delta: u64,
}

impl TimelyParams {
    /// The paper's defaults (the [`Default`]).
    pub const fn paper() -> Self {
        TimelyParams {
            t_low: Duration::from_micros(50),
            t_high: Duration::from_micros(500),
            min_rtt: Duration::from_micros(20),
            alpha: 0.875,
            beta: 0.8,
            delta: Rate::from_mbps(10),
            hai_threshold: 5,
            hai_factor: 5,
            segment: 16 * 1024,
            min_rate: Rate::from_gbps(1),
        }
    }
}

impl Default for TimelyParams {
    fn default() -> Self {
        Self::paper()
    }
}

impl Timely {
    /// A controller starting at line rate. A zero `path.line_rate` is taken as 1 bit/s, and the
    /// minimum rate is clamped into [1 bit/s, line rate], so the output is always positive.
    pub fn new(now: Instant, path: &PathInfo, params: TimelyParams) -> Self {
        let line = path.line_rate.bps().max(1);
        let k = Consts::new(&params, line);
        Timely {
            params,
            k,
            rate: line,
            prev_rtt: None,
            rtt_diff: 0,
            streak: 0,
            acked: 0,
            pending_rtt: None,
            last_update: None,
            now,
            stats: TimelyStats::default(),
        }
    }

    /// The parameters this controller runs with.
    pub fn params(&self) -> &TimelyParams {
        &self.params
    }

    /// Hot reload: replaces the parameters, keeping the rate, the RTT history and the HAI
    /// count. The new values apply from the next event; the current rate is only moved into
    /// the new `[min_rate, line_rate]` if it falls outside.
    pub fn set_params(&mut self, p: TimelyParams) {
        self.params = p;
        self.k = Consts::new(&p, self.k.line);
        self.rate = self.rate.clamp(self.k.min, self.k.line);
    }

    /// Current rate R.
    pub fn rate(&self) -> Rate {
        Rate::from_bps(self.rate)
    }

    /// The smoothed RTT difference (the numerator of the normalised gradient).
    pub fn rtt_diff(&self) -> i64 {
        self.rtt_diff
    }

    /// Counters since creation.
    pub fn stats(&self) -> TimelyStats {
        self.stats
    }

    /// One completion event with RTT sample `rtt` (ps).
    fn update(&mut self, rtt: u64) {
        let k = self.k;
        // Keep differences well inside i64.
        let rtt = rtt.min(MAX_RTT_PS);
        //= https://doi.org/10.1145/2785956.2787510#section-4.3
        //# new_rtt_diff = new_rtt − prev_rtt; prev_rtt = new_rtt;
        //# rtt_diff = (1 − α)·rtt_diff + α·new_rtt_diff
        let prev = self.prev_rtt.unwrap_or(rtt);
        self.prev_rtt = Some(rtt);
        let new_diff = i128::from(rtt as i64 - prev as i64);
        let mixed = (PPM - k.alpha) * i128::from(self.rtt_diff) + k.alpha * new_diff;
        self.rtt_diff = clamp_i64(mixed.div_euclid(PPM));
        self.stats.updates += 1;

        if rtt < k.t_low {
            //# if new_rtt < T_low: rate ← rate + δ
            self.raise(k.delta);
        } else if rtt > k.t_high {
            //# if new_rtt > T_high: rate ← rate·(1 − β·(1 − T_high/new_rtt))
            self.cut(u128::from(rtt - k.t_high), u128::from(rtt));
        } else if self.rtt_diff <= 0 {
            //# if normalized_gradient ≤ 0: rate ← rate + N·δ,
            //# N = 5 if the gradient was negative for five completion events (HAI), else 1
            let hai = self.params.hai_factor > 1 && self.streak >= self.params.hai_threshold;
            let n = if hai {
                self.stats.hai += 1;
                u64::from(self.params.hai_factor)
            } else {
                1
            };
            self.raise(k.delta.saturating_mul(n));
        } else {
            //# else: rate ← rate·(1 − β·normalized_gradient), normalized_gradient = rtt_diff/minRTT
            self.cut(self.rtt_diff.unsigned_abs().into(), u128::from(k.min_rtt));
        }
    }

    fn raise(&mut self, step: u64) {
        self.rate = self
            .rate
            .saturating_add(step)
            .clamp(self.k.min, self.k.line);
        self.streak = self.streak.saturating_add(1);
        self.stats.increases += 1;
    }

    /// `R ← R − ⌊R·β·num / (den·10⁶)⌋`, at least `min_rate`.
    fn cut(&mut self, num: u128, den: u128) {
        let den = den.max(1);
        // R < 2^64, β ≤ 10^6 < 2^20, num ≤ 2^40: the product fits in 128 bits.
        let drop = u128::from(self.rate) * self.k.beta * num / (den * PPM as u128);
        let kept = u128::from(self.rate).saturating_sub(drop);
        self.rate = (kept as u64).clamp(self.k.min, self.k.line);
        self.streak = 0;
        self.stats.decreases += 1;
    }
}

impl Consts {
    fn new(p: &TimelyParams, line: u64) -> Self {
        Consts {
            line,
            min: p.min_rate.bps().clamp(1, line),
            t_low: p.t_low.as_ps(),
            t_high: p.t_high.as_ps(),
            min_rtt: p.min_rtt.as_ps().clamp(1, MAX_RTT_PS),
            alpha: ppm(p.alpha) as i128,
            beta: ppm(p.beta) as u128,
            delta: p.delta.bps(),
        }
    }
}

impl CongestionControl for Timely {
    fn on_sent(&mut self, _now: Instant, _sent: &Sent) {}

    fn on_feedback(&mut self, now: Instant, fb: &Feedback<'_>) {
        self.now = self.now.max(now);
        // TIMELY §3.1 takes RTTs from NIC timestamps, which leave out host processing: use
        // the fabric part, i.e. the RTT minus the receiver's reported holding time.
        if let Some(rtt) = fb.rtt {
            let host = fb.host_delay.unwrap_or(Duration::ZERO);
            self.pending_rtt = Some(rtt.saturating_sub(host).as_ps().max(1));
        }
        self.acked = self.acked.saturating_add(fb.acked_bytes);
        let seg = self.params.segment;
        let now = self.now;
        let complete = if seg == 0 {
            fb.rtt.is_some()
        } else {
            self.acked >= seg
        };
        //= https://doi.org/10.1145/2999572.2999593#section-4
        //# TIMELY updates its rate once every τ* = max(Seg/R, D_minRTT): on a completion
        //# event, but at most once per minimum RTT.
        let due = self
            .last_update
            .is_none_or(|t| (now - t).as_ps() >= self.k.min_rtt);
        if !complete || !due {
            return;
        }
        let Some(rtt) = self.pending_rtt.take() else {
            // A completion without any RTT sample yet: wait for one.
            return;
        };
        if seg > 0 {
            self.acked %= seg;
        }
        self.last_update = Some(now);
        self.update(rtt);
    }

    fn on_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    fn next_timeout(&self) -> Option<Instant> {
        None
    }

    fn limits(&self) -> Limits {
        Limits {
            window: None,
            rate: Some(Rate::from_bps(self.rate)),
            path_hint: None,
        }
    }

    fn name(&self) -> &'static str {
        "timely"
    }
}

impl Params for TimelyParams {
    const ALGORITHM: &'static str = "timely";

    fn specs() -> &'static [ParamSpec] {
        SPECS
    }

    fn get(&self, name: &str) -> Option<f64> {
        Some(match name {
            "t_low" => micros(self.t_low),
            "t_high" => micros(self.t_high),
            "min_rtt" => micros(self.min_rtt),
            "alpha" => self.alpha,
            "beta" => self.beta,
            "delta" => gbps(self.delta),
            "hai_threshold" => f64::from(self.hai_threshold),
            "hai_factor" => f64::from(self.hai_factor),
            "segment" => self.segment as f64,
            "min_rate" => gbps(self.min_rate),
            _ => return None,
        })
    }

    fn set(&mut self, name: &str, value: f64) -> Result<(), ParamError> {
        let spec = params::check(Self::ALGORITHM, SPECS, name, value)?;
        match spec.name {
            "t_low" => self.t_low = from_micros(value),
            "t_high" => self.t_high = from_micros(value),
            "min_rtt" => self.min_rtt = from_micros(value),
            "alpha" => self.alpha = value,
            "beta" => self.beta = value,
            "delta" => self.delta = from_gbps(value),
            "hai_threshold" => self.hai_threshold = round(value) as u32,
            "hai_factor" => self.hai_factor = round(value) as u32,
            "segment" => self.segment = round(value),
            "min_rate" => self.min_rate = from_gbps(value),
            _ => unreachable!("every spec has a setter"),
        }
        Ok(())
    }
}

pub(crate) const SPECS: &[ParamSpec] = &[
    ParamSpec {
        name: "t_low",
        unit: Unit::Micros,
        min: 0.0,
        max: 1e6,
        doc: "below this RTT: additive increase by delta (default 50, paper §6)",
    },
    ParamSpec {
        name: "t_high",
        unit: Unit::Micros,
        min: 0.0,
        max: 1e6,
        doc: "above this RTT: cut by beta*(1 - t_high/rtt) (default 500, paper §6)",
    },
    ParamSpec {
        name: "min_rtt",
        unit: Unit::Micros,
        min: 1e-6,
        max: 1e6,
        doc: "minRTT that normalises the RTT gradient (default 20, HPCC ns-3 model)",
    },
    ParamSpec {
        name: "alpha",
        unit: Unit::Scalar,
        min: 0.0,
        max: 1.0,
        doc: "EWMA weight of the newest RTT difference (default 0.875, HPCC ns-3 model)",
    },
    ParamSpec {
        name: "beta",
        unit: Unit::Scalar,
        min: 0.0,
        max: 1.0,
        doc: "multiplicative decrease factor (default 0.8, paper §6)",
    },
    ParamSpec {
        name: "delta",
        unit: Unit::Gbps,
        min: 0.0,
        max: 1000.0,
        doc: "additive increment (default 0.01 = 10 Mb/s, paper §6)",
    },
    ParamSpec {
        name: "hai_threshold",
        unit: Unit::Scalar,
        min: 0.0,
        max: 1e6,
        doc: "consecutive increases before hyper-active increase (default 5, paper §4.3)",
    },
    ParamSpec {
        name: "hai_factor",
        unit: Unit::Scalar,
        min: 1.0,
        max: 1000.0,
        doc: "HAI multiplier N of delta; 1 disables HAI (default 5, paper §4.3)",
    },
    ParamSpec {
        name: "segment",
        unit: Unit::Bytes,
        min: 0.0,
        max: 1_073_741_824.0,
        doc: "bytes acknowledged per rate update; 0 = every RTT sample (default 16384, paper §6)",
    },
    ParamSpec {
        name: "min_rate",
        unit: Unit::Gbps,
        min: 1e-6,
        max: 1000.0,
        doc: "lowest rate (default 1 = HPCC ns-3 run.py MIN_RATE; the paper gives none)",
    },
];

/// One million: the scale of α and β.
const PPM: i128 = 1_000_000;

/// RTT samples (and `min_rtt`) are capped at 2^40 ps, about 1.1 s.
const MAX_RTT_PS: u64 = 1 << 40;

/// `x` in [0, 1] in parts per million, rounded half up; NaN is 0.
fn ppm(x: f64) -> u64 {
    let x = if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) };
    round(x * 1e6)
}

fn clamp_i64(v: i128) -> i64 {
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
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
    use crate::LossKind;

    const GBPS: u64 = 1_000_000_000;
    const MBPS: u64 = 1_000_000;

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

    /// The `n`-th event time: 100 µs apart, more than `min_rtt`, so every completion updates.
    fn at(n: u64) -> Instant {
        Instant::ZERO + us(100 * n)
    }

    /// An ACK of one segment with an RTT sample.
    fn ack(rtt: Duration) -> Feedback<'static> {
        Feedback {
            acked_bytes: 16 * 1024,
            acked_packets: 4,
            rtt: Some(rtt),
            ..Feedback::default()
        }
    }

    fn timely(p: TimelyParams) -> Timely {
        Timely::new(Instant::ZERO, &path(), p)
    }

    /// A controller already at rate `r`, so increases are visible.
    fn at_rate(p: TimelyParams, r: u64) -> Timely {
        let mut t = timely(p);
        t.rate = r;
        t
    }

    #[test]
    fn defaults_are_the_papers() {
        let p = TimelyParams::default();
        assert_eq!(p, TimelyParams::paper());
        assert_eq!(p.t_low, us(50));
        assert_eq!(p.t_high, us(500));
        assert_eq!(p.beta, 0.8);
        assert_eq!(p.delta, Rate::from_mbps(10));
        assert_eq!(p.segment, 16384);
        assert_eq!((p.hai_threshold, p.hai_factor), (5, 5));
        let t = timely(p);
        assert_eq!(t.rate(), Rate::from_gbps(100));
        assert_eq!(
            t.limits(),
            Limits {
                window: None,
                rate: Some(Rate::from_gbps(100)),
                path_hint: None
            }
        );
        assert_eq!(t.next_timeout(), None);
        assert_eq!(t.name(), "timely");
    }

    #[test]
    fn below_t_low_adds_delta() {
        let mut t = at_rate(TimelyParams::default(), 50 * GBPS);
        t.on_feedback(at(1), &ack(us(20)));
        assert_eq!(t.rate().bps(), 50 * GBPS + 10 * MBPS);
        // Even with a steeply rising RTT, below T_low it is +δ.
        t.on_feedback(at(2), &ack(us(49)));
        assert_eq!(t.rate().bps(), 50 * GBPS + 20 * MBPS);
        assert!(t.rtt_diff() > 0);
        assert_eq!(t.stats().increases, 2);
        // Never above line rate.
        let mut t = timely(TimelyParams::default());
        t.on_feedback(at(1), &ack(us(20)));
        assert_eq!(t.rate().bps(), 100 * GBPS);
    }

    #[test]
    fn above_t_high_cuts_by_the_excess() {
        let mut t = timely(TimelyParams::default());
        // RTT 1000 µs: R·(1 − 0.8·(1 − 500/1000)) = 0.6·R.
        t.on_feedback(at(1), &ack(us(1000)));
        assert_eq!(t.rate().bps(), 60 * GBPS);
        // RTT 2500 µs: factor 1 − 0.8·0.8 = 0.36.
        t.on_feedback(at(2), &ack(us(2500)));
        assert_eq!(t.rate().bps(), 21_600 * MBPS);
        assert_eq!(t.stats().decreases, 2);
    }

    #[test]
    fn a_rising_rtt_in_the_band_cuts_by_the_gradient() {
        let p = TimelyParams {
            alpha: 1.0, // rtt_diff = the newest difference, so g is exact
            ..TimelyParams::default()
        };
        let mut t = timely(p);
        t.on_feedback(at(1), &ack(us(100))); // first sample: diff 0, g = 0 → increase (capped)
        assert_eq!(t.rate().bps(), 100 * GBPS);
        // +5 µs over minRTT 20 µs: g = 0.25, factor 1 − 0.8·0.25 = 0.8.
        t.on_feedback(at(2), &ack(us(105)));
        assert_eq!(t.rtt_diff(), 5_000_000);
        assert_eq!(t.rate().bps(), 80 * GBPS);
        // A gradient above 1/β would go negative: the floor holds.
        t.on_feedback(at(3), &ack(us(200)));
        assert_eq!(t.rate(), TimelyParams::default().min_rate);
    }

    #[test]
    fn the_ewma_smooths_the_gradient() {
        let mut t = timely(TimelyParams::default());
        t.on_feedback(at(1), &ack(us(100)));
        t.on_feedback(at(2), &ack(us(108)));
        // 0.875 · 8 µs = 7 µs.
        assert_eq!(t.rtt_diff(), 7_000_000);
        t.on_feedback(at(3), &ack(us(108)));
        // 0.125 · 7 µs = 0.875 µs.
        assert_eq!(t.rtt_diff(), 875_000);
        t.on_feedback(at(4), &ack(us(100)));
        // 0.125 · 0.875 − 0.875 · 8 = −6.890625 µs.
        assert_eq!(t.rtt_diff(), -6_890_625);
    }

    #[test]
    fn a_falling_rtt_in_the_band_increases_and_hai_follows_five_increases() {
        let mut t = at_rate(TimelyParams::default(), 10 * GBPS);
        let mut expected = 10 * GBPS;
        // Constant RTT in the band: g = 0 → increase. Steps: δ × 5, then 5δ.
        for k in 0..8u64 {
            t.on_feedback(at(k), &ack(us(100)));
            expected += if k < 5 { 10 * MBPS } else { 50 * MBPS };
            assert_eq!(t.rate().bps(), expected, "update {k}");
        }
        assert_eq!(t.stats().hai, 3);
        // A decrease resets the streak.
        t.on_feedback(at(9), &ack(us(600)));
        assert!(t.rate().bps() < expected);
        let r = t.rate().bps();
        t.on_feedback(at(10), &ack(us(100)));
        assert_eq!(t.rate().bps(), r + 10 * MBPS);
        // T_low increases count towards the streak, but never use HAI themselves. (α = 0 keeps
        // the gradient at zero, so the jump back into the band is not a rising RTT.)
        let mut t = at_rate(
            TimelyParams {
                alpha: 0.0,
                ..TimelyParams::default()
            },
            10 * GBPS,
        );
        for k in 0..6 {
            t.on_feedback(at(k), &ack(us(10)));
        }
        assert_eq!(t.rate().bps(), 10 * GBPS + 60 * MBPS);
        t.on_feedback(at(7), &ack(us(100)));
        assert_eq!(t.rate().bps(), 10 * GBPS + 110 * MBPS);
        // hai_factor 1 disables it.
        let mut t = at_rate(
            TimelyParams {
                hai_factor: 1,
                ..TimelyParams::default()
            },
            10 * GBPS,
        );
        for k in 0..10 {
            t.on_feedback(at(k), &ack(us(100)));
        }
        assert_eq!(t.rate().bps(), 10 * GBPS + 100 * MBPS);
        assert_eq!(t.stats().hai, 0);
    }

    #[test]
    fn one_update_per_segment_of_acked_bytes() {
        let mut t = at_rate(TimelyParams::default(), 10 * GBPS);
        let small = Feedback {
            acked_bytes: 4096,
            rtt: Some(us(10)),
            ..Feedback::default()
        };
        for k in 0..3 {
            t.on_feedback(at(k), &small);
            assert_eq!(t.stats().updates, 0);
        }
        t.on_feedback(at(3), &small);
        assert_eq!(t.stats().updates, 1);
        // A huge ACK is one completion event; the remainder carries over.
        t.on_feedback(
            at(4),
            &Feedback {
                acked_bytes: 10 * 16384 + 8192,
                rtt: Some(us(10)),
                ..Feedback::default()
            },
        );
        assert_eq!(t.stats().updates, 2);
        t.on_feedback(at(5), &small);
        assert_eq!(t.stats().updates, 2);
        t.on_feedback(at(6), &small);
        assert_eq!(t.stats().updates, 3);
        // A completion without a sample waits for the next sample.
        let mut t = at_rate(TimelyParams::default(), 10 * GBPS);
        t.on_feedback(
            at(1),
            &Feedback {
                acked_bytes: 16384,
                ..Feedback::default()
            },
        );
        assert_eq!(t.stats().updates, 0);
        t.on_feedback(
            at(2),
            &Feedback {
                acked_bytes: 16384,
                rtt: Some(us(10)),
                ..Feedback::default()
            },
        );
        assert_eq!(t.stats().updates, 1);
        // segment 0: every sample.
        let mut t = timely(TimelyParams {
            segment: 0,
            ..TimelyParams::default()
        });
        for k in 0..5 {
            t.on_feedback(
                at(k),
                &Feedback {
                    rtt: Some(us(10)),
                    ..Feedback::default()
                },
            );
        }
        assert_eq!(t.stats().updates, 5);
    }

    #[test]
    fn at_most_one_update_per_min_rtt() {
        let mut t = at_rate(TimelyParams::default(), 10 * GBPS);
        let t0 = Instant::ZERO + us(1000);
        t.on_feedback(t0, &ack(us(10)));
        assert_eq!(t.stats().updates, 1);
        // Three more segments within 20 µs: deferred, bytes kept.
        for k in 1..4 {
            t.on_feedback(t0 + us(5 * k), &ack(us(10)));
        }
        assert_eq!(t.stats().updates, 1);
        assert_eq!(t.rate().bps(), 10 * GBPS + 10 * MBPS);
        // 20 µs after the update: one update with the newest sample.
        t.on_feedback(t0 + us(20), &ack(us(10)));
        assert_eq!(t.stats().updates, 2);
        // That update consumed the deferred segments too (one update per τ*): a bare sample
        // later is no completion, the next segment is.
        t.on_feedback(
            t0 + us(40),
            &Feedback {
                rtt: Some(us(10)),
                ..Feedback::default()
            },
        );
        assert_eq!(t.stats().updates, 2);
        t.on_feedback(t0 + us(41), &ack(us(10)));
        assert_eq!(t.stats().updates, 3);
    }

    #[test]
    fn loss_ecn_and_timeouts_do_not_move_the_rate() {
        let mut t = at_rate(TimelyParams::default(), 10 * GBPS);
        for fb in [
            Feedback {
                loss: Some(LossKind::Detected),
                lost_bytes: 4096,
                ..Feedback::default()
            },
            Feedback {
                rto: true,
                ..Feedback::default()
            },
            Feedback {
                ecn_bytes: 4096,
                cnp: true,
                ..Feedback::default()
            },
        ] {
            t.on_feedback(at(1), &fb);
        }
        t.on_timeout(at(1000));
        assert_eq!(t.rate().bps(), 10 * GBPS);
    }

    #[test]
    fn degenerate_paths_and_params_still_give_a_positive_rate() {
        let zero = PathInfo {
            line_rate: Rate::ZERO,
            ..path()
        };
        let mut t = Timely::new(Instant::ZERO, &zero, TimelyParams::default());
        t.on_feedback(at(1), &ack(us(10_000)));
        assert_eq!(t.limits().rate, Some(Rate::from_bps(1)));
        let odd = TimelyParams {
            alpha: f64::NAN,
            beta: 7.0,
            min_rtt: Duration::ZERO,
            min_rate: Rate::MAX,
            delta: Rate::MAX,
            ..TimelyParams::default()
        };
        let mut t = timely(odd);
        t.on_feedback(at(1), &ack(Duration::MAX));
        t.on_feedback(at(2), &ack(us(100)));
        assert_eq!(
            t.rate(),
            Rate::from_gbps(100),
            "min rate clamped to line rate"
        );
    }

    #[test]
    fn hot_reload_keeps_state_and_applies_from_the_next_event() {
        let mut t = at_rate(TimelyParams::default(), 10 * GBPS);
        for k in 0..3 {
            t.on_feedback(at(k), &ack(us(100)));
        }
        let diff = t.rtt_diff();
        t.set_params(TimelyParams {
            delta: Rate::from_mbps(100),
            ..TimelyParams::default()
        });
        assert_eq!(t.rate().bps(), 10 * GBPS + 30 * MBPS);
        assert_eq!(t.rtt_diff(), diff);
        assert_eq!(t.params().delta, Rate::from_mbps(100));
        t.on_feedback(at(4), &ack(us(100)));
        assert_eq!(t.rate().bps(), 10 * GBPS + 130 * MBPS);
        // A new floor above the current rate lifts it.
        t.set_params(TimelyParams {
            min_rate: Rate::from_gbps(20),
            ..TimelyParams::default()
        });
        assert_eq!(t.rate(), Rate::from_gbps(20));
    }

    #[test]
    fn params_by_name() {
        crate::params::assert_defaults_round_trip::<TimelyParams>();
        let mut p = TimelyParams::default();
        p.set("t_low", 25.5).unwrap();
        assert_eq!(p.t_low, Duration::from_nanos(25_500));
        p.set("delta", 0.1).unwrap();
        assert_eq!(p.delta, Rate::from_mbps(100));
        assert_eq!(p.get("delta"), Some(0.1));
        let e = p.set("t_lo", 1.0).unwrap_err();
        assert_eq!(alloc::format!("{e}"), "unknown parameter `t_lo` for timely");
        let e = p.set("beta", 1.5).unwrap_err();
        assert_eq!(alloc::format!("{e}"), "`beta` = 1.5 is out of range [0, 1]");
        assert!(p.set("alpha", f64::NAN).is_err());
        assert!(p.set("hai_factor", 0.0).is_err());
        assert_eq!(p.get("nope"), None);
        assert_eq!(TimelyParams::ALGORITHM, "timely");
    }

    fn any_fb() -> impl Strategy<Value = (u64, u64, Option<u64>, bool)> {
        (
            prop_oneof![0u64..10_000_000, Just(0), any::<u64>()],
            prop_oneof![0u64..100_000, Just(u64::MAX), any::<u64>()],
            proptest::option::of(prop_oneof![
                0u64..2_000_000_000,
                Just(0),
                Just(u64::MAX),
                any::<u64>()
            ]),
            any::<bool>(),
        )
    }

    proptest! {
        #[test]
        fn the_rate_stays_in_bounds(
            seq in proptest::collection::vec(any_fb(), 1..200),
            alpha in 0.0f64..=1.0,
            beta in 0.0f64..=1.0,
            segment in prop_oneof![Just(0u64), 1u64..100_000],
        ) {
            let p = TimelyParams { alpha, beta, segment, ..TimelyParams::default() };
            let mut t = timely(p);
            let mut now = Instant::ZERO;
            for (wait, acked, rtt, rto) in seq {
                now += Duration::from_ps(wait);
                let fb = Feedback {
                    acked_bytes: acked,
                    rtt: rtt.map(Duration::from_ps),
                    rto,
                    ..Feedback::default()
                };
                t.on_feedback(now, &fb);
                let r = t.limits().rate.expect("always a rate").bps();
                prop_assert!((10 * MBPS..=100 * GBPS).contains(&r), "rate {}", r);
                prop_assert_eq!(t.limits().window, None);
            }
        }
    }
}
