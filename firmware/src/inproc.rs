//! The in-process placement: the engine as a thread of its clients' process, owning a UDP
//! datapath ([`weir_datapath::Nic`]) outright, every client talking to it only through its
//! rings and doorbells — the same protocol the daemon placement carries across processes.
//!
//! The loop (`run`): take control requests (attach, detach, memory), take submissions, one
//! datapath round, route events into completion rings, ring the doorbells of clients that
//! sleep; after doing work it keeps polling for `spin`, then announces its sleep on every
//! submission ring and sleeps in `poll(2)` on the sockets and its own eventfd until a
//! datagram, a doorbell or the next timer. An idle engine costs no CPU.
// The placement is the I/O shell around the sans-IO core: it reads the OS clock and runs a
// thread (docs/architecture.md binds only the protocol code to the sans-IO rule).
#![allow(clippy::disallowed_methods)]

use std::boxed::Box;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::string::String;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration as StdDuration;
use std::vec::Vec;

use weir_base::Clock;
use weir_datapath::{HostConfig, HostError, HostStats, MonotonicClock, Nic};

use crate::desc::{Cqe, DESC_LEN, Op, Sqe};
use crate::engine::{ClientId, Engine, EngineConfig, EngineStats};
use crate::ring::{Consumer, Producer, RingMemory};

/// Slots in each ring of a client.
pub const RING_SLOTS: u32 = 1024;

/// Errors of the in-process placement.
#[derive(Debug)]
pub enum EngineError {
    /// Starting the datapath failed.
    Host(HostError),
    /// A system call failed.
    Io(std::io::Error),
    /// The engine thread has stopped (it names the engine's address).
    Stopped(std::net::SocketAddr),
    /// Nothing completed within the time asked.
    Timeout(StdDuration),
    /// The engine refused the client (too many clients) or its memory.
    Refused(&'static str),
    /// The daemon answered something else than expected (its words).
    Daemon(String),
}

impl core::fmt::Display for EngineError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EngineError::Host(e) => write!(f, "engine datapath: {e}"),
            EngineError::Io(e) => write!(f, "engine: {e}"),
            EngineError::Stopped(a) => write!(f, "the engine at {a} has stopped"),
            EngineError::Timeout(t) => write!(f, "no completion within {t:?}"),
            EngineError::Refused(why) => write!(f, "engine refused: {why}"),
            EngineError::Daemon(said) => write!(f, "engine daemon: {said}"),
        }
    }
}

impl std::error::Error for EngineError {}

/// An eventfd: a doorbell one side writes and the other sleeps on.
#[derive(Debug)]
pub(crate) struct EventFd(pub(crate) RawFd);

impl EventFd {
    pub(crate) fn new() -> Result<EventFd, EngineError> {
        // SAFETY: plain syscall; the descriptor is owned by the returned value.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(EngineError::Io(std::io::Error::last_os_error()));
        }
        Ok(EventFd(fd))
    }

    /// A duplicate of another eventfd (owned by the new value).
    pub(crate) fn dup(fd: RawFd) -> Result<EventFd, EngineError> {
        // SAFETY: plain syscall on a descriptor the caller keeps open.
        let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if d < 0 {
            return Err(EngineError::Io(std::io::Error::last_os_error()));
        }
        Ok(EventFd(d))
    }

    pub(crate) fn ring(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to our own eventfd.
        unsafe { libc::write(self.0, (&one as *const u64).cast(), 8) };
    }

    fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a valid u64 from our own non-blocking eventfd.
        unsafe { libc::read(self.0, (&mut v as *mut u64).cast(), 8) };
    }

    /// Sleep until rung or `timeout` passes.
    pub(crate) fn wait(&self, timeout: StdDuration) {
        let mut p = libc::pollfd {
            fd: self.0,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(timeout.as_millis().max(1)).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut p, 1, ms) };
        self.drain();
    }
}

impl Drop for EventFd {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor and close it once.
        unsafe { libc::close(self.0) };
    }
}

