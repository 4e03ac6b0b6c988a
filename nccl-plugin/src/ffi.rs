//! Hand-written `#[repr(C)]` mirrors of NCCL's net plugin ABI, v8 to v12, as declared in
//! NCCL's `src/include/plugin/nccl_net.h` and `src/include/plugin/net/net_v8.h` … `net_v12.h`
//! (<https://github.com/NVIDIA/nccl>, docs/references.md). Every struct has its size and field
//! offsets pinned at compile time against `sizeof`/`offsetof` of the NCCL 2.30.7 headers
//! compiled with gcc on x86-64 Linux (LP64).
//!
//! Comms, requests and memory handles are opaque `*mut c_void` to NCCL; the plugin never
//! dereferences one it did not find in its own tables (see `plugin.rs`).

use std::ffi::{c_char, c_int, c_ulong, c_void};
use std::mem::{offset_of, size_of};

/// `ncclResult_t`.
pub type NcclResult = c_int;
/// `ncclSuccess`.
pub const NCCL_SUCCESS: NcclResult = 0;
/// `ncclSystemError`: kernel, network or hardware failure.
pub const NCCL_SYSTEM_ERROR: NcclResult = 2;
/// `ncclInternalError`: NCCL misused the plugin (or the plugin has a bug).
pub const NCCL_INTERNAL_ERROR: NcclResult = 3;
/// `ncclInvalidArgument`: a NULL or unknown pointer, a size over the limits.
pub const NCCL_INVALID_ARGUMENT: NcclResult = 4;
/// `ncclInvalidUsage`: a user or configuration error.
pub const NCCL_INVALID_USAGE: NcclResult = 5;

/// Bytes of the opaque connection handle NCCL allocates and exchanges.
pub const NCCL_NET_HANDLE_MAXSIZE: usize = 128;
/// `ptrSupport` bit / `regMr` type: host memory.
pub const NCCL_PTR_HOST: c_int = 0x1;
/// `ptrSupport` bit / `regMr` type: CUDA memory.
pub const NCCL_PTR_CUDA: c_int = 0x2;
/// Operations in flight per comm NCCL may issue.
pub const NCCL_NET_MAX_REQUESTS: usize = 32;
/// The v9+ `*request` hint on irecv entry.
pub const NCCL_NET_OPTIONAL_RECV_COMPLETION: usize = 0x1;
/// `ncclNetDeviceType` HOST.
pub const NCCL_NET_DEVICE_HOST: c_int = 0;
/// `netDeviceVersion` of a host-only plugin.
pub const NCCL_NET_DEVICE_INVALID_VERSION: c_int = 0;

/// `ncclDebugLogLevel` WARN.
pub const NCCL_LOG_WARN: c_int = 2;
/// `ncclDebugLogLevel` INFO.
pub const NCCL_LOG_INFO: c_int = 3;
/// `ncclDebugLogLevel` TRACE.
pub const NCCL_LOG_TRACE: c_int = 5;
/// `ncclDebugLogSubSys` INIT.
pub const NCCL_INIT: c_ulong = 0x1;
/// `ncclDebugLogSubSys` NET.
pub const NCCL_NET: c_ulong = 0x10;

/// `ncclDebugLogger_t` (C variadic; call it with a `"%s"` format).
pub type Logger = unsafe extern "C" fn(
    level: c_int,
    flags: c_ulong,
    file: *const c_char,
    line: c_int,
    fmt: *const c_char,
    ...
);
/// `ncclProfilerCallback_t` (unused).
pub type ProfilerCallback = *mut c_void;

/// `ncclNetDeviceHandle_v7_t` (same for v8–v12).
#[repr(C)]
#[derive(Debug)]
pub struct DeviceHandle {
    /// `ncclNetDeviceType`.
    pub net_device_type: c_int,
    /// Version.
    pub net_device_version: c_int,
    /// Opaque.
    pub handle: *mut c_void,
    /// Size.
    pub size: usize,
    /// Whether the proxy must keep progressing.
    pub needs_proxy_progress: c_int,
}
const _: () = assert!(size_of::<DeviceHandle>() == 32);
const _: () = assert!(offset_of!(DeviceHandle, handle) == 8);
const _: () = assert!(offset_of!(DeviceHandle, size) == 16);
const _: () = assert!(offset_of!(DeviceHandle, needs_proxy_progress) == 24);

/// `ncclNetVDeviceProps_v9_t` … `_v11_t`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VDeviceProps4 {
    /// Number of physical devices.
    pub ndevs: c_int,
    /// Their indices.
    pub devs: [c_int; 4],
}
const _: () = assert!(size_of::<VDeviceProps4>() == 20);

