//! The engine as a DPU would run it (poll-mode loop, host⇄engine descriptor rings, collective
//! offload). Its content lands with the firmware issue; the crate exists now so the workspace has
//! the layout of DESIGN.md.
