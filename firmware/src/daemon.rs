//! The software-DPU placement: `weir engine`, one engine per host (or NIC) that every local
//! process attaches to. A client connects to the daemon's Unix socket (`SOCK_SEQPACKET`) and
//! passes a sealed memfd holding its two rings; the daemon maps it, attaches the rings to its
//! engine, and answers with two eventfds (the client's doorbell, and the engine's). Memory the
//! client registers comes the same way: a sealed memfd per segment, mapped by the daemon, so
//! payload moves as a DPU's DMA engine moves it — the engine reads and writes the client's
//! memory directly, never through the socket.
//!
//! Memory a client did not allocate this way (an NCCL plugin's `regMr` buffers, a
//! communicator's tensors) is reached by copying: the client hands over its own
//! `/proc/self/mem`, which names that process's memory and no other (the kernel checked the
//! right to open it when the client opened it, for itself), and the engine copies a send in
//! when it is posted and a receive out when it completes (`ForeignMemory`).
//!
//! Trust: the daemon creates every eventfd itself (a client cannot make it write to a pipe
//! that blocks), and maps only memfds sealed against shrinking (a client cannot truncate a
//! mapping under the engine and crash it with SIGBUS), of the size they claim. A client's
//! socket closing — the client exited or died — detaches it: its connections close and its
//! peers are told. The daemon's socket closing makes every call of its clients fail with an
//! error naming the engine.
//!
//! Messages (one datagram each; fds in `SCM_RIGHTS`):
//!
//! | from | message | fds |
//! | --- | --- | --- |
//! | client | `ATTACH <slots>` | the rings' memfd (two rings of `slots` slots, submission first) |
//! | daemon | `OK <client> <engine address>` | the client's doorbell, the engine's doorbell |
//! | client | `SEGMENT <len>` | the segment's memfd |
//! | daemon | `SEG <number>` | — |
//! | client | `PROCMEM` | the client's `/proc/self/mem`, opened read-write |
//! | daemon | `ERR <reason>` | — |
// An I/O shell around the sans-IO core, like `inproc`: threads, sockets, the OS clock.
#![allow(clippy::disallowed_methods)]

use std::ffi::CString;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration as StdDuration;
use std::vec::Vec;
use std::{format, string::String, string::ToString, vec};

use weir_datapath::HostConfig;

use crate::desc::DESC_LEN;
use crate::engine::{ClientId, EngineConfig};
use crate::inproc::{
    Client, Control, EngineError, EngineThread, EventFd, Link, Memory, control, request,
};
use crate::ring::{self, Consumer, Producer};

/// Most slots a client may ask for per ring.
const MAX_SLOTS: u32 = 1 << 16;
/// Most bytes of one segment.
const MAX_SEGMENT: u64 = 1 << 40;

fn io_err() -> EngineError {
    EngineError::Io(std::io::Error::last_os_error())
}

/// Close `fd` (owned).
fn close(fd: RawFd) {
    // SAFETY: the caller owns `fd` and closes it once.
    unsafe { libc::close(fd) };
}

/// Send `msg` with `fds` over a seqpacket socket.
fn send_msg(sock: RawFd, msg: &[u8], fds: &[RawFd]) -> Result<(), EngineError> {
    let mut iov = libc::iovec {
        iov_base: msg.as_ptr() as *mut libc::c_void,
        iov_len: msg.len(),
    };
    // SAFETY: pure computation on a constant.
    let space = unsafe { libc::CMSG_SPACE((fds.len() * 4) as u32) } as usize;
    let mut cbuf = vec![0u64; space.div_ceil(8).max(1)];
    // SAFETY: zeroed msghdr is a valid initial value.
    let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
    m.msg_iov = &mut iov;
    m.msg_iovlen = 1;
    if !fds.is_empty() {
        m.msg_control = cbuf.as_mut_ptr().cast();
        m.msg_controllen = space as _;
        // SAFETY: the control buffer holds one header with room for `fds`.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&m);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN((fds.len() * 4) as u32) as _;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr(),
                libc::CMSG_DATA(c).cast::<RawFd>(),
                fds.len(),
            );
        }
    }
    // SAFETY: `m` describes valid buffers for the call.
    let r = unsafe { libc::sendmsg(sock, &m, libc::MSG_NOSIGNAL) };
    if r < 0 { Err(io_err()) } else { Ok(()) }
}

/// Receive one message (at most 256 bytes) and up to 4 fds. `Ok(None)`: the peer closed.
fn recv_msg(sock: RawFd) -> Result<Option<(String, Vec<RawFd>)>, EngineError> {
    let mut buf = [0u8; 256];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: pure computation on a constant.
    let space = unsafe { libc::CMSG_SPACE(16) } as usize;
    let mut cbuf = vec![0u64; space.div_ceil(8)];
    // SAFETY: zeroed msghdr is a valid initial value.
    let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
    m.msg_iov = &mut iov;
    m.msg_iovlen = 1;
    m.msg_control = cbuf.as_mut_ptr().cast();
    m.msg_controllen = space as _;
    // SAFETY: `m` describes valid buffers for the call.
    let n = unsafe { libc::recvmsg(sock, &mut m, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io_err());
    }
    let mut fds = Vec::new();
    // SAFETY: walking the control messages the kernel wrote into `cbuf`.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&m);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                let count = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / 4;
                for i in 0..count {
                    fds.push(data.add(i).read_unaligned());
                }
            }
            c = libc::CMSG_NXTHDR(&m, c);
        }
    }
    if n == 0 && fds.is_empty() {
        return Ok(None);
    }
    if m.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
        fds.into_iter().for_each(close);
        return Err(EngineError::Refused("message truncated"));
    }
    Ok(Some((
        String::from_utf8_lossy(&buf[..n as usize]).into_owned(),
        fds,
    )))
}

