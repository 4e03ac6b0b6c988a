//! Weir's verifier for policy programs: what rbpf's own minimal checks leave out.
//!
//! Contract: [`verify`] accepts a program only if every execution of it, on any context,
//!
//! 1. is made of instructions rbpf's interpreter implements, with valid registers, and never
//!    writes r10 (the frame pointer);
//! 2. has no loop: the control-flow graph is acyclic (checked by depth-first search; a
//!    back-edge is refused, naming both instructions), so a run executes each instruction at
//!    most once and the instruction budget ([`VerifierConfig::max_insns`], at most
//!    [`HARD_MAX_INSNS`]) bounds its time;
//! 3. ends with `exit`: no path runs past the last instruction, and r0 is set at every `exit`;
//! 4. calls only the allowed helpers ([`HELPERS`]) and no BPF-to-BPF functions;
//! 5. touches memory only inside the context (reads anywhere in its [`CONTEXT_SIZE`] bytes,
//!    writes only to the outputs and the state, from [`WRITABLE_START`]) or the 512-byte stack
//!    below r10. This is proved statically: an abstract interpretation over the acyclic graph,
//!    in topological order, tracks every register and 8-byte stack slot as uninitialised, a
//!    scalar with an unsigned range, or a pointer into the context or stack with an offset
//!    range; conditional jumps narrow ranges (so `if (i < 8) ctx->hops[i]` verifies), join
//!    points take the union. An access whose bounds cannot be proved is refused;
//! 6. reads no uninitialised register;
//! 7. compares no 64-bit value against a negative immediate with an unsigned jump: rbpf's
//!    interpreter zero-extends that immediate where clang (and the kernel) sign-extend it, so
//!    such a program would not do what its source says.
//!
//! Every refusal is a [`VerifyError`] naming the instruction (index and disassembly) and the
//! reason. Item 5 is what makes the JIT (the default engine on x86-64 Linux) sound: its code
//! accesses memory without run-time checks, except in its checked mode (the default in debug
//! builds), which re-checks exactly these bounds; on the interpreter, rbpf's run-time memory
//! checks remain a second line of defence. Division by zero is defined (0, or the dividend
//! for modulo) and needs no check.
//!
//! The analysis merges paths at join points instead of exploring them separately (as the
//! kernel does), which keeps it linear in the program size; clang's code for restricted C
//! verifies, and where it does not, the error says which access could not be bounded.

use std::collections::HashMap;
use std::fmt;

use crate::abi::{CONTEXT_SIZE, WRITABLE_START};
use crate::insn::*;

/// Instruction budget when none is configured.
pub const DEFAULT_MAX_INSNS: usize = 16_384;
/// Largest budget accepted: rbpf computes jump targets in `i16`, so longer programs cannot run.
pub const HARD_MAX_INSNS: usize = 32_767;
/// Bytes of stack below r10.
pub const STACK_SIZE: i64 = 512;

/// A helper a program may call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Helper {
    /// Call number (`call N`).
    pub id: u32,
    /// Name in `weir_cc.h`.
    pub name: &'static str,
    /// Arguments it reads (r1 ..).
    pub args: u8,
}

/// The allowed helpers; any other `call` is refused.
pub const HELPERS: &[Helper] = &[Helper {
    id: 1,
    name: "weir_cc_muldiv",
    args: 3,
}];

/// Verifier settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifierConfig {
    /// Most instructions a program may have (clamped to [`HARD_MAX_INSNS`]). With no loops this
    /// also bounds the instructions one event executes.
    pub max_insns: usize,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        VerifierConfig {
            max_insns: DEFAULT_MAX_INSNS,
        }
    }
}

/// What verification learnt about an accepted program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Instruction slots (a 64-bit immediate load takes two).
    pub insns: usize,
    /// Most instructions one run can execute (the longest path through the program).
    pub longest_path: usize,
    /// Deepest stack byte used, in bytes below r10.
    pub stack_bytes: usize,
    /// Helpers the program calls, by number.
    pub helpers: Vec<u32>,
}

