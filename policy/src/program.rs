//! A verified policy program, shared by every flow that runs it.
//!
//! Contract: a [`Program`] exists only if its bytecode passed [`crate::verifier::verify`] (with
//! the configured budget) and rbpf accepted it with Weir's verifier installed as rbpf's
//! verifier hook. It is immutable afterwards and cheap to clone (an `Arc`); running it needs
//! only `&self`, so one program serves any number of flows on any threads.
//!
//! Programs run in rbpf's interpreter, which also checks every memory access at run time (an
//! out-of-bounds access becomes an error the policy counts). rbpf 0.4.1's two compilers are not
//! used, although the interpreter costs about 130 times the native DCQCN per event: a
//! differential test against the interpreter found both wrong. The x86-64 JIT (`unsafe` to
//! call, no bounds checks) does not zero-extend `mov32` between registers, does not truncate
//! `le16`/`le32`, and panics (an `assert!` in its emitter) once the machine code passes one
//! 4 KiB page, which the DCQCN example does by far. The Cranelift back end compares only the
//! low 32 bits in 64-bit conditional jumps, ignores `le16`, and zero-extends on `mod32` by
//! zero.

use std::fmt;
use std::sync::Arc;

use rbpf::EbpfVmRaw;

use crate::abi::{CONTEXT_SIZE, Context, MAX_PARAMS};
use crate::elf::{ElfError, Object};
use crate::verifier::{self, Report, VerifierConfig, VerifyError};

