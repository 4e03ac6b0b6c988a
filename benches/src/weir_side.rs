//! The weir side of the transport benchmark: one [`weir_datapath::host::Host`] per peer
//! process, driven through its blocking handle (`post`, `wait_completion`).
//!
//! Stream (mirrors the TCP baseline in `tcp.rs`, same [`PeerParams`] and [`PeerReport`]):
//!
//! * the receiver takes `window` slots of `size` bytes plus an 8-byte start slot from
//!   [`Host::alloc`] (registered, pre-touched), pre-posts one receive tagged [`GO`] and
//!   `window` untagged receives, and reposts each receive in its slot as it completes;
//! * the sender posts an 8-byte send tagged [`GO`] — sent just before the first data packet, so
//!   its arrival starts the receiver's clock ("first byte") — then keeps `window` sends of
//!   `size` bytes posted (tag = message index), reposting into the slot of each completed send
//!   until `bytes` have moved or the point's time is up. Last comes an empty send tagged
//!   [`END`] | messages sent, which tells the receiver how many to expect; the sender keeps
//!   its host (and the connection) until the receiver, done, closes (see [`finish`]).
//! * Loss is injected by the receiver's host (`HostConfig::fault_rx.drop`, seeded): each
//!   datagram arriving there (data, and the handshake) is dropped with probability `loss`
//!   before the engine sees it; acknowledgements travelling back are not dropped. `gbn` runs
//!   `weir_transport::Config::go_back_n()`, `weir` `weir_transport::Config::default()`.
//!
//! Latency is per message at the sender, post → send completion (every byte acknowledged), so
//! with a window it includes the time spent behind the earlier messages. Retransmit ratio is
//! the sender's `ConnStats::retransmits / ConnStats::data_packets`.
//!
//! Ping-pong: the client posts an 8-byte receive and an 8-byte send and times until the
//! receive completes; the server answers each message with one of its own.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use weir_datapath::fault::FaultConfig;
use weir_datapath::host::{HostConfig, HostError};
use weir_datapath::udp::UdpConfig;
use weir_transport::{
    Completion, CompletionKind, ConnError, ConnId, RegionId, WorkRequest, WrError, WrId,
};

use crate::engine_side::Net;
use crate::incast::SenderRx;
use crate::peer::{PeerParams, PeerReport, Role};
use crate::sys::{self, LatencyHist, nanos};
use crate::{BenchError, Mode};

/// Whether the weir engine can be measured in this build.
pub const AVAILABLE: bool = true;

/// What the weir rows say while the engine is missing.
pub const NOT_BUILT: &str = "n/a (engine not built)";

/// Tag of the start message.
const GO: u64 = 1 << 62;
/// Tag bit of the end message; the low bits carry the number of data messages sent.
const END: u64 = 1 << 63;
/// Tag of a receive that no message matches (see [`finish`]).
const LINGER: u64 = GO | 1;
/// How long a receiver waits for its sender to connect, and a sender for the handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a sender waits for its peer to take the end marker and close.
const END_TIMEOUT: Duration = Duration::from_secs(2);
/// Untimed ping-pong round trips, and the most time they may take.
const WARMUP_ROUND_TRIPS: u64 = 200;
const WARMUP_LIMIT: Duration = Duration::from_millis(200);

