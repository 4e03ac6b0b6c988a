//! `weir bench transport`: transport goodput, retransmissions and message latency under
//! injected loss, against single-stream kernel TCP measured in the same run.
//!
//! The sweep is modes × congestion control × loss × message size. Every point is one pair of
//! fresh peer processes (see [`crate::peer`]); the TCP baseline at each size is measured just
//! before that size's weir points so the ratio compares neighbours in time on a shared
//! machine. Ping-pong round trips come last. Only [`crate::weir_side`] knows the weir engine;
//! everything else (process orchestration, the TCP baseline, histograms, output) works
//! without it. [`run`] reports as it goes through [`Event`]s; [`crate::report`] formats them.

use crate::engine_side::EngineKind;
use crate::peer::{self, PairOutcome, PeerCmd, PeerParams, PeerReport, Role, Test};
use crate::report::{Machine, PingPong, Row};
use crate::{BenchError, Mode, median_by, rt_permitted, sys, units, weir_side};

/// What to measure. `None` (and `quick`) pick the defaults noted on each field.
#[derive(Clone, Debug, PartialEq)]
pub struct TransportOptions {
    /// Message sizes [default: 64K, 1M, 8M; quick: 1M].
    pub sizes: Option<Vec<u64>>,
    /// Injected loss probabilities [default: 0, 0.001, 0.01, 0.05; quick: 0, 0.01].
    pub loss: Option<Vec<f64>>,
    /// Modes besides the TCP baseline, which always runs [default: weir, gbn].
    pub modes: Option<Vec<Mode>>,
    /// Payload bytes per point [default: 128M below 1 MiB messages, 256M below 8 MiB, 512M
    /// from 8 MiB; quick: 16M].
    pub bytes_per_point: Option<u64>,
    /// The sender posts no new message after this many seconds [default: 2; quick: 1].
    pub point_secs: Option<f64>,
    /// Congestion control of the weir/gbn runs: built-in names, `all`, or TOML files with a
    /// `[cc]` table [default: the transport's]; one row per mode × algorithm × loss.
    pub cc: Option<Vec<String>>,
    /// Messages in flight at the sender [4].
    pub window: u32,
    /// Runs per point, the median reported [default: 3; quick: 1].
    pub repeat: Option<u32>,
    /// Ping-pong round trips per mode, at most one second's worth [default: 20000; quick:
    /// 2000].
    pub pingpong: Option<u64>,
    /// Seed of the loss injection [1].
    pub seed: u64,
    /// Pin the sender to core 0 and the receiver to core 1.
    pub pin: bool,
    /// Run the peers under SCHED_FIFO (needs root or RLIMIT_RTPRIO).
    pub rt: bool,
    /// A tiny run for smoke tests.
    pub quick: bool,
    /// Where the weir/gbn peers' engines run [host].
    pub engine: crate::engine_side::EngineKind,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            sizes: None,
            loss: None,
            modes: None,
            bytes_per_point: None,
            point_secs: None,
            cc: None,
            window: 4,
            repeat: None,
            pingpong: None,
            seed: 1,
            pin: false,
            rt: false,
            quick: false,
            engine: EngineKind::Host,
        }
    }
}

/// What [`run`] reports, in this order: `Start`, one `Row` per measured point, `End`.
#[derive(Debug)]
pub enum Event<'a> {
    /// Before the first point.
    Start {
        /// The machine facts known so far (CPUs, pressure before).
        machine: &'a Machine,
        /// Messages in flight.
        window: u32,
        /// The scheduling line (`rt: …; pin: …`).
        sched: &'a str,
        /// Runs per point.
        repeat: u32,
        /// What was asked for and not honoured (`# note: …` lines).
        notes: &'a [String],
    },
    /// One measured row, its TCP reference filled in.
    Row(&'a Row),
    /// After the last point.
    End {
        /// Every row, in order.
        rows: &'a [Row],
        /// The ping-pong of each mode (TCP first).
        pingpong: &'a [PingPong],
        /// The machine facts, complete.
        machine: &'a Machine,
    },
}

