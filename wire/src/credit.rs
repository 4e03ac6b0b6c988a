//! The credit extensions of RCCC's control packets (UE 1.0's CREDIT and CREDIT_REQ PDS control
//! types, `uet_pkt_hdr.h` of uet-ref-prov; docs/references.md), in Weir's own encoding:
//! CREDIT (receiver → sender, 8 bytes) and CREDIT_REQ (sender → receiver, 16 bytes).
//!
//! ```text
//! CREDIT
//!  0                                                               8
//! +---------------------------------------------------------------+
//! |                            credit                             |
//! +---------------------------------------------------------------+
//!
//! CREDIT_REQ
//!  0                                                               8
//! +---------------------------------------------------------------+
//! |                            demand                             |
//! +---------------------------------------------------------------+
//! |                            granted                            |
//! +---------------------------------------------------------------+
//! ```
//!
//! Both carry cumulative byte counts, so every bit pattern is valid: a stale value is simply
//! smaller than what the peer already knows (the transport keeps the maximum).

use zerocopy::network_endian::U64;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::{CREDIT_EXT_LEN, CREDIT_REQ_EXT_LEN};

/// Extension of [`Opcode::Credit`](crate::Opcode::Credit): the receiver's grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreditExt {
    /// Cumulative bytes of credit granted to this connection since it opened (beyond the
    /// sender's speculative window), in wire bytes of data packets.
    pub credit: u64,
}

impl CreditExt {
    /// Every bit pattern is valid.
    #[inline(always)]
    pub(crate) fn parse(w: &CreditWire) -> CreditExt {
        CreditExt {
            credit: w.credit.get(),
        }
    }

    /// The wire form.
    #[inline]
    pub(crate) fn to_wire(self) -> CreditWire {
        CreditWire {
            credit: U64::new(self.credit),
        }
    }
}

/// Extension of [`Opcode::CreditReq`](crate::Opcode::CreditReq): the sender's request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreditReqExt {
    /// Cumulative bytes of credit the sender needs (bytes sent plus its capped backlog, minus
    /// its speculative window).
    pub demand: u64,
    /// Cumulative credit the sender has seen granted; a receiver that granted more repeats
    /// its last CREDIT (it was lost).
    pub granted: u64,
}

impl CreditReqExt {
    /// Every bit pattern is valid.
    #[inline(always)]
    pub(crate) fn parse(w: &CreditReqWire) -> CreditReqExt {
        CreditReqExt {
            demand: w.demand.get(),
            granted: w.granted.get(),
        }
    }

    /// The wire form.
    #[inline]
    pub(crate) fn to_wire(self) -> CreditReqWire {
        CreditReqWire {
            demand: U64::new(self.demand),
            granted: U64::new(self.granted),
        }
    }
}

/// Wire layout of the CREDIT extension.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct CreditWire {
    /// Offset 0.
    credit: U64,
}

/// Wire layout of the CREDIT_REQ extension.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct CreditReqWire {
    /// Offset 0.
    demand: U64,
    /// Offset 8.
    granted: U64,
}

const _: () = assert!(size_of::<CreditWire>() == CREDIT_EXT_LEN);
const _: () = assert!(size_of::<CreditReqWire>() == CREDIT_REQ_EXT_LEN);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_network_order() {
        let c = CreditExt {
            credit: 0x0102_0304_0506_0708,
        };
        let w = c.to_wire();
        assert_eq!(w.as_bytes(), &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(CreditExt::parse(&w), c);
        let q = CreditReqExt {
            demand: 0x1112_1314_1516_1718,
            granted: 0x2122_2324_2526_2728,
        };
        let w = q.to_wire();
        assert_eq!(
            w.as_bytes(),
            &[
                0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26,
                0x27, 0x28
            ]
        );
        assert_eq!(CreditReqExt::parse(&w), q);
    }
}
