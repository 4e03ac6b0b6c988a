//! Value parsers shared by the subcommands' numeric options, so that a value out of range is
//! refused while the arguments are parsed, with clap's error naming the flag
//! (`invalid value '0' for '--point-secs <SECS>': …`), before anything runs.
//!
//! Contract: every parser here accepts only finite numbers inside its stated range; sizes are
//! [`units::parse_size`]'s (K/M/G, at least one byte, no overflow) with an upper bound.

use weir_bench::units;

/// A real number in `[min, max]` (`min` itself excluded when `min_open`), finite: NaN and the
/// infinities are refused. `unit` is named in the message ("s", "µs", "Gbit/s", "").
pub(crate) fn real(
    min: f64,
    min_open: bool,
    max: f64,
    unit: &'static str,
) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    move |s: &str| {
        let v: f64 = s
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not a number"))?;
        let above = if min_open { v > min } else { v >= min };
        if v.is_finite() && above && v <= max {
            Ok(v)
        } else {
            let open = if min_open { "(" } else { "[" };
            let unit = if unit.is_empty() {
                String::new()
            } else {
                format!(" {unit}")
            };
            Err(format!("{s} is not in {open}{min}, {max}]{unit}"))
        }
    }
}

/// A probability: a real number in `[0, 1]`.
pub(crate) fn probability() -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static
{
    real(0.0, false, 1.0, "")
}

/// A byte count as [`units::parse_size`] reads it (at least one byte), at most `max` bytes.
pub(crate) fn size_at_most(
    max: u64,
) -> impl Fn(&str) -> Result<u64, String> + Clone + Send + Sync + 'static {
    move |s: &str| {
        let v = units::parse_size(s)?;
        if v > max {
            return Err(format!(
                "`{s}` is above the {} this option allows",
                units::fmt_size(max)
            ));
        }
        Ok(v)
    }
}

/// Like [`size_at_most`], but `0` is accepted too (a size whose zero means "the default").
pub(crate) fn size_or_zero_at_most(
    max: u64,
) -> impl Fn(&str) -> Result<u64, String> + Clone + Send + Sync + 'static {
    let sized = size_at_most(max);
    move |s: &str| {
        if s.trim() == "0" { Ok(0) } else { sized(s) }
    }
}

/// A `usize` in `min..=max`.
pub(crate) fn count(min: u64, max: u64) -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(min..=max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reals() {
        let p = real(0.0, true, 60.0, "s");
        assert_eq!(p("0.5"), Ok(0.5));
        assert_eq!(p("60"), Ok(60.0));
        for bad in [
            "0", "-1", "nan", "NaN", "inf", "-inf", "60.5", "1e30", "x", "",
        ] {
            assert!(p(bad).is_err(), "{bad:?} accepted");
        }
        let closed = real(0.0, false, 1.0, "");
        assert_eq!(closed("0"), Ok(0.0));
        assert!(closed("-0.1").is_err());
        assert_eq!(
            closed("1.5"),
            Err("1.5 is not in [0, 1]".to_string()),
            "the message gives the range"
        );
    }

    #[test]
    fn sizes() {
        let p = size_at_most(1 << 30);
        assert_eq!(p("1G"), Ok(1 << 30));
        for bad in ["0", "2G", "1025M", "99999999999G", "-1", "nan"] {
            assert!(p(bad).is_err(), "{bad:?} accepted");
        }
        let z = size_or_zero_at_most(1 << 30);
        assert_eq!(z("0"), Ok(0));
        assert_eq!(z("256K"), Ok(256 << 10));
        assert!(z("2G").is_err());
    }
}
