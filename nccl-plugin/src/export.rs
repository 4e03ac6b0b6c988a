//! The exported `ncclNetPlugin_v8` … `ncclNetPlugin_v12` tables and their `extern "C"`
//! functions: thin shims that convert each version's argument types and call the one
//! implementation in `plugin.rs`.
//!
//! Every function catches panics (`ncclInternalError`), checks its pointers (NULL →
//! `ncclInvalidArgument`) and logs each failure through NCCL's logger (stderr before `init`).

use std::ffi::{c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::ffi::{self, *};
use crate::log;
use crate::plugin::{self, Buf, Error, MAX_P2P_BYTES, MAX_RECVS, Result, nonnull};

type P = *mut c_void;
type Pp = *mut *mut c_void;

const NAME: &std::ffi::CStr = c"weir";

/// Run `f`, catching panics, logging failures and mapping them to an `ncclResult_t`.
fn guard(what: &str, f: impl FnOnce() -> Result<()>) -> NcclResult {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => NCCL_SUCCESS,
        Ok(Err(e)) => {
            let (code, msg) = e.code();
            log::warn(&format!("{what}: {msg} (ncclResult {code})"));
            code
        }
        Err(_) => {
            log::warn(&format!("{what}: internal panic"));
            NCCL_INTERNAL_ERROR
        }
    }
}

/// Store `v` through a pointer NCCL handed in.
///
/// # Safety
/// `p` must be NULL or valid for a write of `T`.
unsafe fn out<T>(p: *mut T, v: T, what: &str) -> Result<()> {
    nonnull(p, what)?;
    // SAFETY: non-NULL, and valid for writes by the caller's contract (NCCL's API).
    unsafe { p.write(v) };
    Ok(())
}

/// # Safety
/// `h` must be NULL or point at NCCL's 128-byte handle.
unsafe fn handle<'a>(h: P) -> Result<&'a mut [u8; 128]> {
    nonnull(h, "handle")?;
    // SAFETY: NCCL allocates NCCL_NET_HANDLE_MAXSIZE bytes for every handle.
    Ok(unsafe { &mut *h.cast::<[u8; ffi::NCCL_NET_HANDLE_MAXSIZE]>() })
}

// ---- init / devices / properties ----

unsafe extern "C" fn init_v8(logger: Option<Logger>) -> NcclResult {
    guard("init", || plugin::init(logger, false).map(drop))
}

unsafe extern "C" fn init_v10(logger: Option<Logger>, _prof: ProfilerCallback) -> NcclResult {
    guard("init", || plugin::init(logger, false).map(drop))
}

unsafe extern "C" fn init_v11(
    ctx: Pp,
    _comm_id: u64,
    _config: *mut CommConfig,
    logger: Option<Logger>,
    _prof: ProfilerCallback,
) -> NcclResult {
    guard("init", || {
        nonnull(ctx, "init: ctx")?;
        let id = plugin::init(logger, true)?;
        // SAFETY: checked non-NULL; NCCL passes a `void**`.
        unsafe { out(ctx, plugin::ptr(id), "init: ctx") }
    })
}

unsafe extern "C" fn devices(ndev: *mut c_int) -> NcclResult {
    guard("devices", || {
        let n = plugin::devices()?;
        // SAFETY: NCCL passes an `int*`.
        unsafe { out(ndev, n, "devices: ndev") }
    })
}

fn props_common(dev: c_int) -> Result<plugin::Props> {
    plugin::properties(dev)
}

unsafe extern "C" fn get_properties_v8(dev: c_int, props: *mut PropertiesV8) -> NcclResult {
    guard("getProperties", || {
        let p = props_common(dev)?;
        let v = PropertiesV8 {
            name: p.name,
            pci_path: p.pci_path,
            guid: p.guid,
            ptr_support: NCCL_PTR_HOST,
            reg_is_global: 1,
            speed: p.speed,
            port: 0,
            latency: p.latency,
            max_comms: 65_536,
            max_recvs: MAX_RECVS as c_int,
            net_device_type: NCCL_NET_DEVICE_HOST,
            net_device_version: NCCL_NET_DEVICE_INVALID_VERSION,
        };
        // SAFETY: NCCL passes a properties struct of this version.
        unsafe { out(props, v, "getProperties: props") }
    })
}

