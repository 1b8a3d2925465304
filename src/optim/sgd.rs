//! Stochastic gradient descent with optional momentum and L2 weight decay.

use super::{
    buffer_state, check_lr, check_new_lr, check_non_negative, copy_into, scalar_state, zero_grads, zeros_like_each,
    Optimizer, StateError, StateReader,
};
use crate::{no_grad, Tensor};

/// SGD in PyTorch's formulation (no dampening, no Nesterov):
/// `d = g + wd w; b = mu b + d; w -= lr b`. With `mu = 0` this is plain `w -= lr d`.
///
/// ```
/// use glassbox::optim::{Optimizer, Sgd};
/// use glassbox::Tensor;
/// let w = Tensor::from_vec(vec![1.0], &[1]).requires_grad_();
/// let mut opt = Sgd::new(vec![w.clone()], 0.5).momentum(0.9);
/// w.sum_all().backward(); // gradient 1
/// opt.step(); // buffer 1, w = 1 - 0.5 * 1
/// assert_eq!(w.to_vec(), vec![0.5]);
/// ```
pub struct Sgd {
    params: Vec<Tensor>,
    /// One per parameter. The fused kernel always goes through the buffer, so plain SGD
    /// keeps one too (with `mu = 0` it just holds the last update direction).
    momentum_bufs: Vec<Tensor>,
    lr: f64,
    momentum: f64,
    weight_decay: f64,
}

impl Sgd {
    /// SGD over `params` with learning rate `lr`, no momentum and no weight decay.
    ///
    /// Panics if `lr` is not positive and finite.
    pub fn new(params: Vec<Tensor>, lr: f64) -> Sgd {
        check_lr("Sgd::new", lr);
        let momentum_bufs = zeros_like_each(&params);
        Sgd { params, momentum_bufs, lr, momentum: 0.0, weight_decay: 0.0 }
    }

    /// Sets the momentum factor `mu` (0 turns momentum off; 0.9 is usual).
    pub fn momentum(mut self, momentum: f64) -> Sgd {
        check_non_negative("Sgd::momentum", "momentum", momentum);
        self.momentum = momentum;
        self
    }

    /// Sets the L2 weight decay `wd`, added to the gradient as `wd w`.
    pub fn weight_decay(mut self, weight_decay: f64) -> Sgd {
        check_non_negative("Sgd::weight_decay", "weight decay", weight_decay);
        self.weight_decay = weight_decay;
        self
    }
}

impl Optimizer for Sgd {
    fn step(&mut self) {
        no_grad(|| {
            for (p, buf) in self.params.iter().zip(&self.momentum_bufs) {
                let Some(g) = p.grad() else { continue };
                p.sgd_step_(&g, buf, self.lr, self.momentum, self.weight_decay);
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
        check_new_lr("Sgd::set_learning_rate", lr);
        self.lr = lr;
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut state = buffer_state("momentum_buffer", &self.momentum_bufs);
        state.push(scalar_state("lr", self.lr));
        state
    }

    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<(), StateError> {
        let mut reader = StateReader::new(state)?;
        let bufs = reader.buffers("momentum_buffer", &self.momentum_bufs)?;
        let lr = reader.learning_rate()?;
        reader.finish()?;
        copy_into(&self.momentum_bufs, &bufs);
        self.lr = lr;
        Ok(())
    }
}
