//! The TCP rendezvous and the control plane that stays open afterwards.
//!
//! Contract: [`Control::connect`] returns only when every rank has registered with rank 0 and
//! holds the same [`PeerInfo`] table, or with a [`CommError::Bootstrap`] after at most the
//! timeout. Messages are JSON lines over the TCP star (rank 0 in the middle). Afterwards one
//! reader thread per connection keeps [`Health`] up to date: rank 0 declares a rank failed when
//! its connection ends without a `Bye`, and relays every failure report and departure to all
//! ranks. [`Control::gather`] is an all-gather of short strings over the star, used during setup
//! and for nothing on the data path.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::CommError;

/// What a rank tells the others about itself.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct PeerInfo {
    /// World rank.
    pub(crate) rank: usize,
    /// Hostname + kernel boot id.
    pub(crate) host: String,
    /// Shared-memory namespace (device and inode of `/dev/shm`).
    pub(crate) shm_ns: String,
    /// Whether the rank allows shared memory.
    pub(crate) shm: bool,
    /// Process id.
    pub(crate) pid: u32,
}

impl PeerInfo {
    /// Whether `self` and `other` talk through shared memory.
    pub(crate) fn shares_memory_with(&self, other: &PeerInfo) -> bool {
        self.shm && other.shm && self.host == other.host && self.shm_ns == other.shm_ns
    }
}

#[derive(Debug, Serialize, Deserialize)]
enum Msg {
    Hello {
        size: usize,
        info: PeerInfo,
    },
    Table {
        job: u64,
        peers: Vec<PeerInfo>,
    },
    Reject {
        reason: String,
    },
    Gather {
        phase: u64,
        data: String,
    },
    Gathered {
        phase: u64,
        all: Vec<String>,
    },
    Fail {
        rank: usize,
        reason: String,
    },
    Suspect {
        by: usize,
        rank: usize,
        reason: String,
    },
    Bye,
    Left {
        rank: usize,
    },
}

/// The liveness of one rank as this rank knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PeerState {
    Alive,
    /// Closed its communicator normally.
    Left,
    /// Declared failed, with the reason.
    Failed(String),
}

/// Liveness of every world rank, shared with the reader threads.
#[derive(Debug)]
pub(crate) struct Health {
    version: AtomicU64,
    peers: Mutex<Vec<PeerState>>,
}

impl Health {
    fn new(size: usize) -> Health {
        Health {
            version: AtomicU64::new(0),
            peers: Mutex::new(vec![PeerState::Alive; size]),
        }
    }

    /// Bumped on every change; cheap to poll.
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// A snapshot of every rank's state.
    pub(crate) fn snapshot(&self) -> Vec<PeerState> {
        lock(&self.peers).clone()
    }

    /// Records `state` for `rank`; a failure is never overwritten, a departure only by a
    /// failure. Returns whether anything changed.
    fn set(&self, rank: usize, state: PeerState) -> bool {
        let mut p = lock(&self.peers);
        let Some(cur) = p.get_mut(rank) else {
            return false;
        };
        let change = match (&*cur, &state) {
            (PeerState::Failed(_), _) => false,
            (PeerState::Left, PeerState::Failed(_)) => true,
            (PeerState::Left, _) => false,
            (PeerState::Alive, PeerState::Alive) => false,
            (PeerState::Alive, _) => true,
        };
        if change {
            *cur = state;
            self.version.fetch_add(1, Ordering::AcqRel);
        }
        change
    }
}

/// Where the process is in a launcher's world.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Launch {
    pub(crate) rank: usize,
    pub(crate) size: usize,
    pub(crate) addr: String,
}