/// Zeroed, page-aligned memory a client registers regions in (a segment): heap memory in
/// the in-process placement, a shared mapping of a sealed memfd with the daemon.
#[derive(Debug)]
pub struct Memory {
    pub(crate) ptr: NonNull<u8>,
    pub(crate) len: usize,
    /// `Some(fd)`: a mapping of that memfd (unmapped and closed on drop).
    pub(crate) memfd: Option<RawFd>,
}

// SAFETY: plain owned heap memory; the engine and the client coordinate access through the
// transport's request rules (no access to bytes of an outstanding request).
unsafe impl Send for Memory {}
// SAFETY: as above.
unsafe impl Sync for Memory {}

impl Memory {
    fn layout(len: usize) -> Option<std::alloc::Layout> {
        std::alloc::Layout::from_size_align(len.max(1), 4096).ok()
    }

    pub(crate) fn new(len: usize) -> Option<Memory> {
        // SAFETY: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { std::alloc::alloc_zeroed(Memory::layout(len)?) })?;
        // Touch every page now (as an RDMA registration pins its memory), so the first
        // messages do not pay the page faults.
        for off in (0..len).step_by(4096) {
            // SAFETY: `off < len`, inside the allocation.
            unsafe { ptr.as_ptr().add(off).write_volatile(0) };
        }
        Some(Memory {
            ptr,
            len,
            memfd: None,
        })
    }

    /// Its length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copy `src` into the memory at `offset` (panics past the end, as slices do).
    pub fn write(&self, offset: usize, src: &[u8]) {
        assert!(offset.checked_add(src.len()).is_some_and(|e| e <= self.len));
        // SAFETY: in bounds (checked above); the caller does not write bytes of an
        // outstanding request (the transport's rule).
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(offset), src.len())
        };
    }

    /// Copy bytes out of the memory at `offset`.
    pub fn read(&self, offset: usize, dst: &mut [u8]) {
        assert!(offset.checked_add(dst.len()).is_some_and(|e| e <= self.len));
        // SAFETY: in bounds (checked above).
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset),
                dst.as_mut_ptr(),
                dst.len(),
            )
        };
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        if let Some(fd) = self.memfd {
            // SAFETY: `ptr`/`len` are the mapping made with this memfd, unmapped once; we own
            // the descriptor.
            unsafe {
                libc::munmap(self.ptr.as_ptr().cast(), self.len.max(1));
                libc::close(fd);
            }
            return;
        }
        if let Some(l) = Memory::layout(self.len) {
            // SAFETY: allocated in `new` with this layout.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr(), l) };
        }
    }
}

/// What a client asks of the loop outside its rings.
pub(crate) enum Control {
    Attach {
        sq: Consumer,
        cq: Producer,
        /// What must outlive the engine's use of the rings.
        keep: Box<dyn core::any::Any + Send + Sync>,
        wake: Arc<EventFd>,
        reply: mpsc::Sender<Result<ClientId, EngineError>>,
    },
    Segment {
        client: ClientId,
        mem: Arc<Memory>,
        reply: mpsc::Sender<Option<u32>>,
    },
    /// The client's process memory by address: directly (a client of this process) or
    /// through `Some(foreign)` (a daemon's client).
    ProcessMemory {
        client: ClientId,
        foreign: Option<Box<dyn crate::engine::ForeignMemory>>,
        reply: mpsc::Sender<Option<u32>>,
    },
    Detach(ClientId),
    Stats(mpsc::Sender<(EngineStats, HostStats, u64)>),
}

/// What the loop keeps of an attached client: what must live as long as the engine uses it.
struct Attached {
    _rings: Box<dyn core::any::Any + Send + Sync>,
    _segments: Vec<Arc<Memory>>,
    wake: Arc<EventFd>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    control: Mutex<Vec<Control>>,
    wake: EventFd,
    shutdown: AtomicBool,
    stopped: AtomicBool,
    local: std::net::SocketAddr,
}

impl Shared {
    /// The engine's doorbell.
    pub(crate) fn wake_fd(&self) -> RawFd {
        self.wake.0
    }

    /// The engine's datapath address.
    pub(crate) fn local_addr(&self) -> std::net::SocketAddr {
        self.local
    }
}

