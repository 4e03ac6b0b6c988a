//! An x86-64 JIT for verified policy programs.
//!
//! Contract: [`compile`] turns bytecode that passed [`crate::verifier::verify`] into one native
//! function `extern "sysv64" fn(ctx: *mut u8, fault: *mut u64) -> u64` whose result, and whose
//! effect on the context, equal rbpf 0.4.1's interpreter bit for bit on every input:
//!
//! * 64-bit ALU results are the wrapping ones; 32-bit results are zero-extended; shift counts
//!   are masked (`& 63`, `& 31`); division by zero gives 0 and modulo by zero leaves the
//!   destination untouched (all 64 bits of it, for `mod32` too), as the interpreter does;
//!   division is unsigned, so `INT64_MIN / -1` cannot trap;
//! * 64-bit unsigned jumps compare against the immediate zero-extended, `jset` and the signed
//!   jumps against it sign-extended (the interpreter's choices); `jmp32` compares the low
//!   halves;
//! * `le16`/`le32` truncate, `be16`/`be32`/`be64` swap and zero-extend;
//! * `call 1` calls the same [`crate::program`] helper the interpreter registers;
//! * the 512-byte stack lives in the native frame and starts zeroed (the interpreter allocates
//!   a zeroed one per run; programs may read stack bytes they never wrote), at least as far
//!   down as the verifier saw the program reach.
//!
//! Memory accesses are emitted without bounds checks: the verifier proved that every access
//! stays inside the 936-byte context (writes only from offset 648) or the 512-byte stack, so
//! the native function is sound to call on a valid context exactly when the verifier is right.
//! The checked mode ([`Checks::Bounds`]) re-checks every access against exactly those bounds at
//! run time and reports a violation through `*fault` (the instruction index + 1) instead of
//! touching memory: a debug assertion of the verifier's claim, on by default in debug builds.
//!
//! Code memory is mapped read-write, filled, then switched to read-execute (never writable and
//! executable at once) and unmapped when the [`JitCode`] is dropped. Compiling never panics:
//! anything it cannot translate is a [`JitError`].
//!
//! Register mapping (the Linux kernel's, so helper arguments are already in place):
//! r0 rax, r1 rdi, r2 rsi, r3 rdx, r4 rcx, r5 r8, r6 rbx, r7 r13, r8 r14, r9 r15, r10 rbp;
//! r9–r11 of x86 are scratch. Callee-saved rbx, rbp, r13–r15 are saved in the prologue.

use std::fmt;
use std::io;

use crate::abi::{CONTEXT_SIZE, WRITABLE_START};
use crate::insn::*;

/// Bytes of eBPF stack below r10.
const STACK: i32 = 512;
/// Frame below the saved registers: the stack, then the fault pointer and the context pointer
/// (at r10 + 0 and r10 + 8, which no verified access reaches). A multiple of 16, so `rsp` is
/// 16-byte aligned at helper calls (5 pushes + the return address = 48 bytes).
const FRAME: i32 = STACK + 16;

/// A native helper: the eBPF arguments r1..r5 in the SysV argument registers.
pub(crate) type HelperFn = extern "sysv64" fn(u64, u64, u64, u64, u64) -> u64;

/// The compiled function's type.
type Entry = unsafe extern "sysv64" fn(*mut u8, *mut u64) -> u64;

/// Run-time checks compiled into the code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Checks {
    /// None: every access relies on the verifier's proof.
    None,
    /// Every access is checked against the verifier's bounds (context reads, writes from
    /// [`WRITABLE_START`], the stack); a violation ends the run as a fault.
    Bounds,
}

/// Why a program could not be compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct JitError(String);

impl fmt::Display for JitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: String) -> Result<T, JitError> {
    Err(JitError(msg))
}

/// Compiled code in its own read-execute mapping. See the module documentation.
pub(crate) struct JitCode {
    map: *mut libc::c_void,
    map_len: usize,
    entry: Entry,
    checks: Checks,
    code_len: usize,
}

// SAFETY: the mapping is read-execute and never written after `compile` returns; running the
// code touches only its own stack frame, the context passed in and the fault word, so any
// number of threads may share and run it. The pointer is owned (unmapped once, in `Drop`).
unsafe impl Send for JitCode {}
// SAFETY: see `Send`; all access after construction is read-only.
unsafe impl Sync for JitCode {}

impl Drop for JitCode {
    fn drop(&mut self) {
        // SAFETY: `map`/`map_len` are exactly the mapping `compile` created, unmapped only
        // here; no function pointer into it outlives `self` (`entry` is private and used only
        // through `&self`).
        unsafe {
            libc::munmap(self.map, self.map_len);
        }
    }
}

