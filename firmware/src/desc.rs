//! Ring descriptors: what a client submits ([`Sqe`], 64 bytes) and what the engine answers
//! ([`Cqe`], 64 bytes), as fixed little-endian layouts. Shared memory carries bytes, never
//! Rust values: [`Sqe::decode`] checks every field a client wrote (unknown operations, set
//! reserved bits and impossible combinations are errors, never panics), and the engine
//! checks every handle against the client's own tables.
//!
//! Submission layout:
//!
//! | bytes | field |
//! | --- | --- |
//! | 0 | operation ([`Op`]) |
//! | 1 | flags ([`SQE_TAGGED`], [`SQE_NOTIFY`], [`SQE_REMOTE_WRITE`], [`SQE_SECRET`]) |
//! | 2..4 | reserved, 0 |
//! | 4..8 | connection handle |
//! | 8..16 | user cookie, echoed in the completion |
//! | 16..20 | region handle (register: segment) |
//! | 20..24 | write: remote key; connect: port (low 16 bits) |
//! | 24..32 | offset; connect, listen with [`SQE_SECRET`]: the secret's low half |
//! | 32..40 | length; connect, listen with [`SQE_SECRET`]: the secret's high half |
//! | 40..48 | tag (send, receive); remote offset (write); user data (connect, listen) |
//! | 48..64 | connect: IPv6 address (IPv4 as `::ffff:a.b.c.d`); write: immediate (48..52) |
//!
//! Completion layout:
//!
//! | bytes | field |
//! | --- | --- |
//! | 0..8 | user cookie of the submission (0 for unsolicited completions) |
//! | 8..16 | length |
//! | 16..24 | tag (receive); remote key (register); user data (accepted); immediate (write received) |
//! | 24..28 | connection handle |
//! | 28..32 | region handle (register) |
//! | 32 | kind ([`CqeKind`]) |
//! | 33 | status ([`Status`]) |
//! | 34..36 | port (accepted, connection lost) |
//! | 36..40 | reserved |
//! | 40..48 | detail (truncated: the message length) |
//! | 48..64 | address (accepted, connection lost) |

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use weir_transport::{
    Completion, CompletionKind, ConnError, ConnId, RegionId, RemoteRegion, WorkRequest, WrError,
    WrId,
};

/// Bytes per descriptor, both rings.
pub const DESC_LEN: usize = 64;

/// Receive: only a send with this tag matches (otherwise any tag).
pub const SQE_TAGGED: u8 = 1;
/// Write: the peer gets a "write received" completion with the immediate.
pub const SQE_NOTIFY: u8 = 2;
/// Register: peers may write into the region.
pub const SQE_REMOTE_WRITE: u8 = 4;
/// Connect, listen: bytes 24..40 carry a secret (little-endian u128).
pub const SQE_SECRET: u8 = 8;

/// What a submission asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Nothing; completes at once (a fence: every earlier submission was taken).
    Nop,
    /// Open a connection to a remote engine.
    Connect {
        /// The remote engine.
        remote: SocketAddr,
        /// Given to the remote side's listener with the connection.
        user_data: u64,
        /// The listener's secret: the SYN carries a MAC keyed with it
        /// (`Endpoint::connect_authenticated`).
        secret: Option<u128>,
    },
    /// Take the connections whose connector passed `key` as user data — or any of the `span`
    /// keys from `key` on (a communicator tells its connectors apart by the key: rank `r`
    /// connects with `key + r`, and one listen covers every rank).
    Listen {
        /// The key, the first of the range.
        key: u64,
        /// Only connectors holding this secret get in: their SYNs must carry a MAC keyed with
        /// it, checked before any state exists (`Endpoint::admit`). Without one the keys are
        /// open (`Endpoint::admit_open_range`). A secret admits one key only (`span` 1).
        secret: Option<u128>,
        /// Keys in the range, at least 1; `key + span - 1` must not overflow. On the ring: the
        /// descriptor's bytes 20..24 hold `span - 1`.
        span: u32,
    },
    /// Stop taking them.
    Unlisten {
        /// The key (the first of the range).
        key: u64,
    },
    /// Close a connection.
    Close {
        /// Its handle.
        conn: u32,
    },
    /// Register `len` bytes at `offset` of one of the client's memory segments.
    Register {
        /// The segment (numbered by the placement when the client attached it).
        segment: u32,
        /// Offset in the segment.
        offset: u64,
        /// Length.
        len: u64,
        /// Peers may write into it.
        remote_write: bool,
    },
    /// Remove a region.
    Deregister {
        /// Its handle.
        region: u32,
    },
    /// Send a message.
    Send {
        /// Connection handle.
        conn: u32,
        /// Region handle.
        region: u32,
        /// Offset in the region.
        offset: u64,
        /// Length.
        len: u64,
        /// Tag.
        tag: u64,
    },
    /// Post a receive.
    Recv {
        /// Connection handle.
        conn: u32,
        /// Region handle.
        region: u32,
        /// Offset in the region.
        offset: u64,
        /// Capacity.
        len: u64,
        /// Only this tag matches.
        tag: Option<u64>,
    },
    /// A connection's transport counters (completion kind [`CqeKind::Stats`]).
    Stats {
        /// Connection handle.
        conn: u32,
    },
    /// One-sided write into the peer's region.
    Write {
        /// Connection handle.
        conn: u32,
        /// Local region handle.
        region: u32,
        /// Offset in it.
        offset: u64,
        /// Length.
        len: u64,
        /// The peer's region key.
        rkey: u32,
        /// Offset in the peer's region.
        remote_offset: u64,
        /// Immediate for the peer's "write received" completion.
        notify: Option<u32>,
    },
}

