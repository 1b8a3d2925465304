//! RMSprop: scale each step by a running root-mean-square of the gradient.

use super::{
    buffer_state, check_decay_rate, check_lr, check_new_lr, check_non_negative, copy_into, scalar_state, zero_grads,
    zeros_like_each, Optimizer, StateError, StateReader,
};
use crate::{no_grad, Tensor};

/// RMSprop as PyTorch has it (no momentum, not centered):
/// `g += wd w; s = alpha s + (1 - alpha) g^2; w -= lr g / (sqrt(s) + eps)`.
///
/// Defaults: `alpha 0.99`, `eps 1e-8`, `weight_decay 0`. There is no bias correction, so the
/// first steps are large: after one step `sqrt(s) = sqrt(1 - alpha) |g|`, a tenth of `|g|` for
/// `alpha = 0.99`, and the update is about `10 lr` per element.
pub struct RmsProp {
    params: Vec<Tensor>,
    /// Running average of the squared gradient, one per parameter.
    square_avgs: Vec<Tensor>,
    lr: f64,
    alpha: f64,
    eps: f64,
    weight_decay: f64,
}

impl RmsProp {
    /// RMSprop over `params` with learning rate `lr` and the default hyper-parameters.
    ///
    /// Panics if `lr` is not positive and finite.
    pub fn new(params: Vec<Tensor>, lr: f64) -> RmsProp {
        check_lr("RmsProp::new", lr);
        let square_avgs = zeros_like_each(&params);
        RmsProp { params, square_avgs, lr, alpha: 0.99, eps: 1e-8, weight_decay: 0.0 }
    }

    /// Sets the decay rate of the squared-gradient average; must lie in `[0, 1)`.
    pub fn alpha(mut self, alpha: f64) -> RmsProp {
        check_decay_rate("RmsProp::alpha", "alpha", alpha);
        self.alpha = alpha;
        self
    }

    /// Sets `eps`, added to `sqrt(s)` so that parameters with tiny gradients do not divide by ~0.
    pub fn eps(mut self, eps: f64) -> RmsProp {
        check_non_negative("RmsProp::eps", "eps", eps);
        self.eps = eps;
        self
    }

    /// Sets the L2 weight decay `wd`, added to the gradient as `wd w`.
    pub fn weight_decay(mut self, weight_decay: f64) -> RmsProp {
        check_non_negative("RmsProp::weight_decay", "weight decay", weight_decay);
        self.weight_decay = weight_decay;
        self
    }
}

impl Optimizer for RmsProp {
    fn step(&mut self) {
        no_grad(|| {
            for (p, sq) in self.params.iter().zip(&self.square_avgs) {
                let Some(g) = p.grad() else { continue };
                p.rmsprop_step_(&g, sq, self.lr, self.alpha, self.eps, self.weight_decay);
            }
        });
    }

    fn zero_grad(&self) {
        zero_grads(&self.params);
    }

    fn learning_rate(&self) -> f64 {
        self.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        check_new_lr("RmsProp::set_learning_rate", lr);
        self.lr = lr;
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut state = buffer_state("square_avg", &self.square_avgs);
        state.push(scalar_state("lr", self.lr));
        state
    }

    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<(), StateError> {
        let mut reader = StateReader::new(state)?;
        let avgs = reader.buffers("square_avg", &self.square_avgs)?;
        let lr = reader.learning_rate()?;
        reader.finish()?;
        copy_into(&self.square_avgs, &avgs);
        self.lr = lr;
        Ok(())
    }
}
