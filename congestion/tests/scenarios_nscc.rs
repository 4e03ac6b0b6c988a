//! Scenarios: NSCC (UEC defaults) on the deterministic bottleneck harness
//! ([`weir_congestion::testing`]).
//!
//! Setting: the UEC reference simulator's (the committed results of uet-htsim,
//! <https://github.com/ultraethernet/uet-htsim>, `htsim/sim/datacenter/results/`): 4 KB
//! packets, a 100-packet bottleneck buffer that trims instead of dropping, ECN marked with a
//! probability rising from 25 % to 75 % of the buffer (all packets above), here at 100 Gb/s
//! with a 10 µs propagation RTT and one ACK per packet. NSCC reads RTT, ECN echoes and trim
//! NACKs; it ignores INT. Every scenario prints what it measured (`cargo test -- --nocapture`).
//!
//! NSCC's operating point: an unmarked delay above the target pulls its average delay down
//! (to a quarter base RTT), so it settles where the marked fraction lifts the average to the
//! target, about 200 KB (16 µs) of queue with this marking profile, above the 9 µs target.
//! The queue bounds below are that operating point, not "empty".

mod common;

use common::{gbps, loss_episode_and_random_loss, us};
use weir_base::{Duration, Instant, Rate};
use weir_congestion::nscc::{Nscc, NsccParams};
use weir_congestion::testing::{Config, FlowSpec, Overflow, Red, Trace, run_with};

const PACKET: u64 = 4096;
const BUFFER: u64 = 100 * PACKET;
/// Above this backlog every packet is marked.
const KMAX: u64 = 75 * PACKET;

/// The UEC reference simulator's fabric on the harness.
fn uec() -> Config {
    Config {
        packet: PACKET as u32,
        buffer: BUFFER,
        overflow: Overflow::Trim,
        ecn: Some(Red {
            kmin: 25 * PACKET,
            kmax: KMAX,
            pmax: 1.0,
        }),
        ..Config::default()
    }
}

fn nscc(cfg: &Config, flows: &[FlowSpec]) -> Trace {
    run_with(cfg, flows, |_, start, path| {
        Box::new(Nscc::new(start, path, NsccParams::default()))
    })
}

/// Eight flows, one every 500 µs, over 20 ms.
fn staggered_eight() -> (Config, Vec<FlowSpec>) {
    let cfg = Config {
        duration: Duration::from_millis(20),
        ..uec()
    };
    let flows = (0..8).map(|i| FlowSpec::at(us(500 * i))).collect();
    (cfg, flows)
}

#[test]
fn eight_flows_converge_to_fair_share() {
    let (cfg, flows) = staggered_eight();
    let t = nscc(&cfg, &flows);
    let (from, to) = (us(10_000), us(20_000));
    let jain = t.jain(from, to);
    let util = t.utilisation(from, to);
    let (q, qmax) = (t.mean_queue(from, to), t.max_queue(from, to));
    let rates: Vec<f64> = t.throughputs(from, to).into_iter().map(gbps).collect();
    eprintln!(
        "nscc fair share [10, 20] ms: Jain {jain:.4}, utilisation {util:.4}, mean queue {q:.0} B, \
         max queue {qmax} B, trims {}, Gb/s {rates:.1?}",
        t.link.trims
    );
    assert!(jain >= 0.95, "Jain {jain}");
    assert!(util >= 0.95, "utilisation {util}");
    // At the operating point, below the level where every packet is marked, and never trimming.
    assert!(q <= KMAX as f64, "mean queue {q}");
    assert!(qmax < BUFFER, "max queue {qmax}");
}

#[test]
fn queue_drains_after_a_16_to_1_incast() {
    let cfg = Config {
        duration: Duration::from_millis(5),
        ..uec()
    };
    let flows = FlowSpec::many(16, us(100));
    let t = nscc(&cfg, &flows);
    // Time until the buffer stops filling (no more trims), and until the backlog stays
    // below the level where every packet is marked.
    let trimming = t.settled_after(us(100), BUFFER - PACKET);
    let marking = t.settled_after(us(100), KMAX);
    let (from, to) = (us(1_000), us(5_000));
    let (q, qmax) = (t.mean_queue(from, to), t.max_queue(from, to));
    let util = t.utilisation(from, to);
    let jain = t.jain(from, to);
    eprintln!(
        "nscc 16-to-1 incast: peak queue {} B, {} trims, {} RTOs; buffer last full {trimming:?} \
         and last above Kmax ({KMAX} B) {marking:?} after the start; [1, 5] ms: mean queue \
         {q:.0} B, max {qmax} B, utilisation {util:.4}, Jain {jain:.4}",
        t.link.max_queue,
        t.link.trims,
        t.rtos()
    );
    // Sixteen windows of 1.5 BDP overflow the buffer; trims, not timeouts, recover it.
    assert!(t.link.trims > 0);
    assert_eq!(t.rtos(), 0);
    assert!(trimming <= Duration::from_micros(500), "{trimming:?}");
    // Back at the operating point: mean below Kmax, never full again.
    assert!(q <= KMAX as f64 && qmax < BUFFER, "queue {q} / {qmax}");
    assert!(util >= 0.95, "utilisation {util}");
    assert!(jain >= 0.95, "Jain {jain}");
}

