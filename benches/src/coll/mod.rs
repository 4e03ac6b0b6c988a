//! `weir bench allreduce|allgather|reduce-scatter --ranks N`: Weir's communicator against Open
//! MPI, measured in the same run, in nccl-tests columns, each data path against its like.
//!
//! By default two pairs ([`PathChoice::Both`]): Weir's shared memory against Open MPI's shared
//! memory (`--mca btl vader,self`), and the Weir transport over UDP on loopback (`WEIR_SHM=0`)
//! against Open MPI's TCP on loopback (`--mca btl tcp,self --mca btl_tcp_if_include lo`). Every
//! [`Row`] names both sides' data path.
//!
//! The Weir side spawns `N` ranks ([`CollPlan::worker`]: `weir bench-coll-worker`, which calls
//! [`worker`]) with torchrun's environment ([`crate::launch::Ranks`]); each builds a
//! [`weir_comm::Communicator`] from it and runs [`rank::run`], and rank 0 answers with one JSON
//! line per size. The MPI side builds `benches/mpi/collbench.c` (embedded) with `mpicc` once and
//! runs it under `mpirun`. Both use the same method (`docs/benchmarking.md`): per size, 10
//! warm-up calls (2 from 8 MiB), timed calls that fit the budget (5 to 2000), a barrier before
//! each, the per-call time the maximum over ranks, the median over calls, the last result
//! checked exactly. With [`CollPlan::repeat`] R the sweeps alternate R times and each size
//! reports its median run.

pub mod rank;

use std::io::{BufRead, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::launch::{Ranks, free_port};
use crate::peer::PeerCmd;
use crate::{BenchError, median_by, rt_permitted, sys};

/// The collective measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CollOp {
    /// AllReduce (size = the vector; busbw = algbw × 2(n−1)/n).
    Allreduce,
    /// AllGather (size = the gathered output; busbw = algbw × (n−1)/n).
    Allgather,
    /// ReduceScatter (size = the input; busbw = algbw × (n−1)/n).
    ReduceScatter,
}

impl CollOp {
    /// The name on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            CollOp::Allreduce => "allreduce",
            CollOp::Allgather => "allgather",
            CollOp::ReduceScatter => "reduce-scatter",
        }
    }

    /// collbench.c's name for it.
    fn mpi_name(self) -> &'static str {
        match self {
            CollOp::Allreduce => "allreduce",
            CollOp::Allgather => "allgather",
            CollOp::ReduceScatter => "reduce_scatter",
        }
    }

    fn collective(self) -> weir_collectives::Collective {
        match self {
            CollOp::Allreduce => weir_collectives::Collective::AllReduce,
            CollOp::Allgather => weir_collectives::Collective::AllGather,
            CollOp::ReduceScatter => weir_collectives::Collective::ReduceScatter,
        }
    }

    /// nccl-tests' bus-bandwidth factor for `n` ranks.
    pub fn bus_factor(self, n: u32) -> f64 {
        let n = f64::from(n.max(1));
        match self {
            CollOp::Allreduce => 2.0 * (n - 1.0) / n,
            CollOp::Allgather | CollOp::ReduceScatter => (n - 1.0) / n,
        }
    }
}

impl FromStr for CollOp {
    type Err = String;

    fn from_str(s: &str) -> Result<CollOp, String> {
        [CollOp::Allreduce, CollOp::Allgather, CollOp::ReduceScatter]
            .into_iter()
            .find(|o| o.name() == s)
            .ok_or_else(|| {
                format!("unknown collective `{s}` (allreduce, allgather, reduce-scatter)")
            })
    }
}

/// Which data-path pairs to measure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PathChoice {
    /// Both pairs: Weir shm against Open MPI vader, then Weir udp against Open MPI tcp.
    #[default]
    Both,
    /// Weir's shared memory against Open MPI's (vader).
    Shm,
    /// The Weir transport over UDP on loopback against Open MPI's TCP on loopback.
    Udp,
}

impl PathChoice {
    /// Weir's data paths, in the order they are measured and printed.
    pub fn paths(self) -> &'static [WeirPath] {
        match self {
            PathChoice::Both => &[WeirPath::Shm, WeirPath::Udp],
            PathChoice::Shm => &[WeirPath::Shm],
            PathChoice::Udp => &[WeirPath::Udp],
        }
    }
}

impl FromStr for PathChoice {
    type Err = String;

