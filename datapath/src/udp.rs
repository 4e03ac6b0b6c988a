//! Batched, non-blocking UDP sockets with GSO, GRO and ECN (Linux).
//!
//! The kernel's per-datagram path costs about 6 µs on our machines, so a UDP transport is
//! limited to ~150–175 k datagrams/s unless the kernel segments and coalesces for it
//! (measured in docs/benchmarking.md): `UDP_SEGMENT` (GSO) on send and `UDP_GRO` on receive lift
//! loopback from 0.2–0.9 GB/s to about 3 GB/s. This module is that layer and nothing more: it
//! moves datagrams, it does not interpret them.
//!
//! Contract:
//!
//! * **Send** ([`UdpSockets::send_batch`]) is zero-copy on our side: iovecs point at the
//!   caller's `header` and `payload` slices. Consecutive datagrams with the same source socket,
//!   destination and ECN codepoint and the same length become one `sendmsg` entry with a
//!   `UDP_SEGMENT` control message (at most [`MAX_GSO_SEGMENTS`] segments and
//!   [`MAX_GSO_BYTES`] bytes; the last segment may be shorter); several entries go out in one
//!   `sendmmsg`. Datagrams are handed to the kernel in batch order. `EAGAIN`/`ENOBUFS` stop the
//!   batch; errors caused by one datagram (`EMSGSIZE`, `ECONNREFUSED` from an ICMP error,
//!   `EPERM` from a firewall, unreachable routes) drop that datagram, count it in
//!   [`UdpStats::tx_errors`] and go on, so the reliable transport above recovers it like any
//!   other loss.
//! * **GSO fallback.** A GSO entry the kernel rejects with `EIO` (no checksum offload on the
//!   route's device) turns GSO off for good; `EINVAL`/`EMSGSIZE` (segment larger than the
//!   device MTU) makes segments of that size and larger go unsegmented from then on. The
//!   affected datagrams are re-sent individually, never lost.
//! * **Receive** ([`UdpSockets::recv_batch`]) uses `recvmmsg` into 32 buffers of 64 KiB that
//!   are allocated once; `UDP_GRO` super-buffers are split at the segment size from their
//!   control message, and the ECN bits come from `IP_TOS`/`IPV6_TCLASS` control messages.
//!   Nothing is allocated per call.
//! * **Sockets.** Socket 0 is the primary (its address is [`UdpSockets::local_addr`]); sockets
//!   1.. are extra source ports bound to the same IP, giving the fabric ECMP entropy. The
//!   extras rarely receive anything, so `recv_batch` reads them on every 16th call, and on the
//!   next call after [`UdpSockets::wait`] saw them readable, rather than spending a syscall on
//!   each of them every time.
//! * IPv4 and IPv6 both work. An IPv6 socket sends to IPv4 destinations as v4-mapped
//!   addresses, and received v4-mapped sources are reported as plain IPv4.
//! * Path MTU discovery is left at the kernel default: a plain datagram larger than the route
//!   MTU is fragmented by the kernel, a GSO segment larger than it falls back as above.

use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use libc::{c_int, c_uint, c_void};
use socket2::{Domain, Protocol, Socket, Type};
use weir_wire::Ecn;

/// Most segments in one GSO send (the kernel's `UDP_MAX_SEGMENTS` on older kernels).
pub const MAX_GSO_SEGMENTS: usize = 64;
/// Most UDP payload bytes in one GSO send (65535 minus the IPv4 and UDP headers).
pub const MAX_GSO_BYTES: usize = 65_507;
/// Most sockets in one [`UdpSockets`].
pub const MAX_SOCKETS: usize = 64;

/// How to open a [`UdpSockets`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpConfig {
    /// Local IP to bind every socket to, e.g. `127.0.0.1`.
    pub bind: IpAddr,
    /// Port of the primary socket; 0 picks an ephemeral port.
    pub port: u16,
    /// Number of sockets, 1..=[`MAX_SOCKETS`]: socket 0 is the primary, the others are extra
    /// source ports. With a fixed `port`, socket `i` tries `port + i` and falls back to an
    /// ephemeral port.
    pub sockets: usize,
    /// Use `UDP_SEGMENT` (GSO) on send when the kernel supports it.
    pub gso: bool,
    /// Use `UDP_GRO` on receive when the kernel supports it.
    pub gro: bool,
    /// Send ECN codepoints and report received ones.
    pub ecn: bool,
    /// Send buffer size requested per socket (`SO_SNDBUFFORCE` when permitted, else
    /// `SO_SNDBUF`, which the kernel caps at `net.core.wmem_max`); 0 keeps the default.
    pub sndbuf: usize,
    /// Receive buffer size requested per socket, as for `sndbuf`.
    pub rcvbuf: usize,
    /// With an ephemeral `port` and several sockets, try to bind them at consecutive ports
    /// ([`UdpSockets::rx_ports`]), so peers can address each one (`HostConfig::rx_spread`).
    pub consecutive_ports: bool,
}

/// What the kernel turned out to support.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpCaps {
    /// GSO (`UDP_SEGMENT`) is in use.
    pub gso: bool,
    /// GRO (`UDP_GRO`) is in use.
    pub gro: bool,
    /// Most datagrams per GSO send: [`MAX_GSO_SEGMENTS`] with GSO, 1 without.
    pub max_gso_segments: usize,
    /// ECN codepoints are sent and received.
    pub ecn: bool,
}

/// One datagram to send: `header` followed by `payload`, both borrowed until the call returns.
#[derive(Clone, Copy, Debug)]
pub struct TxDatagram<'a> {
    /// Destination.
    pub to: SocketAddr,
    /// Source socket index, taken modulo the number of sockets.
    pub socket: usize,
    /// ECN codepoint for the IP header (ignored when ECN is off).
    pub ecn: Ecn,
    /// First part of the datagram.
    pub header: &'a [u8],
    /// Second part of the datagram.
    pub payload: &'a [u8],
}

/// One received datagram, borrowed from the receive buffers for the callback's duration.
#[derive(Clone, Copy, Debug)]
pub struct RxDatagram<'a> {
    /// Source address (v4-mapped IPv6 sources are reported as IPv4).
    pub from: SocketAddr,
    /// Index of the local socket that received it (0 = primary).
    pub socket: usize,
    /// ECN codepoint of the IP header ([`Ecn::NotEct`] when ECN is off).
    pub ecn: Ecn,
    /// The datagram (one GRO segment).
    pub data: &'a [u8],
}

/// Send-error counters by kind; each counts dropped datagrams.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxErrors {
    /// `EMSGSIZE`: too large for the socket or the route.
    pub msg_size: u64,
    /// `ECONNREFUSED`: an earlier ICMP port-unreachable surfaced on this send.
    pub refused: u64,
    /// `EPERM`/`EACCES`: a firewall rule (nftables/iptables) rejected the datagram.
    pub permission: u64,
    /// `EHOSTUNREACH`, `ENETUNREACH`, `ENETDOWN`, `EHOSTDOWN`, `EADDRNOTAVAIL`,
    /// `EAFNOSUPPORT`: no way to that destination from this socket.
    pub unreachable: u64,
    /// Anything else.
    pub other: u64,
}

/// Counters of a [`UdpSockets`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpStats {
    /// Datagrams handed to the kernel.
    pub tx_datagrams: u64,
    /// `sendmmsg` calls.
    pub tx_syscalls: u64,
    /// `sendmmsg` entries that carried more than one segment (GSO).
    pub tx_gso_batches: u64,
    /// GSO entries the kernel rejected and that were re-sent unsegmented.
    pub tx_gso_fallbacks: u64,
    /// Datagrams dropped on send, by error kind.
    pub tx_errors: TxErrors,
    /// Datagrams delivered to the callback (after GRO splitting).
    pub rx_datagrams: u64,
    /// `recvmmsg` calls.
    pub rx_syscalls: u64,
    /// Receive buffers that held more than one segment (GRO).
    pub rx_gro_buffers: u64,
    /// Receive buffers dropped because they or their control messages did not fit
    /// (`MSG_TRUNC`, `MSG_CTRUNC`).
    pub rx_truncated: u64,
    /// Transient receive errors skipped (ICMP errors reported on the socket).
    pub rx_errors: u64,
}

