//! Per-event cost of the eBPF example policies (Weir's JIT and rbpf's interpreter) against
//! their native twins, on the same recorded event traces. DCQCN: a 100 Gb/s flow pacing 4 KiB
//! packets, with a CNP every 20 µs during the congested half of each millisecond, and the
//! controller's own timers.
//! Swift: one ACK per packet with an RTT sample swinging around the target delay.
//!
//! Run: `cargo bench -p weir-policy --bench per_event` (needs clang, like the tests).

use std::hint::black_box;
use std::path::Path;
use std::process::Command;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use weir_base::{Duration, Instant, Rate};
use weir_congestion::{
    CongestionControl, Dcqcn, DcqcnParams, Feedback, PathInfo, Sent, Swift, SwiftParams,
};
use weir_policy::twins::{dcqcn as params, swift as swift_params};
use weir_policy::{BpfPolicy, Engine, ParamHandle, Program};

#[derive(Clone, Copy)]
enum Event {
    Sent(Instant),
    Cnp(Instant),
    Timeout(Instant),
}

fn path() -> PathInfo {
    PathInfo {
        mtu: 4096,
        line_rate: Rate::from_gbps(100),
        base_rtt: Some(Duration::from_micros(8)),
        paths: 1,
    }
}

/// Records `n` events of a paced flow driven by the native controller.
fn trace(n: usize) -> Vec<Event> {
    let mut cc = Dcqcn::new(Instant::ZERO, &path(), DcqcnParams::default());
    let mut now = Instant::ZERO;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let pace = cc.rate().serialization_time(4096);
        let next_cnp = Instant::from_ps((now.as_ps() / 20_000_000 + 1) * 20_000_000);
        let mut next = now + pace;
        if let Some(t) = cc.next_timeout() {
            next = next.min(t);
        }
        let congested = (next_cnp.as_ps() / 1_000_000) % 1_000 < 500;
        if congested {
            next = next.min(next_cnp);
        }
        now = next;
        if congested && now == next_cnp {
            cc.on_feedback(now, &CNP);
            out.push(Event::Cnp(now));
        } else if cc.next_timeout() == Some(now) {
            cc.on_timeout(now);
            out.push(Event::Timeout(now));
        } else {
            cc.on_sent(now, &SENT);
            out.push(Event::Sent(now));
        }
    }
    out
}

const CNP: Feedback<'static> = Feedback {
    acked_bytes: 0,
    acked_packets: 0,
    ecn_bytes: 0,
    cnp: true,
    rtt: None,
    host_delay: None,
    hops: &[],
    loss: None,
    lost_bytes: 0,
    rto: false,
    path: 0,
    in_flight: 0,
};

const SENT: Sent = Sent {
    bytes: 4096,
    path: 0,
    retransmit: false,
    in_flight: 0,
};

fn replay(cc: &mut impl CongestionControl, events: &[Event]) -> u64 {
    let mut sum = 0u64;
    for &e in events {
        match e {
            Event::Sent(t) => cc.on_sent(t, &SENT),
            Event::Cnp(t) => cc.on_feedback(t, &CNP),
            Event::Timeout(t) => cc.on_timeout(t),
        }
        sum = sum.wrapping_add(cc.limits().rate.map_or(0, |r| r.bps()));
    }
    sum
}

/// Compiles and loads a C policy (`examples/cc/weir_cc.h` on the include path).
fn compile(source: &Path) -> Program {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cc");
    let out = std::env::temp_dir().join(format!("weir-bench-{}.o", std::process::id()));
    let status = Command::new("clang")
        .args(["-O2", "-target", "bpf", "-c", "-I"])
        .arg(&dir)
        .arg(source)
        .arg("-o")
        .arg(&out)
        .status()
        .expect("clang is needed to compile examples/cc/dcqcn.c: apt-get install -y clang");
    assert!(status.success(), "clang failed");
    let object = std::fs::read(&out).expect("object");
    let _ = std::fs::remove_file(&out);
    Program::from_elf(&object).expect("the policy loads")
}

