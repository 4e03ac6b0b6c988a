//! Aggregate of two streaming pairs through each placement (a report, not a pass/fail test):
//!
//! `cargo test --release -p weir-firmware --test aggregate -- --ignored --nocapture`
//!
//! * `inproc`: each of the four clients has its own engine thread (what a process with its
//!   own `Host` has today): four engines on the host.
//! * `daemon`: two `weir engine` daemons on loopback (a sender "host" and a receiver "host"),
//!   two clients attached to each through the Unix socket, rings and memory in memfds;
//!   `WEIR_AGG_LOOPS` engine loops per daemon (default: `weir engine`'s, the CPUs, at most 4).
//!
//! Each pair streams `WEIR_AGG_MB` MiB (default 256) in 1 MiB messages with 8 in flight (two
//! NCCL channels' worth of requests). Printed per run: aggregate goodput (every byte, first
//! post → last receive completion) and the engines' CPU time per GB moved. Placements are
//! alternated `WEIR_AGG_RUNS` times (default 3). The clients are threads of this process; the
//! daemon's still reach their memory only through memfds, as a separate process would.
#![cfg(not(loom))]
#![allow(clippy::disallowed_methods)]

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use weir_datapath::HostConfig;
use weir_firmware::daemon::{Daemon, connect};
use weir_firmware::inproc::{Client, EngineThread};
use weir_firmware::{CqeKind, EngineConfig, Op, Status};

const CHUNK: u64 = 1 << 20;
const WINDOW: u64 = 8;

fn cfg() -> HostConfig {
    let mut c = HostConfig::default();
    c.udp.bind = std::net::Ipv4Addr::LOCALHOST.into();
    c
}

