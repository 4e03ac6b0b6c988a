//! Ring reduce-scatter and allgather (Patarasuk & Yuan 2009; Thakur, Rabenseifner & Gropp 2005
//! §4.1): `n − 1` steps each, every rank sends one chunk per step to its successor.
//!
//! Contract: `group[i]` sends to `group[(i + 1) % n]`; `chunks[i]` is the chunk member `i` owns
//! after reduce-scatter (and holds before allgather).

use core::ops::Range;

use super::{Steps, same};
use crate::schedule::Action;

/// Ring reduce-scatter: in step `k` member `i` sends chunk `(i − k − 1) mod n` (reduce), so
/// after `n − 1` steps member `i` holds the full reduction of chunk `i`.
pub(super) fn reduce_scatter(group: &[usize], chunks: &[Range<usize>]) -> Steps {
    rounds(group, chunks, 1, Action::Reduce)
}

/// Ring allgather: in step `k` member `i` forwards chunk `(i − k) mod n` (copy).
pub(super) fn allgather(group: &[usize], chunks: &[Range<usize>]) -> Steps {
    rounds(group, chunks, 0, Action::Copy)
}

fn rounds(group: &[usize], chunks: &[Range<usize>], shift: usize, action: Action) -> Steps {
    let n = group.len().min(chunks.len());
    (0..n.saturating_sub(1))
        .map(|k| {
            (0..n)
                .filter_map(|i| {
                    let c = (i + 2 * n - k - shift) % n;
                    same(group[i], group[(i + 1) % n], &chunks[c], action)
                })
                .collect()
        })
        .collect()
}
