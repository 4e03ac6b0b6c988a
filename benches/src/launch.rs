//! Local ranks started with the environment torchrun sets (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
//! `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`), so that
//! `weir_comm::Communicator::from_env` bootstraps them: the launcher of `weir run` and of the
//! collective benches ([`crate::coll`]).

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// A free TCP port on loopback for a bootstrap listener (bound and released; rank 0 binds it
/// moments later).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

/// Local ranks started with torchrun's environment. Ranks still running when this is dropped
/// are killed and reaped, so an error path leaves no strays.
#[derive(Debug)]
pub struct Ranks {
    /// `None` once the rank's exit has been collected.
    procs: Vec<Option<Child>>,
}

/// How [`Ranks::wait`] ended other than with every rank succeeding.
#[derive(Debug)]
pub enum RankEnd {
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
    pub fn spawn(
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
    pub fn take_stdout(&mut self, rank: usize) -> Option<std::process::ChildStdout> {
        self.procs.get_mut(rank)?.as_mut()?.stdout.take()
    }

    /// Wait for every rank. After the first failure the others get `grace` to exit and are
    /// then killed; with a `limit`, ranks still running after it are killed too.
    pub fn wait(&mut self, grace: Duration, limit: Option<Duration>) -> Result<(), RankEnd> {
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
