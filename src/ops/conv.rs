//! 2-D convolution and max pooling (NCHW), and the backward helpers their gradient formulas
//! call. The kernels and the math are in `backend/cpu/conv.rs`.

use std::sync::Arc;

use super::dense;
use crate::autograd::Op;
use crate::backend::{self, Conv2dShape, Pool2dShape};
use crate::tensor::Layout;
use crate::Tensor;

impl Tensor {
    /// 2-D convolution of images `self[N, C, H, W]` with filters `weight[O, C, KH, KW]` (PyTorch's
    /// layout, so weights load unchanged), plus `bias[O]` if given. Windows step by `stride`
    /// (rows, columns) over the input padded with `padding` zeros on each side; the result is
    /// `[N, O, OH, OW]` with `OH = (H + 2 padding[0] - KH) / stride[0] + 1` (likewise `OW`).
    ///
    /// ```
    /// use glassbox::Tensor;
    /// // A 3x3 image of ones, a 2x2 filter of ones, padding 1: each output counts the ones
    /// // its window covers.
    /// let x = Tensor::ones(&[1, 1, 3, 3]);
    /// let w = Tensor::ones(&[1, 1, 2, 2]);
    /// let y = x.conv2d(&w, None, [2, 2], [1, 1]);
    /// assert_eq!(y.shape(), &[1, 1, 2, 2]);
    /// assert_eq!(y.to_vec(), vec![1.0, 2.0, 2.0, 4.0]);
    /// ```
    pub fn conv2d(&self, weight: &Tensor, bias: Option<&Tensor>, stride: [usize; 2], padding: [usize; 2]) -> Tensor {
        self.check_same_kind("conv2d", weight);
        assert!(
            self.rank() == 4,
            "conv2d: input must be [batch, channels, height, width], got shape {:?}",
            self.shape()
        );
        assert!(
            weight.rank() == 4,
            "conv2d: weight must be [out_channels, in_channels, kernel_h, kernel_w], got shape {:?}",
            weight.shape()
        );
        let (x, w) = (self.shape(), weight.shape());
        assert!(
            x[1] == w[1],
            "conv2d: input {:?} has {} channels but weight {:?} expects {} (weight is [out, in, kh, kw])",
            x,
            x[1],
            w,
            w[1]
        );
        assert!(
            w.iter().all(|&d| d > 0),
            "conv2d: weight {:?} has an empty dim; channels and kernel sizes must be positive",
            w
        );
        assert!(stride.iter().all(|&s| s > 0), "conv2d: stride {stride:?} must be positive (input shape {x:?})");
        assert!(
            x[2] + 2 * padding[0] >= w[2] && x[3] + 2 * padding[1] >= w[3],
            "conv2d: kernel {}x{} is larger than the padded input {}x{} (input {:?}, padding {:?})",
            w[2],
            w[3],
            x[2] + 2 * padding[0],
            x[3] + 2 * padding[1],
            x,
            padding
        );
        if let Some(b) = bias {
            self.check_same_kind("conv2d", b);
            assert!(
                b.shape() == [w[0]],
                "conv2d: bias has shape {:?}, expected [{}] (one value per output channel of weight {:?})",
                b.shape(),
                w[0],
                w
            );
        }
        let shape = conv_shape(x, w, stride, padding);
        let w_dense = dense(weight, weight.layout());
        let b_dense = bias.map(|b| dense(b, b.layout()));
        let out = backend::conv2d(&self.storage(), self.layout(), &w_dense, b_dense.as_deref(), &shape);
        let op = Op::Conv2d { input: self.clone(), weight: weight.clone(), bias: bias.cloned(), stride, padding };
        Tensor::from_op(out, Layout::contiguous(&[x[0], w[0], shape.out_h(), shape.out_w()]), op)
    }

