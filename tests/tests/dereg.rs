//! Deregistering a region that an outstanding request uses fails that request's connection
//! (as an RDMA local protection error does) instead of leaving the request hanging: a send
//! in flight completes with `LocalAccess` at once, the peer's half fails too, and a
//! connection that does not use the region is untouched.

use weir_base::{Duration, Rate};
use weir_tests::{Link, Net};
use weir_transport::{ConnError, Event, WrError};

const SIZE: usize = 4 << 20;

#[test]
fn deregistering_a_region_in_flight_fails_the_request_not_hangs() {
    // 4 MiB at 10 Gb/s with 64 KiB in flight takes about 3.4 ms: half-way through, the
    // sender's region goes while most of the message has not been read from it yet.
    let link = Link {
        rate: Rate::from_gbps(10),
        latency: Duration::from_micros(5),
        ..Link::default()
    };
    let mut config = weir_transport::Config::default();
    config.cc = weir_congestion::CcConfig::Fixed {
        window: 64 << 10,
        rate: None,
    };
    let mut net = Net::new(3, config, link, 7);
    let (c0, c1) = net.connect(0, 1, Duration::from_millis(50)).expect("0-1");
    let (d0, d2) = net.connect(0, 2, Duration::from_millis(50)).expect("0-2");
    let (src, _) = net.region(0, SIZE, |i| i as u8, false);
    let (other, _) = net.region(0, SIZE, |i| i as u8, false);
    let (dst, _) = net.region(1, SIZE, |_| 0, false);
    let (dst2, _) = net.region(2, SIZE, |_| 0, false);
    let now = net.now;
    net.post_transfer(now, (0, c0, src), (1, c1, dst), SIZE as u64);
    net.post_transfer(now, (0, d0, other), (2, d2, dst2), SIZE as u64);
    // Let some of the 4 MiB go, then pull the sender's region.
    net.run_until(Duration::from_micros(1500), |_| false);
    assert_eq!(net.completions(0).count(), 0, "still in flight");
    assert_eq!(net.completions(1).count(), 0, "still in flight");
    let now = net.now;
    assert!(net.eps[0].deregister(now, src));
    assert!(!net.eps[0].deregister(now, src), "already gone");
    assert!(net.run_until(Duration::from_millis(100), |n| {
        n.conn_failed(1, c1) && n.completions(0).count() == 2 && n.completions(2).count() == 1
    }));
    let sends: Vec<_> = net.completions(0).collect();
    let failed = sends
        .iter()
        .find(|c| c.conn == c0)
        .expect("the send on 0-1");
    assert_eq!(
        failed.status,
        Err(WrError::ConnectionLost(ConnError::LocalAccess)),
        "{failed:?}"
    );
    let ok = sends
        .iter()
        .find(|c| c.conn == d0)
        .expect("the send on 0-2");
    assert_eq!(
        ok.status,
        Ok(()),
        "a connection not using the region is untouched"
    );
    // The receiver hears why its half cannot finish: its receive fails, the connection too.
    let recv = net.completions(1).next().expect("the receive on 1");
    assert!(recv.status.is_err(), "{recv:?}");
    let lost = net.events[1].iter().any(|e| {
        matches!(e, Event::ConnectionLost { conn, reason: ConnError::Refused, .. } if *conn == c1)
    });
    assert!(lost, "{:?}", net.events[1]);
}

#[test]
fn deregistering_a_region_with_a_posted_receive_fails_that_receive() {
    let mut net = Net::new(2, weir_transport::Config::default(), Link::default(), 9);
    let (c0, c1) = net.connect(0, 1, Duration::from_millis(50)).expect("0-1");
    let (dst, _) = net.region(1, 4096, |_| 0, false);
    let now = net.now;
    net.eps[1]
        .post(
            now,
            c1,
            weir_transport::WorkRequest::Recv {
                region: dst,
                offset: 0,
                len: 4096,
                tag: None,
            },
        )
        .expect("post");
    assert!(net.eps[1].deregister(now, dst));
    assert!(net.run_until(Duration::from_millis(10), |n| n.completions(1).count() == 1));
    let c = net.completions(1).next().expect("completion");
    assert_eq!(
        c.status,
        Err(WrError::ConnectionLost(ConnError::LocalAccess))
    );
    assert!(net.run_until(Duration::from_millis(10), |n| n.conn_failed(0, c0)));
}