/// `ncclNetVDeviceProps_v12_t`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VDeviceProps8 {
    /// Number of physical devices.
    pub ndevs: c_int,
    /// Their indices.
    pub devs: [c_int; 8],
}
const _: () = assert!(size_of::<VDeviceProps8>() == 36);

/// `ncclNetCommConfig_v10_t` … `_v12_t`.
#[repr(C)]
#[derive(Debug)]
pub struct CommConfig {
    /// Traffic class, -1 when undefined.
    pub traffic_class: c_int,
}
const _: () = assert!(size_of::<CommConfig>() == 4);

/// `ncclNetCommAttr_v11_t` / `_v12_t`.
#[repr(C)]
#[derive(Debug)]
pub struct CommAttr {
    /// Most concurrent peers.
    pub max_concurrent_peers: i32,
    /// Fewest concurrent peers.
    pub min_concurrent_peers: i32,
    /// Most flows per peer.
    pub max_flows_per_peer: i32,
    /// Fewest flows per peer.
    pub min_flows_per_peer: i32,
}
const _: () = assert!(size_of::<CommAttr>() == 16);

/// `ncclNetAttr_v11_t` / `_v12_t`.
#[repr(C)]
#[derive(Debug)]
pub struct NetAttr {
    /// Send side hints.
    pub send_comm_attr: CommAttr,
    /// Receive side hints.
    pub recv_comm_attr: CommAttr,
    /// Bitmask of `ncclFunc_t`.
    pub op: u32,
    /// Algorithm.
    pub algo: u32,
    /// Protocol.
    pub proto: u32,
}
const _: () = assert!(size_of::<NetAttr>() == 44);
const _: () = assert!(offset_of!(NetAttr, recv_comm_attr) == 16);
const _: () = assert!(offset_of!(NetAttr, op) == 32);
const _: () = assert!(offset_of!(NetAttr, proto) == 40);

/// `ncclNetProperties_v8_t`.
#[repr(C)]
#[derive(Debug)]
pub struct PropertiesV8 {
    pub name: *mut c_char,
    pub pci_path: *mut c_char,
    pub guid: u64,
    pub ptr_support: c_int,
    pub reg_is_global: c_int,
    pub speed: c_int,
    pub port: c_int,
    pub latency: f32,
    pub max_comms: c_int,
    pub max_recvs: c_int,
    pub net_device_type: c_int,
    pub net_device_version: c_int,
}
const _: () = assert!(size_of::<PropertiesV8>() == 64);
const _: () = assert!(offset_of!(PropertiesV8, pci_path) == 8);
const _: () = assert!(offset_of!(PropertiesV8, guid) == 16);
const _: () = assert!(offset_of!(PropertiesV8, ptr_support) == 24);
const _: () = assert!(offset_of!(PropertiesV8, reg_is_global) == 28);
const _: () = assert!(offset_of!(PropertiesV8, speed) == 32);
const _: () = assert!(offset_of!(PropertiesV8, port) == 36);
const _: () = assert!(offset_of!(PropertiesV8, latency) == 40);
const _: () = assert!(offset_of!(PropertiesV8, max_comms) == 44);
const _: () = assert!(offset_of!(PropertiesV8, max_recvs) == 48);
const _: () = assert!(offset_of!(PropertiesV8, net_device_type) == 52);
const _: () = assert!(offset_of!(PropertiesV8, net_device_version) == 56);

/// `ncclNetProperties_v9_t` and `_v10_t` (identical layout).
#[repr(C)]
#[derive(Debug)]
pub struct PropertiesV9 {
    pub name: *mut c_char,
    pub pci_path: *mut c_char,
    pub guid: u64,
    pub ptr_support: c_int,
    pub reg_is_global: c_int,
    pub force_flush: c_int,
    pub speed: c_int,
    pub port: c_int,
    pub latency: f32,
    pub max_comms: c_int,
    pub max_recvs: c_int,
    pub net_device_type: c_int,
    pub net_device_version: c_int,
    pub v_props: VDeviceProps4,
    pub max_p2p_bytes: usize,
    pub max_coll_bytes: usize,
}
const _: () = assert!(size_of::<PropertiesV9>() == 104);
const _: () = assert!(offset_of!(PropertiesV9, force_flush) == 32);
const _: () = assert!(offset_of!(PropertiesV9, speed) == 36);
const _: () = assert!(offset_of!(PropertiesV9, port) == 40);
const _: () = assert!(offset_of!(PropertiesV9, latency) == 44);
const _: () = assert!(offset_of!(PropertiesV9, max_comms) == 48);
const _: () = assert!(offset_of!(PropertiesV9, max_recvs) == 52);
const _: () = assert!(offset_of!(PropertiesV9, net_device_type) == 56);
const _: () = assert!(offset_of!(PropertiesV9, net_device_version) == 60);
const _: () = assert!(offset_of!(PropertiesV9, v_props) == 64);
const _: () = assert!(offset_of!(PropertiesV9, max_p2p_bytes) == 88);
const _: () = assert!(offset_of!(PropertiesV9, max_coll_bytes) == 96);

