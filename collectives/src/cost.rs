//! The α-β (Hockney) cost model used to choose an algorithm by message size and group shape.
//!
//! Contract: a message of `b` bytes costs `α + b·β`, with `α` the per-message latency and
//! `β = 1 / bandwidth`; a rank sends and receives at once (full duplex); reduction compute
//! (`γ`) is ignored. Formulas follow Thakur, Rabenseifner & Gropp, "Optimization of Collective
//! Communication Operations in MPICH", IJHPCA 19(1), 2005 (cited per formula below), with `p`
//! ranks, `m` bytes, `D = ⌊log₂ p⌋`, `s` pipeline segments. Results are [`Duration`]s
//! (saturating, never negative); a zero bandwidth gives [`Duration::MAX`]. The model is shared
//! with the simulator, which can replace the constants with measured ones.

use alloc::vec;

use weir_base::{Duration, Rate};

use crate::algo::Algorithm;
use crate::op::Collective;

/// The network the model prices: inter-node links and (for the hierarchical AllReduce)
/// intra-node links.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fabric {
    /// Per-message latency between nodes.
    pub alpha: Duration,
    /// Per-rank bandwidth between nodes.
    pub bandwidth: Rate,
    /// Per-message latency inside a node.
    pub intra_alpha: Duration,
    /// Per-rank bandwidth inside a node.
    pub intra_bandwidth: Rate,
    /// Ranks per node (consecutive ranks share a node); 1 for a flat group.
    pub ranks_per_node: usize,
}

impl Fabric {
    /// A flat group: every rank on its own node, all links alike.
    pub const fn flat(alpha: Duration, bandwidth: Rate) -> Self {
        Fabric {
            alpha,
            bandwidth,
            intra_alpha: alpha,
            intra_bandwidth: bandwidth,
            ranks_per_node: 1,
        }
    }
}

/// A candidate chosen by [`choose`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cost {
    /// The algorithm.
    pub algorithm: Algorithm,
    /// Pipeline segments to plan it with.
    pub pipeline: usize,
    /// Its modelled completion time.
    pub time: Duration,
}

/// Modelled time of `collective` with `algorithm` on `bytes` (per rank buffer; per block for
/// AllToAll; the whole buffer for AllGather/ReduceScatter) over `ranks` ranks, cut into
/// `pipeline` segments. `None` when the algorithm does not plan the operation (see
/// [`crate::plan`]).
pub fn cost(
    collective: Collective,
    algorithm: Algorithm,
    bytes: u64,
    ranks: usize,
    pipeline: usize,
    fabric: &Fabric,
) -> Option<Duration> {
    if fabric.bandwidth.bps() == 0 || fabric.intra_bandwidth.bps() == 0 {
        return Some(Duration::MAX);
    }
    // α in picoseconds, β in picoseconds per byte.
    let inter = (
        fabric.alpha.as_ps() as f64,
        8e12 / fabric.bandwidth.bps_f64(),
    );
    let intra = (
        fabric.intra_alpha.as_ps() as f64,
        8e12 / fabric.intra_bandwidth.bps_f64(),
    );
    let (m, p, s) = (bytes as f64, ranks.max(1), pipeline.max(1));
    let ps = model(collective, algorithm, m, p, s, inter, intra)?;
    Some(if ps >= u64::MAX as f64 {
        Duration::MAX
    } else {
        Duration::from_ps(ps.max(0.0) as u64)
    })
}

/// Picks the cheapest algorithm (and pipeline depth, from 1 to 64 in powers of two) for
/// `collective` on this message size and group shape. A `fabric.ranks_per_node` > 1 that
/// divides `ranks` adds the hierarchical AllReduce as a candidate. Flat algorithms are priced
/// on the inter-node links (their rings and trees cross nodes). Ties go to the earlier candidate (ring first).
pub fn choose(collective: Collective, bytes: u64, ranks: usize, fabric: &Fabric) -> Option<Cost> {
    let ranks_per_node = fabric.ranks_per_node;
    let mut candidates = vec![
        Algorithm::Ring,
        Algorithm::HalvingDoubling,
        Algorithm::RecursiveDoubling,
        Algorithm::DoubleBinaryTree,
        Algorithm::Tree,
        Algorithm::Chain,
        Algorithm::Pairwise,
        Algorithm::Bruck,
    ];
    if ranks_per_node > 1 && ranks_per_node < ranks && ranks.is_multiple_of(ranks_per_node) {
        candidates.push(Algorithm::Hierarchical { ranks_per_node });
    }
    let mut best: Option<Cost> = None;
    for algorithm in candidates {
        for pipeline in (0..7).map(|k| 1usize << k) {
            let Some(time) = cost(collective, algorithm, bytes, ranks, pipeline, fabric) else {
                break;
            };
            if best.is_none_or(|b| time < b.time) {
                best = Some(Cost {
                    algorithm,
                    pipeline,
                    time,
                });
            }
        }
    }
    best
}

