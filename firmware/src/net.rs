//! One transport for every user, whichever placement runs its engine: [`Net`] offers the
//! calls the NCCL plugin, the communicator and the benches make (listen with a secret,
//! connect, accept by key, register memory by pointer, post, poll completions, close) and
//! serves them from
//!
//! * `host`: a `weir_datapath::Host`, the engine thread inside the process as it has always
//!   been;
//! * `inproc`: a firmware engine thread of the process, reached only through rings;
//! * `daemon`: a `weir engine` daemon, reached through rings in shared memory, the
//!   process's memory reached by copy (`daemon` module docs).
//!
//! `WEIR_ENGINE` picks one ([`Placement::from_env`]): `host` (the default), `inproc`,
//! `daemon` (at [`crate::daemon::default_socket`]) or `daemon:<socket path>`.
//!
//! Through the rings, connections are named by this module's own ids, not the engine's
//! handles: a connect returns its id at once (as `Host::connect_nonblocking` does) and the
//! engine's handle arrives with the handshake. Completions are sorted as they are read:
//! request completions wait for `poll_completion`, accepted connections for `accept`,
//! lost and closed ones mark their id, synchronous calls take their own.
// An I/O shell around the rings, like `inproc`: blocking waits use the OS clock.
#![allow(clippy::disallowed_methods)]

use std::boxed::Box;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::ptr::NonNull;
use std::string::{String, ToString};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use std::vec::Vec;
use std::{format, vec};

use serde::{Deserialize, Serialize};
use weir_datapath::host::{Host, HostConfig, HostError};
use weir_datapath::{Buffer, HostStats};
use weir_transport::{
    Completion, CompletionKind, ConnError, ConnId, ConnStats, PathStats, PostError, RegionId,
    WorkRequest, WrError, WrId,
};

use crate::desc::{Cqe, CqeKind, Op, Status};
use crate::engine::EngineConfig;
use crate::inproc::{Client, EngineError, EngineThread, Memory};

/// Where a process's engine runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// `weir_datapath::Host`: an engine thread of the process, called directly.
    #[default]
    Host,
    /// A firmware engine thread of the process, reached through rings.
    Inproc,
    /// A `weir engine` daemon at this socket, reached through rings in shared memory.
    Daemon(PathBuf),
}

impl Placement {
    /// Its name in tables and JSON (`host`, `inproc`, `daemon`).
    pub fn name(&self) -> &'static str {
        match self {
            Placement::Host => "host",
            Placement::Inproc => "inproc",
            Placement::Daemon(_) => "daemon",
        }
    }

    /// What [`Placement::parse`] reads back: `host`, `inproc`, `daemon:<path>`.
    pub fn spec(&self) -> String {
        match self {
            Placement::Daemon(p) => format!("daemon:{}", p.display()),
            other => other.name().to_string(),
        }
    }

    /// `host`, `inproc`, `daemon` (the default socket) or `daemon:<path>`.
    pub fn parse(s: &str) -> Result<Placement, String> {
        match s.trim() {
            "" | "host" => Ok(Placement::Host),
            "inproc" => Ok(Placement::Inproc),
            "daemon" => Ok(Placement::Daemon(crate::daemon::default_socket())),
            other => match other.strip_prefix("daemon:") {
                Some(p) if !p.is_empty() => Ok(Placement::Daemon(PathBuf::from(p))),
                _ => Err(format!(
                    "unknown engine placement {other:?}: host, inproc, daemon or daemon:<socket>"
                )),
            },
        }
    }

    /// `WEIR_ENGINE` ([`Placement::parse`]); `host` when unset.
    pub fn from_env() -> Result<Placement, String> {
        match std::env::var("WEIR_ENGINE") {
            Ok(v) => Placement::parse(&v).map_err(|e| format!("WEIR_ENGINE: {e}")),
            Err(_) => Ok(Placement::Host),
        }
    }
}

/// Memory from [`Net::alloc`]: the host's buffer or the engine client's segment.
#[derive(Debug)]
pub enum Mem {
    /// From `Host::alloc`.
    Host(Buffer),
    /// A segment of the engine client.
    Engine(Arc<Memory>),
}

impl Mem {
    /// Fill every byte with `v`.
    pub fn fill(&self, v: u8) {
        match self {
            Mem::Host(b) => b.fill(v),
            Mem::Engine(m) => m.write(0, &vec![v; m.len()]),
        }
    }
}

/// A process's transport, whichever placement serves it (module docs). Shared between
/// threads: calls through the rings take a lock for as long as they touch the rings.
#[derive(Debug)]
pub struct Net {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Host(Host),
    /// Boxed: several times the size of a `Host` handle.
    Engine(Box<EngineNet>),
}

