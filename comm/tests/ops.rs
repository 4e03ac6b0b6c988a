//! Every operation × element type × algorithm against a reference, on 1–8 ranks in one process
//! (threads), over shared memory, over the transport (`shm = false`) and over a two-"host"
//! layout that mixes both; plus nonblocking requests and splits.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::{Small, input, opts, reduced, world};
use weir_collectives::{Algorithm, chunks};
use weir_comm::{CommOptions, Communicator, ReduceOp};

const OPS: [ReduceOp; 5] = [
    ReduceOp::Sum,
    ReduceOp::Prod,
    ReduceOp::Min,
    ReduceOp::Max,
    ReduceOp::Avg,
];

/// Runs every operation with every algorithm that plans it, at each count, on `c`.
fn check_type<T: Small>(c: &Communicator, counts: &[usize], all_ops: bool) {
    let (n, r) = (c.size(), c.rank());
    let ctx = |what: &str| {
        format!(
            "{} on {n} ranks, rank {r} (fabric {:?}): {what}",
            std::any::type_name::<T>(),
            c.fabric()
        )
    };
    for &count in counts {
        let ops: &[ReduceOp] = if all_ops { &OPS } else { &[ReduceOp::Sum] };
        for &op in ops {
            let want = reduced::<T>(n, count, op);
            // AllReduce.
            let mut buf: Vec<T> = (0..count).map(|i| input(r, i, op)).collect();
            c.allreduce(&mut buf, op)
                .unwrap_or_else(|e| panic!("{}: {e}", ctx("allreduce")));
            assert_eq!(buf, want, "{} count {count} {op:?}", ctx("allreduce"));
            // ReduceScatter.
            let mut buf: Vec<T> = (0..count).map(|i| input(r, i, op)).collect();
            let own = c
                .reduce_scatter(&mut buf, op)
                .unwrap_or_else(|e| panic!("{}: {e}", ctx("reduce_scatter")));
            assert_eq!(own, chunks(count, n)[r]);
            assert_eq!(
                buf[own.clone()],
                want[own],
                "{} count {count}",
                ctx("reduce_scatter")
            );
            // Reduce to the last rank.
            let root = n - 1;
            let mut buf: Vec<T> = (0..count).map(|i| input(r, i, op)).collect();
            c.reduce(&mut buf, op, root)
                .unwrap_or_else(|e| panic!("{}: {e}", ctx("reduce")));
            if r == root {
                assert_eq!(buf, want, "{} count {count} {op:?}", ctx("reduce"));
            }
        }
        let op = ReduceOp::Sum;
        // AllGather.
        let own = chunks(count, n)[r].clone();
        let mut buf = vec![T::default(); count];
        for i in own {
            buf[i] = input(r, i, op);
        }
        c.allgather(&mut buf)
            .unwrap_or_else(|e| panic!("{}: {e}", ctx("allgather")));
        let want: Vec<T> = chunks(count, n)
            .into_iter()
            .enumerate()
            .flat_map(|(q, ch)| ch.map(move |i| input(q, i, op)))
            .collect();
        assert_eq!(buf, want, "{} count {count}", ctx("allgather"));
        // Broadcast from rank n / 2.
        let root = n / 2;
        let mut buf: Vec<T> = (0..count)
            .map(|i| {
                if r == root {
                    input(root, i, op)
                } else {
                    T::default()
                }
            })
            .collect();
        c.broadcast(&mut buf, root)
            .unwrap_or_else(|e| panic!("{}: {e}", ctx("broadcast")));
        let want: Vec<T> = (0..count).map(|i| input(root, i, op)).collect();
        assert_eq!(buf, want, "{} count {count}", ctx("broadcast"));
        // AllToAll: `count` elements per block.
        let send: Vec<T> = (0..n * count).map(|i| input(r, i, op)).collect();
        let mut recv = vec![T::default(); n * count];
        c.all_to_all(&send, &mut recv)
            .unwrap_or_else(|e| panic!("{}: {e}", ctx("all_to_all")));
        let want: Vec<T> = (0..n * count)
            .map(|k| input(k / count.max(1), r * count + k % count.max(1), op))
            .collect();
        assert_eq!(recv, want, "{} count {count}", ctx("all_to_all"));
    }
}

fn check_all_types(c: &Communicator, counts: &[usize]) {
    check_type::<f32>(c, counts, true);
    check_type::<f64>(c, counts, false);
    check_type::<half::f16>(c, counts, true);
    check_type::<half::bf16>(c, counts, false);
    check_type::<i8>(c, counts, true);
    check_type::<u8>(c, counts, false);
    check_type::<i32>(c, counts, true);
    check_type::<u32>(c, counts, false);
    check_type::<i64>(c, counts, false);
    check_type::<u64>(c, counts, true);
}

const ALGOS: [Option<Algorithm>; 10] = [
    None,
    Some(Algorithm::Ring),
    Some(Algorithm::Tree),
    Some(Algorithm::DoubleBinaryTree),
    Some(Algorithm::HalvingDoubling),
    Some(Algorithm::RecursiveDoubling),
    Some(Algorithm::Chain),
    Some(Algorithm::Hierarchical { ranks_per_node: 0 }),
    Some(Algorithm::Pairwise),
    Some(Algorithm::Bruck),
];