/// Why a program was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyError {
    /// The offending instruction's index, if one is to blame.
    pub insn: Option<usize>,
    /// Its disassembly.
    pub text: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.insn {
            Some(i) => write!(f, "instruction {i} (`{}`): {}", self.text, self.reason),
            None => write!(f, "{}", self.reason),
        }
    }
}

impl std::error::Error for VerifyError {}

/// Checks `code` (raw eBPF bytecode, 8 bytes per instruction). See the module documentation
/// for what is checked.
pub fn verify(code: &[u8], config: &VerifierConfig) -> Result<Report, VerifyError> {
    if code.is_empty() {
        return Err(whole("empty program"));
    }
    if !code.len().is_multiple_of(8) {
        return Err(whole(&format!(
            "program length {} is not a multiple of 8 bytes",
            code.len()
        )));
    }
    let n = code.len() / 8;
    let budget = config.max_insns.min(HARD_MAX_INSNS);
    if n > budget {
        return Err(whole(&format!(
            "program has {n} instructions, over the budget of {budget}"
        )));
    }
    let insns: Vec<Insn> = (0..n).map(|i| Insn::decode(code, i)).collect();
    let graph = Graph::build(&insns)?;
    let order = graph.topological(&insns)?;
    let mut longest = vec![0usize; n];
    let mut analysis = Analysis {
        insns: &insns,
        pending: HashMap::new(),
        stack_low: 0,
        helpers: Vec::new(),
    };
    analysis.pending.insert(0, State::entry());
    for &i in &order {
        let Some(state) = analysis.pending.remove(&i) else {
            continue; // unreachable (every path to it was infeasible)
        };
        let steps = longest[i] + 1;
        for (target, out) in analysis.step(i, state)? {
            longest[target] = longest[target].max(steps);
            analysis.merge_into(target, out);
        }
        longest[i] = steps;
    }
    let mut helpers = analysis.helpers;
    helpers.sort_unstable();
    helpers.dedup();
    Ok(Report {
        insns: n,
        longest_path: longest.iter().copied().max().unwrap_or(0),
        stack_bytes: usize::try_from(-analysis.stack_low).unwrap_or(0),
        helpers,
    })
}

