//! A constant window and optional constant rate.
//!
//! Contract: [`Fixed`] ignores every input and never asks for a timer; [`Limits::window`] is
//! always `Some(w)` with `w >= 1`, and [`Limits::rate`] is `None` or a positive rate. It is
//! the baseline for lossless tests and for measuring what a real controller costs.

use weir_base::{Duration, Instant, Rate};

use crate::params::convert::{from_gbps, gbps};
use crate::params::{ParamError, ParamSpec, Params, Unit, check};
use crate::{CongestionControl, Feedback, Limits, PathInfo, Sent};

/// The round trip a window of 0 ("auto", the default) is sized for: the path's line rate ×
/// this. 40 µs is a few datacenter base RTTs: room for the host's scheduling and for queueing
/// without a standing queue of milliseconds. At 100 Gb/s it is 500 KB. (The window was a
/// constant 4 MiB: on a host path draining about 4 GB/s that is a millisecond of queue, which
/// every loss repair then waits behind, and data that left the CPU caches before it is read;
/// measured in BENCHMARKS.md, "A window that follows bandwidth × RTT".)
pub const AUTO_RTT: Duration = Duration::from_micros(40);

/// Smallest automatic window.
const AUTO_MIN: u64 = 64 << 10;

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

    /// [`Fixed::new`] for a connection on `path`; `window` 0 is the path's bandwidth × RTT:
    /// its line rate × [`AUTO_RTT`] (at least 64 KiB).
    pub fn for_path(window: u64, rate: Option<Rate>, path: &PathInfo) -> Self {
        let window = if window == 0 {
            path.line_rate.bytes_in(AUTO_RTT).max(AUTO_MIN)
        } else {
            window
        };
        Fixed::new(window, rate)
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
        // The transport's default window (`CcConfig::default`): automatic.
        FixedParams {
            window: 0,
            rate: Rate::ZERO,
        }
    }
}

impl FixedParams {
    /// The controller for a connection on `path` (window 0: the path's bandwidth × RTT).
    pub fn build(self, path: &PathInfo) -> Fixed {
        Fixed::for_path(
            self.window,
            (self.rate > Rate::ZERO).then_some(self.rate),
            path,
        )
    }
}

pub(crate) const SPECS: &[ParamSpec] = &[
    ParamSpec {
        name: "window",
        unit: Unit::Bytes,
        min: 0.0,
        max: 1e12,
        doc: "bytes allowed in flight; 0 (default): the line rate x 40 us (500 KB at 100 Gb/s)",
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
    fn window_zero_is_the_paths_bandwidth_times_rtt() {
        let path = |gbps| PathInfo {
            mtu: 8192,
            line_rate: Rate::from_gbps(gbps),
            base_rtt: None,
            paths: 8,
        };
        let w = |c: Fixed| c.limits().window;
        assert_eq!(w(Fixed::for_path(0, None, &path(100))), Some(500_000));
        assert_eq!(w(Fixed::for_path(0, None, &path(400))), Some(2_000_000));
        assert_eq!(w(Fixed::for_path(0, None, &path(1))), Some(64 << 10));
        // An explicit window stands whatever the path.
        assert_eq!(w(Fixed::for_path(3 << 20, None, &path(1))), Some(3 << 20));
        use crate::CcFactory as _;
        let cfg = crate::CcConfig::default();
        assert_eq!(
            cfg.build(Instant::ZERO, &path(100)).limits().window,
            Some(500_000)
        );
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
