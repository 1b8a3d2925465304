//! Softmax, log-softmax and softmax cross-entropy over the rows of a contiguous matrix.
//!
//! softmax(x)_j = e^(x_j - m) / sum_k e^(x_k - m) with m = max_k x_k. Subtracting the row max
//! changes nothing mathematically and keeps every exponent <= 0, so no logit (even 1e4)
//! overflows. log_softmax(x)_j = x_j - m - ln(sum_k e^(x_k - m)) stays finite where softmax
//! underflows to 0. Rows are independent, so large inputs split across threads by rows.

use rayon::prelude::*;

use super::strided::PARALLEL_MIN_ELEMENTS;
use crate::tensor::Float;

fn for_rows<T: Float>(out: &mut [T], cols: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    if out.len() >= PARALLEL_MIN_ELEMENTS {
        out.par_chunks_mut(cols).enumerate().for_each(|(r, row)| f(r, row));
    } else {
        out.chunks_mut(cols).enumerate().for_each(|(r, row)| f(r, row));
    }
}

/// Writes `e^(x - max)` of a row into `out` and returns `(max, sum of those)`. The exponentials
/// and the sum are separate loops on purpose: a running sum inside the exp loop is a serial
/// dependency that keeps the compiler from vectorizing the exp (it measured 4x slower).
#[inline(always)]
fn exp_shifted<T: Float>(row: &[T], out: &mut [T]) -> (T, T) {
    let max = row.iter().fold(T::NEG_INFINITY, |m, &v| m.max(v));
    for (o, &v) in out.iter_mut().zip(row) {
        *o = (v - max).exp();
    }
    (max, super::reduce::sum_contiguous(out))
}

/// Softmax (or log-softmax when `log`) of each `cols`-long row of `x`.
pub fn softmax_rows<T: Float>(x: &[T], cols: usize, log: bool) -> Vec<T> {
    let mut out = super::pool::reuse::<T>(x.len());
    if cols == 0 {
        return out;
    }
    for_rows(&mut out, cols, |r, y| {
        let row = &x[r * cols..(r + 1) * cols];
        let (max, sum) = exp_shifted(row, y);
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
    });
    out
}

/// Input gradient of softmax (`log = false`, `y` = softmax output): `y * (g - sum(g * y))`;
/// of log-softmax (`log = true`, `y` = log-softmax output): `g - e^y * sum(g)`.
pub fn softmax_backward_rows<T: Float>(y: &[T], g: &[T], cols: usize, log: bool) -> Vec<T> {
    let mut out = super::pool::reuse::<T>(y.len());
    if cols == 0 {
        return out;
    }
    for_rows(&mut out, cols, |r, dx| {
        let (yr, gr) = (&y[r * cols..(r + 1) * cols], &g[r * cols..(r + 1) * cols]);
        if log {
            let total: T = gr.iter().copied().sum();
            for ((d, &yv), &gv) in dx.iter_mut().zip(yr).zip(gr) {
                *d = gv - yv.exp() * total;
            }
        } else {
            let dot: T = yr.iter().zip(gr).map(|(&a, &b)| a * b).sum();
            for ((d, &yv), &gv) in dx.iter_mut().zip(yr).zip(gr) {
                *d = yv * (gv - dot);
            }
        }
    });
    out
}

/// Mean over rows of `-ln softmax(x)[target]`, and the softmax itself (which the backward
/// pass needs), in one pass per row.
pub fn cross_entropy_rows<T: Float>(x: &[T], cols: usize, targets: &[usize]) -> (f64, Vec<T>) {
    let mut probs = super::pool::reuse::<T>(x.len());
    let mut losses = vec![0.0f64; targets.len()];
    if cols > 0 {
        // Each row: softmax into `probs`, and its loss `max + ln(sum) - x[target]` from the same
        // pass (not from ln(p[target]), which underflows to -inf for very wrong logits).
        let row_job = |(r, (p, loss)): (usize, (&mut [T], &mut f64))| {
            let row = &x[r * cols..(r + 1) * cols];
            let (max, sum) = exp_shifted(row, p);
            let inv = T::ONE / sum;
            for v in p.iter_mut() {
                *v *= inv;
            }
            *loss = (max + sum.ln() - row[targets[r]]).to_f64();
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
pub fn cross_entropy_backward_rows<T: Float>(probs: &[T], cols: usize, targets: &[usize], scale: T) -> Vec<T> {
    let mut out = super::pool::reuse::<T>(probs.len());
    for_rows(&mut out, cols, |r, d| {
        for (j, (o, &p)) in d.iter_mut().zip(&probs[r * cols..(r + 1) * cols]).enumerate() {
            let onehot = if j == targets[r] { T::ONE } else { T::ZERO };
            *o = (p - onehot) * scale;
        }
    });
    out
}
