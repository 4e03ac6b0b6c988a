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
}

impl Memory {
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

    /// Copy `src` into region `id` at `offset`. Returns false (copying nothing) when out of
    /// bounds or unknown; a virtual region accepts and discards.
    pub(crate) fn write(&self, id: RegionId, offset: u64, src: &[u8]) -> bool {
        let Some(r) = self.get(id) else { return false };
        let Some(end) = offset.checked_add(src.len() as u64) else {
            return false;
        };
        if end > r.len {
            return false;
        }
        if let Some(ptr) = r.ptr {
            // SAFETY: bounds checked; validity is the registrant's promise. `src` comes from a
            // datagram buffer, never from a registered region, so the ranges do not overlap.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    src.as_ptr(),
                    ptr.as_ptr().add(offset as usize),
                    src.len(),
                );
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_enforced() {
        let mut buf = [0u8; 16];
        let mut m = Memory::default();
        let id = m.insert(NonNull::new(buf.as_mut_ptr()), 16, 0);
        assert!(m.write(id, 8, &[1; 8]));
        assert!(!m.write(id, 9, &[1; 8]));
        assert!(!m.write(id, u64::MAX, &[1]));
        assert_eq!(m.bytes(id, 8, 8), Some(&[1u8; 8][..]));
        assert_eq!(m.bytes(id, 9, 8), None);
        let v = m.insert(None, 1 << 40, 0);
        assert!(m.write(v, 1 << 39, &[1; 4]));
        assert!(m.bytes(v, 0, 4).is_none());
        assert!(m.remove(id));
        assert!(!m.remove(id));
        assert!(m.get(id).is_none());
    }
}
