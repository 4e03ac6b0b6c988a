//! DCQCN reaction point. TODO(congestion helper): implement.

use weir_base::Instant;

use crate::{CongestionControl, Feedback, Limits, PathInfo, Sent};

/// DCQCN parameters (defaults: NVIDIA ConnectX firmware, see reference/transport-cc.md §5.1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DcqcnParams {}

impl Default for DcqcnParams {
    fn default() -> Self {
        DcqcnParams {}
    }
}

/// DCQCN rate controller.
#[derive(Clone, Debug)]
pub struct Dcqcn {}

impl Dcqcn {
    /// A controller starting at line rate.
    pub fn new(now: Instant, path: &PathInfo, params: DcqcnParams) -> Self {
        let _ = (now, path, params);
        Dcqcn {}
    }
}

impl CongestionControl for Dcqcn {
    fn on_sent(&mut self, _now: Instant, _sent: &Sent) {}
    fn on_feedback(&mut self, _now: Instant, _fb: &Feedback<'_>) {}
    fn on_timeout(&mut self, _now: Instant) {}
    fn next_timeout(&self) -> Option<Instant> {
        None
    }
    fn limits(&self) -> Limits {
        Limits::default()
    }
    fn name(&self) -> &'static str {
        "dcqcn"
    }
}