/// The verifier in the form rbpf's verifier hook takes (a plain function, so with the hard
/// budget; the configured one is checked at load); every VM Weir builds runs it, so no program
/// reaches rbpf without passing it.
pub fn rbpf_hook(prog: &[u8]) -> Result<(), std::io::Error> {
    let config = VerifierConfig {
        max_insns: HARD_MAX_INSNS,
    };
    verify(prog, &config)
        .map(|_| ())
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// The control-flow graph: successors of each instruction.
struct Graph {
    succ: Vec<Vec<usize>>,
}

impl Graph {
    /// Checks each instruction on its own and collects the edges.
    fn build(insns: &[Insn]) -> Result<Graph, VerifyError> {
        let n = insns.len();
        let mut succ = vec![Vec::new(); n];
        let mut second_half = vec![false; n];
        let mut i = 0;
        while i < n {
            let insn = insns[i];
            let fail = |reason: String| Err(at(insns, i, &reason));
            if insn.dst > 10 || insn.src > 10 {
                return fail("invalid register number".into());
            }
            let mut next = i + 1;
            match insn.class() {
                CLS_LD => {
                    if insn.opc != LD_DW_IMM {
                        return fail(
                            "legacy packet loads (ld_abs/ld_ind) are not supported".into(),
                        );
                    }
                    if insn.src != 0 {
                        return fail(format!(
                            "64-bit immediate with source {} (a map or function reference): \
                             maps and global data are not supported",
                            insn.src
                        ));
                    }
                    let ok = insns
                        .get(i + 1)
                        .is_some_and(|h| h.opc == 0 && h.dst == 0 && h.src == 0 && h.off == 0);
                    if !ok {
                        return fail("incomplete 64-bit immediate load".into());
                    }
                    second_half[i + 1] = true;
                    next = i + 2;
                }
                CLS_LDX => {
                    if insn.opc & 0xe0 != MODE_MEM {
                        return fail("unsupported load mode".into());
                    }
                }
                CLS_ST | CLS_STX => {
                    if insn.opc & 0xe0 != MODE_MEM {
                        return fail("atomic and other non-plain stores are not supported".into());
                    }
                }
                CLS_ALU | CLS_ALU64 => {
                    if let Err(reason) = check_alu(insn) {
                        return fail(reason);
                    }
                }
                CLS_JMP | CLS_JMP32 => {
                    let op = insn.op();
                    let jmp32 = insn.class() == CLS_JMP32;
                    match op {
                        EXIT if !jmp32 && insn.opc == (CLS_JMP | EXIT) => {
                            next = usize::MAX;
                        }
                        CALL if !jmp32 && insn.opc == (CLS_JMP | CALL) => {
                            if insn.src == 1 {
                                return fail(
                                    "calls to BPF functions are not supported: mark the \
                                     function `static __always_inline`"
                                        .into(),
                                );
                            }
                            if insn.src != 0 {
                                return fail(format!("unsupported call kind {}", insn.src));
                            }
                            if !HELPERS.iter().any(|h| h.id == insn.imm as u32) {
                                let allowed: Vec<String> = HELPERS
                                    .iter()
                                    .map(|h| format!("{} ({})", h.name, h.id))
                                    .collect();
                                return fail(format!(
                                    "unknown helper {}: the allowed helpers are {}",
                                    insn.imm,
                                    allowed.join(", ")
                                ));
                            }
                        }
                        JA if !jmp32 && insn.opc == (CLS_JMP | JA) => {
                            next = usize::MAX;
                            succ[i].push(jump_target(insns, i)?);
                        }
                        JEQ | JGT | JGE | JSET | JNE | JSGT | JSGE | JLT | JLE | JSLT | JSLE => {
                            let unsigned = matches!(op, JEQ | JGT | JGE | JNE | JLT | JLE);
                            if !jmp32 && !insn.reg_src() && unsigned && insn.imm < 0 {
                                return fail(format!(
                                    "unsigned 64-bit comparison with the negative immediate \
                                     {}: rbpf zero-extends it where clang sign-extends it; \
                                     compare with a register instead (WEIR_CC_OPAQUE in \
                                     weir_cc.h)",
                                    insn.imm
                                ));
                            }
                            succ[i].push(jump_target(insns, i)?);
                        }
                        _ => return fail(format!("unknown jump opcode {:#04x}", insn.opc)),
                    }
                }
                _ => return fail(format!("unknown opcode {:#04x}", insn.opc)),
            }
            if next != usize::MAX {
                if next >= n {
                    return fail(
                        "execution runs past the last instruction: the program must end \
                         with `exit`"
                            .into(),
                    );
                }
                succ[i].push(next);
            }
            i = if insn.opc == LD_DW_IMM { i + 2 } else { i + 1 };
        }
        for (i, s) in succ.iter().enumerate() {
            if let Some(&t) = s.iter().find(|&&t| second_half[t]) {
                return Err(at(
                    insns,
                    i,
                    &format!(
                        "jumps into the middle of the 64-bit immediate load at {}",
                        t - 1
                    ),
                ));
            }
        }
        Ok(Graph { succ })
    }

    /// Instructions reachable from 0 in topological order; refuses any cycle.
    fn topological(&self, insns: &[Insn]) -> Result<Vec<usize>, VerifyError> {
        const WHITE: u8 = 0;
        const GREY: u8 = 1;
        const BLACK: u8 = 2;
        let mut colour = vec![WHITE; self.succ.len()];
        let mut post = Vec::with_capacity(self.succ.len());
        let mut stack = vec![(0usize, 0usize)];
        colour[0] = GREY;
        while let Some(top) = stack.last_mut() {
            let (node, next) = *top;
            if let Some(&t) = self.succ[node].get(next) {
                top.1 += 1;
                match colour[t] {
                    WHITE => {
                        colour[t] = GREY;
                        stack.push((t, 0));
                    }
                    GREY => {
                        return Err(at(
                            insns,
                            node,
                            &format!(
                                "loop: jumps back to instruction {t}; loops are not allowed \
                                 (unroll them: constant bounds and `#pragma unroll`)"
                            ),
                        ));
                    }
                    _ => {}
                }
            } else {
                colour[node] = BLACK;
                post.push(node);
                stack.pop();
            }
        }
        post.reverse();
        Ok(post)
    }
}

fn jump_target(insns: &[Insn], i: usize) -> Result<usize, VerifyError> {
    let t = i as i64 + 1 + i64::from(insns[i].off);
    usize::try_from(t)
        .ok()
        .filter(|&t| t < insns.len())
        .ok_or_else(|| at(insns, i, &format!("jumps to {t}, outside the program")))
}

/// Static checks of an ALU instruction.
fn check_alu(insn: Insn) -> Result<(), String> {
    let alu32 = insn.class() == CLS_ALU;
    match insn.op() {
        ADD | SUB | MUL | DIV | OR | AND | MOD | XOR | MOV => {}
        LSH | RSH | ARSH => {
            let width = if alu32 { 32 } else { 64 };
            if !insn.reg_src() && !(0..width).contains(&insn.imm) {
                return Err(format!("shift by {} bits", insn.imm));
            }
        }
        NEG if !insn.reg_src() => {}
        END if alu32 => {
            if !matches!(insn.imm, 16 | 32 | 64) {
                return Err(format!("byte swap of {} bits", insn.imm));
            }
        }
        _ => return Err(format!("unknown ALU opcode {:#04x}", insn.opc)),
    }
    if insn.dst == 10 {
        return Err("writes r10, the read-only frame pointer".into());
    }
    Ok(())
}

/// What a register or stack slot may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Val {
    Uninit,
    /// An integer in `[lo, hi]` (unsigned).
    Scalar(u64, u64),
    /// The context's address plus an offset in `[lo, hi]`.
    Ctx(i64, i64),
    /// r10 plus an offset in `[lo, hi]`.
    Stack(i64, i64),
}

