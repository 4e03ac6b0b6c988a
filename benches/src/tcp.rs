//! The kernel-TCP baseline: one TCP connection over loopback between the two peer processes.
//!
//! Stream: the sender writes each message as one frame (8-byte little-endian message index, then
//! `size` payload bytes, in one `writev`) and keeps at most `window` messages unacknowledged; the
//! receiver reads each payload into slot `index % window` of a pre-touched buffer and returns the
//! 8-byte index as an application-level acknowledgement. That mirrors the weir runs, where a send
//! completes when the peer has acknowledged every byte, so the per-message latency (sender:
//! start of the frame's write → its acknowledgement read back) measures the same thing. The end
//! of the stream is a frame with index `u64::MAX` and no payload. Socket buffers are the
//! kernel's defaults (autotuned); both ends set `TCP_NODELAY`.
//!
//! Ping-pong: 8-byte messages, the client times each round trip.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::BenchError;
use crate::peer::{PeerParams, PeerReport};
use crate::sys::{LatencyHist, nanos, touched_buffer};

/// Frame index that ends a stream.
const END: u64 = u64::MAX;
/// How long a receiver waits for its sender to connect.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(15);
/// Untimed round trips before a ping-pong measurement.
const WARMUP_ROUND_TRIPS: u64 = 200;

/// Receiving side of a stream; `ready` announces the listening address to the parent.
pub fn stream_receiver(
    p: &PeerParams,
    ready: &mut dyn FnMut(SocketAddr) -> Result<(), BenchError>,
) -> Result<PeerReport, BenchError> {
    let size = usize::try_from(p.size)?;
    let window = p.window.max(1) as usize;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let mut buf = touched_buffer(size * window, 0x5a);
    ready(listener.local_addr()?)?;
    let mut s = accept(&listener, ACCEPT_TIMEOUT)?;
    s.set_nodelay(true)?;
    let patience = p.receiver_patience();
    s.set_read_timeout(Some(patience))?;

    // The clock starts when the first bytes are readable.
    if !wait_readable(&s, patience)? {
        return Ok(partial(0, size, 0, "no data before the deadline"));
    }
    let t0 = Instant::now();
    let mut t_last = t0;
    let mut got = 0u64;
    let mut hdr = [0u8; 8];
    let end = loop {
        if let Err(e) = s.read_exact(&mut hdr) {
            break Some(e);
        }
        let idx = u64::from_le_bytes(hdr);
        if idx == END {
            break None;
        }
        let off = (got as usize % window) * size;
        if let Err(e) = s.read_exact(&mut buf[off..off + size]) {
            break Some(e);
        }
        t_last = Instant::now();
        got += 1;
        if let Err(e) = s.write_all(&idx.to_le_bytes()) {
            break Some(e);
        }
    };
    let elapsed = nanos(t_last - t0);
    Ok(match end {
        None => PeerReport {
            messages: got,
            bytes: got * p.size,
            elapsed_ns: elapsed,
            complete: true,
            ..PeerReport::default()
        },
        Some(e) => partial(got, size, elapsed, &format!("stream ended early: {e}")),
    })
}

/// Sending side of a stream.
pub fn stream_sender(p: &PeerParams) -> Result<PeerReport, BenchError> {
    let size = usize::try_from(p.size)?;
    let window = p.window.max(1) as usize;
    let remote = p
        .remote
        .ok_or_else(|| BenchError::new("sender without a remote address"))?;
    let buf = touched_buffer(size * window, 0xa5);
    let mut s = TcpStream::connect_timeout(&remote, ACCEPT_TIMEOUT)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(p.point() + p.drain()))?;

    let n = p.messages();
    let mut hist = LatencyHist::new();
    let mut inflight: VecDeque<Instant> = VecDeque::with_capacity(window);
    let mut acks = AckReader::default();
    let mut done = 0u64;
    let mut next = 0u64;
    let start = Instant::now();
    let deadline = start + p.point();
    let mut t_last = start;
    let mut on_ack = |inflight: &mut VecDeque<Instant>, now: Instant| {
        if let Some(t) = inflight.pop_front() {
            hist.record(now - t);
            done += 1;
            t_last = now;
        }
    };
    let stopped = loop {
        while inflight.len() < window && next < n && (next == 0 || Instant::now() < deadline) {
            let off = (next as usize % window) * size;
            inflight.push_back(Instant::now());
            write_frame(&mut s, next, &buf[off..off + size])?;
            next += 1;
            acks.poll(&s, false, &mut |now| on_ack(&mut inflight, now))?;
        }
        if inflight.is_empty() {
            break None;
        }
        if let Err(e) = acks.poll(&s, true, &mut |now| on_ack(&mut inflight, now)) {
            break Some(e);
        }
    };
    let _ = write_frame(&mut s, END, &[]);
    let elapsed = nanos(t_last - start);
    let (retransmits, data_packets) = tcp_retransmits(&s).unzip();
    let mut report = PeerReport {
        messages: done,
        bytes: done * p.size,
        elapsed_ns: elapsed,
        complete: done == n,
        lat_count: hist.count(),
        lat_p50_us: hist.quantile_us(0.5),
        lat_p99_us: hist.quantile_us(0.99),
        retransmits,
        data_packets,
        ..PeerReport::default()
    };
    if let Some(e) = stopped {
        report.note = Some(format!("acknowledgements stopped: {e}"));
    } else if done < n {
        report.note = Some(format!("time limit: {done} of {n} messages"));
    }
    Ok(report)
}

