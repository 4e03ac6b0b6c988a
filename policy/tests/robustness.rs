//! A verified program that misbehaves at run time cannot crash or stall the engine: faults are
//! counted, the last good limits stay, and every output is sanitised.

#[macro_use]
mod common;

use weir_base::{Duration, Instant, Rate};
use weir_congestion::{CongestionControl, Feedback, Limits, PathHint, PathInfo, Sent};
use weir_policy::{BpfPolicy, MAX_WINDOW, ParamHandle};

fn path() -> PathInfo {
    PathInfo {
        mtu: 4096,
        line_rate: Rate::from_gbps(100),
        base_rtt: None,
        paths: 4,
    }
}

fn us(n: u64) -> Instant {
    Instant::from_ps(n * 1_000_000)
}

/// Runs count of the hostile program (its first state word).
fn runs(flow: &BpfPolicy) -> u64 {
    u64::from_le_bytes(flow.state()[..8].try_into().unwrap())
}

const GOOD: Limits = Limits {
    window: Some(1_000_000),
    rate: Some(Rate::from_gbps(10)),
    path_hint: None,
};

#[test]
fn faults_keep_the_last_good_limits_and_outputs_are_sanitised() {
    require_clang!();
    let program = common::load_test_program("hostile").unwrap();
    let params = ParamHandle::new(&[0, 0]).unwrap();
    let mut flow = BpfPolicy::new(&program, &params, us(0), &path());
    assert_eq!(flow.limits(), GOOD);
    assert_eq!(flow.next_timeout(), Some(us(1)));
    assert_eq!(flow.faults(), 0);

    // Division by zero gives 0 (no rate), modulo by zero keeps the dividend (a window of
    // 100e9 bytes): a valid, if odd, result. No trap.
    params.set(0, 1).unwrap();
    flow.on_sent(us(2), &Sent::default());
    assert_eq!(flow.faults(), 0);
    assert_eq!(
        flow.limits(),
        Limits {
            window: Some(100_000_000_000),
            rate: None,
            path_hint: None,
        }
    );
    // The old timer (1 µs) is in the past now: dropped, not left to fire forever.
    assert_eq!(flow.next_timeout(), None);

    // Everything huge: clamped to the line rate and the largest window; the bad hint dropped.
    params.set(0, 2).unwrap();
    flow.on_feedback(us(3), &Feedback::default());
    assert_eq!(
        flow.limits(),
        Limits {
            window: Some(MAX_WINDOW),
            rate: Some(Rate::from_gbps(100)),
            path_hint: None,
        }
    );
    assert_eq!(flow.next_timeout(), Some(Instant::MAX));

    assert_eq!(flow.faults(), 0);

    // Nothing at all: a fault, the clamped limits stay.
    params.set(0, 3).unwrap();
    flow.on_timeout(us(4));
    assert_eq!(flow.faults(), 1);
    assert_eq!(
        flow.last_fault(),
        Some("the program set neither a window nor a rate")
    );
    assert_eq!(flow.limits().rate, Some(Rate::from_gbps(100)));
    assert_eq!(flow.limits().window, Some(MAX_WINDOW));

    // A timer that is always due: dropped, so the engine never spins on it.
    params.set(0, 4).unwrap();
    flow.on_timeout(us(5));
    assert_eq!(flow.next_timeout(), None);
    assert_eq!(flow.limits().rate, Some(Rate::from_bps(5)));
    assert_eq!(flow.limits().window, None);

    // A non-zero return is a fault even with outputs set.
    params.set(0, 5).unwrap();
    flow.on_sent(us(6), &Sent::default());
    assert_eq!(flow.faults(), 2);
    assert_eq!(flow.last_fault(), Some("the program returned 22"));
    assert_eq!(flow.limits().rate, Some(Rate::from_bps(5)));

    // "Negative" numbers are just large ones: clamped; hint 65537 is outside the path range.
    params.set(0, 6).unwrap();
    flow.on_sent(us(7), &Sent::default());
    assert_eq!(flow.limits().rate, Some(Rate::from_gbps(100)));
    assert_eq!(flow.limits().window, Some(MAX_WINDOW));
    assert_eq!(flow.limits().path_hint, None);

    // And back to good behaviour.
    params.set(0, 0).unwrap();
    flow.on_sent(us(8), &Sent::default());
    assert_eq!(flow.limits(), GOOD);
    assert_eq!(flow.next_timeout(), Some(us(9)));
    // INIT and seven events: the program ran every time, faulty or not.
    assert_eq!(runs(&flow), 8);
    assert_eq!(flow.stats().runs, 8);
    assert_eq!(flow.faults(), 2);
}

#[test]
fn an_engine_loop_over_a_hostile_program_always_makes_progress() {
    require_clang!();
    // The engine's shape: fire the controller's timer when due, else send. Whatever the
    // program does, time advances and every call returns.
    let program = common::load_test_program("hostile").unwrap();
    for mode in 0..8 {
        let params = ParamHandle::new(&[mode, 0]).unwrap();
        let mut flow = BpfPolicy::new(&program, &params, us(0), &path());
        let mut now = us(0);
        for _ in 0..10_000 {
            match flow.next_timeout() {
                Some(t) => {
                    assert!(t > now, "mode {mode}: timer {t:?} not after {now:?}");
                    now = t.min(now + Duration::from_micros(1));
                    flow.on_timeout(now);
                }
                None => {
                    now += Duration::from_nanos(100);
                    flow.on_sent(now, &Sent::default());
                }
            }
            let l = flow.limits();
            assert!(l.window.is_some() || l.rate.is_some(), "mode {mode}");
            assert!(l.window.is_none_or(|w| (1..=MAX_WINDOW).contains(&w)));
            assert!(
                l.rate
                    .is_none_or(|r| r.bps() >= 1 && r <= Rate::from_gbps(100))
            );
        }
    }
}

#[test]
fn a_policy_reads_int_records_and_can_steer_paths() {
    require_clang!();
    use weir_congestion::HopTelemetry;
    let program = common::load_test_program("hops").unwrap();
    let params = ParamHandle::new(&[]).unwrap();
    let mut flow = BpfPolicy::new(&program, &params, us(0), &path());
    let hop = |qlen| HopTelemetry {
        qlen,
        ..HopTelemetry::default()
    };
    let hops = [
        hop(10),
        hop(5000),
        hop(20),
        hop(1),
        hop(9999),
        hop(0),
        hop(0),
        hop(0),
        hop(1 << 30),
    ];
    let fb = Feedback {
        hops: &hops[..3],
        ..Feedback::default()
    };
    flow.on_feedback(us(1), &fb);
    assert_eq!(flow.limits().window, Some(5001));
    assert_eq!(flow.limits().path_hint, Some(PathHint { avoid: 1 }));
    assert_eq!(flow.limits().rate, Some(Rate::from_gbps(75)));
    // Only the first eight records reach the program.
    let fb = Feedback {
        hops: &hops,
        ..Feedback::default()
    };
    flow.on_feedback(us(2), &fb);
    assert_eq!(flow.limits().window, Some(10_000));
    assert_eq!(flow.faults(), 0);
}
