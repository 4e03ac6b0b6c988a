//! The optional integrity trailer (ICRC): CRC-32 (IEEE) over header and payload, appended by
//! the sending datapath and verified and stripped by the receiving one, as a RoCE NIC does
//! with its invariant CRC. The engine never sees the trailer.
//!
//! Over UDP the kernel's checksum already protects the wire, so the ICRC is off by default;
//! it is for paths without a checksum (raw datapaths) and for fault injection that corrupts
//! bytes after the kernel verified them. A packet announces its trailer with
//! [`crate::Flags::ICRC`], so each packet is self-describing.

use crate::{COMMON_LEN, Error, Flags};

/// Length of the trailer.
pub const ICRC_LEN: usize = 4;

/// Byte offset of the flags field in the common header.
const FLAGS_AT: usize = 2;

/// Set [`Flags::ICRC`] in an emitted header (call before [`compute`]).
pub fn mark(header: &mut [u8]) -> Result<(), Error> {
    let f = header
        .get_mut(FLAGS_AT..FLAGS_AT + 2)
        .ok_or(Error::Truncated)?;
    let v = u16::from_be_bytes([f[0], f[1]]) | Flags::ICRC.0;
    f.copy_from_slice(&v.to_be_bytes());
    Ok(())
}

/// The trailer for a packet made of `parts` (header, payload), in wire order.
pub fn compute(parts: &[&[u8]]) -> [u8; ICRC_LEN] {
    let mut h = crc32fast::Hasher::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().to_be_bytes()
}

/// If the datagram announces a trailer, verify it and return the datagram without it;
/// otherwise return it unchanged. A mismatch is [`Error::BadChecksum`].
pub fn verify(datagram: &[u8]) -> Result<&[u8], Error> {
    let Some(f) = datagram.get(FLAGS_AT..FLAGS_AT + 2) else {
        return Err(Error::Truncated);
    };
    if u16::from_be_bytes([f[0], f[1]]) & Flags::ICRC.0 == 0 {
        return Ok(datagram);
    }
    if datagram.len() < COMMON_LEN + ICRC_LEN {
        return Err(Error::Truncated);
    }
    let (body, trailer) = datagram.split_at(datagram.len() - ICRC_LEN);
    if compute(&[body]) != trailer {
        return Err(Error::BadChecksum);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_detects_every_single_bit_flip() {
        let mut pkt = [0u8; 80];
        pkt[0] = 1;
        for (i, b) in pkt.iter_mut().enumerate().skip(4) {
            *b = i as u8;
        }
        mark(&mut pkt).unwrap();
        let t = compute(&[&pkt[..40], &pkt[40..]]);
        let mut full = [0u8; 84];
        full[..80].copy_from_slice(&pkt);
        full[80..].copy_from_slice(&t);
        assert_eq!(verify(&full).unwrap(), &pkt[..]);
        for bit in 0..full.len() * 8 {
            let mut c = full;
            c[bit / 8] ^= 1 << (bit % 8);
            // Either the checksum catches it, or the flip removed the ICRC flag and the
            // (now 4 bytes too long) packet goes on to fail parsing.
            if let Ok(body) = verify(&c) {
                assert_eq!(body.len(), c.len(), "bit {bit}");
            }
        }
        assert_eq!(verify(&[0u8; 2]), Err(Error::Truncated));
    }
}