/// Receiving side of a stream; `ready` announces the host's address to the parent.
pub fn weir_receiver(
    p: &PeerParams,
    ready: &mut dyn FnMut(SocketAddr) -> Result<(), BenchError>,
) -> Result<PeerReport, BenchError> {
    let size = p.size;
    // Keep twice the sender's window of receives posted, so a receiving application that is
    // briefly descheduled does not make the transport refuse data (the kernel TCP baseline has
    // its socket buffer for the same purpose).
    let window = 2 * u64::from(p.window.max(1));
    let host = start_host(p)?;
    host.listen().map_err(ctx("listen"))?;
    let (region, _buf) = host
        .alloc(usize::try_from(size * window + 8)?, false)
        .map_err(ctx("alloc"))?;
    ready(host.local_addr())?;
    let (conn, _, _) = host.accept(CONNECT_TIMEOUT).map_err(ctx("accept"))?;

    let recv = |slot: u64| WorkRequest::Recv {
        region,
        offset: slot * size,
        len: size,
        tag: None,
    };
    post(
        &host,
        conn,
        WorkRequest::Recv {
            region,
            offset: size * window,
            len: 8,
            tag: Some(GO),
        },
    )?;
    let mut slots: HashMap<WrId, u64> = HashMap::with_capacity(window as usize);
    for slot in 0..window {
        slots.insert(post(&host, conn, recv(slot))?, slot);
    }

    let patience = p.receiver_patience();
    let mut t0: Option<Instant> = None;
    let mut t_last = Instant::now();
    let mut got = 0u64;
    let mut expected: Option<u64> = None;
    let mut note = None;
    // Set once the connection is gone (the sender may finish and close while completions are
    // still queued here): drain what is queued, post nothing more.
    let mut lost: Option<String> = None;
    while expected != Some(got) {
        let c = if lost.is_some() {
            match host.poll_completion() {
                Some(c) => c,
                None => break,
            }
        } else {
            match host.wait_completion(patience) {
                Ok(c) => c,
                Err(e) => {
                    note = Some(format!("stopped waiting: {e}"));
                    break;
                }
            }
        };
        let now = Instant::now();
        if c.conn != conn || c.kind != CompletionKind::Recv {
            continue;
        }
        if let Err(e) = c.status {
            // Receives still posted when the connection closes complete with an error.
            lost.get_or_insert_with(|| format!("receive failed: {e}"));
            continue;
        }
        if c.tag == GO {
            t0 = Some(now);
            continue;
        }
        let Some(slot) = slots.remove(&c.wr) else {
            continue;
        };
        if c.tag & END != 0 {
            expected = Some(c.tag & !END);
        } else {
            got += 1;
            t_last = now;
            if c.len != size {
                note = Some(format!("message of {} B, expected {size}", c.len));
            }
        }
        if expected != Some(got) && lost.is_none() {
            match host.post(conn, recv(slot)) {
                Ok(wr) => {
                    slots.insert(wr, slot);
                }
                Err(e) => lost = Some(format!("repost failed: {e}")),
            }
        }
    }
    if expected != Some(got) && note.is_none() {
        note = lost.map(|why| format!("connection ended before the end marker ({why})"));
    }
    let elapsed = t0.map_or(0, |t0| nanos(t_last.saturating_duration_since(t0)));
    Ok(PeerReport {
        messages: got,
        bytes: got * size,
        elapsed_ns: elapsed,
        complete: expected == Some(got) && note.is_none(),
        note,
        ..PeerReport::default()
    })
}

