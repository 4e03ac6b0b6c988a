//! Run-time loadable congestion-control policies (eBPF); to be written.
