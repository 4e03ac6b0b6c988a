//! The plugin's one implementation behind every exported table version.
//!
//! **Design.** One [`Host`] (engine thread + UDP sockets) per device, started by the first
//! listen/connect on that device and dropped — joining its engine thread — when the last
//! listen comm, connect attempt and comm using it is gone. One host per device rather than
//! per listen comm because NCCL opens a comm per channel per peer: a thread and a socket set
//! per comm would not scale, and one endpoint multiplexes any number of connections. The
//! price is routing: a host's completions and accepted connections are shared by all comms of
//! the device, so they are routed by [`WrId`] (completions) and connection token (accepts).
//!
//! **Handles.** Comms, requests, memory handles and v11 contexts handed to NCCL are opaque
//! ids dressed as pointers (`BASE + 16·id`), never addresses: every call looks its arguments up
//! in the tables below, so a garbage, stale or twice-closed pointer is an error, never a
//! dereference. Ids are never reused within a load.
//!
//! **Locking.** All tables sit behind one mutex. `test` polls the host's completions with
//! the lock released and routes them after re-locking; a completion that names no live
//! request (its comm was closed) is dropped.
//!
//! **Progress.** Made by the engine (the host's engine thread, or the engine placement's).
//! `test` only polls: NCCL's proxy thread calls it in a tight loop, and when each call also ran
//! an engine iteration the proxy and the engine thread took turns on the engine lock (the 64
//! KiB point of `weir bench nccl-abi` moved 0.9–1.2 GB/s that way, 3.8–4.6 GB/s without;
//! BENCHMARKS.md).
//!
//! **Registrations** belong to the device, not the comm (`regIsGlobal = 1`): a cache keyed by
//! (address, length) lets repeated `regMr` calls share one transport region; they end with
//! their last `deregMr` or when the device's host stops.
//!
//! **Closing.** `closeRecv` closes the connection. `closeSend` leaves it open ("lingering")
//! until the receiver closes it or the host stops: the transport has no half-close, and a
//! CLOSE would make the receiver drop messages it acknowledged but has not matched yet. Each
//! `connect` and close then closes, in the engine, the lingering connections whose receiver
//! closed or that failed (`sweep_lingering`), so open/close cycles leave nothing behind.
//!
//! **Who may connect.** Each listen comm's handle, which NCCL exchanges through its bootstrap,
//! carries a random 64-bit token (which listen comm) and a random 128-bit secret. A connector's
//! SYN names the token and carries a MAC keyed with the secret; the engine answers only SYNs
//! with a valid MAC for a live listen comm (`Host::admit`), with one stateless SYN-ACK cookie
//! per SYN, and creates a connection only when the connector returns the cookie. A SYN flood
//! from anyone without a handle creates no state and draws no reply. At most 1,024 completed
//! connections (256 per source address) wait for `accept`, none longer than 120 s; the rest
//! are closed (`HostStats::unaccepted_refused`, `unaccepted_expired`).
//!
//! **Memory.** `deregMr` of a region that a request in flight uses fails that request's
//! connection (`Endpoint::deregister`, like an RDMA local protection error): `test` reports
//! the error instead of waiting forever. Failed requests name the peer's address.

use std::collections::{HashMap, VecDeque};
use std::ffi::{c_int, c_void};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use weir_datapath::{FaultConfig, HostConfig, HostError};
use weir_firmware::net::{Net as Host, Placement};
use weir_transport::{Completion, ConnId, PostError, RegionId, WorkRequest, WrError, WrId};

use crate::config::{Config, Device, discover};
use crate::ffi::{self, NcclResult};
use crate::log;

/// Largest message (NCCL's `NCCL_MAX_NET_SIZE`; `test` reports sizes as `int`).
pub(crate) const MAX_P2P_BYTES: usize = 1 << 30;
/// Most receives in one grouped `irecv`.
pub(crate) const MAX_RECVS: usize = 8;
/// Requests in flight per receive comm; a send comm gets `MAX_RECVS` times as many.
const RECV_REQUESTS: usize = ffi::NCCL_NET_MAX_REQUESTS;
const SEND_REQUESTS: usize = ffi::NCCL_NET_MAX_REQUESTS * MAX_RECVS;
/// Completions drained per `test` call.
const POLL_BATCH: usize = 64;

/// Handle magic ("WEIRNCCL") and layout version.
const MAGIC: u64 = 0x5745_4952_4e43_434c;
const HANDLE_VERSION: u32 = 2;
/// Field offsets in the 128-byte handle.
mod field {
    use std::ops::Range;
    pub(super) const MAGIC: Range<usize> = 0..8;
    pub(super) const VERSION: Range<usize> = 8..12;
    pub(super) const FAMILY: usize = 12;
    pub(super) const ADDR: Range<usize> = 16..32;
    pub(super) const PORT: Range<usize> = 32..34;
    pub(super) const TOKEN: Range<usize> = 40..48;
    /// Written by `connect`: the in-progress attempt (0 = none).
    pub(super) const ATTEMPT: Range<usize> = 48..56;
    /// The listen comm's 128-bit secret: SYNs carry a MAC keyed with it (never the secret).
    pub(super) const SECRET: Range<usize> = 64..80;
}

/// Opaque ids are `BASE + STRIDE·id` as pointers.
const BASE: usize = 0x5745_0000_0000;
const STRIDE: usize = 16;

