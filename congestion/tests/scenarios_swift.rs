//! Swift through the bottleneck harness ([`weir_congestion::testing`]) with its default
//! parameters: a 100 Gb/s link, 4 KB packets, 10 µs base RTT, a 1 MB drop-tail buffer and one
//! INT hop (the harness defaults). Each scenario checks one property the issue asks for and
//! prints what it measured (`cargo test -- --nocapture` shows the numbers).
//!
//! Swift's standing queue is set by its target, not by the buffer: with `n` flows sharing the
//! link each window is about `(BDP + queue)/n`, and the target is
//! `base_target + hops·per_hop + fs(window)` = 25 + 1 + fs µs, where the flow-scaling term
//! `fs` grows as windows shrink (≈ 7 µs at 8 flows, ≈ 10 µs at 16). The queue therefore settles
//! near `(target − base RTT)·C` ≈ 23–26 µs ≈ 290–330 KB at 100 Gb/s, and the bounds below are
//! derived from that, not from a run.

mod common;

use common::{gbps, ms};
use weir_base::{Duration, Instant, Rate};
use weir_congestion::swift::{Swift, SwiftParams};
use weir_congestion::testing::{self, Config, FlowSpec, Overflow};
use weir_congestion::{CongestionControl, PathInfo};

/// Queue bound for Swift's standing queue at up to 16 flows: the target at a 7-packet window
/// (25 + 1 + 10.2 µs) minus the 10.7 µs unloaded RTT, ≈ 25.5 µs ≈ 320 KB at 100 Gb/s, plus
/// 25 % for the AIMD sawtooth.
const STANDING_QUEUE: u64 = 400_000;

fn swift(_: usize, now: Instant, path: &PathInfo) -> Box<dyn CongestionControl> {
    Box::new(Swift::new(now, path, SwiftParams::default()))
}

fn config(duration_ms: u64) -> Config {
    Config {
        duration: Duration::from_millis(duration_ms),
        ..Config::default()
    }
}

#[test]
fn eight_flows_converge_to_a_fair_share() {
    // Flow i joins at i ms: every join takes bandwidth from flows already at a larger window.
    let flows: Vec<FlowSpec> = (0..8).map(|i| FlowSpec::at(ms(i))).collect();
    let trace = testing::run_with(&config(20), &flows, swift);
    let (from, to) = (ms(10), ms(20));
    let jain = trace.jain(from, to);
    let util = trace.utilisation(from, to);
    let mean_q = trace.mean_queue(from, to);
    let rates: Vec<String> = trace
        .throughputs(from, to)
        .into_iter()
        .map(|r| format!("{:.2}", gbps(r)))
        .collect();
    eprintln!(
        "swift fair share, 8 flows, [10, 20] ms: Jain {jain:.4}, utilisation {util:.4}, \
         mean queue {:.0} KB, max {} KB, Gb/s {rates:?}",
        mean_q / 1e3,
        trace.max_queue(from, to) / 1000
    );
    assert!(jain >= 0.95, "Jain {jain}");
    assert!(util >= 0.95, "utilisation {util}");
    assert!(mean_q <= STANDING_QUEUE as f64, "mean queue {mean_q}");
    assert_eq!(
        trace.link.overflow_drops, 0,
        "joins one at a time never overflow"
    );
    // Downsampled trajectory: one row per millisecond.
    insta::assert_snapshot!("swift_fair_share", trace.table(100));
}

#[test]
fn incast_16_to_1_queue_drains_to_the_target() {
    let trace = testing::run_with(&config(10), &FlowSpec::many(16, ms(1)), swift);
    let drain = trace.drain_time(ms(1), STANDING_QUEUE);
    let (from, to) = (ms(5), ms(10));
    let mean_q = trace.mean_queue(from, to);
    let util = trace.utilisation(from, to);
    let jain = trace.jain(from, to);
    eprintln!(
        "swift incast 16:1: peak {} KB, {} drops, queue under {} KB after {drain:?}, \
         then mean {:.0} KB, utilisation {util:.4}, Jain {jain:.4}",
        trace.link.max_queue / 1000,
        trace.link.overflow_drops,
        STANDING_QUEUE / 1000,
        mean_q / 1e3
    );
    // 16 initial windows of 32 packets (2 MB) overflow the 1 MB buffer: a real incast.
    assert!(trace.link.overflow_drops > 0);
    let drain = drain.expect("the queue drains");
    assert!(drain <= Duration::from_millis(1), "drained after {drain:?}");
    assert!(mean_q <= STANDING_QUEUE as f64, "mean queue {mean_q}");
    assert!(trace.max_queue(ms(3), ms(10)) <= STANDING_QUEUE + 100_000);
    assert!(util >= 0.95, "utilisation {util}");
    assert!(jain >= 0.95, "Jain {jain}");
    assert_eq!(trace.rtos(), 0);
    // No drops once drained: a run cut at 2 ms (the same events, the model is deterministic)
    // already has them all.
    let early = testing::run_with(&config(2), &FlowSpec::many(16, ms(1)), swift);
    assert_eq!(early.link.overflow_drops, trace.link.overflow_drops);
}