const ANY: Val = Val::Scalar(0, u64::MAX);
const U32: Val = Val::Scalar(0, u32::MAX as u64);
/// Largest pointer offset tracked; beyond it a pointer is no longer usable.
const MAX_OFF: i64 = 1 << 30;

impl Val {
    fn konst(v: u64) -> Val {
        Val::Scalar(v, v)
    }

    fn join(self, other: Val) -> Val {
        use Val::*;
        match (self, other) {
            (Uninit, _) | (_, Uninit) => Uninit,
            (Scalar(a, b), Scalar(c, d)) => Scalar(a.min(c), b.max(d)),
            (Ctx(a, b), Ctx(c, d)) => Ctx(a.min(c), b.max(d)),
            (Stack(a, b), Stack(c, d)) => Stack(a.min(c), b.max(d)),
            _ => ANY, // a pointer on one path, something else on another: a number at best
        }
    }

    /// The value truncated to 32 bits (and zero-extended).
    fn low32(self) -> Val {
        match self {
            Val::Scalar(lo, hi) if hi <= u32::MAX as u64 => Val::Scalar(lo, hi),
            Val::Uninit => Val::Uninit,
            _ => U32,
        }
    }
}

/// Abstract machine state before an instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
struct State {
    regs: [Val; 11],
    /// 8-byte slots, slot `k` covering r10 − 512 + 8k .. + 8.
    stack: [Val; 64],
}

impl State {
    fn entry() -> State {
        let mut regs = [Val::Uninit; 11];
        regs[1] = Val::Ctx(0, 0);
        regs[10] = Val::Stack(0, 0);
        State {
            regs,
            stack: [Val::Uninit; 64],
        }
    }

    fn join(&mut self, other: &State) {
        for (a, b) in self.regs.iter_mut().zip(other.regs.iter()) {
            *a = a.join(*b);
        }
        for (a, b) in self.stack.iter_mut().zip(other.stack.iter()) {
            // An unwritten slot reads as an unknown number.
            let unknown = |v: Val| if v == Val::Uninit { ANY } else { v };
            *a = unknown(*a).join(unknown(*b));
        }
    }
}

struct Analysis<'a> {
    insns: &'a [Insn],
    /// Joined state flowing into instructions not yet analysed.
    pending: HashMap<usize, State>,
    /// Lowest stack offset touched.
    stack_low: i64,
    helpers: Vec<u32>,
}

