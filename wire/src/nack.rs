//! The NACK extension (24 bytes): one PSN the receiver wants again, and why.
//!
//! ```text
//!  0                               4                               8
//! +-------------------------------+-------------------------------+
//! |            cum_psn            |           nack_psn            |
//! +-------+-----------------------+-------------------------------+
//! |reason |   reserved (3 bytes)  |    echo_ts (bytes 0..4)       |
//! +-------+-----------------------+-------------------------------+
//! |    echo_ts (bytes 4..8)       |           reserved            |
//! +-------------------------------+-------------------------------+
//! ```

use zerocopy::network_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::{Error, NACK_EXT_LEN};

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

impl TryFrom<u8> for NackReason {
    type Error = Error;

    /// Unknown values (0 and 8..) are [`Error::BadField`].
    #[inline]
    fn try_from(v: u8) -> Result<NackReason, Error> {
        Ok(match v {
            1 => NackReason::Trimmed,
            2 => NackReason::TrimmedLastHop,
            3 => NackReason::OutOfResources,
            4 => NackReason::OutOfSequence,
            5 => NackReason::PsnOutOfWindow,
            6 => NackReason::AccessError,
            7 => NackReason::Truncated,
            _ => return Err(Error::BadField),
        })
    }
}

/// Extension of a [`Opcode::Nack`](crate::Opcode::Nack) packet.
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

impl NackExt {
    /// Checks reason and reserved fields.
    #[inline(always)]
    pub(crate) fn parse(w: &Wire) -> Result<NackExt, Error> {
        //= docs/wire.md#nack-extension
        //# `reason` is 1..=7; both reserved fields are zero.
        if w.reserved != [0; 3] || w.reserved2.get() != 0 {
            return Err(Error::BadField);
        }
        Ok(NackExt {
            cum_psn: w.cum_psn.get(),
            nack_psn: w.nack_psn.get(),
            reason: NackReason::try_from(w.reason)?,
            echo_ts: w.echo_ts.get(),
        })
    }

    /// The wire form.
    #[inline]
    pub(crate) fn to_wire(self) -> Wire {
        Wire {
            cum_psn: U32::new(self.cum_psn),
            nack_psn: U32::new(self.nack_psn),
            reason: self.reason as u8,
            reserved: [0; 3],
            echo_ts: U64::new(self.echo_ts),
            reserved2: U32::ZERO,
        }
    }
}

/// Wire layout of the NACK extension.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct Wire {
    /// Offset 0.
    cum_psn: U32,
    /// Offset 4.
    nack_psn: U32,
    /// Offset 8.
    reason: u8,
    /// Offset 9.
    reserved: [u8; 3],
    /// Offset 12.
    echo_ts: U64,
    /// Offset 20.
    reserved2: U32,
}

const _: () = assert!(size_of::<Wire>() == NACK_EXT_LEN);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip() {
        for v in 0..=u8::MAX {
            match NackReason::try_from(v) {
                Ok(r) => assert_eq!(r as u8, v),
                Err(e) => {
                    assert_eq!(e, Error::BadField);
                    assert!(v == 0 || v > 7);
                }
            }
        }
    }

    #[test]
    fn round_trips_and_rejects_reserved() {
        let n = NackExt {
            cum_psn: 1,
            nack_psn: 2,
            reason: NackReason::OutOfSequence,
            echo_ts: 3,
        };
        assert_eq!(NackExt::parse(&n.to_wire()), Ok(n));
        let mut w = n.to_wire();
        w.reserved[2] = 1;
        assert_eq!(NackExt::parse(&w), Err(Error::BadField));
        let mut w = n.to_wire();
        w.reserved2 = U32::new(1);
        assert_eq!(NackExt::parse(&w), Err(Error::BadField));
        let mut w = n.to_wire();
        w.reason = 0;
        assert_eq!(NackExt::parse(&w), Err(Error::BadField));
    }
}
