//! [`Communicator`]: the user-facing group of ranks, and [`Request`], a running operation.
//!
//! Buffer layouts follow `weir_collectives::plan` (its module doc has the table); with `count`
//! the buffer length and `chunks(count, n)` the split into `n` contiguous chunks whose lengths
//! differ by at most one (the first `count % n` one longer):
//!
//! | call | input on rank `r` | output on rank `r` |
//! |---|---|---|
//! | [`Communicator::allreduce`] | all of `buf` | all of `buf` |
//! | [`Communicator::allgather`] | chunk `r` of `buf` | all of `buf` |
//! | [`Communicator::reduce_scatter`] | all of `buf` | chunk `r` of `buf` (range returned) |
//! | [`Communicator::broadcast`] | `buf` on the root | `buf` |
//! | [`Communicator::reduce`] | `buf` | `buf` on the root (others: unspecified) |
//! | [`Communicator::all_to_all`] | `send`, block `j` (of `len / n`) for rank `j` | `recv`, block `i` from rank `i` |
//!
//! Every blocking call behaves as its nonblocking twin (`i…`) followed by
//! [`Request::finish`]. Blocking calls work in the caller's buffer (zero copy: the transport
//! receives into it and sends from it); a nonblocking request whose rank uses the transport
//! works on its own copy of the buffer and copies the result back on completion, so leaking
//! the request (`mem::forget`) can never leave the transport writing into freed memory.

use std::ops::Range;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use weir_base::{Duration as PsDuration, Rate};
use weir_collectives::{Algorithm, Collective, Element, Fabric, ReduceOp, Schedule, chunks, plan};

use crate::bootstrap::{launch_from_env, lock};
use crate::exec::{Exec, Kernel};
use crate::net::{Plane, World};
use crate::{CommError, CommOptions};

// Fabric constants measured on the project machine (2 vCPUs, `weir bench allreduce`): under
// `chrt -f 10` a 2-rank 8-byte allreduce (two steps) takes ≈ 3.4 µs over shared memory and
// ≈ 20 µs over the transport on loopback; 2-rank busbw at 0.5–8 MiB is ≈ 6–7 GB/s and
// ≈ 3 GB/s. Under default scheduling, as users run it, a transport step costs more: 41 µs for
// one recursive-doubling step against 83 µs for the ring's two (8 bytes, 2 ranks,
// `--algo rd|ring --path udp`), and recursive doubling stays ahead up to 256 KiB (61 / 90 /
// 182 µs against 100 / 124 / 195 µs at 64 / 128 / 256 KiB). The transport's α below sits
// between the two scheduling regimes.
/// Modelled per-message latency of the shared-memory path.
const SHM_ALPHA: PsDuration = PsDuration::from_micros(2);
/// Modelled per-rank bandwidth of the shared-memory path (≈ 6 GB/s).
const SHM_RATE: Rate = Rate::from_gbps(48);
/// Modelled per-message latency of the transport.
const NET_ALPHA: PsDuration = PsDuration::from_micros(25);
/// Modelled per-rank bandwidth of the transport (≈ 3 GB/s on loopback).
const NET_RATE: Rate = Rate::from_gbps(24);

/// Polls of the transport from the caller's thread before blocking on the engine thread.
const NET_POLLS: u32 = 512;

/// A group of ranks running collectives together (see the crate doc).
#[derive(Debug)]
pub struct Communicator {
    world: Arc<World>,
    /// Communicator rank → world rank.
    members: Arc<[usize]>,
    rank: usize,
    local_rank: usize,
    id: u16,
    seq: AtomicU32,
    splits: AtomicU32,
    fabric: Fabric,
    plans: Mutex<Vec<(PlanKey, Arc<Schedule>)>>,
}

type PlanKey = (Collective, Algorithm, usize, usize);

impl Communicator {
    /// Bootstraps from the launcher's environment: torchrun (`RANK`, `WORLD_SIZE`,
    /// `MASTER_ADDR`, `MASTER_PORT`), Open MPI (`OMPI_COMM_WORLD_RANK`/`_SIZE`, with
    /// `MASTER_ADDR`/`MASTER_PORT` or `WEIR_BOOTSTRAP=host:port`) or PMI (`PMI_RANK`/
    /// `PMI_SIZE`). The `WEIR_*` variables are applied on top of `opts`
    /// ([`CommOptions::with_env`]).
    pub fn from_env(opts: &CommOptions) -> Result<Communicator, CommError> {
        let opts = opts.clone().with_env()?;
        let get = |k: &str| std::env::var(k).ok();
        let l = launch_from_env(&get)?;
        Communicator::new(l.rank, l.size, &l.addr, &opts)
    }