/// A sealed memfd of `len` bytes, mapped shared (client side).
fn create_memory(len: usize, name: &str) -> Result<Memory, EngineError> {
    let cname = CString::new(name).map_err(|_| EngineError::Refused("name"))?;
    // SAFETY: plain syscalls on a descriptor we own.
    unsafe {
        let fd = libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING);
        if fd < 0 {
            return Err(io_err());
        }
        // Allocate every page now (as an RDMA registration pins its memory), so the first
        // messages do not pay the page faults of two processes.
        if libc::ftruncate(fd, len as libc::off_t) < 0
            || libc::fallocate(fd, 0, 0, len as libc::off_t) < 0
            || libc::fcntl(
                fd,
                libc::F_ADD_SEALS,
                libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL,
            ) < 0
        {
            let e = io_err();
            close(fd);
            return Err(e);
        }
        map(fd, len)
    }
}

/// Map `len` bytes of memfd `fd` (owned; closed on error) after checking it is sealed against
/// shrinking, holds at least `len` bytes, and has them allocated already: the mapping is
/// populated at once, and a sparse memfd would make this process allocate the client's
/// memory (a client could exhaust the daemon's with one huge, empty file).
fn map(fd: RawFd, len: usize) -> Result<Memory, EngineError> {
    // SAFETY: plain syscalls; `st` is written by fstat.
    unsafe {
        let seals = libc::fcntl(fd, libc::F_GET_SEALS);
        let mut st: libc::stat = std::mem::zeroed();
        let ok = seals >= 0
            && seals & libc::F_SEAL_SHRINK != 0
            && libc::fstat(fd, &mut st) == 0
            && st.st_size as u64 >= len as u64
            && len > 0;
        if !ok {
            close(fd);
            return Err(EngineError::Refused(
                "memory must be a memfd sealed against shrinking, of the size given",
            ));
        }
        let allocated = (st.st_blocks as u64).saturating_mul(512);
        if allocated < (len as u64).next_multiple_of(4096).min(st.st_size as u64) {
            close(fd);
            return Err(EngineError::Refused(
                "memory must be allocated (fallocate) before it is passed",
            ));
        }
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            // Map every page now (both the client's and the daemon's page tables), so the
            // data path takes no page faults.
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd,
            0,
        );
        if p == libc::MAP_FAILED {
            let e = io_err();
            close(fd);
            return Err(e);
        }
        Ok(Memory {
            ptr: NonNull::new_unchecked(p.cast()),
            len,
            memfd: Some(fd),
        })
    }
}

/// Bytes of a client's ring memfd: two rings of `slots` slots.
fn rings_len(slots: u32) -> Option<usize> {
    ring::layout_len(slots, DESC_LEN).map(|l| 2 * l)
}

/// Where `weir engine` serves and clients attach unless told otherwise:
/// `$XDG_RUNTIME_DIR/weir-engine.sock`, else `/tmp/weir-engine-<uid>.sock`.
pub fn default_socket() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("weir-engine.sock"),
        // SAFETY: getuid has no preconditions.
        _ => std::env::temp_dir().join(format!("weir-engine-{}.sock", unsafe { libc::getuid() })),
    }
}

/// Engine loops a daemon runs unless told otherwise: one per CPU, at most 4.
pub fn default_loops() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4)
}

/// A daemon's counters, its loops added up.
#[derive(Clone, Copy, Debug, Default)]
pub struct DaemonStats {
    /// The engines' counters.
    pub engine: crate::engine::EngineStats,
    /// Connections the endpoints hold.
    pub connections: u64,
    /// Datagrams received and sent.
    pub rx_packets: u64,
    /// See `rx_packets`.
    pub tx_packets: u64,
    /// CPU time of the engine threads, ns.
    pub cpu_ns: u64,
}

impl core::fmt::Display for DaemonStats {
    /// One line, as `weir engine` prints it.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} submissions ({} refused), {} completions, {} clients broken, {} connections, \
             {} datagrams in / {} out, engine CPU {:.3} s",
            self.engine.submissions,
            self.engine.refused,
            self.engine.completions,
            self.engine.broken_clients,
            self.connections,
            self.rx_packets,
            self.tx_packets,
            self.cpu_ns as f64 / 1e9
        )
    }
}

/// A running `weir engine` daemon: its engine loops and the thread that serves its socket.
///
/// With more than one loop (as a NIC has several queues, each served by a core of the DPU),
/// each loop has its own endpoint and UDP port, and an attaching client is given the loop with
/// the fewest clients; its connections, listen keys and memory live there, and
/// [`Client::engine_addr`] is that loop's address (what its peers connect to).
#[derive(Debug)]
pub struct Daemon {
    loops: Vec<Arc<EngineThread>>,
    path: PathBuf,
    stop: Arc<EventFd>,
    thread: Option<JoinHandle<()>>,
}