impl fmt::Debug for JitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JitCode")
            .field("bytes", &self.code_len)
            .field("checks", &self.checks)
            .finish()
    }
}

impl JitCode {
    /// Bytes of machine code.
    pub(crate) fn len(&self) -> usize {
        self.code_len
    }

    /// Runs the code on a context of [`CONTEXT_SIZE`] bytes.
    ///
    /// # Safety
    ///
    /// `ctx` must point to `CONTEXT_SIZE` bytes, valid for reads and writes and not accessed
    /// by anything else during the call; the bytecode must be the one the verifier accepted
    /// (guaranteed by [`crate::Program`], the only caller).
    pub(crate) unsafe fn run(&self, ctx: *mut u8) -> io::Result<u64> {
        let mut fault = 0u64;
        // SAFETY: the code was generated by `compile` from verified bytecode and follows the
        // SysV ABI (callee-saved registers restored, stack balanced and 16-byte aligned at
        // calls). Its memory accesses stay inside `ctx[..CONTEXT_SIZE]` (the caller's
        // guarantee) and its own frame, as the verifier proved; it writes `fault` only through
        // the pointer passed here, which lives for the call.
        let r0 = unsafe { (self.entry)(ctx, &mut fault) };
        if fault != 0 {
            return Err(io::Error::other(format!(
                "JIT bounds check: instruction {} accessed memory outside what the verifier \
                 proved (a verifier bug)",
                fault - 1
            )));
        }
        Ok(r0)
    }
}

// --- x86 registers -----------------------------------------------------------------------

const RAX: u8 = 0;
const RCX: u8 = 1;
const RDX: u8 = 2;
const RBX: u8 = 3;
const RSP: u8 = 4;
const RBP: u8 = 5;
const RSI: u8 = 6;
const RDI: u8 = 7;
const R8: u8 = 8;
const R9: u8 = 9;
const R10: u8 = 10;
const R11: u8 = 11;
const R13: u8 = 13;
const R14: u8 = 14;
const R15: u8 = 15;

/// eBPF register → x86 register.
const MAP: [u8; 11] = [RAX, RDI, RSI, RDX, RCX, R8, RBX, R13, R14, R15, RBP];

// Condition codes (the low nibble of `jcc`).
const CC_B: u8 = 0x2;
const CC_AE: u8 = 0x3;
const CC_E: u8 = 0x4;
const CC_NE: u8 = 0x5;
const CC_BE: u8 = 0x6;
const CC_A: u8 = 0x7;
const CC_L: u8 = 0xc;
const CC_GE: u8 = 0xd;
const CC_LE: u8 = 0xe;
const CC_G: u8 = 0xf;

/// Compiles verified bytecode. `stack_bytes` is the verifier's deepest stack use (the part
/// zeroed on entry); `helper` maps a call number to its native function.
pub(crate) fn compile(
    code: &[u8],
    stack_bytes: usize,
    helper: impl Fn(u32) -> Option<HelperFn>,
    checks: Checks,
) -> Result<JitCode, JitError> {
    let bytes = emit_program(code, stack_bytes, &helper, checks)?;
    map_executable(&bytes, checks)
}

/// Places machine code in a fresh read-execute mapping.
fn map_executable(bytes: &[u8], checks: Checks) -> Result<JitCode, JitError> {
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
        .ok()
        .filter(|&p| p > 0)
        .unwrap_or(4096);
    let map_len = bytes
        .len()
        .max(1)
        .checked_next_multiple_of(page)
        .ok_or_else(|| JitError("code too large".into()))?;
    // SAFETY: an anonymous private mapping at an address the kernel picks; no existing memory
    // is affected. The result is checked against MAP_FAILED.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            map_len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if map == libc::MAP_FAILED {
        return err(format!("mmap: {}", io::Error::last_os_error()));
    }
    // SAFETY: `map` is a fresh writable mapping of `map_len >= bytes.len()` bytes that nothing
    // else references; source and destination cannot overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), map.cast::<u8>(), bytes.len());
    }
    // SAFETY: changes the protection of our own mapping only: from here on it is never written.
    let rc = unsafe { libc::mprotect(map, map_len, libc::PROT_READ | libc::PROT_EXEC) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        // SAFETY: unmapping the mapping created above, which nothing references.
        unsafe {
            libc::munmap(map, map_len);
        }
        return err(format!("mprotect: {e}"));
    }
    // SAFETY: the mapping holds, at offset 0, a complete function with the `Entry` signature
    // and ABI (the prologue is emitted first); it is executable and stays mapped as long as
    // the `JitCode` that owns both.
    let entry = unsafe { std::mem::transmute::<*mut libc::c_void, Entry>(map) };
    Ok(JitCode {
        map,
        map_len,
        entry,
        checks,
        code_len: bytes.len(),
    })
}

