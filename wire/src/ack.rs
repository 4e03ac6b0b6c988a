//! The ACK extension: 32 fixed bytes, then `sack_len` 64-bit SACK words, then `int_count` INT
//! hop records echoed from the data packet that triggered the ACK.
//!
//! ```text
//!  0                               4                               8
//! +-------------------------------+-------------------------------+
//! |            cum_psn            |           sack_base           |
//! +-------------------------------+-------------------------------+
//! |           rwnd_psn            |           ecn_bytes           |
//! +-------------------------------+-------------------------------+
//! |          rx_delay_ns          |    echo_ts (bytes 0..4)       |
//! +-------------------------------+-------+-------+---------------+
//! |    echo_ts (bytes 4..8)       |sack_ln|int_cnt|   reserved    |
//! +-------------------------------+-------+-------+---------------+
//! |              sack word 0 .. sack_len - 1 (8 bytes each)       |
//! +---------------------------------------------------------------+
//! ```

use zerocopy::network_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::{ACK_EXT_LEN, Error, MAX_INT_HOPS, MAX_SACK_WORDS};

/// Selective acknowledgement bitmap: bit `i` (bit 0 = least significant) of `words[j]` set means
/// PSN `base + 64*j + i` (wrapping) was received.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Sack {
    /// PSN of bit 0 of word 0.
    pub base: u32,
    /// Bitmap words; only the first `len` are meaningful (and carried on the wire). Emit
    /// ignores the others; parse sets them to zero.
    pub words: [u64; MAX_SACK_WORDS],
    /// Number of words carried (0..=MAX_SACK_WORDS).
    pub len: u8,
}

impl Sack {
    /// The meaningful words (all of them when `len` is out of range).
    #[inline]
    pub fn as_slice(&self) -> &[u64] {
        self.words
            .get(..usize::from(self.len))
            .unwrap_or(&self.words)
    }

    /// Whether the bitmap marks `psn` as received. PSNs before `base` or past the carried words
    /// are not marked.
    #[inline]
    pub fn contains(&self, psn: u32) -> bool {
        let d = psn.wrapping_sub(self.base) as usize;
        match self.as_slice().get(d / 64) {
            Some(w) => (w >> (d % 64)) & 1 == 1,
            None => false,
        }
    }
}

/// Extension of an [`Opcode::Ack`](crate::Opcode::Ack) packet.
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

impl AckExt {
    /// Checks the fixed part and returns the counts that follow it: (SACK words, INT hops).
    #[inline(always)]
    pub(crate) fn counts(w: &Wire) -> Result<(usize, usize), Error> {
        //= docs/wire.md#ack-extension
        //# `sack_len` is at most 4, `int_count` at most 8, `reserved` zero.
        let words = usize::from(w.sack_len);
        if words > MAX_SACK_WORDS {
            return Err(Error::TooManySackWords);
        }
        let hops = usize::from(w.int_count);
        if hops > MAX_INT_HOPS {
            return Err(Error::TooManyHops);
        }
        if w.reserved.get() != 0 {
            return Err(Error::BadField);
        }
        Ok((words, hops))
    }

    /// The compact form of a checked fixed part and its SACK words (at most
    /// [`MAX_SACK_WORDS`]; words past `len` stay zero).
    #[inline(always)]
    pub(crate) fn from_wire(w: &Wire, words: &[U64]) -> AckExt {
        let mut sack = Sack {
            base: w.sack_base.get(),
            words: [0; MAX_SACK_WORDS],
            len: 0,
        };
        for (dst, src) in sack.words.iter_mut().zip(words) {
            *dst = src.get();
            sack.len += 1;
        }
        AckExt {
            cum_psn: w.cum_psn.get(),
            sack,
            rwnd_psn: w.rwnd_psn.get(),
            ecn_bytes: w.ecn_bytes.get(),
            rx_delay_ns: w.rx_delay_ns.get(),
            echo_ts: w.echo_ts.get(),
        }
    }

    /// Emit's check: the SACK length must be in range.
    #[inline]
    pub(crate) fn check(&self) -> Result<(), Error> {
        if usize::from(self.sack.len) > MAX_SACK_WORDS {
            return Err(Error::TooManySackWords);
        }
        Ok(())
    }