fn v9_props(dev: c_int) -> Result<PropertiesV9> {
    let p = props_common(dev)?;
    Ok(PropertiesV9 {
        name: p.name,
        pci_path: p.pci_path,
        guid: p.guid,
        ptr_support: NCCL_PTR_HOST,
        reg_is_global: 1,
        force_flush: 0,
        speed: p.speed,
        port: 0,
        latency: p.latency,
        max_comms: 65_536,
        max_recvs: MAX_RECVS as c_int,
        net_device_type: NCCL_NET_DEVICE_HOST,
        net_device_version: NCCL_NET_DEVICE_INVALID_VERSION,
        v_props: VDeviceProps4 {
            ndevs: 1,
            devs: [dev, 0, 0, 0],
        },
        max_p2p_bytes: MAX_P2P_BYTES,
        max_coll_bytes: MAX_P2P_BYTES,
    })
}

unsafe extern "C" fn get_properties_v9(dev: c_int, props: *mut PropertiesV9) -> NcclResult {
    guard("getProperties", || {
        let v = v9_props(dev)?;
        // SAFETY: NCCL passes a properties struct of this version.
        unsafe { out(props, v, "getProperties: props") }
    })
}

unsafe extern "C" fn get_properties_v11(dev: c_int, props: *mut PropertiesV11) -> NcclResult {
    guard("getProperties", || {
        let v = PropertiesV11 {
            v9: v9_props(dev)?,
            max_multi_request_size: 1,
        };
        // SAFETY: NCCL passes a properties struct of this version.
        unsafe { out(props, v, "getProperties: props") }
    })
}

unsafe extern "C" fn get_properties_v12(dev: c_int, props: *mut PropertiesV12) -> NcclResult {
    guard("getProperties", || {
        let p = v9_props(dev)?;
        let v = PropertiesV12 {
            name: p.name,
            pci_path: p.pci_path,
            guid: p.guid,
            ptr_support: p.ptr_support,
            reg_is_global: p.reg_is_global,
            force_flush: p.force_flush,
            speed: p.speed,
            port: p.port,
            latency: p.latency,
            max_comms: p.max_comms,
            max_recvs: p.max_recvs,
            net_device_type: p.net_device_type,
            net_device_version: p.net_device_version,
            v_props: VDeviceProps8 {
                ndevs: 1,
                devs: [dev, 0, 0, 0, 0, 0, 0, 0],
            },
            max_p2p_bytes: p.max_p2p_bytes,
            max_coll_bytes: p.max_coll_bytes,
            max_multi_request_size: 1,
            rail_id: -1,
            plane_id: -1,
        };
        // SAFETY: NCCL passes a properties struct of this version.
        unsafe { out(props, v, "getProperties: props") }
    })
}

// ---- connection setup ----

fn listen_impl(ctx: u64, dev: c_int, h: P, listen: Pp) -> Result<()> {
    nonnull(listen, "listen: listenComm")?;
    // SAFETY: NCCL's handle buffer.
    let h = unsafe { handle(h)? };
    let l = plugin::listen(ctx, dev, h)?;
    // SAFETY: checked non-NULL.
    unsafe { out(listen, l, "listen: listenComm") }
}

unsafe extern "C" fn listen_v8(dev: c_int, h: P, listen: Pp) -> NcclResult {
    guard("listen", || listen_impl(0, dev, h, listen))
}

unsafe extern "C" fn listen_v11(ctx: P, dev: c_int, h: P, listen: Pp) -> NcclResult {
    guard("listen", || {
        listen_impl(plugin::ctx_id(ctx)?, dev, h, listen)
    })
}

