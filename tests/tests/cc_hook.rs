//! The congestion-control hook: the engine feeds its controller ECN echoes and obeys the
//! window or rate it returns.

use weir_base::{Duration, Rate};
use weir_congestion::{CcConfig, DcqcnParams};
use weir_tests::{Link, Net};
use weir_transport::{Config, ConnId, Event, RegionId, WorkRequest};

/// Message `m`: `size` bytes from the start of `src`, sent by endpoint 0 on `c0`, into slot
/// `m` of `dst` (a receive posted at endpoint 1 on `c1`), tagged `m`.
fn post_message(
    net: &mut Net,
    (c0, src): (ConnId, RegionId),
    (c1, dst): (ConnId, RegionId),
    m: usize,
    size: usize,
) {
    let now = net.now;
    let len = size as u64;
    let recv = WorkRequest::Recv {
        region: dst,
        offset: m as u64 * len,
        len,
        tag: None,
    };
    net.eps[1].post(now, c1, recv).unwrap();
    let send = WorkRequest::Send {
        region: src,
        offset: 0,
        len,
        tag: m as u64,
    };
    net.eps[0].post(now, c0, send).unwrap();
}

/// Move `total` bytes in 256 KiB messages from endpoint 0 to 1; returns the virtual time it
/// took and the sender's controller state at the end.
fn run(cc: CcConfig, ecn: f64) -> (Duration, &'static str, weir_congestion::Limits, u64) {
    let mut config = Config::default();
    config.cc = cc;
    let link = Link {
        ecn,
        ..Link::default()
    };
    let (d, name, limits, stats) = run_with(config, link);
    (d, name, limits, stats.1.rx_ecn_bytes)
}

/// [`run`] with any config and link; returns the sender's and the receiver's counters too.
fn run_with(
    mut config: Config,
    mut link: Link,
) -> (
    Duration,
    &'static str,
    weir_congestion::Limits,
    (weir_transport::ConnStats, weir_transport::ConnStats),
) {
    config.line_rate = Rate::from_gbps(100);
    link.rate = Rate::from_gbps(100);
    let mut net = Net::new(2, config, link, 9);
    let (c0, c1) = net.connect(0, 1, Duration::from_secs(1)).unwrap();
    let size = 256 << 10;
    let count = 32;
    let (src, _) = net.region(0, size, |i| i as u8, false);
    let (dst, ptr) = net.region(1, size * count, |_| 0, false);
    let start = net.now;
    for m in 0..count {
        post_message(&mut net, (c0, src), (c1, dst), m, size);
    }
    let done = net.run_until(Duration::from_secs(5), |n| {
        n.events[1]
            .iter()
            .filter(|e| matches!(e, Event::Completion(c) if c.status.is_ok()))
            .count()
            == count
    });
    assert!(done, "transfer did not finish");
    // SAFETY: the harness keeps the memory alive and every receive completed.
    let got = unsafe { std::slice::from_raw_parts(ptr, size * count) };
    assert!(
        got.chunks(size)
            .all(|c| c.iter().enumerate().all(|(i, &b)| b == i as u8))
    );
    let (name, limits) = net.eps[0].congestion(c0).unwrap();
    let stats = (
        net.eps[0].conn_stats(c0).unwrap(),
        net.eps[1].conn_stats(c1).unwrap(),
    );
    (net.now - start, name, limits, stats)
}

