//! Layer normalization over the rows of a contiguous `[rows, cols]` matrix (Ba, Kiros and
//! Hinton, 2016), forward and backward, one pass over the data each way.
//!
//! Forward, per row: `mean = sum(x) / C`, `var = sum((x - mean)^2) / C`,
//! `rstd = 1 / sqrt(var + eps)`, `xhat = (x - mean) rstd`, `y = xhat * w + b`.
//! The row's `mean` and `rstd` are saved: the backward pass needs them, and saving two numbers
//! per row beats saving `xhat` (C numbers per row).
//!
//! Backward, with `g = dL/dy` and `dxhat = g * w`:
//! `dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))`,
//! `dw = sum over rows of g * xhat`, `db = sum over rows of g`.
//! The first line is the Jacobian of the normalization applied to `dxhat`: subtracting the
//! mean removes the component along the all-ones direction, and the `xhat` term removes the
//! component that would change the row's variance.
//!
//! Both passes run each row (or band of rows) through [`isa::run_on`]: one body, built for
//! the x86-64 baseline and for AVX-512 / AVX2 + FMA, the best chosen at run time. The ladder
//! (`backend::cpu::fused_ladder`) times the baseline build (`v1_portable`) against the
//! dispatched one (`v2_simd`).

use rayon::prelude::*;

use super::isa::{self, Isa};
use super::strided::PARALLEL_MIN_ELEMENTS;
use crate::tensor::{Float, HostBuffer};

/// Values per step of the forward pass's normalizing loop over a long row: a 64-byte line of
/// f32.
const CHUNK: usize = 16;
/// Rows handled per parallel task.
const ROWS_PER_TASK: usize = 16;
/// Rows per band of the backward pass's dw / db partial sums.
const ROWS_PER_BAND: usize = 64;

/// Normalizes each row; returns `(y, mean, rstd)`.
pub fn layer_norm<T: Float>(
    x: &[T],
    w: &[T],
    b: &[T],
    cols: usize,
    eps: f64,
) -> (HostBuffer<T>, HostBuffer<T>, HostBuffer<T>) {
    layer_norm_on(isa::detect(), x, w, b, cols, eps)
}

/// [`layer_norm`] compiled for a chosen instruction set.
pub fn layer_norm_on<T: Float>(
    isa: Isa,
    x: &[T],
    w: &[T],
    b: &[T],
    cols: usize,
    eps: f64,
) -> (HostBuffer<T>, HostBuffer<T>, HostBuffer<T>) {
    let rows = x.len().checked_div(cols).unwrap_or(0);
    let mut y = super::pool::reuse::<T>(x.len());
    let mut mean = super::pool::zeros::<T>(rows);
    let mut rstd = super::pool::zeros::<T>(rows);
    let inv_cols = T::from_f64(1.0 / cols.max(1) as f64);
    let eps = T::from_f64(eps);
    let row_job = |(r, y_row): (usize, &mut [T]), mean_r: &mut T, rstd_r: &mut T| {
        let (m, s) = isa::run_on(
            isa,
            #[inline(always)]
            || {
                let x_row = &x[r * cols..(r + 1) * cols];
                let m = super::reduce::sum_contiguous(x_row) * inv_cols;
                let var = sum_squared_deviations(x_row, m) * inv_cols;
                let s = T::ONE / (var + eps).sqrt();
                // The next row streams in while this one is normalized. A short row's lines are
                // asked for at once (`isa::prefetch_slice`); a long row's one per line,
                // alongside the same line of this row (as softmax's exp loop does): a burst of
                // hundreds would fill the line-fill buffers and stall the core.
                let next = x.get((r + 1) * cols..(r + 2) * cols).unwrap_or(&[]);
                if std::mem::size_of_val(next) <= isa::PREFETCH_SLICE_MAX_BYTES {
                    isa::prefetch_slice(next);
                    normalize(y_row, x_row, w, b, (m, s));
                    return (m, s);
                }
                let whole = cols / CHUNK * CHUNK;
                let line = (64 / std::mem::size_of::<T>()).max(1);
                for j0 in (0..whole).step_by(CHUNK) {
                    for k in (0..CHUNK).step_by(line) {
                        if let Some(n) = next.get(j0 + k) {
                            isa::prefetch(n);
                        }
                    }
                    // Fixed-size arrays, so the compiler sees whole vectors (over plain
                    // sub-slices it unrolled sixteen scalar operations instead). Copied, unlike
                    // the backward pass's: borrowed, the loads could not be proved apart from
                    // the stores to y and the loop went scalar again (20 GB/s against 29-32).
                    let (xs, ws, bs) =
                        (*chunk::<T, CHUNK>(x_row, j0), *chunk::<T, CHUNK>(w, j0), *chunk::<T, CHUNK>(b, j0));
                    let ys = chunk_mut::<T, CHUNK>(y_row, j0);
                    for k in 0..CHUNK {
                        ys[k] = (xs[k] - m) * s * ws[k] + bs[k];
                    }
                }
                normalize(&mut y_row[whole..], &x_row[whole..], &w[whole..], &b[whole..], (m, s));
                (m, s)
            },
        );
        *mean_r = m;
        *rstd_r = s;
    };
    if x.len() >= PARALLEL_MIN_ELEMENTS {
        y.par_chunks_mut(cols)
            .enumerate()
            .zip(mean.par_iter_mut().zip(rstd.par_iter_mut()))
            .with_min_len(ROWS_PER_TASK)
            .for_each(|(row, (m, s))| row_job(row, m, s));
    } else {
        y.chunks_mut(cols)
            .enumerate()
            .zip(mean.iter_mut().zip(rstd.iter_mut()))
            .for_each(|(row, (m, s))| row_job(row, m, s));
    }
    (y, mean, rstd)
}

