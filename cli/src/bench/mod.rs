//! `weir bench`: the arguments of each benchmark and the printing of its results. The
//! measurements themselves are the `weir-bench` library's ([`weir_bench::transport`],
//! [`weir_bench::nccl`]); the collective benches are [`coll`]'s.

pub(crate) mod coll;
mod nccl;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand};
use weir_bench::Mode;
use weir_bench::coll::CollOp;
use weir_bench::incast::{self, IncastOptions};
use weir_bench::peer::PeerCmd;
use weir_bench::report;
use weir_bench::transport::{Event, TransportOptions};
use weir_bench::units;

use crate::args::{real, size_at_most, size_or_zero_at_most};

/// The largest message any bench allocates per slot (and the plugin's maxP2pBytes).
pub(crate) const MAX_MESSAGE: u64 = 1 << 30;
// The collective benches (`coll`) name it `super::BenchError`.
pub(crate) use weir_bench::BenchError;

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
    /// N sender processes to one receiver over loopback (small kernel receive buffers, so
    /// whole bursts drop): per-sender completion, latency and recovery, aggregate goodput
    /// against one sender alone in the same run.
    Incast(IncastArgs),
    /// Weir's AllReduce over N local ranks against Open MPI in the same run, shared memory
    /// against shared memory and UDP against TCP
    /// (nccl-tests columns; spawns the ranks itself)
    Allreduce(coll::CollArgs),
    /// Weir's AllGather over N local ranks against Open MPI in the same run, shared memory
    /// against shared memory and UDP against TCP
    Allgather(coll::CollArgs),
    /// Weir's ReduceScatter over N local ranks against Open MPI in the same run, shared memory
    /// against shared memory and UDP against TCP
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

A point whose peer process died, hung, reported an error or exited with a failure status is \
shown as `FAILED: <why>` (naming the peer, and what the other peer had done) with no figures: \
with several runs per point, one failed run fails the point. After the table the command lists \
the failed points and exits with status 1.

On a shared machine, run under `chrt -f 10` or with `--rt` (root), and read the CPU pressure \
printed in the header and footer.";

/// Options of `weir bench transport`.
#[derive(Debug, Args)]
pub(crate) struct TransportArgs {
    /// Message sizes, comma-separated; K/M/G are KiB/MiB/GiB, 1 B to 1G [default: 64K,1M,8M;
    /// --quick: 1M]
    #[arg(long, value_name = "LIST", value_delimiter = ',', allow_negative_numbers = true,
          value_parser = size_at_most(MAX_MESSAGE))]
    pub(crate) sizes: Option<Vec<u64>>,

    /// Injected loss probabilities, fractions or percentages [default: 0,0.001,0.01,0.05;
    /// --quick: 0,0.01]
    #[arg(long, value_name = "LIST", value_delimiter = ',', allow_negative_numbers = true,
          value_parser = units::parse_loss)]
    pub(crate) loss: Option<Vec<f64>>,

    /// Modes to measure besides the TCP baseline, which always runs [default: weir,gbn]
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = mode_parser())]
    pub(crate) modes: Option<Vec<Mode>>,

    /// Payload bytes per point [default: 128M below 1 MiB messages, 256M below 8 MiB, 512M
    /// from 8 MiB; --quick: 16M]; at least two messages
    #[arg(long, value_name = "SIZE", allow_negative_numbers = true, value_parser = units::parse_size)]
    pub(crate) bytes_per_point: Option<u64>,

    /// Time limit per point, 0.01 to 600 s: the sender posts no new message after it
    /// [default: 2; --quick: 1]
    #[arg(long, value_name = "SECS", allow_negative_numbers = true,
          value_parser = real(0.01, false, 600.0, "s"))]
    pub(crate) point_secs: Option<f64>,

    /// Congestion control of the weir/gbn runs, comma-separated: built-in names, `all`, or
    /// TOML files with a [cc] table [default: the transport's default, fixed]; one row per
    /// mode × algorithm × loss
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub(crate) cc: Option<Vec<String>>,

    /// Messages in flight (posted, not yet completed) at the sender
    #[arg(long, default_value_t = 4, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub(crate) window: u32,

    /// Runs per point; the run with the median goodput is reported [default: 3; --quick: 1]
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..=99))]
    pub(crate) repeat: Option<u32>,

    /// Ping-pong round trips per mode (at most one second's worth) [default: 20000; --quick:
    /// 2000]
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) pingpong: Option<u64>,

    /// Seed of the loss injection
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
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

    /// Where the weir/gbn peers run their engine: host (each peer's own Host), inproc (a
    /// firmware engine thread in each peer, reached through rings) or daemon (a `weir engine`
    /// daemon per peer, started by the bench; docs/engine.md)
    #[arg(long, default_value = "host", value_parser = engine_parser())]
    pub(crate) engine: weir_bench::engine_side::EngineKind,
}

