//! The benches' two-process protocol: the bench spawns two peer processes ([`PeerCmd`]: by
//! default its own executable, `weir bench-peer`), a receiver and a sender, and talks to each
//! over its stdin/stdout ([`crate::process::Peer`]), one JSON line at a time.
//!
//! ```text
//! parent ──PeerParams──▶ receiver            binds port 0 (TCP or a weir host)
//! parent ◀──Ready{addr}── receiver
//! parent ──PeerParams{remote: addr}──▶ sender
//! parent ◀──Report── sender                  after its last completion (or its deadline)
//! parent ◀──Report── receiver                after the sender's end marker (or its deadline)
//! ```
//!
//! No fixed ports, nothing shared but the two sockets the measurement uses. A peer that fails
//! answers `Error{error}` instead; a peer that hangs is killed when its time is up (the parent
//! kills only the children it spawned, by handle). A peer's stderr is shown as it comes.

use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::process::{Peer, PeerErrorKind};
use crate::sys::{self, SchedApplied};
use crate::{BenchError, Mode, nccl_side, tcp, weir_side};

/// Which side of the measurement a peer plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Listens, receives, reports goodput.
    Receiver,
    /// Connects, sends, reports latency and retransmissions.
    Sender,
}

/// What a pair of peers measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Test {
    /// 8-byte messages bounced back and forth; the sender times each round trip.
    PingPong,
    /// `bytes` in messages of `size`, `window` messages in flight.
    Stream,
    /// `weir bench nccl-abi`: a stream through the NCCL net plugin's table (mode `weir`) or
    /// an NCCL-socket-like TCP connection (mode `tcp`); see `nccl_side`.
    NcclStream,
    /// `weir bench incast`: one receiver accepting `incast.senders` connections (each sender a
    /// stream, as `Stream`); see [`crate::incast`].
    Incast,
}

/// Everything a peer needs, sent to it as the first line on its stdin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerParams {
    /// Its side.
    pub role: Role,
    /// The transport under test.
    pub mode: Mode,
    /// The measurement.
    pub test: Test,
    /// Message size in bytes (ping-pong: 8).
    pub size: u64,
    /// Stream: payload bytes to move (rounded up to whole messages, at least two).
    pub bytes: u64,
    /// Messages in flight (posted and not yet completed) at the sender; receives pre-posted.
    pub window: u32,
    /// Weir modes: probability that the receiver's datapath drops an incoming datagram.
    pub loss: f64,
    /// Seed of the loss injection.
    pub seed: u64,
    /// The sender posts no new message after this long (ping-pong: stops its round trips).
    pub point_ms: u64,
    /// After `point_ms`, how long the sender waits for outstanding messages before giving up.
    pub drain_ms: u64,
    /// Ping-pong: round trips to time (after a short warm-up), bounded by `point_ms`.
    pub iters: u64,
    /// Sender: the receiver's address (from its `Ready`).
    pub remote: Option<SocketAddr>,
    /// Pin the peer to this core.
    pub cpu: Option<usize>,
    /// Run the peer under SCHED_FIFO.
    pub rt: bool,
    /// NCCL streams: the receiver's plugin handle (hex), passed to the sender.
    #[serde(default)]
    pub handle: Option<String>,
    /// NCCL streams: the plugin library to `dlopen` (default: the table linked in).
    #[serde(default)]
    pub lib: Option<std::path::PathBuf>,
    /// Weir modes: congestion-control algorithm by name (default: the transport's).
    #[serde(default)]
    pub cc: Option<String>,
    /// Incast: the receiver's connection count and socket buffer, the sender's index.
    #[serde(default)]
    pub incast: Option<crate::incast::IncastPeer>,
    /// Weir modes: where the peer's engine runs (its own `Host`, a firmware engine thread,
    /// or a `weir engine` daemon).
    #[serde(default)]
    pub engine: crate::engine_side::Placement,
}

impl PeerParams {
    /// Number of data messages a stream moves: `bytes / size` rounded up, at least two (the
    /// receiver's clock starts at the first byte of the first one).
    pub fn messages(&self) -> u64 {
        self.bytes.div_ceil(self.size.max(1)).max(2)
    }

    /// [`PeerParams::point_ms`] as a duration.
    pub fn point(&self) -> Duration {
        Duration::from_millis(self.point_ms)
    }

    /// [`PeerParams::drain_ms`] as a duration.
    pub fn drain(&self) -> Duration {
        Duration::from_millis(self.drain_ms)
    }