/// The resolved sweep: defaults, `--quick` and explicit options combined.
#[derive(Clone, Debug, PartialEq)]
struct Plan {
    sizes: Vec<u64>,
    losses: Vec<f64>,
    /// Modes besides TCP, in order.
    modes: Vec<Mode>,
    bytes_per_point: Option<u64>,
    quick: bool,
    window: u32,
    point_ms: u64,
    drain_ms: u64,
    repeat: u32,
    pingpong_iters: u64,
    pin: bool,
    rt: bool,
    seed: u64,
    /// Algorithms to run the weir/gbn modes with (`None`: the transport's default).
    ccs: Vec<Option<String>>,
    /// The algorithm of the point being measured.
    cc: Option<String>,
    /// How to start a peer.
    peer: PeerCmd,
    /// Where the weir/gbn peers' engines run.
    engine: crate::engine_side::EngineKind,
    /// With `--engine daemon`: the sockets of the sender's and the receiver's daemon.
    daemon_sockets: (std::path::PathBuf, std::path::PathBuf),
}

impl Plan {
    fn new(a: &TransportOptions, peer: &PeerCmd) -> Result<Plan, BenchError> {
        let quick = a.quick;
        let sizes = a.sizes.clone().unwrap_or_else(|| {
            if quick {
                vec![1 << 20]
            } else {
                vec![64 << 10, 1 << 20, 8 << 20]
            }
        });
        let losses = a.loss.clone().unwrap_or_else(|| {
            if quick {
                vec![0.0, 0.01]
            } else {
                vec![0.0, 0.001, 0.01, 0.05]
            }
        });
        let mut modes: Vec<Mode> = a
            .modes
            .clone()
            .unwrap_or_else(|| vec![Mode::Weir, Mode::Gbn]);
        modes.retain(|&m| m != Mode::Tcp);
        let mut seen = Vec::new();
        modes.retain(|m| {
            let new = !seen.contains(m);
            seen.push(*m);
            new
        });
        let point_secs = a.point_secs.unwrap_or(if quick { 1.0 } else { 2.0 });
        if !(0.01..=600.0).contains(&point_secs) {
            return Err(BenchError::new("--point-secs must lie within 0.01..=600"));
        }
        if sizes.is_empty() || losses.is_empty() {
            return Err(BenchError::new(
                "--sizes and --loss need at least one value",
            ));
        }
        if let Some(&big) = sizes.iter().find(|&&s| s > (1 << 30)) {
            return Err(BenchError::new(format!(
                "message size {} is above the 1 GiB this benchmark allocates per slot",
                units::fmt_size(big)
            )));
        }
        let point_ms = (point_secs * 1e3) as u64;
        let ccs = match &a.cc {
            None => vec![None],
            Some(list) => {
                let mut out = Vec::new();
                for name in list {
                    if name.ends_with(".toml") {
                        weir_side::load_cc(name)?;
                        out.push(Some(name.clone()));
                        continue;
                    }
                    let name = name.trim().to_ascii_lowercase();
                    if name == "all" {
                        out.extend(
                            weir_congestion::ALGORITHMS
                                .iter()
                                .map(|n| Some(n.to_string())),
                        );
                    } else if weir_congestion::CcConfig::by_name(&name).is_some() {
                        out.push(Some(name));
                    } else {
                        return Err(BenchError::new(format!(
                            "--cc: unknown algorithm `{name}` (known: {}, all)",
                            weir_congestion::ALGORITHMS.join(", ")
                        )));
                    }
                }
                out.dedup();
                out
            }
        };
        let repeat = a.repeat.unwrap_or(if quick { 1 } else { 3 });
        Ok(Plan {
            sizes,
            losses,
            modes,
            bytes_per_point: a.bytes_per_point,
            quick,
            window: a.window,
            point_ms,
            drain_ms: if quick { 2000 } else { 3000 },
            repeat,
            pingpong_iters: a.pingpong.unwrap_or(if quick { 2000 } else { 20_000 }),
            pin: a.pin,
            rt: a.rt,
            seed: a.seed,
            ccs,
            cc: None,
            peer: peer.clone(),
            engine: a.engine,
            daemon_sockets: crate::engine_side::daemon_sockets(),
        })
    }

