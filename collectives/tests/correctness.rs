//! Every operation × algorithm × dtype against a direct computation, with ragged counts, 1–8
//! ranks (hierarchical 2×4 and 3×2), pipelining, and property tests over random shapes.
//!
//! Inputs are small integers so every float sum/product is exact whatever the order, which
//! lets the schedules' results be compared bit for bit with the reference.

use half::{bf16, f16};
use proptest::prelude::*;
use weir_collectives::{Algorithm, Collective, Element, ReduceOp, chunks, plan, simulate};

/// Converts a small integer into an element.
trait Small: Element {
    fn small(v: i8) -> Self;
}

macro_rules! small_cast {
    ($($t:ty),*) => { $(impl Small for $t { fn small(v: i8) -> Self { v as $t } })* };
}
small_cast!(f32, f64, i8, i32, i64, u8, u32, u64);
impl Small for f16 {
    fn small(v: i8) -> Self {
        f16::from_f32(f32::from(v))
    }
}
impl Small for bf16 {
    fn small(v: i8) -> Self {
        bf16::from_f32(f32::from(v))
    }
}

/// The value rank `r` holds at element `i`: in -3..=3, never zero for products.
fn value<T: Small>(op: ReduceOp, r: usize, i: usize) -> T {
    let v = ((r * 7 + i * 3) % 7) as i8 - 3;
    match op {
        ReduceOp::Prod => T::small(if v >= 0 { 1 } else { -1 } * (1 + (v.abs() % 2))),
        _ => T::small(if T::DTYPE.size() == 1 || is_unsigned::<T>() {
            v + 3
        } else {
            v
        }),
    }
}

fn is_unsigned<T: Element>() -> bool {
    matches!(
        T::DTYPE,
        weir_collectives::DType::U8 | weir_collectives::DType::U32 | weir_collectives::DType::U64
    )
}

/// Runs one case and compares with the direct computation; returns a description on mismatch.
fn check<T: Small>(
    coll: Collective,
    algo: Algorithm,
    n: usize,
    count: usize,
    pipeline: usize,
    op: ReduceOp,
) -> Result<(), String> {
    let case = format!(
        "{coll:?} {algo:?} {:?} n={n} count={count} p={pipeline} {op:?}",
        T::DTYPE
    );
    let s = plan(coll, algo, n, count, pipeline).map_err(|e| format!("{case}: plan {e:?}"))?;
    let full = |r: usize| -> Vec<T> { (0..count).map(|i| value(op, r, i)).collect() };
    let reduced = || -> Vec<T> {
        let mut acc = full(0);
        for r in 1..n {
            T::combine(op, &mut acc, &full(r));
        }
        if op == ReduceOp::Avg {
            T::divide(&mut acc, n);
        }
        acc
    };
    let own = chunks(count, n);
    let (inputs, want): (Vec<Vec<T>>, Vec<Vec<T>>) = match coll {
        Collective::AllReduce => ((0..n).map(full).collect(), vec![reduced(); n]),
        Collective::ReduceScatter => {
            let red = reduced();
            (
                (0..n).map(full).collect(),
                own.iter().map(|c| red[c.clone()].to_vec()).collect(),
            )
        }
        Collective::AllGather => {
            let owner = |i: usize| own.iter().position(|c| c.contains(&i)).unwrap();
            let all: Vec<T> = (0..count).map(|i| value(op, owner(i), i)).collect();
            (
                own.iter().map(|c| all[c.clone()].to_vec()).collect(),
                vec![all; n],
            )
        }
        Collective::Broadcast { root } => (
            (0..n)
                .map(|r| if r == root { full(r) } else { Vec::new() })
                .collect(),
            vec![full(root); n],
        ),
        Collective::Reduce { root } => (
            (0..n).map(full).collect(),
            (0..n)
                .map(|r| if r == root { reduced() } else { Vec::new() })
                .collect(),
        ),
        Collective::AllToAll => {
            let input = |r: usize| -> Vec<T> { (0..n * count).map(|i| value(op, r, i)).collect() };
            let want = (0..n)
                .map(|j| {
                    (0..n)
                        .flat_map(|i| input(i)[j * count..(j + 1) * count].to_vec())
                        .collect()
                })
                .collect();
            ((0..n).map(input).collect(), want)
        }
    };
    let refs: Vec<&[T]> = inputs.iter().map(Vec::as_slice).collect();
    let got = simulate(&s, &refs, op).map_err(|e| format!("{case}: simulate {e:?}"))?;
    if got != want {
        return Err(format!("{case}:\n got {got:?}\nwant {want:?}"));
    }
    Ok(())
}

