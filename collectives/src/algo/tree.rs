//! Tree-shaped Reduce, Broadcast and AllReduce: binary trees in heap order and pipelined
//! chains (Thakur, Rabenseifner & Gropp 2005, §4.2 for the binomial/binary tree broadcast and
//! reduce; NCCL's double binary tree after Sanders, Speck & Träff 2009).
//!
//! Contract: `order[0]` is the root; in a binary tree position `i` has parent `(i − 1) / 2`, in
//! a chain parent `i − 1`. A reduce step lets every parent receive from one child only (left
//! children first, then right), so no rank gets two writes to one element in a step; a
//! broadcast step copies from every parent to all of its children at the next depth.

use alloc::vec::Vec;
use core::ops::Range;

use super::{Steps, par, same, seq, split};
use crate::schedule::Action;

/// The shape of the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Shape {
    /// Heap-ordered binary tree (depth `⌊log₂ n⌋`).
    Binary,
    /// A chain (depth `n − 1`), the best shape once pipelined.
    Chain,
}

impl Shape {
    fn parent(self, i: usize) -> usize {
        match self {
            Shape::Binary => (i - 1) / 2,
            Shape::Chain => i - 1,
        }
    }

    fn depth(self, i: usize) -> usize {
        match self {
            Shape::Binary => (usize::BITS - 1 - (i + 1).leading_zeros()) as usize,
            Shape::Chain => i,
        }
    }
}

/// Reduces `range` of every member into `order[0]`.
pub(super) fn reduce(order: &[usize], range: Range<usize>, shape: Shape) -> Steps {
    let n = order.len();
    let max_depth = n.checked_sub(1).map_or(0, |last| shape.depth(last));
    let mut steps = Steps::new();
    for d in (1..=max_depth).rev() {
        for side in [1, 0] {
            let step = (1..n)
                .filter(|&i| {
                    shape.depth(i) == d
                        && (if shape == Shape::Chain {
                            side == 1
                        } else {
                            i % 2 == side
                        })
                })
                .filter_map(|i| same(order[i], order[shape.parent(i)], &range, Action::Reduce));
            steps.push(step.collect());
        }
    }
    steps.retain(|s| !s.is_empty());
    steps
}

/// Copies `range` from `order[0]` to every member.
pub(super) fn broadcast(order: &[usize], range: Range<usize>, shape: Shape) -> Steps {
    let n = order.len();
    let max_depth = n.checked_sub(1).map_or(0, |last| shape.depth(last));
    (1..=max_depth)
        .map(|d| {
            (1..n)
                .filter(|&i| shape.depth(i) == d)
                .filter_map(|i| same(order[shape.parent(i)], order[i], &range, Action::Copy))
                .collect()
        })
        .collect()
}

/// Reduce to `group[0]`, then broadcast back.
pub(super) fn allreduce(group: &[usize], range: Range<usize>, shape: Shape) -> Steps {
    let mut steps = reduce(group, range.clone(), shape);
    seq(&mut steps, broadcast(group, range, shape));
    steps
}

/// Double binary tree: the first half of `range` on the heap-ordered tree over `group`, the
/// second half on the tree over `group` reversed, whose interior nodes are the first tree's
/// leaves (for even n the interior sets are disjoint), run side by side.
pub(super) fn double_binary_allreduce(group: &[usize], range: Range<usize>) -> Steps {
    let halves = split(range, 2);
    let mut steps = allreduce(group, halves[0].clone(), Shape::Binary);
    let mirrored: Vec<usize> = group.iter().rev().copied().collect();
    par(
        &mut steps,
        allreduce(&mirrored, halves[1].clone(), Shape::Binary),
    );
    steps
}