/// Reads rank, size and the rendezvous address from torchrun (`RANK`, `WORLD_SIZE`,
/// `MASTER_ADDR`, `MASTER_PORT`), Open MPI (`OMPI_COMM_WORLD_RANK`/`_SIZE`) or PMI
/// (`PMI_RANK`/`PMI_SIZE`) variables; `WEIR_BOOTSTRAP=host:port` overrides the address.
pub(crate) fn launch_from_env(get: &dyn Fn(&str) -> Option<String>) -> Result<Launch, CommError> {
    let num = |k: &str| -> Result<Option<usize>, CommError> {
        match get(k) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| CommError::Bootstrap(format!("{k}={v:?} is not a number"))),
        }
    };
    let pairs = [
        ("RANK", "WORLD_SIZE"),
        ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
        ("PMI_RANK", "PMI_SIZE"),
    ];
    let mut found = None;
    for (r, s) in pairs {
        if let (Some(rank), Some(size)) = (num(r)?, num(s)?) {
            found = Some((rank, size));
            break;
        }
    }
    let (rank, size) = found.ok_or_else(|| {
        CommError::Bootstrap(
            "no rank in the environment: set RANK and WORLD_SIZE (torchrun), \
             OMPI_COMM_WORLD_RANK/SIZE (Open MPI) or PMI_RANK/PMI_SIZE"
                .into(),
        )
    })?;
    let addr = match get("WEIR_BOOTSTRAP") {
        Some(a) => a.trim().to_string(),
        // A world of one needs no rendezvous.
        None if size == 1 && get("MASTER_ADDR").is_none() => String::new(),
        None => {
            let host = get("MASTER_ADDR").ok_or_else(|| {
                CommError::Bootstrap("set MASTER_ADDR and MASTER_PORT or WEIR_BOOTSTRAP".into())
            })?;
            let port = num("MASTER_PORT")?
                .ok_or_else(|| CommError::Bootstrap("MASTER_PORT is not set".into()))?;
            if host.contains(':') && !host.starts_with('[') {
                format!("[{}]:{port}", host.trim())
            } else {
                format!("{}:{port}", host.trim())
            }
        }
    };
    Ok(Launch { rank, size, addr })
}

/// This host's identity: hostname and kernel boot id.
pub(crate) fn host_identity() -> String {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let mut name = [0u8; 256];
    // SAFETY: the buffer is writable for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(name.as_mut_ptr().cast(), name.len() - 1) };
    let host = if rc == 0 {
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        String::from_utf8_lossy(&name[..end]).into_owned()
    } else {
        read("/proc/sys/kernel/hostname")
    };
    format!("{host}/{}", read("/proc/sys/kernel/random/boot_id"))
}

/// The shared-memory namespace: device and inode of the shared-memory directory (containers
/// with separate `/dev/shm` mounts on one host differ here).
pub(crate) fn shm_namespace(dir: &std::path::Path) -> String {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(dir) {
        Ok(m) => format!("{}:{}", m.dev(), m.ino()),
        Err(_) => "none".into(),
    }
}

/// The control plane of one rank.
#[derive(Debug)]
pub(crate) struct Control {
    rank: usize,
    size: usize,
    timeout: Duration,
    pub(crate) health: Arc<Health>,
    /// Writers: rank 0 holds one per rank (None for itself); others hold one, to rank 0.
    writers: Arc<Vec<Mutex<Option<TcpStream>>>>,
    hub: Arc<Hub>,
    gathered: Mutex<Receiver<(u64, Vec<String>)>>,
    phase: AtomicU64,
    said_bye: AtomicBool,
    closing: Arc<AtomicBool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// The local address this rank uses towards the master (for binding the transport).
    pub(crate) local_ip: Option<IpAddr>,
    pub(crate) peers: Vec<PeerInfo>,
    pub(crate) job: u64,
}

/// Rank 0's collection point for [`Control::gather`].
#[derive(Debug, Default)]
struct Hub {
    parts: Mutex<HashMap<u64, Vec<Option<String>>>>,
    cv: Condvar,
    /// Wait edges reported by timed-out ranks: (waiting rank, rank waited for, reason).
    suspects: Mutex<Vec<(usize, usize, String)>>,
    resolving: AtomicBool,
    settle: Duration,
}