/// What a connection id stands for, through the rings.
#[derive(Debug)]
struct ConnEntry {
    /// The engine's handle, once the handshake completed (or at once, accepted).
    handle: Option<u32>,
    peer: SocketAddr,
    /// Why it failed or closed, once it has.
    lost: Option<ConnError>,
    /// Requests posted while the handshake runs, with the cookies they were given: submitted
    /// in order once it completes, failed if it does not (as a `Host` queues them).
    queued: Vec<(u64, WorkRequest)>,
}

#[derive(Debug)]
struct State {
    client: Client,
    next_id: u32,
    conns: HashMap<u32, ConnEntry>,
    /// Engine handle → id.
    by_handle: HashMap<u32, u32>,
    /// Cookie of a connect in progress → id (the id may have been closed meanwhile).
    connecting: HashMap<u64, u32>,
    /// Request completions, conn translated to ids, in arrival order.
    done: VecDeque<Completion>,
    /// Accepted connections not yet taken: (id, peer, connector's user data).
    accepted: VecDeque<(u32, SocketAddr, u64)>,
    /// Completions a synchronous call waits for.
    control: VecDeque<Cqe>,
    /// Cookies of submissions nobody waits for (close, unlisten): their completions drop.
    ignored: HashSet<u64>,
    /// The segment for memory registered by address ([`Client::process_segment`]).
    process_segment: Option<u32>,
}

#[derive(Debug)]
struct EngineNet {
    /// Declared before `_engine`, so the client detaches before its engine thread stops.
    state: Mutex<State>,
    _engine: Option<EngineThread>,
    local: SocketAddr,
}

fn engine_err(e: EngineError) -> HostError {
    match e {
        EngineError::Timeout(after) => HostError::Timeout {
            what: "a completion",
            after,
        },
        EngineError::Stopped(at) => HostError::Io(std::io::Error::other(format!(
            "the engine at {at} has stopped"
        ))),
        other => HostError::Io(std::io::Error::other(other.to_string())),
    }
}

/// Most requests one connection holds while its handshake runs (beyond: `QueueFull`).
const MAX_QUEUED_POSTS: usize = 1024;

/// The completion of request `user` on connection `id` that never reached the engine.
fn failed(id: u32, user: u64, wr: &WorkRequest, why: WrError) -> Completion {
    let (kind, tag) = match *wr {
        WorkRequest::Send { tag, .. } => (CompletionKind::Send, tag),
        WorkRequest::Recv { tag, .. } => (CompletionKind::Recv, tag.unwrap_or(0)),
        WorkRequest::Write { .. } => (CompletionKind::Write, 0),
    };
    Completion {
        conn: ConnId(id),
        wr: WrId(user),
        kind,
        len: 0,
        tag,
        status: Err(why),
    }
}

fn unspecified() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

/// How long one blocking wait holds the lock before letting other threads in.
const WAIT_SLICE: Duration = Duration::from_millis(2);
/// How long synchronous calls (register, listen, statistics) wait for their completion.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

impl Net {
    /// Start the transport for `placement`. `cfg` configures a `host` or `inproc` engine; a
    /// daemon runs with its own configuration (its command line).
    pub fn start(placement: &Placement, cfg: HostConfig) -> Result<Net, HostError> {
        let (client, engine) = match placement {
            Placement::Host => {
                return Ok(Net {
                    inner: Inner::Host(Host::start(cfg)?),
                });
            }
            Placement::Inproc => {
                let e = EngineThread::start(cfg, EngineConfig::default()).map_err(engine_err)?;
                (e.client().map_err(engine_err)?, Some(e))
            }
            Placement::Daemon(path) => (
                crate::daemon::connect(path, 1024).map_err(|e| {
                    HostError::Io(std::io::Error::other(format!(
                        "attaching to the engine daemon at {}: {e}",
                        path.display()
                    )))
                })?,
                None,
            ),
        };
        Ok(Net {
            inner: Inner::Engine(Box::new(EngineNet {
                local: client.engine_addr(),
                state: Mutex::new(State {
                    client,
                    next_id: 1,
                    conns: HashMap::new(),
                    by_handle: HashMap::new(),
                    connecting: HashMap::new(),
                    done: VecDeque::new(),
                    accepted: VecDeque::new(),
                    control: VecDeque::new(),
                    ignored: HashSet::new(),
                    process_segment: None,
                }),
                _engine: engine,
            })),
        })
    }