/// A set of non-blocking UDP sockets on one IP; see the module documentation.
pub struct UdpSockets {
    socks: Vec<Socket>,
    addrs: Vec<SocketAddr>,
    v6: bool,
    caps: UdpCaps,
    /// Segments of this size or larger are sent unsegmented (learned from GSO errors).
    gso_seg_limit: usize,
    stats: UdpStats,
    rx_calls: u64,
    /// Set by [`UdpSockets::wait`] when an extra socket was readable.
    extras_ready: AtomicBool,
    /// Per socket: receive calls left during which it is read every time, because it
    /// delivered recently (peers spray over the extras when `rx_ports` > 1).
    rx_hot: Vec<u8>,
    /// Sockets bound at consecutive ports from the primary's (1 when they are not).
    rx_ports: u8,
    tx: TxScratch,
    rx: RxScratch,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            sockets: 1,
            gso: true,
            gro: true,
            ecn: true,
            sndbuf: 32 << 20,
            rcvbuf: 32 << 20,
            consecutive_ports: false,
        }
    }
}

impl UdpSockets {
    /// Opens, configures and binds `cfg.sockets` non-blocking sockets and probes GSO/GRO.
    pub fn bind(cfg: &UdpConfig) -> io::Result<Self> {
        if cfg.sockets == 0 || cfg.sockets > MAX_SOCKETS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("UdpConfig::sockets must be in 1..={MAX_SOCKETS}"),
            ));
        }
        let v6 = cfg.bind.is_ipv6();
        let (socks, addrs, rx_ports) = match bind_consecutive(cfg)? {
            Some((socks, addrs)) => {
                let n = u8::try_from(socks.len()).unwrap_or(1);
                (socks, addrs, n)
            }
            None => {
                let (socks, addrs) = bind_any(cfg)?;
                (socks, addrs, 1)
            }
        };
        let n = socks.len();
        // The same kernel answers for every socket, so the primary's answer stands for all.
        // Setting UDP_SEGMENT to 0 means "no default segmentation" and fails on kernels that
        // do not know the option.
        let primary = socks.first().map_or(-1, |s| s.as_raw_fd());
        let gso = cfg.gso && setsockopt_int(primary, libc::SOL_UDP, libc::UDP_SEGMENT, 0).is_ok();
        let mut gro = cfg.gro;
        let mut ecn = cfg.ecn;
        for s in &socks {
            let fd = s.as_raw_fd();
            if gro && setsockopt_int(fd, libc::SOL_UDP, libc::UDP_GRO, 1).is_err() {
                gro = false;
            }
            if ecn {
                let ok = if v6 {
                    // Dual-stack sockets also receive IPv4 traffic, reported with IP_TOS.
                    let _ = setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_RECVTOS, 1);
                    setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVTCLASS, 1).is_ok()
                } else {
                    setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_RECVTOS, 1).is_ok()
                };
                ecn &= ok;
            }
        }
        let caps = UdpCaps {
            gso,
            gro,
            max_gso_segments: if gso { MAX_GSO_SEGMENTS } else { 1 },
            ecn,
        };
        Ok(UdpSockets {
            socks,
            addrs,
            v6,
            caps,
            gso_seg_limit: usize::MAX,
            stats: UdpStats::default(),
            rx_calls: 0,
            extras_ready: AtomicBool::new(false),
            rx_hot: vec![0; n],
            rx_ports,
            tx: TxScratch::new(),
            rx: RxScratch::new(),
        })
    }

    /// Sockets bound at consecutive ports from the primary's (1 when they are not): peers
    /// may address any of them (`weir_transport::Config::rx_ports`).
    pub fn rx_ports(&self) -> u8 {
        self.rx_ports
    }

    /// An extra socket was seen readable (by a poll outside [`UdpSockets::wait`]): the next
    /// receive call reads the extras too.
    pub fn mark_extras_ready(&self) {
        self.extras_ready.store(true, Ordering::Relaxed);
    }

    /// Address of the primary socket.
    pub fn local_addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Addresses of all sockets, primary first.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Number of sockets.
    pub fn socket_count(&self) -> usize {
        self.socks.len()
    }

    /// What is in use. `gso` can turn off after bind if a send proves the route cannot do it.
    pub fn caps(&self) -> UdpCaps {
        self.caps
    }

    /// Counters so far.
    pub fn stats(&self) -> UdpStats {
        self.stats
    }

    /// The primary socket's receive queue: (bytes charged to it, its limit), from
    /// `SO_MEMINFO`; `None` when the kernel does not say.
    pub fn rx_occupancy(&self) -> Option<(u64, u64)> {
        /// `SO_MEMINFO` (asm-generic; Linux ≥ 3.9).
        const SO_MEMINFO: libc::c_int = 55;
        let s = self.socks.first()?;
        let mut info = [0u32; 16];
        let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `info`.
        let rc = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_MEMINFO,
                info.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let need = (libc::SK_MEMINFO_RCVBUF as usize + 1) * 4;
        (rc == 0 && len as usize >= need).then(|| {
            (
                u64::from(info[libc::SK_MEMINFO_RMEM_ALLOC as usize]),
                u64::from(info[libc::SK_MEMINFO_RCVBUF as usize]),
            )
        })
    }

    /// Bytes waiting in the sockets' receive queues (kernel accounting, `SO_MEMINFO`'s
    /// `SK_MEMINFO_RMEM_ALLOC`: payload plus per-buffer overhead), summed over the sockets:
    /// the backlog of the receiving host's last hop. 0 where the kernel does not say.
    pub fn rx_queued(&self) -> u64 {
        /// `SO_MEMINFO` (asm-generic; Linux ≥ 3.9).
        const SO_MEMINFO: libc::c_int = 55;
        self.socks
            .iter()
            .map(|s| {
                let mut info = [0u32; 16];
                let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
                // SAFETY: getsockopt writes at most `len` bytes into `info`.
                let rc = unsafe {
                    libc::getsockopt(
                        s.as_raw_fd(),
                        libc::SOL_SOCKET,
                        SO_MEMINFO,
                        info.as_mut_ptr().cast(),
                        &mut len,
                    )
                };
                if rc == 0 && len >= 4 {
                    u64::from(info[libc::SK_MEMINFO_RMEM_ALLOC as usize])
                } else {
                    0
                }
            })
            .sum()
    }

    /// Raw descriptors of all sockets, primary first (for an external poller).
    pub fn raw_fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.socks.iter().map(|s| s.as_raw_fd())
    }

    /// Hands `batch` to the kernel in order, without blocking.
    ///
    /// Returns how many datagrams from the front of `batch` were consumed: sent, or dropped
    /// and counted in [`UdpStats::tx_errors`]. Fewer than `batch.len()` means the socket
    /// buffer is full (`EAGAIN`/`ENOBUFS`); call again with the rest once
    /// [`wait`](Self::wait) or a timer says so. `Err` only for errors that make the socket
    /// unusable (`EBADF`, `ENOTSOCK`, `EFAULT`), and only when nothing was consumed.
    pub fn send_batch(&mut self, batch: &[TxDatagram<'_>]) -> io::Result<usize> {
        let n = self.socks.len();
        let mut done = 0;
        while done < batch.len() {
            let sock = batch[done].socket % n;
            let max_seg = if self.caps.gso { self.gso_seg_limit } else { 0 };
            self.tx.clear();
            let mut j = done;
            while j < batch.len() && self.tx.msgs.len() < TX_MAX_MSGS {
                if batch[j].socket % n != sock {
                    break;
                }
                let end = plan_group(batch, j, n, max_seg);
                if !self.tx.push(&batch[j..end], self.v6, self.caps.ecn) {
                    break;
                }
                j = end;
            }
            let count = self.tx.finish();
            let fd = self.socks[sock].as_raw_fd();
            // SAFETY: `finish` made every header point into `self.tx` (names, iovecs, control
            // buffers) or at the slices of `batch[done..j]`, all of which outlive this call;
            // lengths are those of the pointed-to storage, and `count` is the number of
            // initialised headers. The kernel only reads the iovecs' memory.
            let r = unsafe { libc::sendmmsg(fd, self.tx.hdrs.as_mut_ptr(), count as c_uint, 0) };
            self.stats.tx_syscalls += 1;
            if r == 0 {
                return Ok(done); // not expected for a non-empty vector; never spin on it
            }
            if r > 0 {
                for m in self.tx.msgs.iter().take(r as usize) {
                    done += m.datagrams;
                    self.stats.tx_datagrams += m.datagrams as u64;
                    if m.datagrams > 1 {
                        self.stats.tx_gso_batches += 1;
                    }
                }
                // A short count means the next entry failed; the next round sends it alone
                // and sees its error.
                continue;
            }
            let err = io::Error::last_os_error();
            let first = self.tx.msgs.first().copied().unwrap_or_default();
            match err.raw_os_error().unwrap_or(0) {
                libc::EAGAIN | libc::ENOBUFS | libc::ENOMEM => return Ok(done),
                libc::EINTR => {}
                libc::EIO if first.datagrams > 1 => {
                    self.caps.gso = false;
                    self.caps.max_gso_segments = 1;
                    self.stats.tx_gso_fallbacks += 1;
                }
                libc::EINVAL | libc::EMSGSIZE if first.datagrams > 1 => {
                    self.gso_seg_limit = first.segment;
                    self.stats.tx_gso_fallbacks += 1;
                }
                libc::EBADF | libc::ENOTSOCK | libc::EFAULT => {
                    return if done > 0 { Ok(done) } else { Err(err) };
                }
                code => {
                    let d = first.datagrams.max(1);
                    let e = &mut self.stats.tx_errors;
                    let slot = match code {
                        libc::EMSGSIZE => &mut e.msg_size,
                        libc::ECONNREFUSED => &mut e.refused,
                        libc::EPERM | libc::EACCES => &mut e.permission,
                        libc::EHOSTUNREACH
                        | libc::ENETUNREACH
                        | libc::ENETDOWN
                        | libc::EHOSTDOWN
                        | libc::EADDRNOTAVAIL
                        | libc::EAFNOSUPPORT => &mut e.unreachable,
                        _ => &mut e.other,
                    };
                    *slot += d as u64;
                    done += d;
                }
            }
        }
        Ok(done)
    }

    /// Like [`UdpSockets::recv_batch`] but reads at most one `recvmmsg` of `max_msgs` messages
    /// from the primary socket (plus the extra sockets on the same schedule), so a caller can
    /// interleave transmissions (acknowledgements) with a long receive burst. Each message can
    /// hold a GRO super-buffer of several datagrams.
    pub fn recv_some(
        &mut self,
        max_msgs: usize,
        on_datagram: &mut dyn FnMut(RxDatagram<'_>),
    ) -> io::Result<usize> {
        self.rx_calls = self.rx_calls.wrapping_add(1);
        let extras = self.socks.len() > 1
            && (self.rx_calls.is_multiple_of(EXTRA_POLL_INTERVAL)
                || self.extras_ready.swap(false, Ordering::Relaxed));
        let mut delivered = 0;
        for idx in 0..self.socks.len() {
            if idx > 0 && !extras && self.rx_hot[idx] == 0 {
                continue;
            }
            self.rx_hot[idx] = self.rx_hot[idx].saturating_sub(1);
            let before = delivered;
            match self.recv_up_to(idx, max_msgs, on_datagram) {
                Ok((_, d)) => delivered += d,
                Err(e) => return if delivered > 0 { Ok(delivered) } else { Err(e) },
            }
            if idx > 0 && delivered > before {
                self.rx_hot[idx] = EXTRA_HOT_CALLS;
            }
        }
        Ok(delivered)
    }

    /// Delivers what is ready on the sockets to `on_datagram`, without blocking; returns how
    /// many datagrams were delivered (0 when nothing was ready).
    ///
    /// Reads the primary socket (up to four `recvmmsg` rounds of 32 buffers while they come
    /// back full), then the extra sockets when due (see the module documentation).
    pub fn recv_batch(&mut self, on_datagram: &mut dyn FnMut(RxDatagram<'_>)) -> io::Result<usize> {
        self.rx_calls = self.rx_calls.wrapping_add(1);
        let extras = self.socks.len() > 1
            && (self.rx_calls.is_multiple_of(EXTRA_POLL_INTERVAL)
                || self.extras_ready.swap(false, Ordering::Relaxed));
        let mut delivered = 0;
        for idx in 0..self.socks.len() {
            if idx > 0 && !extras && self.rx_hot[idx] == 0 {
                continue;
            }
            self.rx_hot[idx] = self.rx_hot[idx].saturating_sub(1);
            let before = delivered;
            for _ in 0..RX_ROUNDS {
                match self.recv_once(idx, on_datagram) {
                    Ok((msgs, d)) => {
                        delivered += d;
                        if msgs < RX_BATCH {
                            break;
                        }
                    }
                    Err(e) => return if delivered > 0 { Ok(delivered) } else { Err(e) },
                }
            }
            if idx > 0 && delivered > before {
                self.rx_hot[idx] = EXTRA_HOT_CALLS;
            }
        }
        Ok(delivered)
    }

    /// Blocks until a socket or `extra_fd` (e.g. the engine's wake-up eventfd) is readable, or
    /// until `timeout` (`None` waits indefinitely); returns whether anything is readable.
    /// A signal interrupting the wait returns `Ok(false)`.
    pub fn wait(&self, timeout: Option<Duration>, extra_fd: Option<RawFd>) -> io::Result<bool> {
        let mut fds = [libc::pollfd {
            fd: -1,
            events: 0,
            revents: 0,
        }; MAX_SOCKETS + 1];
        let mut nfds = 0;
        for s in &self.socks {
            fds[nfds] = libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            nfds += 1;
        }
        if let Some(fd) = extra_fd {
            fds[nfds] = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            nfds += 1;
        }
        let ts = timeout.map(|d| libc::timespec {
            tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: d.subsec_nanos() as libc::c_long,
        });
        let ts_ptr = ts
            .as_ref()
            .map_or(ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `fds[..nfds]` are initialised pollfds in a live array; `ts_ptr` is null or
        // points at `ts`, alive for the call; a null signal mask keeps the current one.
        let r = unsafe { libc::ppoll(fds.as_mut_ptr(), nfds as libc::nfds_t, ts_ptr, ptr::null()) };
        if r < 0 {
            let err = io::Error::last_os_error();
            return if err.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(err)
            };
        }
        let n = self.socks.len();
        if fds[1..n].iter().any(|p| p.revents != 0) {
            self.extras_ready.store(true, Ordering::Relaxed);
        }
        Ok(r > 0)
    }

    /// One `recvmmsg` on socket `idx`: returns (buffers received, datagrams delivered).
    fn recv_once(
        &mut self,
        idx: usize,
        on_datagram: &mut dyn FnMut(RxDatagram<'_>),
    ) -> io::Result<(usize, usize)> {
        self.recv_up_to(idx, RX_BATCH, on_datagram)
    }

    /// One `recvmmsg` of at most `max_msgs` (≤ the batch size) on socket `idx`: returns
    /// (messages read, datagrams delivered).
    fn recv_up_to(
        &mut self,
        idx: usize,
        max_msgs: usize,
        on_datagram: &mut dyn FnMut(RxDatagram<'_>),
    ) -> io::Result<(usize, usize)> {
        let max_msgs = max_msgs.clamp(1, RX_BATCH);
        let fd = self.socks[idx].as_raw_fd();
        let mut retries = 0;
        let got = loop {
            self.rx.prepare();
            // SAFETY: `prepare` pointed each of the RX_BATCH headers at its own name buffer,
            // control buffer and iovec, and each iovec at its own RX_BUF_LEN slice of
            // `self.rx.bufs`; all live in `self.rx` for the whole call. A null timeout with
            // MSG_DONTWAIT does not block.
            let r = unsafe {
                libc::recvmmsg(
                    fd,
                    self.rx.hdrs.as_mut_ptr(),
                    max_msgs as c_uint,
                    libc::MSG_DONTWAIT,
                    ptr::null_mut(),
                )
            };
            self.stats.rx_syscalls += 1;
            if r >= 0 {
                break r as usize;
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error().unwrap_or(0) {
                libc::EAGAIN => return Ok((0, 0)),
                libc::EINTR => {}
                // ICMP errors queued on the socket surface here once each; skip them.
                libc::ECONNREFUSED
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::EHOSTDOWN
                | libc::ENETDOWN
                | libc::EMSGSIZE
                | libc::EPROTO
                | libc::ETIMEDOUT => self.stats.rx_errors += 1,
                _ => return Err(err),
            }
            retries += 1;
            if retries >= 8 {
                return Ok((0, 0));
            }
        };
        let mut delivered = 0;
        let rx = &self.rx;
        for k in 0..got.min(RX_BATCH) {
            let h = &rx.hdrs[k];
            let len = (h.msg_len as usize).min(RX_BUF_LEN);
            // A truncated control area could have lost the GRO segment size, and splitting a
            // super-buffer wrongly would hand up garbage: drop both kinds of truncation.
            if h.msg_hdr.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
                self.stats.rx_truncated += 1;
                continue;
            }
            let Some(from) = read_sockaddr(&rx.names[k], h.msg_hdr.msg_namelen) else {
                continue;
            };
            let (seg, ecn) = parse_rx_cmsgs(&h.msg_hdr);
            let ecn = if self.caps.ecn { ecn } else { Ecn::NotEct };
            let data = &rx.bufs[k * RX_BUF_LEN..k * RX_BUF_LEN + len];
            if data.is_empty() {
                on_datagram(RxDatagram {
                    from,
                    socket: idx,
                    ecn,
                    data,
                });
                delivered += 1;
                continue;
            }
            let seg = if seg == 0 { len } else { seg };
            if seg < len {
                self.stats.rx_gro_buffers += 1;
            }
            for chunk in data.chunks(seg) {
                on_datagram(RxDatagram {
                    from,
                    socket: idx,
                    ecn,
                    data: chunk,
                });
                delivered += 1;
            }
        }
        self.stats.rx_datagrams += delivered as u64;
        Ok((got, delivered))
    }
}

impl std::fmt::Debug for UdpSockets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpSockets")
            .field("addrs", &self.addrs)
            .field("caps", &self.caps)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Buffers per `recvmmsg`.
const RX_BATCH: usize = 32;
/// Size of one receive buffer: the largest UDP datagram or GRO super-buffer fits.
const RX_BUF_LEN: usize = 64 * 1024;
/// Most `recvmmsg` rounds per socket per `recv_batch`.
const RX_ROUNDS: usize = 4;
/// Extra sockets are read on every this many `recv_batch` calls.
const EXTRA_POLL_INTERVAL: u64 = 16;
/// Receive calls during which an extra socket that delivered is read every time.
const EXTRA_HOT_CALLS: u8 = 16;
/// Tries at binding the sockets on consecutive ports before giving up on it.
const CONSECUTIVE_TRIES: usize = 16;
/// Most entries per `sendmmsg`.
const TX_MAX_MSGS: usize = 64;
/// Most iovecs per `sendmmsg` (two per datagram; a full GSO entry takes 128).
const TX_MAX_IOVS: usize = 1024;
/// Control buffer per message, in u64 words (u64 keeps it aligned for `cmsghdr`).
const CTRL_WORDS: usize = 8;
const CTRL_BYTES: usize = CTRL_WORDS * 8;

/// One `sendmmsg` entry being built.
#[derive(Clone, Copy, Debug, Default)]
struct MsgPlan {
    /// Datagrams in this entry.
    datagrams: usize,
    /// GSO segment size (the first datagram's length).
    segment: usize,
    /// First iovec and number of iovecs.
    iov_start: usize,
    iov_len: usize,
    /// Destination length in `names`.
    name_len: libc::socklen_t,
    /// Used control bytes.
    ctrl_len: usize,
}

/// Reused send-side storage. The raw pointers in `hdrs` and `iovs` are written by
/// [`TxScratch::push`]/[`TxScratch::finish`] immediately before each `sendmmsg` and never read
/// afterwards.
struct TxScratch {
    msgs: Vec<MsgPlan>,
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
    ctrl: Vec<[u64; CTRL_WORDS]>,
}

// SAFETY: the raw pointers inside `hdrs`/`iovs` are only meaningful during one `send_batch`
// call, which holds `&mut UdpSockets`; between calls they are dead values that are overwritten
// before the next use. Nothing is shared, so moving the scratch to, or sharing `&` of it
// with, another thread cannot create a data race.
unsafe impl Send for TxScratch {}
// SAFETY: as above; `&TxScratch` gives no access to the pointees.
unsafe impl Sync for TxScratch {}

impl TxScratch {
    fn new() -> Self {
        TxScratch {
            msgs: Vec::with_capacity(TX_MAX_MSGS),
            hdrs: Vec::with_capacity(TX_MAX_MSGS),
            iovs: Vec::with_capacity(TX_MAX_IOVS),
            names: Vec::with_capacity(TX_MAX_MSGS),
            ctrl: Vec::with_capacity(TX_MAX_MSGS),
        }
    }

    fn clear(&mut self) {
        self.msgs.clear();
        self.hdrs.clear();
        self.iovs.clear();
        self.names.clear();
        self.ctrl.clear();
    }

    /// Adds one entry for `group` (all sharing socket, destination and ECN); `false` when the
    /// iovec pool has no room left (the caller sends what it has first).
    fn push(&mut self, group: &[TxDatagram<'_>], v6: bool, ecn_on: bool) -> bool {
        let Some(first) = group.first() else {
            return true;
        };
        if self.iovs.len() + 2 * group.len() > TX_MAX_IOVS {
            return false;
        }
        let iov_start = self.iovs.len();
        for d in group {
            for part in [d.header, d.payload] {
                if !part.is_empty() {
                    self.iovs.push(libc::iovec {
                        iov_base: part.as_ptr() as *mut c_void,
                        iov_len: part.len(),
                    });
                }
            }
        }
        let mut name = zeroed_storage();
        let (name_len, to_v4) = write_sockaddr(first.to, v6, &mut name);
        let segment = first.header.len() + first.payload.len();
        let mut ctrl = [0u64; CTRL_WORDS];
        let mut ctrl_len = 0;
        if group.len() > 1 {
            // The kernel reads UDP_SEGMENT as a u16.
            let seg = u16::try_from(segment).unwrap_or(u16::MAX);
            put_cmsg(
                &mut ctrl,
                &mut ctrl_len,
                libc::SOL_UDP,
                libc::UDP_SEGMENT,
                &seg.to_ne_bytes(),
            );
        }
        if ecn_on && first.ecn != Ecn::NotEct {
            let tos = c_int::from(first.ecn as u8).to_ne_bytes();
            if to_v4 {
                put_cmsg(
                    &mut ctrl,
                    &mut ctrl_len,
                    libc::IPPROTO_IP,
                    libc::IP_TOS,
                    &tos,
                );
            } else {
                put_cmsg(
                    &mut ctrl,
                    &mut ctrl_len,
                    libc::IPPROTO_IPV6,
                    libc::IPV6_TCLASS,
                    &tos,
                );
            }
        }
        self.names.push(name);
        self.ctrl.push(ctrl);
        self.msgs.push(MsgPlan {
            datagrams: group.len(),
            segment,
            iov_start,
            iov_len: self.iovs.len() - iov_start,
            name_len,
            ctrl_len,
        });
        true
    }

    /// Builds the `mmsghdr`s (now that no vector will reallocate) and returns their count.
    fn finish(&mut self) -> usize {
        self.hdrs.clear();
        for (i, m) in self.msgs.iter().enumerate() {
            // SAFETY: `mmsghdr` is a plain C struct of integers and raw pointers, for which
            // all-zero bytes are a valid value.
            let mut h: libc::mmsghdr = unsafe { mem::zeroed() };
            h.msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = m.name_len;
            h.msg_hdr.msg_iov = self.iovs[m.iov_start..].as_mut_ptr();
            h.msg_hdr.msg_iovlen = m.iov_len as _;
            if m.ctrl_len > 0 {
                h.msg_hdr.msg_control = self.ctrl[i].as_mut_ptr().cast();
                h.msg_hdr.msg_controllen = m.ctrl_len as _;
            }
            self.hdrs.push(h);
        }
        self.hdrs.len()
    }
}

/// Receive-side storage, allocated once at bind.
struct RxScratch {
    bufs: Box<[u8]>,
    names: Box<[libc::sockaddr_storage]>,
    ctrl: Box<[[u64; CTRL_WORDS]]>,
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
}

// SAFETY: as for `TxScratch`: the pointers in `iovs`/`hdrs` point into this same struct's
// boxed buffers (which do not move with the struct), are rewritten by `prepare` before every
// `recvmmsg`, and are only used by `recv_batch`, which holds `&mut UdpSockets`.
unsafe impl Send for RxScratch {}
// SAFETY: `&RxScratch` gives no access to the pointees through the raw pointers.
unsafe impl Sync for RxScratch {}

impl RxScratch {
    fn new() -> Self {
        let iov = libc::iovec {
            iov_base: ptr::null_mut(),
            iov_len: 0,
        };
        // SAFETY: `mmsghdr` is a plain C struct of integers and raw pointers, for which
        // all-zero bytes are a valid value.
        let hdr: libc::mmsghdr = unsafe { mem::zeroed() };
        RxScratch {
            bufs: vec![0u8; RX_BATCH * RX_BUF_LEN].into_boxed_slice(),
            names: vec![zeroed_storage(); RX_BATCH].into_boxed_slice(),
            ctrl: vec![[0u64; CTRL_WORDS]; RX_BATCH].into_boxed_slice(),
            iovs: vec![iov; RX_BATCH].into_boxed_slice(),
            hdrs: vec![hdr; RX_BATCH].into_boxed_slice(),
        }
    }

    /// Points every header at its buffers and resets the lengths the kernel overwrites.
    fn prepare(&mut self) {
        let base = self.bufs.as_mut_ptr();
        for k in 0..RX_BATCH {
            self.iovs[k] = libc::iovec {
                // `k * RX_BUF_LEN` stays inside `bufs` (RX_BATCH * RX_BUF_LEN bytes).
                iov_base: base.wrapping_add(k * RX_BUF_LEN).cast(),
                iov_len: RX_BUF_LEN,
            };
            let h = &mut self.hdrs[k];
            h.msg_len = 0;
            h.msg_hdr.msg_name = (&mut self.names[k] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = &mut self.iovs[k];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = self.ctrl[k].as_mut_ptr().cast();
            h.msg_hdr.msg_controllen = CTRL_BYTES as _;
            h.msg_hdr.msg_flags = 0;
        }
    }
}

/// End (exclusive) of the `sendmmsg` entry that starts at `batch[start]`.
///
/// Datagrams `start..end` share socket (mod `n_socks`), destination and ECN; all but the last
/// have the first one's length, the last may be shorter but not empty; at most
/// [`MAX_GSO_SEGMENTS`] and [`MAX_GSO_BYTES`] in all. Segment sizes of zero or at least
/// `seg_limit` (0 = GSO off) give single-datagram entries.
fn plan_group(batch: &[TxDatagram<'_>], start: usize, n_socks: usize, seg_limit: usize) -> usize {
    let Some(first) = batch.get(start) else {
        return start;
    };
    let seg = first.header.len() + first.payload.len();
    if seg == 0 || seg >= seg_limit || seg > MAX_GSO_BYTES {
        return start + 1;
    }
    let mut total = seg;
    let mut end = start + 1;
    while let Some(d) = batch.get(end) {
        let len = d.header.len() + d.payload.len();
        let same_flow =
            d.socket % n_socks == first.socket % n_socks && d.to == first.to && d.ecn == first.ecn;
        if !same_flow
            || len == 0
            || len > seg
            || end - start >= MAX_GSO_SEGMENTS
            || total + len > MAX_GSO_BYTES
        {
            break;
        }
        total += len;
        end += 1;
        if len < seg {
            break; // a short segment ends the entry
        }
    }
    end
}

/// Opens one configured, bound, non-blocking socket on `cfg.bind:port`.
fn open(cfg: &UdpConfig, port: u16) -> io::Result<Socket> {
    let domain = if cfg.bind.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let sock = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_nonblocking(true)?;
    let fd = sock.as_raw_fd();
    if cfg.sndbuf > 0 {
        set_buffer(fd, FORCE_OPTS.map(|f| f.0), libc::SO_SNDBUF, cfg.sndbuf)?;
    }
    if cfg.rcvbuf > 0 {
        set_buffer(fd, FORCE_OPTS.map(|f| f.1), libc::SO_RCVBUF, cfg.rcvbuf)?;
    }
    sock.bind(&SocketAddr::new(cfg.bind, port).into())?;
    Ok(sock)
}

/// Bind the sockets at the configured ports (`cfg.port`, `cfg.port + 1`, …, or ephemeral).
fn bind_any(cfg: &UdpConfig) -> io::Result<(Vec<Socket>, Vec<SocketAddr>)> {
    let mut socks = Vec::with_capacity(cfg.sockets);
    let mut addrs = Vec::with_capacity(cfg.sockets);
    for i in 0..cfg.sockets {
        let port = match (i, cfg.port) {
            (0, p) => p,
            (_, 0) => 0,
            (i, p) => u16::try_from(i)
                .ok()
                .and_then(|i| p.checked_add(i))
                .unwrap_or(0),
        };
        let sock = match open(cfg, port) {
            Ok(s) => s,
            Err(_) if i > 0 && port != 0 => open(cfg, 0)?,
            Err(e) => return Err(e),
        };
        addrs.push(local(&sock)?);
        socks.push(sock);
    }
    Ok((socks, addrs))
}

/// With an ephemeral primary port and several sockets: bind them at consecutive ports (the
/// primary's, then the next ones), so peers can address every socket from the primary's
/// address alone (`weir_transport::Config::rx_ports`). `None` when that did not work out
/// in a few tries (ports taken) or does not apply.
fn bind_consecutive(cfg: &UdpConfig) -> io::Result<Option<(Vec<Socket>, Vec<SocketAddr>)>> {
    if !cfg.consecutive_ports
        || cfg.port != 0
        || cfg.sockets < 2
        || cfg.sockets > usize::from(u8::MAX)
    {
        return Ok(None);
    }
    'tries: for _ in 0..CONSECUTIVE_TRIES {
        let first = open(cfg, 0)?;
        let a = local(&first)?;
        let mut socks = vec![first];
        let mut addrs = vec![a];
        for i in 1..cfg.sockets {
            let Some(port) = u16::try_from(i).ok().and_then(|i| a.port().checked_add(i)) else {
                continue 'tries;
            };
            let Ok(s) = open(cfg, port) else {
                continue 'tries;
            };
            addrs.push(local(&s)?);
            socks.push(s);
        }
        return Ok(Some((socks, addrs)));
    }
    Ok(None)
}

fn local(sock: &Socket) -> io::Result<SocketAddr> {
    sock.local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bound to a non-IP address"))
}

/// `SO_SNDBUFFORCE`/`SO_RCVBUFFORCE` (not in `libc` for every target); the generic Linux
/// values, which mips, sparc, parisc and alpha do not share.
#[cfg(any(
    target_arch = "x86",
    target_arch = "x86_64",
    target_arch = "arm",
    target_arch = "aarch64",
    target_arch = "riscv64",
    target_arch = "powerpc64",
    target_arch = "s390x",
    target_arch = "loongarch64"
))]
const FORCE_OPTS: Option<(c_int, c_int)> = Some((32, 33));
#[cfg(not(any(
    target_arch = "x86",
    target_arch = "x86_64",
    target_arch = "arm",
    target_arch = "aarch64",
    target_arch = "riscv64",
    target_arch = "powerpc64",
    target_arch = "s390x",
    target_arch = "loongarch64"
)))]
const FORCE_OPTS: Option<(c_int, c_int)> = None;

