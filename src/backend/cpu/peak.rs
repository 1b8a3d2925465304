//! What this machine can do at best, measured rather than looked up: the yardsticks the
//! kernel report divides by.
//!
//! - **FMA peak**: every thread runs a loop of fused multiply-adds on independent registers
//!   (`ACCUMULATORS` of them, so the FMA units never wait on a previous result: an FMA takes
//!   about 4 cycles and a core starts up to 2 per cycle, so 8 must be in flight). The widest
//!   vector unit the kernels use is measured (AVX-512, else AVX2 + FMA, chosen at run time,
//!   or lowered by `GLASSBOX_ISA`; NEON on aarch64); elsewhere a scalar loop gives a (much
//!   lower) figure.
//! - **Memory bandwidth**: the STREAM "triad" `a[i] = b[i] + s * c[i]` over arrays far larger
//!   than the caches, on all threads; bytes counted as STREAM does (two reads and one write of
//!   each element).

use std::time::{Duration, Instant};

use super::isa::{self, Isa};

use rayon::prelude::*;

/// Independent accumulator registers in the FMA loop (>= 8 hides FMA latency on two ports).
pub const ACCUMULATORS: usize = 12;
/// Loop iterations between clock reads in [`fma_peak`].
const FMA_CHUNK: u64 = 1 << 20;

/// Which FMA loop ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FmaIsa {
    /// 512-bit vectors: 16 f32 lanes.
    Avx512,
    /// 256-bit vectors with FMA: 8 f32 lanes.
    Avx2Fma,
    /// aarch64's 128-bit NEON vectors with FMA: 4 f32 lanes.
    Neon,
    /// Scalar multiply then add (no fused instruction assumed): 1 lane.
    Scalar,
}

impl FmaIsa {
    /// The loop of the instruction set the kernels run ([`isa::detect`]: the best this CPU
    /// has, unless `GLASSBOX_ISA` lowers it), so a kernel is measured against the peak of the
    /// instructions it can use. On aarch64 that is NEON: every aarch64 CPU has it, and the
    /// compiler vectorizes the portable kernels with it.
    pub fn detect() -> FmaIsa {
        match isa::detect() {
            Isa::Avx512 => FmaIsa::Avx512,
            Isa::Avx2Fma => FmaIsa::Avx2Fma,
            Isa::Portable if cfg!(target_arch = "aarch64") => FmaIsa::Neon,
            Isa::Portable => FmaIsa::Scalar,
        }
    }

    /// f32 lanes per register.
    pub fn lanes(self) -> usize {
        match self {
            FmaIsa::Avx512 => 16,
            FmaIsa::Avx2Fma => 8,
            FmaIsa::Neon => 4,
            FmaIsa::Scalar => 1,
        }
    }

    /// Name for reports.
    pub fn name(self) -> &'static str {
        match self {
            FmaIsa::Avx512 => "AVX-512 FMA",
            FmaIsa::Avx2Fma => "AVX2 FMA",
            FmaIsa::Neon => "NEON FMA",
            FmaIsa::Scalar => "scalar",
        }
    }

    /// Flops one iteration of the loop performs (an FMA counts as two).
    pub fn flops_per_iteration(self) -> f64 {
        (2 * ACCUMULATORS * self.lanes()) as f64
    }
}

/// The portable loop: `ACCUMULATORS` independent values, each stepping `x = x * mul + add`
/// (two roundings: without FMA hardware there is no fused step to count).
fn fma_loop_scalar(iterations: u64, start: f32, mul: f32, add: f32) -> f32 {
    let mut acc = [start; ACCUMULATORS];
    for _ in 0..iterations {
        for x in acc.iter_mut() {
            *x = *x * mul + add;
        }
    }
    // Every accumulator holds the same value; taking the largest keeps all of them live (the
    // compiler cannot know they are equal), so no accumulator's work can be dropped.
    acc.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x))
}

/// The vector loops use intrinsics, one FMA instruction per accumulator per step. An earlier
/// version left the vectorizing to the compiler (`[[f32; 16]; 12]` rows mapped through
/// `mul_add`); it compiled to FMAs in one build and, after unrelated changes elsewhere in the
/// crate, to gathers and scatters through the stack in another, and the "peak" fell from 207
/// to 4 GFLOP/s. A yardstick must not depend on the optimizer's mood.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn fma_loop_avx512(iterations: u64, start: f32, mul: f32, add: f32) -> f32 {
    use std::arch::x86_64::*;
    let (m, a) = (_mm512_set1_ps(mul), _mm512_set1_ps(add));
    let mut acc = [_mm512_set1_ps(start); ACCUMULATORS];
    for _ in 0..iterations {
        for x in acc.iter_mut() {
            *x = _mm512_fmadd_ps(*x, m, a);
        }
    }
    let mut lanes = [0.0f32; 16];
    let largest = acc.iter().fold(_mm512_set1_ps(f32::NEG_INFINITY), |best, &x| _mm512_max_ps(best, x));
    // SAFETY: `lanes` holds 16 f32, one 64-byte unaligned store.
    unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), largest) };
    lanes.iter().fold(f32::NEG_INFINITY, |best, &x| best.max(x))
}

