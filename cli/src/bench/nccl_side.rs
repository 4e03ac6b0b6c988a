//! The two sides of `weir bench nccl-abi`: the NCCL net plugin driven the way NCCL's proxy
//! threads drive it, and an NCCL-socket-like plain TCP path (the baseline).
//!
//! Plugin side: the plugin's `ncclNetPlugin_v12` table — the one linked into this executable
//! (the same code as `libnccl-net-weir.so`) or, with `--lib`, a `.so` loaded with
//! `dlopen(RTLD_NOW | RTLD_LOCAL)` as NCCL loads it. The receiver `listen`s on device 0 and
//! announces the 128-byte handle (hex) to the parent, which hands it to the sender; both loop
//! on the non-blocking `connect`/`accept` as NCCL does. Each side registers its buffers once
//! (`regMr`) and keeps `window` requests in flight, testing the oldest, as NCCL's net proxy
//! progresses its steps in order:
//!
//! * the receiver posts an 8-byte receive tagged [`TAG_GO`], one tagged [`TAG_END`] and
//!   `window` receives of `size` bytes tagged [`TAG_DATA`] (slot `i % window`), reposting each
//!   as it completes. Its clock starts when the GO message completes and stops at the last
//!   data completion; every message's first and last 8 bytes carry its index, which it checks;
//!   the size `test` reports must equal `size`.
//! * the sender sends GO, then keeps `window` sends of `size` bytes posted until `bytes` have
//!   moved or the point's time is up, then sends END carrying the message count. A send
//!   completes when the receiver's engine has acknowledged all of it. The sender then exits
//!   without `closeSend`/`finalize`: the plugin's host would send the transport's CLOSE, and
//!   the transport has no half-close yet, so a CLOSE could overtake messages the receiver
//!   has acknowledged but not matched (see nccl-plugin/README.md).
//!
//! Socket side (NCCL's internal Socket transport with one socket per comm, its default on
//! a generic host): one TCP connection with `TCP_NODELAY`; each request is a frame of an
//! 8-byte header (`u32` size, `u32` tag) and the payload, written with one `writev` (NCCL
//! sends the size on its control socket before the data); the receiver reads the header,
//! refuses a frame larger than the posted buffer (NCCL's truncation error), and reads the
//! payload straight into slot `i % window`. Same GO/END framing, same checks, same clock.
//!
//! The plugin is configured by the environment it documents: the peers set `WEIR_IFNAME=lo`
//! (unless the caller set one) and, on the receiver, `WEIR_LOSS` to the point's loss.

use std::ffi::{c_int, c_void};
use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::ptr::null_mut;
use std::time::{Duration, Instant};

use nccl_net_weir::ffi::{
    NCCL_INTERNAL_ERROR, NCCL_INVALID_ARGUMENT, NCCL_INVALID_USAGE, NCCL_PTR_HOST, NCCL_SUCCESS,
    NCCL_SYSTEM_ERROR, NcclResult, NetV12T,
};

use super::BenchError;
use super::peer::{PeerParams, PeerReport};
use super::sys::{LatencyHist, touched_buffer};

/// Tag of the data messages.
const TAG_DATA: c_int = 0;
/// Tag of the start message.
const TAG_GO: c_int = 1;
/// Tag of the end message (8 bytes: the number of data messages sent).
const TAG_END: c_int = 2;
/// How long connect/accept may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// A loaded plugin table and its v12 context.
#[derive(Debug)]
pub(crate) struct Plugin {
    /// Keeps a `dlopen`ed library mapped while `t` points into it.
    _lib: Option<libloading::Library>,
    t: &'static NetV12T,
    ctx: *mut c_void,
}

/// Map a plugin return code to an error naming the call.
fn ck(rc: NcclResult, what: &str) -> Result<(), BenchError> {
    if rc == NCCL_SUCCESS {
        Ok(())
    } else {
        let name = match rc {
            NCCL_SYSTEM_ERROR => "ncclSystemError",
            NCCL_INTERNAL_ERROR => "ncclInternalError",
            NCCL_INVALID_ARGUMENT => "ncclInvalidArgument",
            NCCL_INVALID_USAGE => "ncclInvalidUsage",
            _ => "ncclResult",
        };
        Err(BenchError::new(format!("plugin {what}: {name} ({rc})")))
    }
}

