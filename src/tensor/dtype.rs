//! Element types. `f32` is the working type; `f64` exists for gradient checks and tight tests.
//!
//! Kernels are written once, generic over [`Float`], and the [`with_float!`](crate::with_float)
//! macro is the single place that turns a run-time [`DType`] into a compile-time type. Adding
//! f16/bf16 later means one more `DType` variant, one more arm there, and a `Float` impl.

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

use super::storage::CpuStorage;

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
    Copy
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
    /// Converts (rounding for f32).
    fn from_f64(v: f64) -> Self;
    /// Converts exactly.
    fn to_f64(self) -> f64;
    /// e^self.
    fn exp(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// self^p.
    fn powf(self, p: Self) -> Self;
    /// Hyperbolic tangent.
    fn tanh(self) -> Self;
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
    /// Wraps a vector of this type as storage.
    fn wrap(data: Vec<Self>) -> CpuStorage;
}

macro_rules! impl_float {
    ($t:ty, $variant:ident) => {
        impl Float for $t {
            const DTYPE: DType = DType::$variant;
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NEG_INFINITY: Self = <$t>::NEG_INFINITY;
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn exp(self) -> Self {
                <$t>::exp(self)
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
            fn tanh(self) -> Self {
                <$t>::tanh(self)
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
            fn wrap(data: Vec<Self>) -> CpuStorage {
                CpuStorage::$variant(data)
            }
        }
    };
}

impl_float!(f32, F32);
impl_float!(f64, F64);