/// A pending rel32 to patch: its position and the eBPF instruction (or `None`: the epilogue).
struct Fixup {
    at: usize,
    target: Option<usize>,
}

struct Asm {
    b: Vec<u8>,
    fixups: Vec<Fixup>,
}

impl Asm {
    fn byte(&mut self, x: u8) {
        self.b.push(x);
    }

    fn bytes(&mut self, x: &[u8]) {
        self.b.extend_from_slice(x);
    }

    fn imm32(&mut self, x: i32) {
        self.bytes(&x.to_le_bytes());
    }

    /// REX prefix (`force` emits one even when empty, for byte registers sil/dil/bpl).
    fn rex(&mut self, w: bool, reg: u8, rm: u8, force: bool) {
        let r = 0x40 | (u8::from(w) << 3) | ((reg >> 3) << 2) | (rm >> 3);
        if r != 0x40 || force {
            self.byte(r);
        }
    }

    fn modrm_rr(&mut self, reg: u8, rm: u8) {
        self.byte(0xc0 | ((reg & 7) << 3) | (rm & 7));
    }

    /// ModRM (+SIB) + displacement for `[base + disp]`; never mode 00, so rbp/r13 are fine.
    fn modrm_mem(&mut self, reg: u8, base: u8, disp: i32) {
        let short = i8::try_from(disp).is_ok();
        let md = if short { 0x40 } else { 0x80 };
        self.byte(md | ((reg & 7) << 3) | (base & 7));
        if base & 7 == RSP {
            self.byte(0x24);
        }
        if short {
            self.byte(disp as u8);
        } else {
            self.imm32(disp);
        }
    }

    /// `op rm, reg` with a one-byte opcode (add 01, or 09, and 21, sub 29, xor 31, cmp 39,
    /// mov 89, test 85).
    fn rr(&mut self, w: bool, op: u8, dst: u8, src: u8) {
        self.rex(w, src, dst, false);
        self.byte(op);
        self.modrm_rr(src, dst);
    }

    /// Group-1 operation with an immediate: `/ext` (add 0, or 1, and 4, sub 5, xor 6, cmp 7).
    fn ri(&mut self, w: bool, ext: u8, dst: u8, imm: i32) {
        self.rex(w, 0, dst, false);
        if let Ok(i) = i8::try_from(imm) {
            self.byte(0x83);
            self.modrm_rr(ext, dst);
            self.byte(i as u8);
        } else {
            self.byte(0x81);
            self.modrm_rr(ext, dst);
            self.imm32(imm);
        }
    }

    fn mov64(&mut self, dst: u8, src: u8) {
        if dst != src {
            self.rr(true, 0x89, dst, src);
        }
    }

    /// `mov r32, r32`: zero-extends (also when `dst == src`).
    fn mov32(&mut self, dst: u8, src: u8) {
        self.rr(false, 0x89, dst, src);
    }

    /// Loads a 64-bit constant in the shortest form.
    fn load_imm64(&mut self, dst: u8, v: u64) {
        if v == 0 {
            self.rr(false, 0x31, dst, dst); // xor r32, r32
        } else if let Ok(v32) = u32::try_from(v) {
            self.rex(false, 0, dst, false);
            self.byte(0xb8 + (dst & 7));
            self.bytes(&v32.to_le_bytes());
        } else if let Ok(s) = i32::try_from(v as i64) {
            self.rex(true, 0, dst, false);
            self.byte(0xc7);
            self.modrm_rr(0, dst);
            self.imm32(s);
        } else {
            self.rex(true, 0, dst, false);
            self.byte(0xb8 + (dst & 7));
            self.bytes(&v.to_le_bytes());
        }
    }

    /// Group-2 shift by an immediate (`/ext`: shl 4, shr 5, sar 7).
    fn shift_imm(&mut self, w: bool, ext: u8, dst: u8, n: u8) {
        self.rex(w, 0, dst, false);
        self.byte(0xc1);
        self.modrm_rr(ext, dst);
        self.byte(n);
    }

    /// Group-2 shift by `cl`.
    fn shift_cl(&mut self, w: bool, ext: u8, dst: u8) {
        self.rex(w, 0, dst, false);
        self.byte(0xd3);
        self.modrm_rr(ext, dst);
    }

    /// Group-3 unary (`/ext`: neg 3, div 6).
    fn unary(&mut self, w: bool, ext: u8, dst: u8) {
        self.rex(w, 0, dst, false);
        self.byte(0xf7);
        self.modrm_rr(ext, dst);
    }

    fn lea(&mut self, dst: u8, base: u8, disp: i32) {
        self.rex(true, dst, base, false);
        self.byte(0x8d);
        self.modrm_mem(dst, base, disp);
    }