/// Every (collective, algorithm) pair `plan` supports for `n` ranks.
fn pairs(n: usize) -> Vec<(Collective, Algorithm)> {
    let mut v = vec![
        (Collective::AllReduce, Algorithm::Ring),
        (Collective::AllReduce, Algorithm::HalvingDoubling),
        (Collective::AllReduce, Algorithm::RecursiveDoubling),
        (Collective::AllReduce, Algorithm::DoubleBinaryTree),
        (Collective::AllReduce, Algorithm::Tree),
        (Collective::AllReduce, Algorithm::Chain),
        (Collective::ReduceScatter, Algorithm::Ring),
        (Collective::AllGather, Algorithm::Ring),
        (Collective::AllToAll, Algorithm::Pairwise),
        (Collective::AllToAll, Algorithm::Bruck),
    ];
    for root in [0, n / 2, n - 1] {
        for a in [Algorithm::Tree, Algorithm::Chain] {
            v.push((Collective::Broadcast { root }, a));
            v.push((Collective::Reduce { root }, a));
        }
    }
    for l in 1..=n {
        if n.is_multiple_of(l) {
            v.push((
                Collective::AllReduce,
                Algorithm::Hierarchical { ranks_per_node: l },
            ));
        }
    }
    v
}

const COUNTS: [usize; 6] = [0, 1, 5, 13, 16, 67];

