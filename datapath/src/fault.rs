//! A seeded, deterministic packet impairment stage (drop, burst loss, duplicate, reorder,
//! delay, jitter, corrupt, ECN-mark).
//!
//! The kernel on our test machines has no netem (docs/benchmarking.md: nftables can drop at
//! random, nothing in the kernel can delay, reorder, duplicate or corrupt), so impairments
//! are injected in user space: the engine driver puts a [`FaultInjector`] on its receive and/or
//! transmit path, and in-memory test channels put one between two endpoints.
//!
//! Contract:
//!
//! * **Deterministic.** All randomness comes from one [`Rng`] seeded with
//!   [`FaultConfig::seed`]; the same configuration and the same sequence of
//!   [`push`](FaultInjector::push)/[`pop_ready`](FaultInjector::pop_ready) calls give the same
//!   output, packet for packet.
//! * **Ordered release.** Packets come out in release-time order; ties keep arrival order
//!   (FIFO). A packet whose release time is its push time is ready at once.
//! * **Cheap when idle.** With a no-op configuration ([`FaultConfig::is_noop`]) a push is a
//!   counter increment and a `VecDeque` push, and a pop is a `VecDeque` pop: no random draws and
//!   no heap operations.
//! * Time is [`weir_base::Instant`] and must not go backwards; an earlier `now` than the last
//!   push is treated as the last push time.
//!
//! Corruption needs byte access, so the injector requires `P: AsMut<[u8]>` (`Vec<u8>`,
//! `Box<[u8]>` and arrays have it; a driver buffer type implements it in three lines).
//! Duplication needs `P: Clone`. ECN marking does not touch the packet: it is reported as
//! [`Impaired::ecn_ce`] and the caller applies it to its metadata (a real switch only marks
//! ECN-capable packets, so the caller should ignore the mark for Not-ECT packets).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::str::FromStr;

use weir_base::{Duration, Instant, Rng};

/// What to do to packets. All probabilities are per packet, in `[0, 1]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaultConfig {
    /// Independent (Bernoulli) drop probability, applied in both burst states.
    pub drop: f64,
    /// Correlated loss: a Gilbert–Elliott two-state model, or `None`.
    pub burst: Option<BurstLoss>,
    /// Probability that a packet is delivered twice (the copy gets its own delay draw).
    pub duplicate: f64,
    /// Probability that a packet is held back by an extra [`reorder_delay`](Self::reorder_delay).
    pub reorder: f64,
    /// Extra delay of a reordered packet; must be non-zero when `reorder > 0`.
    pub reorder_delay: Duration,
    /// Constant one-way delay added to every packet.
    pub delay: Duration,
    /// Uniform extra delay in `[0, jitter]` drawn per packet (this alone can reorder too).
    pub jitter: Duration,
    /// Probability that one random byte of the packet is changed.
    pub corrupt: f64,
    /// Probability that a packet is reported Congestion Experienced.
    pub ecn_mark: f64,
    /// Seed of the injector's random number generator.
    pub seed: u64,
}

/// Gilbert–Elliott burst loss: a good and a bad state, switching once per packet before the
/// loss decision; packets in the bad state are lost with probability `loss_in_bad`.
///
/// The long-run fraction of packets in the bad state is `p_good_to_bad / (p_good_to_bad +
/// p_bad_to_good)`, and a bad period lasts `1 / p_bad_to_good` packets on average.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BurstLoss {
    /// Per-packet probability of moving from good to bad.
    pub p_good_to_bad: f64,
    /// Per-packet probability of moving from bad to good.
    pub p_bad_to_good: f64,
    /// Loss probability while in the bad state.
    pub loss_in_bad: f64,
}

