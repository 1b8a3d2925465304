//! The CPU GEMM ladder against two yardsticks measured in the same run: the `gemm` crate
//! (built with its AVX-512 kernels, feature `x86-v4`) and `matrixmultiply`. Shapes: the
//! MNIST MLP's first and last forward products and its backward products (row-major, so the
//! yardsticks read them at their best), the GPT step's QKV projection and its weight gradient, and
//! squares from 512 to 2048.
//!
//! A second summary line times each product from a rayon worker while the other workers poll
//! (`on_worker`, as the training loops call the GEMM), against the crate called the same way.
//! For the MLP's shapes a third times it right after both cores rewrite B, as a training step
//! leaves its operands.
//!
//! Criterion prints throughput in elements/s; one element is one multiply-add, so multiply by
//! 2 to read flop/s. After each shape a summary line gives GFLOP/s of the engine's GEMM
//! (`v6_wide` on AVX-512 and AVX2 CPUs), its share of the machine's FMA peak (measured on all
//! threads at the start of the run, for the instruction set the kernels use) and its
//! throughput relative to each yardstick (best of 7 timed runs each, interleaved, all
//! threads). Issue 3's targets: >= 1.05x `gemm` and >= 90% of the FMA peak at 512..2048, and
//! no worse than `gemm` at the MLP's shapes.
//!
//! Beside the FMA peak the run measures v6's register tile alone (`tile_ceiling`: the kernel
//! over a tile of A in L1 and a block of B in L2, nothing else), and each summary line gives
//! the product's share of that too. The FMA peak runs multiply-adds on registers only; the
//! tile's loads of B cost it some of that rate, which no product with this tile can win back.
//!
//! The last groups (`f64_*`) time the engine's f64 GEMM against the crate's at three shapes;
//! their summary lines measure against the f64 FMA peak, half the f32 one.
//!
//! With `--features openblas-bench` (and the system's OpenBLAS, Debian's `libopenblas-dev`)
//! OpenBLAS joins the yardsticks, in the criterion groups and the summary lines.
//!
//! `cargo bench --bench matmul` (`-- square` for the squares only, `-- f64` for f64).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use glassbox::backend::cpu::matmul::{tile_ceiling, versions, MatRef, TileCeiling};
use glassbox::backend::cpu::peak::FmaPeak;
use glassbox::rng::Rng;
use glassbox::tensor::{Float, HostBuffer};
use rayon::prelude::*;

fn random<T: Float>(n: usize, rng: &mut Rng) -> Vec<T> {
    (0..n).map(|_| T::from_f64(rng.normal())).collect()
}

/// `C = A B` by the `gemm` crate, row-major operands, on all rayon threads.
fn yardstick_gemm<T: Float>(m: usize, k: usize, n: usize, a: &[T], b: &[T], c: &mut [T]) {
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    // SAFETY: the pointers come from live slices of exactly m*k, k*n and m*n floats, and the
    // (column, row) strides describe row-major matrices of those sizes; read_dst = false
    // means C's old contents are ignored.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            T::ZERO,
            T::ONE,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// `C = A B` by `matrixmultiply`, row-major operands (threaded by its own feature).
fn yardstick_matrixmultiply(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    // SAFETY: as above: live buffers of exactly m*k, k*n and m*n floats with row-major strides.
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
            c.as_mut_ptr(),
            n as isize,
            1,
        )
    }
}

/// OpenBLAS, through its C interface (`cblas_sgemm`, `cblas_dgemm`) on its own thread pool,
/// sized to rayon's.
#[cfg(feature = "openblas-bench")]
mod openblas {
    use std::os::raw::c_int;

    const ROW_MAJOR: c_int = 101;
    const NO_TRANSPOSE: c_int = 111;