fn model(
    collective: Collective,
    algorithm: Algorithm,
    m: f64,
    p: usize,
    s: usize,
    (a, b): (f64, f64),
    (ia, ib): (f64, f64),
) -> Option<f64> {
    let pf = p as f64;
    let d = f64::from(usize::BITS - 1 - p.leading_zeros()); // ⌊log₂ p⌋
    let sf = s as f64;
    let seg = m / sf;
    // Pipelined tree phases: `depth + s − 1` rounds of one segment each (§4.2; the reduce side
    // takes two rounds per level because a parent receives one child at a time).
    let tree_reduce = |m: f64, fan: f64| (2.0 * d + sf - 1.0) * (a + (m / sf) * b * fan);
    let tree_bcast = |m: f64, fan: f64| (d + sf - 1.0) * (a + 2.0 * (m / sf) * b * fan);
    let chain = |m: f64| (pf - 1.0 + sf - 1.0) * (a + (m / sf) * b);
    let unpipelined = s == 1;
    Some(match (collective, algorithm) {
        // Ring (Patarasuk & Yuan 2009; Thakur et al. §4.4): 2(p−1)α + 2·(p−1)/p·mβ.
        (Collective::AllReduce, Algorithm::Ring) => {
            2.0 * (pf - 1.0) * a + 2.0 * (pf - 1.0) / pf * m * b + (sf - 1.0) * a
        }
        (Collective::AllReduce, Algorithm::HalvingDoubling) if unpipelined => {
            halving_doubling(p, m, a, b)
        }
        // Recursive doubling (§4.4): ⌈log₂ p⌉·(α + mβ), plus a fold and an unfold of the whole
        // buffer when p is not a power of two. Each step receives into the very range it sends
        // from, so under the snapshot semantics an executor stages the incoming data and
        // combines after the send: one more pass over m per step, priced as another mβ. That
        // keeps it to short messages (measured: 2 ranks, 256 MiB over shared memory ran at a
        // fifth of halving-doubling's bandwidth without this term).
        (Collective::AllReduce, Algorithm::RecursiveDoubling) if unpipelined => {
            let mut t = d * (a + 2.0 * m * b);
            if !p.is_power_of_two() {
                t += 2.0 * (a + m * b);
            }
            t
        }
        (Collective::AllReduce, Algorithm::Tree) => tree_reduce(m, 1.0) + tree_bcast(m, 1.0),
        // Two trees on m/2 each; a rank is interior in one and a leaf in the other, so its link
        // carries 3/2 of one tree's traffic (approximation of NCCL's model).
        (Collective::AllReduce, Algorithm::DoubleBinaryTree) => {
            tree_reduce(m / 2.0, 1.5) + tree_bcast(m / 2.0, 1.5)
        }
        (Collective::AllReduce, Algorithm::Chain) => 2.0 * chain(m),
        // Intra ring reduce-scatter + inter halving-doubling on m/L + intra ring allgather.
        (Collective::AllReduce, Algorithm::Hierarchical { ranks_per_node: l })
            if unpipelined && l > 0 && p.is_multiple_of(l) =>
        {
            let lf = l as f64;
            2.0 * ((lf - 1.0) * ia + (lf - 1.0) / lf * m * ib)
                + halving_doubling(p / l, m / lf, a, b)
        }
        // Ring allgather / reduce-scatter (Thakur et al. §3.1, §4.3): (p−1)α + (p−1)/p·mβ.
        (Collective::AllGather | Collective::ReduceScatter, Algorithm::Ring) => {
            (pf - 1.0) * a + (pf - 1.0) / pf * m * b + (sf - 1.0) * a
        }
        (Collective::Broadcast { .. }, Algorithm::Tree) => tree_bcast(m, 1.0),
        (Collective::Reduce { .. }, Algorithm::Tree) => tree_reduce(m, 1.0),
        // Pipelined chain (§4.2, van de Geijn): (p − 1 + s − 1)(α + (m/s)β).
        (Collective::Broadcast { .. } | Collective::Reduce { .. }, Algorithm::Chain) => chain(m),
        // Pairwise exchange (§3.5): (p−1)(α + mβ), m bytes per block.
        (Collective::AllToAll, Algorithm::Pairwise) => (pf - 1.0) * (a + seg * b) * sf,
        // Bruck (§3.5): ⌈log₂ p⌉·α + ⌈log₂ p⌉·(p/2)·mβ.
        (Collective::AllToAll, Algorithm::Bruck) => {
            let rounds = f64::from(usize::BITS - (p - 1).leading_zeros());
            rounds * sf * (a + p.div_ceil(2) as f64 * seg * b)
        }
        _ => return None,
    })
}