/// A [`FaultConfig`] that does not validate or parse; names the offending field.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FaultConfigError {
    /// A probability is NaN or outside `[0, 1]`.
    #[error("fault config: `{field}` = {value} is not a probability in [0, 1]")]
    NotProbability {
        /// The field.
        field: &'static str,
        /// Its value.
        value: f64,
    },
    /// `reorder > 0` with a zero `reorder_delay` would never reorder anything.
    #[error("fault config: `reorder_delay` must be non-zero when `reorder` > 0")]
    ZeroReorderDelay,
    /// A key in a spec string that is not a field.
    #[error(
        "fault config: unknown key `{0}` (expected drop, burst, dup, reorder, reorder_delay, delay, jitter, corrupt, ecn, seed)"
    )]
    UnknownKey(String),
    /// A value that does not parse for its field.
    #[error("fault config: `{field}` has an invalid value `{value}`")]
    BadValue {
        /// The field.
        field: &'static str,
        /// The text that did not parse.
        value: String,
    },
}

/// Counters of an injector's decisions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Packets pushed.
    pub seen: u64,
    /// Packets dropped (i.i.d. and burst loss together).
    pub dropped: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Copies held back by `reorder_delay`.
    pub reordered: u64,
    /// Packets with one byte changed.
    pub corrupted: u64,
    /// Packets reported Congestion Experienced.
    pub ecn_marked: u64,
    /// Copies released later than their push time.
    pub delayed: u64,
}

/// A packet released by a [`FaultInjector`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Impaired<P> {
    /// The packet (possibly corrupted, possibly a duplicate).
    pub packet: P,
    /// Whether the injector marked it Congestion Experienced.
    pub ecn_ce: bool,
}

/// Applies a [`FaultConfig`] to a stream of packets; see the module documentation.
///
/// Call [`push`](Self::push) for each arriving packet, then [`pop_ready`](Self::pop_ready)
/// until it returns `None`; [`next_release`](Self::next_release) says when to come back.
#[derive(Debug)]
pub struct FaultInjector<P> {
    cfg: FaultConfig,
    noop: bool,
    rng: Rng,
    /// Gilbert–Elliott state.
    bad: bool,
    /// Arrival counter: the tie-break that keeps equal release times FIFO.
    seq: u64,
    /// Latest push time seen (time never goes backwards inside the injector).
    last: Instant,
    /// Packets whose release time is their push time, in (release, seq) order.
    ready: VecDeque<Entry<P>>,
    /// Delayed packets, a min-heap on (release, seq).
    held: BinaryHeap<Entry<P>>,
    stats: FaultStats,
}

impl FaultConfig {
    /// No impairment at all (seed 0).
    pub const fn none() -> Self {
        FaultConfig {
            drop: 0.0,
            burst: None,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::ZERO,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            corrupt: 0.0,
            ecn_mark: 0.0,
            seed: 0,
        }
    }

    /// Whether this configuration passes every packet through unchanged and undelayed.
    pub fn is_noop(&self) -> bool {
        // `p > 0.0` is false for NaN, matching `Rng::chance`, which never fires on NaN.
        let on = |p: f64| p > 0.0;
        let burst = self
            .burst
            .is_some_and(|b| on(b.p_good_to_bad) && on(b.loss_in_bad));
        let reorder = on(self.reorder) && self.reorder_delay > Duration::ZERO;
        let any = on(self.drop)
            || burst
            || on(self.duplicate)
            || reorder
            || on(self.corrupt)
            || on(self.ecn_mark)
            || self.delay > Duration::ZERO
            || self.jitter > Duration::ZERO;
        !any
    }

    /// Checks every probability is in `[0, 1]` and that a reorder probability comes with a
    /// Whether the only impairment is independent random loss (a caller can then drop
    /// inline, without copying packets through the injector).
    pub fn is_drop_only(&self) -> bool {
        self.burst.is_none()
            && self.duplicate == 0.0
            && self.reorder == 0.0
            && self.delay == Duration::ZERO
            && self.jitter == Duration::ZERO
            && self.corrupt == 0.0
            && self.ecn_mark == 0.0
    }