    /// Bootstraps rank `rank` of `size` through the rendezvous at `bootstrap_addr`
    /// (`host:port`, where rank 0 listens), with `opts` as given.
    pub fn new(
        rank: usize,
        size: usize,
        bootstrap_addr: &str,
        opts: &CommOptions,
    ) -> Result<Communicator, CommError> {
        let world = Arc::new(World::new(rank, size, bootstrap_addr, opts.clone())?);
        let members: Arc<[usize]> = (0..size).collect();
        Ok(Communicator::with_members(world, members, rank, 0))
    }

    fn with_members(world: Arc<World>, members: Arc<[usize]>, rank: usize, id: u16) -> Self {
        let me = members[rank];
        let local_rank = members[..rank]
            .iter()
            .filter(|&&w| world.same_host(w, me))
            .count();
        let fabric = fabric(&world, &members);
        Communicator {
            world,
            members,
            rank,
            local_rank,
            id,
            seq: AtomicU32::new(0),
            splits: AtomicU32::new(0),
            fabric,
            plans: Mutex::new(Vec::new()),
        }
    }

    /// This rank's index in the communicator.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of ranks.
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// This rank's index among the communicator's ranks on its host.
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }

    /// This rank's rank in the world (the bootstrap), which errors name.
    pub fn world_rank(&self) -> usize {
        self.world.rank
    }

    /// Counters of this process's transport host (datagrams, retransmissions, injected loss),
    /// or `None` when no peer is reached through the transport or an operation is running.
    pub fn transport_stats(&self) -> Option<weir_datapath::HostStats> {
        let plane = self.lock_plane().ok()?;
        plane.host.as_ref().and_then(|h| h.stats())
    }

    /// Why ranks that share a host talk through the transport instead of shared memory (a
    /// rank could not create or map its shared-memory file), if that happened.
    pub fn shm_fallback(&self) -> Option<&str> {
        self.world.shm_fallback.as_deref()
    }

    /// The α-β fabric the algorithm choice is priced on.
    pub fn fabric(&self) -> Fabric {
        self.fabric
    }

    /// The algorithm and pipeline depth an operation on `bytes` (as `weir_collectives::cost`
    /// counts them) would use.
    pub fn algorithm_for(&self, collective: Collective, bytes: u64) -> (Algorithm, usize) {
        let n = self.size();
        let forced = self.world.opts.algorithm.map(|a| match a {
            Algorithm::Hierarchical { .. } => Algorithm::Hierarchical {
                ranks_per_node: self.fabric.ranks_per_node.max(1),
            },
            a => a,
        });
        match forced {
            Some(a) if supports(collective, a) => {
                let model = weir_collectives::choose(collective, bytes, n, &self.fabric);
                (a, self.pipeline_or(model.map_or(1, |c| c.pipeline)))
            }
            _ => self.model_choice(collective, bytes),
        }
    }

    /// The cost model's algorithm and pipeline depth (the forced depth, if any, wins).
    fn model_choice(&self, collective: Collective, bytes: u64) -> (Algorithm, usize) {
        match weir_collectives::choose(collective, bytes, self.size(), &self.fabric) {
            Some(c) => (c.algorithm, self.pipeline_or(c.pipeline)),
            None => (default_algorithm(collective), self.pipeline_or(1)),
        }
    }

    /// The forced pipeline depth (`WEIR_PIPELINE`), at least 1, or `model`.
    fn pipeline_or(&self, model: usize) -> usize {
        self.world.opts.pipeline.map_or(model, |p| p.max(1))
    }

    /// Blocks until every rank of the communicator has called it.
    pub fn barrier(&self) -> Result<(), CommError> {
        let mut x = [1u32];
        self.allreduce(&mut x, ReduceOp::Max)
    }

    /// Splits into sub-communicators: ranks passing the same `color` form one, ordered by
    /// `key` and then by their rank here. Every rank must call it (collective).
    pub fn split(&self, color: u64, key: u64) -> Result<Communicator, CommError> {
        let n = self.size();
        let mut all = vec![0u64; 2 * n];
        all[2 * self.rank] = color;
        all[2 * self.rank + 1] = key;
        self.allgather(&mut all)?;
        let mut group: Vec<(u64, usize)> = (0..n)
            .filter(|&r| all[2 * r] == color)
            .map(|r| (all[2 * r + 1], r))
            .collect();
        group.sort_unstable();
        let members: Arc<[usize]> = group.iter().map(|&(_, r)| self.members[r]).collect();
        let rank = group
            .iter()
            .position(|&(_, r)| r == self.rank)
            .ok_or_else(|| CommError::Protocol("this rank is missing from its own split".into()))?;
        let k = self.splits.fetch_add(1, Ordering::AcqRel);
        // Ranks that share a communicator derive the same id: parent id, split count, color.
        let mut h = u64::from(self.id) ^ (u64::from(k) << 16) ^ color.rotate_left(32);
        h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let id = ((h >> 48) as u16).max(1);
        Ok(Communicator::with_members(
            self.world.clone(),
            members,
            rank,
            id,
        ))
    }

    /// Element-wise reduction of every rank's `buf`, in place on every rank.
    pub fn allreduce<T: Element>(&self, buf: &mut [T], op: ReduceOp) -> Result<(), CommError> {
        self.start(Collective::AllReduce, buf, op, true)?.finish()
    }

    /// Every rank's chunk `r` (of `chunks(buf.len(), n)`) gathered into `buf` on every rank.
    pub fn allgather<T: Element>(&self, buf: &mut [T]) -> Result<(), CommError> {
        self.start(Collective::AllGather, buf, ReduceOp::Sum, true)?
            .finish()
    }

    /// Reduces every rank's `buf` and leaves chunk `rank` of the result in place; returns that
    /// chunk's element range.
    pub fn reduce_scatter<T: Element>(
        &self,
        buf: &mut [T],
        op: ReduceOp,
    ) -> Result<Range<usize>, CommError> {
        let r = self.output_chunk(buf.len());
        self.start(Collective::ReduceScatter, buf, op, true)?
            .finish()?;
        Ok(r)
    }

    /// Copies `buf` of rank `root` into `buf` on every rank.
    pub fn broadcast<T: Element>(&self, buf: &mut [T], root: usize) -> Result<(), CommError> {
        self.check_root(root)?;
        self.start(Collective::Broadcast { root }, buf, ReduceOp::Sum, true)?
            .finish()
    }

    /// Reduces every rank's `buf` into `buf` on `root` (other ranks' buffers are scratch).
    pub fn reduce<T: Element>(
        &self,
        buf: &mut [T],
        op: ReduceOp,
        root: usize,
    ) -> Result<(), CommError> {
        self.check_root(root)?;
        self.start(Collective::Reduce { root }, buf, op, true)?
            .finish()
    }

    /// Block `j` of `send` goes to rank `j`; block `i` of `recv` comes from rank `i`. Both
    /// hold `n` blocks of equal length.
    pub fn all_to_all<T: Element>(&self, send: &[T], recv: &mut [T]) -> Result<(), CommError> {
        self.iall_to_all(send, recv)?.finish()
    }

    /// The element range of chunk `rank` for a buffer of `len` elements.
    pub fn output_chunk(&self, len: usize) -> Range<usize> {
        chunks(len, self.size())
            .get(self.rank)
            .cloned()
            .unwrap_or(0..0)
    }

    /// Nonblocking [`Communicator::allreduce`].
    pub fn iallreduce<'a, T: Element>(
        &'a self,
        buf: &'a mut [T],
        op: ReduceOp,
    ) -> Result<Request<'a>, CommError> {
        self.start(Collective::AllReduce, buf, op, false)
    }

    /// Nonblocking [`Communicator::allgather`].
    pub fn iallgather<'a, T: Element>(
        &'a self,
        buf: &'a mut [T],
    ) -> Result<Request<'a>, CommError> {
        self.start(Collective::AllGather, buf, ReduceOp::Sum, false)
    }

    /// Nonblocking [`Communicator::reduce_scatter`].
    pub fn ireduce_scatter<'a, T: Element>(
        &'a self,
        buf: &'a mut [T],
        op: ReduceOp,
    ) -> Result<Request<'a>, CommError> {
        self.start(Collective::ReduceScatter, buf, op, false)
    }

    /// Nonblocking [`Communicator::broadcast`].
    pub fn ibroadcast<'a, T: Element>(
        &'a self,
        buf: &'a mut [T],
        root: usize,
    ) -> Result<Request<'a>, CommError> {
        self.check_root(root)?;
        self.start(Collective::Broadcast { root }, buf, ReduceOp::Sum, false)
    }

    /// Nonblocking [`Communicator::reduce`].
    pub fn ireduce<'a, T: Element>(
        &'a self,
        buf: &'a mut [T],
        op: ReduceOp,
        root: usize,
    ) -> Result<Request<'a>, CommError> {
        self.check_root(root)?;
        self.start(Collective::Reduce { root }, buf, op, false)
    }

    /// Nonblocking [`Communicator::all_to_all`].
    pub fn iall_to_all<'a, T: Element>(
        &'a self,
        send: &[T],
        recv: &'a mut [T],
    ) -> Result<Request<'a>, CommError> {
        let n = self.size();
        if send.len() != recv.len() || !send.len().is_multiple_of(n) {
            return Err(CommError::InvalidArgument(format!(
                "all_to_all needs send and recv of equal length divisible by {n} ranks \
                 (got {} and {})",
                send.len(),
                recv.len()
            )));
        }
        let block = send.len() / n;
        let kernel = Kernel::of::<T>()?;
        let bytes = (block * size_of::<T>()) as u64;
        let sched = self.schedule(Collective::AllToAll, block, bytes)?;
        let mut work = vec![T::default(); sched.buffer_len()];
        work[..send.len()].copy_from_slice(send);
        let out = sched.outputs()[self.rank].clone();
        let guard = self.lock_plane()?;
        let exec = self.exec(sched, &mut work, kernel, ReduceOp::Sum)?;
        Ok(Request {
            comm: self,
            plane: guard,
            exec,
            finish: Some(Box::new(move || recv.copy_from_slice(&work[out]))),
            failed: false,
        })
    }

    fn check_root(&self, root: usize) -> Result<(), CommError> {
        if root >= self.size() {
            return Err(CommError::InvalidArgument(format!(
                "root {root} is not a rank of a communicator of {}",
                self.size()
            )));
        }
        Ok(())
    }

    /// Starts `collective` on `buf`. A blocking call runs straight on the caller's buffer
    /// (the transport receives into it and sends from it). A request handed to the caller
    /// could be leaked (`mem::forget`) while the transport still uses the memory, so when some
    /// member is reached through the transport the request works on its own copy instead and
    /// copies the result back when it completes.
    fn start<'a, T: Element>(
        &'a self,
        collective: Collective,
        buf: &'a mut [T],
        op: ReduceOp,
        blocking: bool,
    ) -> Result<Request<'a>, CommError> {
        let kernel = Kernel::of::<T>()?;
        let bytes = std::mem::size_of_val(buf) as u64;
        let sched = self.schedule(collective, buf.len(), bytes)?;
        let guard = self.lock_plane()?;
        if blocking || !self.uses_transport() {
            let exec = self.exec(sched, buf, kernel, op)?;
            return Ok(Request {
                comm: self,
                plane: guard,
                exec,
                finish: None,
                failed: false,
            });
        }
        let mut work = buf.to_vec();
        let exec = self.exec(sched, &mut work, kernel, op)?;
        Ok(Request {
            comm: self,
            plane: guard,
            exec,
            finish: Some(Box::new(move || buf.copy_from_slice(&work))),
            failed: false,
        })
    }

    /// Whether this rank reaches some member through the transport.
    fn uses_transport(&self) -> bool {
        let me = self.world.rank;
        self.members.iter().any(|&w| w != me && !self.world.shm[w])
    }

    fn exec<T: Element>(
        &self,
        sched: Arc<Schedule>,
        buf: &mut [T],
        kernel: Kernel,
        op: ReduceOp,
    ) -> Result<Exec, CommError> {
        let seq = self.seq.fetch_add(1, Ordering::AcqRel);
        let bytes = std::mem::size_of_val(buf);
        let base = NonNull::new(buf.as_mut_ptr().cast::<u8>())
            .ok_or_else(|| CommError::InvalidArgument("null buffer".into()))?;
        Exec::new(
            sched,
            self.rank,
            self.members.clone(),
            base,
            bytes,
            kernel,
            op,
            self.id,
            seq,
        )
    }

    fn lock_plane(&self) -> Result<MutexGuard<'_, Plane>, CommError> {
        match self.world.plane.try_lock() {
            Ok(g) => Ok(g),
            Err(TryLockError::Poisoned(p)) => Ok(p.into_inner()),
            Err(TryLockError::WouldBlock) => Err(CommError::Busy),
        }
    }

    /// The (cached) schedule for `collective` on `count` elements.
    fn schedule(
        &self,
        collective: Collective,
        count: usize,
        bytes: u64,
    ) -> Result<Arc<Schedule>, CommError> {
        let n = self.size();
        let (algorithm, pipeline) = self.algorithm_for(collective, bytes);
        let key = (collective, algorithm, count, pipeline);
        {
            let plans = lock(&self.plans);
            if let Some((_, s)) = plans.iter().find(|(k, _)| *k == key) {
                return Ok(s.clone());
            }
        }
        let s = match plan(collective, algorithm, n, count, pipeline) {
            Ok(s) => s,
            // A forced algorithm that cannot plan this shape: let the model choose.
            Err(_) if self.world.opts.algorithm.is_some() => {
                let (a, p) = self.model_choice(collective, bytes);
                plan(collective, a, n, count, p).map_err(|e| {
                    CommError::Unsupported(format!("{collective:?} with {a:?}: {e:?}"))
                })?
            }
            Err(e) => {
                return Err(CommError::Unsupported(format!(
                    "{collective:?} with {algorithm:?} on {n} ranks: {e:?}"
                )));
            }
        };
        let s = Arc::new(s);
        let mut plans = lock(&self.plans);
        if plans.len() >= 16 {
            plans.remove(0);
        }
        plans.push((key, s.clone()));
        Ok(s)
    }
}