/// Rabenseifner (Thakur et al. §4.4): 2·D·α + 2·(p'−1)/p'·mβ for `p' = 2^D`, plus one full
/// exchange each way (2α + 2mβ) when `p` is not a power of two.
fn halving_doubling(p: usize, m: f64, a: f64, b: f64) -> f64 {
    let d = usize::BITS - 1 - p.max(1).leading_zeros();
    let pp = (1usize << d) as f64;
    let mut t = 2.0 * f64::from(d) * a + 2.0 * (pp - 1.0) / pp * m * b;
    if !p.is_power_of_two() {
        t += 2.0 * (a + m * b);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALPHA: Duration = Duration::from_micros(10);
    const BW: Rate = Rate::from_gbps(100);
    const FLAT: Fabric = Fabric::flat(ALPHA, BW);

    #[test]
    fn small_messages_prefer_log_latency_and_large_ones_bandwidth() {
        let small = choose(Collective::AllReduce, 8, 64, &FLAT).unwrap();
        assert_eq!(small.algorithm, Algorithm::RecursiveDoubling, "{small:?}");
        for ranks in [2, 3, 8] {
            let big = choose(Collective::AllReduce, 8 << 20, ranks, &FLAT).unwrap();
            assert_ne!(
                big.algorithm,
                Algorithm::RecursiveDoubling,
                "{ranks}: {big:?}"
            );
        }
        let large = choose(Collective::AllReduce, 1 << 30, 8, &FLAT).unwrap();
        assert!(
            matches!(
                large.algorithm,
                Algorithm::Ring | Algorithm::HalvingDoubling
            ),
            "{large:?}"
        );
    }

    #[test]
    fn hierarchical_wins_on_many_nodes_for_mid_sizes() {
        let nvlink = Fabric {
            intra_alpha: Duration::from_micros(1),
            intra_bandwidth: Rate::from_gbps(2400),
            ranks_per_node: 8,
            ..FLAT
        };
        let c = choose(Collective::AllReduce, 1 << 20, 64, &nvlink).unwrap();
        assert_eq!(
            c.algorithm,
            Algorithm::Hierarchical { ranks_per_node: 8 },
            "{c:?}"
        );
        // With intra-node links no better than the network, flat halving-doubling is cheaper.
        let c = choose(
            Collective::AllReduce,
            1 << 20,
            64,
            &Fabric {
                ranks_per_node: 8,
                ..FLAT
            },
        );
        assert_eq!(c.map(|c| c.algorithm), Some(Algorithm::HalvingDoubling));
    }

    #[test]
    fn ring_allreduce_matches_the_closed_form() {
        // 4 ranks, 1 MB at 100 Gb/s: 6α + 1.5·80 µs.
        let t = cost(
            Collective::AllReduce,
            Algorithm::Ring,
            1_000_000,
            4,
            1,
            &FLAT,
        );
        assert_eq!(t, Some(Duration::from_micros(60 + 120)));
    }

    #[test]
    fn chain_broadcast_benefits_from_pipelining() {
        let bcast = Collective::Broadcast { root: 0 };
        let one = cost(bcast, Algorithm::Chain, 1 << 24, 16, 1, &FLAT).unwrap();
        let many = cost(bcast, Algorithm::Chain, 1 << 24, 16, 32, &FLAT).unwrap();
        assert!(many < one);
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        let z = cost(
            Collective::AllReduce,
            Algorithm::Ring,
            1,
            4,
            1,
            &Fabric::flat(ALPHA, Rate::ZERO),
        );
        assert_eq!(z, Some(Duration::MAX));
        let u = cost(Collective::AllGather, Algorithm::Bruck, 1, 4, 1, &FLAT);
        assert_eq!(u, None);
        let huge = cost(
            Collective::AllToAll,
            Algorithm::Bruck,
            u64::MAX,
            4096,
            64,
            &FLAT,
        );
        assert_eq!(huge, Some(Duration::MAX));
        assert!(
            choose(
                Collective::AllReduce,
                0,
                0,
                &Fabric {
                    ranks_per_node: 0,
                    ..FLAT
                }
            )
            .is_some()
        );
    }
}
