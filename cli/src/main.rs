//! `weir`: the one command-line front end of the Weir stack.
//!
//! `weir bench` (transport, nccl-abi, allreduce/allgather/reduce-scatter: each against its
//! baseline in the same run), `weir cc` (congestion-control policies), `weir sim` (the
//! simulator: run, sweep), `weir engine` (the engine daemon) and `weir run` (a local launcher with torchrun's environment). This
//! crate is an I/O crate in the sense of docs/architecture.md: it reads the
//! OS clock, spawns threads and processes and opens sockets, so the workspace's sans-IO lints
//! are switched off here.
#![allow(clippy::disallowed_methods)]

mod args;
mod bench;
mod cc;
mod engine;
mod launch;
mod sim;
mod simplot;
mod sweep;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Weir: collective communication over a reliable multipath transport for lossy Ethernet.
#[derive(Debug, Parser)]
#[command(
    name = "weir",
    version,
    propagate_version = true,
    after_help = "Start with `weir bench transport` (about a minute; `--quick` for a smoke run, \
                  `--json` for one JSON object per row)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Benchmarks against baselines measured in the same run (nccl-tests style tables).
    Bench(bench::BenchArgs),
    /// Congestion control: list, show, check and run policies on a model bottleneck.
    Cc(cc::CcArgs),
    /// The packet-level simulator: run a scenario file (docs/sim.md).
    Sim(sim::SimArgs),
    /// Run the engine daemon: one engine for every local process, attached through a Unix
    /// socket with rings and memory in shared memfds (docs/engine.md).
    Engine(engine::EngineArgs),
    /// Start N local ranks of a program with torchrun's environment (RANK, WORLD_SIZE,
    /// LOCAL_RANK, MASTER_ADDR, MASTER_PORT) and wait for all of them.
    Run(launch::RunArgs),
    /// Internal: one side of a two-process benchmark (spawned by `weir bench`). Reads its
    /// parameters as one JSON line on stdin and answers with JSON lines on stdout.
    #[command(name = "bench-peer", hide = true)]
    BenchPeer,
    /// Internal: one rank of `weir bench allreduce|allgather|reduce-scatter`.
    #[command(name = "bench-coll-worker", hide = true)]
    BenchCollWorker(bench::coll::WorkerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench::run(args).map_err(|e| e.to_string()),
        Command::Cc(args) => cc::run(args).map_err(|e| e.to_string()),
        Command::Sim(args) => sim::run(args),
        Command::Engine(args) => engine::run(args),
        Command::Run(args) => launch::run(args),
        Command::BenchPeer => weir_bench::peer::main().map_err(|e| e.to_string()),
        Command::BenchCollWorker(w) => bench::coll::worker(w).map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bench_transport_parses_lists() {
        let cli = Cli::try_parse_from([
            "weir",
            "bench",
            "transport",
            "--sizes",
            "64K,8M",
            "--loss",
            "0,1%",
            "--modes",
            "weir,tcp",
            "--json",
        ])
        .expect("parses");
        let Command::Bench(args) = cli.command else {
            panic!("not bench")
        };
        let bench::BenchCommand::Transport(t) = args.command else {
            panic!("not transport")
        };
        assert_eq!(t.sizes, Some(vec![64 << 10, 8 << 20]));
        assert_eq!(t.loss, Some(vec![0.0, 0.01]));
        assert!(t.json);
    }
}
