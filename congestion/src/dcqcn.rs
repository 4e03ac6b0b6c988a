//! DCQCN reaction point (Zhu et al., "Congestion Control for Large-Scale RDMA Deployments",
//! SIGCOMM 2015), with the parameter names and defaults of NVIDIA ConnectX firmware.
//!
//! Contract: [`Dcqcn`] is a pure rate controller. [`Limits::rate`] is always
//! `Some(rate)` with `min_rate <= rate <= line_rate` (both taken from [`PathInfo`] and
//! [`DcqcnParams`], see [`Dcqcn::new`]); [`Limits::window`] is always `None`, as in the NIC,
//! where DCQCN only drives the per-QP rate limiter. Bounding bytes in flight is the
//! transport's job. Every input first applies whatever timers have come due, in time order,
//! so the transport may call [`CongestionControl::on_timeout`] late or not at all before the
//! next ACK; `now` going backwards is treated as "no time passed".
//!
//! The law, as ConnectX firmware runs it (per flow):
//!
//! * **Congestion notification.** A CNP from the receiver ([`Feedback::cnp`]) is one
//!   notification. Weir's receiver also echoes ECN CE marks in its ACKs
//!   ([`Feedback::ecn_bytes`]); the sender turns those into notifications itself, emulating the
//!   notification point: at most one per [`DcqcnParams::np_min_time_between_cnps`], marks in
//!   between are dropped, as the NP drops them. A peer CNP is already paced by the peer, so it
//!   always counts, and it restarts the pacing window so the echoes of the same marks are not
//!   counted twice. A trim NACK ([`LossKind::Trimmed`], [`LossKind::TrimmedLastHop`]) is a
//!   queue overflowing, so by default it counts like an ECN echo
//!   ([`DcqcnParams::trim_as_cnp`]). Loss detected from SACK holes is *not* a notification by
//!   default ([`DcqcnParams::loss_as_cnp`]): on a sprayed multipath connection it is often
//!   reordering, and on lossy Ethernet often corruption. [`LossKind::ReceiverNoResources`] is
//!   never a congestion signal, and neither is a retransmission timeout: the transport already
//!   backs its RTO off, and DCQCN in the NIC has no loss input at all.
//! * **α.** Starts at [`DcqcnParams::initial_alpha`] on the connection's first notification
//!   (and only then: later congestion episodes start from wherever α decayed to). At the end
//!   of every α period ([`DcqcnParams::dce_tcp_rtt`]) α ← (1 − g)·α + g·[a notification
//!   arrived in that period], with g = (1024 − `dce_tcp_g`)/1024.
//! * **Decrease.** On a notification, if the last cut is at least
//!   [`DcqcnParams::rate_reduce_monitor_period`] old, cut now; otherwise cut once when that
//!   period ends (so at most one cut per period, and a notification is never forgotten). A
//!   cut sets R_T ← R_C (see [`DcqcnParams::clamp_tgt_rate`]), then
//!   R_C ← R_C·max(1 − α/2, min_dec_fac), and restarts the increase machinery.
//! * **Increase.** Events come from a timer ([`DcqcnParams::rpg_time_reset`]) and a counter of
//!   bytes sent ([`DcqcnParams::rpg_byte_reset`]); each kind counts its stages since the last
//!   cut. With F = [`DcqcnParams::rpg_threshold`] and (t, b) the stage counts before the event:
//!   fast recovery while max(t, b) < F (R_C ← (R_T + R_C)/2); hyper increase once
//!   min(t, b) > F (R_T += i·R_HAI with i = min(t, b) − F, then average); additive increase in
//!   between (R_T += R_AI, then average). With only one of the two counters enabled, that one
//!   plays both parts. R_T never exceeds the line rate; once R_C reaches it the timer stops.
//!
//! Choices that differ from a literal transcription, and why:
//!
//! * **α needs no timer.** α only matters when a cut happens, and between two inputs it
//!   evolves deterministically, so it is advanced arithmetically on every input (k elapsed
//!   periods decay it by (G/1024)^k, computed by repeated squaring in fixed point).
//!   [`CongestionControl::next_timeout`] therefore returns only the increase timer and a
//!   deferred cut, not a 1 µs α tick; the rates produced are the same.
//! * **Long gaps are O(1), and exact.** Many increase events due at once (a late timer, one
//!   huge [`Sent`]) are applied per phase in closed form, with exactly the result of applying
//!   them one by one. Within a phase the j-th event raises R_T by δ_j = a + b·j (b = 0 except
//!   for hyper increase with a growing i), so R_T is an arithmetic series until it reaches the
//!   line rate. The gap g = R_T − R_C obeys g ← ⌊(g + δ_j)/2⌋ (R_C ← ⌈(R_T + R_C)/2⌉), whose
//!   solution is g_k = δ_(k−2) + ⌊(g_2 − a)/2^(k−2)⌋; once R_T sits at the line rate the gap
//!   only halves, so R_C reaches it after bit-length(g) more events. Finding how many events
//!   fit below the line rate is a division (constant step) or a 34-step bit-by-bit search
//!   (growing step). Integer operations only and no data-dependent loops, which is what lets
//!   the eBPF twin compute the same.
//! * **Integer arithmetic only, α in 32-bit fixed point.** Rates are integer bit/s and α is a
//!   Q32 fraction (2^32 = 1.0), so the law is bit-for-bit reproducible by the eBPF twin in
//!   `examples/cc/dcqcn.c` (integer-only, no loops) and on any platform. The firmware keeps α
//!   in 10 bits and updates it every period, truncating each time; that per-period recurrence
//!   has no closed form, so a late input would need one step per elapsed period. Q32 with
//!   one truncation per multiply keeps α's error below 2^-26 while letting k periods be
//!   applied in O(1): (G/1024)^k by 16 repeated squarings (k ≥ 2^16 periods is taken as full
//!   decay: (1023/1024)^65536 < 2^-92). A cut keeps max(R_C·(1 − α·2^(10 − rpg_gd)),
//!   R_C·rpg_min_dec_fac/100), each product truncated.

use weir_base::{Duration, Instant, Rate};

use crate::{CongestionControl, Feedback, Limits, LossKind, PathInfo, Sent};

/// DCQCN parameters, named after the MLNX_OFED `cc_params` knobs; defaults are NVIDIA ConnectX
/// firmware's, as NVIDIA's DOCA documentation lists them ("DCQCN CC Parameters").
///
/// Out-of-range values are clamped, never rejected: zero periods disable the feature they
/// drive (noted per field) or, for the α period, mean one picosecond.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct DcqcnParams {
    /// α gain in 10-bit fixed point: α ← (G·α + (1024 − G)·cnp)/1024, so the paper's
    /// g = (1024 − G)/1024. Firmware default 1019, i.e. g = 5/1024 ≈ 1/205. The paper's (and
    /// HPCC's ns-3 model's) g = 1/256 is G = 1020. Values above 1024 are taken as 1024 (α
    /// frozen).
    pub dce_tcp_g: u16,
    /// α update period. Default 1 µs (the paper's K is 55 µs).
    pub dce_tcp_rtt: Duration,
    /// α set on the first notification, in [0, 1]. Default 1.0 (the firmware's
    /// `initial_alpha_value` 1023 is the largest 10-bit value, i.e. 1023/1024 ≈ 1.0).
    pub initial_alpha: f64,
    /// Shift between α and the cut: R_C ← R_C·(1 − α/2^(rpg_gd − 10)). Default 11 (α/2).
    pub rpg_gd: u8,
    /// Largest cut in one event, as the percentage of the rate that must remain. Default 50:
    /// a cut never goes below half the current rate. 100 disables cuts.
    pub rpg_min_dec_fac: u8,
    /// Lowest rate. Default 1 Mb/s.
    pub rpg_min_rate: Rate,
    /// At most one cut per this period. Default 4 µs. Zero: cut on every notification.
    pub rate_reduce_monitor_period: Duration,
    /// Increase timer T. Default 300 µs. Zero disables the timer.
    pub rpg_time_reset: Duration,
    /// Increase byte counter B: one increase event per this many bytes sent. Default 32767.
    /// Zero disables the byte counter (with the timer disabled too, a cut rate never recovers).
    pub rpg_byte_reset: u64,
    /// Fast-recovery stages F. Default 1 (ConnectX); the paper uses 5.
    pub rpg_threshold: u32,
    /// Additive increase step R_AI. Default 5 Mb/s.
    pub rpg_ai_rate: Rate,
    /// Hyper increase step R_HAI. Default 50 Mb/s.
    pub rpg_hai_rate: Rate,
    /// If set, every cut first sets R_T ← R_C. If clear (default), a cut that follows another
    /// cut with no increase event in between keeps the older, higher R_T, so recovery aims at
    /// the rate before the whole congestion episode.
    pub clamp_tgt_rate: bool,
    /// Notification-point pacing emulated on ECN echoes and trims: at most one notification
    /// per this period. Default 4 µs. Zero: every echo or trim is a notification.
    pub np_min_time_between_cnps: Duration,
    /// Weir addition: a trim NACK is a notification (default `true`).
    pub trim_as_cnp: bool,
    /// Weir addition: a loss detected from SACK holes is a notification (default `false`).
    pub loss_as_cnp: bool,
}

