//! eBPF policy objects (`FILE.o`, built with `clang -O2 -target bpf -c`) in `weir cc check`
//! and `weir cc run`: loaded and verified by `weir_policy`, parameters set by the names the
//! program declares (`--set name=value`, raw 64-bit integers as the program reads them;
//! undeclared parameters are 0).
//!
//! Run-time faults (`weir_policy::BpfPolicy`'s: the program returned non-zero, set neither a
//! window nor a rate, or the engine stopped it — an interpreter error, a failed bounds check
//! of the checked JIT) keep the flow's last good limits, so a run that faulted still draws a
//! plausible chart. `weir cc run` therefore watches every flow ([`Watched`]) and records each
//! fault in a [`FaultLog`] shared by the flows of the run: how many per hook and per flow, and
//! the earliest one's message.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use weir_base::Instant;
use weir_congestion::{CongestionControl, Feedback, Limits, ParamSpec, Sent, Unit};
use weir_policy::abi::event;
use weir_policy::{BpfPolicy, ParamHandle, Program};

use super::policy::Policy;

/// The hooks a program runs on, indexed by the context's `event` (`WEIR_CC_EV_*`).
pub(crate) const HOOKS: [&str; 4] = ["init", "sent", "feedback", "timeout"];

/// The earliest fault of a run.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FirstFault {
    /// The flow (index of the run's flows).
    pub(crate) flow: usize,
    /// The hook, one of [`HOOKS`].
    pub(crate) hook: &'static str,
    /// The event's time.
    pub(crate) at: Instant,
    /// `weir_policy`'s message.
    pub(crate) message: String,
}

/// The faults of a run's flows, all of them together.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Faults {
    /// Program runs of the flows that have ended (a flow adds its count when it is dropped).
    pub(crate) runs: u64,
    /// Faulty runs.
    pub(crate) faults: u64,
    /// Faulty runs per hook, indexed like [`HOOKS`].
    pub(crate) by_hook: [u64; 4],
    /// Faulty runs per flow, for the flows that faulted.
    pub(crate) by_flow: BTreeMap<usize, u64>,
    /// The fault with the earliest event time (the first recorded among equals).
    pub(crate) first: Option<FirstFault>,
}

/// Where the flows of one run record their faults (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct FaultLog(Mutex<Faults>);

impl FaultLog {
    fn with<R>(&self, f: impl FnOnce(&mut Faults) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// What has been recorded so far.
    pub(crate) fn snapshot(&self) -> Faults {
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
pub(crate) struct Watched {
    flow: usize,
    policy: BpfPolicy,
    log: Arc<FaultLog>,
    /// The policy's fault count already recorded.
    seen: u64,
}

impl Watched {
    /// `policy`, built (its INIT run) at `now` for flow `flow`.
    pub(crate) fn new(flow: usize, policy: BpfPolicy, log: Arc<FaultLog>, now: Instant) -> Self {
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

/// Load and verify `file`, or say why it is refused.
fn load(file: &Path) -> Result<Program, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    Program::from_elf(&bytes).map_err(|e| format!("{}: refused: {e}", file.display()))
}

/// `weir cc check FILE.o`: the verifier's verdict and what it proved.
pub(crate) fn check(file: &Path) -> Result<String, String> {
    let program = load(file)?;
    let r = program.report();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}: ok, eBPF program in section `{}`",
        file.display(),
        program.section()
    );
    let _ = writeln!(s, "instructions      {}", r.insns);
    let _ = writeln!(s, "longest path      {} instructions", r.longest_path);
    let _ = writeln!(s, "stack             {} bytes", r.stack_bytes);
    let _ = writeln!(s, "helpers           {:?}", r.helpers);
    let names = program.param_names();
    if names.is_empty() {
        let _ = writeln!(s, "parameters        (none declared)");
    } else {
        let _ = writeln!(s, "parameters        {}", names.join(", "));
    }
    Ok(s)
}

/// `weir cc run --policy FILE.o`: one `BpfPolicy` per flow, all sharing one parameter set.
pub(crate) fn policy(file: &Path, sets: &[(String, f64)]) -> Result<Policy, String> {
    let program = load(file)?;
    let mut pairs = Vec::new();
    for (name, v) in sets {
        if !(v.is_finite() && *v >= 0.0 && *v <= u64::MAX as f64 && v.fract() == 0.0) {
            return Err(format!(
                "--set {name}={v}: eBPF parameters are non-negative integers"
            ));
        }
        pairs.push((name.as_str(), *v as u64));
    }
    let params =
        ParamHandle::named(&program, &pairs).map_err(|e| format!("{}: {e}", file.display()))?;
    let values = params.values();
    let shown = program
        .param_names()
        .iter()
        .zip(values)
        .map(|(n, v)| {
            // The names live as long as the process: `weir cc` runs once.
            let name: &'static str = Box::leak(n.clone().into_boxed_str());
            (
                ParamSpec {
                    name,
                    unit: Unit::Scalar,
                    min: 0.0,
                    max: u64::MAX as f64,
                    doc: "declared by the program",
                },
                v as f64,
            )
        })
        .collect();
    Ok(program_policy(program, params, shown))
}

/// The policy that runs `program` with `params` on every flow, each flow [`Watched`].
pub(crate) fn program_policy(
    program: Program,
    params: ParamHandle,
    shown: Vec<(ParamSpec, f64)>,
) -> Policy {
    let log = Arc::new(FaultLog::default());
    let flows = log.clone();
    Policy::from_parts(
        "ebpf",
        shown,
        Box::new(move |flow, now, path| {
            let policy = BpfPolicy::new(&program, &params, now, path);
            match flow {
                Some(i) => Box::new(Watched::new(i, policy, flows.clone(), now)),
                None => Box::new(policy),
            }
        }),
        log,
    )
}
