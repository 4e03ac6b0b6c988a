//! `weir bench incast`: N sender processes to one receiver over loopback, each with its own
//! weir connection, the receiver's kernel socket buffers small (`--rcvbuf`) so that the kernel
//! drops whole bursts when the senders collide.
//!
//! One receiver peer ([`crate::weir_side::incast_receiver`]) accepts N connections on one
//! host and pre-posts receives on each; N sender peers (the stream sender of the transport
//! bench, [`crate::weir_side::weir_sender`]) start together once it is ready, each sending
//! `messages` messages of `size` bytes with `window` in flight. One sender alone is measured
//! first, in the same run, as the reference, moving what the N senders move together (N ×
//! `messages`): the aggregate row gives the N senders' goodput as a share of it. With
//! `repeat` rounds the two phases alternate (reference, incast, reference, …) and a summary
//! gives the medians: on a shared machine one sender's goodput alone swings by a factor of
//! two or more from run to run. Per sender: messages completed, goodput (receiver's view:
//! that sender's first byte → its last completion), per-message latency at the sender (post → completion;
//! the max is the longest any message waited, losses included), retransmissions, RTOs and
//! retransmissions found spurious. Aggregate: every byte / (first byte of any sender → last
//! completion of all), and the kernel's receive-buffer drops on the host during the phase.
//!
//! [`run`] reports through [`Event`]s; [`table_header`], [`table_row`] and [`json_line`]
//! format them.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::peer::{self, PeerCmd, PeerMsg, PeerParams, PeerReport, Role, Test};
use crate::units::fmt_size;
use crate::{BenchError, Mode, rt_permitted, sys, weir_side};

/// The incast part of [`PeerParams`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncastPeer {
    /// Receiver: connections to accept.
    pub senders: u32,
    /// Sender: its index (the connection's user data, so the receiver can name it).
    pub index: u32,
    /// Receiver: kernel receive buffer per socket, bytes (0: the datapath's default).
    pub rcvbuf: u64,
    /// Receiver: receive on all its sockets (`HostConfig::rx_spread`).
    #[serde(default)]
    pub rx_spread: bool,
    /// Receiver: turns of its receive budget (`Config::rx_grants`; `None`: the default).
    #[serde(default)]
    pub rx_grants: Option<u32>,
    /// Receiver: bytes per turn (`Config::rx_turn_bytes`; `None`: the default).
    #[serde(default)]
    pub rx_turn: Option<u64>,
}

/// What the incast receiver saw of one sender.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SenderRx {
    /// The sender's index.
    pub index: u32,
    /// Messages received in full.
    pub messages: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// Messages the sender's end marker announced (`None`: no end marker arrived).
    pub expected: Option<u64>,
    /// This sender's first byte, after the first byte of any sender, ns.
    pub start_ns: Option<u64>,
    /// This sender's first byte → its last completion, ns.
    pub elapsed_ns: u64,
    /// Every announced message arrived.
    pub complete: bool,
    /// Why not, or what was odd.
    pub note: Option<String>,
}

/// What to measure.
#[derive(Clone, Debug, PartialEq)]
pub struct IncastOptions {
    /// Sender processes [16].
    pub senders: u32,
    /// Message size, bytes [default: 1M; quick: 256K].
    pub size: Option<u64>,
    /// Messages per sender [default: 16; quick: 8].
    pub messages: Option<u64>,
    /// Messages in flight per sender [4].
    pub window: u32,
    /// Kernel receive buffer per receiver socket, bytes [256K].
    pub rcvbuf: u64,
    /// The receiver receives on all its sockets (`HostConfig::rx_spread`) [off].
    pub rx_spread: bool,
    /// Connections granted the receiver's buffer at once (`Config::rx_grants`, 0: all
    /// share it) [default: the transport's].
    pub rx_grants: Option<u32>,
    /// Bytes a granted sender moves per turn while others wait (`Config::rx_turn_bytes`)
    /// [default: the transport's].
    pub rx_turn: Option<u64>,
    /// Congestion control by name or TOML file [default: the transport's].
    pub cc: Option<String>,
    /// Run the peers under SCHED_FIFO.
    pub rt: bool,
    /// Time limit of each phase, seconds [default: 30; quick: 15].
    pub timeout_secs: Option<f64>,
    /// A small run for smoke tests.
    pub quick: bool,
    /// Rounds of reference and incast, alternated; the summary gives their medians [default:
    /// 3; quick: 1].
    pub repeat: Option<u32>,
    /// Where the senders run their engine [host]: `daemon` attaches every sender process to
    /// one `weir engine` daemon the bench starts per phase (the senders' host has one engine,
    /// as with a DPU); the receiver keeps its own `Host` and small socket buffer either way.
    pub engine: crate::engine_side::EngineKind,
}