    #[link(name = "openblas")]
    extern "C" {
        fn cblas_sgemm(
            layout: c_int,
            trans_a: c_int,
            trans_b: c_int,
            m: c_int,
            n: c_int,
            k: c_int,
            alpha: f32,
            a: *const f32,
            lda: c_int,
            b: *const f32,
            ldb: c_int,
            beta: f32,
            c: *mut f32,
            ldc: c_int,
        );
        fn cblas_dgemm(
            layout: c_int,
            trans_a: c_int,
            trans_b: c_int,
            m: c_int,
            n: c_int,
            k: c_int,
            alpha: f64,
            a: *const f64,
            lda: c_int,
            b: *const f64,
            ldb: c_int,
            beta: f64,
            c: *mut f64,
            ldc: c_int,
        );
        fn openblas_set_num_threads(threads: c_int);
        fn blas_thread_shutdown_() -> c_int;
    }

    /// Stops OpenBLAS's worker threads; its next call starts them again. After a call they
    /// keep spinning for work (for 2^28 cycles, about 0.1 s, by default), which would slow
    /// whatever is timed next on the same cores. Waiting that out instead leaves the cores
    /// idle long enough that the next product runs slowly as well.
    pub fn stop_threads() {
        // SAFETY: no OpenBLAS call is running (the benches call it from one thread); the
        // library restarts its threads on the next call.
        unsafe { blas_thread_shutdown_() };
    }

    /// Sizes OpenBLAS's pool to `threads`.
    pub fn set_threads(threads: usize) {
        // SAFETY: a plain setter of the library's thread count.
        unsafe { openblas_set_num_threads(threads as c_int) }
    }

    /// The element types OpenBLAS multiplies, each with its `cblas_?gemm`.
    pub trait Element: Copy {
        /// `C = A B` for row-major `m x k` A and `k x n` B (leading dimensions k, n, n).
        ///
        /// # Safety
        /// `a`, `b` and `c` point to at least `m k`, `k n` and `m n` values.
        unsafe fn cblas_gemm(m: c_int, k: c_int, n: c_int, a: *const Self, b: *const Self, c: *mut Self);
    }

    impl Element for f32 {
        unsafe fn cblas_gemm(m: c_int, k: c_int, n: c_int, a: *const f32, b: *const f32, c: *mut f32) {
            // SAFETY: the caller's promise; beta = 0, so C's old contents are not read.
            unsafe { cblas_sgemm(ROW_MAJOR, NO_TRANSPOSE, NO_TRANSPOSE, m, n, k, 1.0, a, k, b, n, 0.0, c, n) }
        }
    }

    impl Element for f64 {
        unsafe fn cblas_gemm(m: c_int, k: c_int, n: c_int, a: *const f64, b: *const f64, c: *mut f64) {
            // SAFETY: as for f32.
            unsafe { cblas_dgemm(ROW_MAJOR, NO_TRANSPOSE, NO_TRANSPOSE, m, n, k, 1.0, a, k, b, n, 0.0, c, n) }
        }
    }

    /// `C = A B`, row-major operands.
    pub fn gemm<T: Element>(m: usize, k: usize, n: usize, a: &[T], b: &[T], c: &mut [T]) {
        assert!(a.len() == m * k && b.len() == k * n && c.len() == m * n, "openblas gemm: buffer sizes");
        let [m, k, n] = [m, k, n].map(|d| c_int::try_from(d).expect("OpenBLAS takes dimensions that fit a C int"));
        // SAFETY: the slices hold exactly m*k, k*n and m*n values (checked above).
        unsafe { T::cblas_gemm(m, k, n, a.as_ptr(), b.as_ptr(), c.as_mut_ptr()) }
    }
}

/// Rewrites every value of `b`, each core its half, as a training step leaves an operand: the
/// previous op or the optimizer update has just written it, split by rows between threads.
fn rewrite_from_both_cores(b: &mut [f32], round: usize) {
    let half = b.len().div_ceil(2);
    let nudge = round as f32 * 1e-7;
    b.par_chunks_mut(half).for_each(|chunk| chunk.iter_mut().for_each(|x| *x = *x * 0.5 + nudge));
}