/// A failure, mapped to an `ncclResult_t` with a message for the log.
#[derive(Debug)]
pub(crate) enum Error {
    /// NULL or unknown pointer, bad size: `ncclInvalidArgument`.
    Arg(String),
    /// NCCL misused the plugin (truncation): `ncclInternalError`.
    Internal(String),
    /// Network or system failure: `ncclSystemError`.
    System(String),
    /// Configuration error: `ncclInvalidUsage`.
    Usage(String),
}

impl Error {
    /// The `ncclResult_t` and the message.
    pub(crate) fn code(&self) -> (NcclResult, &str) {
        match self {
            Error::Arg(m) => (ffi::NCCL_INVALID_ARGUMENT, m),
            Error::Internal(m) => (ffi::NCCL_INTERNAL_ERROR, m),
            Error::System(m) => (ffi::NCCL_SYSTEM_ERROR, m),
            Error::Usage(m) => (ffi::NCCL_INVALID_USAGE, m),
        }
    }
}

impl From<HostError> for Error {
    fn from(e: HostError) -> Self {
        Error::System(e.to_string())
    }
}

pub(crate) type Result<T> = std::result::Result<T, Error>;

/// Fail with `ncclInvalidArgument` when `p` is NULL.
pub(crate) fn nonnull<T>(p: *const T, what: &str) -> Result<()> {
    if p.is_null() {
        Err(Error::Arg(format!("{what} is NULL")))
    } else {
        Ok(())
    }
}

fn to_ptr(id: u64) -> *mut c_void {
    (BASE + STRIDE * id as usize) as *mut c_void
}

fn from_ptr(p: *mut c_void) -> Option<u64> {
    let a = p as usize;
    (a >= BASE && (a - BASE).is_multiple_of(STRIDE)).then(|| ((a - BASE) / STRIDE) as u64)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Send,
    Recv,
}

#[derive(Debug)]
struct Listen {
    dev: usize,
    token: u64,
    ctx: u64,
}

#[derive(Debug)]
struct Attempt {
    dev: usize,
    conn: ConnId,
    ctx: u64,
    peer: SocketAddr,
}

#[derive(Debug)]
struct Comm {
    dev: usize,
    conn: ConnId,
    kind: Kind,
    ctx: u64,
    inflight: usize,
    /// The other end, for error messages.
    peer: SocketAddr,
}

/// A memory handle: registrations are global to the device (`regIsGlobal`), shared through
/// the device's cache by (address, length), and live until `deregMr` or until the device's
/// host stops (its last comm closed).
#[derive(Debug)]
struct Mr {
    dev: usize,
    region: RegionId,
    base: usize,
    len: usize,
}

#[derive(Debug)]
struct Part {
    done: bool,
    len: u64,
    err: Option<WrError>,
}

#[derive(Debug)]
struct Req {
    comm: u64,
    dev: usize,
    wrs: Vec<WrId>,
    parts: Vec<Part>,
}

#[derive(Debug, Default)]
struct DevState {
    host: Option<Arc<Host>>,
    users: usize,
    /// Posted work requests: (request id, part index).
    routes: HashMap<WrId, (u64, usize)>,
    /// Registration cache: (address, length) → (region, memory handles using it).
    cache: HashMap<(usize, usize), (RegionId, usize)>,
    /// Connections of closed send comms, left open so the receiver can still take messages
    /// its engine accepted but no receive had claimed yet; the receiver's close (or the
    /// host's stop) ends them.
    lingering: VecDeque<ConnId>,
}

#[derive(Debug)]
struct State {
    devices: Vec<Device>,
    devs: Vec<DevState>,
    next: u64,
    ctxs: HashMap<u64, ()>,
    listens: HashMap<u64, Listen>,
    attempts: HashMap<u64, Attempt>,
    comms: HashMap<u64, Comm>,
    mrs: HashMap<u64, Mr>,
    reqs: HashMap<u64, Req>,
}

static CONFIG: OnceLock<Config> = OnceLock::new();
static STATE: Mutex<Option<State>> = Mutex::new(None);

fn lock() -> MutexGuard<'static, Option<State>> {
    STATE.lock().unwrap_or_else(|p| p.into_inner())
}

fn with<R>(f: impl FnOnce(&mut State) -> Result<R>) -> Result<R> {
    let mut g = lock();
    match g.as_mut() {
        Some(s) => f(s),
        None => Err(Error::Usage(
            "the plugin is not initialised (call init first)".into(),
        )),
    }
}

/// `init`: read the configuration (once), find devices, and for v11+ return a context id.
pub(crate) fn init(logger: Option<ffi::Logger>, want_ctx: bool) -> Result<u64> {
    log::set_logger(logger);
    let mut fresh = false;
    let cfg = CONFIG.get_or_init(|| {
        fresh = true;
        Config::from_env()
    });
    log::set_stderr_level(cfg.debug);
    if let Err(e) = &cfg.cc {
        return Err(Error::Usage(format!("configuration: {e}")));
    }
    if let Err(e) = &cfg.engine {
        return Err(Error::Usage(format!("configuration: {e}")));
    }
    let mut g = lock();
    if g.is_none() {
        let devices = discover(cfg);
        if devices.is_empty() {
            return Err(Error::Usage(format!(
                "no usable interface (WEIR_IFNAME={:?})",
                cfg.ifname
            )));
        }
        let devs = devices.iter().map(|_| DevState::default()).collect();
        *g = Some(State {
            devices,
            devs,
            next: 1,
            ctxs: HashMap::new(),
            listens: HashMap::new(),
            attempts: HashMap::new(),
            comms: HashMap::new(),
            mrs: HashMap::new(),
            reqs: HashMap::new(),
        });
        fresh = true;
    }
    let Some(s) = g.as_mut() else {
        return Err(Error::Internal("state vanished".into()));
    };
    if fresh {
        for d in &s.devices {
            log::info(&format!(
                "device {:?}: if {} addr {} speed {} Mbps mtu {} pci {:?}",
                d.name, d.ifname, d.addr, d.speed, d.mtu, d.pci_path
            ));
        }
        log::info(&format!("config {cfg:?}"));
    }
    if want_ctx {
        let id = s.id();
        s.ctxs.insert(id, ());
        Ok(id)
    } else {
        Ok(0)
    }
}