/// Sets a buffer size, bypassing `net.core.[rw]mem_max` with the FORCE option when the
/// process may (CAP_NET_ADMIN), else with the plain option.
fn set_buffer(fd: RawFd, force: Option<c_int>, plain: c_int, size: usize) -> io::Result<()> {
    // The kernel doubles the value; it takes an int.
    let v = c_int::try_from(size).unwrap_or(c_int::MAX / 2);
    if let Some(f) = force
        && setsockopt_int(fd, libc::SOL_SOCKET, f, v).is_ok()
    {
        return Ok(());
    }
    setsockopt_int(fd, libc::SOL_SOCKET, plain, v)
}

fn setsockopt_int(fd: RawFd, level: c_int, name: c_int, value: c_int) -> io::Result<()> {
    // SAFETY: the option value points at a live c_int and the length is its size; an invalid
    // `fd` or option only makes the call fail.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const c_int).cast(),
            mem::size_of::<c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Appends one control message to `buf` at byte offset `*off`. Messages are a handful of
/// bytes and `buf` holds 64, so a message that does not fit is a bug in this module; it is
/// skipped rather than overflowing.
fn put_cmsg(buf: &mut [u64; CTRL_WORDS], off: &mut usize, level: c_int, ty: c_int, data: &[u8]) {
    // SAFETY: CMSG_SPACE/CMSG_LEN are pure arithmetic on their argument.
    let (space, len) = unsafe {
        (
            libc::CMSG_SPACE(data.len() as c_uint) as usize,
            libc::CMSG_LEN(data.len() as c_uint) as usize,
        )
    };
    if *off + space > CTRL_BYTES {
        return;
    }
    let base = buf.as_mut_ptr().cast::<u8>();
    // SAFETY: `*off + space <= CTRL_BYTES`, so the header and `data` (CMSG_LEN <= CMSG_SPACE)
    // lie inside `buf`. `*off` is a sum of CMSG_SPACE values, which are multiples of the
    // header's alignment, and `buf` is u64-aligned, so the header write is aligned; the data
    // is copied bytewise.
    unsafe {
        let hdr = base.add(*off).cast::<libc::cmsghdr>();
        (*hdr).cmsg_len = len as _;
        (*hdr).cmsg_level = level;
        (*hdr).cmsg_type = ty;
        ptr::copy_nonoverlapping(data.as_ptr(), libc::CMSG_DATA(hdr), data.len());
    }
    *off += space;
}

/// The GRO segment size (0 when absent) and ECN codepoint from a received message.
// `msg_controllen` and `cmsg_len` are `size_t` on glibc but `socklen_t` on musl.
#[allow(clippy::unnecessary_cast)]
fn parse_rx_cmsgs(h: &libc::msghdr) -> (usize, Ecn) {
    let mut seg = 0;
    let mut ecn = Ecn::NotEct;
    if h.msg_control.is_null() || (h.msg_controllen as usize) < mem::size_of::<libc::cmsghdr>() {
        return (seg, ecn);
    }
    // SAFETY: `h` is a header the kernel just filled: `msg_control` points at our control
    // buffer and `msg_controllen` is the number of valid bytes in it (at most CTRL_BYTES).
    // CMSG_FIRSTHDR/CMSG_NXTHDR stay within that length, and each payload read is checked
    // against the message's own `cmsg_len` before an unaligned read.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            let level = (*c).cmsg_level;
            let ty = (*c).cmsg_type;
            let data = libc::CMSG_DATA(c);
            let data_len = ((*c).cmsg_len as usize).saturating_sub(data as usize - c as usize);
            let int = |data: *const u8| -> Option<u32> {
                match data_len {
                    n if n >= 4 => Some(ptr::read_unaligned(data.cast::<u32>())),
                    n if n >= 2 => Some(u32::from(ptr::read_unaligned(data.cast::<u16>()))),
                    1 => Some(u32::from(*data)),
                    _ => None,
                }
            };
            match (level, ty) {
                (libc::SOL_UDP, libc::UDP_GRO) => {
                    seg = int(data).map_or(0, |v| v as usize);
                }
                (libc::IPPROTO_IP, libc::IP_TOS) if data_len >= 1 => {
                    // Received IP_TOS is one byte.
                    ecn = Ecn::from_bits(*data);
                }
                (libc::IPPROTO_IPV6, libc::IPV6_TCLASS) => {
                    ecn = Ecn::from_bits(int(data).unwrap_or(0) as u8);
                }
                _ => {}
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    (seg, ecn)
}

fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: `sockaddr_storage` is a plain C struct of integers; all-zero is valid.
    unsafe { mem::zeroed() }
}

/// Writes `addr` for a socket of family v6/v4; returns the length and whether the datagram
/// travels as IPv4 (for the TOS control message).
fn write_sockaddr(
    addr: SocketAddr,
    v6_socket: bool,
    out: &mut libc::sockaddr_storage,
) -> (libc::socklen_t, bool) {
    let (v4, v6): (Option<SocketAddrV4>, Option<SocketAddrV6>) = match (addr, v6_socket) {
        (SocketAddr::V4(a), false) => (Some(a), None),
        (SocketAddr::V4(a), true) => (
            None,
            Some(SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0)),
        ),
        (SocketAddr::V6(a), false) => match a.ip().to_ipv4_mapped() {
            Some(ip) => (Some(SocketAddrV4::new(ip, a.port())), None),
            // Wrong family: the kernel rejects it (EAFNOSUPPORT) and the datagram is counted.
            None => (None, Some(a)),
        },
        (SocketAddr::V6(a), true) => (None, Some(a)),
    };
    if let Some(a) = v4 {
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: a.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: `sockaddr_storage` is larger than and aligned for `sockaddr_in`.
        unsafe { ptr::write((out as *mut libc::sockaddr_storage).cast(), sin) };
        return (mem::size_of::<libc::sockaddr_in>() as libc::socklen_t, true);
    }
    let a = v6.unwrap_or_else(|| SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0));
    let sin6 = libc::sockaddr_in6 {
        sin6_family: libc::AF_INET6 as libc::sa_family_t,
        sin6_port: a.port().to_be(),
        sin6_flowinfo: a.flowinfo().to_be(),
        sin6_addr: libc::in6_addr {
            s6_addr: a.ip().octets(),
        },
        sin6_scope_id: a.scope_id(),
    };
    // SAFETY: `sockaddr_storage` is larger than and aligned for `sockaddr_in6`.
    unsafe { ptr::write((out as *mut libc::sockaddr_storage).cast(), sin6) };
    let to_v4 = a.ip().to_ipv4_mapped().is_some();
    (
        mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        to_v4,
    )
}

