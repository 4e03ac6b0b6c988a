//! A minimal, bounds-checked reader for the ELF objects `clang -O2 -target bpf -c` writes:
//! just enough to find a program's code and its parameter names.
//!
//! Contract: [`Object::parse`] accepts only 64-bit little-endian ELF files for the BPF machine
//! and never panics or reads out of bounds, whatever the bytes: every offset and size taken from
//! the file is checked against the file's length before use. [`Object::program`] returns the
//! code of the `weir_cc` section (or of the only non-empty executable section) and refuses code
//! that needs relocations (global data, maps, calls to non-inlined functions), which Weir's
//! loader does not perform.

use std::string::ToString;

use core::fmt;

/// Section holding the program (`WEIR_CC_PROGRAM` in `weir_cc.h`).
pub const PROGRAM_SECTION: &str = "weir_cc";
/// Section holding the NUL-separated parameter names (`WEIR_CC_PARAM_NAMES`).
pub const PARAMS_SECTION: &str = "weir_cc_params";

/// Why an object file was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfError(pub String);

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ELF: {}", self.0)
    }
}

impl std::error::Error for ElfError {}

/// One section of an object.
#[derive(Clone, Copy, Debug)]
pub struct Section<'a> {
    /// Name (from the section-name string table).
    pub name: &'a str,
    /// `sh_type`.
    pub kind: u32,
    /// `sh_flags`.
    pub flags: u64,
    /// `sh_info` (for relocation sections: the section they apply to).
    pub info: u32,
    /// Contents (empty for `SHT_NOBITS`).
    pub data: &'a [u8],
}

/// A parsed object file.
#[derive(Clone, Debug)]
pub struct Object<'a> {
    sections: Vec<Section<'a>>,
}

/// The program found in an object.
#[derive(Clone, Debug)]
pub struct ProgramCode<'a> {
    /// Section it came from.
    pub section: &'a str,
    /// Bytecode (a multiple of 8 bytes is not checked here; the verifier does).
    pub code: &'a [u8],
    /// Parameter names in index order (empty if the object declares none).
    pub param_names: Vec<String>,
}