/// Counters for tests, logs and plots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DcqcnStats {
    /// Congestion notifications accepted (after notification-point pacing).
    pub cnps: u64,
    /// Rate cuts applied.
    pub cuts: u64,
    /// Rate increase events applied (timer and byte counter).
    pub increases: u64,
}

/// DCQCN rate controller for one connection. See the module documentation for the law.
///
/// Call order: the transport feeds [`CongestionControl::on_sent`] and
/// [`CongestionControl::on_feedback`] as events happen, calls
/// [`CongestionControl::on_timeout`] at (or after) [`CongestionControl::next_timeout`], and
/// reads [`CongestionControl::limits`] whenever it paces.
#[derive(Clone, Debug)]
pub struct Dcqcn {
    params: DcqcnParams,
    /// Line rate, bit/s (at least 1).
    line: u64,
    /// Minimum rate, bit/s, in [1, line].
    min: u64,
    /// α gain G in 10-bit fixed point (at most 1024): α ← (G·α + (1024 − G)·[cnp])/1024.
    gain: u64,
    /// The smallest percentage of R_C a cut may leave (at most 100).
    keep_pct: u64,
    /// α period in picoseconds (at least 1).
    alpha_period: u64,
    /// Current rate R_C, bit/s.
    rc: u64,
    /// Target rate R_T, bit/s.
    rt: u64,
    /// α in Q32 fixed point, in [0, 2^32].
    alpha: u64,
    /// End of the current α period; `None` until the first notification.
    alpha_next: Option<Instant>,
    /// A notification arrived in the current α period.
    alpha_cnp: bool,
    last_cut: Option<Instant>,
    /// A notification arrived within the monitor period of `last_cut`.
    cut_pending: bool,
    /// Last accepted notification (for notification-point pacing).
    np_last: Option<Instant>,
    /// Next increase timer event; `None` while at line rate or with the timer disabled.
    inc_next: Option<Instant>,
    /// Timer stages since the last cut.
    t_stage: u64,
    /// Byte-counter stages since the last cut.
    b_stage: u64,
    /// Bytes sent towards the next byte-counter event.
    bytes: u64,
    /// Latest time seen.
    now: Instant,
    stats: DcqcnStats,
}

impl DcqcnParams {
    /// NVIDIA ConnectX firmware defaults (the [`Default`]).
    pub const fn connectx() -> Self {
        DcqcnParams {
            dce_tcp_g: 1019,
            dce_tcp_rtt: Duration::from_micros(1),
            initial_alpha: 1.0,
            rpg_gd: 11,
            rpg_min_dec_fac: 50,
            rpg_min_rate: Rate::from_mbps(1),
            rate_reduce_monitor_period: Duration::from_micros(4),
            rpg_time_reset: Duration::from_micros(300),
            rpg_byte_reset: 32_767,
            rpg_threshold: 1,
            rpg_ai_rate: Rate::from_mbps(5),
            rpg_hai_rate: Rate::from_mbps(50),
            clamp_tgt_rate: false,
            np_min_time_between_cnps: Duration::from_micros(4),
            trim_as_cnp: true,
            loss_as_cnp: false,
        }
    }

    /// The timing of the SIGCOMM 2015 paper's evaluation on top of the ConnectX defaults:
    /// g = 1/256, α period K = 55 µs, increase timer T = 55 µs, byte counter B = 10 MB, F = 5,
    /// and one CNP / one cut per 50 µs. The paper's values are recalled, not re-read; the
    /// increase steps keep the firmware's 5 / 50 Mb/s.
    pub const fn paper() -> Self {
        let mut p = Self::connectx();
        p.dce_tcp_g = 1020;
        p.dce_tcp_rtt = Duration::from_micros(55);
        p.rpg_time_reset = Duration::from_micros(55);
        p.rpg_byte_reset = 10 * 1024 * 1024;
        p.rpg_threshold = 5;
        p.rate_reduce_monitor_period = Duration::from_micros(50);
        p.np_min_time_between_cnps = Duration::from_micros(50);
        p
    }

    /// The EWMA gain g these parameters give (the paper's notation).
    pub fn g(&self) -> f64 {
        f64::from(1024 - self.dce_tcp_g.min(1024)) / 1024.0
    }

    /// [`DcqcnParams::initial_alpha`] in the Q32 fixed point the law computes with
    /// (2^32 = 1.0): clamped into [0, 1], NaN taken as 1, truncated.
    pub fn initial_alpha_q32(&self) -> u64 {
        let a = if self.initial_alpha.is_nan() {
            1.0
        } else {
            self.initial_alpha.clamp(0.0, 1.0)
        };
        (a * ALPHA_ONE as f64) as u64
    }
}

impl Default for DcqcnParams {
    fn default() -> Self {
        Self::connectx()
    }
}

impl Dcqcn {
    /// A controller starting at line rate. A zero `path.line_rate` is taken as 1 bit/s, and the
    /// minimum rate is clamped into [1 bit/s, line rate], so the output is always positive.
    pub fn new(now: Instant, path: &PathInfo, params: DcqcnParams) -> Self {
        let line = path.line_rate.bps().max(1);
        let mut d = Dcqcn {
            params,
            line,
            // Derived from `params` by `set_params` below.
            min: 1,
            gain: 0,
            keep_pct: 0,
            alpha_period: 1,
            rc: line,
            rt: line,
            alpha: 0,
            alpha_next: None,
            alpha_cnp: false,
            last_cut: None,
            cut_pending: false,
            np_last: None,
            inc_next: None,
            t_stage: 0,
            b_stage: 0,
            bytes: 0,
            now,
            stats: DcqcnStats::default(),
        };
        d.set_params(params);
        d.alpha = d.params.initial_alpha_q32();
        d
    }

    /// Current rate R_C.
    pub fn rate(&self) -> Rate {
        Rate::from_bps(self.rc)
    }

    /// Target rate R_T, the rate recovery aims at.
    pub fn target_rate(&self) -> Rate {
        Rate::from_bps(self.rt)
    }

    /// α as of the latest input.
    pub fn alpha(&self) -> f64 {
        self.alpha as f64 / ALPHA_ONE as f64
    }

    /// α as of the latest input, in the Q32 fixed point the law computes with (2^32 = 1.0).
    pub fn alpha_q32(&self) -> u64 {
        self.alpha
    }

    /// The parameters this controller runs with.
    pub fn params(&self) -> &DcqcnParams {
        &self.params
    }

    /// Hot reload: new parameters from the next input on; the rates, α, stage counters and
    /// timers are kept (R_C and R_T are clamped into the new [min rate, line rate]). Inputs
    /// are sanitised as in [`Dcqcn::new`].
    pub fn set_params(&mut self, mut params: DcqcnParams) {
        params.initial_alpha = if params.initial_alpha.is_nan() {
            1.0
        } else {
            params.initial_alpha.clamp(0.0, 1.0)
        };
        self.min = params.rpg_min_rate.bps().clamp(1, self.line);
        self.gain = u64::from(params.dce_tcp_g.min(1024));
        self.keep_pct = u64::from(params.rpg_min_dec_fac.min(100));
        self.alpha_period = params.dce_tcp_rtt.as_ps().max(1);
        self.rc = self.rc.clamp(self.min, self.line);
        self.rt = self.rt.clamp(self.min, self.line);
        self.params = params;
    }