fn connect_impl(ctx: u64, dev: c_int, h: P, send: Pp) -> Result<()> {
    nonnull(send, "connect: sendComm")?;
    // SAFETY: NCCL's handle buffer.
    let h = unsafe { handle(h)? };
    let c = plugin::connect(ctx, dev, h)?;
    // SAFETY: checked non-NULL.
    unsafe { out(send, c, "connect: sendComm") }
}

unsafe extern "C" fn connect_v8(
    dev: c_int,
    h: P,
    send: Pp,
    _dc: *mut *mut DeviceHandle,
) -> NcclResult {
    guard("connect", || connect_impl(0, dev, h, send))
}

unsafe extern "C" fn connect_v10(
    dev: c_int,
    _config: *mut CommConfig,
    h: P,
    send: Pp,
    _dc: *mut *mut DeviceHandle,
) -> NcclResult {
    guard("connect", || connect_impl(0, dev, h, send))
}

unsafe extern "C" fn connect_v11(
    ctx: P,
    dev: c_int,
    h: P,
    send: Pp,
    _dc: *mut *mut DeviceHandle,
) -> NcclResult {
    guard("connect", || {
        connect_impl(plugin::ctx_id(ctx)?, dev, h, send)
    })
}

unsafe extern "C" fn accept(listen: P, recv: Pp, _dc: *mut *mut DeviceHandle) -> NcclResult {
    guard("accept", || {
        nonnull(recv, "accept: recvComm")?;
        let c = plugin::accept(listen)?;
        // SAFETY: checked non-NULL.
        unsafe { out(recv, c, "accept: recvComm") }
    })
}

unsafe extern "C" fn close_send(comm: P) -> NcclResult {
    guard("closeSend", || plugin::close_comm(comm, true))
}

unsafe extern "C" fn close_recv(comm: P) -> NcclResult {
    guard("closeRecv", || plugin::close_comm(comm, false))
}

unsafe extern "C" fn close_listen(listen: P) -> NcclResult {
    guard("closeListen", || plugin::close_listen(listen))
}

unsafe extern "C" fn finalize(ctx: P) -> NcclResult {
    guard("finalize", || plugin::finalize(ctx))
}

// ---- memory ----

unsafe extern "C" fn reg_mr(comm: P, data: P, size: usize, ty: c_int, mh: Pp) -> NcclResult {
    guard("regMr", || {
        nonnull(mh, "regMr: mhandle")?;
        let m = plugin::reg_mr(comm, data, size, ty)?;
        // SAFETY: checked non-NULL.
        unsafe { out(mh, m, "regMr: mhandle") }
    })
}

unsafe extern "C" fn dereg_mr(comm: P, mh: P) -> NcclResult {
    guard("deregMr", || plugin::dereg_mr(comm, mh))
}

// ---- data path ----

fn isend_impl(comm: P, data: P, size: usize, tag: c_int, mh: P, req: Pp) -> Result<()> {
    nonnull(req, "isend: request")?;
    let r = plugin::post(
        comm,
        true,
        &[Buf {
            data,
            size,
            tag,
            mhandle: mh,
        }],
    )?;
    // SAFETY: checked non-NULL.
    unsafe { out(req, r, "isend: request") }
}

unsafe extern "C" fn isend_v8(
    comm: P,
    data: P,
    size: c_int,
    tag: c_int,
    mh: P,
    req: Pp,
) -> NcclResult {
    guard("isend", || {
        let size = usize::try_from(size).map_err(|_| Error::Arg(format!("isend: size {size}")))?;
        isend_impl(comm, data, size, tag, mh, req)
    })
}

unsafe extern "C" fn isend_v9(
    comm: P,
    data: P,
    size: usize,
    tag: c_int,
    mh: P,
    req: Pp,
) -> NcclResult {
    guard("isend", || isend_impl(comm, data, size, tag, mh, req))
}

