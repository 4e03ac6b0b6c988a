//! Transparent huge pages for the simulator's heap: a performance hint, nothing observable.
//!
//! At thousands of hosts the simulation state (endpoints, connections, packets, queues) is
//! over a gigabyte of small heap allocations, and nearly every event touches a few of them
//! at random: with 4 KiB pages almost every such access also misses the TLB (under a
//! hypervisor a miss walks two page tables). Linux's transparent huge pages (2 MiB) cover it
//! with a few hundred TLB entries, but in the common `madvise` mode only ranges that ask for
//! them get them. The heap is the C allocator's, so [`HugePages::advise`] asks after the fact:
//! it marks every anonymous read-write mapping that can hold a huge page `MADV_HUGEPAGE` (new
//! faults there take huge pages) and `MADV_COLLAPSE`s it (pages already there are moved into
//! huge pages now, rather than by the kernel's background scan, minutes later). The heap grows
//! while the simulation runs and each extension is a new mapping, so the simulator checks
//! every few thousand events whether the heap's end moved ([`HugePages::poll`]) and advises
//! again; ranges already done are skipped. With glibc the heap grows in 64 MiB steps
//! ([`HugePages::new`]), so most of an extension is advised before it is first touched.
//! Allocator arenas of other threads (`weir sim sweep`) are advised at each workload start.
//!
//! Failures are ignored (an older kernel without `MADV_COLLAPSE`, THP disabled): the run is
//! only slower. The simulator's results do not depend on it.

/// The advice given so far.
#[derive(Debug, Default)]
pub(crate) struct HugePages {
    /// Ranges of the address space already advised, `[start, end)`.
    done: Vec<(usize, usize)>,
    /// The heap's end (the program break) at the last [`HugePages::poll`].
    brk: usize,
}

/// Huge page size (x86-64 and aarch64 with 4 KiB base pages).
#[cfg(target_os = "linux")]
const HUGE: usize = 2 << 20;

impl HugePages {
    /// Start advising: with glibc's allocator, let the heap grow 64 MiB past each request
    /// (`M_TOP_PAD`; the default is 128 KiB), so that [`HugePages::poll`] finds most of each
    /// extension still untouched and it is faulted in as huge pages directly, rather than as
    /// small pages that `MADV_COLLAPSE` then copies (at 8,192 hosts that copy was 3.5 s of
    /// system time). Untouched pages of the pad cost address space only.
    pub(crate) fn new() -> HugePages {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: `mallopt` only tunes the allocator; any value of `M_TOP_PAD` is valid.
        unsafe {
            libc::mallopt(libc::M_TOP_PAD, 64 << 20);
        }
        let mut h = HugePages::default();
        h.poll();
        h
    }

    /// [`HugePages::advise`] when the heap grew since the last call (a cheap check: the
    /// allocator's cached program break).
    pub(crate) fn poll(&mut self) {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: `sbrk(0)` reads the program break; it changes nothing.
            let brk = unsafe { libc::sbrk(0) } as usize;
            if brk != self.brk {
                self.brk = brk;
                self.advise();
            }
        }
    }

    /// Advise and collapse every anonymous read-write mapping not yet done (see the module
    /// documentation). A hint: nothing the simulation computes changes.
    pub(crate) fn advise(&mut self) {
        #[cfg(target_os = "linux")]
        {
            let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
                return;
            };
            for (start, end) in anonymous_rw(&maps) {
                // Whole huge pages inside the mapping.
                let (lo, hi) = (start.next_multiple_of(HUGE), end / HUGE * HUGE);
                if lo >= hi || self.done.iter().any(|&(a, b)| a <= lo && hi <= b) {
                    continue;
                }
                // SAFETY: `madvise` with these advice values changes how the kernel backs the
                // pages, never their contents; the range lies inside a mapping of this
                // process.
                unsafe {
                    let p = lo as *mut libc::c_void;
                    libc::madvise(p, hi - lo, libc::MADV_HUGEPAGE);
                    libc::madvise(p, hi - lo, libc::MADV_COLLAPSE);
                }
                self.done.retain(|&(a, b)| !(lo <= a && b <= hi));
                self.done.push((lo, hi));
            }
        }
    }
}

/// The private anonymous read-write mappings (the heap and allocator arenas) of a
/// `/proc/self/maps` text, as `[start, end)`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn anonymous_rw(maps: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    maps.lines().filter_map(|line| {
        let mut f = line.split_ascii_whitespace();
        let (range, perms) = (f.next()?, f.next()?);
        let (_offset, _dev, inode) = (f.next()?, f.next()?, f.next()?);
        let path = f.next();
        let anonymous = inode == "0" && path.is_none_or(|p| p == "[heap]");
        if !anonymous || !perms.starts_with("rw") || !perms.ends_with('p') {
            return None;
        }
        let (a, b) = range.split_once('-')?;
        Some((
            usize::from_str_radix(a, 16).ok()?,
            usize::from_str_radix(b, 16).ok()?,
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_heap_and_anonymous_mappings() {
        let maps = "\
55e0c6a00000-55e0c6b00000 r-xp 00000000 fd:01 1234 /usr/bin/weir
55e0c6b63000-55e0e9030000 rw-p 00000000 00:00 0 [heap]
7fb52c42c000-7fb52d62d000 rw-p 00000000 00:00 0
7fb52d62d000-7fb52d62e000 ---p 00000000 00:00 0
7fb52d700000-7fb52d800000 rw-s 00000000 00:01 77 /memfd:x (deleted)
7ffd1c000000-7ffd1c021000 rw-p 00000000 00:00 0 [stack]
";
        let got: Vec<_> = anonymous_rw(maps).collect();
        assert_eq!(
            got,
            [
                (0x55e0_c6b6_3000, 0x55e0_e903_0000),
                (0x7fb5_2c42_c000, 0x7fb5_2d62_d000)
            ]
        );
    }

    #[test]
    fn advising_twice_is_harmless() {
        let v = vec![7u8; 8 << 20];
        let mut h = HugePages::default();
        h.advise();
        h.advise();
        assert!(v.iter().all(|&b| b == 7));
    }
}