    /// How long a receiver waits for its sender before reporting what it has.
    pub fn receiver_patience(&self) -> Duration {
        self.point() + self.drain() + Duration::from_secs(3)
    }
}

/// What a peer says on its stdout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum PeerMsg {
    /// The receiver listens at `addr`.
    Ready {
        /// Where the sender connects (NCCL streams through the plugin: unused).
        addr: SocketAddr,
        /// What the receiver applied of pinning and SCHED_FIFO.
        sched: SchedApplied,
        /// NCCL plugin streams: the listen handle, hex.
        #[serde(default)]
        handle: Option<String>,
    },
    /// The measurement finished.
    Report(PeerReport),
    /// The peer failed.
    Error {
        /// Why.
        error: String,
    },
}

/// One peer's view of a measurement.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PeerReport {
    /// Data messages completed: received in full (receiver) or acknowledged (sender).
    pub messages: u64,
    /// Payload bytes in those messages.
    pub bytes: u64,
    /// Receiver: first byte → last completion. Sender: first post → last completion.
    /// Ping-pong: the timed round trips, end to end.
    pub elapsed_ns: u64,
    /// Everything asked for was moved (false: stopped by the time limit).
    pub complete: bool,
    /// Sender: per-message post → completion; ping-pong: round-trip time.
    pub lat_count: u64,
    /// Median of those latencies, µs.
    pub lat_p50_us: Option<f64>,
    /// Their 99th percentile, µs.
    pub lat_p99_us: Option<f64>,
    /// Sender: data packets retransmitted and first transmissions (weir: engine counters; TCP:
    /// `tcpi_total_retrans` and `tcpi_data_segs_out`).
    pub retransmits: Option<u64>,
    /// See `retransmits`.
    pub data_packets: Option<u64>,
    /// What the peer applied of pinning and SCHED_FIFO.
    pub sched: SchedApplied,
    /// Why a figure is missing or partial.
    pub note: Option<String>,
    /// Sender: the largest per-message latency, µs.
    #[serde(default)]
    pub lat_max_us: Option<f64>,
    /// Sender (weir): retransmission timeouts (`ConnStats::rto_events`).
    #[serde(default)]
    pub rtos: Option<u64>,
    /// Sender (weir): retransmissions found needless (`ConnStats::spurious_retransmits`).
    #[serde(default)]
    pub spurious_retransmits: Option<u64>,
    /// Sender (weir): the longest a resent packet waited to be delivered, µs
    /// (`ConnStats::max_repair_us`).
    #[serde(default)]
    pub max_repair_us: Option<u64>,
    /// Incast receiver: what arrived from each sender.
    #[serde(default)]
    pub per_sender: Vec<crate::incast::SenderRx>,
    /// Incast receiver: the kernel's UDP receive-buffer drops during the run (host-wide
    /// `RcvbufErrors` of `/proc/net/snmp`).
    #[serde(default)]
    pub kernel_drops: Option<u64>,
}

impl PeerReport {
    /// Payload bytes per nanosecond, i.e. GB/s (10⁹ bytes per second).
    pub fn gbps(&self) -> Option<f64> {
        (self.elapsed_ns > 0 && self.bytes > 0).then(|| self.bytes as f64 / self.elapsed_ns as f64)
    }

    /// Retransmitted data packets per first transmission.
    pub fn retx_ratio(&self) -> Option<f64> {
        match (self.retransmits, self.data_packets) {
            (Some(r), Some(d)) if d > 0 => Some(r as f64 / d as f64),
            _ => None,
        }
    }
}

/// The command that starts a peer process: an executable whose subcommand calls [`main`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCmd {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments (the subcommand).
    pub args: Vec<OsString>,
}

impl PeerCmd {
    /// This executable with `args`: `weir`'s peers are `weir bench-peer`.
    pub fn current_exe(args: &[&str]) -> Result<PeerCmd, BenchError> {
        Ok(PeerCmd {
            program: std::env::current_exe()?,
            args: args.iter().map(OsString::from).collect(),
        })
    }
}