impl Plugin {
    /// Load the table (linked in, or from `lib`), `init` it and check device 0.
    pub(crate) fn open(lib: Option<&Path>) -> Result<Plugin, BenchError> {
        let (lib, t): (Option<libloading::Library>, &'static NetV12T) = match lib {
            None => (None, &nccl_net_weir::export::ncclNetPlugin_v12.0),
            Some(path) => {
                use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
                // SAFETY: loading a net plugin, as NCCL does; its initialisers run here.
                let l = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }
                    .map_err(|e| BenchError::new(format!("dlopen {}: {e}", path.display())))?;
                // SAFETY: `ncclNetPlugin_v12` is a data object of this layout (ffi.rs pins
                // it); the reference lives as long as the library, which `Plugin` keeps.
                let t: &'static NetV12T = unsafe {
                    let s = l.get::<*const NetV12T>(b"ncclNetPlugin_v12").map_err(|e| {
                        BenchError::new(format!("{}: no ncclNetPlugin_v12: {e}", path.display()))
                    })?;
                    &**s
                };
                (Some(libloading::Library::from(l)), t)
            }
        };
        let mut p = Plugin {
            _lib: lib,
            t,
            ctx: null_mut(),
        };
        // SAFETY: `init` with an out-pointer to our ctx, no config, no logger, no profiler.
        ck(
            unsafe { (p.t.init)(&mut p.ctx, 1, null_mut(), None, null_mut()) },
            "init",
        )?;
        let mut n = 0;
        // SAFETY: out-pointer to a local.
        ck(unsafe { (p.t.devices)(&mut n) }, "devices")?;
        if n < 1 {
            return Err(BenchError::new("plugin reports no device"));
        }
        Ok(p)
    }

    fn reg(&self, comm: *mut c_void, buf: &mut [u8]) -> Result<*mut c_void, BenchError> {
        let mut mh = null_mut();
        // SAFETY: a live buffer of `len` bytes, host memory; the plugin records it.
        ck(
            unsafe {
                (self.t.reg_mr)(
                    comm,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    NCCL_PTR_HOST,
                    &mut mh,
                )
            },
            "regMr",
        )?;
        Ok(mh)
    }

    /// Post one send; `None` when the plugin has no free request (NCCL retries).
    fn isend(
        &self,
        comm: *mut c_void,
        buf: &mut [u8],
        tag: c_int,
        mh: *mut c_void,
    ) -> Result<Option<*mut c_void>, BenchError> {
        let mut req = null_mut();
        // SAFETY: buffer inside a registered region, kept alive until the request completes.
        ck(
            unsafe {
                (self.t.isend)(
                    comm,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    tag,
                    mh,
                    null_mut(),
                    &mut req,
                )
            },
            "isend",
        )?;
        Ok((!req.is_null()).then_some(req))
    }

    /// Post one receive; `None` when the plugin has no free request.
    fn irecv(
        &self,
        comm: *mut c_void,
        buf: &mut [u8],
        tag: c_int,
        mh: *mut c_void,
    ) -> Result<Option<*mut c_void>, BenchError> {
        let mut data = [buf.as_mut_ptr().cast::<c_void>()];
        let mut sizes = [buf.len()];
        let mut tags = [tag];
        let mut mhs = [mh];
        let mut req = null_mut();
        // SAFETY: arrays of n = 1 elements; the buffer lies in a registered region and stays
        // alive until the request completes.
        ck(
            unsafe {
                (self.t.irecv)(
                    comm,
                    1,
                    data.as_mut_ptr(),
                    sizes.as_mut_ptr(),
                    tags.as_mut_ptr(),
                    mhs.as_mut_ptr(),
                    null_mut(),
                    &mut req,
                )
            },
            "irecv",
        )?;
        Ok((!req.is_null()).then_some(req))
    }

    /// `test`: `Some(size)` once done.
    fn test(&self, req: *mut c_void) -> Result<Option<usize>, BenchError> {
        let (mut done, mut size) = (0, 0);
        // SAFETY: a request this plugin returned and that has not completed yet.
        ck(unsafe { (self.t.test)(req, &mut done, &mut size) }, "test")?;
        Ok((done != 0).then(|| usize::try_from(size).unwrap_or(0)))
    }

    /// Test until done or `deadline`.
    fn wait(&self, req: *mut c_void, deadline: Instant, what: &str) -> Result<usize, BenchError> {
        loop {
            if let Some(n) = self.test(req)? {
                return Ok(n);
            }
            if Instant::now() > deadline {
                return Err(BenchError::new(format!("{what}: not done in time")));
            }
            std::hint::spin_loop();
        }
    }
}

