//! Weir's collective library: schedules as plain data, an in-memory reference executor,
//! vectorisable reduction kernels and an α-β cost model for algorithm choice.
//!
//! Contract: this crate is `no_std + alloc`, does no I/O, reads no clock and spawns no thread.
//! An algorithm is a *generator* that returns a [`Schedule`]: a list of synchronous steps, each a
//! list of [`Transfer`]s (source rank, destination rank, element ranges, copy or reduce). Every
//! schedule is validated on construction ([`Schedule::new`]), so the simulator, the DPU engine
//! and the tests consume the same checked data. [`simulate`] applies a schedule to per-rank
//! buffers in memory and is the oracle the tests compare against a direct computation.
//!
//! Buffer model: every rank owns one working buffer of [`Schedule::buffer_len`] elements. At
//! the start only the rank's input region is valid; a step's transfers all read the buffers as
//! they were before the step (snapshot semantics) and their writes land after it. At the end the
//! rank's output region holds the result. Ranges are in elements, so one schedule serves every
//! dtype.
#![no_std]
#![warn(missing_docs)]

extern crate alloc;

pub mod algo;
pub mod cost;
pub mod op;
pub mod reduce;
pub mod reference;
pub mod schedule;

pub use algo::{Algorithm, MAX_RANKS, PlanError, chunks, plan};
pub use cost::{Cost, Fabric, choose, cost};
pub use op::{Collective, DType, ReduceOp};
pub use reduce::Element;
pub use reference::{SimError, simulate};
pub use schedule::{Action, Schedule, ScheduleError, ScheduleErrorKind, Step, Transfer};
