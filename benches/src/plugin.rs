//! The driver of the NCCL net plugin's C tables: [`Net`], one version-independent face over
//! `ncclNetPlugin_v8` … `ncclNetPlugin_v12`, calling them the way NCCL's proxy threads do.
//!
//! A [`Net`] holds one table: the one linked into this executable (the same code as
//! `libnccl-net-weir.so`, from the `nccl_net_weir` crate) or, from a path, the one a `.so`
//! exports, loaded as NCCL loads it (`dlopen(RTLD_NOW | RTLD_LOCAL)`, `dlsym("ncclNetPlugin_vN")`;
//! dropping the `Net` is the `dlclose`). It offers init, devices, getProperties (as one
//! [`Properties`] for every version), listen, the non-blocking connect/accept (one call each,
//! or looped to a deadline, or both ends at once with [`Net::pair`]), regMr/deregMr,
//! isend/irecv (single or grouped receives), test (and test-until-done), the closes and
//! finalize. Every failure is an [`NcclError`] naming the call and its `ncclResult_t`.
//!
//! Comms, memory handles and requests are the plugin's opaque ids ([`Comm`], [`Mr`],
//! [`Request`]); the plugin checks every one it is given. Posting a buffer is `unsafe`: the
//! plugin reads or writes it after the call returns, until the request completes. Tests that
//! want to break the contract on purpose call the raw table ([`Net::table`], [`Net::ctx`]).
//!
//! Used by `weir bench nccl-abi` ([`crate::nccl_side`]) and by this crate's ABI tests
//! (`benches/tests/abi.rs`).

use std::ffi::{CStr, c_int, c_void};
use std::fmt;
use std::path::Path;
use std::ptr::null_mut;
use std::time::Instant;

use nccl_net_weir::ffi::{
    CommConfig, NCCL_INTERNAL_ERROR, NCCL_INVALID_ARGUMENT, NCCL_INVALID_USAGE,
    NCCL_NET_HANDLE_MAXSIZE, NCCL_PTR_HOST, NCCL_SUCCESS, NCCL_SYSTEM_ERROR, NcclResult, NetV8,
    NetV9, NetV10, NetV11T, NetV12T, PropertiesV8, PropertiesV9, PropertiesV11, PropertiesV12,
};

/// The most buffers one grouped receive takes (the plugin's `maxRecvs`).
pub const MAX_RECVS: usize = 8;

/// A listen handle, exchanged out of band (NCCL's bootstrap network).
pub type Handle = [u8; NCCL_NET_HANDLE_MAXSIZE];

