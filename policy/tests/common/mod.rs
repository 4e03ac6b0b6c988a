//! Shared test helpers: compiling C policies with clang at test time, and raw bytecode.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use weir_policy::{Engine, Program, VerifierConfig};

/// `examples/cc` in the repository.
pub(crate) fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cc")
}

/// `policy/tests/bpf` (test-only programs, several of them deliberately bad).
pub(crate) fn test_programs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bpf")
}

/// Returns from the calling test, which then passes as skipped, when clang is missing (see
/// [`skip_without_clang`]). Put it first in every test that compiles C.
macro_rules! require_clang {
    () => {
        if $crate::common::skip_without_clang() {
            return;
        }
    };
}

/// Why clang cannot compile for BPF here, or `None` when it can. Probed once per process.
pub(crate) fn clang_missing() -> Option<String> {
    static PROBE: OnceLock<Option<String>> = OnceLock::new();
    PROBE
        .get_or_init(|| match Command::new("clang").arg("--version").output() {
            Ok(o) if o.status.success() => None,
            Ok(o) => Some(format!(
                "`clang --version` failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Some(format!("clang not found ({e})")),
        })
        .clone()
}

/// `true` (after reporting the calling test as skipped, with the reason and the install
/// command) when clang is missing. The line goes straight to the process's stderr, past
/// libtest's capture, so `cargo test` shows it and `scripts/test.sh` lists it at the end.
pub(crate) fn skip_without_clang() -> bool {
    let Some(why) = clang_missing() else {
        return false;
    };
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a weir-policy test");
    // One write of a whole line, starting on a fresh one: libtest's own "test … ok" output
    // shares the terminal.
    let line = format!(
        "\nSKIPPED weir-policy {test}: {why}; it compiles eBPF policies with \
         `clang -target bpf`; install: apt-get install -y clang\n"
    );
    let _ = std::io::stderr().write_all(line.as_bytes());
    true
}

/// Compiles `source` with `clang -O2 -target bpf -c` into the test's scratch directory and
/// returns the object's bytes. Panics (the test fails) if clang refuses; tests that call it
/// start with [`require_clang!`], so a missing clang skips them instead.
pub(crate) fn compile(source: &Path) -> Vec<u8> {
    compile_with(source, &[])
}

/// [`compile`] with extra clang arguments (e.g. `-D` switches).
pub(crate) fn compile_with(source: &Path, extra: &[&str]) -> Vec<u8> {
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("weir-policy-bpf");
    std::fs::create_dir_all(&out_dir).expect("scratch directory");
    let stem = source
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("prog");
    let tag: String = extra
        .iter()
        .flat_map(|a| a.chars())
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let object = out_dir.join(format!("{stem}{tag}.o"));
    let result = Command::new("clang")
        .args(["-O2", "-g0", "-target", "bpf", "-Wall", "-Werror", "-c"])
        .arg("-I")
        .arg(examples_dir())
        .args(extra)
        .arg(source)
        .arg("-o")
        .arg(&object)
        .output();
    let output = match result {
        Ok(o) => o,
        Err(e) => panic!(
            "cannot run clang ({e}): these tests compile the eBPF policies in examples/cc with \
             `clang -O2 -target bpf`; install clang (Debian: `apt-get install -y clang`; \
             `scripts/test.sh` installs it when run as root)"
        ),
    };
    assert!(
        output.status.success(),
        "clang failed on {}:\n{}",
        source.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read(&object).expect("compiled object")
}

/// Compiles and loads `examples/cc/{name}.c`.
pub(crate) fn example(name: &str) -> Program {
    let object = compile(&examples_dir().join(format!("{name}.c")));
    Program::from_elf(&object).unwrap_or_else(|e| panic!("{name}.c: {e}"))
}

/// Compiles `policy/tests/bpf/{name}.c` and tries to load it.
pub(crate) fn load_test_program(name: &str) -> Result<Program, weir_policy::LoadError> {
    let object = compile(&test_programs_dir().join(format!("{name}.c")));
    Program::from_elf(&object)
}

/// Assembles rbpf assembler text and loads it as raw bytecode.
pub(crate) fn asm(text: &str) -> Result<Program, weir_policy::LoadError> {
    Program::from_bytecode(&bytecode(text), &VerifierConfig::default())
}

/// Assembles rbpf assembler text.
pub(crate) fn bytecode(text: &str) -> Vec<u8> {
    rbpf::assembler::assemble(text).unwrap_or_else(|e| panic!("assembler: {e}\n{text}"))
}

/// `program` on each engine worth comparing: the unchecked JIT (where there is one) and rbpf's
/// interpreter.
pub(crate) fn engines(program: &Program) -> Vec<Program> {
    let mut all = Vec::new();
    if cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        all.push(
            program
                .with_engine(Engine::Jit)
                .expect("the JIT compiles the program"),
        );
    }
    all.push(
        program
            .with_engine(Engine::Interpreter)
            .expect("the interpreter loads the program"),
    );
    all
}

/// SplitMix64: a small seeded generator, so every sequence is reproducible from its seed.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    /// The next 64 random bits.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (0 when `n` is 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}
