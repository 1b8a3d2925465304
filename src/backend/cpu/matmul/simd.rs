//! The handful of vector instructions the wide GEMM (`wide.rs`) is written in, for each
//! instruction set it runs on and each element type: AVX-512 (16 f32 or 8 f64 lanes, mask
//! registers) and AVX2 + FMA (8 f32 or 4 f64 lanes, masks held in vectors). The kernel is
//! written once against [`Simd`]; each implementation maps the operations onto its
//! instructions, and [`Element`] names the implementations for an element type.
//!
//! Every method is `#[inline(always)]` and has no target features of its own: it is compiled
//! inside [`Simd::run`], which enables the instruction set, so its intrinsics inline into the
//! kernel's loops. Called anywhere else, it would be a function call per instruction.

use std::arch::x86_64::*;

use crate::tensor::Float;

/// An element type the wide GEMM runs on, with its vector operations for each instruction set.
pub(super) trait Element: Float {
    /// AVX-512F vectors of this type.
    type Avx512: Simd<E = Self>;
    /// AVX2 + FMA vectors of this type.
    type Avx2: Simd<E = Self>;
}

impl Element for f32 {
    type Avx512 = Avx512F32;
    type Avx2 = Avx2F32;
}

impl Element for f64 {
    type Avx512 = Avx512F64;
    type Avx2 = Avx2F64;
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

/// AVX-512F on f32: 16 lanes, 32 registers, masks in `k` registers.
#[derive(Clone, Copy, Debug)]
pub(super) struct Avx512F32;

/// AVX-512F on f64: 8 lanes.
#[derive(Clone, Copy, Debug)]
pub(super) struct Avx512F64;

/// AVX2 with FMA on f32: 8 lanes, 16 registers, masks as vectors of all-ones or zero lanes.
#[derive(Clone, Copy, Debug)]
pub(super) struct Avx2F32;

/// AVX2 with FMA on f64: 4 lanes.
#[derive(Clone, Copy, Debug)]
pub(super) struct Avx2F64;

#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn with_avx512<R>(body: impl FnOnce() -> R) -> R {
    body()
}

#[target_feature(enable = "avx2,fma")]
unsafe fn with_avx2<R>(body: impl FnOnce() -> R) -> R {
    body()
}

// SAFETY (for every method of the four implementations): each is one intrinsic (or two) of
// the implementation's instruction set, whose support the caller vouched for (see the trait);
// the pointer arguments are the caller's promise.
impl Simd for Avx512F32 {
    type E = f32;
    const LANES: usize = 16;
    type V = __m512;
    type Mask = __mmask16;
    type Offsets = __m512i;

    #[inline(always)]
    unsafe fn run<R>(body: impl FnOnce() -> R) -> R {
        // SAFETY: the caller vouched for AVX-512F (which comes with AVX2 and FMA wherever
        // `isa::detect` picks it).
        unsafe { with_avx512(body) }
    }
    #[inline(always)]
    unsafe fn zero() -> __m512 {
        _mm512_setzero_ps()
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> __m512 {
        _mm512_set1_ps(x)
    }
    #[inline(always)]
    unsafe fn load(at: *const f32) -> __m512 {
        // SAFETY: see the impls' comment.
        unsafe { _mm512_loadu_ps(at) }
    }
    #[inline(always)]
    unsafe fn fmadd(a: __m512, b: __m512, acc: __m512) -> __m512 {
        _mm512_fmadd_ps(a, b, acc)
    }
    #[inline(always)]
    unsafe fn add(a: __m512, b: __m512) -> __m512 {
        _mm512_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn first_lanes(count: usize) -> __mmask16 {
        ((1u32 << count.min(16)) - 1) as __mmask16
    }
    #[inline(always)]
    unsafe fn load_masked(mask: __mmask16, at: *const f32) -> __m512 {
        // SAFETY: see the impls' comment.
        unsafe { _mm512_maskz_loadu_ps(mask, at) }
    }
    #[inline(always)]
    unsafe fn store(at: *mut f32, v: __m512) {
        // SAFETY: see the impls' comment.
        unsafe { _mm512_storeu_ps(at, v) }
    }
    #[inline(always)]
    unsafe fn store_masked(at: *mut f32, mask: __mmask16, v: __m512) {
        // SAFETY: see the impls' comment.
        unsafe { _mm512_mask_storeu_ps(at, mask, v) }
    }
    #[inline(always)]
    unsafe fn offsets(stride: usize) -> __m512i {
        _mm512_mullo_epi32(
            _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
            _mm512_set1_epi32(stride as i32),
        )
    }
    #[inline(always)]
    unsafe fn gather_masked(mask: __mmask16, at: *const f32, offsets: __m512i) -> __m512 {
        // SAFETY: see the impls' comment.
        unsafe { _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), mask, offsets, at) }
    }
}

