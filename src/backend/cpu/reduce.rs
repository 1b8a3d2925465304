//! Reductions (sum, max) over any set of dimensions.
//!
//! The trick: view the small output as if it had the input's shape, with stride 0 along the
//! reduced dims. Then "reduce" is just "walk the input and the stretched output together and
//! fold each input element into the output element it lands on". When the reduced dims are
//! the innermost ones, each row of the walk folds into one output element, so rows run in
//! parallel; otherwise (e.g. column sums for a bias gradient) the walk accumulates in order.

use rayon::prelude::*;

use super::strided::{RowPlan, PARALLEL_MIN_ELEMENTS};
use crate::tensor::{Float, HostBuffer, Layout};

/// The reductions with a kernel (mean is a scaled sum).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceKind {
    /// Sum.
    Sum,
    /// Maximum.
    Max,
}

/// Reduces the view `(x, layout)` over `dims`; the result is contiguous in the input's shape
/// with each reduced dim set to 1.
pub fn reduce<T: Float>(kind: ReduceKind, x: &[T], layout: &Layout, dims: &[usize]) -> HostBuffer<T> {
    let mut kept = layout.shape().to_vec();
    for &d in dims {
        kept[d] = 1;
    }
    let out_numel: usize = kept.iter().product();
    let stretched = Layout::contiguous(&kept).broadcast_to(layout.shape()).expect("kept shape broadcasts back");
    let plan = RowPlan::new([layout, &stretched]);
    let identity = match kind {
        ReduceKind::Sum => T::ZERO,
        ReduceKind::Max => T::NEG_INFINITY,
    };
    let fold_row = |start: usize, stride: usize| -> T {
        let row = (0..plan.row_len).map(|j| x[start + j * stride]);
        match kind {
            ReduceKind::Sum => {
                if stride == 1 {
                    sum_contiguous(&x[start..start + plan.row_len])
                } else {
                    row.sum()
                }
            }
            ReduceKind::Max => row.fold(T::NEG_INFINITY, |m, v| if v > m || v.to_f64().is_nan() { v } else { m }),
        }
    };

    let (ix, io) = (plan.inner[0], plan.inner[1]);
    let one_row_per_output =
        io == 0 && plan.rows == out_numel && plan.starts[1].iter().enumerate().all(|(r, &s)| s == r);
    if one_row_per_output {
        let mut out = super::pool::reuse::<T>(plan.rows);
        let fold_one = |(r, o): (usize, &mut T)| *o = fold_row(plan.starts[0][r], ix);
        if layout.numel() >= PARALLEL_MIN_ELEMENTS {
            out.par_iter_mut().enumerate().for_each(fold_one);
        } else {
            out.iter_mut().enumerate().for_each(fold_one);
        }
        return out;
    }

    // Rows fold into the output in order. Big reductions split the rows into fixed bands of
    // `ROWS_PER_BAND` (never by thread count, so results do not depend on it), fold each band
    // into its own partial output in parallel, then combine the partials in band order.
    let accumulate = |rows: std::ops::Range<usize>, out: &mut [T]| {
        for row in rows {
            let (sx, so) = (plan.starts[0][row], plan.starts[1][row]);
            if io == 0 {
                let folded = fold_row(sx, ix);
                out[so] = combine(kind, out[so], folded);
            } else if io == 1 && ix == 1 && kind == ReduceKind::Sum {
                // The bias-gradient case: whole rows added onto the output, vectorized.
                for (o, &v) in out[so..so + plan.row_len].iter_mut().zip(&x[sx..sx + plan.row_len]) {
                    *o += v;
                }
            } else {
                for j in 0..plan.row_len {
                    let o = so + j * io;
                    out[o] = combine(kind, out[o], x[sx + j * ix]);
                }
            }
        }
    };
    let mut out = super::pool::zeros::<T>(out_numel);
    out.fill(identity);
    let bands = plan.rows.div_ceil(ROWS_PER_BAND);
    if layout.numel() >= PARALLEL_MIN_ELEMENTS && bands > 1 {
        let partials: Vec<Vec<T>> = (0..bands)
            .into_par_iter()
            .map(|band| {
                let mut partial = vec![identity; out_numel];
                accumulate(band * ROWS_PER_BAND..((band + 1) * ROWS_PER_BAND).min(plan.rows), &mut partial);
                partial
            })
            .collect();
        for partial in partials {
            for (o, p) in out.iter_mut().zip(partial) {
                *o = combine(kind, *o, p);
            }
        }
    } else {
        accumulate(0..plan.rows, &mut out);
    }
    out
}

/// Rows per band of a parallel reduction across rows (a constant, so the grouping of the sums,
/// and with it every rounding, is the same on any number of threads).
const ROWS_PER_BAND: usize = 256;

#[inline(always)]
fn combine<T: Float>(kind: ReduceKind, acc: T, v: T) -> T {
    match kind {
        ReduceKind::Sum => acc + v,
        ReduceKind::Max => {
            if v > acc || v.to_f64().is_nan() {
                v
            } else {
                acc
            }
        }
    }
}

/// Largest value (NaN is skipped, as `f32::max` does; `-inf` for an empty slice), with 16
/// independent lanes: a fold over `max` is one dependency chain of 4-cycle steps, and the
/// compiler may not reorder it into vectors by itself. Compare-and-select lanes vectorize.
#[inline(always)]
pub fn max_contiguous<T: Float>(xs: &[T]) -> T {
    let pick = |m: T, v: T| if v > m { v } else { m };
    let mut lanes = [T::NEG_INFINITY; 16];
    let mut chunks = xs.chunks_exact(16);
    for c in &mut chunks {
        for k in 0..16 {
            lanes[k] = pick(lanes[k], c[k]);
        }
    }
    let tail = chunks.remainder().iter().fold(T::NEG_INFINITY, |m, &v| pick(m, v));
    lanes.into_iter().fold(tail, pick)
}

/// `sum(a * b)` over the common length, with eight independent accumulators (as
/// [`sum_contiguous`]), so the loop vectorizes.
#[inline(always)]
pub fn dot_contiguous<T: Float>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::ZERO; 8];
    let (mut ca, mut cb) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in (&mut ca).zip(&mut cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let tail = ca.remainder().iter().zip(cb.remainder()).fold(T::ZERO, |s, (&x, &y)| s + x * y);
    acc.iter().fold(tail, |s, &v| s + v)
}

/// Sum with eight independent accumulators: breaks the add dependency chain so the loop can
/// use SIMD lanes, and (as a bonus) loses less precision than one running sum.
#[inline(always)]
pub fn sum_contiguous<T: Float>(xs: &[T]) -> T {
    let mut acc = [T::ZERO; 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for k in 0..8 {
            acc[k] += c[k];
        }
    }
    let mut total = chunks.remainder().iter().fold(T::ZERO, |a, &v| a + v);
    for a in acc {
        total += a;
    }
    total
}
