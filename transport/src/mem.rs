//! Registered memory: the engine's view of buffers as (region, offset, length) descriptors.
//!
//! A region is either *real* (a pointer and a length that the registrant guarantees stay valid
//! until deregistration, as with RDMA memory registration) or *virtual* (a length only: the
//! simulator's mode, where no byte is ever read or written). Every access is bounds-checked
//! here, so no descriptor from the network can reach memory outside a region.

use alloc::vec::Vec;
use core::ptr::NonNull;

/// Identifies a registered region within one endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegionId(pub u32);

#[derive(Debug)]
pub(crate) struct Region {
    /// `None` for a virtual region.
    ptr: Option<NonNull<u8>>,
    len: u64,
    /// Key peers use to write into this region; 0 = not writable remotely.
    pub(crate) rkey: u32,
    generation: u32,
}

// SAFETY: a region is a raw (pointer, length) pair; the registrant promised (in
// `Endpoint::register`) that the memory stays valid and may be accessed from the thread that
// owns the endpoint. Synchronisation with the application is the completion protocol, as with
// RDMA memory registration.
unsafe impl Send for Region {}

/// The table of regions.
#[derive(Debug, Default)]
pub(crate) struct Memory {
    slots: Vec<Option<Region>>,
    free: Vec<u32>,
    /// Regions of this many bytes or more receive payload around the caches
    /// (`Config::stream_region_bytes`; 0: never).
    stream_from: u64,
}

impl Memory {
    /// An empty table whose regions of `bytes` or more receive payload around the caches
    /// ([`Memory::write`]; 0: none).
    pub(crate) fn streaming_from(bytes: u64) -> Memory {
        Memory {
            stream_from: bytes,
            ..Memory::default()
        }
    }

    /// Register; `ptr == None` makes a virtual region.
    pub(crate) fn insert(&mut self, ptr: Option<NonNull<u8>>, len: u64, rkey: u32) -> RegionId {
        let region = |generation| Region {
            ptr,
            len,
            rkey,
            generation,
        };
        if let Some(i) = self.free.pop() {
            let generation = self.slots[i as usize].as_ref().map_or(0, |r| r.generation);
            self.slots[i as usize] = Some(region(generation.wrapping_add(1)));
            RegionId(i)
        } else {
            self.slots.push(Some(region(0)));
            RegionId((self.slots.len() - 1) as u32)
        }
    }

    /// The slot the next `insert` will use.
    pub(crate) fn next_slot(&self) -> u32 {
        self.free.last().copied().unwrap_or(self.slots.len() as u32)
    }

    pub(crate) fn remove(&mut self, id: RegionId) -> bool {
        match self.slots.get_mut(id.0 as usize) {
            Some(slot @ Some(_)) => {
                *slot = None;
                self.free.push(id.0);
                true
            }
            _ => false,
        }
    }

    pub(crate) fn get(&self, id: RegionId) -> Option<&Region> {
        self.slots.get(id.0 as usize).and_then(|s| s.as_ref())
    }

    /// The region whose remote key is `rkey` (linear in the number of writable regions; the
    /// key embeds the slot index in its low 16 bits to make this a lookup).
    pub(crate) fn by_rkey(&self, rkey: u32) -> Option<(RegionId, &Region)> {
        if rkey == 0 {
            return None;
        }
        let i = (rkey & 0xffff) as usize;
        match self.slots.get(i) {
            Some(Some(r)) if r.rkey == rkey => Some((RegionId(i as u32), r)),
            _ => None,
        }
    }

    /// Whether `offset..offset+len` lies inside region `id`.
    pub(crate) fn check(&self, id: RegionId, offset: u64, len: u64) -> bool {
        self.get(id)
            .is_some_and(|r| offset.checked_add(len).is_some_and(|end| end <= r.len))
    }

    /// Whether `id` is a virtual region.
    pub(crate) fn is_virtual(&self, id: RegionId) -> bool {
        self.get(id).is_some_and(|r| r.ptr.is_none())
    }

    /// The bytes `offset..offset+len` of a real region; `None` when virtual, unknown or out of
    /// bounds.
    pub(crate) fn bytes(&self, id: RegionId, offset: u64, len: usize) -> Option<&[u8]> {
        let r = self.get(id)?;
        let ptr = r.ptr?;
        let end = offset.checked_add(len as u64)?;
        if end > r.len {
            return None;
        }
        // SAFETY: bounds checked above; validity is the registrant's promise (see `Region`).
        Some(unsafe { core::slice::from_raw_parts(ptr.as_ptr().add(offset as usize), len) })
    }

    /// Copy `src` into region `id` at `offset`. `None` (copying nothing) when out of bounds
    /// or unknown; otherwise whether the copy went past the caches. A virtual region accepts
    /// and discards.
    ///
    /// The choice is by region, not by message: into a region of `stream_from` bytes or more
    /// (`Config::stream_region_bytes`), a payload of [`STREAM_MIN_PAYLOAD`] bytes or more is
    /// written with x86-64 non-temporal stores (elsewhere: copied as always). Such a region
    /// is more than a core's caches hold, so the lines a payload lands on are mostly not
    /// cached, and a cached store would first read each of them from memory. Smaller regions
    /// keep cached copies, where an application that reads the data at once finds it. The
    /// streamed copy writes whole 64-byte lines past the caches and the partial lines at either
    /// end through them, and ends with a store fence: every byte is visible before anything
    /// this thread stores afterwards (the completion that hands the data to another thread),
    /// though within one copy the cached end lines may become visible before the rest.
    pub(crate) fn write(&self, id: RegionId, offset: u64, src: &[u8]) -> Option<bool> {
        let r = self.get(id)?;
        let end = offset.checked_add(src.len() as u64)?;
        if end > r.len {
            return None;
        }
        let Some(ptr) = r.ptr else {
            return Some(false);
        };
        let dst = ptr.as_ptr().wrapping_add(offset as usize);
        // SAFETY: bounds checked; validity is the registrant's promise. `src` comes from a
        // datagram buffer, never from a registered region, so the ranges do not overlap.
        unsafe {
            #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
            if self.stream_from > 0 && r.len >= self.stream_from && src.len() >= STREAM_MIN_PAYLOAD
            {
                stream_x86_64(dst, src);
                return Some(true);
            }
            core::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len());
        }
        Some(false)
    }
}

