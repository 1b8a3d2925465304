//! The CPU GEMM ladder at the MNIST MLP's shapes and at N = 512, with the `matrixmultiply`
//! crate as the yardstick measured in the same run. Criterion prints throughput in
//! elements/s; multiply by 2 to read flop/s (one multiply-add per element counted).
//!
//! `cargo bench --bench matmul`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use glassbox::backend::cpu::matmul::{versions, MatRef};
use glassbox::rng::Rng;

fn random(n: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n).map(|_| rng.normal() as f32).collect()
}

fn bench_matmul(c: &mut Criterion) {
    // (name, M, K, N): the MLP's forward first layer, its weight gradient, and a square case.
    let shapes =
        [("mlp_fwd_128x784x256", 128, 784, 256), ("mlp_dw_784x128x256", 784, 128, 256), ("square_512", 512, 512, 512)];
    let mut rng = Rng::new(0);
    for (label, m, k, n) in shapes {
        let a = random(m * k, &mut rng);
        let b = random(k * n, &mut rng);
        let mut out = vec![0.0f32; m * n];
        let mut group = c.benchmark_group(format!("matmul/{label}"));
        group.throughput(Throughput::Elements((m * n * k) as u64));
        group.sample_size(10);
        for (name, f) in versions::<f32>() {
            // The naive versions take seconds at 512; they are measured at the small shapes only.
            if m * n * k > 60_000_000 && (name == "v1_naive" || name == "v3_blocked") {
                continue;
            }
            group.bench_function(BenchmarkId::from_parameter(name), |bench| {
                bench.iter(|| f(MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n), &mut out))
            });
        }
        group.bench_function(BenchmarkId::from_parameter("yardstick_matrixmultiply"), |bench| {
            bench.iter(|| {
                // SAFETY: the pointers come from live Vecs of exactly m*k, k*n and m*n floats,
                // and the strides describe row-major matrices of those sizes.
                unsafe {
                    matrixmultiply::sgemm(
                        m,
                        k,
                        n,
                        1.0,
                        a.as_ptr(),
                        k as isize,
                        1,
                        b.as_ptr(),
                        n as isize,
                        1,
                        0.0,
                        out.as_mut_ptr(),
                        n as isize,
                        1,
                    )
                }
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench_matmul);
criterion_main!(benches);