/// Median time in seconds of `product(b)`, preceded by `rewrite_from_both_cores(b)` when
/// `rewrite`, over `rounds` rounds of `reps` each.
fn median_product_time(
    b: &mut [f32],
    rewrite: bool,
    rounds: usize,
    reps: usize,
    mut product: impl FnMut(&[f32]),
) -> f64 {
    let mut times: Vec<f64> = (0..rounds)
        .map(|round| {
            let start = Instant::now();
            for rep in 0..reps {
                if rewrite {
                    rewrite_from_both_cores(b, round * reps + rep);
                }
                product(b);
            }
            start.elapsed().as_secs_f64() / reps as f64
        })
        .collect();
    median(&mut times)
}

/// The median of `values` (sorting them).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Best time in seconds of each of `variants` products over `rounds` rounds, the variants
/// taking turns (`run(i)` runs variant `i`, once untimed, then once timed) so all of them see
/// the same load on a shared machine. OpenBLAS's threads, left spinning by its variant, are
/// stopped after every timed run ([`stop_openblas`]; a no-op after the others).
fn interleaved_best(rounds: usize, variants: usize, mut run: impl FnMut(usize)) -> Vec<f64> {
    let mut best = vec![f64::INFINITY; variants];
    for _ in 0..rounds {
        for (i, best_i) in best.iter_mut().enumerate() {
            run(i);
            let start = Instant::now();
            run(i);
            *best_i = best_i.min(start.elapsed().as_secs_f64());
            stop_openblas();
        }
    }
    best
}

/// 1 when the bench has OpenBLAS (a last variant in the summaries), else 0.
const OPENBLAS_VARIANTS: usize = cfg!(feature = "openblas-bench") as usize;

/// Stops OpenBLAS's threads (`openblas::stop_threads`) when the bench has OpenBLAS.
fn stop_openblas() {
    #[cfg(feature = "openblas-bench")]
    openblas::stop_threads();
}

/// ", 1.23x OpenBLAS" for a summary line when the bench has OpenBLAS (its time `best[at]`,
/// against the engine's `ours`), else nothing.
fn against_openblas(best: &[f64], at: usize, ours: f64) -> String {
    match best.get(at) {
        Some(theirs) => format!(", {:.2}x OpenBLAS", theirs / ours),
        None => String::new(),
    }
}

/// The machine's FMA peak on all threads, measured once per run (both benchmark functions
/// report against it).
fn fma_peak() -> FmaPeak {
    static PEAK: OnceLock<FmaPeak> = OnceLock::new();
    *PEAK.get_or_init(|| {
        let peak = glassbox::backend::cpu::peak::fma_peak(rayon::current_num_threads(), 10, Duration::from_millis(100));
        println!("FMA peak: {:.0} GFLOP/s on {} threads ({})", peak.gflops, peak.threads, peak.isa.name());
        peak
    })
}

/// v6's register tile alone on all threads (`tile_ceiling`), measured once per run right after
/// the FMA peak: the share of the peak that a product with this tile can reach here. `None`
/// where the engine does not run v6.
fn tile_alone() -> Option<TileCeiling> {
    static TILE: OnceLock<Option<TileCeiling>> = OnceLock::new();
    *TILE.get_or_init(|| {
        let peak = fma_peak();
        let tile = tile_ceiling(rayon::current_num_threads(), 10, Duration::from_millis(100))?;
        println!(
            "v6's {} x {} register tile alone ({}-deep calls over a block of {} panels of B): {:.0} GFLOP/s = {:.0}% \
             of the FMA peak",
            tile.tile.0,
            tile.tile.1,
            tile.depth,
            tile.panels,
            tile.gflops,
            100.0 * tile.gflops / peak.gflops
        );
        Some(tile)
    })
}

