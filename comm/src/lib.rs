// An I/O crate: it reads the OS clock, opens sockets, maps shared memory and spawns threads
// (the sans-IO rule of docs/architecture.md binds only the protocol crates; the schedules it
// runs come from the sans-IO `weir-collectives`).
#![allow(clippy::disallowed_methods)]
#![warn(missing_docs)]
//! Weir communicators: a group of ranks (processes or threads) that run collective operations
//! together, on top of the schedules of `weir-collectives`.
//!
//! Contract:
//!
//! * **Bootstrap** ([`Communicator::new`], [`Communicator::from_env`]): a TCP rendezvous at
//!   rank 0. Every rank sends its rank, host identity (hostname + kernel boot id), shared-memory
//!   namespace and process id; rank 0 checks the world size and that every rank appears once
//!   and answers with the full table. Errors (size mismatch, duplicate rank, unreachable
//!   master, timeout) are returned as [`CommError::Bootstrap`] on every rank that can be told;
//!   nothing waits longer than [`CommOptions::timeout`].
//! * **Control plane**: the bootstrap TCP star stays open. Rank 0 sees a peer's end-of-stream at
//!   once and broadcasts "rank R failed"; a rank whose transfer to a peer fails or times out
//!   reports it to rank 0, which broadcasts it. Every rank's running operation then returns an
//!   error naming the failed rank ([`CommError::PeerFailed`], [`CommError::PeerLeft`],
//!   [`CommError::Timeout`]).
//! * **Data planes**: ranks on the same host (same host identity and shared-memory namespace)
//!   exchange data through per-pair single-producer/single-consumer rings in POSIX shared
//!   memory; the receiver combines straight out of the ring slot. Ranks on other hosts (or all
//!   ranks with [`CommOptions::shm`] off, `WEIR_SHM=0`) use the Weir transport
//!   (`weir_datapath::Host` over UDP), one connection per pair, receiving straight into the
//!   caller's buffer where the schedule allows it.
//! * **Execution**: a collective is planned with `weir_collectives::plan` (algorithm from the
//!   α-β model [`weir_collectives::choose`], or forced by [`CommOptions::algorithm`] /
//!   `WEIR_ALGO`) and executed step by step with the schedule's snapshot semantics: a step's
//!   sends read the data as it was before the step; a receive that would overwrite a range this
//!   rank still sends in the same step is staged and applied when the step's sends are done.
//! * **Ordering**: like MPI, every rank of a communicator must issue the same collectives in the
//!   same order. One operation runs at a time per process-wide world (a second concurrent one
//!   gets [`CommError::Busy`]).
//!
//! Waiting never relies on timing: waits spin briefly, then yield the CPU (four ranks on two
//! cores must not starve each other), then sleep in short slices, and are bounded by the
//! timeout.
//!
//! Environment ([`Communicator::from_env`]): `RANK`/`WORLD_SIZE`/`MASTER_ADDR`/`MASTER_PORT`
//! (torchrun), `OMPI_COMM_WORLD_RANK`/`OMPI_COMM_WORLD_SIZE` (Open MPI) or `PMI_RANK`/`PMI_SIZE`,
//! with `WEIR_BOOTSTRAP=host:port` overriding the rendezvous address; `WEIR_TIMEOUT_MS`,
//! `WEIR_SHM`, `WEIR_ALGO`, `WEIR_PIPELINE`, `WEIR_BIND`, `WEIR_HOST_ID` as documented on
//! [`CommOptions`]. The node-local rank is derived from the bootstrap table (ranks with the same
//! host identity, in rank order), so `LOCAL_RANK` need not be set.
//!
//! ```no_run
//! use weir_comm::{CommOptions, Communicator, ReduceOp};
//!
//! let comm = Communicator::from_env(&CommOptions::default())?;
//! let mut grads = vec![1.0f32; 1 << 20];
//! comm.allreduce(&mut grads, ReduceOp::Avg)?;
//! # Ok::<(), weir_comm::CommError>(())
//! ```

mod bootstrap;
mod comm;
mod exec;
mod net;
mod shm;

