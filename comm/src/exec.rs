//! The executor: runs one rank's part of a [`Schedule`] over shared memory and the transport.
//!
//! Contract: [`Exec::poll`] never blocks; it makes whatever progress is possible and reports
//! whether it made any. Steps run in order. At the start of a step the executor lists this
//! rank's transfers in schedule order; ranks agree on that order because they run the same
//! schedule, so the i-th message between a pair in a step is the same transfer on both sides
//! (every message carries a tag built from communicator, sequence number, step and index, and
//! the receiver checks it).
//!
//! Snapshot semantics (`weir_collectives::schedule`): a step's sends read the data as it was
//! before the step. Local copies (`src == dst`) are read into a staging buffer when the step
//! starts. An incoming transfer whose destination overlaps a range this rank sends in the same
//! step is *deferred*: its bytes are staged (in the scratch region or a heap buffer) and
//! applied when the step's sends are done. Every other incoming transfer is applied as it
//! arrives, straight from the ring slot (shared memory) or received directly into the working
//! buffer (transport `Copy`), so the hot path copies each byte once.
//!
//! Transfers are cut into pieces (one ring slot; 1 MiB on the transport) so that the reduction
//! of one piece overlaps the arrival of the next.
//!
//! Transport sends complete lazily: a step ends once its sends are posted and its receives
//! have landed; a later write to a range that an unacknowledged send still reads waits for that
//! acknowledgement (`write_conflict`, `end_conflict`), and the operation ends only when every
//! send is acknowledged, so the caller gets its buffer back untouched by the transport.

use std::collections::HashMap;
use std::ops::Range;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_collectives::{Action, Element, ReduceOp, Schedule};
use weir_transport::{Completion, CompletionKind, RegionId, WorkRequest, WrError};

use crate::CommError;
use crate::bootstrap::PeerState;
use crate::net::{Plane, World};
use crate::shm::SLOT_BYTES;

/// Bytes per transport message.
const NET_PIECE: usize = 1 << 20;
/// How long a rank that has left may stay silent before a waiting rank gives up on it.
const LEFT_GRACE: Duration = Duration::from_millis(500);
/// How long a rank that lost a transport connection waits for the control plane to name the
/// rank that failed first (see `Exec::lost`).
const CONTROL_GRACE: Duration = Duration::from_millis(250);

/// Type-erased element operations.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Kernel {
    pub(crate) size: usize,
    combine: fn(ReduceOp, &mut [u8], &[u8]),
    divide: fn(&mut [u8], usize),
}

impl Kernel {
    /// The kernel of `T`, or an error when `T` is not one of the ten plain element types.
    pub(crate) fn of<T: Element>() -> Result<Kernel, CommError> {
        use std::any::TypeId;
        let id = TypeId::of::<T>();
        let pod = [
            TypeId::of::<f32>(),
            TypeId::of::<f64>(),
            TypeId::of::<i8>(),
            TypeId::of::<u8>(),
            TypeId::of::<i32>(),
            TypeId::of::<u32>(),
            TypeId::of::<i64>(),
            TypeId::of::<u64>(),
            TypeId::of::<half::f16>(),
            TypeId::of::<half::bf16>(),
        ];
        if !pod.contains(&id) || size_of::<T>() != T::DTYPE.size() {
            return Err(CommError::Unsupported(format!(
                "element type {} is not one of the ten wire types",
                std::any::type_name::<T>()
            )));
        }
        Ok(Kernel {
            size: size_of::<T>(),
            combine: combine_bytes::<T>,
            divide: divide_bytes::<T>,
        })
    }
}

