//! The ABI tests of the NCCL net plugin: they load the built `libnccl_net_weir.so` the way
//! NCCL does (`dlopen(RTLD_NOW | RTLD_LOCAL)`, `dlsym("ncclNetPlugin_vN")`) and play NCCL's
//! proxy threads against it through [`weir_bench::plugin::Net`], without NCCL and without a GPU:
//! init, devices, getProperties, listen, handle exchange, non-blocking connect/accept, regMr,
//! many requests in flight (single and grouped receives), test until done, byte-for-byte
//! checks, close, finalize, dlclose, reopen. The misuse test calls the raw table.
//!
//! In one process a sender thread and a receiver thread share the library (NCCL's service and
//! progress threads do the same); those tests are serialised, as they share the loaded library.
//! The multi-process tests run this test binary again as children (`harness_child`), through
//! [`weir_bench::process::Peer`]. The library is the cdylib cargo builds next to this binary
//! (`target/<profile>/deps/`) as a dependency of this crate.

// A driver test: it reads the OS clock and spawns threads (an I/O crate, docs/architecture.md).
#![allow(clippy::disallowed_methods)]

use std::ffi::{c_int, c_void};
use std::path::PathBuf;
use std::process::Command;
use std::ptr::null_mut;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use weir_bench::nccl_net_weir::ffi::*;
use weir_bench::plugin::{
    Comm, Net, Pair, RecvBuf, Request, Table, handle_from_hex, handle_to_hex,
};
use weir_bench::process::Peer;

static SERIAL: Mutex<()> = Mutex::new(());

