//! Which vector instruction set this CPU offers, detected once at run time.
//!
//! Kernels that benefit from wide vectors are compiled several times from one generic body:
//! once as plain Rust (SSE2, the x86-64 baseline, or whatever the target has), and once per
//! instruction set inside a `#[target_feature]` function. At run time the kernel calls the
//! best version [`detect`] allows. Calling a `#[target_feature]` function is `unsafe` only
//! because the CPU might lack the feature, so every such call site's `SAFETY` argument is
//! "`detect` returned this ISA, so [`supported`] saw its features".

use std::sync::OnceLock;

/// The instruction sets kernels are compiled for, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512F with AVX2 and FMA: 16 f32 lanes.
    Avx512,
    /// AVX2 with FMA: 8 f32 lanes.
    Avx2Fma,
    /// The compilation target's baseline (SSE2 on x86-64).
    Portable,
}

/// The environment variable that lowers the instruction set every kernel runs:
/// `GLASSBOX_ISA=avx2` or `GLASSBOX_ISA=portable` (or `avx512`, the default where the CPU has
/// it). With it, an AVX-512 machine runs and measures the code an AVX2-only laptop or another
/// architecture would run: `GLASSBOX_ISA=avx2 cargo test` tests those paths.
pub const ISA_VARIABLE: &str = "GLASSBOX_ISA";

/// The best instruction set this CPU supports, or the one [`ISA_VARIABLE`] asks for if this
/// CPU has it (detected on first use, then cached). A request the CPU cannot serve, or a
/// value that names no instruction set, is reported once on stderr and ignored.
pub fn detect() -> Isa {
    static DETECTED: OnceLock<Isa> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        let best = best_supported();
        let Ok(asked) = std::env::var(ISA_VARIABLE) else {
            return best;
        };
        match parse(&asked) {
            Some(isa) if supported(isa) => isa,
            Some(isa) => {
                eprintln!("glassbox: {ISA_VARIABLE}={asked} asks for {isa:?}, which this CPU lacks; using {best:?}");
                best
            }
            None => {
                eprintln!("glassbox: {ISA_VARIABLE}={asked} is not one of avx512, avx2, portable; using {best:?}");
                best
            }
        }
    })
}

/// The best instruction set this CPU has, whatever [`ISA_VARIABLE`] says.
fn best_supported() -> Isa {
    [Isa::Avx512, Isa::Avx2Fma].into_iter().find(|&isa| supported(isa)).unwrap_or(Isa::Portable)
}

/// The instruction set named by `name` (`avx512`, `avx2` or `portable`, any case).
pub fn parse(name: &str) -> Option<Isa> {
    match name.trim().to_ascii_lowercase().as_str() {
        "avx512" | "avx-512" => Some(Isa::Avx512),
        "avx2" => Some(Isa::Avx2Fma),
        "portable" | "scalar" | "baseline" => Some(Isa::Portable),
        _ => None,
    }
}

/// True when this CPU has every feature the kernels for `isa` are compiled with.
pub fn supported(isa: Isa) -> bool {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => {
            is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
        Isa::Portable => true,
        #[cfg(not(target_arch = "x86_64"))]
        _ => false,
    }
}

/// Runs `body` compiled for the best instruction set of this CPU: the small dispatch the
/// memory-bound kernels (elementwise, softmax, layer norm, optimizer updates) share.
///
/// Only code inlined into the wrapper is compiled for the wider ISA, so mark the closure
/// `#[inline(always)]` and keep its hot loops in `#[inline(always)]` functions:
/// `isa::dispatch(#[inline(always)] || row_kernel(x, y))`. A call that is not inlined (a libm
/// function, a rayon split) runs its baseline build. Call it inside each rayon task, not
/// around the split: the tasks run as their own functions on other threads.
#[inline(always)]
pub fn dispatch<R>(body: impl FnOnce() -> R) -> R {
    run_on(detect(), body)
}

