//! Weir wire format, version 1 (documented in `docs/wire.md`).
//!
//! Every packet starts with a 32-byte [`Common`] header, followed by an opcode-specific
//! extension ([`Ext`]), an optional list of INT hop records, and the payload (data packets only).
//! All integers are in network byte order.
//!
//! Contract: [`parse`] validates every length and field once and never panics, whatever the
//! input; it returns a compact [`Header`] plus the payload slice. [`Header::emit`] writes the
//! exact inverse. A packet that fails to parse is dropped and counted by the caller.
//!
//! TODO(wire helper): replace the placeholder bodies below with the real implementation.
#![no_std]
#![warn(missing_docs)]

/// Wire format version carried in every packet.
pub const VERSION: u8 = 1;
/// Length of the common header.
pub const COMMON_LEN: usize = 32;
/// Length of the data extension.
pub const DATA_EXT_LEN: usize = 40;
/// Length of the fixed part of the ACK extension (SACK words and INT hops follow).
pub const ACK_EXT_LEN: usize = 32;
/// Length of the NACK extension.
pub const NACK_EXT_LEN: usize = 24;
/// Length of the handshake (SYN / SYN-ACK) extension.
pub const HANDSHAKE_EXT_LEN: usize = 40;
/// Length of the probe extension.
pub const PROBE_EXT_LEN: usize = 8;
/// Length of the close extension.
pub const CLOSE_EXT_LEN: usize = 8;
/// Length of one INT hop record.
pub const INT_HOP_LEN: usize = 24;
/// Most INT hop records a packet may carry.
pub const MAX_INT_HOPS: usize = 8;
/// Most 64-bit SACK bitmap words an ACK may carry (4 words = 256 packets).
pub const MAX_SACK_WORDS: usize = 4;
/// The longest header any packet can have (an ACK with a full SACK bitmap and full INT list).
pub const MAX_HEADER_LEN: usize =
    COMMON_LEN + ACK_EXT_LEN + MAX_SACK_WORDS * 8 + MAX_INT_HOPS * INT_HOP_LEN;

/// Packet type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    /// Payload of a message (send or write).
    Data = 1,
    /// Cumulative acknowledgement with SACK bitmap.
    Ack = 2,
    /// Negative acknowledgement with a reason.
    Nack = 3,
    /// Connection request.
    Syn = 4,
    /// Connection acceptance.
    SynAck = 5,
    /// Keepalive / tail-loss probe: asks the peer for an ACK, carries no data.
    Probe = 6,
    /// Connection teardown.
    Close = 7,
    /// Congestion notification packet (DCQCN notification point → reaction point).
    Cnp = 8,
}

/// Flag bits of the common header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u16);

impl Flags {
    /// The sender asks for an immediate ACK.
    pub const ACK_REQ: Flags = Flags(1 << 0);
    /// ACK/NACK: the acknowledged packet arrived with ECN CE.
    pub const ECN_ECHO: Flags = Flags(1 << 1);
    /// A switch cut the payload off this packet (packet trimming); `payload_len` keeps the
    /// original length.
    pub const TRIMMED: Flags = Flags(1 << 2);
    /// Data: this is a retransmission.
    pub const RETX: Flags = Flags(1 << 3);
    /// Data: an INT hop list follows the extension (switches append hops).
    pub const INT: Flags = Flags(1 << 4);
    /// All bits defined by version 1; others must be zero.
    pub const ALL: Flags = Flags(0x1f);

    /// No flags.
    pub const fn empty() -> Flags {
        Flags(0)
    }
    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
    /// Set or clear the bits of `other`.
    pub fn set(&mut self, other: Flags, on: bool) {
        if on {
            self.0 |= other.0
        } else {
            self.0 &= !other.0
        }
    }
    /// Union.
    pub const fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
}

/// The 32-byte header every packet starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Common {
    /// Packet type.
    pub opcode: Opcode,
    /// Flag bits.
    pub flags: Flags,
    /// Sender's connection id.
    pub src_conn: u32,
    /// Receiver's connection id (0 in a SYN: not known yet).
    pub dst_conn: u32,
    /// Packet sequence number (data), or the sender's next PSN (control packets).
    pub psn: u32,
    /// Entropy value / path id the sender chose (it also picks the UDP source port).
    pub entropy: u16,
    /// Payload length in bytes. Kept when the payload is trimmed off or carried virtually.
    pub payload_len: u32,
    /// The receiver's connection token (its handshake nonce): packets with a wrong token are
    /// dropped, so blind injection into a connection fails. Zero in a SYN.
    pub token: u64,
}

/// What a data packet belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MsgKind {
    /// A two-sided send, matched to a posted receive by posting order and tag.
    Send = 0,
    /// A one-sided write placed directly into a registered region.
    Write = 1,
}