/// Why a program could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The object file is malformed or not a usable BPF object.
    #[error("{0}")]
    Elf(#[from] ElfError),
    /// The verifier refused the program.
    #[error("verifier: {0}")]
    Verify(#[from] VerifyError),
    /// The program declares more parameter names than the context holds.
    #[error("{0} parameter names declared, at most {MAX_PARAMS} are supported")]
    TooManyParams(usize),
    /// rbpf refused the program (after Weir's verifier accepted it).
    #[error("rbpf: {0}")]
    Vm(String),
    /// A `name=default` entry of `weir_cc_params` whose default is not a decimal `u64`.
    #[error("parameter `{0}`: default `{1}` is not a non-negative integer")]
    BadDefault(String, String),
}

/// A verified program, ready to run. See the module documentation.
#[derive(Clone)]
pub struct Program {
    inner: Arc<Inner>,
}

struct Inner {
    // Declared before `code`, so dropped before the bytes it points into.
    vm: Vm,
    code: Box<[u8]>,
    section: String,
    param_names: Vec<String>,
    /// Defaults declared as `name=value` (0 where none was given).
    param_defaults: Vec<u64>,
    report: Report,
}

/// rbpf's VM over bytecode owned by the same [`Inner`].
struct Vm(EbpfVmRaw<'static>);

// SAFETY: after construction the VM is never mutated: `execute_program` takes `&self`, reads
// the program, the helper table (plain `fn` pointers) and the allowed-memory set, and allocates
// its own stack for each run. The only non-thread-safe part of rbpf's VM type is the optional
// `Box<dyn Any>` of a stack-usage calculator, which Weir never installs (it stays `None`). So
// moving the VM to another thread or running it from several threads at once is sound.
unsafe impl Send for Vm {}
// SAFETY: see `Send` above; all access after construction is through `&self` and read-only.
unsafe impl Sync for Vm {}

impl Program {
    /// Loads the program of an ELF object built with `clang -O2 -target bpf -c` (section
    /// `weir_cc`, parameter names from `weir_cc_params`), with the default verifier settings.
    pub fn from_elf(object: &[u8]) -> Result<Program, LoadError> {
        Program::from_elf_with(object, &VerifierConfig::default())
    }

    /// [`Program::from_elf`] with explicit verifier settings.
    pub fn from_elf_with(object: &[u8], config: &VerifierConfig) -> Result<Program, LoadError> {
        let elf = Object::parse(object)?;
        let found = elf.program()?;
        // Entries are `name` or `name=default` (decimal).
        let mut names = Vec::with_capacity(found.param_names.len());
        let mut defaults = Vec::with_capacity(found.param_names.len());
        for entry in found.param_names {
            match entry.split_once('=') {
                None => {
                    names.push(entry);
                    defaults.push(0);
                }
                Some((name, value)) => {
                    let v = value
                        .trim()
                        .parse::<u64>()
                        .map_err(|_| LoadError::BadDefault(name.to_string(), value.to_string()))?;
                    names.push(name.trim().to_string());
                    defaults.push(v);
                }
            }
        }
        let mut p = Program::build(
            found.code.to_vec(),
            found.section.to_string(),
            names,
            config,
        )?;
        if let Some(inner) = Arc::get_mut(&mut p.inner) {
            inner.param_defaults = defaults;
        }
        Ok(p)
    }

    /// Loads raw bytecode (8 bytes per instruction, little-endian), without parameter names.
    pub fn from_bytecode(code: &[u8], config: &VerifierConfig) -> Result<Program, LoadError> {
        Program::build(code.to_vec(), String::new(), Vec::new(), config)
    }

    fn build(
        code: Vec<u8>,
        section: String,
        param_names: Vec<String>,
        config: &VerifierConfig,
    ) -> Result<Program, LoadError> {
        if param_names.len() > MAX_PARAMS {
            return Err(LoadError::TooManyParams(param_names.len()));
        }
        let report = verifier::verify(&code, config)?;
        let code = code.into_boxed_slice();
        // SAFETY: the bytes live in a heap allocation owned by the `Inner` that also owns the
        // VM; they are never modified or moved, and `Inner` drops the VM first (field order),
        // so the VM never sees them freed.
        let prog: &'static [u8] = unsafe { std::slice::from_raw_parts(code.as_ptr(), code.len()) };
        let vm_err = |e: std::io::Error| LoadError::Vm(e.to_string());
        let mut vm = EbpfVmRaw::new(None).map_err(vm_err)?;
        vm.set_verifier(verifier::rbpf_hook).map_err(vm_err)?;
        for helper in verifier::HELPERS {
            let f = match helper.id {
                1 => muldiv,
                _ => {
                    return Err(LoadError::Vm(format!(
                        "no implementation of {}",
                        helper.name
                    )));
                }
            };
            vm.register_helper(helper.id, f).map_err(vm_err)?;
        }
        vm.set_program(prog).map_err(vm_err)?;
        Ok(Program {
            inner: Arc::new(Inner {
                vm: Vm(vm),
                code,
                param_defaults: vec![0; param_names.len()],
                section,
                param_names,
                report,
            }),
        })
    }

    /// What the verifier found (size, longest path, stack, helpers).
    pub fn report(&self) -> &Report {
        &self.inner.report
    }

    /// The bytecode.
    pub fn code(&self) -> &[u8] {
        &self.inner.code
    }

    /// ELF section the program came from (empty for raw bytecode).
    pub fn section(&self) -> &str {
        &self.inner.section
    }

    /// Parameter names the program declares, in index order.
    pub fn param_names(&self) -> &[String] {
        &self.inner.param_names
    }

    /// Defaults the program declares (`WEIR_CC_PARAM_NAMES("name=value\0…")`), in index
    /// order; 0 for a parameter declared without one.
    pub fn param_defaults(&self) -> &[u64] {
        &self.inner.param_defaults
    }

    /// Index of the parameter called `name`.
    pub fn param_index(&self, name: &str) -> Option<usize> {
        self.inner.param_names.iter().position(|n| n == name)
    }

    /// Runs the program once on `ctx`: its return value, or rbpf's error.
    pub(crate) fn run(&self, ctx: &mut Context) -> Result<u64, rbpf::lib::Error> {
        let ptr = (ctx as *mut Context).cast::<u8>();
        // SAFETY: `ctx` is an exclusively borrowed, initialised `repr(C)` value of exactly
        // CONTEXT_SIZE bytes with no implicit padding (abi.rs asserts the layout), so viewing it
        // as bytes is valid. The VM's lifetime parameter forces `'static` on the slice, but the
        // slice is used only for this call: rbpf keeps no reference to it after returning.
        let mem: &'static mut [u8] = unsafe { std::slice::from_raw_parts_mut(ptr, CONTEXT_SIZE) };
        self.inner.vm.0.execute_program(mem)
    }
}

impl fmt::Debug for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Program")
            .field("section", &self.inner.section)
            .field("report", &self.inner.report)
            .field("param_names", &self.inner.param_names)
            .finish()
    }
}

/// Helper 1, `weir_cc_muldiv(a, b, d)`: ⌊a·b/d⌋ in 128 bits, saturated; `d == 0` gives
/// `u64::MAX`.
fn muldiv(a: u64, b: u64, d: u64, _: u64, _: u64) -> u64 {
    if d == 0 {
        return u64::MAX;
    }
    u64::try_from(u128::from(a) * u128::from(b) / u128::from(d)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn muldiv_saturates() {
        assert_eq!(muldiv(6, 7, 2, 0, 0), 21);
        assert_eq!(muldiv(u64::MAX, u64::MAX, u64::MAX, 0, 0), u64::MAX);
        assert_eq!(muldiv(u64::MAX, 2, 1, 0, 0), u64::MAX);
        assert_eq!(muldiv(1, 1, 0, 0, 0), u64::MAX);
        assert_eq!(muldiv(1 << 40, 1 << 40, 1 << 30, 0, 0), 1 << 50);
    }
}