impl Daemon {
    /// Start an engine on the datapath `cfg` describes and serve clients at `path` (replacing
    /// a stale socket file there).
    pub fn start(
        path: &Path,
        cfg: HostConfig,
        engine: EngineConfig,
    ) -> Result<Daemon, EngineError> {
        Daemon::with_loops(path, cfg, engine, 1)
    }

    /// As [`Daemon::start`], with `loops` engine loops (at least 1). With a fixed
    /// `cfg.udp.port`, loop `i` binds `port + i`.
    pub fn with_loops(
        path: &Path,
        cfg: HostConfig,
        engine: EngineConfig,
        loops: usize,
    ) -> Result<Daemon, EngineError> {
        let mut engines = Vec::new();
        for i in 0..loops.max(1) {
            let mut c = cfg.clone();
            if c.udp.port != 0 {
                c.udp.port = c
                    .udp
                    .port
                    .checked_add(i as u16)
                    .ok_or(EngineError::Refused("port range"))?;
            }
            engines.push(Arc::new(EngineThread::start(c, engine.clone())?));
        }
        let _ = std::fs::remove_file(path);
        let lfd = listen_at(path)?;
        let stop = Arc::new(EventFd::new()?);
        let (e, s) = (engines.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("weir-engine-socket".to_string())
            .spawn(move || serve(lfd, e, s))
            .map_err(EngineError::Io)?;
        Ok(Daemon {
            loops: engines,
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }

    /// The first loop's datapath address.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.loops[0].local_addr()
    }

    /// The first loop (statistics, in-process clients).
    pub fn engine(&self) -> &EngineThread {
        &self.loops[0]
    }

    /// Every loop.
    pub fn loops(&self) -> impl Iterator<Item = &EngineThread> {
        self.loops.iter().map(|e| &**e)
    }

    /// The counters of every loop, added up.
    pub fn stats(&self) -> Result<DaemonStats, EngineError> {
        let mut t = DaemonStats::default();
        for l in self.loops() {
            let (e, h, cpu) = l.stats()?;
            t.engine += e;
            t.connections += h.connections;
            t.rx_packets += h.endpoint.rx_packets;
            t.tx_packets += h.endpoint.tx_packets;
            t.cpu_ns += cpu;
        }
        Ok(t)
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop.ring();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The daemon's listening socket at `path`, which appears only once it listens: bound and
/// listening at a temporary name beside it, then renamed into place (a client that sees the
/// path never meets a bound socket that refuses connections because `listen` has not run
/// yet). Where the temporary name would not fit a socket address, bound at `path` directly.
fn listen_at(path: &Path) -> Result<RawFd, EngineError> {
    let tmp = listen_tmp(path);
    let _ = std::fs::remove_file(&tmp);
    let fd = match seqpacket(&tmp, true) {
        Ok(fd) => fd,
        Err(EngineError::Refused(_)) => return seqpacket(path, true),
        Err(e) => return Err(e),
    };
    if let Err(e) = std::fs::rename(&tmp, path) {
        close(fd);
        let _ = std::fs::remove_file(&tmp);
        return Err(EngineError::Io(e));
    }
    Ok(fd)
}

/// The temporary name [`listen_at`] binds at, beside `path`.
fn listen_tmp(path: &Path) -> std::path::PathBuf {
    let mut tmp = std::ffi::OsString::from(path.as_os_str());
    tmp.push(format!(".{}.tmp", std::process::id()));
    tmp.into()
}

/// A Unix `SOCK_SEQPACKET` socket at `path`: listening (the daemon) or connected to it (a
/// client).
fn seqpacket(path: &Path, listen: bool) -> Result<RawFd, EngineError> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: zeroed sockaddr_un is valid; the path is copied within its bounds; the
    // descriptor is ours and closed on every error path.
    unsafe {
        let mut addr: libc::sockaddr_un = std::mem::zeroed();
        if bytes.len() >= addr.sun_path.len() {
            return Err(EngineError::Refused("socket path too long"));
        }
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
            *d = *s as libc::c_char;
        }
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io_err());
        }
        let sa = (&addr as *const libc::sockaddr_un).cast();
        let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        let failed = if listen {
            libc::bind(fd, sa, len) < 0 || libc::listen(fd, 128) < 0
        } else {
            libc::connect(fd, sa, len) < 0
        };
        if failed {
            let e = io_err();
            close(fd);
            return Err(e);
        }
        Ok(fd)
    }
}

/// One attached client, as the socket thread sees it.
struct Conn {
    sock: RawFd,
    /// Its loop and its id there, once attached.
    id: Option<(usize, ClientId)>,
}