    /// Counters since creation.
    pub fn stats(&self) -> DcqcnStats {
        self.stats
    }

    /// Applies every timer due at or before `now`, in time order, then advances α to `now`.
    /// Returns the effective (monotone) time.
    fn advance(&mut self, now: Instant) -> Instant {
        let now = now.max(self.now);
        self.now = now;
        loop {
            let cut_at = self.cut_deadline().filter(|&d| d <= now);
            let inc_at = self.inc_next.filter(|&i| i <= now);
            match (cut_at, inc_at) {
                (Some(d), i) if i.is_none_or(|i| d <= i) => {
                    self.advance_alpha(d);
                    self.cut(d);
                }
                (d, Some(i)) => {
                    // Timer events strictly before a due cut (which then goes first), else all
                    // of them up to `now`.
                    let until = d.map_or(now, |d| d - Duration::from_ps(1));
                    let t = self.params.rpg_time_reset.as_ps().max(1);
                    let k = 1 + (until - i).as_ps() / t;
                    let next = i.as_ps().saturating_add(k.saturating_mul(t));
                    self.inc_next = (next < u64::MAX).then_some(Instant::from_ps(next));
                    self.increase(Counter::Timer, k);
                }
                _ => break,
            }
        }
        self.advance_alpha(now);
        now
    }

    /// Applies the α updates of every period that ended at or before `at`.
    fn advance_alpha(&mut self, at: Instant) {
        let Some(next) = self.alpha_next else { return };
        if at < next {
            return;
        }
        let periods = 1 + (at - next).as_ps() / self.alpha_period;
        //= https://networking-docs.nvidia.com/doca/archive/3-4-0/dcqcn-cc-parameters#alpha-update
        //# Every dce_tcp_rtt α is updated: incremented if a CNP was received during the
        //# period, decremented otherwise.
        //= https://doi.org/10.1145/2785956.2787484#section-3
        //# RP: α ← (1 − g)·α + g on congestion; α ← (1 − g)·α when a period passes without.
        //= https://networking-docs.nvidia.com/doca/archive/3-4-0/dcqcn-cc-parameters#alpha-update
        //# dce_tcp_g: α ← (dce_tcp_g·α + (1024 − dce_tcp_g)·[cnp]) / 1024.
        let hit = if self.alpha_cnp {
            (1024 - self.gain) * ALPHA_ONE
        } else {
            0
        };
        self.alpha = (self.gain * self.alpha + hit) >> 10;
        self.alpha = mul_q32(self.alpha, pow_q32(self.gain, periods - 1));
        self.alpha_cnp = false;
        let next = next
            .as_ps()
            .saturating_add(periods.saturating_mul(self.alpha_period));
        self.alpha_next = (next < u64::MAX).then_some(Instant::from_ps(next));
    }

    /// When a deferred cut is due, if one is pending.
    fn cut_deadline(&self) -> Option<Instant> {
        if self.cut_pending {
            self.last_cut
                .map(|c| c + self.params.rate_reduce_monitor_period)
        } else {
            None
        }
    }

    /// A congestion notification at `now` (α and timers already advanced to `now`).
    /// `from_peer`: a CNP the receiver sent, already paced by its notification point.
    fn notify(&mut self, now: Instant, from_peer: bool) {
        //= https://networking-docs.nvidia.com/doca/archive/3-4-0/dcqcn-cc-parameters#notification-point
        //# np_min_time_between_cnps: minimal time between two consecutive CNPs; if an
        //# ECN-marked packet arrives within this period, no CNP is sent.
        if !from_peer
            && self
                .np_last
                .is_some_and(|last| now < last + self.params.np_min_time_between_cnps)
        {
            return;
        }
        self.np_last = Some(now);
        self.stats.cnps += 1;
        if self.alpha_next.is_none() {
            //= https://networking-docs.nvidia.com/doca/archive/3-4-0/dcqcn-cc-parameters#alpha-update
            //# initial_alpha_value: the α used when the first CNP of a flow is received.
            self.alpha = self.params.initial_alpha_q32();
            let next = now.as_ps().saturating_add(self.alpha_period);
            self.alpha_next = (next < u64::MAX).then_some(Instant::from_ps(next));
        } else {
            self.alpha_cnp = true;
        }
        //= https://networking-docs.nvidia.com/doca/archive/3-4-0/dcqcn-cc-parameters#rate-decrease
        //# rate_reduce_monitor_period: the minimal time between two consecutive rate
        //# reductions of a flow; a reduction happens only if a CNP arrived in the interval.
        match self.last_cut {
            Some(c) if now < c + self.params.rate_reduce_monitor_period => {
                self.cut_pending = true;
            }
            _ => self.cut(now),
        }
    }

    /// One rate cut at `at` (α already advanced to `at`).
    fn cut(&mut self, at: Instant) {
        //= https://networking-docs.nvidia.com/doca/archive/3-4-0/dcqcn-cc-parameters#rate-increase
        //# clamp_tgt_rate: if set, every rate decrease also sets the target rate to the
        //# current rate; if clear, only when the rate was increased since the last decrease.
        if self.params.clamp_tgt_rate || self.t_stage > 0 || self.b_stage > 0 {
            self.rt = self.rc;
        }
        //= https://doi.org/10.1145/2785956.2787484#section-3
        //# RP, on a CNP: R_T ← R_C; R_C ← R_C·(1 − α/2).
        //= https://networking-docs.nvidia.com/doca/archive/3-4-0/dcqcn-cc-parameters#rate-decrease
        //# rpg_min_dec_fac: the maximal ratio of rate decrease in a single event;
        //# rpg_min_rate: the minimal rate limit of the QP; rpg_gd: the α-to-cut shift.
        // The cut fraction α·2^(10 − rpg_gd), in Q32.
        let gd = u32::from(self.params.rpg_gd);
        let frac = if gd >= 10 {
            self.alpha.checked_shr(gd - 10).unwrap_or(0)
        } else {
            self.alpha << (10 - gd)
        };
        let by_alpha = mul_q32(self.rc, ALPHA_ONE.saturating_sub(frac));
        let floor = mul_pct(self.rc, self.keep_pct);
        self.rc = by_alpha.max(floor).min(self.rc).max(self.min);
        self.t_stage = 0;
        self.b_stage = 0;
        self.bytes = 0;
        self.inc_next = None;
        if self.params.rpg_time_reset > Duration::ZERO && self.rc < self.line {
            let next = at
                .as_ps()
                .saturating_add(self.params.rpg_time_reset.as_ps());
            self.inc_next = (next < u64::MAX).then_some(Instant::from_ps(next));
        }
        self.last_cut = Some(at);
        self.cut_pending = false;
        self.stats.cuts += 1;
    }

    /// Applies `n` increase events from `counter`, in O(1) whatever `n`.
    fn increase(&mut self, counter: Counter, mut n: u64) {
        while n > 0 && self.rc < self.line {
            let (len, step) = self.segment(counter);
            let m = len.min(n);
            self.apply(counter, m, step);
            n -= m;
        }
        if self.rc >= self.line {
            self.inc_next = None;
        }
    }

    /// The phase the next `counter` event is in: how many events stay in it, and their step.
    fn segment(&self, counter: Counter) -> (u64, Step) {
        let single =
            self.params.rpg_time_reset == Duration::ZERO || self.params.rpg_byte_reset == 0;
        let (x, o) = match counter {
            Counter::Timer => (self.t_stage, self.b_stage),
            Counter::Bytes => (self.b_stage, self.t_stage),
        };
        // With one counter disabled, the other plays both parts.
        let o = if single { x } else { o };
        let f = u64::from(self.params.rpg_threshold);
        let ai = self.params.rpg_ai_rate.bps();
        let hai = self.params.rpg_hai_rate.bps();
        //= https://doi.org/10.1145/2785956.2787484#section-3
        //# Rate increase: fast recovery for the first F stages, then additive increase once
        //# the timer or the byte counter has passed F stages, then hyper increase once both
        //# have (R_T ← R_T + i·R_HAI).
        if x.max(o) < f {
            (f - x, Step::Linear(0))
        } else if x.min(o) > f {
            if single || x < o {
                let len = if single { u64::MAX } else { o - x };
                (len, Step::Growing { i0: x - f, hai })
            } else {
                (u64::MAX, Step::Linear(hai.saturating_mul(o - f)))
            }
        } else if single || o > f {
            (f + 1 - x, Step::Linear(ai))
        } else {
            (u64::MAX, Step::Linear(ai))
        }
    }