/// Options of `weir bench incast`.
#[derive(Debug, Args)]
pub(crate) struct IncastArgs {
    /// Sender processes, each with its own connection
    #[arg(long, default_value_t = 16, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub(crate) senders: u32,

    /// Message size; K/M/G are KiB/MiB/GiB, 1 B to 1G [default: 1M; --quick: 256K]
    #[arg(long, value_name = "SIZE", allow_negative_numbers = true,
          value_parser = size_at_most(MAX_MESSAGE))]
    pub(crate) size: Option<u64>,

    /// Messages per sender, 2 to 1000000 [default: 16; --quick: 8]
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u64).range(2..=1_000_000))]
    pub(crate) messages: Option<u64>,

    /// Messages in flight per sender
    #[arg(long, default_value_t = 4, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub(crate) window: u32,

    /// Kernel receive buffer per receiver socket (SO_RCVBUF, at most 1G; 0: the datapath's
    /// default)
    #[arg(long, value_name = "SIZE", default_value = "256K", allow_negative_numbers = true,
          value_parser = size_or_zero_at_most(1 << 30))]
    pub(crate) rcvbuf: u64,

    /// The receiver receives on all its sockets, at consecutive ports its peers spread
    /// packets over (HostConfig::rx_spread): more kernel buffer for the incast
    #[arg(long)]
    pub(crate) rx_spread: bool,

    /// Senders the receiver grants its buffer to at once, the others waiting their turn
    /// (transport `rx_grants`; 0: every sender shares it) [default: the transport's, 1]
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(0..=4096))]
    pub(crate) rx_grants: Option<u32>,

    /// Bytes a granted sender moves per turn while others wait (transport `rx_turn_bytes`;
    /// at least 8K) [default: the transport's, 16M]
    #[arg(long, value_name = "SIZE", allow_negative_numbers = true,
          value_parser = size_at_most(1 << 40))]
    pub(crate) rx_turn: Option<u64>,

    /// Where the senders run their engine: host (each sender's own Host), inproc (an engine
    /// thread in each sender) or daemon (one `weir engine` daemon for all the senders,
    /// started by the bench); the receiver keeps its own Host (docs/engine.md)
    #[arg(long, default_value = "host", value_parser = engine_parser())]
    pub(crate) engine: weir_bench::engine_side::EngineKind,

    /// Congestion control: a built-in name or a TOML file with a [cc] table
    #[arg(long, value_name = "NAME")]
    pub(crate) cc: Option<String>,

    /// Run the peers under SCHED_FIFO priority 10 (needs root or RLIMIT_RTPRIO)
    #[arg(long)]
    pub(crate) rt: bool,

    /// Time limit of each phase, 0.1 to 600 s [default: 30; --quick: 15]
    #[arg(long, value_name = "SECS", allow_negative_numbers = true,
          value_parser = real(0.1, false, 600.0, "s"))]
    pub(crate) timeout: Option<f64>,

    /// Print one JSON object per row instead of the table
    #[arg(long)]
    pub(crate) json: bool,

    /// A small run for smoke tests: 8 messages of 256 KiB per sender
    #[arg(long)]
    pub(crate) quick: bool,

    /// Rounds of reference (one sender) and incast, alternated, 1 to 100; a summary gives
    /// the medians [default: 3; --quick: 1]
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub(crate) repeat: Option<u32>,
}

impl IncastArgs {
    fn options(&self) -> IncastOptions {
        IncastOptions {
            senders: self.senders,
            size: self.size,
            messages: self.messages,
            window: self.window,
            rcvbuf: self.rcvbuf,
            rx_spread: self.rx_spread,
            rx_grants: self.rx_grants,
            rx_turn: self.rx_turn,
            cc: self.cc.clone(),
            rt: self.rt,
            timeout_secs: self.timeout,
            quick: self.quick,
            repeat: self.repeat,
            engine: self.engine,
        }
    }
}

/// `--engine`: the names of `EngineKind` (host, inproc, daemon).
fn engine_parser() -> impl TypedValueParser<Value = weir_bench::engine_side::EngineKind> {
    use weir_bench::engine_side::EngineKind;
    PossibleValuesParser::new(
        [EngineKind::Host, EngineKind::Inproc, EngineKind::Daemon].map(EngineKind::name),
    )
    .try_map(|s| EngineKind::parse(&s).ok_or("host, inproc or daemon"))
}

