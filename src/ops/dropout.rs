//! Inverted dropout: in training, zero each element with probability `p` and scale the
//! survivors by `1 / (1 - p)`, so the expected value is unchanged and evaluation needs no
//! rescaling.

use crate::autograd::Op;
use crate::rng::Rng;
use crate::tensor::Layout;
use crate::Tensor;

impl Tensor {
    /// Dropout with probability `p` when `training`, the identity otherwise. The mask comes
    /// from `rng`, so a seeded generator gives reproducible masks.
    pub fn dropout(&self, p: f64, training: bool, rng: &mut Rng) -> Tensor {
        assert!(
            (0.0..=1.0).contains(&p),
            "dropout: probability {p} is outside [0, 1] (input shape {:?})",
            self.shape()
        );
        if !training || p == 0.0 {
            return self.clone();
        }
        let keep_scale = if p < 1.0 { 1.0 / (1.0 - p) } else { 0.0 };
        let mask: Vec<f64> = (0..self.numel()).map(|_| if rng.uniform() >= p { keep_scale } else { 0.0 }).collect();
        let mask = Tensor::from_vec_f64(mask, self.shape()).to_dtype(self.dtype()).detach();
        let mask =
            mask.to(self.device()).unwrap_or_else(|e| panic!("dropout: moving the mask to {}: {e}", self.device()));
        // The product is this op's output, checked (in anomaly mode) as dropout's, not as a `mul`.
        let out = crate::autograd::anomaly::quiet(|| crate::autograd::no_grad(|| self.mul(&mask)));
        let op = Op::Dropout { input: self.clone(), mask };
        Tensor::from_op(std::sync::Arc::unwrap_or_clone(out.storage()), Layout::contiguous(self.shape()), op)
    }
}