    /// The placement's name: `host`, `inproc` or `daemon`.
    pub fn placement(&self) -> &'static str {
        match &self.inner {
            Inner::Host(_) => "host",
            Inner::Engine(e) => match e._engine {
                Some(_) => "inproc",
                None => "daemon",
            },
        }
    }

    /// The address peers connect to.
    pub fn local_addr(&self) -> SocketAddr {
        match &self.inner {
            Inner::Host(h) => h.local_addr(),
            Inner::Engine(e) => e.local,
        }
    }

    /// Accept connections whose connector passes user data 0 (a `Host` accepts every
    /// connection once listening).
    pub fn listen(&self) -> Result<(), HostError> {
        match &self.inner {
            Inner::Host(h) => {
                h.listen();
                Ok(())
            }
            Inner::Engine(e) => e
                .call(Op::Listen {
                    key: 0,
                    secret: None,
                    span: 1,
                })
                .map(|_| ()),
        }
    }

    /// Take connections whose connector passes `key` (a `Host` takes every connection once
    /// listening; through the rings only `key`'s come to this process).
    pub fn listen_key(&self, key: u64) -> Result<(), HostError> {
        self.listen_keys(key, 1)
    }

    /// [`Net::listen_key`] for the `count` keys from `first` on, as one listen (an engine
    /// holds a bounded number per client, `EngineConfig::max_listen_keys`, a range counting
    /// once): a communicator whose rank `r` connects with `first + r`. Undone by
    /// [`Net::revoke`]`(first)`. `count` 0 listens on nothing.
    pub fn listen_keys(&self, first: u64, count: u32) -> Result<(), HostError> {
        if count == 0 {
            return Ok(());
        }
        match &self.inner {
            Inner::Host(h) => {
                h.listen();
                Ok(())
            }
            Inner::Engine(e) => e
                .call(Op::Listen {
                    key: first,
                    secret: None,
                    span: count,
                })
                .map(|_| ()),
        }
    }

    /// Take connections whose connector passes `key` and holds `secret`: SYNs without a
    /// MAC keyed with it are dropped before any state exists (`Endpoint::admit`). Take them
    /// with [`Net::try_accept_for`].
    pub fn admit(&self, key: u64, secret: u128) -> Result<(), HostError> {
        match &self.inner {
            Inner::Host(h) => {
                h.listen();
                h.admit(key, secret);
                Ok(())
            }
            Inner::Engine(e) => e
                .call(Op::Listen {
                    key,
                    secret: Some(secret),
                    span: 1,
                })
                .map(|_| ()),
        }
    }

    /// Stop taking `key`'s connections (or those of the range [`Net::listen_keys`] opened at
    /// `key`).
    pub fn revoke(&self, key: u64) {
        match &self.inner {
            Inner::Host(h) => h.revoke(key),
            Inner::Engine(e) => e.fire(Op::Unlisten { key }),
        }
    }

    /// Start connecting; check with [`Net::is_connected`].
    pub fn connect_nonblocking(&self, remote: SocketAddr, user_data: u64) -> ConnId {
        match &self.inner {
            Inner::Host(h) => h.connect_nonblocking(remote, user_data),
            Inner::Engine(e) => e.connect(remote, user_data, None),
        }
    }

    /// [`Net::connect_nonblocking`] to a listener that admits `user_data` with `secret`.
    pub fn connect_authenticated(
        &self,
        remote: SocketAddr,
        user_data: u64,
        secret: u128,
    ) -> ConnId {
        match &self.inner {
            Inner::Host(h) => h.connect_authenticated(remote, user_data, secret),
            Inner::Engine(e) => e.connect(remote, user_data, Some(secret)),
        }
    }

    /// Connect and wait for the handshake.
    pub fn connect(
        &self,
        remote: SocketAddr,
        user_data: u64,
        timeout: Duration,
    ) -> Result<ConnId, HostError> {
        match &self.inner {
            Inner::Host(h) => h.connect(remote, user_data, timeout),
            Inner::Engine(e) => {
                let id = e.connect(remote, user_data, None);
                e.wait_for(timeout, "the connection handshake", || {
                    e.connected(id).map(|up| up.then_some(id)).transpose()
                })
            }
        }
    }

    /// Whether `conn` completed its handshake; an error once it failed or closed.
    pub fn is_connected(&self, conn: ConnId) -> Result<bool, HostError> {
        match &self.inner {
            Inner::Host(h) => h.is_connected(conn),
            Inner::Engine(e) => e.connected(conn),
        }
    }

    /// Wait for an incoming connection: (connection, peer, the peer's user data).
    pub fn accept(&self, timeout: Duration) -> Result<(ConnId, SocketAddr, u64), HostError> {
        match &self.inner {
            Inner::Host(h) => h.accept(timeout),
            Inner::Engine(e) => e.wait_for(timeout, "an incoming connection", || {
                self.try_accept().map(Ok)
            }),
        }
    }

    /// An incoming connection, if one is waiting.
    pub fn try_accept(&self) -> Option<(ConnId, SocketAddr, u64)> {
        match &self.inner {
            Inner::Host(h) => h.try_accept(),
            Inner::Engine(e) => {
                let mut s = e.lock();
                let _ = s.pump();
                s.accepted.pop_front().map(|(c, p, u)| (ConnId(c), p, u))
            }
        }
    }

    /// The first waiting incoming connection whose connector passed `key`.
    pub fn try_accept_for(&self, key: u64) -> Option<(ConnId, SocketAddr)> {
        match &self.inner {
            Inner::Host(h) => h.try_accept_for(key),
            Inner::Engine(e) => {
                let mut s = e.lock();
                let _ = s.pump();
                let i = s.accepted.iter().position(|a| a.2 == key)?;
                s.accepted.remove(i).map(|(c, p, _)| (ConnId(c), p))
            }
        }
    }

    /// Close every waiting incoming connection whose connector passed `key`.
    pub fn close_waiting(&self, key: u64) {
        match &self.inner {
            Inner::Host(h) => h.close_waiting(key),
            Inner::Engine(e) => {
                let gone: Vec<u32> = {
                    let mut s = e.lock();
                    let _ = s.pump();
                    let mut gone = Vec::new();
                    s.accepted.retain(|a| {
                        let keep = a.2 != key;
                        if !keep {
                            gone.push(a.0);
                        }
                        keep
                    });
                    gone
                };
                for c in gone {
                    self.close(ConnId(c));
                }
            }
        }
    }

    /// `len` bytes of registered memory.
    pub fn alloc(&self, len: usize, remote_write: bool) -> Result<(RegionId, Mem), HostError> {
        match &self.inner {
            Inner::Host(h) => h.alloc(len, remote_write).map(|(r, b)| (r, Mem::Host(b))),
            Inner::Engine(e) => {
                let (segment, mem) = e.lock().client.memory(len).map_err(engine_err)?;
                let c = e.call(Op::Register {
                    segment,
                    offset: 0,
                    len: len as u64,
                    remote_write,
                })?;
                Ok((RegionId(c.region), Mem::Engine(mem)))
            }
        }
    }

    /// Register `len` bytes the caller owns at `ptr`. Through a daemon the engine reaches
    /// them by copy, and `remote_write` is refused.
    ///
    /// # Safety
    /// The memory must stay valid (and not be freed or unmapped) until [`Net::deregister`]
    /// returns for it or the `Net` is dropped, and not be written while a send from it is
    /// outstanding nor touched while a receive into it is (`Host::register_raw`).
    pub unsafe fn register_raw(
        &self,
        ptr: NonNull<u8>,
        len: u64,
        remote_write: bool,
    ) -> Result<RegionId, HostError> {
        match &self.inner {
            // SAFETY: the caller's promise, passed on.
            Inner::Host(h) => Ok(unsafe { h.register_raw(ptr, len, remote_write) }),
            Inner::Engine(e) => {
                let segment = {
                    let mut s = e.lock();
                    match s.process_segment {
                        Some(seg) => seg,
                        None => {
                            // SAFETY: every registration in this segment comes through this
                            // function, whose caller makes the promise it needs.
                            let seg = unsafe { s.client.process_segment() }.map_err(engine_err)?;
                            s.process_segment = Some(seg);
                            seg
                        }
                    }
                };
                let c = e.call(Op::Register {
                    segment,
                    offset: ptr.as_ptr() as u64,
                    len,
                    remote_write,
                })?;
                Ok(RegionId(c.region))
            }
        }
    }

    /// Remove a registration; requests still using it fail. Through the rings this waits
    /// until the engine has let go of the memory. False when it was unknown.
    pub fn deregister(&self, id: RegionId) -> bool {
        match &self.inner {
            Inner::Host(h) => h.deregister(id),
            Inner::Engine(e) => e.call(Op::Deregister { region: id.0 }).is_ok(),
        }
    }

    /// Post a request. Through the rings a refused post completes with its error instead. On
    /// a connection whose handshake is still running the request waits, and goes once it
    /// completes (or completes with the connection's error), on every placement.
    pub fn post(&self, conn: ConnId, wr: WorkRequest) -> Result<WrId, HostError> {
        match &self.inner {
            Inner::Host(h) => h.post(conn, wr),
            Inner::Engine(e) => {
                let mut s = e.lock();
                // `entry` reads the ring first: a handshake that completed is seen as such.
                match s.entry(conn)? {
                    Some(Some(handle)) => {
                        let op = Op::from_request(handle, wr);
                        Ok(WrId(s.client.submit(op).map_err(engine_err)?))
                    }
                    Some(None) => {
                        if s.conns.get(&conn.0).map_or(0, |c| c.queued.len()) >= MAX_QUEUED_POSTS {
                            return Err(HostError::Post(PostError::QueueFull));
                        }
                        let user = s.client.reserve();
                        if let Some(entry) = s.conns.get_mut(&conn.0) {
                            entry.queued.push((user, wr));
                        }
                        Ok(WrId(user))
                    }
                    None => Err(HostError::Post(PostError::UnknownConnection)),
                }
            }
        }
    }

    /// A request completion, if one is ready.
    pub fn poll_completion(&self) -> Option<Completion> {
        match &self.inner {
            Inner::Host(h) => h.poll_completion(),
            Inner::Engine(e) => {
                let mut s = e.lock();
                if s.done.is_empty() {
                    let _ = s.pump();
                }
                s.done.pop_front()
            }
        }
    }

    /// Drive the engine on the caller's thread once (in-process `Host` placement: one engine
    /// iteration, unless its thread is running one, `Host::progress`); whether anything
    /// happened. The engine placements' engines run on their own; for them this does nothing.
    /// For a caller that is the only thread waiting on this engine and wants its completions
    /// without a hand-over (the communicator); a thread that polls in a tight loop beside the
    /// engine thread (NCCL's proxy calling `test()`) is better off only polling.
    pub fn progress(&self) -> bool {
        match &self.inner {
            Inner::Host(h) => h.progress(),
            Inner::Engine(_) => false,
        }
    }

    /// Wait for the next request completion.
    pub fn wait_completion(&self, timeout: Duration) -> Result<Completion, HostError> {
        match &self.inner {
            Inner::Host(h) => h.wait_completion(timeout),
            Inner::Engine(e) => {
                e.wait_for(timeout, "a completion", || self.poll_completion().map(Ok))
            }
        }
    }

    /// If `conn` has failed or closed: why.
    pub fn conn_error(&self, conn: ConnId) -> Option<HostError> {
        match &self.inner {
            Inner::Host(h) => h.conn_error(conn),
            Inner::Engine(e) => e.connected(conn).err(),
        }
    }

    /// Close a connection (its outstanding requests fail).
    pub fn close(&self, conn: ConnId) {
        match &self.inner {
            Inner::Host(h) => h.close(conn),
            Inner::Engine(e) => {
                let mut s = e.lock();
                let Some(mut entry) = s.conns.remove(&conn.0) else {
                    return;
                };
                let queued = core::mem::take(&mut entry.queued);
                s.fail_queued(conn.0, queued, WrError::Closed);
                // A connect still in progress is closed when its handshake completes.
                if let Some(h) = entry.handle {
                    s.by_handle.remove(&h);
                    s.fire(Op::Close { conn: h });
                }
            }
        }
    }

    /// The connection's transport statistics (through the rings: the counters a statistics
    /// descriptor carries — packets, retransmissions, timeouts, spurious retransmissions,
    /// longest repair).
    pub fn conn_stats(&self, conn: ConnId) -> Option<ConnStats> {
        match &self.inner {
            Inner::Host(h) => h.conn_stats(conn),
            Inner::Engine(e) => {
                let handle = e.lock().handle(conn).ok()?;
                let c = e.call(Op::Stats { conn: handle }).ok()?.counters()?;
                Some(c.conn_stats())
            }
        }
    }

    /// Per-path statistics (`None` through the rings).
    pub fn path_stats(&self, conn: ConnId) -> Option<Vec<PathStats>> {
        match &self.inner {
            Inner::Host(h) => h.path_stats(conn),
            Inner::Engine(_) => None,
        }
    }

    /// Datapath and endpoint counters: a `Host`'s, or the in-process engine thread's
    /// (`None` through a daemon, whose counters are its own: `weir engine` prints them).
    pub fn stats(&self) -> Option<HostStats> {
        match &self.inner {
            Inner::Host(h) => Some(h.stats()),
            Inner::Engine(e) => e._engine.as_ref()?.stats().ok().map(|(_, host, _)| host),
        }
    }

    /// Connections this process holds open through the rings (`None` on a `Host`, whose
    /// [`HostStats::connections`] says it).
    pub fn open_connections(&self) -> Option<usize> {
        match &self.inner {
            Inner::Host(_) => None,
            Inner::Engine(e) => Some(e.lock().conns.len()),
        }
    }
}

