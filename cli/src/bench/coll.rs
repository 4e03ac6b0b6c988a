//! `weir bench allreduce|allgather|reduce-scatter --ranks N`: Weir's communicator against Open MPI
//! over TCP, measured in the same run, in nccl-tests columns.
//!
//! The Weir side spawns `N` copies of this executable (`weir bench-coll-worker`) with the
//! environment torchrun would set (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`,
//! `MASTER_PORT`); each builds a [`weir_comm::Communicator`] from it and runs
//! [`weir_comm::bench::run`], and rank 0 answers with one JSON line per size. The MPI side builds
//! `benches/mpi/collbench.c` (embedded) with `mpicc` once and runs it under `mpirun` with the
//! TCP btl on loopback, exactly as machine.md §1 does. Both use the same method: per size, 10
//! warm-up calls (2 from 8 MiB), timed calls that fit the budget (5 to 2000), a barrier before
//! each, the per-call time the maximum over ranks, the median over calls, the last result
//! checked exactly. With `--repeat R` the two sweeps alternate R times and each size reports its
//! median run.

use std::io::{BufRead, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use super::{BenchError, rt_permitted, sys, units};
use crate::launch::{Ranks, free_port};

/// The collective `weir bench` measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum CollOp {
    /// AllReduce (size = the vector; busbw = algbw × 2(n−1)/n).
    Allreduce,
    /// AllGather (size = the gathered output; busbw = algbw × (n−1)/n).
    Allgather,
    /// ReduceScatter (size = the input; busbw = algbw × (n−1)/n).
    ReduceScatter,
}

impl CollOp {
    fn name(self) -> &'static str {
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
    fn bus_factor(self, n: u32) -> f64 {
        let n = f64::from(n.max(1));
        match self {
            CollOp::Allreduce => 2.0 * (n - 1.0) / n,
            CollOp::Allgather | CollOp::ReduceScatter => (n - 1.0) / n,
        }
    }
}

/// How ranks on one host reach each other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum CollTransport {
    /// Shared memory between ranks on one host, the Weir transport between hosts.
    #[default]
    Auto,
    /// The Weir transport over UDP for every pair, even on one host (`WEIR_SHM=0`).
    Udp,
}

/// Open MPI's byte transfer layer for the baseline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum MpiBtl {
    /// TCP over loopback (`--mca btl tcp,self --mca btl_tcp_if_include lo`).
    #[default]
    Tcp,
    /// Shared memory (`--mca btl vader,self`).
    Vader,
}

/// Options of `weir bench allreduce|allgather|reduce-scatter`.
#[derive(Debug, Args)]
pub(crate) struct CollArgs {
    /// Ranks (processes on this host)
    #[arg(long, short = 'n', default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub(crate) ranks: u32,

    /// Sizes in bytes of float32 data, comma-separated; K/M/G are KiB/MiB/GiB [default: 8 B to
    /// 256 MiB in ×4 steps plus 256M; --quick: 8,8M]
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = units::parse_size)]
    pub(crate) sizes: Option<Vec<u64>>,

    /// Time budget of the timed calls at each size, seconds [default: 0.5; --quick: 0.1]
    #[arg(long, value_name = "SECS")]
    pub(crate) budget: Option<f64>,

    /// Data path between ranks on this host
    #[arg(long, value_enum, default_value_t = CollTransport::Auto)]
    pub(crate) transport: CollTransport,

    /// Force an algorithm (WEIR_ALGO: ring, tree, dbtree, hd, rd, hier, chain, pairwise, bruck)
    #[arg(long, value_name = "NAME")]
    pub(crate) algo: Option<String>,

    /// Skip the Open MPI baseline
    #[arg(long)]
    pub(crate) no_mpi: bool,

    /// Open MPI's byte transfer layer for the baseline: `tcp` (over loopback, the issue's
    /// baseline) or `vader` (its shared memory, single-copy CMA)
    #[arg(long, value_enum, default_value_t = MpiBtl::Tcp)]
    pub(crate) mpi_btl: MpiBtl,

    /// Alternate the Weir and MPI sweeps this many times; each size reports its median run
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=9))]
    pub(crate) repeat: u32,

    /// Pin rank r to core r mod cores (Open MPI binds its 2 ranks to cores itself)
    #[arg(long)]
    pub(crate) pin: bool,

    /// Run every rank (and mpirun) under SCHED_FIFO priority 10 (root or RLIMIT_RTPRIO)
    #[arg(long)]
    pub(crate) rt: bool,

    /// Print one JSON object per size instead of the table
    #[arg(long)]
    pub(crate) json: bool,

    /// A short run: 8 B and 8 MiB, 0.1 s per size
    #[arg(long)]
    pub(crate) quick: bool,

    /// Give up on a sweep (Weir's ranks or mpirun) after this many seconds
    #[arg(long, default_value_t = 600)]
    pub(crate) timeout: u64,
}

