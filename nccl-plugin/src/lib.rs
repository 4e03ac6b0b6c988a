#![deny(clippy::unwrap_used, clippy::panic)]
// An I/O crate: it reads the OS clock, opens sockets and spawns threads (the sans-IO rule,
// docs/architecture.md, binds only the protocol crates).
#![allow(clippy::disallowed_methods)]
#![warn(missing_docs)]
//! The NCCL network plugin (`libnccl-net-weir.so`): Weir's transport behind NCCL's net plugin
//! ABI, tables v8 to v12 (`ncclNetPlugin_vN`, plugin name `weir`).
//!
//! * [`ffi`] — `#[repr(C)]` mirrors of the ABI with compile-time layout checks;
//! * [`export`] — the exported tables and the `extern "C"` shims, one per signature;
//! * `plugin` — the one implementation: devices, comms, registrations, requests;
//! * `config` — `WEIR_*` environment and device discovery; `log` — NCCL's logger.
//!
//! Host memory only (`NCCL_PTR_HOST`): GPU buffers need a GPUDirect path the UDP datapath
//! does not have, so NCCL stages through pinned host buffers. See README.md.

mod config;
pub mod export;
// Field-for-field mirrors of NCCL's C structs: the names and NCCL's headers
// (`src/include/plugin/net/net_v8.h` … `net_v12.h`, docs/references.md) are the documentation.
#[allow(missing_docs)]
pub mod ffi;
mod log;
mod plugin;