impl EngineNet {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Submit `op` and wait for its own completion, which must be `Ok`.
    fn call(&self, op: Op) -> Result<Cqe, HostError> {
        let user = self.lock().client.submit(op).map_err(engine_err)?;
        let end = Instant::now() + CALL_TIMEOUT;
        loop {
            {
                let mut s = self.lock();
                s.pump().map_err(engine_err)?;
                if let Some(i) = s.control.iter().position(|c| c.user == user) {
                    let c = s.control.remove(i).ok_or(HostError::Stopped)?;
                    return match c.status {
                        Status::Ok => Ok(c),
                        st => Err(HostError::Io(std::io::Error::other(format!(
                            "the engine refused {op:?}: {st}"
                        )))),
                    };
                }
            }
            if Instant::now() >= end {
                return Err(HostError::Timeout {
                    what: "the engine's answer",
                    after: CALL_TIMEOUT,
                });
            }
            self.wait_any(end)?;
        }
    }

    /// Submit `op`, not waiting for its completion.
    fn fire(&self, op: Op) {
        self.lock().fire(op);
    }

    fn connect(&self, remote: SocketAddr, user_data: u64, secret: Option<u128>) -> ConnId {
        let mut s = self.lock();
        let id = s.next_id;
        s.next_id = s.next_id.wrapping_add(1).max(1);
        let submitted = s.client.submit(Op::Connect {
            remote,
            user_data,
            secret,
        });
        let lost = match submitted {
            Ok(user) => {
                s.connecting.insert(user, id);
                None
            }
            Err(_) => Some(ConnError::Refused),
        };
        s.conns.insert(
            id,
            ConnEntry {
                handle: None,
                peer: remote,
                lost,
                queued: Vec::new(),
            },
        );
        ConnId(id)
    }

