//! Graceful close (`Endpoint::close_graceful`): what was posted before the close is delivered
//! and acknowledged, under loss too; new requests are refused at once; both sides see the
//! connection end; a peer that stops answering does not hold the close beyond the peer
//! timeout.

use weir_base::Duration;
use weir_tests::{Fate, Link, Net};
use weir_transport::{Config, Event, PostError, WorkRequest, WrError};

const SIZE: usize = 256 << 10;

fn lossy() -> Link {
    Link {
        loss: 0.05,
        reorder: 0.05,
        ..Link::default()
    }
}

/// Post `msgs` sends from 0 to 1 (and their receives), close gracefully at once, and run.
fn close_after_sends(link: Link, seed: u64, msgs: usize) {
    let mut config = Config::default();
    config.min_rto = Duration::from_micros(200);
    config.initial_rto = Duration::from_micros(500);
    let mut net = Net::new(2, config, link, seed);
    let (c0, c1) = net
        .connect(0, 1, Duration::from_millis(50))
        .expect("connects");
    let (src, _) = net.region(0, SIZE * msgs, |i| (i % 251) as u8, false);
    let (dst, dptr) = net.region(1, SIZE * msgs, |_| 0, false);
    let now = net.now;
    for m in 0..msgs {
        let at = (m * SIZE) as u64;
        let recv = WorkRequest::Recv {
            region: dst,
            offset: at,
            len: SIZE as u64,
            tag: None,
        };
        net.eps[1].post(now, c1, recv).expect("recv");
        let send = WorkRequest::Send {
            region: src,
            offset: at,
            len: SIZE as u64,
            tag: m as u64,
        };
        net.eps[0].post(now, c0, send).expect("send");
    }
    net.eps[0].close_graceful(now, c0);
    // Refused at once, before anything moved.
    let late = WorkRequest::Send {
        region: src,
        offset: 0,
        len: 1,
        tag: 99,
    };
    assert_eq!(net.eps[0].post(now, c0, late), Err(PostError::NotConnected));
    let closed = net.run_until(Duration::from_secs(2), |n| {
        n.events[0]
            .iter()
            .any(|e| matches!(e, Event::Closed { conn } if *conn == c0))
            && n.events[1]
                .iter()
                .any(|e| matches!(e, Event::Closed { conn } if *conn == c1))
    });
    assert!(closed, "both sides see Closed (seed {seed})");
    let sends: Vec<_> = net.completions(0).collect();
    assert_eq!(sends.len(), msgs, "seed {seed}");
    assert!(
        sends.iter().all(|c| c.status.is_ok()),
        "seed {seed}: {sends:?}"
    );
    let recvs: Vec<_> = net.completions(1).collect();
    assert_eq!(recvs.len(), msgs, "seed {seed}");
    assert!(recvs.iter().all(|c| c.status.is_ok()), "seed {seed}");
    let got = net.bytes(dptr, SIZE * msgs);
    assert!(
        got.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8),
        "seed {seed}: data intact"
    );
    // Nothing failed on either side.
    for e in net.events.iter().flatten() {
        assert!(
            !matches!(e, Event::ConnectionLost { .. }),
            "seed {seed}: {e:?}"
        );
    }
}

#[test]
fn graceful_close_delivers_everything_posted_before_it() {
    close_after_sends(Link::default(), 1, 4);
}

#[test]
fn graceful_close_delivers_under_loss() {
    for seed in 1..=6 {
        close_after_sends(lossy(), seed, 3);
    }
}

#[test]
fn graceful_close_gives_up_after_the_peer_timeout() {
    let mut config = Config::default();
    config.peer_timeout = Duration::from_millis(30);
    config.keepalive = Duration::from_millis(5);
    let mut net = Net::new(2, config, Link::default(), 9);
    let (c0, _c1) = net
        .connect(0, 1, Duration::from_millis(50))
        .expect("connects");
    // From now on nothing from 1 reaches 0.
    net.tap = Some(Box::new(
        |t, _| {
            if t.src == 1 { Fate::Drop } else { Fate::Pass }
        },
    ));
    let (src, _) = net.region(0, SIZE, |_| 1, false);
    let now = net.now;
    let send = WorkRequest::Send {
        region: src,
        offset: 0,
        len: SIZE as u64,
        tag: 0,
    };
    net.eps[0].post(now, c0, send).expect("send");
    net.eps[0].close_graceful(now, c0);
    let ended = net.run_until(Duration::from_secs(1), |n| n.completions(0).count() == 1);
    assert!(ended, "the close did not give up");
    let c = net.completions(0).next().expect("one completion");
    assert!(
        matches!(c.status, Err(WrError::Closed | WrError::ConnectionLost(_))),
        "{c:?}"
    );
}

#[test]
fn graceful_close_of_an_idle_connection_is_immediate_on_both_sides() {
    let mut net = Net::new(2, Config::default(), Link::default(), 4);
    let (c0, c1) = net
        .connect(0, 1, Duration::from_millis(50))
        .expect("connects");
    let now = net.now;
    net.eps[0].close_graceful(now, c0);
    let closed = net.run_until(Duration::from_millis(50), |n| {
        n.events[1]
            .iter()
            .any(|e| matches!(e, Event::Closed { conn } if *conn == c1))
    });
    assert!(closed);
    assert!(
        net.events[0]
            .iter()
            .any(|e| matches!(e, Event::Closed { conn } if *conn == c0))
    );
    assert_eq!(net.eps[0].connections(), 0);
}

/// The CLOSE that ends a graceful close is lost (the first two copies): the closing side
/// repeats it while it lingers, so the idle peer still sees `Closed` within milliseconds —
/// not `ConnectionLost` after its peer timeout — and the lingering connection is forgotten
/// after its repeats.
#[test]
fn graceful_close_survives_a_lost_close() {
    let mut net = Net::new(2, Config::default(), Link::default(), 12);
    let (c0, c1) = net
        .connect(0, 1, Duration::from_millis(50))
        .expect("connects");
    let mut dropped = 0;
    net.tap = Some(Box::new(move |t, bytes| {
        let close = weir_wire::parse(bytes, weir_wire::PayloadMode::Bytes)
            .is_ok_and(|p| p.header.common.opcode == weir_wire::Opcode::Close);
        if t.src == 0 && close && dropped < 2 {
            dropped += 1;
            Fate::Drop
        } else {
            Fate::Pass
        }
    }));
    let now = net.now;
    net.eps[0].close_graceful(now, c0);
    let closed = net.run_until(Duration::from_millis(20), |n| {
        n.events[1]
            .iter()
            .any(|e| matches!(e, Event::Closed { conn } if *conn == c1))
    });
    assert!(
        closed,
        "the peer never heard the close: {:?}",
        net.events[1]
    );
    assert_eq!(net.stats.tap_dropped, 2);
    assert!(
        net.events[0]
            .iter()
            .any(|e| matches!(e, Event::Closed { conn } if *conn == c0))
    );
    for e in net.events.iter().flatten() {
        assert!(!matches!(e, Event::ConnectionLost { .. }), "{e:?}");
    }
    assert_eq!(net.eps[0].connections(), 0);
    // The lingering connection is gone after its repeats: nothing left to time out.
    net.run_until(Duration::from_millis(100), |_| false);
    assert_eq!(net.eps[0].poll_timeout(), None);
}
