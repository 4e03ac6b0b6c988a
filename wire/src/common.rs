//! The common header: the 32 bytes every packet starts with.
//!
//! ```text
//!  0       1       2               4                               8
//! +-------+-------+---------------+-------------------------------+
//! |version|opcode |     flags     |           src_conn            |
//! +-------+-------+---------------+-------------------------------+
//! |           dst_conn            |              psn              |
//! +---------------+---------------+-------------------------------+
//! |    entropy    |    hdr_len    |          payload_len          |
//! +---------------+---------------+-------------------------------+
//! |                             token                             |
//! +---------------------------------------------------------------+
//! ```
//!
//! The checked view ([`Wire`]) validates nothing by itself; [`Common::parse`] checks version,
//! opcode and flags. `hdr_len` is checked by the packet layer, which knows the extension.

use zerocopy::network_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::{
    ACK_EXT_LEN, CLOSE_EXT_LEN, COMMON_LEN, CREDIT_EXT_LEN, CREDIT_REQ_EXT_LEN, DATA_EXT_LEN,
    Error, HANDSHAKE_EXT_LEN, NACK_EXT_LEN, PROBE_EXT_LEN, VERSION,
};

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
    /// Receiver credit (RCCC): the cumulative bytes the sender may send.
    Credit = 9,
    /// Credit request (RCCC): the sender's cumulative demand.
    CreditReq = 10,
}

impl Opcode {
    /// The flags a packet of this opcode may carry; any other bit is [`Error::BadFlags`].
    ///
    /// | opcode | allowed flags |
    /// |---|---|
    /// | `Data` | `ACK_REQ`, `TRIMMED`, `RETX`, `INT`, `MORE` |
    /// | `Ack`, `Nack` | `ECN_ECHO`, `RNR` |
    /// | `Probe` | `ACK_REQ`, `MORE` |
    /// | `Syn`, `SynAck`, `Close`, `Cnp`, `Credit`, `CreditReq` | none |
    #[inline]
    pub const fn allowed_flags(self) -> Flags {
        match self {
            Opcode::Data => Flags(
                Flags::ACK_REQ.0
                    | Flags::TRIMMED.0
                    | Flags::RETX.0
                    | Flags::INT.0
                    | Flags::ICRC.0
                    | Flags::MORE.0,
            ),
            Opcode::Ack | Opcode::Nack => Flags(Flags::ECN_ECHO.0 | Flags::RNR.0 | Flags::ICRC.0),
            Opcode::Probe => Flags(Flags::ACK_REQ.0 | Flags::ICRC.0 | Flags::MORE.0),
            Opcode::Syn
            | Opcode::SynAck
            | Opcode::Close
            | Opcode::Cnp
            | Opcode::Credit
            | Opcode::CreditReq => Flags::ICRC,
        }
    }

    /// Length of the fixed part of this opcode's extension (SACK words and INT hops excluded).
    #[inline]
    pub const fn ext_len(self) -> usize {
        match self {
            Opcode::Data => DATA_EXT_LEN,
            Opcode::Ack => ACK_EXT_LEN,
            Opcode::Nack => NACK_EXT_LEN,
            Opcode::Syn | Opcode::SynAck => HANDSHAKE_EXT_LEN,
            Opcode::Probe => PROBE_EXT_LEN,
            Opcode::Close => CLOSE_EXT_LEN,
            Opcode::Cnp => 0,
            Opcode::Credit => CREDIT_EXT_LEN,
            Opcode::CreditReq => CREDIT_REQ_EXT_LEN,
        }
    }
}

impl TryFrom<u8> for Opcode {
    type Error = Error;

    /// Unknown values are [`Error::BadOpcode`].
    #[inline]
    fn try_from(v: u8) -> Result<Opcode, Error> {
        Ok(match v {
            1 => Opcode::Data,
            2 => Opcode::Ack,
            3 => Opcode::Nack,
            4 => Opcode::Syn,
            5 => Opcode::SynAck,
            6 => Opcode::Probe,
            7 => Opcode::Close,
            8 => Opcode::Cnp,
            9 => Opcode::Credit,
            10 => Opcode::CreditReq,
            _ => return Err(Error::BadOpcode),
        })
    }
}