    /// non-zero reorder delay.
    pub fn validate(&self) -> Result<(), FaultConfigError> {
        let mut probs = vec![
            ("drop", self.drop),
            ("dup", self.duplicate),
            ("reorder", self.reorder),
            ("corrupt", self.corrupt),
            ("ecn", self.ecn_mark),
        ];
        if let Some(b) = self.burst {
            probs.push(("burst.p_good_to_bad", b.p_good_to_bad));
            probs.push(("burst.p_bad_to_good", b.p_bad_to_good));
            probs.push(("burst.loss_in_bad", b.loss_in_bad));
        }
        for (field, value) in probs {
            if !(0.0..=1.0).contains(&value) {
                return Err(FaultConfigError::NotProbability { field, value });
            }
        }
        if self.reorder > 0.0 && self.reorder_delay == Duration::ZERO {
            return Err(FaultConfigError::ZeroReorderDelay);
        }
        Ok(())
    }

    /// Parses a comma-separated `key=value` spec, for command lines and environment variables,
    /// and validates it.
    ///
    /// Keys: `drop`, `burst=P_GB/P_BG/LOSS_IN_BAD`, `dup` (or `duplicate`), `reorder`,
    /// `reorder_delay`, `delay`, `jitter`, `corrupt`, `ecn` (or `ecn_mark`), `seed`. Durations
    /// take a unit: `ps`, `ns`, `us` (or `µs`), `ms`, `s` (`0` needs none). Unset keys keep
    /// [`FaultConfig::none`]'s values; an empty spec or `none` is no impairment. Example:
    /// `drop=0.01,reorder=0.05,reorder_delay=50us,dup=0.01,corrupt=0.001,ecn=0.1,delay=10us,`
    /// `jitter=5us,burst=0.01/0.3/0.5,seed=7`.
    pub fn parse(spec: &str) -> Result<Self, FaultConfigError> {
        let mut cfg = FaultConfig::none();
        let spec = spec.trim();
        if spec.is_empty() || spec.eq_ignore_ascii_case("none") {
            return Ok(cfg);
        }
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = item.split_once('=').map_or((item, ""), |(k, v)| (k, v));
            let (key, value) = (key.trim(), value.trim());
            match key {
                "drop" => cfg.drop = parse_prob("drop", value)?,
                "dup" | "duplicate" => cfg.duplicate = parse_prob("dup", value)?,
                "reorder" => cfg.reorder = parse_prob("reorder", value)?,
                "corrupt" => cfg.corrupt = parse_prob("corrupt", value)?,
                "ecn" | "ecn_mark" => cfg.ecn_mark = parse_prob("ecn", value)?,
                "reorder_delay" => cfg.reorder_delay = parse_duration("reorder_delay", value)?,
                "delay" => cfg.delay = parse_duration("delay", value)?,
                "jitter" => cfg.jitter = parse_duration("jitter", value)?,
                "seed" => {
                    cfg.seed = value.parse().map_err(|_| bad("seed", value))?;
                }
                "burst" => {
                    let mut parts = value.split('/');
                    let mut next = || parse_prob("burst", parts.next().unwrap_or("").trim());
                    let b = BurstLoss {
                        p_good_to_bad: next()?,
                        p_bad_to_good: next()?,
                        loss_in_bad: next()?,
                    };
                    if parts.next().is_some() {
                        return Err(bad("burst", value));
                    }
                    cfg.burst = Some(b);
                }
                _ => return Err(FaultConfigError::UnknownKey(key.to_string())),
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self::none()
    }
}

impl FromStr for FaultConfig {
    type Err = FaultConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Writes the spec form that [`FaultConfig::parse`] reads back (only the non-default keys;
/// `none` when nothing is set).
impl fmt::Display for FaultConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = FaultConfig::none();
        let mut items: Vec<String> = Vec::new();
        let mut prob = |k: &str, v: f64, dv: f64| {
            if v != dv {
                items.push(format!("{k}={v}"));
            }
        };
        prob("drop", self.drop, d.drop);
        prob("dup", self.duplicate, d.duplicate);
        prob("reorder", self.reorder, d.reorder);
        prob("corrupt", self.corrupt, d.corrupt);
        prob("ecn", self.ecn_mark, d.ecn_mark);
        for (k, v) in [
            ("reorder_delay", self.reorder_delay),
            ("delay", self.delay),
            ("jitter", self.jitter),
        ] {
            if v != Duration::ZERO {
                items.push(format!("{k}={}", DurationSpec(v)));
            }
        }
        if let Some(b) = self.burst {
            items.push(format!(
                "burst={}/{}/{}",
                b.p_good_to_bad, b.p_bad_to_good, b.loss_in_bad
            ));
        }
        if self.seed != 0 {
            items.push(format!("seed={}", self.seed));
        }
        if items.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&items.join(","))
        }
    }
}

