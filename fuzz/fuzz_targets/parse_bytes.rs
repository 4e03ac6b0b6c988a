//! `parse` in `PayloadMode::Bytes` on arbitrary input: never panics, and whatever parses
//! re-emits to the same header bytes and re-parses to the same header and payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_wire::{MAX_HEADER_LEN, PayloadMode, parse};

fuzz_target!(|data: &[u8]| check(data, PayloadMode::Bytes));

fn check(data: &[u8], mode: PayloadMode) {
    let Ok(p) = parse(data, mode) else { return };
    let mut out = [0u8; MAX_HEADER_LEN];
    let n = p.header.emit(&mut out).expect("a parsed header emits");
    assert_eq!(n, p.header_len);
    assert_eq!(n, p.header.len());
    assert_eq!(&out[..n], &data[..n], "encoding is canonical");
    let mut again = out[..n].to_vec();
    again.extend_from_slice(p.payload);
    let q = parse(&again, mode).expect("re-emitted packet parses");
    assert_eq!(q.header, p.header);
    assert_eq!(q.payload, p.payload);
}
