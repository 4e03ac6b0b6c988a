//! [`Params`] for [`DcqcnParams`]: the names, units, ranges and defaults `weir cc show dcqcn`
//! prints and a `[cc]` TOML table sets.
//!
//! Contract: every field of [`DcqcnParams`] is one parameter named after the field (the
//! MLNX_OFED `cc_params` knob names). Durations are written in µs, rates in Gbit/s, the byte
//! counter in bytes, switches as 0/1. Integer-valued parameters (`dce_tcp_g`, `rpg_gd`,
//! `rpg_min_dec_fac`, `rpg_threshold`, `rpg_byte_reset`) refuse fractional values, and every
//! parameter refuses values outside its range, with [`ParamError::OutOfRange`] naming it;
//! [`Params::get`] after a successful [`Params::set`] returns the value set (to within a
//! picosecond or a bit per second). Defaults are [`DcqcnParams::connectx`].

use crate::DcqcnParams;
use crate::params::convert::{flag, from_gbps, from_micros, gbps, micros};
use crate::params::{ParamError, ParamSpec, Params, Unit, check};

/// Longest duration accepted: one second.
const MAX_US: f64 = 1e6;
/// Highest rate accepted: 1.6 Tbit/s.
const MAX_GBPS: f64 = 1600.0;

pub(crate) const SPECS: &[ParamSpec] = &[
    ParamSpec {
        name: "dce_tcp_g",
        unit: Unit::Scalar,
        min: 0.0,
        max: 1024.0,
        doc: "alpha gain G in 10-bit fixed point, g = (1024 - G)/1024; ConnectX default 1019 \
              (g = 1/205); the paper's g = 1/256 is 1020 (DCQCN §3, NVIDIA DCQCN CC Parameters)",
    },
    ParamSpec {
        name: "dce_tcp_rtt",
        unit: Unit::Micros,
        min: 1e-6,
        max: MAX_US,
        doc: "alpha update period; ConnectX default 1 us (paper: K = 55 us)",
    },
    ParamSpec {
        name: "initial_alpha",
        unit: Unit::Scalar,
        min: 0.0,
        max: 1.0,
        doc: "alpha set on the first notification; ConnectX default 1023/1024 ~ 1.0",
    },
    ParamSpec {
        name: "rpg_gd",
        unit: Unit::Scalar,
        min: 0.0,
        max: 80.0,
        doc: "alpha-to-cut shift: R_C *= 1 - alpha/2^(rpg_gd - 10); ConnectX default 11 \
              (alpha/2, the paper's law)",
    },
    ParamSpec {
        name: "rpg_min_dec_fac",
        unit: Unit::Scalar,
        min: 0.0,
        max: 100.0,
        doc: "percent of the rate a single cut must keep; ConnectX default 50; 100 disables cuts",
    },
    ParamSpec {
        name: "rpg_min_rate",
        unit: Unit::Gbps,
        min: 1e-9,
        max: MAX_GBPS,
        doc: "lowest rate; ConnectX default 1 Mbit/s (0.001)",
    },
    ParamSpec {
        name: "rate_reduce_monitor_period",
        unit: Unit::Micros,
        min: 0.0,
        max: MAX_US,
        doc: "at most one cut per period; ConnectX default 4 us (paper: 50 us); 0 cuts on \
              every notification",
    },
    ParamSpec {
        name: "rpg_time_reset",
        unit: Unit::Micros,
        min: 0.0,
        max: MAX_US,
        doc: "rate-increase timer T; ConnectX default 300 us (paper: 55 us); 0 disables it",
    },
    ParamSpec {
        name: "rpg_byte_reset",
        unit: Unit::Bytes,
        min: 0.0,
        max: 1e12,
        doc: "rate-increase byte counter B; ConnectX default 32767 (paper: 10 MB); 0 disables it",
    },
    ParamSpec {
        name: "rpg_threshold",
        unit: Unit::Scalar,
        min: 0.0,
        max: 1e6,
        doc: "fast-recovery stages F; ConnectX default 1 (paper: 5)",
    },
    ParamSpec {
        name: "rpg_ai_rate",
        unit: Unit::Gbps,
        min: 0.0,
        max: MAX_GBPS,
        doc: "additive-increase step R_AI; ConnectX default 5 Mbit/s (0.005)",
    },
    ParamSpec {
        name: "rpg_hai_rate",
        unit: Unit::Gbps,
        min: 0.0,
        max: MAX_GBPS,
        doc: "hyper-increase step R_HAI; ConnectX default 50 Mbit/s (0.05)",
    },
    ParamSpec {
        name: "clamp_tgt_rate",
        unit: Unit::Bool,
        min: 0.0,
        max: 1.0,
        doc: "every cut also sets R_T = R_C (1) or only after an increase (0); ConnectX \
              default 0",
    },
    ParamSpec {
        name: "np_min_time_between_cnps",
        unit: Unit::Micros,
        min: 0.0,
        max: MAX_US,
        doc: "notification-point pacing: at most one CNP per period per flow; ConnectX \
              default 4 us (paper: 50 us)",
    },
    ParamSpec {
        name: "trim_as_cnp",
        unit: Unit::Bool,
        min: 0.0,
        max: 1.0,
        doc: "Weir: a trimmed-packet NACK counts as a notification; default 1",
    },
    ParamSpec {
        name: "loss_as_cnp",
        unit: Unit::Bool,
        min: 0.0,
        max: 1.0,
        doc: "Weir: a loss detected from SACK holes counts as a notification; default 0",
    },
];