impl<P: Clone + AsMut<[u8]>> FaultInjector<P> {
    /// An injector applying `cfg`. The configuration is used as given; call
    /// [`FaultConfig::validate`] first if it comes from a user (out-of-range probabilities are
    /// clamped by the RNG: below 0 never, above 1 always).
    pub fn new(cfg: FaultConfig) -> Self {
        FaultInjector {
            cfg,
            noop: cfg.is_noop(),
            rng: Rng::new(cfg.seed),
            bad: false,
            seq: 0,
            last: Instant::ZERO,
            ready: VecDeque::new(),
            held: BinaryHeap::new(),
            stats: FaultStats::default(),
        }
    }

    /// Takes one packet arriving at `now`: decides loss, corruption, ECN mark and duplication,
    /// and schedules each surviving copy for release at `now + delay (+ jitter)
    /// (+ reorder_delay when chosen)`.
    ///
    /// Random draws happen in a fixed order (burst transition, drop, burst loss, corrupt, ECN,
    /// duplicate, then jitter and reorder per copy), and a probability of zero draws nothing.
    pub fn push(&mut self, now: Instant, mut packet: P) {
        let now = now.max(self.last);
        self.last = now;
        self.stats.seen += 1;
        if self.noop {
            self.enqueue_ready(now, packet, false);
            return;
        }
        let cfg = self.cfg;
        if let Some(b) = cfg.burst {
            let flip = if self.bad {
                b.p_bad_to_good
            } else {
                b.p_good_to_bad
            };
            if self.rng.chance(flip) {
                self.bad = !self.bad;
            }
        }
        let lost = self.rng.chance(cfg.drop)
            || (self.bad && cfg.burst.is_some_and(|b| self.rng.chance(b.loss_in_bad)));
        if lost {
            self.stats.dropped += 1;
            return;
        }
        if self.rng.chance(cfg.corrupt) {
            let bytes = packet.as_mut();
            if !bytes.is_empty() {
                let i = self.rng.below(bytes.len() as u64) as usize;
                // XOR with 1..=255 so the byte always changes.
                let flip = 1 + self.rng.below(255) as u8;
                if let Some(b) = bytes.get_mut(i) {
                    *b ^= flip;
                    self.stats.corrupted += 1;
                }
            }
        }
        let ce = self.rng.chance(cfg.ecn_mark);
        if ce {
            self.stats.ecn_marked += 1;
        }
        if self.rng.chance(cfg.duplicate) {
            self.stats.duplicated += 1;
            let copy = packet.clone();
            self.schedule(now, packet, ce);
            self.schedule(now, copy, ce);
        } else {
            self.schedule(now, packet, ce);
        }
    }

    /// The next packet whose release time is at or before `now`, earliest first (FIFO among
    /// equal release times), or `None`.
    pub fn pop_ready(&mut self, now: Instant) -> Option<Impaired<P>> {
        let from_ready = match (self.ready.front(), self.held.peek()) {
            (Some(r), Some(h)) => r.key() <= h.key(),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return None,
        };
        let e = if from_ready {
            if self.ready.front()?.at > now {
                return None;
            }
            self.ready.pop_front()?
        } else {
            if self.held.peek()?.at > now {
                return None;
            }
            self.held.pop()?
        };
        Some(Impaired {
            packet: e.packet,
            ecn_ce: e.ce,
        })
    }

