//! Failures surface on every rank with the failing rank named; bootstrap errors are clear and
//! never hang. (In one process; `procs.rs` kills real processes.)
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::{Duration, Instant};

use common::{free_addr, opts};
use weir_comm::{CommError, CommOptions, Communicator, ReduceOp};

fn short(shm: bool, timeout_ms: u64) -> CommOptions {
    let mut o = opts(shm);
    o.timeout = Duration::from_millis(timeout_ms);
    o
}

/// Rank `dead` drops its communicator after a barrier; every other rank's allreduce (small and
/// large) must fail naming it.
fn dropped_rank(shm: bool, n: usize, dead: usize, count: usize) {
    let o = short(shm, 10_000);
    let errs = common::world(n, &o, |c| {
        c.barrier().expect("barrier");
        if c.rank() == dead {
            drop(c);
            return None;
        }
        let mut buf = vec![1f32; count];
        let t0 = Instant::now();
        let e = c.allreduce(&mut buf, ReduceOp::Sum).expect_err("must fail");
        Some((c.rank(), e, t0.elapsed()))
    });
    for (r, e, took) in errs.into_iter().flatten() {
        assert_eq!(
            e.peer(),
            Some(dead),
            "rank {r} blames the wrong rank: {e} (after {took:?})"
        );
        assert!(
            matches!(e, CommError::PeerLeft { .. } | CommError::PeerFailed { .. }),
            "rank {r}: {e}"
        );
        assert!(e.to_string().contains(&format!("rank {dead}")), "{e}");
    }
}

#[test]
fn a_rank_that_drops_its_communicator_is_named_everywhere_shm() {
    dropped_rank(true, 3, 2, 1);
    dropped_rank(true, 4, 1, 1 << 20);
}

#[test]
fn a_rank_that_drops_its_communicator_is_named_everywhere_transport() {
    dropped_rank(false, 3, 2, 1);
    dropped_rank(false, 3, 0, 300_000);
}

#[test]
fn a_silent_rank_times_out_and_is_named() {
    for shm in [true, false] {
        let o = short(shm, 1500);
        let out = common::world(3, &o, |c| {
            c.barrier().expect("barrier");
            if c.rank() == 1 {
                // Alive but never joins: hold the communicator past the others' timeout.
                std::thread::sleep(Duration::from_millis(5000));
                return None;
            }
            let mut buf = vec![1u32; 1000];
            Some(
                c.allreduce(&mut buf, ReduceOp::Sum)
                    .expect_err("must time out"),
            )
        });
        for e in out.into_iter().flatten() {
            assert_eq!(e.peer(), Some(1), "{e}");
        }
    }
}

#[test]
fn wrong_world_size_is_refused_on_both_sides() {
    let addr = free_addr();
    let o = short(true, 5000);
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Communicator::new(0, 2, &addr, &o).map(|_| ()));
        let b = s.spawn(|| Communicator::new(1, 3, &addr, &o).map(|_| ()));
        (a.join().expect("join"), b.join().expect("join"))
    });
    for e in [a.expect_err("rank 0"), b.expect_err("rank 1")] {
        assert!(matches!(e, CommError::Bootstrap(_)), "{e}");
        assert!(e.to_string().contains("3 ranks"), "{e}");
    }
}

#[test]
fn duplicate_rank_is_refused() {
    let addr = free_addr();
    let o = short(true, 3000);
    let res: Vec<Result<(), CommError>> = std::thread::scope(|s| {
        let hs: Vec<_> = [0, 1, 1]
            .into_iter()
            .map(|r| {
                let (addr, o) = (&addr, &o);
                s.spawn(move || Communicator::new(r, 3, addr, o).map(|_| ()))
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("join")).collect()
    });
    assert!(res.iter().all(Result::is_err), "{res:?}");
    let text: Vec<String> = res
        .into_iter()
        .map(|r| r.unwrap_err().to_string())
        .collect();
    assert!(
        text.iter().any(|t| t.contains("registered twice")),
        "{text:?}"
    );
}

#[test]
fn unreachable_master_and_bad_arguments_fail_fast() {
    let addr = free_addr(); // nobody listens there
    let t0 = Instant::now();
    let e = Communicator::new(1, 2, &addr, &short(true, 400)).expect_err("no master");
    assert!(t0.elapsed() < Duration::from_secs(20));
    assert!(e.to_string().contains("cannot reach"), "{e}");
    let e = Communicator::new(2, 2, &addr, &short(true, 400)).expect_err("rank >= size");
    assert!(e.to_string().contains("out of range"), "{e}");
    let e = Communicator::new(0, 2, "no-such-host.invalid:1", &short(true, 400)).expect_err("dns");
    assert!(matches!(e, CommError::Bootstrap(_)), "{e}");
    // A lone rank 0 times out waiting for the others, naming them.
    let e = Communicator::new(0, 3, &free_addr(), &short(true, 300)).expect_err("alone");
    assert!(e.to_string().contains("[1, 2]"), "{e}");
}

#[test]
fn bad_buffers_are_refused_without_hanging() {
    common::world(2, &short(true, 5000), |c| {
        let mut x = [1u32; 3];
        assert!(matches!(
            c.broadcast(&mut x, 5),
            Err(CommError::InvalidArgument(_))
        ));
        let mut r = [0u32; 4];
        assert!(matches!(
            c.all_to_all(&x, &mut r),
            Err(CommError::InvalidArgument(_))
        ));
        // Still usable afterwards.
        c.allreduce(&mut x, ReduceOp::Sum).expect("allreduce");
        assert_eq!(x, [2; 3]);
    });
}

#[test]
fn ranks_that_disagree_about_the_count_get_an_error() {
    let o = short(true, 3000);
    let out = common::world(2, &o, |c| {
        let mut buf = vec![1f32; if c.rank() == 0 { 100 } else { 120 }];
        c.allreduce(&mut buf, ReduceOp::Sum).err()
    });
    assert!(
        out.iter()
            .any(|e| matches!(e, Some(CommError::Protocol(_)))),
        "{out:?}"
    );
    assert!(out.iter().all(Option::is_some), "{out:?}");
}