/// `y = (x - m) s w + b` over a row (or a stretch of one). A function rather than a closure so
/// that it can be inlined by force: a closure left as a function of its own would be compiled
/// without the instruction set `run_on` enables (see `isa::dispatch`).
#[inline(always)]
fn normalize<T: Float>(y: &mut [T], x: &[T], w: &[T], b: &[T], (m, s): (T, T)) {
    for (((o, &v), &wv), &bv) in y.iter_mut().zip(x).zip(w).zip(b) {
        *o = (v - m) * s * wv + bv;
    }
}

/// `sum((x - m)^2)` with eight independent accumulators, so the loop vectorizes (a single
/// running sum is a serial dependency the compiler must keep in order).
#[inline(always)]
fn sum_squared_deviations<T: Float>(xs: &[T], m: T) -> T {
    let mut acc = [T::ZERO; 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for k in 0..8 {
            acc[k] += (c[k] - m) * (c[k] - m);
        }
    }
    let tail = chunks.remainder().iter().fold(T::ZERO, |a, &v| a + (v - m) * (v - m));
    acc.iter().fold(tail, |a, &v| a + v)
}

/// Lanes of [`backward_row_sums`]' two running sums.
const ROW_SUM_LANES: usize = 16;

/// One row of the backward pass's first sweep: adds `g * xhat` to `dw` and `g` to `db`, and
/// returns `(sum(dxhat), sum(dxhat * xhat))` with `dxhat = g * w`. The two sums run in
/// [`ROW_SUM_LANES`] lanes each, over fixed-size chunks of the row (every slice below has a
/// length known at compile time), which the compiler turns into one vector per sum and per
/// array. An earlier version, a loop over zipped iterators with two running sums, compiled to
/// scalar code; the version before this one wrote the two products to stack scratch and
/// summed that with `sum_contiguous`, two more stores and loads per value.
///
/// `x_all` and `g_all` are the whole of x and g, the row starting at `row_start`: the loop asks
/// for the lines [`isa::PREFETCH_AHEAD_BYTES`] ahead in both (`isa::prefetch_ahead`), as the
/// elementwise kernels do, because the hardware prefetcher stops at page boundaries. With
/// 4096-wide rows that took the pass from 76-79% of the triad to 84-89% (2048 x 128
/// unchanged). It also covers the next row, which the pass used to prefetch on its own
/// (`isa::prefetch_slice`): dropping that left 2048 x 128 at 43-46 GB/s (42-44 with it).
#[inline(always)]
fn backward_row_sums<T: Float>(
    (x, g, w): (&[T], &[T], &[T]),
    (m, s): (T, T),
    (dw, db): (&mut [T], &mut [T]),
    (x_all, g_all, row_start): (&[T], &[T], usize),
) -> (T, T) {
    const L: usize = ROW_SUM_LANES;
    let (mut sum_d, mut sum_dx) = ([T::ZERO; L], [T::ZERO; L]);
    let whole = x.len() / L * L;
    for j0 in (0..whole).step_by(L) {
        isa::prefetch_ahead(x_all, row_start + j0, L);
        isa::prefetch_ahead(g_all, row_start + j0, L);
        let (xs, gs, ws) = (chunk::<T, L>(x, j0), chunk::<T, L>(g, j0), chunk::<T, L>(w, j0));
        let (dws, dbs) = (chunk_mut::<T, L>(dw, j0), chunk_mut::<T, L>(db, j0));
        for k in 0..L {
            let xhat = (xs[k] - m) * s;
            let d = gs[k] * ws[k];
            dws[k] += gs[k] * xhat;
            dbs[k] += gs[k];
            sum_d[k] += d;
            sum_dx[k] += d * xhat;
        }
    }
    let (mut tail_d, mut tail_dx) = (T::ZERO, T::ZERO);
    for j in whole..x.len() {
        let xhat = (x[j] - m) * s;
        let d = g[j] * w[j];
        dw[j] += g[j] * xhat;
        db[j] += g[j];
        tail_d += d;
        tail_dx += d * xhat;
    }
    let total = |lanes: [T; L], tail: T| lanes.iter().fold(tail, |a, &v| a + v);
    (total(sum_d, tail_d), total(sum_dx, tail_dx))
}