    fn load(&mut self, size: u8, dst: u8, base: u8, disp: i32) {
        match size {
            1 => {
                self.rex(false, dst, base, false);
                self.bytes(&[0x0f, 0xb6]);
            }
            2 => {
                self.rex(false, dst, base, false);
                self.bytes(&[0x0f, 0xb7]);
            }
            4 => {
                self.rex(false, dst, base, false);
                self.byte(0x8b);
            }
            _ => {
                self.rex(true, dst, base, false);
                self.byte(0x8b);
            }
        }
        self.modrm_mem(dst, base, disp);
    }

    fn store_reg(&mut self, size: u8, base: u8, disp: i32, src: u8) {
        match size {
            1 => {
                self.rex(false, src, base, true);
                self.byte(0x88);
            }
            2 => {
                self.byte(0x66);
                self.rex(false, src, base, false);
                self.byte(0x89);
            }
            4 => {
                self.rex(false, src, base, false);
                self.byte(0x89);
            }
            _ => {
                self.rex(true, src, base, false);
                self.byte(0x89);
            }
        }
        self.modrm_mem(src, base, disp);
    }

    fn store_imm(&mut self, size: u8, base: u8, disp: i32, imm: i32) {
        match size {
            1 => {
                self.rex(false, 0, base, false);
                self.byte(0xc6);
                self.modrm_mem(0, base, disp);
                self.byte(imm as u8);
            }
            2 => {
                self.byte(0x66);
                self.rex(false, 0, base, false);
                self.byte(0xc7);
                self.modrm_mem(0, base, disp);
                self.bytes(&(imm as u16).to_le_bytes());
            }
            4 => {
                self.rex(false, 0, base, false);
                self.byte(0xc7);
                self.modrm_mem(0, base, disp);
                self.imm32(imm);
            }
            _ => {
                self.rex(true, 0, base, false);
                self.byte(0xc7);
                self.modrm_mem(0, base, disp);
                self.imm32(imm);
            }
        }
    }

    fn push(&mut self, r: u8) {
        self.rex(false, 0, r, false);
        self.byte(0x50 + (r & 7));
    }

    fn pop(&mut self, r: u8) {
        self.rex(false, 0, r, false);
        self.byte(0x58 + (r & 7));
    }

    /// `jcc rel32` to eBPF instruction `target` (`None`: the epilogue), patched at the end.
    fn jcc_to(&mut self, cc: u8, target: Option<usize>) {
        self.bytes(&[0x0f, 0x80 | cc]);
        self.fixups.push(Fixup {
            at: self.b.len(),
            target,
        });
        self.imm32(0);
    }

    fn jmp_to(&mut self, target: Option<usize>) {
        self.byte(0xe9);
        self.fixups.push(Fixup {
            at: self.b.len(),
            target,
        });
        self.imm32(0);
    }

    /// A forward `jcc rel32` within the current instruction; returns where to patch.
    fn jcc_local(&mut self, cc: u8) -> usize {
        self.bytes(&[0x0f, 0x80 | cc]);
        let at = self.b.len();
        self.imm32(0);
        at
    }

    fn jmp_local(&mut self) -> usize {
        self.byte(0xe9);
        let at = self.b.len();
        self.imm32(0);
        at
    }

    /// Points the local jump at `at` to the current position.
    fn land(&mut self, at: usize) -> Result<(), JitError> {
        let rel =
            i32::try_from(self.b.len() - (at + 4)).map_err(|_| JitError("jump too long".into()))?;
        self.b[at..at + 4].copy_from_slice(&rel.to_le_bytes());
        Ok(())
    }
}

