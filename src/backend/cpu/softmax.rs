//! Softmax, log-softmax and softmax cross-entropy over the rows of a contiguous matrix.
//!
//! softmax(x)_j = e^(x_j - m) / sum_k e^(x_k - m) with m = max_k x_k. Subtracting the row max
//! changes nothing mathematically and keeps every exponent <= 0, so no logit (even 1e4)
//! overflows. log_softmax(x)_j = x_j - m - ln(sum_k e^(x_k - m)) stays finite where softmax
//! underflows to 0. Rows are independent, so large inputs split across threads by rows.
//!
//! The ladder (`backend::cpu::fused_ladder`, timed by `examples/kernel_report.rs`):
//! - `v1_naive`: the textbook three passes per row (max; exp and a running sum; divide) on one
//!   thread. The running sum is a serial dependency, so the exp loop cannot use SIMD lanes.
//! - `v2_portable`: the product kernel built for the x86-64 baseline (SSE2, 4 lanes): the exp
//!   loop and the sum are separate loops, the max and the sum keep independent accumulators, so
//!   every loop vectorizes; rows split across threads. A row (<= 16 KiB at 4096 columns) stays
//!   in L1/L2 between its passes, so memory sees one read of `x` and one write of `y`.
//! - `v3_simd`: the same body compiled for AVX-512 (16 lanes) or AVX2 + FMA, picked at run
//!   time ([`isa::dispatch`]); the polynomial exp no longer bounds the kernel, memory does.
//!   Figures: `cargo run --release --example kernel_report -- --family softmax`.

use rayon::prelude::*;

use super::isa::{self, Isa};
use super::strided::PARALLEL_MIN_ELEMENTS;
use crate::tensor::{Float, HostBuffer};

/// Calls `f(row_index, out_row)` for every `cols`-long row of `out`, compiled for `isa`.
/// `f` must be `#[inline(always)]` to be built for `isa` (see [`isa::dispatch`]).
fn for_rows<T: Float>(isa: Isa, out: &mut [T], cols: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let row = |(r, y): (usize, &mut [T])| {
        isa::run_on(
            isa,
            #[inline(always)]
            || f(r, y),
        )
    };
    if out.len() >= PARALLEL_MIN_ELEMENTS {
        out.par_chunks_mut(cols).enumerate().for_each(row);
    } else {
        out.chunks_mut(cols).enumerate().for_each(row);
    }
}

/// Writes `e^(x - max)` of a row into `out` and returns `(max, sum of those)`. The exponentials
/// and the sum are separate loops on purpose: a running sum inside the exp loop is a serial
/// dependency that keeps the compiler from vectorizing the exp (it measured 4x slower).
///
/// `next` is the next row of the input (or empty): its cache lines are prefetched during the
/// exp loop, so that reading it from memory overlaps this row's arithmetic instead of
/// following it.
#[inline(always)]
fn exp_shifted<T: Float>(row: &[T], out: &mut [T], next: &[T]) -> (T, T) {
    let max = super::reduce::max_contiguous(row);
    // One prefetch per 64-byte line of the next row, issued alongside each line of this one.
    // Whole lines go through `chunks_exact`, whose fixed length lets the compiler unroll the
    // line into whole vectors with no bounds logic between them; the last partial line follows.
    let line = (64 / std::mem::size_of::<T>()).max(1);
    let whole = row.len() / line * line;
    for (i, (o, v)) in out[..whole].chunks_exact_mut(line).zip(row[..whole].chunks_exact(line)).enumerate() {
        if let Some(x) = next.get(i * line) {
            isa::prefetch(x);
        }
        for (o, &v) in o.iter_mut().zip(v) {
            *o = (v - max).exp_nonpositive();
        }
    }
    for (o, &v) in out[whole..row.len()].iter_mut().zip(&row[whole..]) {
        *o = (v - max).exp_nonpositive();
    }
    (max, super::reduce::sum_contiguous(out))
}

/// `v1_naive` of the ladder: softmax (or log-softmax) the textbook way, one thread, a running
/// sum in the exp loop. Kept as the reference the fast versions are tested against.
pub fn softmax_rows_naive<T: Float>(x: &[T], cols: usize, log: bool) -> HostBuffer<T> {
    let mut out = HostBuffer::zeroed(x.len());
    if cols == 0 {
        return out;
    }
    for (row, y) in x.chunks(cols).zip(out.chunks_mut(cols)) {
        let max = row.iter().fold(T::NEG_INFINITY, |m, &v| m.max(v));
        let mut sum = T::ZERO;
        for (o, &v) in y.iter_mut().zip(row) {
            *o = (v - max).exp();
            sum += *o;
        }
        let shift = max + sum.ln();
        for (o, &v) in y.iter_mut().zip(row) {
            *o = if log { v - shift } else { *o / sum };
        }
    }
    out
}

/// Softmax (or log-softmax when `log`) of each `cols`-long row of `x`.
pub fn softmax_rows<T: Float>(x: &[T], cols: usize, log: bool) -> HostBuffer<T> {
    softmax_rows_on(isa::detect(), x, cols, log)
}