/// `devices`.
pub(crate) fn devices() -> Result<c_int> {
    with(|s| Ok(s.devices.len() as c_int))
}

/// What `getProperties` reports, version-independent.
#[derive(Debug)]
pub(crate) struct Props {
    pub(crate) name: *mut std::ffi::c_char,
    pub(crate) pci_path: *mut std::ffi::c_char,
    pub(crate) guid: u64,
    pub(crate) speed: c_int,
    /// One-way latency, µs.
    pub(crate) latency: f32,
}

/// `getProperties`: the strings live as long as the library's state (never freed).
pub(crate) fn properties(dev: c_int) -> Result<Props> {
    with(|s| {
        let d = s.device(dev)?;
        Ok(Props {
            name: d.name.as_ptr().cast_mut(),
            pci_path: d
                .pci_path
                .as_ref()
                .map_or(std::ptr::null_mut(), |p| p.as_ptr().cast_mut()),
            guid: dev as u64,
            speed: d.speed,
            latency: CONFIG
                .get()
                .map_or(crate::config::DEFAULT_LATENCY_US, |c| c.latency_us),
        })
    })
}

/// `finalize(ctx)`: close everything the context opened.
pub(crate) fn finalize(ctx: *mut c_void) -> Result<()> {
    let doomed = with(|s| {
        let id = from_ptr(ctx)
            .filter(|id| s.ctxs.contains_key(id))
            .ok_or_else(|| Error::Arg(format!("finalize: unknown context {ctx:p}")))?;
        s.ctxs.remove(&id);
        let mut doomed = Vec::new();
        let listens: Vec<u64> = s
            .listens
            .iter()
            .filter(|(_, l)| l.ctx == id)
            .map(|(k, _)| *k)
            .collect();
        for l in listens {
            s.close_listen(l)?;
        }
        let attempts: Vec<u64> = s
            .attempts
            .iter()
            .filter(|(_, a)| a.ctx == id)
            .map(|(k, _)| *k)
            .collect();
        for a in attempts {
            if let Some(at) = s.attempts.remove(&a) {
                if let Some(h) = s.devs[at.dev].host.clone() {
                    h.close(at.conn);
                }
                doomed.extend(s.release(at.dev));
            }
        }
        let comms: Vec<u64> = s
            .comms
            .iter()
            .filter(|(_, c)| c.ctx == id)
            .map(|(k, _)| *k)
            .collect();
        for c in comms {
            doomed.extend(s.close_comm(c)?);
        }
        Ok(doomed)
    })?;
    drop(doomed); // joins engine threads, outside the lock
    Ok(())
}

/// `listen`: write the handle, return the listen comm.
pub(crate) fn listen(ctx: u64, dev: c_int, handle: &mut [u8; 128]) -> Result<*mut c_void> {
    with(|s| {
        let dev = s.device_index(dev)?;
        let host = s.acquire(dev)?;
        let token = weir_datapath::os_seed() | 1;
        let secret =
            u128::from(weir_datapath::os_seed()) << 64 | u128::from(weir_datapath::os_seed());
        let local = host.local_addr();
        handle.fill(0);
        handle[field::MAGIC].copy_from_slice(&MAGIC.to_le_bytes());
        handle[field::VERSION].copy_from_slice(&HANDLE_VERSION.to_le_bytes());
        match local.ip() {
            IpAddr::V4(a) => {
                handle[field::FAMILY] = 4;
                handle[field::ADDR][..4].copy_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                handle[field::FAMILY] = 6;
                handle[field::ADDR].copy_from_slice(&a.octets());
            }
        }
        handle[field::PORT].copy_from_slice(&local.port().to_be_bytes());
        handle[field::TOKEN].copy_from_slice(&token.to_le_bytes());
        handle[field::SECRET].copy_from_slice(&secret.to_le_bytes());
        // Only SYNs for this token with a MAC keyed by its secret (or another live listen
        // comm's) are answered: peers learn both from the handle NCCL exchanges out of band.
        host.admit(token, secret)
            .map_err(|e| Error::System(format!("listen on {local}: {e}")))?;
        let id = s.id();
        s.listens.insert(id, Listen { dev, token, ctx });
        Ok(to_ptr(id))
    })
}

/// Close (in the engine, so it forgets them) the lingering connections of closed send
/// comms that are over: the receiver closed its end, or the connection failed. Dropping them
/// from the list without `Host::close` left them in the engine's connection table for as
/// long as the device lived, so a job that opens and closes comms leaked a connection per
/// cycle and made every engine operation slower.
///
/// At most `SWEEP_BATCH` connections are looked at per call, oldest first, the others going
/// round to the back: closing N send comms before their receivers must not cost N² checks.
fn sweep_lingering(h: &Host, lingering: &mut VecDeque<ConnId>) {
    for _ in 0..SWEEP_BATCH.min(lingering.len()) {
        let Some(conn) = lingering.pop_front() else {
            break;
        };
        if matches!(h.is_connected(conn), Ok(true)) {
            lingering.push_back(conn);
        } else {
            h.close(conn);
        }
    }
}

