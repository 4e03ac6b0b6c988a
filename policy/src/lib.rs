//! Run-time loadable congestion-control policies: eBPF programs, written in restricted C
//! against `examples/cc/weir_cc.h`, compiled with `clang -O2 -target bpf -c`, checked by
//! Weir's own verifier and run as native code from Weir's x86-64 JIT (or by rbpf's
//! interpreter, [`Engine`]) behind the
//! [`weir_congestion::CongestionControl`] trait.
//!
//! Contract: nothing a program does can crash or stall the engine. Loading refuses any program
//! the [`verifier`] cannot prove safe (with a message naming the instruction and the reason);
//! a loaded [`Program`] is immutable and shared by all flows; each flow's [`BpfPolicy`] runs it
//! once per event on the flow's own [`abi::Context`], treats run-time errors as counted faults
//! that keep the last good limits, and sanitises every output. Parameters are hot-reloaded
//! through a shared [`ParamHandle`]. Like every controller, a policy is sans-IO: time comes in
//! with each event.
//!
//! Pieces: [`abi`] (the context layout, the program ABI), [`elf`] (a bounds-checked reader for
//! the object files), [`verifier`], [`Program`], [`BpfPolicy`] and [`faults`] (recording a
//! run's run-time faults per hook and per flow).
#![warn(missing_docs)]

pub mod abi;
pub mod elf;
pub mod faults;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod insn;
mod jit;
mod policy;
mod program;
pub mod twins;
pub mod verifier;

pub use policy::{BpfPolicy, MAX_WINDOW, ParamError, ParamHandle, PolicyStats};
pub use program::{Engine, LoadError, Program};
pub use verifier::{Report, VerifierConfig, VerifyError};