/// `WEIR_AGG_LOOPS`, else `weir engine`'s default: the CPUs, at most 4.
fn daemon_loops() -> usize {
    env(
        "WEIR_AGG_LOOPS",
        weir_firmware::daemon::default_loops() as u64,
    ) as usize
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ok(c: &mut Client, kind: CqeKind) -> weir_firmware::Cqe {
    let cqe = c.wait(Duration::from_secs(30)).expect("completion");
    assert_eq!((cqe.kind, cqe.status), (kind, Status::Ok), "{cqe:?}");
    cqe
}

/// One pair: `tx` streams `total` bytes to `rx` (which listens on `key` at `remote`).
/// Returns (first post, last receive completion).
fn stream(
    mut tx: Client,
    mut rx: Client,
    remote: std::net::SocketAddr,
    key: u64,
    total: u64,
    go: Arc<Barrier>,
) -> (Instant, Instant) {
    rx.submit(Op::Listen {
        key,
        secret: None,
        span: 1,
    })
    .unwrap();
    ok(&mut rx, CqeKind::Done);
    tx.submit(Op::Connect {
        remote,
        user_data: key,
        secret: None,
    })
    .unwrap();
    let ht = ok(&mut tx, CqeKind::Connected).conn;
    let hr = ok(&mut rx, CqeKind::Accepted).conn;
    let len = (CHUNK * WINDOW) as usize;
    let (st, mt) = tx.memory(len).unwrap();
    let (sr, _mr) = rx.memory(len).unwrap();
    mt.write(0, &vec![0x5a; len]);
    let reg = |c: &mut Client, segment| {
        c.submit(Op::Register {
            segment,
            offset: 0,
            len: len as u64,
            remote_write: false,
        })
        .unwrap();
        ok(c, CqeKind::Registered).region
    };
    let (rt, rr) = (reg(&mut tx, st), reg(&mut rx, sr));
    let n = total / CHUNK;
    let receiver = std::thread::spawn(move || {
        for k in 0..WINDOW.min(n) {
            rx.submit(Op::Recv {
                conn: hr,
                region: rr,
                offset: k * CHUNK,
                len: CHUNK,
                tag: None,
            })
            .unwrap();
        }
        let mut posted = WINDOW.min(n);
        let mut last = Instant::now();
        for _ in 0..n {
            ok(&mut rx, CqeKind::Recv);
            last = Instant::now();
            if posted < n {
                rx.submit(Op::Recv {
                    conn: hr,
                    region: rr,
                    offset: (posted % WINDOW) * CHUNK,
                    len: CHUNK,
                    tag: None,
                })
                .unwrap();
                posted += 1;
            }
        }
        last
    });
    go.wait();
    let start = Instant::now();
    let mut sent = 0;
    let mut done = 0;
    while done < n {
        while sent < n && sent - done < WINDOW {
            tx.submit(Op::Send {
                conn: ht,
                region: rt,
                offset: (sent % WINDOW) * CHUNK,
                len: CHUNK,
                tag: sent,
            })
            .unwrap();
            sent += 1;
        }
        ok(&mut tx, CqeKind::Send);
        done += 1;
    }
    let last = receiver.join().unwrap();
    (start, last)
}

/// Run both pairs; aggregate GB/s.
fn run_pairs(pairs: Vec<(Client, Client, std::net::SocketAddr)>, total: u64) -> f64 {
    let go = Arc::new(Barrier::new(pairs.len()));
    let handles: Vec<_> = pairs
        .into_iter()
        .enumerate()
        .map(|(i, (tx, rx, remote))| {
            let go = go.clone();
            std::thread::spawn(move || stream(tx, rx, remote, 10 + i as u64, total, go))
        })
        .collect();
    let spans: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let first = spans.iter().map(|s| s.0).min().unwrap();
    let last = spans.iter().map(|s| s.1).max().unwrap();
    (total * spans.len() as u64) as f64 / last.duration_since(first).as_nanos() as f64
}

fn cpu_s(engines: &[&EngineThread]) -> f64 {
    engines
        .iter()
        .map(|e| e.stats().unwrap().2 as f64 / 1e9)
        .sum()
}

fn inproc(total: u64) -> (f64, f64) {
    let engines: Vec<EngineThread> = (0..4)
        .map(|_| EngineThread::start(cfg(), EngineConfig::default()).unwrap())
        .collect();
    let refs: Vec<&EngineThread> = engines.iter().collect();
    let cpu0 = cpu_s(&refs);
    let pairs = vec![
        (
            engines[0].client().unwrap(),
            engines[1].client().unwrap(),
            engines[1].local_addr(),
        ),
        (
            engines[2].client().unwrap(),
            engines[3].client().unwrap(),
            engines[3].local_addr(),
        ),
    ];
    let g = run_pairs(pairs, total);
    let cpu = cpu_s(&refs) - cpu0;
    (g, cpu / (2.0 * total as f64 / 1e9))
}

fn daemon(total: u64) -> (f64, f64) {
    let dir = std::env::temp_dir();
    let pid = std::process::id();
    let pa = dir.join(format!("weir-agg-{pid}-a.sock"));
    let pb = dir.join(format!("weir-agg-{pid}-b.sock"));
    let loops = daemon_loops();
    let a = Daemon::with_loops(&pa, cfg(), EngineConfig::default(), loops).unwrap();
    let b = Daemon::with_loops(&pb, cfg(), EngineConfig::default(), loops).unwrap();
    let refs: Vec<&EngineThread> = a.loops().chain(b.loops()).collect();
    let cpu0 = cpu_s(&refs);
    let pairs = (0..2)
        .map(|_| {
            let rx = connect(&pb, 1024).unwrap();
            let remote = rx.engine_addr();
            (connect(&pa, 1024).unwrap(), rx, remote)
        })
        .collect();
    let g = run_pairs(pairs, total);
    let cpu = cpu_s(&refs) - cpu0;
    (g, cpu / (2.0 * total as f64 / 1e9))
}

#[test]
#[ignore = "a report: run with --ignored --nocapture"]
fn aggregate_report() {
    let total = env("WEIR_AGG_MB", 256) << 20;
    let runs = env("WEIR_AGG_RUNS", 3);
    println!(
        "# 2 pairs × {} MiB, 1 MiB messages, {WINDOW} in flight; goodput GB/s, engine CPU s/GB",
        total >> 20
    );
    println!(
        "{:>4} {:>10} {:>10} {:>10} {:>10}",
        "run", "inproc", "cpu/GB", "daemon", "cpu/GB"
    );
    for r in 0..runs {
        let (gi, ci) = inproc(total);
        let (gd, cd) = daemon(total);
        println!("{r:>4} {gi:>10.3} {ci:>10.3} {gd:>10.3} {cd:>10.3}");
    }
}

/// The receiving side of an incast: accept `n` connections on `key`, keep `WINDOW_IN` receives
/// posted on each, until `per` messages arrived from each. Returns (first, last) completion.
fn incast_receiver(mut rx: Client, key: u64, n: usize, per: u64, ready: Arc<Barrier>) -> Duration {
    const WINDOW_IN: u64 = 4;
    rx.submit(Op::Listen {
        key,
        secret: None,
        span: 1,
    })
    .unwrap();
    ok(&mut rx, CqeKind::Done);
    let slots = n * WINDOW_IN as usize;
    let (seg, _mem) = rx.memory(slots * CHUNK as usize).unwrap();
    rx.submit(Op::Register {
        segment: seg,
        offset: 0,
        len: slots as u64 * CHUNK,
        remote_write: false,
    })
    .unwrap();
    let region = ok(&mut rx, CqeKind::Registered).region;
    ready.wait();
    let mut conns = std::collections::HashMap::new();
    let mut left = n as u64 * per;
    let (mut first, mut last) = (None, Instant::now());
    while left > 0 {
        let c = ok_any(&mut rx);
        match c.kind {
            CqeKind::Accepted => {
                let base = conns.len() as u64 * WINDOW_IN;
                conns.insert(c.conn, (base, 0u64));
                for k in 0..WINDOW_IN {
                    rx.submit(Op::Recv {
                        conn: c.conn,
                        region,
                        offset: (base + k) * CHUNK,
                        len: CHUNK,
                        tag: None,
                    })
                    .unwrap();
                }
            }
            CqeKind::Recv => {
                let now = Instant::now();
                first.get_or_insert(now);
                last = now;
                left -= 1;
                let (base, got) = conns.get_mut(&c.conn).expect("known connection");
                *got += 1;
                if *got + WINDOW_IN <= per {
                    rx.submit(Op::Recv {
                        conn: c.conn,
                        region,
                        offset: (*base + *got % WINDOW_IN) * CHUNK,
                        len: CHUNK,
                        tag: None,
                    })
                    .unwrap();
                }
            }
            _ => {}
        }
    }
    last.duration_since(first.unwrap_or(last))
}

/// The next completion that is not a sender's connection closing after its last message.
fn ok_any(c: &mut Client) -> weir_firmware::Cqe {
    loop {
        let cqe = c.wait(Duration::from_secs(30)).expect("completion");
        if cqe.kind == CqeKind::Closed {
            continue;
        }
        assert_eq!(cqe.status, Status::Ok, "{cqe:?}");
        return cqe;
    }
}

/// One incast sender: `per` 1 MiB messages, 4 in flight.
fn incast_sender(mut tx: Client, remote: std::net::SocketAddr, key: u64, per: u64) {
    tx.submit(Op::Connect {
        remote,
        user_data: key,
        secret: None,
    })
    .unwrap();
    let h = ok(&mut tx, CqeKind::Connected).conn;
    let (seg, _m) = tx.memory((4 * CHUNK) as usize).unwrap();
    tx.submit(Op::Register {
        segment: seg,
        offset: 0,
        len: 4 * CHUNK,
        remote_write: false,
    })
    .unwrap();
    let region = ok(&mut tx, CqeKind::Registered).region;
    let (mut sent, mut done) = (0, 0);
    while done < per {
        while sent < per && sent - done < 4 {
            tx.submit(Op::Send {
                conn: h,
                region,
                offset: (sent % 4) * CHUNK,
                len: CHUNK,
                tag: sent,
            })
            .unwrap();
            sent += 1;
        }
        ok(&mut tx, CqeKind::Send);
        done += 1;
    }
}

/// `senders` clients → one receiver client whose engine has a 256 KiB socket buffer; the
/// senders' clients come from `client(i)`. Aggregate GB/s.
fn incast(
    senders: usize,
    per: u64,
    remote: std::net::SocketAddr,
    rx: Client,
    client: &dyn Fn(usize) -> Client,
) -> f64 {
    let ready = Arc::new(Barrier::new(2));
    let r = ready.clone();
    let receiver = std::thread::spawn(move || incast_receiver(rx, 77, senders, per, r));
    ready.wait();
    let txs: Vec<_> = (0..senders)
        .map(|i| {
            let tx = client(i);
            std::thread::spawn(move || incast_sender(tx, remote, 77, per))
        })
        .collect();
    for t in txs {
        t.join().unwrap();
    }
    let span = receiver.join().unwrap();
    (senders as u64 * per * CHUNK) as f64 / span.as_nanos().max(1) as f64
}

fn receiver_cfg() -> HostConfig {
    let mut c = cfg();
    c.udp.rcvbuf = 256 << 10;
    c
}

/// The wire incast of `weir bench incast` (16 senders × 16 × 1 MiB, 4 in flight, receiver
/// socket buffer 256 KiB) with the senders' engines placed two ways: one engine thread per
/// sender (as 16 processes with their own `Host` have), or all 16 attached to one daemon; one
/// sender alone as the reference, in the same run.
#[test]
#[ignore = "a report: run with --ignored --nocapture"]
fn incast_report() {
    let runs = env("WEIR_AGG_RUNS", 3);
    let senders = env("WEIR_INCAST_SENDERS", 16) as usize;
    let per = 16;
    println!(
        "# incast: {senders} senders × {per} × 1 MiB → 1 receiver (rcvbuf 256 KiB); GB/s and ratio to 1 sender"
    );
    println!(
        "{:>4} {:>10} {:>14} {:>7} {:>14} {:>7}",
        "run", "1 sender", "inproc ×16", "ratio", "daemon ×16", "ratio"
    );
    let dir = std::env::temp_dir();
    for r in 0..runs {
        let rx_engine = EngineThread::start(receiver_cfg(), EngineConfig::default()).unwrap();
        let remote = rx_engine.local_addr();
        let one_engine = EngineThread::start(cfg(), EngineConfig::default()).unwrap();
        let single = incast(1, per, remote, rx_engine.client().unwrap(), &|_| {
            one_engine.client().unwrap()
        });
        drop(one_engine);
        let engines: Vec<EngineThread> = (0..senders)
            .map(|_| EngineThread::start(cfg(), EngineConfig::default()).unwrap())
            .collect();
        let inproc = incast(senders, per, remote, rx_engine.client().unwrap(), &|i| {
            engines[i].client().unwrap()
        });
        drop(engines);
        let path = dir.join(format!("weir-incast-{}.sock", std::process::id()));
        let loops = daemon_loops();
        let d = Daemon::with_loops(&path, cfg(), EngineConfig::default(), loops).unwrap();
        let daemon = incast(senders, per, remote, rx_engine.client().unwrap(), &|_| {
            connect(&path, 256).unwrap()
        });
        drop(d);
        println!(
            "{r:>4} {single:>10.3} {inproc:>14.3} {:>7.2} {daemon:>14.3} {:>7.2}",
            inproc / single,
            daemon / single
        );
    }
}
