//! Receives posted ahead of sends: the receiver never runs out of buffers, so the sender must
//! see no receiver-not-ready NACK.

use weir_base::Duration;
use weir_congestion::CcConfig;
use weir_tests::{Link, Net};
use weir_transport::{CompletionKind, Config, Event, WorkRequest};

#[test]
fn streaming_with_receives_posted_ahead_needs_no_rnr() {
    let size = 1 << 20;
    let window = 4;
    let total = 64;
    let mut net = Net::new(2, Config::default(), Link::default(), 5);
    let (c0, c1) = net.connect(0, 1, Duration::from_secs(1)).unwrap();
    let (src, _) = net.region(0, size * window, |i| i as u8, false);
    let (dst, _) = net.region(1, size * 2 * window, |_| 0, false);
    let now = net.now;
    for slot in 0..2 * window {
        let wr = WorkRequest::Recv {
            region: dst,
            offset: (slot * size) as u64,
            len: size as u64,
            tag: None,
        };
        net.eps[1].post(now, c1, wr).unwrap();
    }
    for slot in 0..window {
        let wr = WorkRequest::Send {
            region: src,
            offset: (slot * size) as u64,
            len: size as u64,
            tag: 0,
        };
        net.eps[0].post(now, c0, wr).unwrap();
    }
    let (mut sent, mut sends_done, mut recvs_done) = (window, 0, 0);
    let (mut seen0, mut seen1) = (0, 0);
    // Drive the network step by step so every completion triggers a repost at once.
    let deadline = net.now + Duration::from_secs(10);
    while (sends_done < total || recvs_done < total) && net.now < deadline {
        if !net.step(deadline) {
            break;
        }
        let now = net.now;
        while seen0 < net.events[0].len() {
            if let Event::Completion(c) = net.events[0][seen0] {
                assert!(c.status.is_ok());
                if c.kind == CompletionKind::Send {
                    sends_done += 1;
                    if sent < total {
                        let slot = sent % window;
                        let wr = WorkRequest::Send {
                            region: src,
                            offset: (slot * size) as u64,
                            len: size as u64,
                            tag: 0,
                        };
                        net.eps[0].post(now, c0, wr).unwrap();
                        sent += 1;
                    }
                }
            }
            seen0 += 1;
        }
        while seen1 < net.events[1].len() {
            if let Event::Completion(c) = net.events[1][seen1] {
                assert!(c.status.is_ok());
                if c.kind == CompletionKind::Recv {
                    recvs_done += 1;
                    let wr = WorkRequest::Recv {
                        region: dst,
                        offset: ((recvs_done % (2 * window)) * size) as u64,
                        len: size as u64,
                        tag: None,
                    };
                    net.eps[1].post(now, c1, wr).unwrap();
                }
            }
            seen1 += 1;
        }
    }
    let st = net.eps[0].conn_stats(c0).unwrap();
    assert_eq!((sends_done, recvs_done), (total, total));
    assert_eq!(st.rnr_nacks, 0, "{st:?}");
}