/// The socket thread: accept clients, answer their messages, detach them when their socket
/// closes.
fn serve(lfd: RawFd, loops: Vec<Arc<EngineThread>>, stop: Arc<EventFd>) {
    let shared: Vec<_> = loops.iter().map(|e| e.shared().clone()).collect();
    let mut conns: Vec<Conn> = Vec::new();
    loop {
        let mut pfds: Vec<libc::pollfd> = [lfd, stop.0]
            .iter()
            .chain(conns.iter().map(|c| &c.sock))
            .map(|&fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: a valid array of pollfds for the call.
        let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 1000) };
        if r < 0 {
            continue;
        }
        if pfds[1].revents != 0 {
            break;
        }
        if pfds[0].revents & libc::POLLIN != 0 {
            // SAFETY: accepting on our listening socket.
            let fd = unsafe {
                libc::accept4(
                    lfd,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_CLOEXEC,
                )
            };
            if fd >= 0 {
                conns.push(Conn { sock: fd, id: None });
            }
        }
        let mut gone = Vec::new();
        for (i, p) in pfds.iter().enumerate().skip(2) {
            if p.revents == 0 {
                continue;
            }
            // The loop with the fewest clients, for a client that attaches now.
            let mut load = vec![0usize; shared.len()];
            for c in &conns {
                if let Some((l, _)) = c.id {
                    load[l] += 1;
                }
            }
            let idle = (0..shared.len()).min_by_key(|&l| load[l]).unwrap_or(0);
            let c = &mut conns[i - 2];
            let l = c.id.map_or(idle, |(l, _)| l);
            match recv_msg(c.sock) {
                Ok(Some((msg, fds))) => {
                    let answer = handle(&shared[l], l, c, &msg, fds);
                    let (text, out): (String, Vec<Arc<EventFd>>) = match answer {
                        Ok(a) => a,
                        Err(e) => (format!("ERR {e}"), Vec::new()),
                    };
                    let raw: Vec<RawFd> = out.iter().map(|e| e.0).collect();
                    if send_msg(c.sock, text.as_bytes(), &raw).is_err() {
                        gone.push(i - 2);
                    }
                }
                Ok(None) | Err(_) => gone.push(i - 2),
            }
        }
        for i in gone.into_iter().rev() {
            let c = conns.swap_remove(i);
            if let Some((l, id)) = c.id {
                control(&shared[l], Control::Detach(id));
            }
            close(c.sock);
        }
    }
    for c in conns {
        close(c.sock);
    }
    close(lfd);
}

/// Carry out one client message; the answer and the eventfds to pass with it.
fn handle(
    shared: &crate::inproc::Shared,
    loop_index: usize,
    c: &mut Conn,
    msg: &str,
    fds: Vec<RawFd>,
) -> Result<(String, Vec<Arc<EventFd>>), EngineError> {
    let mut words = msg.split_ascii_whitespace();
    let verb = words.next().unwrap_or("");
    let arg: Option<u64> = words.next().and_then(|w| w.parse().ok());
    let one_fd = |fds: Vec<RawFd>| -> Result<RawFd, EngineError> {
        let mut it = fds.into_iter();
        match (it.next(), it.next()) {
            (Some(fd), None) => Ok(fd),
            (a, b) => {
                a.into_iter().chain(b).chain(it).for_each(close);
                Err(EngineError::Refused("expected exactly one descriptor"))
            }
        }
    };
    match (verb, arg) {
        ("ATTACH", Some(slots)) if c.id.is_none() => {
            let fd = one_fd(fds)?;
            let slots = u32::try_from(slots).ok().filter(|s| *s <= MAX_SLOTS);
            let Some((slots, total)) = slots.and_then(|s| rings_len(s).map(|l| (s, l))) else {
                close(fd);
                return Err(EngineError::Refused(
                    "ring slots must be a power of two within 2..=65536",
                ));
            };
            let mem = map(fd, total)?;
            let half = total / 2;
            let base = mem.ptr;
            // SAFETY: both rings lie inside the mapping, which the engine keeps (`keep`) for
            // as long as it uses them; each end is attached once.
            let (sq, cq) = unsafe {
                (
                    Consumer::attach(base, half, slots, DESC_LEN),
                    Producer::attach(base.add(half), half, slots, DESC_LEN),
                )
            };
            let (Ok(sq), Ok(cq)) = (sq, cq) else {
                return Err(EngineError::Refused("rings not initialised"));
            };
            let wake = Arc::new(EventFd::new()?);
            let id = request(shared, |reply| Control::Attach {
                sq,
                cq,
                keep: std::boxed::Box::new(mem),
                wake: wake.clone(),
                reply,
            })??;
            c.id = Some((loop_index, id));
            let engine_wake = Arc::new(EventFd::dup(shared.wake_fd())?);
            Ok((
                format!("OK {} {}", id.0, shared.local_addr()),
                vec![wake, engine_wake],
            ))
        }
        ("SEGMENT", Some(len)) if c.id.is_some() => {
            let fd = one_fd(fds)?;
            if len == 0 || len > MAX_SEGMENT {
                close(fd);
                return Err(EngineError::Refused("segment length"));
            }
            let mem = Arc::new(map(fd, len as usize)?);
            let seg = request(shared, |reply| Control::Segment {
                client: c.id.map_or(ClientId(0), |(_, id)| id),
                mem,
                reply,
            })?
            .ok_or(EngineError::Refused("too many segments"))?;
            Ok((format!("SEG {seg}"), Vec::new()))
        }
        ("PROCMEM", None) if c.id.is_some() => {
            let mem = ProcMem::new(one_fd(fds)?)?;
            let seg = request(shared, |reply| Control::ProcessMemory {
                client: c.id.map_or(ClientId(0), |(_, id)| id),
                foreign: Some(std::boxed::Box::new(mem)),
                reply,
            })?
            .ok_or(EngineError::Refused(
                "too many segments, or process memory given already",
            ))?;
            Ok((format!("SEG {seg}"), Vec::new()))
        }
        _ => {
            fds.into_iter().for_each(close);
            Err(EngineError::Refused("unknown or out-of-order message"))
        }
    }
}

