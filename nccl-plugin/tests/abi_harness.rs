//! The ABI harness: loads the built `libnccl_net_weir.so` the way NCCL does
//! (`dlopen(RTLD_NOW | RTLD_LOCAL)`, `dlsym("ncclNetPlugin_vN")`) and plays NCCL's proxy
//! threads against it, without NCCL and without a GPU: init, devices, getProperties, listen,
//! handle exchange, non-blocking connect/accept, regMr, many requests in flight (single and
//! grouped receives), test until done, byte-for-byte checks, close, finalize, dlclose, reopen.
//!
//! One process: a sender thread and a receiver thread share the library (NCCL's service and
//! progress threads do the same). Tests are serialised: they share the loaded library.

// A driver test: it reads the OS clock and spawns threads (STYLE.md rule 1).
#![allow(clippy::disallowed_methods)]

use std::ffi::{CStr, c_int, c_void};
use std::path::PathBuf;
use std::ptr::null_mut;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
use nccl_net_weir::ffi::*;

static SERIAL: Mutex<()> = Mutex::new(());

fn lib_path() -> PathBuf {
    // `cargo test` builds the cdylib into `target/<profile>/deps/` (next to this binary) but
    // only `cargo build` refreshes the copy in `target/<profile>/`: prefer the fresh one.
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("deps dir");
    let fresh = deps.join("libnccl_net_weir.so");
    if fresh.exists() {
        return fresh;
    }
    let p = deps
        .parent()
        .expect("target dir")
        .join("libnccl_net_weir.so");
    assert!(p.exists(), "{} not built", p.display());
    p
}

fn setup() -> std::sync::MutexGuard<'static, ()> {
    let g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // Loopback unless the caller picked an interface (WEIR_IFNAME=eth0 cargo test ...).
    if std::env::var_os("WEIR_IFNAME").is_none() {
        // SAFETY: tests are serialised by SERIAL and nothing else in this process writes the
        // environment concurrently.
        unsafe { std::env::set_var("WEIR_IFNAME", "lo") };
    }
    g
}

/// Engine threads alive in this process.
fn engine_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    std::fs::read_to_string(e.path().join("comm"))
                        .is_ok_and(|c| c.starts_with("weir-engine"))
                })
                .count()
        })
        .unwrap_or(0)
}

/// One loaded table, any exported version, behind a version-independent face.
struct Net {
    _lib: Library,
    v8: Option<&'static NetV8>,
    v9: Option<&'static NetV9>,
    v10: Option<&'static NetV10>,
    v11: Option<&'static NetV11T>,
    v12: Option<&'static NetV12T>,
    ctx: *mut c_void,
}

// SAFETY: the plugin is thread-safe by contract (NCCL calls it from several threads); the
// raw pointers are opaque ids.
unsafe impl Send for Net {}
// SAFETY: as above.
unsafe impl Sync for Net {}

/// Call an entry whose signature is the same in every version.
macro_rules! call {
    ($net:expr, $f:ident ( $($a:expr),* )) => {
        // SAFETY: calling the plugin's table with arguments that follow NCCL's contract (or
        // deliberately break it in the misuse test, which the plugin must survive).
        unsafe {
            match ($net.v8, $net.v9, $net.v10, $net.v11, $net.v12) {
                (Some(t), ..) => (t.$f)($($a),*),
                (_, Some(t), ..) => (t.$f)($($a),*),
                (_, _, Some(t), ..) => (t.$f)($($a),*),
                (_, _, _, Some(t), _) => (t.$f)($($a),*),
                (.., Some(t)) => (t.$f)($($a),*),
                _ => unreachable!(),
            }
        }
    };
}

impl Net {
    fn open(version: u32) -> Net {
        // SAFETY: loading our own plugin; its initialisers are Rust statics only.
        let lib =
            unsafe { Library::open(Some(lib_path()), RTLD_NOW | RTLD_LOCAL) }.expect("dlopen");
        let sym = format!("ncclNetPlugin_v{version}");
        let mut net = Net {
            _lib: lib,
            v8: None,
            v9: None,
            v10: None,
            v11: None,
            v12: None,
            ctx: null_mut(),
        };
        // SAFETY: the symbols are data objects of these layouts (checked in ffi.rs); the
        // references do not outlive the library (held in the same struct).
        unsafe {
            let lib = &net._lib;
            match version {
                8 => net.v8 = Some(&**lib.get::<*const NetV8>(sym.as_bytes()).expect("v8")),
                9 => net.v9 = Some(&**lib.get::<*const NetV9>(sym.as_bytes()).expect("v9")),
                10 => net.v10 = Some(&**lib.get::<*const NetV10>(sym.as_bytes()).expect("v10")),
                11 => net.v11 = Some(&**lib.get::<*const NetV11T>(sym.as_bytes()).expect("v11")),
                12 => net.v12 = Some(&**lib.get::<*const NetV12T>(sym.as_bytes()).expect("v12")),
                _ => panic!("no table v{version}"),
            }
        }
        // SAFETY: the first field of every table is the name.
        let name = unsafe {
            let p = **net
                ._lib
                .get::<*const *const std::ffi::c_char>(sym.as_bytes())
                .expect("symbol");
            CStr::from_ptr(p)
        };
        assert_eq!(name.to_str().unwrap(), "weir");
        // SAFETY: plugin calls with valid arguments.
        let rc = unsafe {
            match (net.v8, net.v9, net.v10, net.v11, net.v12) {
                (Some(t), ..) => (t.init)(None),
                (_, Some(t), ..) => (t.init)(None),
                (_, _, Some(t), ..) => (t.init)(None, null_mut()),
                (_, _, _, Some(t), _) => (t.init)(&mut net.ctx, 1, null_mut(), None, null_mut()),
                (.., Some(t)) => (t.init)(&mut net.ctx, 1, null_mut(), None, null_mut()),
                _ => unreachable!(),
            }
        };
        assert_eq!(rc, NCCL_SUCCESS, "init");
        net
    }

    fn devices(&self) -> c_int {
        let mut n = 0;
        assert_eq!(call!(self, devices(&mut n)), NCCL_SUCCESS);
        n
    }

