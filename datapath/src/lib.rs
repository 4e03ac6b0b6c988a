#![deny(clippy::unwrap_used, clippy::panic)]
// An I/O crate: it reads the OS clock, opens sockets and spawns threads (the sans-IO rule,
// docs/architecture.md, binds only the protocol crates).
#![allow(clippy::disallowed_methods)]
//! Weir datapaths: how the sans-IO transport engine meets the outside world.
//!
//! * [`udp`] — batched UDP sockets with GSO/GRO and ECN (one source port per entropy value);
//! * [`fault`] — a seeded impairment layer (loss, bursts, delay, reordering, duplication,
//!   corruption, ECN marks), because the kernel here has no netem;
//! * [`clock`] — the OS clock and seeds for the drivers;
//! * [`host`] — the engine thread that owns the sockets and drives a transport endpoint, and
//!   the handle the rest of the stack uses ([`Host`]);
//! * [`buffer`] — registered host memory.
//!
//! This is an I/O crate: it may read clocks, open sockets and spawn threads (the sans-IO rule,
//! docs/architecture.md, binds only the protocol crates).

pub mod buffer;
pub mod clock;
pub mod fault;
#[cfg(target_os = "linux")]
pub mod host;
#[cfg(target_os = "linux")]
pub mod udp;

pub use buffer::Buffer;
pub use clock::{MonotonicClock, os_seed};
pub use fault::{BurstLoss, FaultConfig, FaultConfigError, FaultInjector, FaultStats, Impaired};
#[cfg(target_os = "linux")]
pub use host::{Host, HostConfig, HostError, HostStats, Nic};
#[cfg(target_os = "linux")]
pub use udp::{RxDatagram, TxDatagram, UdpCaps, UdpConfig, UdpSockets, UdpStats};
