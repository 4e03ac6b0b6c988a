//! `weir run -n N -- PROGRAM ARGS…`: start N local ranks of a program with the environment
//! torchrun sets (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR`,
//! `MASTER_PORT`), so that `weir_comm::Communicator::from_env` bootstraps them.
//!
//! Contract: every rank's stdout and stderr pass through unchanged; `weir run` waits for all of
//! them and succeeds only if every rank does. When one rank fails (non-zero exit or a signal),
//! the others get `--grace` seconds to notice (the communicator reports the failed peer on every
//! rank) and are then killed; the error names the first rank that failed and how. The
//! launcher itself ([`Ranks`]) is `weir_bench::launch`, shared with the collective benches.

use std::process::Command;
use std::time::Duration;

use clap::Args;
use weir_bench::launch::{RankEnd, Ranks, free_port};

/// Options of `weir run`.
#[derive(Debug, Args)]
#[command(after_help = "Example: weir run -n 4 -- ./target/release/examples/allreduce")]
pub(crate) struct RunArgs {
    /// Ranks to start on this host
    #[arg(short = 'n', long, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    ranks: u32,
    /// Address of rank 0's bootstrap listener
    #[arg(long, default_value = "127.0.0.1")]
    master_addr: String,
    /// Port of rank 0's bootstrap listener, 1 to 65535 [default: a free port]
    #[arg(long, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u16).range(1..))]
    master_port: Option<u16>,
    /// Seconds the other ranks get to exit after one fails, before they are killed (0 to 3600)
    #[arg(long, default_value_t = 10.0, allow_negative_numbers = true,
          value_parser = crate::args::real(0.0, false, 3600.0, "s"))]
    grace: f64,
    /// The program and its arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// Run `weir run`.
pub(crate) fn run(a: RunArgs) -> Result<(), String> {
    let (program, args) = a.command.split_first().ok_or("no program given")?;
    // `--grace` is range-checked by its parser; a `RunArgs` built in code is checked here.
    if !(a.grace.is_finite() && (0.0..=3600.0).contains(&a.grace)) {
        return Err("--grace must lie within 0..=3600 seconds".into());
    }
    let port = match a.master_port {
        Some(p) => p,
        None => free_port().map_err(|e| format!("no free port for the bootstrap: {e}"))?,
    };
    let mut ranks = Ranks::spawn(a.ranks, &a.master_addr, port, |_| {
        let mut c = Command::new(program);
        c.args(args);
        c
    })
    .map_err(|(rank, e)| format!("rank {rank}: cannot start {program}: {e}"))?;
    match ranks.wait(Duration::from_secs_f64(a.grace), None) {
        Ok(()) => Ok(()),
        Err(RankEnd::Failed(rank, status)) => Err(format!(
            "rank {rank} of {} failed ({status}); the remaining ranks were given {} s",
            a.ranks, a.grace
        )),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn args(ranks: u32, cmd: &[&str]) -> RunArgs {
        RunArgs {
            ranks,
            master_addr: "127.0.0.1".into(),
            master_port: None,
            grace: 5.0,
            command: cmd.iter().map(|s| (*s).to_string()).collect(),
        }
    }

    #[test]
    fn every_rank_sees_its_environment() {
        let dir = std::env::temp_dir().join(format!("weir-run-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let script = format!(
            "echo \"$RANK $WORLD_SIZE $LOCAL_RANK $MASTER_ADDR\" > {}/$RANK",
            dir.display()
        );
        run(args(3, &["sh", "-c", &script])).expect("all ranks succeed");
        for r in 0..3 {
            let text = std::fs::read_to_string(dir.join(r.to_string())).expect("rank wrote");
            assert_eq!(text.trim(), format!("{r} 3 {r} 127.0.0.1"));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failing_rank_is_named_and_the_others_are_stopped() {
        // Rank 1 fails at once; the others would sleep for a minute.
        let script = "if [ \"$RANK\" = 1 ]; then exit 3; fi; sleep 60";
        let mut a = args(3, &["sh", "-c", script]);
        a.grace = 0.2;
        let t0 = Instant::now();
        let err = run(a).unwrap_err();
        assert!(err.starts_with("rank 1 of 3 failed"), "{err}");
        assert!(
            t0.elapsed() < Duration::from_secs(50),
            "the sleepers were killed"
        );
    }

    #[test]
    fn a_missing_program_is_an_error() {
        let err = run(args(2, &["/nonexistent/weir-no-such-program"])).unwrap_err();
        assert!(err.contains("cannot start"), "{err}");
    }
}
