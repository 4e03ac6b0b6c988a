//! `weir run -n N -- PROGRAM ARGS…`: start N local ranks of a program with the environment
//! torchrun sets (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR`,
//! `MASTER_PORT`), so that `weir_comm::Communicator::from_env` bootstraps them.
//!
//! Contract: every rank's stdout and stderr pass through unchanged; `weir run` waits for all of
//! them and succeeds only if every rank does. When one rank fails (non-zero exit or a signal),
//! the others get `--grace` seconds to notice (the communicator reports the failed peer on every
//! rank) and are then killed; the error names the first rank that failed and how.

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use clap::Args;

/// Options of `weir run`.
#[derive(Debug, Args)]
#[command(after_help = "Example: weir run -n 4 -- ./target/release/examples/allreduce")]
pub(crate) struct RunArgs {
    /// Ranks to start on this host
    #[arg(short = 'n', long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    ranks: u32,
    /// Address of rank 0's bootstrap listener
    #[arg(long, default_value = "127.0.0.1")]
    master_addr: String,
    /// Port of rank 0's bootstrap listener [default: a free port]
    #[arg(long)]
    master_port: Option<u16>,
    /// Seconds the other ranks get to exit after one fails, before they are killed
    #[arg(long, default_value_t = 10.0)]
    grace: f64,
    /// The program and its arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// Run `weir run`.
pub(crate) fn run(a: RunArgs) -> Result<(), String> {
    let (program, args) = a.command.split_first().ok_or("no program given")?;
    if !(a.grace.is_finite() && a.grace >= 0.0) {
        return Err("--grace must be a non-negative number of seconds".into());
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

/// A free TCP port on loopback for a bootstrap listener (bound and released; rank 0 binds it
/// moments later).
pub(crate) fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

/// Local ranks started with torchrun's environment. Ranks still running when this is dropped
/// are killed and reaped, so an error path leaves no strays.
#[derive(Debug)]
pub(crate) struct Ranks {
    /// `None` once the rank's exit has been collected.
    procs: Vec<Option<Child>>,
}

/// How [`Ranks::wait`] ended other than with every rank succeeding.
#[derive(Debug)]
pub(crate) enum RankEnd {
    /// The first rank that failed, and how (the others were stopped after the grace period).
    Failed(usize, ExitStatus),
    /// A rank was still running at the limit (all were then killed).
    Running(usize),
    /// Waiting on a rank failed.
    Wait(usize, std::io::Error),
}

impl std::fmt::Display for RankEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RankEnd::Failed(rank, status) => write!(f, "rank {rank} failed ({status})"),
            RankEnd::Running(rank) => write!(f, "rank {rank} did not exit in time"),
            RankEnd::Wait(rank, e) => write!(f, "rank {rank}: wait failed: {e}"),
        }
    }
}

impl Ranks {
    /// Start `ranks` processes, rank `r` from `command(r)` with `RANK`, `WORLD_SIZE`,
    /// `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR` and `MASTER_PORT` added. On a failed
    /// start the ranks already running are stopped and the rank is returned with the error.
    pub(crate) fn spawn(
        ranks: u32,
        master_addr: &str,
        port: u16,
        mut command: impl FnMut(u32) -> Command,
    ) -> Result<Ranks, (u32, std::io::Error)> {
        let mut out = Ranks { procs: Vec::new() };
        for rank in 0..ranks {
            let child = command(rank)
                .env("RANK", rank.to_string())
                .env("WORLD_SIZE", ranks.to_string())
                .env("LOCAL_RANK", rank.to_string())
                .env("LOCAL_WORLD_SIZE", ranks.to_string())
                .env("MASTER_ADDR", master_addr)
                .env("MASTER_PORT", port.to_string())
                .spawn()
                .map_err(|e| (rank, e))?;
            out.procs.push(Some(child));
        }
        Ok(out)
    }

    /// Rank `rank`'s piped stdout (once).
    pub(crate) fn take_stdout(&mut self, rank: usize) -> Option<std::process::ChildStdout> {
        self.procs.get_mut(rank)?.as_mut()?.stdout.take()
    }

    /// Wait for every rank. After the first failure the others get `grace` to exit and are
    /// then killed; with a `limit`, ranks still running after it are killed too.
    pub(crate) fn wait(&mut self, grace: Duration, limit: Option<Duration>) -> Result<(), RankEnd> {
        let start = Instant::now();
        let mut failure: Option<(RankEnd, Instant)> = None;
        loop {
            let mut running = None;
            for (rank, slot) in self.procs.iter_mut().enumerate() {
                let Some(c) = slot else { continue };
                match c.try_wait() {
                    Ok(Some(status)) => {
                        if !status.success() && failure.is_none() {
                            failure = Some((RankEnd::Failed(rank, status), Instant::now()));
                        }
                        *slot = None;
                    }
                    Ok(None) => running = running.or(Some(rank)),
                    Err(e) => {
                        self.kill_all();
                        return Err(RankEnd::Wait(rank, e));
                    }
                }
            }
            let Some(rank) = running else { break };
            if failure.as_ref().is_some_and(|(_, t)| t.elapsed() > grace) {
                self.kill_all();
                break;
            }
            if limit.is_some_and(|l| start.elapsed() > l) {
                self.kill_all();
                return Err(failure.map_or(RankEnd::Running(rank), |(f, _)| f));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        failure.map_or(Ok(()), |(f, _)| Err(f))
    }

    fn kill_all(&mut self) {
        for c in self.procs.iter_mut().filter_map(Option::take) {
            let mut c = c;
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Ranks {
    fn drop(&mut self) {
        self.kill_all();
    }
}

#[cfg(test)]
mod tests {
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
