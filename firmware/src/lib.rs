//! The engine as a DPU runs it: one poll-mode, run-to-completion loop that owns the datapath
//! and serves every local client through descriptor rings (docs/engine.md).
//!
//! * [`ring`]: single-producer, single-consumer rings in memory two parties share, neither
//!   trusting the other, with a doorbell handshake that cannot lose a wakeup.
//! * [`desc`]: the 64-byte submission and completion descriptors, checked field by field.
//! * [`engine`]: the core — clients' submissions in, one transport endpoint for all, their
//!   completions out, each client confined to its own connections, regions and memory.
//!
//! The core is `no_std` + `alloc`, like the transport: it is the code a DPU's cores would
//! run. Time, packets and wake-ups come from the placement that drives it:
//!
//! * [`inproc`] (feature `std`, on by default): the engine as a thread of its clients'
//!   process, owning a UDP datapath, clients reaching it only through rings and doorbells.
//! * [`daemon`] (feature `std`): `weir engine`, one engine per host that every local process
//!   attaches to over a Unix socket, rings and payload memory in shared memfds.
//! * [`net`] (feature `std`): one transport API over either placement or a plain
//!   `weir_datapath::Host`, chosen by `WEIR_ENGINE` — what the NCCL plugin, the
//!   communicator and the benches use.
#![no_std]

extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

#[cfg(all(feature = "std", target_os = "linux", not(loom)))]
pub mod daemon;
pub mod desc;
pub mod engine;
#[cfg(all(feature = "std", target_os = "linux", not(loom)))]
pub mod inproc;
#[cfg(all(feature = "std", target_os = "linux", not(loom)))]
pub mod net;
pub mod ring;
#[cfg(all(test, not(loom)))]
mod tests;

pub use desc::{Counters, Cqe, CqeKind, DESC_LEN, Op, Sqe, Status};
pub use engine::{AttachError, Broken, ClientId, Engine, EngineConfig, EngineStats, ForeignMemory};
pub use ring::{Consumer, Producer, RingError, RingMemory};
