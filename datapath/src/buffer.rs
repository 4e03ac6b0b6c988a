//! Registered memory owned by a host: page-aligned, pre-touched, shareable.
//!
//! A [`Buffer`] is the memory behind a registered region. Its address never changes. The
//! engine thread reads and writes it while requests are outstanding, as a NIC's DMA engine
//! would; the application must not touch the bytes of an outstanding request (the same rule
//! as RDMA memory registration). Outside that, [`Buffer::write`] and [`Buffer::read`] copy in
//! and out with bounds checks.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::ptr::NonNull;
use std::sync::Arc;

const PAGE: usize = 4096;

/// Page-aligned memory with a stable address; clones share the same memory.
#[derive(Clone, Debug)]
pub struct Buffer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    ptr: NonNull<u8>,
    len: usize,
    layout: Layout,
}

// SAFETY: the memory is a plain heap allocation; concurrent access is governed by the
// completion protocol described in the module documentation.
unsafe impl Send for Inner {}
// SAFETY: as above.
unsafe impl Sync for Inner {}

impl Drop for Inner {
    fn drop(&mut self) {
        // SAFETY: allocated in `Buffer::new` with exactly this layout.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

impl Buffer {
    /// `len` zeroed bytes, every page touched once now (first-touch page faults cost 2–3 µs
    /// per 4 KiB on small VMs; pay them at setup, not in the data path).
    pub fn new(len: usize) -> std::io::Result<Buffer> {
        let size = len.max(1).next_multiple_of(PAGE);
        let layout = Layout::from_size_align(size, PAGE).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "buffer too large")
        })?;
        // SAFETY: non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(raw)
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::OutOfMemory))?;
        for off in (0..size).step_by(PAGE) {
            // SAFETY: within the allocation; a volatile write forces the page in.
            unsafe { ptr.as_ptr().add(off).write_volatile(0) };
        }
        Ok(Buffer {
            inner: Arc::new(Inner { ptr, len, layout }),
        })
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.inner.len
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.inner.len == 0
    }

    /// The start address.
    pub fn as_ptr(&self) -> *mut u8 {
        self.inner.ptr.as_ptr()
    }

    /// The start address, non-null.
    pub fn as_nonnull(&self) -> NonNull<u8> {
        self.inner.ptr
    }

    /// Copy `src` in at `offset`; false (copying nothing) when out of bounds.
    pub fn write(&self, offset: usize, src: &[u8]) -> bool {
        if offset
            .checked_add(src.len())
            .is_none_or(|end| end > self.len())
        {
            return false;
        }
        // SAFETY: bounds checked; see the module documentation for concurrency.
        unsafe { std::ptr::copy(src.as_ptr(), self.as_ptr().add(offset), src.len()) };
        true
    }

    /// Copy out to `dst` from `offset`; false (copying nothing) when out of bounds.
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> bool {
        if offset
            .checked_add(dst.len())
            .is_none_or(|end| end > self.len())
        {
            return false;
        }
        // SAFETY: bounds checked; see the module documentation for concurrency.
        unsafe { std::ptr::copy(self.as_ptr().add(offset), dst.as_mut_ptr(), dst.len()) };
        true
    }

    /// Set every byte to `value`.
    pub fn fill(&self, value: u8) {
        // SAFETY: whole allocation.
        unsafe { std::ptr::write_bytes(self.as_ptr(), value, self.len()) };
    }

    /// The bytes as a slice.
    ///
    /// # Safety
    /// No request that writes this memory (a receive, or a peer's write) may be outstanding
    /// while the slice lives.
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: forwarded contract; allocation valid for `len`.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_checked_copies() {
        let b = Buffer::new(10_000).unwrap_or_else(|e| unreachable!("{e}"));
        assert!(b.write(9_990, &[7; 10]));
        assert!(!b.write(9_991, &[7; 10]));
        let mut out = [0u8; 10];
        assert!(b.read(9_990, &mut out));
        assert_eq!(out, [7; 10]);
        assert!(!b.read(usize::MAX, &mut out));
        assert_eq!(b.as_ptr() as usize % PAGE, 0);
    }
}
