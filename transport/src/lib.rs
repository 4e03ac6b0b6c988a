//! Weir's reliable multipath transport for lossy Ethernet: a sans-IO engine.
//!
//! Contract: nothing in this crate reads a clock, opens a socket or spawns a thread. An
//! [`Endpoint`] is a state machine driven from outside:
//!
//! * inputs: [`Endpoint::handle`] (a datagram arrived), [`Endpoint::handle_timeout`] (the time
//!   from [`Endpoint::poll_timeout`] has passed), and the application commands
//!   ([`Endpoint::connect`], [`Endpoint::post`], [`Endpoint::close`], region registration);
//! * outputs: [`Endpoint::poll_transmit`] (next datagram to put on the wire: a header written
//!   into the caller's buffer plus a payload *descriptor*), [`Endpoint::poll_event`]
//!   (connections, completions, errors), [`Endpoint::poll_timeout`].
//!
//! After any input, call `poll_transmit` until it returns `None`, then `poll_event` until
//! `None`, then `poll_timeout`. Time is a [`weir_base::Instant`] passed in.
//!
//! Payloads are descriptors (region, offset, length): a real datapath resolves them with
//! [`Endpoint::payload`] and moves bytes; the simulator registers *virtual* regions, which have a
//! length and no memory, and moves only lengths. The engine behaves identically in both cases.
#![no_std]
#![warn(missing_docs)]

extern crate alloc;

pub mod config;
mod conn;
mod deadlines;
mod endpoint;
mod handshake;
mod mem;
pub mod stats;

pub use config::{Config, ConfigError};
pub use conn::paths::PathStats;
pub use endpoint::Endpoint;
pub use handshake::syn_mac;
pub use mem::RegionId;
pub use stats::{ConnStats, EndpointStats};
pub use weir_wire::{Ecn, Mode};

use core::fmt;
use core::net::SocketAddr;

/// Identifies a connection within one endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u32);

/// Identifies a posted work request; unique within an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WrId(pub u64);

/// Where a one-sided write lands on the remote side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteRegion {
    /// The key the remote endpoint returned from its registration ([`Endpoint::rkey`]).
    pub rkey: u32,
    /// Offset within that region.
    pub offset: u64,
}

/// A request posted on a connection. Sends and writes are transmitted in posting order and
/// complete when every byte is acknowledged; receives match incoming sends in posting order,
/// skipping receives whose tag does not match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkRequest {
    /// Send `len` bytes at `offset` of `region`, tagged with `tag`.
    Send {
        /// Local region holding the data.
        region: RegionId,
        /// Offset in the region.
        offset: u64,
        /// Length in bytes (may be 0).
        len: u64,
        /// Tag matched against the receiver's posted receives.
        tag: u64,
    },
    /// Receive one message of at most `len` bytes into `region` at `offset`.
    Recv {
        /// Local region to place data into.
        region: RegionId,
        /// Offset in the region.
        offset: u64,
        /// Capacity in bytes; a longer message completes this receive with an error.
        len: u64,
        /// Only a send with this tag matches (`None`: any tag).
        tag: Option<u64>,
    },
    /// Write `len` bytes at `offset` of `region` into the remote region.
    Write {
        /// Local region holding the data.
        region: RegionId,
        /// Offset in the region.
        offset: u64,
        /// Length in bytes.
        len: u64,
        /// Where the bytes land.
        remote: RemoteRegion,
        /// If set, the remote side reports a [`CompletionKind::WriteReceived`] with this value.
        notify: Option<u32>,
    },
}

/// What completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompletionKind {
    /// A send: every byte was acknowledged by the peer.
    Send,
    /// A receive: a whole message was placed.
    Recv,
    /// A write: every byte was acknowledged by the peer.
    Write,
    /// A write with notify from the peer landed in one of our regions (no local request).
    WriteReceived {
        /// The writer's immediate value.
        imm: u32,
    },
}

/// A finished work request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The connection.
    pub conn: ConnId,
    /// The request (`WrId(u64::MAX)` for [`CompletionKind::WriteReceived`]).
    pub wr: WrId,
    /// What completed.
    pub kind: CompletionKind,
    /// Bytes transferred (for a receive: the message length).
    pub len: u64,
    /// The message's tag (receives), or zero.
    pub tag: u64,
    /// `Ok`, or why the request failed.
    pub status: Result<(), WrError>,
}

/// Why a work request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WrError {
    /// The message was longer than the receive buffer; nothing past the buffer was written.
    Truncated {
        /// The message length.
        message: u64,
        /// The receive buffer length.
        buffer: u64,
    },
    /// The remote side refused a write (bad key or out of bounds).
    RemoteAccess,
    /// The connection failed before the request finished.
    ConnectionLost(ConnError),
    /// The connection was closed before the request finished.
    Closed,
}