/// Echo side of the ping-pong.
pub fn pingpong_server(
    p: &PeerParams,
    ready: &mut dyn FnMut(SocketAddr) -> Result<(), BenchError>,
) -> Result<PeerReport, BenchError> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    ready(listener.local_addr()?)?;
    let mut s = accept(&listener, ACCEPT_TIMEOUT)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(p.receiver_patience()))?;
    let mut msg = [0u8; 8];
    let mut n = 0u64;
    while s.read_exact(&mut msg).is_ok() {
        s.write_all(&msg)?;
        n += 1;
    }
    Ok(PeerReport {
        messages: n,
        bytes: n * 8,
        complete: true,
        ..PeerReport::default()
    })
}

/// Timing side of the ping-pong: `iters` round trips of 8 bytes, or as many as fit in the
/// point's time.
pub fn pingpong_client(p: &PeerParams) -> Result<PeerReport, BenchError> {
    let remote = p
        .remote
        .ok_or_else(|| BenchError::new("client without a remote address"))?;
    let mut s = TcpStream::connect_timeout(&remote, ACCEPT_TIMEOUT)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(p.point() + p.drain()))?;
    let mut msg = [0u8; 8];
    for i in 0..WARMUP_ROUND_TRIPS {
        s.write_all(&i.to_le_bytes())?;
        s.read_exact(&mut msg)?;
    }
    let mut hist = LatencyHist::new();
    let start = Instant::now();
    let deadline = start + p.point();
    let mut n = 0u64;
    while n < p.iters && (n == 0 || Instant::now() < deadline) {
        let t = Instant::now();
        s.write_all(&n.to_le_bytes())?;
        s.read_exact(&mut msg)?;
        hist.record(t.elapsed());
        n += 1;
    }
    let elapsed = nanos(start.elapsed());
    let (retransmits, data_packets) = tcp_retransmits(&s).unzip();
    Ok(PeerReport {
        messages: n,
        bytes: n * 8,
        elapsed_ns: elapsed,
        complete: n == p.iters,
        retransmits,
        data_packets,
        lat_count: hist.count(),
        lat_p50_us: hist.quantile_us(0.5),
        lat_p99_us: hist.quantile_us(0.99),
        ..PeerReport::default()
    })
}

fn partial(messages: u64, size: usize, elapsed_ns: u64, why: &str) -> PeerReport {
    PeerReport {
        messages,
        bytes: messages * size as u64,
        elapsed_ns,
        complete: false,
        note: Some(why.to_string()),
        ..PeerReport::default()
    }
}

/// Accept one connection on `listener`, waiting at most `timeout` for it.
pub(crate) fn accept(listener: &TcpListener, timeout: Duration) -> io::Result<TcpStream> {
    if !wait_readable(listener, timeout)? {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no connection from the sender",
        ));
    }
    Ok(listener.accept()?.0)
}

