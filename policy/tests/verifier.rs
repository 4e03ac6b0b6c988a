//! The verifier refuses what could crash, stall or escape, and says which instruction and why;
//! it accepts what clang produces for well-behaved restricted C.

#[macro_use]
mod common;

use common::{asm, bytecode, load_test_program};
use weir_policy::verifier::{HARD_MAX_INSNS, verify};
use weir_policy::{LoadError, Program, VerifierConfig, VerifyError};

/// The verifier's error for assembler text (panics if it was accepted).
fn refused(text: &str) -> VerifyError {
    match asm(text) {
        Err(LoadError::Verify(e)) => e,
        Err(e) => panic!("refused, but not by the verifier: {e}"),
        Ok(_) => panic!("accepted:\n{text}"),
    }
}

fn refused_raw(code: &[u8]) -> VerifyError {
    verify(code, &VerifierConfig::default()).expect_err("accepted")
}

/// One raw instruction.
fn insn(opc: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0] = opc;
    b[1] = (src << 4) | dst;
    b[2..4].copy_from_slice(&off.to_le_bytes());
    b[4..8].copy_from_slice(&imm.to_le_bytes());
    b
}

const EXIT0: &str = "mov64 r0, 0\nexit";

#[test]
fn accepts_a_minimal_program_and_reports_it() {
    let p = asm("mov64 r0, 0\nstdw [r1+656], 1000\nexit").unwrap();
    let r = p.report();
    assert_eq!((r.insns, r.longest_path, r.stack_bytes), (3, 3, 0));
}

#[test]
fn refuses_a_loop_and_names_the_back_edge() {
    let e = refused("mov64 r0, 0\nadd64 r0, 1\njlt r0, 10, -2\nexit");
    assert_eq!(e.insn, Some(2));
    assert!(
        e.reason.contains("loop: jumps back to instruction 1"),
        "{e}"
    );
    assert!(
        e.to_string()
            .starts_with("instruction 2 (`jlt r0, 10, -2`): loop"),
        "{e}"
    );
    // The tightest loop of all.
    let e = refused("mov64 r0, 0\nja -1\nexit");
    assert_eq!(e.insn, Some(1));
    assert!(e.reason.contains("loop"), "{e}");
}

#[test]
fn a_backward_jump_that_closes_no_cycle_is_fine() {
    // clang's block placement emits these: 0 -> 3 -> 4 -> 2 (exit).
    let p = asm("ja +2\nmov64 r0, 1\nexit\nmov64 r0, 0\nja -3");
    assert!(p.is_ok(), "{:?}", p.err());
}

#[test]
fn refuses_a_loop_compiled_from_c() {
    require_clang!();
    let e = load_test_program("loop").unwrap_err();
    let LoadError::Verify(e) = e else {
        panic!("{e}")
    };
    assert!(e.reason.starts_with("loop:"), "{e}");
}

#[test]
fn refuses_context_accesses_out_of_bounds() {
    let e = refused("ldxdw r0, [r1+936]\nexit");
    assert!(e.reason.contains("outside the 936-byte context"), "{e}");
    let e = refused("ldxdw r0, [r1+932]\nexit");
    assert!(e.reason.contains("outside"), "{e}");
    let e = refused("ldxdw r0, [r1-8]\nexit");
    assert!(e.reason.contains("context offset -8"), "{e}");
    // The last state byte is fine; one past it is not.
    assert!(asm(&format!("stb [r1+935], 1\n{EXIT0}")).is_ok());
    let e = refused(&format!("stb [r1+936], 1\n{EXIT0}"));
    assert!(
        e.reason.contains("writes 1 bytes at context offset 936"),
        "{e}"
    );
}

