//! A peer process that dies (`kill -9`) while the surviving side has work outstanding.
//!
//! The survivor is a [`Host`] in the test process with a 1 s peer timeout and 100 ms
//! keepalives; the peer is `weir-test-peer serve` in its own process. After the kill the
//! survivor must, within a bound (10 × the peer timeout: a bound on a hang, not a timing
//! assertion):
//!
//! * complete every outstanding request with an error (`wait_completion` returns them; none is
//!   lost and none hangs),
//! * report `HostError::ConnectionLost` naming the peer's address from `conn_error`,
//! * refuse later posts with the same error,
//! * and then stay quiet (no spurious completions) and shut down promptly.
//!
//! Two situations, in both modes: the peer dies while we have sends outstanding (one of them
//! has completed, so data really flowed; the others cannot complete because the peer posted no
//! receive for them and its early-message budget is smaller than one message), and the peer
//! dies while the connection is idle with only our receives posted (so only keepalives can
//! notice; before the kill the test also checks that an idle connection to a live peer
//! survives several peer timeouts).
// An I/O test: reads the clock, spawns processes and threads.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use weir_bench::process::{Peer, bounded};
use weir_datapath::{Host, HostConfig, HostError};
use weir_transport::{
    CompletionKind, ConnError, ConnId, Mode, RegionId, WorkRequest, WrError, WrId,
};

const PEER_TIMEOUT: Duration = Duration::from_millis(1000);
const KEEPALIVE: Duration = Duration::from_millis(100);
/// Longest the survivor may take to notice the dead peer (a bound on a hang).
const DETECT_BOUND: Duration = Duration::from_secs(10);
/// Size of each message in the outstanding-sends case.
const MSG: u64 = 4 << 20;
/// The whole test, whatever happens.
const TEST_BOUND: Duration = Duration::from_secs(120);

#[test]
fn dies_with_sends_outstanding_weir() {
    bounded("sends, weir", TEST_BOUND, || sends_outstanding(Mode::Weir));
}

#[test]
fn dies_with_sends_outstanding_go_back_n() {
    bounded("sends, gbn", TEST_BOUND, || {
        sends_outstanding(Mode::GoBackN)
    });
}

#[test]
fn dies_while_idle_with_receives_posted_weir() {
    bounded("idle, weir", TEST_BOUND, || idle_receives(Mode::Weir));
}

#[test]
fn dies_while_idle_with_receives_posted_go_back_n() {
    bounded("idle, gbn", TEST_BOUND, || idle_receives(Mode::GoBackN));
}

