//! GPU benches with cuBLAS as the yardstick: every matmul version of kernels/matmul.cu and
//! matmul_tc.cu against cuBLAS SGEMM (f32) and cuBLAS with TF32 tensor cores, and flash
//! attention against the naive composition (matmul, softmax, matmul) at T = 1024.
//!
//! `cargo bench --features cublas-bench --bench cuda` (needs a GPU; prints a skip otherwise).
//!
//! Timing is synchronized: the device is drained before the clock starts and after the last
//! launch, so a measurement is the kernels' own time. Criterion reports throughput in
//! elements/s where one element is one flop, so its "Gelem/s" reads as GFLOP/s. After each
//! group a summary line gives TFLOP/s and the percentage of the cuBLAS yardstick. Targets
//! (issue 4, on an H100): f32 matmul >= 90% of cuBLAS SGEMM at 4096, TF32 tensor cores >= 70%
//! of cuBLAS TF32, flash attention forward >= 3x the naive composition at T = 1024.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use cudarc::cublas::{result as cublas, sys as cublas_sys};
use glassbox::backend::cuda::ops::matmul_launch;
use glassbox::backend::cuda::{AttnHeads, AttnShape, CudaDevice, DeviceBuffer, KernelArg};
use glassbox::backend::{AttentionShape, HeadLayout};
use glassbox::rng::Rng;

/// The GPU, or `None` (printing why): no driver, no GPU, or only the emulator, which proves
/// correctness but says nothing about speed.
fn gpu() -> Option<Arc<CudaDevice>> {
    match CudaDevice::get(0) {
        Ok(d) if d.is_emulator() => {
            println!("skip: device 0 is the CPU emulator; the CUDA benches need a GPU");
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            println!("skip: {e}");
            None
        }
    }
}

fn random_buffer(dev: &Arc<CudaDevice>, n: usize, seed: u64) -> DeviceBuffer {
    let mut rng = Rng::new(seed);
    let values: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    dev.upload_f32(&values).expect("upload")
}

/// Mean time of `f` over `reps` runs, with the device drained before and after.
fn time(dev: &CudaDevice, reps: u32, mut f: impl FnMut()) -> Duration {
    dev.synchronize().expect("synchronize");
    let start = Instant::now();
    for _ in 0..reps {
        f();
    }
    dev.synchronize().expect("synchronize");
    start.elapsed() / reps
}

/// A cuBLAS handle on the current context, with its math mode.
struct Cublas(cublas_sys::cublasHandle_t);

impl Cublas {
    fn new(tf32: bool) -> Option<Cublas> {
        // SAFETY: only tries to dlopen libcublas.
        if !unsafe { cublas_sys::is_culib_present() } {
            println!("skip: libcublas.so not found (add its folder to LD_LIBRARY_PATH); no yardstick");
            return None;
        }
        let handle = cublas::create_handle().expect("cublasCreate");
        let mode = if tf32 {
            cublas_sys::cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH
        } else {
            cublas_sys::cublasMath_t::CUBLAS_DEFAULT_MATH
        };
        // SAFETY: `handle` was just created.
        unsafe { cublas_sys::cublasSetMathMode(handle, mode) }.result().expect("cublasSetMathMode");
        Some(Cublas(handle))
    }

    /// Row-major `C[m, n] = A[m, k] B[k, n]`: cuBLAS is column-major, so it computes
    /// `C^T = B^T A^T`, which has the same bytes.
    fn sgemm(&self, a: &DeviceBuffer, b: &DeviceBuffer, c: &DeviceBuffer, m: usize, k: usize, n: usize) {
        let (alpha, beta) = (1.0f32, 0.0f32);
        let op = cublas_sys::cublasOperation_t::CUBLAS_OP_N;
        // SAFETY: the buffers hold m*k, k*n and m*n floats on the handle's device; alpha and
        // beta are host scalars that outlive the call.
        unsafe {
            cublas::sgemm(
                self.0,
                op,
                op,
                n as i32,
                m as i32,
                k as i32,
                &alpha,
                b.ptr() as *const f32,
                n as i32,
                a.ptr() as *const f32,
                k as i32,
                &beta,
                c.ptr() as *mut f32,
                n as i32,
            )
        }
        .expect("cublasSgemm");
    }
}