    /// 2-D max pooling of `self[N, C, H, W]`: the maximum of each `kernel` window, windows
    /// stepping by `stride` (no padding). The result is `[N, C, OH, OW]` with
    /// `OH = (H - kernel[0]) / stride[0] + 1` (likewise `OW`). The gradient flows to each
    /// window's maximum (the first one, on ties).
    ///
    /// ```
    /// use glassbox::Tensor;
    /// let x = Tensor::from_vec((0..16).map(|v| v as f32).collect(), &[1, 1, 4, 4]);
    /// assert_eq!(x.max_pool2d([2, 2], [2, 2]).to_vec(), vec![5.0, 7.0, 13.0, 15.0]);
    /// ```
    pub fn max_pool2d(&self, kernel: [usize; 2], stride: [usize; 2]) -> Tensor {
        assert!(
            self.rank() == 4,
            "max_pool2d: input must be [batch, channels, height, width], got shape {:?}",
            self.shape()
        );
        let x = self.shape();
        assert!(
            kernel.iter().chain(&stride).all(|&k| k > 0),
            "max_pool2d: kernel {kernel:?} and stride {stride:?} must be positive (input shape {x:?})"
        );
        assert!(
            x[2] >= kernel[0] && x[3] >= kernel[1],
            "max_pool2d: window {}x{} is larger than the input {}x{} (shape {:?})",
            kernel[0],
            kernel[1],
            x[2],
            x[3],
            x
        );
        let shape = pool_shape(x, kernel, stride);
        let (out, argmax) = backend::max_pool2d(&self.storage(), self.layout(), &shape);
        let op = Op::MaxPool2d { input: self.clone(), kernel, stride, argmax: Arc::from(argmax) };
        Tensor::from_op(out, Layout::contiguous(&[x[0], x[1], shape.out_h(), shape.out_w()]), op)
    }
}

fn conv_shape(x: &[usize], w: &[usize], stride: [usize; 2], padding: [usize; 2]) -> Conv2dShape {
    Conv2dShape {
        batch: x[0],
        in_channels: x[1],
        in_h: x[2],
        in_w: x[3],
        out_channels: w[0],
        kernel: [w[2], w[3]],
        stride,
        padding,
    }
}

fn pool_shape(x: &[usize], kernel: [usize; 2], stride: [usize; 2]) -> Pool2dShape {
    Pool2dShape { batch: x[0], channels: x[1], in_h: x[2], in_w: x[3], kernel, stride }
}

/// Gradient of conv2d with respect to its input (of `input_shape`), from the output gradient
/// `g` and the weight: col2im of `W^T g`, image by image.
pub(crate) fn conv2d_input_grad(
    g: &Tensor,
    weight: &Tensor,
    input_shape: &[usize],
    stride: [usize; 2],
    padding: [usize; 2],
) -> Tensor {
    let shape = conv_shape(input_shape, weight.shape(), stride, padding);
    let out = backend::conv2d_input_grad(&dense(g, g.layout()), &dense(weight, weight.layout()), &shape);
    Tensor::from_storage(out, Layout::contiguous(input_shape))
}

/// Gradient of conv2d with respect to its weight (of `weight_shape`), from the input and the
/// output gradient `g`: the sum over images of `g im2col(x)^T`.
pub(crate) fn conv2d_weight_grad(
    input: &Tensor,
    g: &Tensor,
    weight_shape: &[usize],
    stride: [usize; 2],
    padding: [usize; 2],
) -> Tensor {
    let shape = conv_shape(input.shape(), weight_shape, stride, padding);
    let out = backend::conv2d_weight_grad(&input.storage(), input.layout(), &dense(g, g.layout()), &shape);
    Tensor::from_storage(out, Layout::contiguous(weight_shape))
}

/// Gradient of max_pool2d with respect to its input (of `input_shape`): each element of `g`
/// added at the position `argmax` recorded for it.
pub(crate) fn max_pool2d_backward(
    g: &Tensor,
    argmax: &[usize],
    input_shape: &[usize],
    kernel: [usize; 2],
    stride: [usize; 2],
) -> Tensor {
    let shape = pool_shape(input_shape, kernel, stride);
    let out = backend::max_pool2d_backward(&dense(g, g.layout()), argmax, &shape);
    Tensor::from_storage(out, Layout::contiguous(input_shape))
}
