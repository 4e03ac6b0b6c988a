//! Runs the built `weir` binary: `weir cc run` on eBPF policy objects compiled with clang at
//! test time (skipped, saying so, when clang is missing). Asserts on the report and the exit
//! status, never on timing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const WEIR: &str = env!("CARGO_BIN_EXE_weir");

/// A policy that paces at 1 Gbit/s, and fails (returns 7) on every FEEDBACK event when
/// `FAULT` is defined.
const POLICY: &str = r#"#include "weir_cc.h"

WEIR_CC_PROGRAM int policy(struct weir_cc_ctx *ctx)
{
#ifdef FAULT
	if (ctx->event == WEIR_CC_EV_FEEDBACK)
		return 7;
#endif
	ctx->out_rate_bps = 1000000000ULL;
	return 0;
}
"#;

/// Compiles [`POLICY`] (with `-DFAULT` when `fault`), or `None` when clang is missing.
fn object(fault: bool) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("weir-cli-cc-run");
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let name = if fault { "faulting" } else { "good" };
    let src = dir.join(format!("{name}.c"));
    let obj = dir.join(format!("{name}.o"));
    std::fs::write(&src, POLICY).expect("write the source");
    let mut clang = Command::new("clang");
    clang.args(["-O2", "-g0", "-target", "bpf", "-c", "-I"]);
    clang.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cc"));
    if fault {
        clang.arg("-DFAULT");
    }
    let out = match clang.arg(&src).arg("-o").arg(&obj).output() {
        Ok(out) => out,
        Err(e) => {
            weir_bench::report_skipped(
                "weir-cli cc_run",
                &format!("clang not found ({e}); it compiles the test's eBPF policies"),
                Some("apt-get install -y clang"),
            );
            return None;
        }
    };
    assert!(
        out.status.success(),
        "clang failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(obj)
}

fn cc_run(obj: &Path, extra: &[&str]) -> Output {
    Command::new(WEIR)
        .args(["cc", "run", "--policy"])
        .arg(obj)
        .args(["--flows", "2", "--duration-ms", "1"])
        .args(extra)
        .output()
        .expect("run weir")
}

/// Issue 13: a policy program that faults at run time is reported — count per hook and per
/// flow, the first fault's message — and the run exits non-zero unless `--allow-faults`.
#[test]
fn a_faulting_policy_is_reported_and_fails_the_run() {
    let Some(obj) = object(true) else {
        return;
    };
    let out = cc_run(&obj, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[1].starts_with("POLICY FAULTED: "), "{stdout}");
    assert!(
        lines[2].starts_with("  faults by hook  init 0, sent 0, feedback ")
            && lines[2].ends_with(", timeout 0"),
        "{stdout}"
    );
    assert!(lines[3].ends_with("(2 of 2 flows faulted)"), "{stdout}");
    assert!(
        lines[4].starts_with("  first fault     f")
            && lines[4].contains("feedback event at")
            && lines[4].ends_with(": the program returned 7"),
        "{stdout}"
    );
    // The summary is still there, after the faults.
    assert!(stdout.contains("Jain's index"), "{stdout}");
    assert!(
        stderr.contains("the policy program faulted")
            && stderr.contains("the program returned 7")
            && stderr.starts_with("weir: "),
        "{stderr}"
    );

    // --allow-faults: the same report, exit 0.
    let out = cc_run(&obj, &["--allow-faults"]);
    let allowed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{allowed}");
    assert_eq!(allowed, stdout);
}

#[test]
fn a_policy_that_does_not_fault_says_so_and_succeeds() {
    let Some(obj) = object(false) else {
        return;
    };
    let out = cc_run(&obj, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(!stdout.contains("FAULTED"), "{stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("program: ") && last.ends_with(" runs, no faults"),
        "{stdout}"
    );
}
