//! `weir-test-peer`: one side of the multi-process transport tests (`loopback_udp`,
//! `dead_peer`, `netns_loss`), driven by the test process over its stdin and stdout.
//!
//! Line protocol (stdout carries only these lines; diagnostics go to stderr):
//!
//! * first line out: `ADDR <ip:port>`, the host's listening address;
//! * `exchange`: reads `PEER <ip:port>` on stdin; role `a` connects to it, role `b` accepts.
//!   Both sides post a tagged receive for every message of `--sizes` (with [`SLACK`] spare bytes
//!   filled with [`SENTINEL`]) and then send every message, so both directions run at once.
//!   Message `i` of role `r` holds the pattern seeded by `(r, i, size)`. Every receive is checked
//!   (length, tag, every byte, the untouched slack), every send must complete. Then one JSON
//!   line goes out: `{"ok":true,...counters}` or `{"ok":false,"error":"..."}`;
//! * `serve`: accepts one connection, posts a receive of each `--sizes` message (untagged), and
//!   prints `READY <peer>`; it then only keeps the connection open (the dead-peer tests kill it).
//!
//! Either way the process then keeps its host, and so the connection, until the parent writes
//! `EXIT` or closes stdin: a peer that closed as soon as its own side was done could take the
//! last acknowledgement of the other side's sends with it. Every wait has a timeout
//! (`--timeout-s`, default 120 s, overall). Exit status: 0 when the run succeeded, 1 otherwise,
//! 2 on bad arguments.
// A test driver: reads the clock and spawns a stdin reader thread (the sans-IO rule of
// docs/architecture.md exempts the tests crate).
#![allow(clippy::disallowed_methods)]

mod pattern;

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weir_datapath::{Buffer, Host, HostConfig, HostError};
use weir_transport::{CompletionKind, Config, ConnId, Mode, RegionId, WorkRequest, WrId};

/// Spare bytes after each receive buffer's expected message; must stay untouched.
const SLACK: usize = 4096;
/// What the receive buffers are filled with before the transfer.
const SENTINEL: u8 = 0xee;
/// Longest a handshake or an accept may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest single wait for a completion before re-checking the connection and the deadline.
const WAIT_STEP: Duration = Duration::from_secs(5);