/// Encode a handle for the parent.
fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Decode the receiver's handle.
fn from_hex(s: &str) -> Result<[u8; 128], BenchError> {
    let mut h = [0u8; 128];
    if s.len() != 256 {
        return Err(BenchError::new("handle must be 256 hex digits"));
    }
    for (i, b) in h.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)
            .map_err(|_| BenchError::new("handle is not hex"))?;
    }
    Ok(h)
}

/// Set the plugin's environment before it reads it (at `init`).
fn plugin_env(loss: f64) {
    // SAFETY: called at the start of a peer process, before any other thread exists (the
    // plugin's engine thread starts at the first listen/connect).
    unsafe {
        if std::env::var_os("WEIR_IFNAME").is_none() {
            std::env::set_var("WEIR_IFNAME", "lo");
        }
        if loss > 0.0 {
            std::env::set_var("WEIR_LOSS", loss.to_string());
        } else {
            std::env::remove_var("WEIR_LOSS");
        }
    }
}

/// Write message `idx`'s index into its first and last 8 bytes.
fn stamp(buf: &mut [u8], idx: u64) {
    let n = buf.len();
    if n >= 8 {
        buf[..8].copy_from_slice(&idx.to_le_bytes());
        buf[n - 8..].copy_from_slice(&idx.to_le_bytes());
    }
}

