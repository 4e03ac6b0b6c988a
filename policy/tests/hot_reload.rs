//! Parameters change without restarting flows: a write to the shared handle is what every
//! flow's program sees from its next event on, and not before.

#[macro_use]
mod common;

use weir_base::{Duration, Instant, Rate};
use weir_congestion::{CongestionControl, DcqcnParams, Feedback, PathInfo, Sent};
use weir_policy::{BpfPolicy, ParamError, ParamHandle};

fn path() -> PathInfo {
    PathInfo {
        mtu: 4096,
        line_rate: Rate::from_gbps(100),
        base_rtt: None,
        paths: 1,
    }
}

#[test]
fn a_reload_takes_effect_at_the_next_event_of_every_flow() {
    require_clang!();
    let program = common::load_test_program("param_rate").unwrap();
    assert_eq!(program.param_names(), ["rate_bps", "window"]);
    let params =
        ParamHandle::named(&program, &[("rate_bps", 1_000_000), ("window", 64_000)]).unwrap();
    let t0 = Instant::ZERO;
    let mut a = BpfPolicy::new(&program, &params, t0, &path());
    let mut b = BpfPolicy::new(&program, &params, t0, &path());
    for f in [&a, &b] {
        assert_eq!(f.limits().rate, Some(Rate::from_mbps(1)));
        assert_eq!(f.limits().window, Some(64_000));
    }
    let gen_before = params.generation();
    params.set_named(&program, "rate_bps", 7_000_000).unwrap();
    assert!(params.generation() > gen_before);
    // Not before the next event...
    assert_eq!(a.limits().rate, Some(Rate::from_mbps(1)));
    // ...and from it on, for each flow.
    a.on_sent(Instant::from_ps(1), &Sent::default());
    assert_eq!(a.limits().rate, Some(Rate::from_mbps(7)));
    assert_eq!(b.limits().rate, Some(Rate::from_mbps(1)));
    b.on_feedback(Instant::from_ps(1), &Feedback::default());
    assert_eq!(b.limits().rate, Some(Rate::from_mbps(7)));
    // The program saw the new generation.
    let seen = u32::from_le_bytes(a.state()[..4].try_into().unwrap());
    assert_eq!(u64::from(seen), params.generation());
    // A whole new vector.
    params.store(&[2_000_000]).unwrap();
    a.on_timeout(Instant::from_ps(2));
    assert_eq!(a.limits().rate, Some(Rate::from_mbps(2)));
    assert_eq!(a.limits().window, None);
    assert_eq!(params.values(), vec![2_000_000]);
}

#[test]
fn bad_parameter_writes_are_refused() {
    require_clang!();
    let program = common::load_test_program("param_rate").unwrap();
    let params = ParamHandle::new(&[1]).unwrap();
    assert_eq!(
        params.set_named(&program, "rate", 5),
        Err(ParamError::Unknown("rate".into()))
    );
    assert_eq!(params.set(32, 5), Err(ParamError::Index(32)));
    assert_eq!(params.store(&[0; 33]), Err(ParamError::TooMany(33)));
    assert!(ParamHandle::named(&program, &[("nope", 1)]).is_err());
    assert_eq!(params.values(), vec![1]);
}

/// The DCQCN example picks up a new minimum rate and decrease factor mid-flow.
#[test]
fn dcqcn_parameters_reload_mid_flow() {
    require_clang!();
    let program = common::example("dcqcn");
    let p = DcqcnParams::default();
    let values = weir_policy::twins::dcqcn(&p);
    let params = ParamHandle::new(&values).unwrap();
    let mut flow = BpfPolicy::new(&program, &params, Instant::ZERO, &path());
    let cnp = Feedback {
        cnp: true,
        ..Feedback::default()
    };
    let us = |n: u64| Instant::ZERO + Duration::from_micros(n);
    flow.on_feedback(us(1), &cnp);
    assert_eq!(flow.limits().rate, Some(Rate::from_gbps(50)));
    // Cuts may now keep 90 %, and never go below 40 Gb/s.
    params.set_named(&program, "rpg_min_dec_fac", 90).unwrap();
    params
        .set_named(&program, "rpg_min_rate_bps", 40_000_000_000)
        .unwrap();
    flow.on_feedback(us(10), &cnp);
    assert_eq!(flow.limits().rate, Some(Rate::from_gbps(45)));
    flow.on_feedback(us(20), &cnp);
    assert_eq!(flow.limits().rate, Some(Rate::from_mbps(40_500)));
    flow.on_feedback(us(30), &cnp);
    assert_eq!(flow.limits().rate, Some(Rate::from_gbps(40)));
    assert_eq!(flow.faults(), 0);
}

/// The policy of `examples/cc/README.md` loads, and its parameter works by name.
#[test]
fn the_readme_example_runs() {
    require_clang!();
    let program = common::load_test_program("readme_example").unwrap();
    let params = ParamHandle::named(&program, &[("floor_bps", 30_000_000_000)]).unwrap();
    let mut flow = BpfPolicy::new(&program, &params, Instant::ZERO, &path());
    let cnp = Feedback {
        cnp: true,
        ..Feedback::default()
    };
    flow.on_feedback(Instant::from_ps(1), &cnp);
    assert_eq!(flow.limits().rate, Some(Rate::from_gbps(50)));
    flow.on_feedback(Instant::from_ps(2), &cnp);
    assert_eq!(flow.limits().rate, Some(Rate::from_gbps(30)));
}

/// Declared defaults (`name=value`) fill what the loader is not given; a default that is not
/// a number is refused at load, naming the parameter.
#[test]
fn declared_defaults_apply_and_bad_ones_are_refused() {
    require_clang!();
    let program = common::load_test_program("defaults").unwrap();
    assert_eq!(program.param_names(), ["rate_bps", "window"]);
    assert_eq!(program.param_defaults(), [25_000_000_000, 65_536]);
    let params = ParamHandle::named(&program, &[("window", 4096)]).unwrap();
    let flow = BpfPolicy::new(&program, &params, Instant::ZERO, &path());
    assert_eq!(flow.limits().rate, Some(Rate::from_gbps(25)));
    assert_eq!(flow.limits().window, Some(4096));
    let e = common::load_test_program("bad_default").unwrap_err();
    assert!(e.to_string().contains("`rate_bps`"), "{e}");
    assert!(e.to_string().contains("fast"), "{e}");
}

/// Without clang a test that compiles C passes as skipped, saying why and how to install it:
/// this binary runs one such test again with a `PATH` where no clang can be found.
#[test]
fn a_missing_clang_skips_with_the_reason_and_the_install_command() {
    let empty = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-clang-path");
    std::fs::create_dir_all(&empty).expect("scratch directory");
    let test = "dcqcn_parameters_reload_mid_flow";
    let out = std::process::Command::new(std::env::current_exe().expect("current_exe"))
        .args([test, "--exact"])
        .env("PATH", &empty)
        .output()
        .expect("run this test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "{stdout}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("SKIPPED weir-policy"))
        .unwrap_or_else(|| panic!("no SKIPPED line:\n{stderr}"));
    assert!(line.contains(test), "{line}");
    assert!(line.contains("clang not found"), "{line}");
    assert!(line.contains("apt-get install -y clang"), "{line}");
}