/// `--modes`: the names of [`Mode`], with their help.
fn mode_parser() -> impl TypedValueParser<Value = Mode> {
    PossibleValuesParser::new([
        PossibleValue::new("gbn")
            .help("The RoCEv2-like baseline: one path, go-back-N (`Config::go_back_n()`)"),
        PossibleValue::new("tcp").help("Kernel TCP over loopback, one connection"),
        PossibleValue::new("weir")
            .help("Weir: multipath spraying, selective retransmission (`Config::default()`)"),
    ])
    .try_map(|s| s.parse::<Mode>())
}

impl TransportArgs {
    fn options(&self) -> TransportOptions {
        TransportOptions {
            sizes: self.sizes.clone(),
            loss: self.loss.clone(),
            modes: self.modes.clone(),
            bytes_per_point: self.bytes_per_point,
            point_secs: self.point_secs,
            cc: self.cc.clone(),
            window: self.window,
            repeat: self.repeat,
            pingpong: self.pingpong,
            seed: self.seed,
            pin: self.pin,
            rt: self.rt,
            quick: self.quick,
            engine: self.engine,
        }
    }
}

/// The peers of every two-process bench: this executable's hidden `bench-peer` subcommand.
fn peer_cmd() -> Result<PeerCmd, BenchError> {
    PeerCmd::current_exe(&["bench-peer"])
}

/// Run `weir bench ...`.
pub(crate) fn run(args: BenchArgs) -> Result<(), BenchError> {
    match args.command {
        BenchCommand::Transport(t) => run_transport(&t),
        BenchCommand::NcclAbi(a) => nccl::run(&a, &peer_cmd()?),
        BenchCommand::Incast(a) => run_incast(&a),
        BenchCommand::Allreduce(a) => coll::run(CollOp::Allreduce, a),
        BenchCommand::Allgather(a) => coll::run(CollOp::Allgather, a),
        BenchCommand::ReduceScatter(a) => coll::run(CollOp::ReduceScatter, a),
    }
}

/// `weir bench transport`: the table as the rows come, or one JSON line per row at the end.
fn run_transport(a: &TransportArgs) -> Result<(), BenchError> {
    let json = a.json;
    weir_bench::transport::run(&a.options(), &peer_cmd()?, &mut |e| match e {
        Event::Start { notes, .. } if json => notes.iter().for_each(|n| eprintln!("{n}")),
        Event::Start {
            machine,
            window,
            sched,
            repeat,
            notes,
        } => {
            print!("{}", report::table_header(machine, window, sched, repeat));
            notes.iter().for_each(|n| println!("{n}"));
        }
        Event::Row(_) if json => {}
        Event::Row(row) => println!("{}", report::table_row(row)),
        Event::End {
            rows,
            pingpong,
            machine,
        } => {
            if json {
                for row in rows {
                    println!("{}", report::json_line(row, pingpong, machine));
                }
            } else {
                print!("{}", report::table_footer(pingpong, machine));
            }
        }
    })
}

/// `weir bench incast`: the table as the rows come, or one JSON line per row.
fn run_incast(a: &IncastArgs) -> Result<(), BenchError> {
    let json = a.json;
    weir_bench::incast::run(&a.options(), &peer_cmd()?, &mut |e| match e {
        incast::Event::Start { header } if !json => print!("{header}"),
        incast::Event::Row(row) if json => println!("{}", incast::json_line(row)),
        incast::Event::Row(row) => println!("{}", incast::table_row(row)),
        incast::Event::Summary(m) if json => println!("{}", incast::summary_json(m)),
        incast::Event::Summary(m) => print!("{}", incast::summary_lines(m)),
        _ => {}
    })
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

    fn parse(args: &[&str]) -> Result<Wrap, clap::Error> {
        Wrap::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
    }

    #[test]
    fn options_from_arguments() {
        let o = parse(&[]).expect("parse").t.options();
        assert_eq!(o, TransportOptions::default());
        let o = parse(&[
            "--quick", "--modes", "tcp,gbn", "--sizes", "64K", "--window", "8",
        ])
        .expect("parse")
        .t
        .options();
        assert!(o.quick);
        assert_eq!(o.modes, Some(vec![Mode::Tcp, Mode::Gbn]));
        assert_eq!((o.sizes, o.window), (Some(vec![64 << 10]), 8));
    }

    #[test]
    fn bad_arguments_are_refused() {
        for args in [
            &["--sizes", "0"][..],
            &["--loss", "1.5"],
            &["--modes", "rdma"],
            &["--window", "0"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }
}