unsafe extern "C" fn isend_v10(
    comm: P,
    data: P,
    size: usize,
    tag: c_int,
    mh: P,
    _ph: P,
    req: Pp,
) -> NcclResult {
    guard("isend", || isend_impl(comm, data, size, tag, mh, req))
}

/// # Safety
/// Array arguments must be NULL or hold `n` elements.
unsafe fn irecv_impl(
    comm: P,
    n: c_int,
    data: Pp,
    size: impl Fn(usize) -> Result<usize>,
    tags: *mut c_int,
    mhs: Pp,
    req: Pp,
) -> Result<()> {
    nonnull(req, "irecv: request")?;
    nonnull(data, "irecv: data")?;
    nonnull(tags, "irecv: tags")?;
    nonnull(mhs, "irecv: mhandles")?;
    let n = usize::try_from(n)
        .ok()
        .filter(|&n| (1..=MAX_RECVS).contains(&n))
        .ok_or_else(|| Error::Arg(format!("irecv: n = {n} (1..={MAX_RECVS})")))?;
    let mut bufs = Vec::with_capacity(n);
    for i in 0..n {
        // SAFETY: NCCL passes arrays of n elements.
        let (d, t, m) = unsafe { (*data.add(i), *tags.add(i), *mhs.add(i)) };
        bufs.push(Buf {
            data: d,
            size: size(i)?,
            tag: t,
            mhandle: m,
        });
    }
    // v9+ may pre-store NCCL_NET_OPTIONAL_RECV_COMPLETION in *req: always overwritten.
    let r = plugin::post(comm, false, &bufs)?;
    // SAFETY: checked non-NULL.
    unsafe { out(req, r, "irecv: request") }
}

unsafe extern "C" fn irecv_v8(
    comm: P,
    n: c_int,
    data: Pp,
    sizes: *mut c_int,
    tags: *mut c_int,
    mhs: Pp,
    req: Pp,
) -> NcclResult {
    guard("irecv", || {
        nonnull(sizes, "irecv: sizes")?;
        let size = |i: usize| {
            // SAFETY: n elements, i < n.
            let s = unsafe { *sizes.add(i) };
            usize::try_from(s).map_err(|_| Error::Arg(format!("irecv: size {s}")))
        };
        // SAFETY: NCCL's arrays.
        unsafe { irecv_impl(comm, n, data, size, tags, mhs, req) }
    })
}

unsafe extern "C" fn irecv_v9(
    comm: P,
    n: c_int,
    data: Pp,
    sizes: *mut usize,
    tags: *mut c_int,
    mhs: Pp,
    req: Pp,
) -> NcclResult {
    guard("irecv", || {
        nonnull(sizes, "irecv: sizes")?;
        // SAFETY: n elements, i < n.
        let size = |i: usize| Ok(unsafe { *sizes.add(i) });
        // SAFETY: NCCL's arrays.
        unsafe { irecv_impl(comm, n, data, size, tags, mhs, req) }
    })
}

unsafe extern "C" fn irecv_v10(
    comm: P,
    n: c_int,
    data: Pp,
    sizes: *mut usize,
    tags: *mut c_int,
    mhs: Pp,
    _phs: Pp,
    req: Pp,
) -> NcclResult {
    // SAFETY: same arguments.
    unsafe { irecv_v9(comm, n, data, sizes, tags, mhs, req) }
}

unsafe extern "C" fn iflush(
    comm: P,
    _n: c_int,
    _data: Pp,
    _sizes: *mut c_int,
    _mhs: Pp,
    req: Pp,
) -> NcclResult {
    guard("iflush", || {
        nonnull(req, "iflush: request")?;
        let r = plugin::iflush(comm)?;
        // SAFETY: checked non-NULL.
        unsafe { out(req, r, "iflush: request") }
    })
}

