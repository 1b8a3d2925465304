//! Every version of the CPU convolution kernels (forward, input gradient, weight gradient) and
//! the max-pooling kernels against naive references written here, independently of the
//! library: the input is first copied into an explicitly zero-padded buffer, then each output
//! is the plain sum of the definition. Shapes are odd on purpose: stride > 1, padding > 0,
//! non-square kernels and images, batches, strided (transposed) inputs.

mod common;

use common::{assert_close, F32_ACCUMULATED, F64_TIGHT};
use glassbox::backend::cpu::conv::{
    input_grad_versions, max_pool2d, max_pool2d_backward, versions, weight_grad_versions, Conv2dShape, Pool2dShape,
};
use glassbox::rng::Rng;
use glassbox::tensor::{Float, Layout};
use glassbox::Tensor;

fn random<T: Float>(n: usize, rng: &mut Rng) -> Vec<T> {
    (0..n).map(|_| T::from_f64(rng.normal())).collect()
}

fn to_f64<T: Float>(v: &[T]) -> Vec<f64> {
    v.iter().map(|x| x.to_f64()).collect()
}

/// Shapes covering the edge cases: 1x1 kernels, stride larger than the kernel, padding
/// larger than the stride, a kernel as large as the padded image, non-square everything,
/// and a batch large enough for the parallel paths.
fn shapes() -> Vec<Conv2dShape> {
    let s = |batch, in_channels, in_h, in_w, out_channels, kernel, stride, padding| Conv2dShape {
        batch,
        in_channels,
        in_h,
        in_w,
        out_channels,
        kernel,
        stride,
        padding,
    };
    vec![
        s(1, 1, 1, 1, 1, [1, 1], [1, 1], [0, 0]),
        s(2, 3, 5, 7, 4, [3, 3], [1, 1], [1, 1]),
        s(3, 2, 7, 6, 5, [3, 2], [2, 3], [1, 2]),
        s(2, 4, 6, 5, 3, [1, 1], [3, 2], [0, 0]),
        s(1, 2, 3, 4, 2, [5, 6], [1, 1], [1, 1]),
        s(2, 3, 9, 8, 2, [4, 3], [3, 2], [3, 2]),
        s(10, 6, 14, 14, 16, [5, 5], [1, 1], [2, 2]),
    ]
}

/// Input `[N, C, H, W]` copied into a zero-bordered `[N, C, H + 2ph, W + 2pw]` buffer.
fn pad(x: &[f64], s: &Conv2dShape) -> Vec<f64> {
    let (hp, wp) = (s.in_h + 2 * s.padding[0], s.in_w + 2 * s.padding[1]);
    let mut out = vec![0.0; s.batch * s.in_channels * hp * wp];
    for nc in 0..s.batch * s.in_channels {
        for y in 0..s.in_h {
            for x_ in 0..s.in_w {
                out[(nc * hp + y + s.padding[0]) * wp + x_ + s.padding[1]] = x[(nc * s.in_h + y) * s.in_w + x_];
            }
        }
    }
    out
}

fn out_dims(s: &Conv2dShape) -> (usize, usize) {
    (
        (s.in_h + 2 * s.padding[0] - s.kernel[0]) / s.stride[0] + 1,
        (s.in_w + 2 * s.padding[1] - s.kernel[1]) / s.stride[1] + 1,
    )
}

/// The definition on the padded input: `y[n,o,i,j] = b[o] + sum w[o,c,p,q] xp[n,c,i sh+p,j sw+q]`.
fn reference_conv(x: &[f64], w: &[f64], b: Option<&[f64]>, s: &Conv2dShape) -> Vec<f64> {
    let xp = pad(x, s);
    let (hp, wp) = (s.in_h + 2 * s.padding[0], s.in_w + 2 * s.padding[1]);
    let (oh, ow) = out_dims(s);
    let [kh, kw] = s.kernel;
    let mut y = Vec::new();
    for n in 0..s.batch {
        for o in 0..s.out_channels {
            for i in 0..oh {
                for j in 0..ow {
                    let mut sum = b.map_or(0.0, |b| b[o]);
                    for c in 0..s.in_channels {
                        for p in 0..kh {
                            for q in 0..kw {
                                let xv =
                                    xp[((n * s.in_channels + c) * hp + i * s.stride[0] + p) * wp + j * s.stride[1] + q];
                                sum += w[((o * s.in_channels + c) * kh + p) * kw + q] * xv;
                            }
                        }
                    }
                    y.push(sum);
                }
            }
        }
    }
    y
}

