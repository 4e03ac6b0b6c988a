//! `icrc::verify` on arbitrary input: never panics; when it succeeds it returns a prefix of the
//! input, the whole input when the ICRC flag is clear and the input less a correct 4-byte
//! trailer when it is set; when it fails the error is `Truncated` or `BadChecksum`. And sealing
//! (`mark`, `compute`, append) any input of at least a common header's length verifies to the
//! marked input, `compute` over a split equals `compute` over the whole, and any single bit
//! flip of the sealed datagram is caught (or, when it clears the flag, leaves the datagram
//! unverified and whole).
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_wire::icrc::{ICRC_LEN, compute, mark, verify};
use weir_wire::{COMMON_LEN, Error, Flags};

/// Whether the flags field (bytes 2..4) has the ICRC bit.
fn flagged(d: &[u8]) -> bool {
    d.len() >= 4 && u16::from_be_bytes([d[2], d[3]]) & Flags::ICRC.0 != 0
}

fuzz_target!(|data: &[u8]| {
    match verify(data) {
        Ok(body) => {
            assert_eq!(body.as_ptr(), data.as_ptr(), "not a prefix");
            if flagged(data) {
                assert_eq!(body.len() + ICRC_LEN, data.len());
                assert_eq!(compute(&[body])[..], data[body.len()..]);
            } else {
                assert_eq!(body.len(), data.len());
            }
        }
        Err(Error::Truncated) => {
            assert!(data.len() < 4 || (flagged(data) && data.len() < COMMON_LEN + ICRC_LEN));
        }
        Err(Error::BadChecksum) => assert!(flagged(data) && data.len() >= COMMON_LEN + ICRC_LEN),
        Err(e) => panic!("verify returned {e:?}"),
    }

    if data.len() < COMMON_LEN {
        return;
    }
    let mut pkt = data.to_vec();
    mark(&mut pkt).expect("mark succeeds on a common header's length");
    assert!(flagged(&pkt));
    let cut = data[0] as usize % (pkt.len() + 1);
    let trailer = compute(&[&pkt[..cut], &pkt[cut..]]);
    assert_eq!(
        trailer,
        compute(&[&pkt]),
        "compute depends on how the input is split"
    );
    let mut sealed = pkt.clone();
    sealed.extend_from_slice(&trailer);
    assert_eq!(verify(&sealed), Ok(&pkt[..]));

    // CRC-32 detects every single-bit error.
    let bit = usize::from(u16::from_le_bytes([data[1], data[2]])) % (sealed.len() * 8);
    sealed[bit / 8] ^= 1 << (bit % 8);
    match verify(&sealed) {
        Ok(body) => {
            assert!(!flagged(&sealed), "bit {bit} flipped and still verified");
            assert_eq!(body.len(), sealed.len());
        }
        Err(e) => assert_eq!(e, Error::BadChecksum, "bit {bit}"),
    }
});
