//! Units, time and deterministic randomness shared by every Weir crate.
//!
//! Contract: this crate has no dependencies, never allocates and never touches the operating
//! system. Time is an integer count of **picoseconds** ([`Instant`], [`Duration`]), so the
//! simulator and the real datapaths use the same type; arithmetic saturates instead of
//! panicking. Rates are bits per second ([`Rate`]). The only way to learn the current time is
//! a [`Clock`], which lives in the drivers (datapath, simulator), never in protocol code.
#![no_std]
#![warn(missing_docs)]

pub mod prefetch;
mod rng;
mod scheduled;
mod time;
mod units;

pub use rng::Rng;
pub use scheduled::Scheduled;
pub use time::{Clock, Duration, Instant};
pub use units::Rate;
