//! A constant window and optional constant rate. TODO(congestion helper): tests.

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