/// A running collective. Progress happens inside [`Request::test`], [`Request::wait`] and
/// [`Request::finish`] (and on the transport's engine thread). Dropping an unfinished request
/// drives it to completion (bounded by the timeout) so no peer is left waiting and no
/// transport write lands in the caller's buffer afterwards.
pub struct Request<'a> {
    comm: &'a Communicator,
    plane: MutexGuard<'a, Plane>,
    exec: Exec,
    finish: Option<Box<dyn FnOnce() + 'a>>,
    failed: bool,
}

impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("during", &self.exec.during())
            .field("done", &self.exec.is_done())
            .finish()
    }
}

impl Request<'_> {
    /// Makes progress without blocking; `Ok(true)` once the operation is complete.
    pub fn test(&mut self) -> Result<bool, CommError> {
        if self.failed {
            return Err(CommError::InvalidArgument(
                "test() on a request that already failed".into(),
            ));
        }
        if !self.exec.is_done() {
            let world = &*self.comm.world;
            let r = self.exec.poll(&mut self.plane, world);
            self.fail_on_err(r)?;
            if !self.exec.is_done() {
                let r = self.exec.check_stall(world);
                self.fail_on_err(r)?;
            }
        }
        self.complete();
        Ok(self.exec.is_done())
    }

    /// Drives the operation for up to `timeout`; `Ok(true)` once it is complete, `Ok(false)`
    /// if `timeout` passed first. Errors (a failed peer, the communicator's timeout) end it.
    pub fn wait(&mut self, timeout: Duration) -> Result<bool, CommError> {
        if self.failed {
            return Err(CommError::InvalidArgument(
                "wait() on a request that already failed".into(),
            ));
        }
        let r = self.drive(Some(Instant::now() + timeout));
        self.fail_on_err(r)
    }

    /// Drives the operation to completion (bounded by the communicator's timeout).
    pub fn finish(mut self) -> Result<(), CommError> {
        let r = self.drive(None);
        self.fail_on_err(r).map(|_| ())
    }

    fn fail_on_err<R>(&mut self, r: Result<R, CommError>) -> Result<R, CommError> {
        if r.is_err() {
            self.failed = true;
            self.exec.release(&mut self.plane);
        }
        r
    }

    fn complete(&mut self) {
        if self.exec.is_done()
            && let Some(f) = self.finish.take()
        {
            f();
        }
    }

    fn drive(&mut self, until: Option<Instant>) -> Result<bool, CommError> {
        let world = &*self.comm.world;
        let mut idle = 0u32;
        loop {
            if self.exec.poll(&mut self.plane, world)? {
                idle = 0;
            } else {
                idle = idle.saturating_add(1);
            }
            if self.exec.is_done() {
                self.complete();
                return Ok(true);
            }
            if idle == 0 {
                continue;
            }
            self.exec.check_stall(world)?;
            if until.is_some_and(|u| Instant::now() >= u) {
                return Ok(false);
            }
            if self.exec.net_only() && idle > NET_POLLS {
                self.exec
                    .wait_net(&mut self.plane, world, Duration::from_millis(2))?;
            } else if self.exec.net_only() {
                // Drive the transport from this thread for a while (`poll` runs the engine
                // when its thread is idle): a small message's round trip is shorter than two
                // thread handoffs. Yield between polls: under SCHED_FIFO a spinning rank
                // would keep the engine threads and the other ranks off its core.
                if idle < 16 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            } else if idle < 64 {
                std::hint::spin_loop();
            } else if idle < 20_000 {
                // Four ranks share two cores: let the peer we wait for run.
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }
}

impl Drop for Request<'_> {
    fn drop(&mut self) {
        if !self.exec.is_done() && !self.failed {
            let _ = self.drive(None);
        }
        self.exec.release(&mut self.plane);
    }
}