#[test]
fn reacts_to_a_rate_step() {
    // 100 → 25 Gb/s at 5 ms, back to 100 Gb/s at 10 ms.
    let cfg = Config {
        rate_steps: vec![(ms(5), Rate::from_gbps(25)), (ms(10), Rate::from_gbps(100))],
        ..config(15)
    };
    let trace = testing::run_with(&cfg, &FlowSpec::many(2, Instant::ZERO), swift);
    let down_drain = trace.drain_time(ms(5), 150_000);
    let low = trace.utilisation(ms(6), ms(10));
    let low_q = trace.mean_queue(ms(6), ms(10));
    let high = trace.utilisation(ms(11), ms(15));
    let high_q = trace.mean_queue(ms(11), ms(15));
    eprintln!(
        "swift rate step: 25 Gb/s utilisation {low:.4} (mean queue {:.0} KB, peak {} KB, \
         under 150 KB {down_drain:?} after the step), back at 100 Gb/s {high:.4} (mean queue \
         {:.0} KB), drops {}",
        low_q / 1e3,
        trace.max_queue(ms(5), ms(10)) / 1000,
        high_q / 1e3,
        trace.link.overflow_drops
    );
    assert_eq!(trace.link.overflow_drops, 0);
    // At 25 Gb/s the same target delay is a quarter of the bytes: ≈ 80 KB.
    assert!(low >= 0.95, "utilisation at 25 Gb/s {low}");
    assert!(low_q <= 150_000.0, "mean queue at 25 Gb/s {low_q}");
    let down_drain = down_drain.expect("the queue shrinks after the step down");
    assert!(down_drain <= Duration::from_millis(1), "{down_drain:?}");
    assert!(high >= 0.95, "utilisation back at 100 Gb/s {high}");
    assert!(high_q <= STANDING_QUEUE as f64);
}

#[test]
fn recovers_after_loss() {
    // A long flow alone at line rate; 15 more join for 1 ms (2–3 ms). Their initial windows
    // (15 × 32 packets) overflow the buffer, the long flow sees losses (or trims) too.
    let mut flows = vec![FlowSpec::at(Instant::ZERO)];
    flows.extend((0..15).map(|_| FlowSpec::at(ms(2)).until(ms(3))));
    for overflow in [Overflow::Drop, Overflow::Trim] {
        let cfg = Config {
            overflow,
            ..config(10)
        };
        let trace = testing::run_with(&cfg, &flows, swift);
        let lost = trace.link.overflow_drops + trace.link.trims;
        let during = gbps(trace.throughput(0, ms(2), ms(3)));
        let after = gbps(trace.throughput(0, ms(4), ms(10)));
        let first = gbps(trace.throughput(0, ms(3), ms(4)));
        eprintln!(
            "swift loss episode ({overflow:?}): {lost} packets lost, long flow {during:.1} Gb/s \
             during, {first:.1} in the ms after, {after:.1} from 4 ms, retransmitted {} KB",
            trace.flows[0].retransmitted_bytes / 1000
        );
        assert!(lost > 0, "the episode must lose packets");
        assert!(after >= 95.0, "{overflow:?}: {after} Gb/s after recovery");
    }
    // A burst of random loss (10 % for 200 µs at 2 ms) on a lone flow, no queue involved:
    // fast-recovery cuts, at most one per RTT, then additive increase back to line rate.
    let cfg = Config {
        loss: 0.1,
        loss_period: Some((ms(2), ms(2) + Duration::from_micros(200))),
        ..config(6)
    };
    let trace = testing::run_with(&cfg, &FlowSpec::many(1, Instant::ZERO), swift);
    let during = trace.utilisation(ms(2), ms(3));
    let after = trace.utilisation(ms(4), ms(6));
    let back = trace.samples_in(ms(2), ms(6)).find(|s| {
        s.t > ms(2) + Duration::from_micros(200) && s.link_bytes * 100 >= s.capacity_bytes * 95
    });
    eprintln!(
        "swift random-loss burst: {} losses, utilisation {during:.4} over [2, 3] ms, \
         {after:.4} over [4, 6] ms, back above 95 % at {:?}",
        trace.link.random_losses,
        back.map(|s| s.t)
    );
    assert!(trace.link.random_losses > 0);
    assert!(after >= 0.95, "utilisation after the burst {after}");
    assert!(back.is_some_and(|s| s.t <= ms(3)), "back within 1 ms");
    // Random loss of 0.1 % on a lone flow: each loss halves the window at most once per RTT.
    let cfg = Config {
        loss: 0.001,
        ..config(20)
    };
    let trace = testing::run_with(&cfg, &FlowSpec::many(1, Instant::ZERO), swift);
    let util = trace.utilisation(ms(1), ms(20));
    eprintln!(
        "swift at 0.1 % random loss: {} losses, utilisation {util:.4}",
        trace.link.random_losses
    );
    assert!(trace.link.random_losses > 0);
    assert!(util >= 0.9, "utilisation {util}");
}
