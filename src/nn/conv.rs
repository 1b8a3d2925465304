//! Convolutional layers: [`Conv2d`], [`MaxPool2d`] and [`Flatten`] (from feature maps to the
//! vectors a [`Linear`](super::Linear) layer takes).

use super::{Init, Module};
use crate::rng::Rng;
use crate::{DType, Tensor};

/// 2-D convolution over `[N, C, H, W]` images (see [`Tensor::conv2d`]), weight stored
/// `[out, in, kh, kw]` and parameters named `weight` / `bias` as in PyTorch's `nn.Conv2d`.
pub struct Conv2d {
    /// `[out_channels, in_channels, kernel_h, kernel_w]`
    pub weight: Tensor,
    /// `[out_channels]`, if the layer has a bias.
    pub bias: Option<Tensor>,
    /// Step between windows (rows, columns).
    pub stride: [usize; 2],
    /// Zeros added on each side (rows, columns).
    pub padding: [usize; 2],
}

impl Conv2d {
    /// A layer with a `kernel` (rows, columns) window, stride 1, no padding, and PyTorch's
    /// default initialization: weight and bias `U(-1/sqrt(fan_in), 1/sqrt(fan_in))` with
    /// `fan_in = in_channels * kh * kw`, the inputs each output sums over.
    ///
    /// ```
    /// use glassbox::{nn::{Conv2d, Module}, rng::Rng, Tensor};
    /// let conv = Conv2d::new(3, 8, [5, 5], &mut Rng::new(0)).stride([2, 2]).padding([2, 2]);
    /// assert_eq!(conv.forward(&Tensor::ones(&[4, 3, 28, 28])).shape(), &[4, 8, 14, 14]);
    /// ```
    pub fn new(in_channels: usize, out_channels: usize, kernel: [usize; 2], rng: &mut Rng) -> Conv2d {
        let fan_in = in_channels * kernel[0] * kernel[1];
        let shape = [out_channels, in_channels, kernel[0], kernel[1]];
        let weight = Init::TorchDefault.tensor(&shape, fan_in, out_channels, DType::F32, rng).requires_grad_();
        let bias = Init::TorchDefault.tensor(&[out_channels], fan_in, out_channels, DType::F32, rng).requires_grad_();
        Conv2d { weight, bias: Some(bias), stride: [1, 1], padding: [0, 0] }
    }

    /// The same layer with windows stepping by `stride` (rows, columns).
    pub fn stride(mut self, stride: [usize; 2]) -> Conv2d {
        self.stride = stride;
        self
    }

    /// The same layer reading `padding` (rows, columns) zeros beyond each edge.
    pub fn padding(mut self, padding: [usize; 2]) -> Conv2d {
        self.padding = padding;
        self
    }

    /// The same layer without a bias.
    pub fn without_bias(mut self) -> Conv2d {
        self.bias = None;
        self
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.conv2d(&self.weight, self.bias.as_ref(), self.stride, self.padding)
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("weight".to_string(), self.weight.clone())];
        if let Some(b) = &self.bias {
            out.push(("bias".to_string(), b.clone()));
        }
        out
    }

    fn describe(&self) -> String {
        let w = self.weight.shape();
        format!(
            "Conv2d({} -> {}, kernel {}x{}, stride {:?}, padding {:?}{})",
            w[1],
            w[0],
            w[2],
            w[3],
            self.stride,
            self.padding,
            if self.bias.is_some() { "" } else { ", no bias" }
        )
    }
}

/// 2-D max pooling (see [`Tensor::max_pool2d`]); no parameters.
#[derive(Clone, Copy, Debug)]
pub struct MaxPool2d {
    /// Window size (rows, columns).
    pub kernel: [usize; 2],
    /// Step between windows (rows, columns).
    pub stride: [usize; 2],
}

impl MaxPool2d {
    /// Pooling over `kernel` windows that step by their own size (PyTorch's default stride),
    /// so each input element is in exactly one window.
    pub fn new(kernel: [usize; 2]) -> MaxPool2d {
        MaxPool2d { kernel, stride: kernel }
    }

    /// The same pooling with windows stepping by `stride` (overlapping when smaller than the
    /// window).
    pub fn stride(mut self, stride: [usize; 2]) -> MaxPool2d {
        self.stride = stride;
        self
    }
}

impl Module for MaxPool2d {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.max_pool2d(self.kernel, self.stride)
    }

    fn describe(&self) -> String {
        format!("MaxPool2d(kernel {}x{}, stride {:?})", self.kernel[0], self.kernel[1], self.stride)
    }
}

/// Flattens every dim after the first: `[N, C, H, W]` becomes `[N, C*H*W]` (PyTorch's
/// `nn.Flatten()`). A view when the input is contiguous.
#[derive(Clone, Copy, Debug, Default)]
pub struct Flatten;

impl Module for Flatten {
    fn forward(&self, x: &Tensor) -> Tensor {
        assert!(x.rank() >= 1, "Flatten: needs a batch dim, got a scalar of shape {:?}", x.shape());
        x.flatten_from(1)
    }

    fn describe(&self) -> String {
        "Flatten".to_string()
    }
}