/// Block until `fd` is readable (or a connection is pending) or `timeout` passes.
fn wait_readable(fd: &impl AsRawFd, timeout: Duration) -> io::Result<bool> {
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd, count 1.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc >= 0 {
            return Ok(rc > 0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Write an 8-byte index and the payload with as few `writev` calls as the socket allows.
fn write_frame(s: &mut TcpStream, idx: u64, payload: &[u8]) -> io::Result<()> {
    let hdr = idx.to_le_bytes();
    let mut bufs = [IoSlice::new(&hdr), IoSlice::new(payload)];
    let mut slices: &mut [IoSlice<'_>] = &mut bufs;
    while !slices.is_empty() {
        match s.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads 8-byte acknowledgements, tolerating reads that split one.
#[derive(Debug)]
struct AckReader {
    buf: [u8; 4096],
    have: usize,
}

impl Default for AckReader {
    fn default() -> Self {
        AckReader {
            buf: [0; 4096],
            have: 0,
        }
    }
}

impl AckReader {
    /// Read what is there (`block`: wait for at least one byte) and call `on_ack` with the
    /// arrival time once per complete acknowledgement.
    fn poll(
        &mut self,
        s: &TcpStream,
        block: bool,
        on_ack: &mut dyn FnMut(Instant),
    ) -> io::Result<()> {
        let n = if block {
            loop {
                match (&*s).read(&mut self.buf[self.have..]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    r => break r?,
                }
            }
        } else {
            let space = &mut self.buf[self.have..];
            // SAFETY: recv writes at most `space.len()` bytes into `space`.
            let rc = unsafe {
                libc::recv(
                    s.as_raw_fd(),
                    space.as_mut_ptr().cast(),
                    space.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if rc < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(()),
                    _ => Err(e),
                };
            }
            rc as usize
        };
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let now = Instant::now();
        self.have += n;
        let whole = self.have / 8 * 8;
        for _ in 0..whole / 8 {
            on_ack(now);
        }
        self.buf.copy_within(whole..self.have, 0);
        self.have -= whole;
        Ok(())
    }
}

/// `(tcpi_total_retrans, tcpi_data_segs_out)` of a connection.
fn tcp_retransmits(s: &TcpStream) -> Option<(u64, u64)> {
    // SAFETY: tcp_info is a plain C struct; getsockopt writes at most `len` bytes into it.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        );
        (rc == 0).then(|| {
            (
                u64::from(info.tcpi_total_retrans),
                u64::from(info.tcpi_data_segs_out),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mode;
    use crate::peer::{Role, Test};

    fn params(role: Role, test: Test) -> PeerParams {
        PeerParams {
            role,
            mode: Mode::Tcp,
            test,
            size: 64 << 10,
            bytes: 4 << 20,
            window: 4,
            loss: 0.0,
            seed: 1,
            point_ms: 2000,
            drain_ms: 2000,
            iters: 500,
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

    /// Both sides in one process (threads), so the protocol is tested without the harness.
    fn pair(test: Test) -> (PeerReport, PeerReport) {
        let (tx, rx) = std::sync::mpsc::channel();
        let rp = params(Role::Receiver, test);
        let receiver = std::thread::spawn(move || {
            let mut ready = |a: SocketAddr| tx.send(a).map_err(|e| BenchError::new(e.to_string()));
            match test {
                Test::Stream => stream_receiver(&rp, &mut ready),
                Test::PingPong => pingpong_server(&rp, &mut ready),
                Test::NcclStream | Test::Incast => {
                    unreachable!("weir only; their own tests cover them")
                }
            }
        });
        let addr = rx.recv().expect("ready");
        let mut sp = params(Role::Sender, test);
        sp.remote = Some(addr);
        let s = match test {
            Test::Stream => stream_sender(&sp),
            Test::PingPong => pingpong_client(&sp),
            Test::NcclStream | Test::Incast => {
                unreachable!("weir only; their own tests cover them")
            }
        }
        .expect("sender");
        let r = receiver.join().expect("join").expect("receiver");
        (r, s)
    }

    #[test]
    fn stream_moves_every_message() {
        let (r, s) = pair(Test::Stream);
        assert!(r.complete && s.complete, "{r:?} {s:?}");
        assert_eq!(r.messages, 64);
        assert_eq!(s.messages, 64);
        assert_eq!(r.bytes, 4 << 20);
        assert!(r.elapsed_ns > 0 && r.gbps().is_some());
        assert_eq!(s.lat_count, 64);
        assert!(s.lat_p50_us.is_some() && s.lat_p99_us >= s.lat_p50_us);
    }

    #[test]
    fn pingpong_times_every_round_trip() {
        let (r, s) = pair(Test::PingPong);
        assert!(s.complete, "{s:?}");
        assert_eq!(s.lat_count, 500);
        assert_eq!(r.messages, 500 + WARMUP_ROUND_TRIPS);
        assert!(s.lat_p50_us.expect("p50") > 0.0);
    }

    #[test]
    fn frames_survive_partial_writes() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let payload = vec![7u8; 3 << 20];
        let writer = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).expect("connect");
            write_frame(&mut s, 42, &payload).expect("frame");
            write_frame(&mut s, END, &[]).expect("end");
        });
        let (mut s, _) = listener.accept().expect("accept");
        let mut hdr = [0u8; 8];
        s.read_exact(&mut hdr).expect("hdr");
        assert_eq!(u64::from_le_bytes(hdr), 42);
        let mut body = vec![0u8; 3 << 20];
        s.read_exact(&mut body).expect("body");
        assert!(body.iter().all(|&b| b == 7));
        s.read_exact(&mut hdr).expect("end");
        assert_eq!(u64::from_le_bytes(hdr), END);
        writer.join().expect("join");
    }
}
