//! Element-wise reduction kernels: `acc[i] = op(acc[i], src[i])`.
//!
//! Contract: kernels never panic and never allocate. The inner loop is a zip over the two
//! slices (no bounds checks, no data-dependent branches: the f16/bf16 conversions are written
//! with selects), so LLVM emits packed SIMD for every type and operator; `benches/reduce.rs`
//! measures it. Floating-point
//! reductions are element-wise (no reassociation across elements), so results are bit-identical
//! whatever the vector width. `f16`/`bf16` combine each pair in f32 and round once per combine.
//! Integer `Sum`/`Prod` wrap; `Avg` is `Sum` here and [`Element::divide`] at the end (integer
//! division truncates toward zero).

use half::{bf16, f16};

use crate::op::{DType, ReduceOp};

/// The two slices given to [`reduce_into`] have different lengths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LengthMismatch {
    /// Length of the accumulator.
    pub acc: usize,
    /// Length of the source.
    pub src: usize,
}

/// A type the kernels can reduce.
pub trait Element: Copy + Default + PartialEq + core::fmt::Debug + Send + Sync + 'static {
    /// The tag of this type.
    const DTYPE: DType;
    /// `acc[i] = op(acc[i], src[i])` for `i < min(acc.len(), src.len())`; `Avg` combines as
    /// `Sum`.
    fn combine(op: ReduceOp, acc: &mut [Self], src: &[Self]);
    /// Divides every element by `n` (the `Avg` finish step); `n == 0` leaves `buf` unchanged.
    fn divide(buf: &mut [Self], n: usize);
}

/// `acc[i] = op(acc[i], src[i])` for every `i`; refuses slices of different lengths.
pub fn reduce_into<T: Element>(
    op: ReduceOp,
    acc: &mut [T],
    src: &[T],
) -> Result<(), LengthMismatch> {
    if acc.len() != src.len() {
        return Err(LengthMismatch {
            acc: acc.len(),
            src: src.len(),
        });
    }
    T::combine(op, acc, src);
    Ok(())
}

/// Applies `f` element-wise. A zip over two slices has no bounds checks, and LLVM vectorises
/// it at the target's full width. (An explicit `as_chunks::<16>` block loop was 7× slower
/// with AVX-512: LLVM vectorised the *outer* loop with gathers and scatters.)
#[inline(always)]
fn zip_apply<T: Copy>(acc: &mut [T], src: &[T], f: impl Fn(T, T) -> T) {
    for (a, s) in acc.iter_mut().zip(src) {
        *a = f(*a, *s);
    }
}

macro_rules! float_element {
    ($t:ty, $tag:expr) => {
        impl Element for $t {
            const DTYPE: DType = $tag;
            fn combine(op: ReduceOp, acc: &mut [Self], src: &[Self]) {
                match op {
                    ReduceOp::Avg | ReduceOp::Sum => zip_apply(acc, src, |a, b| a + b),
                    ReduceOp::Prod => zip_apply(acc, src, |a, b| a * b),
                    ReduceOp::Min => zip_apply(acc, src, <$t>::min),
                    ReduceOp::Max => zip_apply(acc, src, <$t>::max),
                }
            }
            fn divide(buf: &mut [Self], n: usize) {
                if n == 0 {
                    return;
                }
                let d = n as $t;
                for x in buf {
                    *x /= d;
                }
            }
        }
    };
}

float_element!(f32, DType::F32);
float_element!(f64, DType::F64);

macro_rules! int_element {
    ($t:ty, $tag:expr) => {
        impl Element for $t {
            const DTYPE: DType = $tag;
            fn combine(op: ReduceOp, acc: &mut [Self], src: &[Self]) {
                match op {
                    ReduceOp::Avg | ReduceOp::Sum => zip_apply(acc, src, <$t>::wrapping_add),
                    ReduceOp::Prod => zip_apply(acc, src, <$t>::wrapping_mul),
                    ReduceOp::Min => zip_apply(acc, src, Ord::min),
                    ReduceOp::Max => zip_apply(acc, src, Ord::max),
                }
            }
            fn divide(buf: &mut [Self], n: usize) {
                if n == 0 {
                    return;
                }
                // Truncating division in i128, which holds every value of every integer type
                // and every `usize`; the quotient's magnitude is at most the dividend's, so the
                // narrowing cast is exact.
                let d = n as i128;
                for x in buf {
                    *x = (*x as i128 / d) as $t;
                }
            }
        }
    };
}