impl core::fmt::Debug for Control {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Control::Attach { .. } => "Attach",
            Control::Segment { .. } => "Segment",
            Control::ProcessMemory { .. } => "ProcessMemory",
            Control::Detach(_) => "Detach",
            Control::Stats(_) => "Stats",
        })
    }
}

/// A running engine thread. Dropping it stops the thread (closing every connection).
#[derive(Debug)]
pub struct EngineThread {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl EngineThread {
    /// Bind the datapath `cfg` describes and start the loop. `spin`: how long the loop keeps
    /// polling after doing work before it sleeps.
    pub fn start(cfg: HostConfig, engine: EngineConfig) -> Result<EngineThread, EngineError> {
        let spin = cfg.spin;
        let (nic, ep) = Nic::open(cfg).map_err(EngineError::Host)?;
        let local = ep.local_addr();
        let shared = Arc::new(Shared {
            control: Mutex::new(Vec::new()),
            wake: EventFd::new()?,
            shutdown: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            local,
        });
        let runner = shared.clone();
        let core = Engine::new(ep, engine);
        let thread = std::thread::Builder::new()
            .name(std::format!("weir-engine-f{}", local.port()))
            .spawn(move || run(runner, core, nic, spin))
            .map_err(EngineError::Io)?;
        Ok(EngineThread {
            shared,
            thread: Some(thread),
        })
    }

    /// The address peers connect to.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.shared.local
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// A new client with its own rings.
    pub fn client(&self) -> Result<Client, EngineError> {
        let sq =
            Arc::new(RingMemory::new(RING_SLOTS, DESC_LEN).ok_or(EngineError::Refused("ring"))?);
        let cq =
            Arc::new(RingMemory::new(RING_SLOTS, DESC_LEN).ok_or(EngineError::Refused("ring"))?);
        let wake = Arc::new(EventFd::new()?);
        let ring_err = |_| EngineError::Refused("ring");
        // SAFETY: the loop keeps clones of both ring memories until the client detaches, and
        // the client keeps its own; each end is taken once.
        let (sq_p, sq_c, cq_p, cq_c) = unsafe {
            (
                sq.producer().map_err(ring_err)?,
                sq.consumer().map_err(ring_err)?,
                cq.producer().map_err(ring_err)?,
                cq.consumer().map_err(ring_err)?,
            )
        };
        let id = request(&self.shared, |reply| Control::Attach {
            sq: sq_c,
            cq: cq_p,
            keep: Box::new((sq.clone(), cq.clone())),
            wake: wake.clone(),
            reply,
        })??;
        Ok(Client {
            id,
            link: Link::InProc(self.shared.clone()),
            sq: sq_p,
            cq: cq_c,
            _rings: Box::new((sq, cq)),
            wake,
            next: 0,
            spin: StdDuration::from_micros(50),
        })
    }