/// [`softmax_rows`] compiled for a chosen instruction set (`v2_portable` / `v3_simd`).
pub fn softmax_rows_on<T: Float>(isa: Isa, x: &[T], cols: usize, log: bool) -> HostBuffer<T> {
    let mut out = super::pool::reuse::<T>(x.len());
    if cols == 0 {
        return out;
    }
    for_rows(
        isa,
        &mut out,
        cols,
        #[inline(always)]
        |r, y| {
            let row = &x[r * cols..(r + 1) * cols];
            let next = x.get((r + 1) * cols..(r + 2) * cols).unwrap_or(&[]);
            let (max, sum) = exp_shifted(row, y, next);
            if log {
                let shift = max + sum.ln();
                for (o, &v) in y.iter_mut().zip(row) {
                    *o = v - shift;
                }
            } else {
                let inv = T::ONE / sum;
                for o in y.iter_mut() {
                    *o *= inv;
                }
            }
        },
    );
    out
}

/// Input gradient of softmax (`log = false`, `y` = softmax output): `y * (g - sum(g * y))`;
/// of log-softmax (`log = true`, `y` = log-softmax output): `g - e^y * sum(g)`.
pub fn softmax_backward_rows<T: Float>(y: &[T], g: &[T], cols: usize, log: bool) -> HostBuffer<T> {
    let mut out = super::pool::reuse::<T>(y.len());
    if cols == 0 {
        return out;
    }
    for_rows(
        isa::detect(),
        &mut out,
        cols,
        #[inline(always)]
        |r, dx| {
            let (yr, gr) = (&y[r * cols..(r + 1) * cols], &g[r * cols..(r + 1) * cols]);
            if log {
                let total = super::reduce::sum_contiguous(gr);
                for ((d, &yv), &gv) in dx.iter_mut().zip(yr).zip(gr) {
                    *d = gv - yv.exp_nonpositive() * total;
                }
            } else {
                let dot = super::reduce::dot_contiguous(yr, gr);
                for ((d, &yv), &gv) in dx.iter_mut().zip(yr).zip(gr) {
                    *d = yv * (gv - dot);
                }
            }
        },
    );
    out
}

/// `v1_naive` of the cross-entropy ladder: the naive softmax, then each row's loss from it.
/// Returns the same `(mean loss, softmax)` as [`cross_entropy_rows`].
pub fn cross_entropy_rows_naive<T: Float>(x: &[T], cols: usize, targets: &[usize]) -> (f64, HostBuffer<T>) {
    let probs = softmax_rows_naive(x, cols, false);
    let total: f64 = targets.iter().enumerate().map(|(r, &t)| -probs[r * cols + t].to_f64().ln()).sum();
    (total / targets.len().max(1) as f64, probs)
}

/// Mean over rows of `-ln softmax(x)[target]`, and the softmax itself (which the backward
/// pass needs), in one pass per row.
pub fn cross_entropy_rows<T: Float>(x: &[T], cols: usize, targets: &[usize]) -> (f64, HostBuffer<T>) {
    cross_entropy_rows_on(isa::detect(), x, cols, targets)
}

/// [`cross_entropy_rows`] compiled for a chosen instruction set.
pub fn cross_entropy_rows_on<T: Float>(isa: Isa, x: &[T], cols: usize, targets: &[usize]) -> (f64, HostBuffer<T>) {
    let mut probs = super::pool::reuse::<T>(x.len());
    let mut losses = vec![0.0f64; targets.len()];
    if cols > 0 {
        // Each row: softmax into `probs`, and its loss `max + ln(sum) - x[target]` from the same
        // pass (not from ln(p[target]), which underflows to -inf for very wrong logits).
        let row_job = |(r, (p, loss)): (usize, (&mut [T], &mut f64))| {
            isa::run_on(
                isa,
                #[inline(always)]
                || {
                    let row = &x[r * cols..(r + 1) * cols];
                    let next = x.get((r + 1) * cols..(r + 2) * cols).unwrap_or(&[]);
                    let (max, sum) = exp_shifted(row, p, next);
                    let inv = T::ONE / sum;
                    for v in p.iter_mut() {
                        *v *= inv;
                    }
                    *loss = (max + sum.ln() - row[targets[r]]).to_f64();
                },
            )
        };
        if x.len() >= PARALLEL_MIN_ELEMENTS {
            probs.par_chunks_mut(cols).zip(losses.par_iter_mut()).enumerate().for_each(row_job);
        } else {
            probs.chunks_mut(cols).zip(losses.iter_mut()).enumerate().for_each(row_job);
        }
    }
    let rows = targets.len().max(1);
    (losses.iter().sum::<f64>() / rows as f64, probs)
}

/// Gradient of the mean cross-entropy: `(p - onehot(t)) * scale`, with `scale` the upstream
/// gradient divided by the number of rows.
pub fn cross_entropy_backward_rows<T: Float>(probs: &[T], cols: usize, targets: &[usize], scale: T) -> HostBuffer<T> {
    let mut out = super::pool::reuse::<T>(probs.len());
    if cols == 0 {
        return out;
    }
    for_rows(
        isa::detect(),
        &mut out,
        cols,
        #[inline(always)]
        |r, d| {
            for (o, &p) in d.iter_mut().zip(&probs[r * cols..(r + 1) * cols]) {
                *o = p * scale;
            }
            // The one-hot term touches one element: subtracted after the vector loop, not
            // tested inside it. `(p - 1) * scale` exactly as before, so results are unchanged.
            d[targets[r]] = (probs[r * cols + targets[r]] - T::ONE) * scale;
        },
    );
    out
}
