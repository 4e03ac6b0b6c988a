//! `trim` on arbitrary input: never panics; it succeeds exactly on data packets that parse,
//! leaves the buffer untouched when it fails, and the trimmed header parses to the original
//! header with `TRIMMED` set.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_wire::{Flags, Opcode, PayloadMode, parse, trim};

fuzz_target!(|data: &[u8]| {
    let before = parse(data, PayloadMode::Bytes).map(|p| p.header);
    let mut buf = data.to_vec();
    match trim(&mut buf) {
        Ok(n) => {
            let h = before.expect("trim succeeds only on packets that parse");
            assert_eq!(h.common.opcode, Opcode::Data);
            assert_eq!(n, h.len());
            let t = parse(&buf[..n], PayloadMode::Bytes).expect("trimmed packet parses");
            let mut want = h;
            want.common.flags.set(Flags::TRIMMED, true);
            assert_eq!(t.header, want);
            assert!(t.payload.is_empty());
            assert_eq!(&buf[n..], &data[n..], "payload bytes untouched");
        }
        Err(_) => {
            assert!(before.is_err() || before.is_ok_and(|h| h.common.opcode != Opcode::Data));
            assert_eq!(buf, data, "untouched on error");
        }
    }
});