#[test]
fn dcqcn_slows_down_on_ecn_marks_and_fixed_does_not() {
    let dcqcn = CcConfig::Dcqcn(DcqcnParams::default());
    let fixed = CcConfig::Fixed {
        window: 4 << 20,
        rate: None,
    };
    let (t_fixed, name_f, lim_f, _) = run(fixed, 0.05);
    let (t_clean, name_d, lim_clean, ecn_clean) = run(dcqcn, 0.0);
    let (t_marked, _, lim_marked, ecn_marked) = run(dcqcn, 0.05);
    assert_eq!((name_f, name_d), ("fixed", "dcqcn"));
    assert_eq!(lim_f.window, Some(4 << 20));
    assert_eq!(ecn_clean, 0);
    assert!(ecn_marked > 0, "the receiver counted CE-marked bytes");
    // Without marks DCQCN stays at line rate; with marks it cuts its rate and the transfer
    // takes longer than the same transfer under a fixed window.
    assert_eq!(lim_clean.rate, Some(Rate::from_gbps(100)));
    assert!(
        lim_marked.rate.unwrap() < Rate::from_gbps(100),
        "{lim_marked:?}"
    );
    assert!(
        t_marked > t_clean && t_marked > t_fixed,
        "dcqcn {t_marked} vs clean {t_clean} / fixed {t_fixed}"
    );
}

/// DCQCN's notification point: a receiver seeing CE marks sends CNPs, at most one per
/// `cnp_interval`, and the sender's controller takes each as a notification.
#[test]
fn receiver_sends_paced_cnps_on_ce_marks() {
    let mut config = Config::default();
    config.cc = CcConfig::Dcqcn(DcqcnParams::default());
    let every = Link {
        ecn: 1.0,
        ..Link::default()
    };
    let (elapsed, _, limits, (tx, rx)) = run_with(config, every);
    assert!(rx.cnps_sent > 0, "{rx:?}");
    // No loss: every CNP arrives (the last may still be on the wire when the run stops).
    assert!(
        tx.cnps_received <= rx.cnps_sent && tx.cnps_received + 1 >= rx.cnps_sent,
        "{} sent, {} received",
        rx.cnps_sent,
        tx.cnps_received
    );
    // Paced: at most one per 4 µs of the run (plus the first).
    let bound = elapsed.as_nanos() / 4_000 + 1;
    assert!(rx.cnps_sent <= bound, "{} CNPs in {elapsed}", rx.cnps_sent);
    // At most one per marked packet (once DCQCN has slowed the flow, packets arrive more
    // than 4 µs apart and nearly every one earns its CNP).
    assert!(rx.cnps_sent <= rx.rx_data_packets, "{rx:?}");
    assert!(limits.rate.unwrap() < Rate::from_gbps(100));

    // Longer pacing interval: fewer CNPs; none at all when the NP is switched off.
    config.cnp_interval = Some(Duration::from_micros(50));
    let (_, _, _, (_, rx50)) = run_with(config, every);
    assert!(
        rx50.cnps_sent > 0 && rx50.cnps_sent < rx.cnps_sent,
        "{rx50:?}"
    );
    config.cnp_interval = None;
    let (_, _, _, (tx0, rx0)) = run_with(config, every);
    assert_eq!((rx0.cnps_sent, tx0.cnps_received), (0, 0));
    // No marks, no CNPs.
    let mut config = Config::default();
    config.cc = CcConfig::Dcqcn(DcqcnParams::default());
    let (_, _, _, (_, clean)) = run_with(config, Link::default());
    assert_eq!(clean.cnps_sent, 0);
}

/// INT: data packets ask for telemetry when configured, the hop appends its record, the
/// receiver echoes the records in its ACKs, and the sender's controller receives them.
#[test]
fn int_records_are_echoed_to_the_sender() {
    let int_link = Link {
        int: true,
        ..Link::default()
    };
    let mut config = Config::default();
    config.request_int = true;
    let (_, _, _, (tx, _)) = run_with(config, int_link);
    assert!(tx.int_acks_received > 0, "{tx:?}");
    assert!(tx.int_acks_received <= tx.acks_received);
    // Not asked for: no records, even over an INT-capable hop.
    config.request_int = false;
    let (_, _, _, (tx, _)) = run_with(config, int_link);
    assert_eq!(tx.int_acks_received, 0);
    // Asked for, but no hop provides telemetry: ACKs carry none.
    config.request_int = true;
    let (_, _, _, (tx, _)) = run_with(config, Link::default());
    assert_eq!(tx.int_acks_received, 0);
}

