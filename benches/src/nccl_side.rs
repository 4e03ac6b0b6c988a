//! The two sides of `weir bench nccl-abi`: the NCCL net plugin driven the way NCCL's proxy
//! threads drive it, and an NCCL-socket-like plain TCP path (the baseline).
//!
//! Plugin side, through [`crate::plugin::Net`]: the plugin's `ncclNetPlugin_v12` table — the
//! one linked into this executable (the same code as `libnccl-net-weir.so`) or, with `--lib`,
//! a `.so` loaded with `dlopen(RTLD_NOW | RTLD_LOCAL)` as NCCL loads it. The receiver `listen`s
//! on device 0 and announces the 128-byte handle (hex) to the parent, which hands it to the sender; both loop
//! on the non-blocking `connect`/`accept` as NCCL does. Each side registers its buffers once
//! (`regMr`) and keeps `window` requests in flight, testing the oldest, as NCCL's net proxy
//! progresses its steps in order. A round in which nothing completed ends with a
//! `sched_yield`, as NCCL's proxy progress thread does when idle (`src/proxy.cc`,
//! `ncclProxyProgress`: `if (idle) sched_yield();`): under `--rt` without `--pin` two peers
//! spinning at the same SCHED_FIFO priority would otherwise keep their plugin's engine threads
//! off both cores, and the connection times out:
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
//!   has acknowledged but not matched (see nccl-plugin/README.md, "Known limitations").
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

use std::ffi::c_int;
use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::BenchError;
use crate::peer::{PeerParams, PeerReport};
use crate::plugin::{Comm, Mr, Net, RecvBuf, Request, handle_from_hex, handle_to_hex};
use crate::sys::{LatencyHist, nanos, touched_buffer};
use crate::tcp::accept;

/// Tag of the data messages.
const TAG_DATA: c_int = 0;
/// Tag of the start message.
const TAG_GO: c_int = 1;
/// Tag of the end message (8 bytes: the number of data messages sent).
const TAG_END: c_int = 2;
/// How long connect/accept may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The plugin's v12 table (linked in, or from `p.lib`), initialised, with a device.
fn open(p: &PeerParams) -> Result<Net, BenchError> {
    let net = Net::open(p.lib.as_deref(), 12)?;
    if net.devices()? < 1 {
        return Err(BenchError::new("plugin reports no device"));
    }
    Ok(net)
}

/// A pre-touched buffer that lives as long as the process: the plugin may still write into a
/// receive that is in flight when a peer stops, up to the moment the process exits.
fn plugin_buffer(len: usize, pattern: u8) -> &'static mut [u8] {
    touched_buffer(len, pattern).leak()
}

/// Post a receive of `len` bytes at `data`; an error when the plugin has no free request.
fn post_recv(
    net: &Net,
    comm: Comm,
    (data, len): (*mut u8, usize),
    tag: c_int,
    mr: Mr,
    what: &str,
) -> Result<Request, BenchError> {
    let buf = RecvBuf {
        data,
        size: len,
        tag,
        mr,
    };
    // SAFETY: `data` points into a leaked registered buffer (`plugin_buffer`), which nothing
    // else touches until this request completes.
    unsafe { net.irecv(comm, &[buf]) }?
        .ok_or_else(|| BenchError::new(format!("irecv {what}: no free request")))
}

/// Post a send of `len` bytes at `data`; `None` when the plugin has no free request.
fn post_send(
    net: &Net,
    comm: Comm,
    (data, len): (*mut u8, usize),
    tag: c_int,
    mr: Mr,
) -> Result<Option<Request>, BenchError> {
    // SAFETY: `data` points into a leaked registered buffer (`plugin_buffer`), which is not
    // written again until this request completes.
    Ok(unsafe { net.isend(comm, data, len, tag, mr) }?)
}