impl Simd for Avx2F32 {
    type E = f32;
    const LANES: usize = 8;
    type V = __m256;
    type Mask = __m256i;
    type Offsets = __m256i;

    #[inline(always)]
    unsafe fn run<R>(body: impl FnOnce() -> R) -> R {
        // SAFETY: the caller vouched for AVX2 and FMA.
        unsafe { with_avx2(body) }
    }
    #[inline(always)]
    unsafe fn zero() -> __m256 {
        _mm256_setzero_ps()
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> __m256 {
        _mm256_set1_ps(x)
    }
    #[inline(always)]
    unsafe fn load(at: *const f32) -> __m256 {
        // SAFETY: see the impls' comment.
        unsafe { _mm256_loadu_ps(at) }
    }
    #[inline(always)]
    unsafe fn fmadd(a: __m256, b: __m256, acc: __m256) -> __m256 {
        _mm256_fmadd_ps(a, b, acc)
    }
    #[inline(always)]
    unsafe fn add(a: __m256, b: __m256) -> __m256 {
        _mm256_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn first_lanes(count: usize) -> __m256i {
        // Lane l is all ones when l < count: the sign bit is what the masked instructions read.
        _mm256_cmpgt_epi32(_mm256_set1_epi32(count.min(8) as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
    }
    #[inline(always)]
    unsafe fn load_masked(mask: __m256i, at: *const f32) -> __m256 {
        // SAFETY: see the impls' comment (VMASKMOVPS neither reads nor faults on masked-off
        // lanes).
        unsafe { _mm256_maskload_ps(at, mask) }
    }
    #[inline(always)]
    unsafe fn store(at: *mut f32, v: __m256) {
        // SAFETY: see the impls' comment.
        unsafe { _mm256_storeu_ps(at, v) }
    }
    #[inline(always)]
    unsafe fn store_masked(at: *mut f32, mask: __m256i, v: __m256) {
        // SAFETY: see the impls' comment.
        unsafe { _mm256_maskstore_ps(at, mask, v) }
    }
    #[inline(always)]
    unsafe fn offsets(stride: usize) -> __m256i {
        _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(stride as i32))
    }
    #[inline(always)]
    unsafe fn gather_masked(mask: __m256i, at: *const f32, offsets: __m256i) -> __m256 {
        // SAFETY: see the impls' comment.
        unsafe { _mm256_mask_i32gather_ps::<4>(_mm256_setzero_ps(), at, offsets, _mm256_castsi256_ps(mask)) }
    }
}

impl Simd for Avx512F64 {
    type E = f64;
    const LANES: usize = 8;
    type V = __m512d;
    type Mask = __mmask8;
    type Offsets = __m256i;

    #[inline(always)]
    unsafe fn run<R>(body: impl FnOnce() -> R) -> R {
        // SAFETY: as for `Avx512F32`.
        unsafe { with_avx512(body) }
    }
    #[inline(always)]
    unsafe fn zero() -> __m512d {
        _mm512_setzero_pd()
    }
    #[inline(always)]
    unsafe fn splat(x: f64) -> __m512d {
        _mm512_set1_pd(x)
    }
    #[inline(always)]
    unsafe fn load(at: *const f64) -> __m512d {
        // SAFETY: see the impls' comment.
        unsafe { _mm512_loadu_pd(at) }
    }
    #[inline(always)]
    unsafe fn fmadd(a: __m512d, b: __m512d, acc: __m512d) -> __m512d {
        _mm512_fmadd_pd(a, b, acc)
    }
    #[inline(always)]
    unsafe fn add(a: __m512d, b: __m512d) -> __m512d {
        _mm512_add_pd(a, b)
    }
    #[inline(always)]
    unsafe fn first_lanes(count: usize) -> __mmask8 {
        ((1u32 << count.min(8)) - 1) as __mmask8
    }
    #[inline(always)]
    unsafe fn load_masked(mask: __mmask8, at: *const f64) -> __m512d {
        // SAFETY: see the impls' comment.
        unsafe { _mm512_maskz_loadu_pd(mask, at) }
    }
    #[inline(always)]
    unsafe fn store(at: *mut f64, v: __m512d) {
        // SAFETY: see the impls' comment.
        unsafe { _mm512_storeu_pd(at, v) }
    }
    #[inline(always)]
    unsafe fn store_masked(at: *mut f64, mask: __mmask8, v: __m512d) {
        // SAFETY: see the impls' comment.
        unsafe { _mm512_mask_storeu_pd(at, mask, v) }
    }
    #[inline(always)]
    unsafe fn offsets(stride: usize) -> __m256i {
        _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(stride as i32))
    }
    #[inline(always)]
    unsafe fn gather_masked(mask: __mmask8, at: *const f64, offsets: __m256i) -> __m512d {
        // SAFETY: see the impls' comment.
        unsafe { _mm512_mask_i32gather_pd::<8>(_mm512_setzero_pd(), mask, offsets, at) }
    }
}

impl Simd for Avx2F64 {
    type E = f64;
    const LANES: usize = 4;
    type V = __m256d;
    type Mask = __m256i;
    type Offsets = __m128i;

    #[inline(always)]
    unsafe fn run<R>(body: impl FnOnce() -> R) -> R {
        // SAFETY: the caller vouched for AVX2 and FMA.
        unsafe { with_avx2(body) }
    }
    #[inline(always)]
    unsafe fn zero() -> __m256d {
        _mm256_setzero_pd()
    }
    #[inline(always)]
    unsafe fn splat(x: f64) -> __m256d {
        _mm256_set1_pd(x)
    }
    #[inline(always)]
    unsafe fn load(at: *const f64) -> __m256d {
        // SAFETY: see the impls' comment.
        unsafe { _mm256_loadu_pd(at) }
    }
    #[inline(always)]
    unsafe fn fmadd(a: __m256d, b: __m256d, acc: __m256d) -> __m256d {
        _mm256_fmadd_pd(a, b, acc)
    }
    #[inline(always)]
    unsafe fn add(a: __m256d, b: __m256d) -> __m256d {
        _mm256_add_pd(a, b)
    }
    #[inline(always)]
    unsafe fn first_lanes(count: usize) -> __m256i {
        // Lane l (64 bits) is all ones when l < count.
        _mm256_cmpgt_epi64(_mm256_set1_epi64x(count.min(4) as i64), _mm256_setr_epi64x(0, 1, 2, 3))
    }
    #[inline(always)]
    unsafe fn load_masked(mask: __m256i, at: *const f64) -> __m256d {
        // SAFETY: see the impls' comment (VMASKMOVPD neither reads nor faults on masked-off
        // lanes).
        unsafe { _mm256_maskload_pd(at, mask) }
    }
    #[inline(always)]
    unsafe fn store(at: *mut f64, v: __m256d) {
        // SAFETY: see the impls' comment.
        unsafe { _mm256_storeu_pd(at, v) }
    }
    #[inline(always)]
    unsafe fn store_masked(at: *mut f64, mask: __m256i, v: __m256d) {
        // SAFETY: see the impls' comment.
        unsafe { _mm256_maskstore_pd(at, mask, v) }
    }
    #[inline(always)]
    unsafe fn offsets(stride: usize) -> __m128i {
        _mm_mullo_epi32(_mm_setr_epi32(0, 1, 2, 3), _mm_set1_epi32(stride as i32))
    }
    #[inline(always)]
    unsafe fn gather_masked(mask: __m256i, at: *const f64, offsets: __m128i) -> __m256d {
        // SAFETY: see the impls' comment.
        unsafe { _mm256_mask_i32gather_pd::<8>(_mm256_setzero_pd(), at, offsets, _mm256_castsi256_pd(mask)) }
    }
}