/// The `N` values of `v` from `j0`, as an array whose length the compiler knows, so a loop over
/// it becomes whole vectors. Borrowed, not copied: copied, the arrays went through the stack
/// (`layer_norm_backward` at 2048 x 128 ran at 43-47 GB/s, borrowed at 50-53).
#[inline(always)]
fn chunk<T, const N: usize>(v: &[T], j0: usize) -> &[T; N] {
    v[j0..j0 + N].try_into().expect("a chunk of N values")
}

/// [`chunk`] for writing.
#[inline(always)]
fn chunk_mut<T, const N: usize>(v: &mut [T], j0: usize) -> &mut [T; N] {
    (&mut v[j0..j0 + N]).try_into().expect("a chunk of N values")
}

/// Gradients `(dx, dw, db)` of layer norm from the saved row statistics.
pub fn layer_norm_backward<T: Float>(
    x: &[T],
    w: &[T],
    mean: &[T],
    rstd: &[T],
    g: &[T],
    cols: usize,
) -> (HostBuffer<T>, HostBuffer<T>, HostBuffer<T>) {
    layer_norm_backward_on(isa::detect(), x, w, mean, rstd, g, cols)
}

/// [`layer_norm_backward`] compiled for a chosen instruction set.
pub fn layer_norm_backward_on<T: Float>(
    isa: Isa,
    x: &[T],
    w: &[T],
    mean: &[T],
    rstd: &[T],
    g: &[T],
    cols: usize,
) -> (HostBuffer<T>, HostBuffer<T>, HostBuffer<T>) {
    let rows = mean.len();
    let mut dx = super::pool::reuse::<T>(x.len());
    let inv_cols = T::from_f64(1.0 / cols.max(1) as f64);
    // Each task handles a band of rows and returns its partial dw, db; bands are summed after.
    let band = |first_row: usize, dx_band: &mut [T]| -> (HostBuffer<T>, HostBuffer<T>) {
        let mut dw = super::pool::zeros::<T>(cols);
        let mut db = super::pool::zeros::<T>(cols);
        isa::run_on(
            isa,
            #[inline(always)]
            || {
                for (i, dx_row) in dx_band.chunks_mut(cols).enumerate() {
                    let r = first_row + i;
                    let (x_row, g_row) = (&x[r * cols..(r + 1) * cols], &g[r * cols..(r + 1) * cols]);
                    let (m, s) = (mean[r], rstd[r]);
                    let (sum_dxhat, sum_dxhat_xhat) =
                        backward_row_sums((x_row, g_row, w), (m, s), (&mut dw, &mut db), (x, g, r * cols));
                    let (mean_dxhat, mean_dxhat_xhat) = (sum_dxhat * inv_cols, sum_dxhat_xhat * inv_cols);
                    for (((d, &xv), &gv), &wv) in dx_row.iter_mut().zip(x_row).zip(g_row).zip(w) {
                        let xhat = (xv - m) * s;
                        *d = s * (gv * wv - mean_dxhat - xhat * mean_dxhat_xhat);
                    }
                }
            },
        );
        (dw, db)
    };
    // Fixed bands (not a share per thread), so the grouping of the dw / db sums, and with it
    // every rounding, is the same on any number of threads.
    let band_rows = if x.len() >= PARALLEL_MIN_ELEMENTS { ROWS_PER_BAND } else { rows.max(1) };
    let partials: Vec<(HostBuffer<T>, HostBuffer<T>)> = if cols == 0 || rows == 0 {
        Vec::new()
    } else if band_rows < rows {
        dx.par_chunks_mut(band_rows * cols).enumerate().map(|(i, d)| band(i * band_rows, d)).collect()
    } else {
        vec![band(0, &mut dx)]
    };
    let mut dw = super::pool::zeros::<T>(cols);
    let mut db = super::pool::zeros::<T>(cols);
    for (pw, pb) in partials {
        for j in 0..cols {
            dw[j] += pw[j];
            db[j] += pb[j];
        }
    }
    (dx, dw, db)
}