/// Reads a kernel-filled source address; v4-mapped IPv6 becomes IPv4.
fn read_sockaddr(s: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match c_int::from(s.ss_family) {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a `sockaddr_in`, which it is large
            // enough and aligned for.
            let sin = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for `sockaddr_in6`.
            let sin6 =
                unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                None => SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    port,
                    u32::from_be(sin6.sin6_flowinfo),
                    sin6.sin6_scope_id,
                )),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
#[cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::panic, clippy::disallowed_methods)
)]
mod tests {
    use std::collections::HashMap;
    use std::time::Instant as StdInstant;

    use super::*;

    /// Deterministic content for datagram `id` of `len` bytes.
    fn content(id: u32, len: usize) -> Vec<u8> {
        let mut x = u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// A datagram to send: its bytes, split into header/payload at `split`.
    struct Spec {
        bytes: Vec<u8>,
        split: usize,
        socket: usize,
        to: usize,
        ecn: Ecn,
    }

    type Key = (u16, usize, Ecn, Vec<u8>);

    fn pair(ip: IpAddr, gso: bool, gro: bool) -> io::Result<(UdpSockets, UdpSockets)> {
        let cfg = UdpConfig {
            bind: ip,
            sockets: 4,
            gso,
            gro,
            ..UdpConfig::default()
        };
        Ok((UdpSockets::bind(&cfg)?, UdpSockets::bind(&cfg)?))
    }

    /// The traffic mix: a GSO run of 64 × 8972 B plus a short tail, then every size from 0
    /// to 1472 in steps with rotating source sockets, destinations and ECN codepoints.
    fn traffic() -> Vec<Spec> {
        let mut v = Vec::new();
        let mut id = 0u32;
        let mut add = |len: usize, split: usize, socket: usize, to: usize, ecn: Ecn| {
            v.push(Spec {
                bytes: content(id, len),
                split: split.min(len),
                socket,
                to,
                ecn,
            });
            id += 1;
        };
        for _ in 0..64 {
            add(8972, 16, 1, 0, Ecn::Ect0);
        }
        add(1000, 16, 1, 0, Ecn::Ect0);
        // Same flow, equal sizes, different ECN: must not share an entry.
        for ecn in [Ecn::Ce, Ecn::Ce, Ecn::Ect1, Ecn::NotEct, Ecn::NotEct] {
            add(1472, 8, 2, 0, ecn);
        }
        let ecns = [Ecn::NotEct, Ecn::Ect0, Ecn::Ect1, Ecn::Ce];
        for (i, len) in (0..=1472).step_by(7).enumerate() {
            // Runs of three equal (socket, to, ecn) so some small GSO groups form too.
            let g = i / 3;
            add(len, i % 24, g % 4, (g / 4) % 4, ecns[g % 4]);
        }
        // Runs of 50 to each destination socket: GSO entries of 50 segments.
        for i in 0..200 {
            add(1200, 12, 3, i / 50, Ecn::Ect0);
        }
        v
    }

    /// Sends `specs` from `a` to `b`, receiving as it goes, and checks that every datagram
    /// arrives exactly once with its bytes, source port, destination socket and ECN.
    fn exchange(a: &mut UdpSockets, b: &mut UdpSockets, specs: &[Spec]) {
        let mut expected: HashMap<Key, usize> = HashMap::new();
        for s in specs {
            let from_port = a.local_addrs()[s.socket].port();
            let ecn = if a.caps().ecn && b.caps().ecn {
                s.ecn
            } else {
                Ecn::NotEct
            };
            *expected
                .entry((from_port, s.to, ecn, s.bytes.clone()))
                .or_default() += 1;
        }
        let dst = b.local_addrs().to_vec();
        let batch: Vec<TxDatagram<'_>> = specs
            .iter()
            .map(|s| TxDatagram {
                to: dst[s.to],
                socket: s.socket,
                ecn: s.ecn,
                header: &s.bytes[..s.split],
                payload: &s.bytes[s.split..],
            })
            .collect();
        let mut sent = 0;
        let mut received = 0;
        let deadline = StdInstant::now() + std::time::Duration::from_secs(20);
        let mut record = |d: RxDatagram<'_>| {
            let key = (d.from.port(), d.socket, d.ecn, d.data.to_vec());
            match expected.get_mut(&key) {
                Some(n) if *n > 0 => *n -= 1,
                _ => panic!(
                    "unexpected datagram: {} B from {} to socket {} ecn {:?}",
                    d.data.len(),
                    d.from,
                    d.socket,
                    d.ecn
                ),
            }
        };
        while received < specs.len() {
            assert!(
                StdInstant::now() < deadline,
                "timed out: sent {sent}, received {received} of {}",
                specs.len()
            );
            if sent < batch.len() {
                // Chunks of 100 keep the receive queues short.
                let end = (sent + 100).min(batch.len());
                sent += a.send_batch(&batch[sent..end]).unwrap();
            }
            // wait() marks extra sockets readable so recv_batch reads them at once.
            b.wait(Some(std::time::Duration::from_millis(1)), None)
                .unwrap();
            received += b.recv_batch(&mut record).unwrap();
        }
        assert_eq!(received, specs.len());
        assert!(expected.values().all(|&n| n == 0));
        assert_eq!(a.stats().tx_datagrams as usize, specs.len());
        assert_eq!(a.stats().tx_errors, TxErrors::default());
        assert_eq!(b.stats().rx_datagrams as usize, specs.len());
    }

