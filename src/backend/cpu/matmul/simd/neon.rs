//! [`Simd`] on aarch64: NEON, 4 f32 or 2 f64 lanes in 128-bit registers, 32 of them.
//!
//! NEON is part of every aarch64 CPU (the target's baseline), so [`Simd::run`] enables
//! nothing. It has no masked loads or stores and no gathers. A mask is therefore just the
//! number of leading lanes that count ([`Simd::first_lanes`] is the only way the kernel makes
//! one), and a partial vector is read or written a lane or a pair of lanes at a time: only the
//! counted lanes touch memory, as AVX's masked instructions guarantee. Partial vectors occur
//! only at a matrix's right edge and in packing, not in the depth loop.

use std::arch::aarch64::*;

use super::Simd;
use crate::tensor::Float;

/// NEON on f32: 4 lanes.
#[derive(Clone, Copy, Debug)]
pub(in super::super) struct NeonF32;

/// NEON on f64: 2 lanes.
#[derive(Clone, Copy, Debug)]
pub(in super::super) struct NeonF64;

/// The first `count` f32 values from `at` (`count < 4`), zeros after them, without a loop
/// or a call. The kernel's final stores run with its accumulators live, and AAPCS64 keeps no
/// whole vector register across a call, so a call there (a copy loop becomes `memcpy`) would
/// have the compiler save them all around it.
///
/// # Safety
/// `at` must be readable for `count` values.
#[inline(always)]
unsafe fn leading_f32(count: usize, at: *const f32) -> float32x4_t {
    // SAFETY: each arm reads exactly `count` values from `at`.
    unsafe {
        let zero = vdupq_n_f32(0.0);
        match count {
            0 => zero,
            1 => vld1q_lane_f32::<0>(at, zero),
            2 => vcombine_f32(vld1_f32(at), vdup_n_f32(0.0)),
            _ => vld1q_lane_f32::<2>(at.add(2), vcombine_f32(vld1_f32(at), vdup_n_f32(0.0))),
        }
    }
}

/// Writes the first `count` lanes of `v` to `at` (`count < 4`), without a loop or a call (see
/// [`leading_f32`]).
///
/// # Safety
/// `at` must be writable for `count` values.
#[inline(always)]
unsafe fn write_leading_f32(count: usize, at: *mut f32, v: float32x4_t) {
    // SAFETY: each arm writes exactly `count` values from `at`.
    unsafe {
        match count {
            0 => {}
            1 => vst1q_lane_f32::<0>(at, v),
            2 => vst1_f32(at, vget_low_f32(v)),
            _ => {
                vst1_f32(at, vget_low_f32(v));
                vst1q_lane_f32::<2>(at.add(2), v)
            }
        }
    }
}

/// Lane `l < count` from `at + l * stride`, zeros after them. Only packing gathers, where no
/// accumulators are live, so a plain loop will do.
///
/// # Safety
/// `at + l * stride` must be readable for each `l < count`.
#[inline(always)]
unsafe fn gathered<E: Float, const LANES: usize>(count: usize, at: *const E, stride: usize) -> [E; LANES] {
    let mut lanes = [E::ZERO; LANES];
    for (l, lane) in lanes.iter_mut().enumerate().take(count) {
        // SAFETY: the caller's promise for lane l < count.
        *lane = unsafe { *at.add(l * stride) };
    }
    lanes
}

// SAFETY (for every method of both implementations): NEON is always present on aarch64; the
// pointer arguments are the caller's promise (the trait's contract), and a partial vector
// touches only its counted lanes in memory (see the helpers above).
impl Simd for NeonF32 {
    type E = f32;
    const LANES: usize = 4;
    const UNROLL_DEPTH: bool = false;
    type V = float32x4_t;
    type Mask = usize;
    type Offsets = usize;