impl Op {
    /// A posted request as the transport's [`WorkRequest`], on connection handle `conn`; its
    /// `RegionId` is the client's region handle (the engine maps both to its own). `None` for
    /// operations that post nothing.
    pub fn request(&self) -> Option<(u32, WorkRequest)> {
        Some(match *self {
            Op::Send {
                conn,
                region,
                offset,
                len,
                tag,
            } => (
                conn,
                WorkRequest::Send {
                    region: RegionId(region),
                    offset,
                    len,
                    tag,
                },
            ),
            Op::Recv {
                conn,
                region,
                offset,
                len,
                tag,
            } => (
                conn,
                WorkRequest::Recv {
                    region: RegionId(region),
                    offset,
                    len,
                    tag,
                },
            ),
            Op::Write {
                conn,
                region,
                offset,
                len,
                rkey,
                remote_offset,
                notify,
            } => (
                conn,
                WorkRequest::Write {
                    region: RegionId(region),
                    offset,
                    len,
                    remote: RemoteRegion {
                        rkey,
                        offset: remote_offset,
                    },
                    notify,
                },
            ),
            _ => return None,
        })
    }

    /// The submission that posts `wr` on connection handle `conn` (the inverse of
    /// [`Op::request`]: `wr`'s `RegionId` is the client's region handle).
    pub fn from_request(conn: u32, wr: WorkRequest) -> Op {
        match wr {
            WorkRequest::Send {
                region,
                offset,
                len,
                tag,
            } => Op::Send {
                conn,
                region: region.0,
                offset,
                len,
                tag,
            },
            WorkRequest::Recv {
                region,
                offset,
                len,
                tag,
            } => Op::Recv {
                conn,
                region: region.0,
                offset,
                len,
                tag,
            },
            WorkRequest::Write {
                region,
                offset,
                len,
                remote,
                notify,
            } => Op::Write {
                conn,
                region: region.0,
                offset,
                len,
                rkey: remote.rkey,
                remote_offset: remote.offset,
                notify,
            },
        }
    }
}

/// A submission: an operation and the cookie its completion carries back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sqe {
    /// What to do.
    pub op: Op,
    /// Echoed in the completion.
    pub user: u64,
}

/// Why a submission's bytes were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// No such operation.
    UnknownOp(u8),
    /// A reserved byte or flag was set.
    Reserved,
    /// A connect to an unspecified address or port 0.
    BadAddress,
}

mod op {
    pub(super) const NOP: u8 = 0;
    pub(super) const CONNECT: u8 = 1;
    pub(super) const LISTEN: u8 = 2;
    pub(super) const UNLISTEN: u8 = 3;
    pub(super) const CLOSE: u8 = 4;
    pub(super) const REGISTER: u8 = 5;
    pub(super) const DEREGISTER: u8 = 6;
    pub(super) const SEND: u8 = 7;
    pub(super) const RECV: u8 = 8;
    pub(super) const WRITE: u8 = 9;
    pub(super) const STATS: u8 = 10;
}

fn u16_at(b: &[u8; DESC_LEN], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8; DESC_LEN], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

fn u64_at(b: &[u8; DESC_LEN], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(w)
}

fn put16(b: &mut [u8; DESC_LEN], i: usize, v: u16) {
    b[i..i + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut [u8; DESC_LEN], i: usize, v: u32) {
    b[i..i + 4].copy_from_slice(&v.to_le_bytes());
}

fn put64(b: &mut [u8; DESC_LEN], i: usize, v: u64) {
    b[i..i + 8].copy_from_slice(&v.to_le_bytes());
}

fn put_addr(b: &mut [u8; DESC_LEN], ip_at: usize, port_at: usize, a: SocketAddr) {
    let v6 = match a.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    b[ip_at..ip_at + 16].copy_from_slice(&v6.octets());
    put16(b, port_at, a.port());
}

fn addr_at(b: &[u8; DESC_LEN], ip_at: usize, port_at: usize) -> SocketAddr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[ip_at..ip_at + 16]);
    let v6 = Ipv6Addr::from(o);
    let ip = match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    };
    SocketAddr::new(ip, u16_at(b, port_at))
}

