//! The close extension (8 bytes): why the connection is torn down.
//!
//! ```text
//!  0                               4                               8
//! +-------------------------------+-------------------------------+
//! |            reason             |           reserved            |
//! +-------------------------------+-------------------------------+
//! ```

use zerocopy::network_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::{CLOSE_EXT_LEN, Error};

/// Extension of [`Opcode::Close`](crate::Opcode::Close).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseExt {
    /// Application or transport reason code (0 = normal close).
    pub reason: u32,
}

impl CloseExt {
    /// Checks the reserved word.
    #[inline(always)]
    pub(crate) fn parse(w: &Wire) -> Result<CloseExt, Error> {
        //= docs/wire.md#probe-and-close-extensions
        //# The reserved word of CLOSE is zero.
        if w.reserved.get() != 0 {
            return Err(Error::BadField);
        }
        Ok(CloseExt {
            reason: w.reason.get(),
        })
    }

    /// The wire form.
    #[inline]
    pub(crate) fn to_wire(self) -> Wire {
        Wire {
            reason: U32::new(self.reason),
            reserved: U32::ZERO,
        }
    }
}

/// Wire layout of the close extension.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct Wire {
    /// Offset 0.
    reason: U32,
    /// Offset 4.
    reserved: U32,
}

const _: () = assert!(size_of::<Wire>() == CLOSE_EXT_LEN);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_reserved() {
        let c = CloseExt { reason: 0xdead };
        assert_eq!(CloseExt::parse(&c.to_wire()), Ok(c));
        let mut w = c.to_wire();
        w.reserved = U32::new(1);
        assert_eq!(CloseExt::parse(&w), Err(Error::BadField));
    }
}