/// Lingering connections looked at per `sweep_lingering` call: more than one per call, so
/// the list shrinks faster than comms are closed.
const SWEEP_BATCH: usize = 8;

/// `connect`: non-blocking; NULL until the handshake completes (NCCL retries with the same
/// handle, in which the first call left its attempt id).
pub(crate) fn connect(ctx: u64, dev: c_int, handle: &mut [u8; 128]) -> Result<*mut c_void> {
    let (remote, token, secret, attempt) = parse_handle(handle)?;
    with(|s| {
        let dev = s.device_index(dev)?;
        if attempt == 0 {
            let host = s.acquire(dev)?;
            s.sweep_lingering(dev);
            let conn = host.connect_authenticated(remote, token, secret);
            let id = s.id();
            s.attempts.insert(
                id,
                Attempt {
                    dev,
                    conn,
                    ctx,
                    peer: remote,
                },
            );
            handle[field::ATTEMPT].copy_from_slice(&id.to_le_bytes());
            return Ok(std::ptr::null_mut());
        }
        let Some(a) = s.attempts.get(&attempt) else {
            return Err(Error::Arg(format!(
                "connect: the handle names unknown attempt {attempt}"
            )));
        };
        let (adev, conn, actx, peer) = (a.dev, a.conn, a.ctx, a.peer);
        let Some(host) = s.devs[adev].host.clone() else {
            return Err(Error::Internal("connect: device host missing".into()));
        };
        match host.is_connected(conn) {
            Ok(false) => Ok(std::ptr::null_mut()),
            Ok(true) => {
                s.attempts.remove(&attempt);
                handle[field::ATTEMPT].fill(0);
                let id = s.id();
                s.comms.insert(
                    id,
                    Comm {
                        dev: adev,
                        conn,
                        kind: Kind::Send,
                        ctx: actx,
                        inflight: 0,
                        peer,
                    },
                );
                Ok(to_ptr(id))
            }
            Err(e) => {
                s.attempts.remove(&attempt);
                handle[field::ATTEMPT].fill(0);
                let doomed = s.release(adev);
                drop(doomed);
                Err(Error::System(format!("connect to {remote}: {e}")))
            }
        }
    })
}

/// (listener address, token, secret, attempt) from a handle.
fn parse_handle(h: &[u8; 128]) -> Result<(SocketAddr, u64, u128, u64)> {
    let u64_at = |r: std::ops::Range<usize>| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&h[r]);
        u64::from_le_bytes(b)
    };
    if u64_at(field::MAGIC) != MAGIC {
        return Err(Error::Arg("connect: not a weir handle (bad magic)".into()));
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(&h[field::VERSION]);
    if u32::from_le_bytes(v) != HANDLE_VERSION {
        return Err(Error::Arg("connect: unsupported handle version".into()));
    }
    let ip = match h[field::FAMILY] {
        4 => {
            let mut a = [0u8; 4];
            a.copy_from_slice(&h[field::ADDR][..4]);
            IpAddr::V4(Ipv4Addr::from(a))
        }
        6 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&h[field::ADDR]);
            IpAddr::V6(Ipv6Addr::from(a))
        }
        f => return Err(Error::Arg(format!("connect: bad address family {f}"))),
    };
    let port = u16::from_be_bytes([h[field::PORT.start], h[field::PORT.start + 1]]);
    let mut secret = [0u8; 16];
    secret.copy_from_slice(&h[field::SECRET]);
    Ok((
        SocketAddr::new(ip, port),
        u64_at(field::TOKEN),
        u128::from_le_bytes(secret),
        u64_at(field::ATTEMPT),
    ))
}

/// `accept`: non-blocking; NULL until a peer with this listen comm's token has connected.
pub(crate) fn accept(listen: *mut c_void) -> Result<*mut c_void> {
    with(|s| {
        let id = from_ptr(listen)
            .filter(|id| s.listens.contains_key(id))
            .ok_or_else(|| Error::Arg(format!("accept: unknown listen comm {listen:p}")))?;
        let (dev, token, ctx) = {
            let l = &s.listens[&id];
            (l.dev, l.token, l.ctx)
        };
        let Some(host) = s.devs[dev].host.clone() else {
            return Err(Error::Internal("accept: device host missing".into()));
        };
        // The engine keeps the waiting connections (capped, expired after a while); each
        // listen comm takes those that name its token.
        let Some((conn, peer)) = host.try_accept_for(token) else {
            return Ok(std::ptr::null_mut());
        };
        s.acquire(dev)?;
        let cid = s.id();
        s.comms.insert(
            cid,
            Comm {
                dev,
                conn,
                kind: Kind::Recv,
                ctx,
                inflight: 0,
                peer,
            },
        );
        Ok(to_ptr(cid))
    })
}

/// `closeListen`.
pub(crate) fn close_listen(listen: *mut c_void) -> Result<()> {
    let doomed = with(|s| {
        let id = from_ptr(listen)
            .filter(|id| s.listens.contains_key(id))
            .ok_or_else(|| Error::Arg(format!("closeListen: unknown listen comm {listen:p}")))?;
        Ok((s.close_listen(id)?, s.sweep_attempts()))
    })?;
    drop(doomed);
    Ok(())
}

