//! Optimizers: rules that turn each parameter's gradient into an update of the parameter.
//!
//! An optimizer holds handles to the parameters (clones of the [`Tensor`]s, which share their
//! storage) and the per-parameter state its rule needs, kept as tensors with the parameter's
//! shape and dtype. [`Optimizer::step`] updates every parameter whose gradient is set, each in
//! one fused in-place pass (`Tensor::sgd_step_`, `adam_step_`, `rmsprop_step_`); the arithmetic
//! itself lives in `backend/cpu/optim.rs`, so this module only keeps state and hyper-parameters.
//! A parameter with no gradient is skipped for that step, state and all, as PyTorch does.
//!
//! | optimizer | update of `w` given its gradient `g` (elementwise) | state per parameter |
//! |---|---|---|
//! | [`Sgd`] | `d = g + wd w; b = mu b + d; w -= lr b` | momentum `b` |
//! | [`Adam`] | `g += wd w; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;` `w -= lr m^ / (sqrt(v^) + eps)`, with `m^ = m / (1 - b1^t)`, `v^ = v / (1 - b2^t)` | moments `m`, `v` (and one step count `t` per optimizer) |
//! | [`AdamW`] | as Adam without `g += wd w`; instead `w -= lr wd w` (decay decoupled from the moments) | `m`, `v` (and `t`) |
//! | [`RmsProp`] | `g += wd w; s = alpha s + (1 - alpha) g^2; w -= lr g / (sqrt(s) + eps)` | square average `s` |
//!
//! Around them: [`clip_grad_norm`] rescales gradients before a step, [`l1_penalty`] and
//! [`l2_penalty`] are terms to add to a loss, and [`CosineSchedule`] / [`StepDecay`] give the
//! learning rate for a step number, to pass to [`Optimizer::set_learning_rate`].
//!
//! One full training step:
//!
//! ```
//! use glassbox::optim::{Optimizer, Sgd};
//! use glassbox::Tensor;
//!
//! let w = Tensor::from_vec(vec![1.0, -2.0], &[2]).requires_grad_();
//! let mut opt = Sgd::new(vec![w.clone()], 0.25);
//!
//! let loss = w.mul(&w).sum_all(); // d loss / dw = 2 w = [2, -4]
//! loss.backward();
//! opt.step(); // w -= 0.25 * [2, -4]
//! opt.zero_grad(); // gradients accumulate across backward calls until cleared
//!
//! assert_eq!(w.to_vec(), vec![0.5, -1.0]);
//! assert!(w.grad().is_none());
//! ```

mod adam;
mod clip;
mod penalty;
mod rmsprop;
mod schedule;
mod sgd;

pub use adam::{Adam, AdamW};
pub use clip::clip_grad_norm;
pub use penalty::{l1_penalty, l2_penalty};
pub use rmsprop::RmsProp;
pub use schedule::{CosineSchedule, StepDecay};
pub use sgd::Sgd;

use crate::Tensor;

/// What every optimizer offers a training loop.
pub trait Optimizer {
    /// Updates each parameter that has a gradient, in place; parameters without one are left
    /// as they are.
    fn step(&mut self);

    /// Clears every parameter's gradient ([`Tensor::zero_grad`]), since backward passes add
    /// to whatever gradient is already there.
    fn zero_grad(&self);

    /// The learning rate the next [`step`](Optimizer::step) will use.
    fn learning_rate(&self) -> f64;

    /// Changes the learning rate (for schedules). Zero is allowed here, since schedules may
    /// decay to it; a negative or non-finite value panics.
    fn set_learning_rate(&mut self, lr: f64);
}

/// Panics unless a learning rate given at construction is positive and finite.
fn check_lr(who: &str, lr: f64) {
    assert!(lr > 0.0 && lr.is_finite(), "{who}: the learning rate must be positive and finite, got {lr}");
}

/// Panics unless a learning rate set later is finite and not negative.
fn check_new_lr(who: &str, lr: f64) {
    assert!(lr >= 0.0 && lr.is_finite(), "{who}: the learning rate must be finite and not negative, got {lr}");
}

/// Panics unless `value` is finite and not negative.
fn check_non_negative(who: &str, name: &str, value: f64) {
    assert!(value >= 0.0 && value.is_finite(), "{who}: {name} must be finite and not negative, got {value}");
}

/// Panics unless `value` lies in `[0, 1)`: the decay rates of running averages, where 1
/// would freeze the average at its zero start.
fn check_decay_rate(who: &str, name: &str, value: f64) {
    assert!((0.0..1.0).contains(&value), "{who}: {name} must lie in [0, 1), got {value}");
}

/// Zeros shaped like each parameter, one state buffer per parameter.
fn zeros_like_each(params: &[Tensor]) -> Vec<Tensor> {
    crate::no_grad(|| params.iter().map(Tensor::zeros_like).collect())
}

/// Clears the gradient of each parameter.
fn zero_grads(params: &[Tensor]) {
    for p in params {
        p.zero_grad();
    }
}