    /// Engine counters, datapath counters, and the engine thread's CPU time so far (ns).
    pub fn stats(&self) -> Result<(EngineStats, HostStats, u64), EngineError> {
        request(&self.shared, Control::Stats)
    }
}

pub(crate) fn control(shared: &Shared, c: Control) {
    shared
        .control
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(c);
    shared.wake.ring();
}

/// Ask the loop for something (`make` builds the request around the reply channel) and wait
/// for its answer; `Stopped` if the loop ends first.
pub(crate) fn request<T>(
    shared: &Shared,
    make: impl FnOnce(mpsc::Sender<T>) -> Control,
) -> Result<T, EngineError> {
    let (tx, rx) = mpsc::channel();
    control(shared, make(tx));
    loop {
        match rx.recv_timeout(StdDuration::from_millis(100)) {
            Ok(v) => return Ok(v),
            Err(mpsc::RecvTimeoutError::Timeout) if !shared.stopped.load(Ordering::Acquire) => {}
            Err(_) => return Err(EngineError::Stopped(shared.local)),
        }
    }
}

impl Drop for EngineThread {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        self.shared.wake.ring();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// CPU time of the calling thread, ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// The engine loop (module docs).
fn run(shared: Arc<Shared>, mut core: Engine, mut nic: Nic, spin: StdDuration) {
    let clock = MonotonicClock::new();
    let mut attached: Vec<Option<Attached>> = Vec::new();
    let mut events = Vec::new();
    let mut woken = Vec::new();
    let mut last_work = std::time::Instant::now();
    loop {
        let now = clock.now();
        let shutting_down = shared.shutdown.load(Ordering::Acquire);
        let requests =
            std::mem::take(&mut *shared.control.lock().unwrap_or_else(|p| p.into_inner()));
        let mut worked = !requests.is_empty();
        for c in requests {
            match c {
                Control::Attach {
                    sq,
                    cq,
                    keep,
                    wake,
                    reply,
                } => {
                    let r = core
                        .attach(sq, cq)
                        .map_err(|_| EngineError::Refused("too many clients"));
                    if let Ok(id) = r {
                        let i = id.0 as usize;
                        if attached.len() <= i {
                            attached.resize_with(i + 1, || None);
                        }
                        attached[i] = Some(Attached {
                            _rings: keep,
                            _segments: Vec::new(),
                            wake,
                        });
                    }
                    let _ = reply.send(r);
                }
                Control::Segment { client, mem, reply } => {
                    // SAFETY: the loop keeps `mem` alive in `attached` until the client is
                    // detached, after which the engine no longer uses it.
                    let seg = unsafe { core.add_segment(client, mem.ptr, mem.len as u64) };
                    if seg.is_some()
                        && let Some(Some(a)) = attached.get_mut(client.0 as usize)
                    {
                        a._segments.push(mem);
                    }
                    let _ = reply.send(seg);
                }
                Control::ProcessMemory {
                    client,
                    foreign,
                    reply,
                } => {
                    let seg = match foreign {
                        Some(mem) => core.add_foreign_segment(client, mem),
                        // SAFETY: a client of this process; `Client::process_segment`'s
                        // caller promised its registrations valid.
                        None => unsafe { core.add_address_space(client) },
                    };
                    let _ = reply.send(seg);
                }
                Control::Detach(id) => {
                    core.detach(now, id);
                    if let Some(a) = attached.get_mut(id.0 as usize) {
                        *a = None;
                    }
                }
                Control::Stats(reply) => {
                    let _ = reply.send((core.stats(), nic.stats(core.endpoint()), thread_cpu_ns()));
                }
            }
        }
        if shutting_down {
            core.endpoint().close_all(now);
        }
        worked |= core.submit(now) > 0;
        worked |= nic.iterate(core.endpoint(), now, &mut events);
        for ev in events.drain(..) {
            core.route(now, ev);
        }
        core.flush(&mut woken);
        for id in woken.drain(..) {
            if let Some(Some(a)) = attached.get(id.0 as usize) {
                a.wake.ring();
            }
        }
        for id in core.broken_clients() {
            core.detach(now, id);
            if let Some(a) = attached.get_mut(id.0 as usize) {
                // Wake it so its next call sees the engine gone from its rings.
                if let Some(a) = a.take() {
                    a.wake.ring();
                }
            }
        }
        if shutting_down {
            // One more round sent the closes.
            nic.iterate(core.endpoint(), now, &mut events);
            break;
        }
        let wall = std::time::Instant::now();
        if worked || nic.has_backlog() {
            last_work = wall;
            continue;
        }
        if wall.duration_since(last_work) < spin {
            if !nic.wait(None, Some(StdDuration::ZERO)) {
                std::thread::yield_now();
            }
            continue;
        }
        // Sleep until a datagram, a doorbell, a control request or the next timer (shutdown
        // and control requests ring the eventfd; the 1 s cap is only a backstop).
        if core.prepare_sleep() {
            let timeout = nic
                .next_deadline(core.endpoint())
                .map(|t| weir_datapath::clock::to_std(t.saturating_since(clock.now())))
                .unwrap_or(StdDuration::from_secs(1))
                .min(StdDuration::from_secs(1));
            nic.wait(Some(shared.wake.0), Some(timeout));
            shared.wake.drain();
        }
        core.woke();
    }
    shared.stopped.store(true, Ordering::Release);
    for a in attached.iter().flatten() {
        a.wake.ring();
    }
}

/// How a client reaches its engine outside the rings.
#[derive(Debug)]
pub(crate) enum Link {
    /// A thread of this process.
    InProc(Arc<Shared>),
    /// The `weir engine` daemon, over its Unix socket.
    Daemon(crate::daemon::Remote),
}

impl Link {
    /// Ring the engine's doorbell.
    fn ring_engine(&self) {
        match self {
            Link::InProc(s) => s.wake.ring(),
            Link::Daemon(r) => r.engine_wake.ring(),
        }
    }

