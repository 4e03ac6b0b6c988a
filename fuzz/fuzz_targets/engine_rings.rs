//! The engine's descriptor parsers and rings on arbitrary input: `Sqe::decode` never panics
//! and whatever it accepts encodes back to exactly the input bytes (one meaning per
//! descriptor); `Cqe::decode` never panics and round-trips what it accepts; a consumer
//! attached to a ring whose shared indices hold arbitrary values reports `Corrupt` or pops
//! at most `capacity` slots, never reading outside the ring.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_firmware::ring::{self, Consumer, Producer, RingError};
use weir_firmware::{Cqe, DESC_LEN, Sqe};

fuzz_target!(|data: &[u8]| {
    let mut d = [0u8; DESC_LEN];
    let n = data.len().min(DESC_LEN);
    d[..n].copy_from_slice(&data[..n]);
    if let Ok(s) = Sqe::decode(&d) {
        assert_eq!(s.encode(), d, "{s:?}");
    }
    if let Some(c) = Cqe::decode(&d) {
        assert_eq!(Cqe::decode(&c.encode()), Some(c));
    }

    // A 4-slot ring whose tail and head words a hostile peer set to the input's values.
    if data.len() < 8 {
        return;
    }
    let cap = 4u32;
    let len = ring::layout_len(cap, DESC_LEN).expect("shape");
    let mut mem = vec![0u64; len / 8 + 8];
    let off = mem.as_ptr().align_offset(64) / 8;
    let base = std::ptr::NonNull::new(mem[off..].as_mut_ptr().cast::<u8>()).expect("non-null");
    // SAFETY: `mem` holds `len` bytes from `base`, 64-byte aligned, for this whole run.
    unsafe { ring::init(base, len, cap, DESC_LEN).expect("init") };
    let tail = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let head = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
    // SAFETY: the index words are inside the ring's header, aligned.
    unsafe {
        base.as_ptr().add(64).cast::<u32>().write(tail);
        base.as_ptr().add(128).cast::<u32>().write(head);
    }
    // SAFETY: as above.
    let attached = unsafe { Consumer::attach(base, len, cap, DESC_LEN) };
    let mut c = match attached {
        Ok(c) => c,
        Err(e) => panic!("attach must accept any indices: {e:?}"),
    };
    let mut out = [0u8; DESC_LEN];
    let mut popped = 0;
    loop {
        match c.pop(&mut out) {
            Ok(true) => popped += 1,
            Ok(false) => break,
            Err(RingError::Corrupt { .. }) => break,
            Err(e) => panic!("{e:?}"),
        }
        assert!(popped <= cap, "popped more than the ring holds");
    }
    // SAFETY: as above; a producer attaching to forged indices is refused or bounded.
    if let Ok(mut p) = unsafe { Producer::attach(base, len, cap, DESC_LEN) } {
        for _ in 0..=cap {
            if !matches!(p.push(&out), Ok(true)) {
                break;
            }
        }
    }
});