fn bench_matmul(c: &mut Criterion) {
    let peak = fma_peak();
    let tile = tile_alone();
    #[cfg(feature = "openblas-bench")]
    openblas::set_threads(rayon::current_num_threads());
    // (name, M, K, N).
    let shapes = [
        ("mlp_fwd_128x784x256", 128, 784, 256),
        ("mlp_fwd3_128x128x10", 128, 128, 10),
        ("mlp_dw_784x128x256", 784, 128, 256),
        ("mlp_dw2_128x128x256", 128, 128, 256),
        ("mlp_dw3_10x128x128", 10, 128, 128),
        ("mlp_dh2_128x10x128", 128, 10, 128),
        ("gpt_qkv_2048x128x384", 2048, 128, 384),
        ("gpt_dw_384x2048x128", 384, 2048, 128),
        ("square_512", 512, 512, 512),
        ("square_1024", 1024, 1024, 1024),
        ("square_2048", 2048, 2048, 2048),
    ];
    let engine = versions::<f32>().into_iter().last().expect("the ladder has versions");
    let mut rng = Rng::new(0);
    for (label, m, k, n) in shapes {
        let a = random(m * k, &mut rng);
        let b = random(k * n, &mut rng);
        // C starts on a cache line, as every tensor's buffer does (`HostBuffer`). A `Vec`'s
        // 16-byte alignment makes every 64-byte store straddle two lines, and where two
        // threads write neighbouring columns of one row, they share that line.
        let mut out = HostBuffer::<f32>::zeroed(m * n);
        let mut group = c.benchmark_group(format!("matmul/{label}"));
        group.throughput(Throughput::Elements((m * n * k) as u64));
        group.sample_size(10);
        for (name, f) in versions::<f32>() {
            // The early versions take seconds on big shapes; they are measured on small ones.
            let slow = ["v1_naive", "v2_ikj", "v3_blocked"].contains(&name);
            if (slow && m * n * k > 60_000_000) || (name == "v4_packed" && m * n * k > 2_000_000_000) {
                continue;
            }
            group.bench_function(BenchmarkId::from_parameter(name), |bench| {
                bench.iter(|| f(MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n), &mut out))
            });
        }
        group.bench_function(BenchmarkId::from_parameter("yardstick_gemm_crate"), |bench| {
            bench.iter(|| yardstick_gemm(m, k, n, &a, &b, &mut out))
        });
        group.bench_function(BenchmarkId::from_parameter("yardstick_matrixmultiply"), |bench| {
            bench.iter(|| yardstick_matrixmultiply(m, k, n, &a, &b, &mut out))
        });
        #[cfg(feature = "openblas-bench")]
        group.bench_function(BenchmarkId::from_parameter("yardstick_openblas"), |bench| {
            bench.iter(|| openblas::gemm(m, k, n, &a, &b, &mut out))
        });
        group.finish();
        stop_openblas();

        // Interleaved best-of timings for the summary line, so all the variants see the same
        // load.
        let variants = 3 + OPENBLAS_VARIANTS;
        let best = interleaved_best(7, variants, |i| match i {
            0 => (engine.1)(MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n), &mut out),
            1 => yardstick_gemm(m, k, n, &a, &b, &mut out),
            2 => yardstick_matrixmultiply(m, k, n, &a, &b, &mut out),
            #[cfg(feature = "openblas-bench")]
            3 => openblas::gemm(m, k, n, &a, &b, &mut out),
            _ => unreachable!("no summary variant {i}"),
        });
        let (ours, theirs, mm) = (best[0], best[1], best[2]);
        let gflops = 2.0 * (m * n * k) as f64 / ours / 1e9;
        let of_tile =
            tile.map(|t| format!(", {:.0}% of the tile alone", 100.0 * gflops / t.gflops)).unwrap_or_default();
        println!(
            "summary {label}: {} {gflops:.0} GFLOP/s on {} threads ({:.0}% of the FMA peak{of_tile}) = {:.2}x the \
             gemm crate, {:.2}x matrixmultiply{}",
            engine.0,
            rayon::current_num_threads(),
            100.0 * gflops / peak.gflops,
            theirs / ours,
            mm / ours,
            against_openblas(&best, 3, ours)
        );

        // Every product again, from a rayon worker while the pool's other workers poll for
        // jobs, as the training examples run them (`on_worker`). From `main`, as above, a
        // product of tens of microseconds is largely the two thread switches and the wake-up
        // that every call pays, ours and the crate's. On the same read-only B, hot in both
        // cores' caches; and for the MLP's products, also with B rewritten by both cores before
        // each product, as a training step leaves it (there, times include the rewrite, the
        // same for both).
        if rayon::current_num_threads() > 1 {
            let mut b = b.clone();
            let reps = (20_000_000 / (m * n * k)).clamp(5, 200);
            let rewrites: &[bool] = if label.starts_with("mlp_") { &[false, true] } else { &[false] };
            for &rewrite in rewrites {
                let (mut ours, mut theirs) = (vec![], vec![]);
                glassbox::on_worker(|| {
                    for _ in 0..5 {
                        ours.push(median_product_time(&mut b, rewrite, 5, reps, |b| {
                            (engine.1)(MatRef::row_major(&a, m, k), MatRef::row_major(b, k, n), &mut out)
                        }));
                        theirs.push(median_product_time(&mut b, rewrite, 5, reps, |b| {
                            yardstick_gemm(m, k, n, &a, b, &mut out)
                        }));
                    }
                });
                let (ours, theirs) = (median(&mut ours), median(&mut theirs));
                let context = if rewrite { "B rewritten by both cores before each product" } else { "B hot" };
                let rewrite_note = if rewrite { " (rewrite included)" } else { "" };
                println!(
                    "summary {label}, from a polling worker, {context}: {:.1} us vs the gemm crate's {:.1} us{rewrite_note} \
                     = {:.2}x",
                    ours * 1e6,
                    theirs * 1e6,
                    theirs / ours
                );
            }
        }
    }
}

