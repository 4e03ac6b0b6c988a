//! Operating-system time and entropy for the drivers.
//!
//! [`MonotonicClock`] is the [`Clock`] the real datapaths use: picoseconds since the clock was
//! created, read from `CLOCK_MONOTONIC` through [`std::time::Instant`]. [`os_seed`] gives an
//! unguessable `u64` for connection tokens and RNG seeds. Protocol crates never call either;
//! they receive `now` and seeds from the driver (the sans-IO rule, docs/architecture.md).

// This crate is an I/O crate and this module is where it reads the OS clock, which the
// workspace `clippy.toml` forbids elsewhere.
#![allow(clippy::disallowed_methods)]

use weir_base::{Clock, Duration, Instant};

/// A monotonic clock whose epoch ([`Instant::ZERO`]) is the moment it was created.
///
/// Resolution is whatever `CLOCK_MONOTONIC` gives (nanoseconds on Linux); the value is scaled
/// to picoseconds. The u64 picosecond range covers about 213 days after creation; past that
/// the clock saturates at [`Instant::MAX`].
#[derive(Clone, Copy, Debug)]
pub struct MonotonicClock {
    origin: std::time::Instant,
}

impl MonotonicClock {
    /// A clock that reads zero now.
    pub fn new() -> Self {
        MonotonicClock {
            origin: std::time::Instant::now(),
        }
    }

    /// The `std` instant this clock's [`Instant::ZERO`] corresponds to.
    pub fn origin(&self) -> std::time::Instant {
        self.origin
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Instant {
        let ns = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        Instant::from_nanos(ns)
    }
}

/// Converts a picosecond [`Duration`] to a [`std::time::Duration`] (for timeouts handed to the
/// OS), rounding up to whole nanoseconds so a non-zero wait never becomes zero.
pub fn to_std(d: Duration) -> std::time::Duration {
    let ps = d.as_ps();
    std::time::Duration::from_nanos(ps / 1_000 + u64::from(!ps.is_multiple_of(1_000)))
}

/// 64 unguessable bits from the kernel (`getrandom(2)`), for connection tokens and seeds.
///
/// Falls back to mixing the wall clock, the process id and a stack address when `getrandom`
/// is unavailable; that fallback is unpredictable enough to keep unrelated runs apart but is
/// not cryptographic.
pub fn os_seed() -> u64 {
    #[cfg(target_os = "linux")]
    {
        let mut buf = [0u8; 8];
        loop {
            // SAFETY: `buf` is a valid, writable 8-byte buffer for the whole call, and the
            // length passed is its length.
            let r = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
            if r == 8 {
                return u64::from_ne_bytes(buf);
            }
            if r < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
    }
    fallback_seed()
}

fn fallback_seed() -> u64 {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let local = 0u8;
    let addr = std::ptr::addr_of!(local) as usize as u64;
    let pid = u64::from(std::process::id());
    mix(wall ^ pid.rotate_left(32) ^ addr.rotate_left(17))
}

/// SplitMix64's finaliser: spreads every input bit over the output.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_clock_advances() {
        let c = MonotonicClock::new();
        let a = c.now();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = c.now();
        assert!(b > a);
        assert!(b.saturating_since(a) >= Duration::from_millis(1));
    }

    #[test]
    fn seeds_differ() {
        let a = os_seed();
        let b = os_seed();
        assert_ne!(a, b);
        assert_ne!(fallback_seed(), 0);
    }

    #[test]
    fn to_std_rounds_up() {
        assert_eq!(
            to_std(Duration::from_ps(1)),
            std::time::Duration::from_nanos(1)
        );
        assert_eq!(
            to_std(Duration::from_micros(3)),
            std::time::Duration::from_micros(3)
        );
        assert_eq!(to_std(Duration::ZERO), std::time::Duration::ZERO);
    }
}
