//! Layer normalization over the last dim (the math is in `backend/cpu/layernorm.rs`).

use super::dense;
use crate::autograd::Op;
use crate::backend;
use crate::tensor::Layout;
use crate::Tensor;

impl Tensor {
    /// Normalizes each vector along the last dim to zero mean and unit variance, then scales by
    /// `weight` and shifts by `bias` (both shaped `[last dim]`).
    pub fn layer_norm(&self, weight: &Tensor, bias: &Tensor, eps: f64) -> Tensor {
        assert!(self.rank() >= 1, "layer_norm: needs at least 1 dim, got a scalar");
        let cols = self.shape()[self.rank() - 1];
        for (name, t) in [("weight", weight), ("bias", bias)] {
            self.check_same_kind("layer_norm", t);
            assert!(
                t.shape() == [cols],
                "layer_norm: {name} has shape {:?} but the input {:?} normalizes over a last dim of {cols}; expected [{cols}]",
                t.shape(),
                self.shape()
            );
        }
        let rows = self.numel() / cols.max(1);
        let (y, mean, rstd) = backend::layer_norm(
            &dense(self, self.layout()),
            &dense(weight, weight.layout()),
            &dense(bias, bias.layout()),
            cols,
            eps,
        );
        let stat = |s| Tensor::from_storage(s, Layout::contiguous(&[rows]));
        let op = Op::LayerNorm {
            input: self.clone(),
            weight: weight.clone(),
            bias: bias.clone(),
            mean: stat(mean),
            rstd: stat(rstd),
        };
        Tensor::from_op(y, Layout::contiguous(self.shape()), op)
    }
}

/// Gradients of layer norm with respect to input, weight and bias.
pub(crate) fn layer_norm_backward(
    x: &Tensor,
    weight: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    g: &Tensor,
) -> (Tensor, Tensor, Tensor) {
    let cols = weight.numel();
    let (dx, dw, db) = backend::layer_norm_backward(
        &dense(x, x.layout()),
        &dense(weight, weight.layout()),
        &mean.storage(),
        &rstd.storage(),
        &dense(g, g.layout()),
        cols,
    );
    (
        Tensor::from_storage(dx, Layout::contiguous(x.shape())),
        Tensor::from_storage(dw, Layout::contiguous(&[cols])),
        Tensor::from_storage(db, Layout::contiguous(&[cols])),
    )
}