/// Write `secret` (if any) at bytes 24..40; the flags that say so.
fn put_secret(b: &mut [u8; DESC_LEN], secret: Option<u128>) -> u8 {
    let Some(s) = secret else { return 0 };
    put64(b, 24, s as u64);
    put64(b, 32, (s >> 64) as u64);
    SQE_SECRET
}

impl Sqe {
    /// The 64 bytes of this submission.
    pub fn encode(&self) -> [u8; DESC_LEN] {
        let mut b = [0u8; DESC_LEN];
        put64(&mut b, 8, self.user);
        let (code, flags) = match self.op {
            Op::Nop => (op::NOP, 0),
            Op::Connect {
                remote,
                user_data,
                secret,
            } => {
                put_addr(&mut b, 48, 20, remote);
                put64(&mut b, 40, user_data);
                (op::CONNECT, put_secret(&mut b, secret))
            }
            Op::Listen { key, secret, span } => {
                put64(&mut b, 40, key);
                put32(&mut b, 20, span.saturating_sub(1));
                (op::LISTEN, put_secret(&mut b, secret))
            }
            Op::Unlisten { key } => {
                put64(&mut b, 40, key);
                (op::UNLISTEN, 0)
            }
            Op::Close { conn } => {
                put32(&mut b, 4, conn);
                (op::CLOSE, 0)
            }
            Op::Stats { conn } => {
                put32(&mut b, 4, conn);
                (op::STATS, 0)
            }
            Op::Register {
                segment,
                offset,
                len,
                remote_write,
            } => {
                put32(&mut b, 16, segment);
                put64(&mut b, 24, offset);
                put64(&mut b, 32, len);
                (
                    op::REGISTER,
                    if remote_write { SQE_REMOTE_WRITE } else { 0 },
                )
            }
            Op::Deregister { region } => {
                put32(&mut b, 16, region);
                (op::DEREGISTER, 0)
            }
            Op::Send {
                conn,
                region,
                offset,
                len,
                tag,
            } => {
                put32(&mut b, 4, conn);
                put32(&mut b, 16, region);
                put64(&mut b, 24, offset);
                put64(&mut b, 32, len);
                put64(&mut b, 40, tag);
                (op::SEND, 0)
            }
            Op::Recv {
                conn,
                region,
                offset,
                len,
                tag,
            } => {
                put32(&mut b, 4, conn);
                put32(&mut b, 16, region);
                put64(&mut b, 24, offset);
                put64(&mut b, 32, len);
                put64(&mut b, 40, tag.unwrap_or(0));
                (op::RECV, if tag.is_some() { SQE_TAGGED } else { 0 })
            }
            Op::Write {
                conn,
                region,
                offset,
                len,
                rkey,
                remote_offset,
                notify,
            } => {
                put32(&mut b, 4, conn);
                put32(&mut b, 16, region);
                put32(&mut b, 20, rkey);
                put64(&mut b, 24, offset);
                put64(&mut b, 32, len);
                put64(&mut b, 40, remote_offset);
                put32(&mut b, 48, notify.unwrap_or(0));
                (op::WRITE, if notify.is_some() { SQE_NOTIFY } else { 0 })
            }
        };
        b[0] = code;
        b[1] = flags;
        b
    }