    /// `both`, `shm` (or `auto`, the old `--transport` spelling), `udp`.
    fn from_str(s: &str) -> Result<PathChoice, String> {
        match s {
            "both" => Ok(PathChoice::Both),
            "shm" | "auto" => Ok(PathChoice::Shm),
            "udp" => Ok(PathChoice::Udp),
            _ => Err(format!("unknown data path `{s}` (both, shm, udp)")),
        }
    }
}

/// How Weir's ranks on one host reach each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WeirPath {
    /// Shared memory between ranks on one host (`WEIR_SHM` unset: the default).
    Shm,
    /// The Weir transport over UDP for every pair, even on one host (`WEIR_SHM=0`).
    Udp,
}

impl WeirPath {
    /// The name in the table and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            WeirPath::Shm => "shm",
            WeirPath::Udp => "udp",
        }
    }

    /// Open MPI's data path of the same kind.
    pub fn like(self) -> MpiBtl {
        match self {
            WeirPath::Shm => MpiBtl::Vader,
            WeirPath::Udp => MpiBtl::Tcp,
        }
    }
}

/// Open MPI's byte transfer layer for the baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MpiBtl {
    /// TCP over loopback (`--mca btl tcp,self --mca btl_tcp_if_include lo`).
    Tcp,
    /// Shared memory (`--mca btl vader,self`).
    Vader,
}

impl MpiBtl {
    /// The name in the table and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            MpiBtl::Tcp => "tcp",
            MpiBtl::Vader => "vader",
        }
    }

    /// mpirun's options that select it.
    pub fn mca(self) -> &'static [&'static str] {
        match self {
            MpiBtl::Tcp => &[
                "--mca",
                "btl",
                "tcp,self",
                "--mca",
                "btl_tcp_if_include",
                "lo",
            ],
            MpiBtl::Vader => &["--mca", "btl", "vader,self"],
        }
    }
}

impl FromStr for MpiBtl {
    type Err = String;

    fn from_str(s: &str) -> Result<MpiBtl, String> {
        match s {
            "tcp" => Ok(MpiBtl::Tcp),
            "vader" => Ok(MpiBtl::Vader),
            _ => Err(format!("unknown btl `{s}` (tcp, vader)")),
        }
    }
}

/// What to measure and how.
#[derive(Clone, Debug)]
pub struct CollPlan {
    /// The collective.
    pub op: CollOp,
    /// Ranks (processes on this host).
    pub ranks: u32,
    /// Sizes in bytes of f32 data.
    pub sizes: Vec<u64>,
    /// Seconds of timed calls per size.
    pub budget: f64,
    /// The pairs.
    pub path: PathChoice,
    /// Forced algorithm (`WEIR_ALGO`).
    pub algo: Option<String>,
    /// Whether to run the Open MPI baseline (where it is installed).
    pub mpi: bool,
    /// The baseline's btl for every pair instead of each pair's own ([`WeirPath::like`]).
    pub mpi_btl: Option<MpiBtl>,
    /// How many times the sweeps alternate.
    pub repeat: u32,
    /// Pin rank r to core r mod cores.
    pub pin: bool,
    /// SCHED_FIFO for every rank and mpirun.
    pub rt: bool,
    /// Bound on one sweep.
    pub timeout: Duration,
    /// The command that runs one Weir rank (an executable whose subcommand calls [`worker`]).
    pub worker: PeerCmd,
    /// Where the udp path's ranks run their transport's engine (`WEIR_ENGINE`): their own
    /// `Host`, a firmware engine thread each, or one `weir engine` daemon for all of them
    /// (this "host"'s), started by the sweep (`worker.program engine …`).
    pub engine: crate::engine_side::EngineKind,
}

/// nccl-tests' sizes: 8 B to 256 MiB in ×4 steps, plus 256 MiB.
pub fn default_sizes() -> Vec<u64> {
    let mut v = Vec::new();
    let mut s = 8u64;
    while s < 256 << 20 {
        v.push(s);
        s *= 4;
    }
    v.push(256 << 20);
    v
}

/// One data-path pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pair {
    /// Weir's side.
    pub weir: WeirPath,
    /// Open MPI's side; `None` where the baseline did not run.
    pub mpi: Option<MpiBtl>,
}

/// Why the baseline ran or did not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Baseline {
    /// It ran.
    Ran,
    /// It was not asked for.
    Skipped,
    /// `mpicc` or `mpirun` is missing.
    Missing,
}

