//! Training health: is every layer learning, and at a sensible pace?
//!
//! Per parameter, [`HealthReport::check`] reads
//! - the **gradient norm** `|g|`: how strongly the loss pulls on it;
//! - the **update-to-weight ratio** `|w_after - w_before| / |w_before|` over one optimizer step
//!   (take a [`WeightSnapshot`] before the step): a common rule of thumb is that around `1e-3`
//!   a layer learns steadily; far above, the learning rate may be too high for it; far below,
//!   it barely moves;
//! - a **warning** when the parameter received no gradient at all (`grad()` is `None`: the
//!   loss does not depend on it, or it is detached or frozen) or a gradient of exact zeros
//!   (a dead path, e.g. every ReLU in front of it is off), or a gradient that is not finite.
//!
//! Activations add two more readings: [`dead_units`] (ReLU units that output zero for every
//! example of a batch, so no gradient reaches their weights) and [`gate_saturation`] (the
//! share of sigmoid gates stuck near 0 or 1, where their gradient `s (1 - s)` vanishes: an
//! LSTM's forget, input and output gates).
//!
//! ```
//! use glassbox::inspect::health::{HealthReport, WeightSnapshot};
//! use glassbox::Tensor;
//! let w = Tensor::from_vec(vec![3.0, 4.0], &[2]).requires_grad_();
//! let params = vec![("w".to_string(), w.clone())];
//! w.mul_scalar(2.0).sum_all().backward(); // grad [2, 2]
//! let before = WeightSnapshot::take(&params);
//! w.sgd_step_(&w.grad().unwrap(), &Tensor::zeros(&[2]), 0.5, 0.0, 0.0); // w -= 0.5 g
//! let report = HealthReport::check(&params, Some(&before));
//! let p = &report.params[0];
//! assert_eq!(p.grad_norm, Some(8f64.sqrt()));
//! assert!((p.update_ratio.unwrap() - 2f64.sqrt() / 5.0).abs() < 1e-7); // |[1, 1]| / |[3, 4]|
//! ```

use std::fmt;

use super::format_sig;
use super::table::{Align, TextTable};
use crate::autograd::trace::l2_norm;
use crate::Tensor;

/// Gates below this value count as saturated "closed" (sigmoid's slope there is < 0.05).
pub const GATE_LOW: f64 = 0.05;
/// Gates above this value count as saturated "open".
pub const GATE_HIGH: f64 = 0.95;
/// Updates larger than this fraction of the weight get a warning: one step rewrites a tenth
/// of the layer, which usually means the learning rate is too high for it.
pub const LARGE_UPDATE_RATIO: f64 = 0.1;

/// Copies of the parameters' values, taken before an optimizer step so that the step's size
/// can be measured after it.
pub struct WeightSnapshot {
    values: Vec<(String, Vec<f64>)>,
}

impl WeightSnapshot {
    /// Copies every parameter's current values.
    pub fn take(params: &[(String, Tensor)]) -> WeightSnapshot {
        WeightSnapshot { values: params.iter().map(|(n, t)| (n.clone(), t.to_vec_f64())).collect() }
    }

    fn get(&self, name: &str) -> Option<&[f64]> {
        self.values.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }
}

/// The health of one parameter.
#[derive(Clone, Debug)]
pub struct ParamHealth {
    /// Its name (as in `named_parameters()`).
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// `|w|`, L2 norm of the current values.
    pub weight_norm: f64,
    /// `|g|`, L2 norm of its gradient; `None` when it has none.
    pub grad_norm: Option<f64>,
    /// `|w - w_before| / |w_before|` when a snapshot was given (`None` for a zero weight).
    pub update_ratio: Option<f64>,
    /// What looks wrong, if anything.
    pub warning: Option<String>,
}

/// Dead units of one activation tensor (see [`dead_units`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeadUnits {
    /// Units that were `<= 0` for every example.
    pub dead: usize,
    /// Units looked at.
    pub units: usize,
}

impl DeadUnits {
    /// `dead / units` (0 for no units).
    pub fn fraction(&self) -> f64 {
        if self.units == 0 {
            0.0
        } else {
            self.dead as f64 / self.units as f64
        }
    }
}

/// Counts the units of `activations` (`[batch, ...]`: every position after the batch dim is a
/// unit) whose value is `<= 0` for every example of the batch. Works on ReLU outputs (dead
/// means exactly 0) and on pre-activations (dead means never positive) alike. A rank-1 tensor
/// is one example.
///
/// ```
/// use glassbox::{inspect::dead_units, Tensor};
/// // 3 examples, 4 units: unit 1 never fires, unit 3 fires once.
/// let h = Tensor::from_vec(vec![1.0, 0.0, 2.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0, -1.0, 3.0, 0.1], &[3, 4]).relu();
/// let d = dead_units(&h);
/// assert_eq!((d.dead, d.units), (1, 4));
/// ```
pub fn dead_units(activations: &Tensor) -> DeadUnits {
    let values = activations.to_vec_f64();
    let units =
        if activations.rank() >= 2 { activations.numel() / activations.shape()[0].max(1) } else { values.len() };
    if units == 0 {
        return DeadUnits { dead: 0, units: 0 };
    }
    let mut alive = vec![false; units];
    for example in values.chunks(units) {
        for (a, &v) in alive.iter_mut().zip(example) {
            *a |= v > 0.0;
        }
    }
    DeadUnits { dead: alive.iter().filter(|&&a| !a).count(), units }
}