/// Sending side of a stream. `start` runs once the connection is up and the buffers are
/// ready, before the first message: the incast bench's start barrier, so that N senders
/// begin together rather than as their processes happen to come up.
pub fn weir_sender(
    p: &PeerParams,
    start: &mut dyn FnMut() -> Result<(), BenchError>,
) -> Result<PeerReport, BenchError> {
    let size = p.size;
    let window = u64::from(p.window.max(1));
    let remote = p
        .remote
        .ok_or_else(|| BenchError::new("sender without a remote address"))?;
    let host = start_host(p)?;
    let (region, buf) = host
        .alloc(usize::try_from(size * window + 8)?, false)
        .map_err(ctx("alloc"))?;
    buf.fill(0xa5);
    // An incast receiver tells its senders apart by the connection's user data.
    let index = p.incast.as_ref().map_or(0, |i| u64::from(i.index));
    let conn = host
        .connect(remote, index, CONNECT_TIMEOUT)
        .map_err(ctx("connect"))?;
    let n = p.messages();
    let send = |idx: u64| WorkRequest::Send {
        region,
        offset: (idx % window) * size,
        len: size,
        tag: idx,
    };

    start()?;
    let mut hist = LatencyHist::new();
    let mut inflight: HashMap<WrId, Instant> = HashMap::with_capacity(window as usize);
    let start = Instant::now();
    let deadline = start + p.point();
    let give_up = deadline + p.drain();
    let go = post(
        &host,
        conn,
        WorkRequest::Send {
            region,
            offset: size * window,
            len: 8,
            tag: GO,
        },
    )?;
    let mut next = 0u64;
    while next < n.min(window) {
        let t = Instant::now();
        inflight.insert(post(&host, conn, send(next))?, t);
        next += 1;
    }
    let mut done = 0u64;
    let mut t_last = start;
    let mut note = None;
    while !inflight.is_empty() {
        let left = give_up.saturating_duration_since(Instant::now());
        let c = match host.wait_completion(left) {
            Ok(c) => c,
            Err(e) => {
                note = Some(format!("stopped waiting: {e}"));
                break;
            }
        };
        let now = Instant::now();
        let Some(t) = inflight.remove(&c.wr) else {
            if let (true, Err(e)) = (c.wr == go, c.status) {
                note = Some(format!("start message failed: {e}"));
                break;
            }
            continue;
        };
        if let Err(e) = c.status {
            note = Some(format!("send failed: {e}"));
            break;
        }
        hist.record(now - t);
        done += 1;
        t_last = now;
        if next < n && now < deadline {
            inflight.insert(post(&host, conn, send(next))?, Instant::now());
            next += 1;
        }
    }
    let stats = host.conn_stats(conn);
    if std::env::var_os("WEIR_STATS").is_some() {
        eprintln!(
            "bulk sender conn {stats:?}\nbulk sender paths {:?}",
            host.path_stats(conn)
        );
    }
    if note.is_none() && done < n {
        note = Some(format!("time limit: {done} of {n} messages"));
    }
    if let Err(e) = finish(&host, conn, region, size * window, END | done) {
        note = Some(note.map_or(e.clone(), |n| format!("{n}; {e}")));
    }
    Ok(PeerReport {
        messages: done,
        bytes: done * size,
        elapsed_ns: nanos(t_last - start),
        complete: done == n,
        lat_count: hist.count(),
        lat_p50_us: hist.quantile_us(0.5),
        lat_p99_us: hist.quantile_us(0.99),
        lat_max_us: hist.max_us(),
        retransmits: stats.map(|s| s.retransmits),
        data_packets: stats.map(|s| s.data_packets),
        rtos: stats.map(|s| s.rto_events),
        spurious_retransmits: stats.map(|s| s.spurious_retransmits),
        max_repair_us: stats.map(|s| s.max_repair_us),
        note,
        ..PeerReport::default()
    })
}

