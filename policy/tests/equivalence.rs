//! The shipped example programs compute exactly what their native twins compute: after every
//! event of long, seeded random event sequences (sends, CNPs, ECN echoes, RTT samples with and
//! without host delay, INT records, trims, losses, RTOs, timers on time and late, time going
//! backwards, huge jumps), the eBPF policy's `Limits` and timer are bit-identical to the native
//! controller's, and so is the state behind them (rates, α, windows, counters) at the end.
//! The sequences run on each engine: the JIT (unchecked) and rbpf's interpreter; the other
//! tests use the default engine (the bounds-checked JIT in debug builds).

#[macro_use]
mod common;

use common::Rng;

use weir_base::{Duration, Instant, Rate};
use weir_congestion::swift::SwiftFixed;
use weir_congestion::{
    CongestionControl, Dcqcn, DcqcnParams, Feedback, HopTelemetry, LossKind, PathInfo, Sent, Swift,
    SwiftParams,
};
use weir_policy::{BpfPolicy, ParamHandle, Program};

use weir_policy::twins::{dcqcn as dcqcn_params, swift as swift_params};

const DCQCN_PARAM_NAMES: [&str; 16] = [
    "dce_tcp_g",
    "dce_tcp_rtt_ps",
    "initial_alpha_q32",
    "rpg_gd",
    "rpg_min_dec_fac",
    "rpg_min_rate_bps",
    "rate_reduce_monitor_period_ps",
    "rpg_time_reset_ps",
    "rpg_byte_reset",
    "rpg_threshold",
    "rpg_ai_rate_bps",
    "rpg_hai_rate_bps",
    "clamp_tgt_rate",
    "np_min_time_between_cnps_ps",
    "trim_as_cnp",
    "loss_as_cnp",
];

/// This test's own draws on the shared SplitMix64 generator.
impl Rng {
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// Mostly small, sometimes anything: the values that break arithmetic.
    fn wild(&mut self) -> u64 {
        match self.below(10) {
            0 => 0,
            1 => u64::MAX,
            2 => self.next(),
            3 => self.next() >> self.below(64),
            _ => self.below(1_000_000),
        }
    }
}

fn random_params(rng: &mut Rng) -> DcqcnParams {
    let mut p = match rng.below(3) {
        0 => DcqcnParams::connectx(),
        1 => DcqcnParams::paper(),
        _ => DcqcnParams::default(),
    };
    let us = |rng: &mut Rng, max: u64| Duration::from_ps(rng.below(max) * 1_000_000);
    if rng.chance(60) {
        p.dce_tcp_g = rng.below(1100) as u16;
        p.dce_tcp_rtt = if rng.chance(10) {
            Duration::from_ps(rng.wild())
        } else {
            us(rng, 60)
        };
        p.initial_alpha = rng.below(1001) as f64 / 1000.0;
        p.rpg_gd = rng.below(80) as u8;
        p.rpg_min_dec_fac = rng.below(120) as u8;
        p.rpg_min_rate = Rate::from_bps(if rng.chance(10) {
            rng.wild()
        } else {
            rng.below(1 << 34)
        });
        p.rate_reduce_monitor_period = us(rng, 60);
        p.rpg_time_reset = if rng.chance(10) {
            Duration::ZERO
        } else {
            us(rng, 400)
        };
        p.rpg_byte_reset = if rng.chance(10) {
            0
        } else {
            rng.below(1 << 20)
        };
        p.rpg_threshold = if rng.chance(10) {
            rng.next() as u32
        } else {
            rng.below(8) as u32
        };
        p.rpg_ai_rate = Rate::from_bps(if rng.chance(10) {
            rng.wild()
        } else {
            rng.below(1 << 28)
        });
        p.rpg_hai_rate = Rate::from_bps(if rng.chance(10) {
            rng.wild()
        } else {
            rng.below(1 << 30)
        });
        p.clamp_tgt_rate = rng.chance(30);
        p.np_min_time_between_cnps = us(rng, 60);
        p.trim_as_cnp = rng.chance(70);
        p.loss_as_cnp = rng.chance(30);
    }
    p
}

