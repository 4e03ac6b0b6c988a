//! All-to-all: pairwise exchange and Bruck's algorithm (Thakur, Rabenseifner & Gropp 2005,
//! §3.5; Bruck, Ho, Kipnis, Upfal & Weathersby 1997).
//!
//! Contract: rank `r`'s input block `j` (elements `j·count .. (j+1)·count`) ends in rank `j`'s
//! output block `r`. `piece` is the sub-range of every block handled (pipelining). Local
//! moves are transfers with `src == dst`.

use alloc::vec::Vec;
use core::ops::Range;

use super::Steps;
use crate::schedule::{Action, Transfer};

/// Pairwise exchange: step 0 copies the own block locally; in step `k ≥ 1` rank `r` sends block
/// `(r + k) mod n` to rank `(r + k) mod n`. Buffer: input, then output.
pub(super) fn pairwise(n: usize, count: usize, piece: Range<usize>) -> Steps {
    let out = n * count;
    (0..n)
        .map(|k| {
            (0..n)
                .filter_map(|r| {
                    let j = (r + k) % n;
                    block(
                        r,
                        j,
                        j * count + piece.start,
                        out + r * count + piece.start,
                        &piece,
                    )
                })
                .collect()
        })
        .collect()
}

/// Bruck: rotate locally (`tmp[i] = in[(r + i) mod n]`), then in round `k` send every `tmp[i]`
/// with bit `k` of `i` set to rank `r + 2^k`, then un-rotate (`out[j] = tmp[(r − j) mod n]`).
/// Buffer: input, scratch, output.
pub(super) fn bruck(n: usize, count: usize, piece: Range<usize>) -> Steps {
    let (tmp, out) = (n * count, 2 * n * count);
    let at = |base: usize, i: usize| base + i * count + piece.start;
    let mut steps = Steps::new();
    let rotate = (0..n).flat_map(|r| (0..n).map(move |i| (r, i)));
    steps.push(
        rotate
            .clone()
            .filter_map(|(r, i)| block(r, r, at(0, (r + i) % n), at(tmp, i), &piece))
            .collect(),
    );
    let mut dist = 1;
    while dist < n {
        let round: Vec<Transfer> = rotate
            .clone()
            .filter(|&(_, i)| i & dist != 0)
            .filter_map(|(r, i)| block(r, (r + dist) % n, at(tmp, i), at(tmp, i), &piece))
            .collect();
        steps.push(round);
        dist *= 2;
    }
    steps.push(
        rotate
            .filter_map(|(r, j)| block(r, r, at(tmp, (r + n - j) % n), at(out, j), &piece))
            .collect(),
    );
    steps
}

fn block(src: usize, dst: usize, from: usize, to: usize, piece: &Range<usize>) -> Option<Transfer> {
    let len = piece.end - piece.start;
    (len > 0).then_some(Transfer {
        src,
        dst,
        src_offset: from,
        dst_offset: to,
        len,
        action: Action::Copy,
    })
}