    /// Read a submission a client wrote. Fields an operation does not use must be zero, so a
    /// descriptor means exactly one thing (and a future field can be added without old
    /// engines misreading it).
    pub fn decode(b: &[u8; DESC_LEN]) -> Result<Sqe, DecodeError> {
        let (code, flags) = (b[0], b[1]);
        if u16_at(b, 2) != 0 {
            return Err(DecodeError::Reserved);
        }
        let allowed = match code {
            op::RECV => SQE_TAGGED,
            op::WRITE => SQE_NOTIFY,
            op::REGISTER => SQE_REMOTE_WRITE,
            op::CONNECT | op::LISTEN => SQE_SECRET,
            op::NOP..=op::STATS => 0,
            _ => return Err(DecodeError::UnknownOp(code)),
        };
        if flags & !allowed != 0 {
            return Err(DecodeError::Reserved);
        }
        let conn = u32_at(b, 4);
        let user = u64_at(b, 8);
        let region = u32_at(b, 16);
        let w20 = u32_at(b, 20);
        let offset = u64_at(b, 24);
        let len = u64_at(b, 32);
        let w40 = u64_at(b, 40);
        let tail = &b[48..];
        // Which of (conn, region, w20, offset, len, w40, bytes 48..64) each operation uses.
        let secret = flags & SQE_SECRET != 0;
        let used: [bool; 7] = match code {
            op::NOP => [false; 7],
            op::CONNECT => [false, false, true, secret, secret, true, true],
            op::LISTEN => [false, false, true, secret, secret, true, false],
            op::UNLISTEN => [false, false, false, false, false, true, false],
            op::CLOSE | op::STATS => [true, false, false, false, false, false, false],
            op::REGISTER => [false, true, false, true, true, false, false],
            op::DEREGISTER => [false, true, false, false, false, false, false],
            op::SEND | op::RECV => [true, true, false, true, true, true, false],
            _ => [true, true, true, true, true, true, true],
        };
        let nonzero = [
            conn != 0,
            region != 0,
            w20 != 0,
            offset != 0,
            len != 0,
            w40 != 0,
            tail.iter().any(|&x| x != 0),
        ];
        if used.iter().zip(nonzero).any(|(&u, nz)| nz && !u) {
            return Err(DecodeError::Reserved);
        }
        let op = match code {
            op::NOP => Op::Nop,
            op::CONNECT => {
                if w20 > u32::from(u16::MAX) {
                    return Err(DecodeError::Reserved);
                }
                let remote = addr_at(b, 48, 20);
                if remote.port() == 0 || remote.ip().is_unspecified() {
                    return Err(DecodeError::BadAddress);
                }
                Op::Connect {
                    remote,
                    user_data: w40,
                    secret: secret.then_some(u128::from(offset) | u128::from(len) << 64),
                }
            }
            op::LISTEN => {
                // A range: no overflow past the last key, and a secret admits one key only.
                let Some(span) = w20.checked_add(1) else {
                    return Err(DecodeError::Reserved);
                };
                if w40.checked_add(u64::from(w20)).is_none() || (secret && w20 != 0) {
                    return Err(DecodeError::Reserved);
                }
                Op::Listen {
                    key: w40,
                    secret: secret.then_some(u128::from(offset) | u128::from(len) << 64),
                    span,
                }
            }
            op::UNLISTEN => Op::Unlisten { key: w40 },
            op::CLOSE => Op::Close { conn },
            op::STATS => Op::Stats { conn },
            op::REGISTER => Op::Register {
                segment: region,
                offset,
                len,
                remote_write: flags & SQE_REMOTE_WRITE != 0,
            },
            op::DEREGISTER => Op::Deregister { region },
            op::SEND => Op::Send {
                conn,
                region,
                offset,
                len,
                tag: w40,
            },
            op::RECV => {
                let tagged = flags & SQE_TAGGED != 0;
                if !tagged && w40 != 0 {
                    return Err(DecodeError::Reserved);
                }
                Op::Recv {
                    conn,
                    region,
                    offset,
                    len,
                    tag: tagged.then_some(w40),
                }
            }
            _ => {
                let imm = u32_at(b, 48);
                let notify = flags & SQE_NOTIFY != 0;
                if tail[4..].iter().any(|&x| x != 0) || (!notify && imm != 0) {
                    return Err(DecodeError::Reserved);
                }
                Op::Write {
                    conn,
                    region,
                    offset,
                    len,
                    rkey: w20,
                    remote_offset: w40,
                    notify: notify.then_some(imm),
                }
            }
        };
        Ok(Sqe { op, user })
    }
}

/// What a completion reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum CqeKind {
    /// A submission without a more specific completion finished (nop, listen, unlisten,
    /// close, deregister), or was refused (`status`).
    Done = 0,
    /// A connect completed its handshake (`conn`).
    Connected = 1,
    /// A listened-for connection arrived (`conn`, `tag` = the connector's user data, `addr`).
    Accepted = 2,
    /// A region was registered (`region`, `tag` = its remote key).
    Registered = 3,
    /// A send finished.
    Send = 4,
    /// A receive finished (`len`, `tag`).
    Recv = 5,
    /// A write finished.
    Write = 6,
    /// A peer's write with notify landed (`len`, `tag` = immediate); no submission.
    WriteReceived = 7,
    /// A connection failed (`status` says why, `addr` names the peer); its requests were
    /// completed with errors first. No submission.
    ConnectionLost = 8,
    /// A connection's resources were released. No submission.
    Closed = 9,
    /// A connection's counters ([`Op::Stats`]; read them with [`Cqe::counters`]).
    Stats = 10,
}