/// Rank 0: records that `by` timed out waiting for `rank`. After a settling delay (so the
/// other ranks stuck behind the same silent rank report too) it follows the wait edges from
/// each suspect to a rank that waits for nobody, declares that rank failed and tells everyone.
/// A rank stuck behind another stuck rank thus blames the silent one, not its neighbour.
fn hub_suspect(
    hub: &Arc<Hub>,
    health: &Arc<Health>,
    writers: &Arc<Vec<Mutex<Option<TcpStream>>>>,
    edge: (usize, usize, String),
) {
    lock(&hub.suspects).push(edge);
    if hub.resolving.swap(true, Ordering::AcqRel) {
        return;
    }
    let (h, health, writers) = (hub.clone(), health.clone(), writers.clone());
    let spawned = std::thread::Builder::new()
        .name("weir-ctl-suspect".into())
        .spawn(move || {
            std::thread::sleep(h.settle);
            let edges = std::mem::take(&mut *lock(&h.suspects));
            h.resolving.store(false, Ordering::Release);
            let next = |r: usize| edges.iter().find(|e| e.0 == r);
            for (by, rank, reason) in &edges {
                let mut root = (*by, *rank, reason.clone());
                let mut seen = vec![*by];
                while let Some(e) = next(root.1) {
                    if seen.contains(&root.1) {
                        break; // a cycle: ranks wait for each other; blame the first suspect
                    }
                    seen.push(root.1);
                    root = e.clone();
                }
                let why = format!("unresponsive: {}", root.2);
                if health.set(root.1, PeerState::Failed(why.clone())) {
                    for r in 1..writers.len() {
                        send_to(
                            &writers,
                            r,
                            &Msg::Fail {
                                rank: root.1,
                                reason: why.clone(),
                            },
                        );
                    }
                }
            }
        });
    if spawned.is_err() {
        // No thread: resolve nothing; the ranks fall back to their own timeout errors.
        hub.resolving.store(false, Ordering::Release);
    }
}