/// Options of the hidden `weir bench-coll-worker` (one rank).
#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    /// The collective.
    #[arg(long, value_enum)]
    op: CollOp,
    /// Sizes in bytes.
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<u64>,
    /// Seconds of timed calls per size.
    #[arg(long)]
    budget: f64,
    /// Core to pin to.
    #[arg(long)]
    cpu: Option<usize>,
    /// SCHED_FIFO.
    #[arg(long)]
    rt: bool,
}

/// One size as rank 0 of the Weir side reports it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct WorkerRow {
    size: u64,
    count: u64,
    time_us: f64,
    wrong: u64,
}

/// One row of the output.
#[derive(Clone, Debug, Serialize)]
struct Row {
    op: &'static str,
    ranks: u32,
    size: u64,
    count: u64,
    #[serde(rename = "type")]
    dtype: &'static str,
    time_us: f64,
    algbw_gbps: f64,
    busbw_gbps: f64,
    wrong: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    mpi_time_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mpi_busbw_gbps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mpi_wrong: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio: Option<f64>,
}

/// The embedded MPI timing program.
const COLLBENCH_C: &str = include_str!("../../../benches/mpi/collbench.c");

fn default_sizes() -> Vec<u64> {
    let mut v = Vec::new();
    let mut s = 8u64;
    while s < 256 << 20 {
        v.push(s);
        s *= 4;
    }
    v.push(256 << 20);
    v
}

/// Run the benchmark.
pub(crate) fn run(op: CollOp, a: CollArgs) -> Result<(), BenchError> {
    let sizes = a.sizes.clone().unwrap_or_else(|| {
        if a.quick {
            vec![8, 8 << 20]
        } else {
            default_sizes()
        }
    });
    if sizes.is_empty() || sizes.contains(&0) {
        return Err(BenchError::new(
            "--sizes: every size must be at least 1 byte",
        ));
    }
    let budget = a.budget.unwrap_or(if a.quick { 0.1 } else { 0.5 });
    if !(budget.is_finite() && budget > 0.0 && budget <= 60.0) {
        return Err(BenchError::new("--budget must be in (0, 60] seconds"));
    }
    if a.rt && !rt_permitted() {
        return Err(BenchError::new(
            "--rt needs root or an RLIMIT_RTPRIO of at least 10",
        ));
    }
    let mpi = if a.no_mpi { None } else { mpi_program()? };
    let mut weir_runs: Vec<Vec<WorkerRow>> = Vec::new();
    let mut mpi_runs: Vec<Vec<WorkerRow>> = Vec::new();
    for _ in 0..a.repeat {
        weir_runs.push(weir_sweep(op, &a, &sizes, budget)?);
        if let Some(prog) = &mpi {
            mpi_runs.push(mpi_sweep(prog, op, &a, &sizes, budget)?);
        }
    }
    let rows = combine(op, a.ranks, &sizes, &weir_runs, &mpi_runs);
    if a.json {
        for r in &rows {
            println!("{}", serde_json::to_string(r)?);
        }
    } else {
        print!("{}", table(op, &a, budget, mpi.is_some(), &rows));
    }
    if rows
        .iter()
        .any(|r| r.wrong > 0 || r.mpi_wrong.unwrap_or(0) > 0)
    {
        return Err(BenchError::new("wrong results (see #wrong)"));
    }
    Ok(())
}