/// Names of the parameters that only take whole numbers.
const INTEGER: &[&str] = &[
    "dce_tcp_g",
    "rpg_gd",
    "rpg_min_dec_fac",
    "rpg_byte_reset",
    "rpg_threshold",
];

impl Params for DcqcnParams {
    const ALGORITHM: &'static str = "dcqcn";

    fn specs() -> &'static [ParamSpec] {
        SPECS
    }

    fn get(&self, name: &str) -> Option<f64> {
        Some(match name {
            "dce_tcp_g" => f64::from(self.dce_tcp_g),
            "dce_tcp_rtt" => micros(self.dce_tcp_rtt),
            "initial_alpha" => self.initial_alpha,
            "rpg_gd" => f64::from(self.rpg_gd),
            "rpg_min_dec_fac" => f64::from(self.rpg_min_dec_fac),
            "rpg_min_rate" => gbps(self.rpg_min_rate),
            "rate_reduce_monitor_period" => micros(self.rate_reduce_monitor_period),
            "rpg_time_reset" => micros(self.rpg_time_reset),
            "rpg_byte_reset" => self.rpg_byte_reset as f64,
            "rpg_threshold" => f64::from(self.rpg_threshold),
            "rpg_ai_rate" => gbps(self.rpg_ai_rate),
            "rpg_hai_rate" => gbps(self.rpg_hai_rate),
            "clamp_tgt_rate" => flag(self.clamp_tgt_rate),
            "np_min_time_between_cnps" => micros(self.np_min_time_between_cnps),
            "trim_as_cnp" => flag(self.trim_as_cnp),
            "loss_as_cnp" => flag(self.loss_as_cnp),
            _ => return None,
        })
    }

    fn set(&mut self, name: &str, value: f64) -> Result<(), ParamError> {
        let spec = check(Self::ALGORITHM, SPECS, name, value)?;
        // `value` is finite and within the spec's range here, so the casts below are exact
        // for whole numbers and cannot overflow.
        if INTEGER.contains(&spec.name) && value != (value as u64) as f64 {
            return Err(ParamError::OutOfRange {
                name: spec.name,
                value,
                min: spec.min,
                max: spec.max,
            });
        }
        match spec.name {
            "dce_tcp_g" => self.dce_tcp_g = value as u16,
            "dce_tcp_rtt" => self.dce_tcp_rtt = from_micros(value),
            "initial_alpha" => self.initial_alpha = value,
            "rpg_gd" => self.rpg_gd = value as u8,
            "rpg_min_dec_fac" => self.rpg_min_dec_fac = value as u8,
            "rpg_min_rate" => self.rpg_min_rate = from_gbps(value),
            "rate_reduce_monitor_period" => self.rate_reduce_monitor_period = from_micros(value),
            "rpg_time_reset" => self.rpg_time_reset = from_micros(value),
            "rpg_byte_reset" => self.rpg_byte_reset = value as u64,
            "rpg_threshold" => self.rpg_threshold = value as u32,
            "rpg_ai_rate" => self.rpg_ai_rate = from_gbps(value),
            "rpg_hai_rate" => self.rpg_hai_rate = from_gbps(value),
            "clamp_tgt_rate" => self.clamp_tgt_rate = value == 1.0,
            "np_min_time_between_cnps" => self.np_min_time_between_cnps = from_micros(value),
            "trim_as_cnp" => self.trim_as_cnp = value == 1.0,
            "loss_as_cnp" => self.loss_as_cnp = value == 1.0,
            // `check` only returns specs from `SPECS`, all handled above.
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use alloc::format;

    use weir_base::{Duration, Rate};

    use super::*;

    #[test]
    fn every_spec_reads_back_and_defaults_are_in_range() {
        crate::params::assert_defaults_round_trip::<DcqcnParams>();
        let d = DcqcnParams::default();
        assert_eq!(DcqcnParams::specs().len(), 16);
        assert_eq!(d.get("nope"), None);
    }

    #[test]
    fn set_converts_units() {
        let mut p = DcqcnParams::default();
        p.set("rpg_time_reset", 55.0).expect("in range");
        assert_eq!(p.rpg_time_reset, Duration::from_micros(55));
        p.set("dce_tcp_rtt", 0.5).expect("in range");
        assert_eq!(p.dce_tcp_rtt, Duration::from_nanos(500));
        p.set("rpg_ai_rate", 0.02).expect("in range");
        assert_eq!(p.rpg_ai_rate, Rate::from_mbps(20));
        p.set("rpg_byte_reset", 10_485_760.0).expect("in range");
        assert_eq!(p.rpg_byte_reset, 10 * 1024 * 1024);
        p.set("clamp_tgt_rate", 1.0).expect("a switch");
        assert!(p.clamp_tgt_rate);
        assert_eq!(p.get("rpg_ai_rate"), Some(0.02));
        assert_eq!(p.get("dce_tcp_rtt"), Some(0.5));
    }

    #[test]
    fn bad_values_name_the_parameter() {
        let mut p = DcqcnParams::default();
        let e = p.set("dce_tcp_g", 1025.0).unwrap_err();
        assert_eq!(
            format!("{e}"),
            "`dce_tcp_g` = 1025 is out of range [0, 1024]"
        );
        let e = p.set("rpg_threshold", 1.5).unwrap_err();
        assert!(format!("{e}").contains("`rpg_threshold`"));
        let e = p.set("rpg_time_reset", -1.0).unwrap_err();
        assert!(format!("{e}").contains("`rpg_time_reset`"));
        let e = p.set("trim_as_cnp", 0.5).unwrap_err();
        assert!(format!("{e}").contains("`trim_as_cnp`"));
        let e = p.set("rpg_min_rate", f64::INFINITY).unwrap_err();
        assert!(format!("{e}").contains("`rpg_min_rate`"));
        let e = p.set("rpg_ai", 1.0).unwrap_err();
        assert_eq!(format!("{e}"), "unknown parameter `rpg_ai` for dcqcn");
        assert_eq!(p, DcqcnParams::default(), "a refused value changes nothing");
    }
}
