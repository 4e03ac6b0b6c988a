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
//! the earliest one's message (both from [`weir_policy::faults`]).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use weir_congestion::{ParamSpec, Unit};
use weir_policy::faults::{FaultLog, Watched};
use weir_policy::{BpfPolicy, ParamHandle, Program};

use super::policy::Policy;

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