/// Check a stamp; `Err` names the message.
fn check_stamp(buf: &[u8], idx: u64) -> Result<(), BenchError> {
    let n = buf.len();
    if n >= 8 {
        let head = u64::from_le_bytes(buf[..8].try_into().unwrap_or_default());
        let tail = u64::from_le_bytes(buf[n - 8..].try_into().unwrap_or_default());
        if head != idx || tail != idx {
            return Err(BenchError::new(format!(
                "message {idx} arrived corrupt or out of order (stamps {head}, {tail})"
            )));
        }
    }
    Ok(())
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Plugin receiver; `ready` announces the hex handle.
pub(crate) fn plugin_receiver(
    p: &PeerParams,
    ready: &mut dyn FnMut(String) -> Result<(), BenchError>,
) -> Result<PeerReport, BenchError> {
    plugin_env(p.loss);
    let size = usize::try_from(p.size)?;
    let window = p.window.max(1) as usize;
    let net = Plugin::open(p.lib.as_deref())?;
    let mut handle = [0u8; 128];
    let mut lcomm = null_mut();
    // SAFETY: handle buffer of NCCL_NET_HANDLE_MAXSIZE bytes, out-pointer to a local.
    ck(
        unsafe { (net.t.listen)(net.ctx, 0, handle.as_mut_ptr().cast(), &mut lcomm) },
        "listen",
    )?;
    let mut slots = touched_buffer(size * window, 0x5a);
    let mut ctl = touched_buffer(16, 0);
    ready(to_hex(&handle))?;
    let mut comm: *mut c_void = null_mut();
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    while comm.is_null() {
        // SAFETY: our listen comm; out-pointer to a local; no device handle wanted.
        ck(
            unsafe { (net.t.accept)(lcomm, &mut comm, null_mut()) },
            "accept",
        )?;
        if Instant::now() > deadline {
            return Err(BenchError::new("no sender connected in time"));
        }
        std::thread::yield_now();
    }
    // SAFETY: our listen comm, closed once.
    ck(unsafe { (net.t.close_listen)(lcomm) }, "closeListen")?;
    let smh = net.reg(comm, &mut slots)?;
    let cmh = net.reg(comm, &mut ctl)?;
    let (go_buf, end_buf) = ctl.split_at_mut(8);
    let patience = p.receiver_patience();
    let post = |buf: &mut [u8], tag, mh, what: &str| -> Result<*mut c_void, BenchError> {
        net.irecv(comm, buf, tag, mh)?
            .ok_or_else(|| BenchError::new(format!("irecv {what}: no free request")))
    };
    let go = post(go_buf, TAG_GO, cmh, "GO")?;
    let end = post(end_buf, TAG_END, cmh, "END")?;
    let mut inflight = std::collections::VecDeque::with_capacity(window);
    for (i, slot) in slots.chunks_mut(size.max(1)).take(window).enumerate() {
        let slot = &mut slot[..size];
        inflight.push_back((i, post(slot, TAG_DATA, smh, "data")?));
    }
    net.wait(go, Instant::now() + patience, "GO message")?;
    let t0 = Instant::now();
    let stop = t0 + patience;
    let mut t_last = t0;
    let mut got = 0u64;
    let mut expected: Option<u64> = None;
    let mut posted = window as u64;
    let mut note = None;
    while expected != Some(got) {
        if expected.is_none()
            && let Some(_) = net.test(end)?
        {
            let n = u64::from_le_bytes(ctl[8..16].try_into().unwrap_or_default());
            expected = Some(n);
            continue;
        }
        if Instant::now() > stop {
            note = Some(format!("deadline after {got} messages"));
            break;
        }
        let Some(&(slot, req)) = inflight.front() else {
            // Everything posted has completed; only END is outstanding.
            std::hint::spin_loop();
            continue;
        };
        let Some(n) = net.test(req)? else {
            std::hint::spin_loop();
            continue;
        };
        t_last = Instant::now();
        inflight.pop_front();
        let buf = &mut slots[slot * size..(slot + 1) * size];
        if n != size {
            return Err(BenchError::new(format!(
                "message {got}: test reported {n} bytes, expected {size}"
            )));
        }
        check_stamp(buf, got)?;
        got += 1;
        if expected.is_none_or(|e| posted < e) {
            let req = net
                .irecv(comm, buf, TAG_DATA, smh)?
                .ok_or_else(|| BenchError::new("irecv: no free request"))?;
            inflight.push_back((slot, req));
            posted += 1;
        }
    }
    let complete = expected == Some(got);
    Ok(PeerReport {
        messages: got,
        bytes: got * p.size,
        elapsed_ns: nanos(t_last - t0),
        complete,
        note,
        ..PeerReport::default()
    })
}

/// Plugin sender.
pub(crate) fn plugin_sender(p: &PeerParams) -> Result<PeerReport, BenchError> {
    plugin_env(0.0);
    let size = usize::try_from(p.size)?;
    let window = p.window.max(1) as usize;
    let mut handle = from_hex(
        p.handle
            .as_deref()
            .ok_or_else(|| BenchError::new("sender without the receiver's handle"))?,
    )?;
    let net = Plugin::open(p.lib.as_deref())?;
    let mut slots = touched_buffer(size * window, 0xa5);
    let mut ctl = touched_buffer(16, 0);
    let mut comm: *mut c_void = null_mut();
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    while comm.is_null() {
        // SAFETY: the handle buffer NCCL would pass (writable: connect keeps state in it).
        ck(
            unsafe {
                (net.t.connect)(
                    net.ctx,
                    0,
                    handle.as_mut_ptr().cast(),
                    &mut comm,
                    null_mut(),
                )
            },
            "connect",
        )?;
        if Instant::now() > deadline {
            return Err(BenchError::new("connect did not complete in time"));
        }
        std::thread::yield_now();
    }
    let smh = net.reg(comm, &mut slots)?;
    let cmh = net.reg(comm, &mut ctl)?;
    let n = p.messages();
    let start = Instant::now();
    let stop_posting = start + p.point();
    let give_up = stop_posting + p.drain();
    let go = loop {
        if let Some(r) = net.isend(comm, &mut ctl[..8], TAG_GO, cmh)? {
            break r;
        }
    };
    let mut hist = LatencyHist::new();
    let mut inflight = std::collections::VecDeque::with_capacity(window);
    let (mut next, mut done) = (0u64, 0u64);
    let mut t_last = start;
    let mut note = None;
    loop {
        while inflight.len() < window && next < n && (next == 0 || Instant::now() < stop_posting) {
            let slot = (next % window as u64) as usize;
            let buf = &mut slots[slot * size..(slot + 1) * size];
            stamp(buf, next);
            let Some(req) = net.isend(comm, buf, TAG_DATA, smh)? else {
                break;
            };
            inflight.push_back((Instant::now(), req));
            next += 1;
        }
        let Some(&(t, req)) = inflight.front() else {
            break;
        };
        if let Some(sz) = net.test(req)? {
            if sz != size {
                return Err(BenchError::new(format!(
                    "send {done}: test reported {sz} bytes, expected {size}"
                )));
            }
            t_last = Instant::now();
            hist.record(t_last - t);
            inflight.pop_front();
            done += 1;
        } else if Instant::now() > give_up {
            note = Some(format!("{} sends not acknowledged in time", inflight.len()));
            break;
        } else {
            std::hint::spin_loop();
        }
    }
    net.wait(go, give_up, "GO send")?;
    ctl[8..16].copy_from_slice(&done.to_le_bytes());
    let end = loop {
        if let Some(r) = net.isend(comm, &mut ctl[8..16], TAG_END, cmh)? {
            break r;
        }
        if Instant::now() > give_up {
            return Err(BenchError::new("END send: no free request"));
        }
    };
    net.wait(end, give_up + Duration::from_secs(2), "END send")?;
    if note.is_none() && done < n {
        note = Some(format!("time limit: {done} of {n} messages"));
    }
    // No closeSend/finalize: see the module documentation. The process exits next.
    Ok(PeerReport {
        messages: done,
        bytes: done * p.size,
        elapsed_ns: nanos(t_last - start),
        complete: done == n,
        lat_count: hist.count(),
        lat_p50_us: hist.quantile_us(0.5),
        lat_p99_us: hist.quantile_us(0.99),
        note,
        ..PeerReport::default()
    })
}

/// Write one NCCL-socket-like frame.
fn write_frame(s: &mut TcpStream, tag: u32, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len()).map_err(io::Error::other)?;
    let mut hdr = [0u8; 8];
    hdr[..4].copy_from_slice(&len.to_le_bytes());
    hdr[4..].copy_from_slice(&tag.to_le_bytes());
    let (mut h, mut d) = (&hdr[..], payload);
    while !h.is_empty() || !d.is_empty() {
        let n = s.write_vectored(&[IoSlice::new(h), IoSlice::new(d)])?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let from_h = n.min(h.len());
        h = &h[from_h..];
        d = &d[n - from_h..];
    }
    Ok(())
}