/// `ncclNetProperties_v11_t`.
#[repr(C)]
#[derive(Debug)]
pub struct PropertiesV11 {
    pub v9: PropertiesV9,
    pub max_multi_request_size: c_int,
}
const _: () = assert!(size_of::<PropertiesV11>() == 112);
const _: () = assert!(offset_of!(PropertiesV11, max_multi_request_size) == 104);

/// `ncclNetProperties_v12_t`.
#[repr(C)]
#[derive(Debug)]
pub struct PropertiesV12 {
    pub name: *mut c_char,
    pub pci_path: *mut c_char,
    pub guid: u64,
    pub ptr_support: c_int,
    pub reg_is_global: c_int,
    pub force_flush: c_int,
    pub speed: c_int,
    pub port: c_int,
    pub latency: f32,
    pub max_comms: c_int,
    pub max_recvs: c_int,
    pub net_device_type: c_int,
    pub net_device_version: c_int,
    pub v_props: VDeviceProps8,
    pub max_p2p_bytes: usize,
    pub max_coll_bytes: usize,
    pub max_multi_request_size: c_int,
    pub rail_id: i16,
    pub plane_id: i16,
}
const _: () = assert!(size_of::<PropertiesV12>() == 128);
const _: () = assert!(offset_of!(PropertiesV12, force_flush) == 32);
const _: () = assert!(offset_of!(PropertiesV12, net_device_version) == 60);
const _: () = assert!(offset_of!(PropertiesV12, v_props) == 64);
const _: () = assert!(offset_of!(PropertiesV12, max_p2p_bytes) == 104);
const _: () = assert!(offset_of!(PropertiesV12, max_coll_bytes) == 112);
const _: () = assert!(offset_of!(PropertiesV12, max_multi_request_size) == 120);
const _: () = assert!(offset_of!(PropertiesV12, rail_id) == 124);
const _: () = assert!(offset_of!(PropertiesV12, plane_id) == 126);

type P = *mut c_void;
type Pp = *mut *mut c_void;
type Dh = *mut *mut DeviceHandle;

/// `ncclNet_v8_t`.
#[repr(C)]
#[derive(Debug)]
pub struct NetV8 {
    pub name: *const c_char,
    pub init: unsafe extern "C" fn(Option<Logger>) -> NcclResult,
    pub devices: unsafe extern "C" fn(*mut c_int) -> NcclResult,
    pub get_properties: unsafe extern "C" fn(c_int, *mut PropertiesV8) -> NcclResult,
    pub listen: unsafe extern "C" fn(c_int, P, Pp) -> NcclResult,
    pub connect: unsafe extern "C" fn(c_int, P, Pp, Dh) -> NcclResult,
    pub accept: unsafe extern "C" fn(P, Pp, Dh) -> NcclResult,
    pub reg_mr: unsafe extern "C" fn(P, P, usize, c_int, Pp) -> NcclResult,
    pub reg_mr_dma_buf:
        Option<unsafe extern "C" fn(P, P, usize, c_int, u64, c_int, Pp) -> NcclResult>,
    pub dereg_mr: unsafe extern "C" fn(P, P) -> NcclResult,
    pub isend: unsafe extern "C" fn(P, P, c_int, c_int, P, Pp) -> NcclResult,
    pub irecv: unsafe extern "C" fn(P, c_int, Pp, *mut c_int, *mut c_int, Pp, Pp) -> NcclResult,
    pub iflush: unsafe extern "C" fn(P, c_int, Pp, *mut c_int, Pp, Pp) -> NcclResult,
    pub test: unsafe extern "C" fn(P, *mut c_int, *mut c_int) -> NcclResult,
    pub close_send: unsafe extern "C" fn(P) -> NcclResult,
    pub close_recv: unsafe extern "C" fn(P) -> NcclResult,
    pub close_listen: unsafe extern "C" fn(P) -> NcclResult,
    pub get_device_mr: Option<unsafe extern "C" fn(P, P, Pp) -> NcclResult>,
    pub irecv_consumed: Option<unsafe extern "C" fn(P, c_int, P) -> NcclResult>,
}
const _: () = assert!(size_of::<NetV8>() == 152);
const _: () = assert!(offset_of!(NetV8, init) == 8);
const _: () = assert!(offset_of!(NetV8, reg_mr) == 56);
const _: () = assert!(offset_of!(NetV8, test) == 104);
const _: () = assert!(offset_of!(NetV8, irecv_consumed) == 144);