impl Control {
    /// Runs the rendezvous (see the module doc).
    pub(crate) fn connect(
        rank: usize,
        size: usize,
        addr: &str,
        me: PeerInfo,
        timeout: Duration,
    ) -> Result<Control, CommError> {
        if size == 0 {
            return Err(CommError::Bootstrap("world size must be at least 1".into()));
        }
        if rank >= size {
            return Err(CommError::Bootstrap(format!(
                "rank {rank} is out of range for world size {size}"
            )));
        }
        let deadline = Instant::now() + timeout;
        let health = Arc::new(Health::new(size));
        let hub = Arc::new(Hub {
            settle: (timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(2)),
            ..Hub::default()
        });
        let closing = Arc::new(AtomicBool::new(false));
        let (tx, rx) = channel();
        if size == 1 {
            return Ok(Control {
                rank,
                size,
                timeout,
                health,
                writers: Arc::new(vec![Mutex::new(None)]),
                hub,
                gathered: Mutex::new(rx),
                phase: AtomicU64::new(0),
                said_bye: AtomicBool::new(false),
                closing,
                threads: Mutex::new(Vec::new()),
                local_ip: None,
                peers: vec![me],
                job: job_id(),
            });
        }
        let addrs: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|e| CommError::Bootstrap(format!("cannot resolve {addr:?}: {e}")))?
            .collect();
        if addrs.is_empty() {
            return Err(CommError::Bootstrap(format!(
                "{addr:?} resolves to nothing"
            )));
        }
        let (writers, readers, peers, job, local_ip) = if rank == 0 {
            master(size, &addrs, me, deadline, timeout)?
        } else {
            worker(rank, size, &addrs, me, deadline, timeout)?
        };
        let writers = Arc::new(writers);
        let mut threads = Vec::new();
        for (peer, stream) in readers {
            let ctx = Reader {
                me: rank,
                peer,
                health: health.clone(),
                writers: writers.clone(),
                hub: hub.clone(),
                gathered: tx.clone(),
                closing: closing.clone(),
            };
            let t = std::thread::Builder::new()
                .name(format!("weir-ctl-{rank}-{peer}"))
                .spawn(move || ctx.run(stream))?;
            threads.push(t);
        }
        Ok(Control {
            rank,
            size,
            timeout,
            health,
            writers,
            hub,
            gathered: Mutex::new(rx),
            phase: AtomicU64::new(0),
            said_bye: AtomicBool::new(false),
            closing,
            threads: Mutex::new(threads),
            local_ip,
            peers,
            job,
        })
    }

    /// All-gather of one string per rank over the star, in rank order. Every rank must call it
    /// the same number of times.
    pub(crate) fn gather(&self, data: String) -> Result<Vec<String>, CommError> {
        let phase = self.phase.fetch_add(1, Ordering::AcqRel);
        if self.size == 1 {
            return Ok(vec![data]);
        }
        let deadline = Instant::now() + self.timeout;
        if self.rank == 0 {
            let mut parts = lock(&self.hub.parts);
            parts.entry(phase).or_insert_with(|| vec![None; self.size])[0] = Some(data);
            loop {
                if let Some(v) = parts.get(&phase)
                    && v.iter().all(Option::is_some)
                {
                    let all: Vec<String> = parts
                        .remove(&phase)
                        .unwrap_or_default()
                        .into_iter()
                        .flatten()
                        .collect();
                    drop(parts);
                    for r in 1..self.size {
                        send_to(
                            &self.writers,
                            r,
                            &Msg::Gathered {
                                phase,
                                all: all.clone(),
                            },
                        );
                    }
                    return Ok(all);
                }
                self.check_setup_health()?;
                let now = Instant::now();
                if now >= deadline {
                    let missing: Vec<usize> = parts
                        .get(&phase)
                        .map(|v| (0..v.len()).filter(|&i| v[i].is_none()).collect())
                        .unwrap_or_default();
                    return Err(CommError::Bootstrap(format!(
                        "timed out after {:?} in setup phase {phase} waiting for ranks {missing:?}",
                        self.timeout
                    )));
                }
                let wait = (deadline - now).min(Duration::from_millis(50));
                parts = match self.hub.cv.wait_timeout(parts, wait) {
                    Ok((g, _)) => g,
                    Err(p) => p.into_inner().0,
                };
            }
        }
        send_to(&self.writers, 0, &Msg::Gather { phase, data });
        let rx = lock(&self.gathered);
        loop {
            self.check_setup_health()?;
            let now = Instant::now();
            if now >= deadline {
                return Err(CommError::Bootstrap(format!(
                    "timed out after {:?} in setup phase {phase} waiting for rank 0",
                    self.timeout
                )));
            }
            match rx.recv_timeout((deadline - now).min(Duration::from_millis(50))) {
                Ok((p, all)) if p == phase => {
                    if all.len() != self.size {
                        return Err(CommError::Protocol(format!(
                            "setup phase {phase}: {} entries for {} ranks",
                            all.len(),
                            self.size
                        )));
                    }
                    return Ok(all);
                }
                Ok(_) => continue,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(CommError::Bootstrap("the control plane stopped".into()));
                }
            }
        }
    }

    /// Declares `rank` failed for `reason`: locally at once, and on every rank through rank 0.
    pub(crate) fn report(&self, rank: usize, reason: String) {
        if !self.health.set(rank, PeerState::Failed(reason.clone())) {
            return;
        }
        let msg = Msg::Fail { rank, reason };
        if self.rank == 0 {
            for r in 1..self.size {
                send_to(&self.writers, r, &msg);
            }
        } else {
            send_to(&self.writers, 0, &msg);
        }
    }

    /// This rank timed out waiting for `rank`: tells rank 0, which decides (after a settling
    /// delay) which rank is the silent one and declares it failed everywhere.
    pub(crate) fn suspect(&self, rank: usize, reason: String) {
        if self.rank == 0 {
            hub_suspect(&self.hub, &self.health, &self.writers, (0, rank, reason));
        } else {
            send_to(
                &self.writers,
                0,
                &Msg::Suspect {
                    by: self.rank,
                    rank,
                    reason,
                },
            );
        }
    }

    /// Tells every rank (through rank 0) that this rank is leaving normally. Idempotent; the
    /// control plane keeps running (and relaying, on rank 0) until it is dropped.
    pub(crate) fn leave(&self) {
        if self.said_bye.swap(true, Ordering::AcqRel) {
            return;
        }
        if self.rank == 0 {
            for r in 1..self.size {
                send_to(&self.writers, r, &Msg::Left { rank: 0 });
            }
        } else {
            send_to(&self.writers, 0, &Msg::Bye);
        }
    }

    /// How long rank 0 lets timeout reports settle before it decides.
    pub(crate) fn settle(&self) -> Duration {
        self.hub.settle
    }

    fn check_setup_health(&self) -> Result<(), CommError> {
        for (rank, s) in self.health.snapshot().into_iter().enumerate() {
            match s {
                PeerState::Alive => {}
                PeerState::Left => {
                    return Err(CommError::PeerLeft {
                        rank,
                        during: "communicator setup".into(),
                    });
                }
                PeerState::Failed(reason) => {
                    return Err(CommError::PeerFailed {
                        rank,
                        reason,
                        during: "communicator setup".into(),
                    });
                }
            }
        }
        Ok(())
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.leave();
        self.closing.store(true, Ordering::Release);
        for w in self.writers.iter() {
            if let Some(s) = lock(w).as_ref() {
                let _ = s.shutdown(Shutdown::Write);
            }
        }
        let threads = std::mem::take(&mut *lock(&self.threads));
        // Readers end when the peer closes its side; rank 0 waits for nobody: shut the read
        // side too after a short grace so its Left message is flushed first.
        let grace = Instant::now() + Duration::from_millis(200);
        for t in &threads {
            while !t.is_finished() && Instant::now() < grace {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        for w in self.writers.iter() {
            if let Some(s) = lock(w).as_ref() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        for t in threads {
            let _ = t.join();
        }
    }
}

type Setup = (
    Vec<Mutex<Option<TcpStream>>>,
    Vec<(usize, TcpStream)>,
    Vec<PeerInfo>,
    u64,
    Option<IpAddr>,
);

fn master(
    size: usize,
    addrs: &[SocketAddr],
    me: PeerInfo,
    deadline: Instant,
    timeout: Duration,
) -> Result<Setup, CommError> {
    let listener = addrs
        .iter()
        .find_map(|a| TcpListener::bind(a).ok())
        .or_else(|| {
            // MASTER_ADDR may name this host by an address it cannot bind; listen everywhere.
            let port = addrs[0].port();
            TcpListener::bind((IpAddr::from([0u8, 0, 0, 0]), port)).ok()
        })
        .ok_or_else(|| {
            CommError::Bootstrap(format!(
                "rank 0 cannot listen on {addrs:?} (address in use or not local)"
            ))
        })?;
    listener.set_nonblocking(true)?;
    let mut conns: Vec<Option<(TcpStream, PeerInfo)>> = (0..size).map(|_| None).collect();
    let mut got = 1;
    let mut local_ip = None;
    let fail = |conns: &mut Vec<Option<(TcpStream, PeerInfo)>>,
                extra: Option<&mut TcpStream>,
                reason: String| {
        let msg = Msg::Reject {
            reason: reason.clone(),
        };
        for (s, _) in conns.iter_mut().flatten() {
            let _ = write_msg(s, &msg);
        }
        if let Some(s) = extra {
            let _ = write_msg(s, &msg);
        }
        CommError::Bootstrap(reason)
    };
    while got < size {
        let now = Instant::now();
        if now >= deadline {
            let missing: Vec<usize> = (1..size).filter(|&r| conns[r].is_none()).collect();
            return Err(fail(
                &mut conns,
                None,
                format!("timed out after {timeout:?} waiting for ranks {missing:?} to join"),
            ));
        }
        let mut stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            Err(e) => return Err(fail(&mut conns, None, format!("accept failed: {e}"))),
        };
        stream.set_nonblocking(false)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))?;
        let hello = match read_msg(&mut BufReader::new(&stream)) {
            Ok(Msg::Hello { size: s, info }) => (s, info),
            // A stray connection (port scan, a rank that died): ignore it.
            _ => continue,
        };
        let (their_size, info) = hello;
        let r = info.rank;
        if their_size != size {
            return Err(fail(
                &mut conns,
                Some(&mut stream),
                format!("rank {r} says the world has {their_size} ranks, rank 0 says {size}"),
            ));
        }
        if r == 0 || r >= size {
            return Err(fail(
                &mut conns,
                Some(&mut stream),
                format!(
                    "a process registered as rank {r}, outside 1..{size} (rank 0 exists already)"
                ),
            ));
        }
        if let Some((_, prev)) = &conns[r] {
            let prev_pid = prev.pid;
            return Err(fail(
                &mut conns,
                Some(&mut stream),
                format!(
                    "rank {r} registered twice (pids {prev_pid} and {}); every rank must be unique",
                    info.pid
                ),
            ));
        }
        local_ip = local_ip.or_else(|| stream.local_addr().ok().map(|a| a.ip()));
        conns[r] = Some((stream, info));
        got += 1;
    }
    let job = job_id();
    let mut peers = vec![me];
    let mut streams = Vec::new();
    for (s, info) in conns.into_iter().skip(1).flatten() {
        peers.push(info);
        streams.push(s);
    }
    let table = Msg::Table {
        job,
        peers: peers.clone(),
    };
    let mut writers = vec![Mutex::new(None)];
    let mut readers = Vec::new();
    for (i, mut s) in streams.into_iter().enumerate() {
        write_msg(&mut s, &table).map_err(|e| {
            CommError::Bootstrap(format!("sending the table to rank {}: {e}", i + 1))
        })?;
        s.set_read_timeout(None)?;
        readers.push((i + 1, s.try_clone()?));
        writers.push(Mutex::new(Some(s)));
    }
    Ok((writers, readers, peers, job, local_ip))
}