/// A client process's memory, through the `/proc/<pid>/mem` it opened and passed: reads and
/// writes at its addresses, failing (never faulting the daemon) where it has no memory.
#[derive(Debug)]
struct ProcMem {
    fd: RawFd,
}

impl ProcMem {
    /// Take `fd` (owned; closed on error) after checking it is a file of procfs.
    fn new(fd: RawFd) -> Result<ProcMem, EngineError> {
        const PROC_SUPER_MAGIC: libc::c_long = 0x9fa0;
        // SAFETY: `st` is written by fstatfs.
        let ok = unsafe {
            let mut st: libc::statfs = std::mem::zeroed();
            libc::fstatfs(fd, &mut st) == 0 && st.f_type as libc::c_long == PROC_SUPER_MAGIC
        };
        if !ok {
            close(fd);
            return Err(EngineError::Refused(
                "process memory must be the client's /proc/self/mem",
            ));
        }
        Ok(ProcMem { fd })
    }

    /// `pread`/`pwrite` until `len` bytes moved; false on any error or short transfer.
    fn transfer(&self, addr: u64, buf: *mut u8, len: usize, write: bool) -> bool {
        let mut done = 0usize;
        while done < len {
            let Some(at) = addr
                .checked_add(done as u64)
                .and_then(|a| libc::off_t::try_from(a).ok())
            else {
                return false;
            };
            // SAFETY: `buf..buf + len` is a live buffer of the caller's.
            let n = unsafe {
                let p = buf.add(done).cast();
                if write {
                    libc::pwrite(self.fd, p, len - done, at)
                } else {
                    libc::pread(self.fd, p, len - done, at)
                }
            };
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            if n <= 0 {
                return false;
            }
            done += n as usize;
        }
        true
    }
}

impl crate::engine::ForeignMemory for ProcMem {
    fn read(&mut self, addr: u64, dst: &mut [u8]) -> bool {
        self.transfer(addr, dst.as_mut_ptr(), dst.len(), false)
    }

    fn write(&mut self, addr: u64, src: &[u8]) -> bool {
        // `pwrite` only reads the buffer.
        self.transfer(addr, src.as_ptr().cast_mut(), src.len(), true)
    }
}

impl Drop for ProcMem {
    fn drop(&mut self) {
        close(self.fd);
    }
}

/// A client's link to the daemon: its socket and the engine's doorbell.
#[derive(Debug)]
pub(crate) struct Remote {
    sock: RawFd,
    pub(crate) engine_wake: EventFd,
    engine: std::net::SocketAddr,
    gone: AtomicBool,
}

impl Remote {
    /// The daemon has gone (its end of the socket closed): the error naming it.
    pub(crate) fn gone(&self) -> Option<EngineError> {
        if !self.gone.load(Ordering::Relaxed) {
            let mut p = libc::pollfd {
                fd: self.sock,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd; a zero timeout.
            let r = unsafe { libc::poll(&mut p, 1, 0) };
            if r > 0 && p.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLIN) != 0 {
                self.gone.store(true, Ordering::Relaxed);
            }
        }
        self.gone
            .load(Ordering::Relaxed)
            .then_some(EngineError::Stopped(self.engine))
    }

    pub(crate) fn engine_addr(&self) -> std::net::SocketAddr {
        self.engine
    }

    /// Hand the daemon this process's memory (`PROCMEM`): the segment to register it in.
    pub(crate) fn process_segment(&self) -> Result<u32, EngineError> {
        // SAFETY: a NUL-terminated path; the descriptor is ours and closed below.
        let fd = unsafe { libc::open(c"/proc/self/mem".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io_err());
        }
        let seg = self.segment_request(b"PROCMEM", fd);
        close(fd);
        seg
    }

    pub(crate) fn memory(&self, len: usize) -> Result<(u32, Arc<Memory>), EngineError> {
        let mem = create_memory(len, "weir-segment")?;
        let fd = mem.memfd.unwrap_or(-1);
        let seg = self.segment_request(format!("SEGMENT {len}").as_bytes(), fd)?;
        Ok((seg, Arc::new(mem)))
    }

    /// Send `msg` with `fd` and read the daemon's `SEG <number>` answer.
    fn segment_request(&self, msg: &[u8], fd: RawFd) -> Result<u32, EngineError> {
        send_msg(self.sock, msg, &[fd])?;
        let (answer, fds) = recv_msg(self.sock)?.ok_or(EngineError::Stopped(self.engine))?;
        fds.into_iter().for_each(close);
        match answer
            .strip_prefix("SEG ")
            .and_then(|n| n.trim().parse().ok())
        {
            Some(seg) => Ok(seg),
            None => Err(EngineError::Daemon(answer)),
        }
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        close(self.sock);
    }
}

