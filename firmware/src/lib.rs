//! The engine as a DPU would run it (poll-mode loop, host⇄engine descriptor rings, collective
//! offload). Its content lands with the firmware issue; the crate holds its place in the
//! workspace (docs/architecture.md).
