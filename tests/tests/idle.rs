//! An idle connection (nothing posted, nothing in flight) is silent: no keepalives, no peer
//! timeout, so tens of thousands of idle connections cost the engine nothing. Liveness comes
//! back with the next request: a receive posted after a long idle period to a peer that has
//! meanwhile died fails within the peer timeout, naming the peer timeout.

use weir_base::Duration;
use weir_tests::{Link, Net};
use weir_transport::{ConnError, Event, WorkRequest, WrError};

fn config() -> weir_transport::Config {
    let mut c = weir_transport::Config::default();
    c.keepalive = Duration::from_millis(100);
    c.peer_timeout = Duration::from_millis(1000);
    c
}

#[test]
fn idle_connections_are_silent_and_wake_on_work() {
    let mut net = Net::new(2, config(), Link::default(), 3);
    let (c0, c1) = net
        .connect(0, 1, Duration::from_millis(50))
        .expect("connect");
    // Let the handshake's last packets settle, then 20 keepalive intervals and 5 peer
    // timeouts of idleness: nothing is sent and nothing fails.
    net.run_until(Duration::from_millis(10), |_| false);
    let sent = net.stats.sent;
    net.run_until(Duration::from_secs(5), |_| false);
    assert_eq!(net.stats.sent, sent, "an idle connection sent something");
    assert!(!net.conn_failed(0, c0) && !net.conn_failed(1, c1));
    // Work on a live pair goes through after the idle period.
    let (src, _) = net.region(0, 4096, |i| i as u8, false);
    let (dst, _) = net.region(1, 4096, |_| 0, false);
    let now = net.now;
    net.post_transfer(now, (0, c0, src), (1, c1, dst), 4096);
    assert!(net.run_until(Duration::from_millis(50), |n| {
        n.completions(0).count() == 1 && n.completions(1).count() == 1
    }));
    assert!(
        net.completions(0)
            .chain(net.completions(1))
            .all(|c| c.status.is_ok())
    );
    // Idle again; then the peer dies (everything to and from it is lost) and a receive is
    // posted: keepalives start again and the silence fails the connection.
    net.run_until(Duration::from_secs(3), |_| false);
    let dead = Link {
        loss: 1.0,
        ..Link::default()
    };
    net.set_link(0, 1, dead);
    net.set_link(1, 0, dead);
    let posted_at = net.now;
    let (buf, _) = net.region(0, 4096, |_| 0, false);
    net.eps[0]
        .post(
            posted_at,
            c0,
            WorkRequest::Recv {
                region: buf,
                offset: 0,
                len: 4096,
                tag: None,
            },
        )
        .expect("post");
    assert!(net.run_until(Duration::from_secs(3), |n| n.conn_failed(0, c0)));
    let waited = net.now.saturating_since(posted_at);
    assert!(
        waited >= Duration::from_millis(1000) && waited <= Duration::from_millis(1300),
        "failed {waited} after the post"
    );
    assert!(net.events[0].iter().any(|e| matches!(
        e,
        Event::ConnectionLost {
            reason: ConnError::PeerTimeout { .. },
            ..
        }
    )));
    let failed = net.completions(0).last().expect("the receive completes");
    assert!(
        matches!(
            failed.status,
            Err(WrError::ConnectionLost(ConnError::PeerTimeout { .. }))
        ),
        "{failed:?}"
    );
}