/// The median (by time) of each size's runs, Weir and MPI side by side.
fn combine(
    op: CollOp,
    ranks: u32,
    sizes: &[u64],
    weir: &[Vec<WorkerRow>],
    mpi: &[Vec<WorkerRow>],
) -> Vec<Row> {
    let median = |runs: &[Vec<WorkerRow>], size: u64| -> Option<WorkerRow> {
        let mut v: Vec<WorkerRow> = runs
            .iter()
            .filter_map(|r| r.iter().find(|w| w.size == size).cloned())
            .collect();
        v.sort_by(|x, y| x.time_us.total_cmp(&y.time_us));
        let wrong = v.iter().map(|w| w.wrong).sum();
        let mut m = v.get(v.len() / 2).cloned()?;
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
        let busbw = algbw * op.bus_factor(ranks);
        let m = median(mpi, size);
        let mpi_busbw = m
            .as_ref()
            .map(|m| gbps(size, m.time_us) * op.bus_factor(ranks));
        rows.push(Row {
            op: op.name(),
            ranks,
            size,
            count: w.count,
            dtype: "float",
            time_us: w.time_us,
            algbw_gbps: algbw,
            busbw_gbps: busbw,
            wrong: w.wrong,
            mpi_time_us: m.as_ref().map(|m| m.time_us),
            mpi_busbw_gbps: mpi_busbw,
            mpi_wrong: m.as_ref().map(|m| m.wrong),
            // Time ratio: equal to the busbw ratio, and meaningful for 8 B rows too.
            ratio: m
                .as_ref()
                .filter(|_| w.time_us > 0.0)
                .map(|m| m.time_us / w.time_us),
        });
    }
    rows
}