/// Shortest payload [`Memory::write`] streams (shorter ones are copied through the cache).
pub(crate) const STREAM_MIN_PAYLOAD: usize = 2048;

/// A streamed copy ([`Memory::write`]): a cached copy up to the first 64-byte (cache line)
/// boundary of `dst`, whole lines of streaming stores, a cached copy of the tail, a store
/// fence. SSE2 only, which every x86-64 CPU has.
///
/// # Safety
/// `dst..dst + src.len()` is writable and does not overlap `src`.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
unsafe fn stream_x86_64(dst: *mut u8, src: &[u8]) {
    use core::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
    let len = src.len();
    let head = dst.align_offset(64).min(len);
    // SAFETY: all offsets stay below `len`; `dst + head` is 64-byte aligned, so every
    // 16-byte store is aligned as `_mm_stream_si128` requires; unaligned loads from `src`.
    unsafe {
        core::ptr::copy_nonoverlapping(src.as_ptr(), dst, head);
        let mut i = head;
        while i + 64 <= len {
            let s = src.as_ptr().add(i).cast::<__m128i>();
            let d = dst.add(i).cast::<__m128i>();
            let (a, b, c, e) = (
                _mm_loadu_si128(s),
                _mm_loadu_si128(s.add(1)),
                _mm_loadu_si128(s.add(2)),
                _mm_loadu_si128(s.add(3)),
            );
            _mm_stream_si128(d, a);
            _mm_stream_si128(d.add(1), b);
            _mm_stream_si128(d.add(2), c);
            _mm_stream_si128(d.add(3), e);
            i += 64;
        }
        core::ptr::copy_nonoverlapping(src.as_ptr().add(i), dst.add(i), len - i);
        _mm_sfence();
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec;
    use alloc::vec::Vec;

    use super::*;

    #[test]
    fn bounds_are_enforced() {
        let mut buf = [0u8; 16];
        let mut m = Memory::default();
        let id = m.insert(NonNull::new(buf.as_mut_ptr()), 16, 0);
        assert_eq!(m.write(id, 8, &[1; 8]), Some(false));
        assert_eq!(m.write(id, 9, &[1; 8]), None);
        assert_eq!(m.write(id, u64::MAX, &[1]), None);
        assert_eq!(m.bytes(id, 8, 8), Some(&[1u8; 8][..]));
        assert_eq!(m.bytes(id, 9, 8), None);
        let v = m.insert(None, 1 << 40, 0);
        assert_eq!(m.write(v, 1 << 39, &[1; 4]), Some(false));
        assert!(m.bytes(v, 0, 4).is_none());
        assert!(m.remove(id));
        assert!(!m.remove(id));
        assert!(m.get(id).is_none());
    }

    /// Payloads streamed past the caches (into a region at least `stream_from` long) land
    /// exactly where copied ones do, at every destination offset within a cache line, several
    /// source offsets and lengths around the 64-byte blocks, nothing around them touched; and
    /// `write` says which way it copied.
    #[test]
    fn streamed_placement_is_exact() {
        let src: Vec<u8> = (0..9000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut buf = vec![0xeeu8; 10_000];
        let len = buf.len();
        let base = buf.as_mut_ptr();
        for stream_from in [0, 1, len as u64, len as u64 + 1] {
            let mut m = Memory::streaming_from(stream_from);
            let id = m.insert(NonNull::new(base), len as u64, 0);
            // Every offset within a cache line (the buffer itself is at least 16-aligned).
            for dst_off in (0usize..64).chain([100, 129]) {
                for src_off in [0usize, 1, 5, 16] {
                    for n in [
                        STREAM_MIN_PAYLOAD - 1,
                        STREAM_MIN_PAYLOAD,
                        STREAM_MIN_PAYLOAD + 1,
                        4096 + 63,
                        8192,
                        8192 + 17,
                    ] {
                        let payload = &src[src_off..src_off + n];
                        // SAFETY: `base` is `buf`'s; each slice made from it is gone before
                        // the next access through `base`.
                        unsafe { core::slice::from_raw_parts_mut(base, len) }.fill(0xee);
                        let streamed = m.write(id, dst_off as u64, payload);
                        let expect = cfg!(all(target_arch = "x86_64", target_feature = "sse2"))
                            && stream_from > 0
                            && stream_from <= len as u64
                            && n >= STREAM_MIN_PAYLOAD;
                        assert_eq!(streamed, Some(expect), "{stream_from} {n}");
                        // SAFETY: as above; made after the write.
                        let all = unsafe { core::slice::from_raw_parts(base, len) };
                        assert_eq!(
                            &all[dst_off..dst_off + n],
                            payload,
                            "{dst_off} {src_off} {n}"
                        );
                        assert!(all[..dst_off].iter().all(|&b| b == 0xee));
                        assert!(all[dst_off + n..].iter().all(|&b| b == 0xee));
                    }
                }
            }
            // Out of bounds is refused before any store, streamed or not.
            assert_eq!(
                m.write(id, (len - 100) as u64, &src[..STREAM_MIN_PAYLOAD]),
                None
            );
        }
    }
}
