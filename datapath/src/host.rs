//! The host-facing handle: an engine thread that owns the UDP sockets and drives a transport
//! [`Endpoint`], and a [`Host`] handle the rest of the stack uses (connect, accept, register
//! memory, post, poll or wait for completions).
//!
//! Threading: the endpoint sits behind a mutex shared by the engine thread and the
//! application's threads. An application call locks it briefly (to post, connect, register)
//! and wakes the engine thread through an eventfd if it sleeps. The engine thread runs a
//! run-to-completion loop — receive a burst, fire timers, transmit a burst, publish events —
//! busy-polls for a short while after doing work, then sleeps in `poll(2)` until a datagram, a
//! wakeup or the next timer. Nothing blocks without a timeout; a dead peer surfaces as
//! [`HostError::ConnectionLost`] naming the peer, after the transport's peer timeout.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use weir_base::{Clock, Instant, Rng};
use weir_transport::{
    Completion, ConnError, ConnId, ConnStats, Endpoint, EndpointStats, Event, PathStats, Payload,
    PostError, RegionId, RxMeta, WorkRequest, WrId,
};
use weir_wire::{Ecn, MAX_HEADER_LEN};

use crate::buffer::Buffer;
use crate::clock::{MonotonicClock, os_seed, to_std};
use crate::fault::{FaultConfig, FaultInjector, FaultStats};
use crate::udp::{TxDatagram, UdpConfig, UdpSockets, UdpStats};

/// Configuration of a [`Host`].
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// Transport engine configuration.
    pub transport: weir_transport::Config,
    /// Sockets. `udp.sockets` is raised to the transport's path count when lower, so every
    /// entropy value gets its own source port.
    pub udp: UdpConfig,
    /// Impairments applied to received datagrams (before the engine sees them).
    pub fault_rx: FaultConfig,
    /// Impairments applied to transmitted datagrams (before the socket).
    pub fault_tx: FaultConfig,
    /// Seed for the engine's random choices; `None` draws one from the OS (normal use).
    pub seed: Option<u64>,
    /// After doing work, the engine thread keeps polling this long before sleeping.
    pub spin: std::time::Duration,
    /// Datagrams per transmit burst.
    pub tx_burst: usize,
    /// Append an ICRC trailer to every datagram sent (see `weir_wire::icrc`). Received
    /// datagrams are verified whenever they carry one. Off by default: the UDP checksum covers
    /// the wire; turn it on when fault injection corrupts bytes.
    pub icrc: bool,
    /// Act as an INT hop for packets that ask for telemetry: each received datagram gets a
    /// record of this host's receive queue (`UdpSockets::rx_queued`), the line rate
    /// (`transport.line_rate`), the bytes received so far and the arrival time. Switched on
    /// by [`Host::start`] whenever the transport asks for INT (`request_int`, or a controller
    /// that needs it), so an INT-driven law sees the last hop's queue even on a path whose
    /// switches add nothing.
    pub host_int: bool,
    /// Mark Congestion Experienced on received datagrams while the primary socket's receive
    /// queue holds more than this fraction of its buffer (0 turns marking off). On a host
    /// the receive queue is the last hop's queue: an incast fills it and the kernel then
    /// drops whole bursts, unseen by any switch. Marked like a switch port marks at its
    /// threshold (DCTCP's step marking), it gives ECN-driven controllers the signal before
    /// the drops, as host congestion control does with host-side signals (hostCC, Agarwal et
    /// al., SIGCOMM 2023). The queue is read only after a receive round came back full, so
    /// an idle or lightly loaded host pays nothing.
    pub rx_ecn_fraction: f64,
    /// Most connections the engine completed that the application has not taken yet
    /// (`accept`/`try_accept`); more are closed at once and counted
    /// (`HostStats::unaccepted_refused`). A listener that stops accepting (NCCL after its
    /// communicators are up) would otherwise keep every handshake a peer completes.
    pub max_unaccepted: usize,
    /// Most of those from one source IP address.
    pub max_unaccepted_per_source: usize,
    /// A connection nobody accepted within this long is closed
    /// (`HostStats::unaccepted_expired`).
    pub unaccepted_ttl: std::time::Duration,
    /// Share the primary socket's receive buffer among the connections receiving at once
    /// (`weir_transport::Config::rx_budget_packets`, set from the buffer the kernel granted
    /// unless the transport configuration sets it): senders are told to keep no more in flight
    /// than the socket can hold, so an incast does not overflow it. On by default.
    pub rx_flow_control: bool,
    /// Receive on every socket: offer peers the sockets' consecutive ports
    /// (`weir_transport::Config::rx_ports`) so they spread packets over all of them — more
    /// kernel buffer for an incast, at the price of reading several sockets (a few µs per
    /// small message when the spread lands on a socket not read lately). Off by default.
    pub rx_spread: bool,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            transport: weir_transport::Config::default(),
            udp: UdpConfig::default(),
            fault_rx: FaultConfig::none(),
            fault_tx: FaultConfig::none(),
            seed: None,
            spin: std::time::Duration::from_micros(50),
            tx_burst: 64,
            icrc: false,
            host_int: false,
            rx_ecn_fraction: 0.25,
            max_unaccepted: 1024,
            max_unaccepted_per_source: 256,
            unaccepted_ttl: std::time::Duration::from_secs(120),
            rx_flow_control: true,
            rx_spread: false,
        }
    }
}

/// Errors of the host handle.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A socket or system call failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The transport configuration is invalid.
    #[error("{0}")]
    Config(#[from] weir_transport::ConfigError),
    /// A fault-injection configuration is invalid.
    #[error("invalid fault configuration: {0}")]
    Fault(String),
    /// Nothing happened within the timeout.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// The timeout.
        after: std::time::Duration,
    },
    /// A connection failed.
    #[error("connection {conn:?} to {peer} lost: {reason}")]
    ConnectionLost {
        /// The connection.
        conn: ConnId,
        /// The peer.
        peer: SocketAddr,
        /// Why.
        reason: ConnError,
    },
    /// The request could not be posted.
    #[error("cannot post: {0:?}")]
    Post(PostError),
    /// The engine thread has stopped.
    #[error("the engine thread has stopped")]
    Stopped,
}