/// Sends posted while the receiving application posts nothing (it fell behind); `lag` later it
/// posts every receive. Checks that every message arrived once, intact, into its receive, and
/// returns the sender's statistics at the end of the lag and the time from the post to the
/// completion of the first message that had been refused.
fn fall_behind(
    link: Link,
    lag: Duration,
    seed: u64,
    budget_msgs: usize,
    window: u64,
) -> (weir_transport::ConnStats, Duration) {
    let size = 64 << 10;
    let total = 32usize;
    let mut config = Config::default();
    config.unexpected_bytes = (budget_msgs * size) as u64;
    config.cc = CcConfig::Fixed { window, rate: None };
    let mut net = Net::new(2, config, link, seed);
    let (c0, c1) = net.connect(0, 1, Duration::from_secs(1)).unwrap();
    let (src, src_ptr) = net.region(0, size * total, |i| (i / size * 7 + i) as u8, false);
    let (dst, dst_ptr) = net.region(1, size * total, |_| 0, false);
    let now = net.now;
    for m in 0..total {
        let wr = WorkRequest::Send {
            region: src,
            offset: (m * size) as u64,
            len: size as u64,
            tag: m as u64,
        };
        net.eps[0].post(now, c0, wr).unwrap();
    }
    net.run_until(lag, |_| false);
    let lagged = net.eps[0].conn_stats(c0).unwrap();
    let sends_done = net
        .completions(0)
        .filter(|c| c.kind == CompletionKind::Send)
        .count();
    assert!(
        sends_done <= budget_msgs,
        "{sends_done} sends completed into a budget of {budget_msgs} messages"
    );
    let posted_at = net.now;
    for m in 0..total {
        let wr = WorkRequest::Recv {
            region: dst,
            offset: (m * size) as u64,
            len: size as u64,
            tag: None,
        };
        net.eps[1].post(posted_at, c1, wr).unwrap();
    }
    let recvs = |n: &Net| {
        n.completions(1)
            .filter(|c| c.kind == CompletionKind::Recv)
            .count()
    };
    assert!(
        net.run_until(Duration::from_secs(2), |n| recvs(n) > budget_msgs),
        "no refused message arrived after the receives were posted"
    );
    let resumed = net.now.saturating_since(posted_at);
    assert!(
        net.run_until(Duration::from_secs(2), |n| recvs(n) == total),
        "not every message arrived"
    );
    let mut tags: Vec<u64> = net
        .completions(1)
        .filter(|c| c.kind == CompletionKind::Recv)
        .map(|c| {
            assert!(c.status.is_ok(), "{c:?}");
            c.tag
        })
        .collect();
    tags.sort_unstable();
    assert_eq!(
        tags,
        (0..total as u64).collect::<Vec<_>>(),
        "each message once"
    );
    let sent = net.bytes(src_ptr, size * total).to_vec();
    assert!(
        net.bytes(dst_ptr, size * total) == &sent[..],
        "payload differs"
    );
    (lagged, resumed)
}

/// The receiving application falls behind for 20 ms with a budget of four messages: the sender
/// stops at the refusal instead of resending its window every `rnr_delay` (one probe per
/// `rnr_delay` at most), and the receives' window update restarts it at once, not at the next
/// probe.
#[test]
fn a_receiver_that_falls_behind_stops_the_sender_until_it_posts() {
    let lag = Duration::from_millis(20);
    let (st, resumed) = fall_behind(Link::default(), lag, 11, 4, 4 << 20);
    assert!(st.rnr_nacks > 0, "the budget never ran out: {st:?}");
    let probes = lag.as_nanos() / Config::default().rnr_delay.as_nanos();
    assert!(
        st.retransmits <= probes + 2,
        "{} resends during {lag:?} of RNR (at most {probes} probes): {st:?}",
        st.retransmits
    );
    assert!(
        resumed < Duration::from_micros(60),
        "the first refused message took {resumed:?} after the receives were posted"
    );
}

/// The same with 3 % loss both ways (window updates, NACKs and probes lost too): it completes,
/// every message once and intact.
#[test]
fn a_receiver_that_falls_behind_on_a_lossy_link_still_gets_everything() {
    for seed in 0..4 {
        let link = Link {
            loss: 0.03,
            ..Link::default()
        };
        fall_behind(link, Duration::from_millis(5), seed, 4, 4 << 20);
        fall_behind(link, Duration::from_millis(5), seed, 16, 1 << 20);
    }
}

/// With what is in flight (the window, 2 messages) smaller than a quarter of the budget (16
/// messages), the receiver's XOFF at three quarters stops the sender before anything must be
/// refused: no RNR NACK, no resend, and no more than the budget taken early.
#[test]
fn a_receiver_that_falls_behind_says_so_before_it_must_refuse() {
    let lag = Duration::from_millis(20);
    let (st, resumed) = fall_behind(Link::default(), lag, 5, 16, 128 << 10);
    assert_eq!((st.rnr_nacks, st.retransmits), (0, 0), "{st:?}");
    assert!(
        st.data_bytes < 16 * (64 << 10) + (1 << 20),
        "the sender went on past the budget: {st:?}"
    );
    assert!(
        resumed < Duration::from_micros(60),
        "the first held-back message took {resumed:?} after the receives were posted"
    );
}