/// Whether `plan` implements `collective` with `a`.
fn supports(collective: Collective, a: Algorithm) -> bool {
    use Algorithm as A;
    match collective {
        Collective::AllReduce => !matches!(a, A::Pairwise | A::Bruck),
        Collective::AllGather | Collective::ReduceScatter => a == A::Ring,
        Collective::Broadcast { .. } | Collective::Reduce { .. } => matches!(a, A::Tree | A::Chain),
        Collective::AllToAll => matches!(a, A::Pairwise | A::Bruck),
    }
}

fn default_algorithm(collective: Collective) -> Algorithm {
    match collective {
        Collective::AllReduce | Collective::AllGather | Collective::ReduceScatter => {
            Algorithm::Ring
        }
        Collective::Broadcast { .. } | Collective::Reduce { .. } => Algorithm::Tree,
        Collective::AllToAll => Algorithm::Pairwise,
    }
}

/// The fabric the members see: shared memory inside a host, the transport between hosts.
fn fabric(world: &World, members: &[usize]) -> Fabric {
    let me = world.rank;
    let shm_pair = |a: usize, b: usize| {
        if a == me {
            world.shm[b]
        } else if b == me {
            world.shm[a]
        } else {
            // Other pairs: by the same rule their ranks applied.
            let p = &world.control.peers;
            world.shm_fallback.is_none() && p[a].shares_memory_with(&p[b])
        }
    };
    let n = members.len();
    let pairs = (0..n).flat_map(|i| (i + 1..n).map(move |j| (i, j)));
    let (mut any_shm, mut any_net) = (false, false);
    for (i, j) in pairs {
        if shm_pair(members[i], members[j]) {
            any_shm = true;
        } else {
            any_net = true;
        }
    }
    match (any_shm, any_net) {
        (true, false) => Fabric::flat(SHM_ALPHA, SHM_RATE),
        (false, _) => Fabric::flat(NET_ALPHA, NET_RATE),
        (true, true) => {
            // Ranks per node when every host holds the same number of consecutive members.
            let mut l = 1;
            while l < n && world.same_host(members[l], members[0]) {
                l += 1;
            }
            let uniform = n.is_multiple_of(l)
                && (0..n).all(|i| world.same_host(members[i], members[(i / l) * l]))
                && (0..n / l).all(|b| b == 0 || !world.same_host(members[b * l], members[0]));
            Fabric {
                alpha: NET_ALPHA,
                bandwidth: NET_RATE,
                intra_alpha: SHM_ALPHA,
                intra_bandwidth: SHM_RATE,
                ranks_per_node: if uniform { l } else { 1 },
            }
        }
    }
}