/// Flag bits of the common header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u16);

impl Flags {
    /// Data or probe: the sender asks for an immediate ACK.
    pub const ACK_REQ: Flags = Flags(1 << 0);
    /// ACK/NACK: the acknowledged packet arrived with ECN CE.
    pub const ECN_ECHO: Flags = Flags(1 << 1);
    /// A switch cut the payload off this packet (packet trimming); `payload_len` keeps the
    /// original length. Data only.
    pub const TRIMMED: Flags = Flags(1 << 2);
    /// Data: this is a retransmission.
    pub const RETX: Flags = Flags(1 << 3);
    /// Data: INT is requested and an INT hop list (possibly empty) follows the extension;
    /// switches append hops. Must be set whenever the list is non-empty. Not used on ACKs,
    /// whose INT echo list is announced by its count alone.
    pub const INT: Flags = Flags(1 << 4);
    /// A 4-byte ICRC trailer (CRC-32 over header and payload) follows the payload; added and
    /// checked by the datapath (see [`crate::icrc`]), stripped before the engine parses.
    pub const ICRC: Flags = Flags(1 << 5);
    /// ACK/NACK: receiver not ready. The receiver is short of buffers for send data (no
    /// posted receive, most of its unexpected-message budget used), refused some, or is
    /// serving other senders first (turns of its receive budget): the sender sends no new data
    /// until an ACK without this flag says it may, and meanwhile probes now and then (an RC
    /// queue pair's RNR NAK made a window: the receiver stops the sender instead of refusing a
    /// window per round trip; docs/transport.md, "Messages").
    pub const RNR: Flags = Flags(1 << 6);
    /// Data or probe: the sender has more to send after this packet (new data or
    /// retransmissions queued, whether or not its windows let them go now). A receiver that
    /// grants its buffer to a few senders at a time (`Config::rx_grants` in the transport)
    /// ends a sender's turn at a packet without it, and keeps one that has more waiting in
    /// line for the next turn.
    pub const MORE: Flags = Flags(1 << 7);
    /// All bits defined by version 1; others must be zero.
    pub const ALL: Flags = Flags(0xff);

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
    /// Zero on every opcode but [`Opcode::Data`].
    pub payload_len: u32,
    /// The receiver's connection token (its handshake nonce): packets with a wrong token are
    /// dropped, so blind injection into a connection fails. Zero in a SYN.
    pub token: u64,
}

impl Common {
    /// Checks version, opcode, flags, and that only data carries a payload length.
    #[inline(always)]
    pub(crate) fn parse(w: &Wire) -> Result<Common, Error> {
        //= docs/wire.md#versioning
        //# A receiver drops a packet whose version byte is not one it implements.
        if w.version != VERSION {
            return Err(Error::BadVersion);
        }
        let common = Common {
            opcode: Opcode::try_from(w.opcode)?,
            flags: Flags(w.flags.get()),
            src_conn: w.src_conn.get(),
            dst_conn: w.dst_conn.get(),
            psn: w.psn.get(),
            entropy: w.entropy.get(),
            payload_len: w.payload_len.get(),
            token: w.token.get(),
        };
        common.check()?;
        Ok(common)
    }

    /// The checks [`Common::parse`] makes that do not depend on the encoding; shared with emit.
    #[inline]
    pub(crate) fn check(&self) -> Result<(), Error> {
        //= docs/wire.md#flags
        //# Undefined bits, and defined bits an opcode does not allow, make the packet invalid.
        if self.flags.0 & !self.opcode.allowed_flags().0 != 0 {
            return Err(Error::BadFlags);
        }
        //= docs/wire.md#common-header
        //# `payload_len` is zero on every opcode but DATA.
        if self.opcode != Opcode::Data && self.payload_len != 0 {
            return Err(Error::BadLength);
        }
        Ok(())
    }

    /// The wire form, with the given total header length.
    #[inline]
    pub(crate) fn to_wire(self, hdr_len: u16) -> Wire {
        Wire {
            version: VERSION,
            opcode: self.opcode as u8,
            flags: U16::new(self.flags.0),
            src_conn: U32::new(self.src_conn),
            dst_conn: U32::new(self.dst_conn),
            psn: U32::new(self.psn),
            entropy: U16::new(self.entropy),
            hdr_len: U16::new(hdr_len),
            payload_len: U32::new(self.payload_len),
            token: U64::new(self.token),
        }
    }
}