    fn check_properties(&self) {
        if let Some(t) = self.v8 {
            let mut p: PropertiesV8 = unsafe { std::mem::zeroed() };
            assert_eq!(unsafe { (t.get_properties)(0, &mut p) }, NCCL_SUCCESS);
            assert_eq!(p.ptr_support, NCCL_PTR_HOST);
            assert_eq!(p.max_recvs, 8);
            assert_eq!(p.reg_is_global, 1);
            assert!(p.speed > 0);
            let name = unsafe { CStr::from_ptr(p.name) }.to_str().unwrap();
            let ifname = std::env::var("WEIR_IFNAME").unwrap();
            assert_eq!(name, format!("weir-{ifname}"));
        }
        if let Some(t) = self.v12 {
            let mut p: PropertiesV12 = unsafe { std::mem::zeroed() };
            assert_eq!(unsafe { (t.get_properties)(0, &mut p) }, NCCL_SUCCESS);
            assert_eq!(p.ptr_support, NCCL_PTR_HOST);
            assert_eq!(p.max_recvs, 8);
            assert_eq!(p.reg_is_global, 1);
            assert_eq!(p.max_p2p_bytes, 1 << 30);
            assert_eq!(p.v_props.ndevs, 1);
            assert_eq!((p.rail_id, p.plane_id), (-1, -1));
            assert!(p.latency > 0.0 && p.latency.is_finite());
        }
        let v9 = |p: &PropertiesV9| {
            assert_eq!(p.ptr_support, NCCL_PTR_HOST);
            assert_eq!((p.max_recvs, p.reg_is_global), (8, 1));
            assert_eq!(p.max_p2p_bytes, 1 << 30);
            assert_eq!(p.v_props.ndevs, 1);
            assert!(p.speed > 0 && p.latency > 0.0);
        };
        // SAFETY: out-pointers to zeroed structs of each version's layout.
        unsafe {
            if let Some(t) = self.v9 {
                let mut p: PropertiesV9 = std::mem::zeroed();
                assert_eq!((t.get_properties)(0, &mut p), NCCL_SUCCESS);
                v9(&p);
            }
            if let Some(t) = self.v10 {
                let mut p: PropertiesV9 = std::mem::zeroed();
                assert_eq!((t.get_properties)(0, &mut p), NCCL_SUCCESS);
                v9(&p);
            }
            if let Some(t) = self.v11 {
                let mut p: PropertiesV11 = std::mem::zeroed();
                assert_eq!((t.get_properties)(0, &mut p), NCCL_SUCCESS);
                v9(&p.v9);
                assert_eq!(p.max_multi_request_size, 1);
            }
        }
    }

    fn listen(&self, h: &mut [u8; 128], l: &mut *mut c_void) -> c_int {
        let hp = h.as_mut_ptr().cast();
        // SAFETY: a 128-byte handle buffer and an out-pointer.
        unsafe {
            match (self.v8, self.v9, self.v10, self.v11, self.v12) {
                (Some(t), ..) => (t.listen)(0, hp, l),
                (_, Some(t), ..) => (t.listen)(0, hp, l),
                (_, _, Some(t), ..) => (t.listen)(0, hp, l),
                (_, _, _, Some(t), _) => (t.listen)(self.ctx, 0, hp, l),
                (.., Some(t)) => (t.listen)(self.ctx, 0, hp, l),
                _ => unreachable!(),
            }
        }
    }

    fn connect(&self, h: &mut [u8; 128], s: &mut *mut c_void) -> c_int {
        let hp = h.as_mut_ptr().cast();
        let mut cfg = CommConfig { traffic_class: -1 };
        // SAFETY: the peer's handle buffer (writable), out-pointers.
        unsafe {
            match (self.v8, self.v9, self.v10, self.v11, self.v12) {
                (Some(t), ..) => (t.connect)(0, hp, s, null_mut()),
                (_, Some(t), ..) => (t.connect)(0, hp, s, null_mut()),
                (_, _, Some(t), ..) => (t.connect)(0, &mut cfg, hp, s, null_mut()),
                (_, _, _, Some(t), _) => (t.connect)(self.ctx, 0, hp, s, null_mut()),
                (.., Some(t)) => (t.connect)(self.ctx, 0, hp, s, null_mut()),
                _ => unreachable!(),
            }
        }
    }

    fn isend(
        &self,
        comm: *mut c_void,
        data: *mut u8,
        size: usize,
        tag: c_int,
        mh: *mut c_void,
        req: &mut *mut c_void,
    ) -> c_int {
        let d = data.cast();
        // SAFETY: a registered buffer kept alive until the request completes.
        unsafe {
            match (self.v8, self.v9, self.v10, self.v11, self.v12) {
                (Some(t), ..) => (t.isend)(comm, d, size as c_int, tag, mh, req),
                (_, Some(t), ..) => (t.isend)(comm, d, size, tag, mh, req),
                (_, _, Some(t), ..) => (t.isend)(comm, d, size, tag, mh, null_mut(), req),
                (_, _, _, Some(t), _) => (t.isend)(comm, d, size, tag, mh, null_mut(), req),
                (.., Some(t)) => (t.isend)(comm, d, size, tag, mh, null_mut(), req),
                _ => unreachable!(),
            }
        }
    }

    fn irecv(
        &self,
        comm: *mut c_void,
        data: &mut [*mut c_void],
        sizes: &[usize],
        tags: &mut [c_int],
        mhs: &mut [*mut c_void],
        req: &mut *mut c_void,
    ) -> c_int {
        let n = data.len() as c_int;
        let (d, tg, m) = (data.as_mut_ptr(), tags.as_mut_ptr(), mhs.as_mut_ptr());
        let mut s32: Vec<c_int> = sizes.iter().map(|&x| x as c_int).collect();
        let mut s = sizes.to_vec();
        let sp = s.as_mut_ptr();
        let nil = null_mut();
        // SAFETY: arrays of n elements; registered buffers kept alive until completion.
        unsafe {
            match (self.v8, self.v9, self.v10, self.v11, self.v12) {
                (Some(t), ..) => (t.irecv)(comm, n, d, s32.as_mut_ptr(), tg, m, req),
                (_, Some(t), ..) => (t.irecv)(comm, n, d, sp, tg, m, req),
                (_, _, Some(t), ..) => (t.irecv)(comm, n, d, sp, tg, m, nil, req),
                (_, _, _, Some(t), _) => (t.irecv)(comm, n, d, sp, tg, m, nil, req),
                (.., Some(t)) => (t.irecv)(comm, n, d, sp, tg, m, nil, req),
                _ => unreachable!(),
            }
        }
    }