/// `ncclNet_v9_t`.
#[repr(C)]
#[derive(Debug)]
pub struct NetV9 {
    pub name: *const c_char,
    pub init: unsafe extern "C" fn(Option<Logger>) -> NcclResult,
    pub devices: unsafe extern "C" fn(*mut c_int) -> NcclResult,
    pub get_properties: unsafe extern "C" fn(c_int, *mut PropertiesV9) -> NcclResult,
    pub listen: unsafe extern "C" fn(c_int, P, Pp) -> NcclResult,
    pub connect: unsafe extern "C" fn(c_int, P, Pp, Dh) -> NcclResult,
    pub accept: unsafe extern "C" fn(P, Pp, Dh) -> NcclResult,
    pub reg_mr: unsafe extern "C" fn(P, P, usize, c_int, Pp) -> NcclResult,
    pub reg_mr_dma_buf:
        Option<unsafe extern "C" fn(P, P, usize, c_int, u64, c_int, Pp) -> NcclResult>,
    pub dereg_mr: unsafe extern "C" fn(P, P) -> NcclResult,
    pub isend: unsafe extern "C" fn(P, P, usize, c_int, P, Pp) -> NcclResult,
    pub irecv: unsafe extern "C" fn(P, c_int, Pp, *mut usize, *mut c_int, Pp, Pp) -> NcclResult,
    pub iflush: unsafe extern "C" fn(P, c_int, Pp, *mut c_int, Pp, Pp) -> NcclResult,
    pub test: unsafe extern "C" fn(P, *mut c_int, *mut c_int) -> NcclResult,
    pub close_send: unsafe extern "C" fn(P) -> NcclResult,
    pub close_recv: unsafe extern "C" fn(P) -> NcclResult,
    pub close_listen: unsafe extern "C" fn(P) -> NcclResult,
    pub get_device_mr: Option<unsafe extern "C" fn(P, P, Pp) -> NcclResult>,
    pub irecv_consumed: Option<unsafe extern "C" fn(P, c_int, P) -> NcclResult>,
    pub make_v_device: Option<unsafe extern "C" fn(*mut c_int, *mut VDeviceProps4) -> NcclResult>,
}
const _: () = assert!(size_of::<NetV9>() == 160);
const _: () = assert!(offset_of!(NetV9, make_v_device) == 152);

/// `ncclNet_v10_t`.
#[repr(C)]
#[derive(Debug)]
pub struct NetV10 {
    pub name: *const c_char,
    pub init: unsafe extern "C" fn(Option<Logger>, ProfilerCallback) -> NcclResult,
    pub devices: unsafe extern "C" fn(*mut c_int) -> NcclResult,
    pub get_properties: unsafe extern "C" fn(c_int, *mut PropertiesV9) -> NcclResult,
    pub listen: unsafe extern "C" fn(c_int, P, Pp) -> NcclResult,
    pub connect: unsafe extern "C" fn(c_int, *mut CommConfig, P, Pp, Dh) -> NcclResult,
    pub accept: unsafe extern "C" fn(P, Pp, Dh) -> NcclResult,
    pub reg_mr: unsafe extern "C" fn(P, P, usize, c_int, Pp) -> NcclResult,
    pub reg_mr_dma_buf:
        Option<unsafe extern "C" fn(P, P, usize, c_int, u64, c_int, Pp) -> NcclResult>,
    pub dereg_mr: unsafe extern "C" fn(P, P) -> NcclResult,
    pub isend: unsafe extern "C" fn(P, P, usize, c_int, P, P, Pp) -> NcclResult,
    pub irecv: unsafe extern "C" fn(P, c_int, Pp, *mut usize, *mut c_int, Pp, Pp, Pp) -> NcclResult,
    pub iflush: unsafe extern "C" fn(P, c_int, Pp, *mut c_int, Pp, Pp) -> NcclResult,
    pub test: unsafe extern "C" fn(P, *mut c_int, *mut c_int) -> NcclResult,
    pub close_send: unsafe extern "C" fn(P) -> NcclResult,
    pub close_recv: unsafe extern "C" fn(P) -> NcclResult,
    pub close_listen: unsafe extern "C" fn(P) -> NcclResult,
    pub get_device_mr: Option<unsafe extern "C" fn(P, P, Pp) -> NcclResult>,
    pub irecv_consumed: Option<unsafe extern "C" fn(P, c_int, P) -> NcclResult>,
    pub make_v_device: Option<unsafe extern "C" fn(*mut c_int, *mut VDeviceProps4) -> NcclResult>,
}
const _: () = assert!(size_of::<NetV10>() == 160);
const _: () = assert!(offset_of!(NetV10, connect) == 40);
const _: () = assert!(offset_of!(NetV10, make_v_device) == 152);

