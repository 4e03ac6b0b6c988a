//! A listener under floods, over UDP on loopback (bounded in count and time):
//!
//! * SYNs without a valid MAC for an admitted key (as from anyone who does not hold the NCCL
//!   handle's secret) create no connection, draw no reply (the flooding socket receives
//!   nothing), and are counted, while a peer with the secret connects and a transfer on an
//!   existing connection completes intact;
//! * completed handshakes that the application never accepts are capped (in all and per
//!   source address) and reclaimed after `HostConfig::unaccepted_ttl`, so the engine's table
//!   stays bounded and empties again.
// An I/O test: reads the clock, opens sockets.
#![allow(clippy::disallowed_methods)]

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use weir_datapath::{Host, HostConfig, HostError};
use weir_transport::{CompletionKind, WorkRequest};

const KEY: u64 = 0x0000_C0FF_EE5E_C2E7;
const SECRET: u128 = 0x5EC2_E7A1_0000_1111_2222_3333_4444_5555;

fn host_with(f: impl FnOnce(&mut HostConfig)) -> Host {
    let mut cfg = HostConfig::default();
    cfg.udp.bind = "127.0.0.1".parse().expect("addr");
    f(&mut cfg);
    Host::start(cfg).expect("start host")
}

fn host() -> Host {
    host_with(|_| {})
}

/// A SYN as a peer would send it, with `user_data` and `mac` as given.
fn syn(src_conn: u32, nonce: u64, user_data: u64, mac: u64) -> Vec<u8> {
    weir_tests::syn_datagram(src_conn, nonce, user_data, mac, 0)
}

#[test]
fn unauthenticated_syns_are_dropped_unanswered_while_a_keyed_peer_connects() {
    const FLOOD: u32 = 20_000;
    let server = host();
    server.listen();
    server.admit(KEY, SECRET);
    let client = host();
    // An established connection with a transfer in flight through the flood.
    let conn = client.connect_authenticated(server.local_addr(), KEY, SECRET);
    let conn = client
        .wait_connected(conn, Duration::from_secs(10))
        .expect("authenticated connect");
    let (sconn, _, key) = server.accept(Duration::from_secs(10)).expect("accept");
    assert_eq!(key, KEY);
    let len = 4 << 20;
    let (src, sbuf) = client.alloc(len, false).expect("alloc");
    // SAFETY: nothing else touches the buffer before the send completes.
    unsafe { std::slice::from_raw_parts_mut(sbuf.as_ptr(), len) }
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = (i % 253) as u8);
    let (dst, dbuf) = server.alloc(len, false).expect("alloc");
    let recv = WorkRequest::Recv {
        region: dst,
        offset: 0,
        len: len as u64,
        tag: None,
    };
    server.post(sconn, recv).expect("recv");
    let send = WorkRequest::Send {
        region: src,
        offset: 0,
        len: len as u64,
        tag: 9,
    };
    client.post(conn, send).expect("send");
    // The flood, from one socket, as fast as it goes: no MAC, guessed MACs, the key with
    // MACs from the wrong secret.
    let attacker = UdpSocket::bind("127.0.0.1:0").expect("bind");
    attacker.set_nonblocking(true).expect("nonblocking");
    for i in 0..FLOOD {
        let (user_data, mac) = match i % 3 {
            0 => (u64::from(i), 0),
            1 => (KEY, u64::from(i) * 0x9e37_79b9),
            _ => (KEY, u64::from(i) + 1),
        };
        let _ = attacker.send_to(
            &syn(i + 1, u64::from(i) << 8, user_data, mac),
            server.local_addr(),
        );
    }
    // A second peer with the secret connects in the flood's aftermath; one with a wrong
    // secret does not.
    let late = host();
    let t = Instant::now();
    let c = late.connect_authenticated(server.local_addr(), KEY, SECRET);
    late.wait_connected(c, Duration::from_secs(10))
        .expect("a peer with the secret connects during the flood");
    eprintln!("authenticated connect after the flood: {:?}", t.elapsed());
    let wrong =
        host_with(|c| c.transport.handshake_timeout = weir_base::Duration::from_millis(300));
    let c = wrong.connect_authenticated(server.local_addr(), KEY, SECRET ^ 1);
    assert!(matches!(
        wrong.wait_connected(c, Duration::from_secs(10)),
        Err(HostError::ConnectionLost { .. })
    ));
    let c = server
        .wait_completion(Duration::from_secs(30))
        .expect("recv");
    assert!(c.status.is_ok() && c.kind == CompletionKind::Recv, "{c:?}");
    // SAFETY: the receive completed; the engine no longer writes the buffer.
    let got = unsafe { std::slice::from_raw_parts(dbuf.as_ptr(), len) };
    assert!(got.iter().enumerate().all(|(i, &b)| b == (i % 253) as u8));
    // Nothing came back to the flooding socket, and every forged SYN that reached the
    // engine is counted (the kernel may have dropped some on a full socket buffer).
    std::thread::sleep(Duration::from_millis(200));
    let mut buf = [0u8; 2048];
    assert!(
        attacker.recv_from(&mut buf).is_err(),
        "a forged SYN drew a reply"
    );
    let st = server.stats();
    assert!(st.endpoint.drop_unauthenticated > 0, "{st:?}");
    assert!(st.endpoint.drop_unauthenticated <= u64::from(FLOOD) + 8);
    // Cookies went only to the two peers with the secret.
    assert!(st.endpoint.cookies_sent <= 4, "{st:?}");
    // The listener holds the two authenticated connections and nothing from the flood.
    assert_eq!(st.connections, 2, "{st:?}");
}