/// The peer process: reads its [`PeerParams`] as one JSON line on stdin, runs its side of the
/// measurement and answers with [`PeerMsg`] lines on stdout (`weir bench-peer` calls this).
pub fn main() -> Result<(), BenchError> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let params: PeerParams = serde_json::from_str(&line)?;
    let sched = sys::apply_sched(params.cpu, params.rt);
    let ready_sched = sched.clone();
    let handle_sched = sched.clone();
    let mut ready = move |addr: SocketAddr| {
        emit(&PeerMsg::Ready {
            addr,
            sched: ready_sched.clone(),
            handle: None,
        })
    };
    let mut ready_handle = move |handle: String| {
        emit(&PeerMsg::Ready {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            sched: handle_sched.clone(),
            handle: Some(handle),
        })
    };
    let result = match (params.mode, params.role, params.test) {
        (Mode::Tcp, Role::Receiver, Test::NcclStream) => {
            nccl_side::socket_receiver(&params, &mut ready)
        }
        (Mode::Tcp, Role::Sender, Test::NcclStream) => nccl_side::socket_sender(&params),
        (_, Role::Receiver, Test::NcclStream) => {
            nccl_side::plugin_receiver(&params, &mut ready_handle)
        }
        (_, Role::Sender, Test::NcclStream) => nccl_side::plugin_sender(&params),
        (Mode::Tcp, Role::Receiver, Test::Stream) => tcp::stream_receiver(&params, &mut ready),
        (Mode::Tcp, Role::Sender, Test::Stream) => tcp::stream_sender(&params),
        (Mode::Tcp, Role::Receiver, Test::PingPong) => tcp::pingpong_server(&params, &mut ready),
        (Mode::Tcp, Role::Sender, Test::PingPong) => tcp::pingpong_client(&params),
        (_, Role::Receiver, Test::Incast) => weir_side::incast_receiver(&params, &mut ready),
        (_, Role::Receiver, Test::Stream) => weir_side::weir_receiver(&params, &mut ready),
        (_, Role::Sender, Test::Stream) => weir_side::weir_sender(&params, &mut || Ok(())),
        (_, Role::Sender, Test::Incast) => {
            // The start barrier: ready, then wait for the parent's go (a line on stdin).
            weir_side::weir_sender(&params, &mut || {
                ready(SocketAddr::from(([0, 0, 0, 0], 0)))?;
                let mut go = String::new();
                if std::io::stdin().lock().read_line(&mut go)? == 0 {
                    return Err(BenchError::new("the bench closed the start barrier"));
                }
                Ok(())
            })
        }
        (_, Role::Receiver, Test::PingPong) => weir_side::pingpong_server(&params, &mut ready),
        (_, Role::Sender, Test::PingPong) => weir_side::pingpong_client(&params),
    };
    match result {
        Ok(mut report) => {
            report.sched = sched;
            emit(&PeerMsg::Report(report))
        }
        // The parent reports the error; a second copy on stderr would only be noise.
        Err(e) => emit(&PeerMsg::Error {
            error: e.to_string(),
        }),
    }
}

/// Write one message as a JSON line on stdout and flush it.
fn emit(msg: &PeerMsg) -> Result<(), BenchError> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, msg)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// The outcome of one receiver/sender pair: each side's report or why it has none.
#[derive(Debug)]
pub struct PairOutcome {
    /// The receiver's report, or why there is none.
    pub receiver: Result<PeerReport, String>,
    /// The sender's report, or why there is none.
    pub sender: Result<PeerReport, String>,
    /// The receiver's scheduling facts (from its `Ready`), known even when it fails later.
    pub receiver_sched: Option<SchedApplied>,
}

impl PairOutcome {
    /// Both peers reported, and each moved everything it was asked to.
    pub fn complete(&self) -> bool {
        matches!((&self.receiver, &self.sender), (Ok(r), Ok(s)) if r.complete && s.complete)
    }

    /// Why the measurement failed, `None` when both peers reported: each peer that died,
    /// hung, reported an error or exited with a failure status, and what the other one had
    /// done by then. A failed pair has no figures: the survivor's are of a stream cut short.
    pub fn failure(&self) -> Option<String> {
        let state = |r: &PeerReport| {
            let mut s = format!(
                "{} messages, {}",
                r.messages,
                if r.complete { "complete" } else { "partial" }
            );
            if let Some(n) = &r.note {
                s.push_str(&format!(": {n}"));
            }
            s
        };
        match (&self.receiver, &self.sender) {
            (Ok(_), Ok(_)) => None,
            (Err(r), Err(s)) if r == s => Some(r.clone()),
            (Err(r), Err(s)) => Some(format!("{r}; {s}")),
            (Err(e), Ok(s)) => Some(format!("{e} (the sender reported {})", state(s))),
            (Ok(r), Err(e)) => Some(format!("{e} (the receiver reported {})", state(r))),
        }
    }

