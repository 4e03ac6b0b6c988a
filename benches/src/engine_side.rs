//! The weir benches over either engine placement: [`Net`] is the handful of calls the weir
//! side of a bench makes (listen, accept, connect, alloc, post, wait for completions), served
//! by a [`Host`] (the engine thread inside `Host`, as the NCCL plugin has it today) or by a
//! client of the firmware engine (`weir_firmware`): an engine thread of the peer process
//! (`--engine inproc`) or a `weir engine` daemon the bench started (`--engine daemon`),
//! reached only through descriptor rings.
//!
//! The firmware client reports completions through its ring; the adapter turns them back into
//! the transport's [`Completion`]s (cookie → `WrId`, connection handle → `ConnId`) and keeps
//! accepted connections and lost ones aside for `accept` and `conn_error`. Connection
//! statistics come through a statistics descriptor (`Op::Stats`), which carries the counters
//! the rows use; per-path statistics and host counters do not cross the rings.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use weir_datapath::host::{Host, HostConfig, HostError};
use weir_datapath::{Buffer, HostStats};
use weir_firmware::inproc::{Client, EngineError, EngineThread, Memory};
use weir_firmware::{Cqe, CqeKind, EngineConfig, Op, Status};
use weir_transport::{
    Completion, ConnError, ConnId, ConnStats, PathStats, RegionId, WorkRequest, WrId,
};

/// Where a weir peer's engine runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// `weir_datapath::Host`: the engine thread of the peer's own `Host`.
    #[default]
    Host,
    /// A `weir_firmware` engine thread of the peer process, reached through rings.
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
}

/// `--engine`: where a bench's weir peers run their engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EngineKind {
    /// Each peer's own `Host` (the engine thread inside `weir_datapath::Host`).
    #[default]
    Host,
    /// A firmware engine thread in each peer process.
    Inproc,
    /// A `weir engine` daemon per peer "host", started by the bench.
    Daemon,
}

impl EngineKind {
    /// `host`, `inproc` or `daemon`.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Host => "host",
            EngineKind::Inproc => "inproc",
            EngineKind::Daemon => "daemon",
        }
    }

    /// From its name.
    pub fn parse(s: &str) -> Option<EngineKind> {
        [EngineKind::Host, EngineKind::Inproc, EngineKind::Daemon]
            .into_iter()
            .find(|k| k.name() == s)
    }
}

/// A `weir engine` daemon the bench started; stopped (SIGTERM, then killed) when dropped.
#[derive(Debug)]
pub struct DaemonProcess {
    child: std::process::Child,
    socket: PathBuf,
}