/// Extension of a [`Opcode::Data`] packet: where its payload goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataExt {
    /// Per-connection message number (sends and writes share one sequence).
    pub msg_id: u32,
    /// Total length of the message in bytes.
    pub msg_len: u32,
    /// Offset of this packet's payload within the message.
    pub msg_offset: u32,
    /// Send or write.
    pub kind: MsgKind,
    /// Write: the receiver reports a completion carrying `imm` when the write has landed.
    pub notify: bool,
    /// Send: the message tag. Write: the offset within the remote region.
    pub tag: u64,
    /// Write: the remote region's key. Send: zero.
    pub rkey: u32,
    /// Write with notify: 32-bit immediate value for the completion.
    pub imm: u32,
    /// Sender's transmit timestamp (picoseconds, sender's clock), echoed in ACKs for RTT.
    pub tx_ts: u64,
}

/// Selective acknowledgement bitmap: bit `i` of `words[j]` set means PSN
/// `base + 64*j + i` was received.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Sack {
    /// PSN of bit 0 of word 0.
    pub base: u32,
    /// Bitmap words; only the first `len` are meaningful (and carried on the wire).
    pub words: [u64; MAX_SACK_WORDS],
    /// Number of words carried (0..=MAX_SACK_WORDS).
    pub len: u8,
}

/// Extension of an [`Opcode::Ack`] packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AckExt {
    /// Every PSN below this was received.
    pub cum_psn: u32,
    /// Which PSNs at or above `cum_psn` were received.
    pub sack: Sack,
    /// Receiver flow control: the sender may send PSNs below this.
    pub rwnd_psn: u32,
    /// Cumulative count of payload bytes received with ECN CE on this connection (wrapping).
    pub ecn_bytes: u32,
    /// Time the receiver held the triggering packet before this ACK left, in nanoseconds
    /// (host delay, subtracted to get fabric delay).
    pub rx_delay_ns: u32,
    /// `tx_ts` of the packet that triggered this ACK.
    pub echo_ts: u64,
}

/// Why a packet was negatively acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum NackReason {
    /// A switch in the fabric trimmed the packet.
    Trimmed = 1,
    /// The last-hop switch trimmed the packet (incast at the receiver).
    TrimmedLastHop = 2,
    /// The receiver had no buffer for the packet (no matching receive, unexpected buffer full).
    OutOfResources = 3,
    /// Go-back-N receiver: the packet was not the next expected one; resend from `nack_psn`.
    OutOfSequence = 4,
    /// The PSN was beyond the receiver's window.
    PsnOutOfWindow = 5,
    /// A write named a region key that is not registered for remote writes, or fell outside it.
    AccessError = 6,
    /// A message was longer than the receive buffer it matched.
    Truncated = 7,
}

/// Extension of a [`Opcode::Nack`] packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NackExt {
    /// Every PSN below this was received.
    pub cum_psn: u32,
    /// The PSN being negatively acknowledged.
    pub nack_psn: u32,
    /// Why.
    pub reason: NackReason,
    /// `tx_ts` of the NACKed packet (RTT sample for the CC).
    pub echo_ts: u64,
}

/// Reliability mode, carried in the handshake; both ends must agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Mode {
    /// Weir: multipath spraying, out-of-order acceptance, SACK, selective retransmit.
    Weir = 0,
    /// RoCEv2-like baseline: single path, go-back-N, in-order receiver.
    GoBackN = 1,
}

/// Extension of [`Opcode::Syn`] and [`Opcode::SynAck`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandshakeExt {
    /// The sender's random nonce: the peer puts it in [`Common::token`] of every later packet.
    pub nonce: u64,
    /// SYN-ACK: the SYN's nonce, echoed. SYN: zero.
    pub echo_nonce: u64,
    /// Application data passed to the acceptor (e.g. which listener / communicator).
    pub user_data: u64,
    /// First PSN the sender will use.
    pub initial_psn: u32,
    /// Largest payload the sender can receive in one packet.
    pub max_payload: u32,
    /// Number of entropy values (paths) the sender sprays over.
    pub paths: u16,
    /// Reliability mode.
    pub mode: Mode,
    /// Receive window in packets the sender offers.
    pub rwnd_pkts: u32,
}

/// Extension of [`Opcode::Probe`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeExt {
    /// Sender's timestamp (picoseconds), echoed in the ACK it elicits.
    pub tx_ts: u64,
}

/// Extension of [`Opcode::Close`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseExt {
    /// Application or transport reason code (0 = normal close).
    pub reason: u32,
}

/// One INT record appended by a switch (HPCC-style in-band telemetry).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct IntHop {
    /// Egress queue length in bytes when the packet left.
    pub qlen: u32,
    /// Egress link rate in Mb/s.
    pub rate_mbps: u32,
    /// Bytes transmitted by the egress port so far (wrapping counter).
    pub tx_bytes: u64,
    /// Switch timestamp in nanoseconds.
    pub ts_ns: u64,
}

/// A bounded list of INT hop records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct IntList {
    hops: [IntHop; MAX_INT_HOPS],
    len: u8,
}

