//! eBPF policy objects (`FILE.o`, built with `clang -O2 -target bpf -c`) in `weir cc check`
//! and `weir cc run`: loaded and verified by `weir_policy`, parameters set by the names the
//! program declares (`--set name=value`, raw 64-bit integers as the program reads them;
//! undeclared parameters are 0).

use std::fmt::Write as _;
use std::path::Path;

use weir_congestion::{ParamSpec, Unit};
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
    Ok(Policy::from_parts(
        "ebpf",
        shown,
        Box::new(move |now, path| Box::new(BpfPolicy::new(&program, &params, now, path))),
    ))
}
