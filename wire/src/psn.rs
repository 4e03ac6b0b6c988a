//! PSN arithmetic. PSNs are 32-bit per-connection counters that wrap; they are compared by
//! serial-number arithmetic: `a` is before `b` when `b - a` (mod 2^32) lies in `1..2^31`.
//!
//! Two PSNs exactly 2^31 apart are each "before" the other; the transport never lets that
//! happen, because its windows are far smaller than 2^31 packets.

//= https://www.rfc-editor.org/rfc/rfc1982#section-3.2
//# s1 is said to be less than s2 if, and only if, s1 is not equal to s2, and
//# (i1 < i2 and i2 - i1 < 2^(SERIAL_BITS - 1)) or (i1 > i2 and i1 - i2 > 2^(SERIAL_BITS - 1))

/// Signed distance from `b` to `a`: positive when `a` is after `b`.
#[inline]
pub const fn diff(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// Whether `a` comes before `b`.
#[inline]
pub const fn lt(a: u32, b: u32) -> bool {
    diff(a, b) < 0
}

/// Whether `a` comes before `b` or equals it.
#[inline]
pub const fn le(a: u32, b: u32) -> bool {
    diff(a, b) <= 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_across_wrap() {
        assert!(lt(u32::MAX, 0));
        assert!(!lt(0, u32::MAX));
        assert!(le(5, 5));
        assert!(!lt(5, 5));
        assert_eq!(diff(2, u32::MAX - 1), 4);
        assert_eq!(diff(u32::MAX - 1, 2), -4);
        assert!(lt(0, (1 << 31) - 1));
        assert!(!lt((1 << 31) - 1, 0));
    }
}