/// `closeSend` / `closeRecv`.
pub(crate) fn close_comm(comm: *mut c_void, send: bool) -> Result<()> {
    let kind = if send { Kind::Send } else { Kind::Recv };
    let doomed = with(|s| {
        let id = s.comm_id(comm, kind, if send { "closeSend" } else { "closeRecv" })?;
        Ok((s.close_comm(id)?, s.sweep_attempts()))
    })?;
    drop(doomed);
    Ok(())
}

/// `regMr`: host memory only.
pub(crate) fn reg_mr(
    comm: *mut c_void,
    data: *mut c_void,
    size: usize,
    ty: c_int,
) -> Result<*mut c_void> {
    if ty != ffi::NCCL_PTR_HOST {
        return Err(Error::Arg(format!(
            "regMr: pointer type {ty} unsupported (host memory only, NCCL_PTR_HOST)"
        )));
    }
    let Some(ptr) = NonNull::new(data.cast::<u8>()) else {
        return Err(Error::Arg("regMr: data is NULL".into()));
    };
    if size > isize::MAX as usize {
        return Err(Error::Arg(format!("regMr: size {size} too large")));
    }
    with(|s| {
        let cid = s.any_comm_id(comm, "regMr")?;
        let dev = s.comms[&cid].dev;
        let Some(host) = s.devs[dev].host.clone() else {
            return Err(Error::Internal("regMr: device host missing".into()));
        };
        let key = (data as usize, size);
        let region = match s.devs[dev].cache.get_mut(&key) {
            Some((region, refs)) => {
                *refs += 1;
                *region
            }
            None => {
                // SAFETY: NCCL keeps a registered buffer alive until its deregMr (the host
                // that holds the registration stops when the device's last comm closes).
                let region = unsafe { host.register_raw(ptr, size as u64, false) }
                    .map_err(|e| Error::System(format!("regMr of {size} bytes: {e}")))?;
                s.devs[dev].cache.insert(key, (region, 1));
                region
            }
        };
        let id = s.id();
        s.mrs.insert(
            id,
            Mr {
                dev,
                region,
                base: data as usize,
                len: size,
            },
        );
        Ok(to_ptr(id))
    })
}

/// `deregMr`.
pub(crate) fn dereg_mr(comm: *mut c_void, mhandle: *mut c_void) -> Result<()> {
    with(|s| {
        s.any_comm_id(comm, "deregMr")?;
        let id = from_ptr(mhandle)
            .filter(|id| s.mrs.contains_key(id))
            .ok_or_else(|| Error::Arg(format!("deregMr: unknown memory handle {mhandle:p}")))?;
        s.dereg(id);
        Ok(())
    })
}

/// One buffer of an isend/irecv.
#[derive(Debug)]
pub(crate) struct Buf {
    pub(crate) data: *mut c_void,
    pub(crate) size: usize,
    pub(crate) tag: c_int,
    pub(crate) mhandle: *mut c_void,
}

/// `isend` (one buffer) / `irecv` (1..=MAX_RECVS buffers): a request, or NULL when full.
pub(crate) fn post(comm: *mut c_void, send: bool, bufs: &[Buf]) -> Result<*mut c_void> {
    let (kind, what) = if send {
        (Kind::Send, "isend")
    } else {
        (Kind::Recv, "irecv")
    };
    if bufs.is_empty() || bufs.len() > MAX_RECVS {
        return Err(Error::Arg(format!(
            "{what}: {} buffers (1..={MAX_RECVS})",
            bufs.len()
        )));
    }
    with(|s| {
        let cid = s.comm_id(comm, kind, what)?;
        let (dev, conn, inflight) = {
            let c = &s.comms[&cid];
            (c.dev, c.conn, c.inflight)
        };
        let mut wrs = Vec::with_capacity(bufs.len());
        for b in bufs {
            if b.size > MAX_P2P_BYTES {
                return Err(Error::Arg(format!(
                    "{what}: size {} exceeds maxP2pBytes {MAX_P2P_BYTES}",
                    b.size
                )));
            }
            let mid = from_ptr(b.mhandle)
                .filter(|id| s.mrs.contains_key(id))
                .ok_or_else(|| {
                    Error::Arg(format!("{what}: unknown memory handle {:p}", b.mhandle))
                })?;
            let mr = &s.mrs[&mid];
            if mr.dev != dev {
                return Err(Error::Arg(format!(
                    "{what}: memory handle of another device"
                )));
            }
            let a = b.data as usize;
            let inside = a >= mr.base
                && (a - mr.base)
                    .checked_add(b.size)
                    .is_some_and(|end| end <= mr.len);
            if b.size > 0 && !inside {
                return Err(Error::Arg(format!(
                    "{what}: buffer {:p}+{} outside its registration",
                    b.data, b.size
                )));
            }
            let offset = if inside { (a - mr.base) as u64 } else { 0 };
            let tag = b.tag as u32 as u64;
            wrs.push(if send {
                WorkRequest::Send {
                    region: mr.region,
                    offset,
                    len: b.size as u64,
                    tag,
                }
            } else {
                WorkRequest::Recv {
                    region: mr.region,
                    offset,
                    len: b.size as u64,
                    tag: Some(tag),
                }
            });
        }
        let limit = if send { SEND_REQUESTS } else { RECV_REQUESTS };
        if inflight >= limit {
            return Ok(std::ptr::null_mut());
        }
        let Some(host) = s.devs[dev].host.clone() else {
            return Err(Error::Internal(format!("{what}: device host missing")));
        };
        let rid = s.id();
        let mut posted = Vec::with_capacity(wrs.len());
        for (i, wr) in wrs.into_iter().enumerate() {
            match host.post(conn, wr) {
                Ok(w) => {
                    s.devs[dev].routes.insert(w, (rid, i));
                    posted.push(w);
                }
                Err(HostError::Post(PostError::QueueFull)) if i == 0 => {
                    return Ok(std::ptr::null_mut());
                }
                Err(e) => {
                    for w in posted {
                        s.devs[dev].routes.remove(&w);
                    }
                    return Err(Error::System(format!("{what}: {e}")));
                }
            }
        }
        let parts = posted
            .iter()
            .map(|_| Part {
                done: false,
                len: 0,
                err: None,
            })
            .collect();
        s.reqs.insert(
            rid,
            Req {
                comm: cid,
                dev,
                wrs: posted,
                parts,
            },
        );
        if let Some(c) = s.comms.get_mut(&cid) {
            c.inflight += 1;
        }
        Ok(to_ptr(rid))
    })
}