fn combine_bytes<T: Element>(op: ReduceOp, acc: &mut [u8], src: &[u8]) {
    // SAFETY: `Kernel::of` admits only plain-old-data types, for which every bit pattern is a
    // value; `align_to` splits off any misaligned ends, which are handled below.
    let (pa, a, sa) = unsafe { acc.align_to_mut::<T>() };
    // SAFETY: as above.
    let (pb, b, sb) = unsafe { src.align_to::<T>() };
    if pa.is_empty() && sa.is_empty() && pb.is_empty() && sb.is_empty() {
        T::combine(op, a, b);
        return;
    }
    // Misaligned (never for buffers from Rust slices of T and page-aligned rings): copy.
    let n = acc.len().min(src.len()) / size_of::<T>();
    let mut x = vec![T::default(); n];
    let mut y = vec![T::default(); n];
    // SAFETY: `x`/`y` hold `n` elements of plain-old-data; the byte copies stay in bounds.
    unsafe {
        std::ptr::copy_nonoverlapping(acc.as_ptr(), x.as_mut_ptr().cast(), n * size_of::<T>());
        std::ptr::copy_nonoverlapping(src.as_ptr(), y.as_mut_ptr().cast(), n * size_of::<T>());
    }
    T::combine(op, &mut x, &y);
    // SAFETY: as above.
    unsafe {
        std::ptr::copy_nonoverlapping(x.as_ptr().cast(), acc.as_mut_ptr(), n * size_of::<T>())
    };
}

fn divide_bytes<T: Element>(buf: &mut [u8], n: usize) {
    // SAFETY: as in `combine_bytes`.
    let (p, a, s) = unsafe { buf.align_to_mut::<T>() };
    if p.is_empty() && s.is_empty() {
        T::divide(a, n);
        return;
    }
    let k = buf.len() / size_of::<T>();
    let mut x = vec![T::default(); k];
    // SAFETY: as in `combine_bytes`.
    unsafe {
        std::ptr::copy_nonoverlapping(buf.as_ptr(), x.as_mut_ptr().cast(), k * size_of::<T>());
    }
    T::divide(&mut x, n);
    // SAFETY: as above.
    unsafe {
        std::ptr::copy_nonoverlapping(x.as_ptr().cast(), buf.as_mut_ptr(), k * size_of::<T>())
    };
}

/// One outgoing transfer of the current step (bytes relative to the working buffer).
#[derive(Debug)]
struct Out {
    peer: usize,
    off: usize,
    len: usize,
    /// Bytes handed over (shared memory: copied into the ring; transport: posted).
    sent: usize,
    tag: u64,
    shm: bool,
}

/// One incoming transfer of the current step.
#[derive(Debug)]
struct In {
    peer: usize,
    off: usize,
    len: usize,
    /// Bytes consumed (shared memory) or placed (transport).
    got: usize,
    action: Action,
    /// Apply only when the step's sends are done (see the module doc).
    defer: bool,
    tag: u64,
    shm: bool,
    /// Deferred shared-memory bytes.
    staged: Vec<u8>,
    /// Offset in the scratch region (transport receives that cannot land in place).
    scratch: Option<usize>,
}

/// What a posted work request belongs to.
#[derive(Clone, Copy, Debug)]
enum Wr {
    Send { peer: usize, off: usize, len: usize },
    Recv { inb: usize, at: usize, len: usize },
}

/// One rank's progress through one schedule.
#[derive(Debug)]
pub(crate) struct Exec {
    sched: Arc<Schedule>,
    /// This rank's index in the communicator.
    me: usize,
    /// Communicator rank → world rank.
    members: Arc<[usize]>,
    base: NonNull<u8>,
    bytes: usize,
    kernel: Kernel,
    op: ReduceOp,
    tag_base: u64,
    /// The operation's sequence number (for error messages).
    seq: u32,
    step: usize,
    started: bool,
    /// The current step's writes do not overlap an unacknowledged send; its requests are
    /// posted.
    clear: bool,
    outs: Vec<Out>,
    ins: Vec<In>,
    locals: Vec<(usize, Vec<u8>)>,
    wrs: HashMap<u64, Wr>,
    region: Option<RegionId>,
    done: bool,
    health_seen: u64,
    left: Vec<usize>,
    last_progress: Instant,
    /// When this rank reported a timeout to rank 0.
    suspected: Option<Instant>,
}