impl Default for IncastOptions {
    fn default() -> Self {
        IncastOptions {
            senders: 16,
            size: None,
            messages: None,
            window: 4,
            rcvbuf: 256 << 10,
            rx_spread: false,
            rx_grants: None,
            rx_turn: None,
            cc: None,
            rt: false,
            timeout_secs: None,
            quick: false,
            repeat: None,
            engine: crate::engine_side::EngineKind::Host,
        }
    }
}

/// One row: a sender of a phase, or a phase's aggregate (`sender: None`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct IncastRow {
    /// The round (from 1) of reference and incast this row belongs to.
    pub round: u32,
    /// Senders in this phase (1: the reference).
    pub senders: u32,
    /// The sender's index; `None` on the aggregate row.
    pub sender: Option<u32>,
    /// Message size, bytes.
    pub size: u64,
    /// Messages in flight per sender.
    pub window: u32,
    /// Kernel receive buffer per receiver socket, bytes.
    pub rcvbuf: u64,
    /// Messages received in full (aggregate: all senders).
    pub messages: u64,
    /// Messages asked for.
    pub expected: u64,
    /// Payload bytes received.
    pub bytes: u64,
    /// Receiver view, GB/s (10⁹ B/s): this sender's bytes over its first byte → last
    /// completion; aggregate: all bytes over first byte of any → last completion of all.
    pub goodput_gbps: Option<f64>,
    /// Per-message latency at the sender (post → completion), µs; aggregate: over the
    /// senders, the largest p50 and p99.
    pub p50_us: Option<f64>,
    /// See `p50_us`.
    pub p99_us: Option<f64>,
    /// The longest any message waited, µs.
    pub max_us: Option<f64>,
    /// Retransmitted data packets (aggregate: sum).
    pub retransmits: Option<u64>,
    /// Retransmission timeouts.
    pub rtos: Option<u64>,
    /// Retransmissions later found needless.
    pub spurious_retransmits: Option<u64>,
    /// The longest a lost packet waited to be delivered (first transmission → ACK of the copy
    /// that arrived), µs: no message waited longer behind a loss. Aggregate: the max.
    #[serde(default)]
    pub max_repair_us: Option<u64>,
    /// Aggregate: the kernel's UDP receive-buffer drops on this host during the phase.
    pub kernel_drops: Option<u64>,
    /// Aggregate: the single sender's goodput in this run, and this phase's share of it.
    pub single_gbps: Option<f64>,
    /// See `single_gbps`.
    pub ratio_to_single: Option<f64>,
    /// Every message of every sender in the row arrived and was acknowledged.
    pub complete: bool,
    /// Why a figure is missing or partial.
    pub note: Option<String>,
}

/// The rounds' aggregates and their medians.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct IncastSummary {
    /// Rounds run.
    pub rounds: u32,
    /// Senders of the incast phase.
    pub senders: u32,
    /// One sender's goodput in each round (the reference), GB/s; `None` where it failed.
    pub single_gbps: Vec<Option<f64>>,
    /// The incast's aggregate goodput in each round, GB/s.
    pub incast_gbps: Vec<Option<f64>>,
    /// Each round's incast ÷ that round's reference.
    pub ratios: Vec<Option<f64>>,
    /// Median of `single_gbps` (over the rounds that have one).
    pub single_median_gbps: Option<f64>,
    /// Median of `incast_gbps`.
    pub incast_median_gbps: Option<f64>,
    /// Median of `ratios`: the figure the incast is judged by.
    pub ratio_median: Option<f64>,
    /// Every message of every phase of every round arrived and was acknowledged.
    pub complete: bool,
}