/// Gradients of `sum(dy * conv(x, w))` by the definition: scatter into a padded input
/// gradient and crop; accumulate weight gradients from the padded input.
fn reference_grads(x: &[f64], w: &[f64], dy: &[f64], s: &Conv2dShape) -> (Vec<f64>, Vec<f64>) {
    let xp = pad(x, s);
    let (hp, wp) = (s.in_h + 2 * s.padding[0], s.in_w + 2 * s.padding[1]);
    let (oh, ow) = out_dims(s);
    let [kh, kw] = s.kernel;
    let mut dxp = vec![0.0; xp.len()];
    let mut dw = vec![0.0; w.len()];
    for n in 0..s.batch {
        for o in 0..s.out_channels {
            for i in 0..oh {
                for j in 0..ow {
                    let g = dy[((n * s.out_channels + o) * oh + i) * ow + j];
                    for c in 0..s.in_channels {
                        for p in 0..kh {
                            for q in 0..kw {
                                let at =
                                    ((n * s.in_channels + c) * hp + i * s.stride[0] + p) * wp + j * s.stride[1] + q;
                                let wi = ((o * s.in_channels + c) * kh + p) * kw + q;
                                dxp[at] += g * w[wi];
                                dw[wi] += g * xp[at];
                            }
                        }
                    }
                }
            }
        }
    }
    let mut dx = vec![0.0; x.len()];
    for nc in 0..s.batch * s.in_channels {
        for y in 0..s.in_h {
            for x_ in 0..s.in_w {
                dx[(nc * s.in_h + y) * s.in_w + x_] = dxp[(nc * hp + y + s.padding[0]) * wp + x_ + s.padding[1]];
            }
        }
    }
    (dx, dw)
}

/// The contiguous input and the same values stored as `[N, C, W, H]` then viewed transposed,
/// so the kernels must read through strides.
fn contiguous_and_strided<T: Float>(x: &[T], s: &Conv2dShape) -> (Layout, Vec<T>, Layout) {
    let dims = [s.batch, s.in_channels, s.in_h, s.in_w];
    let mut swapped = vec![T::ZERO; x.len()];
    for nc in 0..s.batch * s.in_channels {
        for y in 0..s.in_h {
            for x_ in 0..s.in_w {
                swapped[(nc * s.in_w + x_) * s.in_h + y] = x[(nc * s.in_h + y) * s.in_w + x_];
            }
        }
    }
    let strided = Layout::contiguous(&[s.batch, s.in_channels, s.in_w, s.in_h]).transpose(2, 3);
    (Layout::contiguous(&dims), swapped, strided)
}

fn check_conv_versions<T: Float>(tol: f64) {
    let mut rng = Rng::new(5);
    for s in shapes() {
        let x = random::<T>(s.batch * s.in_channels * s.in_h * s.in_w, &mut rng);
        let w = random::<T>(s.out_channels * s.patch_len(), &mut rng);
        let b = random::<T>(s.out_channels, &mut rng);
        let (oh, ow) = out_dims(&s);
        let dy = random::<T>(s.batch * s.out_channels * oh * ow, &mut rng);
        let (x64, w64, b64, dy64) = (to_f64(&x), to_f64(&w), to_f64(&b), to_f64(&dy));
        let y_ref = reference_conv(&x64, &w64, Some(&b64), &s);
        let y_ref_no_bias = reference_conv(&x64, &w64, None, &s);
        let (dx_ref, dw_ref) = reference_grads(&x64, &w64, &dy64, &s);
        let tol = tol * (s.patch_len() as f64).sqrt();
        let (contiguous, swapped, strided) = contiguous_and_strided(&x, &s);
        for (layout_name, data, layout) in [("contiguous", &x, &contiguous), ("strided", &swapped, &strided)] {
            for (name, f) in versions::<T>() {
                let what = format!("conv2d {name} {layout_name} {s:?}");
                assert_close(&to_f64(&f(data, layout, &w, Some(&b), &s)), &y_ref, tol, &what);
                assert_close(&to_f64(&f(data, layout, &w, None, &s)), &y_ref_no_bias, tol, &format!("{what} no bias"));
            }
            for (name, f) in weight_grad_versions::<T>() {
                let what = format!("conv2d weight grad {name} {layout_name} {s:?}");
                assert_close(&to_f64(&f(data, layout, &dy, &s)), &dw_ref, tol * (s.batch as f64).sqrt(), &what);
            }
        }
        for (name, f) in input_grad_versions::<T>() {
            assert_close(&to_f64(&f(&dy, &w, &s)), &dx_ref, tol, &format!("conv2d input grad {name} {s:?}"));
        }
    }
}