/// Receiving side of an incast: accepts `incast.senders` connections on one host (whose
/// sockets have `incast.rcvbuf` bytes of kernel receive buffer), each a stream as in
/// [`weir_receiver`] with its own receive slots; reports each sender's messages and times
/// ([`SenderRx`]) and, in its totals, first byte of any sender → last completion of all.
/// A connection is closed as soon as its end marker and every message it announced are in.
pub fn incast_receiver(
    p: &PeerParams,
    ready: &mut dyn FnMut(SocketAddr) -> Result<(), BenchError>,
) -> Result<PeerReport, BenchError> {
    struct Rx {
        index: u32,
        base: u64,
        slots: HashMap<WrId, u64>,
        t0: Option<Instant>,
        t_last: Option<Instant>,
        got: u64,
        expected: Option<u64>,
        done: bool,
        note: Option<String>,
    }
    let n = p.incast.as_ref().map_or(1, |i| i.senders.max(1));
    let size = p.size;
    let window = 2 * u64::from(p.window.max(1));
    // Page-aligned per connection, as NCCL's buffers are (the end marker's 8 bytes after the
    // slots left every connection but the first 8-byte aligned only).
    let per_conn = (size * window + 8).next_multiple_of(4096);
    let host = start_host(p)?;
    host.listen().map_err(ctx("listen"))?;
    let (region, _buf) = host
        .alloc(usize::try_from(per_conn * u64::from(n))?, false)
        .map_err(ctx("alloc"))?;
    let drops_before = sys::udp_rcvbuf_errors();
    ready(host.local_addr())?;
    let recv = |base: u64, slot: u64| WorkRequest::Recv {
        region,
        offset: base + slot * size,
        len: size,
        tag: None,
    };
    let deadline = Instant::now() + p.receiver_patience();
    let mut conns: HashMap<ConnId, Rx> = HashMap::new();
    let mut note = None;
    loop {
        while let Some((conn, _, user)) = host.try_accept() {
            if conns.len() >= n as usize {
                host.close(conn);
                continue;
            }
            let base = conns.len() as u64 * per_conn;
            let mut rx = Rx {
                index: u32::try_from(user).unwrap_or(u32::MAX),
                base,
                slots: HashMap::new(),
                t0: None,
                t_last: None,
                got: 0,
                expected: None,
                done: false,
                note: None,
            };
            let go = WorkRequest::Recv {
                region,
                offset: base + size * window,
                len: 8,
                tag: Some(GO),
            };
            post(&host, conn, go)?;
            for slot in 0..window {
                rx.slots.insert(post(&host, conn, recv(base, slot))?, slot);
            }
            conns.insert(conn, rx);
        }
        if conns.len() == n as usize && conns.values().all(|r| r.done) {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            note = Some(format!(
                "time limit: {} of {n} senders connected, {} finished",
                conns.len(),
                conns.values().filter(|r| r.done).count()
            ));
            break;
        }
        let c = match host.wait_completion(left.min(Duration::from_millis(5))) {
            Ok(c) => c,
            Err(HostError::Timeout { .. }) => continue,
            Err(e) => {
                note = Some(format!("stopped waiting: {e}"));
                break;
            }
        };
        let now = Instant::now();
        let Some(rx) = conns.get_mut(&c.conn) else {
            continue;
        };
        if c.kind != CompletionKind::Recv || rx.done {
            continue;
        }
        if let Err(e) = c.status {
            rx.note = Some(format!("receive failed: {e}"));
            rx.done = true;
            continue;
        }
        if c.tag == GO {
            rx.t0 = Some(now);
            continue;
        }
        let Some(slot) = rx.slots.remove(&c.wr) else {
            continue;
        };
        if c.tag & END != 0 {
            rx.expected = Some(c.tag & !END);
        } else {
            rx.got += 1;
            rx.t_last = Some(now);
            if c.len != size {
                rx.note = Some(format!("message of {} B, expected {size}", c.len));
            }
        }
        if rx.expected == Some(rx.got) {
            rx.done = true;
            host.close(c.conn);
        } else {
            match host.post(c.conn, recv(rx.base, slot)) {
                Ok(wr) => {
                    rx.slots.insert(wr, slot);
                }
                Err(e) => {
                    rx.note = Some(format!("repost failed: {e}"));
                    rx.done = true;
                }
            }
        }
    }
    if std::env::var_os("WEIR_STATS").is_some() {
        eprintln!("incast receiver host {:?}", host.stats());
    }
    let kernel_drops = match (drops_before, sys::udp_rcvbuf_errors()) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let t0 = conns.values().filter_map(|r| r.t0).min();
    let t_end = conns.values().filter_map(|r| r.t_last).max();
    let mut per_sender: Vec<SenderRx> = conns
        .values()
        .map(|r| SenderRx {
            index: r.index,
            messages: r.got,
            bytes: r.got * size,
            expected: r.expected,
            start_ns: match (t0, r.t0) {
                (Some(a), Some(b)) => Some(nanos(b.saturating_duration_since(a))),
                _ => None,
            },
            elapsed_ns: match (r.t0, r.t_last) {
                (Some(a), Some(b)) => nanos(b.saturating_duration_since(a)),
                _ => 0,
            },
            complete: r.expected == Some(r.got) && r.note.is_none(),
            note: r.note.clone(),
        })
        .collect();
    per_sender.sort_by_key(|s| s.index);
    let got: u64 = per_sender.iter().map(|s| s.messages).sum();
    let complete =
        note.is_none() && per_sender.len() == n as usize && per_sender.iter().all(|s| s.complete);
    Ok(PeerReport {
        messages: got,
        bytes: got * size,
        elapsed_ns: match (t0, t_end) {
            (Some(a), Some(b)) => nanos(b.saturating_duration_since(a)),
            _ => 0,
        },
        complete,
        note,
        per_sender,
        kernel_drops,
        ..PeerReport::default()
    })
}