impl CqeKind {
    /// Every kind, in the order of their codes (0, 1, …).
    const ALL: [CqeKind; 11] = [
        CqeKind::Done,
        CqeKind::Connected,
        CqeKind::Accepted,
        CqeKind::Registered,
        CqeKind::Send,
        CqeKind::Recv,
        CqeKind::Write,
        CqeKind::WriteReceived,
        CqeKind::ConnectionLost,
        CqeKind::Closed,
        CqeKind::Stats,
    ];

    fn from_u8(v: u8) -> Option<CqeKind> {
        CqeKind::ALL.get(usize::from(v)).copied()
    }
}

/// How a submission (or a connection) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// Success.
    Ok = 0,
    /// The descriptor's bytes were malformed ([`DecodeError`]).
    BadDescriptor = 1,
    /// No such connection of this client (unknown, stale, or another client's handle).
    UnknownConnection = 2,
    /// No such region or segment of this client.
    UnknownRegion = 3,
    /// Offset and length fall outside the region or segment.
    OutOfBounds = 4,
    /// Longer than a message may be.
    TooLong = 5,
    /// Too many requests outstanding on the connection.
    QueueFull = 6,
    /// The connection is not open (failed or closing).
    NotConnected = 7,
    /// The message was longer than the receive (`detail` = its length).
    Truncated = 8,
    /// The peer refused a write (bad key or out of bounds).
    RemoteAccess = 9,
    /// The connection failed before the request finished.
    ConnectionLost = 10,
    /// The connection was closed before the request finished.
    Closed = 11,
    /// This client holds as many connections, regions or listen keys as it may.
    TooMany = 12,
    /// A listen overlaps a range of keys already held (by another client, or differently).
    InUse = 13,
    /// The peer did not answer for the peer timeout.
    PeerTimeout = 14,
    /// The handshake did not complete in time.
    HandshakeTimeout = 15,
    /// The peer refused the connection or closed it with an error.
    Refused = 16,
    /// The peer closed the connection.
    PeerClosed = 17,
    /// A region in use by the connection was deregistered.
    LocalAccess = 18,
    /// The peer never granted credit.
    CreditStarved = 19,
    /// The client's memory could not be read or written at the region's address (not
    /// mapped, or not writable): the engine reaches it only by copying.
    Fault = 20,
    /// Not possible on this kind of memory (peers may not write into memory the engine
    /// reaches only by copying).
    Unsupported = 21,
}

impl Status {
    /// Every status, in the order of their codes (0, 1, …).
    const ALL: [Status; 22] = [
        Status::Ok,
        Status::BadDescriptor,
        Status::UnknownConnection,
        Status::UnknownRegion,
        Status::OutOfBounds,
        Status::TooLong,
        Status::QueueFull,
        Status::NotConnected,
        Status::Truncated,
        Status::RemoteAccess,
        Status::ConnectionLost,
        Status::Closed,
        Status::TooMany,
        Status::InUse,
        Status::PeerTimeout,
        Status::HandshakeTimeout,
        Status::Refused,
        Status::PeerClosed,
        Status::LocalAccess,
        Status::CreditStarved,
        Status::Fault,
        Status::Unsupported,
    ];

    fn from_u8(v: u8) -> Option<Status> {
        Status::ALL.get(usize::from(v)).copied()
    }

    /// What a connection error becomes.
    pub fn from_conn_error(e: weir_transport::ConnError) -> Status {
        use weir_transport::ConnError as E;
        match e {
            E::PeerTimeout { .. } => Status::PeerTimeout,
            E::HandshakeTimeout => Status::HandshakeTimeout,
            E::Refused => Status::Refused,
            E::PeerClosed => Status::PeerClosed,
            E::RemoteAccess => Status::RemoteAccess,
            E::LocalAccess => Status::LocalAccess,
            E::CreditStarved { .. } => Status::CreditStarved,
        }
    }

    /// What a refused post becomes.
    pub fn from_post_error(e: weir_transport::PostError) -> Status {
        use weir_transport::PostError as E;
        match e {
            E::UnknownConnection => Status::UnknownConnection,
            E::NotConnected => Status::NotConnected,
            E::UnknownRegion => Status::UnknownRegion,
            E::OutOfBounds => Status::OutOfBounds,
            E::TooLong => Status::TooLong,
            E::QueueFull => Status::QueueFull,
        }
    }
}

impl Status {
    /// The connection error a failure status stands for (the inverse of
    /// [`Status::from_conn_error`]; the durations and counts of `PeerTimeout` and
    /// `CreditStarved` do not cross the ring and read 0; any other failure reads `Refused`).
    pub fn conn_error(self) -> ConnError {
        match self {
            Status::HandshakeTimeout => ConnError::HandshakeTimeout,
            Status::PeerClosed => ConnError::PeerClosed,
            Status::RemoteAccess => ConnError::RemoteAccess,
            Status::LocalAccess | Status::Fault => ConnError::LocalAccess,
            Status::PeerTimeout => ConnError::PeerTimeout {
                silent_for: weir_base::Duration::ZERO,
                retries: 0,
            },
            Status::CreditStarved => ConnError::CreditStarved {
                waited_for: weir_base::Duration::ZERO,
            },
            _ => ConnError::Refused,
        }
    }
}