impl IncastSummary {
    fn new(rounds: u32, senders: u32, rows: &[IncastRow]) -> IncastSummary {
        // Each round's aggregate rows: the reference's first, then the incast's (both have
        // one sender when `senders` is 1).
        let agg = |phase: usize| -> Vec<&IncastRow> {
            (1..=rounds)
                .filter_map(|round| {
                    rows.iter()
                        .filter(|r| r.round == round && r.sender.is_none())
                        .nth(phase)
                })
                .collect()
        };
        let (single, incast) = (agg(0), agg(1));
        let single_gbps: Vec<Option<f64>> = single.iter().map(|r| r.goodput_gbps).collect();
        let incast_gbps: Vec<Option<f64>> = incast.iter().map(|r| r.goodput_gbps).collect();
        let ratios: Vec<Option<f64>> = incast.iter().map(|r| r.ratio_to_single).collect();
        IncastSummary {
            rounds,
            senders,
            single_median_gbps: median(&single_gbps),
            incast_median_gbps: median(&incast_gbps),
            ratio_median: median(&ratios),
            single_gbps,
            incast_gbps,
            ratios,
            complete: rows.iter().all(|r| r.complete),
        }
    }
}

/// The median of the values present (the upper one of an even count's middle two; `None`
/// when none is), as every bench takes it ([`crate::median_by`]).
fn median(v: &[Option<f64>]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    crate::median_by(v.to_vec(), |x| *x)
}