/// [`fma_loop_avx512`] with 8-lane AVX2 registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_loop_avx2(iterations: u64, start: f32, mul: f32, add: f32) -> f32 {
    use std::arch::x86_64::*;
    let (m, a) = (_mm256_set1_ps(mul), _mm256_set1_ps(add));
    let mut acc = [_mm256_set1_ps(start); ACCUMULATORS];
    for _ in 0..iterations {
        for x in acc.iter_mut() {
            *x = _mm256_fmadd_ps(*x, m, a);
        }
    }
    let mut lanes = [0.0f32; 8];
    let largest = acc.iter().fold(_mm256_set1_ps(f32::NEG_INFINITY), |best, &x| _mm256_max_ps(best, x));
    // SAFETY: `lanes` holds 8 f32, one 32-byte unaligned store.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), largest) };
    lanes.iter().fold(f32::NEG_INFINITY, |best, &x| best.max(x))
}

/// [`fma_loop_avx512`] with aarch64's 4-lane NEON registers (`vfmaq_f32`, one rounding).
#[cfg(target_arch = "aarch64")]
fn fma_loop_neon(iterations: u64, start: f32, mul: f32, add: f32) -> f32 {
    use std::arch::aarch64::*;
    // SAFETY (every intrinsic here): NEON is part of every aarch64 CPU, and none of these
    // touches memory.
    unsafe {
        let (m, a) = (vdupq_n_f32(mul), vdupq_n_f32(add));
        let mut acc = [vdupq_n_f32(start); ACCUMULATORS];
        for _ in 0..iterations {
            for x in acc.iter_mut() {
                *x = vfmaq_f32(a, *x, m);
            }
        }
        let largest = acc.iter().fold(vdupq_n_f32(f32::NEG_INFINITY), |best, &x| vmaxq_f32(best, x));
        vmaxvq_f32(largest)
    }
}