    /// The error to report when the engine is gone, if it is.
    fn gone(&self) -> Option<EngineError> {
        match self {
            Link::InProc(s) => s
                .stopped
                .load(Ordering::Acquire)
                .then_some(EngineError::Stopped(s.local)),
            Link::Daemon(r) => r.gone(),
        }
    }

    fn memory(&self, id: ClientId, len: usize) -> Result<(u32, Arc<Memory>), EngineError> {
        match self {
            Link::InProc(s) => {
                let mem = Arc::new(Memory::new(len).ok_or(EngineError::Refused("memory"))?);
                let seg = request(s, |reply| Control::Segment {
                    client: id,
                    mem: mem.clone(),
                    reply,
                })?
                .ok_or(EngineError::Refused("too many segments"))?;
                Ok((seg, mem))
            }
            Link::Daemon(r) => r.memory(len),
        }
    }

    fn process_segment(&self, id: ClientId) -> Result<u32, EngineError> {
        match self {
            Link::InProc(s) => request(s, |reply| Control::ProcessMemory {
                client: id,
                foreign: None,
                reply,
            })?
            .ok_or(EngineError::Refused("too many segments")),
            Link::Daemon(r) => r.process_segment(),
        }
    }

    fn detach(&self, id: ClientId) {
        match self {
            Link::InProc(s) => control(s, Control::Detach(id)),
            // Closing the socket (when `Remote` drops) detaches.
            Link::Daemon(_) => {}
        }
    }
}

/// A client of an engine: its rings and doorbells. Not shared between threads (one producer,
/// one consumer); open one per thread. Dropping it detaches it (its connections close).
#[derive(Debug)]
pub struct Client {
    pub(crate) id: ClientId,
    pub(crate) link: Link,
    pub(crate) sq: Producer,
    pub(crate) cq: Consumer,
    pub(crate) _rings: Box<dyn core::any::Any + Send + Sync>,
    pub(crate) wake: Arc<EventFd>,
    pub(crate) next: u64,
    pub(crate) spin: StdDuration,
}

impl Client {
    /// Submit `op`; returns the cookie its completion carries. Waits while the submission
    /// ring is full (the engine takes a batch per round).
    pub fn submit(&mut self, op: Op) -> Result<u64, EngineError> {
        let user = self.reserve();
        self.submit_as(user, op)?;
        Ok(user)
    }