int_element!(i8, DType::I8);
int_element!(u8, DType::U8);
int_element!(i32, DType::I32);
int_element!(u32, DType::U32);
int_element!(i64, DType::I64);
int_element!(u64, DType::U64);

/// Implements [`Element`] for a 16-bit float type that combines in f32: widen each pair with
/// `$widen`, apply the f32 operator, round once with `$narrow`. The conversions are
/// branch-free (selects), so `zip_apply` still vectorises.
macro_rules! half_element {
    ($t:ty, $tag:expr, $widen:ident, $narrow:ident) => {
        impl Element for $t {
            const DTYPE: DType = $tag;
            fn combine(op: ReduceOp, acc: &mut [Self], src: &[Self]) {
                /// Lifts an f32 operator to this type; generic so it inlines.
                #[inline(always)]
                fn via(f: impl Fn(f32, f32) -> f32) -> impl Fn($t, $t) -> $t {
                    move |a, b| $narrow(f($widen(a), $widen(b)))
                }
                match op {
                    ReduceOp::Avg | ReduceOp::Sum => zip_apply(acc, src, via(|a, b| a + b)),
                    ReduceOp::Prod => zip_apply(acc, src, via(|a, b| a * b)),
                    ReduceOp::Min => zip_apply(acc, src, via(f32::min)),
                    ReduceOp::Max => zip_apply(acc, src, via(f32::max)),
                }
            }
            fn divide(buf: &mut [Self], n: usize) {
                if n == 0 {
                    return;
                }
                let d = n as f32;
                for x in buf {
                    *x = $narrow($widen(*x) / d);
                }
            }
        }
    };
}

half_element!(f16, DType::F16, f16_to_f32, f32_to_f16);
half_element!(bf16, DType::Bf16, bf16_to_f32, f32_to_bf16);

/// Exact f16 → f32 without branches (F. Giesen, "half_to_float", public domain): shift the
/// exponent and mantissa into place, rebias, then fix Inf/NaN and subnormals by selects.
#[inline(always)]
fn f16_to_f32(h: f16) -> f32 {
    const MAGIC: f32 = f32::from_bits(113 << 23);
    const SHIFTED_EXP: u32 = 0x7c00 << 13;
    let h = u32::from(h.to_bits());
    let o = ((h & 0x7fff) << 13) + ((127 - 15) << 23);
    let exp = SHIFTED_EXP & ((h & 0x7fff) << 13);
    let inf_nan = o + ((128 - 16) << 23);
    let sub = (f32::from_bits(o + (1 << 23)) - MAGIC).to_bits();
    let o = if exp == SHIFTED_EXP {
        inf_nan
    } else if exp == 0 {
        sub
    } else {
        o
    };
    f32::from_bits(o | ((h & 0x8000) << 16))
}

/// f32 → f16, round to nearest, ties to even, without branches (F. Giesen,
/// "float_to_half_fast3_rtne", public domain). Overflow gives ±Inf, NaN a quiet NaN.
#[inline(always)]
fn f32_to_f16(f: f32) -> f16 {
    const F32_INF: u32 = 255 << 23;
    const F16_MAX: u32 = (127 + 16) << 23;
    const DENORM_MAGIC: u32 = ((127 - 15) + (23 - 10) + 1) << 23;
    let bits = f.to_bits();
    let sign = bits & 0x8000_0000;
    let u = bits ^ sign;
    let special = if u > F32_INF { 0x7e00 } else { 0x7c00 };
    let sub = (f32::from_bits(u) + f32::from_bits(DENORM_MAGIC))
        .to_bits()
        .wrapping_sub(DENORM_MAGIC);
    let mant_odd = (u >> 13) & 1;
    let normal =
        u.wrapping_add(((15u32.wrapping_sub(127)) << 23).wrapping_add(0xfff) + mant_odd) >> 13;
    let o = if u >= F16_MAX {
        special
    } else if u < (113 << 23) {
        sub
    } else {
        normal
    };
    f16::from_bits((o | (sign >> 16)) as u16)
}

/// bf16 is the top half of an f32: widening is a shift.
#[inline(always)]
fn bf16_to_f32(x: bf16) -> f32 {
    f32::from_bits(u32::from(x.to_bits()) << 16)
}