const USAGE: &str = "usage: weir-test-peer exchange|serve [--role a|b] [--mode weir|gbn] \
[--bind IP] [--sizes 1K,64K,1Mx16,...] [--loss P] [--seed N] [--max-payload B] \
[--peer-timeout-ms MS] [--keepalive-ms MS] [--unexpected-bytes B] [--timeout-s S]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match Opts::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("weir-test-peer: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let stdin = stdin_lines();
    let deadline = Instant::now() + opts.timeout;
    let seed = opts.seed.unwrap_or_else(weir_datapath::os_seed);
    let host = match start_host(&opts, seed) {
        Ok(h) => h,
        Err(e) => {
            say(&failure(&opts, seed, format!("starting the host: {e}")).to_string());
            return ExitCode::FAILURE;
        }
    };
    let ok = match opts.cmd {
        Cmd::Exchange => {
            let mut conn = None;
            let r = exchange(&opts, seed, &host, &stdin, deadline, &mut conn);
            let ok = r.is_ok();
            let line = r.unwrap_or_else(|e| {
                let mut v = failure(&opts, seed, e);
                if let Some(c) = conn {
                    v["conn"] = conn_json(&host, c);
                }
                v["host"] = host_json(&host);
                v
            });
            say(&line.to_string());
            ok
        }
        Cmd::Serve => match serve(&opts, &host, &stdin, deadline) {
            Ok(()) => true,
            Err(e) => {
                say(&failure(&opts, seed, e).to_string());
                false
            }
        },
    };
    wait_exit(&stdin, deadline);
    drop(host);
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The bidirectional exchange; the result line's JSON on success.
fn exchange(
    o: &Opts,
    seed: u64,
    host: &Host,
    stdin: &Receiver<String>,
    deadline: Instant,
    opened: &mut Option<ConnId>,
) -> Result<Value, String> {
    let other = if o.role == "a" { "b" } else { "a" };
    // Buffers first, so both directions start together once connected.
    let mut sends: Vec<(RegionId, Buffer)> = Vec::with_capacity(o.sizes.len());
    let mut recvs: Vec<(RegionId, Buffer)> = Vec::with_capacity(o.sizes.len());
    for (i, &len) in o.sizes.iter().enumerate() {
        let n = usize::try_from(len).map_err(|_| format!("message {i}: {len} B too large"))?;
        let (sr, sb) = host
            .alloc(n, false)
            .map_err(|e| format!("alloc of send buffer {i} ({len} B): {e}"))?;
        pattern::fill(&sb, pattern::seed(&o.role, i, len), n);
        sends.push((sr, sb));
        let (rr, rb) = host
            .alloc(n + SLACK, false)
            .map_err(|e| format!("alloc of receive buffer {i} ({len} B): {e}"))?;
        rb.fill(SENTINEL);
        recvs.push((rr, rb));
    }

    host.listen();
    say(&format!("ADDR {}", host.local_addr()));
    let peer = read_peer(stdin, deadline)?;
    let conn = open(o, host, peer)?;
    *opened = Some(conn);

    let start = Instant::now();
    let mut pending: HashMap<WrId, (CompletionKind, usize)> = HashMap::new();
    for (i, &len) in o.sizes.iter().enumerate() {
        let wr = WorkRequest::Recv {
            region: recvs[i].0,
            offset: 0,
            len: len + SLACK as u64,
            tag: Some(i as u64),
        };
        let id = host
            .post(conn, wr)
            .map_err(|e| format!("posting receive {i} ({len} B): {e}"))?;
        pending.insert(id, (CompletionKind::Recv, i));
    }
    for (i, &len) in o.sizes.iter().enumerate() {
        let wr = WorkRequest::Send {
            region: sends[i].0,
            offset: 0,
            len,
            tag: i as u64,
        };
        let id = host
            .post(conn, wr)
            .map_err(|e| format!("posting send {i} ({len} B): {e}"))?;
        pending.insert(id, (CompletionKind::Send, i));
    }

    let mut bytes_sent = 0u64;
    let mut bytes_received = 0u64;
    let mut done_ms = Vec::new();
    while !pending.is_empty() {
        let c = match next_completion(host, conn, deadline) {
            Ok(c) => c,
            Err(e) => return Err(format!("{e}; still outstanding: {}", describe(&pending, o))),
        };
        if c.conn != conn {
            return Err(format!("completion on unknown connection: {c:?}"));
        }
        let Some((kind, i)) = pending.remove(&c.wr) else {
            return Err(format!("completion for no outstanding request: {c:?}"));
        };
        let len = o.sizes[i];
        if let Err(e) = c.status {
            return Err(format!(
                "{kind:?} of message {i} ({len} B) failed: {e}; still outstanding: {}",
                describe(&pending, o)
            ));
        }
        if c.kind != kind {
            return Err(format!("{kind:?} of message {i} completed as {:?}", c.kind));
        }
        match kind {
            CompletionKind::Send => {
                if c.len != len {
                    return Err(format!("send {i} completed with {} B of {len}", c.len));
                }
                bytes_sent += len;
            }
            _ => {
                if c.len != len || c.tag != i as u64 {
                    return Err(format!(
                        "receive {i} got a message of {} B tagged {}; expected {len} B tagged {i}",
                        c.len, c.tag
                    ));
                }
                let seed = pattern::seed(other, i, len);
                pattern::verify(&recvs[i].1, seed, len as usize, SLACK, SENTINEL)
                    .map_err(|e| format!("receive {i} ({len} B) from {other}: {e}"))?;
                bytes_received += len;
            }
        }
        done_ms.push(json!([
            format!("{kind:?}"),
            i,
            start.elapsed().as_millis() as u64
        ]));
    }
    Ok(json!({
        "ok": true,
        "role": o.role,
        "mode": mode_name(o.mode),
        "seed": seed,
        "messages": o.sizes.len(),
        "bytes_sent": bytes_sent,
        "bytes_received": bytes_received,
        "elapsed_ms": start.elapsed().as_secs_f64() * 1e3,
        "completions_ms": done_ms,
        "conn": conn_json(host, conn),
        "host": host_json(host),
    }))
}

