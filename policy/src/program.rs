//! A verified policy program, shared by every flow that runs it.
//!
//! Contract: a [`Program`] exists only if its bytecode passed [`crate::verifier::verify`] (with
//! the configured budget) and rbpf accepted it with Weir's verifier installed as rbpf's
//! verifier hook. It is immutable afterwards and cheap to clone (an `Arc`); running it needs
//! only `&self`, so one program serves any number of flows on any threads.
//!
//! Programs run on one of two [`Engine`]s. The default on x86-64 Linux is Weir's own JIT
//! ([`crate::jit`]), which emits native code for exactly the instructions the verifier accepts
//! and relies on the verifier's proof instead of run-time bounds checks (in debug builds it
//! re-checks every access, see [`Engine::JitChecked`]). Elsewhere, and on request, programs run
//! in rbpf's interpreter, which checks every memory access at run time (an out-of-bounds access
//! becomes an error the policy counts) and costs about 130 times the native DCQCN per event.
//! The JIT's results equal the interpreter's bit for bit (pinned by differential tests).
//! rbpf 0.4.1's two compilers are not used: a differential test against the interpreter found
//! both wrong. The x86-64 JIT (`unsafe` to
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
    /// The JIT could not compile the program (or is not available on this target).
    #[error("jit: {0}")]
    Jit(String),
}

/// How a [`Program`] is executed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// Native x86-64 code from Weir's JIT, without run-time bounds checks (the verifier proved
    /// every access). x86-64 Linux only.
    Jit,
    /// The JIT with every memory access re-checked against the verifier's bounds; a violation
    /// (a verifier bug) is a fault instead of a stray access. The default in debug builds.
    JitChecked,
    /// rbpf's interpreter, with its own run-time memory checks.
    Interpreter,
}

impl Default for Engine {
    /// [`Engine::Jit`] on x86-64 Linux ([`Engine::JitChecked`] in debug builds), else
    /// [`Engine::Interpreter`].
    fn default() -> Self {
        if cfg!(all(target_arch = "x86_64", target_os = "linux")) {
            if cfg!(debug_assertions) {
                Engine::JitChecked
            } else {
                Engine::Jit
            }
        } else {
            Engine::Interpreter
        }
    }
}

/// A verified program, ready to run. See the module documentation.
#[derive(Clone)]
pub struct Program {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    jit: Option<crate::jit::JitCode>,
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
        let mut p = Program::build_default(
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
        Program::build_default(code.to_vec(), String::new(), Vec::new(), config)
    }

    /// The same verified program on another engine (compiled afresh; parameter names and
    /// defaults carried over).
    pub fn with_engine(&self, engine: Engine) -> Result<Program, LoadError> {
        let config = VerifierConfig {
            max_insns: verifier::HARD_MAX_INSNS,
        };
        let mut p = Program::build(
            self.inner.code.to_vec(),
            self.inner.section.clone(),
            self.inner.param_names.clone(),
            &config,
            engine,
        )?;
        if let Some(inner) = Arc::get_mut(&mut p.inner) {
            inner.param_defaults = self.inner.param_defaults.clone();
        }
        Ok(p)
    }

    /// The engine this program runs on.
    pub fn engine(&self) -> Engine {
        self.inner.engine
    }

    /// Bytes of native code (0 on the interpreter).
    pub fn native_code_len(&self) -> usize {
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        if let Some(j) = &self.inner.jit {
            return j.len();
        }
        0
    }

    /// [`Program::build`] on [`Engine::default`], falling back to the interpreter when the
    /// JIT cannot get executable memory (a system that forbids it): slower, never refused.
    fn build_default(
        code: Vec<u8>,
        section: String,
        param_names: Vec<String>,
        config: &VerifierConfig,
    ) -> Result<Program, LoadError> {
        let engine = Engine::default();
        if engine == Engine::Interpreter {
            return Program::build(code, section, param_names, config, engine);
        }
        match Program::build(
            code.clone(),
            section.clone(),
            param_names.clone(),
            config,
            engine,
        ) {
            Err(LoadError::Jit(_)) => {
                Program::build(code, section, param_names, config, Engine::Interpreter)
            }
            other => other,
        }
    }

    fn build(
        code: Vec<u8>,
        section: String,
        param_names: Vec<String>,
        config: &VerifierConfig,
        engine: Engine,
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
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        let jit = {
            use crate::jit::{Checks, HelperFn, compile};
            let checks = match engine {
                Engine::Jit => Some(Checks::None),
                Engine::JitChecked => Some(Checks::Bounds),
                Engine::Interpreter => None,
            };
            let helper = |id: u32| -> Option<HelperFn> {
                match id {
                    1 => Some(muldiv_sysv),
                    _ => None,
                }
            };
            match checks {
                Some(c) => Some(
                    compile(&code, report.stack_bytes, helper, c)
                        .map_err(|e| LoadError::Jit(e.to_string()))?,
                ),
                None => None,
            }
        };
        #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
        if engine != Engine::Interpreter {
            return Err(LoadError::Jit(
                "the JIT needs x86-64 Linux; use Engine::Interpreter".into(),
            ));
        }
        Ok(Program {
            inner: Arc::new(Inner {
                engine,
                #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
                jit,
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

    /// Runs the program once on `ctx` with its engine: its return value, or the engine's
    /// error (an rbpf run-time error, or a failed bounds check of [`Engine::JitChecked`]).
    pub fn run(&self, ctx: &mut Context) -> Result<u64, rbpf::lib::Error> {
        let ptr = (ctx as *mut Context).cast::<u8>();
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        if let Some(jit) = &self.inner.jit {
            // SAFETY: `ptr` comes from an exclusive borrow of a `Context`, CONTEXT_SIZE bytes
            // (abi.rs asserts the layout), valid for reads and writes for the whole call, and
            // the code was compiled from this program's verified bytecode.
            return unsafe { jit.run(ptr) };
        }
        // SAFETY: `ctx` is an exclusively borrowed, initialised `repr(C)` value of exactly
        // CONTEXT_SIZE bytes with no implicit padding (abi.rs asserts the layout), so viewing it
        // as bytes is valid. The VM's lifetime parameter forces `'static` on the slice, but the
        // slice is used only for this call: rbpf keeps no reference to it after returning.
        let mem: &'static mut [u8] = unsafe { std::slice::from_raw_parts_mut(ptr, CONTEXT_SIZE) };
        // rbpf's interpreter computes `neg64` as `-(x as i64)`, which panics on i64::MIN where
        // overflow checks are on (debug and test builds): a verified program must not take
        // the engine down, so a panic in the interpreter is an error like any other fault.
        let vm = &self.inner.vm.0;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| vm.execute_program(mem)))
            .unwrap_or_else(|_| {
                Err(rbpf::lib::Error::other(
                    "the interpreter panicked (rbpf arithmetic overflow)",
                ))
            })
    }
}

impl fmt::Debug for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Program")
            .field("engine", &self.inner.engine)
            .field("section", &self.inner.section)
            .field("report", &self.inner.report)
            .field("param_names", &self.inner.param_names)
            .finish()
    }
}

/// [`muldiv`] with the ABI the JIT calls (the same function the interpreter registers).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
extern "sysv64" fn muldiv_sysv(a: u64, b: u64, d: u64, x: u64, y: u64) -> u64 {
    muldiv(a, b, d, x, y)
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