fn emit_program(
    code: &[u8],
    stack_bytes: usize,
    helper: &impl Fn(u32) -> Option<HelperFn>,
    checks: Checks,
) -> Result<Vec<u8>, JitError> {
    if code.is_empty() || !code.len().is_multiple_of(8) {
        return err(format!("bytecode of {} bytes", code.len()));
    }
    let n = code.len() / 8;
    let insns: Vec<Insn> = (0..code.len() / 8).map(|i| Insn::decode(code, i)).collect();
    let mut a = Asm {
        b: Vec::with_capacity(64 + n * 16),
        fixups: Vec::new(),
    };

    // Prologue.
    for r in [RBP, RBX, R13, R14, R15] {
        a.push(r);
    }
    a.rex(true, 0, RSP, false);
    a.byte(0x81);
    a.modrm_rr(5, RSP); // sub rsp, FRAME
    a.imm32(FRAME);
    a.lea(RBP, RSP, STACK); // r10 = top of the stack
    if checks == Checks::Bounds {
        a.store_reg(8, RBP, 0, RSI); // the fault pointer
        a.store_reg(8, RBP, 8, RDI); // the context
    }
    // Zero the stack the program can reach (rax is r0, not yet initialised).
    let zeroed =
        i32::try_from(stack_bytes.min(STACK as usize).next_multiple_of(8)).unwrap_or(STACK);
    if zeroed > 0 {
        a.rr(false, 0x31, RAX, RAX);
        let mut k = 8;
        while k <= zeroed {
            a.store_reg(8, RBP, -k, RAX);
            k += 8;
        }
    }

    let mut offsets = vec![usize::MAX; n];
    let mut i = 0;
    while i < n {
        offsets[i] = a.b.len();
        let insn = insns[i];
        if insn.dst > 10 || insn.src > 10 {
            return err(format!("instruction {i}: invalid register"));
        }
        let dst = MAP[usize::from(insn.dst)];
        let src = MAP[usize::from(insn.src)];
        match insn.opc & 0x07 {
            CLS_LD => {
                let next = insns.get(i + 1).filter(|_| insn.opc == LD_DW_IMM);
                let Some(next) = next else {
                    return err(format!(
                        "instruction {i}: unsupported load {:#04x}",
                        insn.opc
                    ));
                };
                let v = (u64::from(next.imm as u32) << 32) | u64::from(insn.imm as u32);
                a.load_imm64(dst, v);
                i += 2;
                continue;
            }
            CLS_LDX | CLS_ST | CLS_STX => {
                if insn.opc & 0xe0 != MODE_MEM {
                    return err(format!(
                        "instruction {i}: unsupported mode {:#04x}",
                        insn.opc
                    ));
                }
                let size = match insn.opc & 0x18 {
                    0x00 => 4u8,
                    0x08 => 2,
                    0x10 => 1,
                    _ => 8,
                };
                let cls = insn.opc & 0x07;
                let base = if cls == CLS_LDX { src } else { dst };
                let disp = i32::from(insn.off);
                if checks == Checks::Bounds {
                    emit_bounds_check(&mut a, i, base, disp, size, cls != CLS_LDX)?;
                }
                // SAFETY (of the generated access): the verifier proved that `base + disp ..
                // + size` lies inside the context (inside its writable part for stores) or
                // inside the 512 bytes below r10, on every path (verifier.rs, contract item 5).
                match cls {
                    CLS_LDX => a.load(size, dst, base, disp),
                    CLS_ST => a.store_imm(size, base, disp, insn.imm),
                    _ => a.store_reg(size, base, disp, src),
                }
            }
            cls @ (CLS_ALU | CLS_ALU64) => emit_alu(&mut a, i, insn, cls == CLS_ALU64, dst, src)?,
            cls @ (CLS_JMP | CLS_JMP32) => {
                let jmp32 = cls == CLS_JMP32;
                let op = insn.opc & 0xf0;
                let target = || {
                    usize::try_from(i as i64 + 1 + i64::from(insn.off))
                        .ok()
                        .filter(|&t| t < n)
                        .ok_or_else(|| JitError(format!("instruction {i}: jump out of range")))
                };
                match op {
                    JA if !jmp32 => a.jmp_to(Some(target()?)),
                    EXIT if !jmp32 => a.jmp_to(None),
                    CALL if !jmp32 && insn.src == 0 => {
                        let Some(f) = helper(insn.imm as u32) else {
                            return err(format!("instruction {i}: unknown helper {}", insn.imm));
                        };
                        // Arguments r1..r5 are already rdi, rsi, rdx, rcx, r8; the result
                        // comes back in rax = r0. The caller-saved registers the call may
                        // clobber are r1..r5 (which the verifier marks uninitialised after a
                        // call) and the scratch registers; r6..r10 are callee-saved. rsp is
                        // 16-byte aligned here (see FRAME).
                        a.load_imm64(R11, f as usize as u64);
                        a.bytes(&[0x41, 0xff, 0xd3]); // call r11
                    }
                    JEQ | JGT | JGE | JSET | JNE | JSGT | JSGE | JLT | JLE | JSLT | JSLE => {
                        let t = target()?;
                        let w = !jmp32;
                        let reg = insn.opc & 0x08 != 0;
                        if op == JSET {
                            if reg {
                                a.rr(w, 0x85, dst, src);
                            } else {
                                // test r/m, imm32 (sign-extended in 64-bit: the interpreter's
                                // `imm as u64`).
                                a.rex(w, 0, dst, false);
                                a.byte(0xf7);
                                a.modrm_rr(0, dst);
                                a.imm32(insn.imm);
                            }
                        } else if reg {
                            a.rr(w, 0x39, dst, src);
                        } else {
                            let unsigned = matches!(op, JEQ | JNE | JGT | JGE | JLT | JLE);
                            if w && unsigned && insn.imm < 0 {
                                // The interpreter zero-extends the immediate here.
                                a.load_imm64(R11, u64::from(insn.imm as u32));
                                a.rr(true, 0x39, dst, R11);
                            } else {
                                a.ri(w, 7, dst, insn.imm);
                            }
                        }
                        let cc = match op {
                            JEQ => CC_E,
                            JNE | JSET => CC_NE,
                            JGT => CC_A,
                            JGE => CC_AE,
                            JLT => CC_B,
                            JLE => CC_BE,
                            JSGT => CC_G,
                            JSGE => CC_GE,
                            JSLT => CC_L,
                            _ => CC_LE,
                        };
                        a.jcc_to(cc, Some(t));
                    }
                    _ => {
                        return err(format!(
                            "instruction {i}: unsupported jump {:#04x}",
                            insn.opc
                        ));
                    }
                }
            }
            _ => return err(format!("instruction {i}: unknown opcode {:#04x}", insn.opc)),
        }
        i += 1;
    }

    // Epilogue: r0 is already in rax.
    let epilogue = a.b.len();
    a.lea(RSP, RBP, FRAME - STACK);
    for r in [R15, R14, R13, RBX, RBP] {
        a.pop(r);
    }
    a.byte(0xc3);

    for f in &a.fixups {
        let dest = match f.target {
            None => epilogue,
            Some(t) => offsets[t],
        };
        if dest == usize::MAX {
            return err(format!(
                "jump into the middle of instruction {}",
                f.target.unwrap_or(0)
            ));
        }
        let rel = i64::try_from(dest).unwrap_or(i64::MAX) - i64::try_from(f.at + 4).unwrap_or(0);
        let rel = i32::try_from(rel).map_err(|_| JitError("jump too long".into()))?;
        a.b[f.at..f.at + 4].copy_from_slice(&rel.to_le_bytes());
    }
    Ok(a.b)
}