/// The f64 products: the engine against the `gemm` crate, with a summary line per shape.
fn bench_matmul_f64(c: &mut Criterion) {
    // Half as many f64 lanes per vector as f32 ones, at the same instruction rate.
    let f64_peak = fma_peak().gflops / 2.0;
    println!("f64 FMA peak: {f64_peak:.0} GFLOP/s");
    #[cfg(feature = "openblas-bench")]
    openblas::set_threads(rayon::current_num_threads());
    let shapes = [
        ("f64_gpt_qkv_2048x128x384", 2048, 128, 384),
        ("f64_square_512", 512, 512, 512),
        ("f64_square_1024", 1024, 1024, 1024),
    ];
    let engine = versions::<f64>().into_iter().last().expect("the ladder has versions");
    let mut rng = Rng::new(1);
    for (label, m, k, n) in shapes {
        let a = random::<f64>(m * k, &mut rng);
        let b = random::<f64>(k * n, &mut rng);
        let mut out = HostBuffer::<f64>::zeroed(m * n);
        let mut group = c.benchmark_group(format!("matmul/{label}"));
        group.throughput(Throughput::Elements((m * n * k) as u64));
        group.sample_size(10);
        group.bench_function(BenchmarkId::from_parameter(engine.0), |bench| {
            bench.iter(|| (engine.1)(MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n), &mut out))
        });
        group.bench_function(BenchmarkId::from_parameter("yardstick_gemm_crate"), |bench| {
            bench.iter(|| yardstick_gemm(m, k, n, &a, &b, &mut out))
        });
        #[cfg(feature = "openblas-bench")]
        group.bench_function(BenchmarkId::from_parameter("yardstick_openblas"), |bench| {
            bench.iter(|| openblas::gemm(m, k, n, &a, &b, &mut out))
        });
        group.finish();
        stop_openblas();
        let variants = 2 + OPENBLAS_VARIANTS;
        let best = interleaved_best(7, variants, |i| match i {
            0 => (engine.1)(MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n), &mut out),
            1 => yardstick_gemm(m, k, n, &a, &b, &mut out),
            #[cfg(feature = "openblas-bench")]
            2 => openblas::gemm(m, k, n, &a, &b, &mut out),
            _ => unreachable!("no summary variant {i}"),
        });
        let (ours, theirs) = (best[0], best[1]);
        let gflops = 2.0 * (m * n * k) as f64 / ours / 1e9;
        println!(
            "summary {label}: {} {gflops:.0} GFLOP/s on {} threads ({:.0}% of the f64 FMA peak) = {:.2}x the gemm \
             crate{}",
            engine.0,
            rayon::current_num_threads(),
            100.0 * gflops / f64_peak,
            theirs / ours,
            against_openblas(&best, 2, ours)
        );
    }
}

criterion_group!(benches, bench_matmul, bench_matmul_f64);
criterion_main!(benches);
