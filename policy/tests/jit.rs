//! The JIT computes what rbpf's interpreter computes, bit for bit: return value, every context
//! byte and fault behaviour, on (1) the shipped example programs over long seeded random
//! context sequences, (2) random verified programs on random contexts, and (3) per-instruction
//! edge cases with known answers (INT64_MIN / -1, division and modulo by zero, shifts by at
//! least the width, 32-bit wraparound, byte swaps, signed and unsigned, 64- and 32-bit jumps,
//! the helper, the stack starting zeroed).
#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

#[macro_use]
mod common;

use common::Rng;

use weir_policy::abi::{CONTEXT_SIZE, Context, MAX_HOPS, WRITABLE_START, event};
use weir_policy::{Engine, Program, VerifierConfig};

const ENGINES: [Engine; 3] = [Engine::Interpreter, Engine::Jit, Engine::JitChecked];

/// This test's own draws on the shared SplitMix64 generator.
impl Rng {
    /// Values that break arithmetic, often.
    fn wild(&mut self) -> u64 {
        match self.below(12) {
            0 => 0,
            1 => u64::MAX,
            2 => 1 << 63,
            3 => u64::from(u32::MAX),
            4 => 1 << 31,
            5 => self.next() >> self.below(64),
            6 => self.below(64),
            _ => self.next(),
        }
    }

    fn wild_imm(&mut self) -> i32 {
        match self.below(10) {
            0 => 0,
            1 => -1,
            2 => i32::MIN,
            3 => i32::MAX,
            4 => 1,
            5 => self.below(70) as i32,
            _ => self.next() as i32,
        }
    }
}

fn to_bytes(c: &Context) -> [u8; CONTEXT_SIZE] {
    // SAFETY: `Context` is `repr(C)`, exactly CONTEXT_SIZE bytes with no implicit padding and
    // only integer fields (abi.rs asserts the layout), so its bytes are all initialised.
    unsafe { std::mem::transmute::<Context, [u8; CONTEXT_SIZE]>(*c) }
}

fn from_bytes(b: [u8; CONTEXT_SIZE]) -> Context {
    // SAFETY: as in `to_bytes`; every bit pattern is a valid value of each integer field.
    unsafe { std::mem::transmute::<[u8; CONTEXT_SIZE], Context>(b) }
}

/// Runs every engine's version of the program on the same context memory (so pointer values a
/// program leaks into its results are equal) and checks that they agree on everything.
fn agree(programs: &[Program], ctx: &mut Box<Context>, what: &dyn Fn() -> String) -> u64 {
    let start = **ctx;
    let mut first: Option<(Result<u64, String>, [u8; CONTEXT_SIZE])> = None;
    for p in programs {
        **ctx = start;
        let r = p.run(ctx).map_err(|e| e.to_string());
        let bytes = to_bytes(ctx);
        match &first {
            None => first = Some((r, bytes)),
            Some((r0, b0)) => {
                assert_eq!(
                    r0.is_ok(),
                    r.is_ok(),
                    "{:?} vs interpreter: fault behaviour differs ({r:?} vs {r0:?}); {}",
                    p.engine(),
                    what()
                );
                if r0.is_ok() {
                    assert_eq!(r0, &r, "{:?}: return value differs; {}", p.engine(), what());
                }
                if let Some(k) = (0..CONTEXT_SIZE).find(|&k| b0[k] != bytes[k]) {
                    panic!(
                        "{:?}: context byte {k} differs ({:#04x} vs {:#04x}); {}",
                        p.engine(),
                        bytes[k],
                        b0[k],
                        what()
                    );
                }
            }
        }
    }
    match first {
        Some((Ok(v), _)) => v,
        _ => u64::MAX,
    }
}

fn all_engines(p: &Program) -> Vec<Program> {
    ENGINES
        .iter()
        .map(|&e| {
            p.with_engine(e)
                .expect("every engine loads a verified program")
        })
        .collect()
}

// --- (1) the shipped examples -------------------------------------------------------------