/// Echo side of the 8-byte ping-pong.
pub fn pingpong_server(
    p: &PeerParams,
    ready: &mut dyn FnMut(SocketAddr) -> Result<(), BenchError>,
) -> Result<PeerReport, BenchError> {
    let host = start_host(p)?;
    host.listen().map_err(ctx("listen"))?;
    let (region, _buf) = host.alloc(16, false).map_err(ctx("alloc"))?;
    ready(host.local_addr())?;
    let (conn, _, _) = host.accept(CONNECT_TIMEOUT).map_err(ctx("accept"))?;
    let recv = WorkRequest::Recv {
        region,
        offset: 0,
        len: 8,
        tag: None,
    };
    post(&host, conn, recv)?;
    let mut n = 0u64;
    let mut note = None;
    loop {
        let c = match host.wait_completion(p.receiver_patience()) {
            Ok(c) => c,
            Err(e) => {
                note = Some(format!("stopped waiting: {e}"));
                break;
            }
        };
        if c.kind != CompletionKind::Recv {
            continue;
        }
        if let Err(e) = c.status {
            note = Some(format!("receive failed: {e}"));
            break;
        }
        if c.tag & END != 0 {
            break;
        }
        post(&host, conn, recv)?;
        post(
            &host,
            conn,
            WorkRequest::Send {
                region,
                offset: 8,
                len: 8,
                tag: c.tag,
            },
        )?;
        n += 1;
    }
    Ok(PeerReport {
        messages: n,
        bytes: n * 8,
        complete: note.is_none(),
        note,
        ..PeerReport::default()
    })
}

/// Timing side of the 8-byte ping-pong: `iters` round trips, or as many as fit in the point's
/// time.
pub fn pingpong_client(p: &PeerParams) -> Result<PeerReport, BenchError> {
    let remote = p
        .remote
        .ok_or_else(|| BenchError::new("client without a remote address"))?;
    let host = start_host(p)?;
    let (region, _buf) = host.alloc(16, false).map_err(ctx("alloc"))?;
    let conn = host
        .connect(remote, 0, CONNECT_TIMEOUT)
        .map_err(ctx("connect"))?;
    let limit = p.point() + p.drain();
    let round_trip = |i: u64| -> Result<Duration, BenchError> {
        post(
            &host,
            conn,
            WorkRequest::Recv {
                region,
                offset: 0,
                len: 8,
                tag: None,
            },
        )?;
        let t = Instant::now();
        post(
            &host,
            conn,
            WorkRequest::Send {
                region,
                offset: 8,
                len: 8,
                tag: i,
            },
        )?;
        loop {
            let c = host.wait_completion(limit).map_err(ctx("ping-pong"))?;
            if let Err(e) = c.status {
                return Err(BenchError::new(format!("ping-pong: {e}")));
            }
            if c.kind == CompletionKind::Recv {
                return Ok(t.elapsed());
            }
        }
    };
    let warmup = Instant::now();
    for i in 0..WARMUP_ROUND_TRIPS {
        round_trip(i)?;
        if warmup.elapsed() > WARMUP_LIMIT {
            break;
        }
    }
    let mut hist = LatencyHist::new();
    let start = Instant::now();
    let deadline = start + p.point();
    let mut n = 0u64;
    while n < p.iters && (n == 0 || Instant::now() < deadline) {
        hist.record(round_trip(n)?);
        n += 1;
    }
    let elapsed = nanos(start.elapsed());
    let stats = host.conn_stats(conn);
    if std::env::var_os("WEIR_STATS").is_some() {
        eprintln!("sender conn {stats:?}\nsender host {:?}", host.stats());
    }
    let note = finish(&host, conn, region, 0, END).err();
    Ok(PeerReport {
        messages: n,
        bytes: n * 8,
        elapsed_ns: elapsed,
        complete: n == p.iters,
        retransmits: stats.map(|s| s.retransmits),
        data_packets: stats.map(|s| s.data_packets),
        lat_count: hist.count(),
        lat_p50_us: hist.quantile_us(0.5),
        lat_p99_us: hist.quantile_us(0.99),
        note,
        ..PeerReport::default()
    })
}