fn dcqcn_program() -> Program {
    compile(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cc/dcqcn.c"))
}

/// A six-instruction policy (rate and window from the parameters): the fixed cost of a run.
fn trivial_program() -> Program {
    compile(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bpf/param_rate.c"))
}

/// `ebpf_jit{suffix}` and `ebpf_interpreter{suffix}`: `program` on each engine, a fresh flow
/// per iteration, driven by `replay`.
fn on_every_engine(
    group: &mut BenchmarkGroup<'_, WallTime>,
    suffix: &str,
    program: &Program,
    handle: &ParamHandle,
    replay: impl Fn(&mut BpfPolicy) -> u64,
) {
    for (name, engine) in [
        ("ebpf_jit", Engine::Jit),
        ("ebpf_interpreter", Engine::Interpreter),
    ] {
        let program = program
            .with_engine(engine)
            .expect("the engine loads the policy");
        group.bench_function(format!("{name}{suffix}"), |b| {
            b.iter(|| {
                let mut cc = BpfPolicy::new(&program, handle, Instant::ZERO, &path());
                black_box(replay(&mut cc))
            })
        });
    }
}

fn per_event(c: &mut Criterion) {
    const N: usize = 20_000;
    let events = trace(N);
    let program = dcqcn_program();
    let handle = ParamHandle::new(&params(&DcqcnParams::default())).unwrap();
    let mut group = c.benchmark_group("dcqcn_per_event");
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(20);
    group.bench_function("native", |b| {
        b.iter(|| {
            let mut cc = Dcqcn::new(Instant::ZERO, &path(), DcqcnParams::default());
            black_box(replay(&mut cc, black_box(&events)))
        })
    });
    on_every_engine(&mut group, "", &program, &handle, |cc| {
        replay(cc, black_box(&events))
    });
    let trivial_params = ParamHandle::new(&[1_000_000_000, 0]).unwrap();
    on_every_engine(
        &mut group,
        "_trivial_program",
        &trivial_program(),
        &trivial_params,
        |cc| replay(cc, black_box(&events)),
    );
    group.finish();
}

/// ACKs every 330 ns (4 KiB at 100 Gb/s) with RTTs between 15 and 45 µs (target ≈ 26 µs).
fn swift_trace(n: usize) -> Vec<(Instant, Duration)> {
    (0..n as u64)
        .map(|i| {
            let rtt = 15_000 + (i * 7919) % 30_000;
            (Instant::from_nanos(i * 330), Duration::from_nanos(rtt))
        })
        .collect()
}

fn replay_swift(cc: &mut impl CongestionControl, acks: &[(Instant, Duration)]) -> u64 {
    let mut sum = 0u64;
    for &(t, rtt) in acks {
        let fb = Feedback {
            acked_bytes: 4096,
            acked_packets: 1,
            rtt: Some(rtt),
            ..Feedback::default()
        };
        cc.on_feedback(t, &fb);
        sum = sum.wrapping_add(cc.limits().window.unwrap_or(0));
    }
    sum
}

fn swift_per_event(c: &mut Criterion) {
    const N: usize = 20_000;
    let acks = swift_trace(N);
    let program = compile(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cc/swift.c"));
    let native = Swift::new(Instant::ZERO, &path(), SwiftParams::default());
    let handle = ParamHandle::new(&swift_params(native.fixed())).unwrap();
    let mut group = c.benchmark_group("swift_per_event");
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(20);
    group.bench_function("native", |b| {
        b.iter(|| {
            let mut cc = Swift::new(Instant::ZERO, &path(), SwiftParams::default());
            black_box(replay_swift(&mut cc, black_box(&acks)))
        })
    });
    on_every_engine(&mut group, "", &program, &handle, |cc| {
        replay_swift(cc, black_box(&acks))
    });
    group.finish();
}

criterion_group!(benches, per_event, swift_per_event);
criterion_main!(benches);