fn all_cases<T: Small>(ops: &[ReduceOp]) {
    let mut failures = Vec::new();
    for n in 1..=8 {
        for (coll, algo) in pairs(n) {
            for count in COUNTS {
                for pipeline in [1, 3] {
                    for &op in ops {
                        if let Err(e) = check::<T>(coll, algo, n, count, pipeline, op) {
                            failures.push(e);
                        }
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures, first:\n{}",
        failures.len(),
        failures[0]
    );
}

#[test]
fn sum_every_dtype() {
    all_cases::<f32>(&[ReduceOp::Sum]);
    all_cases::<f64>(&[ReduceOp::Sum]);
    all_cases::<f16>(&[ReduceOp::Sum]);
    all_cases::<bf16>(&[ReduceOp::Sum]);
    all_cases::<i8>(&[ReduceOp::Sum]);
    all_cases::<u8>(&[ReduceOp::Sum]);
    all_cases::<i32>(&[ReduceOp::Sum]);
    all_cases::<u32>(&[ReduceOp::Sum]);
    all_cases::<i64>(&[ReduceOp::Sum]);
    all_cases::<u64>(&[ReduceOp::Sum]);
}

#[test]
fn other_ops_on_representative_dtypes() {
    let ops = [ReduceOp::Prod, ReduceOp::Min, ReduceOp::Max, ReduceOp::Avg];
    all_cases::<f32>(&ops);
    all_cases::<bf16>(&ops);
    all_cases::<i32>(&ops);
    all_cases::<u8>(&ops);
    all_cases::<i64>(&[ReduceOp::Avg, ReduceOp::Min]);
}

#[test]
fn hierarchical_two_by_four_and_three_by_two() {
    for (n, l) in [(8, 4), (6, 2), (6, 3), (8, 2)] {
        for count in [1, 7, 24, 101] {
            for pipeline in [1, 2, 5] {
                let algo = Algorithm::Hierarchical { ranks_per_node: l };
                check::<f32>(
                    Collective::AllReduce,
                    algo,
                    n,
                    count,
                    pipeline,
                    ReduceOp::Sum,
                )
                .unwrap();
                check::<i32>(
                    Collective::AllReduce,
                    algo,
                    n,
                    count,
                    pipeline,
                    ReduceOp::Max,
                )
                .unwrap();
            }
        }
    }
}

#[test]
fn pipelining_adds_steps_not_volume() {
    let one = plan(
        Collective::AllReduce,
        Algorithm::DoubleBinaryTree,
        8,
        1000,
        1,
    )
    .unwrap();
    let eight = plan(
        Collective::AllReduce,
        Algorithm::DoubleBinaryTree,
        8,
        1000,
        8,
    )
    .unwrap();
    assert_eq!(one.elements_sent(), eight.elements_sent());
    assert_eq!(eight.steps().len(), one.steps().len() + 7);
    // Halving-doubling with a fold: 2·log₂ 4 + 2 steps for 6 ranks.
    let hd = plan(
        Collective::AllReduce,
        Algorithm::HalvingDoubling,
        6,
        1000,
        1,
    )
    .unwrap();
    assert_eq!(hd.steps().len(), 6);
    // Recursive doubling: log₂ 8 steps of the whole buffer; 6 ranks fold and unfold around
    // log₂ 4 steps.
    let rd8 = plan(
        Collective::AllReduce,
        Algorithm::RecursiveDoubling,
        8,
        1000,
        1,
    )
    .unwrap();
    assert_eq!(rd8.steps().len(), 3);
    assert_eq!(rd8.elements_sent(), 3 * 8 * 1000);
    let rd6 = plan(
        Collective::AllReduce,
        Algorithm::RecursiveDoubling,
        6,
        1000,
        1,
    )
    .unwrap();
    assert_eq!(rd6.steps().len(), 2 + 2);
    let bruck = plan(Collective::AllToAll, Algorithm::Bruck, 8, 4, 1).unwrap();
    assert_eq!(
        bruck.steps().len(),
        3 + 2,
        "3 rounds plus two local rotations"
    );
}

#[test]
fn simulate_refuses_wrong_inputs() {
    let s = plan(Collective::AllReduce, Algorithm::Ring, 2, 4, 1).unwrap();
    let a = [1.0f32; 4];
    let short = [1.0f32; 3];
    assert!(simulate(&s, &[&a[..]], ReduceOp::Sum).is_err());
    assert!(simulate(&s, &[&a[..], &short[..]], ReduceOp::Sum).is_err());
}

proptest! {
    #[test]
    fn random_shapes_match_the_reference(
        n in 1usize..=9,
        count in 0usize..300,
        pipeline in 1usize..6,
        pick in 0usize..64,
        root_pick in 0usize..16,
    ) {
        let pairs = pairs(n);
        let (coll, algo) = pairs[pick % pairs.len()];
        let coll = match coll {
            Collective::Broadcast { .. } => Collective::Broadcast { root: root_pick % n },
            Collective::Reduce { .. } => Collective::Reduce { root: root_pick % n },
            c => c,
        };
        check::<i64>(coll, algo, n, count, pipeline, ReduceOp::Sum).map_err(TestCaseError::fail)?;
        check::<u8>(coll, algo, n, count, pipeline, ReduceOp::Max).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn every_plan_revalidates(n in 1usize..=12, count in 0usize..100, pick in 0usize..64) {
        let pairs = pairs(n);
        let (coll, algo) = pairs[pick % pairs.len()];
        let s = plan(coll, algo, n, count, 2).unwrap();
        prop_assert!(s.validate().is_ok());
        prop_assert!(s.transfers().all(|t| t.len > 0));
    }
}