fn worker(
    rank: usize,
    size: usize,
    addrs: &[SocketAddr],
    me: PeerInfo,
    deadline: Instant,
    timeout: Duration,
) -> Result<Setup, CommError> {
    let mut last = String::from("no attempt");
    let stream = loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(CommError::Bootstrap(format!(
                "cannot reach the bootstrap master (rank 0) at {addrs:?} within {timeout:?}: {last}"
            )));
        }
        let mut connected = None;
        for a in addrs {
            match TcpStream::connect_timeout(a, (deadline - now).min(Duration::from_secs(1))) {
                Ok(s) => {
                    connected = Some(s);
                    break;
                }
                Err(e) => last = e.to_string(),
            }
        }
        match connected {
            Some(s) => break s,
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    stream.set_nodelay(true)?;
    let local_ip = stream.local_addr().ok().map(|a| a.ip());
    let mut w = stream.try_clone()?;
    write_msg(&mut w, &Msg::Hello { size, info: me })
        .map_err(|e| CommError::Bootstrap(format!("sending hello to rank 0: {e}")))?;
    stream.set_read_timeout(Some(
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1)),
    ))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let (job, peers) = match read_msg(&mut reader) {
        Ok(Msg::Table { job, peers }) => (job, peers),
        Ok(Msg::Reject { reason }) => return Err(CommError::Bootstrap(reason)),
        Ok(other) => {
            return Err(CommError::Bootstrap(format!(
                "unexpected message from rank 0: {other:?}"
            )));
        }
        Err(e) => {
            return Err(CommError::Bootstrap(format!(
                "no table from rank 0 within {timeout:?}: {e}"
            )));
        }
    };
    if peers.len() != size || peers.iter().enumerate().any(|(i, p)| p.rank != i) {
        return Err(CommError::Protocol(format!(
            "malformed bootstrap table from rank 0 (rank {rank} expected {size} entries)"
        )));
    }
    // Bytes already buffered by `reader` beyond the table line would be lost; rank 0 sends
    // nothing more until every rank speaks again (the first gather), so there are none.
    stream.set_read_timeout(None)?;
    Ok((
        vec![Mutex::new(Some(w))],
        vec![(0, stream)],
        peers,
        job,
        local_ip,
    ))
}

