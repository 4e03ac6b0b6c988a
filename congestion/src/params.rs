//! Named, documented, range-checked parameters: what `weir cc show` prints, what a TOML
//! `[cc]` table sets, and what a hot reload changes.
//!
//! Contract: every built-in's parameter struct implements [`Params`]. Each parameter has one
//! name (snake_case, the struct field's name where one exists), a unit that fixes how its
//! value is written as a number (durations in µs, rates in Gbit/s, sizes in bytes, gains and
//! fractions unitless, switches as 0/1), a default, an inclusive range and a one-line
//! description. [`Params::set`] refuses unknown names and out-of-range or non-finite values
//! with a [`ParamError`] that names the parameter; it never clamps silently.

use core::fmt;

/// How a parameter's number is to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unit {
    /// Microseconds.
    Micros,
    /// Gigabits per second.
    Gbps,
    /// Bytes.
    Bytes,
    /// Packets.
    Packets,
    /// A plain number (gain, fraction, count).
    Scalar,
    /// A switch: 0 (off) or 1 (on).
    Bool,
}

impl Unit {
    /// Short unit name as printed in tables and docs.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Micros => "us",
            Unit::Gbps => "Gbit/s",
            Unit::Bytes => "bytes",
            Unit::Packets => "packets",
            Unit::Scalar => "",
            Unit::Bool => "0|1",
        }
    }
}

/// One parameter's description.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParamSpec {
    /// Name used in TOML and on the command line.
    pub name: &'static str,
    /// Unit of the value.
    pub unit: Unit,
    /// Smallest accepted value.
    pub min: f64,
    /// Largest accepted value.
    pub max: f64,
    /// One-line meaning, with the source of the default.
    pub doc: &'static str,
}

/// Why a parameter could not be set.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamError {
    /// No parameter of that name for this algorithm.
    Unknown {
        /// Algorithm name.
        algorithm: &'static str,
        /// The name that was given (truncated to 64 bytes).
        name: heapless_name::Name,
    },
    /// Value outside `[min, max]`, or not finite, or not 0/1 for a switch.
    OutOfRange {
        /// Parameter name.
        name: &'static str,
        /// The value given.
        value: f64,
        /// Smallest accepted.
        min: f64,
        /// Largest accepted.
        max: f64,
    },
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamError::Unknown { algorithm, name } => {
                write!(f, "unknown parameter `{}` for {algorithm}", name.as_str())
            }
            ParamError::OutOfRange {
                name,
                value,
                min,
                max,
            } => write!(f, "`{name}` = {value} is out of range [{min}, {max}]"),
        }
    }
}

/// A parameter struct with named parameters. Implemented by every built-in's `*Params`.
pub trait Params: Clone + Default + fmt::Debug {
    /// Algorithm name (`dcqcn`, `swift`, …), lower case.
    const ALGORITHM: &'static str;
    /// Every parameter, in display order.
    fn specs() -> &'static [ParamSpec];
    /// Current value of `name` in its unit, `None` for an unknown name.
    fn get(&self, name: &str) -> Option<f64>;
    /// Set `name` (after checking it exists and `value` is in range).
    fn set(&mut self, name: &str, value: f64) -> Result<(), ParamError>;
}

/// Check `value` against the spec of `name` in `specs`; used by [`Params::set`] impls.
pub fn check(
    algorithm: &'static str,
    specs: &'static [ParamSpec],
    name: &str,
    value: f64,
) -> Result<&'static ParamSpec, ParamError> {
    let Some(spec) = specs.iter().find(|s| s.name == name) else {
        return Err(ParamError::Unknown {
            algorithm,
            name: heapless_name::Name::new(name),
        });
    };
    let ok = value.is_finite()
        && value >= spec.min
        && value <= spec.max
        && (spec.unit != Unit::Bool || value == 0.0 || value == 1.0);
    if ok {
        Ok(spec)
    } else {
        Err(ParamError::OutOfRange {
            name: spec.name,
            value,
            min: spec.min,
            max: spec.max,
        })
    }
}

