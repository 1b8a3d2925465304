//! [`Simd`] on x86-64: AVX-512F (16 f32 or 8 f64 lanes, masks in `k` registers) and AVX2 with
//! FMA (8 f32 or 4 f64 lanes, masks held in vectors).

use std::arch::x86_64::*;

use super::Simd;

/// AVX-512F on f32: 16 lanes, 32 registers, masks in `k` registers.
#[derive(Clone, Copy, Debug)]
pub(in super::super) struct Avx512F32;

/// AVX-512F on f64: 8 lanes.
#[derive(Clone, Copy, Debug)]
pub(in super::super) struct Avx512F64;

/// AVX2 with FMA on f32: 8 lanes, 16 registers, masks as vectors of all-ones or zero lanes.
#[derive(Clone, Copy, Debug)]
pub(in super::super) struct Avx2F32;

/// AVX2 with FMA on f64: 4 lanes.
#[derive(Clone, Copy, Debug)]
pub(in super::super) struct Avx2F64;

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
    const UNROLL_DEPTH: bool = true;
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
    const UNROLL_DEPTH: bool = true;
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
    const UNROLL_DEPTH: bool = true;
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
    const UNROLL_DEPTH: bool = true;
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