    /// Applies `m` events of one phase, in O(1), exactly as [`Step::one_by_one`] would.
    fn apply(&mut self, counter: Counter, m: u64, step: Step) {
        let (done, rt, rc) = step.run(self.rt, self.rc, self.line, m);
        self.rt = rt;
        self.rc = rc;
        self.bump(counter, done);
    }

    fn bump(&mut self, counter: Counter, n: u64) {
        match counter {
            Counter::Timer => self.t_stage = self.t_stage.saturating_add(n),
            Counter::Bytes => self.b_stage = self.b_stage.saturating_add(n),
        }
        self.stats.increases = self.stats.increases.saturating_add(n);
    }
}

impl CongestionControl for Dcqcn {
    fn on_sent(&mut self, now: Instant, sent: &Sent) {
        self.advance(now);
        let b = self.params.rpg_byte_reset;
        if b == 0 || self.rc >= self.line {
            return;
        }
        //= https://doi.org/10.1145/2785956.2787484#section-3
        //# The byte counter raises an increase event every B bytes transmitted.
        self.bytes = self.bytes.saturating_add(u64::from(sent.bytes));
        let events = self.bytes / b;
        self.bytes %= b;
        if events > 0 {
            self.increase(Counter::Bytes, events);
        }
    }

    fn on_feedback(&mut self, now: Instant, fb: &Feedback<'_>) {
        let now = self.advance(now);
        let congestion_loss = match fb.loss {
            Some(LossKind::Trimmed | LossKind::TrimmedLastHop) => self.params.trim_as_cnp,
            Some(LossKind::Detected) => self.params.loss_as_cnp,
            Some(LossKind::ReceiverNoResources) | None => false,
        };
        if fb.cnp {
            // The peer's notification point already turned these marks into this CNP.
            self.notify(now, true);
        } else if fb.ecn_bytes > 0 || congestion_loss {
            self.notify(now, false);
        }
        // `fb.rto`: deliberately no reaction (see the module documentation).
    }

    fn on_timeout(&mut self, now: Instant) {
        self.advance(now);
    }

    fn next_timeout(&self) -> Option<Instant> {
        match (self.cut_deadline(), self.inc_next) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            window: None,
            rate: Some(Rate::from_bps(self.rc)),
            path_hint: None,
        }
    }

    fn name(&self) -> &'static str {
        "dcqcn"
    }
}

/// Source of an increase event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Counter {
    Bytes,
    Timer,
}

/// How much R_T rises at each event of one phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Hyper increase with a growing multiplier: R_T rises by `hai·(i0 + j)` at the phase's
    /// `j`-th event.
    Growing { i0: u64, hai: u64 },
    /// A constant step (0 for fast recovery).
    Linear(u64),
}

impl Step {
    /// Applies `m` events of this phase to (R_T, R_C) below `line`, stopping early once R_C
    /// reached `line`: returns the events applied and the new (R_T, R_C). Closed form,
    /// equal to [`Step::one_by_one`] (see the module documentation); needs
    /// `rc <= rt <= line` and `rt >= 1`.
    fn run(self, rt: u64, rc: u64, line: u64, m: u64) -> (u64, u64, u64) {
        if m == 0 || rc >= line {
            return (0, rt, rc);
        }
        let (mut rt, mut gap, mut m, mut done) = (rt, rt - rc, m, 0);
        if rt < line {
            // Events whose whole step fits below the line rate.
            let room = line - rt;
            let k = self.fitting(room, m);
            gap = self.gap_after(gap, k);
            rt = rt.saturating_add(self.sum(k));
            done = k;
            m -= k;
            if m > 0 && rt < line {
                // The next step overshoots: R_T stops at the line rate.
                gap = gap.saturating_add(line - rt) / 2;
                rt = line;
                done += 1;
                m -= 1;
            }
        }
        if m > 0 {
            // R_T is at the line rate: every event halves the gap until it is gone.
            let e = m.min(u64::from(u64::BITS - gap.leading_zeros()));
            gap = gap.checked_shr(e as u32).unwrap_or(0);
            done += e;
        }
        (done, rt, rt.saturating_sub(gap))
    }

    /// The law applied one event at a time (the reference [`Step::run`] must equal).
    #[cfg(test)]
    fn one_by_one(self, mut rt: u64, mut rc: u64, line: u64, m: u64) -> (u64, u64, u64) {
        for j in 0..m {
            if rc >= line {
                return (j, rt, rc);
            }
            //= https://doi.org/10.1145/2785956.2787484#section-3
            //# Every increase event: R_C ← (R_T + R_C)/2, after R_T was raised (additive,
            //# hyper) or not (fast recovery).
            rt = add_capped(rt, self.delta(j), line);
            rc = ceil_mid(rt, rc);
        }
        (m, rt, rc)
    }

    /// The largest `k <= m` whose first `k` steps sum to at most `room` (< 2^64 − 1).
    fn fitting(self, room: u64, m: u64) -> u64 {
        match self {
            Step::Linear(0) | Step::Growing { hai: 0, .. } => m,
            Step::Linear(d) => m.min(room / d),
            Step::Growing { i0, hai } => {
                // hai·units(k) <= room  <=>  units(k) <= room / hai, units being an integer.
                // units(k) >= k(k − 1)/2 and room < 2^64 bound k below 2^34, so building k
                // bit by bit from bit 33 finds the largest one (units grows with k).
                let r = room / hai;
                let mut k = 0;
                for bit in (0..34).rev() {
                    let c = k | 1 << bit;
                    if c <= m && units(c, i0) <= r {
                        k = c;
                    }
                }
                k
            }
        }
    }

    /// The gap R_T − R_C after `k` events whose steps all fit below the line rate, from
    /// `gap`: g_1 = ⌊(g + a)/2⌋, g_2 = ⌊(g_1 + a + b)/2⌋, then g_k = δ_(k−2) + ⌊(g_2 − a)/2^(k−2)⌋
    /// (δ_j − 2b solves the recurrence without the floor; the error halves each event).
    fn gap_after(self, gap: u64, k: u64) -> u64 {
        // With k >= 1 events fitting, a = δ_0 and (k >= 2) a + b = δ_1 are below `room`, and
        // every g + δ below is at most the line rate: no overflow.
        let (a, b) = match self {
            Step::Growing { i0, hai } => (hai.saturating_mul(i0), hai),
            Step::Linear(d) => (d, 0),
        };
        if k == 0 {
            return gap;
        }
        let g1 = gap.saturating_add(a) / 2;
        if k == 1 {
            return g1;
        }
        let g2 = g1.saturating_add(a).saturating_add(b) / 2;
        let base = i128::from(self.delta(k - 2));
        let err = i128::from(g2) - i128::from(a);
        // Floor division by 2^(k − 2): an arithmetic shift (k − 2 >= 127 leaves the sign).
        let err = err >> (k - 2).min(127);
        u64::try_from((base + err).max(0)).unwrap_or(u64::MAX)
    }

    /// Step of the `j`-th event of the phase (from 0).
    fn delta(self, j: u64) -> u64 {
        match self {
            Step::Growing { i0, hai } => hai.saturating_mul(i0.saturating_add(j)),
            Step::Linear(d) => d,
        }
    }

    /// Sum of the steps of the first `k` events, saturating: hai·(k·i0 + k(k − 1)/2) or d·k.
    fn sum(self, k: u64) -> u64 {
        match self {
            Step::Growing { i0, hai } => units(k, i0).saturating_mul(hai),
            Step::Linear(d) => d.saturating_mul(k),
        }
    }
}

