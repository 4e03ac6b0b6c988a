//! INT hop records (24 bytes each): HPCC-style in-band telemetry appended by switches to data
//! packets that ask for it ([`Flags::INT`](crate::Flags::INT)) and echoed back in ACKs.
//!
//! ```text
//!  0                               4                               8
//! +-------------------------------+-------------------------------+
//! |             qlen              |           rate_mbps           |
//! +-------------------------------+-------------------------------+
//! |                           tx_bytes                            |
//! +---------------------------------------------------------------+
//! |                             ts_ns                             |
//! +---------------------------------------------------------------+
//! ```
//!
//! Every bit pattern of a record is valid; only the count is checked (by the extension that
//! carries it).

use zerocopy::network_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::{Error, INT_HOP_LEN, MAX_INT_HOPS};

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

impl IntHop {
    /// The wire form.
    #[inline]
    pub(crate) fn to_wire(self) -> Wire {
        Wire {
            qlen: U32::new(self.qlen),
            rate_mbps: U32::new(self.rate_mbps),
            tx_bytes: U64::new(self.tx_bytes),
            ts_ns: U64::new(self.ts_ns),
        }
    }
}

impl From<&Wire> for IntHop {
    #[inline]
    fn from(w: &Wire) -> IntHop {
        IntHop {
            qlen: w.qlen.get(),
            rate_mbps: w.rate_mbps.get(),
            tx_bytes: w.tx_bytes.get(),
            ts_ns: w.ts_ns.get(),
        }
    }
}

/// A bounded list of INT hop records (at most [`MAX_INT_HOPS`]). Slots past the length are
/// always zero, so derived equality compares the records only.
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
    /// A list holding `hops`; fails with [`Error::TooManyHops`] past [`MAX_INT_HOPS`].
    pub fn from_slice(hops: &[IntHop]) -> Result<Self, Error> {
        let mut list = IntList::new();
        for &hop in hops {
            list.push(hop)?;
        }
        Ok(list)
    }
    /// The records.
    pub fn as_slice(&self) -> &[IntHop] {
        self.hops.get(..usize::from(self.len)).unwrap_or(&self.hops)
    }
    /// Append a record; fails when the list is full.
    pub fn push(&mut self, hop: IntHop) -> Result<(), Error> {
        let slot = self
            .hops
            .get_mut(usize::from(self.len))
            .ok_or(Error::TooManyHops)?;
        *slot = hop;
        self.len += 1;
        Ok(())
    }
    /// Number of records.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }
    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The list of the records in `hops` (the caller has checked the count; extra records past
    /// [`MAX_INT_HOPS`] would be ignored).
    #[inline(always)]
    pub(crate) fn from_wire(hops: &[Wire]) -> IntList {
        let mut list = IntList::new();
        for (dst, src) in list.hops.iter_mut().zip(hops) {
            *dst = IntHop::from(src);
            list.len += 1;
        }
        list
    }
}

/// Wire layout of one INT hop record.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct Wire {
    /// Offset 0.
    qlen: U32,
    /// Offset 4.
    rate_mbps: U32,
    /// Offset 8.
    tx_bytes: U64,
    /// Offset 16.
    ts_ns: U64,
}

const _: () = assert!(size_of::<Wire>() == INT_HOP_LEN);

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(i: u32) -> IntHop {
        IntHop {
            qlen: i,
            rate_mbps: 100_000,
            tx_bytes: u64::from(i) << 40,
            ts_ns: 7,
        }
    }

    #[test]
    fn push_stops_at_capacity() {
        let mut l = IntList::new();
        for i in 0..MAX_INT_HOPS as u32 {
            l.push(hop(i)).unwrap();
        }
        assert_eq!(l.len(), MAX_INT_HOPS);
        assert_eq!(l.push(hop(99)), Err(Error::TooManyHops));
        assert_eq!(l.len(), MAX_INT_HOPS);
        assert_eq!(l.as_slice()[7], hop(7));
    }

    #[test]
    fn from_slice_and_wire_agree() {
        let hops = [hop(1), hop(2), hop(3)];
        let l = IntList::from_slice(&hops).unwrap();
        assert_eq!(l.as_slice(), &hops);
        assert!(!l.is_empty());
        let wires = hops.map(IntHop::to_wire);
        assert_eq!(IntList::from_wire(&wires), l);
        assert_eq!(IntList::from_slice(&[hop(0); 9]), Err(Error::TooManyHops));
        assert_eq!(IntList::from_wire(&[]), IntList::new());
        assert_eq!(IntList::new(), IntList::default());
    }

    #[test]
    fn hop_layout() {
        let w = IntHop {
            qlen: 0x0102_0304,
            rate_mbps: 0x0506_0708,
            tx_bytes: 0x090a_0b0c_0d0e_0f10,
            ts_ns: 0x1112_1314_1516_1718,
        }
        .to_wire();
        let want: [u8; 24] = core::array::from_fn(|i| i as u8 + 1);
        assert_eq!(w.as_bytes(), &want);
    }
}