/// [`dispatch`] for a chosen instruction set (the kernel ladders compare the builds side by
/// side). Panics if this CPU lacks `isa`.
#[inline(always)]
pub fn run_on<R>(isa: Isa, body: impl FnOnce() -> R) -> R {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => {
            // `detect()` is one cached load; `supported` only runs for a hand-picked ISA.
            assert!(detect() == Isa::Avx512 || supported(Isa::Avx512), "this CPU has no AVX-512");
            // SAFETY: the assert saw avx512f, avx2 and fma on this CPU (directly, or through
            // detect()), the only requirement of the target_feature wrapper.
            unsafe { with_avx512(body) }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => {
            assert!(matches!(detect(), Isa::Avx512 | Isa::Avx2Fma) || supported(Isa::Avx2Fma), "this CPU has no AVX2");
            // SAFETY: the assert saw avx2 and fma on this CPU (AVX-512 machines have both).
            unsafe { with_avx2(body) }
        }
        _ => body(),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn with_avx512<R>(body: impl FnOnce() -> R) -> R {
    body()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn with_avx2<R>(body: impl FnOnce() -> R) -> R {
    body()
}

/// Asks the CPU to start loading the cache line holding `x` into L1, without waiting for it:
/// row kernels call it on the next row while computing on the current one, so the next row's
/// DRAM traffic overlaps this row's arithmetic. A no-op off x86-64.
#[inline(always)]
pub fn prefetch<T>(x: &T) {
    prefetch_address((x as *const T).cast::<u8>());
}

/// How far ahead of a streaming loop [`prefetch_ahead`] asks for lines: four 4 KiB pages.
/// The hardware's stream prefetcher stops at each page boundary and must see misses on the
/// next page before it runs ahead again; a loop with much arithmetic per value (GELU) waits
/// out those misses page after page. 8, 16 and 32 KiB measured alike; 2 KiB was too short.
pub const PREFETCH_AHEAD_BYTES: usize = 16 * 1024;

/// Asks for the lines of `xs[from..from + len]` moved [`PREFETCH_AHEAD_BYTES`] ahead, if
/// that point is still inside `xs`: called once per step of a loop that walks `xs` from
/// front to back, `len` values per step. (The last step's lines may reach up to `len` values
/// past the end of `xs`; a prefetch is a hint that never faults, so that costs nothing.)
#[inline(always)]
pub fn prefetch_ahead<T>(xs: &[T], from: usize, len: usize) {
    let size = std::mem::size_of::<T>().max(1);
    let ahead = from + PREFETCH_AHEAD_BYTES / size;
    if ahead < xs.len() {
        let first = xs.as_ptr().wrapping_add(ahead).cast::<u8>();
        for line in 0..(len * size).div_ceil(64) {
            prefetch_address(first.wrapping_add(64 * line));
        }
    }
}

/// [`prefetch`] for an address that need not point into anything.
#[inline(always)]
fn prefetch_address(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it never faults, whatever the address, and changes
    // no state a program can see. SSE (which has it) is part of x86-64's baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast::<i8>())
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// Longest slice [`prefetch_slice`] asks for, in bytes.
pub const PREFETCH_SLICE_MAX_BYTES: usize = 4096;

/// [`prefetch`] on every 64-byte line of `xs`: for a row that the next step of a row kernel
/// will read, issued before this row's last loop so the loads run alongside it. Rows longer
/// than [`PREFETCH_SLICE_MAX_BYTES`] are left to the hardware prefetcher, which follows a
/// long stream by itself: for a 4096-wide row the burst of 256 prefetches filled the core's
/// line-fill buffers and stalled it, the prefetch loop taking 40% of layer norm's backward
/// pass in a profile (and the next row, pulled into L1, pushed out the current one).
#[inline(always)]
pub fn prefetch_slice<T>(xs: &[T]) {
    if std::mem::size_of_val(xs) > PREFETCH_SLICE_MAX_BYTES {
        return;
    }
    let line = (64 / std::mem::size_of::<T>().max(1)).max(1);
    for x in xs.iter().step_by(line) {
        prefetch(x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instruction_sets_parse_by_name() {
        assert_eq!(parse("avx512"), Some(Isa::Avx512));
        assert_eq!(parse(" AVX2 "), Some(Isa::Avx2Fma));
        assert_eq!(parse("portable"), Some(Isa::Portable));
        assert_eq!(parse("sse4"), None);
    }

    /// Run under `GLASSBOX_ISA=avx2` or `=portable` (as `.ci/run` does), this checks that the
    /// whole suite then really ran the lower instruction set's kernels.
    #[test]
    fn the_variable_picks_the_instruction_set_every_kernel_runs() {
        let best = best_supported();
        let expected = match std::env::var(ISA_VARIABLE).ok().and_then(|name| parse(&name)) {
            Some(isa) if supported(isa) => isa,
            _ => best,
        };
        assert_eq!(detect(), expected);
    }
}
