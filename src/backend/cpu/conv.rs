//! 2-D convolution and max pooling on the CPU, in PyTorch's NCHW layout, forward and backward.
//!
//! ## Convolution
//!
//! Input `x[N, C, H, W]`, weight `w[O, C, KH, KW]`, optional bias `b[O]`, stride `(sh, sw)`,
//! zero padding `(ph, pw)`. Output `y[N, O, OH, OW]` with `OH = (H + 2 ph - KH) / sh + 1` (and
//! likewise `OW`), and
//!
//! ```text
//! y[n, o, i, j] = b[o] + sum_{c, p, q} w[o, c, p, q] * x[n, c, i sh + p - ph, j sw + q - pw]
//! ```
//!
//! where reads outside the image are zeros (the padding). Like PyTorch this is really a
//! cross-correlation: the kernel is not flipped.
//!
//! **im2col.** Each output pixel reads one *patch* of `C KH KW` input values. Copy the patch
//! of output pixel `l = i OW + j` into column `l` of a matrix `cols[C KH KW, OH OW]` (row
//! `r = (c KH + p) KW + q`); then the whole convolution of one image is one matrix product,
//! `Y_n[O, OH OW] = W[O, C KH KW] cols_n`, and our GEMM does the heavy lifting. The weight
//! tensor, read row-major, already is that `W` matrix.
//!
//! **Backward.** With `G_n = dL/dY_n` (shape `[O, OH OW]`):
//! - weight: `dW = sum_n G_n cols_n^T`, the same patches multiplied by the output gradient;
//! - input: `dcols_n = W^T G_n`, then **col2im**, the adjoint of im2col: every entry of
//!   `dcols_n` is added back to the input pixel it was copied from (overlapping patches sum);
//! - bias: `db[o] = sum_{n, i, j} G[n, o, i, j]` (a plain reduction, done with tensor ops).
//!
//! | version | what it does | why |
//! |---|---|---|
//! | `conv2d_v1_direct` | the formula above, seven nested loops | the reference |
//! | `conv2d_v2_im2col` | im2col + one GEMM per image | the GEMM's packing and register tiles do the `O C KH KW OH OW` multiply-adds at full speed; im2col costs only `C KH KW OH OW` copies |
//! | `conv2d_v3_im2col_parallel` | v2 with images spread over rayon threads | each thread owns its images' output slices and its own `cols` buffer; no locks |
//!
//! The backward kernels have the same ladder (`_v1_direct`, then the GEMM form, parallel over
//! images). The weight gradient sums over images in fixed-size groups, added in a fixed order,
//! so its result does not depend on the thread count or on scheduling.
//!
//! Measured in f32 on LeNet's second layer (batch 64, 6 -> 16 channels, 14x14, 5x5 kernel) on
//! the 2-core AVX-512 development machine (2026-11-22, shared: load average 7, so threads could
//! not show): forward v1 0.9 GFLOP/s, v2 15.1, v3 14.5; input gradient v1 1.8, v2 19.0;
//! weight gradient v1 1.9, v2 15.0. On the first layer (1 -> 6 channels, 28x28, padding 2)
//! v2 reaches only 7.5 GFLOP/s: with 6 output rows the GEMM spends most of its time packing
//! `cols`, which it copies once more (see `matmul.rs`).
//!
//! ## Max pooling
//!
//! `y[n, c, i, j] = max_{p < KH, q < KW} x[n, c, i sh + p, j sw + q]`, no padding. The forward
//! pass remembers where each maximum was (the first one, on ties); the backward pass sends each
//! output's gradient to that one input position, summing where windows overlap.
//!
//! Inputs are read through their [`Layout`], so transposed or sliced views need no copy; weights
//! and output gradients arrive contiguous.

use rayon::prelude::*;

use super::matmul::{gemm, MatRef};
use crate::tensor::{Float, HostBuffer, Layout};

/// Below this many multiply-adds a convolution stays on one thread (a rayon split costs
/// microseconds, more than a small convolution).
const PARALLEL_MIN_MACS: usize = 1 << 20;

/// Images per partial sum of the weight gradient: fixed, so the summation order (and so the
/// rounding) does not depend on how many threads run.
const WEIGHT_GRAD_GROUP: usize = 4;

