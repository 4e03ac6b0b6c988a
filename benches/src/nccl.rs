//! `weir bench nccl-abi`: the NCCL net plugin's data path as a bandwidth test, against an
//! NCCL-socket-like plain TCP path measured in the same run (see [`crate::nccl_side`] for
//! both).
//!
//! Every point is one pair of fresh peer processes. At each size the socket baseline runs
//! first, then the plugin at each requested loss, so each ratio compares neighbours in time.
//! Columns follow nccl-tests' `sendrecv_perf`: `time` is the receiver's time per message
//! (GO → last completion, divided by the messages), `algbw` = size / time and `busbw` =
//! `algbw` (a point-to-point transfer has no bus factor).

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::engine_side::{DaemonSetup, EngineKind, with_daemons};
use crate::peer::{self, PairOutcome, PeerCmd, PeerParams, Role, Test};
use crate::{BenchError, Mode, median_by, rt_permitted, sys, units};

/// What to measure. `None` (and `quick`) pick the defaults noted on each field.
#[derive(Clone, Debug, PartialEq)]
pub struct NcclOptions {
    /// Message sizes [default: 8K, 32K, 128K, 512K, 2M, 8M, 32M, 64M; quick: 1M, 8M].
    pub sizes: Option<Vec<u64>>,
    /// Loss injected at the plugin receiver [default: 0].
    pub loss: Option<Vec<f64>>,
    /// Data requests in flight per comm [8] (at most 30: two more of the plugin's 32 carry
    /// the start and end markers).
    pub inflight: u32,
    /// Payload bytes per point [default: 128M below 1 MiB messages, 512M from 1 MiB; quick:
    /// 32M].
    pub bytes_per_point: Option<u64>,
    /// The sender posts no new message after this many seconds [2].
    pub point_secs: f64,
    /// Runs per point, the median reported [default: 3; quick: 1].
    pub repeat: Option<u32>,
    /// `dlopen` this plugin instead of using the table linked in.
    pub lib: Option<PathBuf>,
    /// Pin the sender to core 0 and the receiver to core 1.
    pub pin: bool,
    /// Run the peers under SCHED_FIFO (needs root or RLIMIT_RTPRIO).
    pub rt: bool,
    /// A short run.
    pub quick: bool,
    /// Where the plugin peers' engines run [host].
    pub engine: crate::engine_side::EngineKind,
}

impl Default for NcclOptions {
    fn default() -> Self {
        NcclOptions {
            sizes: None,
            loss: None,
            inflight: 8,
            bytes_per_point: None,
            point_secs: 2.0,
            repeat: None,
            lib: None,
            pin: false,
            rt: false,
            quick: false,
            engine: crate::engine_side::EngineKind::Host,
        }
    }
}

/// What [`run`] reports, in this order: `Start`, one `Row` per measured point, `End`.
#[derive(Debug)]
pub enum Event<'a> {
    /// Before the first point: the table header's lines (without the column headings) and
    /// notes on what was asked for and not honoured.
    Start {
        /// `#` lines: what runs where, and how.
        header: &'a str,
        /// `# note: …` lines.
        notes: &'a [String],
    },
    /// One measured row (`vs_socket` filled in).
    Row(&'a NcclRow),
    /// After the last point: CPU pressure (some avg10, %) now.
    End {
        /// `None` where PSI is unavailable.
        psi_after: Option<f64>,
    },
}

/// One measured point.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NcclRow {
    /// `socket` or `weir`.
    pub net: &'static str,
    /// Injected loss (the plugin receiver's; 0 for the socket path).
    pub loss: f64,
    /// Message size, bytes.
    pub size: u64,
    /// Messages received.
    pub count: u64,
    /// Receiver time per message, µs.
    pub time_us: Option<f64>,
    /// GB/s (1e9 B/s).
    pub algbw: Option<f64>,
    /// algbw (a point-to-point transfer has no bus factor).
    pub busbw: Option<f64>,
    /// algbw / the socket path's algbw at this size.
    pub vs_socket: Option<f64>,
    /// Where the plugin's engines ran (`inproc`, `daemon`), when not in each peer's own
    /// `Host`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// Sender: per-message post → completion (plugin only), µs.
    p50_us: Option<f64>,
    /// Every message asked for arrived within the time limit.
    pub complete: bool,
    /// Why a figure is missing or partial.
    pub note: Option<String>,
}