/// The outcome: the pairs and their rows, pair after pair.
#[derive(Clone, Debug)]
pub struct CollReport {
    /// The pairs, in the order of the rows.
    pub pairs: Vec<Pair>,
    /// Whether Open MPI ran.
    pub baseline: Baseline,
    /// One row per pair and size.
    pub rows: Vec<Row>,
}

impl CollReport {
    /// Whether any result, Weir's or MPI's, was wrong.
    pub fn any_wrong(&self) -> bool {
        self.rows
            .iter()
            .any(|r| r.wrong > 0 || r.mpi_wrong.unwrap_or(0) > 0)
    }
}

/// One size of one pair (a JSON line of `--json`).
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The collective's name.
    pub op: &'static str,
    /// Ranks.
    pub ranks: u32,
    /// Weir's data path.
    pub weir_path: WeirPath,
    /// Open MPI's btl in this pair; `null` where MPI did not run.
    pub mpi_btl: Option<MpiBtl>,
    /// The size asked for, bytes.
    pub size: u64,
    /// f32 elements moved (rounded up to a multiple of the ranks).
    pub count: u64,
    /// Always `float`.
    #[serde(rename = "type")]
    pub dtype: &'static str,
    /// Weir: median over calls of the slowest rank's time, µs.
    pub time_us: f64,
    /// Weir: size / time, GB/s (10⁹ B).
    pub algbw_gbps: f64,
    /// Weir: algbw × the bus factor, GB/s.
    pub busbw_gbps: f64,
    /// Weir: wrong elements over all ranks and runs.
    pub wrong: u64,
    /// Open MPI's time, µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mpi_time_us: Option<f64>,
    /// Open MPI's busbw, GB/s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mpi_busbw_gbps: Option<f64>,
    /// Open MPI's wrong elements.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mpi_wrong: Option<u64>,
    /// MPI time / Weir time (= the busbw ratio, meaningful for 8 B rows too).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
}

/// One size as rank 0 of the Weir side, or collbench.c, reports it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct WorkerRow {
    size: u64,
    count: u64,
    time_us: f64,
    wrong: u64,
}

/// One side's sweeps of one pair, each a row per size.
type Runs = Vec<Vec<WorkerRow>>;

/// The embedded MPI timing program.
const COLLBENCH_C: &str = include_str!("../../mpi/collbench.c");

/// Run the benchmark.
pub fn run(plan: &CollPlan) -> Result<CollReport, BenchError> {
    if plan.sizes.is_empty() || plan.sizes.contains(&0) {
        return Err(BenchError::new(
            "--sizes: every size must be at least 1 byte",
        ));
    }
    if !(plan.budget.is_finite() && plan.budget > 0.0 && plan.budget <= 60.0) {
        return Err(BenchError::new("--budget must be in (0, 60] seconds"));
    }
    if plan.rt && !rt_permitted() {
        return Err(BenchError::new(
            "--rt needs root or an RLIMIT_RTPRIO of at least 10",
        ));
    }
    let prog = if plan.mpi { mpi_program()? } else { None };
    let baseline = match (&prog, plan.mpi) {
        (Some(_), _) => Baseline::Ran,
        (None, true) => Baseline::Missing,
        (None, false) => Baseline::Skipped,
    };
    let pairs: Vec<Pair> = plan
        .path
        .paths()
        .iter()
        .map(|&weir| Pair {
            weir,
            mpi: prog.as_ref().map(|_| plan.mpi_btl.unwrap_or(weir.like())),
        })
        .collect();
    // Per pair: the Weir runs and the MPI runs. The sweeps alternate, pair after pair, so
    // every repetition sees each side once.
    let mut runs: Vec<(Runs, Runs)> = vec![(Vec::new(), Vec::new()); pairs.len()];
    for _ in 0..plan.repeat {
        for (pair, (weir_runs, mpi_runs)) in pairs.iter().zip(&mut runs) {
            weir_runs.push(weir_sweep(plan, pair.weir)?);
            if let (Some(prog), Some(btl)) = (&prog, pair.mpi) {
                mpi_runs.push(mpi_sweep(prog, plan, btl)?);
            }
        }
    }
    let rows = pairs
        .iter()
        .zip(&runs)
        .flat_map(|(&pair, (w, m))| combine(plan.op, plan.ranks, pair, &plan.sizes, w, m))
        .collect();
    Ok(CollReport {
        pairs,
        baseline,
        rows,
    })
}