/// One exported table, of any version.
#[derive(Clone, Copy, Debug)]
pub enum Table {
    /// `ncclNetPlugin_v8`.
    V8(&'static NetV8),
    /// `ncclNetPlugin_v9`.
    V9(&'static NetV9),
    /// `ncclNetPlugin_v10`.
    V10(&'static NetV10),
    /// `ncclNetPlugin_v11`.
    V11(&'static NetV11T),
    /// `ncclNetPlugin_v12`.
    V12(&'static NetV12T),
}

/// Call an entry whose signature is the same in every version.
macro_rules! same {
    ($table:expr, $f:ident ( $($a:expr),* )) => {
        match $table {
            Table::V8(t) => (t.$f)($($a),*),
            Table::V9(t) => (t.$f)($($a),*),
            Table::V10(t) => (t.$f)($($a),*),
            Table::V11(t) => (t.$f)($($a),*),
            Table::V12(t) => (t.$f)($($a),*),
        }
    };
}

/// A failed plugin call, load or loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NcclError {
    /// The call returned this `ncclResult_t`.
    Call {
        /// The entry, as NCCL names it (`isend`, `regMr`, …).
        call: &'static str,
        /// Its return code.
        rc: NcclResult,
    },
    /// A connect, accept or test loop ran past its deadline; says which.
    Timeout(String),
    /// The library or its table could not be loaded.
    Load(String),
}

impl NcclError {
    /// The return code of a failed call.
    pub fn rc(&self) -> Option<NcclResult> {
        match self {
            NcclError::Call { rc, .. } => Some(*rc),
            _ => None,
        }
    }
}

impl fmt::Display for NcclError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NcclError::Call { call, rc } => {
                let name = match *rc {
                    NCCL_SYSTEM_ERROR => "ncclSystemError",
                    NCCL_INTERNAL_ERROR => "ncclInternalError",
                    NCCL_INVALID_ARGUMENT => "ncclInvalidArgument",
                    NCCL_INVALID_USAGE => "ncclInvalidUsage",
                    _ => "ncclResult",
                };
                write!(f, "plugin {call}: {name} ({rc})")
            }
            NcclError::Timeout(what) | NcclError::Load(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for NcclError {}

/// `Ok` for `ncclSuccess`, else the error naming `call`.
fn ck(rc: NcclResult, call: &'static str) -> Result<(), NcclError> {
    if rc == NCCL_SUCCESS {
        Ok(())
    } else {
        Err(NcclError::Call { call, rc })
    }
}

/// A comm: listen, send or receive (an opaque id of the plugin's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Comm(*mut c_void);

/// A memory registration (`mhandle`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mr(*mut c_void);

/// A request in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request(*mut c_void);

macro_rules! raw_id {
    ($($t:ident),*) => {$(
        // SAFETY: an opaque id the plugin hands out and checks; never dereferenced here, and
        // the plugin is thread-safe by contract (NCCL calls it from several threads).
        unsafe impl Send for $t {}
        // SAFETY: as above.
        unsafe impl Sync for $t {}
        impl $t {
            /// The raw pointer, for calling the table directly.
            pub fn as_ptr(self) -> *mut c_void {
                self.0
            }
        }
    )*};
}
raw_id!(Comm, Mr, Request);

/// One buffer of a (grouped) receive.
#[derive(Clone, Copy, Debug)]
pub struct RecvBuf {
    /// Start of the buffer, inside the region of `mr`.
    pub data: *mut u8,
    /// Its size: the largest message it takes.
    pub size: usize,
    /// The tag of the message it takes.
    pub tag: c_int,
    /// The registration it lies in.
    pub mr: Mr,
}

/// A completed request: the size of each buffer's message (a send has one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Done {
    sizes: [c_int; MAX_RECVS],
}

impl Done {
    /// The first (for a send, the only) size.
    pub fn size(&self) -> usize {
        usize::try_from(self.sizes[0]).unwrap_or(0)
    }

    /// Every size as the plugin wrote it (-1 where it wrote none).
    pub fn sizes(&self) -> &[c_int; MAX_RECVS] {
        &self.sizes
    }
}

/// What `getProperties` says, for any version (`None`: a field the version lacks).
#[derive(Clone, Debug, PartialEq)]
pub struct Properties {
    /// Device name.
    pub name: String,
    /// `NCCL_PTR_HOST` and friends.
    pub ptr_support: c_int,
    /// Registrations are global (`regIsGlobal`).
    pub reg_is_global: c_int,
    /// Link speed, Mbit/s.
    pub speed: c_int,
    /// Latency, µs.
    pub latency: f32,
    /// Most buffers in a grouped receive.
    pub max_recvs: c_int,
    /// v9+: largest point-to-point message.
    pub max_p2p_bytes: Option<usize>,
    /// v9+: physical devices behind the (virtual) device.
    pub ndevs: Option<c_int>,
    /// v11+: `maxMultiRequestSize`.
    pub max_multi_request_size: Option<c_int>,
    /// v12: `(railId, planeId)`.
    pub rail_plane: Option<(i16, i16)>,
}

/// Both ends of one connection, as [`Net::pair`] makes them.
#[derive(Clone, Copy, Debug)]
pub struct Pair {
    /// The send comm.
    pub send: Comm,
    /// The receive comm.
    pub recv: Comm,
    /// How many `connect` calls it took (NCCL's connect is non-blocking: more than one).
    pub connect_calls: u32,
}

/// One loaded plugin table and its context.
#[derive(Debug)]
pub struct Net {
    table: Table,
    version: u32,
    ctx: *mut c_void,
    /// Keeps a `dlopen`ed library mapped while `table` points into it.
    lib: Option<libloading::Library>,
}

// SAFETY: the plugin is thread-safe by contract (NCCL calls it from several threads); the
// table is immutable and the context an opaque id.
unsafe impl Send for Net {}
// SAFETY: as above.
unsafe impl Sync for Net {}

impl Net {
    /// Load table `ncclNetPlugin_v{version}` (8..=12) — from `lib` with `dlopen(RTLD_NOW |
    /// RTLD_LOCAL)`, or the one linked in when `None` — and `init` it.
    pub fn open(lib: Option<&Path>, version: u32) -> Result<Net, NcclError> {
        let mut net = Net::load(lib, version)?;
        net.init()?;
        Ok(net)
    }

    /// Load a table without calling `init`.
    pub fn load(lib: Option<&Path>, version: u32) -> Result<Net, NcclError> {
        use nccl_net_weir::export as x;
        let Some(path) = lib else {
            let table = match version {
                8 => Table::V8(&x::ncclNetPlugin_v8.0),
                9 => Table::V9(&x::ncclNetPlugin_v9.0),
                10 => Table::V10(&x::ncclNetPlugin_v10.0),
                11 => Table::V11(&x::ncclNetPlugin_v11.0),
                12 => Table::V12(&x::ncclNetPlugin_v12.0),
                _ => return Err(NcclError::Load(format!("no table v{version}"))),
            };
            return Ok(Net {
                table,
                version,
                ctx: null_mut(),
                lib: None,
            });
        };
        use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
        // SAFETY: loading a net plugin, as NCCL does; its initialisers run here.
        let l = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }
            .map_err(|e| NcclError::Load(format!("dlopen {}: {e}", path.display())))?;
        let sym = format!("ncclNetPlugin_v{version}");
        let missing = |e| NcclError::Load(format!("{}: no {sym}: {e}", path.display()));
        // SAFETY: the symbols are data objects of these layouts (nccl_net_weir::ffi pins them);
        // the references live as long as the library, which `Net` keeps.
        let table = unsafe {
            let s = sym.as_bytes();
            match version {
                8 => Table::V8(&**l.get::<*const NetV8>(s).map_err(missing)?),
                9 => Table::V9(&**l.get::<*const NetV9>(s).map_err(missing)?),
                10 => Table::V10(&**l.get::<*const NetV10>(s).map_err(missing)?),
                11 => Table::V11(&**l.get::<*const NetV11T>(s).map_err(missing)?),
                12 => Table::V12(&**l.get::<*const NetV12T>(s).map_err(missing)?),
                _ => return Err(NcclError::Load(format!("no table v{version}"))),
            }
        };
        Ok(Net {
            table,
            version,
            ctx: null_mut(),
            lib: Some(libloading::Library::from(l)),
        })
    }

    /// `init`: no logger, no profiler; v11+ with comm id 1 and no config, keeping the context.
    pub fn init(&mut self) -> Result<(), NcclError> {
        // SAFETY: init with an out-pointer to our context (v11+) and no optional arguments.
        let rc = unsafe {
            match self.table {
                Table::V8(t) => (t.init)(None),
                Table::V9(t) => (t.init)(None),
                Table::V10(t) => (t.init)(None, null_mut()),
                Table::V11(t) => (t.init)(&mut self.ctx, 1, null_mut(), None, null_mut()),
                Table::V12(t) => (t.init)(&mut self.ctx, 1, null_mut(), None, null_mut()),
            }
        };
        ck(rc, "init")
    }

    /// The table (for calls outside the contract, as the misuse tests make).
    pub fn table(&self) -> Table {
        self.table
    }

    /// The table's version (8..=12).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The v11+ context from `init` (null before, and for older versions).
    pub fn ctx(&self) -> *mut c_void {
        self.ctx
    }

    /// Whether the table came from a `dlopen`ed library.
    pub fn is_dlopened(&self) -> bool {
        self.lib.is_some()
    }

    /// The table's `name` field.
    pub fn name(&self) -> String {
        let p = same_field(self.table);
        // SAFETY: the first field of every table is a NUL-terminated static string.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }

    /// `devices`.
    pub fn devices(&self) -> Result<c_int, NcclError> {
        let mut n = 0;
        // SAFETY: an out-pointer to a local.
        ck(unsafe { same!(self.table, devices(&mut n)) }, "devices")?;
        Ok(n)
    }

    /// `getProperties` of device `dev`.
    pub fn properties(&self, dev: c_int) -> Result<Properties, NcclError> {
        let name = |p: *const std::ffi::c_char| {
            if p.is_null() {
                String::new()
            } else {
                // SAFETY: a NUL-terminated string the plugin owns for its lifetime.
                unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
            }
        };
        // The fields every version has; the arms add those of later versions.
        macro_rules! base {
            ($p:expr) => {
                Properties {
                    name: name($p.name),
                    ptr_support: $p.ptr_support,
                    reg_is_global: $p.reg_is_global,
                    speed: $p.speed,
                    latency: $p.latency,
                    max_recvs: $p.max_recvs,
                    max_p2p_bytes: None,
                    ndevs: None,
                    max_multi_request_size: None,
                    rail_plane: None,
                }
            };
        }
        let v9 = |p: &PropertiesV9| Properties {
            max_p2p_bytes: Some(p.max_p2p_bytes),
            ndevs: Some(p.v_props.ndevs),
            ..base!(p)
        };
        // SAFETY: out-pointers to zeroed structs of each version's layout (plain C data).
        unsafe {
            match self.table {
                Table::V8(t) => {
                    let mut p: PropertiesV8 = std::mem::zeroed();
                    ck((t.get_properties)(dev, &mut p), "getProperties")?;
                    Ok(base!(p))
                }
                Table::V9(t) => {
                    let mut p: PropertiesV9 = std::mem::zeroed();
                    ck((t.get_properties)(dev, &mut p), "getProperties")?;
                    Ok(v9(&p))
                }
                Table::V10(t) => {
                    let mut p: PropertiesV9 = std::mem::zeroed();
                    ck((t.get_properties)(dev, &mut p), "getProperties")?;
                    Ok(v9(&p))
                }
                Table::V11(t) => {
                    let mut p: PropertiesV11 = std::mem::zeroed();
                    ck((t.get_properties)(dev, &mut p), "getProperties")?;
                    Ok(Properties {
                        max_multi_request_size: Some(p.max_multi_request_size),
                        ..v9(&p.v9)
                    })
                }
                Table::V12(t) => {
                    let mut p: PropertiesV12 = std::mem::zeroed();
                    ck((t.get_properties)(dev, &mut p), "getProperties")?;
                    Ok(Properties {
                        max_p2p_bytes: Some(p.max_p2p_bytes),
                        ndevs: Some(p.v_props.ndevs),
                        max_multi_request_size: Some(p.max_multi_request_size),
                        rail_plane: Some((p.rail_id, p.plane_id)),
                        ..base!(p)
                    })
                }
            }
        }
    }

    /// `listen` on device `dev`: the handle to give the connecting side, and the listen comm.
    pub fn listen(&self, dev: c_int) -> Result<(Handle, Comm), NcclError> {
        let mut h: Handle = [0; NCCL_NET_HANDLE_MAXSIZE];
        let mut l = null_mut();
        let hp = h.as_mut_ptr().cast();
        // SAFETY: a handle buffer of NCCL_NET_HANDLE_MAXSIZE bytes and an out-pointer.
        let rc = unsafe {
            match self.table {
                Table::V8(t) => (t.listen)(dev, hp, &mut l),
                Table::V9(t) => (t.listen)(dev, hp, &mut l),
                Table::V10(t) => (t.listen)(dev, hp, &mut l),
                Table::V11(t) => (t.listen)(self.ctx, dev, hp, &mut l),
                Table::V12(t) => (t.listen)(self.ctx, dev, hp, &mut l),
            }
        };
        ck(rc, "listen")?;
        Ok((h, Comm(l)))
    }

    /// One non-blocking `connect` to the peer's `handle` (which it may write: NCCL keeps
    /// state there between calls); `None` until the connection is up.
    pub fn connect(&self, dev: c_int, handle: &mut Handle) -> Result<Option<Comm>, NcclError> {
        let hp = handle.as_mut_ptr().cast();
        let mut s = null_mut();
        let mut cfg = CommConfig { traffic_class: -1 };
        // SAFETY: the peer's handle buffer (writable), out-pointers; no device handle wanted.
        let rc = unsafe {
            match self.table {
                Table::V8(t) => (t.connect)(dev, hp, &mut s, null_mut()),
                Table::V9(t) => (t.connect)(dev, hp, &mut s, null_mut()),
                Table::V10(t) => (t.connect)(dev, &mut cfg, hp, &mut s, null_mut()),
                Table::V11(t) => (t.connect)(self.ctx, dev, hp, &mut s, null_mut()),
                Table::V12(t) => (t.connect)(self.ctx, dev, hp, &mut s, null_mut()),
            }
        };
        ck(rc, "connect")?;
        Ok((!s.is_null()).then_some(Comm(s)))
    }

    /// One non-blocking `accept` on listen comm `l`; `None` until a peer has connected.
    pub fn accept(&self, l: Comm) -> Result<Option<Comm>, NcclError> {
        let mut r = null_mut();
        // SAFETY: a listen comm id, an out-pointer, no device handle wanted.
        ck(
            unsafe { same!(self.table, accept(l.0, &mut r, null_mut())) },
            "accept",
        )?;
        Ok((!r.is_null()).then_some(Comm(r)))
    }

    /// [`Net::connect`] until connected, yielding between calls, as NCCL's proxy does.
    pub fn connect_until(
        &self,
        dev: c_int,
        handle: &mut Handle,
        deadline: Instant,
    ) -> Result<Comm, NcclError> {
        loop {
            if let Some(s) = self.connect(dev, handle)? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                return Err(NcclError::Timeout(
                    "connect did not complete in time".into(),
                ));
            }
            std::thread::yield_now();
        }
    }

    /// [`Net::accept`] until a peer connected, yielding between calls.
    pub fn accept_until(&self, l: Comm, deadline: Instant) -> Result<Comm, NcclError> {
        loop {
            if let Some(r) = self.accept(l)? {
                return Ok(r);
            }
            if Instant::now() > deadline {
                return Err(NcclError::Timeout("no sender connected in time".into()));
            }
            std::thread::yield_now();
        }
    }

    /// A connected send/receive pair on device `dev`, both ends in this process: listen,
    /// then connect and accept in turns until both are up, then close the listen comm.
    pub fn pair(&self, dev: c_int, deadline: Instant) -> Result<Pair, NcclError> {
        let (handle, l) = self.listen(dev)?;
        let mut peer_handle = handle; // "exchanged out of band"
        let (mut send, mut recv) = (None, None);
        let mut connect_calls = 0;
        while send.is_none() || recv.is_none() {
            if Instant::now() > deadline {
                return Err(NcclError::Timeout("connect/accept did not finish".into()));
            }
            if send.is_none() {
                send = self.connect(dev, &mut peer_handle)?;
                connect_calls += 1;
            }
            if recv.is_none() {
                recv = self.accept(l)?;
            }
            std::thread::yield_now();
        }
        self.close_listen(l)?;
        let (Some(send), Some(recv)) = (send, recv) else {
            unreachable!("the loop ends with both ends up")
        };
        Ok(Pair {
            send,
            recv,
            connect_calls,
        })
    }

    /// `regMr` of host memory `buf` on `comm`.
    pub fn reg_mr(&self, comm: Comm, buf: &mut [u8]) -> Result<Mr, NcclError> {
        let mut mh = null_mut();
        let (p, n) = (buf.as_mut_ptr().cast(), buf.len());
        // SAFETY: a live buffer of `n` bytes of host memory; the plugin records the region.
        ck(
            unsafe { same!(self.table, reg_mr(comm.0, p, n, NCCL_PTR_HOST, &mut mh)) },
            "regMr",
        )?;
        Ok(Mr(mh))
    }

    /// `deregMr`.
    pub fn dereg_mr(&self, comm: Comm, mr: Mr) -> Result<(), NcclError> {
        // SAFETY: ids only; the plugin checks them.
        ck(
            unsafe { same!(self.table, dereg_mr(comm.0, mr.0)) },
            "deregMr",
        )
    }

    /// Post one send of `size` bytes at `data` with `tag`; `None` when the plugin has no free
    /// request (NCCL retries later).
    ///
    /// # Safety
    ///
    /// `data .. data + size` lies in the registration `mr` and stays valid, and unwritten,
    /// until the request completes ([`Net::test`]) or `comm` is closed.
    pub unsafe fn isend(
        &self,
        comm: Comm,
        data: *mut u8,
        size: usize,
        tag: c_int,
        mr: Mr,
    ) -> Result<Option<Request>, NcclError> {
        let (c, d, m, nil) = (comm.0, data.cast::<c_void>(), mr.0, null_mut());
        let mut req = null_mut();
        // SAFETY: the caller's contract; v8 takes the size as an int, as NCCL passes it.
        let rc = unsafe {
            match self.table {
                Table::V8(t) => (t.isend)(c, d, size as c_int, tag, m, &mut req),
                Table::V9(t) => (t.isend)(c, d, size, tag, m, &mut req),
                Table::V10(t) => (t.isend)(c, d, size, tag, m, nil, &mut req),
                Table::V11(t) => (t.isend)(c, d, size, tag, m, nil, &mut req),
                Table::V12(t) => (t.isend)(c, d, size, tag, m, nil, &mut req),
            }
        };
        ck(rc, "isend")?;
        Ok((!req.is_null()).then_some(Request(req)))
    }

    /// Post one receive of up to [`MAX_RECVS`] buffers (a grouped receive when more than one;
    /// more buffers are refused without calling the plugin); `None` when the plugin has no free
    /// request.
    ///
    /// # Safety
    ///
    /// Every buffer lies in its registration and stays valid, and otherwise unaccessed, until
    /// the request completes ([`Net::test`]) or `comm` is closed.
    pub unsafe fn irecv(&self, comm: Comm, bufs: &[RecvBuf]) -> Result<Option<Request>, NcclError> {
        if bufs.len() > MAX_RECVS {
            return Err(NcclError::Call {
                call: "irecv",
                rc: NCCL_INVALID_ARGUMENT,
            });
        }
        let mut data = [null_mut::<c_void>(); MAX_RECVS];
        let mut sizes = [0usize; MAX_RECVS];
        let mut sizes32 = [0 as c_int; MAX_RECVS];
        let mut tags = [0 as c_int; MAX_RECVS];
        let mut mhs = [null_mut::<c_void>(); MAX_RECVS];
        for (i, b) in bufs.iter().enumerate() {
            data[i] = b.data.cast();
            sizes[i] = b.size;
            sizes32[i] = b.size as c_int;
            tags[i] = b.tag;
            mhs[i] = b.mr.0;
        }
        let n = bufs.len() as c_int;
        let (c, d, s, t, m) = (
            comm.0,
            data.as_mut_ptr(),
            sizes.as_mut_ptr(),
            tags.as_mut_ptr(),
            mhs.as_mut_ptr(),
        );
        let (nil, mut req) = (null_mut(), null_mut());
        // SAFETY: arrays of at least n elements; the buffers are the caller's contract.
        let rc = unsafe {
            match self.table {
                Table::V8(tb) => (tb.irecv)(c, n, d, sizes32.as_mut_ptr(), t, m, &mut req),
                Table::V9(tb) => (tb.irecv)(c, n, d, s, t, m, &mut req),
                Table::V10(tb) => (tb.irecv)(c, n, d, s, t, m, nil, &mut req),
                Table::V11(tb) => (tb.irecv)(c, n, d, s, t, m, nil, &mut req),
                Table::V12(tb) => (tb.irecv)(c, n, d, s, t, m, nil, &mut req),
            }
        };
        ck(rc, "irecv")?;
        Ok((!req.is_null()).then_some(Request(req)))
    }

    /// `test`: the sizes once the request is done (it is then gone), `None` before.
    pub fn test(&self, req: Request) -> Result<Option<Done>, NcclError> {
        let mut done = 0;
        let mut sizes = [-1 as c_int; MAX_RECVS];
        // SAFETY: out-pointers to locals; room for the sizes of a full grouped receive.
        ck(
            unsafe { same!(self.table, test(req.0, &mut done, sizes.as_mut_ptr())) },
            "test",
        )?;
        Ok((done != 0).then_some(Done { sizes }))
    }

    /// [`Net::test`] until done or `deadline` (then a timeout naming `what`), yielding the CPU
    /// between calls as NCCL's proxy thread does when idle.
    pub fn wait(&self, req: Request, deadline: Instant, what: &str) -> Result<Done, NcclError> {
        loop {
            if let Some(d) = self.test(req)? {
                return Ok(d);
            }
            if Instant::now() > deadline {
                return Err(NcclError::Timeout(format!("{what}: not done in time")));
            }
            std::thread::yield_now();
        }
    }

    /// `closeSend`.
    pub fn close_send(&self, comm: Comm) -> Result<(), NcclError> {
        // SAFETY: an id only; the plugin checks it.
        ck(
            unsafe { same!(self.table, close_send(comm.0)) },
            "closeSend",
        )
    }

    /// `closeRecv`.
    pub fn close_recv(&self, comm: Comm) -> Result<(), NcclError> {
        // SAFETY: an id only; the plugin checks it.
        ck(
            unsafe { same!(self.table, close_recv(comm.0)) },
            "closeRecv",
        )
    }

    /// `closeListen`.
    pub fn close_listen(&self, comm: Comm) -> Result<(), NcclError> {
        // SAFETY: an id only; the plugin checks it.
        ck(
            unsafe { same!(self.table, close_listen(comm.0)) },
            "closeListen",
        )
    }

    /// `finalize` of the v11+ context (versions before v11 have none: `Ok`).
    pub fn finalize(&self) -> Result<(), NcclError> {
        // SAFETY: the context `init` returned; the plugin checks it.
        let rc = unsafe {
            match self.table {
                Table::V11(t) => (t.finalize)(self.ctx),
                Table::V12(t) => (t.finalize)(self.ctx),
                _ => NCCL_SUCCESS,
            }
        };
        ck(rc, "finalize")
    }
}

/// The `name` field of any table.
fn same_field(t: Table) -> *const std::ffi::c_char {
    match t {
        Table::V8(t) => t.name,
        Table::V9(t) => t.name,
        Table::V10(t) => t.name,
        Table::V11(t) => t.name,
        Table::V12(t) => t.name,
    }
}

/// A handle as hex, for a line protocol.
pub fn handle_to_hex(h: &Handle) -> String {
    h.iter().map(|x| format!("{x:02x}")).collect()
}

/// A handle from [`handle_to_hex`]'s form.
pub fn handle_from_hex(s: &str) -> Result<Handle, String> {
    let mut h: Handle = [0; NCCL_NET_HANDLE_MAXSIZE];
    if s.len() != 2 * h.len() {
        return Err(format!("handle must be {} hex digits", 2 * h.len()));
    }
    for (i, b) in h.iter_mut().enumerate() {
        *b = s
            .get(2 * i..2 * i + 2)
            .and_then(|d| u8::from_str_radix(d, 16).ok())
            .ok_or("handle is not hex")?;
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_hex_round_trip() {
        let mut h: Handle = [0; NCCL_NET_HANDLE_MAXSIZE];
        for (i, b) in h.iter_mut().enumerate() {
            *b = (i * 7) as u8;
        }
        assert_eq!(handle_from_hex(&handle_to_hex(&h)).expect("hex"), h);
        assert!(handle_from_hex("zz").is_err());
        assert!(handle_from_hex(&"g".repeat(256)).is_err());
        assert!(handle_from_hex(&"é".repeat(128)).is_err());
    }

    #[test]
    fn errors_name_the_call() {
        let e = NcclError::Call {
            call: "isend",
            rc: NCCL_INVALID_ARGUMENT,
        };
        assert_eq!(e.to_string(), "plugin isend: ncclInvalidArgument (4)");
        assert_eq!(e.rc(), Some(NCCL_INVALID_ARGUMENT));
    }

    #[test]
    fn linked_tables_are_all_named_weir() {
        for v in 8..=12 {
            let net = Net::load(None, v).expect("load");
            assert_eq!((net.version(), net.name().as_str()), (v, "weir"));
            assert!(!net.is_dlopened());
        }
        assert!(Net::load(None, 7).is_err());
    }
}