impl core::fmt::Display for Status {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self, f)
    }
}

/// A completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cqe {
    /// The submission's cookie (0 for unsolicited completions).
    pub user: u64,
    /// What happened.
    pub kind: CqeKind,
    /// How it ended.
    pub status: Status,
    /// Connection handle (0 when none).
    pub conn: u32,
    /// Region handle (registered).
    pub region: u32,
    /// Bytes moved (receive: the message length).
    pub len: u64,
    /// See the layout table.
    pub tag: u64,
    /// Truncated: the message's length.
    pub detail: u64,
    /// Accepted, connection lost: the peer.
    pub addr: Option<SocketAddr>,
}

impl Cqe {
    /// A completion with everything but `user`, `kind` and `status` zero.
    pub fn new(user: u64, kind: CqeKind, status: Status) -> Cqe {
        Cqe {
            user,
            kind,
            status,
            conn: 0,
            region: 0,
            len: 0,
            tag: 0,
            detail: 0,
            addr: None,
        }
    }

    /// The 64 bytes of this completion.
    pub fn encode(&self) -> [u8; DESC_LEN] {
        let mut b = [0u8; DESC_LEN];
        put64(&mut b, 0, self.user);
        put64(&mut b, 8, self.len);
        put64(&mut b, 16, self.tag);
        put32(&mut b, 24, self.conn);
        put32(&mut b, 28, self.region);
        b[32] = self.kind as u8;
        b[33] = self.status as u8;
        put64(&mut b, 40, self.detail);
        if let Some(a) = self.addr {
            put_addr(&mut b, 48, 34, a);
        }
        b
    }

    /// Read a completion the engine wrote (`None`: not a completion this version knows).
    pub fn decode(b: &[u8; DESC_LEN]) -> Option<Cqe> {
        let kind = CqeKind::from_u8(b[32])?;
        let status = Status::from_u8(b[33])?;
        let has_addr = b[48..].iter().any(|&x| x != 0) || u16_at(b, 34) != 0;
        Some(Cqe {
            user: u64_at(b, 0),
            len: u64_at(b, 8),
            tag: u64_at(b, 16),
            conn: u32_at(b, 24),
            region: u32_at(b, 28),
            kind,
            status,
            detail: u64_at(b, 40),
            addr: has_addr.then(|| addr_at(b, 48, 34)),
        })
    }
}

impl Cqe {
    /// A request completion (send, receive, write, write received) as the transport's
    /// [`Completion`]: the cookie as `WrId` (`u64::MAX` for a write received), the connection
    /// handle as `ConnId`. `None` for the other kinds.
    pub fn completion(&self) -> Option<Completion> {
        let (kind, wr, tag) = match self.kind {
            CqeKind::Send => (CompletionKind::Send, self.user, 0),
            CqeKind::Recv => (CompletionKind::Recv, self.user, self.tag),
            CqeKind::Write => (CompletionKind::Write, self.user, 0),
            CqeKind::WriteReceived => (
                CompletionKind::WriteReceived {
                    imm: self.tag as u32,
                },
                u64::MAX,
                0,
            ),
            _ => return None,
        };
        let status = match self.status {
            Status::Ok => Ok(()),
            Status::Truncated => Err(WrError::Truncated {
                message: self.detail,
                buffer: 0,
            }),
            Status::Closed => Err(WrError::Closed),
            Status::RemoteAccess => Err(WrError::RemoteAccess),
            s => Err(WrError::ConnectionLost(s.conn_error())),
        };
        Some(Completion {
            conn: ConnId(self.conn),
            wr: WrId(wr),
            kind,
            len: self.len,
            tag,
            status,
        })
    }
}

/// A connection's transport counters, as a [`CqeKind::Stats`] completion carries them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Data packets sent, first transmissions.
    pub data_packets: u64,
    /// Data packets retransmitted.
    pub retransmits: u64,
    /// Retransmission timeouts.
    pub rto_events: u64,
    /// Retransmissions found needless.
    pub spurious_retransmits: u64,
    /// The longest a resent packet waited to be delivered, µs.
    pub max_repair_us: u64,
}

impl From<&weir_transport::ConnStats> for Counters {
    /// The counters of the transport's statistics that cross the ring.
    fn from(st: &weir_transport::ConnStats) -> Counters {
        Counters {
            data_packets: st.data_packets,
            retransmits: st.retransmits,
            rto_events: st.rto_events,
            spurious_retransmits: st.spurious_retransmits,
            max_repair_us: st.max_repair_us,
        }
    }
}