/// What [`run`] reports: `Start`, per round the rows of the reference and of the incast,
/// `Summary`, `End`.
#[derive(Debug)]
pub enum Event<'a> {
    /// Before the first phase.
    Start {
        /// The header (`#` lines).
        header: &'a str,
    },
    /// One row.
    Row(&'a IncastRow),
    /// After the last round: the medians.
    Summary(&'a IncastSummary),
    /// After the summary: every row.
    End {
        /// In order.
        rows: &'a [IncastRow],
    },
}

/// The resolved options.
#[derive(Clone, Debug, PartialEq)]
struct Plan {
    senders: u32,
    size: u64,
    messages: u64,
    window: u32,
    rcvbuf: u64,
    rx_spread: bool,
    rx_grants: Option<u32>,
    rx_turn: Option<u64>,
    cc: Option<String>,
    rt: bool,
    timeout_ms: u64,
    repeat: u32,
    engine: crate::engine_side::EngineKind,
    /// With `--engine daemon`: the senders' daemon socket.
    daemon_socket: std::path::PathBuf,
}

impl Plan {
    fn new(o: &IncastOptions) -> Result<Plan, BenchError> {
        if !(1..=256).contains(&o.senders) {
            return Err(BenchError::new("--senders must lie within 1..=256"));
        }
        let size = o.size.unwrap_or(if o.quick { 256 << 10 } else { 1 << 20 });
        if size == 0 || size > 1 << 30 {
            return Err(BenchError::new("--size must lie within 1 B..=1 GiB"));
        }
        let messages = o.messages.unwrap_or(if o.quick { 8 } else { 16 });
        if messages < 2 {
            return Err(BenchError::new("--messages must be at least 2"));
        }
        let secs = o.timeout_secs.unwrap_or(if o.quick { 15.0 } else { 30.0 });
        if !(0.1..=600.0).contains(&secs) {
            return Err(BenchError::new("--timeout must lie within 0.1..=600 s"));
        }
        if let Some(cc) = &o.cc {
            weir_side::load_cc(cc)?;
        }
        let repeat = o.repeat.unwrap_or(if o.quick { 1 } else { 3 });
        if !(1..=100).contains(&repeat) {
            return Err(BenchError::new("--repeat must lie within 1..=100"));
        }
        Ok(Plan {
            senders: o.senders,
            size,
            messages,
            window: o.window.max(1),
            rcvbuf: o.rcvbuf,
            rx_spread: o.rx_spread,
            rx_grants: o.rx_grants,
            rx_turn: o.rx_turn,
            cc: o.cc.clone(),
            rt: o.rt,
            timeout_ms: (secs * 1e3) as u64,
            repeat,
            engine: o.engine,
            daemon_socket: std::env::temp_dir()
                .join(format!("weir-incast-{}.sock", std::process::id())),
        })
    }

    /// Messages each sender of a phase with `senders` senders sends: the reference's one
    /// sender moves what all the incast's senders move together, so that it runs long
    /// enough to give a steady figure (16 MiB alone took about 4 ms, one scheduler tick).
    fn messages_for(&self, senders: u32) -> u64 {
        if senders == 1 {
            self.messages * u64::from(self.senders)
        } else {
            self.messages
        }
    }

    fn params(&self, role: Role, senders: u32, index: u32) -> PeerParams {
        PeerParams {
            role,
            mode: Mode::Weir,
            test: Test::Incast,
            size: self.size,
            bytes: self.size * self.messages_for(senders),
            window: self.window,
            loss: 0.0,
            seed: 1,
            point_ms: self.timeout_ms,
            drain_ms: 2000,
            iters: 0,
            remote: None,
            cpu: None,
            rt: self.rt,
            handle: None,
            lib: None,
            cc: self.cc.clone(),
            incast: Some(IncastPeer {
                senders,
                index,
                rcvbuf: self.rcvbuf,
                rx_spread: self.rx_spread,
                rx_grants: self.rx_grants,
                rx_turn: self.rx_turn,
            }),
            engine: match (role, self.engine) {
                (Role::Sender, crate::engine_side::EngineKind::Daemon) => {
                    crate::engine_side::Placement::Daemon(self.daemon_socket.clone())
                }
                (Role::Sender, crate::engine_side::EngineKind::Inproc) => {
                    crate::engine_side::Placement::Inproc
                }
                _ => crate::engine_side::Placement::Host,
            },
        }
    }
}

/// Run the reference (one sender) and the incast (`senders`), reporting through `on`.
pub fn run(
    opts: &IncastOptions,
    peer: &PeerCmd,
    on: &mut dyn FnMut(Event<'_>),
) -> Result<(), BenchError> {
    let mut plan = Plan::new(opts)?;
    let mut notes = Vec::new();
    if plan.rt && !rt_permitted() {
        notes.push("# note: --rt not permitted; peers run under normal scheduling".to_string());
        plan.rt = false;
    }
    let header = table_header(&plan, &notes);
    on(Event::Start { header: &header });
    let mut rows = Vec::new();
    for round in 1..=plan.repeat {
        let mut single = None;
        for senders in [1, plan.senders] {
            let outcome = measure(&plan, peer, senders);
            let mut phase = phase_rows(&plan, senders, &outcome);
            let agg = phase
                .last_mut()
                .unwrap_or_else(|| unreachable!("aggregate row"));
            if senders == 1 {
                single = agg.goodput_gbps;
            }
            agg.single_gbps = single;
            agg.ratio_to_single = match (agg.goodput_gbps, single) {
                (Some(g), Some(s)) if s > 0.0 => Some(g / s),
                _ => None,
            };
            for mut row in phase {
                row.round = round;
                on(Event::Row(&row));
                rows.push(row);
            }
        }
    }
    let summary = IncastSummary::new(plan.repeat, plan.senders, &rows);
    on(Event::Summary(&summary));
    on(Event::End { rows: &rows });
    Ok(())
}

/// One phase's reports: the receiver's, and each sender's (by index).
#[derive(Debug)]
struct Outcome {
    receiver: Result<PeerReport, String>,
    senders: Vec<Result<PeerReport, String>>,
}

/// Spawn the receiver, then `senders` senders at once; collect every report, each wait
/// bounded by the phase's time limit.
fn measure(plan: &Plan, cmd: &PeerCmd, senders: u32) -> Outcome {
    let fail = |e: String| Outcome {
        receiver: Err(e.clone()),
        senders: (0..senders).map(|_| Err(e.clone())).collect(),
    };
    // The senders' daemon, for `--engine daemon`, lives until the phase is over.
    let _daemon = if plan.engine == crate::engine_side::EngineKind::Daemon {
        let setup = crate::engine_side::DaemonSetup {
            cc: plan.cc.as_deref(),
            ..Default::default()
        };
        match crate::engine_side::DaemonProcess::start(&cmd.program, &plan.daemon_socket, &setup) {
            Ok(d) => Some(d),
            Err(e) => return fail(e),
        }
    } else {
        None
    };
    let rp = plan.params(Role::Receiver, senders, 0);
    let mut rx = match peer::spawn(cmd, "receiver", &rp) {
        Ok(p) => p,
        Err(e) => return fail(e.to_string()),
    };
    let addr = match peer::next_msg(&mut rx, peer::READY_TIMEOUT) {
        Ok(PeerMsg::Ready { addr, .. }) => addr,
        Ok(PeerMsg::Error { error }) => return fail(format!("receiver: {error}")),
        Ok(PeerMsg::Report(_)) => return fail("receiver reported before it was ready".into()),
        Err(e) => return fail(e.to_string()),
    };
    let txs: Vec<_> = (0..senders)
        .map(|i| {
            let mut sp = plan.params(Role::Sender, senders, i);
            sp.remote = Some(addr);
            peer::spawn(cmd, "sender", &sp)
        })
        .collect();
    // The start barrier: every sender connects and prepares its buffers, then all are told to
    // go at once (an incast is N senders at the same time; without it the phase would also
    // measure 16 processes starting up one after another on a small machine).
    let mut txs: Vec<_> = txs
        .into_iter()
        .map(|tx| {
            tx.and_then(
                |mut tx| match peer::next_msg(&mut tx, peer::READY_TIMEOUT)? {
                    PeerMsg::Ready { .. } => Ok(tx),
                    PeerMsg::Error { error } => Err(BenchError::new(error)),
                    PeerMsg::Report(_) => Err(BenchError::new("reported before it was ready")),
                },
            )
        })
        .collect();
    for tx in txs.iter_mut().flatten() {
        tx.send("go");
    }
    let deadline = Instant::now() + rp.point() + rp.drain() + peer::PEER_SLACK;
    let left = || deadline.saturating_duration_since(Instant::now());
    let reports: Vec<_> = txs
        .into_iter()
        .enumerate()
        .map(|(i, tx)| {
            tx.and_then(|mut tx| {
                let r = peer::report(&mut tx, left().max(Duration::from_millis(100)));
                tx.finish(peer::EXIT_GRACE);
                r
            })
            .map_err(|e| format!("sender {i}: {e}"))
        })
        .collect();
    let receiver = peer::report(&mut rx, left().max(Duration::from_secs(5)));
    rx.finish(peer::EXIT_GRACE);
    Outcome {
        receiver: receiver.map_err(|e| e.to_string()),
        senders: reports,
    }
}

fn gbps(bytes: u64, ns: u64) -> Option<f64> {
    (ns > 0 && bytes > 0).then(|| bytes as f64 / ns as f64)
}

/// Sum of the senders' counters that reported one.
fn sum(v: impl Iterator<Item = Option<u64>>) -> Option<u64> {
    v.flatten().reduce(|a, b| a + b)
}

fn fmax(v: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    v.flatten().reduce(f64::max)
}

/// The rows of one phase: one per sender, then the aggregate.
fn phase_rows(plan: &Plan, senders: u32, o: &Outcome) -> Vec<IncastRow> {
    let base = IncastRow {
        senders,
        size: plan.size,
        window: plan.window,
        rcvbuf: plan.rcvbuf,
        expected: plan.messages_for(senders),
        ..IncastRow::default()
    };
    let rx = o.receiver.as_ref().ok();
    let mut rows: Vec<IncastRow> = o
        .senders
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            let got = rx.and_then(|r| r.per_sender.iter().find(|x| x.index == i));
            let mut row = IncastRow {
                sender: Some(i),
                ..base.clone()
            };
            let mut notes = Vec::new();
            if let Some(g) = got {
                row.messages = g.messages;
                row.bytes = g.bytes;
                row.goodput_gbps = gbps(g.bytes, g.elapsed_ns);
                notes.extend(g.note.iter().map(|n| format!("receiver: {n}")));
            } else if rx.is_some() {
                notes.push("receiver: never connected".into());
            }
            match s {
                Ok(s) => {
                    row.p50_us = s.lat_p50_us;
                    row.p99_us = s.lat_p99_us;
                    row.max_us = s.lat_max_us;
                    row.retransmits = s.retransmits;
                    row.rtos = s.rtos;
                    row.spurious_retransmits = s.spurious_retransmits;
                    row.max_repair_us = s.max_repair_us;
                    row.complete = s.complete
                        && got.is_some_and(|g| g.complete && g.messages == base.expected);
                    notes.extend(s.note.iter().map(|n| format!("sender: {n}")));
                }
                Err(e) => notes.push(e.clone()),
            }
            row.note = (!notes.is_empty()).then(|| notes.join("; "));
            row
        })
        .collect();
    let mut agg = IncastRow {
        expected: base.expected * u64::from(senders),
        messages: rows.iter().map(|r| r.messages).sum(),
        bytes: rows.iter().map(|r| r.bytes).sum(),
        p50_us: fmax(rows.iter().map(|r| r.p50_us)),
        p99_us: fmax(rows.iter().map(|r| r.p99_us)),
        max_us: fmax(rows.iter().map(|r| r.max_us)),
        retransmits: sum(rows.iter().map(|r| r.retransmits)),
        rtos: sum(rows.iter().map(|r| r.rtos)),
        spurious_retransmits: sum(rows.iter().map(|r| r.spurious_retransmits)),
        max_repair_us: rows.iter().filter_map(|r| r.max_repair_us).max(),
        complete: rx.is_some_and(|r| r.complete) && rows.iter().all(|r| r.complete),
        ..base
    };
    match &o.receiver {
        Ok(r) => {
            agg.goodput_gbps = gbps(agg.bytes, r.elapsed_ns);
            agg.kernel_drops = r.kernel_drops;
            agg.note = r.note.as_ref().map(|n| format!("receiver: {n}"));
        }
        Err(e) => agg.note = Some(e.clone()),
    }
    let failed = rows.iter().filter(|r| !r.complete).count();
    if failed > 0 && agg.note.is_none() {
        agg.note = Some(format!("{failed} of {senders} senders incomplete"));
    }
    rows.push(agg);
    rows
}

