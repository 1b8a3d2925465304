//! Element types. `f32` is the working type; `f64` exists for gradient checks and tight tests.
//!
//! Kernels are written once, generic over [`Float`], and the [`with_float!`](crate::with_float)
//! macro is the single place that turns a run-time [`DType`] into a compile-time type. Adding
//! f16/bf16 later means one more `DType` variant, one more arm there, and a `Float` impl.

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

use super::storage::CpuStorage;
use super::HostBuffer;

/// The element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit IEEE float: what models train in.
    F32,
    /// 64-bit IEEE float: what gradient checks and reference tests use.
    F64,
}

impl DType {
    /// Bytes per element.
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 => 8,
        }
    }
}

impl Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DType::F32 => write!(f, "f32"),
            DType::F64 => write!(f, "f64"),
        }
    }
}

/// Runs `$body` with `$T` bound to the Rust type of `$dtype`: the one run-time-to-compile-time
/// switch for element types.
#[macro_export]
#[doc(hidden)]
macro_rules! with_float {
    ($dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            $crate::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::DType::F64 => {
                type $T = f64;
                $body
            }
        }
    };
}

/// What a CPU kernel needs from an element type: arithmetic, a few math functions, and a way
/// to find its own vector inside a [`CpuStorage`].
pub trait Float:
    bytemuck::Pod
    + Send
    + Sync
    + Debug
    + Display
    + PartialOrd
    + Default
    + Sum
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
{
    /// The run-time tag of this type.
    const DTYPE: DType;
    /// Additive identity.
    const ZERO: Self;
    /// Multiplicative identity.
    const ONE: Self;
    /// The identity of `max`.
    const NEG_INFINITY: Self;
    /// The smallest positive normal value; below it lie the subnormals (see
    /// `backend::cpu::optim` for why an optimizer keeps its state out of them).
    const MIN_POSITIVE: Self;
    /// Converts (rounding for f32).
    fn from_f64(v: f64) -> Self;
    /// Converts exactly.
    fn to_f64(self) -> f64;
    /// e^self.
    fn exp(self) -> Self;
    /// e^self for `self <= 0` (the `x - max` of a softmax), where a cheaper exponential does:
    /// f32's is `exp_nonpositive_f32` in this file. Positive arguments are not an error, but
    /// f32's saturates past 88 rather than reaching infinity.
    fn exp_nonpositive(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// self^p.
    fn powf(self, p: Self) -> Self;
    /// Hyperbolic tangent.
    fn tanh(self) -> Self;
    /// `self / (1 + e^z)`: the logistic function is `1.over_one_plus_exp(-x)`, and GELU
    /// (`x sigmoid(2u)`) is `x.over_one_plus_exp(-2u)`, one division and no multiply. (f32's
    /// is exactly 0 once `z > 87`, whatever `self`: see `over_one_plus_exp_f32` in this file.)
    fn over_one_plus_exp(self, z: Self) -> Self;
    /// self * a + b with one rounding; a single instruction only where FMA is enabled.
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// Absolute value.
    fn abs(self) -> Self;
    /// The larger of two values (NaN-ignoring, as `f32::max`).
    fn max(self, other: Self) -> Self;
    /// The smaller of two values.
    fn min(self, other: Self) -> Self;
    /// Borrows this type's vector from a storage; panics if the storage holds another type,
    /// which the op front doors rule out before any kernel runs.
    fn slice(storage: &CpuStorage) -> &[Self];
    /// Mutable form of [`Float::slice`].
    fn slice_mut(storage: &mut CpuStorage) -> &mut [Self];
    /// Wraps a buffer of this type as storage.
    fn wrap(data: HostBuffer<Self>) -> CpuStorage;
    /// Takes the buffer back out of a storage of this type (for the buffer pool).
    fn unwrap_buffer(storage: CpuStorage) -> HostBuffer<Self>;
}

macro_rules! impl_float {
    ($t:ty, $variant:ident, $exp:path, $exp_nonpositive:path, $tanh:path, $over_one_plus_exp:path) => {
        impl Float for $t {
            const DTYPE: DType = DType::$variant;
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NEG_INFINITY: Self = <$t>::NEG_INFINITY;
            const MIN_POSITIVE: Self = <$t>::MIN_POSITIVE;
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn exp(self) -> Self {
                $exp(self)
            }
            #[inline(always)]
            fn exp_nonpositive(self) -> Self {
                $exp_nonpositive(self)
            }
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn powf(self, p: Self) -> Self {
                <$t>::powf(self, p)
            }
            #[inline(always)]
            fn tanh(self) -> Self {
                $tanh(self)
            }
            #[inline(always)]
            fn over_one_plus_exp(self, z: Self) -> Self {
                $over_one_plus_exp(self, z)
            }
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn mul_add(self, a: Self, b: Self) -> Self {
                <$t>::mul_add(self, a, b)
            }
            fn max(self, other: Self) -> Self {
                <$t>::max(self, other)
            }
            fn min(self, other: Self) -> Self {
                <$t>::min(self, other)
            }
            fn slice(storage: &CpuStorage) -> &[Self] {
                match storage {
                    CpuStorage::$variant(v) => v,
                    other => panic!("internal: kernel for {} got {} storage", DType::$variant, other.dtype()),
                }
            }
            fn slice_mut(storage: &mut CpuStorage) -> &mut [Self] {
                match storage {
                    CpuStorage::$variant(v) => v,
                    other => panic!("internal: kernel for {} got {} storage", DType::$variant, other.dtype()),
                }
            }
            fn wrap(data: HostBuffer<Self>) -> CpuStorage {
                CpuStorage::$variant(data)
            }
            fn unwrap_buffer(storage: CpuStorage) -> HostBuffer<Self> {
                let mut storage = storage;
                let dtype = storage.dtype();
                match &mut storage {
                    // Taking the buffer leaves an empty one, so the storage's drop does nothing.
                    CpuStorage::$variant(v) => std::mem::take(v),
                    _ => panic!("internal: expected {} storage, got {dtype}", DType::$variant),
                }
            }
        }
    };
}

// f32 uses our own branch-free exp, tanh and logistic (below) so loops over them vectorize;
// f64, the type of gradient checks, keeps the C library's correctly rounded exponential.
impl_float!(f32, F32, exp_f32, exp_nonpositive_f32, tanh_f32, over_one_plus_exp_f32);
impl_float!(f64, F64, f64::exp, f64::exp, f64::tanh, over_one_plus_exp_f64);

/// Splits `x` into `n ln 2 + r` with `n = round(x / ln 2)` and `|r| <= ln(2) / 2`, for
/// `e^x = 2^n e^r`; returns `(n, r)`. `ln 2` is split in two (Cody and Waite) so `n ln 2` is
/// exact enough. For `|x|` past about 2^22 `n` is meaningless, and the callers discard it.
#[inline(always)]
fn split_ln2(x: f32) -> (i32, f32) {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding then subtracting 1.5 * 2^23 rounds to the nearest integer in float arithmetic.
    const ROUND: f32 = 12_582_912.0;
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    // n as an integer, read from the bits of `shifted` (1.5 * 2^23 + n: n sits in the low
    // mantissa bits). `n as i32` would give the same value, but Rust's saturating float-to-int
    // cast does not vectorize: it compiled to a per-lane compare-and-move that made GELU 3x
    // slower with AVX-512.
    ((shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32), r)
}

/// e^x for f32 without a libm call, so a loop over it compiles to SIMD.
///
/// Range reduction: `x = n ln 2 + r` with `n = round(x / ln 2)` and `|r| <= ln(2) / 2`, so
/// `e^x = 2^n e^r`. `2^n` is built directly in the float's exponent bits; `e^r` is its Taylor
/// series to degree 7, whose first dropped term `r^8 / 8!` is below 6e-9 for `|r| <= 0.347`,
/// under half an f32 ulp ([`split_ln2`] does the reduction). Results below about 1.2e-38
/// flush to 0; above f32::MAX they are infinite; NaN stays NaN.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    // The upper clamp sits past ln(f32::MAX) = 88.72: from there the product below overflows
    // to infinity by itself, and a NaN passes through `clamp` and the arithmetic, so the only
    // select left is the one that flushes tiny results to 0. (Each select is a compare and a
    // blend per vector; the two this saves made softmax's exponential loop spill with AVX2.)
    let (n, r) = split_ln2(x.clamp(-87.0, 89.0));
    // Estrin's scheme: pairs of terms first, then pairs of pairs. Horner's rule
    // (`((c7 r + c6) r + c5) r ...`) uses two fewer operations but chains all fourteen, each
    // waiting for the last; here the longest chain is six. Kernels that do little else per
    // element (GELU: one exponential, one division) run at the speed of that chain, since the
    // core can only hold a few iterations' worth of waiting instructions.
    let r2 = r * r;
    let r4 = r2 * r2;
    let p01 = 1.0 + r;
    let p23 = 0.5 + r * (1.0 / 6.0);
    let p45 = 1.0 / 24.0 + r * (1.0 / 120.0);
    let p67 = 1.0 / 720.0 + r * (1.0 / 5040.0);
    let p = (p01 + r2 * p23) + r4 * (p45 + r2 * p67);
    // 2^n as two halves, so n = 128 (x just below ln f32::MAX) stays representable.
    let pow2 = |e: i32| f32::from_bits(((e + 127) as u32) << 23);
    let y = p * pow2(n >> 1) * pow2(n - (n >> 1));
    if x < -87.0 {
        0.0
    } else {
        y
    }
}