    /// Connect a send comm to a recv comm through non-blocking connect/accept.
    fn pair(&self) -> (*mut c_void, *mut c_void) {
        let mut handle = [0u8; 128];
        let mut l = null_mut();
        assert_eq!(self.listen(&mut handle, &mut l), NCCL_SUCCESS);
        assert!(!l.is_null());
        let mut peer_handle = handle; // "exchanged out of band"
        let (mut s, mut r): (*mut c_void, *mut c_void) = (null_mut(), null_mut());
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut calls = 0;
        while s.is_null() || r.is_null() {
            assert!(Instant::now() < deadline, "connect/accept did not finish");
            if s.is_null() {
                assert_eq!(self.connect(&mut peer_handle, &mut s), NCCL_SUCCESS);
                calls += 1;
            }
            if r.is_null() {
                assert_eq!(call!(self, accept(l, &mut r, null_mut())), NCCL_SUCCESS);
            }
            std::thread::yield_now();
        }
        assert!(calls >= 2, "connect should not complete on its first call");
        assert_eq!(call!(self, close_listen(l)), NCCL_SUCCESS);
        (s, r)
    }

    fn finalize(&self) {
        // SAFETY: the context init returned, finalized once.
        unsafe {
            if let Some(t) = self.v11 {
                assert_eq!((t.finalize)(self.ctx), NCCL_SUCCESS);
            }
            if let Some(t) = self.v12 {
                assert_eq!((t.finalize)(self.ctx), NCCL_SUCCESS);
            }
        }
    }
}

const SIZES: [usize; 8] = [0, 1024, 4096, 65_536, 262_144, 1 << 20, 4 << 20, 3000];
const SLACK: usize = 512;
const GROUP_TAGS: [c_int; 3] = [100, 101, 102];

fn pattern(msg: usize, off: usize) -> u8 {
    (msg.wrapping_mul(31) ^ off.wrapping_mul(7) ^ (off >> 9)) as u8
}

/// (tag, size) of every message, in sending order; receive groups of 1 or 3.
fn plan() -> (Vec<(c_int, usize)>, Vec<Vec<usize>>) {
    let mut msgs = Vec::new();
    let mut groups = Vec::new();
    for round in 0..3 {
        for &s in &SIZES {
            groups.push(vec![msgs.len()]);
            msgs.push((7, s));
        }
        // A grouped receive of three buffers; the sender sends their tags out of order.
        let base = msgs.len();
        for (i, &t) in [GROUP_TAGS[2], GROUP_TAGS[0], GROUP_TAGS[1]]
            .iter()
            .enumerate()
        {
            msgs.push((t, 2048 * (i + 1) + round * 100));
        }
        // Receive buffer j of the group takes the message with GROUP_TAGS[j].
        groups.push(vec![base + 1, base + 2, base]);
    }
    (msgs, groups)
}

fn transfer(net: &Net, s: *mut c_void, r: *mut c_void) {
    let (msgs, groups) = plan();
    let total: usize = msgs.iter().map(|m| m.1 + SLACK).sum();
    let offsets: Vec<usize> = msgs
        .iter()
        .scan(0, |o, m| {
            let x = *o;
            *o += m.1 + SLACK;
            Some(x)
        })
        .collect();
    let mut sbuf = vec![0u8; total];
    for (i, m) in msgs.iter().enumerate() {
        for k in 0..m.1 {
            sbuf[offsets[i] + k] = pattern(i, k);
        }
    }
    let mut rbuf = vec![0xEEu8; total];
    let (mut smh, mut rmh) = (null_mut(), null_mut());
    if !s.is_null() {
        assert_eq!(
            call!(
                net,
                reg_mr(s, sbuf.as_mut_ptr().cast(), total, NCCL_PTR_HOST, &mut smh)
            ),
            NCCL_SUCCESS
        );
    }
    if !r.is_null() {
        assert_eq!(
            call!(
                net,
                reg_mr(r, rbuf.as_mut_ptr().cast(), total, NCCL_PTR_HOST, &mut rmh)
            ),
            NCCL_SUCCESS
        );
    }

    let sb = sbuf.as_mut_ptr() as usize;
    let rb = rbuf.as_mut_ptr() as usize;
    let (sp, rp, smhp, rmhp) = (s as usize, r as usize, smh as usize, rmh as usize);
    std::thread::scope(|sc| {
        let msgs = &msgs;
        let offsets = &offsets;
        let groups = &groups;
        // Sender: up to 32 isends in flight.
        if sp != 0 {
            sc.spawn(move || {
                let mut inflight: Vec<(usize, *mut c_void)> = Vec::new();
                let mut next = 0;
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut max_inflight = 0;
                while next < msgs.len() || !inflight.is_empty() {
                    assert!(Instant::now() < deadline, "sender stuck");
                    while next < msgs.len() && inflight.len() < 32 {
                        let (tag, size) = msgs[next];
                        let mut req = null_mut();
                        let p = (sb + offsets[next]) as *mut u8;
                        assert_eq!(
                            net.isend(sp as _, p, size, tag, smhp as _, &mut req),
                            NCCL_SUCCESS
                        );
                        if req.is_null() {
                            break;
                        }
                        inflight.push((next, req));
                        next += 1;
                    }
                    max_inflight = max_inflight.max(inflight.len());
                    inflight.retain(|&(i, req)| {
                        let (mut done, mut size) = (0, -1);
                        assert_eq!(call!(net, test(req, &mut done, &mut size)), NCCL_SUCCESS);
                        if done == 1 {
                            assert_eq!(size as usize, msgs[i].1, "send size of message {i}");
                        }
                        done == 0
                    });
                }
                assert!(max_inflight > 8, "only {max_inflight} sends in flight");
            });
        }
        // Receiver: up to 32 irecvs (groups) in flight.
        if rp != 0 {
            sc.spawn(move || {
                let mut inflight: Vec<(usize, *mut c_void)> = Vec::new();
                let mut next = 0;
                let deadline = Instant::now() + Duration::from_secs(60);
                while next < groups.len() || !inflight.is_empty() {
                    assert!(Instant::now() < deadline, "receiver stuck");
                    while next < groups.len() && inflight.len() < 32 {
                        let g = &groups[next];
                        let mut data: Vec<*mut c_void> = g
                            .iter()
                            .map(|&i| (rb + offsets[i]) as *mut c_void)
                            .collect();
                        let sizes: Vec<usize> = g.iter().map(|&i| msgs[i].1 + SLACK).collect();
                        let mut tags: Vec<c_int> = g.iter().map(|&i| msgs[i].0).collect();
                        let mut mhs = vec![rmhp as *mut c_void; g.len()];
                        let mut req = null_mut();
                        assert_eq!(
                            net.irecv(rp as _, &mut data, &sizes, &mut tags, &mut mhs, &mut req),
                            NCCL_SUCCESS
                        );
                        if req.is_null() {
                            break;
                        }
                        inflight.push((next, req));
                        next += 1;
                    }
                    inflight.retain(|&(gi, req)| {
                        let mut done = 0;
                        let mut sizes = [0 as c_int; 64];
                        assert_eq!(
                            call!(net, test(req, &mut done, sizes.as_mut_ptr())),
                            NCCL_SUCCESS
                        );
                        if done == 1 {
                            for (j, &i) in groups[gi].iter().enumerate() {
                                assert_eq!(
                                    sizes[j] as usize, msgs[i].1,
                                    "recv size of message {i}"
                                );
                            }
                        }
                        done == 0
                    });
                }
            });
        }
    });
    for (i, m) in msgs.iter().enumerate().filter(|_| !r.is_null()) {
        let got = &rbuf[offsets[i]..offsets[i] + m.1];
        if let Some(k) = (0..m.1).find(|&k| got[k] != pattern(i, k)) {
            panic!("message {i} ({} bytes) differs at byte {k}", m.1);
        }
        assert!(
            rbuf[offsets[i] + m.1..offsets[i] + m.1 + SLACK]
                .iter()
                .all(|&b| b == 0xEE),
            "message {i} wrote past its end"
        );
    }
    if !s.is_null() {
        assert_eq!(call!(net, dereg_mr(s, smh)), NCCL_SUCCESS);
    }
    if !r.is_null() {
        assert_eq!(call!(net, dereg_mr(r, rmh)), NCCL_SUCCESS);
    }
}