struct Reader {
    me: usize,
    peer: usize,
    health: Arc<Health>,
    writers: Arc<Vec<Mutex<Option<TcpStream>>>>,
    hub: Arc<Hub>,
    gathered: Sender<(u64, Vec<String>)>,
    closing: Arc<AtomicBool>,
}

impl Reader {
    fn run(self, stream: TcpStream) {
        let mut r = BufReader::new(stream);
        let mut said_bye = false;
        let end = loop {
            let msg = match read_msg(&mut r) {
                Ok(m) => m,
                Err(e) => break e.to_string(),
            };
            match msg {
                Msg::Gather { phase, data } if self.me == 0 => {
                    let mut parts = lock(&self.hub.parts);
                    let n = self.writers.len();
                    let v = parts.entry(phase).or_insert_with(|| vec![None; n]);
                    if let Some(slot) = v.get_mut(self.peer) {
                        *slot = Some(data);
                    }
                    drop(parts);
                    self.hub.cv.notify_all();
                }
                Msg::Gathered { phase, all } => {
                    let _ = self.gathered.send((phase, all));
                }
                Msg::Fail { rank, reason } => {
                    let fresh = self.health.set(rank, PeerState::Failed(reason.clone()));
                    if fresh && self.me == 0 {
                        self.broadcast(&Msg::Fail { rank, reason });
                    }
                }
                Msg::Suspect { by, rank, reason } if self.me == 0 => {
                    hub_suspect(&self.hub, &self.health, &self.writers, (by, rank, reason));
                }
                Msg::Bye if self.me == 0 => {
                    said_bye = true;
                    if self.health.set(self.peer, PeerState::Left) {
                        self.broadcast(&Msg::Left { rank: self.peer });
                    }
                }
                Msg::Left { rank } => {
                    if rank == self.peer {
                        said_bye = true;
                    }
                    self.health.set(rank, PeerState::Left);
                }
                _ => {}
            }
        };
        if said_bye || self.closing.load(Ordering::Acquire) {
            return;
        }
        let reason =
            format!("its control connection closed ({end}): the process exited or crashed");
        if self
            .health
            .set(self.peer, PeerState::Failed(reason.clone()))
            && self.me == 0
        {
            self.broadcast(&Msg::Fail {
                rank: self.peer,
                reason,
            });
        }
    }