    #[test]
    fn loopback_v4_gso_gro() {
        let (mut a, mut b) = pair(IpAddr::V4(Ipv4Addr::LOCALHOST), true, true).unwrap();
        let caps = a.caps();
        println!("caps on this kernel: {caps:?}");
        assert_eq!(a.socket_count(), 4);
        let ports: Vec<u16> = a.local_addrs().iter().map(|s| s.port()).collect();
        assert!(ports.iter().all(|&p| p != 0));
        assert_eq!(
            ports.len(),
            ports.iter().collect::<std::collections::HashSet<_>>().len()
        );
        let specs = traffic();
        exchange(&mut a, &mut b, &specs);
        let (sa, sb) = (a.stats(), b.stats());
        println!("sender {sa:?}\nreceiver {sb:?}");
        // (A GSO fallback only happens where lo's MTU is below 9000; see the next test.)
        if caps.gso && sa.tx_gso_fallbacks == 0 {
            assert!(sa.tx_gso_batches >= 14, "{sa:?}");
            assert!(sa.tx_syscalls < specs.len() as u64, "{sa:?}");
            if b.caps().gro {
                assert!(sb.rx_gro_buffers > 0, "{sb:?}");
            }
        }
        assert!(caps.ecn);
    }

    #[test]
    fn loopback_v4_without_offloads() {
        let (mut a, mut b) = pair(IpAddr::V4(Ipv4Addr::LOCALHOST), false, false).unwrap();
        assert!(!a.caps().gso && !a.caps().gro && a.caps().max_gso_segments == 1);
        let specs = traffic();
        exchange(&mut a, &mut b, &specs);
        assert_eq!(a.stats().tx_gso_batches, 0);
        assert_eq!(b.stats().rx_gro_buffers, 0);
        assert!(
            a.stats().tx_syscalls < specs.len() as u64,
            "sendmmsg batches"
        );
    }