fn roundtrip(version: u32) {
    let _g = setup();
    for _ in 0..2 {
        let net = Net::open(version);
        assert_eq!(net.devices(), 1);
        net.check_properties();
        // Connection setup, data and teardown on a "proxy thread" that exits before dlclose,
        // as NCCL's do.
        std::thread::scope(|sc| {
            sc.spawn(|| {
                let (s, r) = net.pair();
                assert!(engine_threads() >= 1);
                transfer(&net, s, r);
                assert_eq!(call!(net, close_send(s)), NCCL_SUCCESS);
                assert_eq!(call!(net, close_recv(r)), NCCL_SUCCESS);
            });
        });
        net.finalize();
        assert_eq!(
            engine_threads(),
            0,
            "engine thread left after the last close"
        );
        drop(net); // dlclose
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        eprintln!(
            "after dlclose the library is {}",
            if maps.contains("libnccl_net_weir") {
                "still mapped"
            } else {
                "unmapped"
            }
        );
    }
}

#[test]
fn abi_v8_roundtrip_twice() {
    roundtrip(8);
}

#[test]
fn abi_v12_roundtrip_twice() {
    roundtrip(12);
}

#[test]
fn abi_misuse_never_crashes() {
    let _g = setup();
    let net = Net::open(12);
    let t = net.v12.unwrap();
    let garbage = 0xdead_beef_usize as *mut c_void;
    let bogus_comm = 0x5745_0000_0000_usize as *mut c_void; // looks like ours, is not live
    let mut out = null_mut();
    let mut done = 0;
    unsafe {
        // NULL and garbage pointers.
        assert_eq!((t.devices)(null_mut()), NCCL_INVALID_ARGUMENT);
        assert_eq!((t.get_properties)(0, null_mut()), NCCL_INVALID_ARGUMENT);
        assert_eq!(
            (t.get_properties)(7, &mut std::mem::zeroed()),
            NCCL_INVALID_ARGUMENT
        );
        assert_eq!(
            (t.test)(null_mut(), &mut done, null_mut()),
            NCCL_INVALID_ARGUMENT
        );
        assert_eq!(
            (t.test)(garbage, &mut done, null_mut()),
            NCCL_INVALID_ARGUMENT
        );
        assert_eq!(
            (t.test)(bogus_comm, null_mut(), null_mut()),
            NCCL_INVALID_ARGUMENT
        );
        assert_eq!((t.close_send)(null_mut()), NCCL_INVALID_ARGUMENT);
        assert_eq!((t.close_recv)(garbage), NCCL_INVALID_ARGUMENT);
        assert_eq!((t.close_listen)(bogus_comm), NCCL_INVALID_ARGUMENT);
        assert_eq!(
            (t.accept)(garbage, &mut out, null_mut()),
            NCCL_INVALID_ARGUMENT
        );
        assert_eq!(
            (t.listen)(net.ctx, 0, null_mut(), &mut out),
            NCCL_INVALID_ARGUMENT
        );
        assert_eq!(
            (t.listen)(garbage, 0, [0u8; 128].as_mut_ptr().cast(), &mut out),
            NCCL_INVALID_ARGUMENT
        );
        let mut zero = [0u8; 128];
        assert_eq!(
            (t.connect)(net.ctx, 0, zero.as_mut_ptr().cast(), &mut out, null_mut()),
            NCCL_INVALID_ARGUMENT
        );
        let mut buf = vec![0u8; 8192];
        assert_eq!(
            (t.reg_mr)(
                garbage,
                buf.as_mut_ptr().cast(),
                8192,
                NCCL_PTR_HOST,
                &mut out
            ),
            NCCL_INVALID_ARGUMENT
        );
        let mut req = null_mut();
        assert_eq!(
            (t.isend)(
                garbage,
                buf.as_mut_ptr().cast(),
                10,
                0,
                garbage,
                null_mut(),
                &mut req
            ),
            NCCL_INVALID_ARGUMENT
        );
        assert_eq!((t.finalize)(garbage), NCCL_INVALID_ARGUMENT);
    }

    // A real pair for handle-level misuse.
    let (s, r) = net.pair();
    let mut sbuf = vec![1u8; 8192];
    let mut rbuf = vec![0u8; 8192];
    let (mut smh, mut rmh) = (null_mut(), null_mut());
    unsafe {
        assert_eq!(
            (t.reg_mr)(s, sbuf.as_mut_ptr().cast(), 8192, NCCL_PTR_CUDA, &mut smh),
            NCCL_INVALID_ARGUMENT
        );
        assert_eq!(
            (t.reg_mr)(s, sbuf.as_mut_ptr().cast(), 8192, NCCL_PTR_HOST, &mut smh),
            NCCL_SUCCESS
        );
        assert_eq!(
            (t.reg_mr)(r, rbuf.as_mut_ptr().cast(), 8192, NCCL_PTR_HOST, &mut rmh),
            NCCL_SUCCESS
        );
        // regIsGlobal: the same buffer registered again (through the other comm) shares the
        // registration; releasing the second handle leaves the first usable (used below).
        let mut smh2 = null_mut();
        assert_eq!(
            (t.reg_mr)(r, sbuf.as_mut_ptr().cast(), 8192, NCCL_PTR_HOST, &mut smh2),
            NCCL_SUCCESS
        );
        assert_ne!(smh, smh2);
        assert_eq!((t.dereg_mr)(r, smh2), NCCL_SUCCESS);
        let mut req = null_mut();
        // Wrong comm kind, oversize, outside the registration, bad n.
        assert_eq!(
            (t.isend)(
                r,
                sbuf.as_mut_ptr().cast(),
                10,
                0,
                smh,
                null_mut(),
                &mut req
            ),
            NCCL_INVALID_ARGUMENT
        );
        assert_eq!(
            (t.isend)(
                s,
                sbuf.as_mut_ptr().cast(),
                (1 << 30) + 1,
                0,
                smh,
                null_mut(),
                &mut req
            ),
            NCCL_INVALID_ARGUMENT
        );
        assert_eq!(
            (t.isend)(
                s,
                sbuf.as_mut_ptr().cast(),
                8193,
                0,
                smh,
                null_mut(),
                &mut req
            ),
            NCCL_INVALID_ARGUMENT
        );
        assert_eq!(
            (t.isend)(
                s,
                sbuf.as_mut_ptr().cast(),
                10,
                0,
                garbage,
                null_mut(),
                &mut req
            ),
            NCCL_INVALID_ARGUMENT
        );
        assert_eq!(
            (t.isend)(
                s,
                sbuf.as_mut_ptr().cast(),
                10,
                0,
                smh,
                null_mut(),
                null_mut()
            ),
            NCCL_INVALID_ARGUMENT
        );
        let mut d = [rbuf.as_mut_ptr().cast::<c_void>(); 9];
        let mut sz = [16usize; 9];
        let mut tg = [0 as c_int; 9];
        let mut mh = [rmh; 9];
        assert_eq!(
            (t.irecv)(
                r,
                0,
                d.as_mut_ptr(),
                sz.as_mut_ptr(),
                tg.as_mut_ptr(),
                mh.as_mut_ptr(),
                null_mut(),
                &mut req
            ),
            NCCL_INVALID_ARGUMENT
        );
        assert_eq!(
            (t.irecv)(
                r,
                9,
                d.as_mut_ptr(),
                sz.as_mut_ptr(),
                tg.as_mut_ptr(),
                mh.as_mut_ptr(),
                null_mut(),
                &mut req
            ),
            NCCL_INVALID_ARGUMENT
        );
        assert_eq!(
            (t.irecv)(
                r,
                1,
                null_mut(),
                sz.as_mut_ptr(),
                tg.as_mut_ptr(),
                mh.as_mut_ptr(),
                null_mut(),
                &mut req
            ),
            NCCL_INVALID_ARGUMENT
        );

        // Truncation: 4096 bytes into a 1024-byte receive is an error, not a silent cut.
        let mut sreq = null_mut();
        let mut rreq = null_mut();
        assert_eq!(
            (t.isend)(
                s,
                sbuf.as_mut_ptr().cast(),
                4096,
                5,
                smh,
                null_mut(),
                &mut sreq
            ),
            NCCL_SUCCESS
        );
        sz[0] = 1024;
        tg[0] = 5;
        assert_eq!(
            (t.irecv)(
                r,
                1,
                d.as_mut_ptr(),
                sz.as_mut_ptr(),
                tg.as_mut_ptr(),
                mh.as_mut_ptr(),
                null_mut(),
                &mut rreq
            ),
            NCCL_SUCCESS
        );
        assert!(!sreq.is_null() && !rreq.is_null());
        let deadline = Instant::now() + Duration::from_secs(10);
        let rc = loop {
            let mut sizes = [0 as c_int; 64];
            let rc = (t.test)(rreq, &mut done, sizes.as_mut_ptr());
            if rc != NCCL_SUCCESS || done == 1 {
                break rc;
            }
            assert!(
                Instant::now() < deadline,
                "truncated receive never completed"
            );
        };
        assert_eq!(rc, NCCL_INTERNAL_ERROR, "truncation must be an error");
        assert!(
            rbuf[1024..].iter().all(|&b| b == 0),
            "wrote past the receive buffer"
        );
        // The finished request is gone: testing it again is an error.
        assert_eq!((t.test)(rreq, &mut done, null_mut()), NCCL_INVALID_ARGUMENT);

        // iflush on host memory: done at once.
        let mut freq = null_mut();
        assert_eq!(
            (t.iflush)(r, 1, d.as_mut_ptr(), null_mut(), mh.as_mut_ptr(), &mut freq),
            NCCL_SUCCESS
        );
        assert_eq!((t.test)(freq, &mut done, null_mut()), NCCL_SUCCESS);
        assert_eq!(done, 1);

        // Double deregistration, double close, use after close.
        assert_eq!((t.dereg_mr)(s, smh), NCCL_SUCCESS);
        assert_eq!((t.dereg_mr)(s, smh), NCCL_INVALID_ARGUMENT);
        assert_eq!((t.close_send)(s), NCCL_SUCCESS);
        assert_eq!((t.close_send)(s), NCCL_INVALID_ARGUMENT);
        assert_eq!((t.test)(sreq, &mut done, null_mut()), NCCL_INVALID_ARGUMENT);
        assert_eq!(
            (t.isend)(
                s,
                sbuf.as_mut_ptr().cast(),
                10,
                0,
                smh,
                null_mut(),
                &mut req
            ),
            NCCL_INVALID_ARGUMENT
        );
        assert_eq!((t.close_recv)(r), NCCL_SUCCESS);
        assert_eq!((t.close_recv)(r), NCCL_INVALID_ARGUMENT);
        assert_eq!((t.finalize)(net.ctx), NCCL_SUCCESS);
        assert_eq!((t.finalize)(net.ctx), NCCL_INVALID_ARGUMENT);
    }
    assert_eq!(engine_threads(), 0);
}