impl Analysis<'_> {
    fn merge_into(&mut self, target: usize, state: State) {
        match self.pending.get_mut(&target) {
            Some(s) => s.join(&state),
            None => {
                self.pending.insert(target, state);
            }
        }
    }

    fn fail(&self, i: usize, reason: &str) -> VerifyError {
        at(self.insns, i, reason)
    }

    /// Reads register `r` as an operand.
    fn read(&self, i: usize, s: &State, r: u8) -> Result<Val, VerifyError> {
        match s.regs[usize::from(r)] {
            Val::Uninit => Err(self.fail(i, &format!("reads r{r}, which is uninitialised"))),
            v => Ok(v),
        }
    }

    /// Executes instruction `i` abstractly: the states flowing to its successors.
    fn step(&mut self, i: usize, mut s: State) -> Result<Vec<(usize, State)>, VerifyError> {
        let insn = self.insns[i];
        let d = usize::from(insn.dst);
        match insn.class() {
            CLS_LD => {
                let hi = u64::from(self.insns[i + 1].imm as u32);
                s.regs[d] = Val::konst((hi << 32) | u64::from(insn.imm as u32));
                self.no_r10(i, d)?;
                Ok(vec![(i + 2, s)])
            }
            CLS_LDX => {
                self.no_r10(i, d)?;
                let v = self.access(i, &mut s, insn.src, insn.off, insn.size(), None)?;
                s.regs[d] = v;
                Ok(vec![(i + 1, s)])
            }
            CLS_ST | CLS_STX => {
                let v = if insn.class() == CLS_ST {
                    Val::konst(insn.imm as i64 as u64)
                } else {
                    self.read(i, &s, insn.src)?
                };
                self.access(i, &mut s, insn.dst, insn.off, insn.size(), Some(v))?;
                Ok(vec![(i + 1, s)])
            }
            CLS_ALU | CLS_ALU64 => {
                let v = self.alu(i, &s, insn)?;
                s.regs[d] = v;
                Ok(vec![(i + 1, s)])
            }
            _ => self.jump(i, s, insn),
        }
    }

    fn no_r10(&self, i: usize, d: usize) -> Result<(), VerifyError> {
        if d == 10 {
            Err(self.fail(i, "writes r10, the read-only frame pointer"))
        } else {
            Ok(())
        }
    }

    /// A load (`store` = None) or store through register `base`; returns the loaded value.
    fn access(
        &mut self,
        i: usize,
        s: &mut State,
        base: u8,
        off: i16,
        size: i64,
        store: Option<Val>,
    ) -> Result<Val, VerifyError> {
        let verb = if store.is_some() { "writes" } else { "reads" };
        let off = i64::from(off);
        match self.read(i, s, base)? {
            Val::Ctx(lo, hi) => {
                let (start, end) = (lo + off, hi + off + size);
                if start < 0 || end > CONTEXT_SIZE as i64 {
                    return Err(self.fail(
                        i,
                        &format!(
                            "{verb} {size} bytes at context offset {}, outside the \
                             {CONTEXT_SIZE}-byte context",
                            if start < 0 { start } else { end - size }
                        ),
                    ));
                }
                if store.is_some() && start < WRITABLE_START as i64 {
                    return Err(self.fail(
                        i,
                        &format!(
                            "writes to context offset {start}, which is read-only: programs \
                             may write only the outputs and the state (offsets \
                             {WRITABLE_START}..{CONTEXT_SIZE})"
                        ),
                    ));
                }
                Ok(width(size))
            }
            Val::Stack(lo, hi) => {
                let (start, end) = (lo + off, hi + off + size);
                if start < -STACK_SIZE || end > 0 {
                    return Err(self.fail(
                        i,
                        &format!("{verb} {size} bytes at r10{start:+}, outside the 512-byte stack"),
                    ));
                }
                self.stack_low = self.stack_low.min(start);
                let first = usize::try_from((start + STACK_SIZE) / 8).unwrap_or(0);
                let last = usize::try_from((end - 1 + STACK_SIZE) / 8)
                    .unwrap_or(63)
                    .min(63);
                let exact = lo == hi && start % 8 == 0 && size == 8;
                match store {
                    Some(v) if exact => s.stack[first] = v,
                    Some(_) => s.stack[first..=last].fill(ANY),
                    None if exact => {
                        return Ok(match s.stack[first] {
                            Val::Uninit => ANY,
                            v => v,
                        });
                    }
                    None => {}
                }
                Ok(width(size))
            }
            _ => Err(self.fail(
                i,
                &format!(
                    "{verb} memory through r{base}, which is not a pointer into the context or \
                     the stack with a provable offset"
                ),
            )),
        }
    }

    fn alu(&self, i: usize, s: &State, insn: Insn) -> Result<Val, VerifyError> {
        let op = insn.op();
        let alu32 = insn.class() == CLS_ALU;
        let src = if insn.reg_src() && op != END {
            self.read(i, s, insn.src)?
        } else if alu32 {
            Val::konst(u64::from(insn.imm as u32))
        } else {
            Val::konst(insn.imm as i64 as u64)
        };
        if op == MOV {
            return Ok(if alu32 { src.low32() } else { src });
        }
        let dst = self.read(i, s, insn.dst)?;
        if op == END {
            // Byte swaps produce up to 64 bits whatever their class.
            return Ok(scalar_op(END, dst, Val::konst(0), insn, 64));
        }
        if alu32 {
            let r = scalar_op(op, dst.low32(), src.low32(), insn, 32);
            return Ok(r.low32());
        }
        // 64-bit pointer arithmetic: pointer ± bounded number.
        let imm = (!insn.reg_src()).then_some(i64::from(insn.imm));
        Ok(match (op, dst, src) {
            (ADD, Val::Ctx(a, b), n) => shift_ptr(Val::Ctx, a, b, n, imm, 1),
            (ADD, Val::Stack(a, b), n) => shift_ptr(Val::Stack, a, b, n, imm, 1),
            (ADD, n @ Val::Scalar(..), Val::Ctx(a, b)) => shift_ptr(Val::Ctx, a, b, n, None, 1),
            (ADD, n @ Val::Scalar(..), Val::Stack(a, b)) => shift_ptr(Val::Stack, a, b, n, None, 1),
            (SUB, Val::Ctx(a, b), n @ Val::Scalar(..)) => shift_ptr(Val::Ctx, a, b, n, imm, -1),
            (SUB, Val::Stack(a, b), n @ Val::Scalar(..)) => shift_ptr(Val::Stack, a, b, n, imm, -1),
            (_, Val::Scalar(..), Val::Scalar(..)) => scalar_op(op, dst, src, insn, 64),
            _ => ANY, // other arithmetic on pointers: only a number remains
        })
    }

    fn jump(
        &mut self,
        i: usize,
        mut s: State,
        insn: Insn,
    ) -> Result<Vec<(usize, State)>, VerifyError> {
        let op = insn.op();
        match op {
            EXIT => {
                self.read(i, &s, 0)?;
                return Ok(vec![]);
            }
            CALL => {
                let helper = HELPERS
                    .iter()
                    .find(|h| h.id == insn.imm as u32)
                    .ok_or_else(|| self.fail(i, "unknown helper"))?;
                for r in 1..=helper.args {
                    self.read(i, &s, r)?;
                }
                self.helpers.push(helper.id);
                s.regs[0] = ANY;
                for r in 1..=5 {
                    s.regs[r] = Val::Uninit;
                }
                return Ok(vec![(i + 1, s)]);
            }
            JA => {
                let t = (i as i64 + 1 + i64::from(insn.off)) as usize;
                return Ok(vec![(t, s)]);
            }
            _ => {}
        }
        let target = (i as i64 + 1 + i64::from(insn.off)) as usize;
        let jmp32 = insn.class() == CLS_JMP32;
        let dst = self.read(i, &s, insn.dst)?;
        let src = if insn.reg_src() {
            self.read(i, &s, insn.src)?
        } else if jmp32 {
            Val::konst(u64::from(insn.imm as u32))
        } else {
            Val::konst(insn.imm as i64 as u64)
        };
        // A 32-bit comparison says something about the registers only if they fit in 32 bits.
        let narrows = !jmp32 || (fits32(dst) && fits32(src));
        // Narrow the compared register(s) on each edge; an impossible edge carries nothing.
        let mut out = Vec::with_capacity(2);
        for taken in [true, false] {
            let next = if taken { target } else { i + 1 };
            let mut s2 = s.clone();
            if narrows {
                let (Some(nd), Some(ns)) = refine(op, dst, src, taken) else {
                    continue;
                };
                s2.regs[usize::from(insn.dst)] = nd;
                if insn.reg_src() {
                    s2.regs[usize::from(insn.src)] = ns;
                }
            }
            out.push((next, s2));
        }
        if out.is_empty() {
            // Both edges look impossible only when the analysis was too coarse; keep both.
            out.push((target, s.clone()));
            out.push((i + 1, s));
        }
        Ok(out)
    }
}