#[derive(Debug)]
struct Plan {
    sizes: Vec<u64>,
    losses: Vec<f64>,
    inflight: u32,
    bytes_per_point: Option<u64>,
    quick: bool,
    point_ms: u64,
    repeat: u32,
    lib: Option<PathBuf>,
    pin: bool,
    rt: bool,
    peer: PeerCmd,
    engine: crate::engine_side::EngineKind,
    daemon_sockets: (PathBuf, PathBuf),
}

impl Plan {
    fn new(a: &NcclOptions, peer: &PeerCmd) -> Result<Plan, BenchError> {
        let sizes = a.sizes.clone().unwrap_or_else(|| {
            if a.quick {
                vec![1 << 20, 8 << 20]
            } else {
                [
                    8 << 10,
                    32 << 10,
                    128 << 10,
                    512 << 10,
                    2 << 20,
                    8 << 20,
                    32 << 20,
                    64 << 20,
                ]
                .to_vec()
            }
        });
        if sizes.is_empty() {
            return Err(BenchError::new("--sizes needs at least one value"));
        }
        if let Some(&s) = sizes.iter().find(|&&s| s == 0 || s > (1 << 30)) {
            return Err(BenchError::new(format!(
                "message size {} is outside 1 B..=1 GiB (the plugin's maxP2pBytes)",
                units::fmt_size(s)
            )));
        }
        if !(0.01..=600.0).contains(&a.point_secs) {
            return Err(BenchError::new("--point-secs must lie within 0.01..=600"));
        }
        if let Some(lib) = &a.lib
            && !lib.exists()
        {
            return Err(BenchError::new(format!(
                "--lib {}: no such file",
                lib.display()
            )));
        }
        Ok(Plan {
            sizes,
            losses: a.loss.clone().unwrap_or_else(|| vec![0.0]),
            inflight: a.inflight,
            bytes_per_point: a.bytes_per_point,
            quick: a.quick,
            point_ms: (a.point_secs * 1e3) as u64,
            repeat: a.repeat.unwrap_or(if a.quick { 1 } else { 3 }),
            lib: a.lib.clone(),
            pin: a.pin,
            rt: a.rt,
            peer: peer.clone(),
            engine: a.engine,
            daemon_sockets: crate::engine_side::daemon_sockets(),
        })
    }

    fn bytes_for(&self, size: u64) -> u64 {
        self.bytes_per_point.unwrap_or(if self.quick {
            32 << 20
        } else if size >= 1 << 20 {
            512 << 20
        } else {
            128 << 20
        })
    }

    fn params(&self, role: Role, mode: Mode, size: u64, loss: f64, run: u32) -> PeerParams {
        PeerParams {
            role,
            mode,
            test: Test::NcclStream,
            size,
            bytes: self.bytes_for(size),
            window: self.inflight,
            loss,
            seed: 1 + u64::from(run),
            point_ms: self.point_ms,
            drain_ms: 3000,
            iters: 0,
            remote: None,
            cpu: self.pin.then_some(match role {
                Role::Sender => 0,
                Role::Receiver => 1,
            }),
            rt: self.rt,
            handle: None,
            lib: self.lib.clone(),
            cc: None,
            incast: None,
            engine: self
                .engine
                .for_mode(mode)
                .placement(role, &self.daemon_sockets),
        }
    }
}

