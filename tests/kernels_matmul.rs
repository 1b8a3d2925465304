//! Every version of the CPU GEMM ladder against the naive reference, on odd shapes and on
//! transposed (strided) operands, in f32 and f64.

mod common;

use common::{assert_close, F32_ACCUMULATED, F64_TIGHT};
use glassbox::backend::cpu::matmul::{matmul_v1_naive, versions, MatRef};
use glassbox::rng::Rng;
use glassbox::tensor::Float;

fn random<T: Float>(n: usize, rng: &mut Rng) -> Vec<T> {
    (0..n).map(|_| T::from_f64(rng.normal())).collect()
}

fn check_all_versions<T: Float>(tol: f64) {
    // (37, 1030, 300) is three uneven depth slices (K = 1030) and two blocks of B's panels, the
    // second one partial, in every layout; row-major, its B (309,000 values, A only 37 rows)
    // is read in place by v6 but for the last, partial panel. The five after it have at most
    // four tiles of rows, so v6 reads any row-major B in place (whole panels of 64 columns, of
    // 32 for the 70-wide one, then a packed partial panel), with last tiles of 4 rows, 8 of a
    // 12-row tile, 3, 6 of a 12-row tile (which runs the 6-row kernel), and 4. The last three
    // are no wider than a vector (f32: all three with AVX-512, the last two with AVX2; f64: the
    // last two with AVX-512, the last with AVX2), which v6 multiplies with a tile one vector
    // wide: 24 rows with AVX-512, 12 with AVX2. Their last tiles: of 24 rows, 13 (the full
    // kernel on zero padding), 9 (the 12-row kernel) and 21; of 12 rows, 9 and 9.
    let shapes = [
        (1, 1, 1),
        (1, 7, 3),
        (7, 1, 5),
        (5, 3, 1),
        (17, 33, 9),
        (129, 65, 130),
        (64, 300, 17),
        (200, 257, 100),
        (37, 1030, 300),
        (10, 70, 200),
        (20, 50, 70),
        (3, 520, 1100),
        (18, 40, 20),
        (22, 90, 200),
        (61, 45, 10),
        (33, 600, 8),
        (45, 30, 4),
    ];
    let mut rng = Rng::new(42);
    for &(m, k, n) in &shapes {
        let a = random::<T>(m * k, &mut rng);
        let b = random::<T>(k * n, &mut rng);
        // The same matrices stored transposed, to exercise strided reads.
        let at: Vec<T> = (0..k * m).map(|idx| a[(idx % m) * k + idx / m]).collect();
        let bt: Vec<T> = (0..n * k).map(|idx| b[(idx % k) * n + idx / k]).collect();
        let mut reference = vec![T::ZERO; m * n];
        matmul_v1_naive(MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n), &mut reference);
        let reference: Vec<f64> = reference.iter().map(|v| v.to_f64()).collect();
        for (name, f) in versions::<T>() {
            // Every other element of a twice-as-wide buffer: neither rows nor columns contiguous.
            let spread = |v: &[T]| -> Vec<T> { v.iter().flat_map(|&x| [x, T::from_f64(f64::NAN)]).collect() };
            let (a2, b2) = (spread(&a), spread(&b));
            let every_other =
                |data, rows, cols| MatRef { data, offset: 0, rows, cols, row_stride: 2 * cols, col_stride: 2 };
            let operands = [
                ("row-major", MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n)),
                ("transposed", MatRef::row_major(&at, k, m).t(), MatRef::row_major(&bt, n, k).t()),
                ("strided", every_other(&a2, m, k), every_other(&b2, k, n)),
            ];
            for (layout, ma, mb) in operands {
                let mut c = vec![T::from_f64(f64::NAN); m * n];
                f(ma, mb, &mut c);
                let got: Vec<f64> = c.iter().map(|v| v.to_f64()).collect();
                assert_close(&got, &reference, tol * (k as f64).sqrt(), &format!("{name} {layout} {m}x{k}x{n}"));
            }
        }
    }
}