impl<'a> Object<'a> {
    /// Parses the section table of `data`.
    pub fn parse(data: &'a [u8]) -> Result<Self, ElfError> {
        if data.len() < EHDR_SIZE || data[..4] != [0x7f, b'E', b'L', b'F'] {
            return Err(err("not an ELF file"));
        }
        if data[4] != 2 || data[5] != 1 {
            return Err(err(
                "not a 64-bit little-endian object (compile with -target bpf)",
            ));
        }
        let machine = u16_at(data, 18)?;
        if machine != EM_BPF {
            return Err(ElfError(format!(
                "machine {machine} is not BPF ({EM_BPF}): compile with `clang -target bpf`"
            )));
        }
        let shoff = u64_at(data, 40)?;
        let shentsize = usize::from(u16_at(data, 58)?);
        let shnum = usize::from(u16_at(data, 60)?);
        let shstrndx = usize::from(u16_at(data, 62)?);
        if shnum == 0 {
            return Err(err("no section table"));
        }
        if shentsize < SHDR_SIZE {
            return Err(err("section header entries too small"));
        }
        let raw = (0..shnum)
            .map(|i| {
                let at = usize::try_from(shoff)
                    .ok()
                    .and_then(|o| o.checked_add(i.checked_mul(shentsize)?))
                    .ok_or_else(|| err("section table out of range"))?;
                RawSection::read(data, at)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let names = raw
            .get(shstrndx)
            .ok_or_else(|| err("section-name table index out of range"))?
            .contents(data)?;
        let sections = raw
            .iter()
            .map(|s| {
                Ok(Section {
                    name: c_str(names, s.name)?,
                    kind: s.kind,
                    flags: s.flags,
                    info: s.info,
                    data: s.contents(data)?,
                })
            })
            .collect::<Result<Vec<_>, ElfError>>()?;
        Ok(Object { sections })
    }

    /// All sections, in file order.
    pub fn sections(&self) -> &[Section<'a>] {
        &self.sections
    }

    /// The program: the `weir_cc` section, or else the only non-empty executable section; with
    /// the parameter names of the `weir_cc_params` section.
    pub fn program(&self) -> Result<ProgramCode<'a>, ElfError> {
        let index = match self.sections.iter().position(|s| s.name == PROGRAM_SECTION) {
            Some(i) => i,
            None => {
                let code: Vec<usize> = (0..self.sections.len())
                    .filter(|&i| {
                        let s = &self.sections[i];
                        s.flags & SHF_EXECINSTR != 0 && !s.data.is_empty()
                    })
                    .collect();
                match code[..] {
                    [i] => i,
                    [] => {
                        return Err(err("no program: put the entry point in section `weir_cc` \
                             (WEIR_CC_PROGRAM in weir_cc.h)"));
                    }
                    _ => {
                        let names: Vec<&str> =
                            code.iter().map(|&i| self.sections[i].name).collect();
                        return Err(ElfError(format!(
                            "several code sections ({}) and none named `weir_cc`",
                            names.join(", ")
                        )));
                    }
                }
            }
        };
        let section = &self.sections[index];
        for s in &self.sections {
            let relocates = matches!(s.kind, SHT_REL | SHT_RELA)
                && usize::try_from(s.info).is_ok_and(|i| i == index)
                && !s.data.is_empty();
            if relocates {
                let entry = if s.kind == SHT_REL { 16 } else { 24 };
                return Err(ElfError(format!(
                    "the program needs {} relocation(s) (section `{}`): it refers to global or \
                     static data, maps, or functions that were not inlined; keep constants in \
                     code and data in `state`, and mark functions `static __always_inline`",
                    s.data.len() / entry,
                    s.name
                )));
            }
        }
        let param_names = match self.sections.iter().find(|s| s.name == PARAMS_SECTION) {
            Some(s) => s
                .data
                .split(|&b| b == 0)
                .filter(|n| !n.is_empty())
                .map(|n| {
                    core::str::from_utf8(n)
                        .map(ToString::to_string)
                        .map_err(|_| err("a parameter name is not UTF-8"))
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        Ok(ProgramCode {
            section: section.name,
            code: section.data,
            param_names,
        })
    }
}

/// A section header as stored.
struct RawSection {
    name: u32,
    kind: u32,
    flags: u64,
    offset: u64,
    size: u64,
    info: u32,
}

impl RawSection {
    fn read(data: &[u8], at: usize) -> Result<Self, ElfError> {
        Ok(RawSection {
            name: u32_at(data, at)?,
            kind: u32_at(data, at.saturating_add(4))?,
            flags: u64_at(data, at.saturating_add(8))?,
            offset: u64_at(data, at.saturating_add(24))?,
            size: u64_at(data, at.saturating_add(32))?,
            info: u32_at(data, at.saturating_add(44))?,
        })
    }

    fn contents<'a>(&self, data: &'a [u8]) -> Result<&'a [u8], ElfError> {
        if self.kind == SHT_NOBITS {
            return Ok(&[]);
        }
        let start = usize::try_from(self.offset).map_err(|_| err("section out of range"))?;
        let len = usize::try_from(self.size).map_err(|_| err("section out of range"))?;
        start
            .checked_add(len)
            .and_then(|end| data.get(start..end))
            .ok_or_else(|| err("section extends past the end of the file"))
    }
}

fn err(msg: &str) -> ElfError {
    ElfError(msg.to_string())
}

fn bytes<const N: usize>(data: &[u8], at: usize) -> Result<[u8; N], ElfError> {
    at.checked_add(N)
        .and_then(|end| data.get(at..end))
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| err("truncated file"))
}

fn u16_at(data: &[u8], at: usize) -> Result<u16, ElfError> {
    bytes(data, at).map(u16::from_le_bytes)
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, ElfError> {
    bytes(data, at).map(u32::from_le_bytes)
}

fn u64_at(data: &[u8], at: usize) -> Result<u64, ElfError> {
    bytes(data, at).map(u64::from_le_bytes)
}

/// The NUL-terminated string at `offset` of a string table.
fn c_str(table: &[u8], offset: u32) -> Result<&str, ElfError> {
    let rest = usize::try_from(offset)
        .ok()
        .and_then(|o| table.get(o..))
        .ok_or_else(|| err("section name out of range"))?;
    let end = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| err("unterminated section name"))?;
    core::str::from_utf8(&rest[..end]).map_err(|_| err("section name is not UTF-8"))
}

const EHDR_SIZE: usize = 64;
const SHDR_SIZE: usize = 64;
const EM_BPF: u16 = 247;
const SHT_RELA: u32 = 4;
const SHT_NOBITS: u32 = 8;
const SHT_REL: u32 = 9;
const SHF_EXECINSTR: u64 = 0x4;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_garbage_without_panicking() {
        assert!(Object::parse(b"").is_err());
        assert!(Object::parse(b"\x7fELF").is_err());
        let mut hdr = [0u8; 64];
        hdr[..4].copy_from_slice(b"\x7fELF");
        hdr[4] = 2;
        hdr[5] = 1;
        assert!(Object::parse(&hdr).unwrap_err().0.contains("machine"));
        hdr[18] = 247;
        assert!(
            Object::parse(&hdr)
                .unwrap_err()
                .0
                .contains("no section table")
        );
        hdr[60] = 3; // three sections
        hdr[58] = 64;
        hdr[40..48].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Object::parse(&hdr).is_err());
        hdr[40..48].copy_from_slice(&40u64.to_le_bytes()); // overlaps the header, truncated
        assert!(Object::parse(&hdr).is_err());
        // Every truncation of a plausible header is refused cleanly.
        for n in 0..hdr.len() {
            let _ = Object::parse(&hdr[..n]);
        }
    }
}