fn fits32(v: Val) -> bool {
    matches!(v, Val::Scalar(_, hi) if hi <= u32::MAX as u64)
}

/// The value range a load of `size` bytes gives.
fn width(size: i64) -> Val {
    match size {
        1 => Val::Scalar(0, 0xff),
        2 => Val::Scalar(0, 0xffff),
        4 => U32,
        _ => ANY,
    }
}

/// A pointer moved by `sign`·n, where n is the immediate or a bounded scalar.
fn shift_ptr(
    make: fn(i64, i64) -> Val,
    lo: i64,
    hi: i64,
    n: Val,
    imm: Option<i64>,
    sign: i64,
) -> Val {
    let (a, b) = match (imm, n) {
        (Some(k), _) => (k, k),
        (None, Val::Scalar(a, b)) if b <= MAX_OFF as u64 => (a as i64, b as i64),
        _ => return ANY,
    };
    let (a, b) = if sign > 0 { (a, b) } else { (-b, -a) };
    let (lo, hi) = (lo + a, hi + b);
    if lo.abs() > MAX_OFF || hi.abs() > MAX_OFF {
        ANY
    } else {
        make(lo, hi)
    }
}

/// Range arithmetic on numbers (`bits` = 32 or 64; 32-bit operands are already truncated).
fn scalar_op(op: u8, dst: Val, src: Val, insn: Insn, bits: u32) -> Val {
    let (Val::Scalar(a0, a1), Val::Scalar(b0, b1)) = (dst, src) else {
        return if bits == 32 { U32 } else { ANY };
    };
    let top = if bits == 32 {
        u32::MAX as u64
    } else {
        u64::MAX
    };
    let any = Val::Scalar(0, top);
    // 64-bit immediates are sign-extended; a negative one adds or subtracts its magnitude.
    let neg_imm = bits == 64 && !insn.reg_src() && insn.imm < 0;
    let mag = u64::from(insn.imm.unsigned_abs());
    let r = match op {
        ADD if neg_imm => sub(a0, a1, mag, mag),
        SUB if neg_imm => add(a0, a1, mag, mag),
        ADD => add(a0, a1, b0, b1),
        SUB => sub(a0, a1, b0, b1),
        MUL => match (a0.checked_mul(b0), a1.checked_mul(b1)) {
            (Some(lo), Some(hi)) => Some((lo, hi)),
            _ => None,
        },
        // A divisor range reaching 0 can also give 0 (division by zero yields 0).
        DIV => Some(match a1.checked_div(b0) {
            Some(hi) => (a0 / b1, hi),
            None => (0, a1),
        }),
        MOD => Some((0, if b0 > 0 { a1.min(b1 - 1) } else { a1 })),
        AND => Some((0, a1.min(b1))),
        OR | XOR => Some((0, ones(a1.max(b1)))),
        LSH if b0 == b1 => {
            let k = (b0 % u64::from(bits)) as u32;
            (a1.leading_zeros() >= k + (64 - bits)).then(|| (a0 << k, a1 << k))
        }
        RSH if b0 == b1 => {
            let k = (b0 % u64::from(bits)) as u32;
            Some((a0 >> k, a1 >> k))
        }
        RSH => Some((0, a1)),
        ARSH if b0 == b1 && a1 <= top >> 1 => {
            let k = (b0 % u64::from(bits)) as u32;
            Some((a0 >> k, a1 >> k))
        }
        END => {
            let w = insn.imm as u32;
            let mask = if w >= 64 { u64::MAX } else { (1u64 << w) - 1 };
            if insn.reg_src() {
                Some((0, mask))
            } else {
                Some(if a1 <= mask { (a0, a1) } else { (0, mask) })
            }
        }
        _ => None, // NEG, shifts by unknown amounts
    };
    match r {
        Some((lo, hi)) if hi <= top => Val::Scalar(lo, hi),
        _ => any,
    }
}

