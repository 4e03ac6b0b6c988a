//! `weir bench`: measurements against baselines taken in the same run.
//!
//! `weir bench transport` sweeps modes × loss × message size. Every point is one pair of fresh
//! peer processes (see [`peer`]); the TCP baseline at each size is measured just before that
//! size's weir points so the ratio compares neighbours in time on a shared machine. Ping-pong
//! round trips come last. Only [`weir_side`] knows the weir engine; everything else (process
//! orchestration, the TCP baseline, histograms, output) works without it.

pub(crate) mod coll;
mod nccl;
mod nccl_side;
pub(crate) mod peer;
mod report;
mod sys;
mod tcp;
mod units;
mod weir_side;

use std::fmt;

use clap::{Args, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

use peer::{PairOutcome, PeerParams, PeerReport, Role, Test};
use report::{Machine, PingPong, Row};

/// Arguments of `weir bench`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example: weir bench transport --sizes 64K,1M,8M --loss 0,1% --modes weir,gbn"
)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    pub(crate) command: BenchCommand,
}

/// What `weir bench` can measure.
#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// Transport goodput, retransmissions and message latency under injected loss, against
    /// single-stream kernel TCP measured in the same run.
    #[command(long_about = TRANSPORT_ABOUT)]
    Transport(TransportArgs),
    /// The NCCL net plugin's data path (its v12 table, as NCCL's proxy drives it) against an
    /// NCCL-socket-like TCP path in the same run; nccl-tests columns.
    #[command(name = "nccl-abi")]
    NcclAbi(nccl::NcclAbiArgs),
    /// Weir's AllReduce over N local ranks against Open MPI over TCP in the same run
    /// (nccl-tests columns; spawns the ranks itself)
    Allreduce(coll::CollArgs),
    /// Weir's AllGather over N local ranks against Open MPI over TCP in the same run
    Allgather(coll::CollArgs),
    /// Weir's ReduceScatter over N local ranks against Open MPI over TCP in the same run
    #[command(name = "reduce-scatter")]
    ReduceScatter(coll::CollArgs),
}

const TRANSPORT_ABOUT: &str = "\
Transport goodput, retransmissions and message latency under injected loss, against \
single-stream kernel TCP measured in the same run.

Each point runs a sender and a receiver in two fresh processes (copies of this executable) over \
loopback. The receiver pre-posts `--window` receives of one message size; the sender keeps \
`--window` messages in flight until `--bytes-per-point` have moved or `--point-secs` have passed. \
Loss is injected by dropping incoming datagrams at the receiver (seeded); kernel TCP runs without \
loss. Goodput is measured at the receiver (first byte to last completion; GB = 1e9 B), latency \
per message at the sender (post to completion, so it includes waiting behind the window). An \
8-byte ping-pong gives the round-trip time of each mode.

On a shared machine, run under `chrt -f 10` or with `--rt` (root), and read the CPU pressure \
printed in the header and footer.";

/// Options of `weir bench transport`.
#[derive(Debug, Args)]
pub(crate) struct TransportArgs {
    /// Message sizes, comma-separated; K/M/G are KiB/MiB/GiB [default: 64K,1M,8M; --quick: 1M]
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = units::parse_size)]
    pub(crate) sizes: Option<Vec<u64>>,

    /// Injected loss probabilities, fractions or percentages [default: 0,0.001,0.01,0.05;
    /// --quick: 0,0.01]
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = units::parse_loss)]
    pub(crate) loss: Option<Vec<f64>>,

    /// Modes to measure besides the TCP baseline, which always runs [default: weir,gbn]
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub(crate) modes: Option<Vec<Mode>>,

    /// Payload bytes per point [default: 128M below 1 MiB messages, 256M below 8 MiB, 512M
    /// from 8 MiB; --quick: 16M]; at least two messages
    #[arg(long, value_name = "SIZE", value_parser = units::parse_size)]
    pub(crate) bytes_per_point: Option<u64>,

    /// Time limit per point: the sender posts no new message after it [default: 2; --quick: 1]
    #[arg(long, value_name = "SECS")]
    pub(crate) point_secs: Option<f64>,

    /// Congestion control of the weir/gbn runs, comma-separated: built-in names, `all`, or
    /// TOML files with a [cc] table [default: the transport's default, fixed]; one row per
    /// mode × algorithm × loss
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub(crate) cc: Option<Vec<String>>,

    /// Messages in flight (posted, not yet completed) at the sender
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub(crate) window: u32,

    /// Runs per point; the run with the median goodput is reported [default: 3; --quick: 1]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=99))]
    pub(crate) repeat: Option<u32>,

    /// Ping-pong round trips per mode (at most one second's worth) [default: 20000; --quick:
    /// 2000]
    #[arg(long, value_name = "N")]
    pub(crate) pingpong: Option<u64>,

    /// Seed of the loss injection
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,

    /// Pin the sender to core 0 and the receiver to core 1 (sched_setaffinity)
    #[arg(long)]
    pub(crate) pin: bool,

    /// Run the peers under SCHED_FIFO priority 10 (needs root or RLIMIT_RTPRIO)
    #[arg(long)]
    pub(crate) rt: bool,

    /// Print one JSON object per row instead of the table
    #[arg(long)]
    pub(crate) json: bool,

    /// A tiny run for smoke tests: 1 MiB messages, loss 0 and 1 %, 16 MiB per point
    #[arg(long)]
    pub(crate) quick: bool,
}