/// `ncclNet_v11_t` (`V` = the vDevice props type) and `ncclNet_v12_t`.
#[repr(C)]
#[derive(Debug)]
pub struct NetV11<Props, V> {
    pub name: *const c_char,
    pub init: unsafe extern "C" fn(
        Pp,
        u64,
        *mut CommConfig,
        Option<Logger>,
        ProfilerCallback,
    ) -> NcclResult,
    pub devices: unsafe extern "C" fn(*mut c_int) -> NcclResult,
    pub get_properties: unsafe extern "C" fn(c_int, *mut Props) -> NcclResult,
    pub listen: unsafe extern "C" fn(P, c_int, P, Pp) -> NcclResult,
    pub connect: unsafe extern "C" fn(P, c_int, P, Pp, Dh) -> NcclResult,
    pub accept: unsafe extern "C" fn(P, Pp, Dh) -> NcclResult,
    pub reg_mr: unsafe extern "C" fn(P, P, usize, c_int, Pp) -> NcclResult,
    pub reg_mr_dma_buf:
        Option<unsafe extern "C" fn(P, P, usize, c_int, u64, c_int, Pp) -> NcclResult>,
    pub dereg_mr: unsafe extern "C" fn(P, P) -> NcclResult,
    pub isend: unsafe extern "C" fn(P, P, usize, c_int, P, P, Pp) -> NcclResult,
    pub irecv: unsafe extern "C" fn(P, c_int, Pp, *mut usize, *mut c_int, Pp, Pp, Pp) -> NcclResult,
    pub iflush: unsafe extern "C" fn(P, c_int, Pp, *mut c_int, Pp, Pp) -> NcclResult,
    pub test: unsafe extern "C" fn(P, *mut c_int, *mut c_int) -> NcclResult,
    pub close_send: unsafe extern "C" fn(P) -> NcclResult,
    pub close_recv: unsafe extern "C" fn(P) -> NcclResult,
    pub close_listen: unsafe extern "C" fn(P) -> NcclResult,
    pub get_device_mr: Option<unsafe extern "C" fn(P, P, Pp) -> NcclResult>,
    pub irecv_consumed: Option<unsafe extern "C" fn(P, c_int, P) -> NcclResult>,
    pub make_v_device: Option<unsafe extern "C" fn(*mut c_int, *mut V) -> NcclResult>,
    pub finalize: unsafe extern "C" fn(P) -> NcclResult,
    pub set_net_attr: Option<unsafe extern "C" fn(P, *mut NetAttr) -> NcclResult>,
}
/// `ncclNet_v11_t`.
pub type NetV11T = NetV11<PropertiesV11, VDeviceProps4>;
/// `ncclNet_v12_t`.
pub type NetV12T = NetV11<PropertiesV12, VDeviceProps8>;
const _: () = assert!(size_of::<NetV11T>() == 176);
const _: () = assert!(size_of::<NetV12T>() == 176);
const _: () = assert!(offset_of!(NetV11T, listen) == 32);
const _: () = assert!(offset_of!(NetV11T, make_v_device) == 152);
const _: () = assert!(offset_of!(NetV11T, finalize) == 160);
const _: () = assert!(offset_of!(NetV12T, set_net_attr) == 168);

/// A function table in a `static`: raw pointers are not `Sync`, but the table is immutable
/// and points at a `'static` string and functions only.
#[repr(transparent)]
#[derive(Debug)]
pub struct Table<T>(pub T);
// SAFETY: immutable after construction; contains only pointers to 'static data and code.
unsafe impl<T> Sync for Table<T> {}
