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
//! [`Optimizer::state`] and [`Optimizer::load_state`] hand the state out and take it back as
//! named tensors (PyTorch's names: `momentum_buffer.<i>`, `exp_avg.<i>`, `exp_avg_sq.<i>`,
//! `square_avg.<i>`, with `i` the parameter's position; scalars such as `lr` and Adam's `step`
//! as 0-d f64 tensors), which is how [`crate::io::save_checkpoint`] stores them.
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

use std::collections::BTreeSet;
use std::fmt;

use crate::{DType, Tensor};

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

    /// Everything the next steps depend on besides the parameters, as named tensors: each
    /// per-parameter buffer as `"<buffer>.<i>"` (`i` = the parameter's position in the list the
    /// optimizer was built with), each scalar (the learning rate `lr`, Adam's `step`) as a 0-d
    /// f64 tensor. The tensors are copies: later steps do not change them.
    fn state(&self) -> Vec<(String, Tensor)>;

    /// Restores state taken with [`state`](Optimizer::state) (from an optimizer of the same
    /// kind over parameters of the same shapes). Every entry must be present with the shape and
    /// dtype of the buffer it replaces, and no unknown entry may be there; otherwise the error
    /// names the entry, and nothing has been changed.
    ///
    /// ```
    /// use glassbox::optim::{Adam, Optimizer};
    /// use glassbox::Tensor;
    /// let w = Tensor::ones(&[2]).requires_grad_();
    /// let mut a = Adam::new(vec![w.clone()], 0.1);
    /// w.sum_all().backward();
    /// a.step();
    /// let mut b = Adam::new(vec![w.clone()], 0.1);
    /// b.load_state(&a.state()).unwrap();
    /// assert_eq!(b.state().len(), 4); // exp_avg.0, exp_avg_sq.0, step, lr
    /// assert!(b.load_state(&[]).unwrap_err().to_string().contains("exp_avg.0"));
    /// ```
    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<(), StateError>;
}

/// Optimizer state that [`Optimizer::load_state`] cannot take, naming the entry and the problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateError {
    key: String,
    message: String,
}

impl StateError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> StateError {
        StateError { key: key.into(), message: message.into() }
    }

    /// The state entry at fault.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// What is wrong with it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "optimizer state '{}': {}", self.key, self.message)
    }
}

impl std::error::Error for StateError {}

/// A packed copy of `t`'s elements that nothing else shares.
fn snapshot(t: &Tensor) -> Tensor {
    let storage = crate::backend::contiguous(&t.storage(), t.layout());
    Tensor::from_storage(storage, crate::tensor::Layout::contiguous(t.shape()))
}

/// Copies of per-parameter buffers, named `"<prefix>.<i>"`.
fn buffer_state(prefix: &str, buffers: &[Tensor]) -> Vec<(String, Tensor)> {
    buffers.iter().enumerate().map(|(i, b)| (format!("{prefix}.{i}"), snapshot(b))).collect()
}

/// A scalar state entry, as a 0-d f64 tensor (exact for integers up to 2^53).
fn scalar_state(key: &str, value: f64) -> (String, Tensor) {
    (key.to_string(), Tensor::from_vec_f64(vec![value], &[]))
}

/// Finds and checks the entries of a state list. Nothing is written until every entry has
/// been found good, so a failed load leaves the optimizer as it was.
struct StateReader<'a> {
    state: &'a [(String, Tensor)],
    used: BTreeSet<&'a str>,
}

impl<'a> StateReader<'a> {
    fn new(state: &'a [(String, Tensor)]) -> Result<StateReader<'a>, StateError> {
        let mut names = BTreeSet::new();
        for (name, _) in state {
            if !names.insert(name.as_str()) {
                return Err(StateError::new(name, "appears twice; every entry must be unique"));
            }
        }
        Ok(StateReader { state, used: BTreeSet::new() })
    }

    fn find(&mut self, key: &str) -> Result<&'a Tensor, StateError> {
        let (name, t) = self.state.iter().find(|(n, _)| n == key).ok_or_else(|| {
            let mut known: Vec<&str> = self.state.iter().map(|(n, _)| n.as_str()).collect();
            known.truncate(8);
            StateError::new(key, format!("missing (the state holds {} entries, starting {known:?})", self.state.len()))
        })?;
        self.used.insert(name.as_str());
        Ok(t)
    }

    /// The entries `"<prefix>.<i>"` for each of `like`, each checked against its shape and dtype.
    fn buffers(&mut self, prefix: &str, like: &[Tensor]) -> Result<Vec<&'a Tensor>, StateError> {
        like.iter()
            .enumerate()
            .map(|(i, target)| {
                let key = format!("{prefix}.{i}");
                let t = self.find(&key)?;
                if t.shape() != target.shape() || t.dtype() != target.dtype() {
                    return Err(StateError::new(
                        key,
                        format!(
                            "has shape {:?} and dtype {}, but parameter {i} has shape {:?} and dtype {}",
                            t.shape(),
                            t.dtype(),
                            target.shape(),
                            target.dtype()
                        ),
                    ));
                }
                Ok(t)
            })
            .collect()
    }

    /// A 0-d (or one-element) scalar entry.
    fn scalar(&mut self, key: &str) -> Result<f64, StateError> {
        let t = self.find(key)?;
        if t.numel() != 1 {
            return Err(StateError::new(key, format!("must be a single number, but has shape {:?}", t.shape())));
        }
        Ok(t.to_dtype(DType::F64).item_f64())
    }

    /// The learning rate entry, which must be finite and not negative.
    fn learning_rate(&mut self) -> Result<f64, StateError> {
        let lr = self.scalar("lr")?;
        if lr >= 0.0 && lr.is_finite() {
            Ok(lr)
        } else {
            Err(StateError::new("lr", format!("must be finite and not negative, got {lr}")))
        }
    }

    /// Fails on any entry no lookup asked for: state from another optimizer or for other
    /// parameters should not half-load.
    fn finish(self) -> Result<(), StateError> {
        match self.state.iter().find(|(n, _)| !self.used.contains(n.as_str())) {
            Some((name, _)) => Err(StateError::new(
                name,
                "is not part of this optimizer's state (state of another optimizer, or for more parameters?)",
            )),
            None => Ok(()),
        }
    }
}

/// Overwrites each of `targets` with the matching checked source.
fn copy_into(targets: &[Tensor], sources: &[&Tensor]) {
    crate::no_grad(|| {
        for (target, source) in targets.iter().zip(sources) {
            // copy_from_ refuses a source that shares the target's storage (it could be
            // mid-overwrite); a snapshot makes reloading an optimizer's own live buffers safe.
            let source = if source.shares_storage_with(target) { snapshot(source) } else { (*source).clone() };
            target.copy_from_(&source);
        }
    });
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