/// The `#` header: what is measured and how to read the columns.
fn table_header(plan: &Plan, notes: &[String]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# weir bench incast: {} senders → 1 receiver over loopback, {} messages of {} each, \
         window {}, receiver rcvbuf {} per socket{}{}; cc {}; senders' engine: {}",
        plan.senders,
        plan.messages,
        fmt_size(plan.size),
        plan.window,
        fmt_size(plan.rcvbuf),
        {
            let d = weir_transport::Config::default();
            match plan.rx_grants.unwrap_or(d.rx_grants) {
                0 => ", shared by every sender at once".to_string(),
                g => format!(
                    ", granted to {g} sender{} at a time for {} a turn",
                    if g == 1 { "" } else { "s" },
                    fmt_size(plan.rx_turn.unwrap_or(d.rx_turn_bytes))
                ),
            }
        },
        if plan.rx_spread {
            ", receiving on all sockets (--rx-spread)"
        } else {
            ""
        },
        plan.cc.as_deref().unwrap_or("default"),
        match plan.engine {
            crate::engine_side::EngineKind::Host => "each sender's own Host",
            crate::engine_side::EngineKind::Inproc => "an engine thread in each sender",
            crate::engine_side::EngineKind::Daemon => "one weir engine daemon for all senders",
        },
    );
    let _ = writeln!(
        s,
        "# cpus {}; psi cpu some avg10 {}; {} round{} of reference (1 sender, {} messages: \
         what the incast's senders move together) and incast, alternated, medians at the end",
        sys::cpus(),
        sys::cpu_pressure_some_avg10().map_or("n/a".into(), |p| format!("{p:.2}")),
        plan.repeat,
        if plan.repeat == 1 { "" } else { "s" },
        plan.messages_for(1),
    );
    let _ = writeln!(
        s,
        "# goodput: receiver view, GB/s (1e9 B/s); latency: per message at the sender, post → \
         completion, µs; repair: the longest a lost packet waited to be delivered (first \
         transmission → ACK of the copy that arrived), µs; drops: kernel UDP RcvbufErrors on \
         this host during the phase"
    );
    for n in notes {
        let _ = writeln!(s, "{n}");
    }
    let _ = writeln!(
        s,
        "#{:>7} {:>6} {:>9} {:>9} {:>10} {:>10} {:>10} {:>8} {:>6} {:>6} {:>10} {:>8} {:>7} {:>5}  note",
        "senders",
        "sender",
        "msgs",
        "GB/s",
        "p50(us)",
        "p99(us)",
        "max(us)",
        "retx",
        "rtos",
        "spur",
        "repair(us)",
        "drops",
        "x1",
        "ok"
    );
    s
}