/// k·i0 + k(k − 1)/2, saturating (each partial result saturated gives the saturated exact
/// value, every term being non-negative).
fn units(k: u64, i0: u64) -> u64 {
    // k(k − 1)/2 without overflow: halve the even factor first.
    let triangle = if k.is_multiple_of(2) {
        (k / 2).saturating_mul(k.saturating_sub(1))
    } else {
        k.saturating_mul((k - 1) / 2)
    };
    k.saturating_mul(i0).saturating_add(triangle)
}

/// `(a + b) / 2` rounded up, without overflow (rounding up lets R_C reach R_T).
#[cfg(test)]
fn ceil_mid(a: u64, b: u64) -> u64 {
    (a >> 1) + (b >> 1) + ((a | b) & 1)
}

#[cfg(test)]
fn add_capped(a: u64, b: u64, cap: u64) -> u64 {
    a.saturating_add(b).min(cap)
}

/// (gain/1024)^k in Q32, by repeated squaring, truncating after every product. `gain` is at
/// most 1024; 1024 gives exactly 1.0. From k = 2^16 on the result is 0 for any gain below
/// 1024 (exactly, (1023/1024)^65536 < 2^-92, far below one Q32 unit).
fn pow_q32(gain: u64, k: u64) -> u64 {
    if gain >= 1024 || k == 0 {
        return ALPHA_ONE;
    }
    if k >= 1 << 16 {
        return 0;
    }
    let mut x = gain << 22; // gain/1024 in Q32, below 2^32
    let mut acc = ALPHA_ONE;
    let mut k = k;
    while k > 0 {
        if k & 1 == 1 {
            acc = (acc * x) >> 32; // acc <= 2^32, x < 2^32: no overflow
        }
        x = (x * x) >> 32;
        k >>= 1;
    }
    acc
}

/// `a·b / 2^32`, truncated, for `b <= 2^32` (so the result is at most `a`). Split in 32-bit
/// halves, as the eBPF twin must (it has no 128-bit product); exact.
fn mul_q32(a: u64, b: u64) -> u64 {
    debug_assert!(b <= ALPHA_ONE);
    (a >> 32) * b + (((a & 0xffff_ffff) * b) >> 32)
}

/// `a·pct / 100`, truncated, for `pct <= 100`; exact and without overflow.
fn mul_pct(a: u64, pct: u64) -> u64 {
    (a / 100) * pct + (a % 100) * pct / 100
}

/// 1.0 in α's Q32 fixed point.
const ALPHA_ONE: u64 = 1 << 32;

#[cfg(test)]
mod reload_tests {
    use super::*;

    #[test]
    fn set_params_keeps_the_rate_and_applies_the_new_floor() {
        let path = PathInfo {
            mtu: 4096,
            line_rate: Rate::from_gbps(100),
            base_rtt: None,
            paths: 1,
        };
        let mut d = Dcqcn::new(Instant::ZERO, &path, DcqcnParams::default());
        let fb = Feedback {
            cnp: true,
            ..Feedback::default()
        };
        d.on_feedback(Instant::from_nanos(10), &fb);
        let cut = d.rate();
        assert!(cut < Rate::from_gbps(100));
        let mut p = DcqcnParams {
            rpg_ai_rate: Rate::from_mbps(100),
            ..DcqcnParams::default()
        };
        d.set_params(p);
        assert_eq!(d.rate(), cut, "state kept");
        assert_eq!(d.params().rpg_ai_rate, Rate::from_mbps(100));
        p.rpg_min_rate = Rate::from_gbps(90);
        d.set_params(p);
        assert_eq!(d.rate(), Rate::from_gbps(90), "clamped to the new floor");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn us(n: u64) -> Instant {
        Instant::from_ps(n * 1_000_000)
    }

    fn ns(n: u64) -> Instant {
        Instant::from_nanos(n)
    }

    fn cnp() -> Feedback<'static> {
        Feedback {
            cnp: true,
            ..Feedback::default()
        }
    }