/// Child side of the multi-process tests; does nothing unless spawned with
/// `WEIR_HARNESS_ROLE` (`recv`: listen, print the handle, accept, receive; `send`: connect
/// with the handle from `WEIR_HARNESS_HANDLE`, send).
#[test]
fn harness_child() {
    let Ok(role) = std::env::var("WEIR_HARNESS_ROLE") else {
        return;
    };
    let version: u32 = std::env::var("WEIR_HARNESS_VERSION")
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("WEIR_HARNESS_VERSION");
    let _g = setup();
    let net = Net::open(version);
    assert_eq!(net.devices(), 1);
    net.check_properties();
    let deadline = Instant::now() + Duration::from_secs(20);
    if role == "recv" {
        let mut handle = [0u8; 128];
        let mut l = null_mut();
        assert_eq!(net.listen(&mut handle, &mut l), NCCL_SUCCESS);
        let hex: String = handle.iter().map(|b| format!("{b:02x}")).collect();
        println!("HANDLE {hex}");
        use std::io::Write;
        std::io::stdout().flush().unwrap();
        let mut r: *mut c_void = null_mut();
        while r.is_null() {
            assert!(Instant::now() < deadline, "accept did not finish");
            assert_eq!(call!(net, accept(l, &mut r, null_mut())), NCCL_SUCCESS);
            std::thread::yield_now();
        }
        assert_eq!(call!(net, close_listen(l)), NCCL_SUCCESS);
        transfer(&net, null_mut(), r);
        // Tell the sender (through the parent) that every message was consumed: the engine
        // drops a closed peer's unconsumed messages (see README.md, "Known limitations").
        println!("RECV DONE");
        std::io::stdout().flush().unwrap();
        assert_eq!(call!(net, close_recv(r)), NCCL_SUCCESS);
    } else {
        let hex = std::env::var("WEIR_HARNESS_HANDLE").expect("WEIR_HARNESS_HANDLE");
        let mut handle = [0u8; 128];
        for (i, b) in handle.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
        }
        let mut s: *mut c_void = null_mut();
        while s.is_null() {
            assert!(Instant::now() < deadline, "connect did not finish");
            assert_eq!(net.connect(&mut handle, &mut s), NCCL_SUCCESS);
            std::thread::yield_now();
        }
        transfer(&net, s, null_mut());
        let mut go = String::new();
        std::io::stdin().read_line(&mut go).unwrap();
        assert_eq!(call!(net, close_send(s)), NCCL_SUCCESS);
    }
    net.finalize();
    assert_eq!(engine_threads(), 0);
    println!("CHILD {role} OK");
}