    fn connected(&self, conn: ConnId) -> Result<bool, HostError> {
        match self.lock().entry(conn)? {
            Some(handle) => Ok(handle.is_some()),
            None => Err(HostError::ConnectionLost {
                conn,
                peer: unspecified(),
                reason: ConnError::PeerClosed,
            }),
        }
    }

    /// Wait up to `timeout` until `ready` has an answer, reading completions meanwhile.
    fn wait_for<T>(
        &self,
        timeout: Duration,
        what: &'static str,
        mut ready: impl FnMut() -> Option<Result<T, HostError>>,
    ) -> Result<T, HostError> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(r) = ready() {
                return r;
            }
            if Instant::now() >= end {
                return Err(HostError::Timeout {
                    what,
                    after: timeout,
                });
            }
            self.wait_any(end)?;
        }
    }

    /// Wait (at most one slice, or until `end`) for the next completion and sort it.
    fn wait_any(&self, end: Instant) -> Result<(), HostError> {
        let slice = end
            .saturating_duration_since(Instant::now())
            .min(WAIT_SLICE);
        let mut s = self.lock();
        match s.client.wait(slice) {
            Ok(cqe) => {
                s.sort(cqe);
                Ok(())
            }
            Err(EngineError::Timeout(_)) => Ok(()),
            Err(e) => Err(engine_err(e)),
        }
    }
}

