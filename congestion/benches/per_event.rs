//! Per-event cost of the congestion controllers: `on_feedback` with a typical ACK (one 4 KB
//! packet acknowledged, an RTT sample, one INT hop whose timestamp and byte counter advance as
//! a busy 100 Gb/s port's would), the same ACK carrying an ECN mark, and `on_sent`. Virtual
//! time advances by one 4 KB packet time at 100 Gb/s per event, so timers come due as they
//! would on the wire. The feedback record is built inside the timed loop, as a transport
//! builds one per ACK.
//!
//! Adding an algorithm is one line in [`benches`]: `algorithm(c, "name", |now, path| X::new(…))`.
//! The goal (issue 4) is at most 50 ns per feedback event for every built-in.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use weir_base::{Duration, Instant, Rate};
use weir_congestion::{
    CongestionControl, Dcqcn, DcqcnParams, Feedback, Fixed, HopTelemetry, Hpcc, HpccParams, Nscc,
    NsccParams, PathInfo, Sent, Swift, SwiftParams, Timely, TimelyParams,
};

/// One 4 KB packet at 100 Gb/s.
const STEP: Duration = Duration::from_ps(327_680);

fn path() -> PathInfo {
    PathInfo {
        mtu: 4096,
        line_rate: Rate::from_gbps(100),
        base_rtt: Some(Duration::from_micros(10)),
        paths: 1,
    }
}

/// The INT record the `n`-th ACK echoes: a 40 KB queue at a port that has sent `n` packets.
fn hop(n: u64, now: Instant) -> [HopTelemetry; 1] {
    [HopTelemetry {
        qlen: 40_960,
        rate: Rate::from_gbps(100),
        tx_bytes: n.wrapping_mul(4096),
        ts: now,
    }]
}

fn ack<'a>(ecn: bool, hops: &'a [HopTelemetry]) -> Feedback<'a> {
    Feedback {
        acked_bytes: 4096,
        acked_packets: 1,
        ecn_bytes: if ecn { 4096 } else { 0 },
        rtt: Some(Duration::from_micros(12)),
        host_delay: Some(Duration::from_nanos(500)),
        hops,
        in_flight: 64 * 4096,
        ..Feedback::default()
    }
}

/// Benches one algorithm; `make` builds a fresh controller at `now` for `path`.
fn algorithm<C, F>(c: &mut Criterion, name: &str, make: F)
where
    C: CongestionControl,
    F: Fn(Instant, &PathInfo) -> C,
{
    let path = path();
    let mut group = c.benchmark_group(name);
    for (label, ecn) in [("on_feedback/ack", false), ("on_feedback/ecn", true)] {
        group.bench_function(label, |b| {
            let mut cc = make(Instant::ZERO, &path);
            let (mut now, mut n) = (Instant::ZERO, 0u64);
            b.iter(|| {
                now += STEP;
                n += 1;
                let hops = hop(n, now);
                let fb = ack(black_box(ecn), &hops);
                cc.on_feedback(black_box(now), black_box(&fb));
            });
            black_box(cc.limits());
        });
    }
    group.bench_function("on_sent", |b| {
        let mut cc = make(Instant::ZERO, &path);
        let mut now = Instant::ZERO;
        let sent = Sent {
            bytes: 4096,
            in_flight: 64 * 4096,
            ..Sent::default()
        };
        b.iter(|| {
            now += STEP;
            cc.on_sent(black_box(now), black_box(&sent));
        });
        black_box(cc.limits());
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    algorithm(c, "fixed", |_, _| Fixed::new(1 << 20, None));
    algorithm(c, "dcqcn", |t, p| Dcqcn::new(t, p, DcqcnParams::default()));
    algorithm(c, "timely", |t, p| {
        Timely::new(t, p, TimelyParams::default())
    });
    algorithm(c, "swift", |t, p| Swift::new(t, p, SwiftParams::default()));
    algorithm(c, "hpcc", |t, p| Hpcc::new(t, p, HpccParams::default()));
    algorithm(c, "nscc", |t, p| Nscc::new(t, p, NsccParams::default()));
}

criterion_group!(per_event, benches);
criterion_main!(per_event);
