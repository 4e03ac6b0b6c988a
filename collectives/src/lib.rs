//! Weir's collective library (ring, tree, halving-doubling, hierarchical schedules as plain data,
//! reduction kernels, communicators). Its content lands with the collectives issue; the crate
//! exists now so the workspace has the layout of DESIGN.md and dependency directions are fixed.