    /// The peers' notes and errors, labelled and joined (an error both share, once).
    pub fn note(&self) -> Option<String> {
        let mut notes = Vec::new();
        match &self.receiver {
            Ok(r) => notes.extend(r.note.iter().map(|n| format!("receiver: {n}"))),
            Err(e) => notes.push(e.clone()),
        }
        match &self.sender {
            Ok(s) => notes.extend(s.note.iter().map(|n| format!("sender: {n}"))),
            Err(e) if self.receiver.as_ref().err() != Some(e) => notes.push(e.clone()),
            Err(_) => {}
        }
        (!notes.is_empty()).then(|| notes.join("; "))
    }
}

/// Run one measurement: spawn the receiver, then the sender, collect both reports.
pub fn run_pair(cmd: &PeerCmd, receiver: &PeerParams, sender: &PeerParams) -> PairOutcome {
    let fail = |e: String| PairOutcome {
        receiver: Err(e.clone()),
        sender: Err(e),
        receiver_sched: None,
    };
    let mut rx = match spawn(cmd, "receiver", receiver) {
        Ok(p) => p,
        Err(e) => return fail(e.to_string()),
    };
    let (addr, handle, receiver_sched) = match next_msg(&mut rx, READY_TIMEOUT) {
        Ok(PeerMsg::Ready {
            addr,
            sched,
            handle,
        }) => (addr, handle, sched),
        Ok(PeerMsg::Error { error }) => return fail(format!("receiver: {error}")),
        Ok(PeerMsg::Report(_)) => return fail("receiver reported before it was ready".into()),
        Err(e) => return fail(e.to_string()),
    };
    let mut sender = sender.clone();
    sender.remote = Some(addr);
    sender.handle = handle;
    let limit = sender.point() + sender.drain() + PEER_SLACK;
    let sender_result = spawn(cmd, "sender", &sender).and_then(|mut tx| {
        let r = report(&mut tx, limit);
        let status = tx.finish(EXIT_GRACE);
        r.and_then(|r| exited_cleanly(&tx, status).map(|()| r))
    });
    // The receiver stops at the sender's end marker, or on its own deadline if the sender died.
    let receiver_result = report(&mut rx, receiver.receiver_patience() + PEER_SLACK);
    let status = rx.finish(EXIT_GRACE);
    let receiver_result = receiver_result.and_then(|r| exited_cleanly(&rx, status).map(|()| r));
    PairOutcome {
        receiver: receiver_result.map_err(|e| e.to_string()),
        sender: sender_result.map_err(|e| e.to_string()),
        receiver_sched: Some(receiver_sched),
    }
}

/// A peer that reported and then exited with a failure status (a panic, a signal while
/// shutting down) failed: its report is not trusted. One that is still running after the
/// grace period (`None`: killed) is not counted against it.
fn exited_cleanly(peer: &Peer, status: Option<ExitStatus>) -> Result<(), BenchError> {
    match status {
        Some(s) if !s.success() => Err(BenchError::new(format!(
            "{} exited with {s} after its report",
            peer.name()
        ))),
        _ => Ok(()),
    }
}

/// How long a receiver may take to bind and pre-touch its buffers.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Extra time beyond a peer's own deadlines before the parent gives up on it.
pub(crate) const PEER_SLACK: Duration = Duration::from_secs(15);
/// How long a peer may take to exit after its report before it is killed.
pub(crate) const EXIT_GRACE: Duration = Duration::from_secs(2);

/// Start a peer and hand it its parameters.
pub(crate) fn spawn(
    cmd: &PeerCmd,
    name: &'static str,
    params: &PeerParams,
) -> Result<Peer, BenchError> {
    let mut c = Command::new(&cmd.program);
    c.args(&cmd.args);
    let mut peer = Peer::spawn_echoing(name, c)?;
    // The pipe stays open after this line (closing it would be harmless): a later protocol
    // version may send more commands.
    peer.send(&serde_json::to_string(params)?);
    Ok(peer)
}

/// The next message, or an error after `timeout` or when the peer exits.
pub(crate) fn next_msg(peer: &mut Peer, timeout: Duration) -> Result<PeerMsg, BenchError> {
    peer.json(timeout).map_err(|e| {
        let name = &e.name;
        BenchError::new(match e.kind {
            PeerErrorKind::Timeout(_) => format!(
                "{name} did not answer within {:.0} s",
                timeout.as_secs_f64()
            ),
            PeerErrorKind::Exited(status) => format!(
                "{name} exited without a report ({})",
                status.map_or_else(|| "still running".to_string(), |s| s.to_string())
            ),
            _ => e.to_string(),
        })
    })
}