#[test]
fn refuses_writes_to_read_only_fields() {
    require_clang!();
    for off in [0, 8, 384, 640, 647] {
        let e = refused(&format!("stb [r1+{off}], 1\n{EXIT0}"));
        assert!(e.reason.contains("read-only"), "{off}: {e}");
    }
    let e = load_test_program("write_input").unwrap_err();
    assert!(e.to_string().contains("read-only"), "{e}");
    // Outputs and state are writable.
    assert!(asm(&format!("stdw [r1+648], 1\nstdw [r1+928], 1\n{EXIT0}")).is_ok());
}

#[test]
fn refuses_unbounded_state_indices_and_accepts_checked_ones() {
    require_clang!();
    let e = load_test_program("state_overflow").unwrap_err();
    let LoadError::Verify(e) = e else {
        panic!("{e}")
    };
    assert!(
        e.reason
            .contains("not a pointer into the context or the stack"),
        "{e}"
    );
    load_test_program("state_bounded").unwrap();
    // The same in assembler: an index from the context, then a check, then the access.
    let checked = "ldxb r2, [r1+123]\njgt r2, 7, +4\nlsh64 r2, 5\nadd64 r1, r2\n\
                   ldxdw r0, [r1+128]\nexit\nmov64 r0, 0\nexit";
    assert!(asm(checked).is_ok());
    // Without the check, n_hops (up to 255) times 32 leaves the context.
    let unchecked = "ldxb r2, [r1+123]\nlsh64 r2, 5\nadd64 r1, r2\nldxdw r0, [r1+128]\nexit";
    let e = refused(unchecked);
    assert_eq!(e.insn, Some(3));
    assert!(e.reason.contains("outside"), "{e}");
}

#[test]
fn refuses_unknown_helpers_and_function_calls() {
    require_clang!();
    let e = refused("call 6\nexit");
    assert!(e.reason.contains("unknown helper 6"), "{e}");
    assert!(e.reason.contains("weir_cc_muldiv (1)"), "{e}");
    let e = load_test_program("unknown_helper").unwrap_err();
    assert!(e.to_string().contains("unknown helper 6"), "{e}");
    // A BPF-to-BPF call (src = 1).
    let mut code = insn(0x85, 0, 1, 0, 1).to_vec();
    code.extend(bytecode(EXIT0));
    code.extend(bytecode(EXIT0));
    let e = refused_raw(&code);
    assert!(e.reason.contains("__always_inline"), "{e}");
    // The allowed helper needs its three arguments set.
    assert!(asm("mov64 r1, 6\nmov64 r2, 7\nmov64 r3, 2\ncall 1\nexit").is_ok());
    let e = refused("mov64 r1, 6\nmov64 r2, 7\ncall 1\nexit");
    assert!(e.reason.contains("reads r3"), "{e}");
    // Helpers clobber r1-r5.
    let e = refused("mov64 r1, 6\nmov64 r2, 7\nmov64 r3, 2\ncall 1\nldxdw r0, [r1+0]\nexit");
    assert!(e.reason.contains("reads r1, which is uninitialised"), "{e}");
}

#[test]
fn refuses_programs_over_the_budget() {
    let long = format!("{}{EXIT0}", "mov64 r0, 0\n".repeat(20_000));
    let e = refused(&long);
    assert!(e.reason.contains("over the budget of 16384"), "{e}");
    let code = bytecode(&long);
    let config = VerifierConfig {
        max_insns: HARD_MAX_INSNS,
    };
    assert!(Program::from_bytecode(&code, &config).is_ok());
    let config = VerifierConfig { max_insns: 10 };
    let e = Program::from_bytecode(
        &bytecode(&format!("{}{EXIT0}", "mov64 r0, 0\n".repeat(9))),
        &config,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("11 instructions, over the budget of 10"),
        "{e}"
    );
    // More than rbpf can address is refused whatever the configuration.
    let huge = bytecode(&format!(
        "{}{EXIT0}",
        "mov64 r0, 0\n".repeat(HARD_MAX_INSNS)
    ));
    let config = VerifierConfig {
        max_insns: usize::MAX,
    };
    assert!(Program::from_bytecode(&huge, &config).is_err());
}