/// `2^n e^r` for `|r| <= ln(2) / 2` and `-126 <= n <= 127` (so `2^n` is one normal number,
/// built in the exponent bits): the end of [`exp_nonpositive_f32`] and
/// [`over_one_plus_exp_f32`]. `e^r` is a degree-6 polynomial fitted for that interval (a
/// weighted least-squares fit in f64, `scripts/fit_exp_poly.py`), evaluated with Estrin's
/// scheme as in [`exp_f32`]; in f32 its relative error stays under 1.7e-7. A NaN `r` gives
/// NaN.
#[inline(always)]
fn pow2_exp_fitted(n: i32, r: f32) -> f32 {
    let r2 = r * r;
    let r4 = r2 * r2;
    let p01 = 1.0 + r;
    let p23 = 0.499_999_9 + r * 0.166_664_2;
    let p45 = 0.041_668_225 + r * 0.008_374_816;
    let p = (p01 + r2 * p23) + r4 * (p45 + r2 * 0.001_383_684_6);
    p * f32::from_bits((n.wrapping_add(127) as u32) << 23)
}

/// e^x for the `x <= 0` of a softmax (`x - max` over a row, with `max` the row's largest), a
/// third cheaper than [`exp_f32`]: softmax, cross-entropy and attention are bound by it once
/// their vectors have 8 lanes (AVX2) rather than 16.
///
/// What a non-positive argument lets it drop:
/// - the upper end of the range: `n <= 0`, so `2^n` is one value built in the exponent bits
///   (not two halves), and no select returns infinity. Positive `x` is clamped to 88, where
///   `n` reaches 127, the largest exponent: the result is accurate up to there, and finite
///   past it (attention computes masked-off scores along with the visible ones, then
///   overwrites them with zeros);
/// - accuracy it does not need: `e^r` on `|r| <= ln(2) / 2` is the fitted degree-6 polynomial
///   of [`pow2_exp_fitted`] rather than degree-7 Taylor (relative error under 2e-7).
///
/// Below -87 the result is exactly 0 (so `-inf`, a masked logit, gives 0); NaN stays NaN.
#[inline(always)]
pub fn exp_nonpositive_f32(x: f32) -> f32 {
    const LOW: f32 = -87.0;
    const HIGH: f32 = 88.0;
    // `clamp` (unlike `max` / `min`) passes a NaN through.
    let (n, r) = split_ln2(x.clamp(LOW, HIGH));
    let y = pow2_exp_fitted(n, r);
    if x < LOW {
        0.0
    } else {
        y
    }
}