/// Round to nearest, ties to even (the rounding `half::bf16::from_f32` uses); NaN stays a quiet
/// NaN. Written as a select rather than a branch so it vectorises.
#[inline(always)]
fn f32_to_bf16(x: f32) -> bf16 {
    let b = x.to_bits();
    let rounded = b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16;
    let nan = (b >> 16) | 0x40;
    bf16::from_bits(if x.is_nan() { nan } else { rounded } as u16)
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use super::*;

    #[test]
    fn f32_ops_match_scalar_on_ragged_lengths() {
        for len in [0usize, 1, 15, 16, 17, 33, 100] {
            let a: Vec<f32> = (0..len).map(|i| i as f32 * 0.5 - 3.0).collect();
            let b: Vec<f32> = (0..len).map(|i| 7.0 - i as f32).collect();
            for (op, f) in [
                (ReduceOp::Sum, (|x, y| x + y) as fn(f32, f32) -> f32),
                (ReduceOp::Prod, |x, y| x * y),
                (ReduceOp::Min, f32::min),
                (ReduceOp::Max, f32::max),
            ] {
                let mut acc = a.clone();
                reduce_into(op, &mut acc, &b).unwrap();
                let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| f(*x, *y)).collect();
                assert_eq!(acc, want, "{op:?} len {len}");
            }
        }
    }

    #[test]
    fn integer_sum_wraps_and_avg_truncates() {
        let mut acc = [i8::MAX, -3, 5];
        i8::combine(ReduceOp::Sum, &mut acc, &[1, -4, 0]);
        assert_eq!(acc, [i8::MIN, -7, 5]);
        i8::divide(&mut acc, 2);
        assert_eq!(acc, [-64, -3, 2]);
        let mut u = [255u8, 7];
        u8::divide(&mut u, 300);
        assert_eq!(u, [0, 0]);
    }

    #[test]
    fn bf16_combines_in_f32() {
        let mut acc = [bf16::from_f32(1.0); 20];
        let src = [bf16::from_f32(2.5); 20];
        reduce_into(ReduceOp::Sum, &mut acc, &src).unwrap();
        assert!(acc.iter().all(|x| x.to_f32() == 3.5));
        let mut h = [f16::from_f32(3.0)];
        f16::combine(ReduceOp::Max, &mut h, &[f16::from_f32(-1.0)]);
        assert_eq!(h[0].to_f32(), 3.0);
    }

    #[test]
    fn bf16_rounding_matches_half() {
        let probes = [
            0.0f32,
            -0.0,
            1.0,
            f32::from_bits(0x3f80_8000), // tie, rounds down to even
            f32::from_bits(0x3f81_8000), // tie, rounds up to even
            -3.3e38,
            3.4e38,
            1e-40,
            f32::INFINITY,
        ];
        for x in probes
            .into_iter()
            .chain((0..2000).map(|i| (i as f32 - 1000.0) * 0.37))
        {
            assert_eq!(f32_to_bf16(x).to_bits(), bf16::from_f32(x).to_bits(), "{x}");
            assert_eq!(bf16_to_f32(bf16::from_f32(x)), bf16::from_f32(x).to_f32());
        }
        assert!(f32_to_bf16(f32::NAN).is_nan());
    }

    #[test]
    fn f16_conversions_match_half() {
        for h in 0..=u16::MAX {
            let x = f16::from_bits(h);
            let (ours, theirs) = (f16_to_f32(x), x.to_f32());
            assert!(
                ours.to_bits() == theirs.to_bits() || (ours.is_nan() && theirs.is_nan()),
                "{h:#x}"
            );
        }
        let mut seed = 0x9e37_79b9u32;
        for _ in 0..200_000 {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let x = f32::from_bits(seed);
            let (ours, theirs) = (f32_to_f16(x), f16::from_f32(x));
            assert!(
                ours.to_bits() == theirs.to_bits() || (ours.is_nan() && theirs.is_nan()),
                "{x:e}"
            );
        }
        for x in [
            65504.0f32,
            65520.0,
            1e-8,
            5.96e-8,
            2.98e-8,
            -0.0,
            f32::NEG_INFINITY,
        ] {
            assert_eq!(f32_to_f16(x).to_bits(), f16::from_f32(x).to_bits(), "{x:e}");
        }
    }

    #[test]
    fn length_mismatch_is_refused() {
        let mut a = [1u32; 3];
        assert_eq!(
            reduce_into(ReduceOp::Sum, &mut a, &[1, 2]),
            Err(LengthMismatch { acc: 3, src: 2 })
        );
        assert_eq!(a, [1; 3]);
    }
}
