//! A report, not a test of timing (`#[ignore]`, run by hand): the NCCL plugin as a victim of
//! floods on loopback, as an attacker who reaches only its UDP port would run them.
//!
//! ```text
//! cargo build --release -p weir-nccl-net
//! cargo test --release -p weir-bench --test flood -- --ignored --nocapture
//! ```
//!
//! One process loads the plugin, keeps an 8 MiB stream running on a connected pair and holds
//! a listen comm it no longer accepts on (as NCCL after communicator init). An attacker
//! thread floods that listen comm's port from one UDP socket at `WEIR_FLOOD_RATE` datagrams/s
//! (default 50,000), in phases of `WEIR_FLOOD_SECS` (default 3):
//!
//! * `syn`: SYNs with random connection ids, nonces and user data and no valid MAC (an
//!   outsider, who lacks the handle);
//! * `handshake`: an insider who holds the handle (token and secret): authenticated SYNs,
//!   each cookie SYN-ACK answered with its confirm, so every answered SYN completes a
//!   handshake the application never accepts.
//!
//! `WEIR_FLOOD_PLUGIN=/path/to/libnccl_net_weir.so` runs the same report against another build.
//!
//! Each phase prints the stream's goodput against the phase before the floods, the time a
//! fresh listen/connect/accept through the plugin takes during the flood, the process's
//! resident memory growth, and the attacker's datagrams and bytes sent and received.
// A report: reads the clock, opens sockets.
#![allow(clippy::disallowed_methods)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use weir_bench::plugin::{Handle, Net, Pair, RecvBuf};
use weir_transport::Mode;
use weir_wire::{Common, Ext, Flags, HandshakeExt, Header, IntList, Opcode, PayloadMode};

fn lib_path() -> PathBuf {
    // Another build of the plugin (an earlier commit, for a before/after comparison).
    if let Some(p) = std::env::var_os("WEIR_FLOOD_PLUGIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("deps dir");
    let fresh = deps.join("libnccl_net_weir.so");
    if fresh.exists() {
        return fresh;
    }
    let p = deps.parent().expect("target").join("libnccl_net_weir.so");
    assert!(
        p.exists(),
        "{} not built (cargo build -p weir-nccl-net)",
        p.display()
    );
    p
}

fn env_or<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// Resident set size of this process, bytes.
fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// (listener address, token, secret) from a plugin handle (layout in nccl-plugin/src/plugin.rs).
fn parse(h: &Handle) -> (SocketAddr, u64, u128) {
    let ip = if h[12] == 6 {
        let mut a = [0u8; 16];
        a.copy_from_slice(&h[16..32]);
        IpAddr::V6(Ipv6Addr::from(a))
    } else {
        IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19]))
    };
    let port = u16::from_be_bytes([h[32], h[33]]);
    let mut t = [0u8; 8];
    t.copy_from_slice(&h[40..48]);
    let mut s = [0u8; 16];
    s.copy_from_slice(&h[64..80]);
    (
        SocketAddr::new(ip, port),
        u64::from_le_bytes(t),
        u128::from_le_bytes(s),
    )
}

fn handshake(nonce: u64, user_data: u64) -> HandshakeExt {
    HandshakeExt {
        nonce,
        echo_nonce: 0,
        user_data,
        initial_psn: 1,
        max_payload: 4096,
        paths: 8,
        mode: Mode::Weir,
        rwnd_pkts: 256,
        rx_ports: 0,
    }
}

fn syn(src_conn: u32, hs: HandshakeExt, token: u64) -> Vec<u8> {
    let h = Header {
        common: Common {
            opcode: Opcode::Syn,
            flags: Flags::empty(),
            src_conn,
            dst_conn: 0,
            psn: 0,
            entropy: 0,
            payload_len: 0,
            token,
        },
        ext: Ext::Handshake(hs),
        int: IntList::new(),
    };
    let mut b = vec![0u8; weir_wire::MAX_HEADER_LEN];
    let n = h.emit(&mut b).expect("emit");
    b.truncate(n);
    b
}

#[derive(Debug, Default)]
struct Attack {
    sent: u64,
    sent_bytes: u64,
    received: u64,
    received_bytes: u64,
    /// Handshakes the attacker completed (SYN-ACKs carrying a connection id).
    completed: u64,
}

/// Flood `to` from one socket at `rate` datagrams/s until `stop`.
fn attack(
    to: SocketAddr,
    insider: Option<(u64, u128)>,
    rate: u64,
    stop: Arc<AtomicBool>,
) -> Attack {
    // Another address than the victim's (loopback routes all of 127/8): the attacker stands
    // for another host, so the per-source limits see it apart from the legitimate peers.
    let sock = UdpSocket::bind("127.0.0.2:0").expect("bind");
    sock.set_nonblocking(true).expect("nonblocking");
    let mut a = Attack::default();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let start = Instant::now();
    let mut buf = [0u8; 2048];
    let mut id: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        // Pace: the datagrams due by now.
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while a.sent < due {
            id = id.wrapping_add(1).max(1);
            let pkt = match insider {
                None => syn(id, handshake(next(), next()), 0),
                Some((token, secret)) => {
                    let mut hs = handshake(next(), token);
                    hs.echo_nonce = weir_transport::syn_mac(secret, id, &hs);
                    syn(id, hs, 0)
                }
            };
            if sock.send_to(&pkt, to).is_ok() {
                a.sent += 1;
                a.sent_bytes += pkt.len() as u64;
            } else {
                break;
            }
        }
        // Answers: the insider confirms every cookie.
        while let Ok((n, _)) = sock.recv_from(&mut buf) {
            a.received += 1;
            a.received_bytes += n as u64;
            let Ok(p) = weir_wire::parse(&buf[..n], PayloadMode::Bytes) else {
                continue;
            };
            let (Some((token, secret)), Ext::Handshake(h)) = (insider, p.header.ext) else {
                continue;
            };
            if p.header.common.src_conn != 0 {
                a.completed += 1;
                continue;
            }
            let src_conn = p.header.common.dst_conn;
            let mut hs = handshake(h.echo_nonce, token);
            hs.echo_nonce = weir_transport::syn_mac(secret, src_conn, &hs);
            let pkt = syn(src_conn, hs, h.nonce);
            if sock.send_to(&pkt, to).is_ok() {
                a.sent += 1;
                a.sent_bytes += pkt.len() as u64;
            }
        }
        std::thread::yield_now();
    }
    a
}