impl Counters {
    /// The transport's statistics with these counters filled in (the rest do not cross the
    /// ring and read 0).
    pub fn conn_stats(&self) -> weir_transport::ConnStats {
        let mut s = weir_transport::ConnStats::default();
        s.data_packets = self.data_packets;
        s.retransmits = self.retransmits;
        s.rto_events = self.rto_events;
        s.spurious_retransmits = self.spurious_retransmits;
        s.max_repair_us = self.max_repair_us;
        s
    }
}

impl Cqe {
    /// A statistics completion for `counters`.
    pub fn with_counters(user: u64, conn: u32, c: &Counters) -> Cqe {
        let mut cqe = Cqe::new(user, CqeKind::Stats, Status::Ok);
        cqe.conn = conn;
        cqe.len = c.data_packets;
        cqe.tag = c.retransmits;
        cqe.detail = c.rto_events;
        cqe.region = u32::try_from(c.spurious_retransmits).unwrap_or(u32::MAX);
        // The address bytes carry the last counter (as a mapped IPv4 address never would:
        // its first ten bytes are zero and the next two 0xff).
        let v6 = Ipv6Addr::from(u128::from(c.max_repair_us) | 1 << 127);
        cqe.addr = Some(SocketAddr::new(IpAddr::V6(v6), 0));
        cqe
    }

    /// The counters of a [`CqeKind::Stats`] completion.
    pub fn counters(&self) -> Option<Counters> {
        if self.kind != CqeKind::Stats {
            return None;
        }
        let max_repair_us = match self.addr {
            Some(SocketAddr::V6(a)) => (u128::from(*a.ip()) & u128::from(u64::MAX)) as u64,
            _ => 0,
        };
        Some(Counters {
            data_packets: self.len,
            retransmits: self.tag,
            rto_events: self.detail,
            spurious_retransmits: u64::from(self.region),
            max_repair_us,
        })
    }
}

