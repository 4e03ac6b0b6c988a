//! The rank side of `weir bench allreduce|allgather|reduce-scatter`: nccl-tests-style timing
//! of one collective over a communicator.
//!
//! Contract ([`run`]; the method is `docs/benchmarking.md`'s): `size` is the allreduce vector,
//! the allgather output and the reduce-scatter input, in bytes of f32; the element count is
//! rounded up to a multiple of the group size. Per size: 10 warm-up calls (2 at ≥ 8 MiB), then
//! timed calls until the budget is spent (at least 5, at most 2000), each preceded by a barrier
//! and timed on every rank; a call's time is the maximum over ranks and the reported time the
//! median over calls. The inputs are small integers stored as floats, so every sum is exact, and
//! the last call's result is compared element by element with the expected values (`wrong`
//! counts mismatches over all ranks). Every rank calls [`run`] with the same arguments and gets
//! the same rows.

use std::time::{Duration, Instant};

use weir_collectives::{Collective, ReduceOp};
use weir_comm::{CommError, Communicator};

/// One size's result.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RankRow {
    /// Bytes (after rounding the count up to a multiple of the group size).
    pub size_bytes: usize,
    /// f32 elements.
    pub count: usize,
    /// Median over calls of the slowest rank's time, in microseconds.
    pub time_us: f64,
    /// Elements of the last call's result that differ from the expected value, over all ranks.
    pub wrong: u64,
}

/// Times `collective` (f32, sum) at each of `sizes` (see the module doc).
pub fn run(
    comm: &Communicator,
    collective: Collective,
    sizes: &[usize],
    budget: Duration,
) -> Result<Vec<RankRow>, CommError> {
    let n = comm.size();
    let mut rows = Vec::with_capacity(sizes.len());
    for &size in sizes {
        let count = size
            .div_ceil(4)
            .max(1)
            .checked_next_multiple_of(n)
            .filter(|c| c.checked_mul(4).is_some())
            .ok_or_else(|| CommError::InvalidArgument(format!("size {size} is too large")))?;
        let mut buf = vec![0f32; count];
        let mut recv = match collective {
            Collective::AllToAll => vec![0f32; count],
            _ => Vec::new(),
        };
        let warmups = if count * 4 >= 8 << 20 { 2 } else { 10 };
        for _ in 0..warmups {
            fill(comm, collective, &mut buf);
            call(comm, collective, &mut buf, &mut recv)?;
        }
        let mut times: Vec<f64> = Vec::new();
        let mut spent = Duration::ZERO;
        loop {
            let stop = (times.len() >= 5 && spent >= budget) || times.len() >= 2000;
            // Every rank must run the same number of calls: the ranks vote.
            let mut vote = [u32::from(stop)];
            comm.allreduce(&mut vote, ReduceOp::Max)?;
            if vote[0] != 0 {
                break;
            }
            fill(comm, collective, &mut buf);
            comm.barrier()?;
            let t0 = Instant::now();
            call(comm, collective, &mut buf, &mut recv)?;
            let dt = t0.elapsed();
            spent += dt;
            times.push(dt.as_secs_f64() * 1e6);
        }
        let mut wrong = [check(comm, collective, &buf, &recv)];
        comm.allreduce(&mut times, ReduceOp::Max)?;
        comm.allreduce(&mut wrong, ReduceOp::Sum)?;
        times.sort_by(f64::total_cmp);
        let time_us = times.get(times.len() / 2).copied().unwrap_or(0.0);
        rows.push(RankRow {
            size_bytes: count * 4,
            count,
            time_us,
            wrong: wrong[0],
        });
    }
    Ok(rows)
}

/// Rank `r`'s input at element `i`: a small integer, so sums over ≤ 2¹⁶ ranks are exact.
fn value(r: usize, i: usize) -> f32 {
    ((r.wrapping_mul(7).wrapping_add(i)) % 13) as f32
}