fn conn_json(host: &Host, conn: ConnId) -> Value {
    let Some(cs) = host.conn_stats(conn) else {
        return Value::Null;
    };
    json!({
        "data_packets": cs.data_packets,
        "data_bytes": cs.data_bytes,
        "retransmits": cs.retransmits,
        "rto_events": cs.rto_events,
        "tlp_probes": cs.tlp_probes,
        "lost_packets": cs.lost_packets,
        "acks_sent": cs.acks_sent,
        "acks_received": cs.acks_received,
        "nacks_sent": cs.nacks_sent,
        "rx_data_packets": cs.rx_data_packets,
        "rx_duplicates": cs.rx_duplicates,
        "rx_out_of_order_dropped": cs.rx_out_of_order_dropped,
        "rx_out_of_window": cs.rx_out_of_window,
        "rx_no_resources": cs.rx_no_resources,
        "rx_inconsistent": cs.rx_inconsistent,
        "srtt_us": cs.srtt_ps / 1_000_000,
    })
}

fn host_json(host: &Host) -> Value {
    let hs = host.stats();
    json!({
        "udp_tx_datagrams": hs.udp.tx_datagrams,
        "udp_rx_datagrams": hs.udp.rx_datagrams,
        "udp_tx_gso_batches": hs.udp.tx_gso_batches,
        "udp_tx_gso_fallbacks": hs.udp.tx_gso_fallbacks,
        "udp_rx_gro_buffers": hs.udp.rx_gro_buffers,
        "udp_rx_truncated": hs.udp.rx_truncated,
        "udp_tx_errors": format!("{:?}", hs.udp.tx_errors),
        "fault_rx_seen": hs.fault_rx.seen,
        "fault_rx_dropped": hs.fault_rx.dropped,
        "tx_payload_missing": hs.tx_payload_missing,
        "endpoint": format!("{:?}", hs.endpoint),
    })
}

