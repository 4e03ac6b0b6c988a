//! A constant window and optional constant rate.
//!
//! Contract: [`Fixed`] ignores every input and never asks for a timer; [`Limits::window`] is
//! always `Some(w)` with `w >= 1`, and [`Limits::rate`] is `None` or a positive rate. It is
//! the baseline for lossless tests and for measuring what a real controller costs.

use weir_base::{Instant, Rate};

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