/// Set the plugin's environment before it reads it (at `init`): the interface, the loss,
/// and where its engine runs (`WEIR_ENGINE`, from `engine`).
fn plugin_env(loss: f64, engine: &crate::engine_side::Placement) {
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
        match engine {
            crate::engine_side::Placement::Host => {}
            other => std::env::set_var("WEIR_ENGINE", other.spec()),
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

/// Plugin receiver; `ready` announces the hex handle.
pub fn plugin_receiver(
    p: &PeerParams,
    ready: &mut dyn FnMut(String) -> Result<(), BenchError>,
) -> Result<PeerReport, BenchError> {
    plugin_env(p.loss, &p.engine);
    let size = usize::try_from(p.size)?;
    let window = p.window.max(1) as usize;
    let net = open(p)?;
    let (handle, lcomm) = net.listen(0)?;
    let slots = plugin_buffer(size * window, 0x5a);
    let ctl = plugin_buffer(16, 0);
    ready(handle_to_hex(&handle))?;
    let comm = net.accept_until(lcomm, Instant::now() + CONNECT_TIMEOUT)?;
    net.close_listen(lcomm)?;
    let smh = net.reg_mr(comm, slots)?;
    let cmh = net.reg_mr(comm, ctl)?;
    // From here on the buffers are only reached through these pointers: the plugin writes
    // them while receives are in flight.
    let (slots, ctl) = (slots.as_mut_ptr(), ctl.as_mut_ptr());
    // SAFETY (every `add` below): offsets inside the buffers allocated above.
    let slot = |i: usize| (unsafe { slots.add(i * size) }, size);
    let patience = p.receiver_patience();
    let go = post_recv(&net, comm, (ctl, 8), TAG_GO, cmh, "GO")?;
    let end = post_recv(&net, comm, (unsafe { ctl.add(8) }, 8), TAG_END, cmh, "END")?;
    let mut inflight = std::collections::VecDeque::with_capacity(window);
    for i in 0..window {
        inflight.push_back((i, post_recv(&net, comm, slot(i), TAG_DATA, smh, "data")?));
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
            // SAFETY: the END receive has completed; nothing writes these 8 bytes any more.
            let n = unsafe { std::ptr::read_unaligned(ctl.add(8).cast::<[u8; 8]>()) };
            expected = Some(u64::from_le_bytes(n));
            continue;
        }
        if Instant::now() > stop {
            note = Some(format!("deadline after {got} messages"));
            break;
        }
        let Some(&(i, req)) = inflight.front() else {
            // Everything posted has completed; only END is outstanding.
            std::thread::yield_now();
            continue;
        };
        let Some(done) = net.test(req)? else {
            std::thread::yield_now();
            continue;
        };
        t_last = Instant::now();
        inflight.pop_front();
        let n = done.size();
        if n != size {
            return Err(BenchError::new(format!(
                "message {got}: test reported {n} bytes, expected {size}"
            )));
        }
        // SAFETY: this slot's receive has completed and it is not posted again until after
        // the check.
        check_stamp(unsafe { std::slice::from_raw_parts(slot(i).0, size) }, got)?;
        got += 1;
        if expected.is_none_or(|e| posted < e) {
            let req = post_recv(&net, comm, slot(i), TAG_DATA, smh, "data")?;
            inflight.push_back((i, req));
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
pub fn plugin_sender(p: &PeerParams) -> Result<PeerReport, BenchError> {
    plugin_env(0.0, &p.engine);
    let size = usize::try_from(p.size)?;
    let window = p.window.max(1) as usize;
    let mut handle = handle_from_hex(
        p.handle
            .as_deref()
            .ok_or_else(|| BenchError::new("sender without the receiver's handle"))?,
    )
    .map_err(BenchError::new)?;
    let net = open(p)?;
    let slots = plugin_buffer(size * window, 0xa5);
    let ctl = plugin_buffer(16, 0);
    let comm = net.connect_until(0, &mut handle, Instant::now() + CONNECT_TIMEOUT)?;
    let smh = net.reg_mr(comm, slots)?;
    let cmh = net.reg_mr(comm, ctl)?;
    let (slots, ctl) = (slots.as_mut_ptr(), ctl.as_mut_ptr());
    let n = p.messages();
    let start = Instant::now();
    let stop_posting = start + p.point();
    let give_up = stop_posting + p.drain();
    let go = loop {
        if let Some(r) = post_send(&net, comm, (ctl, 8), TAG_GO, cmh)? {
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
            // SAFETY: inside the slots buffer; this slot's previous send has completed (fewer
            // than `window` sends are in flight, the oldest first).
            let buf = unsafe { slots.add((next % window as u64) as usize * size) };
            stamp(unsafe { std::slice::from_raw_parts_mut(buf, size) }, next);
            let Some(req) = post_send(&net, comm, (buf, size), TAG_DATA, smh)? else {
                break;
            };
            inflight.push_back((Instant::now(), req));
            next += 1;
        }
        let Some(&(t, req)) = inflight.front() else {
            break;
        };
        if let Some(d) = net.test(req)? {
            let sz = d.size();
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
            std::thread::yield_now();
        }
    }
    net.wait(go, give_up, "GO send")?;
    // SAFETY: inside the control buffer; no send of these 8 bytes is in flight yet.
    let count = unsafe { ctl.add(8) };
    unsafe { std::ptr::write_unaligned(count.cast::<[u8; 8]>(), done.to_le_bytes()) };
    let end = loop {
        if let Some(r) = post_send(&net, comm, (count, 8), TAG_END, cmh)? {
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
pub fn socket_receiver(
    p: &PeerParams,
    ready: &mut dyn FnMut(SocketAddr) -> Result<(), BenchError>,
) -> Result<PeerReport, BenchError> {
    let size = usize::try_from(p.size)?;
    let window = p.window.max(1) as usize;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let mut slots = touched_buffer(size * window, 0x5a);
    ready(listener.local_addr()?)?;
    let mut s = accept(&listener, CONNECT_TIMEOUT).map_err(|e| match e.kind() {
        io::ErrorKind::TimedOut => BenchError::new("no sender connected in time"),
        _ => e.into(),
    })?;
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
pub fn socket_sender(p: &PeerParams) -> Result<PeerReport, BenchError> {
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

    fn params(role: crate::peer::Role) -> PeerParams {
        PeerParams {
            role,
            mode: crate::Mode::Tcp,
            test: crate::peer::Test::NcclStream,
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
            incast: None,
            engine: crate::engine_side::Placement::Host,
        }
    }

    #[test]
    fn socket_path_moves_every_message() {
        use crate::peer::Role;
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