fn matrix(ranks: &[usize], shm: bool, counts: &[usize], pipeline: Option<usize>) {
    for &n in ranks {
        for algo in ALGOS {
            let mut o = opts(shm);
            o.algorithm = algo;
            o.pipeline = pipeline;
            world(n, &o, |c| check_all_types(&c, counts));
        }
    }
}

#[test]
fn shm_every_op_dtype_algorithm_1_to_4_ranks() {
    // Ragged counts (not divisible by the group), one element, and more than one ring slot.
    matrix(&[1, 2, 3, 4], true, &[1, 7, 1001, 70_001], None);
}

#[test]
fn shm_8_ranks_pipelined() {
    matrix(&[5, 8], true, &[3, 4099], Some(3));
}

#[test]
fn transport_every_op_dtype_algorithm() {
    matrix(&[2, 3], false, &[1, 13, 300_001], None);
}

#[test]
fn transport_8_ranks() {
    for algo in [
        None,
        Some(Algorithm::Ring),
        Some(Algorithm::DoubleBinaryTree),
    ] {
        let mut o = opts(false);
        o.algorithm = algo;
        world(8, &o, |c| {
            check_type::<f32>(&c, &[3, 20_001], true);
            check_type::<u8>(&c, &[17], false);
            let s = c.transport_stats().expect("transport in use");
            assert!(s.udp.tx_datagrams > 0, "{s:?}");
        });
    }
}

#[test]
fn transport_4_ranks_pipelined() {
    matrix(&[4], false, &[5, 10_007], Some(2));
}

#[test]
fn two_hosts_mix_shared_memory_and_transport() {
    // Ranks 0,1 on "host a" and 2,3 on "host b": shared memory inside, transport across;
    // the hierarchical algorithm runs its intra-node phases over shared memory.
    for algo in [
        None,
        Some(Algorithm::Hierarchical { ranks_per_node: 0 }),
        Some(Algorithm::Ring),
    ] {
        let addr = common::free_addr();
        std::thread::scope(|s| {
            for r in 0..4 {
                let addr = addr.clone();
                s.spawn(move || {
                    let mut o = opts(true);
                    o.algorithm = algo;
                    o.host_id = Some(format!("host-{}", r / 2));
                    let c = Communicator::new(r, 4, &addr, &o).expect("bootstrap");
                    assert_eq!(c.local_rank(), r % 2);
                    assert_eq!(c.fabric().ranks_per_node, 2);
                    check_type::<f32>(&c, &[1, 11, 100_003], true);
                    check_type::<i64>(&c, &[9], false);
                });
            }
        });
    }
}

#[test]
fn nonblocking_requests_complete_with_test_and_wait() {
    for shm in [true, false] {
        world(3, &opts(shm), |c| {
            let r = c.rank();
            let count = 50_000;
            let mut buf: Vec<f32> = (0..count).map(|i| input(r, i, ReduceOp::Sum)).collect();
            {
                let mut req = c.iallreduce(&mut buf, ReduceOp::Sum).expect("start");
                let mut polls = 0u64;
                while !req.test().expect("test") {
                    polls += 1;
                    std::thread::yield_now();
                }
                assert!(polls < u64::MAX);
            }
            assert_eq!(buf, reduced::<f32>(3, count, ReduceOp::Sum));
            // A second operation while one is in flight is refused, not deadlocked.
            let mut a = vec![1u32; 10];
            let mut b = vec![1u32; 10];
            let mut req = c.iallgather(&mut a).expect("start");
            assert!(matches!(
                c.allreduce(&mut b, ReduceOp::Sum),
                Err(weir_comm::CommError::Busy)
            ));
            while !req.wait(Duration::from_millis(5)).expect("wait") {}
            drop(req);
            let mut x = vec![r as u64 + 1; 4];
            c.ibroadcast(&mut x, 2)
                .expect("start")
                .finish()
                .expect("finish");
            assert_eq!(x, vec![3; 4]);
        });
    }
}

#[test]
fn dropping_an_unfinished_request_completes_it() {
    for shm in [true, false] {
        world(4, &opts(shm), |c| {
            let r = c.rank();
            let count = 123_457;
            let mut buf: Vec<i32> = (0..count).map(|i| input(r, i, ReduceOp::Max)).collect();
            drop(c.iallreduce(&mut buf, ReduceOp::Max).expect("start"));
            assert_eq!(buf, reduced::<i32>(4, count, ReduceOp::Max));
        });
    }
}