fn table(op: CollOp, a: &CollArgs, budget: f64, mpi: bool, rows: &[Row]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let path = match a.transport {
        CollTransport::Auto => "auto (shared memory on this host)",
        CollTransport::Udp => "udp (Weir transport between every pair)",
    };
    let _ = writeln!(
        s,
        "# weir bench {}: {} ranks, float32 sum, data path {path}, algorithm {}, budget {budget} s/size, {} run(s){}{}",
        op.name(),
        a.ranks,
        a.algo.as_deref().unwrap_or("auto (cost model)"),
        a.repeat,
        if a.rt { ", SCHED_FIFO 10" } else { "" },
        if a.pin { ", pinned" } else { "" },
    );
    if let Some(p) = sys::cpu_pressure_some_avg10() {
        let _ = writeln!(s, "# CPU pressure (some avg10) at the end: {p:.1} %");
    }
    if mpi {
        let btl = match a.mpi_btl {
            MpiBtl::Tcp => "--mca btl tcp,self on lo",
            MpiBtl::Vader => "--mca btl vader,self (shared memory)",
        };
        let _ = writeln!(
            s,
            "# baseline: Open MPI, --mca pml ob1 {btl}, same sizes and method, same run"
        );
    }
    let _ = writeln!(
        s,
        "{:>12} {:>10} {:>6} {:>11} {:>8} {:>8} {:>7}{}",
        "size",
        "count",
        "type",
        "time(us)",
        "algbw",
        "busbw",
        "#wrong",
        if mpi {
            format!(" {:>12} {:>10} {:>7}", "mpi time(us)", "mpi busbw", "ratio")
        } else {
            String::new()
        }
    );
    for r in rows {
        let _ = write!(
            s,
            "{:>12} {:>10} {:>6} {:>11.2} {:>8.3} {:>8.3} {:>7}",
            r.size, r.count, r.dtype, r.time_us, r.algbw_gbps, r.busbw_gbps, r.wrong
        );
        if let (Some(t), Some(b)) = (r.mpi_time_us, r.mpi_busbw_gbps) {
            let _ = write!(
                s,
                " {:>12.2} {:>10.3} {:>6.2}x",
                t,
                b,
                r.ratio.unwrap_or(0.0)
            );
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(
        s,
        "# time: median over calls of the slowest rank; algbw, busbw in GB/s (1e9 B); ratio = MPI time / Weir time"
    );
    s
}

/// One sweep of Weir's communicator over every size.
fn weir_sweep(
    op: CollOp,
    a: &CollArgs,
    sizes: &[u64],
    budget: f64,
) -> Result<Vec<WorkerRow>, BenchError> {
    let exe = std::env::current_exe()?;
    let port = free_port()?;
    let cores = sys::cpus();
    let sizes_arg = sizes
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut ranks = Ranks::spawn(a.ranks, "127.0.0.1", port, |rank| {
        let mut cmd = Command::new(&exe);
        cmd.arg("bench-coll-worker")
            .arg("--op")
            .arg(op.name())
            .arg("--sizes")
            .arg(&sizes_arg)
            .arg("--budget")
            .arg(budget.to_string())
            .stdin(Stdio::null())
            .stdout(if rank == 0 {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::inherit());
        if a.pin {
            cmd.arg("--cpu").arg((rank as usize % cores).to_string());
        }
        if a.rt {
            cmd.arg("--rt");
        }
        match a.transport {
            CollTransport::Udp => cmd.env("WEIR_SHM", "0"),
            CollTransport::Auto => cmd.env_remove("WEIR_SHM"),
        };
        if let Some(algo) = &a.algo {
            cmd.env("WEIR_ALGO", algo);
        }
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
    let rows = match rx.recv_timeout(Duration::from_secs(a.timeout)) {
        Ok(Ok(rows)) => rows,
        Ok(Err(e)) => return Err(BenchError::new(e)),
        Err(_) => {
            return Err(BenchError::new(format!(
                "the Weir ranks did not finish within {} s",
                a.timeout
            )));
        }
    };
    ranks
        .wait(Duration::ZERO, Some(Duration::from_secs(30)))
        .map_err(|e| BenchError::new(format!("weir {e}")))?;
    if rows.len() != sizes.len() {
        return Err(BenchError::new(format!(
            "rank 0 reported {} of {} sizes",
            rows.len(),
            sizes.len()
        )));
    }
    Ok(rows)
}

/// The hidden worker: one rank of the Weir side.
pub(crate) fn worker(w: WorkerArgs) -> Result<(), BenchError> {
    let applied = sys::apply_sched(w.cpu, w.rt);
    for e in &applied.errors {
        eprintln!("weir bench-coll-worker: {e}");
    }
    let opts = weir_comm::CommOptions::default();
    let comm = weir_comm::Communicator::from_env(&opts)
        .map_err(|e| BenchError::new(format!("communicator: {e}")))?;
    let sizes: Vec<usize> = w
        .sizes
        .iter()
        .map(|&s| usize::try_from(s))
        .collect::<Result<_, _>>()?;
    let rows = weir_comm::bench::run(
        &comm,
        w.op.collective(),
        &sizes,
        Duration::from_secs_f64(w.budget),
    )
    .map_err(|e| BenchError::new(format!("rank {}: {e}", comm.rank())))?;
    if comm.rank() == 0 {
        // Rows come in the order of `sizes`; label each with the size asked for (the bytes
        // moved are `count` elements, rounded up to a multiple of the ranks).
        for (&size, r) in w.sizes.iter().zip(rows) {
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
            "weir bench: Open MPI not found (mpicc/mpirun); measuring Weir only. \
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

/// One sweep of Open MPI's collective over TCP on loopback.
fn mpi_sweep(
    prog: &Path,
    op: CollOp,
    a: &CollArgs,
    sizes: &[u64],
    budget: f64,
) -> Result<Vec<WorkerRow>, BenchError> {
    let mut cmd = if a.rt {
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
        .arg(a.ranks.to_string())
        .args(["--mca", "pml", "ob1"]);
    match a.mpi_btl {
        MpiBtl::Tcp => {
            cmd.args(["--mca", "btl", "tcp,self"])
                .args(["--mca", "btl_tcp_if_include", "lo"])
        }
        MpiBtl::Vader => cmd.args(["--mca", "btl", "vader,self"]),
    };
    cmd.args(["--mca", "oob_tcp_if_include", "lo"])
        .arg(prog)
        .arg(op.mpi_name())
        .arg("1")
        .arg("1")
        .arg(budget.to_string())
        .args(sizes.iter().map(u64::to_string))
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
    let limit = Duration::from_secs(a.timeout);
    let (Ok(text), Ok(err)) = (out.recv_timeout(limit), err.recv_timeout(limit)) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(BenchError::new(format!(
            "mpirun did not finish within {} s",
            a.timeout
        )));
    };
    let status = child.wait()?;
    let rows = parse_mpi(&text);
    if !status.success() || rows.len() != sizes.len() {
        return Err(BenchError::new(format!(
            "mpirun {status}, {} of {} sizes; stderr: {}",
            rows.len(),
            sizes.len(),
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
        let rows = combine(CollOp::Allreduce, 2, &[1000], &weir, &mpi);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].time_us, 2.0);
        assert_eq!(rows[0].wrong, 1);
        // 1000 B in 2 µs = 0.5 GB/s; n = 2 → busbw factor 1.
        assert!((rows[0].busbw_gbps - 0.5).abs() < 1e-12);
        assert_eq!(rows[0].ratio, Some(2.0));
    }

    #[test]
    fn bus_factors_follow_nccl_tests() {
        assert_eq!(CollOp::Allreduce.bus_factor(4), 1.5);
        assert_eq!(CollOp::Allgather.bus_factor(4), 0.75);
        assert_eq!(CollOp::ReduceScatter.bus_factor(1), 0.0);
    }
}
