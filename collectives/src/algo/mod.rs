//! Schedule generators and [`plan`], the one entry point that turns (operation, algorithm,
//! group shape, element count, pipeline depth) into a validated [`Schedule`].
//!
//! Contract: generators are pure functions of their arguments; every schedule they return has
//! passed [`Schedule::validate`]; bad arguments return a [`PlanError`], never a panic. Counts
//! need not divide by the group size: [`chunks`] splits `count` into `n` contiguous chunks whose
//! lengths differ by at most one (the first `count % n` are one longer).
//!
//! Buffer layouts (`count` is in elements):
//!
//! | operation | `buffer_len` | input of rank `r` | output of rank `r` |
//! |---|---|---|---|
//! | AllReduce | `count` | all | all |
//! | ReduceScatter | `count` | all | chunk `r` of `chunks(count, n)` |
//! | AllGather | `count` | chunk `r` | all |
//! | Broadcast `{root}` | `count` | all on the root, nothing elsewhere | all |
//! | Reduce `{root}` | `count` | all | all on the root, nothing elsewhere |
//! | AllToAll | `2·n·count` (Bruck `3·n·count`) | `0..n·count`, block `j` for rank `j` | the last `n·count`, block `i` from rank `i` |
//!
//! Pipelining (`pipeline = p`): the data is cut into `p` segments (for the ring and all-to-all
//! operations, every chunk or block is cut into `p` pieces) and the per-segment schedules are
//! overlaid with segment `s` delayed by `s` steps, so segment `s` runs phase `k` while segment
//! `s + 1` runs phase `k - 1` (a pipelined chain broadcast takes `n - 1 + p - 1` steps).
//! Segments touch disjoint elements, so the overlay stays valid.

mod alltoall;
mod halving_doubling;
mod hierarchical;
mod ring;
mod tree;

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use crate::op::Collective;
use crate::schedule::{Action, Schedule, ScheduleError, Step, Transfer};

/// The algorithm families, with the operations each one plans.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Bruck's log-step all-to-all (Bruck et al. 1997): `⌈log₂ n⌉` rounds of `≈ n/2` blocks.
    Bruck,
    /// Pipelined chain (Broadcast, Reduce, and AllReduce as chain reduce + chain broadcast).
    Chain,
    /// NCCL's double binary tree AllReduce: half the data on a binary tree, half on its mirror
    /// image (leaves of one are interior nodes of the other), each reduce-then-broadcast.
    DoubleBinaryTree,
    /// Rabenseifner's AllReduce: recursive-halving reduce-scatter + recursive-doubling
    /// allgather; non-powers of two fold the first `2·(n − 2^⌊log₂ n⌋)` ranks in pairs first.
    HalvingDoubling,
    /// Two levels for `n = nodes × ranks_per_node` (rank `r` is on node `r / ranks_per_node`):
    /// intra-node ring reduce-scatter → inter-node halving-doubling AllReduce among ranks with
    /// the same local index → intra-node ring allgather.
    Hierarchical {
        /// Ranks on each node; must divide the group size.
        ranks_per_node: usize,
    },
    /// Pairwise exchange all-to-all: in step `k`, rank `r` sends to `r + k` (mod n).
    Pairwise,
    /// Recursive-doubling AllReduce for short messages: `⌈log₂ n⌉` steps (plus a fold and an
    /// unfold for non-powers of two), each exchanging the whole buffer with the partner
    /// `r XOR 2^k`. Latency-optimal; sends `log₂ n` times the data.
    RecursiveDoubling,
    /// Ring (AllReduce = reduce-scatter + allgather; AllGather; ReduceScatter).
    Ring,
    /// Single binary tree (Broadcast, Reduce, and AllReduce as reduce + broadcast).
    Tree,
}

