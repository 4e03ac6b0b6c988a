//! Two peer processes over real UDP on loopback, both directions at once.
//!
//! Each test spawns two `weir-test-peer exchange` processes (roles `a` and `b`), hands each the
//! other's address, and lets both send 1 KiB, 64 KiB, 1 MiB, 8 MiB and 64 MiB to the other while
//! receiving the other's. Every message has its own content (seeded by sender role, index and
//! size); each peer checks the length, tag and every byte of what it received (and that nothing
//! past the message was written) and that every send completed, then reports one JSON line.
//! The test asserts that both peers succeeded. Modes: Weir, go-back-N, and Weir with 1 % of
//! received datagrams dropped by the host's fault injector on both sides.
//!
//! Correctness only: the timeouts are generous bounds on a hang, nothing asserts on speed.
// An I/O test: reads the clock, spawns processes and reader threads.
#![allow(clippy::disallowed_methods)]

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use weir_bench::process::{Peer, json_u64 as num, serial};

/// The peer binary, built by cargo for the tests of this package.
const PEER_BIN: &str = env!("CARGO_BIN_EXE_weir-test-peer");

/// One exchange at a time: each is two processes with busy-polling engine threads.
static SERIAL: Mutex<()> = Mutex::new(());

const SIZES: &str = "1K,64K,1M,8M,64M";
/// Bound on a whole exchange (a hang, not a slow run).
const RESULT_TIMEOUT: Duration = Duration::from_secs(240);

#[test]
fn bidirectional_weir() {
    serial(&SERIAL, || exchange("weir", 0.0));
}

#[test]
fn bidirectional_go_back_n() {
    serial(&SERIAL, || exchange("gbn", 0.0));
}

#[test]
fn bidirectional_weir_one_percent_loss() {
    serial(&SERIAL, || exchange("weir", 0.01));
}

fn exchange(mode: &str, loss: f64) {
    let t0 = Instant::now();
    let args = |role: &str| -> Vec<String> {
        [
            "exchange",
            "--role",
            role,
            "--mode",
            mode,
            "--sizes",
            SIZES,
            "--loss",
            &loss.to_string(),
            "--max-payload",
            "8192",
            "--timeout-s",
            "200",
        ]
        .map(String::from)
        .to_vec()
    };
    let spawn = |name: &str, args: Vec<String>| {
        let mut cmd = Command::new(PEER_BIN);
        cmd.args(args);
        Peer::spawn(name, cmd).unwrap_or_else(|e| panic!("{e}"))
    };
    let mut a = spawn("peer a", args("a"));
    let mut b = spawn("peer b", args("b"));
    let addr_a = a
        .expect("ADDR ", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    let addr_b = b
        .expect("ADDR ", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    a.send(&format!("PEER {addr_b}"));
    b.send(&format!("PEER {addr_a}"));
    let ra = a.json::<serde_json::Value>(RESULT_TIMEOUT);
    let rb = b.json::<serde_json::Value>(RESULT_TIMEOUT);
    // Only now may either side close: both have every completion.
    let sa = a.finish(Duration::from_secs(10));
    let sb = b.finish(Duration::from_secs(10));
    let ra = ra.unwrap_or_else(|e| panic!("{mode} loss {loss}: {e}"));
    let rb = rb.unwrap_or_else(|e| panic!("{mode} loss {loss}: {e}"));
    assert!(
        ra["ok"] == true && rb["ok"] == true,
        "{mode} loss {loss}: a peer failed\npeer a: {ra}\nstderr of a:\n{}\npeer b: {rb}\n\
         stderr of b:\n{}",
        a.stderr(),
        b.stderr()
    );
    let total: u64 = 1024 + (64 << 10) + (1 << 20) + (8 << 20) + (64 << 20);
    for r in [&ra, &rb] {
        assert_eq!(num(r, &["bytes_sent"]), total, "{r}");
        assert_eq!(num(r, &["bytes_received"]), total, "{r}");
    }
    if loss > 0.0 {
        // The injector really dropped datagrams, and the transport really recovered them.
        let dropped =
            num(&ra, &["host", "fault_rx_dropped"]) + num(&rb, &["host", "fault_rx_dropped"]);
        let retx = num(&ra, &["conn", "retransmits"]) + num(&rb, &["conn", "retransmits"]);
        assert!(dropped > 0, "no datagram was dropped: {ra}\n{rb}");
        assert!(retx > 0, "nothing was retransmitted: {ra}\n{rb}");
    }
    assert!(
        sa.is_some_and(|s| s.success()),
        "peer a exit {sa:?}: {}",
        a.stderr()
    );
    assert!(
        sb.is_some_and(|s| s.success()),
        "peer b exit {sb:?}: {}",
        b.stderr()
    );
    for (name, r) in [("a", &ra), ("b", &rb)] {
        eprintln!(
            "{mode} loss {loss} peer {name}: {} ms, {} data pkts, {} retx, {} rto, {} dropped by \
             injector of {} seen, udp rx {} tx {}",
            r["elapsed_ms"].as_f64().unwrap_or(0.0).round(),
            num(r, &["conn", "data_packets"]),
            num(r, &["conn", "retransmits"]),
            num(r, &["conn", "rto_events"]),
            num(r, &["host", "fault_rx_dropped"]),
            num(r, &["host", "fault_rx_seen"]),
            num(r, &["host", "udp_rx_datagrams"]),
            num(r, &["host", "udp_tx_datagrams"]),
        );
    }
    eprintln!("{mode} loss {loss}: total {:?}", t0.elapsed());
}