fn sends_outstanding(mode: Mode) {
    // The peer posts one receive of MSG bytes and may hold only 1 MiB of early data.
    let (mut peer, addr) = spawn_peer(mode, "4M");
    let host = survivor(mode);
    let conn = host
        .connect(addr, 1, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}\n{}", peer.stderr()));
    peer.expect("READY", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    let (region, _buf) = host.alloc(4 * MSG as usize, false).expect("alloc");
    let ids: Vec<WrId> = (0..4)
        .map(|i| post_send(&host, conn, region, i).unwrap_or_else(|e| panic!("post {i}: {e}")))
        .collect();
    let first = host
        .wait_completion(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("first send: {e}; {:?}", host.conn_stats(conn)));
    assert_eq!(
        (first.wr, first.kind, first.status, first.len),
        (ids[0], CompletionKind::Send, Ok(()), MSG),
        "the first send (the only one the peer has a receive for) completes first: {first:?}"
    );

    peer.kill();
    let killed = Instant::now();
    let failed = expect_failures(&host, conn, addr, killed, &ids[1..]);
    assert!(failed.iter().all(|c| c.kind == CompletionKind::Send));
    after_failure(&host, conn, addr, || post_send(&host, conn, region, 0));
    eprintln!(
        "{mode:?}: sends outstanding, peer {addr} killed; all {} failed within {:?}",
        failed.len(),
        killed.elapsed()
    );
    shut_down(host);
}

fn idle_receives(mode: Mode) {
    let (mut peer, addr) = spawn_peer(mode, "");
    let host = survivor(mode);
    let conn = host
        .connect(addr, 2, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}\n{}", peer.stderr()));
    peer.expect("READY", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    let (region, _buf) = host.alloc(3 << 16, false).expect("alloc");
    let recv = |i: u64| WorkRequest::Recv {
        region,
        offset: i << 16,
        len: 1 << 16,
        tag: None,
    };
    let ids: Vec<WrId> = (0..3)
        .map(|i| {
            host.post(conn, recv(i))
                .unwrap_or_else(|e| panic!("post {i}: {e}"))
        })
        .collect();

    // A live peer keeps an idle connection alive across several peer timeouts (keepalives).
    match host.wait_completion(PEER_TIMEOUT * 5 / 2) {
        Err(HostError::Timeout { .. }) => {}
        Ok(c) => panic!("completion on an idle connection: {c:?}"),
        Err(e) => panic!(
            "idle connection to a live peer failed: {e}\n{}",
            peer.stderr()
        ),
    }
    assert!(
        host.conn_error(conn).is_none(),
        "{:?}",
        host.conn_error(conn)
    );

    peer.kill();
    let killed = Instant::now();
    let failed = expect_failures(&host, conn, addr, killed, &ids);
    assert!(failed.iter().all(|c| c.kind == CompletionKind::Recv));
    after_failure(&host, conn, addr, || host.post(conn, recv(0)));
    eprintln!(
        "{mode:?}: idle with receives posted, peer {addr} killed; all {} failed within {:?}",
        failed.len(),
        killed.elapsed()
    );
    shut_down(host);
}

/// Wait for one failed completion per request in `ids` and for the connection error.
fn expect_failures(
    host: &Host,
    conn: ConnId,
    addr: SocketAddr,
    killed: Instant,
    ids: &[WrId],
) -> Vec<weir_transport::Completion> {
    let mut failed = Vec::new();
    while failed.len() < ids.len() {
        let left = DETECT_BOUND.saturating_sub(killed.elapsed());
        let c = host.wait_completion(left).unwrap_or_else(|e| {
            panic!(
                "{} of {} outstanding requests failed {:?} after the kill ({e}); conn error \
                 {:?}; stats {:?}",
                failed.len(),
                ids.len(),
                killed.elapsed(),
                host.conn_error(conn),
                host.conn_stats(conn)
            )
        });
        assert_eq!(c.conn, conn, "{c:?}");
        assert!(
            ids.contains(&c.wr),
            "completion of an unexpected request: {c:?}"
        );
        assert!(
            !failed
                .iter()
                .any(|f: &weir_transport::Completion| f.wr == c.wr),
            "second completion of one request: {c:?}"
        );
        assert!(
            matches!(
                c.status,
                Err(WrError::ConnectionLost(ConnError::PeerTimeout { .. }))
            ),
            "an outstanding request to a dead peer completes with a peer timeout: {c:?}"
        );
        failed.push(c);
    }
    let detected = killed.elapsed();
    assert!(
        detected < DETECT_BOUND,
        "failures reported {detected:?} after the kill (bound {DETECT_BOUND:?})"
    );
    let err = host
        .conn_error(conn)
        .expect("conn_error reports the failed connection");
    match &err {
        HostError::ConnectionLost {
            conn: c,
            peer,
            reason,
        } => {
            assert_eq!((*c, *peer), (conn, addr), "{err}");
            assert!(matches!(reason, ConnError::PeerTimeout { .. }), "{err}");
        }
        other => panic!("expected ConnectionLost, got {other:?}"),
    }
    assert!(
        err.to_string().contains(&addr.to_string()),
        "the error names the peer {addr}: {err}"
    );
    failed
}

/// After the failure: posting is refused with an error naming the peer, no completion appears
/// and `is_connected` reports the failure.
fn after_failure(
    host: &Host,
    conn: ConnId,
    addr: SocketAddr,
    post: impl FnOnce() -> Result<WrId, HostError>,
) {
    match post() {
        Ok(wr) => panic!("post on a lost connection was accepted: {wr:?}"),
        Err(e @ HostError::ConnectionLost { peer, .. }) => {
            assert_eq!(peer, addr, "{e}");
            assert!(e.to_string().contains(&addr.to_string()), "{e}");
        }
        Err(e) => panic!("post on a lost connection: expected ConnectionLost, got {e:?}"),
    }
    match host.wait_completion(Duration::from_millis(300)) {
        Err(HostError::Timeout { .. }) => {}
        other => panic!("nothing more completes on a lost connection: {other:?}"),
    }
    assert!(host.is_connected(conn).is_err());
}

/// Dropping the host stops its engine thread promptly (bounded by the test's watchdog).
fn shut_down(host: Host) {
    let t = Instant::now();
    drop(host);
    eprintln!("host shut down in {:?}", t.elapsed());
}

fn post_send(host: &Host, conn: ConnId, region: RegionId, i: u64) -> Result<WrId, HostError> {
    host.post(
        conn,
        WorkRequest::Send {
            region,
            offset: i * MSG,
            len: MSG,
            tag: i,
        },
    )
}

fn spawn_peer(mode: Mode, recv_sizes: &str) -> (Peer, SocketAddr) {
    let mode = if mode == Mode::GoBackN { "gbn" } else { "weir" };
    let args = [
        "serve",
        "--mode",
        mode,
        "--sizes",
        recv_sizes,
        "--unexpected-bytes",
        "1M",
        "--timeout-s",
        "120",
    ]
    .map(String::from);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir-test-peer"));
    cmd.args(args);
    let mut peer = Peer::spawn("serve peer", cmd).unwrap_or_else(|e| panic!("{e}"));
    let addr = peer
        .expect("ADDR ", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = addr
        .parse()
        .unwrap_or_else(|e| panic!("bad address {addr:?}: {e}"));
    (peer, addr)
}

fn survivor(mode: Mode) -> Host {
    let mut t = if mode == Mode::GoBackN {
        weir_transport::Config::go_back_n()
    } else {
        weir_transport::Config::default()
    };
    t.peer_timeout = weir_base::Duration::from_nanos(PEER_TIMEOUT.as_nanos() as u64);
    t.keepalive = weir_base::Duration::from_nanos(KEEPALIVE.as_nanos() as u64);
    Host::start(HostConfig {
        transport: t,
        ..HostConfig::default()
    })
    .expect("start the surviving host")
}
