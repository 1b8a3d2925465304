//! Helpers shared by the tests: tolerances (here, each with the reason for its size), scratch
//! directories (`scratch`) and a small deterministic training run (`training`).

#![allow(dead_code)]

/// f32 results of short computations (a few roundings of ~6e-8 each).
pub const F32_TIGHT: f64 = 1e-5;
/// f32 sums over hundreds of products (matmul, reductions): rounding grows with the length.
pub const F32_ACCUMULATED: f64 = 1e-4;
/// f64 results compared with f64 references.
pub const F64_TIGHT: f64 = 1e-12;

/// Asserts `|a - b| <= tol * max(1, |b|)` elementwise, naming the first index that differs.
pub fn assert_close(actual: &[f64], expected: &[f64], tol: f64, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!((a - e).abs() <= tol * e.abs().max(1.0), "{what}: element {i} is {a}, expected {e} (tolerance {tol})");
    }
}

pub mod scratch;
pub mod training;

#[cfg(any(feature = "cuda", feature = "cuda-emu"))]
pub mod cuda;
