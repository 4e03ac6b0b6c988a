//! timely (to be written).