#[test]
fn every_f64_conv_version_matches_the_padded_reference() {
    check_conv_versions::<f64>(F64_TIGHT);
}

#[test]
fn every_f32_conv_version_matches_the_padded_reference() {
    check_conv_versions::<f32>(F32_ACCUMULATED);
}

#[test]
fn conv_gradients_are_the_adjoints_of_the_forward_map() {
    // The convolution is linear in x and in w, so for any dy:
    // <conv(x, w), dy> = <x, input_grad(dy)> = <w, weight_grad(x, dy)>.
    let s = Conv2dShape {
        batch: 3,
        in_channels: 2,
        in_h: 8,
        in_w: 7,
        out_channels: 3,
        kernel: [3, 4],
        stride: [2, 1],
        padding: [1, 2],
    };
    let mut rng = Rng::new(9);
    let x = random::<f64>(s.batch * s.in_channels * s.in_h * s.in_w, &mut rng);
    let w = random::<f64>(s.out_channels * s.patch_len(), &mut rng);
    let y = glassbox::backend::cpu::conv::conv2d(&x, &Layout::contiguous(&[3, 2, 8, 7]), &w, None, &s);
    let dy = random::<f64>(y.len(), &mut rng);
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>();
    let lhs = dot(&y, &dy);
    let dx = glassbox::backend::cpu::conv::conv2d_input_grad(&dy, &w, &s);
    let dw = glassbox::backend::cpu::conv::conv2d_weight_grad(&x, &Layout::contiguous(&[3, 2, 8, 7]), &dy, &s);
    assert_close(&[dot(&x, &dx)], &[lhs], F64_TIGHT, "<x, dx> vs <y, dy>");
    assert_close(&[dot(&w, &dw)], &[lhs], F64_TIGHT, "<w, dw> vs <y, dy>");
}

#[test]
fn weight_grad_is_the_same_on_one_thread_and_many() {
    // Partial sums are grouped by a fixed number of images, so threads change nothing. The
    // shape is large enough (2M multiply-adds) for the parallel path.
    let s = Conv2dShape {
        batch: 13,
        in_channels: 8,
        in_h: 12,
        in_w: 12,
        out_channels: 16,
        kernel: [3, 3],
        stride: [1, 1],
        padding: [1, 1],
    };
    let mut rng = Rng::new(2);
    let x = random::<f32>(s.batch * s.in_channels * s.in_h * s.in_w, &mut rng);
    let dy = random::<f32>(s.batch * s.out_channels * s.out_pixels(), &mut rng);
    let layout = Layout::contiguous(&[13, 8, 12, 12]);
    let run = |threads| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool");
        pool.install(|| glassbox::backend::cpu::conv::conv2d_weight_grad(&x, &layout, &dy, &s))
    };
    assert_eq!(run(1), run(3), "weight gradient differs between 1 and 3 threads");
}

/// The definition of max pooling, with the first maximum (row-major in the window) on ties.
fn reference_pool(x: &[f64], s: &Pool2dShape) -> (Vec<f64>, Vec<usize>) {
    let (oh, ow) = ((s.in_h - s.kernel[0]) / s.stride[0] + 1, (s.in_w - s.kernel[1]) / s.stride[1] + 1);
    let (mut y, mut at) = (Vec::new(), Vec::new());
    for plane in 0..s.batch * s.channels {
        for i in 0..oh {
            for j in 0..ow {
                let mut best = (f64::NEG_INFINITY, 0);
                for p in 0..s.kernel[0] {
                    for q in 0..s.kernel[1] {
                        let idx = (plane * s.in_h + i * s.stride[0] + p) * s.in_w + j * s.stride[1] + q;
                        if x[idx] > best.0 {
                            best = (x[idx], idx);
                        }
                    }
                }
                y.push(best.0);
                at.push(best.1);
            }
        }
    }
    (y, at)
}

