//! The in-memory reference executor: applies a [`Schedule`] step by step to per-rank buffers.
//!
//! Contract: this is the oracle the tests compare against a direct computation, and a model of
//! what the network layer does with a schedule. Each step reads the buffers as they were before
//! it (every payload is copied out first), then applies every transfer: `Copy` overwrites,
//! `Reduce` combines with [`Element::combine`]. For `Avg` on a reducing collective the outputs
//! are divided by the number of ranks once, at the end. It allocates freely and is not fast.

use alloc::vec;
use alloc::vec::Vec;

use crate::op::ReduceOp;
use crate::reduce::Element;
use crate::schedule::{Action, Schedule};

/// Why [`simulate`] refused its inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimError {
    /// `inputs.len()` differs from the schedule's rank count.
    InputCount {
        /// Ranks in the schedule.
        expected: usize,
        /// Inputs given.
        got: usize,
    },
    /// Rank `rank`'s input length differs from its input region.
    InputLength {
        /// The rank.
        rank: usize,
        /// Length of the input region.
        expected: usize,
        /// Length given.
        got: usize,
    },
}

/// Runs `schedule` on `inputs` (one slice per rank, each as long as the rank's input region)
/// and returns each rank's output region.
pub fn simulate<T: Element>(
    schedule: &Schedule,
    inputs: &[&[T]],
    op: ReduceOp,
) -> Result<Vec<Vec<T>>, SimError> {
    let n = schedule.ranks();
    if inputs.len() != n {
        return Err(SimError::InputCount {
            expected: n,
            got: inputs.len(),
        });
    }
    let mut bufs = vec![vec![T::default(); schedule.buffer_len()]; n];
    for (rank, (buf, input)) in bufs.iter_mut().zip(inputs).enumerate() {
        let region = schedule.inputs()[rank].clone();
        if region.len() != input.len() {
            return Err(SimError::InputLength {
                rank,
                expected: region.len(),
                got: input.len(),
            });
        }
        buf[region].copy_from_slice(input);
    }
    // Index arithmetic below is in bounds: `Schedule::new` validated every range.
    let mut payloads: Vec<Vec<T>> = Vec::new();
    for step in schedule.steps() {
        payloads.clear();
        payloads.extend(
            step.transfers
                .iter()
                .map(|t| bufs[t.src][t.src_range()].to_vec()),
        );
        for (t, data) in step.transfers.iter().zip(&payloads) {
            let dst = &mut bufs[t.dst][t.dst_range()];
            match t.action {
                Action::Copy => dst.copy_from_slice(data),
                Action::Reduce => T::combine(op, dst, data),
            }
        }
    }
    let avg = op == ReduceOp::Avg && schedule.collective().reduces();
    Ok(bufs
        .into_iter()
        .zip(schedule.outputs())
        .map(|(buf, out)| {
            let mut v = buf[out.clone()].to_vec();
            if avg {
                T::divide(&mut v, n);
            }
            v
        })
        .collect())
}