/// Checked mode: faults unless `[base + disp, + size)` is inside the context (from
/// [`WRITABLE_START`] for stores) or the stack. Uses r10 and r11 (scratch).
fn emit_bounds_check(
    a: &mut Asm,
    i: usize,
    base: u8,
    disp: i32,
    size: u8,
    store: bool,
) -> Result<(), JitError> {
    let size = i32::from(size);
    let (lo, hi) = if store {
        (WRITABLE_START as i32, CONTEXT_SIZE as i32)
    } else {
        (0, CONTEXT_SIZE as i32)
    };
    a.lea(R11, base, disp); // the address
    // In the context: addr - (ctx + lo) <= hi - lo - size, unsigned.
    a.mov64(R10, R11);
    a.rex(true, R10, RBP, false);
    a.byte(0x2b);
    a.modrm_mem(R10, RBP, 8); // sub r10, [rbp+8] (the context)
    a.ri(true, 5, R10, lo);
    a.ri(true, 7, R10, hi - lo - size);
    let ok1 = a.jcc_local(CC_BE);
    // In the stack: addr - rsp <= STACK - size, unsigned (rsp = r10 - STACK).
    a.mov64(R10, R11);
    a.rex(true, RSP, R10, false);
    a.byte(0x29);
    a.modrm_rr(RSP, R10); // sub r10, rsp
    a.ri(true, 7, R10, STACK - size);
    let ok2 = a.jcc_local(CC_BE);
    // Fault: *fault = i + 1, r0 = 0, leave.
    let idx = i32::try_from(i + 1).map_err(|_| JitError("program too long".into()))?;
    a.load(8, R11, RBP, 0);
    a.store_imm(8, R11, 0, idx);
    a.rr(false, 0x31, RAX, RAX);
    a.jmp_to(None);
    a.land(ok1)?;
    a.land(ok2)?;
    Ok(())
}

