//! The UDP host marks its receive queue like a switch port: while the primary socket holds
//! more than `HostConfig::rx_ecn_fraction` of its buffer, received ECN-capable datagrams are
//! marked Congestion Experienced, the receiver counts them, and its ACKs echo them to the
//! sender's controller. With the fraction at 0 nothing is marked.

use std::time::Duration;

use weir_datapath::host::{Host, HostConfig, HostStats};
use weir_transport::{CompletionKind, ConnStats, WorkRequest};

/// Eight 1 MiB messages with a 4 MiB window into a 256 KiB receive buffer: the sender's
/// GSO batches land in the receive queue faster than one receive round takes them.
fn transfer(fraction: f64) -> (HostStats, ConnStats, bool) {
    let start = |listen: bool| {
        let mut cfg = HostConfig {
            rx_ecn_fraction: fraction,
            ..HostConfig::default()
        };
        cfg.udp.bind = "127.0.0.1".parse().expect("addr");
        cfg.udp.rcvbuf = 256 << 10;
        let h = Host::start(cfg).expect("start host");
        if listen {
            h.listen();
        }
        h
    };
    let rx = start(true);
    let tx = start(false);
    let conn = tx
        .connect(rx.local_addr(), 0, Duration::from_secs(10))
        .expect("connect");
    let (rconn, _, _) = rx.accept(Duration::from_secs(10)).expect("accept");
    let size = 1 << 20;
    let (sreg, _sbuf) = tx.alloc(size, false).expect("alloc");
    let (rreg, _rbuf) = rx.alloc(size, false).expect("alloc");
    for i in 0..8u64 {
        rx.post(
            rconn,
            WorkRequest::Recv {
                region: rreg,
                offset: 0,
                len: size as u64,
                tag: None,
            },
        )
        .expect("post recv");
        tx.post(
            conn,
            WorkRequest::Send {
                region: sreg,
                offset: 0,
                len: size as u64,
                tag: i,
            },
        )
        .expect("post send");
    }
    let (mut sent, mut got) = (0, 0);
    while sent < 8 || got < 8 {
        if sent < 8 {
            let c = tx.wait_completion(Duration::from_secs(30)).expect("send");
            assert!(c.status.is_ok() && c.kind == CompletionKind::Send, "{c:?}");
            sent += 1;
        }
        if got < 8 {
            let c = rx.wait_completion(Duration::from_secs(30)).expect("recv");
            assert!(c.status.is_ok(), "{c:?}");
            got += 1;
        }
    }
    let ecn = rx.udp_caps().ecn && tx.udp_caps().ecn;
    (rx.stats(), rx.conn_stats(rconn).expect("stats"), ecn)
}

#[test]
fn a_full_receive_queue_is_marked_and_echoed() {
    let (host, conn, ecn) = transfer(1e-6);
    if !ecn {
        weir_bench::report_skipped(
            "a_full_receive_queue_is_marked_and_echoed",
            "the sockets cannot carry ECN bits (IP_TOS/IP_RECVTOS refused)",
            None,
        );
        return;
    }
    assert!(host.rx_ecn_marked > 0, "{host:?}");
    assert!(conn.rx_ecn_bytes > 0, "{conn:?}");
}

#[test]
fn no_marking_when_turned_off() {
    let (host, conn, _) = transfer(0.0);
    assert_eq!(host.rx_ecn_marked, 0, "{host:?}");
    assert_eq!(conn.rx_ecn_bytes, 0, "{conn:?}");
}
