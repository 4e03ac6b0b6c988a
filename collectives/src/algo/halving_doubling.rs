//! Rabenseifner's AllReduce: recursive-halving reduce-scatter followed by recursive-doubling
//! allgather (Thakur, Rabenseifner & Gropp 2005, §4.4 and Fig. 8; Rabenseifner 2004); and the
//! short-message recursive-doubling AllReduce ([`recursive_doubling`]).
//!
//! Contract: for `n = 2^k + rem` members, the first `2·rem` members fold in pairs (member `2i`
//! reduces its whole range into member `2i + 1`, then sits out), the remaining `2^k` run the
//! power-of-two algorithm, and the odd members of the folded pairs copy the result back
//! (§4.4, "the number of processes is not a power of two"). Steps: `2·k`, plus 2 when
//! `rem > 0`.

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use super::{Steps, same, split};
use crate::schedule::Action;

/// Plans the AllReduce of `range` over `group`.
pub(super) fn allreduce(group: &[usize], range: Range<usize>) -> Steps {
    let Some((p, rem)) = participants(group.len(), &range) else {
        return Steps::new();
    };
    let member = |j: usize| member(rem, j);
    let chunks = split(range.clone(), p);
    let span = |lo: usize, hi: usize| -> Range<usize> {
        if lo < hi {
            chunks[lo].start..chunks[hi - 1].end
        } else {
            0..0
        }
    };
    let mut steps = Steps::new();
    fold(&mut steps, group, rem, &range);
    // Reduce-scatter by recursive halving: distance p/2 first, so participant j ends owning
    // chunk j.
    let (mut lo, mut hi) = (vec![0usize; p], vec![p; p]);
    let mut d = p / 2;
    while d > 0 {
        let mut step = Vec::new();
        for j in 0..p {
            let partner = j ^ d;
            let mid = lo[j] + (hi[j] - lo[j]) / 2;
            let (keep, give) = if j & d == 0 {
                ((lo[j], mid), (mid, hi[j]))
            } else {
                ((mid, hi[j]), (lo[j], mid))
            };
            step.extend(same(
                group[member(j)],
                group[member(partner)],
                &span(give.0, give.1),
                Action::Reduce,
            ));
            (lo[j], hi[j]) = keep;
        }
        steps.push(step);
        d /= 2;
    }
    // Allgather by recursive doubling, distance 1 first (the reverse order).
    let mut d = 1;
    while d < p {
        let mut step = Vec::new();
        for j in 0..p {
            step.extend(same(
                group[member(j)],
                group[member(j ^ d)],
                &span(lo[j], hi[j]),
                Action::Copy,
            ));
        }
        let prev = (lo.clone(), hi.clone());
        for j in 0..p {
            lo[j] = prev.0[j].min(prev.0[j ^ d]);
            hi[j] = prev.1[j].max(prev.1[j ^ d]);
        }
        steps.push(step);
        d *= 2;
    }
    unfold(&mut steps, group, rem, &range);
    steps
}

/// Plans the latency-optimal AllReduce of `range` over `group` by recursive doubling (Thakur,
/// Rabenseifner & Gropp 2005, §4.4, "recursive doubling … for short messages"): in step `k`
/// participant `j` exchanges its whole range with `j XOR 2^k` and both combine, so every
/// participant holds the full reduction after `log₂ p` steps. Non-powers of two fold and
/// unfold pairs as [`allreduce`] does. Both partners combine the same two operands, so every
/// rank ends with bit-identical results (the combine is commutative).
pub(super) fn recursive_doubling(group: &[usize], range: Range<usize>) -> Steps {
    let Some((p, rem)) = participants(group.len(), &range) else {
        return Steps::new();
    };
    let member = |j: usize| member(rem, j);
    let mut steps = Steps::new();
    fold(&mut steps, group, rem, &range);
    let mut d = 1;
    while d < p {
        let step = (0..p)
            .filter_map(|j| {
                same(
                    group[member(j)],
                    group[member(j ^ d)],
                    &range,
                    Action::Reduce,
                )
            })
            .collect();
        steps.push(step);
        d *= 2;
    }
    unfold(&mut steps, group, rem, &range);
    steps
}

/// Non-powers of two, before the power-of-two part (§4.4): member `2i` of the first `2·rem`
/// reduces its whole range into member `2i + 1` and sits out.
fn fold(steps: &mut Steps, group: &[usize], rem: usize, range: &Range<usize>) {
    if rem > 0 {
        let t =
            (0..rem).filter_map(|i| same(group[2 * i], group[2 * i + 1], range, Action::Reduce));
        steps.push(t.collect());
    }
}

/// After the power-of-two part: member `2i + 1` copies the result back to member `2i`.
fn unfold(steps: &mut Steps, group: &[usize], rem: usize, range: &Range<usize>) {
    if rem > 0 {
        let t = (0..rem).filter_map(|i| same(group[2 * i + 1], group[2 * i], range, Action::Copy));
        steps.push(t.collect());
    }
}

/// `(p, rem)` for `n = p + rem` members with `p` the largest power of two ≤ `n`; `None` when
/// there is nothing to do (fewer than two members or an empty range).
fn participants(n: usize, range: &Range<usize>) -> Option<(usize, usize)> {
    if n < 2 || range.is_empty() {
        return None;
    }
    let p = 1usize << (usize::BITS - 1 - n.leading_zeros());
    Some((p, n - p))
}

/// Participant `j`'s member index: the odd member of each folded pair, then the rest.
fn member(rem: usize, j: usize) -> usize {
    if j < rem { 2 * j + 1 } else { j + rem }
}