/// Counters from every layer of one host.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostStats {
    /// Transport endpoint counters.
    pub endpoint: EndpointStats,
    /// Socket counters.
    pub udp: UdpStats,
    /// Receive-side impairments.
    pub fault_rx: FaultStats,
    /// Transmit-side impairments.
    pub fault_tx: FaultStats,
    /// Datagrams whose payload could not be resolved (region deregistered in flight).
    pub tx_payload_missing: u64,
    /// Datagrams dropped because their ICRC trailer did not match.
    pub rx_icrc_errors: u64,
    /// Received datagrams marked Congestion Experienced for a full receive queue
    /// (`HostConfig::rx_ecn_fraction`).
    pub rx_ecn_marked: u64,
    /// Connections the engine holds now (`Endpoint::connections`): a leak shows here.
    pub connections: u64,
    /// Connections closed on arrival because `HostConfig::max_unaccepted` (in all, or
    /// `max_unaccepted_per_source` from their source address) were already waiting for the
    /// application's `accept`.
    pub unaccepted_refused: u64,
    /// Connections closed because nobody accepted them within `HostConfig::unaccepted_ttl`.
    pub unaccepted_expired: u64,
}

/// A running transport host. Dropping it closes every connection and stops the engine thread.
#[derive(Debug)]
pub struct Host {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    local: SocketAddr,
    spin: std::time::Duration,
    /// The `published` count this handle last looked at.
    seen: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
struct Shared {
    engine: Mutex<Engine>,
    state: Mutex<HostState>,
    cv: Condvar,
    sleeping: AtomicBool,
    pending: AtomicBool,
    shutdown: AtomicBool,
    stopped: AtomicBool,
    /// Application threads waiting for the engine lock; the engine thread steps aside for
    /// them (the std mutex is not fair, and the engine re-locks in a tight loop).
    app_waiting: std::sync::atomic::AtomicUsize,
    /// Bumped whenever events are published (lets waiters poll without the state lock).
    published: std::sync::atomic::AtomicU64,
    wake_fd: RawFd,
    clock: MonotonicClock,
    /// `HostConfig::max_unaccepted`, `max_unaccepted_per_source`, `unaccepted_ttl`.
    unaccepted: (usize, usize, weir_base::Duration),
    /// The engine's poll saw an extra socket readable (`UdpSockets::mark_extras_ready`).
    extras_readable: AtomicBool,
}

#[derive(Debug)]
struct Engine {
    ep: Endpoint,
    buffers: HashMap<RegionId, Buffer>,
    stats: HostStats,
    dp: Datapath,
}

#[derive(Debug, Default)]
struct HostState {
    completions: VecDeque<Completion>,
    /// Completed connections waiting for `accept`, with when they completed.
    accepted: VecDeque<(ConnId, SocketAddr, u64, Instant)>,
    /// Connections refused because `accepted` was full.
    unaccepted_refused: u64,
    unaccepted_expired: u64,
    connected: HashSet<ConnId>,
    lost: HashMap<ConnId, (SocketAddr, ConnError)>,
}

impl Host {
    /// Bind the sockets and start the engine thread.
    pub fn start(cfg: HostConfig) -> Result<Host, HostError> {
        let (ep, dp, cfg) = open(cfg)?;
        let local = ep.local_addr();
        // SAFETY: plain syscall; the returned descriptor is owned by `Shared` and closed in
        // its Drop.
        let wake_fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if wake_fd < 0 {
            return Err(HostError::Io(std::io::Error::last_os_error()));
        }
        let fds: Vec<RawFd> = dp.sockets.raw_fds().collect();
        let shared = Arc::new(Shared {
            engine: Mutex::new(Engine {
                ep,
                buffers: HashMap::new(),
                stats: HostStats::default(),
                dp,
            }),
            state: Mutex::new(HostState::default()),
            cv: Condvar::new(),
            sleeping: AtomicBool::new(false),
            pending: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            app_waiting: std::sync::atomic::AtomicUsize::new(0),
            published: std::sync::atomic::AtomicU64::new(0),
            wake_fd,
            clock: MonotonicClock::new(),
            extras_readable: AtomicBool::new(false),
            unaccepted: (
                cfg.max_unaccepted,
                cfg.max_unaccepted_per_source,
                weir_base::Duration::from_nanos(
                    u64::try_from(cfg.unaccepted_ttl.as_nanos()).unwrap_or(u64::MAX),
                ),
            ),
        });
        let runner = shared.clone();
        let spin = cfg.spin;
        let thread = std::thread::Builder::new()
            .name(format!("weir-engine-{}", local.port()))
            .spawn(move || engine_thread(runner, fds, spin))?;
        Ok(Host {
            shared,
            thread: Some(thread),
            local,
            spin: cfg.spin,
            seen: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The primary local address (what peers connect to).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Accept incoming connections.
    pub fn listen(&self) {
        self.with_engine(|e| e.ep.listen(true));
    }

    /// Admit SYNs carrying `key` as their user data and a MAC keyed with `secret`; once any
    /// key is admitted, every other SYN is dropped unanswered, before any state exists
    /// (`Endpoint::admit`).
    pub fn admit(&self, key: u64, secret: u128) {
        self.with_engine(|e| e.ep.admit(key, secret));
    }

    /// Stop admitting `key`.
    pub fn revoke(&self, key: u64) {
        self.with_engine(|e| e.ep.revoke(key));
    }

    /// Connect to `remote` and wait until the handshake completes.
    pub fn connect(
        &self,
        remote: SocketAddr,
        user_data: u64,
        timeout: std::time::Duration,
    ) -> Result<ConnId, HostError> {
        let conn = self.connect_nonblocking(remote, user_data);
        self.wait_connected(conn, timeout)
    }

    /// Wait until `conn` (from [`Host::connect_nonblocking`] or
    /// [`Host::connect_authenticated`]) completes its handshake, or fails.
    pub fn wait_connected(
        &self,
        conn: ConnId,
        timeout: std::time::Duration,
    ) -> Result<ConnId, HostError> {
        self.wait_state(timeout, "the connection handshake", |s| {
            if s.connected.contains(&conn) {
                return Some(Ok(conn));
            }
            s.lost
                .get(&conn)
                .map(|&(peer, reason)| Err(HostError::ConnectionLost { conn, peer, reason }))
        })
    }

    /// Start connecting; check with [`Host::is_connected`].
    pub fn connect_nonblocking(&self, remote: SocketAddr, user_data: u64) -> ConnId {
        let now = self.shared.clock.now();
        self.with_engine(|e| e.ep.connect(now, remote, user_data))
    }

    /// [`Host::connect_nonblocking`] to a listener that admits `user_data` with `secret`
    /// (`Endpoint::connect_authenticated`).
    pub fn connect_authenticated(
        &self,
        remote: SocketAddr,
        user_data: u64,
        secret: u128,
    ) -> ConnId {
        let now = self.shared.clock.now();
        self.with_engine(|e| e.ep.connect_authenticated(now, remote, user_data, secret))
    }

    /// Whether `conn` completed its handshake; an error when it failed.
    pub fn is_connected(&self, conn: ConnId) -> Result<bool, HostError> {
        let s = self.state();
        if let Some(&(peer, reason)) = s.lost.get(&conn) {
            return Err(HostError::ConnectionLost { conn, peer, reason });
        }
        Ok(s.connected.contains(&conn))
    }

    /// Wait for an incoming connection: (connection, peer, the peer's user data).
    pub fn accept(
        &self,
        timeout: std::time::Duration,
    ) -> Result<(ConnId, SocketAddr, u64), HostError> {
        self.wait_state(timeout, "an incoming connection", |s| {
            s.accepted.pop_front().map(|(c, p, u, _)| Ok((c, p, u)))
        })
    }

    /// The first waiting incoming connection whose connector sent `user_data`, if any (the
    /// others stay waiting, under the same limits: `HostConfig::max_unaccepted`,
    /// `unaccepted_ttl`). Several listeners sharing a host (the NCCL plugin's listen comms,
    /// one token each) take their own connections this way.
    pub fn try_accept_for(&self, user_data: u64) -> Option<(ConnId, SocketAddr)> {
        let mut s = self.state();
        let i = s.accepted.iter().position(|a| a.2 == user_data)?;
        s.accepted.remove(i).map(|(c, p, _, _)| (c, p))
    }

    /// Close every waiting incoming connection whose connector sent `user_data` (its listener
    /// is going away).
    pub fn close_waiting(&self, user_data: u64) {
        let mut gone = Vec::new();
        self.state().accepted.retain(|a| {
            let keep = a.2 != user_data;
            if !keep {
                gone.push(a.0);
            }
            keep
        });
        for c in gone {
            self.close(c);
        }
    }

    /// An incoming connection, if one is waiting.
    pub fn try_accept(&self) -> Option<(ConnId, SocketAddr, u64)> {
        self.state()
            .accepted
            .pop_front()
            .map(|(c, p, u, _)| (c, p, u))
    }

    /// Allocate `len` bytes of page-aligned, pre-touched memory and register it (writable by
    /// peers when `remote_write`). The host keeps the memory alive while it is registered.
    pub fn alloc(&self, len: usize, remote_write: bool) -> Result<(RegionId, Buffer), HostError> {
        let buf = Buffer::new(len)?;
        let ptr = buf.as_nonnull();
        let id = self.with_engine(|e| {
            // SAFETY: the buffer is kept alive in `e.buffers` until deregistration, and a
            // Buffer's memory never moves.
            let id = unsafe { e.ep.register(ptr, len as u64, remote_write) };
            e.buffers.insert(id, buf.clone());
            id
        });
        Ok((id, buf))
    }

    /// Register memory the caller owns.
    ///
    /// # Safety
    /// As [`Endpoint::register`]: the memory must stay valid until [`Host::deregister`].
    pub unsafe fn register_raw(&self, ptr: NonNull<u8>, len: u64, remote_write: bool) -> RegionId {
        // SAFETY: forwarded contract.
        self.with_engine(|e| unsafe { e.ep.register(ptr, len, remote_write) })
    }

    /// Deregister a region (and release memory from [`Host::alloc`] once no handle holds it).
    /// Connections with outstanding requests on it fail (`Endpoint::deregister`): those
    /// requests complete with `ConnError::LocalAccess` instead of never completing.
    pub fn deregister(&self, id: RegionId) -> bool {
        let now = self.shared.clock.now();
        self.with_engine(|e| {
            e.buffers.remove(&id);
            e.ep.deregister(now, id)
        })
    }

    /// The key a peer needs to write into `id`.
    pub fn rkey(&self, id: RegionId) -> u32 {
        self.with_engine(|e| e.ep.rkey(id))
    }

    /// Post a work request.
    pub fn post(&self, conn: ConnId, wr: WorkRequest) -> Result<WrId, HostError> {
        let now = self.shared.clock.now();
        let r = self.with_engine(|e| e.ep.post(now, conn, wr));
        match r {
            Ok(id) => Ok(id),
            Err(PostError::NotConnected) => {
                let s = self.state();
                match s.lost.get(&conn) {
                    Some(&(peer, reason)) => Err(HostError::ConnectionLost { conn, peer, reason }),
                    None => Err(HostError::Post(PostError::NotConnected)),
                }
            }
            Err(e) => Err(HostError::Post(e)),
        }
    }

    /// A completion, if one is ready. The engine thread makes progress; this only looks. (It
    /// used to run an engine iteration on the caller's thread when nothing was ready, as a
    /// verbs provider's poll does. NCCL's proxy thread calls `test()` in a tight loop, and the
    /// two threads then took turns on the engine lock: under default scheduling the plugin's
    /// 64 KiB point moved 0.9–1.2 GB/s with it and 3.8–3.9 GB/s without, BENCHMARKS.md.
    /// [`Host::progress`] is there for a caller that wants to drive the engine itself.)
    pub fn poll_completion(&self) -> Option<Completion> {
        self.state().completions.pop_front()
    }

    /// Run one engine iteration (receive, timers, transmit) on the caller's thread, unless
    /// another thread is running one. Returns whether anything happened. A thread that polls
    /// for its own completions (as NCCL's proxy thread does with `test()`) drives the transport
    /// itself instead of handing every packet across threads. `poll_completion` calls it.
    pub fn progress(&self) -> bool {
        let Ok(mut g) = self.shared.engine.try_lock() else {
            return false;
        };
        let now = self.shared.clock.now();
        let mut events = Vec::new();
        let worked = g.iterate(now, &mut events);
        drop(g);
        if !events.is_empty() {
            let refused = publish(&self.shared, &mut events);
            close_refused(&self.shared, now, refused);
        }
        if worked {
            // The engine thread may sleep with a stale timer: let it recompute.
            self.shared.wake();
        }
        worked
    }

    /// Wait for the next completion.
    pub fn wait_completion(&self, timeout: std::time::Duration) -> Result<Completion, HostError> {
        self.wait_state(timeout, "a completion", |s| {
            s.completions.pop_front().map(Ok)
        })
    }

    /// If `conn` has failed: why.
    pub fn conn_error(&self, conn: ConnId) -> Option<HostError> {
        self.state()
            .lost
            .get(&conn)
            .map(|&(peer, reason)| HostError::ConnectionLost { conn, peer, reason })
    }

    /// Close a connection (outstanding requests complete with an error) and forget its
    /// state here (its failure reason, if it had failed).
    pub fn close(&self, conn: ConnId) {
        let now = self.shared.clock.now();
        self.with_engine(|e| e.ep.close(now, conn));
        self.forget(conn);
    }

    /// Close an accepted connection the application will not serve: the peer's connection
    /// fails with `ConnError::Refused` (`Endpoint::reject`).
    pub fn reject(&self, conn: ConnId) {
        let now = self.shared.clock.now();
        self.with_engine(|e| e.ep.reject(now, conn));
        self.forget(conn);
    }

    /// Drop what the application side knows of a closed connection.
    fn forget(&self, conn: ConnId) {
        let mut s = self.state();
        s.lost.remove(&conn);
        s.connected.remove(&conn);
    }

    /// Close a connection gracefully (`Endpoint::close_graceful`): new requests are refused,
    /// what was posted is still delivered and acknowledged (completions follow as usual), then
    /// the connection closes; after the transport's peer timeout it closes regardless.
    pub fn close_graceful(&self, conn: ConnId) {
        let now = self.shared.clock.now();
        self.with_engine(|e| e.ep.close_graceful(now, conn));
    }

    /// Hot reload of congestion control (see `Endpoint::set_cc`): new connections use `cc`,
    /// live ones switch at once, keeping state where only parameters changed. Returns
    /// (connections that kept their state, connections given a fresh controller). A `cc` that
    /// needs INT turns this host's INT hop on (`HostConfig::host_int`).
    pub fn set_cc(&self, cc: weir_congestion::CcConfig) -> (usize, usize) {
        let now = self.shared.clock.now();
        self.with_engine(|e| {
            if cc.needs_int() && e.dp.int.is_none() {
                e.dp.int = Some(HostHop::new(e.ep.config().line_rate));
            }
            e.ep.set_cc(now, cc)
        })
    }

    /// Counters of one connection.
    pub fn conn_stats(&self, conn: ConnId) -> Option<ConnStats> {
        self.with_engine(|e| e.ep.conn_stats(conn))
    }

    /// Per-path counters of one connection.
    pub fn path_stats(&self, conn: ConnId) -> Option<Vec<PathStats>> {
        self.with_engine(|e| e.ep.path_stats(conn))
    }

    /// What the sockets turned out to support (GSO, GRO, ECN).
    pub fn udp_caps(&self) -> crate::udp::UdpCaps {
        self.with_engine(|e| e.dp.sockets.caps())
    }

    /// Counters of every layer.
    pub fn stats(&self) -> HostStats {
        let mut s = self.with_engine(|e| Datapath::stats(e.stats, &e.ep));
        let st = self.state();
        s.unaccepted_refused = st.unaccepted_refused;
        s.unaccepted_expired = st.unaccepted_expired;
        s
    }

    fn with_engine<R>(&self, f: impl FnOnce(&mut Engine) -> R) -> R {
        let r = {
            self.shared.app_waiting.fetch_add(1, Ordering::SeqCst);
            let mut g = lock(&self.shared.engine);
            self.shared.app_waiting.fetch_sub(1, Ordering::SeqCst);
            f(&mut g)
        };
        self.shared.wake();
        r
    }

    fn state(&self) -> MutexGuard<'_, HostState> {
        lock(&self.shared.state)
    }

    fn wait_state<R>(
        &self,
        timeout: std::time::Duration,
        what: &'static str,
        mut ready: impl FnMut(&mut HostState) -> Option<Result<R, HostError>>,
    ) -> Result<R, HostError> {
        let start = std::time::Instant::now();
        let deadline = start + timeout;
        // Poll briefly before blocking: a completion usually follows within microseconds, and
        // a condition-variable wakeup costs tens of microseconds on a busy machine. (Driving
        // the engine from here too was measured: under SCHED_FIFO it starved the engine
        // thread's receive path and made receivers fall behind; `Host::progress` is there for
        // callers that want to drive it themselves.)
        while start.elapsed() < self.spin {
            if self.shared.published.load(Ordering::Acquire) != self.seen.load(Ordering::Relaxed) {
                break;
            }
            std::thread::yield_now();
        }
        let mut s = self.state();
        self.seen.store(
            self.shared.published.load(Ordering::Acquire),
            Ordering::Relaxed,
        );
        loop {
            if let Some(r) = ready(&mut s) {
                return r;
            }
            if self.shared.stopped.load(Ordering::Acquire) {
                return Err(HostError::Stopped);
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(HostError::Timeout {
                    what,
                    after: timeout,
                });
            }
            // Wake at least every 100 ms to notice a stopped engine.
            let wait = (deadline - now).min(std::time::Duration::from_millis(100));
            s = match self.shared.cv.wait_timeout(s, wait) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        self.shared.wake_now();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Shared {
    /// Wake the engine thread if it may be sleeping.
    fn wake(&self) {
        self.pending.store(true, Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) {
            self.wake_now();
        }
    }

    fn wake_now(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to our own eventfd.
        unsafe { libc::write(self.wake_fd, (&one as *const u64).cast(), 8) };
    }

    fn drain_wakeups(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a valid u64 from our own non-blocking eventfd.
        unsafe { libc::read(self.wake_fd, (&mut v as *mut u64).cast(), 8) };
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor and close it once.
        unsafe { libc::close(self.wake_fd) };
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the engine half-updated in a way that is
    // unsafe to observe; keep serving rather than propagate the poison.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `recvmmsg` messages per receive round (each may be a GRO buffer of several datagrams).
const RX_MSGS_PER_ROUND: usize = 8;

/// A datagram held back by the transmit fault injector or by a full socket buffer.
#[derive(Clone, Debug)]
struct Owned {
    to: SocketAddr,
    socket: usize,
    ecn: Ecn,
    bytes: Vec<u8>,
}

impl AsMut<[u8]> for Owned {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
}

/// Received datagram copy for the receive fault injector.
#[derive(Clone, Debug)]
struct RxOwned {
    from: SocketAddr,
    ecn: Ecn,
    bytes: Vec<u8>,
}

impl AsMut<[u8]> for RxOwned {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
}

/// Loss-only impairment decided inline, without copying the datagram (the common benchmark
/// case); anything richer goes through a [`FaultInjector`].
#[derive(Debug)]
enum Impair<P> {
    None,
    Drop {
        p: f64,
        rng: Rng,
        seen: u64,
        dropped: u64,
    },
    Full(Box<FaultInjector<P>>),
}

impl<P: Clone + AsMut<[u8]>> Impair<P> {
    fn new(cfg: FaultConfig) -> Self {
        if cfg.is_noop() {
            Impair::None
        } else if cfg.is_drop_only() {
            Impair::Drop {
                p: cfg.drop,
                rng: Rng::new(cfg.seed ^ 0xD809),
                seen: 0,
                dropped: 0,
            }
        } else {
            Impair::Full(Box::new(FaultInjector::new(cfg)))
        }
    }

    fn stats(&self) -> FaultStats {
        match self {
            Impair::None => FaultStats::default(),
            Impair::Drop { seen, dropped, .. } => FaultStats {
                seen: *seen,
                dropped: *dropped,
                ..FaultStats::default()
            },
            Impair::Full(f) => f.stats(),
        }
    }

    fn next_release(&self) -> Option<Instant> {
        match self {
            Impair::Full(f) => f.next_release(),
            _ => None,
        }
    }
}

/// The I/O side of the engine: sockets, impairments and transmit staging. It lives with the
/// endpoint behind the engine lock, so whichever thread holds the lock (the engine thread, or
/// an application thread waiting for a completion) can run an iteration.
#[derive(Debug)]
struct Datapath {
    sockets: UdpSockets,
    rx_fault: Impair<RxOwned>,
    tx_fault: Impair<Owned>,
    /// Datagrams the socket refused for now (EAGAIN), resent first.
    backlog: VecDeque<Owned>,
    tx_burst: usize,
    icrc: bool,
    icrc_errors: u64,
    headers: Vec<[u8; MAX_HEADER_LEN]>,
    /// This host as an INT hop (`HostConfig::host_int`).
    int: Option<HostHop>,
    /// `HostConfig::rx_ecn_fraction`.
    rx_ecn_fraction: f64,
    /// The last receive round came back full: the queue is read before the next.
    rx_backlogged: bool,
    /// Datagrams marked CE for the receive queue (`HostStats::rx_ecn_marked`).
    rx_ecn_marked: u64,
}

/// The receiving host as an INT hop: one record per datagram describing its receive queue.
#[derive(Debug)]
struct HostHop {
    /// Line rate in Mb/s.
    rate_mbps: u32,
    /// Wire bytes received so far (the hop's transmit counter).
    rx_bytes: u64,
    /// Receive-queue bytes when the current receive round started (read once per round).
    qlen: u64,
}

impl HostHop {
    fn new(line_rate: weir_base::Rate) -> Self {
        HostHop {
            rate_mbps: (line_rate.bps() / 1_000_000).clamp(1, u64::from(u32::MAX)) as u32,
            rx_bytes: 0,
            qlen: 0,
        }
    }

    /// The record for a datagram of `len` bytes arriving at `now`.
    fn record(&mut self, len: usize, now: Instant) -> weir_wire::IntHop {
        // Wire bytes: payload + UDP/IPv4/Ethernet headers.
        self.rx_bytes = self.rx_bytes.wrapping_add(len as u64 + 42);
        weir_wire::IntHop {
            qlen: self.qlen.min(u64::from(u32::MAX)) as u32,
            rate_mbps: self.rate_mbps,
            tx_bytes: self.rx_bytes,
            ts_ns: now.as_nanos(),
        }
    }
}

impl Datapath {
    fn new(sockets: UdpSockets, cfg: &HostConfig, seed: u64) -> Self {
        let mut rx = cfg.fault_rx;
        let mut tx = cfg.fault_tx;
        if rx.seed == 0 {
            rx.seed = seed ^ 0x5258;
        }
        if tx.seed == 0 {
            tx.seed = seed ^ 0x5458;
        }
        let tx_burst = cfg.tx_burst.clamp(1, 1024);
        Datapath {
            sockets,
            rx_fault: Impair::new(rx),
            tx_fault: Impair::new(tx),
            backlog: VecDeque::new(),
            tx_burst,
            icrc: cfg.icrc,
            icrc_errors: 0,
            headers: vec![[0u8; MAX_HEADER_LEN]; tx_burst],
            int: cfg.host_int.then(|| HostHop::new(cfg.transport.line_rate)),
            rx_ecn_fraction: if cfg.rx_ecn_fraction.is_finite() {
                cfg.rx_ecn_fraction.max(0.0)
            } else {
                0.0
            },
            rx_backlogged: false,
            rx_ecn_marked: 0,
        }
    }
}

/// Validate `cfg`, bind its sockets, size the receive budget from the buffer the kernel
/// granted, and build the endpoint and the datapath (shared by [`Host`] and [`Nic`]). Returns
/// the configuration as adjusted.
fn open(mut cfg: HostConfig) -> Result<(Endpoint, Datapath, HostConfig), HostError> {
    cfg.transport.validate()?;
    cfg.fault_rx
        .validate()
        .map_err(|e| HostError::Fault(e.to_string()))?;
    cfg.fault_tx
        .validate()
        .map_err(|e| HostError::Fault(e.to_string()))?;
    cfg.udp.sockets = cfg.udp.sockets.max(cfg.transport.paths as usize).max(1);
    cfg.udp.consecutive_ports |= cfg.rx_spread;
    cfg.host_int |= cfg.transport.request_int || cfg.transport.cc.needs_int();
    let sockets = UdpSockets::bind(&cfg.udp)?;
    // Peers spread their packets over every socket when they are at consecutive ports.
    if cfg.rx_spread {
        cfg.transport.rx_ports = sockets.rx_ports();
    }
    if cfg.rx_flow_control
        && cfg.transport.rx_budget_packets == 0
        && let Some((_, limit)) = sockets.rx_occupancy()
    {
        // Spraying fills the sockets unevenly (bursts of `spray_burst` packets share a
        // path): count the extra sockets at half their buffer.
        let per_socket = rx_budget(limit, cfg.transport.max_payload);
        let ports = u32::from(cfg.transport.rx_ports.max(1));
        cfg.transport.rx_budget_packets = per_socket.saturating_mul(ports + 1) / 2;
    }
    let local = sockets.local_addr();
    let seed = cfg.seed.unwrap_or_else(os_seed);
    let ep = Endpoint::new(cfg.transport, local, seed)?;
    let dp = Datapath::new(sockets, &cfg, seed);
    Ok((ep, dp, cfg))
}

/// The I/O side of an engine — sockets, impairments, transmit staging — for a loop that owns
/// its endpoint outright (the firmware engine's placements), where [`Host`] shares it with
/// application threads. One [`Nic::iterate`] is the same run-to-completion round the host's
/// engine thread runs: a receive round, timers, a transmit pass, the endpoint's events.
#[derive(Debug)]
pub struct Nic {
    dp: Datapath,
    stats: HostStats,
}

impl Nic {
    /// Bind the sockets `cfg` describes and build the endpoint they serve.
    pub fn open(cfg: HostConfig) -> Result<(Nic, Endpoint), HostError> {
        let (ep, dp, _) = open(cfg)?;
        Ok((
            Nic {
                dp,
                stats: HostStats::default(),
            },
            ep,
        ))
    }

    /// One round: receive, fire due timers, transmit; the endpoint's events are appended to
    /// `events`. Returns whether anything happened.
    pub fn iterate(&mut self, ep: &mut Endpoint, now: Instant, events: &mut Vec<Event>) -> bool {
        self.dp.iterate(ep, &mut self.stats, now, events)
    }

    /// When the next round is due without new input: the endpoint's next timer or an
    /// impairment's next release.
    pub fn next_deadline(&self, ep: &Endpoint) -> Option<Instant> {
        self.dp.next_deadline(ep)
    }

    /// Datagrams the socket refused for now wait to be resent: run another round soon.
    pub fn has_backlog(&self) -> bool {
        self.dp.has_backlog()
    }

    /// Wait up to `timeout` (`None`: for ever; zero: just look) until a socket or `wake`
    /// (an eventfd, say) is readable. True when something is.
    pub fn wait(&mut self, wake: Option<RawFd>, timeout: Option<std::time::Duration>) -> bool {
        // The sockets' own wait: a pollfd array on the stack, and it marks readable extra
        // sockets itself. An error (not a signal) reads as "something happened".
        self.dp.sockets.wait(timeout, wake).unwrap_or(true)
    }

    /// Counters of every layer (the endpoint's from `ep`).
    pub fn stats(&self, ep: &Endpoint) -> HostStats {
        Datapath::stats(self.stats, ep)
    }
}

/// The engine thread: runs iterations whenever something is due, busy-polls for `spin` after
/// doing work, then sleeps in `poll(2)` until a datagram, a wakeup or the next timer. (It
/// waits for the engine lock rather than skipping a round when another thread holds it:
/// measured, skipping with `try_lock` and yielding halved 1 MiB goodput under SCHED_FIFO.)
fn engine_thread(shared: Arc<Shared>, fds: Vec<RawFd>, spin: std::time::Duration) {
    let mut last_work = std::time::Instant::now();
    let mut events = Vec::new();
    let mut next: Option<Instant> = None;
    // Whether the engine must run this round: something arrived, the application posted, a
    // timer is due, or the last round did work (it may have more).
    let mut due = true;
    loop {
        let shutting_down = shared.shutdown.load(Ordering::Acquire);
        let now = shared.clock.now();
        due |= shared.pending.swap(false, Ordering::SeqCst)
            || shutting_down
            || next.is_some_and(|t| t <= now);
        let mut worked = false;
        if due {
            // The engine lock is taken only when there is something to do, so an idle spin
            // never competes with application threads for it; an application thread waiting
            // for it goes first.
            for _ in 0..64 {
                if shared.app_waiting.load(Ordering::SeqCst) == 0 {
                    break;
                }
                std::thread::yield_now();
            }
            let mut g = lock(&shared.engine);
            if shutting_down {
                close_all(&mut g.ep, now);
            }
            if shared.extras_readable.swap(false, Ordering::Relaxed) {
                g.dp.sockets.mark_extras_ready();
            }
            worked = g.iterate(now, &mut events);
            next = g.next_deadline();
            due = worked || g.dp.has_backlog();
            drop(g);
            if !events.is_empty() {
                let refused = publish(&shared, &mut events);
                close_refused(&shared, now, refused);
                // Completions wake application threads, which may share this core; a busy
                // engine thread under SCHED_FIFO would otherwise keep them off it until the
                // stream pauses.
                std::thread::yield_now();
            }
        }
        if shutting_down {
            break;
        }
        let wall = std::time::Instant::now();
        if worked {
            last_work = wall;
            continue;
        }
        if wall.duration_since(last_work) < spin {
            // Busy-poll: a zero-timeout poll(2) tells whether a datagram is waiting.
            due |= poll_fds(
                &fds,
                None,
                Some(std::time::Duration::ZERO),
                &shared.extras_readable,
            );
            if !due {
                // Let another runnable thread on this core (the application, a peer process)
                // go first: on a 2-core machine spinning threads outnumber cores.
                std::thread::yield_now();
            }
            continue;
        }
        // Connections nobody accepted in time go before the engine sleeps (also whenever
        // events are published), so they are reclaimed on an otherwise quiet host too.
        reclaim_unaccepted(&shared);
        // Sleep until a datagram, a wakeup, or the next timer.
        shared.sleeping.store(true, Ordering::SeqCst);
        if !shared.pending.load(Ordering::SeqCst) && !shared.shutdown.load(Ordering::Acquire) {
            let timeout = next
                .map(|t| to_std(t.saturating_since(shared.clock.now())))
                .unwrap_or(std::time::Duration::from_millis(100))
                .min(std::time::Duration::from_millis(100));
            poll_fds(
                &fds,
                Some(shared.wake_fd),
                Some(timeout),
                &shared.extras_readable,
            );
            shared.drain_wakeups();
        }
        shared.sleeping.store(false, Ordering::SeqCst);
        due = true;
    }
    shared.stopped.store(true, Ordering::Release);
    shared.cv.notify_all();
}

/// `poll(2)` for readability on `fds` (and `extra`); true when any is readable (or on error,
/// so the caller looks). An extra socket (index ≥ 1) found readable sets `extras`, so the
/// next receive reads it at once.
fn poll_fds(
    fds: &[RawFd],
    extra: Option<RawFd>,
    timeout: Option<std::time::Duration>,
    extras: &AtomicBool,
) -> bool {
    // On the stack: the engine thread polls on every idle round.
    let mut all = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; crate::udp::MAX_SOCKETS + 1];
    let mut n = 0;
    for &fd in fds.iter().chain(extra.iter()).take(all.len()) {
        all[n] = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        n += 1;
    }
    let pfds = &mut all[..n];
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `pfds` is a valid array of `pfds.len()` pollfd structs and `ts_ptr` null or a
    // valid timespec, both for the whole call; a null signal mask leaves it unchanged.
    let r = unsafe {
        libc::ppoll(
            pfds.as_mut_ptr(),
            pfds.len() as libc::nfds_t,
            ts_ptr,
            std::ptr::null(),
        )
    };
    if r > 0 && pfds.iter().take(fds.len()).skip(1).any(|p| p.revents != 0) {
        extras.store(true, Ordering::Relaxed);
    }
    r != 0
}

impl Engine {
    /// One iteration of the run-to-completion loop (see [`Datapath::iterate`]).
    fn iterate(&mut self, now: Instant, events: &mut Vec<Event>) -> bool {
        let Engine { ep, stats, dp, .. } = self;
        dp.iterate(ep, stats, now, events)
    }

    /// The earliest engine timer or impairment release.
    fn next_deadline(&self) -> Option<Instant> {
        self.dp.next_deadline(&self.ep)
    }
}

impl Datapath {
    /// When the next round is due without new input: `ep`'s next timer or an impairment's
    /// next release.
    fn next_deadline(&self, ep: &Endpoint) -> Option<Instant> {
        [
            ep.poll_timeout(),
            self.rx_fault.next_release(),
            self.tx_fault.next_release(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// `stats` with `ep`'s counters filled in.
    fn stats(stats: HostStats, ep: &Endpoint) -> HostStats {
        let mut s = stats;
        s.endpoint = *ep.stats();
        s.connections = ep.connections() as u64;
        s
    }

    fn has_backlog(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// One run-to-completion iteration: a receive round, timers, a transmit pass. Returns
    /// whether anything happened.
    ///
    /// A long receive burst is taken in rounds of a few `recvmmsg` messages with a transmit
    /// pass after each, so acknowledgements go out while data keeps arriving instead of one
    /// ACK per burst (which would open the sender's window in large steps); the engine lock is
    /// released between rounds so application threads can post.
    fn iterate(
        &mut self,
        ep: &mut Endpoint,
        stats: &mut HostStats,
        now: Instant,
        events: &mut Vec<Event>,
    ) -> bool {
        let mut worked = self.receive(ep, now);
        if ep.poll_timeout().is_some_and(|t| t <= now) {
            ep.handle_timeout(now);
            worked = true;
        }
        worked |= self.transmit(ep, stats, now);
        while let Some(e) = ep.poll_event() {
            events.push(e);
        }
        stats.udp = self.sockets.stats();
        stats.fault_rx = self.rx_fault.stats();
        stats.fault_tx = self.tx_fault.stats();
        stats.rx_icrc_errors = self.icrc_errors;
        stats.rx_ecn_marked = self.rx_ecn_marked;
        worked
    }

    /// One receive round. Returns whether any datagram reached the engine or the injector.
    fn receive(&mut self, ep: &mut Endpoint, now: Instant) -> bool {
        let mut worked = false;
        let rx_fault = &mut self.rx_fault;
        let icrc_errors = &mut self.icrc_errors;
        // One queue reading per round: the backlog the round starts from.
        if let Some(h) = &mut self.int {
            h.qlen = self.sockets.rx_queued();
        }
        let mark = self.rx_backlogged
            && self.rx_ecn_fraction > 0.0
            && self
                .sockets
                .rx_occupancy()
                .is_some_and(|(q, limit)| q as f64 > limit as f64 * self.rx_ecn_fraction);
        let int = &mut self.int;
        let marked = &mut self.rx_ecn_marked;
        let received = self
            .sockets
            .recv_some(RX_MSGS_PER_ROUND, &mut |d| {
                let int_hop = int.as_mut().map(|h| h.record(d.data.len(), now));
                let ecn = if mark && d.ecn != Ecn::NotEct {
                    *marked += 1;
                    Ecn::Ce
                } else {
                    d.ecn
                };
                let meta = RxMeta {
                    from: d.from,
                    ecn,
                    virtual_payload: false,
                    int_hop,
                };
                // Faults apply to the datagram as received (trailer included); the trailer is
                // checked after them, as a NIC checks its CRC.
                let checked = || weir_wire::icrc::verify(d.data).ok();
                match rx_fault {
                    Impair::None => match checked() {
                        Some(b) => ep.handle(now, meta, b),
                        None => *icrc_errors += 1,
                    },
                    Impair::Drop {
                        p,
                        rng,
                        seen,
                        dropped,
                    } => {
                        *seen += 1;
                        if rng.chance(*p) {
                            *dropped += 1;
                        } else {
                            match checked() {
                                Some(b) => ep.handle(now, meta, b),
                                None => *icrc_errors += 1,
                            }
                        }
                    }
                    Impair::Full(f) => f.push(
                        now,
                        RxOwned {
                            from: d.from,
                            ecn: d.ecn,
                            bytes: d.data.to_vec(),
                        },
                    ),
                }
            })
            .unwrap_or(0);
        self.rx_backlogged = received >= RX_MSGS_PER_ROUND;
        worked |= received > 0;
        if let Impair::Full(f) = &mut self.rx_fault {
            while let Some(p) = f.pop_ready(now) {
                let ecn = if p.ecn_ce { Ecn::Ce } else { p.packet.ecn };
                worked = true;
                let Ok(body) = weir_wire::icrc::verify(&p.packet.bytes) else {
                    self.icrc_errors += 1;
                    continue;
                };
                let int_hop = self
                    .int
                    .as_mut()
                    .map(|h| h.record(p.packet.bytes.len(), now));
                let meta = RxMeta {
                    from: p.packet.from,
                    ecn,
                    virtual_payload: false,
                    int_hop,
                };
                ep.handle(now, meta, body);
            }
        }
        worked
    }

    fn transmit(&mut self, ep: &mut Endpoint, stats: &mut HostStats, now: Instant) -> bool {
        let mut worked = false;
        // Earlier refusals first, in order.
        while let Some(o) = self.backlog.front() {
            let d = TxDatagram {
                to: o.to,
                socket: o.socket,
                ecn: o.ecn,
                header: &o.bytes,
                payload: &[],
            };
            match self.sockets.send_batch(&[d]) {
                Ok(1) => {
                    self.backlog.pop_front();
                    worked = true;
                }
                _ => return worked,
            }
        }
        if let Impair::Full(f) = &mut self.tx_fault {
            let mut ready = Vec::new();
            while let Some(p) = f.pop_ready(now) {
                let mut o = p.packet;
                if p.ecn_ce {
                    o.ecn = Ecn::Ce;
                }
                ready.push(o);
            }
            for o in ready {
                self.send_owned(o);
                worked = true;
            }
        }
        loop {
            // Gather a burst: headers in our arena, payloads as raw slices of registered
            // memory (valid while we hold the engine lock: deregistration needs it too).
            let mut metas = Vec::with_capacity(self.tx_burst);
            let mut n = 0;
            while n < self.tx_burst {
                let Some(t) = ep.poll_transmit(now, &mut self.headers[n]) else {
                    break;
                };
                let payload: (*const u8, usize) = match t.payload {
                    Payload::None => (std::ptr::null(), 0),
                    Payload::Region { .. } => match ep.payload(&t.payload) {
                        Some(p) => (p.as_ptr(), p.len()),
                        None => {
                            stats.tx_payload_missing += 1;
                            continue;
                        }
                    },
                    // Virtual payloads never reach a real datapath; send the header only.
                    Payload::Virtual(_) => (std::ptr::null(), 0),
                };
                metas.push((t, payload, n));
                n += 1;
            }
            if metas.is_empty() {
                return worked;
            }
            worked = true;
            let sockets = self.sockets.socket_count().max(1);
            let batch: Vec<TxDatagram<'_>> = metas
                .iter()
                .map(|(t, (ptr, len), slot)| TxDatagram {
                    to: t.meta.to,
                    socket: t.meta.entropy as usize % sockets,
                    ecn: t.meta.ecn,
                    header: &self.headers[*slot][..t.header_len],
                    payload: if *len == 0 {
                        &[]
                    } else {
                        // SAFETY: the slice came from `ep.payload` (bounds-checked against a
                        // registered region) during this same engine-lock hold; registered
                        // memory stays valid until deregistration, which needs the lock.
                        unsafe { std::slice::from_raw_parts(*ptr, *len) }
                    },
                })
                .collect();
            // With the ICRC on, each datagram becomes one owned buffer with its trailer.
            let owned: Vec<Owned>;
            let batch = if self.icrc {
                owned = batch.iter().map(own_with_icrc).collect();
                owned
                    .iter()
                    .map(|o| TxDatagram {
                        to: o.to,
                        socket: o.socket,
                        ecn: o.ecn,
                        header: &o.bytes,
                        payload: &[],
                    })
                    .collect()
            } else {
                batch
            };
            let sent = match &mut self.tx_fault {
                Impair::None => self.sockets.send_batch(&batch).unwrap_or(0),
                Impair::Drop {
                    p,
                    rng,
                    seen,
                    dropped,
                } => {
                    let keep: Vec<TxDatagram<'_>> = batch
                        .iter()
                        .filter(|_| {
                            *seen += 1;
                            let d = rng.chance(*p);
                            *dropped += d as u64;
                            !d
                        })
                        .copied()
                        .collect();
                    let s = self.sockets.send_batch(&keep).unwrap_or(0);
                    for d in &keep[s..] {
                        self.backlog.push_back(own(d));
                    }
                    batch.len()
                }
                Impair::Full(f) => {
                    for d in &batch {
                        f.push(now, own(d));
                    }
                    batch.len()
                }
            };
            for d in &batch[sent.min(batch.len())..] {
                self.backlog.push_back(own(d));
            }
            if !self.backlog.is_empty() || metas.len() < self.tx_burst {
                return worked;
            }
        }
    }

    fn send_owned(&mut self, o: Owned) {
        let d = TxDatagram {
            to: o.to,
            socket: o.socket,
            ecn: o.ecn,
            header: &o.bytes,
            payload: &[],
        };
        if !matches!(self.sockets.send_batch(&[d]), Ok(1)) {
            self.backlog.push_back(o);
        }
    }
}

fn own(d: &TxDatagram<'_>) -> Owned {
    let mut bytes = Vec::with_capacity(d.header.len() + d.payload.len());
    bytes.extend_from_slice(d.header);
    bytes.extend_from_slice(d.payload);
    Owned {
        to: d.to,
        socket: d.socket,
        ecn: d.ecn,
        bytes,
    }
}

fn own_with_icrc(d: &TxDatagram<'_>) -> Owned {
    let mut o = own(d);
    if weir_wire::icrc::mark(&mut o.bytes).is_ok() {
        let crc = weir_wire::icrc::compute(&[&o.bytes]);
        o.bytes.extend_from_slice(&crc);
    }
    o
}

fn close_all(ep: &mut Endpoint, now: Instant) {
    ep.close_all(now);
}

/// Packets a receive buffer of `limit` bytes (the kernel's figure, which counts each
/// datagram's buffer overhead) holds for sure, less an eighth for probes, control packets and
/// stragglers: half the limit in datagrams of `max_payload` plus headers is what it holds
/// (measured on loopback: a 512 KiB limit holds exactly 31 datagrams of 8,320 bytes, each
/// costing 16.9 KB).
fn rx_budget(limit: u64, max_payload: u32) -> u32 {
    let per = u64::from(max_payload) + 128;
    let fits = limit / 2 / per;
    u32::try_from(fits - fits / 8).unwrap_or(u32::MAX).max(1)
}

/// Close the connections `publish` refused (the engine lock is not held there).
fn close_refused(shared: &Shared, now: Instant, refused: Vec<ConnId>) {
    if refused.is_empty() {
        return;
    }
    let mut g = lock(&shared.engine);
    for c in refused {
        g.ep.reject(now, c);
    }
    drop(g);
    // The CLOSEs are queued: have the engine send them.
    shared.wake();
}

/// Hand the engine's events to the application side. Returns the accepted connections to
/// refuse: over `HostConfig::max_unaccepted` (or its per-source share), or waiting past
/// `unaccepted_ttl`.
fn publish(shared: &Shared, events: &mut Vec<Event>) -> Vec<ConnId> {
    let now = shared.clock.now();
    let (max, per_source, _) = shared.unaccepted;
    let mut refused = Vec::new();
    let mut s = lock(&shared.state);
    expire_unaccepted(shared, &mut s, now, &mut refused);
    for e in events.drain(..) {
        match e {
            Event::Completion(c) => s.completions.push_back(c),
            Event::Accepted {
                conn,
                peer,
                user_data,
            } => {
                let full = s.accepted.len() >= max
                    || s.accepted.iter().filter(|a| a.1.ip() == peer.ip()).count() >= per_source;
                if full {
                    s.unaccepted_refused += 1;
                    refused.push(conn);
                } else {
                    s.accepted.push_back((conn, peer, user_data, now));
                }
            }
            Event::Connected { conn } => {
                s.connected.insert(conn);
            }
            Event::ConnectionLost { conn, peer, reason } => {
                s.lost.insert(conn, (peer, reason));
            }
            Event::Closed { conn } => {
                s.connected.remove(&conn);
            }
        }
    }
    drop(s);
    shared.published.fetch_add(1, Ordering::Release);
    shared.cv.notify_all();
    refused
}

/// Close the connections nobody accepted within `HostConfig::unaccepted_ttl`.
fn reclaim_unaccepted(shared: &Shared) {
    let now = shared.clock.now();
    let mut refused = Vec::new();
    {
        let mut s = lock(&shared.state);
        expire_unaccepted(shared, &mut s, now, &mut refused);
    }
    close_refused(shared, now, refused);
}

/// Move the connections nobody accepted within `HostConfig::unaccepted_ttl` to `refused`.
fn expire_unaccepted(shared: &Shared, s: &mut HostState, now: Instant, refused: &mut Vec<ConnId>) {
    let ttl = shared.unaccepted.2;
    while let Some(&(conn, _, _, at)) = s.accepted.front() {
        if now.saturating_since(at) < ttl {
            break;
        }
        s.accepted.pop_front();
        s.unaccepted_expired += 1;
        refused.push(conn);
    }
}
