//! A deterministic bottleneck model for testing congestion controllers (to be written).
