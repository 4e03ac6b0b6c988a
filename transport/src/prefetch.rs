//! Cache prefetch hints (`Endpoint::prefetch_handle`): no effect on results.

/// Ask the CPU to bring the first `lines` cache lines of `r` (at most its size) closer.
#[inline(always)]
pub(crate) fn lines<T>(r: &T, lines: usize) {
    let base: *const u8 = (r as *const T).cast();
    for i in 0..core::mem::size_of::<T>().div_ceil(64).min(lines) {
        line(base.wrapping_add(i * 64));
    }
}

#[inline(always)]
fn line(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint: it never faults, whatever the address, and changes no
    // state the program can observe. SSE is part of the x86_64 baseline.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
