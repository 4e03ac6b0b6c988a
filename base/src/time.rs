//! Picosecond time: [`Instant`] and [`Duration`].
//!
//! Both are `u64` picoseconds (about 213 days of range). Every operation saturates, so a
//! forged timestamp from the network can never cause an overflow panic.

use core::fmt;
use core::ops::{Add, AddAssign, Sub};

/// A point in time: picoseconds since an arbitrary epoch chosen by the [`Clock`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

/// A span of time in picoseconds.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(u64);

/// A source of the current time. Implemented by the drivers (monotonic OS clock, simulator
/// clock); protocol code receives `now` as an argument instead.
pub trait Clock {
    /// The current time.
    fn now(&self) -> Instant;
}

impl Instant {
    /// The epoch.
    pub const ZERO: Instant = Instant(0);
    /// The largest representable instant; used as "never".
    pub const MAX: Instant = Instant(u64::MAX);

    /// From picoseconds since the epoch.
    pub const fn from_ps(ps: u64) -> Self {
        Instant(ps)
    }

    /// From nanoseconds since the epoch (saturating).
    pub const fn from_nanos(ns: u64) -> Self {
        Instant(ns.saturating_mul(1_000))
    }

    /// Picoseconds since the epoch.
    pub const fn as_ps(self) -> u64 {
        self.0
    }

    /// Nanoseconds since the epoch (truncated).
    pub const fn as_nanos(self) -> u64 {
        self.0 / 1_000
    }

    /// `self - earlier`, or zero when `earlier` is later than `self`.
    pub const fn saturating_since(self, earlier: Instant) -> Duration {
        Duration(self.0.saturating_sub(earlier.0))
    }

    /// `self - earlier`, or `None` when `earlier` is later than `self`.
    pub const fn checked_since(self, earlier: Instant) -> Option<Duration> {
        match self.0.checked_sub(earlier.0) {
            Some(d) => Some(Duration(d)),
            None => None,
        }
    }

    /// `self + d`, saturating at [`Instant::MAX`].
    pub const fn saturating_add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(d.0))
    }

    /// `self - d`, saturating at [`Instant::ZERO`].
    pub const fn saturating_sub(self, d: Duration) -> Instant {
        Instant(self.0.saturating_sub(d.0))
    }
}

impl Duration {
    /// Zero length.
    pub const ZERO: Duration = Duration(0);
    /// The longest representable span.
    pub const MAX: Duration = Duration(u64::MAX);

    /// From picoseconds.
    pub const fn from_ps(ps: u64) -> Self {
        Duration(ps)
    }
    /// From nanoseconds (saturating).
    pub const fn from_nanos(ns: u64) -> Self {
        Duration(ns.saturating_mul(1_000))
    }
    /// From microseconds (saturating).
    pub const fn from_micros(us: u64) -> Self {
        Duration(us.saturating_mul(1_000_000))
    }
    /// From milliseconds (saturating).
    pub const fn from_millis(ms: u64) -> Self {
        Duration(ms.saturating_mul(1_000_000_000))
    }
    /// From seconds (saturating).
    pub const fn from_secs(s: u64) -> Self {
        Duration(s.saturating_mul(1_000_000_000_000))
    }
    /// From seconds as a float (for configuration and reports only; negative or NaN gives zero).
    pub fn from_secs_f64(s: f64) -> Self {
        let ps = s * 1e12;
        if ps.is_nan() || ps <= 0.0 {
            Duration(0)
        } else if ps >= u64::MAX as f64 {
            Duration(u64::MAX)
        } else {
            Duration(ps as u64)
        }
    }
    /// Picoseconds.
    pub const fn as_ps(self) -> u64 {
        self.0
    }
    /// Nanoseconds (truncated).
    pub const fn as_nanos(self) -> u64 {
        self.0 / 1_000
    }
    /// Microseconds (truncated).
    pub const fn as_micros(self) -> u64 {
        self.0 / 1_000_000
    }
    /// Seconds as a float (reports and CC arithmetic only).
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 * 1e-12
    }
    /// `self + other`, saturating.
    pub const fn saturating_add(self, other: Duration) -> Duration {
        Duration(self.0.saturating_add(other.0))
    }
    /// `self - other`, saturating at zero.
    pub const fn saturating_sub(self, other: Duration) -> Duration {
        Duration(self.0.saturating_sub(other.0))
    }
    /// `self * n`, saturating.
    pub const fn saturating_mul(self, n: u64) -> Duration {
        Duration(self.0.saturating_mul(n))
    }
    /// `self / n`; dividing by zero gives [`Duration::MAX`] rather than a panic.
    pub const fn div(self, n: u64) -> Duration {
        match self.0.checked_div(n) {
            Some(v) => Duration(v),
            None => Duration(u64::MAX),
        }
    }
    /// `self * f` for a non-negative factor, saturating (NaN gives zero).
    pub fn mul_f64(self, f: f64) -> Duration {
        Duration::from_secs_f64(self.as_secs_f64() * f)
    }
    /// The smaller of two durations.
    pub fn min(self, other: Duration) -> Duration {
        if self.0 <= other.0 { self } else { other }
    }
    /// The larger of two durations.
    pub fn max(self, other: Duration) -> Duration {
        if self.0 >= other.0 { self } else { other }
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        self.saturating_add(d)
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        *self = self.saturating_add(d);
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    /// Saturating: an earlier `self` gives zero.
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_since(earlier)
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, d: Duration) -> Instant {
        self.saturating_sub(d)
    }
}

impl Add for Duration {
    type Output = Duration;
    fn add(self, o: Duration) -> Duration {
        self.saturating_add(o)
    }
}

impl AddAssign for Duration {
    fn add_assign(&mut self, o: Duration) {
        *self = self.saturating_add(o);
    }
}

impl Sub for Duration {
    type Output = Duration;
    fn sub(self, o: Duration) -> Duration {
        self.saturating_sub(o)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t={:?}", Duration(self.0))
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ps = self.0;
        if ps >= 1_000_000_000_000 {
            write!(f, "{:.3}s", ps as f64 * 1e-12)
        } else if ps >= 1_000_000_000 {
            write!(f, "{:.3}ms", ps as f64 * 1e-9)
        } else if ps >= 1_000_000 {
            write!(f, "{:.3}us", ps as f64 * 1e-6)
        } else if ps >= 1_000 {
            write!(f, "{:.3}ns", ps as f64 * 1e-3)
        } else {
            write!(f, "{ps}ps")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturates_instead_of_panicking() {
        assert_eq!(Instant::MAX + Duration::from_secs(1), Instant::MAX);
        assert_eq!(Instant::ZERO - Duration::from_secs(1), Instant::ZERO);
        assert_eq!(Instant::ZERO - Instant::MAX, Duration::ZERO);
        assert_eq!(Duration::from_secs(u64::MAX), Duration::MAX);
        assert_eq!(Duration::from_micros(3).div(0), Duration::MAX);
        assert_eq!(Duration::from_secs_f64(f64::NAN), Duration::ZERO);
        assert_eq!(Duration::from_secs_f64(-1.0), Duration::ZERO);
    }

    #[test]
    fn units_convert() {
        assert_eq!(Duration::from_micros(5).as_nanos(), 5_000);
        assert_eq!(Duration::from_millis(2).as_micros(), 2_000);
        assert_eq!(Instant::from_nanos(7).as_ps(), 7_000);
        assert!((Duration::from_millis(1500).as_secs_f64() - 1.5).abs() < 1e-12);
    }
}