/// `iflush`: host memory needs no flush; a request that is done at once.
pub(crate) fn iflush(comm: *mut c_void) -> Result<*mut c_void> {
    with(|s| {
        let cid = s.comm_id(comm, Kind::Recv, "iflush")?;
        let dev = s.comms[&cid].dev;
        let rid = s.id();
        s.reqs.insert(
            rid,
            Req {
                comm: cid,
                dev,
                wrs: Vec::new(),
                parts: Vec::new(),
            },
        );
        if let Some(c) = s.comms.get_mut(&cid) {
            c.inflight += 1;
        }
        Ok(to_ptr(rid))
    })
}

/// `test`: drive progress, route completions; `Some(sizes)` once done.
pub(crate) fn test(request: *mut c_void) -> Result<Option<Vec<c_int>>> {
    let (rid, host) = {
        let mut g = lock();
        let Some(s) = g.as_mut() else {
            return Err(Error::Usage("test: the plugin is not initialised".into()));
        };
        let rid = from_ptr(request)
            .filter(|id| s.reqs.contains_key(id))
            .ok_or_else(|| Error::Arg(format!("test: unknown request {request:p}")))?;
        if let Some(r) = s.finish(rid) {
            return r.map(Some);
        }
        let dev = s.reqs[&rid].dev;
        (rid, s.devs[dev].host.clone())
    };
    let mut got: Vec<Completion> = Vec::new();
    if let Some(h) = &host {
        while got.len() < POLL_BATCH {
            match h.poll_completion() {
                Some(c) => got.push(c),
                None => break,
            }
        }
    }
    let mut g = lock();
    let Some(s) = g.as_mut() else {
        return Err(Error::Usage("test: the plugin was torn down".into()));
    };
    if let Some(h) = &host
        && let Some(dev) = s
            .devs
            .iter()
            .position(|d| d.host.as_ref().is_some_and(|x| Arc::ptr_eq(x, h)))
    {
        for c in got {
            s.route(dev, c);
        }
    }
    if !s.reqs.contains_key(&rid) {
        return Err(Error::Arg(format!(
            "test: request {request:p} vanished (comm closed)"
        )));
    }
    s.finish(rid).transpose()
}

impl State {
    fn id(&mut self) -> u64 {
        let id = self.next;
        self.next += 1;
        id
    }

    fn device(&self, dev: c_int) -> Result<&Device> {
        usize::try_from(dev)
            .ok()
            .and_then(|d| self.devices.get(d))
            .ok_or_else(|| Error::Arg(format!("device {dev} out of range")))
    }

    fn device_index(&self, dev: c_int) -> Result<usize> {
        self.device(dev)?;
        Ok(dev as usize)
    }

    /// One more user of the device's host; start it when it is the first.
    fn acquire(&mut self, dev: usize) -> Result<Arc<Host>> {
        if let Some(h) = self.devs[dev].host.clone() {
            self.devs[dev].users += 1;
            return Ok(h);
        }
        let Some(cfg) = CONFIG.get() else {
            return Err(Error::Internal("configuration missing".into()));
        };
        let d = &self.devices[dev];
        let mut hc = HostConfig::default();
        hc.udp.bind = d.addr;
        if cfg.go_back_n {
            hc.transport = weir_transport::Config::go_back_n();
        }
        hc.transport.cc = cfg
            .cc
            .clone()
            .map_err(|e| Error::Usage(format!("congestion control: {e}")))?;
        if let Some(p) = cfg.paths {
            hc.transport.paths = p;
        }
        hc.transport.max_payload = cfg
            .max_payload
            .unwrap_or_else(|| d.mtu.saturating_sub(28 + 128).clamp(512, 8192));
        if let Some(bytes) = cfg.stream_region {
            hc.transport.stream_region_bytes = bytes;
        }
        if let Some(ms) = cfg.rto_ms {
            let rto = weir_base::Duration::from_millis(ms);
            hc.transport.min_rto = rto;
            if hc.transport.initial_rto < rto {
                hc.transport.initial_rto = rto;
            }
            if hc.transport.max_rto < rto {
                hc.transport.max_rto = rto;
            }
        }
        if cfg.loss > 0.0 {
            let mut f = FaultConfig::none();
            f.drop = cfg.loss;
            f.seed = weir_datapath::os_seed();
            hc.fault_rx = f;
        }
        let placement = cfg.engine.clone().unwrap_or(Placement::Host);
        let host = Arc::new(Host::start(&placement, hc).map_err(|e| {
            Error::System(format!(
                "starting the transport on {} ({} engine): {e}",
                d.addr,
                placement.name()
            ))
        })?);
        log::info(&format!(
            "device {dev}: transport up on {} ({} engine)",
            host.local_addr(),
            placement.name()
        ));
        if host.local_addr().ip() != d.addr {
            // A daemon binds what its command line says (`weir engine --bind`); peers are
            // told this address in the listen handle.
            log::warn(&format!(
                "device {dev} ({}): the {} engine serves {}, not the device's address; \
                 peers will connect there",
                d.addr,
                placement.name(),
                host.local_addr()
            ));
        }
        self.devs[dev].host = Some(host.clone());
        self.devs[dev].users = 1;
        Ok(host)
    }