fn add(a0: u64, a1: u64, b0: u64, b1: u64) -> Option<(u64, u64)> {
    Some((a0.checked_add(b0)?, a1.checked_add(b1)?))
}

fn sub(a0: u64, a1: u64, b0: u64, b1: u64) -> Option<(u64, u64)> {
    (a0 >= b1).then(|| (a0 - b1, a1 - b0))
}

/// All bits up to the highest set bit of `x`.
fn ones(x: u64) -> u64 {
    if x == 0 {
        0
    } else {
        u64::MAX >> x.leading_zeros()
    }
}

/// Narrows `dst op src` (and src) for the edge where the jump is `taken` or not; `None` for
/// an impossible edge. Only unsigned comparisons of numbers narrow; others pass unchanged.
fn refine(op: u8, dst: Val, src: Val, taken: bool) -> (Option<Val>, Option<Val>) {
    let (Val::Scalar(a0, a1), Val::Scalar(b0, b1)) = (dst, src) else {
        return (Some(dst), Some(src));
    };
    // Normalise to "dst REL src" holding on this edge.
    #[derive(Clone, Copy)]
    enum Rel {
        Eq,
        Ne,
        Gt,
        Ge,
        Lt,
        Le,
    }
    let rel = match (op, taken) {
        (JEQ, true) | (JNE, false) => Rel::Eq,
        (JEQ, false) | (JNE, true) => Rel::Ne,
        (JGT, true) | (JLE, false) => Rel::Gt,
        (JGE, true) | (JLT, false) => Rel::Ge,
        (JLT, true) | (JGE, false) => Rel::Lt,
        (JLE, true) | (JGT, false) => Rel::Le,
        _ => return (Some(dst), Some(src)),
    };
    let range = |lo: u64, hi: u64| (lo <= hi).then_some(Val::Scalar(lo, hi));
    match rel {
        Rel::Eq => {
            let (lo, hi) = (a0.max(b0), a1.min(b1));
            (range(lo, hi), range(lo, hi))
        }
        Rel::Ne => {
            // Only a constant on one side can cut an end off the other.
            let cut = |x0: u64, x1: u64, c: u64| {
                if x0 == x1 && x0 == c {
                    None
                } else if x0 == c {
                    range(x0 + 1, x1)
                } else if x1 == c {
                    range(x0, x1 - 1)
                } else {
                    range(x0, x1)
                }
            };
            let d = if b0 == b1 {
                cut(a0, a1, b0)
            } else {
                range(a0, a1)
            };
            let s = if a0 == a1 {
                cut(b0, b1, a0)
            } else {
                range(b0, b1)
            };
            (d, s)
        }
        // dst > src: dst >= b0 + 1, src <= a1 - 1.
        Rel::Gt => (
            b0.checked_add(1).and_then(|lo| range(a0.max(lo), a1)),
            a1.checked_sub(1).and_then(|hi| range(b0, b1.min(hi))),
        ),
        Rel::Ge => (range(a0.max(b0), a1), range(b0, b1.min(a1))),
        Rel::Lt => (
            b1.checked_sub(1).and_then(|hi| range(a0, a1.min(hi))),
            a0.checked_add(1).and_then(|lo| range(b0.max(lo), b1)),
        ),
        Rel::Le => (range(a0, a1.min(b1)), range(b0.max(a0), b1)),
    }
}

fn whole(reason: &str) -> VerifyError {
    VerifyError {
        insn: None,
        text: String::new(),
        reason: reason.to_string(),
    }
}

fn at(insns: &[Insn], i: usize, reason: &str) -> VerifyError {
    VerifyError {
        insn: Some(i),
        text: insns[i].text(insns.get(i + 1).copied()),
        reason: reason.to_string(),
    }
}