unsafe extern "C" fn test(req: P, done: *mut c_int, sizes: *mut c_int) -> NcclResult {
    guard("test", || {
        nonnull(done, "test: done")?;
        match plugin::test(req)? {
            None => {
                // SAFETY: checked non-NULL.
                unsafe { out(done, 0, "test: done") }
            }
            Some(lens) => {
                if !sizes.is_null() {
                    for (i, l) in lens.iter().enumerate() {
                        // SAFETY: NCCL passes one int for a send, an int[64] for a receive
                        // (at most MAX_RECVS written).
                        unsafe { *sizes.add(i) = *l };
                    }
                }
                // SAFETY: checked non-NULL.
                unsafe { out(done, 1, "test: done") }
            }
        }
    })
}

// ---- the tables ----

/// The v8 table.
#[unsafe(no_mangle)]
pub static ncclNetPlugin_v8: Table<NetV8> = Table(NetV8 {
    name: NAME.as_ptr(),
    init: init_v8,
    devices,
    get_properties: get_properties_v8,
    listen: listen_v8,
    connect: connect_v8,
    accept,
    reg_mr,
    reg_mr_dma_buf: None,
    dereg_mr,
    isend: isend_v8,
    irecv: irecv_v8,
    iflush,
    test,
    close_send,
    close_recv,
    close_listen,
    get_device_mr: None,
    irecv_consumed: None,
});

/// The v9 table.
#[unsafe(no_mangle)]
pub static ncclNetPlugin_v9: Table<NetV9> = Table(NetV9 {
    name: NAME.as_ptr(),
    init: init_v8,
    devices,
    get_properties: get_properties_v9,
    listen: listen_v8,
    connect: connect_v8,
    accept,
    reg_mr,
    reg_mr_dma_buf: None,
    dereg_mr,
    isend: isend_v9,
    irecv: irecv_v9,
    iflush,
    test,
    close_send,
    close_recv,
    close_listen,
    get_device_mr: None,
    irecv_consumed: None,
    make_v_device: None,
});

/// The v10 table.
#[unsafe(no_mangle)]
pub static ncclNetPlugin_v10: Table<NetV10> = Table(NetV10 {
    name: NAME.as_ptr(),
    init: init_v10,
    devices,
    get_properties: get_properties_v9,
    listen: listen_v8,
    connect: connect_v10,
    accept,
    reg_mr,
    reg_mr_dma_buf: None,
    dereg_mr,
    isend: isend_v10,
    irecv: irecv_v10,
    iflush,
    test,
    close_send,
    close_recv,
    close_listen,
    get_device_mr: None,
    irecv_consumed: None,
    make_v_device: None,
});

/// The v11 table.
#[unsafe(no_mangle)]
pub static ncclNetPlugin_v11: Table<NetV11T> = Table(NetV11 {
    name: NAME.as_ptr(),
    init: init_v11,
    devices,
    get_properties: get_properties_v11,
    listen: listen_v11,
    connect: connect_v11,
    accept,
    reg_mr,
    reg_mr_dma_buf: None,
    dereg_mr,
    isend: isend_v10,
    irecv: irecv_v10,
    iflush,
    test,
    close_send,
    close_recv,
    close_listen,
    get_device_mr: None,
    irecv_consumed: None,
    make_v_device: None,
    finalize,
    set_net_attr: None,
});

/// The v12 table.
#[unsafe(no_mangle)]
pub static ncclNetPlugin_v12: Table<NetV12T> = Table(NetV11 {
    name: NAME.as_ptr(),
    init: init_v11,
    devices,
    get_properties: get_properties_v12,
    listen: listen_v11,
    connect: connect_v11,
    accept,
    reg_mr,
    reg_mr_dma_buf: None,
    dereg_mr,
    isend: isend_v10,
    irecv: irecv_v10,
    iflush,
    test,
    close_send,
    close_recv,
    close_listen,
    get_device_mr: None,
    irecv_consumed: None,
    make_v_device: None,
    finalize,
    set_net_attr: None,
});
