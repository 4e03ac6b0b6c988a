//! Reduction kernel throughput: `acc += src` (and friends) on buffers that fit in L1/L2.
//! Throughput is reported as bytes of `acc` processed per second.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use half::{bf16, f16};
use weir_collectives::{Element, ReduceOp};

fn bench_type<T: Element>(c: &mut Criterion, name: &str, make: fn(usize) -> T) {
    let mut g = c.benchmark_group(format!("reduce/{name}"));
    for bytes in [16 << 10, 256 << 10] {
        let n = bytes / size_of::<T>();
        let src: Vec<T> = (0..n).map(make).collect();
        let mut acc: Vec<T> = (0..n).map(make).collect();
        g.throughput(Throughput::Bytes(bytes as u64));
        for op in [ReduceOp::Sum, ReduceOp::Max] {
            g.bench_with_input(
                BenchmarkId::new(format!("{op:?}"), bytes),
                &bytes,
                |b, _| {
                    b.iter(|| {
                        T::combine(
                            op,
                            std::hint::black_box(&mut acc),
                            std::hint::black_box(&src),
                        )
                    })
                },
            );
        }
    }
    g.finish();
}

fn kernels(c: &mut Criterion) {
    bench_type::<f32>(c, "f32", |i| (i % 7) as f32 * 1e-3);
    bench_type::<f64>(c, "f64", |i| (i % 7) as f64 * 1e-3);
    bench_type::<i32>(c, "i32", |i| (i % 7) as i32);
    bench_type::<u8>(c, "u8", |i| (i % 7) as u8);
    bench_type::<bf16>(c, "bf16", |i| bf16::from_f32((i % 7) as f32));
    bench_type::<f16>(c, "f16", |i| f16::from_f32((i % 7) as f32));
}

criterion_group!(benches, kernels);
criterion_main!(benches);