/// Run the sweep of `opts`, starting peers with `peer`, reporting through `on`.
pub fn run(
    opts: &NcclOptions,
    peer: &PeerCmd,
    on: &mut dyn FnMut(Event<'_>),
) -> Result<(), BenchError> {
    let mut plan = Plan::new(opts, peer)?;
    let mut notes = Vec::new();
    if plan.rt && !rt_permitted() {
        notes.push("# note: --rt not permitted; peers run under normal scheduling".to_string());
        plan.rt = false;
    }
    let header = header(&plan, sys::cpu_pressure_some_avg10());
    on(Event::Start {
        header: &header,
        notes: &notes,
    });
    for &size in &plan.sizes {
        let sock = measure(&plan, Mode::Tcp, size, 0.0);
        let base = sock.algbw;
        on(Event::Row(&sock));
        for &loss in &plan.losses {
            let mut row = measure(&plan, Mode::Weir, size, loss);
            row.vs_socket = match (row.algbw, base) {
                (Some(w), Some(b)) if b > 0.0 => Some(w / b),
                _ => None,
            };
            on(Event::Row(&row));
        }
    }
    on(Event::End {
        psi_after: sys::cpu_pressure_some_avg10(),
    });
    Ok(())
}

/// The header lines before the column headings.
fn header(plan: &Plan, psi_before: Option<f64>) -> String {
    let lib = plan.lib.as_ref().map_or_else(
        || "ncclNetPlugin_v12 linked into this executable".to_string(),
        |p| format!("{} (dlopen RTLD_NOW|RTLD_LOCAL)", p.display()),
    );
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# weir bench nccl-abi: NCCL net plugin data path vs NCCL-socket-like TCP"
    );
    let _ = writeln!(
        s,
        "# plugin: {lib}; device weir-lo (WEIR_IFNAME=lo unless set)"
    );
    let _ = writeln!(
        s,
        "# {} requests in flight per comm; receiver-timed; {} run(s) per point, median \
         shown; cpus {}; cpu pressure avg10 {}",
        plan.inflight,
        plan.repeat,
        sys::cpus(),
        fmt_psi(psi_before)
    );
    let _ = writeln!(
        s,
        "# plugin engine (WEIR_ENGINE): {}",
        match plan.engine {
            EngineKind::Host => "host (an engine thread of each peer's Host)",
            EngineKind::Inproc => "inproc (a firmware engine thread of each peer, through rings)",
            EngineKind::Daemon =>
                "daemon (a weir engine daemon per peer, through shared-memory rings; NCCL's \
                 buffers reached by copy)",
        }
    );
    let _ = writeln!(
        s,
        "# sched: {}; {}",
        if plan.rt {
            "SCHED_FIFO 10 (--rt)"
        } else {
            "normal"
        },
        if plan.pin {
            "pinned (sender 0, receiver 1)"
        } else {
            "not pinned"
        }
    );
    s
}

/// The column headings (two `#` lines), aligned with [`table_row`].
pub fn table_heading() -> String {
    format!(
        "# {:>10} {:>11} {:>6} {:>8} {:>10} {:>8} {:>8} {:>8}  note\n# {:>10} {:>11} {:>6} {:>8} \
         {:>10} {:>8} {:>8} {:>8}",
        "size",
        "net",
        "loss",
        "count",
        "time(us)",
        "algbw",
        "busbw",
        "vs sock",
        "(B)",
        "",
        "",
        "",
        "",
        "(GB/s)",
        "(GB/s)",
        ""
    )
}

/// One table line.
pub fn table_row(r: &NcclRow) -> String {
    let f = |v: Option<f64>, prec: usize| v.map_or("-".to_string(), |x| format!("{x:.prec$}"));
    let loss = if r.net == "socket" {
        "-".to_string()
    } else {
        units::fmt_loss(r.loss)
    };
    let mut note = r.note.clone().unwrap_or_default();
    if !r.complete && note.is_empty() {
        note = "incomplete".into();
    }
    let net = match &r.engine {
        Some(e) => format!("{}@{e}", r.net),
        None => r.net.to_string(),
    };
    format!(
        "  {:>10} {:>11} {:>6} {:>8} {:>10} {:>8} {:>8} {:>8}  {}",
        r.size,
        net,
        loss,
        r.count,
        f(r.time_us, 1),
        f(r.algbw, 3),
        f(r.busbw, 3),
        r.vs_socket.map_or(String::new(), |v| format!("{v:.2}x")),
        note
    )
}

/// The footer line.
pub fn table_footer(psi_after: Option<f64>) -> String {
    format!("# cpu pressure avg10 after: {}", fmt_psi(psi_after))
}

fn fmt_psi(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.1}%"))
}

fn measure(plan: &Plan, mode: Mode, size: u64, loss: f64) -> NcclRow {
    let runs: Vec<NcclRow> = (0..plan.repeat.max(1))
        .map(|run| {
            let rp = plan.params(Role::Receiver, mode, size, loss, run);
            let sp = plan.params(Role::Sender, mode, size, loss, run);
            let engine = plan.engine.for_mode(mode).label();
            // With `--engine daemon` a daemon per peer, the receiver's injecting the loss
            // (a daemon's transport is its own: the plugin's WEIR_LOSS does not reach it).
            let setup = DaemonSetup {
                loss,
                seed: 1 + u64::from(run),
                ..DaemonSetup::default()
            };
            let daemon = plan.engine.for_mode(mode);
            let outcome = with_daemons(
                daemon,
                &plan.peer.program,
                &plan.daemon_sockets,
                setup,
                || peer::run_pair(&plan.peer, &rp, &sp),
            );
            let mut r = match outcome {
                Ok(o) => row(mode, size, loss, &o),
                Err(e) => NcclRow {
                    net: "weir",
                    loss,
                    size,
                    note: Some(format!("engine daemon: {e}")),
                    ..NcclRow::default()
                },
            };
            r.engine = engine;
            r
        })
        .collect();
    median_by(runs, |r| r.algbw)
}