/// The pacer is a token bucket of `pace_burst` bytes: an engine that polls late may catch up
/// on that much missed sending time at once, and no more.
#[test]
fn a_late_pacer_catches_up_by_at_most_its_burst() {
    fn burst_after_late_poll(pace_burst: u32) -> usize {
        let mut config = Config::default();
        config.cc = CcConfig::Fixed {
            window: 64 << 20,
            rate: Some(Rate::from_gbps(10)),
        };
        config.pace_burst = pace_burst;
        let mut net = Net::new(2, config, Link::default(), 3);
        let (c0, c1) = net.connect(0, 1, Duration::from_secs(1)).unwrap();
        let size = 4 << 20;
        let (src, _) = net.region(0, size, |i| i as u8, false);
        let (dst, _) = net.region(1, size, |_| 0, false);
        let now = net.now;
        post_message(&mut net, (c0, src), (c1, dst), 0, size);
        let mut hdr = [0u8; 1024];
        // Drain what may go now (the first packet), then poll 900 µs late (short of the
        // 1 ms minimum retransmission timeout: a timeout would declare the first packet lost
        // and let one packet go until an ACK returns, which is not what is tested here).
        while net.eps[0].poll_transmit(now, &mut hdr).is_some() {}
        let late = now + Duration::from_micros(900);
        net.eps[0].handle_timeout(late);
        let mut n = 0;
        while net.eps[0].poll_transmit(late, &mut hdr).is_some() {
            n += 1;
        }
        n
    }
    // 900 µs at 10 Gb/s is 1.1 MB of missed time; the bucket lets 64 KiB of it through
    // (8 packets of 8 KiB payload plus headers, so 7 or 8), and none without a bucket.
    let with = burst_after_late_poll(64 << 10);
    assert!((7..=9).contains(&with), "{with} packets after a late poll");
    assert_eq!(burst_after_late_poll(0), 1);
}

/// Hot reload: new parameters of the same algorithm keep each live controller's state; a new
/// algorithm replaces it; new connections take the new configuration; traffic is unaffected.
#[test]
fn congestion_control_reloads_without_restart() {
    let mut config = Config::default();
    config.cc = CcConfig::by_name("swift").unwrap();
    let mut net = Net::new(3, config, Link::default(), 5);
    let (c0, c1) = net.connect(0, 1, Duration::from_secs(1)).unwrap();
    let size = 256 << 10;
    let (src, _) = net.region(0, size, |i| i as u8, false);
    let (dst, _) = net.region(1, size * 8, |_| 0, false);
    let post = |net: &mut Net, m: usize| post_message(net, (c0, src), (c1, dst), m, size);
    let received = |n: &Net| {
        n.events[1]
            .iter()
            .filter(|e| matches!(e, Event::Completion(c) if c.status.is_ok()))
            .count()
    };
    for m in 0..4 {
        post(&mut net, m);
    }
    assert!(net.run_until(Duration::from_secs(1), |n| received(n) >= 2));
    // Same algorithm, other parameters: state kept.
    let tuned = CcConfig::from_named("swift", &[("base_target", 30.0)]).unwrap();
    let now = net.now;
    assert_eq!(net.eps[0].set_cc(now, tuned), (1, 0));
    assert_eq!(net.eps[0].congestion(c0).unwrap().0, "swift");
    // Another algorithm: a fresh controller.
    let now = net.now;
    assert_eq!(
        net.eps[0].set_cc(now, CcConfig::by_name("nscc").unwrap()),
        (0, 1)
    );
    assert_eq!(net.eps[0].congestion(c0).unwrap().0, "nscc");
    for m in 4..8 {
        post(&mut net, m);
    }
    assert!(net.run_until(Duration::from_secs(1), |n| received(n) == 8));
    // A connection made after the reload uses the new configuration.
    let (c2, _) = net.connect(0, 2, Duration::from_secs(1)).unwrap();
    assert_eq!(net.eps[0].congestion(c2).unwrap().0, "nscc");
}