    /// Payload bytes per point at message size `size`.
    fn bytes_for(&self, size: u64) -> u64 {
        self.bytes_per_point.unwrap_or(if self.quick {
            16 << 20
        } else if size >= 8 << 20 {
            512 << 20
        } else if size >= 1 << 20 {
            256 << 20
        } else {
            128 << 20
        })
    }

    fn params(
        &self,
        role: Role,
        mode: Mode,
        test: Test,
        size: u64,
        loss: f64,
        run: u32,
    ) -> PeerParams {
        PeerParams {
            role,
            mode,
            test,
            size,
            bytes: self.bytes_for(size),
            window: self.window,
            loss,
            seed: self.seed.wrapping_add(u64::from(run)),
            point_ms: match test {
                Test::Stream | Test::NcclStream | Test::Incast => self.point_ms,
                Test::PingPong => self.point_ms.min(PINGPONG_MS),
            },
            drain_ms: self.drain_ms,
            iters: self.pingpong_iters,
            remote: None,
            cpu: self.pin.then_some(match role {
                Role::Sender => 0,
                Role::Receiver => 1,
            }),
            rt: self.rt,
            handle: None,
            lib: None,
            cc: self.cc.clone(),
            incast: None,
            engine: self
                .engine
                .for_mode(mode)
                .placement(role, &self.daemon_sockets),
        }
    }

    /// The engine label of a `mode` row (`None`: each peer's own `Host`).
    fn engine_label(&self, mode: Mode) -> Option<String> {
        self.engine.for_mode(mode).label()
    }

    /// Run `f` with the two daemons of `--engine daemon` started for this point (the
    /// receiver's with the point's loss injected), stopping them after.
    fn with_daemons<R>(
        &self,
        mode: Mode,
        loss: f64,
        run: u32,
        f: impl FnOnce() -> R,
    ) -> Result<R, String> {
        crate::engine_side::with_daemons(
            self.engine.for_mode(mode),
            &self.peer.program,
            &self.daemon_sockets,
            crate::engine_side::DaemonSetup {
                go_back_n: mode == Mode::Gbn,
                cc: self.cc.as_deref(),
                loss,
                seed: self.seed.wrapping_add(u64::from(run)),
                ..Default::default()
            },
            f,
        )
    }
}

/// Time limit of one ping-pong measurement.
const PINGPONG_MS: u64 = 1000;

