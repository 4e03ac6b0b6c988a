//! The eBPF instruction encoding (Linux's, as rbpf implements it): the constants and the
//! decoded form the verifier checks and the JIT compiles, in one place.

// Instruction classes and fields (the Linux eBPF encoding, as rbpf implements it).
pub(crate) const CLS_LD: u8 = 0x00;
pub(crate) const CLS_LDX: u8 = 0x01;
pub(crate) const CLS_ST: u8 = 0x02;
pub(crate) const CLS_STX: u8 = 0x03;
pub(crate) const CLS_ALU: u8 = 0x04;
pub(crate) const CLS_JMP: u8 = 0x05;
pub(crate) const CLS_JMP32: u8 = 0x06;
pub(crate) const CLS_ALU64: u8 = 0x07;
pub(crate) const MODE_MEM: u8 = 0x60;
pub(crate) const LD_DW_IMM: u8 = 0x18;
pub(crate) const ADD: u8 = 0x00;
pub(crate) const SUB: u8 = 0x10;
pub(crate) const MUL: u8 = 0x20;
pub(crate) const DIV: u8 = 0x30;
pub(crate) const OR: u8 = 0x40;
pub(crate) const AND: u8 = 0x50;
pub(crate) const LSH: u8 = 0x60;
pub(crate) const RSH: u8 = 0x70;
pub(crate) const NEG: u8 = 0x80;
pub(crate) const MOD: u8 = 0x90;
pub(crate) const XOR: u8 = 0xa0;
pub(crate) const MOV: u8 = 0xb0;
pub(crate) const ARSH: u8 = 0xc0;
pub(crate) const END: u8 = 0xd0;
pub(crate) const JA: u8 = 0x00;
pub(crate) const JEQ: u8 = 0x10;
pub(crate) const JGT: u8 = 0x20;
pub(crate) const JGE: u8 = 0x30;
pub(crate) const JSET: u8 = 0x40;
pub(crate) const JNE: u8 = 0x50;
pub(crate) const JSGT: u8 = 0x60;
pub(crate) const JSGE: u8 = 0x70;
pub(crate) const CALL: u8 = 0x80;
pub(crate) const EXIT: u8 = 0x90;
pub(crate) const JLT: u8 = 0xa0;
pub(crate) const JLE: u8 = 0xb0;
pub(crate) const JSLT: u8 = 0xc0;
pub(crate) const JSLE: u8 = 0xd0;

/// A decoded instruction.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Insn {
    pub(crate) opc: u8,
    pub(crate) dst: u8,
    pub(crate) src: u8,
    pub(crate) off: i16,
    pub(crate) imm: i32,
}

impl Insn {
    pub(crate) fn decode(code: &[u8], i: usize) -> Insn {
        let b = &code[i * 8..i * 8 + 8];
        Insn {
            opc: b[0],
            dst: b[1] & 0x0f,
            src: b[1] >> 4,
            off: i16::from_le_bytes([b[2], b[3]]),
            imm: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }

    pub(crate) fn class(self) -> u8 {
        self.opc & 0x07
    }

    /// ALU/JMP operation bits.
    pub(crate) fn op(self) -> u8 {
        self.opc & 0xf0
    }

    /// Source is a register (BPF_X).
    pub(crate) fn reg_src(self) -> bool {
        self.opc & 0x08 != 0
    }

    /// Access size of a load/store.
    pub(crate) fn size(self) -> i64 {
        match self.opc & 0x18 {
            0x00 => 4,
            0x08 => 2,
            0x10 => 1,
            _ => 8,
        }
    }

    /// A rough disassembly for messages.
    pub(crate) fn text(self, next: Option<Insn>) -> String {
        let (d, s, off, imm) = (self.dst, self.src, self.off, self.imm);
        let src = if self.reg_src() {
            format!("r{s}")
        } else {
            format!("{imm}")
        };
        let sz = match self.opc & 0x18 {
            0x00 => "w",
            0x08 => "h",
            0x10 => "b",
            _ => "dw",
        };
        match self.class() {
            CLS_LD if self.opc == LD_DW_IMM => {
                let hi = next.map_or(0, |n| n.imm as u32 as u64);
                format!("lddw r{d}, {:#x}", (hi << 32) | u64::from(imm as u32))
            }
            CLS_LD => format!("ld (legacy) {:#04x}", self.opc),
            CLS_LDX => format!("ldx{sz} r{d}, [r{s}{off:+}]"),
            CLS_ST => format!("st{sz} [r{d}{off:+}], {imm}"),
            CLS_STX => format!("stx{sz} [r{d}{off:+}], r{s}"),
            CLS_ALU | CLS_ALU64 => {
                let w = if self.class() == CLS_ALU { "32" } else { "" };
                let name = match self.op() {
                    ADD => "add",
                    SUB => "sub",
                    MUL => "mul",
                    DIV => "div",
                    OR => "or",
                    AND => "and",
                    LSH => "lsh",
                    RSH => "rsh",
                    NEG => return format!("neg{w} r{d}"),
                    MOD => "mod",
                    XOR => "xor",
                    MOV => "mov",
                    ARSH => "arsh",
                    END => {
                        let e = if self.reg_src() { "be" } else { "le" };
                        return format!("{e}{imm} r{d}");
                    }
                    _ => "alu?",
                };
                format!("{name}{w} r{d}, {src}")
            }
            CLS_JMP | CLS_JMP32 => {
                let w = if self.class() == CLS_JMP32 { "32" } else { "" };
                let name = match self.op() {
                    JA => return format!("ja {off:+}"),
                    CALL => {
                        return if s == 1 {
                            format!("call local {imm:+}")
                        } else {
                            format!("call {imm}")
                        };
                    }
                    EXIT => return "exit".to_string(),
                    JEQ => "jeq",
                    JGT => "jgt",
                    JGE => "jge",
                    JSET => "jset",
                    JNE => "jne",
                    JSGT => "jsgt",
                    JSGE => "jsge",
                    JLT => "jlt",
                    JLE => "jle",
                    JSLT => "jslt",
                    JSLE => "jsle",
                    _ => "jmp?",
                };
                format!("{name}{w} r{d}, {src}, {off:+}")
            }
            _ => format!("{:#04x}", self.opc),
        }
    }
}