use std::net::IpAddr;
use std::time::Duration;

pub use comm::{Communicator, Request};
pub use weir_collectives::{Algorithm, Collective, Element, ReduceOp};

/// How a communicator is built and run. [`CommOptions::default`] reads nothing from the
/// environment; [`CommOptions::from_env`] starts from the defaults and applies the `WEIR_*`
/// variables.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CommOptions {
    /// Bound on the bootstrap and on any wait without progress inside an operation
    /// (`WEIR_TIMEOUT_MS`; default 30 s).
    pub timeout: Duration,
    /// Use shared memory between ranks on the same host (`WEIR_SHM=0` turns it off, so every
    /// pair uses the transport). Both ranks of a pair must agree; a pair uses shared memory
    /// only when both enable it.
    pub shm: bool,
    /// Force an algorithm (`WEIR_ALGO`: ring, tree, dbtree, hd, rd, hier, chain, pairwise,
    /// bruck).
    /// When the forced algorithm does not implement an operation (a ring broadcast, say), the
    /// cost model chooses for that operation.
    pub algorithm: Option<Algorithm>,
    /// Force the pipeline depth of the schedules (`WEIR_PIPELINE`); default: the cost model's.
    pub pipeline: Option<usize>,
    /// Local IP address for the transport's UDP sockets (`WEIR_BIND`); default: the address
    /// this host uses to reach the bootstrap master.
    pub bind: Option<IpAddr>,
    /// Override of this rank's host identity (`WEIR_HOST_ID`; default: hostname + boot id).
    /// Ranks with equal identities use shared memory; tests use distinct identities to lay
    /// out several "hosts" on one machine.
    pub host_id: Option<String>,
    /// Directory of the shared-memory files (`WEIR_SHM_DIR`; default `/dev/shm`). When a rank
    /// cannot set up shared memory there, the whole world falls back to the transport
    /// ([`Communicator::shm_fallback`] says why).
    pub shm_dir: std::path::PathBuf,
    /// Transport host configuration (transport parameters, fault injection for tests). The
    /// bind address and port are set by the communicator. A daemon placement runs with its
    /// own (its command line).
    pub host: weir_datapath::HostConfig,
    /// Where the transport's engine runs (`WEIR_ENGINE`: `host`, `inproc`, `daemon` or
    /// `daemon:<socket>`; docs/engine.md).
    pub engine: weir_firmware::net::Placement,
}

impl Default for CommOptions {
    fn default() -> Self {
        CommOptions {
            timeout: Duration::from_secs(30),
            shm: true,
            algorithm: None,
            pipeline: None,
            bind: None,
            host_id: None,
            shm_dir: std::path::PathBuf::from("/dev/shm"),
            host: weir_datapath::HostConfig::default(),
            engine: weir_firmware::net::Placement::Host,
        }
    }
}

impl CommOptions {
    /// The defaults with the `WEIR_*` environment variables applied (see each field).
    pub fn from_env() -> Result<CommOptions, CommError> {
        CommOptions::default().with_env()
    }

    /// These options with the `WEIR_*` environment variables applied on top.
    pub fn with_env(mut self) -> Result<CommOptions, CommError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let bad = |k: &str, v: &str| CommError::InvalidArgument(format!("{k}={v:?}"));
        if let Some(v) = var("WEIR_TIMEOUT_MS") {
            let ms: u64 = v.trim().parse().map_err(|_| bad("WEIR_TIMEOUT_MS", &v))?;
            self.timeout = Duration::from_millis(ms.max(1));
        }
        if let Some(v) = var("WEIR_SHM") {
            self.shm = match v.trim().to_ascii_lowercase().as_str() {
                "0" | "false" | "off" | "no" => false,
                "1" | "true" | "on" | "yes" => true,
                _ => return Err(bad("WEIR_SHM", &v)),
            };
        }
        if let Some(v) = var("WEIR_ALGO") {
            self.algorithm = Some(parse_algorithm(&v).ok_or_else(|| bad("WEIR_ALGO", &v))?);
        }
        if let Some(v) = var("WEIR_PIPELINE") {
            let p: usize = v.trim().parse().map_err(|_| bad("WEIR_PIPELINE", &v))?;
            self.pipeline = Some(p.clamp(1, 1024));
        }
        if let Some(v) = var("WEIR_BIND") {
            self.bind = Some(v.trim().parse().map_err(|_| bad("WEIR_BIND", &v))?);
        }
        if let Some(v) = var("WEIR_SHM_DIR") {
            self.shm_dir = std::path::PathBuf::from(v.trim());
        }
        if let Some(v) = var("WEIR_HOST_ID") {
            self.host_id = Some(v.trim().to_string());
        }
        if let Some(v) = var("WEIR_ENGINE") {
            self.engine = weir_firmware::net::Placement::parse(&v)
                .map_err(|e| CommError::InvalidArgument(format!("WEIR_ENGINE: {e}")))?;
        }
        Ok(self)
    }
}