/// `pairs` sender/receiver process pairs at once, each pair exchanging its handle through
/// the parent (NCCL's bootstrap network), with `loss` injected on every receive path.
fn processes(version: u32, loss: &str, pairs: usize, extra: &[(&str, &str)]) {
    use std::io::BufRead;
    use std::process::{Child, Command, Stdio};
    let exe = std::env::current_exe().expect("current_exe");
    let child = |role: &str, handle: Option<&str>, out: Stdio| -> Child {
        let mut c = Command::new(&exe);
        c.args([
            "harness_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("WEIR_HARNESS_ROLE", role)
        .env("WEIR_HARNESS_VERSION", version.to_string())
        .env("WEIR_IFNAME", "lo")
        .env("WEIR_LOSS", loss)
        .stdin(Stdio::piped())
        .stdout(out);
        c.envs(extra.iter().copied());
        if let Some(h) = handle {
            c.env("WEIR_HARNESS_HANDLE", h);
        }
        c.spawn().expect("spawn child")
    };
    let mut kids = Vec::new();
    let mut drains = Vec::new();
    for _ in 0..pairs {
        let mut recv = child("recv", None, Stdio::piped());
        let mut lines = std::io::BufReader::new(recv.stdout.take().expect("stdout")).lines();
        let handle = loop {
            let line = lines.next().expect("receiver exited early").expect("read");
            // libtest may put "test harness_child ... " in front of the line.
            if let Some(pos) = line.find("HANDLE ") {
                break line[pos + 7..].trim().to_string();
            }
        };
        let mut send = child("send", Some(&handle), Stdio::inherit());
        let mut go = send.stdin.take().expect("stdin");
        drains.push(std::thread::spawn(move || {
            let mut out = Vec::new();
            for l in lines.map_while(Result::ok) {
                if l.contains("RECV DONE") {
                    use std::io::Write;
                    let _ = go.write_all(b"go\n");
                }
                out.push(l);
            }
            out
        }));
        kids.push(recv);
        kids.push(send);
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut ok = vec![None; kids.len()];
    while ok.iter().any(Option::is_none) {
        for (i, k) in kids.iter_mut().enumerate() {
            if ok[i].is_none()
                && let Some(st) = k.try_wait().expect("wait")
            {
                ok[i] = Some(st.success());
            }
        }
        if Instant::now() > deadline {
            for k in &mut kids {
                let _ = k.kill();
            }
            panic!("children did not finish in time: {ok:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for d in drains {
        let out = d.join().expect("drain");
        assert!(
            out.iter().any(|l| l.contains("CHILD recv OK")),
            "receiver: {out:?}"
        );
    }
    assert!(ok.iter().all(|o| *o == Some(true)), "child failed: {ok:?}");
}

#[test]
fn abi_two_processes_v8() {
    processes(8, "0", 1, &[]);
}

#[test]
fn abi_two_processes_v12() {
    processes(12, "0", 1, &[]);
}

#[test]
fn abi_two_processes_v9() {
    processes(9, "0", 1, &[]);
}

#[test]
fn abi_two_processes_v10() {
    processes(10, "0", 1, &[]);
}

#[test]
fn abi_two_processes_v11() {
    processes(11, "0", 1, &[]);
}

#[test]
fn abi_two_processes_v9_loss_1pct() {
    processes(9, "0.01", 1, &[]);
}

#[test]
fn abi_two_processes_v10_loss_1pct() {
    processes(10, "0.01", 1, &[]);
}

#[test]
fn abi_two_processes_v11_loss_1pct() {
    processes(11, "0.01", 1, &[]);
}

#[test]
fn abi_two_processes_v8_loss_1pct() {
    processes(8, "0.01", 1, &[]);
}

#[test]
fn abi_two_processes_v12_loss_1pct() {
    processes(12, "0.01", 1, &[]);
}

#[test]
fn abi_four_processes_v12_loss_1pct() {
    processes(12, "0.01", 2, &[]);
}

#[test]
fn abi_two_processes_v12_go_back_n_dcqcn_loss_1pct() {
    processes(12, "0.01", 1, &[("WEIR_MODE", "gbn"), ("WEIR_CC", "dcqcn")]);
}

/// Every congestion-control algorithm the plugin offers (`WEIR_CC`) carries the harness's
/// traffic under 1 % loss.
#[test]
fn abi_two_processes_v12_every_cc_loss_1pct() {
    for cc in ["fixed", "timely", "swift", "hpcc", "nscc", "rccc"] {
        processes(12, "0.01", 1, &[("WEIR_CC", cc)]);
    }
    // And a TOML file with overrides, as a site would configure it.
    let file = std::env::temp_dir().join(format!("weir-harness-cc-{}.toml", std::process::id()));
    std::fs::write(&file, "[cc]\nalgorithm = \"nscc\"\nqa_gate = 2\n").expect("write");
    processes(12, "0.01", 1, &[("WEIR_CC", file.to_str().expect("utf8"))]);
    let _ = std::fs::remove_file(&file);
}

/// A sender may finish (every byte acknowledged) and close before the receiver has posted
/// its receives; the messages must still be delivered.
#[test]
fn abi_close_send_before_receiver_posts() {
    let _g = setup();
    let net = Net::open(12);
    let (s, r) = net.pair();
    let sizes = [1000usize, 70_000, 0, 300_000];
    let total: usize = sizes.iter().sum();
    let mut sbuf: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
    let mut rbuf = vec![0u8; total];
    let (mut smh, mut rmh) = (null_mut(), null_mut());
    assert_eq!(
        call!(
            net,
            reg_mr(s, sbuf.as_mut_ptr().cast(), total, NCCL_PTR_HOST, &mut smh)
        ),
        NCCL_SUCCESS
    );
    assert_eq!(
        call!(
            net,
            reg_mr(r, rbuf.as_mut_ptr().cast(), total, NCCL_PTR_HOST, &mut rmh)
        ),
        NCCL_SUCCESS
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut off = 0;
    for &n in &sizes {
        let mut req = null_mut();
        let p = unsafe { sbuf.as_mut_ptr().add(off) };
        assert_eq!(net.isend(s, p, n, 3, smh, &mut req), NCCL_SUCCESS);
        assert!(!req.is_null());
        let mut done = 0;
        while done == 0 {
            assert!(Instant::now() < deadline, "send did not complete");
            assert_eq!(call!(net, test(req, &mut done, null_mut())), NCCL_SUCCESS);
        }
        off += n;
    }
    assert_eq!(call!(net, dereg_mr(s, smh)), NCCL_SUCCESS);
    assert_eq!(call!(net, close_send(s)), NCCL_SUCCESS);
    let mut off = 0;
    for &n in &sizes {
        let mut req = null_mut();
        let mut data = [unsafe { rbuf.as_mut_ptr().add(off) }.cast::<c_void>()];
        assert_eq!(
            net.irecv(r, &mut data, &[n], &mut [3], &mut [rmh], &mut req),
            NCCL_SUCCESS
        );
        let (mut done, mut got) = (0, [0 as c_int; 64]);
        while done == 0 {
            assert!(Instant::now() < deadline, "receive did not complete");
            assert_eq!(
                call!(net, test(req, &mut done, got.as_mut_ptr())),
                NCCL_SUCCESS
            );
        }
        assert_eq!(got[0] as usize, n);
        off += n;
    }
    assert_eq!(rbuf, sbuf);
    assert_eq!(call!(net, dereg_mr(r, rmh)), NCCL_SUCCESS);
    assert_eq!(call!(net, close_recv(r)), NCCL_SUCCESS);
    net.finalize();
    assert_eq!(engine_threads(), 0);
}

/// Not a timed test: one process, sender and receiver threads, 8 MiB messages with 8 in
/// flight; prints the bandwidth. `cargo test --release -p weir-nccl-net --test abi_harness
/// -- --ignored --nocapture abi_bandwidth_report`.
#[test]
#[ignore]
fn abi_bandwidth_report() {
    let _g = setup();
    let net = Net::open(12);
    let (s, r) = net.pair();
    const SIZE: usize = 8 << 20;
    const SLOTS: usize = 8;
    const COUNT: usize = 128;
    let mut sbuf = vec![7u8; SIZE * SLOTS];
    let mut rbuf = vec![0u8; SIZE * SLOTS];
    let (mut smh, mut rmh) = (null_mut(), null_mut());
    assert_eq!(
        call!(
            net,
            reg_mr(
                s,
                sbuf.as_mut_ptr().cast(),
                SIZE * SLOTS,
                NCCL_PTR_HOST,
                &mut smh
            )
        ),
        NCCL_SUCCESS
    );
    assert_eq!(
        call!(
            net,
            reg_mr(
                r,
                rbuf.as_mut_ptr().cast(),
                SIZE * SLOTS,
                NCCL_PTR_HOST,
                &mut rmh
            )
        ),
        NCCL_SUCCESS
    );
    let (sb, rb) = (sbuf.as_mut_ptr() as usize, rbuf.as_mut_ptr() as usize);
    let (sp, rp, smhp, rmhp) = (s as usize, r as usize, smh as usize, rmh as usize);
    let start = Instant::now();
    std::thread::scope(|sc| {
        let net = &net;
        let side = move |send: bool| {
            let mut inflight: std::collections::VecDeque<*mut c_void> = Default::default();
            let mut posted = 0;
            while posted < COUNT || !inflight.is_empty() {
                if posted < COUNT && inflight.len() < SLOTS {
                    let slot = posted % SLOTS;
                    let mut req = null_mut();
                    let rc = if send {
                        net.isend(
                            sp as _,
                            (sb + slot * SIZE) as _,
                            SIZE,
                            1,
                            smhp as _,
                            &mut req,
                        )
                    } else {
                        let mut data = [(rb + slot * SIZE) as *mut c_void];
                        net.irecv(
                            rp as _,
                            &mut data,
                            &[SIZE],
                            &mut [1],
                            &mut [rmhp as _],
                            &mut req,
                        )
                    };
                    assert_eq!(rc, NCCL_SUCCESS);
                    if !req.is_null() {
                        inflight.push_back(req);
                        posted += 1;
                        continue;
                    }
                }
                if let Some(&req) = inflight.front() {
                    let mut done = 0;
                    let mut sizes = [0 as c_int; 64];
                    assert_eq!(
                        call!(net, test(req, &mut done, sizes.as_mut_ptr())),
                        NCCL_SUCCESS
                    );
                    if done == 1 {
                        inflight.pop_front();
                    }
                }
            }
        };
        sc.spawn(move || side(true));
        sc.spawn(move || side(false));
    });
    let secs = start.elapsed().as_secs_f64();
    let bytes = (SIZE * COUNT) as f64;
    eprintln!(
        "{COUNT} x {} MiB in {secs:.3} s: {:.2} GB/s ({:.1} Gbit/s)",
        SIZE >> 20,
        bytes / secs / 1e9,
        bytes * 8.0 / secs / 1e9
    );
    assert_eq!(call!(net, close_send(s)), NCCL_SUCCESS);
    assert_eq!(call!(net, close_recv(r)), NCCL_SUCCESS);
    net.finalize();
}

/// A connect to a peer that never answers fails with `ncclSystemError` once the handshake
/// times out, and releases the transport (no engine thread left).
#[test]
fn abi_connect_to_dead_peer_fails_cleanly() {
    let _g = setup();
    let net = Net::open(8);
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = dead.local_addr().expect("addr").port();
    let mut handle = [0u8; 128];
    let mut l = null_mut();
    assert_eq!(net.listen(&mut handle, &mut l), NCCL_SUCCESS);
    assert_eq!(call!(net, close_listen(l)), NCCL_SUCCESS);
    handle[32..34].copy_from_slice(&port.to_be_bytes());
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut s: *mut c_void = null_mut();
    let rc = loop {
        let rc = net.connect(&mut handle, &mut s);
        if rc != NCCL_SUCCESS {
            break rc;
        }
        assert!(s.is_null(), "connected to a socket that never answers");
        assert!(Instant::now() < deadline, "connect never failed");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(rc, NCCL_SYSTEM_ERROR);
    assert_eq!(engine_threads(), 0);
}

/// Every exported version is found by symbol, is named `weir`, and answers init, devices and
/// getProperties through its own shims (v9–v11 here; v8 and v12 run the full harness).
#[test]
fn abi_all_versions_exported() {
    let _g = setup();
    // SAFETY: loading our own plugin.
    let lib = unsafe { Library::open(Some(lib_path()), RTLD_NOW | RTLD_LOCAL) }.expect("dlopen");
    // SAFETY: the symbols are data objects of these layouts (checked in ffi.rs).
    unsafe {
        for v in 8..=12 {
            let sym = format!("ncclNetPlugin_v{v}");
            let p = lib
                .get::<*const *const std::ffi::c_char>(sym.as_bytes())
                .expect(&sym);
            assert_eq!(CStr::from_ptr(**p).to_str().unwrap(), "weir", "{sym}");
        }
        let v9 = &**lib.get::<*const NetV9>(b"ncclNetPlugin_v9").unwrap();
        assert_eq!((v9.init)(None), NCCL_SUCCESS);
        let mut n = 0;
        assert_eq!((v9.devices)(&mut n), NCCL_SUCCESS);
        assert_eq!(n, 1);
        let mut p: PropertiesV9 = std::mem::zeroed();
        assert_eq!((v9.get_properties)(0, &mut p), NCCL_SUCCESS);
        assert_eq!(
            (p.max_recvs, p.reg_is_global, p.ptr_support),
            (8, 1, NCCL_PTR_HOST)
        );
        assert_eq!(p.max_p2p_bytes, 1 << 30);

        let v10 = &**lib.get::<*const NetV10>(b"ncclNetPlugin_v10").unwrap();
        assert_eq!((v10.init)(None, null_mut()), NCCL_SUCCESS);
        let mut p: PropertiesV9 = std::mem::zeroed();
        assert_eq!((v10.get_properties)(0, &mut p), NCCL_SUCCESS);
        assert_eq!(p.v_props.ndevs, 1);

        let v11 = &**lib.get::<*const NetV11T>(b"ncclNetPlugin_v11").unwrap();
        let mut ctx = null_mut();
        assert_eq!(
            (v11.init)(&mut ctx, 7, null_mut(), None, null_mut()),
            NCCL_SUCCESS
        );
        assert!(!ctx.is_null());
        let mut p: PropertiesV11 = std::mem::zeroed();
        assert_eq!((v11.get_properties)(0, &mut p), NCCL_SUCCESS);
        assert_eq!(p.max_multi_request_size, 1);
        assert_eq!(p.v9.max_recvs, 8);
        assert_eq!((v11.finalize)(ctx), NCCL_SUCCESS);
        assert_eq!((v11.finalize)(ctx), NCCL_INVALID_ARGUMENT);
    }
    assert_eq!(engine_threads(), 0);
}
