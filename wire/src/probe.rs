//! The probe extension (8 bytes): the sender's timestamp, echoed in the ACK a probe elicits.
//!
//! ```text
//!  0                                                               8
//! +---------------------------------------------------------------+
//! |                             tx_ts                             |
//! +---------------------------------------------------------------+
//! ```

use zerocopy::network_endian::U64;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::PROBE_EXT_LEN;

/// Extension of [`Opcode::Probe`](crate::Opcode::Probe).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeExt {
    /// Sender's timestamp (picoseconds), echoed in the ACK it elicits.
    pub tx_ts: u64,
}

impl ProbeExt {
    /// Every bit pattern is valid.
    #[inline(always)]
    pub(crate) fn parse(w: &Wire) -> ProbeExt {
        ProbeExt {
            tx_ts: w.tx_ts.get(),
        }
    }

    /// The wire form.
    #[inline]
    pub(crate) fn to_wire(self) -> Wire {
        Wire {
            tx_ts: U64::new(self.tx_ts),
        }
    }
}

/// Wire layout of the probe extension.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct Wire {
    /// Offset 0.
    tx_ts: U64,
}

const _: () = assert!(size_of::<Wire>() == PROBE_EXT_LEN);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let p = ProbeExt {
            tx_ts: 0x0102_0304_0506_0708,
        };
        let w = p.to_wire();
        assert_eq!(w.as_bytes(), &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(ProbeExt::parse(&w), p);
    }
}