impl Drop for Cublas {
    fn drop(&mut self) {
        // SAFETY: the handle is destroyed once, here.
        let _ = unsafe { cublas::destroy_handle(self.0) };
    }
}

/// `C = A B` for `n x n` matrices with matmul `version`.
fn launch_matmul(dev: &CudaDevice, version: &str, a: &DeviceBuffer, b: &DeviceBuffer, c: &DeviceBuffer, n: usize) {
    let (grid, block) = matmul_launch(version, 1, n, n).expect("launch size");
    let n = KernelArg::I32(n as i32);
    dev.launch(version, grid, block, &[a.arg(), b.arg(), c.arg(), n.clone(), n.clone(), n]).expect("launch");
}

const VERSIONS: [&str; 7] = [
    "matmul_v1_naive",
    "matmul_v2_coalesced",
    "matmul_v3_shared",
    "matmul_v4_register_blocked",
    "matmul_v5_vectorized",
    "matmul_v6_tf32_wmma",
    "matmul_v6_bf16_wmma",
];

fn bench_matmul(c: &mut Criterion) {
    let Some(dev) = gpu() else { return };
    println!("device: {}", dev.describe());
    let (Some(sgemm), Some(tf32)) = (Cublas::new(false), Cublas::new(true)) else { return };
    for n in [1024usize, 2048, 4096] {
        let flops = 2.0 * (n * n * n) as f64;
        let (a, b, out) = (random_buffer(&dev, n * n, 1), random_buffer(&dev, n * n, 2), random_buffer(&dev, n * n, 3));
        let mut group = c.benchmark_group(format!("cuda_matmul/{n}"));
        group.throughput(Throughput::Elements(flops as u64)).sample_size(10).measurement_time(Duration::from_secs(3));
        let mut summary = Vec::new();
        let reps = if n >= 4096 { 5 } else { 20 };
        for (name, tf) in [("cublas_sgemm", &sgemm), ("cublas_tf32", &tf32)] {
            group.bench_function(BenchmarkId::from_parameter(name), |bench| {
                bench.iter_custom(|iters| time(&dev, iters as u32, || tf.sgemm(&a, &b, &out, n, n, n)) * iters as u32)
            });
            summary.push((name, time(&dev, reps, || tf.sgemm(&a, &b, &out, n, n, n))));
        }
        for version in VERSIONS {
            // The two uncached versions take seconds at 4096 and teach nothing more there.
            if n > 2048 && (version == "matmul_v1_naive" || version == "matmul_v2_coalesced") {
                continue;
            }
            group.bench_function(BenchmarkId::from_parameter(version), |bench| {
                bench.iter_custom(|iters| {
                    time(&dev, iters as u32, || launch_matmul(&dev, version, &a, &b, &out, n)) * iters as u32
                })
            });
            summary.push((version, time(&dev, reps, || launch_matmul(&dev, version, &a, &b, &out, n))));
        }
        group.finish();
        let tflops = |t: Duration| flops / t.as_secs_f64() / 1e12;
        let yard = |name: &str| summary.iter().find(|(n, _)| *n == name).map(|(_, t)| tflops(*t)).unwrap_or(f64::NAN);
        for (name, t) in &summary {
            // Tensor-core versions against cuBLAS on tensor cores (TF32; there is no f32-input
            // bf16 cuBLAS GEMM to compare the bf16 version with).
            let against = if name.contains("tf32") || name.contains("bf16") { "cublas_tf32" } else { "cublas_sgemm" };
            println!(
                "matmul {n}: {name:<28} {:7.2} TFLOP/s  {:5.1}% of {against}",
                tflops(*t),
                100.0 * tflops(*t) / yard(against)
            );
        }
    }
}

