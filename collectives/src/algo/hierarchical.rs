//! Two-level AllReduce for `nodes × ranks_per_node` ranks (rank `r` is local index
//! `r % ranks_per_node` on node `r / ranks_per_node`), after the hierarchical schemes of
//! Sack & Gropp and NCCL's CollNet: every byte crosses the inter-node network once per
//! direction, in `ranks_per_node` parallel inter-node groups.
//!
//! Contract: phase 1 is a ring reduce-scatter inside every node (local index `l` ends owning
//! chunk `l`), phase 2 a halving-doubling AllReduce of chunk `l` among the ranks with local
//! index `l` on every node, phase 3 a ring allgather inside every node. Phases run back to back;
//! pipelining overlaps them across segments.

use alloc::vec::Vec;
use core::ops::Range;

use super::{Steps, halving_doubling, par, ring, seq, split};

/// Plans the AllReduce of `range` over `nodes × per_node` ranks.
pub(super) fn allreduce(nodes: usize, per_node: usize, range: Range<usize>) -> Steps {
    let chunks = split(range, per_node);
    let node = |n: usize| -> Vec<usize> { (0..per_node).map(|l| n * per_node + l).collect() };
    let (mut rs, mut inter, mut ag) = (Steps::new(), Steps::new(), Steps::new());
    for n in 0..nodes {
        par(&mut rs, ring::reduce_scatter(&node(n), &chunks));
        par(&mut ag, ring::allgather(&node(n), &chunks));
    }
    for (l, chunk) in chunks.iter().enumerate() {
        let peers: Vec<usize> = (0..nodes).map(|n| n * per_node + l).collect();
        par(
            &mut inter,
            halving_doubling::allreduce(&peers, chunk.clone()),
        );
    }
    seq(&mut rs, inter);
    seq(&mut rs, ag);
    rs
}