#[test]
fn max_pool_matches_the_reference_and_routes_gradients_to_the_maxima() {
    let pools = [
        Pool2dShape { batch: 2, channels: 3, in_h: 6, in_w: 6, kernel: [2, 2], stride: [2, 2] },
        Pool2dShape { batch: 1, channels: 2, in_h: 7, in_w: 5, kernel: [3, 2], stride: [2, 1] },
        Pool2dShape { batch: 3, channels: 1, in_h: 5, in_w: 9, kernel: [1, 4], stride: [3, 4] },
        Pool2dShape { batch: 96, channels: 16, in_h: 28, in_w: 28, kernel: [2, 2], stride: [2, 2] },
    ];
    let mut rng = Rng::new(4);
    for s in pools {
        let x = random::<f64>(s.batch * s.channels * s.in_h * s.in_w, &mut rng);
        let (y_ref, at_ref) = reference_pool(&x, &s);
        let (y, at) = max_pool2d(&x, &Layout::contiguous(&[s.batch, s.channels, s.in_h, s.in_w]), &s);
        assert_eq!(y, y_ref, "max_pool2d values {s:?}");
        assert_eq!(at, at_ref, "max_pool2d argmax {s:?}");
        let dy = random::<f64>(y.len(), &mut rng);
        let mut dx_ref = vec![0.0; x.len()];
        for (&g, &i) in dy.iter().zip(&at_ref) {
            dx_ref[i] += g;
        }
        assert_close(&max_pool2d_backward(&dy, &at, &s), &dx_ref, F64_TIGHT, &format!("max_pool2d backward {s:?}"));
    }
}

#[test]
fn max_pool_reads_strided_inputs() {
    let x = Tensor::from_vec_f64((0..2 * 4 * 6).map(|v| ((v * 7) % 11) as f64).collect(), &[2, 1, 6, 4]);
    let strided = x.transpose(2, 3); // [2, 1, 4, 6], not contiguous
    let packed = strided.contiguous();
    assert!(!strided.is_contiguous());
    assert_eq!(strided.max_pool2d([2, 3], [2, 3]).to_vec_f64(), packed.max_pool2d([2, 3], [2, 3]).to_vec_f64());
}

#[test]
fn max_pool_gradient_sums_where_overlapping_windows_share_a_maximum() {
    // One large value in the middle is the maximum of all four overlapping 2x2 windows.
    let mut values = vec![0.0; 9];
    values[4] = 5.0;
    let x = Tensor::from_vec_f64(values, &[1, 1, 3, 3]).requires_grad_();
    x.max_pool2d([2, 2], [1, 1]).sum_all().backward();
    assert_eq!(x.grad().unwrap().to_vec_f64(), vec![0.0, 0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 0.0]);
}

#[test]
#[should_panic(expected = "conv2d: input [2, 3, 8, 8] has 3 channels but weight [4, 2, 3, 3] expects 2")]
fn conv2d_names_shapes_when_channels_differ() {
    Tensor::zeros(&[2, 3, 8, 8]).conv2d(&Tensor::zeros(&[4, 2, 3, 3]), None, [1, 1], [0, 0]);
}

#[test]
#[should_panic(expected = "conv2d: kernel 5x5 is larger than the padded input 4x6")]
fn conv2d_rejects_a_kernel_larger_than_the_padded_input() {
    Tensor::zeros(&[1, 1, 2, 4]).conv2d(&Tensor::zeros(&[1, 1, 5, 5]), None, [1, 1], [1, 1]);
}

#[test]
#[should_panic(expected = "conv2d: bias has shape [3], expected [4]")]
fn conv2d_rejects_a_bias_of_the_wrong_length() {
    Tensor::zeros(&[1, 2, 5, 5]).conv2d(&Tensor::zeros(&[4, 2, 3, 3]), Some(&Tensor::zeros(&[3])), [1, 1], [0, 0]);
}

#[test]
#[should_panic(expected = "max_pool2d: input must be [batch, channels, height, width], got shape [4, 4]")]
fn max_pool2d_rejects_a_matrix() {
    Tensor::zeros(&[4, 4]).max_pool2d([2, 2], [2, 2]);
}