fn opt_f(v: Option<f64>, prec: usize) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.prec$}"))
}

fn opt_u(v: Option<u64>) -> String {
    v.map_or("n/a".into(), |v| v.to_string())
}

/// One table line.
pub fn table_row(r: &IncastRow) -> String {
    format!(
        " {:>7} {:>6} {:>9} {:>9} {:>10} {:>10} {:>10} {:>8} {:>6} {:>6} {:>10} {:>8} {:>7} {:>5}  {}",
        r.senders,
        r.sender.map_or("all".into(), |i| i.to_string()),
        format!("{}/{}", r.messages, r.expected),
        opt_f(r.goodput_gbps, 3),
        opt_f(r.p50_us, 0),
        opt_f(r.p99_us, 0),
        opt_f(r.max_us, 0),
        opt_u(r.retransmits),
        opt_u(r.rtos),
        opt_u(r.spurious_retransmits),
        opt_u(r.max_repair_us),
        if r.sender.is_some() {
            String::new()
        } else {
            opt_u(r.kernel_drops)
        },
        if r.sender.is_some() {
            String::new()
        } else {
            opt_f(r.ratio_to_single, 2)
        },
        if r.complete { "yes" } else { "NO" },
        r.note.as_deref().unwrap_or(""),
    )
}

/// One JSON object on one line.
pub fn json_line(r: &IncastRow) -> String {
    serde_json::to_string(r).unwrap_or_else(|e| format!(r#"{{"error":"{e}"}}"#))
}

/// The summary as `#` lines under the table.
pub fn summary_lines(m: &IncastSummary) -> String {
    let list = |v: &[Option<f64>], prec: usize| {
        v.iter()
            .map(|x| opt_f(*x, prec))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    format!(
        "# median over {} round{}: {} senders {} GB/s ({}), one sender {} GB/s ({}), \
         ratio {} ({}); every message delivered: {}\n",
        m.rounds,
        if m.rounds == 1 { "" } else { "s" },
        m.senders,
        opt_f(m.incast_median_gbps, 3),
        list(&m.incast_gbps, 3),
        opt_f(m.single_median_gbps, 3),
        list(&m.single_gbps, 3),
        opt_f(m.ratio_median, 2),
        list(&m.ratios, 2),
        if m.complete { "yes" } else { "NO" },
    )
}

/// The summary as one JSON object (`{"summary": …}`) on one line.
pub fn summary_json(m: &IncastSummary) -> String {
    serde_json::to_string(&serde_json::json!({ "summary": m }))
        .unwrap_or_else(|e| format!(r#"{{"error":"{e}"}}"#))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan::new(&IncastOptions {
            senders: 2,
            quick: true,
            ..IncastOptions::default()
        })
        .expect("plan")
    }

    #[test]
    fn options() {
        let p = Plan::new(&IncastOptions::default()).expect("plan");
        assert_eq!(
            (p.senders, p.size, p.messages, p.window),
            (16, 1 << 20, 16, 4)
        );
        assert_eq!((p.rcvbuf, p.timeout_ms), (256 << 10, 30_000));
        let p = plan();
        assert_eq!((p.size, p.messages, p.timeout_ms), (256 << 10, 8, 15_000));
        let sp = p.params(Role::Sender, 2, 1);
        assert_eq!(sp.messages(), 8);
        // The reference's one sender moves what the two move together.
        assert_eq!(p.params(Role::Sender, 1, 0).messages(), 16);
        assert_eq!(sp.incast.as_ref().map(|i| i.index), Some(1));
        for bad in [
            IncastOptions {
                senders: 0,
                ..IncastOptions::default()
            },
            IncastOptions {
                messages: Some(1),
                ..IncastOptions::default()
            },
            IncastOptions {
                timeout_secs: Some(0.0),
                ..IncastOptions::default()
            },
            IncastOptions {
                cc: Some("nope".into()),
                ..IncastOptions::default()
            },
        ] {
            assert!(Plan::new(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rows_and_aggregate() {
        let p = plan();
        let sender = |max: f64| {
            Ok(PeerReport {
                messages: 8,
                complete: true,
                lat_p50_us: Some(10.0),
                lat_p99_us: Some(20.0),
                lat_max_us: Some(max),
                retransmits: Some(3),
                rtos: Some(1),
                spurious_retransmits: Some(0),
                max_repair_us: Some(max as u64 / 2),
                ..PeerReport::default()
            })
        };
        let rx = |index, messages| SenderRx {
            index,
            messages,
            bytes: messages * 1000,
            expected: Some(8),
            elapsed_ns: 1000,
            complete: messages == 8,
            ..SenderRx::default()
        };
        let o = Outcome {
            receiver: Ok(PeerReport {
                elapsed_ns: 4000,
                complete: true,
                per_sender: vec![rx(1, 8), rx(0, 8)],
                kernel_drops: Some(42),
                ..PeerReport::default()
            }),
            senders: vec![sender(30.0), sender(50.0)],
        };
        let rows = phase_rows(&p, 2, &o);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].sender, Some(1));
        assert_eq!(rows[1].goodput_gbps, Some(8.0));
        assert!(rows[0].complete && rows[1].complete);
        let agg = &rows[2];
        assert_eq!(agg.sender, None);
        assert_eq!((agg.messages, agg.expected), (16, 16));
        assert_eq!(agg.goodput_gbps, Some(4.0));
        assert_eq!(agg.max_us, Some(50.0));
        assert_eq!((agg.retransmits, agg.rtos), (Some(6), Some(2)));
        assert_eq!(agg.max_repair_us, Some(25));
        assert_eq!(agg.kernel_drops, Some(42));
        assert!(agg.complete && agg.note.is_none());
        assert!(table_row(agg).contains("16/16"));
        let j: serde_json::Value = serde_json::from_str(&json_line(agg)).expect("json");
        assert_eq!(j["sender"], serde_json::Value::Null);

        // A sender that failed is reported as such; the others stand.
        let o = Outcome {
            receiver: Ok(PeerReport {
                elapsed_ns: 4000,
                per_sender: vec![rx(0, 8)],
                ..PeerReport::default()
            }),
            senders: vec![sender(30.0), Err("sender 1: did not answer".into())],
        };
        let rows = phase_rows(&p, 2, &o);
        assert!(rows[0].complete);
        assert!(!rows[1].complete);
        assert!(
            rows[1]
                .note
                .as_deref()
                .is_some_and(|n| n.contains("did not answer"))
        );
        assert!(!rows[2].complete);
        assert!(rows[2].note.is_some());
    }

    #[test]
    fn rounds_and_their_medians() {
        assert_eq!(plan().repeat, 1);
        assert_eq!(
            Plan::new(&IncastOptions::default()).expect("plan").repeat,
            3
        );
        for bad in [0, 101] {
            let o = IncastOptions {
                repeat: Some(bad),
                ..IncastOptions::default()
            };
            assert!(Plan::new(&o).is_err(), "{bad}");
        }
        // Three rounds; the second's reference failed, so it has no ratio.
        let agg = |round, senders, gbps: Option<f64>, ratio: Option<f64>| IncastRow {
            round,
            senders,
            goodput_gbps: gbps,
            ratio_to_single: ratio,
            complete: gbps.is_some(),
            ..IncastRow::default()
        };
        let one = |round, sender| IncastRow {
            round,
            senders: 16,
            sender: Some(sender),
            goodput_gbps: Some(9.0),
            complete: true,
            ..IncastRow::default()
        };
        let rows = vec![
            agg(1, 1, Some(4.0), None),
            one(1, 0),
            agg(1, 16, Some(2.0), Some(0.5)),
            agg(2, 1, None, None),
            agg(2, 16, Some(3.0), None),
            agg(3, 1, Some(2.0), None),
            agg(3, 16, Some(1.8), Some(0.9)),
        ];
        let m = IncastSummary::new(3, 16, &rows);
        assert_eq!(m.single_gbps, [Some(4.0), None, Some(2.0)]);
        // One sender in both phases: told apart by their order in the round.
        let ones = vec![
            agg(1, 1, Some(4.0), None),
            one(1, 0),
            agg(1, 1, Some(3.0), Some(0.75)),
        ];
        let m1 = IncastSummary::new(1, 1, &ones);
        assert_eq!(m1.single_gbps, [Some(4.0)]);
        assert_eq!(m1.incast_gbps, [Some(3.0)]);
        assert_eq!(m1.ratio_median, Some(0.75));
        assert_eq!(m.incast_gbps, [Some(2.0), Some(3.0), Some(1.8)]);
        assert_eq!(m.ratios, [Some(0.5), None, Some(0.9)]);
        // Medians over what was measured; the upper middle of an even count.
        assert_eq!(m.single_median_gbps, Some(4.0));
        assert_eq!(m.incast_median_gbps, Some(2.0));
        assert_eq!(m.ratio_median, Some(0.9));
        assert!(!m.complete);
        let line = summary_lines(&m);
        assert!(
            line.contains("median over 3 rounds") && line.contains("n/a"),
            "{line}"
        );
        let j: serde_json::Value = serde_json::from_str(&summary_json(&m)).expect("json");
        assert_eq!(j["summary"]["ratio_median"], 0.9);
        assert_eq!(median(&[None, None]), None);
    }
}