fn emit_alu(a: &mut Asm, i: usize, insn: Insn, w: bool, dst: u8, src: u8) -> Result<(), JitError> {
    let op = insn.opc & 0xf0;
    let reg = insn.opc & 0x08 != 0;
    let imm = insn.imm;
    if insn.dst == 10 {
        return err(format!("instruction {i}: writes r10"));
    }
    match op {
        ADD | SUB | AND | OR | XOR => {
            let (opc, ext) = match op {
                ADD => (0x01, 0),
                SUB => (0x29, 5),
                AND => (0x21, 4),
                OR => (0x09, 1),
                _ => (0x31, 6),
            };
            if reg {
                a.rr(w, opc, dst, src);
            } else {
                // 64-bit: the immediate is sign-extended (the interpreter's `imm as u64`).
                a.ri(w, ext, dst, imm);
            }
        }
        MUL => {
            // The low half of the product is the same signed or unsigned.
            if reg {
                a.rex(w, dst, src, false);
                a.bytes(&[0x0f, 0xaf]);
                a.modrm_rr(dst, src);
            } else {
                a.rex(w, dst, dst, false);
                a.byte(0x69);
                a.modrm_rr(dst, dst);
                a.imm32(imm);
            }
        }
        MOV => {
            if reg {
                if w {
                    a.mov64(dst, src);
                } else {
                    a.mov32(dst, src);
                }
            } else if w {
                a.load_imm64(dst, imm as i64 as u64);
            } else {
                a.load_imm64(dst, u64::from(imm as u32));
            }
        }
        NEG => {
            if reg {
                return err(format!("instruction {i}: neg with a register source"));
            }
            a.unary(w, 3, dst);
        }
        LSH | RSH | ARSH => {
            let ext = match op {
                LSH => 4,
                RSH => 5,
                _ => 7,
            };
            let mask = if w { 63 } else { 31 };
            if !reg {
                let k = (imm as u32 & mask) as u8;
                if k != 0 {
                    a.shift_imm(w, ext, dst, k);
                } else if !w {
                    a.mov32(dst, dst); // a 32-bit shift by 0 still truncates
                }
            } else if dst != RCX {
                if src != RCX {
                    a.mov64(R10, RCX);
                    a.mov64(RCX, src);
                }
                a.shift_cl(w, ext, dst);
                if !w {
                    a.mov32(dst, dst); // explicit zero-extension, also for a count of 0
                }
                if src != RCX {
                    a.mov64(RCX, R10);
                }
            } else {
                // dst is rcx (r4): shift a copy.
                a.mov64(R9, RCX);
                a.mov64(RCX, src);
                a.shift_cl(w, ext, R9);
                if !w {
                    a.mov32(R9, R9);
                }
                a.mov64(RCX, R9);
            }
        }
        DIV | MOD => emit_divmod(a, op == DIV, w, reg, dst, src, imm)?,
        END => {
            if w {
                return err(format!("instruction {i}: 64-bit byte swap opcode"));
            }
            let be = reg;
            match (be, imm) {
                (false, 16) => {
                    // movzx r32, r16
                    a.rex(false, dst, dst, false);
                    a.bytes(&[0x0f, 0xb7]);
                    a.modrm_rr(dst, dst);
                }
                (false, 32) => a.mov32(dst, dst),
                (false, 64) => {}
                (true, 16) => {
                    a.rex(false, 0, dst, false);
                    a.bytes(&[0x0f, 0xc8 + (dst & 7)]); // bswap r32
                    a.shift_imm(false, 5, dst, 16);
                }
                (true, 32) => {
                    a.rex(false, 0, dst, false);
                    a.bytes(&[0x0f, 0xc8 + (dst & 7)]);
                }
                (true, 64) => {
                    a.rex(true, 0, dst, false);
                    a.bytes(&[0x0f, 0xc8 + (dst & 7)]);
                }
                _ => return err(format!("instruction {i}: byte swap of {imm} bits")),
            }
        }
        _ => {
            return err(format!(
                "instruction {i}: unknown ALU opcode {:#04x}",
                insn.opc
            ));
        }
    }
    Ok(())
}