    fn broadcast(&self, msg: &Msg) {
        for r in 1..self.writers.len() {
            send_to(&self.writers, r, msg);
        }
    }
}

fn send_to(writers: &[Mutex<Option<TcpStream>>], rank: usize, msg: &Msg) {
    if let Some(w) = writers.get(rank) {
        let mut g = lock(w);
        if let Some(s) = g.as_mut() {
            // A dead peer makes the write fail; its reader thread reports the failure.
            let _ = write_msg(s, msg);
        }
    }
}

fn write_msg(s: &mut TcpStream, msg: &Msg) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    line.push(b'\n');
    s.write_all(&line)
}

/// Longest control message accepted (a table of many ranks fits easily).
const MAX_LINE: u64 = 16 << 20;

fn read_msg<R: BufRead>(r: &mut R) -> std::io::Result<Msg> {
    let mut line = Vec::new();
    let n = std::io::Read::take(r, MAX_LINE).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "end of stream",
        ));
    }
    serde_json::from_slice(&line)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

fn job_id() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = t ^ (u64::from(std::process::id()) << 32) ^ 0x9e37_79b9_7f4a_7c15;
    // splitmix64 finaliser.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn torchrun_openmpi_and_pmi_variables_are_read() {
        let t = env(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "4"),
            ("MASTER_ADDR", "10.0.0.1"),
            ("MASTER_PORT", "29500"),
        ]);
        assert_eq!(
            launch_from_env(&t).unwrap(),
            Launch {
                rank: 3,
                size: 4,
                addr: "10.0.0.1:29500".into()
            }
        );
        let o = env(&[
            ("OMPI_COMM_WORLD_RANK", "1"),
            ("OMPI_COMM_WORLD_SIZE", "2"),
            ("WEIR_BOOTSTRAP", "h:1"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
        ]);
        assert_eq!(launch_from_env(&o).unwrap().addr, "h:1");
        let p = env(&[
            ("PMI_RANK", "0"),
            ("PMI_SIZE", "1"),
            ("MASTER_ADDR", "::1"),
            ("MASTER_PORT", "7"),
        ]);
        assert_eq!(launch_from_env(&p).unwrap().addr, "[::1]:7");
        assert!(launch_from_env(&env(&[])).is_err());
        let bad = env(&[("RANK", "x"), ("WORLD_SIZE", "2")]);
        assert!(matches!(
            launch_from_env(&bad),
            Err(CommError::Bootstrap(_))
        ));
        let noport = env(&[("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "a")]);
        assert!(launch_from_env(&noport).is_err());
        let alone = env(&[("RANK", "0"), ("WORLD_SIZE", "1")]);
        assert_eq!(launch_from_env(&alone).unwrap().size, 1);
    }

    #[test]
    fn a_failure_is_never_overwritten() {
        let h = Health::new(3);
        assert!(h.set(1, PeerState::Left));
        assert!(!h.set(1, PeerState::Alive));
        assert!(h.set(1, PeerState::Failed("x".into())));
        assert!(!h.set(1, PeerState::Left));
        assert_eq!(h.snapshot()[1], PeerState::Failed("x".into()));
        assert_eq!(h.version(), 2);
    }
}