#[test]
fn refuses_programs_without_an_exit() {
    let e = refused("mov64 r0, 0");
    assert!(e.reason.contains("runs past the last instruction"), "{e}");
    let e = refused("mov64 r0, 0\nja +1\nexit\nmov64 r0, 1");
    assert_eq!(e.insn, Some(3));
    let e = refused("mov64 r0, 0\njeq r0, 0, +1\nexit");
    assert!(e.reason.contains("outside the program"), "{e}");
    let e = refused_raw(&[]);
    assert!(e.reason.contains("empty"), "{e}");
    let e = refused_raw(&[0x95, 0, 0]);
    assert!(e.reason.contains("multiple of 8"), "{e}");
}

#[test]
fn refuses_bad_register_use() {
    let e = refused("mov64 r0, r5\nexit");
    assert!(e.reason.contains("reads r5, which is uninitialised"), "{e}");
    let e = refused("exit");
    assert!(e.reason.contains("reads r0"), "{e}");
    let e = refused("mov64 r10, 0\nmov64 r0, 0\nexit");
    assert!(e.reason.contains("r10"), "{e}");
    let e = refused_raw(&[insn(0xb7, 11, 0, 0, 0), insn(0x95, 0, 0, 0, 0)].concat());
    assert!(e.reason.contains("invalid register"), "{e}");
    // A register initialised on one path only.
    let e = refused("ldxdw r2, [r1+8]\njeq r2, 0, +1\nmov64 r3, 1\nmov64 r0, r3\nexit");
    assert!(e.reason.contains("reads r3"), "{e}");
}

#[test]
fn tracks_the_stack_and_pointers_spilled_to_it() {
    assert!(asm("stdw [r10-8], 5\nldxdw r0, [r10-8]\nexit").is_ok());
    assert!(asm("stxdw [r10-16], r1\nldxdw r2, [r10-16]\nldxdw r0, [r2+8]\nexit").is_ok());
    let e = refused("stdw [r10-520], 1\nmov64 r0, 0\nexit");
    assert!(e.reason.contains("outside the 512-byte stack"), "{e}");
    let e = refused("stdw [r10+0], 1\nmov64 r0, 0\nexit");
    assert!(e.reason.contains("outside the 512-byte stack"), "{e}");
    // A spilled pointer partly overwritten is only a number.
    let e = refused("stxdw [r10-8], r1\nstb [r10-8], 0\nldxdw r2, [r10-8]\nldxdw r0, [r2+8]\nexit");
    assert!(e.reason.contains("not a pointer"), "{e}");
}

#[test]
fn refuses_negative_unsigned_jump_immediates() {
    let e = refused("ldxdw r2, [r1+8]\nmov64 r0, 0\njne r2, -1, +1\nmov64 r0, 1\nexit");
    assert!(e.reason.contains("zero-extends"), "{e}");
    // Signed comparisons and 32-bit ones are consistent in rbpf and fine.
    assert!(asm("ldxdw r2, [r1+8]\nmov64 r0, 0\njsgt r2, -1, +1\nmov64 r0, 1\nexit").is_ok());
}

#[test]
fn refuses_unsupported_instructions() {
    let with_exit = |i: [u8; 8]| [i.to_vec(), bytecode(EXIT0)].concat();
    // Legacy packet load, atomic add, tail call, unknown opcode.
    for (opc, what) in [
        (0x30, "legacy"),
        (0xdb, "atomic"),
        (0x8d, "unknown jump"),
        (0xff, "unknown"),
    ] {
        let e = refused_raw(&with_exit(insn(opc, 0, 1, 0, 0)));
        assert!(e.reason.contains(what), "{opc:#x}: {e}");
    }
    // A map reference (lddw with src = 1).
    let mut code = insn(0x18, 1, 1, 0, 0).to_vec();
    code.extend(insn(0, 0, 0, 0, 0));
    code.extend(bytecode(EXIT0));
    assert!(refused_raw(&code).reason.contains("maps"));
    // Shifts past the width.
    let e = refused("mov64 r0, 1\nlsh64 r0, 64\nexit");
    assert!(e.reason.contains("shift by 64"), "{e}");
}