fn row(mode: Mode, size: u64, loss: f64, o: &PairOutcome) -> NcclRow {
    let mut r = NcclRow {
        net: if mode == Mode::Tcp { "socket" } else { "weir" },
        loss,
        size,
        ..NcclRow::default()
    };
    if let Ok(rep) = &o.receiver {
        r.count = rep.messages;
        if rep.messages > 0 && rep.elapsed_ns > 0 {
            r.time_us = Some(rep.elapsed_ns as f64 / 1e3 / rep.messages as f64);
            r.algbw = rep.gbps();
            r.busbw = r.algbw;
        }
    }
    if let Ok(s) = &o.sender {
        r.p50_us = s.lat_p50_us;
    }
    r.complete = o.complete();
    r.note = o.note();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerCmd {
        PeerCmd {
            program: "peer".into(),
            args: Vec::new(),
        }
    }

    #[test]
    fn defaults_and_quick() {
        let p = Plan::new(&NcclOptions::default(), &peer()).expect("plan");
        assert_eq!(p.sizes.len(), 8);
        assert_eq!((p.inflight, p.repeat, p.point_ms), (8, 3, 2000));
        assert_eq!(p.losses, vec![0.0]);
        assert_eq!(p.bytes_for(64 << 10), 128 << 20);
        assert_eq!(p.bytes_for(8 << 20), 512 << 20);
        let quick = NcclOptions {
            quick: true,
            ..NcclOptions::default()
        };
        let p = Plan::new(&quick, &peer()).expect("plan");
        assert_eq!(p.sizes, vec![1 << 20, 8 << 20]);
        assert_eq!((p.repeat, p.bytes_for(1 << 20)), (1, 32 << 20));
        let s = p.params(Role::Sender, Mode::Weir, 1 << 20, 0.01, 2);
        assert_eq!((s.test, s.window, s.seed), (Test::NcclStream, 8, 3));
    }

    #[test]
    fn bad_options_are_refused() {
        for o in [
            NcclOptions {
                sizes: Some(Vec::new()),
                ..NcclOptions::default()
            },
            NcclOptions {
                sizes: Some(vec![(1 << 30) + 1]),
                ..NcclOptions::default()
            },
            NcclOptions {
                point_secs: 0.0,
                ..NcclOptions::default()
            },
            NcclOptions {
                lib: Some("/nonexistent/libnccl-net-weir.so".into()),
                ..NcclOptions::default()
            },
        ] {
            assert!(Plan::new(&o, &peer()).is_err(), "{o:?}");
        }
    }

    #[test]
    fn rows_align_with_the_heading() {
        let r = NcclRow {
            net: "weir",
            loss: 0.01,
            size: 1 << 20,
            count: 32,
            time_us: Some(700.0),
            algbw: Some(1.498),
            busbw: Some(1.498),
            vs_socket: Some(0.5),
            complete: true,
            ..NcclRow::default()
        };
        let line = table_row(&r);
        assert_eq!(
            line,
            "     1048576        weir     1%       32      700.0    1.498    1.498    0.50x  "
        );
        let placed = table_row(&NcclRow {
            engine: Some("daemon".into()),
            ..r.clone()
        });
        assert!(
            placed.starts_with("     1048576 weir@daemon     1%"),
            "{placed}"
        );
        let heading = table_heading();
        let names = heading.lines().next().expect("heading");
        for label in ["size", "net", "loss", "count", "time(us)", "algbw", "busbw"] {
            let at = names.find(&format!(" {label}")).expect(label) + label.len();
            assert_ne!(line.as_bytes()[at], b' ', "{label}:\n{names}\n{line}");
            assert_eq!(line.as_bytes()[at + 1], b' ', "{label}:\n{names}\n{line}");
        }
        let sock = NcclRow {
            net: "socket",
            complete: false,
            ..r
        };
        assert!(table_row(&sock).ends_with("incomplete"));
        assert!(table_row(&sock).contains("      - "));
    }
}