#[test]
fn every_f32_matmul_version_matches_naive_on_odd_shapes() {
    check_all_versions::<f32>(F32_ACCUMULATED);
}

#[test]
fn every_f64_matmul_version_matches_naive_on_odd_shapes() {
    check_all_versions::<f64>(F64_TIGHT);
}

#[test]
fn large_product_takes_the_parallel_path_and_stays_correct() {
    let (m, k, n) = (300, 520, 1100);
    let mut rng = Rng::new(7);
    let a = random::<f32>(m * k, &mut rng);
    let b = random::<f32>(k * n, &mut rng);
    let mut reference = vec![0.0f32; m * n];
    matmul_v1_naive(MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n), &mut reference);
    let to64 = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
    for (name, f) in versions::<f32>().into_iter().filter(|(name, _)| name.starts_with("v5") || name.starts_with("v6"))
    {
        let mut c = vec![0.0f32; m * n];
        f(MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n), &mut c);
        assert_close(
            &to64(&c),
            &to64(&reference),
            F32_ACCUMULATED * (k as f64).sqrt(),
            &format!("{name} 300x520x1100"),
        );
    }
}

/// A product with over 1 GFLOP per thread, on one thread and on two: v6 then runs tall tasks
/// that each pack their own blocks of B. Uneven on purpose: three depth slices of 367, a
/// partial last block and panel of B, a last tile of 5 rows. Checked against v4 (itself
/// checked against the naive product above), since the naive product of this size is slow;
/// in f32 and in f64 (whose vectors hold half as many values, so its panels are half as wide).
fn check_long_products<T: Float>(tol: f64) {
    let (m, k, n) = (1301, 1100, 730);
    let mut rng = Rng::new(13);
    let a = random::<T>(m * k, &mut rng);
    let b = random::<T>(k * n, &mut rng);
    let bt: Vec<T> = (0..n * k).map(|idx| b[(idx % k) * n + idx / k]).collect();
    let mut reference = vec![T::ZERO; m * n];
    glassbox::backend::cpu::matmul::matmul_v4_packed(
        MatRef::row_major(&a, m, k),
        MatRef::row_major(&b, k, n),
        &mut reference,
    );
    let reference: Vec<f64> = reference.iter().map(|x| x.to_f64()).collect();
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a thread pool");
        let operands = [("row-major", MatRef::row_major(&b, k, n)), ("transposed", MatRef::row_major(&bt, n, k).t())];
        for (layout, mb) in operands {
            let mut c = vec![T::from_f64(f64::NAN); m * n];
            pool.install(|| glassbox::backend::cpu::matmul::matmul_v6_wide(MatRef::row_major(&a, m, k), mb, &mut c));
            let got: Vec<f64> = c.iter().map(|x| x.to_f64()).collect();
            let what = format!("v6 {m}x{k}x{n}, B {layout}, {threads} threads");
            assert_close(&got, &reference, tol * (k as f64).sqrt(), &what);
        }
    }
}

#[test]
fn long_products_pack_b_per_task_and_stay_correct() {
    check_long_products::<f32>(F32_ACCUMULATED);
    check_long_products::<f64>(F64_TIGHT);
}

/// Both register tiles of the AVX-512 kernel (f32: width 21 takes the 12 x 32 one, 100 the
/// 6 x 64 one; f64: 12 x 16 and 6 x 32), on one thread and on several (300 rows).
fn check_bias<T: Float>(tol: f64) {
    let mut rng = Rng::new(9);
    for (m, k, n) in [(37, 70, 21), (37, 70, 100), (300, 70, 100)] {
        let a = random::<T>(m * k, &mut rng);
        let b = random::<T>(k * n, &mut rng);
        let bias = random::<T>(n, &mut rng);
        let mut reference = vec![T::ZERO; m * n];
        matmul_v1_naive(MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n), &mut reference);
        let expected: Vec<f64> = reference.iter().enumerate().map(|(i, v)| (*v + bias[i % n]).to_f64()).collect();
        let mut c = vec![T::from_f64(f64::NAN); m * n];
        glassbox::backend::cpu::matmul::matmul_bias(
            MatRef::row_major(&a, m, k),
            MatRef::row_major(&b, k, n),
            &bias,
            &mut c,
        );
        let got: Vec<f64> = c.iter().map(|v| v.to_f64()).collect();
        assert_close(&got, &expected, tol * (k as f64).sqrt(), &format!("matmul_bias {m}x{k}x{n}"));
    }
}

