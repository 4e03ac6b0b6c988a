//! Runs the built `weir` binary with out-of-range numeric options and asserts that each one is
//! refused while the arguments are parsed: clap's usage-error status (2), and a message that
//! names the flag. Nothing is measured or simulated (every case fails before that), so nothing
//! here depends on timing. Project issue 13: every numeric configuration key range-checked.

use std::process::Command;

const WEIR: &str = env!("CARGO_BIN_EXE_weir");

/// `(arguments, the flag the error must name)`.
type Case<'a> = (&'a [&'a str], &'a str);

/// Runs each case and collects the failures (so one run reports all of them).
fn refused(cases: &[Case<'_>]) {
    let mut failures = Vec::new();
    for &(args, flag) in cases {
        let out = Command::new(WEIR)
            .args(args)
            .output()
            .expect("run the weir binary");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let named =
            stderr.contains(&format!("for '{flag} ")) || stderr.contains(&format!("for '{flag}'"));
        if out.status.code() != Some(2) || !named {
            failures.push(format!(
                "weir {}: status {:?}, stderr: {}",
                args.join(" "),
                out.status.code(),
                stderr.lines().next().unwrap_or("")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "not refused as a usage error naming the flag:\n{}",
        failures.join("\n")
    );
}

#[test]
fn bench_transport_refuses_out_of_range_values() {
    refused(&[
        (&["bench", "transport", "--sizes", "0"], "--sizes"),
        (&["bench", "transport", "--sizes", "-1"], "--sizes"),
        (&["bench", "transport", "--sizes", "64K,2G"], "--sizes"),
        (
            &["bench", "transport", "--sizes", "99999999999G"],
            "--sizes",
        ),
        (&["bench", "transport", "--loss", "1.5"], "--loss"),
        (&["bench", "transport", "--loss", "-0.1"], "--loss"),
        (&["bench", "transport", "--loss", "nan"], "--loss"),
        (
            &["bench", "transport", "--bytes-per-point", "0"],
            "--bytes-per-point",
        ),
        (
            &["bench", "transport", "--bytes-per-point", "99999999999G"],
            "--bytes-per-point",
        ),
        (&["bench", "transport", "--point-secs", "0"], "--point-secs"),
        (
            &["bench", "transport", "--point-secs", "-1"],
            "--point-secs",
        ),
        (&["bench", "transport", "--point-secs=-1"], "--point-secs"),
        (
            &["bench", "transport", "--point-secs", "nan"],
            "--point-secs",
        ),
        (
            &["bench", "transport", "--point-secs", "inf"],
            "--point-secs",
        ),
        (
            &["bench", "transport", "--point-secs", "1e30"],
            "--point-secs",
        ),
        (&["bench", "transport", "--window", "0"], "--window"),
        (&["bench", "transport", "--window", "-1"], "--window"),
        (&["bench", "transport", "--repeat", "0"], "--repeat"),
        (&["bench", "transport", "--pingpong", "0"], "--pingpong"),
        (&["bench", "transport", "--pingpong", "-1"], "--pingpong"),
        (&["bench", "transport", "--seed", "-1"], "--seed"),
    ]);
}

#[test]
fn bench_incast_refuses_out_of_range_values() {
    refused(&[
        (&["bench", "incast", "--senders", "0"], "--senders"),
        (&["bench", "incast", "--senders", "257"], "--senders"),
        (&["bench", "incast", "--size", "0"], "--size"),
        (&["bench", "incast", "--size", "2G"], "--size"),
        (&["bench", "incast", "--size", "99999999999G"], "--size"),
        (&["bench", "incast", "--messages", "0"], "--messages"),
        (&["bench", "incast", "--messages", "1"], "--messages"),
        (
            &["bench", "incast", "--messages", "18446744073709551615"],
            "--messages",
        ),
        (&["bench", "incast", "--window", "0"], "--window"),
        (&["bench", "incast", "--rcvbuf", "4G"], "--rcvbuf"),
        (&["bench", "incast", "--rcvbuf", "99999999999G"], "--rcvbuf"),
        (&["bench", "incast", "--rcvbuf", "-1"], "--rcvbuf"),
        (&["bench", "incast", "--timeout", "0"], "--timeout"),
        (&["bench", "incast", "--timeout", "-1"], "--timeout"),
        (&["bench", "incast", "--timeout", "nan"], "--timeout"),
        (&["bench", "incast", "--timeout", "inf"], "--timeout"),
        (&["bench", "incast", "--repeat", "0"], "--repeat"),
        (&["bench", "incast", "--repeat", "101"], "--repeat"),
    ]);
}

#[test]
fn bench_nccl_abi_refuses_out_of_range_values() {
    refused(&[
        (&["bench", "nccl-abi", "--sizes", "0"], "--sizes"),
        (&["bench", "nccl-abi", "--sizes", "2G"], "--sizes"),
        (&["bench", "nccl-abi", "--loss", "1.5"], "--loss"),
        (&["bench", "nccl-abi", "--inflight", "0"], "--inflight"),
        (&["bench", "nccl-abi", "--inflight", "31"], "--inflight"),
        (
            &["bench", "nccl-abi", "--bytes-per-point", "0"],
            "--bytes-per-point",
        ),
        (&["bench", "nccl-abi", "--point-secs", "0"], "--point-secs"),
        (&["bench", "nccl-abi", "--point-secs", "-1"], "--point-secs"),
        (
            &["bench", "nccl-abi", "--point-secs", "nan"],
            "--point-secs",
        ),
        (&["bench", "nccl-abi", "--repeat", "0"], "--repeat"),
    ]);
}

#[test]
fn bench_collectives_refuse_out_of_range_values() {
    for op in ["allreduce", "allgather", "reduce-scatter"] {
        refused(&[
            (&["bench", op, "--ranks", "0"], "--ranks"),
            (&["bench", op, "-n", "1"], "--ranks"),
            (&["bench", op, "--ranks", "65"], "--ranks"),
            (&["bench", op, "--sizes", "0"], "--sizes"),
            (&["bench", op, "--sizes", "8,8G"], "--sizes"),
            (&["bench", op, "--sizes", "99999999999G"], "--sizes"),
            (&["bench", op, "--budget", "0"], "--budget"),
            (&["bench", op, "--budget", "-1"], "--budget"),
            (&["bench", op, "--budget", "nan"], "--budget"),
            (&["bench", op, "--budget", "inf"], "--budget"),
            (&["bench", op, "--budget", "61"], "--budget"),
            (&["bench", op, "--repeat", "0"], "--repeat"),
            (&["bench", op, "--timeout", "0"], "--timeout"),
            (
                &["bench", op, "--timeout", "18446744073709551615"],
                "--timeout",
            ),
        ]);
    }
}

#[test]
fn run_refuses_out_of_range_values() {
    refused(&[
        (&["run", "-n", "0", "--", "true"], "--ranks"),
        (&["run", "-n", "-1", "--", "true"], "--ranks"),
        (
            &["run", "-n", "2", "--grace", "-1", "--", "true"],
            "--grace",
        ),
        (
            &["run", "-n", "2", "--grace", "nan", "--", "true"],
            "--grace",
        ),
        (
            &["run", "-n", "2", "--grace", "inf", "--", "true"],
            "--grace",
        ),
        (
            &["run", "-n", "2", "--grace", "1e30", "--", "true"],
            "--grace",
        ),
        (
            &["run", "-n", "2", "--master-port", "0", "--", "true"],
            "--master-port",
        ),
        (
            &["run", "-n", "2", "--master-port", "70000", "--", "true"],
            "--master-port",
        ),
    ]);
}

#[test]
fn sim_refuses_out_of_range_values() {
    refused(&[
        (&["sim", "run", "--sample-us", "0"], "--sample-us"),
        (
            &["sim", "run", "--sample-us", "18446744073709551615"],
            "--sample-us",
        ),
        (&["sim", "sweep", "-j", "0"], "--jobs"),
        (&["sim", "sweep", "--jobs", "100000"], "--jobs"),
        (&["sim", "sweep", "--seeds", "5..3"], "--seeds"),
        (&["sim", "sweep", "--seeds", "-1"], "--seeds"),
        (
            &["sim", "sweep", "--seeds", "0..18446744073709551615"],
            "--seeds",
        ),
        (
            &["sim", "sweep", "--seeds", "9223372036854775808"],
            "--seeds",
        ),
        (&["sim", "sweep", "--set", "switch.routing"], "--set"),
        (&["sim", "sweep", "--set", "=1"], "--set"),
        (&["sim", "sweep", "--set", "seed=1,2"], "--set"),
    ]);
}

#[test]
fn cc_run_refuses_out_of_range_values() {
    refused(&[
        (&["cc", "run", "--flows", "5000"], "--flows"),
        (&["cc", "run", "--flows", "18446744073709551615"], "--flows"),
        (
            &["cc", "run", "--incast", "18446744073709551615"],
            "--incast",
        ),
        (&["cc", "run", "--stagger-us", "-1"], "--stagger-us"),
        (&["cc", "run", "--stagger-us", "nan"], "--stagger-us"),
        (
            &["cc", "run", "--incast", "2", "--incast-at-ms", "-1"],
            "--incast-at-ms",
        ),
        (
            &["cc", "run", "--incast", "2", "--incast-ms", "0"],
            "--incast-ms",
        ),
        (
            &["cc", "run", "--incast", "2", "--incast-ms", "nan"],
            "--incast-ms",
        ),
        (&["cc", "run", "--duration-ms", "0"], "--duration-ms"),
        (&["cc", "run", "--duration-ms", "-1"], "--duration-ms"),
        (&["cc", "run", "--duration-ms", "1e30"], "--duration-ms"),
        (&["cc", "run", "--link-gbps", "0"], "--link-gbps"),
        (&["cc", "run", "--link-gbps", "inf"], "--link-gbps"),
        (&["cc", "run", "--rtt-us", "-1"], "--rtt-us"),
        (&["cc", "run", "--rtt-us", "nan"], "--rtt-us"),
        (&["cc", "run", "--host-delay-us", "-1"], "--host-delay-us"),
        (&["cc", "run", "--buffer-kb", "-1"], "--buffer-kb"),
        (&["cc", "run", "--kmin-kb", "nan"], "--kmin-kb"),
        (&["cc", "run", "--kmax-kb", "-1"], "--kmax-kb"),
        (&["cc", "run", "--pmax", "1.5"], "--pmax"),
        (&["cc", "run", "--pmax", "nan"], "--pmax"),
        (&["cc", "run", "--loss", "1.5"], "--loss"),
        (&["cc", "run", "--loss", "-0.1"], "--loss"),
        (&["cc", "run", "--ack-every", "0"], "--ack-every"),
        (&["cc", "run", "--mtu", "0"], "--mtu"),
        (&["cc", "run", "--mtu", "1000000"], "--mtu"),
        (&["cc", "run", "--sample-us", "0"], "--sample-us"),
        (&["cc", "run", "--sample-us", "-1"], "--sample-us"),
        (&["cc", "run", "--step", "5:0"], "--step"),
        (&["cc", "run", "--step", "5:nan"], "--step"),
        (&["cc", "run", "--step", "-1:10"], "--step"),
        (&["cc", "run", "--step", "5"], "--step"),
    ]);
}

/// Cross-option limits are checked after parsing, before anything runs, still naming the flags.
#[test]
fn cc_run_refuses_a_trace_too_large_to_hold() {
    let out = Command::new(WEIR)
        .args(["cc", "run", "--sample-us", "0.001"])
        .output()
        .expect("run the weir binary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--sample-us"), "{stderr}");
}
