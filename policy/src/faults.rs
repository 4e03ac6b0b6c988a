//! Run-time faults of [`BpfPolicy`] flows, recorded the same way wherever a policy runs (the
//! simulator, the engine).
//!
//! A fault (the program returned non-zero, set neither a window nor a rate, or the engine
//! stopped it — an interpreter error, a failed bounds check of the checked JIT) keeps the
//! flow's last good limits, so a run that faulted still behaves plausibly. To see the faults,
//! wrap every flow's policy in a [`Watched`]: it records each fault in a [`FaultLog`] shared by
//! the flows of the run — how many per hook and per flow, and the earliest one's message.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use weir_base::Instant;
use weir_congestion::{CongestionControl, Feedback, Limits, Sent};

use crate::BpfPolicy;
use crate::abi::event;

/// The hooks a program runs on, indexed by the context's `event` (`WEIR_CC_EV_*`).
pub const HOOKS: [&str; 4] = ["init", "sent", "feedback", "timeout"];

/// The earliest fault of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct FirstFault {
    /// The flow (index of the run's flows).
    pub flow: usize,
    /// The hook, one of [`HOOKS`].
    pub hook: &'static str,
    /// The event's time.
    pub at: Instant,
    /// `weir_policy`'s message.
    pub message: String,
}

/// The faults of a run's flows, all of them together.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Program runs of the flows that have ended (a flow adds its count when it is dropped).
    pub runs: u64,
    /// Faulty runs.
    pub faults: u64,
    /// Faulty runs per hook, indexed like [`HOOKS`].
    pub by_hook: [u64; 4],
    /// Faulty runs per flow, for the flows that faulted.
    pub by_flow: BTreeMap<usize, u64>,
    /// The fault with the earliest event time (the first recorded among equals).
    pub first: Option<FirstFault>,
}

/// Where the flows of one run record their faults (see the module documentation).
#[derive(Debug, Default)]
pub struct FaultLog(Mutex<Faults>);

impl FaultLog {
    fn with<R>(&self, f: impl FnOnce(&mut Faults) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// What has been recorded so far.
    pub fn snapshot(&self) -> Faults {
        self.with(|f| f.clone())
    }

    fn record(&self, flow: usize, kind: u32, at: Instant, n: u64, message: &str) {
        let hook = kind.min(event::TIMEOUT) as usize;
        self.with(|f| {
            f.faults += n;
            f.by_hook[hook] += n;
            *f.by_flow.entry(flow).or_default() += n;
            if f.first.as_ref().is_none_or(|first| at < first.at) {
                f.first = Some(FirstFault {
                    flow,
                    hook: HOOKS[hook],
                    at,
                    message: message.to_string(),
                });
            }
        });
    }
}

/// One flow's [`BpfPolicy`], its faults recorded in the run's [`FaultLog`] after every event
/// (the policy counts them; only a change takes the lock).
#[derive(Debug)]
pub struct Watched {
    flow: usize,
    policy: BpfPolicy,
    log: Arc<FaultLog>,
    /// The policy's fault count already recorded.
    seen: u64,
}

impl Watched {
    /// `policy`, built (its INIT run) at `now` for flow `flow`.
    pub fn new(flow: usize, policy: BpfPolicy, log: Arc<FaultLog>, now: Instant) -> Self {
        let mut w = Watched {
            flow,
            policy,
            log,
            seen: 0,
        };
        w.after(event::INIT, now);
        w
    }

    fn after(&mut self, kind: u32, now: Instant) {
        let faults = self.policy.faults();
        if faults != self.seen {
            let message = self.policy.last_fault().unwrap_or("(no message)");
            self.log
                .record(self.flow, kind, now, faults - self.seen, message);
            self.seen = faults;
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let runs = self.policy.stats().runs;
        self.log.with(|f| f.runs += runs);
    }
}

impl CongestionControl for Watched {
    fn on_sent(&mut self, now: Instant, sent: &Sent) {
        self.policy.on_sent(now, sent);
        self.after(event::SENT, now);
    }

    fn on_feedback(&mut self, now: Instant, fb: &Feedback<'_>) {
        self.policy.on_feedback(now, fb);
        self.after(event::FEEDBACK, now);
    }

    fn on_timeout(&mut self, now: Instant) {
        self.policy.on_timeout(now);
        self.after(event::TIMEOUT, now);
    }

    fn next_timeout(&self) -> Option<Instant> {
        self.policy.next_timeout()
    }

    fn limits(&self) -> Limits {
        self.policy.limits()
    }

    fn name(&self) -> &'static str {
        self.policy.name()
    }

    fn needs_int(&self) -> bool {
        self.policy.needs_int()
    }
}