fn random_path(rng: &mut Rng) -> PathInfo {
    let line = match rng.below(8) {
        0 => Rate::ZERO,
        1 => Rate::MAX,
        2 => Rate::from_bps(rng.wild()),
        3 => Rate::from_gbps(400),
        4 => Rate::from_gbps(25),
        _ => Rate::from_gbps(100),
    };
    PathInfo {
        mtu: 4096,
        line_rate: line,
        base_rtt: Some(Duration::from_micros(8)),
        paths: 4,
    }
}

/// Drives both controllers through the same `events` random events, checking after each.
fn run_pair(
    seed: u64,
    events: usize,
    program: &Program,
    params: DcqcnParams,
    path: PathInfo,
    rng: &mut Rng,
) {
    let start = Instant::from_ps(rng.below(1 << 40));
    let mut native = Dcqcn::new(start, &path, params);
    let handle = ParamHandle::new(&dcqcn_params(&params)).unwrap();
    let mut ebpf = BpfPolicy::new(program, &handle, start, &path);
    let hops = [HopTelemetry::default(); 3];
    let mut now = start;
    let check = |native: &Dcqcn, ebpf: &BpfPolicy, step: usize, what: &str| {
        assert_eq!(
            native.limits(),
            ebpf.limits(),
            "seed {seed} step {step} ({what}): limits differ; {params:?} {path:?}"
        );
        assert_eq!(
            native.next_timeout(),
            ebpf.next_timeout(),
            "seed {seed} step {step} ({what}): timers differ; {params:?} {path:?}"
        );
        assert_eq!(ebpf.faults(), 0, "{:?}", ebpf.last_fault());
    };
    check(&native, &ebpf, 0, "init");
    // Busy periods: CNPs and marks come in bursts.
    let mut congested = rng.chance(50);
    for step in 1..=events {
        if rng.chance(2) {
            congested = !congested;
        }
        // Let time pass: packet gaps, sometimes long silences, rarely enormous jumps or a step
        // back.
        let gap = match rng.below(100) {
            0 => rng.wild(),
            1..=5 => rng.below(1_000_000_000),
            6..=7 => 0,
            _ => rng.below(400_000),
        };
        now = if rng.chance(1) {
            Instant::from_ps(now.as_ps().saturating_sub(rng.below(10_000_000)))
        } else {
            now + Duration::from_ps(gap)
        };
        let what;
        match rng.below(10) {
            0..=4 => {
                let bytes = match rng.below(20) {
                    0 => rng.next() as u32,
                    1 => rng.below(1 << 24) as u32,
                    _ => 4096,
                };
                let sent = Sent {
                    bytes,
                    path: rng.below(4) as u16,
                    retransmit: rng.chance(5),
                    in_flight: rng.below(1 << 22),
                };
                native.on_sent(now, &sent);
                ebpf.on_sent(now, &sent);
                what = "sent";
            }
            5..=7 => {
                let loss = match rng.below(12) {
                    0 => Some(LossKind::Detected),
                    1 => Some(LossKind::Trimmed),
                    2 => Some(LossKind::TrimmedLastHop),
                    3 => Some(LossKind::ReceiverNoResources),
                    _ => None,
                };
                let fb = Feedback {
                    acked_bytes: rng.below(1 << 20),
                    acked_packets: rng.below(64) as u32,
                    ecn_bytes: if congested && rng.chance(40) {
                        rng.wild().max(1)
                    } else {
                        0
                    },
                    cnp: congested && rng.chance(30),
                    rtt: rng.chance(50).then(|| Duration::from_ps(rng.wild())),
                    host_delay: rng
                        .chance(10)
                        .then(|| Duration::from_ps(rng.below(1 << 30))),
                    hops: &hops[..rng.below(4) as usize],
                    loss,
                    lost_bytes: if loss.is_some() { 4096 } else { 0 },
                    rto: rng.chance(3),
                    path: rng.below(4) as u16,
                    in_flight: rng.below(1 << 22),
                };
                native.on_feedback(now, &fb);
                ebpf.on_feedback(now, &fb);
                what = "feedback";
            }
            8 => {
                // The transport's timer fires on time.
                if let Some(t) = native.next_timeout() {
                    now = now.max(t);
                }
                native.on_timeout(now);
                ebpf.on_timeout(now);
                what = "timeout";
            }
            _ => {
                native.on_timeout(now);
                ebpf.on_timeout(now);
                what = "late or early timeout";
            }
        }
        check(&native, &ebpf, step, what);
    }
    // The state behind the outputs agrees too (offsets of `struct dcqcn_state`).
    let state = ebpf.state();
    let word = |at: usize| u64::from_le_bytes(state[at..at + 8].try_into().unwrap());
    assert_eq!(native.rate().bps(), word(0), "seed {seed}: R_C");
    assert_eq!(native.target_rate().bps(), word(8), "seed {seed}: R_T");
    assert_eq!(native.alpha_q32(), word(16), "seed {seed}: alpha");
    let stats = native.stats();
    assert_eq!(
        (stats.cnps, stats.cuts, stats.increases),
        (word(88), word(96), word(104)),
        "seed {seed}: counters"
    );
}