/// A context for the next event: inputs random (often plausible, sometimes wild), outputs and
/// state carried over from the previous run.
fn next_event(rng: &mut Rng, ctx: &mut Context, defaults: &[u64], now: &mut u64) {
    let wild = |rng: &mut Rng, plausible: u64| {
        if rng.below(10) == 0 {
            rng.wild()
        } else {
            rng.below(plausible)
        }
    };
    ctx.abi_version = 1;
    ctx.event = match rng.below(20) {
        0 => event::INIT,
        1..=8 => event::SENT,
        9..=17 => event::FEEDBACK,
        _ => event::TIMEOUT,
    };
    *now = if rng.below(100) == 0 {
        now.saturating_sub(rng.below(10_000_000))
    } else {
        now.saturating_add(wild(rng, 2_000_000))
    };
    ctx.now_ps = *now;
    ctx.sent_bytes = wild(rng, 70_000);
    ctx.sent_in_flight = wild(rng, 1 << 24);
    ctx.sent_path = rng.below(8) as u16;
    ctx.sent_retransmit = rng.below(2) as u8;
    ctx.fb_acked_bytes = wild(rng, 70_000);
    ctx.fb_ecn_bytes = if rng.below(3) == 0 {
        wild(rng, 70_000)
    } else {
        0
    };
    ctx.fb_rtt_ps = wild(rng, 50_000_000);
    ctx.fb_host_delay_ps = wild(rng, 5_000_000);
    ctx.fb_lost_bytes = if rng.below(10) == 0 {
        wild(rng, 9000)
    } else {
        0
    };
    ctx.fb_in_flight = wild(rng, 1 << 24);
    ctx.fb_acked_packets = rng.below(20) as u32;
    ctx.fb_flags = rng.below(16) as u32;
    ctx.fb_path = rng.below(8) as u16;
    ctx.fb_loss = rng.below(5) as u8;
    ctx.fb_n_hops = rng.below(MAX_HOPS as u64 + 2) as u8;
    ctx.fb_hops_total = rng.below(10) as u32;
    for h in &mut ctx.hops {
        h.qlen = wild(rng, 1 << 20);
        h.rate_bps = wild(rng, 400_000_000_000);
        h.tx_bytes = rng.next();
        h.ts_ps = now.wrapping_sub(rng.below(1_000_000));
    }
    for (k, p) in ctx.params.iter_mut().enumerate() {
        *p = match defaults.get(k) {
            Some(&d) if rng.below(50) != 0 => d,
            _ => rng.wild(),
        };
    }
    ctx.n_params = defaults.len() as u32;
    if rng.below(200) == 0 {
        // A fresh flow now and then.
        ctx.state = [0; 256];
    }
}

fn examples_agree(name: &str, seeds: u64, events: usize) {
    let program = common::example(name);
    let programs = all_engines(&program);
    let defaults = program.param_defaults().to_vec();
    for seed in 0..seeds {
        let mut rng = Rng(seed ^ 0xe9a1);
        let mut ctx = Box::new(Context::zeroed());
        ctx.line_rate_bps = [100_000_000_000, 400_000_000_000, 1][rng.below(3) as usize];
        ctx.base_rtt_ps = rng.wild();
        ctx.mtu = [4096, 9000, 1][rng.below(3) as usize];
        ctx.paths = rng.below(9) as u16;
        let mut now = rng.below(1 << 40);
        for step in 0..events {
            next_event(&mut rng, &mut ctx, &defaults, &mut now);
            agree(&programs, &mut ctx, &|| {
                format!("{name} seed {seed} step {step}")
            });
        }
    }
}

#[test]
fn dcqcn_example_runs_identically_on_every_engine() {
    require_clang!();
    examples_agree("dcqcn", 60, 3_000);
}

#[test]
fn swift_example_runs_identically_on_every_engine() {
    require_clang!();
    examples_agree("swift", 60, 3_000);
}

#[test]
fn the_examples_are_compiled_to_native_code() {
    require_clang!();
    for name in ["dcqcn", "swift"] {
        let p = common::example(name).with_engine(Engine::Jit).unwrap();
        assert_eq!(p.engine(), Engine::Jit);
        assert!(p.native_code_len() > p.report().insns, "{name}: {p:?}");
        let i = p.with_engine(Engine::Interpreter).unwrap();
        assert_eq!(i.native_code_len(), 0);
        assert_eq!(i.param_defaults(), p.param_defaults());
        assert_eq!(i.param_names(), p.param_names());
    }
}

// --- (2) random verified programs ---------------------------------------------------------

fn raw(opc: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0] = opc;
    b[1] = (src << 4) | dst;
    b[2..4].copy_from_slice(&off.to_le_bytes());
    b[4..8].copy_from_slice(&imm.to_le_bytes());
    b
}