/// `0.0.0.0`, for tests and placeholders.
pub const UNSPECIFIED_V4: Ipv4Addr = Ipv4Addr::UNSPECIFIED;

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;

    fn addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), 1u16..).prop_map(|(ip, p)| SocketAddr::new(IpAddr::from(ip), p)),
            (any::<[u8; 16]>(), 1u16..)
                .prop_map(|(ip, p)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), p)),
        ]
        .prop_filter("specified", |a| !a.ip().is_unspecified())
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            Just(Op::Nop),
            (addr(), any::<u64>(), any::<Option<u128>>()).prop_map(
                |(remote, user_data, secret)| Op::Connect {
                    remote,
                    user_data,
                    secret
                }
            ),
            (any::<u64>(), any::<Option<u128>>()).prop_map(|(key, secret)| Op::Listen {
                key,
                secret,
                span: 1
            }),
            (any::<u64>(), any::<u32>()).prop_map(|(key, extra)| Op::Listen {
                key: key.min(u64::MAX - u64::from(extra)),
                secret: None,
                span: extra.min(u32::MAX - 1) + 1
            }),
            any::<u64>().prop_map(|key| Op::Unlisten { key }),
            any::<u32>().prop_map(|conn| Op::Close { conn }),
            any::<u32>().prop_map(|conn| Op::Stats { conn }),
            (any::<u32>(), any::<u64>(), any::<u64>(), any::<bool>()).prop_map(
                |(segment, offset, len, remote_write)| Op::Register {
                    segment,
                    offset,
                    len,
                    remote_write
                }
            ),
            any::<u32>().prop_map(|region| Op::Deregister { region }),
            (
                any::<u32>(),
                any::<u32>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>()
            )
                .prop_map(|(conn, region, offset, len, tag)| Op::Send {
                    conn,
                    region,
                    offset,
                    len,
                    tag
                }),
            (
                any::<u32>(),
                any::<u32>(),
                any::<u64>(),
                any::<u64>(),
                any::<Option<u64>>()
            )
                .prop_map(|(conn, region, offset, len, tag)| Op::Recv {
                    conn,
                    region,
                    offset,
                    len,
                    tag
                }),
            (
                (any::<u32>(), any::<u32>(), any::<u64>(), any::<u64>()),
                (any::<u32>(), any::<u64>(), any::<Option<u32>>())
            )
                .prop_map(
                    |((conn, region, offset, len), (rkey, remote_offset, notify))| {
                        Op::Write {
                            conn,
                            region,
                            offset,
                            len,
                            rkey,
                            remote_offset,
                            notify,
                        }
                    }
                ),
        ]
    }

    proptest! {
        #[test]
        fn submissions_round_trip(op in op(), user in any::<u64>()) {
            let s = Sqe { op, user };
            prop_assert_eq!(Sqe::decode(&s.encode()), Ok(s));
        }

        /// Any 64 bytes decode to an error or to a submission that encodes back to exactly
        /// those bytes: one meaning per descriptor, and nothing a client writes panics.
        #[test]
        fn any_bytes_decode_canonically(b in proptest::array::uniform32(any::<u8>()), c in proptest::array::uniform32(any::<u8>()), sparse in any::<u64>()) {
            let mut d = [0u8; DESC_LEN];
            d[..32].copy_from_slice(&b);
            d[32..].copy_from_slice(&c);
            // Zero most bytes most of the time, so valid descriptors are common.
            for (i, x) in d.iter_mut().enumerate() {
                if sparse >> (i % 64) & 1 == 0 {
                    *x = 0;
                }
            }
            d[0] %= 13;
            if let Ok(s) = Sqe::decode(&d) {
                prop_assert_eq!(s.encode(), d);
            }
        }

        #[test]
        fn completions_round_trip(user in any::<u64>(), len in any::<u64>(), tag in any::<u64>(), conn in any::<u32>(), region in any::<u32>(), kind in 0u8..11, status in 0u8..20, detail in any::<u64>(), a in proptest::option::of(addr())) {
            let c = Cqe {
                user, len, tag, conn, region,
                kind: CqeKind::from_u8(kind).unwrap(),
                status: Status::from_u8(status).unwrap(),
                detail, addr: a,
            };
            prop_assert_eq!(Cqe::decode(&c.encode()), Some(c));
        }
    }

    #[test]
    fn codes_are_the_tables_indices() {
        for (i, k) in CqeKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
        }
        for (i, st) in Status::ALL.iter().enumerate() {
            assert_eq!(*st as usize, i);
        }
        assert_eq!(CqeKind::from_u8(11), None);
        assert_eq!(Status::from_u8(22), None);
    }

    #[test]
    fn requests_round_trip() {
        let ops = [
            Op::Send {
                conn: 1,
                region: 2,
                offset: 3,
                len: 4,
                tag: 5,
            },
            Op::Recv {
                conn: 1,
                region: 2,
                offset: 3,
                len: 4,
                tag: None,
            },
            Op::Write {
                conn: 1,
                region: 2,
                offset: 3,
                len: 4,
                rkey: 6,
                remote_offset: 7,
                notify: Some(8),
            },
        ];
        for op in ops {
            let (conn, wr) = op.request().unwrap();
            assert_eq!(Op::from_request(conn, wr), op);
        }
        assert_eq!(Op::Nop.request(), None);
    }

    #[test]
    fn counters_round_trip() {
        let c = Counters {
            data_packets: 1 << 40,
            retransmits: 7,
            rto_events: 3,
            spurious_retransmits: 2,
            max_repair_us: 123_456_789,
        };
        let cqe = Cqe::with_counters(9, 65537, &c);
        let back = Cqe::decode(&cqe.encode()).unwrap();
        assert_eq!((back.user, back.conn), (9, 65537));
        assert_eq!(back.counters(), Some(c));
        assert_eq!(Cqe::new(1, CqeKind::Done, Status::Ok).counters(), None);
    }

    #[test]
    fn refusals() {
        let mut b = Sqe {
            op: Op::Nop,
            user: 1,
        }
        .encode();
        b[0] = 200;
        assert_eq!(Sqe::decode(&b), Err(DecodeError::UnknownOp(200)));
        b[0] = 0;
        b[2] = 1;
        assert_eq!(Sqe::decode(&b), Err(DecodeError::Reserved));
        b[2] = 0;
        b[1] = SQE_TAGGED;
        assert_eq!(Sqe::decode(&b), Err(DecodeError::Reserved), "flag on a nop");
        b[1] = 0;
        b[30] = 1;
        assert_eq!(
            Sqe::decode(&b),
            Err(DecodeError::Reserved),
            "offset on a nop"
        );
        let mut c = Sqe {
            op: Op::Connect {
                remote: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9),
                user_data: 0,
                secret: None,
            },
            user: 0,
        }
        .encode();
        c[20] = 0;
        assert_eq!(Sqe::decode(&c), Err(DecodeError::BadAddress), "port 0");
        c[20] = 9;
        c[22] = 1;
        assert_eq!(Sqe::decode(&c), Err(DecodeError::Reserved), "port > 65535");
        let z = Sqe {
            op: Op::Connect {
                remote: SocketAddr::new(IpAddr::V4(UNSPECIFIED_V4), 9),
                user_data: 0,
                secret: None,
            },
            user: 0,
        }
        .encode();
        assert_eq!(Sqe::decode(&z), Err(DecodeError::BadAddress));
    }
}
