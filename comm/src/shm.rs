//! Shared-memory rings between ranks on one host.
//!
//! Contract: every rank creates one POSIX shared-memory file holding one inbound [`Ring`] per
//! same-host peer (it is the consumer of each); the peers map it and produce into their ring.
//! A ring is single-producer single-consumer: `head` (written only by the producer) and `tail`
//! (written only by the consumer) count slots, each on its own cache line; a slot is published
//! with a release store of `head` after its bytes are written and released with a release
//! store of `tail` after its bytes were read, so neither side ever reads a slot the other is
//! writing. Each slot carries a header (tag, length) that the consumer checks against what the
//! schedule says it expects, so ranks that disagree get an error instead of wrong data. The
//! file is unlinked once every peer has mapped it (nothing is left in `/dev/shm`).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::CommError;

/// Slots per ring.
pub(crate) const SLOTS: usize = 8;
/// Payload bytes per slot (a multiple of every element size and of 64).
pub(crate) const SLOT_BYTES: usize = 128 << 10;
/// Bytes before the first slot: `head` and `tail` on separate cache lines.
const RING_HEADER: usize = 256;
/// Bytes of a slot's header (tag, length), padded to a cache line.
const SLOT_HEADER: usize = 64;
const SLOT_STRIDE: usize = SLOT_HEADER + SLOT_BYTES;
/// Bytes of one ring.
pub(crate) const RING_BYTES: usize = RING_HEADER + SLOTS * SLOT_STRIDE;

/// A mapped shared-memory file.
#[derive(Debug)]
pub(crate) struct Segment {
    ptr: NonNull<u8>,
    len: usize,
    path: Option<String>,
}

// SAFETY: the mapping is plain shared memory; all concurrent access goes through `Ring`'s
// protocol (atomics for the indices, slot ownership for the payload).
unsafe impl Send for Segment {}
// SAFETY: as above.
unsafe impl Sync for Segment {}

impl Segment {
    /// Creates `path` with room for `rings` rings and maps it.
    pub(crate) fn create(path: &str, rings: usize) -> Result<Segment, CommError> {
        let len = rings.max(1) * RING_BYTES;
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| CommError::Shm(format!("creating {path}: {e}")))?;
        // Allocate the pages now: on a full tmpfs this fails cleanly here, where a sparse file
        // would fail later with SIGBUS on first touch.
        // SAFETY: plain syscall on a descriptor we own.
        let rc = unsafe { libc::posix_fallocate(f.as_raw_fd(), 0, len as libc::off_t) };
        if rc != 0 {
            let _ = std::fs::remove_file(path);
            return Err(CommError::Shm(format!(
                "allocating {len} bytes for {path}: {}",
                std::io::Error::from_raw_os_error(rc)
            )));
        }
        let mut s = map(&f, len, path)?;
        s.path = Some(path.to_string());
        Ok(s)
    }

    /// Maps an existing segment made by [`Segment::create`] for `rings` rings.
    pub(crate) fn open(path: &str, rings: usize) -> Result<Segment, CommError> {
        let len = rings.max(1) * RING_BYTES;
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| CommError::Shm(format!("opening {path}: {e}")))?;
        let have = f
            .metadata()
            .map_err(|e| CommError::Shm(format!("{path}: {e}")))?
            .len();
        if have < len as u64 {
            return Err(CommError::Shm(format!(
                "{path} has {have} bytes, expected {len}"
            )));
        }
        map(&f, len, path)
    }

    /// Removes the file (the mappings stay valid).
    pub(crate) fn unlink(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Ring `i` of this segment.
    pub(crate) fn ring(&self, i: usize) -> Option<Ring> {
        let off = i.checked_mul(RING_BYTES)?;
        if off.checked_add(RING_BYTES)? > self.len {
            return None;
        }
        // SAFETY: in bounds of the mapping, which lives as long as the segment; the ring keeps
        // no reference to the segment, so the plane keeps the segment alive (see net.rs).
        let base = unsafe { NonNull::new_unchecked(self.ptr.as_ptr().add(off)) };
        Some(Ring { base })
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        self.unlink();
        // SAFETY: unmapping the mapping made in `map` with the same length.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

fn map(f: &File, len: usize, path: &str) -> Result<Segment, CommError> {
    // SAFETY: a fresh shared mapping of a file we hold open; checked for MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(CommError::Shm(format!(
            "mmap of {path}: {}",
            std::io::Error::last_os_error()
        )));
    }
    let ptr = NonNull::new(p.cast::<u8>())
        .ok_or_else(|| CommError::Shm(format!("mmap of {path} returned null")))?;
    Ok(Segment {
        ptr,
        len,
        path: None,
    })
}