fn lddw(dst: u8, v: u64) -> Vec<[u8; 8]> {
    vec![
        raw(0x18, dst, 0, 0, v as u32 as i32),
        raw(0, 0, 0, 0, (v >> 32) as u32 as i32),
    ]
}

/// One generated item: instructions, or a conditional jump to a later item.
enum Item {
    Code(Vec<[u8; 8]>),
    Jump {
        opc: u8,
        dst: u8,
        src: u8,
        imm: i32,
        to: usize,
    },
}

/// Scalar registers of generated programs: r6 keeps the context, r1 is the context (until a
/// call), r10 is never copied (the stacks of the two engines live at different addresses).
const SCALARS: [u8; 8] = [0, 2, 3, 4, 5, 7, 8, 9];

fn random_program(rng: &mut Rng) -> Vec<u8> {
    let scalar = |rng: &mut Rng| SCALARS[rng.below(8) as usize];
    let size_code = |rng: &mut Rng| -> (u8, i64) {
        match rng.below(4) {
            0 => (0x10, 1),
            1 => (0x08, 2),
            2 => (0x00, 4),
            _ => (0x18, 8),
        }
    };
    let mut items = vec![Item::Code(vec![raw(0xbf, 6, 1, 0, 0)])]; // mov64 r6, r1
    for &r in &SCALARS {
        items.push(Item::Code(match rng.below(3) {
            0 => lddw(r, rng.wild()),
            1 => vec![raw(0x79, r, 1, (rng.below(117) * 8) as i16, 0)], // ldxdw r, [r1+k]
            _ => vec![raw(0xb7, r, 0, 0, rng.wild_imm())],
        }));
    }
    let len = 8 + rng.below(48) as usize;
    for _ in 0..len {
        let d = scalar(rng);
        let s = scalar(rng);
        let item = match rng.below(20) {
            0..=7 => {
                // ALU, 32 or 64 bits, register or immediate.
                let ops = [
                    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x90, 0xa0, 0xb0, 0xc0,
                ];
                let op = ops[rng.below(ops.len() as u64) as usize];
                let cls = if rng.below(2) == 0 { 0x04 } else { 0x07 };
                let shift = matches!(op, 0x60 | 0x70 | 0xc0);
                if rng.below(2) == 0 {
                    vec![raw(op | cls | 0x08, d, s, 0, 0)]
                } else if shift {
                    let width = if cls == 0x07 { 64 } else { 32 };
                    vec![raw(op | cls, d, 0, 0, rng.below(width) as i32)]
                } else {
                    vec![raw(op | cls, d, 0, 0, rng.wild_imm())]
                }
            }
            // neg; 64-bit only of odd values: rbpf's interpreter negates with `-(x as i64)`,
            // which panics on INT64_MIN where overflow checks are on (debug builds).
            8 if rng.below(2) == 0 => vec![raw(0x84, d, 0, 0, 0)],
            8 => vec![raw(0x47, d, 0, 0, 1), raw(0x87, d, 0, 0, 0)],
            9 => {
                let be = rng.below(2) == 0;
                let w = [16, 32, 64][rng.below(3) as usize];
                vec![raw(if be { 0xdc } else { 0xd4 }, d, 0, 0, w)]
            }
            10 => {
                let (sz, n) = size_code(rng);
                let off = rng.below(CONTEXT_SIZE as u64 - n as u64 + 1) as i16;
                vec![raw(0x61 | sz, d, 1, off, 0)] // ldx [r1+off]
            }
            11 => {
                let (sz, n) = size_code(rng);
                let span = (CONTEXT_SIZE - WRITABLE_START) as u64 - n as u64 + 1;
                let off = (WRITABLE_START as u64 + rng.below(span)) as i16;
                if rng.below(2) == 0 {
                    vec![raw(0x63 | sz, 1, s, off, 0)] // stx [r1+off], s
                } else {
                    vec![raw(0x62 | sz, 1, 0, off, rng.wild_imm())] // st [r1+off], imm
                }
            }
            12 | 13 => {
                let (sz, n) = size_code(rng);
                let off = -((n + rng.below(512 - n as u64 + 1) as i64) as i16);
                if rng.below(2) == 0 {
                    vec![raw(0x63 | sz, 10, s, off, 0)] // stx [r10-off], s
                } else {
                    vec![raw(0x61 | sz, d, 10, off, 0)] // ldx d, [r10-off]
                }
            }
            14 => {
                // A derived pointer: d = r1 + k, then a load through it.
                let k = rng.below(CONTEXT_SIZE as u64 - 8) as i32;
                let (sz, n) = size_code(rng);
                let off = rng.below((CONTEXT_SIZE as i64 - i64::from(k) - n + 1) as u64) as i16;
                vec![
                    raw(0xbf, d, 1, 0, 0),
                    raw(0x07, d, 0, 0, k),
                    raw(0x61 | sz, s, d, off, 0),
                ]
            }
            15 => {
                // weir_cc_muldiv(d, s, x), then r1..r5 are restored.
                let x = scalar(rng);
                let mut v = vec![
                    raw(0xbf, 1, d, 0, 0),
                    raw(0xbf, 2, s, 0, 0),
                    raw(0xbf, 3, x, 0, 0),
                    raw(0x85, 0, 0, 0, 1),
                    raw(0xbf, 1, 6, 0, 0),
                ];
                for r in 2..=5 {
                    v.extend(lddw(r, rng.wild()));
                }
                v
            }
            16 => lddw(d, rng.wild()),
            _ => {
                // A forward conditional jump, 64- or 32-bit, register or immediate.
                let ops = [
                    0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0xa0, 0xb0, 0xc0, 0xd0,
                ];
                let op = ops[rng.below(ops.len() as u64) as usize];
                let cls = if rng.below(2) == 0 { 0x05 } else { 0x06 };
                let unsigned = matches!(op, 0x10 | 0x20 | 0x30 | 0x50 | 0xa0 | 0xb0);
                let reg = rng.below(2) == 0;
                let mut imm = rng.wild_imm();
                if cls == 0x05 && unsigned && imm < 0 {
                    imm = imm.wrapping_neg().max(0); // the verifier refuses negative ones
                }
                let to = items.len()
                    + 1
                    + rng.below((len + 12).saturating_sub(items.len()) as u64) as usize;
                let opc = op | cls | if reg { 0x08 } else { 0 };
                items.push(Item::Jump {
                    opc,
                    dst: d,
                    src: if reg { s } else { 0 },
                    imm,
                    to,
                });
                continue;
            }
        };
        if rng.below(12) == 0 {
            items.push(Item::Code(vec![raw(0x95, 0, 0, 0, 0)])); // an early exit
        }
        items.push(Item::Code(item));
    }
    items.push(Item::Code(vec![raw(0x95, 0, 0, 0, 0)]));
    // Lay out: item start slots, then resolve jumps (targets past the end go to the last exit).
    let mut starts = Vec::with_capacity(items.len());
    let mut slot = 0usize;
    for it in &items {
        starts.push(slot);
        slot += match it {
            Item::Code(v) => v.len(),
            Item::Jump { .. } => 1,
        };
    }
    let last = items.len() - 1;
    let mut code = Vec::with_capacity(slot * 8);
    for (k, it) in items.iter().enumerate() {
        match it {
            Item::Code(v) => v.iter().for_each(|i| code.extend_from_slice(i)),
            Item::Jump {
                opc,
                dst,
                src,
                imm,
                to,
            } => {
                let t = starts[(*to).min(last)];
                let off = (t - starts[k] - 1) as i16;
                code.extend_from_slice(&raw(*opc, *dst, *src, off, *imm));
            }
        }
    }
    code
}