struct Stream<'a> {
    net: &'a Net,
    pair: Pair,
    sbuf: Vec<u8>,
    rbuf: Vec<u8>,
    smr: weir_bench::plugin::Mr,
    rmr: weir_bench::plugin::Mr,
}

impl Stream<'_> {
    /// 8 MiB messages one after another for `d`: GB/s.
    fn run(&mut self, d: Duration) -> f64 {
        let len = self.sbuf.len();
        let t = Instant::now();
        let mut bytes = 0u64;
        while t.elapsed() < d {
            let rb = RecvBuf {
                data: self.rbuf.as_mut_ptr(),
                size: len,
                tag: 1,
                mr: self.rmr,
            };
            let deadline = Instant::now() + Duration::from_secs(60);
            // SAFETY: registered buffers, untouched until both requests complete below.
            let rq = unsafe { self.net.irecv(self.pair.recv, &[rb]) }
                .expect("irecv")
                .expect("irecv slot");
            let sq = loop {
                // SAFETY: as above.
                let r = unsafe {
                    self.net
                        .isend(self.pair.send, self.sbuf.as_mut_ptr(), len, 1, self.smr)
                }
                .expect("isend");
                if let Some(r) = r {
                    break r;
                }
                std::thread::yield_now();
            };
            self.net.wait(sq, deadline, "isend").expect("send");
            self.net.wait(rq, deadline, "irecv").expect("recv");
            bytes += len as u64;
        }
        bytes as f64 / t.elapsed().as_secs_f64() / 1e9
    }
}

#[test]
#[ignore = "a report: run by hand with --ignored --nocapture"]
fn flood_report() {
    // SAFETY: set before any thread of this test reads the environment.
    unsafe { std::env::set_var("WEIR_IFNAME", "lo") };
    let rate: u64 = env_or("WEIR_FLOOD_RATE", 50_000);
    let secs: u64 = env_or("WEIR_FLOOD_SECS", 3);
    let phase = Duration::from_secs(secs);
    let mut net = Net::load(Some(&lib_path()), 12).expect("dlopen");
    net.init().expect("init");
    let pair = net
        .pair(0, Instant::now() + Duration::from_secs(10))
        .expect("pair");
    let len = 8 << 20;
    let mut sbuf = vec![7u8; len];
    let mut rbuf = vec![0u8; len];
    let smr = net.reg_mr(pair.send, &mut sbuf).expect("regMr");
    let rmr = net.reg_mr(pair.recv, &mut rbuf).expect("regMr");
    let mut stream = Stream {
        net: &net,
        pair,
        sbuf,
        rbuf,
        smr,
        rmr,
    };
    // The victim listen comm: nobody accepts on it any more.
    let (handle, _victim) = net.listen(0).expect("listen");
    let (to, token, secret) = parse(&handle);
    stream.run(Duration::from_millis(500));
    let base = stream.run(phase);
    let rss0 = rss();
    println!("flood report: {rate} datagrams/s from one socket, {secs} s per phase");
    println!("no flood: stream {base:.2} GB/s, rss {} MB", rss0 >> 20);
    for (name, insider) in [("syn", None), ("handshake", Some((token, secret)))] {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let attacker = std::thread::spawn(move || attack(to, insider, rate, s2));
        std::thread::sleep(Duration::from_millis(200));
        // A legitimate connect through the plugin during the flood.
        let t = Instant::now();
        let fresh = net.pair(0, Instant::now() + Duration::from_secs(10));
        let connect = t.elapsed();
        let gbps = stream.run(phase);
        stop.store(true, Ordering::Relaxed);
        let a = attacker.join().expect("attacker");
        let grown = rss().saturating_sub(rss0);
        println!(
            "{name:>9} flood: connect {} in {:.1} ms; stream {gbps:.2} GB/s ({:.2}x); rss +{:.1} MB; \
             attacker sent {} ({} B), received {} ({} B), completed {} handshakes",
            if fresh.is_ok() { "ok" } else { "FAILED" },
            connect.as_secs_f64() * 1e3,
            gbps / base,
            grown as f64 / 1048576.0,
            a.sent,
            a.sent_bytes,
            a.received,
            a.received_bytes,
            a.completed
        );
        if let Ok(p) = fresh {
            net.close_send(p.send).expect("closeSend");
            net.close_recv(p.recv).expect("closeRecv");
        }
    }
    let after = stream.run(phase);
    println!(
        "after the floods: stream {after:.2} GB/s ({:.2}x), rss +{:.1} MB",
        after / base,
        rss().saturating_sub(rss0) as f64 / 1048576.0
    );
}