/// Read a frame header: (size, tag).
fn read_header(s: &mut TcpStream) -> io::Result<(usize, u32)> {
    let mut hdr = [0u8; 8];
    s.read_exact(&mut hdr)?;
    let len = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
    let tag = u32::from_le_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
    Ok((len as usize, tag))
}

/// Socket-path receiver; `ready` announces the listening address.
pub(crate) fn socket_receiver(
    p: &PeerParams,
    ready: &mut dyn FnMut(SocketAddr) -> Result<(), BenchError>,
) -> Result<PeerReport, BenchError> {
    let size = usize::try_from(p.size)?;
    let window = p.window.max(1) as usize;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let mut slots = touched_buffer(size * window, 0x5a);
    ready(listener.local_addr()?)?;
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let mut s = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    return Err(BenchError::new("no sender connected in time"));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e.into()),
        }
    };
    s.set_nonblocking(false)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(p.receiver_patience()))?;
    let mut ctl = [0u8; 8];
    let (len, tag) = read_header(&mut s)?;
    if tag != TAG_GO as u32 || len != 8 {
        return Err(BenchError::new("socket stream did not start with GO"));
    }
    s.read_exact(&mut ctl)?;
    let t0 = Instant::now();
    let mut t_last = t0;
    let mut got = 0u64;
    let expected = loop {
        let (len, tag) = read_header(&mut s)?;
        match tag {
            t if t == TAG_DATA as u32 => {
                if len > size {
                    return Err(BenchError::new(format!(
                        "message {got}: {len} bytes for a {size}-byte receive (truncation)"
                    )));
                }
                let slot = (got % window as u64) as usize;
                let buf = &mut slots[slot * size..slot * size + len];
                s.read_exact(buf)?;
                if len != size {
                    return Err(BenchError::new(format!(
                        "message {got}: {len} bytes, expected {size}"
                    )));
                }
                check_stamp(buf, got)?;
                t_last = Instant::now();
                got += 1;
            }
            t if t == TAG_END as u32 && len == 8 => {
                s.read_exact(&mut ctl)?;
                break u64::from_le_bytes(ctl);
            }
            t => return Err(BenchError::new(format!("unexpected frame tag {t}"))),
        }
    };
    Ok(PeerReport {
        messages: got,
        bytes: got * p.size,
        elapsed_ns: nanos(t_last - t0),
        complete: expected == got,
        note: (expected != got).then(|| format!("END said {expected}, received {got}")),
        ..PeerReport::default()
    })
}

