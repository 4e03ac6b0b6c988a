//! Property: whatever the transport feeds a built-in controller (any time steps, any field
//! values, huge or zero, any parameters its specs accept), its [`Limits`] stay usable: a
//! window of at least one byte and/or a positive rate (never neither), a rate within
//! [minimum rate, line rate] for DCQCN, and a timer that is never already due after an input.
//! Every built-in runs here: Fixed, DCQCN, TIMELY, Swift, HPCC, NSCC and RCCC.

use proptest::prelude::*;
use weir_base::{Duration, Instant, Rate};
use weir_congestion::{
    Builtin, CcConfig, CcFactory, CongestionControl, DcqcnParams, Feedback, HopTelemetry,
    HpccParams, Limits, LossKind, NsccParams, Params, PathInfo, RcccParams, Sent, SwiftParams,
    TimelyParams, Unit,
};

#[derive(Clone, Debug)]
enum Op {
    /// Let time pass (picoseconds).
    Wait(u64),
    Sent(Sent),
    Feedback(Fb),
    /// `on_timeout` at the controller's own deadline, if it has one.
    Due,
    /// `on_timeout` at now plus this many picoseconds.
    TimeoutIn(u64),
}

/// A [`Feedback`] without the borrowed INT slice (the test supplies it).
#[derive(Clone, Debug)]
struct Fb {
    acked_bytes: u64,
    acked_packets: u32,
    ecn_bytes: u64,
    cnp: bool,
    rtt: Option<u64>,
    loss: Option<LossKind>,
    lost_bytes: u64,
    rto: bool,
    hops: usize,
    in_flight: u64,
    host_delay: Option<u64>,
}

fn any_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 0u64..4_000_000,
        1 => Just(0u64),
        1 => any::<u64>(),
        1 => Just(u64::MAX),
    ]
}

fn any_loss() -> impl Strategy<Value = Option<LossKind>> {
    prop_oneof![
        3 => Just(None),
        1 => Just(Some(LossKind::Detected)),
        1 => Just(Some(LossKind::Trimmed)),
        1 => Just(Some(LossKind::TrimmedLastHop)),
        1 => Just(Some(LossKind::ReceiverNoResources)),
    ]
}

fn any_fb() -> impl Strategy<Value = Fb> {
    (
        (any_u64(), any::<u32>(), any_u64(), any::<bool>()),
        (proptest::option::of(any_u64()), any_loss(), any_u64()),
        (
            any::<bool>(),
            0usize..4,
            any_u64(),
            proptest::option::of(any_u64()),
        ),
    )
        .prop_map(
            |(
                (acked_bytes, acked_packets, ecn_bytes, cnp),
                (rtt, loss, lost_bytes),
                (rto, hops, in_flight, host_delay),
            )| Fb {
                host_delay,
                acked_bytes,
                acked_packets,
                ecn_bytes,
                cnp,
                rtt,
                loss,
                lost_bytes,
                rto,
                hops,
                in_flight,
            },
        )
}

fn any_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any_u64().prop_map(Op::Wait),
        3 => (any::<u32>(), any::<u16>(), any::<bool>(), any_u64()).prop_map(
            |(bytes, path, retransmit, in_flight)| Op::Sent(Sent { bytes, path, retransmit, in_flight })
        ),
        4 => any_fb().prop_map(Op::Feedback),
        2 => Just(Op::Due),
        1 => any_u64().prop_map(Op::TimeoutIn),
    ]
}

fn any_rate() -> impl Strategy<Value = Rate> {
    prop_oneof![
        1 => Just(Rate::ZERO),
        1 => Just(Rate::MAX),
        4 => (1u64..2_000_000_000_000).prop_map(Rate::from_bps),
        1 => any::<u64>().prop_map(Rate::from_bps),
    ]
}

fn any_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        1 => Just(Duration::ZERO),
        4 => (1u64..1_000_000_000).prop_map(Duration::from_ps),
        1 => any::<u64>().prop_map(Duration::from_ps),
    ]
}