fn bench_attention(c: &mut Criterion) {
    let Some(dev) = gpu() else { return };
    let (batch, heads, t, d) = (4usize, 8usize, 1024usize, 64usize);
    let bh = batch * heads;
    let shape = AttentionShape { batch, heads, t_q: t, t_k: t, d, causal: false };
    // Q K^T and P V: 2 * 2 * T * T * d flops per head.
    let flops = 4.0 * (bh * t * t * d) as f64;
    let (q, k, v) =
        (random_buffer(&dev, bh * t * d, 4), random_buffer(&dev, bh * t * d, 5), random_buffer(&dev, bh * t * d, 6));
    let o = random_buffer(&dev, bh * t * d, 7);
    let lse = random_buffer(&dev, bh * t, 8);
    // The naive composition gets K already transposed and Q already scaled, for free.
    let k_t = random_buffer(&dev, bh * t * d, 9);
    let (scores, probs) = (random_buffer(&dev, bh * t * t, 10), random_buffer(&dev, bh * t * t, 11));
    let int = |v: usize| KernelArg::I32(v as i32);
    let naive = || {
        let (grid, block) = matmul_launch("matmul_v5_vectorized", bh, t, t).expect("size");
        dev.launch("matmul_v5_vectorized", grid, block, &[q.arg(), k_t.arg(), scores.arg(), int(t), int(t), int(d)])
            .expect("QK^T");
        let rows = bh * t;
        let args = [scores.arg(), probs.arg(), int(rows), int(t), int(0)];
        dev.launch("softmax_v3_online", (rows.div_ceil(8) as u32, 1, 1), (256, 1, 1), &args).expect("softmax");
        let (grid, block) = matmul_launch("matmul_v5_vectorized", bh, t, d).expect("size");
        dev.launch("matmul_v5_vectorized", grid, block, &[probs.arg(), v.arg(), o.arg(), int(t), int(d), int(t)])
            .expect("PV");
    };
    let heads_arg = |l: HeadLayout| KernelArg::from_struct(&AttnHeads::new(l).expect("layout"));
    let l = HeadLayout::contiguous(heads, t, d);
    let s = AttnShape::new(shape).expect("shape");
    let flash = || {
        let args = [
            q.arg(),
            heads_arg(l),
            k.arg(),
            heads_arg(l),
            v.arg(),
            heads_arg(l),
            o.arg(),
            lse.arg(),
            KernelArg::from_struct(&s),
        ];
        dev.launch("attention_v2_flash_forward_d64", (t.div_ceil(32) as u32, bh as u32, 1), (32, 1, 1), &args)
            .expect("flash");
    };
    let mut group = c.benchmark_group(format!("cuda_attention/b{batch}_h{heads}_t{t}_d{d}"));
    group.throughput(Throughput::Elements(flops as u64)).sample_size(10).measurement_time(Duration::from_secs(3));
    group.bench_function("v1_naive_matmul_softmax_matmul", |bench| {
        bench.iter_custom(|iters| time(&dev, iters as u32, naive) * iters as u32)
    });
    group.bench_function("v2_flash_forward", |bench| {
        bench.iter_custom(|iters| time(&dev, iters as u32, flash) * iters as u32)
    });
    group.finish();
    let (t_naive, t_flash) = (time(&dev, 10, naive), time(&dev, 10, flash));
    println!(
        "attention T={t}: naive {:.2} ms ({:.2} TFLOP/s), flash {:.2} ms ({:.2} TFLOP/s): flash is {:.2}x the naive speed",
        t_naive.as_secs_f64() * 1e3,
        flops / t_naive.as_secs_f64() / 1e12,
        t_flash.as_secs_f64() * 1e3,
        flops / t_flash.as_secs_f64() / 1e12,
        t_naive.as_secs_f64() / t_flash.as_secs_f64()
    );
}

criterion_group!(benches, bench_matmul, bench_attention);
criterion_main!(benches);