impl IntList {
    /// An empty list.
    pub const fn new() -> Self {
        IntList {
            hops: [IntHop {
                qlen: 0,
                rate_mbps: 0,
                tx_bytes: 0,
                ts_ns: 0,
            }; MAX_INT_HOPS],
            len: 0,
        }
    }
    /// The records.
    pub fn as_slice(&self) -> &[IntHop] {
        &self.hops[..self.len as usize]
    }
    /// Append a record; fails when the list is full.
    pub fn push(&mut self, hop: IntHop) -> Result<(), Error> {
        let i = self.len as usize;
        if i >= MAX_INT_HOPS {
            return Err(Error::TooManyHops);
        }
        self.hops[i] = hop;
        self.len += 1;
        Ok(())
    }
    /// Number of records.
    pub fn len(&self) -> usize {
        self.len as usize
    }
    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Opcode-specific extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ext {
    /// [`Opcode::Data`].
    Data(DataExt),
    /// [`Opcode::Ack`].
    Ack(AckExt),
    /// [`Opcode::Nack`].
    Nack(NackExt),
    /// [`Opcode::Syn`] and [`Opcode::SynAck`].
    Handshake(HandshakeExt),
    /// [`Opcode::Probe`].
    Probe(ProbeExt),
    /// [`Opcode::Close`].
    Close(CloseExt),
    /// [`Opcode::Cnp`]: no extension.
    None,
}

/// A whole packet header in compact form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Common header.
    pub common: Common,
    /// Opcode-specific extension; must match `common.opcode`.
    pub ext: Ext,
    /// INT hop records: stamped by switches on data packets (flag [`Flags::INT`]), echoed back
    /// in ACKs. Empty otherwise.
    pub int: IntList,
}

/// How the payload travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadMode {
    /// The buffer holds header and payload bytes (real datapaths).
    Bytes,
    /// The buffer holds only the header; `payload_len` describes a payload that is not carried
    /// (the simulator's length-only mode).
    Virtual,
}

/// A parsed packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// The header.
    pub header: Header,
    /// Bytes of header in the buffer.
    pub header_len: usize,
    /// The payload bytes (empty when trimmed or virtual).
    pub payload: &'a [u8],
}

/// Why a packet could not be parsed or emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// Buffer shorter than the header claims.
    Truncated,
    /// Unknown version.
    BadVersion,
    /// Unknown opcode.
    BadOpcode,
    /// Undefined flag bits set, or a flag not allowed on this opcode.
    BadFlags,
    /// Header length field inconsistent with opcode and counts, or buffer length inconsistent
    /// with header length + payload length.
    BadLength,
    /// A field holds a value outside its range (unknown enum value, offset past message end…).
    BadField,
    /// More INT hops than [`MAX_INT_HOPS`].
    TooManyHops,
    /// More SACK words than [`MAX_SACK_WORDS`].
    TooManySackWords,
    /// The output buffer is too small.
    BufferTooSmall,
}

/// The two ECN bits of the IP header (RFC 3168).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Ecn {
    /// Not ECN-capable transport.
    #[default]
    NotEct = 0b00,
    /// ECN-capable transport (1).
    Ect1 = 0b01,
    /// ECN-capable transport (0).
    Ect0 = 0b10,
    /// Congestion experienced.
    Ce = 0b11,
}

impl Ecn {
    /// From the low two bits of the IP TOS / traffic-class byte.
    pub const fn from_bits(tos: u8) -> Ecn {
        match tos & 0b11 {
            0b01 => Ecn::Ect1,
            0b10 => Ecn::Ect0,
            0b11 => Ecn::Ce,
            _ => Ecn::NotEct,
        }
    }
}

/// Parse one packet. Never panics; every inconsistency is an [`Error`].
///
/// In [`PayloadMode::Bytes`] the buffer must be exactly header + `payload_len` bytes, or just
/// the header when [`Flags::TRIMMED`] is set. In [`PayloadMode::Virtual`] it must be exactly the
/// header.
pub fn parse(buf: &[u8], mode: PayloadMode) -> Result<Parsed<'_>, Error> {
    let _ = (buf, mode);
    todo!("wire helper")
}

impl Header {
    /// Length of this header on the wire.
    pub fn len(&self) -> usize {
        todo!("wire helper")
    }

    /// Write this header at the start of `buf`; returns the number of bytes written. Fails
    /// (writing nothing meaningful) when `buf` is too small or the header is inconsistent
    /// (extension not matching the opcode, too many hops or SACK words).
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let _ = buf;
        todo!("wire helper")
    }
}

/// Trim a packet in place as a switch would: cut the payload, set [`Flags::TRIMMED`], keep
/// `payload_len`. Returns the new length (the header length).
pub fn trim(buf: &mut [u8]) -> Result<usize, Error> {
    let _ = buf;
    todo!("wire helper")
}