#[test]
fn refuses_objects_with_relocations() {
    require_clang!();
    let e = load_test_program("global").unwrap_err();
    assert!(matches!(e, LoadError::Elf(_)), "{e}");
    assert!(e.to_string().contains("relocation"), "{e}");
}

#[test]
fn accepts_clang_code_that_walks_the_int_records() {
    require_clang!();
    let p = load_test_program("hops").unwrap();
    assert_eq!(p.report().helpers, vec![1]);
}

/// Soundness check with rbpf's run-time checks as the oracle: random programs (loads, stores,
/// pointer arithmetic through registers and the stack, forward jumps) that the verifier
/// accepts never fault in rbpf's interpreter, on random contexts, and never change a
/// read-only byte of the context.
#[test]
fn accepted_random_programs_never_fault_at_run_time() {
    let mut seed = 0x5eed_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut accepted, mut total, mut indirect) = (0, 0, 0);
    while accepted < 1_000 && total < 1_000_000 {
        total += 1;
        let len = 4 + next() % 24;
        let mut lines = vec!["mov64 r0, 0".to_string(), "mov64 r2, 8".to_string()];
        for k in 0..len {
            let r = 2 + next() % 4; // r2..r5
            let s = 2 + next() % 4;
            let off = (next() % 1000) as i64 - 40;
            let sz = ["b", "h", "w", "dw"][(next() % 4) as usize];
            let left = len - k;
            lines.push(match next() % 13 {
                0 => format!("ldx{sz} r{r}, [r1{off:+}]"),
                1 => format!("st{sz} [r1{off:+}], {}", next() % 100),
                2 => format!("stx{sz} [r1{off:+}], r{s}"),
                3 => format!("add64 r{r}, r{s}"),
                4 => format!("and64 r{r}, {}", next() % 2048),
                5 => format!("mov64 r{r}, r1"),
                6 => format!("add64 r{r}, {}", next() % 1024),
                7 => format!("ldx{sz} r{s}, [r{r}{:+}]", off % 64),
                8 => format!("stx{sz} [r10{:+}], r{s}", -8 * (1 + (next() % 64) as i64)),
                9 => format!("ldxdw r{r}, [r10{:+}]", -8 * (1 + (next() % 64) as i64)),
                10 => format!("jgt r{r}, {}, +{}", next() % 1000, next() % left),
                11 => format!("lsh64 r{r}, {}", next() % 8),
                _ => format!("stx{sz} [r{r}{:+}], r{s}", off % 512),
            });
        }
        lines.push("mov64 r0, 0".into());
        lines.push("exit".into());
        let text = lines.join("\n");
        let Ok(code) = rbpf::assembler::assemble(&text) else {
            continue;
        };
        if verify(&code, &VerifierConfig::default()).is_err() {
            continue;
        }
        accepted += 1;
        if lines.iter().any(|l| {
            l.contains("[r2") || l.contains("[r3") || l.contains("[r4") || l.contains("[r5")
        }) {
            indirect += 1;
        }
        let vm = rbpf::EbpfVmRaw::new(Some(&code)).unwrap();
        for _ in 0..8 {
            let mut ctx: Vec<u8> = (0..936).map(|_| next() as u8).collect();
            let before = ctx[..648].to_vec();
            let run = vm.execute_program(&mut ctx);
            assert!(run.is_ok(), "verified program faulted: {run:?}\n{text}");
            assert_eq!(ctx[..648], before[..], "wrote a read-only byte\n{text}");
        }
    }
    assert!(
        accepted >= 1_000,
        "only {accepted} of {total} random programs verified"
    );
    assert!(
        indirect >= 100,
        "only {indirect} accepted programs use derived pointers"
    );
}