/// The fraction of sigmoid gate values that are saturated: below [`GATE_LOW`] or above
/// [`GATE_HIGH`], where the gate's slope `s (1 - s)` is under 0.05 and little gradient passes.
/// Pass the gates after their sigmoid (e.g. an LSTM's `[batch, 3 * hidden]` i, f, o gates).
///
/// ```
/// use glassbox::{inspect::gate_saturation, Tensor};
/// let gates = Tensor::from_vec(vec![0.01, 0.5, 0.97, 0.3], &[2, 2]);
/// assert_eq!(gate_saturation(&gates), 0.5);
/// ```
pub fn gate_saturation(gates: &Tensor) -> f64 {
    let values = gates.to_vec_f64();
    if values.is_empty() {
        return 0.0;
    }
    let saturated = values.iter().filter(|&&v| !(GATE_LOW..=GATE_HIGH).contains(&v)).count();
    saturated as f64 / values.len() as f64
}

/// Per-parameter health, plus any activation readings added to it.
#[derive(Clone, Debug, Default)]
pub struct HealthReport {
    /// One entry per parameter, in the order given.
    pub params: Vec<ParamHealth>,
    /// `(name, dead units)` for each activation added with [`with_dead_units`](Self::with_dead_units).
    pub dead: Vec<(String, DeadUnits)>,
    /// `(name, saturated fraction)` for each gate tensor added with
    /// [`with_gate_saturation`](Self::with_gate_saturation).
    pub saturation: Vec<(String, f64)>,
}

impl HealthReport {
    /// Reads every parameter's weight and gradient; with `before` (taken before the optimizer
    /// step), also the size of the step.
    pub fn check(params: &[(String, Tensor)], before: Option<&WeightSnapshot>) -> HealthReport {
        let params = params
            .iter()
            .map(|(name, w)| {
                let now = w.to_vec_f64();
                let weight_norm = now.iter().map(|v| v * v).sum::<f64>().sqrt();
                let grad = w.grad();
                let grad_norm = grad.as_ref().map(l2_norm);
                let update_ratio = before.and_then(|b| b.get(name)).and_then(|old| {
                    let old_norm = old.iter().map(|v| v * v).sum::<f64>().sqrt();
                    let step = now.iter().zip(old).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
                    (old_norm > 0.0).then_some(step / old_norm)
                });
                let warning = match grad_norm {
                    None => Some(
                        "no gradient: backward never reached it (unused by the loss, detached, or frozen?)".to_string(),
                    ),
                    Some(g) if !g.is_finite() => Some("gradient is not finite (NaN or inf)".to_string()),
                    Some(0.0) => {
                        Some("gradient is all zeros: a dead path (e.g. every ReLU feeding it is off)".to_string())
                    }
                    Some(_) => match update_ratio {
                        Some(r) if r > LARGE_UPDATE_RATIO => {
                            Some(format!("one step changed it by {:.0}%: learning rate too high?", r * 100.0))
                        }
                        _ => None,
                    },
                };
                ParamHealth {
                    name: name.clone(),
                    shape: w.shape().to_vec(),
                    weight_norm,
                    grad_norm,
                    update_ratio,
                    warning,
                }
            })
            .collect();
        HealthReport { params, dead: Vec::new(), saturation: Vec::new() }
    }

    /// Adds the dead-unit count of an activation tensor (see [`dead_units`]).
    pub fn with_dead_units(mut self, name: impl Into<String>, activations: &Tensor) -> HealthReport {
        self.dead.push((name.into(), dead_units(activations)));
        self
    }

    /// Adds the saturation of a gate tensor (see [`gate_saturation`]).
    pub fn with_gate_saturation(mut self, name: impl Into<String>, gates: &Tensor) -> HealthReport {
        self.saturation.push((name.into(), gate_saturation(gates)));
        self
    }

    /// Every warning, prefixed with the parameter's name.
    pub fn warnings(&self) -> Vec<String> {
        self.params.iter().filter_map(|p| p.warning.as_ref().map(|w| format!("{}: {w}", p.name))).collect()
    }
}

impl fmt::Display for HealthReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut table = TextTable::new(&[
            ("parameter", Align::Left),
            ("shape", Align::Left),
            ("|w|", Align::Right),
            ("|grad|", Align::Right),
            ("|dw|/|w|", Align::Right),
            ("warning", Align::Left),
        ]);
        let or_dash = |v: Option<f64>| v.map(format_sig).unwrap_or_else(|| "-".to_string());
        for p in &self.params {
            table.row(vec![
                p.name.clone(),
                format!("{:?}", p.shape),
                format_sig(p.weight_norm),
                or_dash(p.grad_norm),
                or_dash(p.update_ratio),
                p.warning.clone().unwrap_or_default(),
            ]);
        }
        write!(f, "{table}")?;
        for (name, d) in &self.dead {
            writeln!(f, "dead units in {name}: {} of {} ({:.1}%)", d.dead, d.units, 100.0 * d.fraction())?;
        }
        for (name, s) in &self.saturation {
            writeln!(f, "saturated gates in {name}: {:.1}% (below {GATE_LOW} or above {GATE_HIGH})", 100.0 * s)?;
        }
        Ok(())
    }
}