#[test]
fn dcqcn_example_declares_its_parameters() {
    require_clang!();
    let program = common::example("dcqcn");
    assert_eq!(program.param_names(), DCQCN_PARAM_NAMES);
    assert_eq!(program.section(), "weir_cc");
    let report = program.report();
    assert!(report.longest_path < report.insns, "{report:?}");
    assert!(report.helpers.is_empty());
}

#[test]
fn dcqcn_program_equals_native_dcqcn_on_default_parameters() {
    require_clang!();
    let path = PathInfo {
        mtu: 4096,
        line_rate: Rate::from_gbps(100),
        base_rtt: Some(Duration::from_micros(8)),
        paths: 4,
    };
    for program in common::engines(&common::example("dcqcn")) {
        for seed in 0..40 {
            let mut rng = Rng(seed);
            run_pair(
                seed,
                5_000,
                &program,
                DcqcnParams::default(),
                path,
                &mut rng,
            );
        }
    }
}

#[test]
fn dcqcn_program_equals_native_dcqcn_on_random_parameters_and_paths() {
    require_clang!();
    for program in common::engines(&common::example("dcqcn")) {
        for seed in 1_000..1_400 {
            let mut rng = Rng(seed);
            let params = random_params(&mut rng);
            let path = random_path(&mut rng);
            run_pair(seed, 2_000, &program, params, path, &mut rng);
        }
    }
}

/// A steady flow with periodic congestion: the long, regular trajectory of a real run (cuts,
/// fast recovery, additive and hyper increase from both counters).
#[test]
fn dcqcn_program_equals_native_dcqcn_on_a_paced_flow() {
    require_clang!();
    let program = common::example("dcqcn");
    let path = PathInfo {
        mtu: 4096,
        line_rate: Rate::from_gbps(100),
        base_rtt: Some(Duration::from_micros(8)),
        paths: 1,
    };
    let params = DcqcnParams::default();
    let handle = ParamHandle::new(&dcqcn_params(&params)).unwrap();
    let mut native = Dcqcn::new(Instant::ZERO, &path, params);
    let mut ebpf = BpfPolicy::new(&program, &handle, Instant::ZERO, &path);
    let mut now = Instant::ZERO;
    let mut events = 0u64;
    while now < Instant::from_ps(50_000_000_000) {
        // Pace 4 KiB packets at the current rate; a CNP every 20 µs during the first half of
        // each millisecond.
        let pace = native.rate().serialization_time(4096);
        let next_cnp = Instant::from_ps((now.as_ps() / 20_000_000 + 1) * 20_000_000);
        let mut next = now + pace;
        if let Some(t) = native.next_timeout() {
            next = next.min(t);
        }
        let congested = (next_cnp.as_ps() / 1_000_000) % 1_000 < 500;
        if congested {
            next = next.min(next_cnp);
        }
        now = next;
        if congested && now == next_cnp {
            let fb = Feedback {
                cnp: true,
                ..Feedback::default()
            };
            native.on_feedback(now, &fb);
            ebpf.on_feedback(now, &fb);
        } else if native.next_timeout() == Some(now) {
            native.on_timeout(now);
            ebpf.on_timeout(now);
        } else {
            let sent = Sent {
                bytes: 4096,
                ..Sent::default()
            };
            native.on_sent(now, &sent);
            ebpf.on_sent(now, &sent);
        }
        events += 1;
        assert_eq!(native.limits(), ebpf.limits(), "event {events} at {now:?}");
        assert_eq!(
            native.next_timeout(),
            ebpf.next_timeout(),
            "event {events} at {now:?}"
        );
    }
    assert!(
        native.stats().cuts > 100 && native.stats().increases > 1000,
        "{:?}",
        native.stats()
    );
    assert_eq!(ebpf.faults(), 0);
}

