//! Adam (Kingma and Ba, 2015) and AdamW (Loshchilov and Hutter, 2019).
//!
//! The two differ only in how weight decay enters. Adam adds `wd w` to the gradient, so the
//! decay is then divided by `sqrt(v^)` like the rest of the gradient, and weights with large
//! gradients are barely decayed. AdamW shrinks the weights directly, `w -= lr wd w`, outside
//! the moment estimates, which is what "weight decay" was meant to be.

use super::{
    buffer_state, check_decay_rate, check_lr, check_new_lr, check_non_negative, copy_into, scalar_state, zero_grads,
    zeros_like_each, Optimizer, StateError, StateReader,
};
use crate::ops::AdamStep;
use crate::{no_grad, Tensor};

/// Adam with optional coupled (L2) weight decay:
/// `g += wd w; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;`
/// `w -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`.
///
/// Defaults: `betas (0.9, 0.999)`, `eps 1e-8`, `weight_decay 0`. The step count `t` belongs to
/// the optimizer and grows by one per [`step`](Optimizer::step) call; a parameter that had no
/// gradient on some steps is still bias-corrected with that shared count (PyTorch counts per
/// parameter; the two agree whenever every parameter gets a gradient every step).
pub struct Adam {
    params: Vec<Tensor>,
    /// First-moment (mean) estimates, one per parameter.
    m: Vec<Tensor>,
    /// Second-moment (uncentered variance) estimates, one per parameter.
    v: Vec<Tensor>,
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    /// Per parameter: whether weight decay applies (GPT-2 exempts biases and norm gains).
    decays: Vec<bool>,
    /// AdamW's decay rule instead of Adam's.
    decoupled: bool,
    /// Steps taken so far; the next step is number `steps + 1` (bias correction is 1-based).
    steps: u64,
}

impl Adam {
    /// Adam over `params` with learning rate `lr` and the default hyper-parameters.
    ///
    /// Panics if `lr` is not positive and finite.
    pub fn new(params: Vec<Tensor>, lr: f64) -> Adam {
        Adam::build(params, lr, false)
    }

    fn build(params: Vec<Tensor>, lr: f64, decoupled: bool) -> Adam {
        let name = if decoupled { "AdamW::new" } else { "Adam::new" };
        check_lr(name, lr);
        let (m, v) = (zeros_like_each(&params), zeros_like_each(&params));
        let decays = vec![true; params.len()];
        Adam { params, m, v, lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decays, decoupled, steps: 0 }
    }

    fn name(&self, method: &str) -> String {
        format!("{}::{method}", if self.decoupled { "AdamW" } else { "Adam" })
    }

    /// Sets the decay rates of the first and second moment averages; each must lie in `[0, 1)`.
    pub fn betas(mut self, beta1: f64, beta2: f64) -> Adam {
        let who = self.name("betas");
        check_decay_rate(&who, "beta1", beta1);
        check_decay_rate(&who, "beta2", beta2);
        (self.beta1, self.beta2) = (beta1, beta2);
        self
    }

    /// Sets `eps`, added to `sqrt(v^)` so that parameters with tiny gradients do not divide by ~0.
    pub fn eps(mut self, eps: f64) -> Adam {
        check_non_negative(&self.name("eps"), "eps", eps);
        self.eps = eps;
        self
    }

    /// Sets the weight decay: added to the gradient as `wd w` (Adam), or applied to the weights
    /// as `w -= lr wd w` (AdamW).
    pub fn weight_decay(mut self, weight_decay: f64) -> Adam {
        check_non_negative(&self.name("weight_decay"), "weight decay", weight_decay);
        self.weight_decay = weight_decay;
        self
    }
}

impl Adam {
    /// Exempts these parameters (matched by identity) from weight decay, as GPT-2 does for
    /// biases and LayerNorm gains; panics if one is not among the optimizer's parameters.
    pub fn no_weight_decay_for(mut self, exempt: &[Tensor]) -> Adam {
        for t in exempt {
            let i = self.params.iter().position(|p| p.id() == t.id()).unwrap_or_else(|| {
                panic!(
                    "{}: a tensor of shape {:?} is not one of the parameters",
                    self.name("no_weight_decay_for"),
                    t.shape()
                )
            });
            self.decays[i] = false;
        }
        self
    }
}

