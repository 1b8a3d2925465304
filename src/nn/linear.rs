//! Fully connected layer.

use super::{Init, Module};
use crate::rng::Rng;
use crate::{DType, Tensor};

/// `y = x W^T + b`, with `W` stored `[out, in]` as in PyTorch (so weights load unchanged);
/// the transpose is a view, and the matmul reads it in place.
pub struct Linear {
    /// `[out_features, in_features]`
    pub weight: Tensor,
    /// `[out_features]`, if the layer has a bias.
    pub bias: Option<Tensor>,
}

impl Linear {
    /// A layer with PyTorch's default initialization (`U(-1/sqrt(in), 1/sqrt(in))` for weight
    /// and bias).
    pub fn new(in_features: usize, out_features: usize, rng: &mut Rng) -> Linear {
        Linear::with_init(in_features, out_features, Init::TorchDefault, true, rng)
    }

    /// A layer with a chosen weight initializer (bias, if any, starts at zero unless the
    /// scheme is PyTorch's default, which draws it like the weight).
    pub fn with_init(in_features: usize, out_features: usize, init: Init, bias: bool, rng: &mut Rng) -> Linear {
        let weight =
            init.tensor(&[out_features, in_features], in_features, out_features, DType::F32, rng).requires_grad_();
        let bias = bias.then(|| {
            let scheme = if init == Init::TorchDefault { Init::TorchDefault } else { Init::Zeros };
            scheme.tensor(&[out_features], in_features, out_features, DType::F32, rng).requires_grad_()
        });
        Linear { weight, bias }
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Tensor {
        let in_features = self.weight.shape()[1];
        assert!(
            x.rank() >= 1 && x.shape()[x.rank() - 1] == in_features,
            "Linear: input of shape {:?} has last dim {:?}, expected {in_features} features",
            x.shape(),
            x.shape().last()
        );
        match &self.bias {
            Some(b) => x.linear(&self.weight, b),
            None if x.rank() == 2 => x.matmul(&self.weight.t()),
            None => {
                // Fold leading dims into one batch dim so one GEMM does the work.
                let rows = x.numel() / in_features;
                let mut shape = x.shape().to_vec();
                *shape.last_mut().expect("rank >= 1") = self.weight.shape()[0];
                x.reshape(&[rows, in_features]).matmul(&self.weight.t()).reshape(&shape)
            }
        }
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("weight".to_string(), self.weight.clone())];
        if let Some(b) = &self.bias {
            out.push(("bias".to_string(), b.clone()));
        }
        out
    }

    fn describe(&self) -> String {
        format!(
            "Linear({} -> {}{})",
            self.weight.shape()[1],
            self.weight.shape()[0],
            if self.bias.is_some() { "" } else { ", no bias" }
        )
    }
}