/// Run the sweep of `opts`, starting peers with `peer`, reporting through `on`.
pub fn run(
    opts: &TransportOptions,
    peer: &PeerCmd,
    on: &mut dyn FnMut(Event<'_>),
) -> Result<(), BenchError> {
    let mut plan = Plan::new(opts, peer)?;
    let mut notes = Vec::new();
    if plan.rt && !rt_permitted() {
        notes.push(format!(
            "# note: --rt not permitted (not root, RLIMIT_RTPRIO < {}); peers run under normal \
             scheduling",
            sys::RT_PRIORITY
        ));
        plan.rt = false;
    }
    if !weir_side::AVAILABLE && !plan.modes.is_empty() {
        notes.push(format!(
            "# note: weir_datapath::host is not built yet; weir/gbn rows read \"{}\"",
            weir_side::NOT_BUILT
        ));
    }
    let mut machine = Machine {
        cpus: sys::cpus(),
        psi_cpu_some_avg10_before: sys::cpu_pressure_some_avg10(),
        ..Machine::default()
    };
    let sched = describe_sched(&plan);
    on(Event::Start {
        machine: &machine,
        window: plan.window,
        sched: &sched,
        repeat: plan.repeat,
        notes: &notes,
    });

    let mut rows = Vec::new();
    for &size in &plan.sizes {
        let tcp = measure_stream(&plan, Mode::Tcp, size, 0.0, plan.repeat, &mut machine);
        let tcp_gbps = tcp.goodput_gbps;
        emit_row(on, tcp, tcp_gbps, &mut rows);
        for &mode in &plan.modes {
            for cc in &plan.ccs {
                let plan = &Plan {
                    cc: cc.clone(),
                    ..plan.clone()
                };
                for &loss in &plan.losses {
                    let row = if weir_side::AVAILABLE {
                        measure_stream(plan, mode, size, loss, plan.repeat, &mut machine)
                    } else {
                        Row {
                            mode,
                            loss,
                            size,
                            window: plan.window,
                            note: Some(weir_side::NOT_BUILT.to_string()),
                            ..Row::default()
                        }
                    };
                    emit_row(on, row, tcp_gbps, &mut rows);
                }
            }
        }
    }

    let mut pingpong = Vec::new();
    for mode in std::iter::once(Mode::Tcp).chain(plan.modes.iter().copied()) {
        pingpong.push(if mode == Mode::Tcp || weir_side::AVAILABLE {
            measure_pingpong(&plan, mode, &mut machine)
        } else {
            PingPong {
                mode,
                note: Some(weir_side::NOT_BUILT.to_string()),
                ..PingPong::default()
            }
        });
    }

    machine.psi_cpu_some_avg10_after = sys::cpu_pressure_some_avg10();
    machine.rt = machine.peers > 0 && machine.peers_rt == machine.peers;
    machine.pinned = machine.peers > 0 && machine.peers_pinned == machine.peers;
    on(Event::End {
        rows: &rows,
        pingpong: &pingpong,
        machine: &machine,
    });
    match failures(&rows, &pingpong) {
        Some(e) => Err(BenchError::new(e)),
        None => Ok(()),
    }
}

/// The error of a run with failed points: how many of how many, each named with why (`None`:
/// every point was measured). The table has already shown them; this is what the command
/// exits with.
fn failures(rows: &[Row], pingpong: &[PingPong]) -> Option<String> {
    let mut failed: Vec<String> = rows
        .iter()
        .filter_map(|r| r.error.as_ref().map(|e| format!("{}: {e}", r.point())))
        .collect();
    failed.extend(pingpong.iter().filter_map(|p| {
        p.error
            .as_ref()
            .map(|e| format!("{} ping-pong: {e}", p.mode.as_str()))
    }));
    if failed.is_empty() {
        return None;
    }
    let total = rows.len() + pingpong.len();
    Some(format!(
        "{} of {total} points failed (no figures for them):\n  {}",
        failed.len(),
        failed.join("\n  ")
    ))
}

/// Finish a row (TCP reference), report it, keep it for the end.
fn emit_row(
    on: &mut dyn FnMut(Event<'_>),
    mut row: Row,
    tcp_gbps: Option<f64>,
    rows: &mut Vec<Row>,
) {
    row.set_tcp(tcp_gbps);
    on(Event::Row(&row));
    rows.push(row);
}

/// `repeat` runs of one point; the run with the median receiver goodput is reported.
fn measure_stream(
    plan: &Plan,
    mode: Mode,
    size: u64,
    loss: f64,
    repeat: u32,
    machine: &mut Machine,
) -> Row {
    let repeat = repeat.max(1);
    let mut runs: Vec<Row> = (0..repeat)
        .map(|run| {
            let rp = plan.params(Role::Receiver, mode, Test::Stream, size, loss, run);
            let sp = plan.params(Role::Sender, mode, Test::Stream, size, loss, run);
            let outcome =
                match plan.with_daemons(mode, loss, run, || peer::run_pair(&plan.peer, &rp, &sp)) {
                    Ok(o) => o,
                    Err(e) => {
                        return Row {
                            mode,
                            engine: plan.engine_label(mode),
                            loss,
                            size,
                            window: plan.window,
                            error: Some(e),
                            ..Row::default()
                        };
                    }
                };
            tally(machine, &outcome);
            let mut row = stream_row(mode, loss, size, plan.window, &outcome);
            row.engine = plan.engine_label(mode);
            if mode != Mode::Tcp {
                row.cc = plan.cc.clone();
            }
            if let Some(e) = &mut row.error
                && repeat > 1
            {
                *e = format!("run {} of {repeat}: {e}", run + 1);
            }
            row
        })
        .collect();
    // A run whose peer failed fails the point: the median of the others would hide it.
    match runs.iter().position(|r| r.error.is_some()) {
        Some(i) => runs.swap_remove(i),
        None => median_by(runs, |r| r.goodput_gbps),
    }
}

/// A row from the two peers' reports.
fn stream_row(mode: Mode, loss: f64, size: u64, window: u32, o: &PairOutcome) -> Row {
    let mut row = Row {
        mode,
        loss,
        size,
        window,
        ..Row::default()
    };
    if let Some(e) = o.failure() {
        // What the survivor measured is a stream cut short: no figures for a failed point.
        row.error = Some(e);
        return row;
    }
    if let Ok(r) = &o.receiver {
        row.messages = r.messages;
        row.bytes = r.bytes;
        row.goodput_gbps = r.gbps();
    }
    if let Ok(s) = &o.sender {
        row.sender_gbps = s.gbps();
        row.retx_ratio = s.retx_ratio();
        row.p50_us = s.lat_p50_us;
        row.p99_us = s.lat_p99_us;
    }
    row.complete = o.complete();
    row.note = o.note();
    row
}

fn measure_pingpong(plan: &Plan, mode: Mode, machine: &mut Machine) -> PingPong {
    let rp = plan.params(Role::Receiver, mode, Test::PingPong, 8, 0.0, 0);
    let sp = plan.params(Role::Sender, mode, Test::PingPong, 8, 0.0, 0);
    let engine = plan.engine_label(mode);
    let outcome = match plan.with_daemons(mode, 0.0, 0, || peer::run_pair(&plan.peer, &rp, &sp)) {
        Ok(o) => o,
        Err(e) => {
            return PingPong {
                mode,
                engine,
                error: Some(e),
                ..PingPong::default()
            };
        }
    };
    tally(machine, &outcome);
    if let Some(error) = outcome.failure() {
        return PingPong {
            mode,
            engine,
            error: Some(error),
            ..PingPong::default()
        };
    }
    match outcome.sender {
        Ok(PeerReport {
            lat_count,
            lat_p50_us,
            lat_p99_us,
            retransmits,
            note,
            ..
        }) => PingPong {
            mode,
            engine,
            round_trips: lat_count,
            rtt_p50_us: lat_p50_us,
            rtt_p99_us: lat_p99_us,
            retransmits,
            note,
            error: None,
        },
        Err(e) => PingPong {
            mode,
            engine,
            note: Some(e),
            ..PingPong::default()
        },
    }
}

/// Count how many peers ran pinned / under SCHED_FIFO; report refusals once.
fn tally(machine: &mut Machine, o: &PairOutcome) {
    let scheds = [
        o.receiver
            .as_ref()
            .ok()
            .map(|r| &r.sched)
            .or(o.receiver_sched.as_ref()),
        o.sender.as_ref().ok().map(|r| &r.sched),
    ];
    for s in scheds.into_iter().flatten() {
        machine.peers += 1;
        machine.peers_rt += u32::from(s.fifo.is_some());
        machine.peers_pinned += u32::from(s.cpu.is_some());
        for e in &s.errors {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| eprintln!("weir bench: note: {e}"));
        }
    }
}

/// The header's scheduling line.
fn describe_sched(plan: &Plan) -> String {
    let rt = match (plan.rt, sys::inherited_rt()) {
        (true, _) => format!("rt: SCHED_FIFO {} (--rt)", sys::RT_PRIORITY),
        (false, Some(p)) => format!("rt: SCHED_FIFO {p} (inherited)"),
        (false, None) => "rt: off".to_string(),
    };
    let pin = if plan.pin {
        "pin: sender cpu 0, receiver cpu 1"
    } else {
        "pin: off"
    };
    format!("{rt}; {pin}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(o: TransportOptions) -> Plan {
        let peer = PeerCmd {
            program: "peer".into(),
            args: Vec::new(),
        };
        Plan::new(&o, &peer).expect("plan")
    }

    #[test]
    fn defaults() {
        let p = plan(TransportOptions::default());
        assert_eq!(p.sizes, vec![64 << 10, 1 << 20, 8 << 20]);
        assert_eq!(p.losses, vec![0.0, 0.001, 0.01, 0.05]);
        assert_eq!(p.modes, vec![Mode::Weir, Mode::Gbn]);
        assert_eq!(p.window, 4);
        assert_eq!(p.point_ms, 2000);
        assert_eq!(p.repeat, 3);
        assert_eq!(p.bytes_for(64 << 10), 128 << 20);
        assert_eq!(p.bytes_for(1 << 20), 256 << 20);
        assert_eq!(p.bytes_for(64 << 20), 512 << 20);
    }

    #[test]
    fn quick_and_explicit_options() {
        let quick = TransportOptions {
            quick: true,
            ..TransportOptions::default()
        };
        let p = plan(quick.clone());
        assert_eq!(p.sizes, vec![1 << 20]);
        assert_eq!(p.losses, vec![0.0, 0.01]);
        assert_eq!(p.bytes_for(1 << 20), 16 << 20);
        assert_eq!(p.repeat, 1);
        // Explicit options win over --quick.
        let p = plan(TransportOptions {
            sizes: Some(vec![64 << 10]),
            bytes_per_point: Some(1 << 20),
            ..quick
        });
        assert_eq!(p.sizes, vec![64 << 10]);
        assert_eq!(p.bytes_for(64 << 10), 1 << 20);
        // tcp in --modes is the baseline, which always runs; duplicates collapse.
        let modes = |m: &[Mode]| TransportOptions {
            modes: Some(m.to_vec()),
            ..TransportOptions::default()
        };
        let p = plan(modes(&[Mode::Tcp, Mode::Gbn, Mode::Gbn]));
        assert_eq!(p.modes, vec![Mode::Gbn]);
        let p = plan(modes(&[Mode::Tcp]));
        assert!(p.modes.is_empty());
    }

    #[test]
    fn bad_options_are_refused() {
        let peer = PeerCmd::current_exe(&[]).expect("exe");
        for o in [
            TransportOptions {
                point_secs: Some(0.0),
                ..TransportOptions::default()
            },
            TransportOptions {
                sizes: Some(Vec::new()),
                ..TransportOptions::default()
            },
            TransportOptions {
                sizes: Some(vec![2 << 30]),
                ..TransportOptions::default()
            },
            TransportOptions {
                cc: Some(vec!["nope".into()]),
                ..TransportOptions::default()
            },
        ] {
            assert!(Plan::new(&o, &peer).is_err(), "{o:?}");
        }
    }

    #[test]
    fn pinning_puts_peers_on_different_cores() {
        let p = plan(TransportOptions {
            pin: true,
            ..TransportOptions::default()
        });
        let r = p.params(Role::Receiver, Mode::Weir, Test::Stream, 1 << 20, 0.01, 0);
        let s = p.params(Role::Sender, Mode::Weir, Test::Stream, 1 << 20, 0.01, 0);
        assert_eq!((s.cpu, r.cpu), (Some(0), Some(1)));
        let pp = p.params(Role::Sender, Mode::Tcp, Test::PingPong, 8, 0.0, 0);
        assert_eq!(pp.point_ms, PINGPONG_MS);
    }

    #[test]
    fn rows_from_outcomes() {
        let report = |bytes, ns| PeerReport {
            messages: 4,
            bytes,
            elapsed_ns: ns,
            complete: true,
            lat_p50_us: Some(10.0),
            lat_p99_us: Some(20.0),
            retransmits: Some(1),
            data_packets: Some(100),
            ..PeerReport::default()
        };
        let o = PairOutcome {
            receiver: Ok(report(4000, 1000)),
            sender: Ok(report(4000, 2000)),
            receiver_sched: None,
        };
        let row = stream_row(Mode::Weir, 0.01, 1000, 4, &o);
        assert_eq!(row.goodput_gbps, Some(4.0));
        assert_eq!(row.sender_gbps, Some(2.0));
        assert_eq!(row.retx_ratio, Some(0.01));
        assert_eq!(row.p99_us, Some(20.0));
        assert!(row.complete && row.note.is_none());
        let o = PairOutcome {
            receiver: Err("receiver did not answer".into()),
            sender: Ok(report(4000, 2000)),
            receiver_sched: None,
        };
        let row = stream_row(Mode::Gbn, 0.05, 1000, 4, &o);
        assert_eq!((row.goodput_gbps, row.sender_gbps), (None, None));
        assert!(!row.complete);
        let e = row.error.as_deref().expect("a failed point");
        assert!(e.starts_with("receiver did not answer"), "{e}");
        assert!(
            e.contains("the sender reported 4 messages, complete"),
            "{e}"
        );
    }

    /// Issue 13: a sender killed mid-stream left the receiver's partial report, whose goodput
    /// was printed as the point's, and the command exited 0.
    #[test]
    fn a_dead_sender_fails_the_point() {
        let o = PairOutcome {
            receiver: Ok(PeerReport {
                messages: 3,
                bytes: 3000,
                elapsed_ns: 1000,
                complete: false,
                note: Some("stream ended early: Connection reset by peer".into()),
                ..PeerReport::default()
            }),
            sender: Err("sender exited without a report (signal: 9 (SIGKILL))".into()),
            receiver_sched: None,
        };
        let mut row = stream_row(Mode::Tcp, 0.0, 1 << 20, 4, &o);
        row.set_tcp(row.goodput_gbps);
        for v in [
            row.goodput_gbps,
            row.sender_gbps,
            row.retx_ratio,
            row.p50_us,
            row.p99_us,
            row.tcp_gbps,
            row.ratio_to_tcp,
        ] {
            assert_eq!(v, None, "{row:?}");
        }
        let e = row.error.clone().expect("a failed point");
        assert!(
            e.contains("sender exited without a report (signal: 9"),
            "{e}"
        );
        assert!(
            e.contains("the receiver reported 3 messages, partial"),
            "{e}"
        );
        let line = crate::report::table_row(&row);
        assert!(line.contains("FAILED: sender exited"), "{line}");
        assert!(!line.contains("0.003") && !line.contains("3.000"), "{line}");

        // The run's error names the point and the peer; the rows that worked do not count.
        let ok = Row {
            goodput_gbps: Some(1.0),
            complete: true,
            ..Row::default()
        };
        assert_eq!(failures(std::slice::from_ref(&ok), &[]), None);
        let pp = PingPong {
            mode: Mode::Weir,
            error: Some("receiver: bind failed".into()),
            ..PingPong::default()
        };
        let e = failures(&[ok, row], &[pp]).expect("failed");
        assert!(e.starts_with("2 of 3 points failed"), "{e}");
        assert!(
            e.contains("tcp loss 0 size 1 MiB: sender exited without a report"),
            "{e}"
        );
        assert!(e.contains("weir ping-pong: receiver: bind failed"), "{e}");
    }
}