/// A host on 127.0.0.1 (ephemeral port) for `p.mode`, dropping `p.loss` of the receiver's
/// incoming datagrams.
fn start_host(p: &PeerParams) -> Result<Net, BenchError> {
    let mut transport = match p.mode {
        Mode::Gbn => weir_transport::Config::go_back_n(),
        Mode::Tcp | Mode::Weir => weir_transport::Config::default(),
    };
    if let Some(name) = &p.cc {
        transport.cc = load_cc(name)?;
    }
    let fault_rx = if p.role == Role::Receiver && p.loss > 0.0 {
        FaultConfig {
            drop: p.loss,
            seed: p.seed,
            ..FaultConfig::none()
        }
    } else {
        FaultConfig::none()
    };
    let role = match p.role {
        Role::Receiver => 0x5245_4356,
        Role::Sender => 0x5345_4e44,
    };
    let mut udp = UdpConfig::default();
    if let (Role::Receiver, Some(i)) = (p.role, &p.incast)
        && i.rcvbuf > 0
    {
        udp.rcvbuf = usize::try_from(i.rcvbuf)?;
    }
    // The incast receiver's own settings.
    let incast_rx = match (p.role, &p.incast) {
        (Role::Receiver, Some(i)) => Some(i),
        _ => None,
    };
    let rx_spread = incast_rx.is_some_and(|i| i.rx_spread);
    if let Some(g) = incast_rx.and_then(|i| i.rx_grants) {
        transport.rx_grants = g;
    }
    if let Some(t) = incast_rx.and_then(|i| i.rx_turn) {
        transport.rx_turn_bytes = t;
    }
    Net::start(
        &p.engine,
        HostConfig {
            transport,
            fault_rx,
            udp,
            rx_spread,
            seed: Some(p.seed ^ role),
            ..HostConfig::default()
        },
    )
    .map_err(ctx("host"))
}

/// Send the end marker and keep the connection open until the peer has it.
///
/// The peer closes its host once it has consumed the marker; closing ours first could discard
/// the marker while it still waits, unmatched, for a posted receive. So a receive that nothing
/// matches is posted first: it completes (with an error) when the peer closes, or we give up
/// after [`END_TIMEOUT`]. Returns why the marker was not delivered, if it was not.
fn finish(
    host: &Net,
    conn: ConnId,
    region: RegionId,
    scratch: u64,
    tag: u64,
) -> Result<(), String> {
    let linger = host
        .post(
            conn,
            WorkRequest::Recv {
                region,
                offset: scratch,
                len: 8,
                tag: Some(LINGER),
            },
        )
        .map_err(|e| format!("end marker: {e}"))?;
    let end = WorkRequest::Send {
        region,
        offset: scratch,
        len: 0,
        tag,
    };
    let end = host
        .post(conn, end)
        .map_err(|e| format!("end marker: {e}"))?;
    let until = Instant::now() + END_TIMEOUT;
    let mut delivered = Err("end marker: not acknowledged".to_string());
    loop {
        match host.wait_completion(until.saturating_duration_since(Instant::now())) {
            Ok(Completion { wr, status, .. }) if wr == end => {
                delivered = match status {
                    // The peer may close right after consuming the marker, before its ACK.
                    Ok(()) | Err(WrError::ConnectionLost(ConnError::PeerClosed)) => Ok(()),
                    Err(e) => Err(format!("end marker: {e}")),
                };
            }
            Ok(Completion { wr, .. }) if wr == linger => return delivered,
            Ok(_) => {}
            Err(HostError::Timeout { .. }) => {
                return delivered.and(Err("peer did not close after the end marker".into()));
            }
            Err(e) => return delivered.and(Err(format!("end marker: {e}"))),
        }
    }
}

fn post(host: &Net, conn: ConnId, wr: WorkRequest) -> Result<WrId, BenchError> {
    host.post(conn, wr).map_err(ctx("post"))
}

fn ctx(what: &'static str) -> impl Fn(HostError) -> BenchError {
    move |e| BenchError::new(format!("{what}: {e}"))
}

/// `--cc NAME|FILE.toml`: a built-in by name, or a `[cc]` table from a file.
pub fn load_cc(spec: &str) -> Result<weir_congestion::CcConfig, BenchError> {
    weir_congestion::toml_file::load(spec, |p| {
        std::fs::read_to_string(p).map_err(|e| e.to_string())
    })
    .map_err(|e| BenchError::new(format!("congestion control {spec}: {e}")))
}