#[test]
fn follows_a_rate_step() {
    let cfg = Config {
        duration: Duration::from_millis(10),
        rate_steps: vec![
            (us(3_000), Rate::from_gbps(40)),
            (us(6_000), Rate::from_gbps(100)),
        ],
        ..uec()
    };
    let flows = FlowSpec::many(4, Instant::ZERO);
    let t = nscc(&cfg, &flows);
    let phases = [
        ("100 Gb/s", us(1_000), us(3_000)),
        ("40 Gb/s", us(3_500), us(6_000)),
        ("100 Gb/s again", us(6_500), us(10_000)),
    ];
    for (name, from, to) in phases {
        let util = t.utilisation(from, to);
        let jain = t.jain(from, to);
        let q = t.mean_queue(from, to);
        eprintln!(
            "nscc rate step, {name}: utilisation {util:.4}, Jain {jain:.4}, mean queue {q:.0} B"
        );
        assert!(util >= 0.95, "{name}: utilisation {util}");
        assert!(jain >= 0.95, "{name}: Jain {jain}");
        assert!(q <= KMAX as f64, "{name}: queue {q}");
    }
    // After the step down the windows, sized for 100 Gb/s, shrink without a timeout.
    let peak = t.max_queue(us(3_000), us(3_500));
    let util = t.utilisation(us(6_000), us(6_500));
    eprintln!(
        "nscc rate step: peak queue after the step down {peak} B; utilisation over [6, 6.5] ms \
         after the step up {util:.4}; {} trims",
        t.link.trims
    );
    assert!(peak < BUFFER, "peak {peak}");
    assert!(util >= 0.9, "{util}");
    assert_eq!(t.rtos(), 0);
}

#[test]
fn recovers_after_loss() {
    // A loss burst: 16 flows into a shallow (64 KB) trimming buffer, ECN at 25 %–75 % of it.
    // A full queue is only 5 µs deep, under NSCC's target, so trims carry the congestion
    // signal.
    let cfg = Config {
        buffer: 64_000,
        ecn: Some(Red {
            kmin: 16_000,
            kmax: 48_000,
            pmax: 1.0,
        }),
        duration: Duration::from_millis(6),
        ..uec()
    };
    let flows = FlowSpec::many(16, us(100));
    let t = nscc(&cfg, &flows);
    let end = t.end();
    let (util, jain) = (t.utilisation(us(2_000), end), t.jain(us(2_000), end));
    let slowest = t
        .throughputs(us(2_000), end)
        .into_iter()
        .map(gbps)
        .fold(f64::MAX, f64::min);
    eprintln!(
        "nscc loss burst (64 KB trimming buffer, 16 flows): {} trims, {} RTOs; [2, 6] ms \
         utilisation {util:.4}, Jain {jain:.4}, slowest flow {slowest:.2} Gb/s",
        t.link.trims,
        t.rtos()
    );
    assert!(t.link.trims > 1_000);
    assert!(util >= 0.95 && jain >= 0.95, "{util} {jain}");
    assert!(slowest >= 0.5 * 100.0 / 16.0 * 0.9, "{slowest}");

    // A 30 % loss episode, then random, non-congestive loss (dropped, detected from SACK
    // holes): NSCC does not cut for it, so goodput and fairness hold.
    loss_episode_and_random_loss("nscc", &uec(), nscc, 0.95);
}

#[test]
fn fair_share_trajectory() {
    let (cfg, flows) = staggered_eight();
    let t = nscc(&cfg, &flows);
    // One row per millisecond.
    insta::assert_snapshot!("nscc_fair_share_trajectory", t.table(100));
}