/// Why [`plan`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// `ranks_per_node` is zero or does not divide the group size.
    BadShape,
    /// A generated schedule failed validation (a bug in a generator).
    Invalid(ScheduleError),
    /// The group has no ranks.
    NoRanks,
    /// `pipeline` is zero.
    NoPipeline,
    /// The root is not a rank of the group.
    RootOutOfRange,
    /// More than [`MAX_RANKS`] ranks, or the buffer length overflows `usize`.
    TooLarge,
    /// The algorithm does not implement this operation.
    Unsupported,
}

/// Plans `collective` with `algorithm` over `ranks` ranks and `count` elements (see the module
/// doc for what `count` means per operation), cut into `pipeline` segments.
pub fn plan(
    collective: Collective,
    algorithm: Algorithm,
    ranks: usize,
    count: usize,
    pipeline: usize,
) -> Result<Schedule, PlanError> {
    if ranks == 0 {
        return Err(PlanError::NoRanks);
    }
    if pipeline == 0 {
        return Err(PlanError::NoPipeline);
    }
    if ranks > MAX_RANKS {
        return Err(PlanError::TooLarge);
    }
    // Segments beyond one per element would be empty; clamping bounds the work for any input.
    let pipeline = pipeline.min(count.max(1));
    let n = ranks;
    let group: Vec<usize> = (0..n).collect();
    let all = vec![0..count; n];
    let own = chunks(count, n);
    let only = |root: usize| -> Vec<Range<usize>> {
        (0..n)
            .map(|r| if r == root { 0..count } else { 0..0 })
            .collect()
    };
    let whole = |f: &dyn Fn(Range<usize>) -> Steps| stagger(segments(0..count, pipeline), f);
    let (buffer_len, inputs, outputs, steps) = match (collective, algorithm) {
        (Collective::AllReduce, Algorithm::Ring) => {
            let steps = stagger_chunks(&own, pipeline, |ch| {
                let mut s = ring::reduce_scatter(&group, ch);
                seq(&mut s, ring::allgather(&group, ch));
                s
            });
            (count, all.clone(), all, steps)
        }
        (Collective::AllReduce, Algorithm::HalvingDoubling) => (
            count,
            all.clone(),
            all,
            whole(&|r| halving_doubling::allreduce(&group, r)),
        ),
        (Collective::AllReduce, Algorithm::RecursiveDoubling) => (
            count,
            all.clone(),
            all,
            whole(&|r| halving_doubling::recursive_doubling(&group, r)),
        ),
        (Collective::AllReduce, Algorithm::Tree) => (
            count,
            all.clone(),
            all,
            whole(&|r| tree::allreduce(&group, r, tree::Shape::Binary)),
        ),
        (Collective::AllReduce, Algorithm::Chain) => (
            count,
            all.clone(),
            all,
            whole(&|r| tree::allreduce(&group, r, tree::Shape::Chain)),
        ),
        (Collective::AllReduce, Algorithm::DoubleBinaryTree) => (
            count,
            all.clone(),
            all,
            whole(&|r| tree::double_binary_allreduce(&group, r)),
        ),
        (Collective::AllReduce, Algorithm::Hierarchical { ranks_per_node: l }) => {
            if l == 0 || !n.is_multiple_of(l) {
                return Err(PlanError::BadShape);
            }
            (
                count,
                all.clone(),
                all,
                whole(&|r| hierarchical::allreduce(n / l, l, r)),
            )
        }
        (Collective::ReduceScatter, Algorithm::Ring) => {
            let steps = stagger_chunks(&own, pipeline, |ch| ring::reduce_scatter(&group, ch));
            (count, all, own, steps)
        }
        (Collective::AllGather, Algorithm::Ring) => {
            let steps = stagger_chunks(&own, pipeline, |ch| ring::allgather(&group, ch));
            (count, own, all, steps)
        }
        (Collective::Broadcast { root }, Algorithm::Tree | Algorithm::Chain) => {
            let order = rooted(n, root)?;
            let shape = tree_shape(algorithm);
            (
                count,
                only(root),
                all,
                whole(&|r| tree::broadcast(&order, r, shape)),
            )
        }
        (Collective::Reduce { root }, Algorithm::Tree | Algorithm::Chain) => {
            let order = rooted(n, root)?;
            let shape = tree_shape(algorithm);
            (
                count,
                all,
                only(root),
                whole(&|r| tree::reduce(&order, r, shape)),
            )
        }
        (Collective::AllToAll, Algorithm::Pairwise | Algorithm::Bruck) => {
            let bruck = algorithm == Algorithm::Bruck;
            let total = n.checked_mul(count).ok_or(PlanError::TooLarge)?;
            let len = total
                .checked_mul(if bruck { 3 } else { 2 })
                .ok_or(PlanError::TooLarge)?;
            let out = len - total..len;
            let steps = stagger(segments(0..count, pipeline), &|piece| {
                if bruck {
                    alltoall::bruck(n, count, piece)
                } else {
                    alltoall::pairwise(n, count, piece)
                }
            });
            (len, vec![0..total; n], vec![out; n], steps)
        }
        _ => return Err(PlanError::Unsupported),
    };
    let steps = steps
        .into_iter()
        .map(|transfers| Step { transfers })
        .collect();
    Schedule::new(collective, buffer_len, inputs, outputs, steps).map_err(PlanError::Invalid)
}

