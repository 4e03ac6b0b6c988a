//! A constant window and optional constant rate.
//!
//! Contract: [`Fixed`] ignores every input and never asks for a timer; [`Limits::window`] is
//! always `Some(w)` with `w >= 1`, and [`Limits::rate`] is `None` or a positive rate. It is
//! the baseline for lossless tests and for measuring what a real controller costs.

use weir_base::{Instant, Rate};

use crate::params::convert::{from_gbps, gbps};
use crate::params::{ParamError, ParamSpec, Params, Unit, check};
use crate::{CongestionControl, Feedback, Limits, Sent};

/// Constant window (and optional constant pacing rate).
#[derive(Clone, Debug)]
pub struct Fixed {
    window: u64,
    rate: Option<Rate>,
}

impl Fixed {
    /// A controller that always allows `window` bytes in flight (at least 1) at `rate`.
    pub fn new(window: u64, rate: Option<Rate>) -> Self {
        Fixed {
            window: window.max(1),
            rate: rate.filter(|r| r.bps() > 0),
        }
    }
}

impl CongestionControl for Fixed {
    fn on_sent(&mut self, _now: Instant, _sent: &Sent) {}
    fn on_feedback(&mut self, _now: Instant, _fb: &Feedback<'_>) {}
    fn on_timeout(&mut self, _now: Instant) {}
    fn next_timeout(&self) -> Option<Instant> {
        None
    }
    fn limits(&self) -> Limits {
        Limits {
            window: Some(self.window),
            rate: self.rate,
            path_hint: None,
        }
    }
    fn name(&self) -> &'static str {
        "fixed"
    }
}

/// Parameters of the constant-window baseline ([`Fixed`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FixedParams {
    /// Window in bytes.
    pub window: u64,
    /// Pacing rate; zero: unpaced.
    pub rate: Rate,
}

impl Default for FixedParams {
    fn default() -> Self {
        // The transport's default window (`CcConfig::default`).
        FixedParams {
            window: 4 << 20,
            rate: Rate::ZERO,
        }
    }
}

impl FixedParams {
    /// The controller.
    pub fn build(self) -> Fixed {
        Fixed::new(self.window, (self.rate > Rate::ZERO).then_some(self.rate))
    }
}

pub(crate) const SPECS: &[ParamSpec] = &[
    ParamSpec {
        name: "window",
        unit: Unit::Bytes,
        min: 1.0,
        max: 1e12,
        doc: "bytes allowed in flight; default 4 MiB (the transport's default)",
    },
    ParamSpec {
        name: "rate",
        unit: Unit::Gbps,
        min: 0.0,
        max: 1600.0,
        doc: "constant pacing rate; 0 (default) sends as fast as the window allows",
    },
];

impl Params for FixedParams {
    const ALGORITHM: &'static str = "fixed";

    fn specs() -> &'static [ParamSpec] {
        SPECS
    }

    fn get(&self, name: &str) -> Option<f64> {
        match name {
            "window" => Some(self.window as f64),
            "rate" => Some(gbps(self.rate)),
            _ => None,
        }
    }

    fn set(&mut self, name: &str, value: f64) -> Result<(), ParamError> {
        let spec = check(Self::ALGORITHM, SPECS, name, value)?;
        match spec.name {
            "window" => {
                // In range, so the cast is exact for whole numbers; fractions are refused.
                if value != (value as u64) as f64 {
                    return Err(ParamError::OutOfRange {
                        name: spec.name,
                        value,
                        min: spec.min,
                        max: spec.max,
                    });
                }
                self.window = value as u64;
            }
            _ => self.rate = from_gbps(value),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use weir_base::Duration;

    use super::*;
    use crate::LossKind;

    fn poke(c: &mut Fixed) {
        let t = Instant::from_nanos(5);
        c.on_sent(
            t,
            &Sent {
                bytes: 4096,
                in_flight: 1 << 30,
                ..Sent::default()
            },
        );
        c.on_feedback(
            t,
            &Feedback {
                acked_bytes: 1 << 20,
                ecn_bytes: 1 << 20,
                cnp: true,
                rtt: Some(Duration::from_millis(1)),
                loss: Some(LossKind::Trimmed),
                lost_bytes: 4096,
                rto: true,
                ..Feedback::default()
            },
        );
        c.on_timeout(Instant::MAX);
    }

    #[test]
    fn reports_its_window_and_rate() {
        let c = Fixed::new(64 << 10, Some(Rate::from_gbps(25)));
        assert_eq!(
            c.limits(),
            Limits {
                window: Some(64 << 10),
                rate: Some(Rate::from_gbps(25)),
                path_hint: None,
            }
        );
        assert_eq!(Fixed::new(1, None).limits().rate, None);
        assert_eq!(c.name(), "fixed");
    }

    #[test]
    fn never_reports_zero() {
        let c = Fixed::new(0, Some(Rate::ZERO));
        assert_eq!(c.limits().window, Some(1));
        assert_eq!(c.limits().rate, None);
    }

    #[test]
    fn ignores_every_input_and_wants_no_timer() {
        let mut c = Fixed::new(1 << 20, Some(Rate::from_gbps(100)));
        let before = c.limits();
        poke(&mut c);
        assert_eq!(c.limits(), before);
        assert_eq!(c.next_timeout(), None);
    }
}