/// Completed handshakes nobody accepts: past `max_unaccepted` they are closed at once (the
/// connector sees its connection refused), and those waiting are closed after
/// `unaccepted_ttl`, so the engine's table empties again.
#[test]
fn completed_handshakes_nobody_accepts_are_capped_and_expire() {
    const N: usize = 100;
    const CAP: usize = 64;
    let server = host_with(|c| {
        c.max_unaccepted = CAP;
        c.unaccepted_ttl = Duration::from_millis(1500);
    });
    server.listen();
    let client = host();
    let conns: Vec<_> = (0..N)
        .map(|_| client.connect_nonblocking(server.local_addr(), 1))
        .collect();
    // Every connect completes; the refused ones then fail when the server closes them.
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.stats().unaccepted_refused < (N - CAP) as u64 {
        assert!(Instant::now() < deadline, "{:?}", server.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
    let st = server.stats();
    assert_eq!(st.unaccepted_refused, (N - CAP) as u64, "{st:?}");
    assert_eq!(st.connections, CAP as u64, "{st:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let failed = conns
            .iter()
            .filter(|&&c| client.is_connected(c).is_err())
            .count();
        if failed == N - CAP {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{failed} refused connections failed: {:?} {:?}",
            client.stats(),
            server.stats()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // One taken by the application stays; the rest expire.
    let (kept, _, _) = server.try_accept().expect("one is waiting");
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.stats().unaccepted_expired < (CAP - 1) as u64 {
        assert!(Instant::now() < deadline, "{:?}", server.stats());
        std::thread::sleep(Duration::from_millis(20));
    }
    let st = server.stats();
    assert_eq!(st.unaccepted_expired, (CAP - 1) as u64, "{st:?}");
    assert_eq!(st.connections, 1, "{st:?}");
    assert!(server.try_accept().is_none());
    assert!(server.is_connected(kept).is_ok());
}

/// One source address may hold at most `max_unaccepted_per_source` of the waiting ones.
#[test]
fn one_source_cannot_take_every_unaccepted_slot() {
    let server = host_with(|c| {
        c.max_unaccepted = 64;
        c.max_unaccepted_per_source = 10;
    });
    server.listen();
    let client = host();
    for _ in 0..30 {
        client.connect_nonblocking(server.local_addr(), 1);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.stats().unaccepted_refused < 20 {
        assert!(Instant::now() < deadline, "{:?}", server.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
    let st = server.stats();
    assert_eq!((st.unaccepted_refused, st.connections), (20, 10), "{st:?}");
}