fn random_swift_params(rng: &mut Rng) -> SwiftParams {
    let mut p = SwiftParams::default();
    if rng.chance(60) {
        let us = |rng: &mut Rng, max: u64| Duration::from_ps(rng.below(max) * 1_000_000);
        let pkts = |rng: &mut Rng| match rng.below(4) {
            0 => rng.below(1000) as f64 / 1000.0,
            1 => rng.below(100_000) as f64 / 100.0,
            2 => rng.wild() as f64,
            _ => 1.0 + rng.below(300) as f64,
        };
        p.base_target = us(rng, 100);
        p.per_hop = us(rng, 5);
        p.hops = rng.below(300) as u32;
        p.fs_range = us(rng, 200);
        p.fs_min_cwnd = pkts(rng);
        p.fs_max_cwnd = pkts(rng);
        p.host_target = us(rng, 200);
        p.ai = rng.below(3000) as f64 / 1000.0;
        p.beta = rng.below(1001) as f64 / 1000.0;
        p.max_mdf = rng.below(1001) as f64 / 1000.0;
        p.min_cwnd = pkts(rng);
        p.max_cwnd = pkts(rng);
        p.init_cwnd = pkts(rng);
        p.retx_reset = rng.below(8) as u32;
    }
    p
}

/// Drives native Swift and the Swift program through the same random events.
fn run_swift_pair(seed: u64, events: usize, program: &Program, rng: &mut Rng) {
    let params = random_swift_params(rng);
    let mut path = random_path(rng);
    path.mtu = match rng.below(4) {
        0 => rng.next() as u32,
        1 => 1500,
        _ => 4096,
    };
    // The ABI's base_rtt_ps uses 0 for "unknown", so a known base RTT of exactly 0 ps cannot be
    // told apart; it is not a meaningful path property anyway.
    path.base_rtt = match rng.below(3) {
        0 => None,
        _ => Some(Duration::from_ps(1 + rng.below(50_000_000))),
    };
    let start = Instant::from_ps(rng.below(1 << 40));
    let mut native = Swift::new(start, &path, params);
    let handle = ParamHandle::new(&swift_params(native.fixed())).unwrap();
    let mut ebpf = BpfPolicy::new(program, &handle, start, &path);
    let hops = vec![HopTelemetry::default(); 300];
    let mut now = start;
    let ctx = |step: usize| format!("seed {seed} step {step}: {params:?} {path:?}");
    assert_eq!(native.limits(), ebpf.limits(), "{}", ctx(0));
    for step in 1..=events {
        now = if rng.chance(1) {
            Instant::from_ps(now.as_ps().saturating_sub(rng.below(100_000_000)))
        } else {
            now + Duration::from_ps(match rng.below(50) {
                0 => rng.wild(),
                // Exactly one smoothed RTT: the once-per-RTT guard's boundary.
                1..=8 => native.srtt().as_ps(),
                _ => rng.below(20_000_000),
            })
        };
        match rng.below(10) {
            0 => {
                let sent = Sent {
                    bytes: 4096,
                    ..Sent::default()
                };
                native.on_sent(now, &sent);
                ebpf.on_sent(now, &sent);
            }
            1 => {
                native.on_timeout(now);
                ebpf.on_timeout(now);
            }
            _ => {
                let loss = match rng.below(16) {
                    0 => Some(LossKind::Detected),
                    1 => Some(LossKind::Trimmed),
                    2 => Some(LossKind::TrimmedLastHop),
                    3 => Some(LossKind::ReceiverNoResources),
                    _ => None,
                };
                let n_hops = match rng.below(10) {
                    0 => 250 + rng.below(51) as usize,
                    _ => rng.below(13) as usize,
                };
                // Delays around the fabric target, sometimes far off.
                let hop_count = if n_hops == 0 {
                    u64::from(params.hops.min(255))
                } else {
                    n_hops.min(255) as u64
                };
                let target = native.fabric_target(hop_count).as_ps();
                let delay = |rng: &mut Rng| match rng.below(6) {
                    0 => rng.wild(),
                    1 | 2 => rng.below(200_000_000),
                    _ => rng.below(target.saturating_mul(2).max(1)),
                };
                let acked_packets = match rng.below(10) {
                    0 => rng.next() as u32,
                    1 => 65_536 + rng.below(3) as u32 - 1,
                    _ => rng.below(40) as u32,
                };
                let fb = Feedback {
                    acked_bytes: match rng.below(10) {
                        0 => rng.wild(),
                        1 => 0,
                        _ => rng.below(1 << 17),
                    },
                    acked_packets,
                    ecn_bytes: 0,
                    cnp: false,
                    rtt: rng.chance(85).then(|| Duration::from_ps(delay(rng))),
                    host_delay: rng.chance(40).then(|| Duration::from_ps(delay(rng))),
                    hops: &hops[..n_hops],
                    loss,
                    lost_bytes: 0,
                    rto: rng.chance(4),
                    path: 0,
                    in_flight: 0,
                };
                native.on_feedback(now, &fb);
                ebpf.on_feedback(now, &fb);
            }
        }
        assert_eq!(native.limits(), ebpf.limits(), "{}", ctx(step));
        assert_eq!(ebpf.next_timeout(), None);
        assert_eq!(ebpf.faults(), 0, "{:?}", ebpf.last_fault());
    }
    let state = ebpf.state();
    let word = |at: usize| u64::from_le_bytes(state[at..at + 8].try_into().unwrap());
    assert_eq!(
        (native.fcwnd_q16(), native.ecwnd_q16()),
        (word(0), word(8)),
        "seed {seed}"
    );
    assert_eq!(native.srtt().as_nanos(), word(32), "seed {seed}: srtt");
    let st = native.stats();
    assert_eq!(
        (
            st.decreases,
            st.loss_decreases,
            st.timeout_decreases,
            st.resets
        ),
        (word(48), word(56), word(64), word(72)),
        "seed {seed}: counters"
    );
    assert_eq!(u64::from(native.retransmit_count()), word(80) & 0xffff_ffff);
}