/// Wire layout of the common header.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct Wire {
    /// Offset 0.
    pub(crate) version: u8,
    /// Offset 1.
    pub(crate) opcode: u8,
    /// Offset 2.
    pub(crate) flags: U16,
    /// Offset 4.
    pub(crate) src_conn: U32,
    /// Offset 8.
    pub(crate) dst_conn: U32,
    /// Offset 12.
    pub(crate) psn: U32,
    /// Offset 16.
    pub(crate) entropy: U16,
    /// Offset 18: total header bytes; the payload starts here.
    pub(crate) hdr_len: U16,
    /// Offset 20.
    pub(crate) payload_len: U32,
    /// Offset 24.
    pub(crate) token: U64,
}

const _: () = assert!(size_of::<Wire>() == COMMON_LEN);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcode_round_trips_through_u8() {
        for v in 0..=u8::MAX {
            match Opcode::try_from(v) {
                Ok(op) => assert_eq!(op as u8, v),
                Err(e) => {
                    assert_eq!(e, Error::BadOpcode);
                    assert!(v == 0 || v > 10);
                }
            }
        }
    }

    #[test]
    fn allowed_flags_are_defined_flags() {
        for v in 1..=10 {
            let op = Opcode::try_from(v).unwrap();
            assert!(Flags::ALL.contains(op.allowed_flags()), "{op:?}");
        }
        assert!(Opcode::Data.allowed_flags().contains(Flags::TRIMMED));
        assert!(!Opcode::Ack.allowed_flags().contains(Flags::INT));
        assert!(!Opcode::Ack.allowed_flags().contains(Flags::TRIMMED));
        assert!(Opcode::Data.allowed_flags().contains(Flags::MORE));
        assert!(Opcode::Probe.allowed_flags().contains(Flags::MORE));
        assert!(!Opcode::Ack.allowed_flags().contains(Flags::MORE));
        assert!(!Opcode::Nack.allowed_flags().contains(Flags::MORE));
    }

    #[test]
    fn common_round_trips_and_checks() {
        let c = Common {
            opcode: Opcode::Data,
            flags: Flags::RETX.union(Flags::ACK_REQ),
            src_conn: 1,
            dst_conn: 2,
            psn: 3,
            entropy: 4,
            payload_len: 5,
            token: 6,
        };
        let w = c.to_wire(72);
        assert_eq!(w.hdr_len.get(), 72);
        assert_eq!(Common::parse(&w), Ok(c));

        let mut bad = c.to_wire(72);
        bad.version = 2;
        assert_eq!(Common::parse(&bad), Err(Error::BadVersion));
        bad.version = VERSION;
        bad.opcode = 11;
        assert_eq!(Common::parse(&bad), Err(Error::BadOpcode));
        bad.opcode = Opcode::Data as u8;
        bad.flags = U16::new(1 << 6);
        assert_eq!(Common::parse(&bad), Err(Error::BadFlags));
        bad.flags = U16::new(1 << 8);
        assert_eq!(Common::parse(&bad), Err(Error::BadFlags));
        bad.opcode = Opcode::Ack as u8;
        bad.flags = U16::new(Flags::MORE.0);
        assert_eq!(Common::parse(&bad), Err(Error::BadFlags));

        let ack = Common {
            opcode: Opcode::Ack,
            flags: Flags::TRIMMED,
            payload_len: 0,
            ..c
        };
        assert_eq!(ack.check(), Err(Error::BadFlags));
        let ack = Common {
            flags: Flags::ECN_ECHO,
            payload_len: 1,
            ..ack
        };
        assert_eq!(ack.check(), Err(Error::BadLength));
    }

    #[test]
    fn flags_set_and_union() {
        let mut f = Flags::empty();
        f.set(Flags::INT, true);
        f.set(Flags::RETX, true);
        assert_eq!(f, Flags::INT.union(Flags::RETX));
        f.set(Flags::INT, false);
        assert_eq!(f, Flags::RETX);
        assert!(!f.contains(Flags::INT));
    }
}