fn fill(comm: &Communicator, collective: Collective, buf: &mut [f32]) {
    let r = comm.rank();
    match collective {
        Collective::AllGather => {
            let own = comm.output_chunk(buf.len());
            for i in own {
                buf[i] = value(r, i);
            }
        }
        Collective::Broadcast { root } if r != root => buf.fill(-1.0),
        _ => {
            for (i, x) in buf.iter_mut().enumerate() {
                *x = value(r, i);
            }
        }
    }
}

fn call(
    comm: &Communicator,
    collective: Collective,
    buf: &mut [f32],
    recv: &mut [f32],
) -> Result<(), CommError> {
    match collective {
        Collective::AllReduce => comm.allreduce(buf, ReduceOp::Sum),
        Collective::AllGather => comm.allgather(buf),
        Collective::ReduceScatter => comm.reduce_scatter(buf, ReduceOp::Sum).map(|_| ()),
        Collective::Broadcast { root } => comm.broadcast(buf, root),
        Collective::Reduce { root } => comm.reduce(buf, ReduceOp::Sum, root),
        Collective::AllToAll => comm.all_to_all(buf, recv),
    }
}

fn check(comm: &Communicator, collective: Collective, buf: &[f32], recv: &[f32]) -> u64 {
    let (n, r) = (comm.size(), comm.rank());
    let sum = |i: usize| (0..n).map(|q| value(q, i)).sum::<f32>();
    let count = buf.len();
    let bad = |it: &mut dyn Iterator<Item = (f32, f32)>| it.filter(|(a, b)| a != b).count() as u64;
    match collective {
        Collective::AllReduce => bad(&mut buf.iter().enumerate().map(|(i, &x)| (x, sum(i)))),
        Collective::Reduce { root } if r == root => {
            bad(&mut buf.iter().enumerate().map(|(i, &x)| (x, sum(i))))
        }
        Collective::Reduce { .. } => 0,
        Collective::ReduceScatter => {
            let own = comm.output_chunk(count);
            bad(&mut own.map(|i| (buf[i], sum(i))))
        }
        Collective::AllGather => {
            let chunks = weir_collectives::chunks(count, n);
            bad(&mut chunks
                .into_iter()
                .enumerate()
                .flat_map(|(q, c)| c.map(move |i| (q, i)))
                .map(|(q, i)| (buf[i], value(q, i))))
        }
        Collective::Broadcast { root } => {
            bad(&mut buf.iter().enumerate().map(|(i, &x)| (x, value(root, i))))
        }
        Collective::AllToAll => {
            let b = count / n.max(1);
            bad(&mut recv
                .iter()
                .enumerate()
                .map(|(k, &x)| (x, value(k / b.max(1), r * b + k % b.max(1)))))
        }
    }
}

#[cfg(test)]
mod tests {
    use weir_comm::CommOptions;

    use super::*;

    #[test]
    fn checks_its_results() {
        let addr = format!("127.0.0.1:{}", crate::launch::free_port().expect("port"));
        let mut opts = CommOptions::default();
        opts.timeout = Duration::from_secs(60);
        std::thread::scope(|s| {
            for r in 0..2 {
                let (addr, opts) = (&addr, &opts);
                s.spawn(move || {
                    let c = Communicator::new(r, 2, addr, opts).expect("communicator");
                    for coll in [
                        Collective::AllReduce,
                        Collective::AllGather,
                        Collective::ReduceScatter,
                    ] {
                        let sizes = [8, 4096, 1 << 20];
                        let rows = run(&c, coll, &sizes, Duration::from_millis(20)).expect("run");
                        assert_eq!(rows.len(), 3);
                        for row in rows {
                            assert_eq!(row.wrong, 0, "{coll:?} {row:?}");
                            assert!(row.time_us > 0.0, "{row:?}");
                            assert_eq!(row.count % 2, 0);
                        }
                    }
                });
            }
        });
    }
}
