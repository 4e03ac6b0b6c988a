//! Shared helpers of the communicator tests: in-process worlds (one thread per rank,
//! bootstrapping over loopback TCP) and typed test data.
#![allow(dead_code, clippy::disallowed_methods)]

use std::net::TcpListener;

use weir_comm::{CommOptions, Communicator, Element, ReduceOp};

/// A free loopback address for a rendezvous.
pub(crate) fn free_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = l.local_addr().expect("addr");
    drop(l);
    a.to_string()
}

/// Runs `f` on `n` ranks, each a thread with its own communicator.
pub(crate) fn world<R: Send>(
    n: usize,
    opts: &CommOptions,
    f: impl Fn(Communicator) -> R + Sync,
) -> Vec<R> {
    let addr = free_addr();
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|r| {
                let (addr, opts, f) = (&addr, opts.clone(), &f);
                s.spawn(move || {
                    let c = Communicator::new(r, n, addr, &opts)
                        .unwrap_or_else(|e| panic!("rank {r}: {e}"));
                    f(c)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("rank thread panicked"))
            .collect()
    })
}

/// Options for a world where every rank pretends to be on host `r / per_host` (shared memory
/// inside a "host", the transport between them); `per_host == 0` keeps the real identity.
pub(crate) fn opts(shm: bool) -> CommOptions {
    let mut o = CommOptions::default();
    o.shm = shm;
    o.timeout = std::time::Duration::from_secs(60);
    o
}

/// Test values: small integers, so every order of combining gives the same result.
pub(crate) trait Small: Element {
    fn small(v: u8) -> Self;
}

macro_rules! small {
    ($($t:ty),*) => {$(
        impl Small for $t {
            fn small(v: u8) -> Self {
                v as $t
            }
        }
    )*};
}
small!(f32, f64, i8, u8, i32, u32, i64, u64);

impl Small for half::f16 {
    fn small(v: u8) -> Self {
        half::f16::from_f32(f32::from(v))
    }
}

impl Small for half::bf16 {
    fn small(v: u8) -> Self {
        half::bf16::from_f32(f32::from(v))
    }
}

/// Rank `r`'s input element `i` for `op` (products stay small: factors are 1 or 2).
pub(crate) fn input<T: Small>(r: usize, i: usize, op: ReduceOp) -> T {
    let v = (r * 7 + i * 3) % 5;
    match op {
        ReduceOp::Prod => T::small(1 + u8::from(v.is_multiple_of(4))),
        _ => T::small(v as u8),
    }
}

/// The reduction of every rank's input `i`, combined with the kernels in rank order.
pub(crate) fn reduced<T: Small>(n: usize, len: usize, op: ReduceOp) -> Vec<T> {
    let mut acc: Vec<T> = (0..len).map(|i| input(0, i, op)).collect();
    for r in 1..n {
        let x: Vec<T> = (0..len).map(|i| input(r, i, op)).collect();
        T::combine(op, &mut acc, &x);
    }
    if op == ReduceOp::Avg {
        T::divide(&mut acc, n);
    }
    acc
}