    /// When the earliest held packet is due, or `None` when the injector is empty.
    pub fn next_release(&self) -> Option<Instant> {
        match (self.ready.front(), self.held.peek()) {
            (Some(r), Some(h)) => Some(r.at.min(h.at)),
            (Some(r), None) => Some(r.at),
            (None, Some(h)) => Some(h.at),
            (None, None) => None,
        }
    }

    /// Packets waiting for release.
    pub fn len(&self) -> usize {
        self.ready.len() + self.held.len()
    }

    /// Whether no packet is waiting.
    pub fn is_empty(&self) -> bool {
        self.ready.is_empty() && self.held.is_empty()
    }

    /// Decision counters so far.
    pub fn stats(&self) -> FaultStats {
        self.stats
    }

    /// The configuration in use.
    pub fn config(&self) -> &FaultConfig {
        &self.cfg
    }

    fn schedule(&mut self, now: Instant, packet: P, ce: bool) {
        let mut at = now.saturating_add(self.cfg.delay);
        let jitter = self.cfg.jitter.as_ps();
        if jitter > 0 {
            let extra = self.rng.below(jitter.saturating_add(1));
            at = at.saturating_add(Duration::from_ps(extra));
        }
        if self.cfg.reorder_delay > Duration::ZERO && self.rng.chance(self.cfg.reorder) {
            at = at.saturating_add(self.cfg.reorder_delay);
            self.stats.reordered += 1;
        }
        if at > now {
            self.stats.delayed += 1;
            let seq = self.next_seq();
            self.held.push(Entry {
                at,
                seq,
                packet,
                ce,
            });
        } else {
            self.enqueue_ready(now, packet, ce);
        }
    }

    fn enqueue_ready(&mut self, at: Instant, packet: P, ce: bool) {
        let seq = self.next_seq();
        self.ready.push_back(Entry {
            at,
            seq,
            packet,
            ce,
        });
    }

    fn next_seq(&mut self) -> u64 {
        let s = self.seq;
        self.seq = self.seq.wrapping_add(1);
        s
    }
}

/// A scheduled copy. Ordered for [`BinaryHeap`] (a max-heap) so that the earliest
/// `(at, seq)` is the greatest.
#[derive(Debug)]
struct Entry<P> {
    at: Instant,
    seq: u64,
    packet: P,
    ce: bool,
}

impl<P> Entry<P> {
    fn key(&self) -> (Instant, u64) {
        (self.at, self.seq)
    }
}

impl<P> PartialEq for Entry<P> {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl<P> Eq for Entry<P> {}

impl<P> PartialOrd for Entry<P> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<P> Ord for Entry<P> {
    fn cmp(&self, other: &Self) -> Ordering {
        other.key().cmp(&self.key())
    }
}

fn bad(field: &'static str, value: &str) -> FaultConfigError {
    FaultConfigError::BadValue {
        field,
        value: value.to_string(),
    }
}

fn parse_prob(field: &'static str, value: &str) -> Result<f64, FaultConfigError> {
    let p: f64 = value.parse().map_err(|_| bad(field, value))?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(FaultConfigError::NotProbability { field, value: p })
    }
}

fn parse_duration(field: &'static str, value: &str) -> Result<Duration, FaultConfigError> {
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (num, unit) = value.split_at(split);
    let scale: f64 = match unit.trim() {
        "ps" => 1.0,
        "ns" => 1e3,
        "us" | "µs" => 1e6,
        "ms" => 1e9,
        "s" => 1e12,
        "" if num.parse::<f64>().is_ok_and(|v| v == 0.0) => 1.0,
        _ => return Err(bad(field, value)),
    };
    // Whole numbers are exact in integer arithmetic (floats lose picoseconds past 2^53).
    if let Ok(whole) = num.parse::<u64>() {
        return whole
            .checked_mul(scale as u64)
            .map(Duration::from_ps)
            .ok_or_else(|| bad(field, value));
    }
    let v: f64 = num.parse().map_err(|_| bad(field, value))?;
    let ps = (v * scale).round();
    if !ps.is_finite() || ps < 0.0 || ps >= u64::MAX as f64 {
        return Err(bad(field, value));
    }
    Ok(Duration::from_ps(ps as u64))
}

