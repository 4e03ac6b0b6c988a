//! hpcc (to be written).
