//! Layer normalization as a layer.

use super::Module;
use crate::Tensor;

/// Normalizes the last dim to zero mean and unit variance, then applies a learned per-feature
/// scale (`weight`, starting at 1) and shift (`bias`, starting at 0).
pub struct LayerNorm {
    /// `[features]`
    pub weight: Tensor,
    /// `[features]`
    pub bias: Tensor,
    /// Added to the variance before the square root.
    pub eps: f64,
}

impl LayerNorm {
    /// A layer over `features` with PyTorch's default `eps = 1e-5`.
    pub fn new(features: usize) -> LayerNorm {
        LayerNorm {
            weight: Tensor::ones(&[features]).requires_grad_(),
            bias: Tensor::zeros(&[features]).requires_grad_(),
            eps: 1e-5,
        }
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.layer_norm(&self.weight, &self.bias, self.eps)
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        vec![("weight".into(), self.weight.clone()), ("bias".into(), self.bias.clone())]
    }

    fn describe(&self) -> String {
        format!("LayerNorm({})", self.weight.numel())
    }
}
