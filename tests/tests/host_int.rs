//! The UDP host as an INT hop: with telemetry requested, every data packet arrives with a
//! record of the receiving host's queue, the receiver echoes it, and the sender's ACKs carry
//! it; without, nothing is added.

use std::time::Duration;

use weir_datapath::host::{Host, HostConfig};
use weir_transport::{CompletionKind, WorkRequest};

fn transfer(request_int: bool) -> weir_transport::ConnStats {
    transfer_with(request_int, None)
}

fn transfer_with(
    request_int: bool,
    reload: Option<weir_congestion::CcConfig>,
) -> weir_transport::ConnStats {
    let start = |listen: bool| {
        let mut t = weir_transport::Config::default();
        t.request_int = request_int;
        let mut cfg = HostConfig {
            transport: t,
            ..HostConfig::default()
        };
        cfg.udp.bind = "127.0.0.1".parse().expect("addr");
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
    if let Some(cc) = reload {
        // Hot reload on both hosts: the sender's controller, the receiver's INT hop.
        assert_eq!(tx.set_cc(cc), (0, 1));
        assert_eq!(rx.set_cc(cc), (0, 1));
        assert_eq!(tx.conn_stats(conn).map(|_| ()), Some(()));
    }
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
            let c = tx.wait_completion(Duration::from_secs(20)).expect("send");
            assert!(c.status.is_ok() && c.kind == CompletionKind::Send, "{c:?}");
            sent += 1;
        }
        if got < 8 {
            let c = rx.wait_completion(Duration::from_secs(20)).expect("recv");
            assert!(c.status.is_ok(), "{c:?}");
            got += 1;
        }
    }
    tx.conn_stats(conn).expect("stats")
}

#[test]
fn udp_host_adds_its_hop_when_asked() {
    let with = transfer(true);
    assert!(with.int_acks_received > 0, "{with:?}");
    let without = transfer(false);
    assert_eq!(without.int_acks_received, 0, "{without:?}");
}

/// Switching a running host to HPCC turns INT on: the receiver starts adding its hop.
#[test]
fn reloading_to_an_int_law_turns_the_host_hop_on() {
    let hpcc = weir_congestion::CcConfig::by_name("hpcc").expect("hpcc");
    let stats = transfer_with(false, Some(hpcc));
    assert!(stats.int_acks_received > 0, "{stats:?}");
}