/// Accept one connection, post the receives, report `READY`, then only keep the connection up.
fn serve(o: &Opts, host: &Host, stdin: &Receiver<String>, deadline: Instant) -> Result<(), String> {
    host.listen();
    say(&format!("ADDR {}", host.local_addr()));
    let (conn, peer, _) = host
        .accept(CONNECT_TIMEOUT.min(left(deadline)))
        .map_err(|e| format!("accept: {e}"))?;
    for (i, &len) in o.sizes.iter().enumerate() {
        let n = usize::try_from(len).map_err(|_| format!("message {i}: {len} B too large"))?;
        let (region, _buf) = host
            .alloc(n, false)
            .map_err(|e| format!("alloc of receive buffer {i}: {e}"))?;
        let wr = WorkRequest::Recv {
            region,
            offset: 0,
            len,
            tag: None,
        };
        host.post(conn, wr)
            .map_err(|e| format!("posting receive {i} ({len} B): {e}"))?;
    }
    say(&format!("READY {peer}"));
    // Report completions on stderr until told to exit (or killed, which is the point).
    loop {
        while let Some(c) = host.poll_completion() {
            eprintln!("weir-test-peer serve: {c:?}");
        }
        match stdin.recv_timeout(Duration::from_millis(50)) {
            Ok(l) if l.trim() == "EXIT" => return Ok(()),
            Ok(_) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
        if Instant::now() >= deadline {
            return Err("serve: overall timeout".into());
        }
    }
}

/// Connect (role `a`) or accept (role `b`).
fn open(o: &Opts, host: &Host, peer: SocketAddr) -> Result<ConnId, String> {
    if o.role == "a" {
        host.connect(peer, 0xa, CONNECT_TIMEOUT)
            .map_err(|e| format!("connect to {peer}: {e}"))
    } else {
        let (conn, from, data) = host
            .accept(CONNECT_TIMEOUT)
            .map_err(|e| format!("accept (expecting {peer}): {e}"))?;
        if data != 0xa {
            return Err(format!(
                "accepted {from} with user data {data:#x}, expected 0xa"
            ));
        }
        Ok(conn)
    }
}

/// The next completion, waiting in steps so a failed connection or the deadline is noticed.
fn next_completion(
    host: &Host,
    conn: ConnId,
    deadline: Instant,
) -> Result<weir_transport::Completion, String> {
    loop {
        let step = WAIT_STEP.min(left(deadline));
        match host.wait_completion(step) {
            Ok(c) => return Ok(c),
            Err(HostError::Timeout { .. }) => {
                if let Some(e) = host.conn_error(conn) {
                    return Err(format!("no completion, and the connection failed: {e}"));
                }
                if Instant::now() >= deadline {
                    return Err(format!(
                        "overall timeout; conn stats {:?}",
                        host.conn_stats(conn)
                    ));
                }
                eprintln!(
                    "weir-test-peer: still waiting for completions; conn stats {:?}",
                    host.conn_stats(conn)
                );
            }
            Err(e) => return Err(format!("waiting for a completion: {e}")),
        }
    }
}

fn describe(pending: &HashMap<WrId, (CompletionKind, usize)>, o: &Opts) -> String {
    let mut v: Vec<String> = pending
        .values()
        .map(|(k, i)| format!("{k:?} {i} ({} B)", o.sizes[*i]))
        .collect();
    v.sort();
    if v.is_empty() {
        "nothing".into()
    } else {
        v.join(", ")
    }
}

fn read_peer(stdin: &Receiver<String>, deadline: Instant) -> Result<SocketAddr, String> {
    let line = match stdin.recv_timeout(CONNECT_TIMEOUT.min(left(deadline))) {
        Ok(l) => l,
        Err(e) => return Err(format!("no PEER line on stdin: {e}")),
    };
    let addr = line
        .trim()
        .strip_prefix("PEER ")
        .ok_or_else(|| format!("expected `PEER <addr>` on stdin, got {line:?}"))?;
    addr.parse()
        .map_err(|e| format!("bad peer address {addr:?}: {e}"))
}

fn start_host(o: &Opts, seed: u64) -> Result<Host, HostError> {
    let mut t = match o.mode {
        Mode::GoBackN => Config::go_back_n(),
        _ => Config::default(),
    };
    t.max_payload = o.max_payload;
    if let Some(ms) = o.peer_timeout_ms {
        t.peer_timeout = weir_base::Duration::from_millis(ms);
    }
    if let Some(ms) = o.keepalive_ms {
        t.keepalive = weir_base::Duration::from_millis(ms);
    }
    if let Some(b) = o.unexpected_bytes {
        t.unexpected_bytes = b;
    }
    let mut cfg = HostConfig {
        transport: t,
        seed: Some(seed),
        ..HostConfig::default()
    };
    cfg.udp.bind = o.bind;
    cfg.fault_rx.drop = o.loss;
    cfg.fault_rx.seed = seed ^ 0x6c6f_7373;
    Host::start(cfg)
}

fn failure(o: &Opts, seed: u64, error: String) -> Value {
    eprintln!("weir-test-peer {} ({}): {error}", o.role, mode_name(o.mode));
    json!({
        "ok": false,
        "role": o.role,
        "mode": mode_name(o.mode),
        "seed": seed,
        "error": error,
    })
}

/// Wait for `EXIT` or the end of stdin (bounded by the overall deadline plus a grace period).
fn wait_exit(stdin: &Receiver<String>, deadline: Instant) {
    let until = deadline + Duration::from_secs(10);
    loop {
        match stdin.recv_timeout(left(until)) {
            Ok(l) if l.trim() == "EXIT" => return,
            Ok(_) => {}
            Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {
                eprintln!("weir-test-peer: no EXIT from the parent; exiting");
                return;
            }
        }
    }
}

/// Lines of stdin, read on a thread; the channel disconnects at end of input.
fn stdin_lines() -> Receiver<String> {
    let (tx, rx) = channel();
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    if let Err(e) = spawned {
        // The receiver then reports a disconnected stdin, which every caller handles.
        eprintln!("weir-test-peer: cannot start the stdin reader: {e}");
    }
    rx
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // A parent that went away makes the write fail; nothing useful can be done about it.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::GoBackN => "gbn",
        _ => "weir",
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmd {
    Exchange,
    Serve,
}

#[derive(Debug)]
struct Opts {
    cmd: Cmd,
    role: String,
    mode: Mode,
    bind: IpAddr,
    sizes: Vec<u64>,
    loss: f64,
    seed: Option<u64>,
    max_payload: u32,
    peer_timeout_ms: Option<u64>,
    keepalive_ms: Option<u64>,
    unexpected_bytes: Option<u64>,
    timeout: Duration,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts, String> {
        let cmd = match args.first().map(String::as_str) {
            Some("exchange") => Cmd::Exchange,
            Some("serve") => Cmd::Serve,
            other => return Err(format!("unknown command {other:?}")),
        };
        let mut o = Opts {
            cmd,
            role: "a".into(),
            mode: Mode::Weir,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            sizes: Vec::new(),
            loss: 0.0,
            seed: None,
            max_payload: 8192,
            peer_timeout_ms: None,
            keepalive_ms: None,
            unexpected_bytes: None,
            timeout: Duration::from_secs(120),
        };
        let mut it = args[1..].iter();
        while let Some(flag) = it.next() {
            let v = it
                .next()
                .ok_or_else(|| format!("{flag} needs a value"))?
                .as_str();
            let bad = |e: &dyn std::fmt::Display| format!("{flag} {v:?}: {e}");
            match flag.as_str() {
                "--role" if v == "a" || v == "b" => o.role = v.into(),
                "--mode" => {
                    o.mode = match v {
                        "weir" => Mode::Weir,
                        "gbn" => Mode::GoBackN,
                        _ => return Err(bad(&"expected weir or gbn")),
                    }
                }
                "--bind" => o.bind = v.parse().map_err(|e| bad(&e))?,
                "--sizes" => o.sizes = parse_sizes(v).map_err(|e| bad(&e))?,
                "--loss" => o.loss = v.parse().map_err(|e| bad(&e))?,
                "--seed" => o.seed = Some(v.parse().map_err(|e| bad(&e))?),
                "--max-payload" => o.max_payload = v.parse().map_err(|e| bad(&e))?,
                "--peer-timeout-ms" => o.peer_timeout_ms = Some(v.parse().map_err(|e| bad(&e))?),
                "--keepalive-ms" => o.keepalive_ms = Some(v.parse().map_err(|e| bad(&e))?),
                "--unexpected-bytes" => {
                    let n = parse_sizes(v).map_err(|e| bad(&e))?;
                    o.unexpected_bytes = n.first().copied();
                }
                "--timeout-s" => {
                    o.timeout = Duration::from_secs(v.parse().map_err(|e| bad(&e))?);
                }
                _ => return Err(format!("unknown option {flag} {v:?}")),
            }
        }
        if o.cmd == Cmd::Exchange && o.sizes.is_empty() {
            return Err("exchange needs --sizes".into());
        }
        Ok(o)
    }
}

/// `1K,64K,1Mx16,8Mx2` → sizes in bytes, repeated as asked (K = KiB, M = MiB).
fn parse_sizes(spec: &str) -> Result<Vec<u64>, String> {
    let mut out = Vec::new();
    for item in spec.split(',').filter(|s| !s.is_empty()) {
        let (size, count) = match item.split_once('x') {
            Some((s, c)) => (s, c.parse::<usize>().map_err(|e| format!("{item}: {e}"))?),
            None => (item, 1),
        };
        let (digits, unit) = match size.as_bytes().last() {
            Some(b'K') => (&size[..size.len() - 1], 1u64 << 10),
            Some(b'M') => (&size[..size.len() - 1], 1 << 20),
            _ => (size, 1),
        };
        let n: u64 = digits.parse().map_err(|e| format!("{item}: {e}"))?;
        out.extend(std::iter::repeat_n(n * unit, count));
    }
    Ok(out)
}
