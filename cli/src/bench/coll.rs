//! `weir bench allreduce|allgather|reduce-scatter --ranks N`: the options and the table. The
//! measurement is `weir_bench::coll`: Weir's communicator against Open MPI in the same run, each
//! data path against its like (Weir shared memory against Open MPI vader, the Weir transport
//! over UDP against Open MPI TCP, both on loopback), in nccl-tests columns.

use std::time::Duration;

use clap::Args;
use weir_bench::coll::{
    self, Baseline, CollOp, CollPlan, CollReport, MpiBtl, PathChoice, WeirPath,
};
use weir_bench::peer::PeerCmd;
use weir_bench::{sys, units};

use super::BenchError;

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

    /// Data paths to compare: `both` (Weir shm vs Open MPI vader, then Weir udp vs Open MPI
    /// tcp, both on loopback), `shm` or `udp` (one pair; `udp` sets WEIR_SHM=0)
    #[arg(
        long,
        alias = "transport",
        value_name = "both|shm|udp",
        default_value = "both"
    )]
    pub(crate) path: PathChoice,

    /// Force an algorithm (WEIR_ALGO: ring, tree, dbtree, hd, rd, hier, chain, pairwise, bruck)
    #[arg(long, value_name = "NAME")]
    pub(crate) algo: Option<String>,

    /// Skip the Open MPI baseline
    #[arg(long)]
    pub(crate) no_mpi: bool,

    /// Use this Open MPI btl against every Weir path: `tcp` (on loopback) or `vader` (shared
    /// memory) [default: each pair's own, vader against shm and tcp against udp]
    #[arg(long, value_name = "tcp|vader")]
    pub(crate) mpi_btl: Option<MpiBtl>,

    /// Alternate the Weir and MPI sweeps this many times; each size reports its median run
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=9))]
    pub(crate) repeat: u32,

    /// Pin rank r to core r mod cores (Open MPI binds its ranks to cores itself)
    #[arg(long)]
    pub(crate) pin: bool,

    /// Run every rank (and mpirun) under SCHED_FIFO priority 10 (root or RLIMIT_RTPRIO)
    #[arg(long)]
    pub(crate) rt: bool,

    /// Print one JSON object per size and data-path pair instead of the table
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
    #[arg(long)]
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

fn err(e: weir_bench::BenchError) -> BenchError {
    BenchError::new(e.to_string())
}

/// Run the benchmark and print its table or JSON rows.
pub(crate) fn run(op: CollOp, a: CollArgs) -> Result<(), BenchError> {
    let plan = CollPlan {
        op,
        ranks: a.ranks,
        sizes: a.sizes.clone().unwrap_or_else(|| {
            if a.quick {
                vec![8, 8 << 20]
            } else {
                coll::default_sizes()
            }
        }),
        budget: a.budget.unwrap_or(if a.quick { 0.1 } else { 0.5 }),
        path: a.path,
        algo: a.algo.clone(),
        mpi: !a.no_mpi,
        mpi_btl: a.mpi_btl,
        repeat: a.repeat,
        pin: a.pin,
        rt: a.rt,
        timeout: Duration::from_secs(a.timeout),
        worker: PeerCmd::current_exe(&["bench-coll-worker"]).map_err(err)?,
    };
    let report = coll::run(&plan).map_err(err)?;
    if a.json {
        for r in &report.rows {
            println!("{}", serde_json::to_string(r)?);
        }
    } else {
        print!("{}", table(&plan, &report));
    }
    if report.any_wrong() {
        return Err(BenchError::new("wrong results (see #wrong)"));
    }
    Ok(())
}

/// The hidden worker: one rank of the Weir side.
pub(crate) fn worker(w: WorkerArgs) -> Result<(), BenchError> {
    coll::worker(w.op, &w.sizes, w.budget, w.cpu, w.rt).map_err(err)
}

fn table(plan: &CollPlan, report: &CollReport) -> String {
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
            WeirPath::Udp => "udp = the Weir transport over UDP on loopback (WEIR_SHM=0)",
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