impl Exec {
    /// Prepares to run `sched` as communicator rank `me` on the working buffer at `base`
    /// (`bytes` long, `sched.buffer_len()` elements of `kernel`'s type). `comm_id` and `seq`
    /// make the message tags of this operation unique.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        sched: Arc<Schedule>,
        me: usize,
        members: Arc<[usize]>,
        base: NonNull<u8>,
        bytes: usize,
        kernel: Kernel,
        op: ReduceOp,
        comm_id: u16,
        seq: u32,
    ) -> Result<Exec, CommError> {
        let want = sched.buffer_len().checked_mul(kernel.size);
        if want != Some(bytes) {
            return Err(CommError::InvalidArgument(format!(
                "working buffer of {bytes} bytes for a schedule of {} elements of {} bytes",
                sched.buffer_len(),
                kernel.size
            )));
        }
        Ok(Exec {
            sched,
            me,
            members,
            base,
            bytes,
            kernel,
            op,
            tag_base: (u64::from(comm_id) << 48) | (u64::from(seq & 0xffff) << 32),
            seq,
            step: 0,
            started: false,
            clear: false,
            outs: Vec::new(),
            ins: Vec::new(),
            locals: Vec::new(),
            wrs: HashMap::new(),
            region: None,
            done: false,
            health_seen: u64::MAX,
            left: Vec::new(),
            last_progress: Instant::now(),
            suspected: None,
        })
    }

    /// Whether every step is done (and the result is in place).
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// What this rank is doing, for error messages.
    pub(crate) fn during(&self) -> String {
        let n = self.sched.steps().len();
        let (c, seq) = (self.sched.collective(), self.seq);
        if self.done {
            format!("{c:?} #{seq} (finished)")
        } else {
            format!("{c:?} #{seq} step {} of {n}", (self.step + 1).min(n.max(1)))
        }
    }

    /// Makes all progress possible without blocking; returns whether there was any.
    pub(crate) fn poll(&mut self, plane: &mut Plane, world: &World) -> Result<bool, CommError> {
        if self.done {
            return Ok(false);
        }
        self.check_health(world)?;
        let mut progress = false;
        loop {
            if !self.started {
                if self.step >= self.sched.steps().len() {
                    // A peer that left gracefully finished this operation, so it holds what
                    // this rank sent it: its acknowledgements need not be awaited.
                    let left = &self.left;
                    if self
                        .wrs
                        .values()
                        .all(|w| matches!(w, Wr::Send { peer, .. } if left.contains(peer)))
                    {
                        self.finish(plane);
                        self.last_progress = Instant::now();
                        return Ok(true);
                    }
                    // The last sends are unacknowledged: the caller's buffer stays ours.
                    progress |= self.pump_net(plane, world)?;
                    if self.wrs.is_empty() {
                        continue;
                    }
                    break;
                }
                self.start_step(world);
                self.started = true;
                self.clear = false;
                progress = true;
            }
            if !self.clear {
                // Transport sends of earlier steps complete lazily; this step may write only
                // where none of them still reads.
                if self.write_conflict() {
                    progress |= self.pump_net(plane, world)?;
                    if self.write_conflict() {
                        break;
                    }
                }
                if self.outs.iter().any(|o| !o.shm) || self.ins.iter().any(|i| !i.shm) {
                    self.post_net(plane)?;
                }
                self.clear = true;
            }
            progress |= self.pump_shm(plane)?;
            progress |= self.pump_net(plane, world)?;
            if self.step_complete() {
                self.end_step(plane);
                self.step += 1;
                self.started = false;
                progress = true;
                continue;
            }
            break;
        }
        if progress {
            self.last_progress = Instant::now();
        }
        Ok(progress)
    }

    /// Whether only transport work is outstanding (the caller may then block on the host).
    pub(crate) fn net_only(&self) -> bool {
        !self.started
            || !self.clear
            || self.outs.iter().all(|o| !o.shm || o.sent == o.len)
                && self.ins.iter().all(|i| !i.shm || i.got == i.len)
    }

    /// Blocks up to `d` for one transport completion and handles it.
    pub(crate) fn wait_net(
        &mut self,
        plane: &mut Plane,
        world: &World,
        d: Duration,
    ) -> Result<bool, CommError> {
        let Some(host) = plane.host.as_ref() else {
            std::thread::yield_now();
            return Ok(false);
        };
        match host.wait_completion(d) {
            Ok(c) => {
                let p = self.on_completion(c, plane, world)?;
                if p {
                    self.last_progress = Instant::now();
                }
                Ok(p)
            }
            Err(weir_datapath::HostError::Timeout { .. }) => Ok(false),
            Err(e) => Err(CommError::Transport(format!("{e} (in {})", self.during()))),
        }
    }

    /// Called by a waiting driver when `poll` made no progress: fails on a departed peer that
    /// this rank waits for (after a short grace) and on the timeout, which it also reports to
    /// every rank through rank 0.
    pub(crate) fn check_stall(&mut self, world: &World) -> Result<(), CommError> {
        self.check_health(world)?;
        let idle = self.last_progress.elapsed();
        if idle < LEFT_GRACE {
            return Ok(());
        }
        let waiting = self.waiting_for();
        if let Some(&rank) = waiting.iter().find(|p| self.left.contains(p)) {
            let during = self.during();
            // Ranks waiting on this rank (not on the departed one) learn the cause this way.
            world.control.report(
                rank,
                format!(
                    "it left (closed its communicator) while rank {} waited for it in {during}",
                    world.rank
                ),
            );
            return Err(CommError::PeerLeft { rank, during });
        }
        let timeout = world.opts.timeout;
        if idle >= timeout {
            let rank = waiting.first().copied().unwrap_or(world.rank);
            let during = self.during();
            match self.suspected {
                None if rank != world.rank => {
                    // Let rank 0 find the silent rank; its verdict arrives as a failure that
                    // `check_health` turns into the error.
                    world.control.suspect(
                        rank,
                        format!(
                            "rank {} waited {timeout:?} for rank {rank} without progress in {during}",
                            world.rank
                        ),
                    );
                    self.suspected = Some(Instant::now());
                }
                Some(at) if at.elapsed() < world.control.settle() * 4 => {}
                _ => {
                    return Err(CommError::Timeout {
                        rank,
                        after: timeout,
                        during,
                    });
                }
            }
        }
        Ok(())
    }

    /// The peers this rank is waiting for in the current step.
    fn waiting_for(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .outs
            .iter()
            .filter(|o| o.sent < o.len)
            .map(|o| o.peer)
            .chain(self.ins.iter().filter(|i| i.got < i.len).map(|i| i.peer))
            .chain(self.wrs.values().filter_map(|w| match *w {
                Wr::Send { peer, .. } if !self.left.contains(&peer) => Some(peer),
                _ => None,
            }))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    fn check_health(&mut self, world: &World) -> Result<(), CommError> {
        let h = &world.control.health;
        let v = h.version();
        if v == self.health_seen {
            return Ok(());
        }
        self.health_seen = v;
        let snap = h.snapshot();
        for &w in self.members.iter() {
            match snap.get(w) {
                Some(PeerState::Failed(reason)) if w != world.rank => {
                    return Err(CommError::PeerFailed {
                        rank: w,
                        reason: reason.clone(),
                        during: self.during(),
                    });
                }
                Some(PeerState::Left) if !self.left.contains(&w) => self.left.push(w),
                _ => {}
            }
        }
        Ok(())
    }

    fn tag(&self, idx: u64) -> u64 {
        self.tag_base | ((self.step as u64 & 0xf_ffff) << 12) | (idx & 0xfff)
    }

    /// # Safety contract (internal)
    /// `range` lies within the working buffer (schedules are validated, and `new` checked the
    /// buffer length).
    fn slice(&self, range: Range<usize>) -> &[u8] {
        debug_assert!(range.end <= self.bytes);
        // SAFETY: see the contract above; no `&mut` to an overlapping range is live.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(range.start), range.len()) }
    }

    #[allow(clippy::mut_from_ref)]
    fn slice_mut(&self, range: Range<usize>) -> &mut [u8] {
        debug_assert!(range.end <= self.bytes);
        // SAFETY: as `slice`; callers write ranges that no other live slice covers (the
        // schedule forbids two writes to one element in a step, and deferral keeps writes off
        // ranges still being sent).
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().add(range.start), range.len()) }
    }

    fn apply(&self, action: Action, dst: Range<usize>, src: &[u8]) {
        let d = self.slice_mut(dst);
        match action {
            Action::Copy => d.copy_from_slice(src),
            Action::Reduce => (self.kernel.combine)(self.op, d, src),
        }
    }

    fn start_step(&mut self, world: &World) {
        let sched = self.sched.clone();
        let step = &sched.steps()[self.step];
        let es = self.kernel.size;
        self.outs.clear();
        self.ins.clear();
        self.locals.clear();
        let mut out_n: Vec<(usize, u64)> = Vec::new();
        let mut in_n: Vec<(usize, u64)> = Vec::new();
        let next = |v: &mut Vec<(usize, u64)>, peer: usize| -> u64 {
            match v.iter_mut().find(|(p, _)| *p == peer) {
                Some((_, n)) => {
                    *n += 1;
                    *n - 1
                }
                None => {
                    v.push((peer, 1));
                    0
                }
            }
        };
        for t in &step.transfers {
            let (src, dst) = (t.src_offset * es, t.dst_offset * es);
            let len = t.len * es;
            if t.src == self.me && t.dst == self.me {
                self.locals.push((dst, self.slice(src..src + len).to_vec()));
            } else if t.src == self.me {
                let peer = self.members[t.dst];
                let idx = next(&mut out_n, peer);
                self.outs.push(Out {
                    peer,
                    off: src,
                    len,
                    sent: 0,
                    tag: self.tag(idx),
                    shm: world.shm[peer],
                });
            } else if t.dst == self.me {
                let peer = self.members[t.src];
                let idx = next(&mut in_n, peer);
                self.ins.push(In {
                    peer,
                    off: dst,
                    len,
                    got: 0,
                    action: t.action,
                    defer: false,
                    tag: self.tag(idx),
                    shm: world.shm[peer],
                    staged: Vec::new(),
                    scratch: None,
                });
            }
        }
        for i in &mut self.ins {
            i.defer = self
                .outs
                .iter()
                .any(|o| o.off < i.off + i.len && i.off < o.off + o.len);
        }
    }

    /// Whether a write of the current step overlaps a transport send still in flight.
    fn write_conflict(&self) -> bool {
        self.writes_overlap_send(false)
    }

    fn post_net(&mut self, plane: &mut Plane) -> Result<(), CommError> {
        let host = plane
            .host
            .as_ref()
            .ok_or_else(|| CommError::Transport("no transport host for a remote peer".into()))?;
        let region = match self.region {
            Some(r) => r,
            None => {
                // SAFETY: the working buffer outlives this executor (the request borrows it)
                // and is deregistered in `finish` or `Drop` before the borrow ends.
                let r = unsafe { host.register_raw(self.base, self.bytes.max(1) as u64, false) }
                    .map_err(|e| {
                        CommError::Transport(format!(
                            "registering {} bytes of the buffer: {e}",
                            self.bytes
                        ))
                    })?;
                self.region = Some(r);
                r
            }
        };
        // Scratch for receives that cannot land in place.
        let mut need = 0usize;
        for i in self.ins.iter_mut().filter(|i| !i.shm) {
            if i.defer || i.action == Action::Reduce {
                i.scratch = Some(need);
                need += i.len.next_multiple_of(64);
            }
        }
        let have = plane.scratch.as_ref().map_or(0, |s| s.1.len());
        if need > have {
            if let Some((id, _)) = plane.scratch.take() {
                host.deregister(id);
            }
            let cap = need.next_power_of_two().max(1 << 20);
            let scratch_err = |e: &dyn std::fmt::Display| {
                CommError::Transport(format!("scratch of {cap} bytes: {e}"))
            };
            let buf = weir_datapath::Buffer::new(cap).map_err(|e| scratch_err(&e))?;
            // SAFETY: the buffer is kept in the plane beside its registration and deregistered
            // before it is dropped (above, and when the plane goes); the transport only
            // writes into it while a receive is posted there, and the reduction reads it
            // after that receive completed.
            let id = unsafe { host.register_raw(buf.as_nonnull(), cap as u64, false) }
                .map_err(|e| scratch_err(&e))?;
            plane.scratch = Some((id, buf));
        }
        let scratch = plane.scratch.as_ref().map(|s| s.0);
        for (k, i) in self.ins.iter().enumerate().filter(|(_, i)| !i.shm) {
            let conn = plane.conns[i.peer].ok_or_else(|| {
                CommError::Transport(format!("no transport connection to rank {}", i.peer))
            })?;
            let (reg, base) = match (i.scratch, scratch) {
                (Some(off), Some(s)) => (s, off),
                _ => (region, i.off),
            };
            let mut at = 0;
            while at < i.len {
                let len = (i.len - at).min(NET_PIECE);
                let wr = WorkRequest::Recv {
                    region: reg,
                    offset: (base + at) as u64,
                    len: len as u64,
                    tag: Some(i.tag),
                };
                let id = host.post(conn, wr).map_err(|e| self.net_error(i.peer, e))?;
                self.wrs.insert(id.0, Wr::Recv { inb: k, at, len });
                at += len;
            }
        }
        for o in self.outs.iter().filter(|o| !o.shm) {
            let conn = plane.conns[o.peer].ok_or_else(|| {
                CommError::Transport(format!("no transport connection to rank {}", o.peer))
            })?;
            let mut at = 0;
            while at < o.len {
                let len = (o.len - at).min(NET_PIECE);
                let wr = WorkRequest::Send {
                    region,
                    offset: (o.off + at) as u64,
                    len: len as u64,
                    tag: o.tag,
                };
                let id = host.post(conn, wr).map_err(|e| self.net_error(o.peer, e))?;
                let (peer, off) = (o.peer, o.off + at);
                self.wrs.insert(id.0, Wr::Send { peer, off, len });
                at += len;
            }
        }
        // Handed to the transport: the step need not wait for the acknowledgements (later
        // writes to these ranges wait in `write_conflict`, and the operation's end waits).
        for o in self.outs.iter_mut().filter(|o| !o.shm) {
            o.sent = o.len;
        }
        Ok(())
    }

    /// The error for a transport connection to `peer` that failed. When another member has
    /// left the communicator, `peer` most likely closed after giving up on that one, which is
    /// then named; otherwise `peer` is declared failed on every rank.
    fn lost(&mut self, world: &World, peer: usize, reason: String) -> CommError {
        // The transport often hears of a failure before the control plane says whose it was:
        // a rank that gave up on a crashed rank exits, its connections close, while the news
        // of the crash is still on its way through this rank's control connection. Give the
        // control plane a moment to name a failed rank (it usually takes microseconds; a
        // failure only the transport sees costs this wait once, as the operation ends).
        let deadline = Instant::now() + CONTROL_GRACE;
        let health = &world.control.health;
        let mut seen = None;
        loop {
            // The states are copied only when they changed (`version` is one atomic load).
            let v = health.version();
            if seen != Some(v) {
                seen = Some(v);
                let failed = health
                    .snapshot()
                    .iter()
                    .enumerate()
                    .any(|(r, s)| r != world.rank && matches!(s, PeerState::Failed(_)));
                if failed {
                    break;
                }
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if let Err(e) = self.check_health(world) {
            return e;
        }
        if let Some(&gone) = self.left.iter().find(|&&l| l != peer) {
            return CommError::PeerLeft {
                rank: gone,
                during: format!("{} (rank {peer} then closed its connection)", self.during()),
            };
        }
        world.control.report(peer, reason.clone());
        CommError::PeerFailed {
            rank: peer,
            reason,
            during: self.during(),
        }
    }

    fn net_error(&self, peer: usize, e: weir_datapath::HostError) -> CommError {
        match e {
            weir_datapath::HostError::ConnectionLost { reason, .. } => CommError::PeerFailed {
                rank: peer,
                reason: format!("transport connection lost: {reason:?}"),
                during: self.during(),
            },
            e => CommError::Transport(format!(
                "posting to rank {peer}: {e} (in {})",
                self.during()
            )),
        }
    }

    fn pump_shm(&mut self, plane: &mut Plane) -> Result<bool, CommError> {
        let mut progress = false;
        let mut blocked: Vec<usize> = Vec::new();
        for k in 0..self.outs.len() {
            let o = &self.outs[k];
            if !o.shm || o.sent == o.len || blocked.contains(&o.peer) {
                continue;
            }
            let ring = plane.out[o.peer]
                .ok_or_else(|| CommError::Shm(format!("no ring to rank {}", o.peer)))?;
            let (off, len, tag) = (o.off, o.len, o.tag);
            let mut sent = o.sent;
            while sent < len {
                let n = (len - sent).min(SLOT_BYTES);
                let data = self.slice(off + sent..off + sent + n);
                // SAFETY: this rank is the ring's only producer; `data` is the caller's buffer.
                if unsafe { ring.try_push(tag, data) } {
                    sent += n;
                    progress = true;
                } else {
                    break;
                }
            }
            self.outs[k].sent = sent;
            if sent < len {
                blocked.push(self.outs[k].peer);
            }
        }
        blocked.clear();
        for k in 0..self.ins.len() {
            let i = &self.ins[k];
            if !i.shm || i.got == i.len || blocked.contains(&i.peer) {
                continue;
            }
            let ring = plane.inb[i.peer]
                .ok_or_else(|| CommError::Shm(format!("no ring from rank {}", i.peer)))?;
            let (off, len, tag, action, defer, peer) =
                (i.off, i.len, i.tag, i.action, i.defer, i.peer);
            let mut got = i.got;
            while got < len {
                // SAFETY: this rank is the ring's only consumer; the slice is dropped before
                // `pop`.
                let Some((t, data)) = (unsafe { ring.peek() }) else {
                    break;
                };
                let n = (len - got).min(SLOT_BYTES);
                if t != tag || data.len() != n {
                    return Err(CommError::Protocol(format!(
                        "rank {peer} sent message {t:#x} of {} bytes where {} expected {tag:#x} \
                         of {n} bytes: ranks disagree about the operation, its size or order",
                        data.len(),
                        self.during()
                    )));
                }
                if defer {
                    self.ins[k].staged.extend_from_slice(data);
                } else {
                    self.apply(action, off + got..off + got + n, data);
                }
                ring.pop();
                got += n;
                progress = true;
            }
            self.ins[k].got = got;
            if got < len {
                blocked.push(peer);
            }
        }
        Ok(progress)
    }

    fn pump_net(&mut self, plane: &mut Plane, world: &World) -> Result<bool, CommError> {
        if self.wrs.is_empty() {
            return Ok(false);
        }
        let mut progress = false;
        // Nothing ready: run an engine iteration here rather than wait for the engine thread
        // to hand completions over (this thread is the only one waiting on them; measured:
        // 64 KiB allreduce 35 µs with it, 66 µs without).
        let poll = |h: &weir_firmware::net::Net| {
            h.poll_completion().or_else(|| {
                h.progress();
                h.poll_completion()
            })
        };
        while let Some(c) = plane.host.as_ref().and_then(poll) {
            progress |= self.on_completion(c, plane, world)?;
            if self.wrs.is_empty() {
                break;
            }
        }
        Ok(progress)
    }

    fn on_completion(
        &mut self,
        c: Completion,
        plane: &mut Plane,
        world: &World,
    ) -> Result<bool, CommError> {
        let Some(wr) = self.wrs.remove(&c.wr.0) else {
            return Ok(false);
        };
        let peer = match wr {
            Wr::Send { peer, .. } => peer,
            Wr::Recv { inb, .. } => self.ins[inb].peer,
        };
        if let Err(e) = c.status {
            if matches!(wr, Wr::Send { .. }) && self.left.contains(&peer) {
                // See `poll`: a departed peer had what it needed from this send.
                return Ok(true);
            }
            let reason = match e {
                WrError::ConnectionLost(r) => format!("transport connection lost: {r:?}"),
                other => format!("transport request failed: {other:?}"),
            };
            let truncated = matches!(e, WrError::Truncated { .. });
            if truncated {
                return Err(CommError::Protocol(format!(
                    "rank {peer} sent more than {} expected: ranks disagree about the \
                     operation or its size ({reason})",
                    self.during()
                )));
            }
            return Err(self.lost(world, peer, reason));
        }
        match wr {
            Wr::Send { .. } => {}
            Wr::Recv { inb, at, len } => {
                if c.kind != CompletionKind::Recv || c.len != len as u64 {
                    return Err(CommError::Protocol(format!(
                        "rank {peer} sent {} bytes where {} expected {len}",
                        c.len,
                        self.during()
                    )));
                }
                let i = &self.ins[inb];
                if let (Some(s), false) = (i.scratch, i.defer) {
                    let (action, dst) = (i.action, i.off + at..i.off + at + len);
                    let sb = plane
                        .scratch
                        .as_ref()
                        .map(|x| x.1.as_ptr())
                        .ok_or_else(|| CommError::Transport("scratch vanished".into()))?;
                    // SAFETY: the receive completed, so the engine no longer writes this range
                    // of the scratch buffer, which `post_net` sized to hold it.
                    let src = unsafe { std::slice::from_raw_parts(sb.add(s + at), len) };
                    self.apply(action, dst, src);
                }
                self.ins[inb].got += len;
            }
        }
        Ok(true)
    }

    fn step_complete(&self) -> bool {
        self.outs.iter().all(|o| o.sent == o.len)
            && self.ins.iter().all(|i| i.got == i.len)
            && !self.end_conflict()
    }

    /// Whether a write left for the end of the step (deferred receives, local copies)
    /// overlaps a transport send still in flight, possibly this step's own.
    fn end_conflict(&self) -> bool {
        self.writes_overlap_send(true)
    }

    /// Whether a write of the current step (only the deferred receives when `deferred_only`,
    /// and the local copies) overlaps a transport send still in flight.
    fn writes_overlap_send(&self, deferred_only: bool) -> bool {
        self.ins
            .iter()
            .filter(|i| !deferred_only || i.defer)
            .map(|i| (i.off, i.len))
            .chain(self.locals.iter().map(|(off, d)| (*off, d.len())))
            .any(|w| self.overlaps_send(w))
    }

    fn overlaps_send(&self, (a, la): (usize, usize)) -> bool {
        self.wrs.values().any(|wr| match *wr {
            Wr::Send { off, len, .. } => a < off + len && off < a + la,
            Wr::Recv { .. } => false,
        })
    }

    fn end_step(&mut self, plane: &Plane) {
        let ins = std::mem::take(&mut self.ins);
        for i in ins.iter().filter(|i| i.defer) {
            let dst = i.off..i.off + i.len;
            if i.shm {
                self.apply(i.action, dst, &i.staged);
            } else if let (Some(s), Some(sb)) = (i.scratch, plane.scratch.as_ref()) {
                // SAFETY: every receive of the step completed; the range was sized in
                // `post_net`.
                let src = unsafe { std::slice::from_raw_parts(sb.1.as_ptr().add(s), i.len) };
                self.apply(i.action, dst, src);
            }
        }
        self.ins = ins;
        for (dst, data) in std::mem::take(&mut self.locals) {
            self.slice_mut(dst..dst + data.len()).copy_from_slice(&data);
        }
        self.outs.clear();
        self.ins.clear();
    }

    fn finish(&mut self, plane: &mut Plane) {
        if self.op == ReduceOp::Avg && self.sched.collective().reduces() {
            let out = self.sched.outputs()[self.me].clone();
            let es = self.kernel.size;
            let n = self.sched.ranks();
            (self.kernel.divide)(self.slice_mut(out.start * es..out.end * es), n);
        }
        self.release(plane);
        self.done = true;
    }

    /// Deregisters the working buffer from the transport (no more writes into it).
    pub(crate) fn release(&mut self, plane: &mut Plane) {
        if let (Some(r), Some(h)) = (self.region.take(), plane.host.as_ref()) {
            h.deregister(r);
        }
        self.wrs.clear();
    }
}
