//! The handful of vector instructions the wide GEMM (`wide.rs`) is written in, for each
//! instruction set it runs on and each element type: on x86-64 AVX-512 (16 f32 or 8 f64 lanes,
//! mask registers) and AVX2 + FMA (8 f32 or 4 f64 lanes, masks held in vectors), in `x86.rs`;
//! on aarch64 NEON (4 f32 or 2 f64 lanes, no masks), in `neon.rs`. The kernel is written once
//! against [`Simd`]; each implementation maps the operations onto its instructions, and
//! [`Element`] names the implementations for an element type.
//!
//! Every method is `#[inline(always)]` and has no target features of its own: it is compiled
//! inside [`Simd::run`], which enables the instruction set, so its intrinsics inline into the
//! kernel's loops. Called anywhere else, it would be a function call per instruction.

use crate::tensor::Float;

#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(target_arch = "aarch64")]
use neon::{NeonF32, NeonF64};
#[cfg(target_arch = "x86_64")]
use x86::{Avx2F32, Avx2F64, Avx512F32, Avx512F64};

/// An element type the wide GEMM runs on, with its vector operations for each instruction set.
pub(super) trait Element: Float {
    /// AVX-512F vectors of this type.
    #[cfg(target_arch = "x86_64")]
    type Avx512: Simd<E = Self>;
    /// AVX2 + FMA vectors of this type.
    #[cfg(target_arch = "x86_64")]
    type Avx2: Simd<E = Self>;
    /// NEON vectors of this type.
    #[cfg(target_arch = "aarch64")]
    type Neon: Simd<E = Self>;
}

#[cfg(target_arch = "x86_64")]
impl Element for f32 {
    type Avx512 = Avx512F32;
    type Avx2 = Avx2F32;
}

#[cfg(target_arch = "x86_64")]
impl Element for f64 {
    type Avx512 = Avx512F64;
    type Avx2 = Avx2F64;
}

#[cfg(target_arch = "aarch64")]
impl Element for f32 {
    type Neon = NeonF32;
}

#[cfg(target_arch = "aarch64")]
impl Element for f64 {
    type Neon = NeonF64;
}

/// One instruction set's vectors of one element type, as the wide GEMM uses them.
///
/// # Safety
/// Every `unsafe fn` requires the CPU to support the instruction set (vouched for once, when
/// [`Simd::run`] is called) and the pointers to be valid for the lanes they touch: all
/// `LANES` values for the unmasked forms, the lanes in the mask for the masked ones.
pub(super) trait Simd: Copy + Send + Sync + 'static {
    /// The element type.
    type E: Float;
    /// Elements per vector.
    const LANES: usize;
    /// Whether the depth loop of a tile of up to 6 rows runs four steps per trip (see
    /// `wide::depth_loop`). With NEON it does not: the compiler then loads the later steps'
    /// B ahead, runs out of the 32 registers (24 hold the accumulators) and spills 5 to 13 of
    /// them per trip.
    const UNROLL_DEPTH: bool;
    /// One vector of `LANES` elements.
    type V: Copy;
    /// Which lanes of a vector a masked load, store or gather touches.
    type Mask: Copy;
    /// Element offsets for a gather (`stride` apart), computed once per panel.
    type Offsets: Copy;

    /// Runs `body` with this instruction set enabled: code inlined into `body` is compiled
    /// for it.
    ///
    /// # Safety
    /// The CPU must support the instruction set.
    unsafe fn run<R>(body: impl FnOnce() -> R) -> R;
    /// All lanes zero.
    unsafe fn zero() -> Self::V;
    /// All lanes `x`.
    unsafe fn splat(x: Self::E) -> Self::V;
    /// `LANES` values from `at`.
    unsafe fn load(at: *const Self::E) -> Self::V;
    /// `acc + a * b`, one rounding.
    unsafe fn fmadd(a: Self::V, b: Self::V, acc: Self::V) -> Self::V;
    /// `a + b`.
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    /// The first `count` lanes (all of them for `count >= LANES`, none for 0).
    unsafe fn first_lanes(count: usize) -> Self::Mask;
    /// The masked lanes from `at`, zero elsewhere. Masked-off lanes are not read, so they may
    /// lie past the end of a buffer (the hardware suppresses their faults).
    unsafe fn load_masked(mask: Self::Mask, at: *const Self::E) -> Self::V;
    /// `LANES` values to `at`.
    unsafe fn store(at: *mut Self::E, v: Self::V);
    /// The masked lanes of `v` to `at`; nothing is written (or faults) elsewhere.
    unsafe fn store_masked(at: *mut Self::E, mask: Self::Mask, v: Self::V);
    /// `[0, stride, 2 stride, ...]`, for [`Simd::gather_masked`]; `(LANES - 1) * stride` must
    /// fit in an i32.
    unsafe fn offsets(stride: usize) -> Self::Offsets;
    /// Lane `l` from `at + offsets[l]` for the masked lanes, zero elsewhere.
    unsafe fn gather_masked(mask: Self::Mask, at: *const Self::E, offsets: Self::Offsets) -> Self::V;
}