/// `num / (1 + e^z)` for f32, without a libm call so loops over it vectorize: the logistic
/// function is `num = 1, z = -x`, and GELU (`x sigmoid(2u)`) is `num = x, z = -2u`, which
/// folds GELU's multiply into the division. GELU and the LSTM's gates spend most of their
/// time here.
///
/// It reduces the range as [`exp_f32`] does but drops about a third of its work, which only
/// a general exponential needs:
/// - `e^z` matters only while it is finite. Past `z = 87` the logistic is below f32's
///   smallest normal number, and one select returns exactly 0 (whatever was computed for
///   such `z` is discarded), so the exponent `n` needs no upper clamp and `2^n` is a single
///   shift, not two halves. Below `z = -87`, `e^z < 1.7e-38` leaves `1 + e^z` exactly 1; `z`
///   is raised to -87 so `2^n` stays a normal number. No input gives a subnormal logistic,
///   which would cost a microcode assist in every later op. The 0 holds for any `num`, so
///   the function is meant for a `num` of modest size: 1, or GELU's x, whose true result is
///   below 1e-36 wherever `-2u` passes 87.
/// - `e^r` on `|r| <= ln(2) / 2` is a degree-6 polynomial fitted for that interval
///   ([`pow2_exp_fitted`]) rather than degree-7 Taylor.
///
/// The logistic comes out within 1.8e-7 relative of the exact one; NaN stays NaN. No FMA,
/// so every instruction set computes the same bits.
#[inline(always)]
pub fn over_one_plus_exp_f32(num: f32, z: f32) -> f32 {
    const LIMIT: f32 = 87.0;
    // Written as a comparison, not `max`, so a NaN `z` passes through (`f32::max` would
    // replace it with the limit). For z past the limit, `n` is meaningless and the select
    // below discards the result.
    let (n, r) = split_ln2(if z < -LIMIT { -LIMIT } else { z });
    let e = pow2_exp_fitted(n, r);
    let q = num / (1.0 + e);
    if z > LIMIT {
        0.0
    } else {
        q
    }
}