/// Everything a convolution kernel needs to know about its operands' sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dShape {
    /// Images in the batch (`N`).
    pub batch: usize,
    /// Input channels (`C`).
    pub in_channels: usize,
    /// Input height (`H`).
    pub in_h: usize,
    /// Input width (`W`).
    pub in_w: usize,
    /// Output channels (`O`).
    pub out_channels: usize,
    /// Kernel height and width (`KH`, `KW`).
    pub kernel: [usize; 2],
    /// Vertical and horizontal step between windows.
    pub stride: [usize; 2],
    /// Zero rows added above and below, zero columns added left and right.
    pub padding: [usize; 2],
}

impl Conv2dShape {
    /// Output height `(H + 2 ph - KH) / sh + 1`. The front door checks the kernel fits.
    pub fn out_h(&self) -> usize {
        (self.in_h + 2 * self.padding[0] - self.kernel[0]) / self.stride[0] + 1
    }

    /// Output width `(W + 2 pw - KW) / sw + 1`.
    pub fn out_w(&self) -> usize {
        (self.in_w + 2 * self.padding[1] - self.kernel[1]) / self.stride[1] + 1
    }

    /// Values in one patch, `C KH KW`: the rows of `cols`, the columns of the weight matrix.
    pub fn patch_len(&self) -> usize {
        self.in_channels * self.kernel[0] * self.kernel[1]
    }

    /// Output pixels per channel, `OH OW`: the columns of `cols`.
    pub fn out_pixels(&self) -> usize {
        self.out_h() * self.out_w()
    }

    /// Multiply-adds of the whole convolution, to decide whether threads pay off.
    fn macs(&self) -> usize {
        self.batch * self.out_channels * self.patch_len() * self.out_pixels()
    }

    /// The input row read by output row `i` at kernel row `p`, or `None` in the padding.
    #[inline(always)]
    fn input_row(&self, i: usize, p: usize) -> Option<usize> {
        (i * self.stride[0] + p).checked_sub(self.padding[0]).filter(|&y| y < self.in_h)
    }

    /// The input column read by output column `j` at kernel column `q`, or `None` in the padding.
    #[inline(always)]
    fn input_col(&self, j: usize, q: usize) -> Option<usize> {
        (j * self.stride[1] + q).checked_sub(self.padding[1]).filter(|&x| x < self.in_w)
    }

    /// The output columns `[j_lo, j_hi)` whose reads at kernel column `q` land inside the image:
    /// `j sw + q >= pw` gives `j_lo`, `j sw + q - pw < W` gives `j_hi` (empty if `j_lo >= j_hi`).
    fn valid_cols(&self, q: usize) -> (usize, usize) {
        let (sw, pw) = (self.stride[1], self.padding[1]);
        let j_lo = pw.saturating_sub(q).div_ceil(sw);
        let j_hi = (self.in_w + pw).saturating_sub(q).div_ceil(sw).min(self.out_w());
        (j_lo, j_hi)
    }
}

/// Where image `n` of a (possibly strided) `[N, C, H, W]` view starts, and its steps.
#[derive(Clone, Copy)]
struct ImageView {
    base: usize,
    channel_stride: usize,
    row_stride: usize,
    col_stride: usize,
}

impl ImageView {
    fn of(layout: &Layout, n: usize) -> ImageView {
        let s = layout.strides();
        ImageView { base: layout.offset() + n * s[0], channel_stride: s[1], row_stride: s[2], col_stride: s[3] }
    }

    #[inline(always)]
    fn index(&self, c: usize, y: usize, x: usize) -> usize {
        self.base + c * self.channel_stride + y * self.row_stride + x * self.col_stride
    }
}

