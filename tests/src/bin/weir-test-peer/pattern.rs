//! Message contents: every byte is a function of (seed, offset), so a byte that lands at the
//! wrong offset, in the wrong message or in the wrong direction is caught, not just a flipped one.

use weir_datapath::Buffer;

/// Bytes generated and checked per step (the buffers are only touched through copies).
const CHUNK: usize = 64 << 10;

/// The seed of message `index` sent by `role` ("a" or "b") of `len` bytes.
pub(crate) fn seed(role: &str, index: usize, len: u64) -> u64 {
    let r = role
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(131).wrapping_add(u64::from(b)));
    splitmix(r.rotate_left(40) ^ (index as u64).rotate_left(20) ^ len ^ 0x5745_4952)
}

/// Write `len` bytes of pattern `seed` at the start of `buf`.
pub(crate) fn fill(buf: &Buffer, seed: u64, len: usize) {
    let mut chunk = vec![0u8; CHUNK];
    let mut off = 0;
    while off < len {
        let n = CHUNK.min(len - off);
        generate(seed, off, &mut chunk[..n]);
        // In bounds: `len` never exceeds the buffer (checked by the caller's allocation).
        let written = buf.write(off, &chunk[..n]);
        debug_assert!(written);
        off += n;
    }
}

/// Check that `buf[..len]` holds pattern `seed` and `buf[len..len + slack]` still holds
/// `sentinel`; the first difference, described, otherwise.
pub(crate) fn verify(
    buf: &Buffer,
    seed: u64,
    len: usize,
    slack: usize,
    sentinel: u8,
) -> Result<(), String> {
    let mut want = vec![0u8; CHUNK];
    let mut got = vec![0u8; CHUNK];
    let mut off = 0;
    while off < len {
        let n = CHUNK.min(len - off);
        generate(seed, off, &mut want[..n]);
        if !buf.read(off, &mut got[..n]) {
            return Err(format!(
                "cannot read {n} bytes at {off} of a {} B buffer",
                buf.len()
            ));
        }
        if want[..n] != got[..n] {
            let first = (0..n).find(|&i| want[i] != got[i]).unwrap_or(0);
            let bad = (0..n).filter(|&i| want[i] != got[i]).count();
            return Err(format!(
                "content mismatch at byte {} of {len}: expected {:#04x}, got {:#04x} \
                 ({bad} bad bytes in the {n}-byte chunk at {off})",
                off + first,
                want[first],
                got[first],
            ));
        }
        off += n;
    }
    let mut tail = vec![0u8; slack];
    if !buf.read(len, &mut tail) {
        return Err(format!("cannot read the {slack} slack bytes after {len}"));
    }
    if let Some(i) = tail.iter().position(|&b| b != sentinel) {
        return Err(format!(
            "byte {} past the end of the {len}-byte message was overwritten ({:#04x})",
            len + i,
            tail[i]
        ));
    }
    Ok(())
}

/// Bytes `at..at + out.len()` of pattern `seed`: byte `o` is byte `o % 8` (little-endian) of
/// `splitmix(seed + o / 8)`. `at` is a multiple of 8 (every caller steps by [`CHUNK`]).
fn generate(seed: u64, at: usize, out: &mut [u8]) {
    debug_assert_eq!(at % 8, 0);
    let first = (at / 8) as u64;
    for (w, bytes) in out.chunks_mut(8).enumerate() {
        let word = splitmix(seed.wrapping_add(first + w as u64)).to_le_bytes();
        bytes.copy_from_slice(&word[..bytes.len()]);
    }
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
