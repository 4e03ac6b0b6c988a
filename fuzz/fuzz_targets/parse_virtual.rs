//! `parse` in `PayloadMode::Virtual` (the simulator's header-only buffers) on arbitrary input:
//! never panics, and whatever parses re-emits to the same bytes and re-parses identically.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_wire::{MAX_HEADER_LEN, PayloadMode, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(p) = parse(data, PayloadMode::Virtual) else { return };
    assert!(p.payload.is_empty());
    assert_eq!(p.header_len, data.len());
    let mut out = [0u8; MAX_HEADER_LEN];
    let n = p.header.emit(&mut out).expect("a parsed header emits");
    assert_eq!(&out[..n], data, "encoding is canonical");
    let q = parse(&out[..n], PayloadMode::Virtual).expect("re-emitted packet parses");
    assert_eq!(q.header, p.header);
});