/// Copies every patch of one image into `cols[C KH KW, OH OW]`: row `(c KH + p) KW + q`,
/// column `i OW + j` holds `x[c, i sh + p - ph, j sw + q - pw]`, or 0 in the padding.
///
/// For one kernel offset `(p, q)` the output columns whose reads land inside the image form
/// one range `[j_lo, j_hi)` ([`Conv2dShape::valid_cols`]), so each row segment is a strided
/// copy with zeros on either side, and a plain `memcpy` when stride and layout are unit.
fn im2col<T: Float>(x: &[T], image: ImageView, s: &Conv2dShape, cols: &mut [T]) {
    let (out_h, out_w) = (s.out_h(), s.out_w());
    let [kh, kw] = s.kernel;
    let step = s.stride[1] * image.col_stride;
    let mut rows = cols.chunks_exact_mut(out_h * out_w);
    for c in 0..s.in_channels {
        for p in 0..kh {
            for q in 0..kw {
                let row = rows.next().expect("cols holds C KH KW rows");
                let (j_lo, j_hi) = s.valid_cols(q);
                for (i, out_row) in row.chunks_exact_mut(out_w).enumerate() {
                    let y = match s.input_row(i, p) {
                        Some(y) if j_lo < j_hi => y,
                        _ => {
                            out_row.fill(T::ZERO);
                            continue;
                        }
                    };
                    out_row[..j_lo].fill(T::ZERO);
                    out_row[j_hi..].fill(T::ZERO);
                    let first = image.index(c, y, j_lo * s.stride[1] + q - s.padding[1]);
                    let inside = &mut out_row[j_lo..j_hi];
                    if step == 1 {
                        inside.copy_from_slice(&x[first..first + inside.len()]);
                    } else {
                        for (k, v) in inside.iter_mut().enumerate() {
                            *v = x[first + k * step];
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds each entry of `cols` back onto the input pixel it was
/// copied from, in the contiguous image gradient `dx[C, H, W]` (padding entries are dropped).
fn col2im_add<T: Float>(cols: &[T], s: &Conv2dShape, dx: &mut [T]) {
    let (out_h, out_w) = (s.out_h(), s.out_w());
    let [kh, kw] = s.kernel;
    let sw = s.stride[1];
    let mut rows = cols.chunks_exact(out_h * out_w);
    for c in 0..s.in_channels {
        for p in 0..kh {
            for q in 0..kw {
                let row = rows.next().expect("cols holds C KH KW rows");
                let (j_lo, j_hi) = s.valid_cols(q);
                if j_lo >= j_hi {
                    continue;
                }
                for (i, col_row) in row.chunks_exact(out_w).enumerate() {
                    let Some(y) = s.input_row(i, p) else { continue };
                    let dx_row = &mut dx[(c * s.in_h + y) * s.in_w..(c * s.in_h + y + 1) * s.in_w];
                    let first = j_lo * sw + q - s.padding[1];
                    for (k, &v) in col_row[j_lo..j_hi].iter().enumerate() {
                        dx_row[first + k * sw] += v;
                    }
                }
            }
        }
    }
}

/// Signature of every forward version: `(x, x_layout, weight, bias, shape) -> y[N, O, OH, OW]`.
/// The weight is contiguous `[O, C, KH, KW]`, the bias (if any) `[O]`.
pub type Conv2dFn<T> = fn(&[T], &Layout, &[T], Option<&[T]>, &Conv2dShape) -> HostBuffer<T>;

/// Signature of every input-gradient version: `(dy, weight, shape) -> dx[N, C, H, W]`, with
/// `dy` contiguous `[N, O, OH, OW]`.
pub type Conv2dInputGradFn<T> = fn(&[T], &[T], &Conv2dShape) -> HostBuffer<T>;

/// Signature of every weight-gradient version: `(x, x_layout, dy, shape) -> dw[O, C, KH, KW]`.
pub type Conv2dWeightGradFn<T> = fn(&[T], &Layout, &[T], &Conv2dShape) -> HostBuffer<T>;

/// Every forward version by name, slowest first, for tests and comparisons.
pub fn versions<T: Float>() -> Vec<(&'static str, Conv2dFn<T>)> {
    vec![
        ("v1_direct", conv2d_v1_direct::<T>),
        ("v2_im2col", conv2d_v2_im2col::<T>),
        ("v3_im2col_parallel", conv2d_v3_im2col_parallel::<T>),
    ]
}

/// Every input-gradient version by name, slowest first.
pub fn input_grad_versions<T: Float>() -> Vec<(&'static str, Conv2dInputGradFn<T>)> {
    vec![("v1_direct", conv2d_input_grad_v1_direct::<T>), ("v2_col2im", conv2d_input_grad_v2_col2im::<T>)]
}

/// Every weight-gradient version by name, slowest first.
pub fn weight_grad_versions<T: Float>() -> Vec<(&'static str, Conv2dWeightGradFn<T>)> {
    vec![("v1_direct", conv2d_weight_grad_v1_direct::<T>), ("v2_im2col", conv2d_weight_grad_v2_im2col::<T>)]
}

/// v1: the definition, one output element at a time.
pub fn conv2d_v1_direct<T: Float>(x: &[T], lx: &Layout, w: &[T], bias: Option<&[T]>, s: &Conv2dShape) -> HostBuffer<T> {
    let (out_h, out_w) = (s.out_h(), s.out_w());
    let [kh, kw] = s.kernel;
    let mut y = Vec::with_capacity(s.batch * s.out_channels * out_h * out_w);
    for n in 0..s.batch {
        let image = ImageView::of(lx, n);
        for o in 0..s.out_channels {
            for i in 0..out_h {
                for j in 0..out_w {
                    let mut sum = bias.map_or(T::ZERO, |b| b[o]);
                    for c in 0..s.in_channels {
                        for p in 0..kh {
                            let Some(yy) = s.input_row(i, p) else { continue };
                            for q in 0..kw {
                                if let Some(xx) = s.input_col(j, q) {
                                    sum += w[((o * s.in_channels + c) * kh + p) * kw + q] * x[image.index(c, yy, xx)];
                                }
                            }
                        }
                    }
                    y.push(sum);
                }
            }
        }
    }
    y.into()
}

/// v2 and v3: per image, `Y_n = W cols_n (+ b)` into `y_n[O, OH OW]`. With `images_in_parallel`
/// the images go to rayon threads (each with its own `cols` buffer and a one-thread GEMM);
/// otherwise they run in turn and the GEMM may use the threads itself.
fn conv2d_im2col<T: Float>(
    x: &[T],
    lx: &Layout,
    w: &[T],
    bias: Option<&[T]>,
    s: &Conv2dShape,
    images_in_parallel: bool,
) -> HostBuffer<T> {
    let (k, l) = (s.patch_len(), s.out_pixels());
    let per_image = s.out_channels * l;
    // Every element is written by the GEMM below, so a recycled buffer needs no zeroing.
    let mut y = super::pool::reuse::<T>(s.batch * per_image);
    let one = |cols: &mut Vec<T>, (n, y_n): (usize, &mut [T])| {
        im2col(x, ImageView::of(lx, n), s, cols);
        let (wm, cm) = (MatRef::row_major(w, s.out_channels, k), MatRef::row_major(cols, k, l));
        // Threads go to the images when there are several, else inside the GEMM.
        gemm(wm, cm, y_n, !images_in_parallel);
        if let Some(b) = bias {
            for (channel, &bo) in y_n.chunks_exact_mut(l).zip(b) {
                channel.iter_mut().for_each(|v| *v += bo);
            }
        }
    };
    if images_in_parallel {
        y.par_chunks_exact_mut(per_image).enumerate().for_each_init(|| vec![T::ZERO; k * l], one);
    } else {
        let mut cols = vec![T::ZERO; k * l];
        y.chunks_exact_mut(per_image).enumerate().for_each(|item| one(&mut cols, item));
    }
    y
}

/// v2: im2col + GEMM, one image after another (the GEMM may use threads when it is large).
pub fn conv2d_v2_im2col<T: Float>(x: &[T], lx: &Layout, w: &[T], bias: Option<&[T]>, s: &Conv2dShape) -> HostBuffer<T> {
    conv2d_im2col(x, lx, w, bias, s, false)
}

/// v3: v2 with the images of the batch spread over rayon threads. A single image or a small
/// job runs as v2.
pub fn conv2d_v3_im2col_parallel<T: Float>(
    x: &[T],
    lx: &Layout,
    w: &[T],
    bias: Option<&[T]>,
    s: &Conv2dShape,
) -> HostBuffer<T> {
    let worth_threads = s.batch >= 2 && s.macs() >= PARALLEL_MIN_MACS && rayon::current_num_threads() >= 2;
    conv2d_im2col(x, lx, w, bias, s, worth_threads)
}

/// The forward convolution the engine uses (the fastest correct version).
pub fn conv2d<T: Float>(x: &[T], lx: &Layout, w: &[T], bias: Option<&[T]>, s: &Conv2dShape) -> HostBuffer<T> {
    conv2d_v3_im2col_parallel(x, lx, w, bias, s)
}

/// v1 input gradient: every output gradient flows back along each weight to the input pixel
/// it multiplied: `dx[n, c, y, x] += dy[n, o, i, j] * w[o, c, p, q]`.
pub fn conv2d_input_grad_v1_direct<T: Float>(dy: &[T], w: &[T], s: &Conv2dShape) -> HostBuffer<T> {
    let (out_h, out_w) = (s.out_h(), s.out_w());
    let [kh, kw] = s.kernel;
    let (c_n, h, wd) = (s.in_channels, s.in_h, s.in_w);
    let mut dx = super::pool::zeros::<T>(s.batch * c_n * h * wd);
    for n in 0..s.batch {
        for o in 0..s.out_channels {
            for i in 0..out_h {
                for j in 0..out_w {
                    let g = dy[((n * s.out_channels + o) * out_h + i) * out_w + j];
                    for c in 0..c_n {
                        for p in 0..kh {
                            let Some(yy) = s.input_row(i, p) else { continue };
                            for q in 0..kw {
                                if let Some(xx) = s.input_col(j, q) {
                                    dx[((n * c_n + c) * h + yy) * wd + xx] += g * w[((o * c_n + c) * kh + p) * kw + q];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    dx
}

/// v2 input gradient: per image `dcols = W^T G_n` (one GEMM reading `W` transposed in place),
/// then col2im; images in parallel when the job is large.
pub fn conv2d_input_grad_v2_col2im<T: Float>(dy: &[T], w: &[T], s: &Conv2dShape) -> HostBuffer<T> {
    let (k, l) = (s.patch_len(), s.out_pixels());
    let per_image_in = s.in_channels * s.in_h * s.in_w;
    let per_image_out = s.out_channels * l;
    let mut dx = super::pool::zeros::<T>(s.batch * per_image_in);
    let w_t = MatRef::row_major(w, s.out_channels, k).t();
    let one = |dcols: &mut Vec<T>, (n, dx_n): (usize, &mut [T]), threaded_gemm: bool| {
        let g_n = MatRef::row_major(&dy[n * per_image_out..(n + 1) * per_image_out], s.out_channels, l);
        gemm(w_t, g_n, dcols, threaded_gemm);
        col2im_add(dcols, s, dx_n);
    };
    if s.batch >= 2 && s.macs() >= PARALLEL_MIN_MACS && rayon::current_num_threads() >= 2 {
        dx.par_chunks_exact_mut(per_image_in)
            .enumerate()
            .for_each_init(|| vec![T::ZERO; k * l], |dcols, item| one(dcols, item, false));
    } else {
        let mut dcols = vec![T::ZERO; k * l];
        dx.chunks_exact_mut(per_image_in).enumerate().for_each(|item| one(&mut dcols, item, true));
    }
    dx
}

/// The input gradient the engine uses.
pub fn conv2d_input_grad<T: Float>(dy: &[T], w: &[T], s: &Conv2dShape) -> HostBuffer<T> {
    conv2d_input_grad_v2_col2im(dy, w, s)
}

/// v1 weight gradient: each weight collects the products of the input pixels it touched with
/// the output gradients it produced: `dw[o, c, p, q] += dy[n, o, i, j] * x[n, c, y, x]`.
pub fn conv2d_weight_grad_v1_direct<T: Float>(x: &[T], lx: &Layout, dy: &[T], s: &Conv2dShape) -> HostBuffer<T> {
    let (out_h, out_w) = (s.out_h(), s.out_w());
    let [kh, kw] = s.kernel;
    let mut dw = super::pool::zeros::<T>(s.out_channels * s.patch_len());
    for n in 0..s.batch {
        let image = ImageView::of(lx, n);
        for o in 0..s.out_channels {
            for i in 0..out_h {
                for j in 0..out_w {
                    let g = dy[((n * s.out_channels + o) * out_h + i) * out_w + j];
                    for c in 0..s.in_channels {
                        for p in 0..kh {
                            let Some(yy) = s.input_row(i, p) else { continue };
                            for q in 0..kw {
                                if let Some(xx) = s.input_col(j, q) {
                                    dw[((o * s.in_channels + c) * kh + p) * kw + q] += g * x[image.index(c, yy, xx)];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    dw
}

/// v2 weight gradient: `dW = sum_n G_n cols_n^T` (the transpose is a strided read, no copy).
/// Images are summed in groups of `WEIGHT_GRAD_GROUP` (groups in parallel when the job is
/// large), then the group sums are added in order, so the result is the same on any number of
/// threads.
pub fn conv2d_weight_grad_v2_im2col<T: Float>(x: &[T], lx: &Layout, dy: &[T], s: &Conv2dShape) -> HostBuffer<T> {
    let (k, l) = (s.patch_len(), s.out_pixels());
    let dw_len = s.out_channels * k;
    let per_image_out = s.out_channels * l;
    let groups_in_parallel =
        s.batch > WEIGHT_GRAD_GROUP && s.macs() >= PARALLEL_MIN_MACS && rayon::current_num_threads() >= 2;
    let group_sum = |first: usize| -> Vec<T> {
        let mut sum = vec![T::ZERO; dw_len];
        let mut cols = vec![T::ZERO; k * l];
        let mut dw_n = vec![T::ZERO; dw_len];
        for n in first..(first + WEIGHT_GRAD_GROUP).min(s.batch) {
            im2col(x, ImageView::of(lx, n), s, &mut cols);
            let g_n = MatRef::row_major(&dy[n * per_image_out..(n + 1) * per_image_out], s.out_channels, l);
            let cols_t = MatRef::row_major(&cols, k, l).t();
            // Threads go to the groups when there are several, else inside the GEMM.
            gemm(g_n, cols_t, &mut dw_n, !groups_in_parallel);
            sum.iter_mut().zip(&dw_n).for_each(|(acc, &v)| *acc += v);
        }
        sum
    };
    let firsts: Vec<usize> = (0..s.batch).step_by(WEIGHT_GRAD_GROUP).collect();
    let partials: Vec<Vec<T>> = if groups_in_parallel {
        firsts.par_iter().map(|&f| group_sum(f)).collect()
    } else {
        firsts.iter().map(|&f| group_sum(f)).collect()
    };
    let mut dw = super::pool::zeros::<T>(dw_len);
    for partial in &partials {
        dw.iter_mut().zip(partial).for_each(|(acc, &v)| *acc += v);
    }
    dw
}

/// The weight gradient the engine uses.
pub fn conv2d_weight_grad<T: Float>(x: &[T], lx: &Layout, dy: &[T], s: &Conv2dShape) -> HostBuffer<T> {
    conv2d_weight_grad_v2_im2col(x, lx, dy, s)
}

/// Everything a max-pooling kernel needs to know about its operands' sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dShape {
    /// Images in the batch.
    pub batch: usize,
    /// Channels (pooled independently).
    pub channels: usize,
    /// Input height.
    pub in_h: usize,
    /// Input width.
    pub in_w: usize,
    /// Window height and width.
    pub kernel: [usize; 2],
    /// Vertical and horizontal step between windows.
    pub stride: [usize; 2],
}

impl Pool2dShape {
    /// Output height `(H - KH) / sh + 1`. The front door checks the window fits.
    pub fn out_h(&self) -> usize {
        (self.in_h - self.kernel[0]) / self.stride[0] + 1
    }

    /// Output width `(W - KW) / sw + 1`.
    pub fn out_w(&self) -> usize {
        (self.in_w - self.kernel[1]) / self.stride[1] + 1
    }
}

/// Max pooling of the view `(x, layout)`: returns the contiguous output `[N, C, OH, OW]` and,
/// per output element, the index of the maximum in the contiguous input `[N, C, H, W]` (the
/// first maximum in row-major window order on ties).
pub fn max_pool2d<T: Float>(x: &[T], layout: &Layout, s: &Pool2dShape) -> (HostBuffer<T>, Vec<usize>) {
    let (out_h, out_w) = (s.out_h(), s.out_w());
    let planes = s.batch * s.channels;
    let plane_out = out_h * out_w;
    // Every output element is written below, so a recycled buffer needs no zeroing.
    let mut y = super::pool::reuse::<T>(planes * plane_out);
    let mut argmax = vec![0usize; planes * plane_out];
    let st = layout.strides();
    let one_plane = |(plane, (y_p, a_p)): (usize, (&mut [T], &mut [usize]))| {
        let (n, c) = (plane / s.channels, plane % s.channels);
        let base = layout.offset() + n * st[0] + c * st[1];
        for i in 0..out_h {
            for j in 0..out_w {
                let (y0, x0) = (i * s.stride[0], j * s.stride[1]);
                let (mut best, mut best_at) = (x[base + y0 * st[2] + x0 * st[3]], (y0, x0));
                for yy in y0..y0 + s.kernel[0] {
                    for xx in x0..x0 + s.kernel[1] {
                        let v = x[base + yy * st[2] + xx * st[3]];
                        if v > best {
                            (best, best_at) = (v, (yy, xx));
                        }
                    }
                }
                y_p[i * out_w + j] = best;
                a_p[i * out_w + j] = (plane * s.in_h + best_at.0) * s.in_w + best_at.1;
            }
        }
    };
    if y.len() * s.kernel[0] * s.kernel[1] >= PARALLEL_MIN_MACS && rayon::current_num_threads() >= 2 {
        y.par_chunks_exact_mut(plane_out).zip(argmax.par_chunks_exact_mut(plane_out)).enumerate().for_each(one_plane);
    } else {
        y.chunks_exact_mut(plane_out).zip(argmax.chunks_exact_mut(plane_out)).enumerate().for_each(one_plane);
    }
    (y, argmax)
}

/// Max-pooling input gradient: zeros of `[N, C, H, W]` with each output gradient of the
/// contiguous `dy` added at its window's maximum (`argmax` from [`max_pool2d`]).
pub fn max_pool2d_backward<T: Float>(dy: &[T], argmax: &[usize], s: &Pool2dShape) -> HostBuffer<T> {
    let plane_in = s.in_h * s.in_w;
    let plane_out = s.out_h() * s.out_w();
    let mut dx = super::pool::zeros::<T>(s.batch * s.channels * plane_in);
    // A window lies inside one plane, so planes are independent and can go to threads.
    let one_plane = |(plane, dx_p): (usize, &mut [T])| {
        let range = plane * plane_out..(plane + 1) * plane_out;
        for (&g, &at) in dy[range.clone()].iter().zip(&argmax[range]) {
            dx_p[at - plane * plane_in] += g;
        }
    };
    if dx.len() >= PARALLEL_MIN_MACS && rayon::current_num_threads() >= 2 {
        dx.par_chunks_exact_mut(plane_in).enumerate().for_each(one_plane);
    } else {
        dx.chunks_exact_mut(plane_in).enumerate().for_each(one_plane);
    }
    dx
}

/// Largest acceptable relative error of a ladder version: `|y - exact| / sum |x w|` over
/// each output's products, so f32 rounding of long sums cannot fail it but a wrong tap can.
const LADDER_TOLERANCE: f64 = 1e-4;

/// The convolution family for the kernel report and `tests/kernels_ladders.rs`: every forward
/// version on LeNet's two layers and a wider layer; sizes are `[N, C, H, W, O, K]` with a
/// square `K x K` kernel, stride 1 and padding `K / 2`.
pub fn ladder() -> super::ladder::Ladder {
    use super::ladder::{Ladder, LadderVersion, Limit};
    Ladder {
        family: "conv2d",
        source: "src/backend/cpu/conv.rs",
        limit: Limit::Compute,
        tolerance: LADDER_TOLERANCE,
        tolerance_note: "|y - exact| / sum |x w| over each output's taps",
        versions: versions::<f32>()
            .into_iter()
            .map(|(name, _)| LadderVersion { name, max_flops: None, parallel: name.ends_with("parallel") })
            .collect(),
        report_sizes: vec![vec![64, 1, 28, 28, 6, 5], vec![64, 6, 14, 14, 16, 5], vec![16, 32, 32, 32, 64, 3]],
        test_sizes: vec![vec![1, 1, 3, 3, 1, 3], vec![2, 3, 7, 5, 4, 3], vec![3, 2, 9, 11, 5, 5]],
        setup: |dims, seed| Box::new(ConvWorkload::new(dims, seed)),
    }
}

/// Random images and filters of one size, the output buffer, and the exact value (in f64) of
/// every output, computed straight from the definition.
struct ConvWorkload {
    shape: Conv2dShape,
    x: Vec<f32>,
    w: Vec<f32>,
    y: HostBuffer<f32>,
    /// `(exact, sum of |x w| over the taps)` per output element.
    exact: Vec<(f64, f64)>,
}

impl ConvWorkload {
    fn new(dims: &[usize], seed: u64) -> ConvWorkload {
        assert!(dims.len() == 6, "conv2d ladder: sizes are [N, C, H, W, O, K], got {dims:?}");
        let (n, c, h, w, o, k) = (dims[0], dims[1], dims[2], dims[3], dims[4], dims[5]);
        let shape = Conv2dShape {
            batch: n,
            in_channels: c,
            in_h: h,
            in_w: w,
            out_channels: o,
            kernel: [k, k],
            stride: [1, 1],
            padding: [k / 2, k / 2],
        };
        let mut rng = crate::rng::Rng::new(seed);
        let x: Vec<f32> = (0..n * c * h * w).map(|_| rng.normal() as f32).collect();
        let wt: Vec<f32> = (0..o * c * k * k).map(|_| rng.normal() as f32).collect();
        let (oh, ow, pad) = (shape.out_h(), shape.out_w(), k / 2);
        let mut exact = Vec::with_capacity(n * o * oh * ow);
        for img in 0..n {
            for oc in 0..o {
                for r in 0..oh {
                    for col in 0..ow {
                        let (mut sum, mut scale) = (0.0f64, 0.0f64);
                        for ic in 0..c {
                            for i in 0..k {
                                for j in 0..k {
                                    // Taps over the zero padding contribute nothing.
                                    let (y, xx) = ((r + i).wrapping_sub(pad), (col + j).wrapping_sub(pad));
                                    if y < h && xx < w {
                                        let p = x[((img * c + ic) * h + y) * w + xx] as f64
                                            * wt[((oc * c + ic) * k + i) * k + j] as f64;
                                        sum += p;
                                        scale += p.abs();
                                    }
                                }
                            }
                        }
                        exact.push((sum, scale));
                    }
                }
            }
        }
        ConvWorkload { shape, x, w: wt, y: HostBuffer::new(), exact }
    }
}

impl super::ladder::Workload for ConvWorkload {
    fn size(&self) -> String {
        let s = &self.shape;
        format!("{}x{}x{}x{}->{}k{}", s.batch, s.in_channels, s.in_h, s.in_w, s.out_channels, s.kernel[0])
    }

    fn flops(&self) -> f64 {
        2.0 * (self.shape.batch * self.shape.out_channels * self.shape.out_pixels() * self.shape.patch_len()) as f64
    }

    fn bytes(&self) -> f64 {
        4.0 * (self.x.len() + self.w.len() + self.exact.len()) as f64
    }

    fn run(&mut self, version: usize) {
        let s = &self.shape;
        let layout = Layout::contiguous(&[s.batch, s.in_channels, s.in_h, s.in_w]);
        self.y = versions::<f32>()[version].1(&self.x, &layout, &self.w, None, s);
    }

    fn error(&self) -> f64 {
        if self.y.len() != self.exact.len() {
            return f64::INFINITY;
        }
        self.y
            .iter()
            .zip(&self.exact)
            .map(|(&got, &(exact, scale))| {
                let err = (got as f64 - exact).abs() / scale.max(f64::MIN_POSITIVE);
                // A NaN (an element never written) must fail.
                if err.is_nan() {
                    f64::INFINITY
                } else {
                    err
                }
            })
            .fold(0.0, f64::max)
    }
}
