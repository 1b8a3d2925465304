//! Helpers for the CUDA kernel tests: the device to run on (a GPU, or the CPU emulator when
//! built with `cuda-emu`), uploads and downloads, and comparison with the CPU path at named
//! tolerances, printing one line per kernel checked (`--nocapture` shows them).

use std::sync::Arc;

use glassbox::backend::cuda::{CudaDevice, DeviceBuffer};
use glassbox::rng::Rng;

/// Elementwise kernels: one or two roundings apart from the CPU (different exp/tanh).
pub const ELEMENTWISE_TOL: f64 = 1e-5;
/// Softmax-like rows: sums of exponentials in a different order.
pub const SOFTMAX_TOL: f64 = 1e-4;
/// Matmul in f32: length-k sums in a different order, relative to sum_k |a_ik b_kj|.
pub const MATMUL_TOL: f64 = 1e-3;
/// TF32 tensor cores: operands rounded to 10 mantissa bits (2^-11 relative each).
pub const TF32_TOL: f64 = 5e-3;
/// bf16 tensor cores: operands rounded to 8 mantissa bits (2^-9 relative each).
pub const BF16_TOL: f64 = 1e-2;
/// Reductions and atomically accumulated sums: order of additions differs.
pub const ACCUMULATED_TOL: f64 = 1e-4;

/// The device the kernel tests run on, or `None` (printing why) when there is none.
pub fn device() -> Option<Arc<CudaDevice>> {
    match CudaDevice::get(0) {
        Ok(d) => Some(d),
        Err(e) => {
            println!("skip: {e}");
            None
        }
    }
}

/// Standard normal f32 values.
pub fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.normal() as f32).collect()
}

/// Uploads `values`.
pub fn upload(dev: &Arc<CudaDevice>, values: &[f32]) -> DeviceBuffer {
    dev.upload_f32(values).expect("upload")
}

/// A buffer of `n` NaNs, so an element a kernel forgets to write fails the comparison.
pub fn poisoned(dev: &Arc<CudaDevice>, n: usize) -> DeviceBuffer {
    upload(dev, &vec![f32::NAN; n])
}

/// The first `n` f32 values of `buf`.
pub fn download(dev: &Arc<CudaDevice>, buf: &DeviceBuffer, n: usize) -> Vec<f32> {
    dev.download_f32(buf, 0, n).expect("download")
}

/// The largest `|got - want| / max(1, |want|)`; NaN where either is NaN (and `want` is not).
pub fn max_error(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len(), "lengths differ");
    got.iter()
        .zip(want)
        .map(|(&g, &w)| {
            let (g, w) = (g as f64, w as f64);
            if w.is_nan() && g.is_nan() {
                0.0
            } else {
                let e = (g - w).abs() / w.abs().max(1.0);
                if e.is_nan() {
                    f64::INFINITY
                } else {
                    e
                }
            }
        })
        .fold(0.0, f64::max)
}

/// Asserts `got` matches `want` within `tol` (relative, floor 1), printing the result line.
pub fn check(what: &str, got: &[f32], want: &[f32], tol: f64) {
    let err = max_error(got, want);
    println!("{what}: max error {err:.2e} (tolerance {tol:.0e}) {}", if err <= tol { "ok" } else { "FAILED" });
    if err > tol {
        let (i, (g, w)) = got
            .iter()
            .zip(want)
            .enumerate()
            .max_by(|a, b| max_error(&[*a.1 .0], &[*a.1 .1]).total_cmp(&max_error(&[*b.1 .0], &[*b.1 .1])))
            .expect("non-empty");
        panic!("{what}: element {i} is {g}, expected {w} (max error {err:e} > tolerance {tol:e})");
    }
}