/// Default parameters half of the time, anything at all the other half.
fn any_dcqcn() -> impl Strategy<Value = DcqcnParams> {
    let odd = (
        (
            any::<u16>(),
            any_duration(),
            any::<f64>(),
            any::<u8>(),
            any::<u8>(),
        ),
        (
            any_rate(),
            any_duration(),
            any_duration(),
            any_u64(),
            any::<u32>(),
        ),
        (any_rate(), any_rate(), any::<bool>(), any_duration()),
        (any::<bool>(), any::<bool>()),
    )
        .prop_map(|(a, b, c, d)| {
            let mut p = DcqcnParams::default();
            (
                p.dce_tcp_g,
                p.dce_tcp_rtt,
                p.initial_alpha,
                p.rpg_gd,
                p.rpg_min_dec_fac,
            ) = a;
            (
                p.rpg_min_rate,
                p.rate_reduce_monitor_period,
                p.rpg_time_reset,
                p.rpg_byte_reset,
                p.rpg_threshold,
            ) = b;
            (
                p.rpg_ai_rate,
                p.rpg_hai_rate,
                p.clamp_tgt_rate,
                p.np_min_time_between_cnps,
            ) = c;
            (p.trim_as_cnp, p.loss_as_cnp) = d;
            p
        });
    prop_oneof![
        Just(DcqcnParams::default()),
        Just(DcqcnParams::paper()),
        odd
    ]
}

/// Parameters through their named specs: each one at its default, its minimum, its maximum
/// or anywhere in between (switches 0 or 1).
fn any_named<P: Params + 'static>() -> impl Strategy<Value = P> {
    let n = P::specs().len();
    proptest::collection::vec((0u8..4, 0.0f64..=1.0), n).prop_map(|picks| {
        let mut p = P::default();
        for (spec, (how, frac)) in P::specs().iter().zip(picks) {
            let v = match how {
                0 => continue,
                1 => spec.min,
                2 => spec.max,
                _ => spec.min + frac * (spec.max - spec.min),
            };
            let v = if spec.unit == Unit::Bool {
                v.round()
            } else {
                v
            };
            p.set(spec.name, v)
                .unwrap_or_else(|e| panic!("{}: in-range value refused: {e}", P::ALGORITHM));
        }
        p
    })
}

fn any_config() -> impl Strategy<Value = CcConfig> {
    prop_oneof![
        2 => any_named::<TimelyParams>().prop_map(CcConfig::Timely),
        2 => any_named::<SwiftParams>().prop_map(CcConfig::Swift),
        2 => any_named::<HpccParams>().prop_map(CcConfig::Hpcc),
        2 => any_named::<NsccParams>().prop_map(CcConfig::Nscc),
        2 => any_named::<RcccParams>().prop_map(CcConfig::Rccc),
        3 => any_dcqcn().prop_map(CcConfig::Dcqcn),
        1 => (any_u64(), proptest::option::of(any_rate()))
            .prop_map(|(window, rate)| CcConfig::Fixed { window, rate }),
    ]
}

fn any_path() -> impl Strategy<Value = PathInfo> {
    (
        any::<u32>(),
        any_rate(),
        proptest::option::of(any_duration()),
        any::<u16>(),
    )
        .prop_map(|(mtu, line_rate, base_rtt, paths)| PathInfo {
            mtu,
            line_rate,
            base_rtt,
            paths,
        })
}