/// Unit conversions shared by the [`Params`] impls: a parameter's number in its [`Unit`] to
/// and from the field's type. The `from_*` functions take values that [`check`] accepted
/// (finite, non-negative, in range) and round to the nearest picosecond / bit/s.
pub(crate) mod convert {
    use weir_base::{Duration, Rate};

    /// A [`Duration`] in µs.
    pub(crate) fn micros(d: Duration) -> f64 {
        d.as_ps() as f64 / 1e6
    }

    /// A checked, non-negative number of µs as a [`Duration`], rounded to the picosecond.
    pub(crate) fn from_micros(us: f64) -> Duration {
        Duration::from_ps((us * 1e6 + 0.5) as u64)
    }

    /// A [`Rate`] in Gbit/s.
    pub(crate) fn gbps(r: Rate) -> f64 {
        r.bps_f64() / 1e9
    }

    /// A checked, non-negative number of Gbit/s as a [`Rate`], rounded to the bit/s.
    pub(crate) fn from_gbps(g: f64) -> Rate {
        Rate::from_bps((g * 1e9 + 0.5) as u64)
    }

    /// A switch as 0/1.
    pub(crate) fn flag(b: bool) -> f64 {
        f64::from(u8::from(b))
    }
}

/// A small inline copy of an unknown parameter name, so errors need no allocation.
pub mod heapless_name {
    /// Up to 64 bytes of a name (cut at a character boundary).
    #[derive(Clone, PartialEq, Eq)]
    pub struct Name {
        buf: [u8; 64],
        len: u8,
    }

    impl Name {
        /// Copy (a prefix of) `s`.
        pub fn new(s: &str) -> Self {
            let mut end = s.len().min(64);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            let mut buf = [0; 64];
            buf[..end].copy_from_slice(&s.as_bytes()[..end]);
            Name {
                buf,
                len: end as u8,
            }
        }
        /// The name.
        pub fn as_str(&self) -> &str {
            core::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("")
        }
    }

    impl core::fmt::Debug for Name {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            core::fmt::Debug::fmt(self.as_str(), f)
        }
    }
}

/// Test helper for every [`Params`] impl: each spec's name has a getter, its default lies in
/// the spec's range, and setting the default back leaves the struct equal to the default.
#[cfg(test)]
pub(crate) fn assert_defaults_round_trip<P: Params + PartialEq>() {
    let d = P::default();
    for s in P::specs() {
        let v = d.get(s.name).expect("every spec has a getter");
        assert!(v >= s.min && v <= s.max, "{} default {v} in range", s.name);
        let mut p = P::default();
        p.set(s.name, v).expect("the default is accepted");
        assert_eq!(p, d, "get/set round-trips the default of {}", s.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[ParamSpec] = &[
        ParamSpec {
            name: "gain",
            unit: Unit::Scalar,
            min: 0.0,
            max: 1.0,
            doc: "a gain",
        },
        ParamSpec {
            name: "on",
            unit: Unit::Bool,
            min: 0.0,
            max: 1.0,
            doc: "a switch",
        },
    ];

    #[test]
    fn check_names_the_key() {
        assert!(check("x", SPECS, "gain", 0.5).is_ok());
        let e = check("x", SPECS, "gian", 0.5).unwrap_err();
        assert_eq!(alloc::format!("{e}"), "unknown parameter `gian` for x");
        let e = check("x", SPECS, "gain", 2.0).unwrap_err();
        assert_eq!(alloc::format!("{e}"), "`gain` = 2 is out of range [0, 1]");
        assert!(check("x", SPECS, "gain", f64::NAN).is_err());
        assert!(check("x", SPECS, "on", 0.5).is_err());
        assert!(check("x", SPECS, "on", 1.0).is_ok());
        let long = "é".repeat(40);
        let e = check("x", SPECS, &long, 1.0).unwrap_err();
        let ParamError::Unknown { name, .. } = e else {
            panic!()
        };
        assert_eq!(name.as_str().len(), 64);
    }
}
