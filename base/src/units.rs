//! Link and pacing rates.

use core::fmt;

use crate::Duration;

/// A rate in bits per second.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Rate(u64);

impl Rate {
    /// Zero bits per second.
    pub const ZERO: Rate = Rate(0);
    /// The largest representable rate; used as "unlimited".
    pub const MAX: Rate = Rate(u64::MAX);

    /// From bits per second.
    pub const fn from_bps(bps: u64) -> Self {
        Rate(bps)
    }
    /// From megabits per second (saturating).
    pub const fn from_mbps(mbps: u64) -> Self {
        Rate(mbps.saturating_mul(1_000_000))
    }
    /// From gigabits per second (saturating).
    pub const fn from_gbps(gbps: u64) -> Self {
        Rate(gbps.saturating_mul(1_000_000_000))
    }
    /// From bits per second as a float (negative or NaN gives zero).
    pub fn from_bps_f64(bps: f64) -> Self {
        if bps.is_nan() || bps <= 0.0 {
            Rate(0)
        } else if bps >= u64::MAX as f64 {
            Rate(u64::MAX)
        } else {
            Rate(bps as u64)
        }
    }
    /// Bits per second.
    pub const fn bps(self) -> u64 {
        self.0
    }
    /// Bits per second as a float.
    pub fn bps_f64(self) -> f64 {
        self.0 as f64
    }
    /// Time to serialise `bytes` at this rate; a zero rate gives [`Duration::MAX`].
    pub const fn serialization_time(self, bytes: u64) -> Duration {
        if self.0 == 0 {
            return Duration::MAX;
        }
        // bytes * 8 * 1e12 / bps, computed in u128 to keep precision and avoid overflow.
        let ps = (bytes as u128 * 8 * 1_000_000_000_000) / self.0 as u128;
        if ps > u64::MAX as u128 {
            Duration::MAX
        } else {
            Duration::from_ps(ps as u64)
        }
    }
    /// Bytes this rate delivers in `d` (truncated, saturating).
    pub const fn bytes_in(self, d: Duration) -> u64 {
        let b = (self.0 as u128 * d.as_ps() as u128) / (8 * 1_000_000_000_000);
        if b > u64::MAX as u128 {
            u64::MAX
        } else {
            b as u64
        }
    }
    /// The smaller of two rates.
    pub fn min(self, other: Rate) -> Rate {
        if self.0 <= other.0 { self } else { other }
    }
    /// The larger of two rates.
    pub fn max(self, other: Rate) -> Rate {
        if self.0 >= other.0 { self } else { other }
    }
}

impl fmt::Debug for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0 as f64;
        if b >= 1e9 {
            write!(f, "{:.3}Gb/s", b / 1e9)
        } else if b >= 1e6 {
            write!(f, "{:.3}Mb/s", b / 1e6)
        } else {
            write!(f, "{}b/s", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialization_time_is_exact() {
        // 1500 B at 100 Gb/s = 120 ns.
        assert_eq!(
            Rate::from_gbps(100).serialization_time(1500),
            Duration::from_nanos(120)
        );
        assert_eq!(Rate::ZERO.serialization_time(1), Duration::MAX);
        assert_eq!(Rate::from_gbps(8).bytes_in(Duration::from_micros(1)), 1000);
    }
}