/// The largest group [`plan`] accepts (bounds the memory a plan can take).
pub const MAX_RANKS: usize = 1 << 16;

/// Splits `count` elements into `n` contiguous chunks whose lengths differ by at most one (the
/// first `count % n` chunks are one longer). `n == 0` gives no chunks.
pub fn chunks(count: usize, n: usize) -> Vec<Range<usize>> {
    split(0..count, n)
}

/// Steps under construction: one list of transfers per step.
type Steps = Vec<Vec<Transfer>>;

/// [`chunks`] of an arbitrary range.
fn split(range: Range<usize>, n: usize) -> Vec<Range<usize>> {
    if n == 0 {
        return Vec::new();
    }
    let len = range.end.saturating_sub(range.start);
    let (base, extra) = (len / n, len % n);
    let mut start = range.start;
    (0..n)
        .map(|i| {
            let end = start + base + usize::from(i < extra);
            let r = start..end;
            start = end;
            r
        })
        .collect()
}

/// The pipeline segments of `range` (empty ones dropped).
fn segments(range: Range<usize>, pipeline: usize) -> Vec<Range<usize>> {
    split(range, pipeline)
        .into_iter()
        .filter(|r| !r.is_empty())
        .collect()
}

/// Overlays the schedules of `segs`, delaying segment `s` by `s` steps.
fn stagger(segs: Vec<Range<usize>>, f: &dyn Fn(Range<usize>) -> Steps) -> Steps {
    let mut out = Steps::new();
    for (s, seg) in segs.into_iter().enumerate() {
        let mut delayed = vec![Vec::new(); s];
        delayed.extend(trim(f(seg)));
        par(&mut out, delayed);
    }
    trim(out)
}

/// Like [`stagger`], for generators over per-rank chunks: piece `s` of every chunk forms
/// segment `s`.
fn stagger_chunks(
    chunks: &[Range<usize>],
    pipeline: usize,
    f: impl Fn(&[Range<usize>]) -> Steps,
) -> Steps {
    let pieces: Vec<Vec<Range<usize>>> =
        chunks.iter().map(|c| split(c.clone(), pipeline)).collect();
    let mut out = Steps::new();
    for s in 0..pipeline {
        let seg: Vec<Range<usize>> = pieces.iter().map(|p| p[s].clone()).collect();
        if seg.iter().all(|r| r.is_empty()) {
            continue;
        }
        let mut delayed = vec![Vec::new(); s];
        delayed.extend(trim(f(&seg)));
        par(&mut out, delayed);
    }
    trim(out)
}

/// Merges `b` into `a` step by step (the two touch disjoint elements).
fn par(a: &mut Steps, b: Steps) {
    if a.len() < b.len() {
        a.resize(b.len(), Vec::new());
    }
    for (sa, sb) in a.iter_mut().zip(b) {
        sa.extend(sb);
    }
}