    /// One user fewer; returns the host to drop (outside the lock) when it was the last.
    fn release(&mut self, dev: usize) -> Option<Arc<Host>> {
        let d = &mut self.devs[dev];
        d.users = d.users.saturating_sub(1);
        if d.users == 0 {
            d.routes.clear();
            d.cache.clear();
            d.lingering.clear();
            self.mrs.retain(|_, m| m.dev != dev);
            self.devs[dev].host.take()
        } else {
            None
        }
    }

    /// Forget connect attempts whose handshake failed and that NCCL stopped retrying (they
    /// would keep the device's host, and its thread, alive). Returns hosts to drop.
    fn sweep_attempts(&mut self) -> Vec<Arc<Host>> {
        let failed: Vec<(u64, usize)> = self
            .attempts
            .iter()
            .filter(|(_, a)| {
                self.devs[a.dev]
                    .host
                    .as_ref()
                    .is_none_or(|h| h.is_connected(a.conn).is_err())
            })
            .map(|(k, a)| (*k, a.dev))
            .collect();
        let mut doomed = Vec::new();
        for (id, dev) in failed {
            self.attempts.remove(&id);
            doomed.extend(self.release(dev));
        }
        doomed
    }

    fn close_listen(&mut self, id: u64) -> Result<Option<Arc<Host>>> {
        let Some(l) = self.listens.remove(&id) else {
            return Err(Error::Arg("closeListen: unknown listen comm".into()));
        };
        if let Some(h) = &self.devs[l.dev].host {
            h.revoke(l.token);
            h.close_waiting(l.token);
        }
        Ok(self.release(l.dev))
    }

    fn close_comm(&mut self, id: u64) -> Result<Option<Arc<Host>>> {
        let Some(c) = self.comms.remove(&id) else {
            return Err(Error::Arg("close: unknown comm".into()));
        };
        let reqs: Vec<u64> = self
            .reqs
            .iter()
            .filter(|(_, r)| r.comm == id)
            .map(|(k, _)| *k)
            .collect();
        for r in reqs {
            if let Some(req) = self.reqs.remove(&r) {
                for w in req.wrs {
                    self.devs[c.dev].routes.remove(&w);
                }
            }
        }
        if let Some(h) = self.devs[c.dev].host.clone() {
            if let Some(st) = h.conn_stats(c.conn) {
                log::info(&format!("closing {:?} comm {id}: {st:?}", c.kind));
            }
            match c.kind {
                // The transport has no half-close: a CLOSE now would fail the receiver's
                // connection and lose messages it buffered but has not matched yet.
                Kind::Send => self.devs[c.dev].lingering.push_back(c.conn),
                Kind::Recv => h.close(c.conn),
            }
            sweep_lingering(&h, &mut self.devs[c.dev].lingering);
        }
        Ok(self.release(c.dev))
    }

    /// Close the lingering connections of `dev` that are over (see [`sweep_lingering`]).
    fn sweep_lingering(&mut self, dev: usize) {
        if let Some(h) = self.devs[dev].host.clone() {
            sweep_lingering(&h, &mut self.devs[dev].lingering);
        }
    }

    fn dereg(&mut self, id: u64) {
        let Some(m) = self.mrs.remove(&id) else {
            return;
        };
        let d = &mut self.devs[m.dev];
        let key = (m.base, m.len);
        if let Some((_, refs)) = d.cache.get_mut(&key) {
            *refs -= 1;
            if *refs == 0 {
                d.cache.remove(&key);
                if let Some(h) = &d.host {
                    h.deregister(m.region);
                }
            }
        }
    }

    fn comm_id(&self, p: *mut c_void, kind: Kind, what: &str) -> Result<u64> {
        from_ptr(p)
            .filter(|id| self.comms.get(id).is_some_and(|c| c.kind == kind))
            .ok_or_else(|| {
                let k = if kind == Kind::Send { "send" } else { "recv" };
                Error::Arg(format!("{what}: {p:p} is not a live {k} comm"))
            })
    }

    fn any_comm_id(&self, p: *mut c_void, what: &str) -> Result<u64> {
        from_ptr(p)
            .filter(|id| self.comms.contains_key(id))
            .ok_or_else(|| Error::Arg(format!("{what}: {p:p} is not a live comm")))
    }

    fn route(&mut self, dev: usize, c: Completion) {
        let Some((rid, i)) = self.devs[dev].routes.remove(&c.wr) else {
            return; // a request of a closed comm
        };
        if let Some(p) = self.reqs.get_mut(&rid).and_then(|r| r.parts.get_mut(i)) {
            p.done = true;
            p.len = c.len;
            p.err = c.status.err();
        }
    }