fn lib_path() -> PathBuf {
    // Cargo builds the cdylib into `target/<profile>/deps/` (next to this binary); only
    // `cargo build -p weir-nccl-net` refreshes the copy in `target/<profile>/`: prefer the
    // fresh one.
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
    assert!(
        p.exists(),
        "{} not built (cargo build -p weir-nccl-net)",
        p.display()
    );
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

/// Table `ncclNetPlugin_v{version}` of the built library, named `weir`, initialised.
fn open(version: u32) -> Net {
    let mut net = Net::load(Some(&lib_path()), version).expect("dlopen");
    assert_eq!(net.name(), "weir");
    net.init().expect("init");
    net
}

/// What every version must say of device 0.
fn check_properties(net: &Net) {
    let v = net.version();
    let p = net.properties(0).expect("getProperties");
    assert_eq!(p.ptr_support, NCCL_PTR_HOST, "v{v}");
    assert_eq!((p.max_recvs, p.reg_is_global), (8, 1), "v{v}");
    assert!(p.speed > 0, "v{v}");
    let ifname = std::env::var("WEIR_IFNAME").expect("WEIR_IFNAME");
    assert_eq!(p.name, format!("weir-{ifname}"), "v{v}");
    if v >= 9 {
        assert_eq!(p.max_p2p_bytes, Some(1 << 30), "v{v}");
        assert_eq!(p.ndevs, Some(1), "v{v}");
        assert!(p.latency > 0.0 && p.latency.is_finite(), "v{v}");
    }
    if v == 11 {
        assert_eq!(p.max_multi_request_size, Some(1));
    }
    if v == 12 {
        assert_eq!(p.rail_plane, Some((-1, -1)));
    }
}

/// A connected send/recv pair through non-blocking connect/accept.
fn pair(net: &Net) -> Pair {
    let p = net
        .pair(0, Instant::now() + Duration::from_secs(10))
        .expect("connect/accept");
    assert!(
        p.connect_calls >= 2,
        "connect should not complete on its first call"
    );
    p
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

/// Every message of [`plan`] from `s` to `r` (either may be in another process), up to 32
/// requests in flight on each side, checked byte for byte.
fn transfer(net: &Net, s: Option<Comm>, r: Option<Comm>) {
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
    let smh = s.map(|s| net.reg_mr(s, &mut sbuf).expect("regMr send"));
    let rmh = r.map(|r| net.reg_mr(r, &mut rbuf).expect("regMr recv"));
    // The buffers outlive the threads below, which are the only ones touching them meanwhile.
    let sb = sbuf.as_mut_ptr() as usize;
    let rb = rbuf.as_mut_ptr() as usize;
    std::thread::scope(|sc| {
        let msgs = &msgs;
        let offsets = &offsets;
        let groups = &groups;
        // Sender: up to 32 isends in flight.
        if let (Some(s), Some(smh)) = (s, smh) {
            sc.spawn(move || {
                let mut inflight: Vec<(usize, Request)> = Vec::new();
                let mut next = 0;
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut max_inflight = 0;
                while next < msgs.len() || !inflight.is_empty() {
                    assert!(Instant::now() < deadline, "sender stuck");
                    while next < msgs.len() && inflight.len() < 32 {
                        let (tag, size) = msgs[next];
                        let p = (sb + offsets[next]) as *mut u8;
                        // SAFETY: message `next` lies in the registered send buffer, which is
                        // not written until the scope ends.
                        let req = unsafe { net.isend(s, p, size, tag, smh) }.expect("isend");
                        let Some(req) = req else { break };
                        inflight.push((next, req));
                        next += 1;
                    }
                    max_inflight = max_inflight.max(inflight.len());
                    inflight.retain(|&(i, req)| match net.test(req).expect("test") {
                        Some(d) => {
                            assert_eq!(d.sizes()[0], msgs[i].1 as c_int, "send size of {i}");
                            false
                        }
                        None => true,
                    });
                }
                assert!(max_inflight > 8, "only {max_inflight} sends in flight");
            });
        }
        // Receiver: up to 32 irecvs (groups) in flight.
        if let (Some(r), Some(rmh)) = (r, rmh) {
            sc.spawn(move || {
                let mut inflight: Vec<(usize, Request)> = Vec::new();
                let mut next = 0;
                let deadline = Instant::now() + Duration::from_secs(60);
                while next < groups.len() || !inflight.is_empty() {
                    assert!(Instant::now() < deadline, "receiver stuck");
                    while next < groups.len() && inflight.len() < 32 {
                        let bufs: Vec<RecvBuf> = groups[next]
                            .iter()
                            .map(|&i| RecvBuf {
                                data: (rb + offsets[i]) as *mut u8,
                                size: msgs[i].1 + SLACK,
                                tag: msgs[i].0,
                                mr: rmh,
                            })
                            .collect();
                        // SAFETY: disjoint parts of the registered receive buffer, read only
                        // after the scope ends.
                        let req = unsafe { net.irecv(r, &bufs) }.expect("irecv");
                        let Some(req) = req else { break };
                        inflight.push((next, req));
                        next += 1;
                    }
                    inflight.retain(|&(gi, req)| match net.test(req).expect("test") {
                        Some(d) => {
                            for (j, &i) in groups[gi].iter().enumerate() {
                                assert_eq!(
                                    d.sizes()[j],
                                    msgs[i].1 as c_int,
                                    "recv size of message {i}"
                                );
                            }
                            false
                        }
                        None => true,
                    });
                }
            });
        }
    });
    for (i, m) in msgs.iter().enumerate().filter(|_| r.is_some()) {
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
    if let (Some(s), Some(smh)) = (s, smh) {
        net.dereg_mr(s, smh).expect("deregMr send");
    }
    if let (Some(r), Some(rmh)) = (r, rmh) {
        net.dereg_mr(r, rmh).expect("deregMr recv");
    }
}

fn roundtrip(version: u32) {
    let _g = setup();
    for _ in 0..2 {
        let net = open(version);
        assert_eq!(net.devices().expect("devices"), 1);
        check_properties(&net);
        // Connection setup, data and teardown on a "proxy thread" that exits before dlclose,
        // as NCCL's do.
        std::thread::scope(|sc| {
            sc.spawn(|| {
                let p = pair(&net);
                // A daemon's engine runs in another process (`WEIR_ENGINE=daemon…`).
                let daemon = matches!(
                    weir_firmware::net::Placement::from_env(),
                    Ok(weir_firmware::net::Placement::Daemon(_))
                );
                assert!(daemon || engine_threads() >= 1);
                transfer(&net, Some(p.send), Some(p.recv));
                net.close_send(p.send).expect("closeSend");
                net.close_recv(p.recv).expect("closeRecv");
            });
        });
        net.finalize().expect("finalize");
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
    let net = open(12);
    let Table::V12(t) = net.table() else {
        unreachable!("opened v12")
    };
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
            (t.listen)(net.ctx(), 0, null_mut(), &mut out),
            NCCL_INVALID_ARGUMENT
        );
        assert_eq!(
            (t.listen)(garbage, 0, [0u8; 128].as_mut_ptr().cast(), &mut out),
            NCCL_INVALID_ARGUMENT
        );
        let mut zero = [0u8; 128];
        assert_eq!(
            (t.connect)(net.ctx(), 0, zero.as_mut_ptr().cast(), &mut out, null_mut()),
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
    let p = pair(&net);
    let (s, r) = (p.send.as_ptr(), p.recv.as_ptr());
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
        // Wrong comm kind, oversize, outside the registration, bad mhandle, no request out.
        let sp = sbuf.as_mut_ptr().cast::<c_void>();
        let rq: *mut *mut c_void = &mut req;
        for (comm, size, mh, out) in [
            (r, 10, smh, rq),
            (s, (1 << 30) + 1, smh, rq),
            (s, 8193, smh, rq),
            (s, 10, garbage, rq),
            (s, 10, smh, null_mut()),
        ] {
            assert_eq!(
                (t.isend)(comm, sp, size, 0, mh, null_mut(), out),
                NCCL_INVALID_ARGUMENT
            );
        }
        // Bad n (0, above the maximum), no data array.
        let mut d = [rbuf.as_mut_ptr().cast::<c_void>(); 9];
        let mut sz = [16usize; 9];
        let mut tg = [0 as c_int; 9];
        let mut mh = [rmh; 9];
        for (n, data) in [(0, d.as_mut_ptr()), (9, d.as_mut_ptr()), (1, null_mut())] {
            assert_eq!(
                (t.irecv)(
                    r,
                    n,
                    data,
                    sz.as_mut_ptr(),
                    tg.as_mut_ptr(),
                    mh.as_mut_ptr(),
                    null_mut(),
                    &mut req
                ),
                NCCL_INVALID_ARGUMENT
            );
        }

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
        assert_eq!((t.finalize)(net.ctx()), NCCL_SUCCESS);
        assert_eq!((t.finalize)(net.ctx()), NCCL_INVALID_ARGUMENT);
    }
    assert_eq!(engine_threads(), 0);
}

/// Child side of the multi-process tests; does nothing unless spawned with
/// `WEIR_HARNESS_ROLE` (`recv`: listen, print the handle, accept, receive; `send`: connect
/// with the handle from `WEIR_HARNESS_HANDLE`, send, close once the parent says `go`).
#[test]
fn harness_child() {
    use std::io::{BufRead, Write};
    let Ok(role) = std::env::var("WEIR_HARNESS_ROLE") else {
        return;
    };
    let version: u32 = std::env::var("WEIR_HARNESS_VERSION")
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("WEIR_HARNESS_VERSION");
    let _g = setup();
    let net = open(version);
    assert_eq!(net.devices().expect("devices"), 1);
    check_properties(&net);
    let deadline = Instant::now() + Duration::from_secs(20);
    if role == "recv" {
        let (handle, l) = net.listen(0).expect("listen");
        println!("HANDLE {}", handle_to_hex(&handle));
        std::io::stdout().flush().expect("flush");
        let r = net.accept_until(l, deadline).expect("accept");
        net.close_listen(l).expect("closeListen");
        transfer(&net, None, Some(r));
        // Tell the sender (through the parent) that every message was consumed: the engine
        // drops a closed peer's unconsumed messages (see nccl-plugin/README.md, "Known
        // limitations").
        println!("RECV DONE");
        std::io::stdout().flush().expect("flush");
        net.close_recv(r).expect("closeRecv");
    } else {
        let hex = std::env::var("WEIR_HARNESS_HANDLE").expect("WEIR_HARNESS_HANDLE");
        let mut handle = handle_from_hex(&hex).expect("handle");
        let s = net
            .connect_until(0, &mut handle, deadline)
            .expect("connect");
        transfer(&net, Some(s), None);
        let mut go = String::new();
        std::io::stdin().lock().read_line(&mut go).expect("read go");
        net.close_send(s).expect("closeSend");
    }
    net.finalize().expect("finalize");
    assert_eq!(engine_threads(), 0);
    println!("CHILD {role} OK");
}

/// `pairs` sender/receiver process pairs at once, each pair exchanging its handle through
/// the parent (NCCL's bootstrap network), with `loss` injected on every receive path.
fn processes(version: u32, loss: &str, pairs: usize, extra: &[(&str, &str)]) {
    let exe = std::env::current_exe().expect("current_exe");
    let child = |role: &str, handle: Option<&str>| -> Command {
        let mut c = Command::new(&exe);
        // Terse output: libtest prints nothing on the child's lines before its own.
        c.args([
            "harness_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env("WEIR_HARNESS_ROLE", role)
        .env("WEIR_HARNESS_VERSION", version.to_string())
        .env("WEIR_IFNAME", "lo")
        .env("WEIR_LOSS", loss)
        .envs(extra.iter().copied());
        if let Some(h) = handle {
            c.env("WEIR_HARNESS_HANDLE", h);
        }
        c
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let left = || deadline.saturating_duration_since(Instant::now());
    let mut kids = Vec::new();
    for i in 0..pairs {
        let mut recv = Peer::spawn(&format!("receiver {i}"), child("recv", None)).expect("spawn");
        let handle = recv
            .expect("HANDLE ", left())
            .unwrap_or_else(|e| panic!("{e}"));
        let send =
            Peer::spawn(&format!("sender {i}"), child("send", Some(&handle))).expect("spawn");
        kids.push((recv, send));
    }
    for (recv, send) in &mut kids {
        recv.expect("RECV DONE", left())
            .unwrap_or_else(|e| panic!("{e}"));
        send.send("go");
        recv.expect("CHILD recv OK", left())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for (recv, send) in &mut kids {
        for k in [recv, send] {
            let status = k.wait(left());
            assert!(
                status.is_some_and(|s| s.success()),
                "{}: {status:?}; stderr:\n{}",
                k.name(),
                k.stderr()
            );
        }
    }
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

/// The plugin on a firmware engine thread of each process (`WEIR_ENGINE=inproc`): NCCL's
/// buffers registered by pointer, everything else through the descriptor rings.
#[test]
fn abi_two_processes_v12_engine_inproc() {
    processes(12, "0", 1, &[("WEIR_ENGINE", "inproc")]);
}

#[test]
fn abi_two_processes_v12_engine_inproc_loss_1pct() {
    processes(12, "0.01", 1, &[("WEIR_ENGINE", "inproc")]);
}

/// Two sender/receiver pairs (four processes) through one `weir engine` daemon
/// (`WEIR_ENGINE=daemon:<socket>`), which reaches NCCL's buffers by copy; `loss` injected
/// on the daemon's receive path (its own configuration: `WEIR_LOSS` is the daemon's
/// business there).
fn through_daemon(loss: f64) {
    use weir_firmware::daemon::Daemon;
    // The daemon's threads live in this process: keep them apart from the tests that count
    // engine threads.
    let _g = setup();
    let path = std::env::temp_dir().join(format!(
        "weir-abi-{}-{}.sock",
        std::process::id(),
        (loss * 1000.0) as u32
    ));
    let mut cfg = weir_datapath::HostConfig::default();
    cfg.udp.bind = std::net::Ipv4Addr::LOCALHOST.into();
    if loss > 0.0 {
        cfg.fault_rx.drop = loss;
        cfg.fault_rx.seed = 7;
    }
    let d = Daemon::start(&path, cfg, weir_firmware::EngineConfig::default()).expect("daemon");
    let engine = format!("daemon:{}", path.display());
    processes(12, "0", 2, &[("WEIR_ENGINE", &engine)]);
    let st = d.stats().expect("daemon stats");
    assert!(st.engine.completions > 0, "{st:?}");
}

#[test]
fn abi_four_processes_v12_engine_daemon() {
    through_daemon(0.0);
}

#[test]
fn abi_four_processes_v12_engine_daemon_loss_1pct() {
    through_daemon(0.01);
}

/// Every congestion-control algorithm the plugin offers (`WEIR_CC`) carries the harness's
/// traffic under 1 % loss.
#[test]
fn abi_two_processes_v12_every_cc_loss_1pct() {
    for cc in ["fixed", "timely", "hpcc", "nscc", "rccc"] {
        eprintln!("WEIR_CC={cc}");
        processes(12, "0.01", 1, &[("WEIR_CC", cc)]);
    }
    // And TOML files with overrides, as a site would configure them. Swift's published
    // targets are for a fabric (25 µs base, up to 100 µs more for small windows): on loopback
    // between two processes on a loaded 2-core machine round trips exceed them, often by
    // milliseconds of scheduling delay, so Swift cuts to its floor (0.01 packets: one packet
    // per 100 RTTs, paced) and the harness's traffic takes minutes. A site runs it with a
    // target above its round trip and a floor of one packet, as here.
    for (name, text) in [
        ("nscc", "[cc]\nalgorithm = \"nscc\"\nqa_gate = 2\n"),
        (
            "swift",
            "[cc]\nalgorithm = \"swift\"\nbase_target = 2000\nmin_cwnd = 1\n",
        ),
    ] {
        let file = std::env::temp_dir().join(format!(
            "weir-harness-cc-{name}-{}.toml",
            std::process::id()
        ));
        std::fs::write(&file, text).expect("write");
        eprintln!("WEIR_CC={}", file.display());
        processes(12, "0.01", 1, &[("WEIR_CC", file.to_str().expect("utf8"))]);
        let _ = std::fs::remove_file(&file);
    }
}

/// A sender may finish (every byte acknowledged) and close before the receiver has posted
/// its receives; the messages must still be delivered.
#[test]
fn abi_close_send_before_receiver_posts() {
    let _g = setup();
    let net = open(12);
    let Pair {
        send: s, recv: r, ..
    } = pair(&net);
    let sizes = [1000usize, 70_000, 0, 300_000];
    let total: usize = sizes.iter().sum();
    let mut sbuf: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
    let mut rbuf = vec![0u8; total];
    let smh = net.reg_mr(s, &mut sbuf).expect("regMr");
    let rmh = net.reg_mr(r, &mut rbuf).expect("regMr");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut off = 0;
    for &n in &sizes {
        // SAFETY: inside the registered buffer, untouched until the send completes below.
        let req = unsafe { net.isend(s, sbuf.as_mut_ptr().add(off), n, 3, smh) }
            .expect("isend")
            .expect("a free request");
        net.wait(req, deadline, "send").expect("send completes");
        off += n;
    }
    net.dereg_mr(s, smh).expect("deregMr");
    net.close_send(s).expect("closeSend");
    let mut off = 0;
    for &n in &sizes {
        let buf = RecvBuf {
            // SAFETY: inside the registered buffer.
            data: unsafe { rbuf.as_mut_ptr().add(off) },
            size: n,
            tag: 3,
            mr: rmh,
        };
        // SAFETY: untouched until the receive completes below.
        let req = unsafe { net.irecv(r, &[buf]) }
            .expect("irecv")
            .expect("a free request");
        let done = net
            .wait(req, deadline, "receive")
            .expect("receive completes");
        assert_eq!(done.size(), n);
        off += n;
    }
    assert_eq!(rbuf, sbuf);
    net.dereg_mr(r, rmh).expect("deregMr");
    net.close_recv(r).expect("closeRecv");
    net.finalize().expect("finalize");
    assert_eq!(engine_threads(), 0);
}

/// `deregMr` of the buffer a send in flight reads from: the send fails with an error (the
/// connection fails, as an RDMA queue pair does on a local protection error) instead of
/// `test` never reporting it done. The receiver posts nothing and the
/// message is larger than its unexpected-message budget (32 MiB), so the send cannot finish
/// before the deregistration.
#[test]
fn abi_dereg_during_a_send_fails_it() {
    let _g = setup();
    let net = open(12);
    let Pair {
        send: s, recv: r, ..
    } = pair(&net);
    const SIZE: usize = 64 << 20;
    let mut sbuf = vec![7u8; SIZE];
    let smh = net.reg_mr(s, &mut sbuf).expect("regMr");
    // SAFETY: the registered buffer, untouched until the request ends below.
    let req = unsafe { net.isend(s, sbuf.as_mut_ptr(), SIZE, 5, smh) }
        .expect("isend")
        .expect("a free request");
    let settle = Instant::now() + Duration::from_millis(200);
    while Instant::now() < settle {
        assert!(net.test(req).expect("test").is_none(), "cannot finish yet");
        std::thread::sleep(Duration::from_millis(10));
    }
    net.dereg_mr(s, smh).expect("deregMr");
    let err = net
        .wait(req, Instant::now() + Duration::from_secs(10), "send")
        .expect_err("the send must fail");
    // The plugin's log line names the peer ("send to 127.0.0.1:PORT failed: … local access
    // error …"); NCCL sees a system error.
    let msg = err.to_string();
    assert!(msg.contains("ncclSystemError"), "{msg}");
    net.close_send(s).expect("closeSend");
    net.close_recv(r).expect("closeRecv");
    net.finalize().expect("finalize");
    assert_eq!(engine_threads(), 0);
}

/// Not a timed test: the cost of one 4 KiB send (isend + irecv, tested to completion) with
/// `WEIR_IDLE_PAIRS` (default 2000) idle comm pairs open, and of closing them; prints the
/// figures. `WEIR_IDLE_PAIRS=24000 cargo test --release -p weir-bench --test abi --
/// --ignored --nocapture abi_idle_connections_report`.
#[test]
#[ignore]
fn abi_idle_connections_report() {
    let _g = setup();
    let n: usize = std::env::var("WEIR_IDLE_PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let net = open(12);
    let t = Instant::now();
    let idle: Vec<Pair> = (0..n).map(|_| pair(&net)).collect();
    let opened = t.elapsed();
    let Pair {
        send: s, recv: r, ..
    } = pair(&net);
    let mut sbuf = vec![7u8; 4096];
    let mut rbuf = vec![0u8; 4096];
    let smh = net.reg_mr(s, &mut sbuf).expect("regMr");
    let rmh = net.reg_mr(r, &mut rbuf).expect("regMr");
    const ROUNDS: usize = 2000;
    let deadline = Instant::now() + Duration::from_secs(120);
    let t = Instant::now();
    for _ in 0..ROUNDS {
        let buf = RecvBuf {
            data: rbuf.as_mut_ptr(),
            size: 4096,
            tag: 1,
            mr: rmh,
        };
        // SAFETY: registered buffers, untouched until both requests complete below.
        let rq = unsafe { net.irecv(r, &[buf]) }
            .expect("irecv")
            .expect("free");
        let sq = unsafe { net.isend(s, sbuf.as_mut_ptr(), 4096, 1, smh) }
            .expect("isend")
            .expect("free");
        net.wait(sq, deadline, "send").expect("send");
        net.wait(rq, deadline, "recv").expect("recv");
    }
    let per = t.elapsed() / ROUNDS as u32;
    // Every send comm first (each lingers until its receiver closes), then every receive
    // comm: the order that makes the lingering list longest.
    let t = Instant::now();
    for p in &idle {
        net.close_send(p.send).expect("closeSend");
    }
    for p in &idle {
        net.close_recv(p.recv).expect("closeRecv");
    }
    let closed = t.elapsed();
    println!(
        "{n} idle pairs: opened in {opened:.2?}; one 4 KiB send {per:.2?}; closed in {closed:.2?}"
    );
    net.dereg_mr(s, smh).expect("deregMr");
    net.dereg_mr(r, rmh).expect("deregMr");
    net.close_send(s).expect("closeSend");
    net.close_recv(r).expect("closeRecv");
    net.finalize().expect("finalize");
}

/// Moves `count` messages of `size` bytes from `s` to `r`, a sender and a receiver thread each
/// keeping `slots` requests in flight; the wall time from the first post to the last
/// completion (registration before, deregistration after, both outside it).
fn stream(net: &Net, s: Comm, r: Comm, size: usize, slots: usize, count: usize) -> Duration {
    let mut sbuf = vec![7u8; size * slots];
    let mut rbuf = vec![0u8; size * slots];
    let smh = net.reg_mr(s, &mut sbuf).expect("regMr");
    let rmh = net.reg_mr(r, &mut rbuf).expect("regMr");
    let (sb, rb) = (sbuf.as_mut_ptr() as usize, rbuf.as_mut_ptr() as usize);
    let start = Instant::now();
    std::thread::scope(|sc| {
        let side = move |send: bool| {
            let mut inflight: std::collections::VecDeque<Request> = Default::default();
            let mut posted = 0;
            let deadline = Instant::now() + Duration::from_secs(120);
            while posted < count || !inflight.is_empty() {
                assert!(Instant::now() < deadline, "stream stuck");
                if posted < count && inflight.len() < slots {
                    let slot = posted % slots;
                    // SAFETY: slot `slot` of a registered buffer, whose previous request has
                    // completed (at most `slots` in flight, tested oldest first).
                    let req = unsafe {
                        if send {
                            net.isend(s, (sb + slot * size) as *mut u8, size, 1, smh)
                        } else {
                            let buf = RecvBuf {
                                data: (rb + slot * size) as *mut u8,
                                size,
                                tag: 1,
                                mr: rmh,
                            };
                            net.irecv(r, &[buf])
                        }
                    }
                    .expect("post");
                    if let Some(req) = req {
                        inflight.push_back(req);
                        posted += 1;
                        continue;
                    }
                }
                if let Some(&req) = inflight.front()
                    && net.test(req).expect("test").is_some()
                {
                    inflight.pop_front();
                }
            }
        };
        sc.spawn(move || side(true));
        sc.spawn(move || side(false));
    });
    let elapsed = start.elapsed();
    net.dereg_mr(s, smh).expect("deregMr");
    net.dereg_mr(r, rmh).expect("deregMr");
    elapsed
}

/// Not a timed test: one process, sender and receiver threads, 8 MiB messages with 8 in
/// flight; prints the bandwidth. `cargo test --release -p weir-bench --test abi --
/// --ignored --nocapture abi_bandwidth_report`.
#[test]
#[ignore]
fn abi_bandwidth_report() {
    let _g = setup();
    let net = open(12);
    let Pair {
        send: s, recv: r, ..
    } = pair(&net);
    const SIZE: usize = 8 << 20;
    const COUNT: usize = 128;
    let secs = stream(&net, s, r, SIZE, 8, COUNT).as_secs_f64();
    let bytes = (SIZE * COUNT) as f64;
    eprintln!(
        "{COUNT} x {} MiB in {secs:.3} s: {:.2} GB/s ({:.1} Gbit/s)",
        SIZE >> 20,
        bytes / secs / 1e9,
        bytes * 8.0 / secs / 1e9
    );
    net.close_send(s).expect("closeSend");
    net.close_recv(r).expect("closeRecv");
    net.finalize().expect("finalize");
}

/// This process's resident set, bytes (`/proc/self/statm`: pages).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}

/// Open file descriptors of this process (sockets included).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Bulk bandwidth on a fresh pair: 64 MiB in 8 MiB messages, 8 in flight, three times;
/// the median, GB/s (10^9 B/s).
fn fresh_pair_bandwidth(net: &Net) -> f64 {
    const SIZE: usize = 8 << 20;
    const COUNT: usize = 8;
    let p = pair(net);
    let mut runs: Vec<f64> = (0..3)
        .map(|_| {
            (SIZE * COUNT) as f64 / stream(net, p.send, p.recv, SIZE, 8, COUNT).as_secs_f64() / 1e9
        })
        .collect();
    net.close_send(p.send).expect("closeSend");
    net.close_recv(p.recv).expect("closeRecv");
    runs.sort_by(f64::total_cmp);
    runs[1]
}

/// Not a timed test: connection churn with one pair kept up. `WEIR_CYCLES` (default 2000)
/// cycles of listen, connect, accept, regMr, one 1 KiB send and its receive, deregMr,
/// closeSend, closeRecv, closeListen — NCCL opening and closing communicators in a
/// long-running job. Every 10 % of the cycles it prints the time per cycle of that slice,
/// the process's RSS, its open file descriptors and engine threads (the engine's connection
/// count is not reachable through the plugin's C tables, so it is not printed); before and
/// after, the bulk bandwidth of a fresh pair. The last line compares the first slice with the
/// last. `WEIR_CYCLES=30000 cargo test --release -p weir-bench --test abi -- --ignored
/// --nocapture abi_open_close_cycles_report`.
#[test]
#[ignore]
fn abi_open_close_cycles_report() {
    let _g = setup();
    let n: usize = std::env::var("WEIR_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(2000);
    let net = open(12);
    let kept = pair(&net);
    let bw_before = fresh_pair_bandwidth(&net);
    let rss_start = rss_bytes();
    println!(
        "{n} open/close cycles, one pair kept up; bulk bandwidth before: {bw_before:.2} GB/s; \
         RSS {:.1} MB, {} fds, {} engine threads; engine connection count: not reachable \
         through the plugin (skipped)",
        rss_start as f64 / 1e6,
        open_fds(),
        engine_threads()
    );
    const SIZE: usize = 1024;
    let mut sbuf: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    let mut rbuf = vec![0u8; SIZE];
    let slice = n.div_ceil(10);
    let mut slices: Vec<(usize, Duration)> = Vec::new();
    let mut t = Instant::now();
    let mut in_slice = 0;
    for cycle in 1..=n {
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut handle, l) = net.listen(0).expect("listen");
        let (mut s, mut r) = (None, None);
        while s.is_none() || r.is_none() {
            assert!(Instant::now() < deadline, "cycle {cycle}: connect/accept");
            if s.is_none() {
                s = net.connect(0, &mut handle).expect("connect");
            }
            if r.is_none() {
                r = net.accept(l).expect("accept");
            }
            std::thread::yield_now();
        }
        let (Some(s), Some(r)) = (s, r) else {
            unreachable!("the loop ends with both ends up")
        };
        let smh = net.reg_mr(s, &mut sbuf).expect("regMr");
        let rmh = net.reg_mr(r, &mut rbuf).expect("regMr");
        let buf = RecvBuf {
            data: rbuf.as_mut_ptr(),
            size: SIZE,
            tag: 1,
            mr: rmh,
        };
        // SAFETY: registered buffers, untouched until both requests complete below.
        let rq = unsafe { net.irecv(r, &[buf]) }
            .expect("irecv")
            .expect("a free request");
        let sq = unsafe { net.isend(s, sbuf.as_mut_ptr(), SIZE, 1, smh) }
            .expect("isend")
            .expect("a free request");
        net.wait(sq, deadline, "send").expect("send");
        let done = net.wait(rq, deadline, "recv").expect("recv");
        assert_eq!(done.size(), SIZE, "cycle {cycle}");
        assert_eq!(rbuf, sbuf, "cycle {cycle}");
        rbuf.fill(0);
        net.dereg_mr(s, smh).expect("deregMr");
        net.dereg_mr(r, rmh).expect("deregMr");
        net.close_send(s).expect("closeSend");
        net.close_recv(r).expect("closeRecv");
        net.close_listen(l).expect("closeListen");
        in_slice += 1;
        if in_slice == slice || cycle == n {
            let elapsed = t.elapsed();
            println!(
                "cycles {:>6}..={cycle:<6} {:>9.1} us/cycle  RSS {:>7.1} MB  {:>4} fds  {} \
                 engine threads",
                cycle + 1 - in_slice,
                elapsed.as_secs_f64() * 1e6 / in_slice as f64,
                rss_bytes() as f64 / 1e6,
                open_fds(),
                engine_threads()
            );
            slices.push((in_slice, elapsed));
            in_slice = 0;
            t = Instant::now();
        }
    }
    let rss_end = rss_bytes();
    let bw_after = fresh_pair_bandwidth(&net);
    let per = |(k, d): (usize, Duration)| d.as_secs_f64() * 1e6 / k as f64;
    let first = per(slices[0]);
    let last = per(slices[slices.len() - 1]);
    println!(
        "summary: {n} cycles; first slice {first:.1} us/cycle, last slice {last:.1} us/cycle \
         (last/first {:.2}); RSS growth {:+.2} MB ({:.2} -> {:.2} MB); bulk bandwidth \
         before {bw_before:.2} GB/s, after {bw_after:.2} GB/s",
        last / first,
        (rss_end as f64 - rss_start as f64) / 1e6,
        rss_start as f64 / 1e6,
        rss_end as f64 / 1e6
    );
    net.close_send(kept.send).expect("closeSend");
    net.close_recv(kept.recv).expect("closeRecv");
    net.finalize().expect("finalize");
}

/// A connect to a peer that never answers fails with `ncclSystemError` once the handshake
/// times out, and releases the transport (no engine thread left).
#[test]
fn abi_connect_to_dead_peer_fails_cleanly() {
    let _g = setup();
    let net = open(8);
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = dead.local_addr().expect("addr").port();
    let (mut handle, l) = net.listen(0).expect("listen");
    net.close_listen(l).expect("closeListen");
    handle[32..34].copy_from_slice(&port.to_be_bytes());
    let deadline = Instant::now() + Duration::from_secs(20);
    let err = loop {
        match net.connect(0, &mut handle) {
            Ok(Some(_)) => panic!("connected to a socket that never answers"),
            Ok(None) => {
                assert!(Instant::now() < deadline, "connect never failed");
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => break e,
        }
    };
    assert_eq!(err.rc(), Some(NCCL_SYSTEM_ERROR), "{err}");
    assert_eq!(engine_threads(), 0);
}

/// Every exported version is found by symbol, is named `weir`, and answers init, devices and
/// getProperties through its own shims (v9–v11 here; v8 and v12 run the full harness).
#[test]
fn abi_all_versions_exported() {
    let _g = setup();
    let lib = lib_path();
    for v in 8..=12 {
        let net = Net::load(Some(&lib), v).expect("dlopen");
        assert_eq!(net.name(), "weir", "ncclNetPlugin_v{v}");
    }
    for v in 9..=11 {
        let net = open(v);
        assert_eq!(net.devices().expect("devices"), 1);
        check_properties(&net);
        if v == 11 {
            assert!(!net.ctx().is_null());
            net.finalize().expect("finalize");
            let again = net.finalize().expect_err("finalized twice");
            assert_eq!(again.rc(), Some(NCCL_INVALID_ARGUMENT));
        }
    }
    assert_eq!(engine_threads(), 0);
}