/// Division and modulo as rbpf's interpreter defines them: unsigned; by zero, `div` gives 0
/// and `mod` leaves the destination as it is (all 64 bits). rax (r0) and rdx (r3) are saved in
/// r9/r10 around `div`.
fn emit_divmod(
    a: &mut Asm,
    div: bool,
    w: bool,
    reg: bool,
    dst: u8,
    src: u8,
    imm: i32,
) -> Result<(), JitError> {
    if !reg {
        if imm == 0 {
            if div {
                a.rr(false, 0x31, dst, dst);
            }
            return Ok(());
        }
        if w {
            a.load_imm64(R11, imm as i64 as u64);
        } else {
            a.load_imm64(R11, u64::from(imm as u32));
        }
    } else if w {
        a.mov64(R11, src);
    } else {
        a.mov32(R11, src);
    }
    let zero = if reg {
        a.rr(w, 0x85, R11, R11); // test
        Some(a.jcc_local(CC_E))
    } else {
        None
    };
    a.mov64(R9, RAX);
    a.mov64(R10, RDX);
    a.mov64(RAX, dst);
    a.rr(false, 0x31, RDX, RDX);
    a.unary(w, 6, R11); // div r11: rdx:rax / r11
    a.mov64(R11, if div { RAX } else { RDX });
    a.mov64(RAX, R9);
    a.mov64(RDX, R10);
    a.mov64(dst, R11);
    if let Some(zero) = zero {
        if div {
            let done = a.jmp_local();
            a.land(zero)?;
            a.rr(false, 0x31, dst, dst);
            a.land(done)?;
        } else {
            a.land(zero)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::Context;

    fn raw(opc: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = opc;
        b[1] = (src << 4) | dst;
        b[2..4].copy_from_slice(&off.to_le_bytes());
        b[4..8].copy_from_slice(&imm.to_le_bytes());
        b
    }

    fn code(insns: &[[u8; 8]]) -> Vec<u8> {
        insns.concat()
    }

    const EXIT: [u8; 8] = [0x95, 0, 0, 0, 0, 0, 0, 0];

    /// Runs unverified bytecode in checked mode: the bounds checks alone stand between it and
    /// memory it must not touch.
    fn run_checked(insns: &[[u8; 8]]) -> Result<u64, String> {
        let jit = compile(&code(insns), 512, |_| None, Checks::Bounds).expect("compiles");
        let mut ctx = Box::new(Context::zeroed());
        let before = ctx.state;
        // SAFETY: a valid, exclusively owned context; every access the code makes is checked
        // against the context and the stack first (Checks::Bounds).
        let r = unsafe { jit.run((&mut *ctx as *mut Context).cast()) };
        if r.is_err() {
            assert_eq!(ctx.state, before, "a faulting access must not write");
        }
        r.map_err(|e| e.to_string())
    }

    #[test]
    fn checked_mode_faults_exactly_outside_the_verifier_bounds() {
        let mov0 = raw(0xb7, 0, 0, 0, 7);
        // Loads: anywhere in the 936-byte context.
        assert_eq!(run_checked(&[mov0, raw(0x79, 0, 1, 928, 0), EXIT]), Ok(0));
        assert!(run_checked(&[mov0, raw(0x79, 0, 1, 929, 0), EXIT]).is_err());
        assert!(run_checked(&[mov0, raw(0x71, 0, 1, 936, 0), EXIT]).is_err());
        assert!(run_checked(&[mov0, raw(0x71, 0, 1, -1, 0), EXIT]).is_err());
        // Stores: only from offset 648.
        assert_eq!(run_checked(&[raw(0x72, 1, 0, 648, 1), mov0, EXIT]), Ok(7));
        assert_eq!(run_checked(&[raw(0x7a, 1, 0, 928, 1), mov0, EXIT]), Ok(7));
        let e = run_checked(&[mov0, raw(0x72, 1, 0, 647, 1), EXIT]).unwrap_err();
        assert!(e.contains("instruction 1"), "{e}");
        assert!(run_checked(&[raw(0x7a, 1, 0, 929, 1), mov0, EXIT]).is_err());
        // The stack: the 512 bytes below r10, nothing above (the frame's own slots).
        assert_eq!(run_checked(&[mov0, raw(0x79, 0, 10, -512, 0), EXIT]), Ok(0));
        assert_eq!(run_checked(&[mov0, raw(0x71, 0, 10, -1, 0), EXIT]), Ok(0));
        assert!(run_checked(&[mov0, raw(0x79, 0, 10, -513, 0), EXIT]).is_err());
        assert!(run_checked(&[mov0, raw(0x79, 0, 10, 0, 0), EXIT]).is_err());
        assert!(run_checked(&[mov0, raw(0x7b, 10, 0, -4, 0), EXIT]).is_err());
        // A pointer that is not one: r0 = 0.
        assert!(run_checked(&[mov0, raw(0xb7, 2, 0, 0, 0), raw(0x79, 0, 2, 0, 0), EXIT]).is_err());
    }

    #[test]
    fn unsupported_or_malformed_code_is_an_error_not_a_panic() {
        let helper = |_| None;
        assert!(compile(&[], 0, helper, Checks::None).is_err());
        assert!(compile(&[0; 7], 0, helper, Checks::None).is_err());
        // Jump past the end, unknown helper, lddw without its second half, atomic add.
        for bad in [
            code(&[raw(0x05, 0, 0, 5, 0), EXIT]),
            code(&[raw(0x85, 0, 0, 0, 9), EXIT]),
            code(&[raw(0x18, 0, 0, 0, 1)]),
            code(&[raw(0xdb, 1, 2, 0, 0), EXIT]),
            code(&[raw(0x8f, 0, 0, 0, 0), EXIT]),
            code(&[raw(0xd7, 0, 0, 0, 16), EXIT]),
            code(&[raw(0xb7, 11, 0, 0, 0), EXIT]),
        ] {
            assert!(
                compile(&bad, 0, helper, Checks::None).is_err(),
                "{bad:02x?}"
            );
        }
        // Arbitrary bytes never panic the compiler (they are not run).
        let mut seed = 0x1234_5678_9abc_def1_u64;
        for _ in 0..20_000 {
            let n = 1 + (seed % 24) as usize;
            let mut bytes = Vec::with_capacity(n * 8);
            for _ in 0..n * 8 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                bytes.push(seed as u8);
            }
            let _ = compile(&bytes, (seed % 600) as usize, helper, Checks::Bounds);
        }
    }
}