#[test]
fn swift_program_equals_native_swift() {
    require_clang!();
    for program in common::engines(&common::example("swift")) {
        assert_eq!(program.param_names().len(), 16);
        for seed in 0..300 {
            let mut rng = Rng(0x5717 + seed);
            run_swift_pair(seed, 3_000, &program, &mut rng);
        }
    }
}

/// The example programs declare their native twin's defaults (`name=value` in
/// `WEIR_CC_PARAM_NAMES`), so `weir cc run --policy dcqcn.o` runs ConnectX DCQCN as is; Swift's
/// are its integer constants for a 4096-byte MTU at 100 Gb/s (the harness's defaults).
#[test]
fn examples_declare_their_native_defaults() {
    require_clang!();
    let dcqcn = common::example("dcqcn");
    assert_eq!(
        dcqcn.param_defaults(),
        &dcqcn_params(&DcqcnParams::default())[..]
    );
    let swift = common::example("swift");
    let k = SwiftFixed::new(&SwiftParams::default(), 4096, Rate::from_gbps(100));
    assert_eq!(swift.param_defaults(), &swift_params(&k)[..]);
    // And the handle starts from them.
    let h = ParamHandle::named(&dcqcn, &[]).expect("handle");
    assert_eq!(h.values(), dcqcn_params(&DcqcnParams::default()));
}