/// The table of `weir bench allreduce|allgather|reduce-scatter`: header (the run, CPU
/// pressure, the pairs), one line per row in nccl-tests columns, footer.
pub fn table(plan: &CollPlan, report: &CollReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# weir bench {}: {} ranks, float32 sum, algorithm {}, budget {} s/size, {} run(s){}{}",
        plan.op.name(),
        plan.ranks,
        plan.algo.as_deref().unwrap_or("auto (cost model)"),
        plan.budget,
        plan.repeat,
        if plan.rt { ", SCHED_FIFO 10" } else { "" },
        if plan.pin { ", pinned" } else { "" },
    );
    if let Some(p) = sys::cpu_pressure_some_avg10() {
        let _ = writeln!(s, "# CPU pressure (some avg10) at the end: {p:.1} %");
    }
    for pair in &report.pairs {
        let weir = match pair.weir {
            WeirPath::Shm => "shm = Weir shared memory",
            WeirPath::Udp => match plan.engine {
                crate::engine_side::EngineKind::Host => {
                    "udp = the Weir transport over UDP on loopback (WEIR_SHM=0)"
                }
                crate::engine_side::EngineKind::Inproc => {
                    "udp = the Weir transport over UDP on loopback (WEIR_SHM=0), each rank's \
                     engine a firmware engine thread (WEIR_ENGINE=inproc)"
                }
                crate::engine_side::EngineKind::Daemon => {
                    "udp = the Weir transport over UDP on loopback (WEIR_SHM=0), every rank \
                     through one weir engine daemon (WEIR_ENGINE=daemon)"
                }
            },
        };
        let mpi = match (pair.mpi, report.baseline) {
            (Some(MpiBtl::Vader), _) => "vader = Open MPI shared memory (--mca btl vader,self)",
            (Some(MpiBtl::Tcp), _) => "tcp = Open MPI TCP on loopback (--mca btl tcp,self on lo)",
            (None, Baseline::Missing) => "no baseline (Open MPI not found: mpicc/mpirun)",
            (None, _) => "no baseline (--no-mpi)",
        };
        let _ = writeln!(s, "# pair: {weir}  vs  {mpi}");
    }
    let mpi = report.baseline == Baseline::Ran;
    if mpi {
        let _ = writeln!(
            s,
            "# baseline: Open MPI, --mca pml ob1, same sizes and method, same run"
        );
    }
    let _ = writeln!(
        s,
        "{:>9} {:>12} {:>10} {:>6} {:>11} {:>8} {:>8} {:>7}{}",
        "weir_path",
        "size",
        "count",
        "type",
        "time(us)",
        "algbw",
        "busbw",
        "#wrong",
        if mpi {
            format!(
                " {:>7} {:>12} {:>10} {:>7}",
                "mpi_btl", "mpi time(us)", "mpi busbw", "ratio"
            )
        } else {
            String::new()
        }
    );
    for r in &report.rows {
        let _ = write!(
            s,
            "{:>9} {:>12} {:>10} {:>6} {:>11.2} {:>8.3} {:>8.3} {:>7}",
            r.weir_path.name(),
            r.size,
            r.count,
            r.dtype,
            r.time_us,
            r.algbw_gbps,
            r.busbw_gbps,
            r.wrong
        );
        if let (Some(btl), Some(t), Some(b)) = (r.mpi_btl, r.mpi_time_us, r.mpi_busbw_gbps) {
            let ratio = r.ratio.unwrap_or(0.0);
            let _ = write!(s, " {:>7} {t:>12.2} {b:>10.3} {ratio:>6.2}x", btl.name());
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(
        s,
        "# time: median over calls of the slowest rank; algbw, busbw in GB/s (1e9 B){}",
        if mpi {
            "; ratio = MPI time / Weir time within the row's pair"
        } else {
            ""
        }
    );
    s
}

/// The median (by time) of each size's runs, Weir and MPI side by side, for one pair.
fn combine(
    op: CollOp,
    ranks: u32,
    pair: Pair,
    sizes: &[u64],
    weir: &[Vec<WorkerRow>],
    mpi: &[Vec<WorkerRow>],
) -> Vec<Row> {
    let median = |runs: &[Vec<WorkerRow>], size: u64| -> Option<WorkerRow> {
        let v: Vec<WorkerRow> = runs
            .iter()
            .filter_map(|r| r.iter().find(|w| w.size == size).cloned())
            .collect();
        if v.is_empty() {
            return None;
        }
        let wrong = v.iter().map(|w| w.wrong).sum();
        let mut m = median_by(v, |w| Some(w.time_us));
        m.wrong = wrong;
        Some(m)
    };
    let gbps = |bytes: u64, us: f64| {
        if us > 0.0 {
            bytes as f64 / (us * 1e3)
        } else {
            0.0
        }
    };
    let mut rows = Vec::new();
    for &size in sizes {
        let Some(w) = median(weir, size) else {
            continue;
        };
        let algbw = gbps(size, w.time_us);
        let m = median(mpi, size);
        rows.push(Row {
            op: op.name(),
            ranks,
            weir_path: pair.weir,
            mpi_btl: pair.mpi.filter(|_| m.is_some()),
            size,
            count: w.count,
            dtype: "float",
            time_us: w.time_us,
            algbw_gbps: algbw,
            busbw_gbps: algbw * op.bus_factor(ranks),
            wrong: w.wrong,
            mpi_time_us: m.as_ref().map(|m| m.time_us),
            mpi_busbw_gbps: m
                .as_ref()
                .map(|m| gbps(size, m.time_us) * op.bus_factor(ranks)),
            mpi_wrong: m.as_ref().map(|m| m.wrong),
            ratio: m
                .as_ref()
                .filter(|_| w.time_us > 0.0)
                .map(|m| m.time_us / w.time_us),
        });
    }
    rows
}

/// One sweep of Weir's communicator over every size.
fn weir_sweep(plan: &CollPlan, path: WeirPath) -> Result<Vec<WorkerRow>, BenchError> {
    let port = free_port()?;
    let cores = sys::cpus();
    let sizes_arg = plan
        .sizes
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    use crate::engine_side::{DaemonProcess, EngineKind};
    // One daemon for every rank of this host, for the udp path's sweep.
    let daemon = match (path, plan.engine) {
        (WeirPath::Udp, EngineKind::Daemon) => {
            let socket = crate::engine_side::daemon_sockets().0;
            Some((
                DaemonProcess::start(&plan.worker.program, &socket, &Default::default())
                    .map_err(BenchError::new)?,
                socket,
            ))
        }
        _ => None,
    };
    let engine = match (path, plan.engine, &daemon) {
        (WeirPath::Udp, EngineKind::Inproc, _) => Some("inproc".to_string()),
        (WeirPath::Udp, EngineKind::Daemon, Some((_, s))) => {
            Some(format!("daemon:{}", s.display()))
        }
        _ => None,
    };
    let mut ranks = Ranks::spawn(plan.ranks, "127.0.0.1", port, |rank| {
        let mut cmd = Command::new(&plan.worker.program);
        cmd.args(&plan.worker.args)
            .arg("--op")
            .arg(plan.op.name())
            .arg("--sizes")
            .arg(&sizes_arg)
            .arg("--budget")
            .arg(plan.budget.to_string())
            .stdin(Stdio::null())
            .stdout(if rank == 0 {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::inherit());
        if plan.pin {
            cmd.arg("--cpu").arg((rank as usize % cores).to_string());
        }
        if plan.rt {
            cmd.arg("--rt");
        }
        match path {
            WeirPath::Udp => cmd.env("WEIR_SHM", "0"),
            WeirPath::Shm => cmd.env_remove("WEIR_SHM"),
        };
        if let Some(algo) = &plan.algo {
            cmd.env("WEIR_ALGO", algo);
        }
        match &engine {
            Some(e) => cmd.env("WEIR_ENGINE", e),
            None => cmd.env_remove("WEIR_ENGINE"),
        };
        cmd
    })
    .map_err(|(rank, e)| BenchError::new(format!("weir rank {rank}: {e}")))?;
    let stdout = ranks
        .take_stdout(0)
        .ok_or_else(|| BenchError::new("rank 0 has no stdout"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut rows = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            match serde_json::from_str::<WorkerRow>(&line) {
                Ok(r) => rows.push(r),
                Err(e) => {
                    let _ = tx.send(Err(format!("rank 0 printed {line:?}: {e}")));
                    return;
                }
            }
        }
        let _ = tx.send(Ok(rows));
    });
    let rows = match rx.recv_timeout(plan.timeout) {
        Ok(Ok(rows)) => rows,
        Ok(Err(e)) => return Err(BenchError::new(e)),
        Err(_) => {
            return Err(BenchError::new(format!(
                "the Weir ranks ({}) did not finish within {} s",
                path.name(),
                plan.timeout.as_secs()
            )));
        }
    };
    ranks
        .wait(Duration::ZERO, Some(Duration::from_secs(30)))
        .map_err(|e| BenchError::new(format!("weir ({}) {e}", path.name())))?;
    if rows.len() != plan.sizes.len() {
        return Err(BenchError::new(format!(
            "rank 0 ({}) reported {} of {} sizes",
            path.name(),
            rows.len(),
            plan.sizes.len()
        )));
    }
    Ok(rows)
}

/// One rank of the Weir side (`weir bench-coll-worker`): pins and schedules itself, builds its
/// communicator from the environment, runs [`rank::run`] and, on rank 0, prints one JSON line
/// per size on stdout.
pub fn worker(
    op: CollOp,
    sizes: &[u64],
    budget: f64,
    cpu: Option<usize>,
    rt: bool,
) -> Result<(), BenchError> {
    let applied = sys::apply_sched(cpu, rt);
    for e in &applied.errors {
        eprintln!("weir bench-coll-worker: {e}");
    }
    let opts = weir_comm::CommOptions::default();
    let comm = weir_comm::Communicator::from_env(&opts)
        .map_err(|e| BenchError::new(format!("communicator: {e}")))?;
    let byte_sizes: Vec<usize> = sizes
        .iter()
        .map(|&s| usize::try_from(s))
        .collect::<Result<_, _>>()?;
    let rows = rank::run(
        &comm,
        op.collective(),
        &byte_sizes,
        Duration::from_secs_f64(budget),
    )
    .map_err(|e| BenchError::new(format!("rank {}: {e}", comm.rank())))?;
    if comm.rank() == 0 {
        // Rows come in the order of `sizes`; label each with the size asked for (the bytes
        // moved are `count` elements, rounded up to a multiple of the ranks).
        for (&size, r) in sizes.iter().zip(rows) {
            let row = WorkerRow {
                size,
                count: r.count as u64,
                time_us: r.time_us,
                wrong: r.wrong,
            };
            println!("{}", serde_json::to_string(&row)?);
        }
    }
    Ok(())
}

/// Build collbench.c with mpicc (once per source text), or `None` when Open MPI is missing.
fn mpi_program() -> Result<Option<PathBuf>, BenchError> {
    let found = |prog: &str| {
        Command::new(prog)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !found("mpicc") || !found("mpirun") {
        eprintln!(
            "weir bench: Open MPI not found (mpicc/mpirun); measuring Weir's data paths only. \
             Install it with `apt-get install openmpi-bin libopenmpi-dev`."
        );
        return Ok(None);
    }
    // A content hash in the name: an edited source is rebuilt, an unchanged one is reused.
    let hash = COLLBENCH_C.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let dir = std::env::temp_dir().join("weir-collbench");
    std::fs::create_dir_all(&dir)?;
    let bin = dir.join(format!("collbench-{hash:016x}"));
    if bin.exists() {
        return Ok(Some(bin));
    }
    let src = dir.join(format!("collbench-{hash:016x}.c"));
    std::fs::write(&src, COLLBENCH_C)?;
    let tmp = dir.join(format!("collbench-{hash:016x}.{}", std::process::id()));
    let out = Command::new("mpicc")
        .arg("-O2")
        .arg("-o")
        .arg(&tmp)
        .arg(&src)
        .output()?;
    if !out.status.success() {
        return Err(BenchError::new(format!(
            "mpicc failed on {}: {}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    std::fs::rename(&tmp, &bin)?;
    Ok(Some(bin))
}

/// One sweep of Open MPI's collective over `btl`.
fn mpi_sweep(prog: &Path, plan: &CollPlan, btl: MpiBtl) -> Result<Vec<WorkerRow>, BenchError> {
    let mut cmd = if plan.rt {
        let mut c = Command::new("chrt");
        c.arg("-f").arg(sys::RT_PRIORITY.to_string()).arg("mpirun");
        c
    } else {
        Command::new("mpirun")
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        cmd.arg("--allow-run-as-root");
    }
    cmd.args(["--oversubscribe", "-np"])
        .arg(plan.ranks.to_string())
        .args(["--mca", "pml", "ob1"])
        .args(btl.mca())
        .args(["--mca", "oob_tcp_if_include", "lo"])
        .arg(prog)
        .arg(plan.op.mpi_name())
        .arg("1")
        .arg("1")
        .arg(plan.budget.to_string())
        .args(plan.sizes.iter().map(u64::to_string))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    // Drain stdout and stderr on threads of their own, so neither pipe can fill and stall
    // mpirun while the other is read.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut text);
            }
            let _ = tx.send(text);
        });
        rx
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let (Ok(text), Ok(err)) = (
        out.recv_timeout(plan.timeout),
        err.recv_timeout(plan.timeout),
    ) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(BenchError::new(format!(
            "mpirun ({}) did not finish within {} s",
            btl.name(),
            plan.timeout.as_secs()
        )));
    };
    let status = child.wait()?;
    let rows = parse_mpi(&text);
    if !status.success() || rows.len() != plan.sizes.len() {
        return Err(BenchError::new(format!(
            "mpirun ({}) {status}, {} of {} sizes; stderr: {}",
            btl.name(),
            rows.len(),
            plan.sizes.len(),
            err.trim()
        )));
    }
    Ok(rows)
}

/// `ROW <op> <ranks> <size> <count> <time_us> <wrong>` lines.
fn parse_mpi(text: &str) -> Vec<WorkerRow> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() != 7 || f[0] != "ROW" {
                return None;
            }
            Some(WorkerRow {
                size: f[3].parse().ok()?,
                count: f[4].parse().ok()?,
                time_us: f[5].parse().ok()?,
                wrong: f[6].parse().ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_sizes_are_nccl_tests_steps() {
        let s = default_sizes();
        assert_eq!(s.first(), Some(&8));
        assert_eq!(s[1], 32);
        assert_eq!(s.last(), Some(&(256 << 20)));
        assert_eq!(s[s.len() - 2], 128 << 20);
    }

    #[test]
    fn parses_collbench_rows_and_skips_noise() {
        let rows =
            parse_mpi("hello\nROW allreduce 2 8 2 6.5 0\nROW x\nROW allreduce 2 32 8 6.6 3\n");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].size, 32);
        assert_eq!(rows[1].wrong, 3);
    }

    #[test]
    fn combine_takes_the_median_and_sums_wrong() {
        let run = |t: f64, wrong: u64| {
            vec![WorkerRow {
                size: 1000,
                count: 250,
                time_us: t,
                wrong,
            }]
        };
        let weir = vec![run(3.0, 0), run(1.0, 1), run(2.0, 0)];
        let mpi = vec![run(4.0, 0)];
        let pair = Pair {
            weir: WeirPath::Shm,
            mpi: Some(MpiBtl::Vader),
        };
        let rows = combine(CollOp::Allreduce, 2, pair, &[1000], &weir, &mpi);
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].weir_path, rows[0].mpi_btl),
            (WeirPath::Shm, Some(MpiBtl::Vader))
        );
        assert_eq!(rows[0].time_us, 2.0);
        assert_eq!(rows[0].wrong, 1);
        // 1000 B in 2 µs = 0.5 GB/s; n = 2 → busbw factor 1.
        assert!((rows[0].busbw_gbps - 0.5).abs() < 1e-12);
        assert_eq!(rows[0].ratio, Some(2.0));
        // Without MPI runs the row says so.
        let alone = combine(CollOp::Allreduce, 2, pair, &[1000], &weir, &[]);
        assert_eq!((alone[0].mpi_btl, alone[0].ratio), (None, None));
    }

    #[test]
    fn names_parse_and_pairs_are_like_with_like() {
        assert_eq!("both".parse(), Ok(PathChoice::Both));
        assert_eq!("auto".parse(), Ok(PathChoice::Shm));
        assert!("tcp".parse::<PathChoice>().is_err());
        assert_eq!("vader".parse(), Ok(MpiBtl::Vader));
        assert_eq!("reduce-scatter".parse(), Ok(CollOp::ReduceScatter));
        let like: Vec<_> = PathChoice::Both.paths().iter().map(|p| p.like()).collect();
        assert_eq!(like, [MpiBtl::Vader, MpiBtl::Tcp]);
    }

    #[test]
    fn bus_factors_follow_nccl_tests() {
        assert_eq!(CollOp::Allreduce.bus_factor(4), 1.5);
        assert_eq!(CollOp::Allgather.bus_factor(4), 0.75);
        assert_eq!(CollOp::ReduceScatter.bus_factor(1), 0.0);
    }
}