impl State {
    fn fire(&mut self, op: Op) {
        if let Ok(user) = self.client.submit(op) {
            self.ignored.insert(user);
        }
    }

    /// After reading the ring: `Some(engine handle)` of connection `conn` (`Some(None)`
    /// while its handshake runs), `None` for an id this process does not hold, an error
    /// naming the peer once it failed or closed.
    fn entry(&mut self, conn: ConnId) -> Result<Option<Option<u32>>, HostError> {
        let _ = self.pump();
        match self.conns.get(&conn.0) {
            Some(ConnEntry {
                lost: Some(reason),
                peer,
                ..
            }) => Err(HostError::ConnectionLost {
                conn,
                peer: *peer,
                reason: *reason,
            }),
            Some(c) => Ok(Some(c.handle)),
            None => Ok(None),
        }
    }

    /// The engine's handle of connection `conn`, if it may carry requests.
    fn handle(&mut self, conn: ConnId) -> Result<u32, HostError> {
        match self.entry(conn)? {
            Some(Some(h)) => Ok(h),
            Some(None) => Err(HostError::Post(PostError::NotConnected)),
            None => Err(HostError::Post(PostError::UnknownConnection)),
        }
    }

    /// Read every completion waiting in the ring and sort it.
    fn pump(&mut self) -> Result<(), EngineError> {
        while let Some(cqe) = self.client.poll()? {
            self.sort(cqe);
        }
        Ok(())
    }

    /// Complete the requests connection `id` held for its handshake with `why`.
    fn fail_queued(&mut self, id: u32, queued: Vec<(u64, WorkRequest)>, why: WrError) {
        for (user, wr) in queued {
            self.done.push_back(failed(id, user, &wr, why));
        }
    }

