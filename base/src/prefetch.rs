//! Cache prefetch hints: ask the CPU to bring memory closer before it is read. A hint never
//! faults and changes nothing a program can observe; the simulator and the transport use it
//! where the next accesses are known ahead (cold per-host state at thousands of hosts).

/// Prefetch the first `lines` cache lines of `r` (at most its size).
#[inline(always)]
pub fn lines<T>(r: &T, lines: usize) {
    let base: *const u8 = (r as *const T).cast();
    for i in 0..core::mem::size_of::<T>().div_ceil(64).min(lines) {
        line(base.wrapping_add(i * 64));
    }
}

/// Prefetch the cache line holding `p` (any address: a hint never dereferences it).
#[inline(always)]
pub fn line(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint: it never faults, whatever the address, and changes no
    // state the program can observe. SSE is part of the x86_64 baseline.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