/// `num / (1 + e^z)` for f64, with the C library's exponential (for large z, `e^z` overflows
/// to infinity and the result is 0).
#[inline(always)]
pub fn over_one_plus_exp_f64(num: f64, z: f64) -> f64 {
    num / (1.0 + z.exp())
}

/// tanh for f32 as `1 - 2 / (1 + e^(2x))`, built on [`over_one_plus_exp_f32`], whose cheaper
/// exponential (no overflow to handle: the quotient is exactly 0 past `2x = 87`) made it
/// 20-30% faster than the same formula on [`exp_f32`]. Saturates cleanly to +-1; absolute
/// error about 1e-7 (relative error grows for |x| < 1e-3, where tanh x ~ x).
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    1.0 - over_one_plus_exp_f32(2.0, 2.0 * x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_is_within_two_ulps_of_libm() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.7 {
            let (ours, libm) = (exp_f32(x) as f64, (x as f64).exp());
            worst = worst.max(((ours - libm) / libm).abs());
            x += 0.0137;
        }
        assert!(worst < 2.5e-7, "worst relative error {worst}");
        assert!(exp_f32(88.72).is_finite());
        for x in [88.73f32, 89.0, 1e30, f32::INFINITY] {
            assert_eq!(exp_f32(x), f32::INFINITY, "e^{x}");
        }
        for x in [-87.5f32, -100.0, -1e30, f32::NEG_INFINITY] {
            assert_eq!(exp_f32(x), 0.0, "e^{x}");
        }
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(exp_f32(0.0), 1.0);
    }

    #[test]
    fn softmax_exp_is_within_two_ulps_and_zero_for_masked_logits() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x <= 88.0 {
            let (ours, libm) = (exp_nonpositive_f32(x) as f64, (x as f64).exp());
            worst = worst.max(((ours - libm) / libm).abs());
            x += 0.0137;
        }
        assert!(worst < 2.5e-7, "worst relative error {worst}");
        for x in [-87.5f32, -100.0, -1e30, f32::NEG_INFINITY] {
            assert_eq!(exp_nonpositive_f32(x), 0.0, "e^{x}");
        }
        assert!(exp_nonpositive_f32(-86.9).is_normal());
        assert_eq!(exp_nonpositive_f32(0.0), 1.0);
        assert!(exp_nonpositive_f32(f32::NAN).is_nan());
        // Past 88 it saturates instead of overflowing (attention's masked-off lanes).
        for x in [88.5f32, 1e30, f32::INFINITY] {
            let y = exp_nonpositive_f32(x);
            assert!(y.is_finite() && y > 1.6e38, "e^{x} gave {y}");
        }
    }

    #[test]
    fn fast_logistic_is_within_two_ulps_and_saturates_without_subnormals() {
        let sigmoid_f32 = |x: f32| over_one_plus_exp_f32(1.0, -x);
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 30.0 {
            let exact = 1.0 / (1.0 + (-(x as f64)).exp());
            worst = worst.max(((sigmoid_f32(x) as f64 - exact) / exact).abs());
            x += 0.00731;
        }
        assert!(worst < 4e-7, "worst relative error {worst}");
        // Past the limit the result is exactly 0, never a subnormal; far right, exactly 1.
        for x in [-87.5f32, -88.0, -100.0, -1e30, f32::NEG_INFINITY] {
            assert_eq!(sigmoid_f32(x), 0.0, "sigmoid({x})");
        }
        for x in [17.0f32, 88.0, 1e30, f32::INFINITY] {
            assert_eq!(sigmoid_f32(x), 1.0, "sigmoid({x})");
        }
        assert!(sigmoid_f32(-86.9).is_normal());
        assert_eq!(sigmoid_f32(0.0), 0.5);
        assert!(sigmoid_f32(f32::NAN).is_nan());
        // The numerator divides through, signs and all.
        assert_eq!(over_one_plus_exp_f32(-3.0, 0.0), -1.5);
        assert_eq!(over_one_plus_exp_f32(f32::INFINITY, -100.0), f32::INFINITY);
    }

    #[test]
    fn fast_tanh_has_small_absolute_error_and_saturates() {
        let mut x = -20.0f32;
        while x < 20.0 {
            let err = (tanh_f32(x) as f64 - (x as f64).tanh()).abs();
            assert!(err < 2e-7, "tanh({x}) off by {err}");
            x += 0.0071;
        }
        assert_eq!(tanh_f32(100.0), 1.0);
        assert_eq!(tanh_f32(-100.0), -1.0);
    }
}