/// Runs `iterations` steps of `x = x * mul + add` on every lane of every accumulator with
/// `isa`'s loop, and returns one lane's final `x` (all lanes compute the same value).
///
/// Panics if `isa` is not supported by this CPU.
pub fn fma_loop(isa: FmaIsa, iterations: u64, start: f32, mul: f32, add: f32) -> f32 {
    match isa {
        #[cfg(target_arch = "x86_64")]
        FmaIsa::Avx512 => {
            assert!(
                is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma"),
                "fma_loop: this CPU has no AVX-512"
            );
            // SAFETY: the CPU supports avx512f and fma (checked just above), the only
            // requirement of this target_feature function; its body is safe Rust on locals.
            unsafe { fma_loop_avx512(iterations, start, mul, add) }
        }
        #[cfg(target_arch = "x86_64")]
        FmaIsa::Avx2Fma => {
            assert!(
                is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
                "fma_loop: this CPU has no AVX2 + FMA"
            );
            // SAFETY: avx2 and fma are present (checked just above); the body is safe Rust.
            unsafe { fma_loop_avx2(iterations, start, mul, add) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        FmaIsa::Avx512 | FmaIsa::Avx2Fma => panic!("fma_loop: {} needs an x86-64 CPU", isa.name()),
        #[cfg(target_arch = "aarch64")]
        FmaIsa::Neon => fma_loop_neon(iterations, start, mul, add),
        #[cfg(not(target_arch = "aarch64"))]
        FmaIsa::Neon => panic!("fma_loop: NEON needs an aarch64 CPU"),
        FmaIsa::Scalar => fma_loop_scalar(iterations, start, mul, add),
    }
}

/// A measured arithmetic peak.
#[derive(Clone, Copy, Debug)]
pub struct FmaPeak {
    /// Billions of f32 flops per second, all threads together.
    pub gflops: f64,
    /// The loop that ran.
    pub isa: FmaIsa,
    /// Threads that ran it at once.
    pub threads: usize,
}

/// Runs the FMA loop on `threads` threads at once, `rounds` times for about `round_time`
/// each, and returns the best round's combined rate. The best, not the mean: on a shared
/// machine other work only ever slows a round down, so the fastest round is the closest to
/// what the hardware can do.
pub fn fma_peak(threads: usize, rounds: usize, round_time: Duration) -> FmaPeak {
    let isa = FmaIsa::detect();
    let threads = threads.max(1);
    let chunk_flops = FMA_CHUNK as f64 * isa.flops_per_iteration();
    // mul < 1 keeps x bounded (it tends to add / (1 - mul) = 1), so no lane overflows or goes
    // denormal however long the loop runs.
    let gflops = best_rate(
        threads,
        rounds,
        round_time,
        || (),
        |_| {
            std::hint::black_box(fma_loop(isa, FMA_CHUNK, 1.0, 0.999_9, 1e-4));
            chunk_flops
        },
    );
    FmaPeak { gflops, isa, threads }
}

/// Billions of flops per second that `work` reaches on `threads` threads at once, all
/// together: the best of `rounds` rounds of about `round_time` each. In a round each thread
/// builds its own state with `setup` (not timed), then calls `work` on it, which returns the
/// flops it did, until the time is up. It times [`fma_peak`] and the GEMM's tile alone
/// (`matmul::tile_ceiling`).
pub(crate) fn best_rate<S>(
    threads: usize,
    rounds: usize,
    round_time: Duration,
    setup: impl Fn() -> S + Sync,
    work: impl Fn(&mut S) -> f64 + Sync,
) -> f64 {
    let round = || -> f64 {
        let results: Vec<(f64, Duration)> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads.max(1))
                .map(|_| {
                    scope.spawn(|| {
                        let mut state = setup();
                        let start = Instant::now();
                        let mut flops = 0.0;
                        while start.elapsed() < round_time {
                            flops += work(&mut state);
                        }
                        (flops, start.elapsed())
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().expect("a measuring thread panicked")).collect()
        });
        let flops: f64 = results.iter().map(|(f, _)| f).sum();
        let wall = results.iter().map(|(_, t)| *t).max().unwrap_or_default();
        flops / wall.as_secs_f64() / 1e9
    };
    (0..rounds.max(1)).map(|_| round()).fold(0.0, f64::max)
}

/// The STREAM triad: `a[i] = b[i] + s * c[i]`, split over rayon's threads.
pub fn triad(a: &mut [f32], b: &[f32], c: &[f32], s: f32) {
    assert!(a.len() == b.len() && b.len() == c.len(), "triad: lengths {} {} {} differ", a.len(), b.len(), c.len());
    const CHUNK: usize = 1 << 16;
    a.par_chunks_mut(CHUNK).zip(b.par_chunks(CHUNK)).zip(c.par_chunks(CHUNK)).for_each(|((a, b), c)| {
        for ((x, &y), &z) in a.iter_mut().zip(b).zip(c) {
            *x = y + s * z;
        }
    });
}

/// A measured memory bandwidth.
#[derive(Clone, Copy, Debug)]
pub struct Bandwidth {
    /// Billions of bytes per second (best repetition).
    pub gbytes_per_s: f64,
    /// Bytes of all three arrays together.
    pub footprint: usize,
}

/// Times [`triad`] on three arrays of `len` f32 each, `reps` times, and returns the best
/// rate (the usual STREAM report). Pick `len` so the arrays far exceed the last-level cache.
pub fn stream_bandwidth(len: usize, reps: usize) -> Bandwidth {
    // Filled in parallel so each page is first touched by the threads that will use it.
    let fill = |v: f32| -> Vec<f32> {
        let mut x = vec![0.0f32; len];
        x.par_chunks_mut(1 << 16).for_each(|c| c.fill(v));
        x
    };
    let (mut a, b, c) = (fill(0.0), fill(1.0), fill(2.0));
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) {
        let start = Instant::now();
        triad(&mut a, &b, &c, 3.0);
        best = best.min(start.elapsed().as_secs_f64());
        std::hint::black_box(&a);
    }
    let bytes = 3.0 * 4.0 * len as f64;
    Bandwidth { gbytes_per_s: bytes / best / 1e9, footprint: 3 * 4 * len }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector loops must do exactly the arithmetic that is counted: the same recurrence,
    /// rounded once per step (fused), as the scalar `mul_add` gives.
    #[test]
    fn fma_loop_computes_the_counted_recurrence() {
        // Started away from the fixed point (1.0, where every step returns its input), so a
        // skipped step or a rounding between the multiply and the add changes the result.
        let (start, mul, add, n) = (0.0f32, 0.999_9f32, 1e-4f32, 1000u64);
        let isa = FmaIsa::detect();
        let mut expected = start;
        for _ in 0..n {
            expected = if isa == FmaIsa::Scalar { expected * mul + add } else { expected.mul_add(mul, add) };
        }
        assert_eq!(fma_loop(isa, n, start, mul, add), expected, "{}", isa.name());
        assert_eq!(fma_loop(FmaIsa::Scalar, 3, 0.0, 0.5, 1.0), 1.75); // 0 -> 1 -> 1.5 -> 1.75
    }

    #[test]
    fn triad_adds_scaled_vector() {
        let b: Vec<f32> = (0..100_000).map(|i| i as f32).collect();
        let c: Vec<f32> = (0..100_000).map(|i| (i % 7) as f32).collect();
        let mut a = vec![0.0; b.len()];
        triad(&mut a, &b, &c, 0.5);
        assert!(a.iter().enumerate().all(|(i, &x)| x == i as f32 + 0.5 * (i % 7) as f32));
    }
}