impl Optimizer for Adam {
    fn step(&mut self) {
        self.steps += 1;
        let base = AdamStep {
            lr: self.lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            decoupled: self.decoupled,
            step: self.steps,
        };
        no_grad(|| {
            for (((p, m), v), &decays) in self.params.iter().zip(&self.m).zip(&self.v).zip(&self.decays) {
                let Some(g) = p.grad() else { continue };
                let hyper = AdamStep { weight_decay: if decays { base.weight_decay } else { 0.0 }, ..base };
                p.adam_step_(&g, m, v, hyper);
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
        check_new_lr(&self.name("set_learning_rate"), lr);
        self.lr = lr;
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut state = buffer_state("exp_avg", &self.m);
        state.extend(buffer_state("exp_avg_sq", &self.v));
        state.push(scalar_state("step", self.steps as f64));
        state.push(scalar_state("lr", self.lr));
        state
    }

    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<(), StateError> {
        let mut reader = StateReader::new(state)?;
        let m = reader.buffers("exp_avg", &self.m)?;
        let v = reader.buffers("exp_avg_sq", &self.v)?;
        let step = reader.scalar("step")?;
        // Stored as f64, which holds every integer up to 2^53 exactly.
        if !((0.0..=MAX_EXACT_STEP).contains(&step) && step.fract() == 0.0) {
            return Err(StateError::new("step", format!("must be a whole number from 0 to 2^53, got {step}")));
        }
        let lr = reader.learning_rate()?;
        reader.finish()?;
        copy_into(&self.m, &m);
        copy_into(&self.v, &v);
        self.steps = step as u64;
        self.lr = lr;
        Ok(())
    }
}

/// The largest step count an f64 state entry holds exactly.
const MAX_EXACT_STEP: f64 = (1u64 << 53) as f64;

/// AdamW: Adam whose weight decay shrinks the weights directly, `w -= lr wd w`, instead of
/// passing through the moment estimates (decoupled weight decay, as in PyTorch's `AdamW`).
///
/// Defaults: `betas (0.9, 0.999)`, `eps 1e-8`, `weight_decay 0.01`.
pub struct AdamW {
    inner: Adam,
}

impl AdamW {
    /// AdamW over `params` with learning rate `lr` and the default hyper-parameters.
    ///
    /// Panics if `lr` is not positive and finite.
    pub fn new(params: Vec<Tensor>, lr: f64) -> AdamW {
        AdamW { inner: Adam::build(params, lr, true).weight_decay(0.01) }
    }

    /// Sets the decay rates of the first and second moment averages; each must lie in `[0, 1)`.
    pub fn betas(self, beta1: f64, beta2: f64) -> AdamW {
        AdamW { inner: self.inner.betas(beta1, beta2) }
    }

    /// Sets `eps`, added to `sqrt(v^)` so that parameters with tiny gradients do not divide by ~0.
    pub fn eps(self, eps: f64) -> AdamW {
        AdamW { inner: self.inner.eps(eps) }
    }

    /// Sets the decoupled weight decay `wd` (each step shrinks `w` by the factor `1 - lr wd`).
    pub fn weight_decay(self, weight_decay: f64) -> AdamW {
        AdamW { inner: self.inner.weight_decay(weight_decay) }
    }

    /// Exempts these parameters from weight decay (see [`Adam::no_weight_decay_for`]).
    pub fn no_weight_decay_for(self, exempt: &[Tensor]) -> AdamW {
        AdamW { inner: self.inner.no_weight_decay_for(exempt) }
    }
}

impl Optimizer for AdamW {
    fn step(&mut self) {
        self.inner.step();
    }

    fn zero_grad(&self) {
        self.inner.zero_grad();
    }

    fn learning_rate(&self) -> f64 {
        self.inner.learning_rate()
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.inner.set_learning_rate(lr);
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        self.inner.state()
    }

    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<(), StateError> {
        self.inner.load_state(state)
    }
}
