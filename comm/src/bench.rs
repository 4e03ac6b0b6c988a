//! nccl-tests-style timing of one collective over a communicator.
//!
//! Contract ([`run`]), methodology of `shared/reference/machine.md` §0–1: `size` is the
//! allreduce vector, the allgather output and the reduce-scatter input, in bytes of f32; the
//! element count is rounded up to a multiple of the group size. Per size: 10 warm-up calls
//! (2 at ≥ 8 MiB), then timed calls until the budget is spent (at least 5, at most 2000), each
//! preceded by a barrier and timed on every rank; a call's time is the maximum over ranks and
//! the reported time the median over calls. The inputs are small integers stored as floats, so
//! every sum is exact, and the last call's result is compared element by element with the
//! expected values (`wrong` counts mismatches over all ranks). Every rank calls [`run`] with
//! the same arguments and gets the same rows.

use std::time::{Duration, Instant};

use weir_collectives::{Collective, ReduceOp};

use crate::{CommError, Communicator};

/// One size's result.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BenchRow {
    /// Bytes (after rounding the count up to a multiple of the group size).
    pub size_bytes: usize,
    /// f32 elements.
    pub count: usize,
    /// Median over calls of the slowest rank's time, in microseconds.
    pub time_us: f64,
    /// Elements of the last call's result that differ from the expected value, over all ranks.
    pub wrong: u64,
}

impl BenchRow {
    /// Algorithm bandwidth, GB/s (10⁹ bytes): size / time.
    pub fn algbw_gbps(&self) -> f64 {
        if self.time_us > 0.0 {
            self.size_bytes as f64 / (self.time_us * 1e3)
        } else {
            0.0
        }
    }

    /// Bus bandwidth, GB/s, with nccl-tests' factors: 2(n−1)/n for allreduce, (n−1)/n for
    /// allgather and reduce-scatter, 1 for broadcast and reduce, (n−1)/n for all-to-all.
    pub fn busbw_gbps(&self, collective: Collective, ranks: usize) -> f64 {
        let n = ranks.max(1) as f64;
        let f = match collective {
            Collective::AllReduce => 2.0 * (n - 1.0) / n,
            Collective::AllGather | Collective::ReduceScatter | Collective::AllToAll => {
                (n - 1.0) / n
            }
            Collective::Broadcast { .. } | Collective::Reduce { .. } => 1.0,
        };
        self.algbw_gbps() * f
    }
}

/// Times `collective` (f32, sum) at each of `sizes` (see the module doc).
pub fn run(
    comm: &Communicator,
    collective: Collective,
    sizes: &[usize],
    budget: Duration,
) -> Result<Vec<BenchRow>, CommError> {
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
        rows.push(BenchRow {
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