/// Appends `b` after `a`.
fn seq(a: &mut Steps, b: Steps) {
    a.extend(b);
}

/// Drops steps with no transfers.
fn trim(steps: Steps) -> Steps {
    steps.into_iter().filter(|s| !s.is_empty()).collect()
}

/// A transfer of `range` at the same offsets on both sides; `None` when `range` is empty.
fn same(src: usize, dst: usize, range: &Range<usize>, action: Action) -> Option<Transfer> {
    (!range.is_empty()).then(|| Transfer {
        src,
        dst,
        src_offset: range.start,
        dst_offset: range.start,
        len: range.end - range.start,
        action,
    })
}

/// Ranks in the order `root, root + 1, …` (mod n).
fn rooted(n: usize, root: usize) -> Result<Vec<usize>, PlanError> {
    if root >= n {
        return Err(PlanError::RootOutOfRange);
    }
    Ok((0..n).map(|i| (root + i) % n).collect())
}

fn tree_shape(algorithm: Algorithm) -> tree::Shape {
    if algorithm == Algorithm::Chain {
        tree::Shape::Chain
    } else {
        tree::Shape::Binary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_ragged_and_cover() {
        assert_eq!(chunks(10, 4), vec![0..3, 3..6, 6..8, 8..10]);
        assert_eq!(chunks(2, 4), vec![0..1, 1..2, 2..2, 2..2]);
        assert!(chunks(5, 0).is_empty());
    }

    #[test]
    fn bad_arguments_are_refused() {
        let p = |c, a, n, p| plan(c, a, n, 10, p).map(|_| ());
        assert_eq!(
            p(Collective::AllReduce, Algorithm::Ring, 0, 1),
            Err(PlanError::NoRanks)
        );
        assert_eq!(
            p(Collective::AllReduce, Algorithm::Ring, 2, 0),
            Err(PlanError::NoPipeline)
        );
        let h = Algorithm::Hierarchical { ranks_per_node: 3 };
        assert_eq!(p(Collective::AllReduce, h, 4, 1), Err(PlanError::BadShape));
        let root = Collective::Broadcast { root: 4 };
        assert_eq!(
            p(root, Algorithm::Tree, 4, 1),
            Err(PlanError::RootOutOfRange)
        );
        assert_eq!(
            p(Collective::AllGather, Algorithm::Bruck, 4, 1),
            Err(PlanError::Unsupported)
        );
        let big = plan(Collective::AllToAll, Algorithm::Bruck, 4, usize::MAX / 4, 1);
        assert_eq!(big.map(|_| ()), Err(PlanError::TooLarge));
        let many = plan(Collective::AllReduce, Algorithm::Ring, MAX_RANKS + 1, 1, 1);
        assert_eq!(many.map(|_| ()), Err(PlanError::TooLarge));
        // A huge pipeline depth is clamped to one segment per element.
        let deep = plan(Collective::AllGather, Algorithm::Ring, 3, 5, usize::MAX).unwrap();
        assert!(deep.steps().len() <= 2 + 4);
    }

    #[test]
    fn pipelined_chain_broadcast_takes_n_plus_p_minus_2_steps() {
        let s = plan(
            Collective::Broadcast { root: 2 },
            Algorithm::Chain,
            5,
            64,
            8,
        )
        .unwrap();
        assert_eq!(s.steps().len(), 5 - 1 + 8 - 1);
        assert_eq!(s.elements_sent(), 4 * 64);
    }

    #[test]
    fn ring_allreduce_sends_the_optimal_volume() {
        let s = plan(Collective::AllReduce, Algorithm::Ring, 4, 100, 1).unwrap();
        assert_eq!(s.steps().len(), 2 * 3);
        // Each rank sends 2·(n−1)/n of the buffer.
        assert_eq!(s.elements_sent(), 2 * 3 * 100);
    }
}
