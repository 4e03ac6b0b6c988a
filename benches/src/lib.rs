//! Weir's benchmarks as a library; `weir bench …` (the `cli/` crate) only parses arguments
//! and prints what these modules measure.
//!
//! * [`transport`] — `weir bench transport`: weir and go-back-N under injected loss against
//!   single-stream kernel TCP ([`tcp`]) in the same run; [`weir_side`] is the only module
//!   that knows the weir engine. Rows, table and JSON lines: [`report`].
//! * [`nccl`] — `weir bench nccl-abi`: the NCCL net plugin's data path, driven as NCCL's proxy
//!   drives it, against an NCCL-socket-like TCP path ([`nccl_side`]).
//! * [`plugin`] — the one driver of the plugin's C tables (`ncclNetPlugin_v8` … `v12`, linked
//!   in or `dlopen`ed): used by the nccl-abi bench and by this crate's ABI tests
//!   (`benches/tests/abi.rs`).
//! * [`process`] — the one process-peer harness: spawn a child, talk to it in lines over its
//!   stdin/stdout, every wait with a timeout, its stderr kept for failure messages, killed and
//!   reaped on drop. The benches, the ABI tests and the multi-process tests of `weir-tests`
//!   use it.
//! * [`peer`] — the benches' two-process protocol on top of [`process`]: a receiver and a
//!   sender, each a fresh process, one JSON line per message. The peer is any executable that
//!   calls [`peer::main`] for a subcommand; `weir`'s is the hidden `weir bench-peer` (the
//!   benches spawn their own executable, so the peers run exactly the code that was built with
//!   it). [`peer::PeerCmd`] names it.
//! * [`coll`] — `weir bench allreduce|allgather|reduce-scatter`: Weir's communicator over N
//!   local ranks ([`launch`]) against Open MPI, each data path against its like (shared memory
//!   against vader, UDP against TCP); [`coll::rank`] is the rank side.
//! * [`incast`] — `weir bench incast`: N sender processes to one receiver with small kernel
//!   socket buffers; per-sender completion, latency and recovery, aggregate goodput.
//! * [`sys`] (PSI, pinning, SCHED_FIFO, pre-touched buffers, latency histograms) and [`units`]
//!   (sizes and loss rates as typed and printed).
//!
//! How the figures are taken and what the machine facts next to them mean:
//! `docs/benchmarking.md`. This is an I/O crate in the sense of `docs/architecture.md` (it
//! reads the OS clock, spawns threads and processes and opens sockets), so the workspace's
//! sans-IO lints are off here.
#![allow(clippy::disallowed_methods)]
#![warn(missing_docs)]

pub mod coll;
pub mod engine_side;
pub mod incast;
pub mod launch;
pub mod nccl;
pub mod nccl_side;
pub mod peer;
pub mod plugin;
pub mod process;
pub mod report;
pub mod sys;
pub mod tcp;
pub mod transport;
pub mod units;
pub mod weir_side;

use std::fmt;

use serde::{Deserialize, Serialize};

/// The plugin crate this crate links (its `ffi` types and its linked-in tables). Tests and
/// tools that drive the plugin through [`plugin::Net`] should name its types through this
/// re-export, so that they are the same types the driver uses.
pub use nccl_net_weir;

/// A transport under test.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The RoCEv2-like baseline: one path, go-back-N (`Config::go_back_n()`).
    Gbn,
    /// Kernel TCP over loopback, one connection.
    #[default]
    Tcp,
    /// Weir: multipath spraying, selective retransmission (`Config::default()`).
    Weir,
}

impl Mode {
    /// Every mode, in the order of their names.
    pub const ALL: [Mode; 3] = [Mode::Gbn, Mode::Tcp, Mode::Weir];

    /// The name on the command line, in the table and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Gbn => "gbn",
            Mode::Tcp => "tcp",
            Mode::Weir => "weir",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = BenchError;

    fn from_str(s: &str) -> Result<Mode, BenchError> {
        Mode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| BenchError::new(format!("unknown mode `{s}` (gbn, tcp, weir)")))
    }
}

/// An error of a benchmark, as text for the user.
#[derive(Debug)]
pub struct BenchError(String);

impl BenchError {
    /// An error saying `msg`.
    pub fn new(msg: impl Into<String>) -> Self {
        BenchError(msg.into())
    }
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

impl From<std::io::Error> for BenchError {
    fn from(e: std::io::Error) -> Self {
        BenchError(e.to_string())
    }
}

impl From<serde_json::Error> for BenchError {
    fn from(e: serde_json::Error) -> Self {
        BenchError(format!("bad JSON: {e}"))
    }
}

impl From<std::num::TryFromIntError> for BenchError {
    fn from(e: std::num::TryFromIntError) -> Self {
        BenchError(e.to_string())
    }
}

impl From<plugin::NcclError> for BenchError {
    fn from(e: plugin::NcclError) -> Self {
        BenchError(e.to_string())
    }
}

/// Reports a test that cannot run here as skipped: one line `SKIPPED <test>: <why>` (and
/// `; install: <command>` when a package would fix it), written in one piece, on a line of its
/// own, straight to the process's stderr — past libtest's capture, which takes only the print
/// macros — so `cargo test` shows it and `scripts/test.sh` lists it at the end.
pub fn report_skipped(test: &str, why: &str, install: Option<&str>) {
    use std::io::Write as _;
    let hint = install
        .map(|i| format!("; install: {i}"))
        .unwrap_or_default();
    let line = format!("\nSKIPPED {test}: {why}{hint}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// The run with the median of `key` (runs without one only if all lack it).
pub fn median_by<T>(mut runs: Vec<T>, key: impl Fn(&T) -> Option<f64>) -> T {
    let mut measured: Vec<usize> = (0..runs.len())
        .filter(|&i| key(&runs[i]).is_some())
        .collect();
    if measured.is_empty() {
        return runs.swap_remove(0);
    }
    measured.sort_by(|&a, &b| {
        key(&runs[a])
            .partial_cmp(&key(&runs[b]))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mid = measured[measured.len() / 2];
    runs.swap_remove(mid)
}

/// Whether this process may switch to SCHED_FIFO at [`sys::RT_PRIORITY`].
pub fn rt_permitted() -> bool {
    // SAFETY: geteuid has no preconditions; getrlimit fills the struct we pass.
    unsafe {
        if libc::geteuid() == 0 {
            return true;
        }
        let mut lim: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_RTPRIO, &mut lim) == 0
            && lim.rlim_cur >= sys::RT_PRIORITY as libc::rlim_t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_prefers_measured_runs() {
        let r = |g: Option<f64>| g;
        assert_eq!(
            median_by(vec![r(Some(3.0)), r(Some(1.0)), r(Some(2.0))], |r| *r),
            Some(2.0)
        );
        assert_eq!(median_by(vec![r(None), r(Some(1.0))], |r| *r), Some(1.0));
        assert_eq!(median_by(vec![r(None)], |r| *r), None);
    }

    #[test]
    fn modes_by_name() {
        for m in Mode::ALL {
            assert_eq!(m.as_str().parse::<Mode>().expect("name"), m);
        }
        assert!("rdma".parse::<Mode>().is_err());
    }
}