#[test]
fn a_leaked_request_leaves_the_buffer_alone() {
    // `mem::forget` skips the request's Drop: the operation stalls on this rank (and the
    // world stays busy), but the caller's buffer is freed and nothing writes into it. The
    // ring's two steps keep the first `test` from finishing it (the cost model would pick
    // one recursive-doubling step for this size, which the peer's early data can complete).
    let mut o = opts(false);
    o.algorithm = Some(Algorithm::Ring);
    world(2, &o, |c| {
        let mut buf = vec![c.rank() as u32 + 1; 10_000];
        let mut req = c.iallreduce(&mut buf, ReduceOp::Sum).expect("start");
        // Post the first step's receives and sends, then leak the request.
        assert!(!req.test().expect("test"));
        std::mem::forget(req);
        // The peer's data arrives meanwhile; it must not land in `buf`.
        std::thread::sleep(std::time::Duration::from_millis(100));
        let mine = c.rank() as u32 + 1;
        let changed = buf.iter().filter(|&&x| x != mine).count();
        assert_eq!(changed, 0, "elements written after the request was leaked");
        drop(buf);
        let mut x = [1u8];
        assert!(matches!(
            c.allreduce(&mut x, ReduceOp::Sum),
            Err(weir_comm::CommError::Busy)
        ));
    });
}

#[test]
fn split_builds_working_subcommunicators() {
    world(5, &opts(true), |c| {
        let r = c.rank();
        // Evens and odds, odd ranks in reverse order.
        let key = if r % 2 == 0 { r as u64 } else { 100 - r as u64 };
        let sub = c.split((r % 2) as u64, key).expect("split");
        let members: Vec<usize> = if r % 2 == 0 {
            vec![0, 2, 4]
        } else {
            vec![3, 1]
        };
        assert_eq!(sub.size(), members.len());
        assert_eq!(members[sub.rank()], r);
        let mut x = [r as i32];
        sub.allreduce(&mut x, ReduceOp::Sum).expect("sub allreduce");
        assert_eq!(x[0], members.iter().map(|&m| m as i32).sum::<i32>());
        // The parent still works after the split, and the split of a split too.
        let mut y = [1u8];
        c.allreduce(&mut y, ReduceOp::Sum)
            .expect("parent allreduce");
        assert_eq!(y[0], 5);
        let solo = sub.split(sub.rank() as u64, 0).expect("split again");
        assert_eq!(solo.size(), 1);
        let mut z = [7i64];
        solo.allreduce(&mut z, ReduceOp::Sum).expect("solo");
        assert_eq!(z[0], 7);
        c.barrier().expect("barrier");
    });
}

#[test]
fn communicators_can_move_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Communicator>();
    // A world of one needs no rendezvous partner.
    let c = Communicator::new(0, 1, "127.0.0.1:1", &opts(true)).expect("alone");
    let mut x = [2.5f64];
    c.allreduce(&mut x, ReduceOp::Avg).expect("allreduce");
    assert_eq!(x[0], 2.5);
    assert!(c.transport_stats().is_none());
}

#[test]
fn a_rank_in_another_shm_namespace_uses_the_transport() {
    // Rank 1's shared-memory directory is elsewhere: it reaches ranks 0 and 2 through the
    // transport while they keep shared memory between them.
    let addr = common::free_addr();
    std::thread::scope(|s| {
        for r in 0..3 {
            let addr = addr.clone();
            s.spawn(move || {
                let mut o = opts(true);
                if r == 1 {
                    o.shm_dir = "/nonexistent-weir-shm-dir".into();
                }
                let c = Communicator::new(r, 3, &addr, &o).expect("bootstrap");
                assert!(c.shm_fallback().is_none());
                assert!(c.transport_stats().is_some());
                check_type::<f32>(&c, &[5, 40_000], false);
            });
        }
    });
}

#[test]
fn empty_buffers_complete_at_once() {
    for shm in [true, false] {
        world(3, &opts(shm), |c| {
            let mut e: Vec<f32> = Vec::new();
            c.allreduce(&mut e, ReduceOp::Sum).expect("allreduce");
            c.allgather(&mut e).expect("allgather");
            assert_eq!(c.reduce_scatter(&mut e, ReduceOp::Sum).expect("rs"), 0..0);
            c.broadcast(&mut e, 1).expect("broadcast");
            c.reduce(&mut e, ReduceOp::Max, 2).expect("reduce");
            let mut r: Vec<f32> = Vec::new();
            c.all_to_all(&e, &mut r).expect("all_to_all");
            // Fewer elements than ranks: some ranks own nothing.
            let mut two = vec![c.rank() as f32; 2];
            c.allreduce(&mut two, ReduceOp::Sum).expect("allreduce 2");
            assert_eq!(two, vec![3.0; 2]);
        });
    }
}

#[test]
fn options_read_the_environment_names() {
    assert_eq!(
        weir_comm::parse_algorithm("dbtree"),
        Some(Algorithm::DoubleBinaryTree)
    );
    assert_eq!(
        weir_comm::parse_algorithm("HD"),
        Some(Algorithm::HalvingDoubling)
    );
    assert_eq!(
        weir_comm::parse_algorithm("rd"),
        Some(Algorithm::RecursiveDoubling)
    );
    assert_eq!(weir_comm::parse_algorithm("bogus"), None);
    let o = CommOptions::default();
    assert!(o.shm && o.algorithm.is_none());
}