/// Formats a duration exactly, in the largest unit that divides it.
struct DurationSpec(Duration);

impl fmt::Display for DurationSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ps = self.0.as_ps();
        for (div, unit) in [
            (1_000_000_000_000, "s"),
            (1_000_000_000, "ms"),
            (1_000_000, "us"),
            (1_000, "ns"),
        ] {
            if ps.is_multiple_of(div) {
                return write!(f, "{}{unit}", ps / div);
            }
        }
        write!(f, "{ps}ps")
    }
}

#[cfg(test)]
#[cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::panic, clippy::disallowed_methods)
)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    fn pkt(i: u32) -> Vec<u8> {
        i.to_le_bytes().to_vec()
    }

    fn id(p: &[u8]) -> u32 {
        u32::from_le_bytes(p[..4].try_into().unwrap())
    }

    /// Pushes `n` packets one microsecond apart, popping as time passes; returns the released
    /// packets in order, then drains the rest.
    fn run(cfg: FaultConfig, n: u32) -> (Vec<Impaired<Vec<u8>>>, FaultStats) {
        let mut f = FaultInjector::new(cfg);
        let mut out = Vec::new();
        let mut now = Instant::ZERO;
        for i in 0..n {
            f.push(now, pkt(i));
            while let Some(p) = f.pop_ready(now) {
                out.push(p);
            }
            now += US;
        }
        while let Some(t) = f.next_release() {
            while let Some(p) = f.pop_ready(t) {
                out.push(p);
            }
        }
        assert!(f.is_empty());
        (out, f.stats())
    }

    #[test]
    fn noop_passes_everything_in_order() {
        let cfg = FaultConfig::none();
        assert!(cfg.is_noop());
        let mut f = FaultInjector::new(cfg);
        let t = Instant::from_nanos(5);
        for i in 0..1000 {
            f.push(t, pkt(i));
        }
        assert_eq!(f.len(), 1000);
        assert_eq!(f.next_release(), Some(t));
        for i in 0..1000 {
            let p = f.pop_ready(t).unwrap();
            assert_eq!(id(&p.packet), i);
            assert!(!p.ecn_ce);
        }
        assert!(f.pop_ready(t).is_none());
        let s = f.stats();
        assert_eq!(s.seen, 1000);
        assert_eq!(FaultStats { seen: 0, ..s }, FaultStats::default());
    }

    #[test]
    fn drop_rate_within_tolerance() {
        let cfg = FaultConfig {
            drop: 0.05,
            seed: 11,
            ..FaultConfig::none()
        };
        let (out, s) = run(cfg, 100_000);
        let rate = s.dropped as f64 / s.seen as f64;
        assert!((rate - 0.05).abs() < 0.005, "drop rate {rate}");
        assert_eq!(out.len() as u64, s.seen - s.dropped);
        // Without delay, survivors stay in order.
        assert!(out.windows(2).all(|w| id(&w[0].packet) < id(&w[1].packet)));
    }

    #[test]
    fn burst_loss_produces_runs() {
        let b = BurstLoss {
            p_good_to_bad: 0.01,
            p_bad_to_good: 0.2,
            loss_in_bad: 1.0,
        };
        let cfg = FaultConfig {
            burst: Some(b),
            seed: 3,
            ..FaultConfig::none()
        };
        let (out, s) = run(cfg, 100_000);
        // Stationary bad fraction: 0.01 / 0.21.
        let rate = s.dropped as f64 / s.seen as f64;
        assert!((rate - 0.01 / 0.21).abs() < 0.01, "burst loss rate {rate}");
        // Mean length of a run of consecutive losses: about 1 / p_bad_to_good = 5, far above
        // the ~1.05 of i.i.d. loss at the same rate.
        let mut runs = 0u64;
        let mut lost = 0u64;
        let mut prev: Option<u32> = None;
        for p in &out {
            let i = id(&p.packet);
            let gap = i - prev.map_or(0, |x| x + 1);
            if gap > 0 {
                runs += 1;
                lost += u64::from(gap);
            }
            prev = Some(i);
        }
        let mean = lost as f64 / runs as f64;
        assert!(mean > 3.0, "mean loss run {mean}");
    }

    #[test]
    fn reordering_reorders() {
        let cfg = FaultConfig {
            reorder: 0.1,
            reorder_delay: Duration::from_micros(5),
            seed: 5,
            ..FaultConfig::none()
        };
        let (out, s) = run(cfg, 10_000);
        assert_eq!(out.len(), 10_000);
        assert!(s.reordered > 500 && s.reordered < 1500, "{s:?}");
        let inversions = out
            .windows(2)
            .filter(|w| id(&w[0].packet) > id(&w[1].packet))
            .count();
        assert!(inversions > 100, "inversions {inversions}");
        let mut ids: Vec<u32> = out.iter().map(|p| id(&p.packet)).collect();
        ids.sort_unstable();
        assert!(ids.iter().copied().eq(0..10_000));
    }

    #[test]
    fn release_order_is_by_time_then_fifo() {
        let cfg = FaultConfig {
            delay: Duration::from_micros(10),
            jitter: Duration::from_micros(3),
            seed: 9,
            ..FaultConfig::none()
        };
        let mut f = FaultInjector::new(cfg);
        for i in 0..200 {
            f.push(Instant::ZERO + US.saturating_mul(u64::from(i) / 4), pkt(i));
        }
        let mut last = Instant::ZERO;
        let mut n = 0;
        while let Some(t) = f.next_release() {
            assert!(t >= last);
            assert!(
                f.pop_ready(t.saturating_sub(Duration::from_ps(1)))
                    .is_none()
            );
            last = t;
            f.pop_ready(t).unwrap();
            n += 1;
        }
        assert_eq!(n, 200);
        assert_eq!(f.stats().delayed, 200);

        // Equal release times come out in push order.
        let cfg = FaultConfig {
            delay: Duration::from_micros(10),
            ..FaultConfig::none()
        };
        let mut f = FaultInjector::new(cfg);
        for i in 0..100 {
            f.push(Instant::ZERO, pkt(i));
        }
        let at = Instant::ZERO + Duration::from_micros(10);
        assert!(f.pop_ready(Instant::ZERO).is_none());
        for i in 0..100 {
            assert_eq!(id(&f.pop_ready(at).unwrap().packet), i);
        }
    }

    #[test]
    fn duplicates() {
        let cfg = FaultConfig {
            duplicate: 0.1,
            seed: 1,
            ..FaultConfig::none()
        };
        let (out, s) = run(cfg, 10_000);
        assert!(s.duplicated > 800 && s.duplicated < 1200, "{s:?}");
        assert_eq!(out.len() as u64, 10_000 + s.duplicated);
        let twice = out
            .windows(2)
            .filter(|w| w[0].packet == w[1].packet)
            .count() as u64;
        assert_eq!(twice, s.duplicated);
    }

    #[test]
    fn corruption_changes_exactly_one_byte() {
        let cfg = FaultConfig {
            corrupt: 1.0,
            seed: 2,
            ..FaultConfig::none()
        };
        let mut f = FaultInjector::new(cfg);
        for i in 0..1000u32 {
            let orig: Vec<u8> = (0..64).map(|k| (i as u8).wrapping_mul(k)).collect();
            f.push(Instant::ZERO, orig.clone());
            let got = f.pop_ready(Instant::ZERO).unwrap().packet;
            assert_eq!(got.len(), orig.len());
            let diff = got.iter().zip(&orig).filter(|(a, b)| a != b).count();
            assert_eq!(diff, 1);
        }
        // An empty packet cannot be corrupted and is not counted.
        f.push(Instant::ZERO, Vec::new());
        assert!(f.pop_ready(Instant::ZERO).unwrap().packet.is_empty());
        assert_eq!(f.stats().corrupted, 1000);
    }

    #[test]
    fn ecn_marks_at_rate() {
        let cfg = FaultConfig {
            ecn_mark: 0.25,
            seed: 4,
            ..FaultConfig::none()
        };
        let (out, s) = run(cfg, 20_000);
        let marked = out.iter().filter(|p| p.ecn_ce).count() as u64;
        assert_eq!(marked, s.ecn_marked);
        let rate = marked as f64 / 20_000.0;
        assert!((rate - 0.25).abs() < 0.02, "ecn rate {rate}");
    }

    #[test]
    fn deterministic_for_a_seed() {
        let cfg = FaultConfig::parse(
            "drop=0.01,reorder=0.05,reorder_delay=50us,dup=0.01,corrupt=0.001,ecn=0.1,\
             delay=10us,jitter=5us,burst=0.01/0.3/0.5,seed=7",
        )
        .unwrap();
        let a = run(cfg, 20_000);
        let b = run(cfg, 20_000);
        assert_eq!(a, b);
        let c = run(FaultConfig { seed: 8, ..cfg }, 20_000);
        assert_ne!(a.0, c.0);
    }

    #[test]
    fn parse_and_display_round_trip() {
        let cfg = FaultConfig::parse(
            "drop=0.01, reorder=0.05,reorder_delay=50us,dup=0.01,corrupt=0.001,ecn=0.1,\
             delay=10us,jitter=1.5ns,burst=0.01/0.3/0.5,seed=7",
        )
        .unwrap();
        assert_eq!(cfg.drop, 0.01);
        assert_eq!(cfg.reorder_delay, Duration::from_micros(50));
        assert_eq!(cfg.jitter, Duration::from_ps(1500));
        assert_eq!(
            cfg.burst,
            Some(BurstLoss {
                p_good_to_bad: 0.01,
                p_bad_to_good: 0.3,
                loss_in_bad: 0.5
            })
        );
        assert_eq!(cfg.seed, 7);
        assert!(!cfg.is_noop());
        let again: FaultConfig = cfg.to_string().parse().unwrap();
        assert_eq!(again, cfg);
        assert_eq!(FaultConfig::parse("").unwrap(), FaultConfig::none());
        assert_eq!(FaultConfig::parse("none").unwrap(), FaultConfig::none());
        assert_eq!(FaultConfig::none().to_string(), "none");
        assert_eq!(FaultConfig::parse("delay=0").unwrap().delay, Duration::ZERO);
    }

    #[test]
    fn parse_errors_name_the_field() {
        let e = FaultConfig::parse("drop=1.5").unwrap_err();
        assert_eq!(
            e,
            FaultConfigError::NotProbability {
                field: "drop",
                value: 1.5
            }
        );
        assert!(e.to_string().contains("drop"));
        assert!(matches!(
            FaultConfig::parse("delay=10").unwrap_err(),
            FaultConfigError::BadValue { field: "delay", .. }
        ));
        assert!(matches!(
            FaultConfig::parse("burst=0.1/0.2").unwrap_err(),
            FaultConfigError::BadValue { field: "burst", .. }
        ));
        assert_eq!(
            FaultConfig::parse("loss=0.1").unwrap_err(),
            FaultConfigError::UnknownKey("loss".into())
        );
        assert_eq!(
            FaultConfig::parse("reorder=0.1").unwrap_err(),
            FaultConfigError::ZeroReorderDelay
        );
        let nan = FaultConfig {
            corrupt: f64::NAN,
            ..FaultConfig::none()
        };
        assert!(matches!(
            nan.validate(),
            Err(FaultConfigError::NotProbability {
                field: "corrupt",
                ..
            })
        ));
    }

    #[test]
    fn time_going_backwards_keeps_fifo() {
        let mut f = FaultInjector::new(FaultConfig::none());
        f.push(Instant::from_nanos(10), pkt(0));
        f.push(Instant::from_nanos(5), pkt(1));
        let t = Instant::from_nanos(10);
        assert_eq!(id(&f.pop_ready(t).unwrap().packet), 0);
        assert_eq!(id(&f.pop_ready(t).unwrap().packet), 1);
    }
}
