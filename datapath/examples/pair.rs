//! Two hosts in one process: a quick look at goodput and retransmissions.
//! `cargo run --release -p weir-datapath --example pair -- SIZE COUNT LOSS`
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use weir_datapath::{FaultConfig, Host, HostConfig};
use weir_transport::{Config, WorkRequest};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let size: usize = args.get(1).map_or(1 << 20, |s| s.parse().unwrap());
    let count: usize = args.get(2).map_or(200, |s| s.parse().unwrap());
    let loss: f64 = args.get(3).map_or(0.0, |s| s.parse().unwrap());
    let gbn = args.get(4).is_some_and(|s| s == "gbn");
    let window = 4;
    let mut tcfg = if gbn {
        Config::go_back_n()
    } else {
        Config::default()
    };
    if let Ok(w) = std::env::var("WIN") {
        tcfg.cc = weir_congestion::CcConfig::Fixed {
            window: w.parse().unwrap(),
            rate: None,
        };
    }
    if let Ok(w) = std::env::var("MTU") {
        tcfg.max_payload = w.parse().unwrap();
    }
    let a = Host::start(HostConfig {
        transport: tcfg,
        ..HostConfig::default()
    })
    .unwrap();
    let b = Host::start(HostConfig {
        transport: tcfg,
        fault_rx: FaultConfig {
            drop: loss,
            seed: 7,
            ..FaultConfig::none()
        },
        ..HostConfig::default()
    })
    .unwrap();
    b.listen();
    let ca = a
        .connect(b.local_addr(), 1, Duration::from_secs(5))
        .unwrap();
    let (cb, _, _) = b.accept(Duration::from_secs(5)).unwrap();
    let (sr, _) = a.alloc(size * window, false).unwrap();
    let (rr, _) = b.alloc(size * window, false).unwrap();
    let t0 = Instant::now();
    let mut posted = 0;
    let mut done = 0;
    for i in 0..window.min(count) {
        b.post(
            cb,
            WorkRequest::Recv {
                region: rr,
                offset: (i * size) as u64,
                len: size as u64,
                tag: None,
            },
        )
        .unwrap();
        a.post(
            ca,
            WorkRequest::Send {
                region: sr,
                offset: (i * size) as u64,
                len: size as u64,
                tag: 0,
            },
        )
        .unwrap();
        posted += 1;
    }
    let mut recvd = 0;
    while done < count || recvd < count {
        if let Some(c) = b.poll_completion() {
            assert!(c.status.is_ok(), "{c:?}");
            recvd += 1;
            if recvd + window <= count {
                let slot = (recvd + window - 1) % window;
                b.post(
                    cb,
                    WorkRequest::Recv {
                        region: rr,
                        offset: (slot * size) as u64,
                        len: size as u64,
                        tag: None,
                    },
                )
                .unwrap();
            }
            continue;
        }
        if let Some(c) = a.poll_completion() {
            assert!(c.status.is_ok(), "{c:?}");
            done += 1;
            if posted < count {
                let slot = posted % window;
                a.post(
                    ca,
                    WorkRequest::Send {
                        region: sr,
                        offset: (slot * size) as u64,
                        len: size as u64,
                        tag: 0,
                    },
                )
                .unwrap();
                posted += 1;
            }
            continue;
        }
        std::thread::yield_now();
    }
    let el = t0.elapsed();
    let gbps = (size * count) as f64 / el.as_secs_f64() / 1e9;
    println!("size {size} count {count} loss {loss}: {gbps:.3} GB/s in {el:?}");
    println!("sender {:?}", a.conn_stats(ca).unwrap());
    println!("receiver {:?}", b.conn_stats(cb).unwrap());
    println!("paths {:?}", a.path_stats(ca).unwrap());
    println!("a {:?}", a.stats());
    println!("b {:?}", b.stats());
}