    #[test]
    fn loopback_v4_gso_sender_plain_receiver() {
        // The kernel segments GSO sends for a receiver without UDP_GRO.
        let cfg = UdpConfig {
            sockets: 4,
            ..UdpConfig::default()
        };
        let mut a = UdpSockets::bind(&cfg).unwrap();
        let mut b = UdpSockets::bind(&UdpConfig { gro: false, ..cfg }).unwrap();
        exchange(&mut a, &mut b, &traffic());
        assert_eq!(b.stats().rx_gro_buffers, 0);
    }

    #[test]
    fn loopback_v6() {
        let ip = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let (mut a, mut b) = match pair(ip, true, true) {
            Ok(p) => p,
            Err(e) => {
                println!("skipping IPv6 loopback test: cannot bind [::1]: {e}");
                return;
            }
        };
        assert!(a.local_addr().is_ipv6());
        exchange(&mut a, &mut b, &traffic());
        let (mut a, mut b) = pair(ip, false, false).unwrap();
        exchange(&mut a, &mut b, &traffic());
    }

    #[test]
    fn dual_stack_socket_talks_to_v4() {
        let any6 = UdpConfig {
            bind: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            ..UdpConfig::default()
        };
        let mut d6 = match UdpSockets::bind(&any6) {
            Ok(s) => s,
            Err(e) => {
                println!("skipping dual-stack test: cannot bind [::]: {e}");
                return;
            }
        };
        let mut v4 = UdpSockets::bind(&UdpConfig::default()).unwrap();
        let v4_addr = v4.local_addr();
        let d6_as_v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, d6.local_addr().port()));
        let body = content(3, 1400);
        let batch: Vec<_> = (0..5).map(|_| d(v4_addr, 0, Ecn::Ce, &body)).collect();
        assert_eq!(d6.send_batch(&batch).unwrap(), 5);
        let batch: Vec<_> = (0..5).map(|_| d(d6_as_v4, 0, Ecn::Ect1, &body)).collect();
        assert_eq!(v4.send_batch(&batch).unwrap(), 5);
        let deadline = StdInstant::now() + std::time::Duration::from_secs(10);
        let (mut at_v4, mut at_d6) = (0, 0);
        while at_v4 < 5 || at_d6 < 5 {
            assert!(StdInstant::now() < deadline, "got {at_v4} and {at_d6} of 5");
            v4.wait(Some(std::time::Duration::from_millis(1)), None)
                .unwrap();
            at_v4 += v4
                .recv_batch(&mut |r| {
                    assert_eq!(r.from, d6_as_v4);
                    assert_eq!(r.ecn, Ecn::Ce);
                    assert_eq!(r.data, &body[..]);
                })
                .unwrap();
            at_d6 += d6
                .recv_batch(&mut |r| {
                    // Reported as plain IPv4, not ::ffff:127.0.0.1.
                    assert_eq!(r.from, v4_addr);
                    assert_eq!(r.ecn, Ecn::Ect1);
                    assert_eq!(r.data, &body[..]);
                })
                .unwrap();
        }
    }

    #[test]
    fn bad_datagrams_are_skipped_not_fatal() {
        let (mut a, mut b) = pair(IpAddr::V4(Ipv4Addr::LOCALHOST), true, true).unwrap();
        let big = vec![7u8; 70_000];
        let ok = content(1, 500);
        let to = b.local_addr();
        let v6_dst: SocketAddr = "[2001:db8::1]:9".parse().unwrap();
        let e = Ecn::NotEct;
        let batch = [
            d(to, 0, e, &ok),
            d(to, 0, e, &big),
            d(v6_dst, 0, e, &ok),
            d(to, 0, e, &ok),
        ];
        let n = a.send_batch(&batch).unwrap();
        assert_eq!(n, 4);
        let s = a.stats();
        assert_eq!(s.tx_datagrams, 2, "{s:?}");
        assert_eq!(s.tx_errors.msg_size, 1, "{s:?}");
        assert_eq!(s.tx_errors.unreachable, 1, "{s:?}");
        let deadline = StdInstant::now() + std::time::Duration::from_secs(10);
        let mut got = 0;
        while got < 2 {
            assert!(StdInstant::now() < deadline);
            b.wait(Some(std::time::Duration::from_millis(10)), None)
                .unwrap();
            got += b
                .recv_batch(&mut |d| {
                    assert_eq!(d.data, &ok[..]);
                    assert_eq!(d.from, a.local_addr());
                })
                .unwrap();
        }
        assert_eq!(got, 2);
    }

    /// Runs only where `lo` has a small MTU, e.g.
    /// `unshare -n sh -c 'ip link set lo mtu 1500 up && cargo test -p weir-datapath gso_falls'`;
    /// elsewhere it prints why it skipped.
    #[test]
    fn gso_falls_back_when_segment_exceeds_mtu() {
        // The route MTU to 127.0.0.1 in this network namespace (sysfs may show another's).
        let probe = Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
        probe
            .connect(&SocketAddr::from((Ipv4Addr::LOCALHOST, 9)).into())
            .unwrap();
        let mut mtu: c_int = 0;
        let mut len = mem::size_of::<c_int>() as libc::socklen_t;
        // SAFETY: `mtu` and `len` are live and `len` is the size of `mtu`.
        let r = unsafe {
            libc::getsockopt(
                probe.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_MTU,
                (&mut mtu as *mut c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(r, 0, "{}", io::Error::last_os_error());
        if mtu >= 9000 {
            println!(
                "skipping GSO fallback test: route MTU to 127.0.0.1 is {mtu}; run it in a netns with a 1500 B lo"
            );
            return;
        }
        let (mut a, mut b) = pair(IpAddr::V4(Ipv4Addr::LOCALHOST), true, true).unwrap();
        if !a.caps().gso {
            println!("skipping GSO fallback test: no GSO");
            return;
        }
        let mut specs = traffic();
        // Another 8972 B run after the limit is learned: it must go unsegmented at once.
        for i in 0..20 {
            specs.push(Spec {
                bytes: content(10_000 + i, 8972),
                split: 0,
                socket: 0,
                to: 1,
                ecn: Ecn::NotEct,
            });
        }
        exchange(&mut a, &mut b, &specs);
        let s = a.stats();
        println!("route MTU {mtu}: {s:?}");
        assert_eq!(s.tx_gso_fallbacks, 1, "{s:?}");
        // Smaller segments keep using GSO.
        assert!(s.tx_gso_batches > 0, "{s:?}");
        assert!(a.caps().gso);
    }

    #[test]
    fn wait_times_out_and_wakes() {
        let (mut a, mut b) = pair(IpAddr::V4(Ipv4Addr::LOCALHOST), true, true).unwrap();
        assert!(
            !b.wait(Some(std::time::Duration::from_millis(1)), None)
                .unwrap()
        );
        assert_eq!(
            b.recv_batch(&mut |_| panic!("nothing was sent")).unwrap(),
            0
        );
        let d = TxDatagram {
            to: b.local_addrs()[3],
            socket: 2,
            ecn: Ecn::Ce,
            header: b"hi",
            payload: b"",
        };
        assert_eq!(a.send_batch(&[d]).unwrap(), 1);
        let deadline = StdInstant::now() + std::time::Duration::from_secs(10);
        while !b
            .wait(Some(std::time::Duration::from_millis(10)), None)
            .unwrap()
        {
            assert!(StdInstant::now() < deadline);
        }
        // The datagram sits on an extra socket: the next recv_batch reads it because wait()
        // saw it readable.
        let mut seen = Vec::new();
        b.recv_batch(&mut |d| seen.push((d.from, d.socket, d.ecn, d.data.to_vec())))
            .unwrap();
        assert_eq!(seen, vec![(a.local_addrs()[2], 3, Ecn::Ce, b"hi".to_vec())]);

        // An eventfd-like extra descriptor wakes wait() too.
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` has room for the two descriptors pipe() writes.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: writing one byte from a live buffer to the pipe's write end.
        assert_eq!(unsafe { libc::write(fds[1], b"x".as_ptr().cast(), 1) }, 1);
        assert!(b.wait(None, Some(fds[0])).unwrap());
        // SAFETY: closing the two descriptors this test opened.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }

    #[test]
    fn fixed_ports_are_consecutive_or_ephemeral() {
        // Find a free port by binding ephemeral, then rebind there.
        let probe = UdpSockets::bind(&UdpConfig::default()).unwrap();
        let port = probe.local_addr().port();
        drop(probe);
        let s = match UdpSockets::bind(&UdpConfig {
            port,
            sockets: 3,
            ..UdpConfig::default()
        }) {
            Ok(s) => s,
            Err(e) => {
                println!("skipping: port {port} was taken again: {e}");
                return;
            }
        };
        assert_eq!(s.local_addr().port(), port);
        assert!(
            s.local_addrs()[1..]
                .iter()
                .all(|a| a.port() != 0 && a.port() != port)
        );
        assert!(
            UdpSockets::bind(&UdpConfig {
                sockets: 0,
                ..UdpConfig::default()
            })
            .is_err()
        );
    }

    fn d<'a>(to: SocketAddr, socket: usize, ecn: Ecn, data: &'a [u8]) -> TxDatagram<'a> {
        TxDatagram {
            to,
            socket,
            ecn,
            header: &data[..data.len().min(4)],
            payload: &data[data.len().min(4)..],
        }
    }

    #[test]
    fn grouping_rules() {
        let to: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let other: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let big = vec![0u8; 8972];
        let mtu = vec![0u8; 1472];
        let short = vec![0u8; 100];
        let e = Ecn::Ect0;

        // 64 × 8972 + tail: 7 per entry (65507 / 8972), the tail joins the last run.
        let mut batch: Vec<_> = (0..64).map(|_| d(to, 0, e, &big)).collect();
        batch.push(d(to, 0, e, &short));
        let mut ends = Vec::new();
        let mut i = 0;
        while i < batch.len() {
            i = plan_group(&batch, i, 4, usize::MAX);
            ends.push(i);
        }
        assert_eq!(ends, vec![7, 14, 21, 28, 35, 42, 49, 56, 63, 65]);

        // 1472 B: 44 per entry by bytes.
        let batch: Vec<_> = (0..64).map(|_| d(to, 0, e, &mtu)).collect();
        assert_eq!(plan_group(&batch, 0, 4, usize::MAX), 44);
        // Small: capped at 64 segments.
        let batch: Vec<_> = (0..100).map(|_| d(to, 0, e, &short)).collect();
        assert_eq!(plan_group(&batch, 0, 4, usize::MAX), 64);
        // GSO off, or segment at the learned limit: singles.
        assert_eq!(plan_group(&batch, 0, 4, 0), 1);
        assert_eq!(plan_group(&batch, 0, 4, 100), 1);
        assert_eq!(plan_group(&batch, 0, 4, 101), 64);

        // Breaks on socket (mod n), destination, ECN, a longer datagram, and after a shorter.
        let b = [d(to, 0, e, &mtu), d(to, 4, e, &mtu), d(to, 1, e, &mtu)];
        assert_eq!(plan_group(&b, 0, 4, usize::MAX), 2);
        let b = [d(to, 0, e, &mtu), d(other, 0, e, &mtu)];
        assert_eq!(plan_group(&b, 0, 4, usize::MAX), 1);
        let b = [d(to, 0, e, &mtu), d(to, 0, Ecn::Ce, &mtu)];
        assert_eq!(plan_group(&b, 0, 4, usize::MAX), 1);
        let b = [d(to, 0, e, &short), d(to, 0, e, &mtu)];
        assert_eq!(plan_group(&b, 0, 4, usize::MAX), 1);
        let b = [d(to, 0, e, &mtu), d(to, 0, e, &short), d(to, 0, e, &short)];
        assert_eq!(plan_group(&b, 0, 4, usize::MAX), 2);
        // Empty datagrams never join an entry.
        let b = [d(to, 0, e, &[]), d(to, 0, e, &[])];
        assert_eq!(plan_group(&b, 0, 4, usize::MAX), 1);
        let b = [d(to, 0, e, &mtu), d(to, 0, e, &[])];
        assert_eq!(plan_group(&b, 0, 4, usize::MAX), 1);
    }

    #[test]
    fn sockets_move_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<UdpSockets>();
    }

    #[test]
    fn sockaddr_round_trip() {
        let cases: [(SocketAddr, bool, bool); 4] = [
            ("10.1.2.3:4567".parse().unwrap(), false, true),
            ("10.1.2.3:4567".parse().unwrap(), true, true),
            ("[2001:db8::7]:9".parse().unwrap(), true, false),
            ("[::ffff:10.1.2.3]:4567".parse().unwrap(), false, true),
        ];
        for (addr, v6, want_v4) in cases {
            let mut s = zeroed_storage();
            let (len, v4) = write_sockaddr(addr, v6, &mut s);
            assert_eq!(v4, want_v4, "{addr}");
            let back = read_sockaddr(&s, len).unwrap();
            let canonical = match addr {
                SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
                    Some(ip) => SocketAddr::new(IpAddr::V4(ip), a.port()),
                    None => addr,
                },
                _ => addr,
            };
            assert_eq!(back, canonical);
        }
    }
}