/// One direction of one pair: a view into a [`Segment`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ring {
    base: NonNull<u8>,
}

// SAFETY: see `Segment`.
unsafe impl Send for Ring {}

impl Ring {
    fn head(&self) -> &AtomicU64 {
        // SAFETY: offset 0 of the ring, 8-aligned (mappings are page-aligned), inside it.
        unsafe { &*self.base.as_ptr().cast::<AtomicU64>() }
    }

    fn tail(&self) -> &AtomicU64 {
        // SAFETY: offset 128 of the ring, as above.
        unsafe { &*self.base.as_ptr().add(128).cast::<AtomicU64>() }
    }

    fn slot(&self, n: u64) -> *mut u8 {
        let i = (n % SLOTS as u64) as usize;
        // SAFETY: slot `i < SLOTS` lies inside the ring.
        unsafe { self.base.as_ptr().add(RING_HEADER + i * SLOT_STRIDE) }
    }

    /// Producer: writes one message of `data.len() <= SLOT_BYTES` bytes tagged `tag` when a
    /// slot is free; returns whether it did.
    ///
    /// # Safety
    /// Only one producer per ring, and `data` must not alias the ring.
    pub(crate) unsafe fn try_push(&self, tag: u64, data: &[u8]) -> bool {
        let head = self.head().load(Ordering::Relaxed);
        let tail = self.tail().load(Ordering::Acquire);
        if head.wrapping_sub(tail) >= SLOTS as u64 || data.len() > SLOT_BYTES {
            return false;
        }
        let s = self.slot(head);
        // SAFETY: the slot is free (head - tail < SLOTS) and owned by the producer until the
        // release store below; the header and payload lie inside it.
        unsafe {
            s.cast::<u64>().write(tag);
            s.add(8).cast::<u64>().write(data.len() as u64);
            std::ptr::copy_nonoverlapping(data.as_ptr(), s.add(SLOT_HEADER), data.len());
        }
        self.head().store(head.wrapping_add(1), Ordering::Release);
        true
    }

    /// Consumer: the oldest unread message as (tag, payload), if any. The payload stays valid
    /// until [`Ring::pop`].
    ///
    /// # Safety
    /// Only one consumer per ring; the returned slice must not be used after `pop`.
    pub(crate) unsafe fn peek(&self) -> Option<(u64, &[u8])> {
        let tail = self.tail().load(Ordering::Relaxed);
        let head = self.head().load(Ordering::Acquire);
        if head == tail {
            return None;
        }
        let s = self.slot(tail);
        // SAFETY: the slot was published by the producer's release store of `head`, which the
        // acquire load above observed; the consumer owns it until `pop`.
        unsafe {
            let tag = s.cast::<u64>().read();
            let len = (s.add(8).cast::<u64>().read() as usize).min(SLOT_BYTES);
            Some((tag, std::slice::from_raw_parts(s.add(SLOT_HEADER), len)))
        }
    }

    /// Consumer: releases the oldest message.
    pub(crate) fn pop(&self) {
        let tail = self.tail().load(Ordering::Relaxed);
        self.tail().store(tail.wrapping_add(1), Ordering::Release);
    }

    /// Whether the consumer has read everything.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.head().load(Ordering::Acquire) == self.tail().load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_passes_messages_in_order_and_refuses_when_full() {
        let path = format!("/dev/shm/weir-test-ring-{}", std::process::id());
        let seg = Segment::create(&path, 2).unwrap();
        let other = Segment::open(&path, 2).unwrap();
        let (p, c) = (seg.ring(1).unwrap(), other.ring(1).unwrap());
        assert!(seg.ring(2).is_none());
        for i in 0..SLOTS as u64 {
            // SAFETY: single producer and consumer in this test.
            assert!(unsafe { p.try_push(i, &[i as u8; 100]) });
        }
        // SAFETY: as above.
        assert!(!unsafe { p.try_push(99, &[0]) });
        for i in 0..SLOTS as u64 {
            // SAFETY: as above.
            let (tag, data) = unsafe { c.peek() }.unwrap();
            assert_eq!((tag, data.len(), data[0]), (i, 100, i as u8));
            c.pop();
        }
        assert!(c.is_empty());
        // SAFETY: as above.
        assert!(unsafe { c.peek() }.is_none());
        drop(seg);
        assert!(std::fs::metadata(&path).is_err(), "file unlinked on drop");
    }
}
