#![deny(clippy::unwrap_used, clippy::panic)]
//! Weir datapaths. TODO(datapath helper)