    /// The cookie the next submission would get, taken now for a submission made later with
    /// [`Client::submit_as`] (a request posted while its connection is still connecting).
    pub(crate) fn reserve(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Submit `op` under a cookie from [`Client::reserve`].
    pub(crate) fn submit_as(&mut self, user: u64, op: Op) -> Result<(), EngineError> {
        let bytes = Sqe { op, user }.encode();
        let start = std::time::Instant::now();
        loop {
            match self.sq.push(&bytes) {
                Ok(true) => break,
                Ok(false) => {
                    if let Some(e) = self.link.gone() {
                        return Err(e);
                    }
                    if start.elapsed() > StdDuration::from_secs(5) {
                        return Err(EngineError::Timeout(start.elapsed()));
                    }
                    self.link.ring_engine();
                    std::thread::yield_now();
                }
                Err(_) => return Err(EngineError::Refused("submission ring corrupted")),
            }
        }
        if self.sq.needs_doorbell() {
            self.link.ring_engine();
        }
        Ok(())
    }

    /// A completion, if one is ready.
    pub fn poll(&mut self) -> Result<Option<Cqe>, EngineError> {
        let mut b = [0u8; DESC_LEN];
        match self.cq.pop(&mut b) {
            Ok(true) => Cqe::decode(&b)
                .map(Some)
                .ok_or(EngineError::Refused("unknown completion")),
            Ok(false) => Ok(None),
            Err(_) => Err(EngineError::Refused("completion ring corrupted")),
        }
    }

    /// Wait for the next completion: poll for a while, then sleep on the doorbell.
    pub fn wait(&mut self, timeout: StdDuration) -> Result<Cqe, EngineError> {
        let start = std::time::Instant::now();
        loop {
            if let Some(c) = self.poll()? {
                return Ok(c);
            }
            let waited = start.elapsed();
            if waited < self.spin {
                std::thread::yield_now();
                continue;
            }
            if let Some(e) = self.link.gone() {
                return Err(e);
            }
            if waited >= timeout {
                return Err(EngineError::Timeout(waited));
            }
            match self.cq.prepare_sleep() {
                Ok(true) => {
                    self.wake
                        .wait((timeout - waited).min(StdDuration::from_millis(100)));
                    self.cq.woke();
                }
                Ok(false) => {}
                Err(_) => return Err(EngineError::Refused("completion ring corrupted")),
            }
        }
    }

    /// The datapath address of this client's engine (loop): what its peers connect to.
    pub fn engine_addr(&self) -> std::net::SocketAddr {
        match &self.link {
            Link::InProc(s) => s.local,
            Link::Daemon(r) => r.engine_addr(),
        }
    }

    /// `len` bytes of zeroed memory the engine may read and write for this client: returns
    /// its segment number (for [`Op::Register`]) and the memory.
    pub fn memory(&mut self, len: usize) -> Result<(u32, Arc<Memory>), EngineError> {
        self.link.memory(self.id, len)
    }

    /// A segment in which this client registers its own process's memory by address (the
    /// `offset` of [`Op::Register`] is the address): memory it did not get from
    /// [`Client::memory`], such as an NCCL plugin's `regMr` buffers or a communicator's
    /// tensors. An engine thread of this process addresses it directly; the daemon reaches
    /// it through the client's `/proc/self/mem`, which the client hands over (a copy at
    /// each send and completed receive, as a DPU's DMA engine moves host memory; peers may
    /// not write into such regions there). Asked once per client.
    ///
    /// # Safety
    /// Every range registered in the segment must stay valid for reads and writes, and not
    /// be accessed by the program in ways that conflict with the engine's, while it is
    /// registered (the contract of `Host::register_raw`).
    pub unsafe fn process_segment(&mut self) -> Result<u32, EngineError> {
        self.link.process_segment(self.id)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.link.detach(self.id);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::desc::{CqeKind, Status};

    fn start() -> EngineThread {
        let mut cfg = HostConfig::default();
        cfg.udp.bind = std::net::Ipv4Addr::LOCALHOST.into();
        EngineThread::start(cfg, EngineConfig::default()).unwrap()
    }

    /// The next completion of `c`, which must be `user`'s, of `kind`, and `Ok`.
    pub(crate) fn done(c: &mut Client, user: u64, kind: CqeKind) -> Cqe {
        let cqe = c.wait(StdDuration::from_secs(10)).unwrap();
        assert_eq!(
            (cqe.user, cqe.kind, cqe.status),
            (user, kind, Status::Ok),
            "{cqe:?}"
        );
        cqe
    }

    /// `b` listens on `key` and `a` connects to `b`'s engine with it: the connection's
    /// handles on both sides.
    pub(crate) fn pair(a: &mut Client, b: &mut Client, key: u64) -> (u32, u32) {
        let u = b
            .submit(Op::Listen {
                key,
                secret: None,
                span: 1,
            })
            .unwrap();
        done(b, u, CqeKind::Done);
        let u = a
            .submit(Op::Connect {
                remote: b.engine_addr(),
                user_data: key,
                secret: None,
            })
            .unwrap();
        let ha = done(a, u, CqeKind::Connected).conn;
        let acc = b.wait(StdDuration::from_secs(10)).unwrap();
        assert_eq!((acc.kind, acc.tag), (CqeKind::Accepted, key), "{acc:?}");
        (ha, acc.conn)
    }

    /// Two engine threads on loopback, a client of each, 8 MiB in 1 MiB messages with four
    /// in flight, bytes compared; the idle engine sleeps.
    #[test]
    fn streams_over_udp_through_rings() {
        let (ea, eb) = (start(), start());
        let (mut a, mut b) = (ea.client().unwrap(), eb.client().unwrap());
        let (ha, hb) = pair(&mut a, &mut b, 77);
        let len = 8 << 20;
        let (sa, ma) = a.memory(len).unwrap();
        let (sb, mb) = b.memory(len).unwrap();
        let pattern: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
        ma.write(0, &pattern);
        let reg = |c: &mut Client, segment| {
            let u = c
                .submit(Op::Register {
                    segment,
                    offset: 0,
                    len: len as u64,
                    remote_write: false,
                })
                .unwrap();
            done(c, u, CqeKind::Registered).region
        };
        let (ra, rb) = (reg(&mut a, sa), reg(&mut b, sb));
        let chunk = 1u64 << 20;
        for k in 0..8u64 {
            b.submit(Op::Recv {
                conn: hb,
                region: rb,
                offset: k * chunk,
                len: chunk,
                tag: Some(k),
            })
            .unwrap();
        }
        let mut next = 0u64;
        let mut inflight = 0;
        let mut sent = 0;
        while sent < 8 {
            while inflight < 4 && next < 8 {
                a.submit(Op::Send {
                    conn: ha,
                    region: ra,
                    offset: next * chunk,
                    len: chunk,
                    tag: next,
                })
                .unwrap();
                next += 1;
                inflight += 1;
            }
            let c = a.wait(StdDuration::from_secs(10)).unwrap();
            assert_eq!((c.kind, c.status), (CqeKind::Send, Status::Ok));
            inflight -= 1;
            sent += 1;
        }
        let mut got = 0;
        while got < 8 {
            let c = b.wait(StdDuration::from_secs(10)).unwrap();
            assert_eq!(
                (c.kind, c.status, c.len),
                (CqeKind::Recv, Status::Ok, chunk)
            );
            got += 1;
        }
        let mut back = std::vec![0u8; len];
        mb.read(0, &mut back);
        assert!(back == pattern, "bytes differ");
        let (st, _, _) = ea.stats().unwrap();
        assert!(st.submissions >= 10 && st.completions >= 10, "{st:?}");
        // Idle: the engine thread sleeps (its CPU time stops growing).
        std::thread::sleep(StdDuration::from_millis(50));
        let (_, _, cpu0) = ea.stats().unwrap();
        std::thread::sleep(StdDuration::from_millis(300));
        let (_, _, cpu1) = ea.stats().unwrap();
        assert!(
            cpu1 - cpu0 < 30_000_000,
            "idle engine used {} ms of CPU in 300 ms",
            (cpu1 - cpu0) / 1_000_000
        );
    }

    /// Dropping a client closes its connections (the peer's client sees it); a client of a
    /// stopped engine gets an error naming the engine instead of hanging.
    #[test]
    fn detach_and_engine_death() {
        let (ea, eb) = (start(), start());
        let (mut a, mut b) = (ea.client().unwrap(), eb.client().unwrap());
        let (_, hb) = pair(&mut a, &mut b, 1);
        drop(a);
        let closed = b.wait(StdDuration::from_secs(10)).unwrap();
        assert_eq!((closed.kind, closed.conn), (CqeKind::Closed, hb));
        let addr = eb.local_addr();
        drop(eb);
        match b.wait(StdDuration::from_secs(10)) {
            Err(EngineError::Stopped(at)) => assert_eq!(at, addr),
            other => panic!("expected the engine's death, got {other:?}"),
        }
        assert!(matches!(
            b.submit(Op::Nop),
            Ok(_) | Err(EngineError::Stopped(_))
        ));
    }
}