    /// The wire form of the fixed part, announcing `int_count` INT hops.
    #[inline]
    pub(crate) fn to_wire(self, int_count: u8) -> Wire {
        Wire {
            cum_psn: U32::new(self.cum_psn),
            sack_base: U32::new(self.sack.base),
            rwnd_psn: U32::new(self.rwnd_psn),
            ecn_bytes: U32::new(self.ecn_bytes),
            rx_delay_ns: U32::new(self.rx_delay_ns),
            echo_ts: U64::new(self.echo_ts),
            sack_len: self.sack.len,
            int_count,
            reserved: U16::ZERO,
        }
    }
}

/// Wire layout of the fixed part of the ACK extension.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct Wire {
    /// Offset 0.
    cum_psn: U32,
    /// Offset 4.
    sack_base: U32,
    /// Offset 8.
    rwnd_psn: U32,
    /// Offset 12.
    ecn_bytes: U32,
    /// Offset 16.
    rx_delay_ns: U32,
    /// Offset 20.
    echo_ts: U64,
    /// Offset 28.
    sack_len: u8,
    /// Offset 29.
    int_count: u8,
    /// Offset 30.
    reserved: U16,
}

const _: () = assert!(size_of::<Wire>() == ACK_EXT_LEN);
const _: () = assert!(size_of::<U64>() == crate::SACK_WORD_LEN);

#[cfg(test)]
mod tests {
    use super::*;

    fn words_of(v: &[u64]) -> [u64; MAX_SACK_WORDS] {
        let mut out = [0; MAX_SACK_WORDS];
        out[..v.len()].copy_from_slice(v);
        out
    }

    fn ext(len: u8) -> AckExt {
        AckExt {
            cum_psn: 1,
            sack: Sack {
                base: 2,
                words: words_of(&[3, 4, 5, 6]),
                len,
            },
            rwnd_psn: 7,
            ecn_bytes: 8,
            rx_delay_ns: 9,
            echo_ts: 10,
        }
    }

    #[test]
    fn round_trips_and_normalises_unused_words() {
        let w = ext(2).to_wire(1);
        assert_eq!(AckExt::counts(&w), Ok((2, 1)));
        let words = [U64::new(3), U64::new(4)];
        let got = AckExt::from_wire(&w, &words);
        assert_eq!(got.sack.words, words_of(&[3, 4]));
        assert_eq!(got.sack.len, 2);
        assert_eq!(got.sack.as_slice(), &[3, 4]);
        assert_eq!(
            AckExt {
                sack: Sack {
                    words: words_of(&[3, 4]),
                    ..got.sack
                },
                ..ext(2)
            },
            got
        );
    }

    #[test]
    fn rejects_bad_counts() {
        assert_eq!(
            AckExt::counts(&ext(MAX_SACK_WORDS as u8 + 1).to_wire(0)),
            Err(Error::TooManySackWords)
        );
        assert_eq!(AckExt::counts(&ext(4).to_wire(9)), Err(Error::TooManyHops));
        let mut w = ext(0).to_wire(0);
        w.reserved = U16::new(1);
        assert_eq!(AckExt::counts(&w), Err(Error::BadField));
        assert_eq!(
            ext(MAX_SACK_WORDS as u8 + 1).check(),
            Err(Error::TooManySackWords)
        );
        assert_eq!(ext(4).check(), Ok(()));
    }

    #[test]
    fn sack_contains() {
        let s = Sack {
            base: u32::MAX - 1,
            words: words_of(&[0b101, 1 << 63]),
            len: 2,
        };
        assert!(s.contains(u32::MAX - 1));
        assert!(!s.contains(u32::MAX));
        assert!(s.contains(0)); // wraps
        assert!(s.contains((u32::MAX - 1).wrapping_add(127)));
        assert!(!s.contains((u32::MAX - 1).wrapping_add(128)));
        assert!(!s.contains(u32::MAX - 2));
        let short = Sack { len: 1, ..s };
        assert!(!short.contains((u32::MAX - 1).wrapping_add(127)));
        let bad = Sack {
            len: MAX_SACK_WORDS as u8 + 5,
            ..s
        };
        assert_eq!(bad.as_slice().len(), MAX_SACK_WORDS);
    }
}