    #[inline(always)]
    unsafe fn run<R>(body: impl FnOnce() -> R) -> R {
        body()
    }
    #[inline(always)]
    unsafe fn zero() -> float32x4_t {
        vdupq_n_f32(0.0)
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> float32x4_t {
        vdupq_n_f32(x)
    }
    #[inline(always)]
    unsafe fn load(at: *const f32) -> float32x4_t {
        // SAFETY: see the impls' comment.
        unsafe { vld1q_f32(at) }
    }
    #[inline(always)]
    unsafe fn fmadd(a: float32x4_t, b: float32x4_t, acc: float32x4_t) -> float32x4_t {
        vfmaq_f32(acc, a, b)
    }
    #[inline(always)]
    unsafe fn add(a: float32x4_t, b: float32x4_t) -> float32x4_t {
        vaddq_f32(a, b)
    }
    #[inline(always)]
    unsafe fn first_lanes(count: usize) -> usize {
        count.min(4)
    }
    #[inline(always)]
    unsafe fn load_masked(mask: usize, at: *const f32) -> float32x4_t {
        // SAFETY: see the impls' comment.
        unsafe {
            if mask == 4 {
                vld1q_f32(at)
            } else {
                leading_f32(mask, at)
            }
        }
    }
    #[inline(always)]
    unsafe fn store(at: *mut f32, v: float32x4_t) {
        // SAFETY: see the impls' comment.
        unsafe { vst1q_f32(at, v) }
    }
    #[inline(always)]
    unsafe fn store_masked(at: *mut f32, mask: usize, v: float32x4_t) {
        // SAFETY: see the impls' comment.
        unsafe {
            if mask == 4 {
                vst1q_f32(at, v)
            } else {
                write_leading_f32(mask, at, v)
            }
        }
    }
    #[inline(always)]
    unsafe fn offsets(stride: usize) -> usize {
        stride
    }
    #[inline(always)]
    unsafe fn gather_masked(mask: usize, at: *const f32, stride: usize) -> float32x4_t {
        // SAFETY: see the impls' comment.
        unsafe { vld1q_f32(gathered::<f32, 4>(mask, at, stride).as_ptr()) }
    }
}

impl Simd for NeonF64 {
    type E = f64;
    const LANES: usize = 2;
    const UNROLL_DEPTH: bool = false;
    type V = float64x2_t;
    type Mask = usize;
    type Offsets = usize;

    #[inline(always)]
    unsafe fn run<R>(body: impl FnOnce() -> R) -> R {
        body()
    }
    #[inline(always)]
    unsafe fn zero() -> float64x2_t {
        vdupq_n_f64(0.0)
    }
    #[inline(always)]
    unsafe fn splat(x: f64) -> float64x2_t {
        vdupq_n_f64(x)
    }
    #[inline(always)]
    unsafe fn load(at: *const f64) -> float64x2_t {
        // SAFETY: see the impls' comment.
        unsafe { vld1q_f64(at) }
    }
    #[inline(always)]
    unsafe fn fmadd(a: float64x2_t, b: float64x2_t, acc: float64x2_t) -> float64x2_t {
        vfmaq_f64(acc, a, b)
    }
    #[inline(always)]
    unsafe fn add(a: float64x2_t, b: float64x2_t) -> float64x2_t {
        vaddq_f64(a, b)
    }
    #[inline(always)]
    unsafe fn first_lanes(count: usize) -> usize {
        count.min(2)
    }
    #[inline(always)]
    unsafe fn load_masked(mask: usize, at: *const f64) -> float64x2_t {
        // SAFETY: see the impls' comment.
        unsafe {
            match mask {
                2 => vld1q_f64(at),
                1 => vld1q_lane_f64::<0>(at, vdupq_n_f64(0.0)),
                _ => vdupq_n_f64(0.0),
            }
        }
    }
    #[inline(always)]
    unsafe fn store(at: *mut f64, v: float64x2_t) {
        // SAFETY: see the impls' comment.
        unsafe { vst1q_f64(at, v) }
    }
    #[inline(always)]
    unsafe fn store_masked(at: *mut f64, mask: usize, v: float64x2_t) {
        // SAFETY: see the impls' comment.
        unsafe {
            match mask {
                2 => vst1q_f64(at, v),
                1 => vst1q_lane_f64::<0>(at, v),
                _ => {}
            }
        }
    }
    #[inline(always)]
    unsafe fn offsets(stride: usize) -> usize {
        stride
    }
    #[inline(always)]
    unsafe fn gather_masked(mask: usize, at: *const f64, stride: usize) -> float64x2_t {
        // SAFETY: see the impls' comment.
        unsafe { vld1q_f64(gathered::<f64, 2>(mask, at, stride).as_ptr()) }
    }
}
