//! Per-event cost of the congestion controllers (to be written).
fn main() {}