    fn sort(&mut self, cqe: Cqe) {
        if let Some(mut c) = cqe.completion() {
            c.conn = ConnId(self.by_handle.get(&cqe.conn).copied().unwrap_or(0));
            self.done.push_back(c);
            return;
        }
        match cqe.kind {
            CqeKind::Connected => {
                let Some(id) = self.connecting.remove(&cqe.user) else {
                    return;
                };
                let Some(entry) = self.conns.get_mut(&id) else {
                    // Closed while connecting.
                    if cqe.status == Status::Ok {
                        self.fire(Op::Close { conn: cqe.conn });
                    }
                    return;
                };
                let queued = core::mem::take(&mut entry.queued);
                if cqe.status == Status::Ok {
                    entry.handle = Some(cqe.conn);
                    self.by_handle.insert(cqe.conn, id);
                    // What was posted meanwhile goes now, in order, under its cookie.
                    for (user, wr) in queued {
                        let op = Op::from_request(cqe.conn, wr);
                        if self.client.submit_as(user, op).is_err() {
                            let why = WrError::ConnectionLost(ConnError::Refused);
                            self.done.push_back(failed(id, user, &wr, why));
                        }
                    }
                } else {
                    let why = cqe.status.conn_error();
                    entry.lost = Some(why);
                    self.fail_queued(id, queued, WrError::ConnectionLost(why));
                }
            }
            CqeKind::Accepted => {
                let id = self.next_id;
                self.next_id = self.next_id.wrapping_add(1).max(1);
                let peer = cqe.addr.unwrap_or_else(unspecified);
                self.conns.insert(
                    id,
                    ConnEntry {
                        handle: Some(cqe.conn),
                        peer,
                        lost: None,
                        queued: Vec::new(),
                    },
                );
                self.by_handle.insert(cqe.conn, id);
                self.accepted.push_back((id, peer, cqe.tag));
            }
            CqeKind::ConnectionLost | CqeKind::Closed => {
                if let Some(entry) = self
                    .by_handle
                    .get(&cqe.conn)
                    .and_then(|id| self.conns.get_mut(id))
                {
                    entry.lost = Some(cqe.status.conn_error());
                    if let Some(a) = cqe.addr {
                        entry.peer = a;
                    }
                }
            }
            _ => {
                if !self.ignored.remove(&cqe.user) {
                    self.control.push_back(cqe);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_transport::CompletionKind;

    fn cfg() -> HostConfig {
        let mut c = HostConfig::default();
        c.udp.bind = std::net::Ipv4Addr::LOCALHOST.into();
        c
    }

    fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
        let end = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            std::thread::yield_now();
        }
    }

    /// The calls the plugin makes, through the rings of an in-process engine, against a
    /// plain `Host` peer: an authenticated listener takes only its key's connections (by
    /// key), heap memory registered by address carries a message each way, a close is seen
    /// by the peer, a connect closed while its handshake runs is closed when it completes,
    /// and a connect to nobody fails.
    #[test]
    fn inproc_net_serves_the_plugin_calls() {
        const KEY: u64 = 0x7e57;
        const SECRET: u128 = 0x5ec2_e700_0000_0000_0000_0000_0000_0001;
        let mut quick = cfg();
        quick.transport.handshake_timeout = weir_base::Duration::from_millis(300);
        let a = Net::start(&Placement::Inproc, quick).unwrap();
        let b = Net::start(&Placement::Host, cfg()).unwrap();
        assert_eq!((a.placement(), b.placement()), ("inproc", "host"));
        a.admit(KEY, SECRET).unwrap();
        // Without the secret: no answer (the connect times out or is still pending).
        let stranger = b.connect_authenticated(a.local_addr(), KEY, SECRET ^ 1);
        let conn = b.connect_authenticated(a.local_addr(), KEY, SECRET);
        wait_until("the handshake", || b.is_connected(conn).unwrap_or(false));
        let mut accepted = None;
        wait_until("the accept", || {
            accepted = a.try_accept_for(KEY);
            accepted.is_some()
        });
        let (ac, peer) = accepted.unwrap();
        assert_eq!(peer, b.local_addr());
        assert!(
            a.try_accept_for(KEY).is_none(),
            "{:?}",
            b.is_connected(stranger)
        );
        assert!(a.is_connected(ac).unwrap());
        // A message each way, from and into plain heap memory registered by address.
        let mut tx: Vec<u8> = (0..300_000).map(|i| (i * 7) as u8).collect();
        let mut rx = vec![0u8; 300_000];
        // SAFETY: both vectors outlive their registrations (deregistered below) and are
        // not touched while requests on them are outstanding.
        let (rtx, rrx) = unsafe {
            (
                b.register_raw(NonNull::new(tx.as_mut_ptr()).unwrap(), 300_000, false)
                    .unwrap(),
                a.register_raw(NonNull::new(rx.as_mut_ptr()).unwrap(), 300_000, false)
                    .unwrap(),
            )
        };
        let recv = a
            .post(
                ac,
                WorkRequest::Recv {
                    region: rrx,
                    offset: 0,
                    len: 300_000,
                    tag: Some(5),
                },
            )
            .unwrap();
        b.post(
            conn,
            WorkRequest::Send {
                region: rtx,
                offset: 0,
                len: 300_000,
                tag: 5,
            },
        )
        .unwrap();
        let c = a.wait_completion(Duration::from_secs(10)).unwrap();
        assert_eq!(
            (c.wr, c.conn, c.kind, c.len),
            (recv, ac, CompletionKind::Recv, 300_000)
        );
        assert!(c.status.is_ok(), "{c:?}");
        assert!(rx == tx, "bytes differ");
        assert!(a.conn_stats(ac).is_some());
        assert!(a.deregister(rrx));
        assert!(!a.deregister(rrx), "deregistered twice");
        assert!(b.deregister(rtx));
        // The inproc side closes: the Host side sees the connection end.
        a.close(ac);
        // (A `Host` reports a connection its peer closed as no longer connected.)
        wait_until("the peer's close", || {
            !matches!(b.is_connected(conn), Ok(true))
        });
        assert!(a.is_connected(ac).is_err(), "a closed id still connected");
        // Closed while connecting: closed when the handshake completes (the peer's accept
        // then sees a connection that ends).
        b.listen().unwrap();
        let early = a.connect_nonblocking(b.local_addr(), 1);
        a.close(early);
        let mut got = None;
        wait_until("the peer's accept", || {
            got = b.try_accept();
            got.is_some()
        });
        let (bc, _, _) = got.unwrap();
        wait_until("the abandoned connection's close", || {
            !matches!(b.is_connected(bc), Ok(true))
        });
        assert_eq!(a.open_connections(), Some(0));
        // Nobody there: the handshake fails, naming the peer.
        let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let nobody = a.connect_nonblocking(dead.local_addr().unwrap(), 0);
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            match a.is_connected(nobody) {
                Err(HostError::ConnectionLost { peer, .. }) => {
                    assert_eq!(peer, dead.local_addr().unwrap());
                    break;
                }
                Ok(false) if Instant::now() < end => std::thread::yield_now(),
                other => panic!("{other:?}"),
            }
        }
        assert!(a.stats().is_some(), "the in-process engine's counters");
    }

    /// Requests posted while the handshake runs wait for it, as on a `Host`: on every
    /// placement a send posted right after `connect_nonblocking` arrives once the connection
    /// is up; through the rings one posted on a connection closed while connecting completes
    /// with `Closed`, and one on a connection to nobody with the handshake's failure.
    #[test]
    fn posts_on_a_connecting_connection_wait_for_the_handshake() {
        let mut quick = cfg();
        quick.transport.handshake_timeout = weir_base::Duration::from_millis(200);
        for placement in [Placement::Inproc, Placement::Host] {
            let a = Net::start(&placement, quick.clone()).unwrap();
            let b = Net::start(&Placement::Host, cfg()).unwrap();
            b.listen().unwrap();
            let (rtx, txb) = a.alloc(4096, false).unwrap();
            txb.fill(0x5a);
            let (rrx, rxb) = b.alloc(4096, false).unwrap();
            let conn = a.connect_nonblocking(b.local_addr(), 0);
            let send = WorkRequest::Send {
                region: rtx,
                offset: 0,
                len: 4096,
                tag: 9,
            };
            let sent = a.post(conn, send).expect("posted while connecting");
            let mut got = None;
            wait_until("the accept", || {
                got = b.try_accept();
                got.is_some()
            });
            let (bc, _, _) = got.unwrap();
            let recv = WorkRequest::Recv {
                region: rrx,
                offset: 0,
                len: 4096,
                tag: None,
            };
            b.post(bc, recv).unwrap();
            let c = a.wait_completion(Duration::from_secs(10)).unwrap();
            assert_eq!((c.wr, c.kind, c.conn), (sent, CompletionKind::Send, conn));
            assert!(c.status.is_ok(), "{placement:?}: {c:?}");
            let r = b.wait_completion(Duration::from_secs(10)).unwrap();
            assert!(r.status.is_ok() && r.len == 4096, "{r:?}");
            let Mem::Host(rxb) = &rxb else {
                panic!("a Host placement gave engine memory")
            };
            let mut got = [0u8; 4096];
            assert!(rxb.read(0, &mut got));
            assert!(
                got.iter().all(|&x| x == 0x5a),
                "{placement:?}: bytes differ"
            );
            if placement != Placement::Inproc {
                continue;
            }
            // Closed while connecting: what was posted completes with `Closed`.
            let early = a.connect_nonblocking(b.local_addr(), 0);
            let w = a.post(early, send).unwrap();
            a.close(early);
            let c = a.wait_completion(Duration::from_secs(10)).unwrap();
            assert_eq!((c.wr, c.status), (w, Err(WrError::Closed)));
            // Nobody there: the handshake's failure.
            let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let nobody = a.connect_nonblocking(dead.local_addr().unwrap(), 0);
            let w = a.post(nobody, send).unwrap();
            let c = a.wait_completion(Duration::from_secs(30)).unwrap();
            assert_eq!(c.wr, w);
            assert!(matches!(c.status, Err(WrError::ConnectionLost(_))), "{c:?}");
        }
    }

    #[test]
    fn placements_parse_and_print() {
        for (s, p) in [
            ("host", Placement::Host),
            ("", Placement::Host),
            ("inproc", Placement::Inproc),
            ("daemon:/x/y.sock", Placement::Daemon("/x/y.sock".into())),
        ] {
            assert_eq!(Placement::parse(s), Ok(p.clone()), "{s}");
            assert_eq!(Placement::parse(&p.spec()), Ok(p));
        }
        assert!(matches!(
            Placement::parse("daemon"),
            Ok(Placement::Daemon(_))
        ));
        for bad in ["dpu", "daemon:", "INPROC "] {
            assert!(Placement::parse(bad).is_err(), "{bad}");
        }
    }
}