pub(crate) fn report(peer: &mut Peer, timeout: Duration) -> Result<PeerReport, BenchError> {
    match next_msg(peer, timeout)? {
        PeerMsg::Report(r) => Ok(r),
        PeerMsg::Error { error } => Err(BenchError::new(format!("{}: {error}", peer.name()))),
        PeerMsg::Ready { .. } => Err(BenchError::new(format!(
            "{}: unexpected ready",
            peer.name()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> PeerParams {
        PeerParams {
            role: Role::Sender,
            mode: Mode::Gbn,
            test: Test::Stream,
            size: 1 << 20,
            bytes: 16 << 20,
            window: 4,
            loss: 0.01,
            seed: 7,
            point_ms: 1000,
            drain_ms: 3000,
            iters: 0,
            remote: Some("127.0.0.1:4242".parse().expect("addr")),
            cpu: Some(1),
            rt: true,
            handle: None,
            lib: None,
            cc: None,
            incast: None,
            engine: crate::engine_side::Placement::Host,
        }
    }

    #[test]
    fn params_round_trip_as_one_line() {
        let p = params();
        let line = serde_json::to_string(&p).expect("ser");
        assert!(!line.contains('\n'));
        assert!(line.contains(r#""mode":"gbn""#), "{line}");
        let back: PeerParams = serde_json::from_str(&line).expect("de");
        assert_eq!(back, p);
    }

    #[test]
    fn messages_rounds_up_and_keeps_two() {
        let mut p = params();
        assert_eq!(p.messages(), 16);
        p.bytes = (16 << 20) + 1;
        assert_eq!(p.messages(), 17);
        p.bytes = 1;
        assert_eq!(p.messages(), 2);
    }

    #[test]
    fn messages_are_tagged() {
        let ready = PeerMsg::Ready {
            addr: "127.0.0.1:1".parse().expect("addr"),
            sched: SchedApplied::default(),
            handle: None,
        };
        let s = serde_json::to_string(&ready).expect("ser");
        assert!(s.starts_with(r#"{"msg":"ready""#), "{s}");
        let report = PeerMsg::Report(PeerReport {
            messages: 3,
            bytes: 3000,
            elapsed_ns: 1000,
            ..PeerReport::default()
        });
        let s = serde_json::to_string(&report).expect("ser");
        let back: PeerMsg = serde_json::from_str(&s).expect("de");
        assert_eq!(back, report);
        let PeerMsg::Report(r) = back else {
            unreachable!()
        };
        assert_eq!(r.gbps(), Some(3.0));
    }

    #[test]
    fn a_pair_fails_when_either_peer_has_no_report() {
        let ok = |complete| {
            Ok(PeerReport {
                messages: 2,
                complete,
                ..PeerReport::default()
            })
        };
        let pair = |receiver, sender| PairOutcome {
            receiver,
            sender,
            receiver_sched: None,
        };
        // A partial stream (the time limit) is a result, not a failure.
        assert_eq!(pair(ok(false), ok(false)).failure(), None);
        let e = pair(ok(false), Err("sender exited without a report".into()))
            .failure()
            .expect("failed");
        assert_eq!(
            e,
            "sender exited without a report (the receiver reported 2 messages, partial)"
        );
        let e = pair(Err("receiver: bind".into()), ok(true)).failure();
        assert_eq!(
            e.as_deref(),
            Some("receiver: bind (the sender reported 2 messages, complete)")
        );
        let same = pair(Err("spawn".into()), Err("spawn".into()));
        assert_eq!(same.failure().as_deref(), Some("spawn"));
        let both = pair(Err("a".into()), Err("b".into()));
        assert_eq!(both.failure().as_deref(), Some("a; b"));
    }

    #[test]
    fn a_failure_exit_after_the_report_fails_the_peer() {
        let exit = |code: &str| {
            let mut c = Command::new("sh");
            c.args(["-c", &format!("exit {code}")]);
            let mut p = Peer::spawn("sender", c).expect("spawn");
            let status = p.finish(Duration::from_secs(30));
            exited_cleanly(&p, status).map_err(|e| e.to_string())
        };
        assert!(exit("0").is_ok());
        let e = exit("3").expect_err("exit 3");
        assert!(e.starts_with("sender exited with exit status: 3"), "{e}");
    }

    #[test]
    fn retx_ratio_needs_both_counters() {
        let mut r = PeerReport::default();
        assert_eq!(r.retx_ratio(), None);
        r.retransmits = Some(5);
        r.data_packets = Some(100);
        assert_eq!(r.retx_ratio(), Some(0.05));
        r.data_packets = Some(0);
        assert_eq!(r.retx_ratio(), None);
    }
}
