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

use rayon::prelude::*;

use super::strided::PARALLEL_MIN_ELEMENTS;
use crate::tensor::Float;

/// Rows handled per parallel task.
const ROWS_PER_TASK: usize = 16;
/// Rows per band of the backward pass's dw / db partial sums.
const ROWS_PER_BAND: usize = 64;

/// Normalizes each row; returns `(y, mean, rstd)`.
pub fn layer_norm<T: Float>(x: &[T], w: &[T], b: &[T], cols: usize, eps: f64) -> (Vec<T>, Vec<T>, Vec<T>) {
    let rows = x.len().checked_div(cols).unwrap_or(0);
    let mut y = super::pool::reuse::<T>(x.len());
    let mut mean = super::pool::zeros::<T>(rows);
    let mut rstd = super::pool::zeros::<T>(rows);
    let inv_cols = T::from_f64(1.0 / cols.max(1) as f64);
    let eps = T::from_f64(eps);
    let row_job = |(r, y_row): (usize, &mut [T]), mean_r: &mut T, rstd_r: &mut T| {
        let x_row = &x[r * cols..(r + 1) * cols];
        let m = super::reduce::sum_contiguous(x_row) * inv_cols;
        let var = x_row.iter().map(|&v| (v - m) * (v - m)).sum::<T>() * inv_cols;
        let s = T::ONE / (var + eps).sqrt();
        for (((o, &v), &wv), &bv) in y_row.iter_mut().zip(x_row).zip(w).zip(b) {
            *o = (v - m) * s * wv + bv;
        }
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

/// Gradients `(dx, dw, db)` of layer norm from the saved row statistics.
pub fn layer_norm_backward<T: Float>(
    x: &[T],
    w: &[T],
    mean: &[T],
    rstd: &[T],
    g: &[T],
    cols: usize,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let rows = mean.len();
    let mut dx = super::pool::reuse::<T>(x.len());
    let inv_cols = T::from_f64(1.0 / cols.max(1) as f64);
    // Each task handles a band of rows and returns its partial dw, db; bands are summed after.
    let band = |first_row: usize, dx_band: &mut [T]| -> (Vec<T>, Vec<T>) {
        let mut dw = super::pool::zeros::<T>(cols);
        let mut db = super::pool::zeros::<T>(cols);
        for (i, dx_row) in dx_band.chunks_mut(cols).enumerate() {
            let r = first_row + i;
            let (x_row, g_row) = (&x[r * cols..(r + 1) * cols], &g[r * cols..(r + 1) * cols]);
            let (m, s) = (mean[r], rstd[r]);
            let (mut sum_dxhat, mut sum_dxhat_xhat) = (T::ZERO, T::ZERO);
            for j in 0..cols {
                let xhat = (x_row[j] - m) * s;
                let dxhat = g_row[j] * w[j];
                sum_dxhat += dxhat;
                sum_dxhat_xhat += dxhat * xhat;
                dw[j] += g_row[j] * xhat;
                db[j] += g_row[j];
            }
            let (mean_dxhat, mean_dxhat_xhat) = (sum_dxhat * inv_cols, sum_dxhat_xhat * inv_cols);
            for j in 0..cols {
                let xhat = (x_row[j] - m) * s;
                dx_row[j] = s * (g_row[j] * w[j] - mean_dxhat - xhat * mean_dxhat_xhat);
            }
        }
        (dw, db)
    };
    // Fixed bands (not a share per thread), so the grouping of the dw / db sums, and with it
    // every rounding, is the same on any number of threads.
    let band_rows = if x.len() >= PARALLEL_MIN_ELEMENTS { ROWS_PER_BAND } else { rows.max(1) };
    let partials: Vec<(Vec<T>, Vec<T>)> = if cols == 0 || rows == 0 {
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