#[test]
fn matmul_bias_adds_the_bias_to_every_row() {
    check_bias::<f32>(F32_ACCUMULATED);
    check_bias::<f64>(F64_TIGHT);
}

/// `gemm_strided` writes a block inside a wider matrix: the block's rows are overwritten (or
/// added onto), everything between them is left alone. Both element types run v6 where the
/// CPU has AVX-512 or AVX2, the packed kernels elsewhere.
fn check_strided_output<T: Float>(tol: f64) {
    use glassbox::backend::cpu::matmul::gemm_strided;
    let mut rng = Rng::new(11);
    for &(m, k, n, ldc) in &[(1, 1, 1, 1), (13, 40, 7, 20), (64, 32, 33, 100), (300, 257, 70, 75)] {
        let a = random::<T>(m * k, &mut rng);
        let b = random::<T>(k * n, &mut rng);
        let mut product = vec![T::ZERO; m * n];
        matmul_v1_naive(MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n), &mut product);
        let before = random::<T>(m * ldc, &mut rng);
        for accumulate in [false, true] {
            for parallel in [false, true] {
                let mut c = before.clone();
                gemm_strided(
                    MatRef::row_major(&a, m, k),
                    MatRef::row_major(&b, k, n),
                    &mut c,
                    ldc,
                    parallel,
                    accumulate,
                );
                let expected: Vec<f64> = (0..m * ldc)
                    .map(|idx| {
                        let (i, j) = (idx / ldc, idx % ldc);
                        let old = before[idx].to_f64();
                        match (j < n, accumulate) {
                            (false, _) => old,
                            (true, false) => product[i * n + j].to_f64(),
                            (true, true) => old + product[i * n + j].to_f64(),
                        }
                    })
                    .collect();
                let got: Vec<f64> = c.iter().map(|v| v.to_f64()).collect();
                let what = format!("gemm_strided {m}x{k}x{n} ldc {ldc} accumulate {accumulate} parallel {parallel}");
                assert_close(&got, &expected, tol * (k as f64).sqrt(), &what);
            }
        }
    }
}

#[test]
fn strided_output_leaves_the_rest_of_the_matrix_alone() {
    check_strided_output::<f32>(F32_ACCUMULATED);
    check_strided_output::<f64>(F64_TIGHT);
}

