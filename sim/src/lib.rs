//! The packet-level discrete-event simulator that drives the production transport and congestion
//! code. Its content lands with the simulator issue; the crate exists now so the workspace has the
//! layout of DESIGN.md. The transport's length-only payload mode it will use is already tested
//! end to end (see `tests/tests/virtual_link.rs`).
