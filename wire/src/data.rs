//! The data extension (40 bytes): where a data packet's payload goes.
//!
//! ```text
//!  0                               4                               8
//! +-------------------------------+-------------------------------+
//! |            msg_id             |            msg_len            |
//! +-------------------------------+-------+-------+-------+-------+
//! |          msg_offset           | kind  |dflags |int_cnt|  rsvd |
//! +-------------------------------+-------+-------+-------+-------+
//! |                              tag                              |
//! +-------------------------------+-------------------------------+
//! |             rkey              |              imm              |
//! +-------------------------------+-------------------------------+
//! |                             tx_ts                             |
//! +---------------------------------------------------------------+
//! ```
//!
//! `int_count` INT hop records follow when [`Flags::INT`](crate::Flags::INT) is set; the count
//! lives here rather than in [`DataExt`] because the compact form keeps the records in
//! [`Header::int`](crate::Header::int).

use zerocopy::network_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::{DATA_EXT_LEN, Error, MAX_INT_HOPS};

/// What a data packet belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MsgKind {
    /// A two-sided send, matched to a posted receive by posting order and tag.
    Send = 0,
    /// A one-sided write placed directly into a registered region.
    Write = 1,
}

impl TryFrom<u8> for MsgKind {
    type Error = Error;

    /// Unknown values are [`Error::BadField`].
    #[inline]
    fn try_from(v: u8) -> Result<MsgKind, Error> {
        match v {
            0 => Ok(MsgKind::Send),
            1 => Ok(MsgKind::Write),
            _ => Err(Error::BadField),
        }
    }
}

/// Extension of a [`Opcode::Data`](crate::Opcode::Data) packet: where its payload goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataExt {
    /// Per-connection message number, one sequence per kind.
    pub msg_id: u32,
    /// Total length of the message in bytes.
    pub msg_len: u32,
    /// Offset of this packet's payload within the message. `msg_offset + payload_len` must not
    /// exceed `msg_len`.
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

impl DataExt {
    /// Checks the extension against the common header's payload length; returns it with the
    /// number of INT hops that follow (at most [`MAX_INT_HOPS`]).
    #[inline(always)]
    pub(crate) fn parse(w: &Wire, payload_len: u32) -> Result<(DataExt, usize), Error> {
        //= docs/wire.md#data-extension
        //# Bits 1–7 of `dflags` and the reserved byte must be zero.
        if w.dflags & !NOTIFY != 0 || w.reserved != 0 {
            return Err(Error::BadField);
        }
        let hops = usize::from(w.int_count);
        if hops > MAX_INT_HOPS {
            return Err(Error::TooManyHops);
        }
        let ext = DataExt {
            msg_id: w.msg_id.get(),
            msg_len: w.msg_len.get(),
            msg_offset: w.msg_offset.get(),
            kind: MsgKind::try_from(w.kind)?,
            notify: w.dflags & NOTIFY != 0,
            tag: w.tag.get(),
            rkey: w.rkey.get(),
            imm: w.imm.get(),
            tx_ts: w.tx_ts.get(),
        };
        ext.check(payload_len)?;
        Ok((ext, hops))
    }

    /// The payload must lie inside the message; shared by parse and emit.
    #[inline]
    pub(crate) fn check(&self, payload_len: u32) -> Result<(), Error> {
        //= docs/wire.md#data-extension
        //# `msg_offset + payload_len <= msg_len`, computed without overflow.
        if u64::from(self.msg_offset) + u64::from(payload_len) > u64::from(self.msg_len) {
            return Err(Error::BadField);
        }
        Ok(())
    }

    /// The wire form, announcing `int_count` INT hops.
    #[inline]
    pub(crate) fn to_wire(self, int_count: u8) -> Wire {
        Wire {
            msg_id: U32::new(self.msg_id),
            msg_len: U32::new(self.msg_len),
            msg_offset: U32::new(self.msg_offset),
            kind: self.kind as u8,
            dflags: if self.notify { NOTIFY } else { 0 },
            int_count,
            reserved: 0,
            tag: U64::new(self.tag),
            rkey: U32::new(self.rkey),
            imm: U32::new(self.imm),
            tx_ts: U64::new(self.tx_ts),
        }
    }
}

/// Wire layout of the data extension.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct Wire {
    /// Offset 0.
    msg_id: U32,
    /// Offset 4.
    msg_len: U32,
    /// Offset 8.
    msg_offset: U32,
    /// Offset 12.
    kind: u8,
    /// Offset 13: bit 0 = notify.
    dflags: u8,
    /// Offset 14.
    int_count: u8,
    /// Offset 15.
    reserved: u8,
    /// Offset 16.
    tag: U64,
    /// Offset 24.
    rkey: U32,
    /// Offset 28.
    imm: U32,
    /// Offset 32.
    tx_ts: U64,
}

const _: () = assert!(size_of::<Wire>() == DATA_EXT_LEN);

/// `dflags` bit 0.
const NOTIFY: u8 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    fn ext() -> DataExt {
        DataExt {
            msg_id: 7,
            msg_len: 100,
            msg_offset: 40,
            kind: MsgKind::Write,
            notify: true,
            tag: 0x1122_3344_5566_7788,
            rkey: 9,
            imm: 10,
            tx_ts: 11,
        }
    }

    #[test]
    fn round_trips() {
        let w = ext().to_wire(3);
        assert_eq!(DataExt::parse(&w, 60), Ok((ext(), 3)));
        assert_eq!(w.as_bytes()[13], 1);
        assert_eq!(w.as_bytes()[14], 3);
    }

    #[test]
    fn rejects_payload_past_message_end() {
        assert_eq!(ext().check(61), Err(Error::BadField));
        let edge = DataExt {
            msg_offset: u32::MAX,
            msg_len: u32::MAX,
            ..ext()
        };
        assert_eq!(edge.check(0), Ok(()));
        assert_eq!(edge.check(1), Err(Error::BadField));
        assert_eq!(DataExt::parse(&ext().to_wire(0), 61), Err(Error::BadField));
    }

    #[test]
    fn rejects_bad_fields() {
        let mut w = ext().to_wire(0);
        w.kind = 2;
        assert_eq!(DataExt::parse(&w, 0), Err(Error::BadField));
        let mut w = ext().to_wire(0);
        w.dflags = 2;
        assert_eq!(DataExt::parse(&w, 0), Err(Error::BadField));
        let mut w = ext().to_wire(0);
        w.reserved = 1;
        assert_eq!(DataExt::parse(&w, 0), Err(Error::BadField));
        let w = ext().to_wire(9);
        assert_eq!(DataExt::parse(&w, 0), Err(Error::TooManyHops));
    }
}