    fn ecn() -> Feedback<'static> {
        Feedback {
            acked_bytes: 4096,
            acked_packets: 1,
            ecn_bytes: 4096,
            ..Feedback::default()
        }
    }

    fn loss(kind: LossKind) -> Feedback<'static> {
        Feedback {
            loss: Some(kind),
            lost_bytes: 4096,
            ..Feedback::default()
        }
    }

    fn sent(bytes: u32) -> Sent {
        Sent {
            bytes,
            ..Sent::default()
        }
    }

    fn dcqcn(params: DcqcnParams) -> Dcqcn {
        Dcqcn::new(Instant::ZERO, &path(), params)
    }

    /// α frozen at 1 (g = 0): every cut halves, which makes expected values exact.
    fn frozen_alpha() -> DcqcnParams {
        DcqcnParams {
            dce_tcp_g: 1024,
            ..DcqcnParams::default()
        }
    }

    /// How far the Q32 α may stray from the real-valued recurrence: each truncating product
    /// loses less than 2^-32, and a decay takes at most 32 of them.
    const Q32_TOLERANCE: f64 = 64.0 / ALPHA_ONE as f64;

    fn mid(a: u64, b: u64) -> u64 {
        ((u128::from(a) + u128::from(b)).div_ceil(2)) as u64
    }

    #[test]
    fn defaults_are_connectx_firmware() {
        let p = DcqcnParams::default();
        assert_eq!(p, DcqcnParams::connectx());
        assert_eq!(p.dce_tcp_g, 1019);
        assert_eq!(p.g(), 5.0 / 1024.0);
        assert_eq!(p.dce_tcp_rtt, Duration::from_micros(1));
        assert_eq!(p.initial_alpha, 1.0);
        assert_eq!(p.rpg_min_dec_fac, 50);
        assert_eq!(p.rpg_min_rate, Rate::from_mbps(1));
        assert_eq!(p.rate_reduce_monitor_period, Duration::from_micros(4));
        assert_eq!(p.rpg_time_reset, Duration::from_micros(300));
        assert_eq!(p.rpg_byte_reset, 32_767);
        assert_eq!(p.rpg_threshold, 1);
        assert_eq!(p.rpg_ai_rate, Rate::from_mbps(5));
        assert_eq!(p.rpg_hai_rate, Rate::from_mbps(50));
        assert!(!p.clamp_tgt_rate);
        assert_eq!(p.np_min_time_between_cnps, Duration::from_micros(4));
        assert_eq!(DcqcnParams::paper().g(), 1.0 / 256.0);
        assert_eq!(DcqcnParams::paper().rpg_threshold, 5);
    }

    #[test]
    fn starts_at_line_rate() {
        let d = dcqcn(DcqcnParams::default());
        assert_eq!(d.rate(), Rate::from_gbps(100));
        assert_eq!(d.target_rate(), Rate::from_gbps(100));
        assert_eq!(
            d.limits(),
            Limits {
                window: None,
                rate: Some(Rate::from_gbps(100)),
                path_hint: None,
            }
        );
        assert_eq!(d.next_timeout(), None);
        assert_eq!(d.stats(), DcqcnStats::default());
        assert_eq!(d.name(), "dcqcn");
    }

    #[test]
    fn first_cnp_halves_the_rate_and_arms_the_increase_timer() {
        let mut d = dcqcn(DcqcnParams::default());
        d.on_feedback(us(10), &cnp());
        assert_eq!(d.alpha(), 1.0);
        assert_eq!(d.rate().bps(), 50 * GBPS);
        assert_eq!(d.target_rate().bps(), 100 * GBPS);
        assert_eq!(d.next_timeout(), Some(us(310)));
        assert_eq!(d.stats().cuts, 1);
    }

    #[test]
    fn a_cut_keeps_at_least_min_dec_fac() {
        // rpg_gd = 10 asks for a cut of α = 100 %; min_dec_fac bounds it.
        let mut d = dcqcn(DcqcnParams {
            rpg_gd: 10,
            ..DcqcnParams::default()
        });
        d.on_feedback(us(1), &cnp());
        assert_eq!(d.rate().bps(), 50 * GBPS);

        let mut d = dcqcn(DcqcnParams {
            rpg_min_dec_fac: 80,
            ..DcqcnParams::default()
        });
        d.on_feedback(us(1), &cnp());
        assert_eq!(d.rate().bps(), 80 * GBPS);

        let mut d = dcqcn(DcqcnParams {
            rpg_min_dec_fac: 100,
            ..DcqcnParams::default()
        });
        d.on_feedback(us(1), &cnp());
        assert_eq!(d.rate().bps(), 100 * GBPS);
        assert_eq!(d.next_timeout(), None);
    }

    #[test]
    fn initial_alpha_sets_the_first_cut() {
        let mut d = dcqcn(DcqcnParams {
            initial_alpha: 0.5,
            ..DcqcnParams::default()
        });
        d.on_feedback(us(1), &cnp());
        assert_eq!(d.rate().bps(), 75 * GBPS);
    }

    #[test]
    fn at_most_one_cut_per_monitor_period() {
        let mut d = dcqcn(frozen_alpha());
        // Peer CNPs every 500 ns from t = 10 µs: one cut now, one when the period ends.
        for k in 0..8 {
            d.on_feedback(ns(10_000 + 500 * k), &cnp());
            assert_eq!(d.rate().bps(), 50 * GBPS, "only one cut inside the period");
        }
        assert_eq!(d.stats().cnps, 8);
        assert_eq!(d.stats().cuts, 1);
        assert_eq!(d.next_timeout(), Some(us(14)));
        d.on_timeout(us(14));
        assert_eq!(d.stats().cuts, 2);
        assert_eq!(d.rate().bps(), 25 * GBPS);
        // Nothing more arrived: the next deadline is the increase timer again.
        assert_eq!(d.next_timeout(), Some(us(314)));
        d.on_timeout(us(20));
        assert_eq!(d.stats().cuts, 2);
    }

    #[test]
    fn a_late_call_applies_a_deferred_cut_at_its_deadline() {
        let mut d = dcqcn(frozen_alpha());
        d.on_feedback(us(0), &cnp());
        d.on_feedback(us(1), &cnp());
        // Called 100 µs late: the cut still happened at 4 µs, so the timer runs from there.
        d.on_timeout(us(104));
        assert_eq!(d.rate().bps(), 25 * GBPS);
        assert_eq!(d.next_timeout(), Some(us(304)));
    }

    #[test]
    fn ecn_echoes_are_paced_like_a_notification_point() {
        let mut d = dcqcn(DcqcnParams::default());
        // A marked ACK every 100 ns for 4 µs: one notification, one cut.
        for k in 0..40 {
            d.on_feedback(ns(1_000 + 100 * k), &ecn());
        }
        assert_eq!(d.stats().cnps, 1);
        assert_eq!(d.stats().cuts, 1);
        assert_eq!(d.next_timeout(), Some(us(301)), "no deferred cut either");
        // Marks every µs for 20 µs more: one notification per 4 µs, each a cut.
        for k in 5..=24 {
            d.on_feedback(us(k), &ecn());
        }
        assert_eq!(d.stats().cnps, 6);
        assert_eq!(d.stats().cuts, 6);
    }

    #[test]
    fn a_peer_cnp_and_its_echoes_count_once() {
        let mut d = dcqcn(DcqcnParams::default());
        let both = Feedback {
            cnp: true,
            ecn_bytes: 4096,
            ..Feedback::default()
        };
        d.on_feedback(us(1), &both);
        d.on_feedback(us(2), &ecn());
        assert_eq!(d.stats().cnps, 1);
        assert_eq!(d.next_timeout(), Some(us(301)));
    }

    #[test]
    fn trims_are_notifications_but_rto_and_receiver_refusals_are_not() {
        for kind in [LossKind::Trimmed, LossKind::TrimmedLastHop] {
            let mut d = dcqcn(DcqcnParams::default());
            d.on_feedback(us(1), &loss(kind));
            assert_eq!(d.rate().bps(), 50 * GBPS, "{kind:?}");
        }
        let quiet = [
            loss(LossKind::ReceiverNoResources),
            loss(LossKind::Detected),
            Feedback {
                rto: true,
                ..Feedback::default()
            },
            Feedback {
                acked_bytes: 1 << 20,
                rtt: Some(Duration::from_millis(5)),
                ..Feedback::default()
            },
        ];
        for fb in quiet {
            let mut d = dcqcn(DcqcnParams::default());
            d.on_feedback(us(1), &fb);
            assert_eq!(d.rate().bps(), 100 * GBPS, "{fb:?}");
            assert_eq!(d.stats().cnps, 0);
        }
        let mut d = dcqcn(DcqcnParams {
            trim_as_cnp: false,
            loss_as_cnp: true,
            ..DcqcnParams::default()
        });
        d.on_feedback(us(1), &loss(LossKind::Trimmed));
        assert_eq!(d.rate().bps(), 100 * GBPS);
        d.on_feedback(us(2), &loss(LossKind::Detected));
        assert_eq!(d.rate().bps(), 50 * GBPS);
    }

    #[test]
    fn alpha_decays_without_notifications() {
        let mut d = dcqcn(DcqcnParams::default());
        d.on_feedback(us(0), &cnp());
        let keep = 1.0 - 5.0 / 1024.0;
        let mut expected = 1.0;
        let mut at = 0;
        for k in [1, 2, 10, 1000, 5000] {
            while at < k {
                expected *= keep;
                at += 1;
            }
            // Anything just short of the next boundary sees the same α.
            d.on_timeout(Instant::from_ps(k * 1_000_000 + 999_999));
            // Q32 with truncating products: within a few dozen units of 2^-32.
            assert!(
                (d.alpha() - expected).abs() <= Q32_TOLERANCE,
                "after {k} periods: {} vs {expected}",
                d.alpha()
            );
        }
    }

    #[test]
    fn alpha_rises_in_a_period_with_a_notification() {
        let g: f64 = 5.0 / 1024.0;
        let mut d = dcqcn(DcqcnParams::default());
        d.on_feedback(us(0), &cnp());
        d.on_timeout(us(100));
        let before = d.alpha();
        assert!((before - (1.0 - g).powi(100)).abs() < Q32_TOLERANCE);
        // A CNP inside [100 µs, 101 µs) raises α at 101 µs (and cuts: 100 µs > 4 µs).
        d.on_feedback(ns(100_500), &cnp());
        assert_eq!(d.alpha(), before);
        d.on_timeout(us(101));
        assert!((d.alpha() - ((1.0 - g) * before + g)).abs() < 2.0 / ALPHA_ONE as f64);
    }

    /// Timer only (byte counter off), F = 1: one fast recovery, one additive increase, then
    /// hyper increases by 50, 100, 150 ... Mb/s.
    #[test]
    fn recovery_stages_with_the_timer_alone() {
        let mut d = dcqcn(DcqcnParams {
            rpg_byte_reset: 0,
            ..frozen_alpha()
        });
        d.on_feedback(us(0), &cnp());
        d.on_timeout(us(300)); // fast recovery towards the old line rate
        assert_eq!(d.rate().bps(), 75 * GBPS);
        d.on_feedback(us(301), &cnp()); // an increase happened, so R_T <- R_C
        assert_eq!(d.target_rate().bps(), 75 * GBPS);
        assert_eq!(d.rate().bps(), 37_500 * MBPS);

        let (mut rt, mut rc) = (75 * GBPS, 37_500 * MBPS);
        for event in 0..12u64 {
            let due = d.next_timeout().unwrap();
            assert_eq!(due, us(301 + 300 * (event + 1)));
            d.on_timeout(due);
            match event {
                0 => {}                         // fast recovery
                1 => rt += 5 * MBPS,            // additive
                i => rt += 50 * MBPS * (i - 1), // hyper, i = stage - F
            }
            rc = mid(rt, rc);
            assert_eq!(d.target_rate().bps(), rt, "event {event}");
            assert_eq!(d.rate().bps(), rc, "event {event}");
        }
    }

    /// Both counters, F = 1: fast recovery once, additive until both counters passed F, then
    /// hyper with i = min(t, b) - F.
    #[test]
    fn recovery_stages_with_both_counters() {
        let b = 32_767;
        let mut d = dcqcn(frozen_alpha());
        d.on_feedback(us(0), &cnp());
        d.on_sent(us(1), &sent(b)); // FR
        d.on_feedback(us(5), &cnp());
        let (mut rt, mut rc) = (75 * GBPS, 37_500 * MBPS);
        assert_eq!((d.target_rate().bps(), d.rate().bps()), (rt, rc));

        enum Ev {
            Bytes(u64),
            Timer(u64),
        }
        let steps = [
            (Ev::Bytes(6), 0),             // (t, b) = (0, 0): fast recovery
            (Ev::Bytes(7), 5 * MBPS),      // (0, 1): additive
            (Ev::Bytes(8), 5 * MBPS),      // (0, 2): additive
            (Ev::Timer(305), 5 * MBPS),    // (0, 3): additive
            (Ev::Timer(605), 5 * MBPS),    // (1, 3): additive
            (Ev::Bytes(606), 50 * MBPS),   // (2, 3): hyper, i = 1
            (Ev::Timer(905), 50 * MBPS),   // (2, 4): hyper, i = 1
            (Ev::Bytes(906), 100 * MBPS),  // (3, 4): hyper, i = 2
            (Ev::Timer(1205), 100 * MBPS), // (3, 5): hyper, i = 2
            (Ev::Timer(1505), 150 * MBPS), // (4, 5): hyper, i = 3
            (Ev::Timer(1805), 200 * MBPS), // (5, 5): hyper, i = 4
            (Ev::Timer(2105), 200 * MBPS), // (6, 5): hyper, i = 4
        ];
        for (n, (ev, step)) in steps.into_iter().enumerate() {
            match ev {
                Ev::Bytes(t) => d.on_sent(us(t), &sent(b)),
                Ev::Timer(t) => {
                    assert_eq!(d.next_timeout(), Some(us(t)));
                    d.on_timeout(us(t));
                }
            }
            rt += step;
            rc = mid(rt, rc);
            assert_eq!(
                (d.target_rate().bps(), d.rate().bps()),
                (rt, rc),
                "step {n}"
            );
        }
        assert_eq!(d.stats().increases, 1 + 12);
    }

    #[test]
    fn consecutive_cuts_without_increase_keep_the_target() {
        let mut d = dcqcn(frozen_alpha());
        d.on_feedback(us(0), &cnp());
        d.on_feedback(us(10), &cnp());
        assert_eq!(d.rate().bps(), 25 * GBPS);
        assert_eq!(d.target_rate().bps(), 100 * GBPS);

        let mut d = dcqcn(DcqcnParams {
            clamp_tgt_rate: true,
            ..frozen_alpha()
        });
        d.on_feedback(us(0), &cnp());
        d.on_feedback(us(10), &cnp());
        assert_eq!(d.target_rate().bps(), 50 * GBPS);
    }

    /// Sends paced at the current rate from `from` to `to`, with a CNP every `cnp_every`
    /// (if any); checks the rate bounds at every step. Returns the time reached.
    fn run(d: &mut Dcqcn, from: Instant, to: Instant, cnp_every: Option<Duration>) -> Instant {
        let mut now = from;
        let mut next_cnp = cnp_every.map(|p| from + p);
        while now < to {
            let pace = d.rate().serialization_time(4096);
            let mut next = now + pace;
            if let Some(t) = d.next_timeout() {
                next = next.min(t);
            }
            if let Some(c) = next_cnp {
                next = next.min(c);
            }
            now = next;
            d.on_timeout(now);
            if next_cnp == Some(now) {
                d.on_feedback(now, &cnp());
                next_cnp = cnp_every.map(|p| now + p);
            } else {
                d.on_sent(now, &sent(4096));
            }
            let r = d.rate().bps();
            assert!((MBPS..=100 * GBPS).contains(&r), "rate {r} at {now:?}");
            assert!(d.target_rate().bps() >= r);
            if let Some(t) = d.next_timeout() {
                assert!(t > now);
            }
        }
        now
    }

    #[test]
    fn recovers_to_line_rate_after_congestion_stops() {
        let mut d = dcqcn(DcqcnParams::default());
        let t = run(&mut d, us(0), us(500), Some(Duration::from_micros(5)));
        let low = d.rate();
        assert!(low < Rate::from_gbps(20), "{low}");
        let mut last = low;
        let mut now = t;
        while now < t + Duration::from_millis(20) && d.rate() < Rate::from_gbps(100) {
            now = run(&mut d, now, now + Duration::from_micros(50), None);
            assert!(d.rate() >= last, "rate only rises without congestion");
            last = d.rate();
        }
        assert_eq!(d.rate(), Rate::from_gbps(100));
        assert_eq!(d.next_timeout(), None);
        assert!(d.alpha() < 1.0);
    }

    #[test]
    fn sustained_congestion_stops_at_the_minimum_rate() {
        let mut d = dcqcn(DcqcnParams::default());
        run(&mut d, us(0), us(20_000), Some(Duration::from_micros(4)));
        // The floor holds; between cuts the rate may recover a little.
        assert!(d.rate().bps() < 20 * MBPS, "{}", d.rate());
        let mut d = dcqcn(DcqcnParams {
            rpg_time_reset: Duration::ZERO,
            rpg_byte_reset: 0,
            ..DcqcnParams::default()
        });
        for k in 0..10_000 {
            d.on_feedback(us(4 * k), &cnp());
        }
        assert_eq!(d.rate(), Rate::from_mbps(1));
    }

    #[test]
    fn large_time_jumps_are_constant_time() {
        // Defaults: a jump of most of the u64 range (tens of billions of timer periods).
        let mut d = dcqcn(DcqcnParams::default());
        d.on_feedback(us(1), &cnp());
        d.on_timeout(Instant::from_ps(u64::MAX / 2));
        assert_eq!(d.rate(), Rate::from_gbps(100));
        assert_eq!(d.next_timeout(), None);
        assert_eq!(d.alpha(), 0.0);

        // Pathological steps: 1 b/s increases and a large F, so nothing converges early.
        let slow = DcqcnParams {
            rpg_ai_rate: Rate::from_bps(1),
            rpg_hai_rate: Rate::from_bps(1),
            rpg_threshold: 1_000_000,
            rpg_time_reset: Duration::from_ps(1),
            rpg_byte_reset: 1,
            ..DcqcnParams::default()
        };
        let mut d = dcqcn(slow);
        d.on_feedback(us(1), &cnp());
        d.on_sent(us(2), &sent(u32::MAX)); // four billion byte-counter events
        d.on_timeout(Instant::from_ps(u64::MAX - 1)); // and ~2^64 timer events
        assert_eq!(d.rate(), Rate::from_gbps(100));
        d.on_timeout(Instant::MAX);
        assert_eq!(d.next_timeout(), None);
    }

    /// The closed-form fast-forward of long phases agrees exactly with applying events one by
    /// one.
    #[test]
    fn batched_increases_match_one_by_one() {
        let params = DcqcnParams {
            rpg_ai_rate: Rate::from_bps(1_000),
            rpg_hai_rate: Rate::from_bps(1_000),
            rpg_threshold: 3,
            ..frozen_alpha()
        };
        // R_T below line rate: a cut after an increase (R_T = 75 Gb/s, R_C = 37.5 Gb/s).
        let start = |d: &mut Dcqcn| {
            d.on_feedback(us(0), &cnp());
            d.on_sent(us(1), &sent(32_767));
            d.on_feedback(us(5), &cnp());
        };
        let t = Duration::from_micros(300);
        let mut one = dcqcn(params);
        let mut batch = dcqcn(params);
        for d in [&mut one, &mut batch] {
            start(d);
            // b = 5000: the timer runs through FR, AI, then hyper with a growing i.
            d.on_sent(us(6), &sent(32_767 * 5_000));
        }
        let events = 4_000;
        for k in 1..=events {
            one.on_timeout(us(5) + t.saturating_mul(k));
        }
        batch.on_timeout(us(5) + t.saturating_mul(events));
        assert!(one.target_rate() < Rate::from_gbps(100));
        assert_eq!(one.target_rate(), batch.target_rate());
        assert_eq!(one.rate(), batch.rate());
        assert_eq!(one.stats().increases, batch.stats().increases);
        assert_eq!(one.next_timeout(), batch.next_timeout());

        // Byte counter: one huge send against many small ones. With t = 100 the byte events
        // run additive (b < 4), hyper with a growing i (b < 100), then hyper with i = 97.
        let mut one = dcqcn(params);
        let mut batch = dcqcn(params);
        for d in [&mut one, &mut batch] {
            start(d);
            d.on_timeout(us(5) + t.saturating_mul(100));
        }
        for _ in 0..3_000 {
            one.on_sent(us(30_006), &sent(32_767));
        }
        batch.on_sent(us(30_006), &sent(32_767 * 3_000));
        assert!(one.target_rate() < Rate::from_gbps(100));
        assert_eq!(one.target_rate(), batch.target_rate());
        assert_eq!(one.rate(), batch.rate());
        assert_eq!(one.stats().increases, batch.stats().increases);
    }

    mod closed_form {
        use proptest::prelude::*;

        use super::super::Step;

        fn any_step() -> impl Strategy<Value = Step> {
            prop_oneof![
                (0u64..4).prop_map(Step::Linear),
                (0u64..100_000).prop_map(Step::Linear),
                any::<u64>().prop_map(Step::Linear),
                (0u64..10, 0u64..5).prop_map(|(i0, hai)| Step::Growing { i0, hai }),
                (0u64..1000, 0u64..10_000_000).prop_map(|(i0, hai)| Step::Growing { i0, hai }),
                (any::<u64>(), any::<u64>()).prop_map(|(i0, hai)| Step::Growing { i0, hai }),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 4096,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            /// The closed form of a phase equals the law applied event by event, for every kind
            /// of step, start and line rate, including runs that reach the line rate.
            #[test]
            fn phase_closed_form_equals_one_by_one(
                line in prop_oneof![
                    1u64..1_000,
                    1u64..1_000_000_000_000,
                    Just(u64::MAX),
                    (u64::MAX - 1_000)..u64::MAX,
                ],
                rt_permille in 0u64..=1_000,
                rc_permille in 0u64..=1_000,
                step in any_step(),
                m in prop_oneof![0u64..300, 0u64..3_000],
            ) {
                let rt = ((u128::from(line) * u128::from(rt_permille)) / 1000) as u64;
                let rt = rt.clamp(1, line);
                let rc = ((u128::from(rt) * u128::from(rc_permille)) / 1000) as u64;
                let rc = rc.clamp(1, rt);
                prop_assert_eq!(
                    step.run(rt, rc, line, m),
                    step.one_by_one(rt, rc, line, m),
                    "rt {} rc {} line {} {:?} m {}", rt, rc, line, step, m
                );
            }
        }
    }

    #[test]
    fn time_going_backwards_is_no_time_passing() {
        let mut d = dcqcn(DcqcnParams::default());
        d.on_feedback(us(100), &cnp());
        let due = d.next_timeout();
        d.on_timeout(us(50));
        d.on_sent(us(0), &sent(1000));
        d.on_feedback(us(99), &ecn());
        assert_eq!(d.rate().bps(), 50 * GBPS);
        assert_eq!(
            d.stats().cuts,
            1,
            "a mark 'before' the cut is inside its period"
        );
        assert_eq!(
            d.next_timeout().map(|t| t.max(us(104))),
            due.map(|t| t.max(us(104)))
        );
    }

    #[test]
    fn degenerate_paths_and_params_still_give_a_positive_rate() {
        let zero = PathInfo {
            line_rate: Rate::ZERO,
            ..path()
        };
        let mut d = Dcqcn::new(Instant::ZERO, &zero, DcqcnParams::default());
        d.on_feedback(us(1), &cnp());
        assert_eq!(d.limits().rate, Some(Rate::from_bps(1)));

        let odd = DcqcnParams {
            initial_alpha: f64::NAN,
            dce_tcp_rtt: Duration::ZERO,
            rate_reduce_monitor_period: Duration::ZERO,
            np_min_time_between_cnps: Duration::ZERO,
            rpg_min_rate: Rate::MAX,
            rpg_gd: 0,
            rpg_min_dec_fac: 0,
            ..DcqcnParams::default()
        };
        let mut d = dcqcn(odd);
        for k in 0..100 {
            d.on_feedback(us(k), &ecn());
        }
        // The minimum rate was clamped to the line rate.
        assert_eq!(d.rate(), Rate::from_gbps(100));
        assert!(d.alpha().is_finite());

        let mut d = dcqcn(DcqcnParams {
            rpg_gd: 0,
            rpg_min_dec_fac: 0,
            ..DcqcnParams::default()
        });
        d.on_feedback(us(1), &cnp());
        assert_eq!(d.rate(), Rate::from_mbps(1));
    }

    #[test]
    fn pow_q32_is_exact_enough() {
        assert_eq!(pow_q32(512, 0), ALPHA_ONE);
        assert_eq!(pow_q32(512, 3), ALPHA_ONE / 8);
        assert_eq!(pow_q32(1024, 1000), ALPHA_ONE);
        assert_eq!(pow_q32(2000, 7), ALPHA_ONE);
        assert_eq!(pow_q32(0, 1), 0);
        assert_eq!(pow_q32(1023, 1 << 16), 0);
        assert_eq!(pow_q32(1019, u64::MAX), 0);
        for (gain, k) in [
            (1020, 1000),
            (1019, 1),
            (1019, 4537),
            (1023, 65_535),
            (700, 9),
        ] {
            let exact = (gain as f64 / 1024.0).powi(k as i32);
            let got = pow_q32(gain, k) as f64 / ALPHA_ONE as f64;
            assert!(
                got <= exact && exact - got < Q32_TOLERANCE,
                "{gain}^{k}: {got} vs {exact}"
            );
        }
    }

    #[test]
    fn fixed_point_products_are_exact() {
        for a in [
            0,
            1,
            99,
            100,
            12_345_678_901,
            u64::MAX,
            u64::MAX - 1,
            1 << 63,
        ] {
            for b in [0, 1, ALPHA_ONE / 3, ALPHA_ONE - 1, ALPHA_ONE] {
                let exact = (u128::from(a) * u128::from(b)) >> 32;
                assert_eq!(u128::from(mul_q32(a, b)), exact, "{a}·{b}");
            }
            for pct in [0, 1, 30, 50, 99, 100] {
                let exact = u128::from(a) * u128::from(pct) / 100;
                assert_eq!(u128::from(mul_pct(a, pct)), exact, "{a}·{pct}%");
            }
        }
        let p = DcqcnParams {
            initial_alpha: 0.5,
            ..DcqcnParams::default()
        };
        assert_eq!(p.initial_alpha_q32(), ALPHA_ONE / 2);
        let p = DcqcnParams {
            initial_alpha: f64::NAN,
            ..DcqcnParams::default()
        };
        assert_eq!(p.initial_alpha_q32(), ALPHA_ONE);
    }

    #[test]
    fn step_sums_saturate() {
        assert_eq!(Step::Linear(3).sum(4), 12);
        assert_eq!(Step::Growing { i0: 1, hai: 10 }.sum(3), 10 + 20 + 30);
        assert_eq!(Step::Growing { i0: 5, hai: 1 }.sum(0), 0);
        assert_eq!(
            Step::Growing {
                i0: u64::MAX,
                hai: u64::MAX
            }
            .sum(u64::MAX),
            u64::MAX
        );
        assert_eq!(Step::Growing { i0: 7, hai: 3 }.sum(1 << 20), {
            let k = 1u64 << 20;
            3 * (k * 7 + k * (k - 1) / 2)
        });
        assert_eq!(
            Step::Growing {
                i0: u64::MAX,
                hai: 0
            }
            .sum(u64::MAX),
            0
        );
        assert_eq!(Step::Linear(u64::MAX).sum(u64::MAX), u64::MAX);
        assert_eq!(ceil_mid(u64::MAX, u64::MAX), u64::MAX);
        assert_eq!(ceil_mid(3, 4), 4);
    }
}