#[test]
fn random_verified_programs_run_identically_on_every_engine() {
    let mut rng = Rng(0x0001_d1ff);
    let (mut accepted, mut total) = (0, 0);
    let mut with_calls = 0;
    while accepted < 3_000 && total < 200_000 {
        total += 1;
        let code = random_program(&mut rng);
        let Ok(p) = Program::from_bytecode(&code, &VerifierConfig::default()) else {
            continue;
        };
        accepted += 1;
        if p.report().helpers == [1] {
            with_calls += 1;
        }
        let programs = all_engines(&p);
        for c in 0..6 {
            let mut bytes = [0u8; CONTEXT_SIZE];
            for b in bytes.iter_mut() {
                *b = rng.next() as u8;
            }
            let mut ctx = Box::new(from_bytes(bytes));
            agree(&programs, &mut ctx, &|| {
                format!("program {accepted} context {c}: {:02x?}", code)
            });
        }
    }
    assert!(
        accepted >= 3_000,
        "only {accepted} of {total} random programs verified"
    );
    assert!(
        with_calls >= 300,
        "only {with_calls} programs call the helper"
    );
}

// --- (3) instruction edge cases -----------------------------------------------------------

/// Runs `text` (rbpf assembler) on every engine on a context with bytes 0, 1, 2, …, checks
/// that they agree and returns r0.
fn eval(text: &str) -> u64 {
    let p = common::asm(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let programs = all_engines(&p);
    let mut bytes = [0u8; CONTEXT_SIZE];
    for (k, b) in bytes.iter_mut().enumerate() {
        *b = k as u8;
    }
    let mut ctx = Box::new(from_bytes(bytes));
    agree(&programs, &mut ctx, &|| text.to_string())
}

#[test]
fn division_and_modulo_edge_cases() {
    let min = "lddw r0, 0x8000000000000000\n";
    // Unsigned division: INT64_MIN / -1 is 2^63 / (2^64 - 1) = 0, no trap.
    assert_eq!(eval(&format!("{min}mov64 r1, -1\ndiv64 r0, r1\nexit")), 0);
    assert_eq!(eval(&format!("{min}div64 r0, -1\nexit")), 0);
    assert_eq!(eval(&format!("{min}mod64 r0, -1\nexit")), 1 << 63);
    assert_eq!(eval("mov32 r0, -2147483648\ndiv32 r0, -1\nexit"), 0);
    assert_eq!(eval("mov32 r0, -1\ndiv32 r0, 16\nexit"), 0x0fff_ffff);
    assert_eq!(eval("lddw r0, 0xffffffff00000007\nmod32 r0, 4\nexit"), 3);
    // By zero: div gives 0, mod leaves all 64 bits of the destination.
    assert_eq!(
        eval("lddw r0, 0x123456789\nmov64 r2, 0\ndiv64 r0, r2\nexit"),
        0
    );
    assert_eq!(eval("lddw r0, 0x123456789\ndiv64 r0, 0\nexit"), 0);
    assert_eq!(eval("lddw r0, 0x123456789\ndiv32 r0, 0\nexit"), 0);
    assert_eq!(
        eval("lddw r0, 0x123456789\nmov64 r2, 0\nmod64 r0, r2\nexit"),
        0x1_2345_6789
    );
    assert_eq!(
        eval("lddw r0, 0x123456789\nmod32 r0, 0\nexit"),
        0x1_2345_6789
    );
    // A 32-bit divisor whose low half is zero is zero.
    let big = "lddw r2, 0x100000000\n";
    assert_eq!(eval(&format!("{big}mov64 r0, 7\ndiv32 r0, r2\nexit")), 0);
    assert_eq!(
        eval(&format!(
            "{big}lddw r0, 0xffffffff00000007\nmod32 r0, r2\nexit"
        )),
        0xffff_ffff_0000_0007
    );
    assert_eq!(
        eval(&format!("{big}lddw r0, 0x300000000\ndiv64 r0, r2\nexit")),
        3
    );
    // Divisions with r0 and r3 (rax and rdx) as operands keep the other registers.
    assert_eq!(
        eval(
            "mov64 r3, 100\nmov64 r0, 7\ndiv64 r3, r0\nmov64 r4, r3\nadd64 r4, r0\nmov64 r0, r4\nexit"
        ),
        14 + 7
    );
    assert_eq!(
        eval(
            "mov64 r3, 100\nmov64 r0, 7\nmod64 r0, r3\nmov64 r4, r3\nadd64 r4, r0\nmov64 r0, r4\nexit"
        ),
        107
    );
    assert_eq!(
        eval("mov64 r3, 3\nmov64 r0, 100\ndiv64 r0, r3\nadd64 r0, r3\nexit"),
        36
    );
}

#[test]
fn shift_edge_cases() {
    assert_eq!(eval("mov64 r0, 1\nmov64 r2, 65\nlsh64 r0, r2\nexit"), 2);
    assert_eq!(eval("mov64 r0, 1\nmov64 r2, 33\nlsh32 r0, r2\nexit"), 2);
    assert_eq!(eval("mov64 r0, 1\nmov64 r2, 64\nlsh64 r0, r2\nexit"), 1);
    // A 32-bit shift by 0 (32 & 31) still truncates.
    assert_eq!(
        eval("lddw r0, -1\nmov64 r2, 32\nrsh32 r0, r2\nexit"),
        0xffff_ffff
    );
    assert_eq!(eval("lddw r0, -1\nlsh32 r0, 0\nexit"), 0xffff_ffff);
    assert_eq!(eval("lddw r0, -1\nlsh64 r0, 0\nexit"), u64::MAX);
    assert_eq!(
        eval("lddw r0, 0x8000000000000000\narsh64 r0, 63\nexit"),
        u64::MAX
    );
    assert_eq!(eval("lddw r0, 0x8000000000000000\nrsh64 r0, 63\nexit"), 1);
    assert_eq!(
        eval("mov32 r0, -2147483648\narsh32 r0, 31\nexit"),
        0xffff_ffff
    );
    assert_eq!(
        eval("lddw r0, 0x0000000180000000\nmov64 r2, 35\narsh32 r0, r2\nexit"),
        0xf000_0000
    );
    // Shift counts and destinations in r4 (rcx).
    assert_eq!(
        eval("mov64 r4, 3\nmov64 r2, 2\nlsh64 r4, r2\nmov64 r0, r4\nexit"),
        12
    );
    assert_eq!(eval("mov64 r4, 3\nlsh64 r4, r4\nmov64 r0, r4\nexit"), 24);
    assert_eq!(
        eval("mov64 r0, 5\nmov64 r4, 1\nlsh64 r0, r4\nadd64 r0, r4\nexit"),
        11
    );
    assert_eq!(
        eval("mov64 r0, 5\nmov64 r4, 33\nlsh32 r0, r4\nadd64 r0, r4\nexit"),
        43
    );
}

#[test]
fn alu_wraparound_and_extension() {
    assert_eq!(eval("mov32 r0, -1\nadd32 r0, 1\nexit"), 0);
    assert_eq!(eval("lddw r0, 0xffffffff\nadd64 r0, 1\nexit"), 1 << 32);
    assert_eq!(eval("mov64 r0, -1\nexit"), u64::MAX);
    assert_eq!(eval("mov32 r0, -1\nexit"), 0xffff_ffff);
    assert_eq!(eval("lddw r2, 0x100000005\nmov32 r0, r2\nexit"), 5);
    assert_eq!(eval("lddw r0, 0x100000005\nmov32 r0, r0\nexit"), 5);
    assert_eq!(eval("mov32 r0, 0x10000\nmul32 r0, 0x10000\nexit"), 0);
    assert_eq!(eval("mov64 r0, 0x10000\nmul64 r0, 0x10000\nexit"), 1 << 32);
    assert_eq!(eval("mov64 r0, 3\nmul64 r0, -1\nexit"), 3u64.wrapping_neg());
    assert_eq!(eval("mov64 r0, 1\nneg32 r0\nexit"), 0xffff_ffff);
    assert_eq!(eval("mov64 r0, 1\nneg64 r0\nexit"), u64::MAX);
    assert_eq!(eval("mov64 r0, 0\nsub32 r0, 1\nexit"), 0xffff_ffff);
    assert_eq!(eval("mov64 r0, 0\nsub64 r0, 1\nexit"), u64::MAX);
    assert_eq!(eval("lddw r0, -1\nand32 r0, -1\nexit"), 0xffff_ffff);
    assert_eq!(eval("mov64 r0, 0\nor64 r0, -2\nexit"), u64::MAX - 1);
    assert_eq!(eval("mov64 r0, 0\nxor32 r0, -2\nexit"), 0xffff_fffe);
    assert_eq!(
        eval("lddw r0, 0x123456789abcdef0\nexit"),
        0x1234_5678_9abc_def0
    );
    assert_eq!(
        eval("lddw r9, 0xfffffffffffffff0\nmov64 r0, r9\nexit"),
        !0xf
    );
}

/// rbpf's interpreter panics here in builds with overflow checks (`-(x as i64)`), so the
/// JIT's answer, the wrapping one, is checked against the value itself.
#[test]
fn neg64_of_int64_min_wraps() {
    let p = common::asm("lddw r0, 0x8000000000000000\nneg64 r0\nexit").unwrap();
    for engine in [Engine::Jit, Engine::JitChecked] {
        let p = p.with_engine(engine).unwrap();
        let mut ctx = Box::new(Context::zeroed());
        assert_eq!(p.run(&mut ctx).unwrap(), 1 << 63);
    }
    // rbpf's interpreter panics on this where overflow checks are on; the engine turns that
    // into an error (a fault), never a crash. Without overflow checks it wraps like the JIT.
    let p = p.with_engine(Engine::Interpreter).unwrap();
    let mut ctx = Box::new(Context::zeroed());
    match p.run(&mut ctx) {
        Ok(v) => assert_eq!(v, 1 << 63),
        Err(e) => assert!(e.to_string().contains("panicked"), "{e}"),
    }
}

#[test]
fn byte_swaps() {
    let v = "lddw r0, 0x1122334455667788\n";
    assert_eq!(eval(&format!("{v}le16 r0\nexit")), 0x7788);
    assert_eq!(eval(&format!("{v}le32 r0\nexit")), 0x5566_7788);
    assert_eq!(eval(&format!("{v}le64 r0\nexit")), 0x1122_3344_5566_7788);
    assert_eq!(eval(&format!("{v}be16 r0\nexit")), 0x8877);
    assert_eq!(eval(&format!("{v}be32 r0\nexit")), 0x8877_6655);
    assert_eq!(eval(&format!("{v}be64 r0\nexit")), 0x8877_6655_4433_2211);
    let w = "lddw r5, 0x1122334455667788\n";
    assert_eq!(eval(&format!("{w}be16 r5\nmov64 r0, r5\nexit")), 0x8877);
    assert_eq!(eval(&format!("{w}le16 r5\nmov64 r0, r5\nexit")), 0x7788);
}

#[test]
fn conditional_jumps_signed_unsigned_and_32_bit() {
    let values: [u64; 8] = [
        0,
        1,
        u64::MAX,
        1 << 63,
        0x7fff_ffff,
        0x8000_0000,
        0xffff_ffff,
        0x1_0000_0001,
    ];
    type Rel = fn(u64, u64) -> bool;
    let ops: [(&str, Rel); 11] = [
        ("jeq", |a, b| a == b),
        ("jne", |a, b| a != b),
        ("jgt", |a, b| a > b),
        ("jge", |a, b| a >= b),
        ("jlt", |a, b| a < b),
        ("jle", |a, b| a <= b),
        ("jset", |a, b| a & b != 0),
        ("jsgt", |a, b| (a as i64) > (b as i64)),
        ("jsge", |a, b| (a as i64) >= (b as i64)),
        ("jslt", |a, b| (a as i64) < (b as i64)),
        ("jsle", |a, b| (a as i64) <= (b as i64)),
    ];
    let mut checked = 0;
    for (name, rel) in ops {
        for &a in &values {
            for &b in &values {
                let tail = "mov64 r0, 0\nexit\nmov64 r0, 1\nexit";
                // 64-bit, register.
                let text = format!("lddw r2, {a:#x}\nlddw r3, {b:#x}\n{name} r2, r3, +2\n{tail}");
                assert_eq!(eval(&text), u64::from(rel(a, b)), "{text}");
                // 32-bit, register: the low halves, sign-extended for the signed relations.
                let (a32, b32) = (a as u32, b as u32);
                let ext = |x: u32| {
                    if name.starts_with("js") {
                        x as i32 as i64 as u64
                    } else {
                        u64::from(x)
                    }
                };
                let text = format!("lddw r2, {a:#x}\nlddw r3, {b:#x}\n{name}32 r2, r3, +2\n{tail}");
                assert_eq!(eval(&text), u64::from(rel(ext(a32), ext(b32))), "{text}");
                // Immediates: rbpf zero-extends for the unsigned relations (which the verifier
                // allows only non-negative there) and sign-extends for jset and the signed ones.
                let imm = b as u32 as i32;
                let unsigned = !name.starts_with("js") && name != "jset";
                if !(unsigned && imm < 0) {
                    let text = format!("lddw r2, {a:#x}\n{name} r2, {imm}, +2\n{tail}");
                    assert_eq!(eval(&text), u64::from(rel(a, imm as i64 as u64)), "{text}");
                }
                let text = format!("lddw r2, {a:#x}\n{name}32 r2, {imm}, +2\n{tail}");
                assert_eq!(
                    eval(&text),
                    u64::from(rel(ext(a32), ext(imm as u32))),
                    "{text}"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 11 * 64);
}

#[test]
fn loads_and_stores_of_every_size() {
    // Context bytes are 0, 1, 2, … (mod 256).
    assert_eq!(eval("ldxb r0, [r1+3]\nexit"), 3);
    assert_eq!(eval("ldxh r0, [r1+4]\nexit"), 0x0504);
    assert_eq!(eval("ldxw r0, [r1+8]\nexit"), 0x0b0a_0908);
    assert_eq!(eval("ldxdw r0, [r1+928]\nexit"), 0xa7a6_a5a4_a3a2_a1a0);
    assert_eq!(
        eval("mov64 r2, r1\nadd64 r2, 16\nldxb r0, [r2-1]\nexit"),
        15
    );
    assert_eq!(
        eval("stb [r1+700], -1\nldxdw r0, [r1+700]\nexit"),
        0xc3c2_c1c0_bfbe_bdff
    );
    assert_eq!(
        eval("sth [r1+700], -1\nldxdw r0, [r1+700]\nexit"),
        0xc3c2_c1c0_bfbe_ffff
    );
    assert_eq!(
        eval("stw [r1+700], -1\nldxdw r0, [r1+700]\nexit"),
        0xc3c2_c1c0_ffff_ffff
    );
    assert_eq!(
        eval("stdw [r1+700], -2\nldxdw r0, [r1+700]\nexit"),
        u64::MAX - 1
    );
    assert_eq!(
        eval("lddw r5, 0x1122334455667788\nstxb [r1+928], r5\nldxdw r0, [r1+928]\nexit"),
        0xa7a6_a5a4_a3a2_a188
    );
    assert_eq!(
        eval("lddw r6, 0x1122334455667788\nstxh [r1+928], r6\nldxdw r0, [r1+928]\nexit"),
        0xa7a6_a5a4_a3a2_7788
    );
    assert_eq!(
        eval("lddw r2, 0x1122334455667788\nstxw [r1+928], r2\nldxdw r0, [r1+928]\nexit"),
        0xa7a6_a5a4_5566_7788
    );
    assert_eq!(
        eval("lddw r9, 0x1122334455667788\nstxdw [r1+928], r9\nldxdw r0, [r1+928]\nexit"),
        0x1122_3344_5566_7788
    );
    assert_eq!(
        eval("stdw [r10-8], -1\nldxw r0, [r10-4]\nexit"),
        0xffff_ffff
    );
    assert_eq!(eval("stdw [r10-8], -1\nldxh r0, [r10-3]\nexit"), 0xffff);
    assert_eq!(
        eval("mov64 r7, 77\nstxb [r10-512], r7\nldxb r0, [r10-512]\nexit"),
        77
    );
}

#[test]
fn the_stack_starts_zeroed_on_every_run() {
    // Dirty the native stack, then read never-written stack bytes (the verifier allows it;
    // rbpf's interpreter reads zeros).
    let dirty: String = (1..=64)
        .map(|k| format!("stdw [r10-{}], -1\n", 8 * k))
        .collect::<String>()
        + "mov64 r0, 0\nexit";
    for _ in 0..3 {
        assert_eq!(eval(&dirty), 0);
        assert_eq!(eval("ldxdw r0, [r10-512]\nexit"), 0);
        assert_eq!(
            eval("ldxdw r0, [r10-8]\nldxdw r2, [r10-264]\nor64 r0, r2\nexit"),
            0
        );
    }
}

#[test]
fn helper_calls_pass_arguments_and_keep_callee_saved_registers() {
    assert_eq!(
        eval("mov64 r1, 6\nmov64 r2, 7\nmov64 r3, 2\ncall 1\nexit"),
        21
    );
    assert_eq!(
        eval("lddw r1, -1\nlddw r2, -1\nmov64 r3, 1\ncall 1\nexit"),
        u64::MAX
    );
    assert_eq!(
        eval("mov64 r1, 1\nmov64 r2, 1\nmov64 r3, 0\ncall 1\nexit"),
        u64::MAX
    );
    let text = "mov64 r6, 1000\nmov64 r7, 200\nmov64 r8, 30\nmov64 r9, 4\n\
                stdw [r10-8], 50000\n\
                mov64 r1, 10\nmov64 r2, 10\nmov64 r3, 1\nmov64 r4, 99\nmov64 r5, 99\ncall 1\n\
                add64 r0, r6\nadd64 r0, r7\nadd64 r0, r8\nadd64 r0, r9\n\
                ldxdw r2, [r10-8]\nadd64 r0, r2\n\
                mov64 r1, r0\nmov64 r2, 2\nmov64 r3, 1\ncall 1\nexit";
    assert_eq!(eval(text), 2 * (100 + 1234 + 50000));
}