/// Socket-path sender.
pub(crate) fn socket_sender(p: &PeerParams) -> Result<PeerReport, BenchError> {
    let size = usize::try_from(p.size)?;
    let window = p.window.max(1) as usize;
    let remote = p
        .remote
        .ok_or_else(|| BenchError::new("sender without a remote address"))?;
    let mut slots = touched_buffer(size * window, 0xa5);
    let mut s = TcpStream::connect_timeout(&remote, CONNECT_TIMEOUT)?;
    s.set_nodelay(true)?;
    let n = p.messages();
    let start = Instant::now();
    let stop_posting = start + p.point();
    write_frame(&mut s, TAG_GO as u32, &[0u8; 8])?;
    let mut done = 0u64;
    while done < n && (done == 0 || Instant::now() < stop_posting) {
        let slot = (done % window as u64) as usize;
        let buf = &mut slots[slot * size..(slot + 1) * size];
        stamp(buf, done);
        write_frame(&mut s, TAG_DATA as u32, buf)?;
        done += 1;
    }
    let t_last = Instant::now();
    write_frame(&mut s, TAG_END as u32, &done.to_le_bytes())?;
    // Wait for the receiver to close, so the last bytes are read before we go.
    s.set_read_timeout(Some(p.drain() + Duration::from_secs(2)))?;
    let mut sink = [0u8; 1];
    let _ = s.read(&mut sink);
    Ok(PeerReport {
        messages: done,
        bytes: done * p.size,
        elapsed_ns: nanos(t_last - start),
        complete: done == n,
        note: (done < n).then(|| format!("time limit: {done} of {n} messages")),
        ..PeerReport::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_hex_round_trip() {
        let mut h = [0u8; 128];
        for (i, b) in h.iter_mut().enumerate() {
            *b = (i * 7) as u8;
        }
        assert_eq!(from_hex(&to_hex(&h)).expect("hex"), h);
        assert!(from_hex("zz").is_err());
        assert!(from_hex(&"g".repeat(256)).is_err());
    }

    fn params(role: super::super::peer::Role) -> PeerParams {
        PeerParams {
            role,
            mode: super::super::Mode::Tcp,
            test: super::super::peer::Test::NcclStream,
            size: 64 << 10,
            bytes: 4 << 20,
            window: 8,
            loss: 0.0,
            seed: 1,
            point_ms: 5000,
            drain_ms: 2000,
            iters: 0,
            remote: None,
            cpu: None,
            rt: false,
            handle: None,
            lib: None,
            cc: None,
        }
    }

    #[test]
    fn socket_path_moves_every_message() {
        use super::super::peer::Role;
        let (tx, rx) = std::sync::mpsc::channel();
        let rp = params(Role::Receiver);
        let receiver = std::thread::spawn(move || {
            let mut ready = |a: SocketAddr| tx.send(a).map_err(|e| BenchError::new(e.to_string()));
            socket_receiver(&rp, &mut ready)
        });
        let mut sp = params(Role::Sender);
        sp.remote = Some(rx.recv().expect("ready"));
        let s = socket_sender(&sp).expect("sender");
        let r = receiver.join().expect("join").expect("receiver");
        assert!(r.complete && s.complete, "{r:?} {s:?}");
        assert_eq!(r.messages, 64);
        assert_eq!(r.bytes, 4 << 20);
    }

    #[test]
    fn stamps_catch_reordering() {
        let mut b = vec![0u8; 64];
        stamp(&mut b, 7);
        assert!(check_stamp(&b, 7).is_ok());
        assert!(check_stamp(&b, 8).is_err());
        b[63] ^= 1;
        assert!(check_stamp(&b, 7).is_err());
    }
}