impl DaemonProcess {
    /// Start `program args…` (a `weir engine` command line serving `socket`) and wait until
    /// its socket accepts connections (at most 10 s).
    pub fn spawn(
        program: &std::path::Path,
        args: &[String],
        socket: &std::path::Path,
    ) -> Result<DaemonProcess, String> {
        let _ = std::fs::remove_file(socket);
        let child = std::process::Command::new(program)
            .args(args)
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("starting the engine daemon {}: {e}", program.display()))?;
        let mut d = DaemonProcess {
            child,
            socket: socket.to_path_buf(),
        };
        let end = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            if let Ok(Some(st)) = d.child.try_wait() {
                return Err(format!("the engine daemon exited at start: {st}"));
            }
            if Instant::now() > end {
                return Err(format!(
                    "the engine daemon did not open {} within 10 s",
                    socket.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(d)
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(2);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_file(&self.socket);
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Memory a bench registered: the host's buffer or the engine client's segment.
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

/// A weir peer's transport, whichever placement serves it.
#[derive(Debug)]
pub enum Net {
    /// `Host`.
    Host(Host),
    /// A firmware engine client (boxed: it is several times the size of a `Host` handle).
    Engine(Box<EngineNet>),
}

/// The engine client and what its completions said that was not a request's completion.
#[derive(Debug)]
pub struct EngineNet {
    /// Declared before `_engine`, so the client detaches before its engine thread stops.
    client: RefCell<Client>,
    _engine: Option<EngineThread>,
    local: SocketAddr,
    /// Request completions, in arrival order.
    done: RefCell<VecDeque<Completion>>,
    /// Accepted connections not yet taken: (handle, peer, user data).
    accepted: RefCell<VecDeque<(u32, SocketAddr, u64)>>,
    /// Connections the engine reported lost: (handle, peer, why).
    lost: RefCell<Vec<(u32, SocketAddr, ConnError)>>,
    /// Other completions a synchronous call waits for (connected, registered, done).
    control: RefCell<VecDeque<Cqe>>,
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

impl Net {
    /// Start the transport for `placement` with `cfg` (for a daemon, `cfg` was the daemon's
    /// business: only its socket is used).
    pub fn start(placement: &Placement, cfg: HostConfig) -> Result<Net, HostError> {
        let (client, engine) = match placement {
            Placement::Host => return Ok(Net::Host(Host::start(cfg)?)),
            Placement::Inproc => {
                let e = EngineThread::start(cfg, EngineConfig::default()).map_err(engine_err)?;
                (e.client().map_err(engine_err)?, Some(e))
            }
            Placement::Daemon(path) => (
                weir_firmware::daemon::connect(path, 1024).map_err(engine_err)?,
                None,
            ),
        };
        Ok(Net::Engine(Box::new(EngineNet {
            local: client.engine_addr(),
            client: RefCell::new(client),
            _engine: engine,
            done: RefCell::new(VecDeque::new()),
            accepted: RefCell::new(VecDeque::new()),
            lost: RefCell::new(Vec::new()),
            control: RefCell::new(VecDeque::new()),
        })))
    }

    /// The address peers connect to.
    pub fn local_addr(&self) -> SocketAddr {
        match self {
            Net::Host(h) => h.local_addr(),
            Net::Engine(e) => e.local,
        }
    }

    /// Accept connections (the engine: those whose connector passed user data 0).
    pub fn listen(&self) -> Result<(), HostError> {
        match self {
            Net::Host(h) => {
                h.listen();
                Ok(())
            }
            Net::Engine(e) => e.call(Op::Listen { key: 0 }).map(|_| ()),
        }
    }

    /// Wait for an accepted connection.
    pub fn accept(&self, timeout: Duration) -> Result<(ConnId, SocketAddr, u64), HostError> {
        match self {
            Net::Host(h) => h.accept(timeout),
            Net::Engine(e) => {
                let end = Instant::now() + timeout;
                loop {
                    if let Some((c, p, u)) = e.accepted.borrow_mut().pop_front() {
                        return Ok((ConnId(c), p, u));
                    }
                    e.pump(end.saturating_duration_since(Instant::now()))?;
                }
            }
        }
    }

    /// An accepted connection, if one is waiting.
    pub fn try_accept(&self) -> Option<(ConnId, SocketAddr, u64)> {
        match self {
            Net::Host(h) => h.try_accept(),
            Net::Engine(e) => {
                let _ = e.pump(Duration::ZERO);
                e.accepted
                    .borrow_mut()
                    .pop_front()
                    .map(|(c, p, u)| (ConnId(c), p, u))
            }
        }
    }

    /// Connect and wait for the handshake.
    pub fn connect(
        &self,
        remote: SocketAddr,
        user_data: u64,
        timeout: Duration,
    ) -> Result<ConnId, HostError> {
        match self {
            Net::Host(h) => h.connect(remote, user_data, timeout),
            Net::Engine(e) => {
                let c = e.call_for(Op::Connect { remote, user_data }, timeout)?;
                Ok(ConnId(c.conn))
            }
        }
    }

    /// `len` bytes of registered memory.
    pub fn alloc(&self, len: usize, remote_write: bool) -> Result<(RegionId, Mem), HostError> {
        match self {
            Net::Host(h) => h.alloc(len, remote_write).map(|(r, b)| (r, Mem::Host(b))),
            Net::Engine(e) => {
                let (segment, mem) = e.client.borrow_mut().memory(len).map_err(engine_err)?;
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

    /// Post a request.
    pub fn post(&self, conn: ConnId, wr: WorkRequest) -> Result<WrId, HostError> {
        match self {
            Net::Host(h) => h.post(conn, wr),
            Net::Engine(e) => {
                let op = Op::from_request(conn.0, wr);
                let user = e.client.borrow_mut().submit(op).map_err(engine_err)?;
                Ok(WrId(user))
            }
        }
    }

    /// Wait for the next request completion.
    pub fn wait_completion(&self, timeout: Duration) -> Result<Completion, HostError> {
        match self {
            Net::Host(h) => h.wait_completion(timeout),
            Net::Engine(e) => {
                let end = Instant::now() + timeout;
                loop {
                    if let Some(c) = e.done.borrow_mut().pop_front() {
                        return Ok(c);
                    }
                    e.pump(end.saturating_duration_since(Instant::now()))?;
                }
            }
        }
    }

    /// A request completion, if one is ready.
    pub fn poll_completion(&self) -> Option<Completion> {
        match self {
            Net::Host(h) => h.poll_completion(),
            Net::Engine(e) => {
                let _ = e.pump(Duration::ZERO);
                e.done.borrow_mut().pop_front()
            }
        }
    }

    /// Close a connection.
    pub fn close(&self, conn: ConnId) {
        match self {
            Net::Host(h) => h.close(conn),
            Net::Engine(e) => {
                let _ = e.client.borrow_mut().submit(Op::Close { conn: conn.0 });
            }
        }
    }

    /// The connection's transport statistics (through the engine's rings: the counters a
    /// statistics descriptor carries — packets, retransmissions, timeouts, spurious
    /// retransmissions, longest repair).
    pub fn conn_stats(&self, conn: ConnId) -> Option<ConnStats> {
        match self {
            Net::Host(h) => h.conn_stats(conn),
            Net::Engine(e) => {
                let c = e.call(Op::Stats { conn: conn.0 }).ok()?.counters()?;
                let mut s = ConnStats::default();
                s.data_packets = c.data_packets;
                s.retransmits = c.retransmits;
                s.rto_events = c.rto_events;
                s.spurious_retransmits = c.spurious_retransmits;
                s.max_repair_us = c.max_repair_us;
                Some(s)
            }
        }
    }

    /// Per-path statistics (`None` through the engine's rings).
    pub fn path_stats(&self, conn: ConnId) -> Option<Vec<PathStats>> {
        match self {
            Net::Host(h) => h.path_stats(conn),
            Net::Engine(_) => None,
        }
    }

    /// Host counters (`None` through the engine's rings).
    pub fn stats(&self) -> Option<HostStats> {
        match self {
            Net::Host(h) => Some(h.stats()),
            Net::Engine(_) => None,
        }
    }

    /// If `conn` has failed: why.
    pub fn conn_error(&self, conn: ConnId) -> Option<HostError> {
        match self {
            Net::Host(h) => h.conn_error(conn),
            Net::Engine(e) => {
                e.lost
                    .borrow()
                    .iter()
                    .find(|l| l.0 == conn.0)
                    .map(|&(c, peer, reason)| HostError::ConnectionLost {
                        conn: ConnId(c),
                        peer,
                        reason,
                    })
            }
        }
    }
}

impl EngineNet {
    /// Submit `op` and wait (up to 15 s) for its own completion.
    fn call(&self, op: Op) -> Result<Cqe, HostError> {
        self.call_for(op, Duration::from_secs(15))
    }

    fn call_for(&self, op: Op, timeout: Duration) -> Result<Cqe, HostError> {
        let user = self.client.borrow_mut().submit(op).map_err(engine_err)?;
        let end = Instant::now() + timeout;
        loop {
            let found = {
                let mut q = self.control.borrow_mut();
                q.iter()
                    .position(|c| c.user == user)
                    .and_then(|i| q.remove(i))
            };
            if let Some(c) = found {
                return match c.status {
                    Status::Ok => Ok(c),
                    s => Err(HostError::Io(std::io::Error::other(format!(
                        "engine refused {op:?}: {s}"
                    )))),
                };
            }
            self.pump(end.saturating_duration_since(Instant::now()))?;
        }
    }

    /// Take one completion from the ring (waiting up to `timeout`) and sort it.
    fn pump(&self, timeout: Duration) -> Result<(), HostError> {
        let cqe = {
            let mut c = self.client.borrow_mut();
            if timeout.is_zero() {
                match c.poll().map_err(engine_err)? {
                    Some(cqe) => cqe,
                    None => return Ok(()),
                }
            } else {
                c.wait(timeout).map_err(engine_err)?
            }
        };
        if let Some(c) = cqe.completion() {
            self.done.borrow_mut().push_back(c);
            return Ok(());
        }
        match cqe.kind {
            CqeKind::Accepted => {
                let peer = cqe
                    .addr
                    .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
                self.accepted
                    .borrow_mut()
                    .push_back((cqe.conn, peer, cqe.tag));
            }
            CqeKind::ConnectionLost | CqeKind::Closed => {
                let peer = cqe
                    .addr
                    .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
                self.lost
                    .borrow_mut()
                    .push((cqe.conn, peer, cqe.status.conn_error()));
            }
            _ => self.control.borrow_mut().push_back(cqe),
        }
        Ok(())
    }
}