/// A transport under test.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    ValueEnum,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    /// The RoCEv2-like baseline: one path, go-back-N (`Config::go_back_n()`).
    Gbn,
    /// Kernel TCP over loopback, one connection.
    #[default]
    Tcp,
    /// Weir: multipath spraying, selective retransmission (`Config::default()`).
    Weir,
}

impl Mode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Mode::Gbn => "gbn",
            Mode::Tcp => "tcp",
            Mode::Weir => "weir",
        }
    }
}

/// An error of the benchmark harness, as text for the user.
#[derive(Debug)]
pub(crate) struct BenchError(String);

impl BenchError {
    pub(crate) fn new(msg: impl Into<String>) -> Self {
        BenchError(msg.into())
    }
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

impl From<std::io::Error> for BenchError {
    fn from(e: std::io::Error) -> Self {
        BenchError(e.to_string())
    }
}

impl From<serde_json::Error> for BenchError {
    fn from(e: serde_json::Error) -> Self {
        BenchError(format!("bad JSON: {e}"))
    }
}

impl From<std::num::TryFromIntError> for BenchError {
    fn from(e: std::num::TryFromIntError) -> Self {
        BenchError(e.to_string())
    }
}

/// Run `weir bench ...`.
pub(crate) fn run(args: BenchArgs) -> Result<(), BenchError> {
    match args.command {
        BenchCommand::Transport(t) => run_transport(&t),
        BenchCommand::NcclAbi(a) => nccl::run(&a),
        BenchCommand::Allreduce(a) => coll::run(coll::CollOp::Allreduce, a),
        BenchCommand::Allgather(a) => coll::run(coll::CollOp::Allgather, a),
        BenchCommand::ReduceScatter(a) => coll::run(coll::CollOp::ReduceScatter, a),
    }
}

/// The run with the median of `key` (runs without one only if all lack it).
pub(crate) fn median_by<T>(mut runs: Vec<T>, key: impl Fn(&T) -> Option<f64>) -> T {
    let mut measured: Vec<usize> = (0..runs.len())
        .filter(|&i| key(&runs[i]).is_some())
        .collect();
    if measured.is_empty() {
        return runs.swap_remove(0);
    }
    measured.sort_by(|&a, &b| {
        key(&runs[a])
            .partial_cmp(&key(&runs[b]))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mid = measured[measured.len() / 2];
    runs.swap_remove(mid)
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
}

impl Plan {
    fn new(a: &TransportArgs) -> Result<Plan, BenchError> {
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
                Test::Stream | Test::NcclStream => self.point_ms,
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
        }
    }
}

/// Time limit of one ping-pong measurement.
const PINGPONG_MS: u64 = 1000;

fn run_transport(a: &TransportArgs) -> Result<(), BenchError> {
    let mut plan = Plan::new(a)?;
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
    let requested = describe_sched(&plan);
    if a.json {
        for n in &notes {
            eprintln!("{n}");
        }
    } else {
        print!(
            "{}",
            report::table_header(&machine, plan.window, &requested, plan.repeat)
        );
        for n in &notes {
            println!("{n}");
        }
    }

    let mut rows = Vec::new();
    for &size in &plan.sizes {
        let tcp = measure_stream(&plan, Mode::Tcp, size, 0.0, plan.repeat, &mut machine);
        let tcp_gbps = tcp.goodput_gbps;
        emit_row(a.json, tcp, tcp_gbps, &mut rows);
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
                    emit_row(a.json, row, tcp_gbps, &mut rows);
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
    if a.json {
        for row in &rows {
            println!("{}", report::json_line(row, &pingpong, &machine));
        }
    } else {
        print!("{}", report::table_footer(&pingpong, &machine));
    }
    Ok(())
}

/// Finish a row (TCP reference), print it now in table mode, keep it for JSON.
fn emit_row(json: bool, mut row: Row, tcp_gbps: Option<f64>, rows: &mut Vec<Row>) {
    row.set_tcp(tcp_gbps);
    if !json {
        println!("{}", report::table_row(&row));
    }
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
    let runs: Vec<Row> = (0..repeat.max(1))
        .map(|run| {
            let rp = plan.params(Role::Receiver, mode, Test::Stream, size, loss, run);
            let sp = plan.params(Role::Sender, mode, Test::Stream, size, loss, run);
            let outcome = peer::run_pair(&rp, &sp);
            tally(machine, &outcome);
            let mut row = stream_row(mode, loss, size, plan.window, &outcome);
            if mode != Mode::Tcp {
                row.cc = plan.cc.clone();
            }
            row
        })
        .collect();
    median_by(runs, |r| r.goodput_gbps)
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
    let outcome = peer::run_pair(&rp, &sp);
    tally(machine, &outcome);
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
            round_trips: lat_count,
            rtt_p50_us: lat_p50_us,
            rtt_p99_us: lat_p99_us,
            retransmits,
            note,
        },
        Err(e) => PingPong {
            mode,
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

/// Whether this process may switch to SCHED_FIFO at our priority.
pub(crate) fn rt_permitted() -> bool {
    // SAFETY: geteuid has no preconditions; getrlimit fills the struct we pass.
    unsafe {
        if libc::geteuid() == 0 {
            return true;
        }
        let mut lim: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_RTPRIO, &mut lim) == 0
            && lim.rlim_cur >= sys::RT_PRIORITY as libc::rlim_t
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Wrap {
        #[command(flatten)]
        t: TransportArgs,
    }

    fn plan(args: &[&str]) -> Plan {
        let w =
            Wrap::try_parse_from(std::iter::once("t").chain(args.iter().copied())).expect("parse");
        Plan::new(&w.t).expect("plan")
    }

    #[test]
    fn defaults() {
        let p = plan(&[]);
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
        let p = plan(&["--quick"]);
        assert_eq!(p.sizes, vec![1 << 20]);
        assert_eq!(p.losses, vec![0.0, 0.01]);
        assert_eq!(p.bytes_for(1 << 20), 16 << 20);
        assert_eq!(p.repeat, 1);
        // Explicit options win over --quick.
        let p = plan(&["--quick", "--sizes", "64K", "--bytes-per-point", "1M"]);
        assert_eq!(p.sizes, vec![64 << 10]);
        assert_eq!(p.bytes_for(64 << 10), 1 << 20);
        // tcp in --modes is the baseline, which always runs; duplicates collapse.
        let p = plan(&["--modes", "tcp,gbn,gbn"]);
        assert_eq!(p.modes, vec![Mode::Gbn]);
        let p = plan(&["--modes", "tcp"]);
        assert!(p.modes.is_empty());
    }

    #[test]
    fn bad_options_are_refused() {
        for args in [
            &["--sizes", "0"][..],
            &["--loss", "1.5"],
            &["--modes", "rdma"],
            &["--window", "0"],
        ] {
            assert!(
                Wrap::try_parse_from(std::iter::once("t").chain(args.iter().copied())).is_err(),
                "{args:?}"
            );
        }
        let w = Wrap::try_parse_from(["t", "--point-secs", "0"]).expect("parse");
        assert!(Plan::new(&w.t).is_err());
    }

    #[test]
    fn pinning_puts_peers_on_different_cores() {
        let p = plan(&["--pin"]);
        let r = p.params(Role::Receiver, Mode::Weir, Test::Stream, 1 << 20, 0.01, 0);
        let s = p.params(Role::Sender, Mode::Weir, Test::Stream, 1 << 20, 0.01, 0);
        assert_eq!((s.cpu, r.cpu), (Some(0), Some(1)));
        let pp = p.params(Role::Sender, Mode::Tcp, Test::PingPong, 8, 0.0, 0);
        assert_eq!(pp.point_ms, PINGPONG_MS);
    }

    #[test]
    fn median_prefers_measured_runs() {
        let r = |g: Option<f64>| Row {
            goodput_gbps: g,
            ..Row::default()
        };
        assert_eq!(
            median_by(vec![r(Some(3.0)), r(Some(1.0)), r(Some(2.0))], |r| r
                .goodput_gbps)
            .goodput_gbps,
            Some(2.0)
        );
        assert_eq!(
            median_by(vec![r(None), r(Some(1.0))], |r| r.goodput_gbps).goodput_gbps,
            Some(1.0)
        );
        assert_eq!(
            median_by(vec![r(None)], |r| r.goodput_gbps).goodput_gbps,
            None
        );
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
        assert_eq!(row.goodput_gbps, None);
        assert_eq!(row.sender_gbps, Some(2.0));
        assert!(!row.complete);
        assert_eq!(row.note.as_deref(), Some("receiver did not answer"));
    }
}
