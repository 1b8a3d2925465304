//! Learning-rate schedules: plain functions of the step number. A training loop asks for the
//! rate of each step and hands it to [`Optimizer::set_learning_rate`](super::Optimizer::set_learning_rate);
//! nothing here holds an optimizer or any hidden state.

use std::f64::consts::PI;

/// Linear warmup, then cosine decay to a floor (as in GPT-2 / llm.c training).
///
/// Steps are 0-based. For `step < warmup_steps` the rate is `base_lr * (step + 1) / warmup_steps`,
/// so step 0 already moves (a rate of exactly 0 would waste it) and step `warmup_steps - 1`
/// reaches `base_lr`. From `warmup_steps` to `total_steps` it follows half a cosine from
/// `base_lr` down to `min_lr`; from `total_steps` on it stays at `min_lr`.
///
/// ```
/// use glassbox::optim::CosineSchedule;
/// let s = CosineSchedule { base_lr: 1.0, min_lr: 0.0, warmup_steps: 10, total_steps: 110 };
/// assert_eq!(s.lr_at(0), 0.1);
/// assert_eq!(s.lr_at(9), 1.0);
/// assert!((s.lr_at(60) - 0.5).abs() < 1e-12);
/// assert_eq!(s.lr_at(500), 0.0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CosineSchedule {
    /// The peak rate, reached at the end of warmup.
    pub base_lr: f64,
    /// The floor the cosine decays to.
    pub min_lr: f64,
    /// Number of warmup steps (0 for none).
    pub warmup_steps: usize,
    /// The step at which the decay reaches `min_lr`, counted from step 0 (warmup included).
    pub total_steps: usize,
}

impl CosineSchedule {
    /// The learning rate for 0-based step `step`.
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.base_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        if step >= self.total_steps {
            return self.min_lr;
        }
        // Here warmup_steps <= step < total_steps, so the span is at least 1.
        let progress = (step - self.warmup_steps) as f64 / (self.total_steps - self.warmup_steps) as f64;
        self.min_lr + 0.5 * (self.base_lr - self.min_lr) * (1.0 + (PI * progress).cos())
    }
}

/// Multiply the rate by `gamma` every `every` steps: `base_lr * gamma^(step / every)`, with
/// integer division (PyTorch's `StepLR`).
///
/// ```
/// use glassbox::optim::StepDecay;
/// let s = StepDecay { base_lr: 0.1, gamma: 0.5, every: 30 };
/// assert_eq!(s.lr_at(29), 0.1);
/// assert_eq!(s.lr_at(30), 0.05);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepDecay {
    /// The rate of steps `0..every`.
    pub base_lr: f64,
    /// The factor applied at each decay.
    pub gamma: f64,
    /// Steps between decays; must be positive.
    pub every: usize,
}

impl StepDecay {
    /// The learning rate for 0-based step `step`.
    ///
    /// Panics if `every` is 0.
    pub fn lr_at(&self, step: usize) -> f64 {
        assert!(self.every > 0, "StepDecay::lr_at: `every` must be at least 1 step, got 0");
        self.base_lr * self.gamma.powf((step / self.every) as f64)
    }
}
