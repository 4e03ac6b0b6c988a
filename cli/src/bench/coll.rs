//! `weir bench allreduce|allgather|reduce-scatter --ranks N`: the options and printing. The
//! measurement is `weir_bench::coll`: Weir's communicator against Open MPI in the same run, each
//! data path against its like (Weir shared memory against Open MPI vader, the Weir transport
//! over UDP against Open MPI TCP, both on loopback), in nccl-tests columns.

use std::time::Duration;

use clap::Args;
use weir_bench::coll::{self, CollOp, CollPlan, MpiBtl, PathChoice};
use weir_bench::peer::PeerCmd;

use super::{BenchError, MAX_MESSAGE};
use crate::args::{real, size_at_most};

/// Options of `weir bench allreduce|allgather|reduce-scatter`.
#[derive(Debug, Args)]
pub(crate) struct CollArgs {
    /// Ranks (processes on this host), 2 to 64
    #[arg(long, short = 'n', default_value_t = 2, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(2..=64))]
    pub(crate) ranks: u32,

    /// Sizes in bytes of float32 data, comma-separated; K/M/G are KiB/MiB/GiB, 1 B to 1G
    /// [default: 8 B to 256 MiB in ×4 steps plus 256M; --quick: 8,8M]
    #[arg(long, value_name = "LIST", value_delimiter = ',', allow_negative_numbers = true,
          value_parser = size_at_most(MAX_MESSAGE))]
    pub(crate) sizes: Option<Vec<u64>>,

    /// Time budget of the timed calls at each size, seconds, in (0, 60] [default: 0.5;
    /// --quick: 0.1]
    #[arg(long, value_name = "SECS", allow_negative_numbers = true,
          value_parser = real(0.0, true, 60.0, "s"))]
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
    #[arg(long, default_value_t = 1, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..=9))]
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

    /// Where the udp path's ranks run their engine (WEIR_ENGINE): host (each rank's own Host),
    /// inproc (a firmware engine thread in each rank, reached through rings) or daemon (one
    /// `weir engine` daemon for all the ranks, started by the bench; docs/engine.md)
    #[arg(long, default_value = "host", value_parser = super::engine_parser())]
    pub(crate) engine: weir_bench::engine_side::EngineKind,

    /// Give up on a sweep (Weir's ranks or mpirun) after this many seconds (1 to 86400)
    #[arg(long, default_value_t = 600, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
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
        worker: PeerCmd::current_exe(&["bench-coll-worker"])?,
        engine: a.engine,
    };
    let report = coll::run(&plan)?;
    if a.json {
        for r in &report.rows {
            println!("{}", serde_json::to_string(r)?);
        }
    } else {
        print!("{}", coll::table(&plan, &report));
    }
    if report.any_wrong() {
        return Err(BenchError::new("wrong results (see #wrong)"));
    }
    Ok(())
}

/// The hidden worker: one rank of the Weir side.
pub(crate) fn worker(w: WorkerArgs) -> Result<(), BenchError> {
    coll::worker(w.op, &w.sizes, w.budget, w.cpu, w.rt)
}