/// Why a connection failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnError {
    /// Nothing was heard from the peer for the configured peer timeout while work was pending
    /// (or keepalives went unanswered).
    PeerTimeout {
        /// How long the peer was silent.
        silent_for: weir_base::Duration,
        /// Retransmission attempts of the oldest unacknowledged packet.
        retries: u32,
    },
    /// The handshake did not complete in time.
    HandshakeTimeout,
    /// The peer refused the connection (mode or parameter mismatch) or closed it with an error.
    Refused,
    /// The peer closed the connection.
    PeerClosed,
    /// A one-sided write named a region key the target does not have, or fell outside the
    /// region. As with an RDMA remote access error, the connection fails on both sides.
    RemoteAccess,
    /// A region that an outstanding request of this connection reads or writes was
    /// deregistered. As with an RDMA local protection error, the request cannot finish and the
    /// connection fails; the peer is told (it sees `Refused`).
    LocalAccess,
    /// RCCC: data waited for the peer's credit for the whole peer timeout while the peer kept
    /// answering (a peer that does not grant credit, e.g. one without RCCC support).
    CreditStarved {
        /// How long the data waited.
        waited_for: weir_base::Duration,
    },
}

/// Why a request could not be posted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostError {
    /// No such connection.
    UnknownConnection,
    /// The connection has failed or is closed.
    NotConnected,
    /// No such region.
    UnknownRegion,
    /// Offset + length exceed the region.
    OutOfBounds,
    /// Messages are limited to `u32::MAX` bytes on the wire.
    TooLong,
    /// Too many requests outstanding on this connection.
    QueueFull,
}

/// Something the application should know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// An outgoing connection completed its handshake.
    Connected {
        /// The connection.
        conn: ConnId,
    },
    /// A peer connected to this (listening) endpoint.
    Accepted {
        /// The new connection.
        conn: ConnId,
        /// The peer's address.
        peer: SocketAddr,
        /// The `user_data` the peer passed to `connect`.
        user_data: u64,
    },
    /// A work request finished.
    Completion(Completion),
    /// A connection failed; every outstanding request on it was completed with an error first.
    ConnectionLost {
        /// The connection.
        conn: ConnId,
        /// The peer.
        peer: SocketAddr,
        /// Why.
        reason: ConnError,
    },
    /// A connection was closed (by us or by the peer) and its resources released.
    Closed {
        /// The connection.
        conn: ConnId,
    },
}

/// Metadata of a received datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxMeta {
    /// Source address.
    pub from: SocketAddr,
    /// ECN bits of the IP header.
    pub ecn: Ecn,
    /// The datagram carries only the header; the payload is virtual (simulator).
    pub virtual_payload: bool,
    /// A telemetry record for the hop that delivered the datagram, appended by the datapath
    /// (a simulated switch, or the receiving host's own queue) to packets that ask for INT
    /// ([`weir_wire::Flags::INT`]); ignored on packets that do not.
    pub int_hop: Option<weir_wire::IntHop>,
}

/// Metadata of a datagram to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxMeta {
    /// Destination address.
    pub to: SocketAddr,
    /// Entropy (path) index: the datapath sends from its source port / socket number
    /// `entropy % number_of_sockets`.
    pub entropy: u16,
    /// ECN bits to set in the IP header.
    pub ecn: Ecn,
}

/// Where a transmitted datagram's payload comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    /// No payload.
    None,
    /// Bytes of a registered region; resolve with [`Endpoint::payload`].
    Region {
        /// The region.
        region: RegionId,
        /// Offset.
        offset: u64,
        /// Length.
        len: u32,
    },
    /// A length-only payload from a virtual region (nothing to copy).
    Virtual(u32),
}

impl Payload {
    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        match *self {
            Payload::None => 0,
            Payload::Region { len, .. } | Payload::Virtual(len) => len as usize,
        }
    }
    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One datagram to put on the wire: a header already written into the caller's buffer, and a
/// payload descriptor to append after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where it goes and how.
    pub meta: TxMeta,
    /// Bytes of header written at the start of the caller's buffer.
    pub header_len: usize,
    /// The payload to append.
    pub payload: Payload,
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnError::PeerTimeout {
                silent_for,
                retries,
            } => {
                write!(
                    f,
                    "peer silent for {silent_for} ({retries} retransmissions)"
                )
            }
            ConnError::HandshakeTimeout => f.write_str("handshake timed out"),
            ConnError::Refused => f.write_str("connection refused"),
            ConnError::PeerClosed => f.write_str("peer closed the connection"),
            ConnError::RemoteAccess => {
                f.write_str("remote access error (bad region key or bounds)")
            }
            ConnError::LocalAccess => f.write_str(
                "local access error (a region in use by an outstanding request was deregistered)",
            ),
            ConnError::CreditStarved { waited_for } => write!(
                f,
                "no credit from the peer for {waited_for} (RCCC: does the peer grant credit?)"
            ),
        }
    }
}

impl fmt::Display for WrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WrError::Truncated { message, buffer } => {
                write!(
                    f,
                    "message of {message} B truncated by a {buffer} B receive buffer"
                )
            }
            WrError::RemoteAccess => f.write_str("remote access error"),
            WrError::ConnectionLost(e) => write!(f, "connection lost: {e}"),
            WrError::Closed => f.write_str("connection closed"),
        }
    }
}
