//! Helpers shared by the `scenarios_*` integration tests: time and rate shorthands, and the
//! loss scenarios that every window law is held to in the same way.
//!
//! Each test binary uses only some of these, hence the `dead_code` allowance.
#![allow(dead_code)]

use weir_base::{Duration, Instant, Rate};
use weir_congestion::testing::{Config, FlowSpec, Trace};

/// `n` µs after time zero.
pub(crate) fn us(n: u64) -> Instant {
    Instant::ZERO + Duration::from_micros(n)
}

/// `n` ms after time zero.
pub(crate) fn ms(n: u64) -> Instant {
    Instant::ZERO + Duration::from_millis(n)
}

/// A rate in Gbit/s.
pub(crate) fn gbps(r: Rate) -> f64 {
    r.bps_f64() / 1e9
}

/// Two loss scenarios on `base` for the law `run` builds (named `name` in the output):
///
/// * a loss episode: 30 % of the packets reaching the bottleneck in [2, 2.5) ms are lost,
///   retransmissions included (timeouts follow), then no loss; 4 flows must be back above
///   90 % utilisation within 0.5 ms and reach `min_util` and a Jain index of 0.95 over
///   [3.5, 6] ms;
/// * random, non-congestive loss of 1 % and 5 % over 10 ms: 4 flows reach `min_util` and a
///   Jain index of 0.95 over [1, 10] ms, with losses and retransmissions seen.
pub(crate) fn loss_episode_and_random_loss(
    name: &str,
    base: &Config,
    run: fn(&Config, &[FlowSpec]) -> Trace,
    min_util: f64,
) {
    let cfg = Config {
        loss: 0.3,
        loss_period: Some((us(2_000), us(2_500))),
        duration: Duration::from_millis(6),
        ..base.clone()
    };
    let flows = FlowSpec::many(4, Instant::ZERO);
    let t = run(&cfg, &flows);
    let back = t.recovered(us(2_500), 90);
    let (util, jain) = (
        t.utilisation(us(3_500), us(6_000)),
        t.jain(us(3_500), us(6_000)),
    );
    eprintln!(
        "{name} loss episode (30 % for 0.5 ms, 4 flows): {} losses, {} RTOs; back above 90 % \
         utilisation {back:?} after it; [3.5, 6] ms utilisation {util:.4}, Jain {jain:.4}",
        t.link.random_losses,
        t.rtos()
    );
    assert!(t.link.random_losses > 100);
    assert!(
        back.is_some_and(|d| d <= Duration::from_micros(500)),
        "{back:?}"
    );
    assert!(util >= min_util && jain >= 0.95, "{util} {jain}");

    for loss in [0.01, 0.05] {
        let cfg = Config {
            loss,
            duration: Duration::from_millis(10),
            ..base.clone()
        };
        let flows = FlowSpec::many(4, Instant::ZERO);
        let t = run(&cfg, &flows);
        let (from, to) = (us(1_000), us(10_000));
        let (util, jain) = (t.utilisation(from, to), t.jain(from, to));
        let retx: u64 = t.flows.iter().map(|f| f.retransmitted_bytes).sum();
        eprintln!(
            "{name} {}% random loss: {} losses, {retx} B retransmitted; utilisation {util:.4}, \
             Jain {jain:.4}",
            loss * 100.0,
            t.link.random_losses
        );
        assert!(t.link.random_losses > 0 && retx > 0);
        assert!(util >= min_util && jain >= 0.95, "{util} {jain}");
    }
}
