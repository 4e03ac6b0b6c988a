//! `weir bench nccl-abi`: its arguments and its table; the measurement is
//! [`weir_bench::nccl`]'s.

use std::path::PathBuf;

use clap::Args;
use weir_bench::BenchError;
use weir_bench::nccl::{self, Event, NcclOptions};
use weir_bench::peer::PeerCmd;
use weir_bench::units;

use super::MAX_MESSAGE;
use crate::args::{real, size_at_most};

/// Options of `weir bench nccl-abi`.
#[derive(Debug, Args)]
pub(crate) struct NcclAbiArgs {
    /// Message sizes, comma-separated; K/M/G are KiB/MiB/GiB, 1 B to 1G (the plugin's
    /// maxP2pBytes) [default: 8K,32K,128K,512K,2M,8M,32M,64M; --quick: 1M,8M]
    #[arg(long, value_name = "LIST", value_delimiter = ',', allow_negative_numbers = true,
          value_parser = size_at_most(MAX_MESSAGE))]
    pub(crate) sizes: Option<Vec<u64>>,

    /// Loss injected at the plugin receiver, fractions or percentages [default: 0]
    #[arg(long, value_name = "LIST", value_delimiter = ',', allow_negative_numbers = true,
          value_parser = units::parse_loss)]
    pub(crate) loss: Option<Vec<f64>>,

    /// Data requests in flight per comm (NCCL keeps NCCL_STEPS = 8 per channel); at most 30,
    /// as two more of the plugin's 32 carry the start and end markers
    #[arg(long, default_value_t = 8, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..=30))]
    pub(crate) inflight: u32,

    /// Payload bytes per point [default: 128M below 1 MiB messages, 512M from 1 MiB;
    /// --quick: 32M]
    #[arg(long, value_name = "SIZE", allow_negative_numbers = true, value_parser = units::parse_size)]
    pub(crate) bytes_per_point: Option<u64>,

    /// Time limit per point, 0.01 to 600 s: the sender posts no new message after it
    #[arg(long, value_name = "SECS", default_value_t = 2.0, allow_negative_numbers = true,
          value_parser = real(0.01, false, 600.0, "s"))]
    pub(crate) point_secs: f64,

    /// Runs per point; the run with the median bandwidth is reported [default: 3; --quick: 1]
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..=99))]
    pub(crate) repeat: Option<u32>,

    /// `dlopen` this plugin (e.g. target/release/libnccl-net-weir.so) instead of using the
    /// ncclNetPlugin_v12 table linked into `weir`
    #[arg(long, value_name = "PATH")]
    pub(crate) lib: Option<PathBuf>,

    /// Pin the sender to core 0 and the receiver to core 1
    #[arg(long)]
    pub(crate) pin: bool,

    /// Run the peers under SCHED_FIFO priority 10 (needs root or RLIMIT_RTPRIO)
    #[arg(long)]
    pub(crate) rt: bool,

    /// Print one JSON object per row instead of the table
    #[arg(long)]
    pub(crate) json: bool,

    /// A short run: 1 MiB and 8 MiB, one run each, 32 MiB per point
    #[arg(long)]
    pub(crate) quick: bool,

    /// Where the plugin runs its engine (WEIR_ENGINE): host (each peer's own Host), inproc
    /// (a firmware engine thread in each peer, reached through rings) or daemon (a
    /// `weir engine` daemon per peer, started by the bench; docs/engine.md)
    #[arg(long, default_value = "host", value_parser = super::engine_parser())]
    pub(crate) engine: weir_bench::engine_side::EngineKind,
}

impl NcclAbiArgs {
    fn options(&self) -> NcclOptions {
        NcclOptions {
            sizes: self.sizes.clone(),
            loss: self.loss.clone(),
            inflight: self.inflight,
            bytes_per_point: self.bytes_per_point,
            point_secs: self.point_secs,
            repeat: self.repeat,
            lib: self.lib.clone(),
            pin: self.pin,
            rt: self.rt,
            quick: self.quick,
            engine: self.engine,
        }
    }
}

/// Run `weir bench nccl-abi`: the nccl-tests-style table, or one JSON line per row.
pub(crate) fn run(a: &NcclAbiArgs, peer: &PeerCmd) -> Result<(), BenchError> {
    let json = a.json;
    nccl::run(&a.options(), peer, &mut |e| match e {
        Event::Start { notes, .. } if json => notes.iter().for_each(|n| eprintln!("{n}")),
        Event::Start { header, notes } => {
            print!("{header}");
            notes.iter().for_each(|n| println!("{n}"));
            println!("#");
            println!("{}", nccl::table_heading());
        }
        Event::Row(r) if json => {
            if let Ok(s) = serde_json::to_string(r) {
                println!("{s}");
            }
        }
        Event::Row(r) => println!("{}", nccl::table_row(r)),
        Event::End { psi_after } if !json => println!("{}", nccl::table_footer(psi_after)),
        Event::End { .. } => {}
    })
}