/// Parses an algorithm name as `WEIR_ALGO` spells it: `ring`, `tree`, `dbtree`, `hd`, `rd`, `hier`
/// (hierarchical; ranks per node from the bootstrap table), `chain`, `pairwise`, `bruck`.
pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    Some(match name.trim().to_ascii_lowercase().as_str() {
        "ring" => Algorithm::Ring,
        "tree" => Algorithm::Tree,
        "dbtree" | "double_binary_tree" => Algorithm::DoubleBinaryTree,
        "hd" | "halving_doubling" | "rabenseifner" => Algorithm::HalvingDoubling,
        "rd" | "recursive_doubling" => Algorithm::RecursiveDoubling,
        // The real group shape is filled in per communicator.
        "hier" | "hierarchical" => Algorithm::Hierarchical { ranks_per_node: 0 },
        "chain" => Algorithm::Chain,
        "pairwise" => Algorithm::Pairwise,
        "bruck" => Algorithm::Bruck,
        _ => return None,
    })
}

/// Errors of communicators. Ranks named in errors are world ranks (the bootstrap ranks).
#[derive(Debug, thiserror::Error)]
pub enum CommError {
    /// The bootstrap failed (bad arguments, unreachable master, size mismatch, duplicate rank,
    /// timeout).
    #[error("bootstrap failed: {0}")]
    Bootstrap(String),
    /// Another operation is in progress on this process's communicators of the same world.
    #[error("another collective operation is in progress on this world")]
    Busy,
    /// A caller's argument is invalid (buffer length, root, options).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An operating-system call failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A rank left the communicator (closed it) while this rank still waited for it.
    #[error("rank {rank} left (closed its communicator) while this rank waited for it in {during}")]
    PeerLeft {
        /// The rank that left.
        rank: usize,
        /// What this rank was doing.
        during: String,
    },
    /// A rank failed: its process ended or crashed, its transport connection was lost, or a
    /// rank timed out waiting for it.
    #[error("rank {rank} failed: {reason} (this rank was in {during})")]
    PeerFailed {
        /// The failed rank.
        rank: usize,
        /// Why it was declared failed.
        reason: String,
        /// What this rank was doing.
        during: String,
    },
    /// Ranks disagree about an operation (different collectives, counts or orders).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Shared memory could not be set up.
    #[error("shared memory: {0}")]
    Shm(String),
    /// Nothing arrived from a rank for the configured timeout.
    #[error("timed out after {after:?} waiting for rank {rank} in {during}")]
    Timeout {
        /// The rank waited for.
        rank: usize,
        /// The timeout.
        after: Duration,
        /// What this rank was doing.
        during: String,
    },
    /// The transport failed to start, connect or post.
    #[error("transport: {0}")]
    Transport(String),
    /// The operation or element type is not supported.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl CommError {
    /// The world rank this error blames, if it names one.
    pub fn peer(&self) -> Option<usize> {
        match self {
            CommError::PeerLeft { rank, .. }
            | CommError::PeerFailed { rank, .. }
            | CommError::Timeout { rank, .. } => Some(*rank),
            _ => None,
        }
    }
}