/// Checks the limits, and that the timer is not due at or before `seen`, the latest input.
fn check(cc: &Builtin, config: &CcConfig, path: &PathInfo, seen: Instant) {
    let Limits { window, rate, .. } = cc.limits();
    if let Some(w) = window {
        assert!(w >= 1, "window {w}");
    }
    match (config, cc) {
        (CcConfig::Dcqcn(p), Builtin::Dcqcn(d)) => {
            assert_eq!(window, None);
            let line = path.line_rate.bps().max(1);
            let min = p.rpg_min_rate.bps().clamp(1, line);
            let r = rate.expect("DCQCN always paces").bps();
            assert!(
                (min..=line).contains(&r),
                "rate {r} outside [{min}, {line}]"
            );
            assert!(d.target_rate().bps() >= r && d.target_rate().bps() <= line);
            assert!((0.0..=1.0).contains(&d.alpha()), "alpha {}", d.alpha());
        }
        (CcConfig::Fixed { .. }, Builtin::Fixed(_)) => {
            assert!(window.is_some());
            assert!(rate.is_none_or(|r| r.bps() > 0));
        }
        (CcConfig::Timely(_), Builtin::Timely(_))
        | (CcConfig::Swift(_), Builtin::Swift(_))
        | (CcConfig::Hpcc(_), Builtin::Hpcc(_))
        | (CcConfig::Nscc(_), Builtin::Nscc(_))
        | (CcConfig::Rccc(_), Builtin::Rccc(_)) => {
            assert!(
                window.is_some() || rate.is_some(),
                "{}: no limit",
                cc.name()
            );
            assert!(rate.is_none_or(|r| r.bps() > 0), "{}: rate 0", cc.name());
        }
        _ => panic!("the factory built the wrong controller"),
    }
    if let Some(t) = cc.next_timeout() {
        assert!(t > seen, "timer {t:?} already due at {seen:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn limits_stay_positive_and_bounded(
        config in any_config(),
        path in any_path(),
        start in any_u64(),
        ops in proptest::collection::vec(any_op(), 1..200),
    ) {
        let hops = [HopTelemetry {
            qlen: u64::MAX,
            rate: Rate::ZERO,
            tx_bytes: u64::MAX,
            ts: Instant::MAX,
        }; 3];
        let mut now = Instant::from_ps(start);
        let mut cc = config.build(now, &path);
        check(&cc, &config, &path, now);
        // Time of the latest call into the controller.
        let mut seen = now;
        for op in ops {
            match op {
                Op::Wait(ps) => {
                    now += Duration::from_ps(ps);
                    check(&cc, &config, &path, seen);
                    continue;
                }
                Op::Sent(s) => cc.on_sent(now, &s),
                Op::Feedback(f) => {
                    let fb = Feedback {
                        acked_bytes: f.acked_bytes,
                        acked_packets: f.acked_packets,
                        ecn_bytes: f.ecn_bytes,
                        cnp: f.cnp,
                        rtt: f.rtt.map(Duration::from_ps),
                        host_delay: f.host_delay.map(Duration::from_ps),
                        hops: &hops[..f.hops],
                        loss: f.loss,
                        lost_bytes: f.lost_bytes,
                        rto: f.rto,
                        path: 0,
                        in_flight: f.in_flight,
                    };
                    cc.on_feedback(now, &fb);
                }
                Op::Due => {
                    if let Some(t) = cc.next_timeout() {
                        now = t;
                        cc.on_timeout(now);
                    }
                }
                Op::TimeoutIn(ps) => {
                    now += Duration::from_ps(ps);
                    cc.on_timeout(now);
                }
            }
            seen = now;
            check(&cc, &config, &path, seen);
        }
    }
}

#[test]
fn the_factory_builds_the_configured_controller() {
    let path = PathInfo {
        mtu: 4096,
        line_rate: Rate::from_gbps(400),
        base_rtt: None,
        paths: 8,
    };
    let cc = CcConfig::Dcqcn(DcqcnParams::default()).build(Instant::ZERO, &path);
    assert_eq!(cc.name(), "dcqcn");
    assert_eq!(cc.limits().rate, Some(Rate::from_gbps(400)));
    assert_eq!(cc.limits().window, None);
    let cc = CcConfig::default().build(Instant::ZERO, &path);
    assert_eq!(cc.name(), "fixed");
    // The default window is the path's bandwidth × 40 µs: 2 MB at 400 Gb/s.
    assert_eq!(cc.limits().window, Some(2_000_000));
}