    /// If the request is done: remove it and return its sizes (or its error).
    fn finish(&mut self, rid: u64) -> Option<Result<Vec<c_int>>> {
        let r = self.reqs.get(&rid)?;
        if !r.parts.iter().all(|p| p.done) {
            return None;
        }
        let r = self.reqs.remove(&rid)?;
        let mut peer = None;
        if let Some(c) = self.comms.get_mut(&r.comm) {
            c.inflight = c.inflight.saturating_sub(1);
            peer = Some((c.kind, c.peer));
        }
        for p in &r.parts {
            if let Some(e) = p.err {
                // Name the other end: with hundreds of peers, "connection lost" alone does
                // not say which rank's host to look at.
                let with = match peer {
                    Some((Kind::Send, a)) => format!("send to {a}"),
                    Some((Kind::Recv, a)) => format!("receive from {a}"),
                    None => "request of a closed comm".into(),
                };
                return Some(Err(match e {
                    WrError::Truncated { message, buffer } => Error::Internal(format!(
                        "{with}: message of {message} bytes does not fit the receive buffer \
                         of {buffer}"
                    )),
                    other => Error::System(format!("{with} failed: {other}")),
                }));
            }
        }
        Some(Ok(r
            .parts
            .iter()
            .map(|p| p.len.min(c_int::MAX as u64) as c_int)
            .collect()))
    }
}

/// The opaque pointer of an id.
pub(crate) fn ptr(id: u64) -> *mut c_void {
    to_ptr(id)
}

/// A live v11+ context's id.
pub(crate) fn ctx_id(ctx: *mut c_void) -> Result<u64> {
    with(|s| {
        from_ptr(ctx)
            .filter(|id| s.ctxs.contains_key(id))
            .ok_or_else(|| Error::Arg(format!("unknown context {ctx:p}")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_ids_round_trip_and_reject_garbage() {
        for id in [1u64, 2, 77, 1 << 20] {
            assert_eq!(from_ptr(to_ptr(id)), Some(id));
        }
        assert_eq!(from_ptr(std::ptr::null_mut()), None);
        assert_eq!(from_ptr(0xdead_beef as *mut c_void), None);
        assert_eq!(from_ptr((BASE + 3) as *mut c_void), None);
    }

    /// A connected (send, recv) comm pair through listen comm `l` whose handle is `h`.
    fn pair(l: *mut c_void, h: &[u8; 128]) -> (*mut c_void, *mut c_void) {
        let mut h = *h;
        let (mut s, mut r): (*mut c_void, *mut c_void) =
            (std::ptr::null_mut(), std::ptr::null_mut());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while s.is_null() || r.is_null() {
            assert!(std::time::Instant::now() < deadline, "pair did not connect");
            if s.is_null() {
                s = connect(0, 0, &mut h).expect("connect");
            }
            if r.is_null() {
                r = accept(l).expect("accept");
            }
            std::thread::yield_now();
        }
        (s, r)
    }

    /// Closed send comms linger until their receiver closes; then they must leave the engine.
    /// Open/close cycles with one pair kept up must not grow the engine's connection table
    /// (it grew by one connection per cycle: issue "comms that do not leak").
    #[test]
    fn closed_comms_leave_the_engine() {
        init(None, false).expect("init");
        let mut h = [0u8; 128];
        let l = listen(0, 0, &mut h).expect("listen");
        let (ks, kr) = pair(l, &h);
        let connections = || {
            with(|s| {
                Ok(s.devs[0]
                    .host
                    .as_ref()
                    .and_then(|h| h.stats())
                    .map(|st| st.connections))
            })
            .expect("state")
            .expect("host")
        };
        for _ in 0..200 {
            let (s, r) = pair(l, &h);
            close_comm(s, true).expect("closeSend");
            close_comm(r, false).expect("closeRecv");
        }
        // Left: the kept pair (both ends are in this engine) and the last cycle's sender,
        // whose receiver's CLOSE the next connect or close will find; 200 more without the
        // sweep.
        let n = connections();
        assert!(
            n <= 3,
            "{n} connections left in the engine after 200 cycles"
        );
        close_comm(ks, true).expect("closeSend");
        close_comm(kr, false).expect("closeRecv");
        close_listen(l).expect("closeListen");
    }

    #[test]
    fn handles_parse_and_reject() {
        let mut h = [0u8; 128];
        h[field::MAGIC].copy_from_slice(&MAGIC.to_le_bytes());
        h[field::VERSION].copy_from_slice(&HANDLE_VERSION.to_le_bytes());
        h[field::FAMILY] = 4;
        h[field::ADDR][..4].copy_from_slice(&[10, 1, 2, 3]);
        h[field::PORT].copy_from_slice(&4791u16.to_be_bytes());
        h[field::TOKEN].copy_from_slice(&0x1234u64.to_le_bytes());
        h[field::SECRET].copy_from_slice(&(7u128 << 100 | 5).to_le_bytes());
        let (addr, token, secret, attempt) = parse_handle(&h).expect("valid handle");
        assert_eq!(addr, "10.1.2.3:4791".parse().expect("addr"));
        assert_eq!((token, secret, attempt), (0x1234, 7 << 100 | 5, 0));
        let mut bad = h;
        bad[field::FAMILY] = 9;
        assert!(parse_handle(&bad).is_err());
        let mut bad = h;
        bad[0] ^= 1;
        assert!(parse_handle(&bad).is_err());
        // A handle from a plugin of the first version (no secret) is refused.
        let mut bad = h;
        bad[field::VERSION.start] = 1;
        assert!(parse_handle(&bad).is_err());
    }
}
