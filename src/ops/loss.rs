//! Losses, each one recorded op with a scalar output (its gradient formula in
//! `autograd/backward.rs`). Every loss is the mean over elements (or rows, for
//! cross-entropy), as PyTorch's default `reduction="mean"`.

use std::sync::Arc;

use super::dense;
use crate::autograd::{anomaly, no_grad, Op};
use crate::backend;
use crate::tensor::Layout;
use crate::Tensor;

impl Tensor {
    /// Mean softmax cross-entropy of `[N, C]` logits against one class index per row:
    /// `mean_i (logsumexp(x_i) - x_i[t_i])`. Stable for any logits.
    ///
    /// ```
    /// use glassbox::Tensor;
    /// let logits = Tensor::from_vec(vec![0.0, 0.0, 10.0, 0.0], &[2, 2]);
    /// let loss = logits.cross_entropy(&[0, 1]).item();
    /// assert!((loss - (2f32.ln() + 10.0) / 2.0).abs() < 1e-3);
    /// ```
    pub fn cross_entropy(&self, targets: &[usize]) -> Tensor {
        assert!(self.rank() == 2, "cross_entropy: logits must be [batch, classes], got shape {:?}", self.shape());
        let (n, c) = (self.shape()[0], self.shape()[1]);
        assert!(
            targets.len() == n,
            "cross_entropy: {} targets for {n} rows of logits (shape {:?})",
            targets.len(),
            self.shape()
        );
        if let Some((i, &t)) = targets.iter().enumerate().find(|(_, &t)| t >= c) {
            panic!(
                "cross_entropy: target {i} is class {t}, but the logits have {c} classes (shape {:?})",
                self.shape()
            );
        }
        let rows = dense(self, self.layout());
        let (loss, probs) = backend::cross_entropy_rows(&rows, c, targets);
        let probs = Tensor::from_storage(probs, Layout::contiguous(self.shape()));
        let out = Tensor::full_on(&[], loss, self.dtype(), self.device());
        let op = Op::CrossEntropy { logits: self.clone(), targets: Arc::from(targets), probs };
        Tensor::from_op(out.into_storage(), Layout::contiguous(&[]), op)
    }

    fn check_same_shape(&self, op: &str, target: &Tensor) {
        self.check_same_kind(op, target);
        assert!(
            self.shape() == target.shape(),
            "{op}: input shape {:?} and target shape {:?} differ; they must be equal",
            self.shape(),
            target.shape()
        );
    }

    /// Mean squared error `mean((x - target)^2)`.
    pub fn mse_loss(&self, target: &Tensor) -> Tensor {
        self.check_same_shape("mse_loss", target);
        let value = internal(|| self.sub(target).powf(2.0).mean_all());
        self.loss_node(value, Op::MseLoss { pred: self.clone(), target: target.clone() })
    }

    /// Mean binary cross-entropy of probabilities `p` against targets `t` in [0, 1]:
    /// `mean(-(t ln p + (1 - t) ln(1 - p)))`, each log clamped at -100 as PyTorch does, so
    /// p = 0 or 1 gives a large finite loss instead of infinity.
    pub fn binary_cross_entropy(&self, target: &Tensor) -> Tensor {
        self.check_same_shape("binary_cross_entropy", target);
        let value = internal(|| {
            let log_p = self.log().clamp_min(-100.0);
            let log_1mp = self.affine(-1.0, 1.0).log().clamp_min(-100.0);
            target.mul(&log_p).add(&target.affine(-1.0, 1.0).mul(&log_1mp)).neg().mean_all()
        });
        self.loss_node(value, Op::BinaryCrossEntropy { probs: self.clone(), target: target.clone() })
    }

    /// Mean binary cross-entropy of logits `z` (sigmoid folded in):
    /// `mean(max(z, 0) - z t + ln(1 + e^-|z|))`, finite for any logit.
    pub fn binary_cross_entropy_with_logits(&self, target: &Tensor) -> Tensor {
        self.check_same_shape("binary_cross_entropy_with_logits", target);
        let value = internal(|| {
            let softplus_neg_abs = self.abs().neg().exp().add_scalar(1.0).log();
            self.relu().sub(&self.mul(target)).add(&softplus_neg_abs).mean_all()
        });
        self.loss_node(value, Op::BinaryCrossEntropyWithLogits { logits: self.clone(), target: target.clone() })
    }

    /// Wraps a loss value computed without a graph as the output of the single op `op`.
    fn loss_node(&self, value: Tensor, op: Op) -> Tensor {
        Tensor::from_op(value.into_storage(), Layout::contiguous(&[]), op)
    }
}

/// Runs a loss's inner steps: no graph, and no anomaly check (binary cross-entropy takes
/// `log(0) = -inf` on purpose, then clamps it); the loss value itself is checked when it
/// becomes the loss op's output.
fn internal(f: impl FnOnce() -> Tensor) -> Tensor {
    anomaly::quiet(|| no_grad(f))
}

/// Gradient of the mean cross-entropy with respect to the logits, `(p - onehot) * g / N`.
pub(crate) fn cross_entropy_backward(probs: &Tensor, targets: &[usize], g: &Tensor) -> Tensor {
    let scale = g.item_f64() / targets.len().max(1) as f64;
    let out = backend::cross_entropy_backward_rows(&probs.storage(), probs.shape()[1], targets, scale);
    Tensor::from_storage(out, Layout::contiguous(probs.shape()))
}