/// Short products (a block of rows or less per thread) run as one task per thread: by depth
/// when deeper than one 512-deep slice, each task's sum then added onto C, else by B's panels
/// when they divide evenly among the threads. Both, on 2 and 3 threads, against v4 (checked
/// against the naive product above): overwriting, adding onto rows inside a wider matrix, and
/// with a bias; B row-major and transposed. `130 x 1031 x 200` splits its depth unevenly
/// (515 + 516, or 343 + 344 + 344); `100 x 300 x 384` has 6 panels of 64 f32 columns (12 of 32
/// f64 ones, 24 of AVX2's 16). `300 x 200 x 10` is neither: tasks of rows, each with the tile
/// one vector wide (see `check_all_versions`).
fn check_short_products_split_over_threads<T: Float>(tol: f64) {
    use glassbox::backend::cpu::matmul::{gemm_strided, matmul_bias, matmul_v4_packed};
    let mut rng = Rng::new(17);
    for (m, k, n) in [(130, 1031, 200), (100, 300, 384), (300, 200, 10)] {
        let a = random::<T>(m * k, &mut rng);
        let b = random::<T>(k * n, &mut rng);
        let bt: Vec<T> = (0..n * k).map(|idx| b[(idx % k) * n + idx / k]).collect();
        let bias = random::<T>(n, &mut rng);
        let ldc = n + 5;
        let before = random::<T>(m * ldc, &mut rng);
        let mut product = vec![T::ZERO; m * n];
        matmul_v4_packed(MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n), &mut product);
        let product: Vec<f64> = product.iter().map(|x| x.to_f64()).collect();
        let to64 = |v: &[T]| v.iter().map(|x| x.to_f64()).collect::<Vec<_>>();
        for threads in [2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a thread pool");
            let operands =
                [("row-major", MatRef::row_major(&b, k, n)), ("transposed", MatRef::row_major(&bt, n, k).t())];
            for (layout, mb) in operands {
                let what = |output: &str| format!("{m}x{k}x{n}, B {layout}, {threads} threads, {output}");
                let ma = MatRef::row_major(&a, m, k);
                let mut c = vec![T::from_f64(f64::NAN); m * n];
                pool.install(|| matmul_bias(ma, mb, &bias, &mut c));
                let expected: Vec<f64> = (0..m * n).map(|idx| product[idx] + bias[idx % n].to_f64()).collect();
                assert_close(&to64(&c), &expected, tol * (k as f64).sqrt(), &what("bias"));
                for accumulate in [false, true] {
                    let mut c = before.clone();
                    pool.install(|| gemm_strided(ma, mb, &mut c, ldc, true, accumulate));
                    let expected: Vec<f64> = (0..m * ldc)
                        .map(|idx| {
                            let (i, j, old) = (idx / ldc, idx % ldc, before[idx].to_f64());
                            match (j < n, accumulate) {
                                (false, _) => old,
                                (true, false) => product[i * n + j],
                                (true, true) => old + product[i * n + j],
                            }
                        })
                        .collect();
                    let output = if accumulate { "accumulate" } else { "overwrite" };
                    assert_close(&to64(&c), &expected, tol * (k as f64).sqrt(), &what(output));
                }
            }
        }
    }
}

#[test]
fn short_products_split_by_depth_or_columns_stay_correct() {
    check_short_products_split_over_threads::<f32>(F32_ACCUMULATED);
    check_short_products_split_over_threads::<f64>(F64_TIGHT);
}

/// While the pool's workers poll (`on_worker`, as the training loops run), products from 2^19
/// flops fork, not from 2^21: these small ones now split, by rows (the square, and
/// `10 x 1200 x 64`, whose B is read in place), by columns (`256 x 10 x 256`,
/// `100 x 50 x 100`) or by depth (`32 x 1100 x 16`, with the tile one vector wide). Checked
/// against v4, from a polling worker of the global pool (on one core they run on one thread).
#[test]
fn small_products_forked_from_a_polling_worker_stay_correct() {
    use glassbox::backend::cpu::matmul::{matmul_v4_packed, matmul_v6_wide};
    let mut rng = Rng::new(23);
    for (m, k, n) in [(64, 64, 64), (10, 1200, 64), (256, 10, 256), (100, 50, 100), (32, 1100, 16)] {
        let a = random::<f32>(m * k, &mut rng);
        let b = random::<f32>(k * n, &mut rng);
        let mut reference = vec![0.0f32; m * n];
        matmul_v4_packed(MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n), &mut reference);
        let reference: Vec<f64> = reference.iter().map(|&x| x as f64).collect();
        let mut c = vec![f32::NAN; m * n];
        glassbox::on_worker(|| matmul_v6_wide(MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n), &mut c));
        let got: Vec<f64> = c.iter().map(|&x| x as f64).collect();
        let what = format!("v6 {m}x{k}x{n} from a polling worker");
        assert_close(&got, &reference, F32_ACCUMULATED * (k as f64).sqrt(), &what);
    }
}