/// Attach to the daemon at `path`: a client with rings of `slots` slots in shared memory.
pub fn connect(path: &Path, slots: u32) -> Result<Client, EngineError> {
    let total = rings_len(slots).ok_or(EngineError::Refused("ring slots"))?;
    let mem = create_memory(total, "weir-rings")?;
    let half = total / 2;
    let base = mem.ptr;
    let ring_err = |_| EngineError::Refused("ring");
    // SAFETY: both rings lie inside the mapping, which the client keeps in `_rings`.
    let (sq, cq) = unsafe {
        ring::init(base, half, slots, DESC_LEN).map_err(ring_err)?;
        ring::init(base.add(half), half, slots, DESC_LEN).map_err(ring_err)?;
        (
            Producer::attach(base, half, slots, DESC_LEN).map_err(ring_err)?,
            Consumer::attach(base.add(half), half, slots, DESC_LEN).map_err(ring_err)?,
        )
    };
    let sock = seqpacket(path, false)?;
    let fail = |e: EngineError| {
        close(sock);
        e
    };
    send_msg(
        sock,
        format!("ATTACH {slots}").as_bytes(),
        &[mem.memfd.unwrap_or(-1)],
    )
    .map_err(fail)?;
    let Some((msg, fds)) = recv_msg(sock).map_err(fail)? else {
        close(sock);
        return Err(EngineError::Daemon("closed during attach".to_string()));
    };
    let mut parts = msg.split_ascii_whitespace();
    let parsed = match (parts.next(), parts.next(), parts.next(), fds.as_slice()) {
        (Some("OK"), Some(id), Some(addr), &[wake, engine]) => id
            .parse::<u16>()
            .ok()
            .zip(addr.parse::<std::net::SocketAddr>().ok())
            .map(|(id, addr)| (id, addr, wake, engine)),
        _ => None,
    };
    let Some((id, engine, wake, engine_wake)) = parsed else {
        fds.into_iter().for_each(close);
        close(sock);
        return Err(EngineError::Daemon(msg));
    };
    Ok(Client {
        id: ClientId(id),
        link: Link::Daemon(Remote {
            sock,
            engine_wake: EventFd(engine_wake),
            engine,
            gone: AtomicBool::new(false),
        }),
        sq,
        cq,
        _rings: std::boxed::Box::new(mem),
        wake: Arc::new(EventFd(wake)),
        next: 0,
        spin: StdDuration::from_micros(50),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desc::{CqeKind, Op};
    use crate::inproc::EngineThread;
    use crate::inproc::tests::{done, pair};

    fn cfg() -> HostConfig {
        let mut c = HostConfig::default();
        c.udp.bind = std::net::Ipv4Addr::LOCALHOST.into();
        c
    }

    fn sock_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("weir-fw-{}-{name}.sock", std::process::id()))
    }

    fn register(c: &mut Client, segment: u32, len: u64) -> u32 {
        let u = c
            .submit(Op::Register {
                segment,
                offset: 0,
                len,
                remote_write: false,
            })
            .unwrap();
        done(c, u, CqeKind::Registered).region
    }

    /// Clients of one daemon, attached through its socket with their rings and memory in
    /// memfds, move 4 MiB each to another engine's clients; bytes compared.
    #[test]
    fn clients_share_one_daemon() {
        let path = sock_path("share");
        let d = Daemon::start(&path, cfg(), EngineConfig::default()).unwrap();
        // The socket was renamed into place once listening: no temporary name is left, and
        // the path takes a connection at once.
        assert!(!listen_tmp(&path).exists());
        close(seqpacket(&path, false).expect("the daemon's socket takes connections"));
        let other = EngineThread::start(cfg(), EngineConfig::default()).unwrap();
        let len = 4 << 20;
        let mut handles = Vec::new();
        for k in 0..3u64 {
            let path = path.clone();
            let mut rx = other.client().unwrap();
            handles.push(std::thread::spawn(move || {
                let mut tx = connect(&path, 256).unwrap();
                let (ht, hr) = pair(&mut tx, &mut rx, 100 + k);
                let (st, mt) = tx.memory(len).unwrap();
                let (sr, mr) = rx.memory(len).unwrap();
                let pattern: Vec<u8> = (0..len).map(|i| (i as u64 * (k + 3)) as u8).collect();
                mt.write(0, &pattern);
                let (rt, rr) = (
                    register(&mut tx, st, len as u64),
                    register(&mut rx, sr, len as u64),
                );
                let r = rx
                    .submit(Op::Recv {
                        conn: hr,
                        region: rr,
                        offset: 0,
                        len: len as u64,
                        tag: None,
                    })
                    .unwrap();
                let s = tx
                    .submit(Op::Send {
                        conn: ht,
                        region: rt,
                        offset: 0,
                        len: len as u64,
                        tag: k,
                    })
                    .unwrap();
                done(&mut tx, s, CqeKind::Send);
                let got = done(&mut rx, r, CqeKind::Recv);
                assert_eq!((got.len, got.tag), (len as u64, k));
                let mut back = vec![0u8; len];
                mr.read(0, &mut back);
                assert!(back == pattern, "client {k}: bytes differ");
            }));
        }
        for h in handles {
            h.join().unwrap();
        }
        let (st, _, _) = d.engine().stats().unwrap();
        // Connect, register and send from each of the three clients.
        assert_eq!(st.submissions, 9, "{st:?}");
    }

    /// Memory the clients did not get from the engine (plain heap vectors), registered by
    /// address through `process_segment`: a daemon client sends from its vector to an
    /// in-process client, which receives into its own, and back; bytes compared both ways.
    /// The daemon refuses addresses the client does not have (`Fault`), writable regions
    /// there (`Unsupported`), a second `PROCMEM`, and a descriptor that is not procfs.
    #[test]
    fn process_memory_by_address_both_placements() {
        use crate::desc::Status;
        let path = sock_path("procmem");
        let _d = Daemon::start(&path, cfg(), EngineConfig::default()).unwrap();
        let other = EngineThread::start(cfg(), EngineConfig::default()).unwrap();
        let mut a = connect(&path, 64).unwrap();
        let mut b = other.client().unwrap();
        // SAFETY: every region registered below lives (vectors not reallocated) until it is
        // deregistered or the client detaches, and is not touched while requests are out.
        let (sa, sb) = unsafe { (a.process_segment().unwrap(), b.process_segment().unwrap()) };
        // SAFETY: as above.
        let again = unsafe { a.process_segment() };
        assert!(again.is_err(), "a second PROCMEM was taken");
        let (ha, hb) = pair(&mut a, &mut b, 4);
        let len = 3 << 20;
        let mut va: Vec<u8> = (0..len).map(|i| (i * 13 + 1) as u8).collect();
        let mut vb: Vec<u8> = vec![0; len];
        let reg = |c: &mut Client, seg: u32, addr: u64, len: u64, rw: bool| {
            let u = c
                .submit(Op::Register {
                    segment: seg,
                    offset: addr,
                    len,
                    remote_write: rw,
                })
                .unwrap();
            let r = c.wait(StdDuration::from_secs(10)).unwrap();
            assert_eq!((r.user, r.kind), (u, CqeKind::Registered));
            r
        };
        let ra = reg(&mut a, sa, va.as_mut_ptr() as u64, len as u64, false);
        let rb = reg(&mut b, sb, vb.as_mut_ptr() as u64, len as u64, false);
        assert_eq!((ra.status, rb.status), (Status::Ok, Status::Ok));
        let xfer = |from: &mut Client, fc, fr, to: &mut Client, tc, tr| {
            let r = to
                .submit(Op::Recv {
                    conn: tc,
                    region: tr,
                    offset: 0,
                    len: len as u64,
                    tag: None,
                })
                .unwrap();
            let s = from
                .submit(Op::Send {
                    conn: fc,
                    region: fr,
                    offset: 0,
                    len: len as u64,
                    tag: 0,
                })
                .unwrap();
            done(from, s, CqeKind::Send);
            assert_eq!(done(to, r, CqeKind::Recv).len, len as u64);
        };
        xfer(&mut a, ha, ra.region, &mut b, hb, rb.region);
        assert!(vb == va, "daemon -> inproc: bytes differ");
        vb.iter_mut().for_each(|x| *x = x.wrapping_add(1));
        va.fill(0);
        xfer(&mut b, hb, rb.region, &mut a, ha, ra.region);
        assert!(va == vb, "inproc -> daemon: bytes differ");
        // Refusals on the daemon's side.
        assert_eq!(reg(&mut a, sa, 4096, 4096, false).status, Status::Fault);
        let ptr = va.as_mut_ptr() as u64;
        assert_eq!(reg(&mut a, sa, ptr, 4096, true).status, Status::Unsupported);
        // A descriptor that is not procfs.
        let sock = seqpacket(&path, false).unwrap();
        let raw = |sock: RawFd, msg: &str, fds: &[RawFd]| -> String {
            send_msg(sock, msg.as_bytes(), fds).unwrap();
            let (answer, got) = recv_msg(sock).unwrap().unwrap();
            got.into_iter().for_each(close);
            answer
        };
        let rings = create_memory(rings_len(64).unwrap(), "r").unwrap();
        // SAFETY: ring memory we own.
        unsafe {
            ring::init(rings.ptr, rings.len / 2, 64, DESC_LEN).unwrap();
            ring::init(rings.ptr.add(rings.len / 2), rings.len / 2, 64, DESC_LEN).unwrap();
        }
        assert!(raw(sock, "ATTACH 64", &[rings.memfd.unwrap()]).starts_with("OK"));
        let name = CString::new("x").unwrap();
        // SAFETY: plain syscall.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        let answer = raw(sock, "PROCMEM", &[fd]);
        close(fd);
        assert!(answer.starts_with("ERR"), "{answer}");
        close(sock);
    }

    /// With two loops, attaching clients are spread over both (each its own address), and a
    /// client of one loop reaches a client of the other.
    #[test]
    fn loops_share_the_clients() {
        let path = sock_path("loops");
        let d = Daemon::with_loops(&path, cfg(), EngineConfig::default(), 2).unwrap();
        let mut a = connect(&path, 64).unwrap();
        let mut b = connect(&path, 64).unwrap();
        let addrs: Vec<_> = d.loops().map(|e| e.local_addr()).collect();
        assert_eq!(addrs.len(), 2);
        assert_ne!(a.engine_addr(), b.engine_addr(), "one client per loop");
        assert!(addrs.contains(&a.engine_addr()) && addrs.contains(&b.engine_addr()));
        pair(&mut a, &mut b, 9);
    }

    /// What the daemon refuses: unsealed memory, bad ring shapes, memory before attaching,
    /// unknown messages — each an `ERR`, the daemon going on.
    #[test]
    fn bad_attachments_are_refused() {
        let path = sock_path("bad");
        let _d = Daemon::start(&path, cfg(), EngineConfig::default()).unwrap();
        let raw = |msg: &str, fds: &[RawFd]| -> String {
            let sock = seqpacket(&path, false).unwrap();
            send_msg(sock, msg.as_bytes(), fds).unwrap();
            let (answer, got) = recv_msg(sock).unwrap().unwrap();
            got.into_iter().for_each(close);
            close(sock);
            answer
        };
        // An unsealed memfd.
        let name = CString::new("x").unwrap();
        // SAFETY: plain syscalls on a descriptor we own.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        // SAFETY: as above.
        unsafe { libc::ftruncate(fd, 1 << 20) };
        assert!(raw("ATTACH 64", &[fd]).starts_with("ERR"), "unsealed");
        close(fd);
        let good = create_memory(rings_len(64).unwrap(), "r").unwrap();
        let gfd = good.memfd.unwrap();
        assert!(raw("ATTACH 63", &[gfd]).starts_with("ERR"), "slots");
        assert!(
            raw("ATTACH 4096", &[gfd]).starts_with("ERR"),
            "larger than the memfd"
        );
        assert!(
            raw("ATTACH 64", &[gfd]).starts_with("ERR"),
            "rings not initialised"
        );
        assert!(
            raw("SEGMENT 4096", &[gfd]).starts_with("ERR"),
            "before attach"
        );
        assert!(raw("HELLO", &[]).starts_with("ERR"));
        assert!(raw("ATTACH 64", &[]).starts_with("ERR"), "no descriptor");
        // A sealed but sparse memfd: the daemon would have to allocate it.
        let sparse = CString::new("s").unwrap();
        // SAFETY: plain syscalls on a descriptor we own.
        let sfd = unsafe {
            let fd =
                libc::memfd_create(sparse.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING);
            libc::ftruncate(fd, 1 << 30);
            libc::fcntl(
                fd,
                libc::F_ADD_SEALS,
                libc::F_SEAL_SHRINK | libc::F_SEAL_GROW,
            );
            fd
        };
        let mut c = connect(&path, 64).unwrap();
        let Link::Daemon(r) = &c.link else {
            panic!("a daemon client")
        };
        send_msg(r.sock, b"SEGMENT 1073741824", &[sfd]).unwrap();
        let (answer, _) = recv_msg(r.sock).unwrap().unwrap();
        assert!(answer.contains("allocated"), "sparse memfd: {answer}");
        close(sfd);
        // Still serving.
        let u = c.submit(Op::Nop).unwrap();
        done(&mut c, u, CqeKind::Done);
    }

    /// The child side of `a_killed_client_is_detached_and_a_dead_daemon_is_reported`
    /// (which runs it with `--ignored`): attach, connect, report, wait to be killed.
    #[test]
    #[ignore = "the child process of a_killed_client_is_detached_and_a_dead_daemon_is_reported"]
    fn child_role() {
        let (Ok(path), Ok(remote)) = (
            std::env::var("WEIR_FW_CHILD_SOCKET"),
            std::env::var("WEIR_FW_CHILD_REMOTE"),
        ) else {
            return;
        };
        let mut c = connect(Path::new(&path), 64).unwrap();
        let u = c
            .submit(Op::Connect {
                remote: remote.parse().unwrap(),
                user_data: 5,
                secret: None,
            })
            .unwrap();
        done(&mut c, u, CqeKind::Connected);
        std::println!("CONNECTED");
        std::thread::sleep(StdDuration::from_secs(60));
    }

    /// A client process that dies (SIGKILL) is detached: its connection closes for the peer.
    /// When the daemon stops, its remaining clients' calls fail naming the engine.
    #[test]
    fn a_killed_client_is_detached_and_a_dead_daemon_is_reported() {
        use std::io::BufRead;
        let path = sock_path("kill");
        let d = Daemon::start(&path, cfg(), EngineConfig::default()).unwrap();
        let other = EngineThread::start(cfg(), EngineConfig::default()).unwrap();
        let mut rx = other.client().unwrap();
        let u = rx
            .submit(Op::Listen {
                key: 5,
                secret: None,
                span: 1,
            })
            .unwrap();
        done(&mut rx, u, CqeKind::Done);
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "daemon::tests::child_role",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("WEIR_FW_CHILD_SOCKET", &path)
            .env("WEIR_FW_CHILD_REMOTE", other.local_addr().to_string())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let mut seen = Vec::new();
        for l in std::io::BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            if l.contains("CONNECTED") {
                seen.clear();
                break;
            }
            seen.push(l);
        }
        assert!(seen.is_empty(), "child did not connect: {seen:?}");
        let acc = rx.wait(StdDuration::from_secs(10)).unwrap();
        assert_eq!(acc.kind, CqeKind::Accepted);
        child.kill().unwrap();
        child.wait().unwrap();
        let closed = rx.wait(StdDuration::from_secs(10)).unwrap();
        assert_eq!((closed.kind, closed.conn), (CqeKind::Closed, acc.conn));
        // A client of the daemon sees it die.
        let mut c = connect(&path, 64).unwrap();
        let addr = d.local_addr();
        drop(d);
        match c.wait(StdDuration::from_secs(10)) {
            Err(EngineError::Stopped(at)) => assert_eq!(at, addr),
            other => panic!("expected the daemon's death, got {other:?}"),
        }
    }
}
