//! Gradient checking: the analytic backward pass against central finite differences, in f64.
//!
//! For a function `f` of some input tensors, pick a random upstream gradient `u` shaped like
//! `f(x)` and check the scalar `L(x) = sum(u * f(x))`. One backward pass of `L` gives the
//! analytic gradient `dL/dx` for every input at once (that is `u` pulled back through `f`,
//! i.e. the vector-Jacobian product the engine really computes). Each element is then compared
//! with the central difference `(L(x + eps e_i) - L(x - eps e_i)) / (2 eps)`.
//!
//! Pass criterion, per element: `|analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|)`.
//! In f64 with `eps = 1e-6` the central difference is accurate to about
//! `eps^2 * |f'''| + 1e-16 / eps`, roughly 1e-10 for well-scaled inputs, so the defaults
//! (`atol = 1e-6`, `rtol = 1e-4`) leave wide room for rounding while catching any wrong formula,
//! whose error is of the size of the gradient itself.

use crate::rng::Rng;
use crate::{DType, Tensor};

/// Settings of [`gradcheck`].
#[derive(Clone, Copy, Debug)]
pub struct GradcheckConfig {
    /// Finite-difference step.
    pub eps: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance.
    pub rtol: f64,
    /// Seed of the random upstream gradient.
    pub seed: u64,
}

impl Default for GradcheckConfig {
    fn default() -> Self {
        GradcheckConfig { eps: 1e-6, atol: 1e-6, rtol: 1e-4, seed: 0 }
    }
}

/// What [`gradcheck`] measured.
#[derive(Clone, Debug)]
pub struct GradcheckReport {
    /// Elements compared across all inputs.
    pub checked: usize,
    /// Largest `|analytic - numeric|` seen.
    pub max_abs_error: f64,
}

/// Checks the analytic gradients of `f` at `inputs` against central differences.
///
/// `inputs` must be f64 (the check needs the precision); they are copied, so the caller's
/// tensors are untouched. Returns a report, or an error naming the input, the element and both
/// values at the first mismatch.
///
/// ```
/// use glassbox::{autograd::{gradcheck, GradcheckConfig}, Tensor};
/// let x = Tensor::from_vec_f64(vec![0.3, -1.2, 2.0], &[3]);
/// let report = gradcheck(|xs| xs[0].tanh().mul(&xs[0]), &[x], GradcheckConfig::default()).unwrap();
/// assert_eq!(report.checked, 3);
/// ```
pub fn gradcheck(
    f: impl Fn(&[Tensor]) -> Tensor,
    inputs: &[Tensor],
    config: GradcheckConfig,
) -> Result<GradcheckReport, String> {
    for (i, x) in inputs.iter().enumerate() {
        if x.dtype() != DType::F64 {
            return Err(format!("gradcheck: input {i} is {}; gradcheck needs f64 inputs", x.dtype()));
        }
    }
    let values: Vec<Vec<f64>> = inputs.iter().map(|x| x.to_vec_f64()).collect();
    let shapes: Vec<Vec<usize>> = inputs.iter().map(|x| x.shape().to_vec()).collect();
    let leaves = |vals: &[Vec<f64>]| -> Vec<Tensor> {
        vals.iter().zip(&shapes).map(|(v, s)| Tensor::from_vec_f64(v.clone(), s).requires_grad_()).collect()
    };

    // Analytic: one backward pass of L = sum(u * f(x)).
    let xs = leaves(&values);
    let y = f(&xs);
    let mut rng = Rng::new(config.seed);
    let upstream = Tensor::randn_dtype(y.shape(), DType::F64, &mut rng);
    if !y.requires_grad() {
        return Err("gradcheck: the output does not depend on any input through recorded ops".into());
    }
    y.backward_with_grad(&upstream);
    let analytic: Vec<Vec<f64>> =
        xs.iter().map(|x| x.grad().map(|g| g.to_vec_f64()).unwrap_or_else(|| vec![0.0; x.numel()])).collect();

    let u = upstream.to_vec_f64();
    let loss_at = |vals: &[Vec<f64>]| -> f64 {
        let y = crate::autograd::no_grad(|| f(&leaves(vals)));
        y.to_vec_f64().iter().zip(&u).map(|(a, b)| a * b).sum()
    };

    let mut report = GradcheckReport { checked: 0, max_abs_error: 0.0 };
    let mut probe = values.clone();
    for (i, x_values) in values.iter().enumerate() {
        for j in 0..x_values.len() {
            probe[i][j] = x_values[j] + config.eps;
            let plus = loss_at(&probe);
            probe[i][j] = x_values[j] - config.eps;
            let minus = loss_at(&probe);
            probe[i][j] = x_values[j];
            let numeric = (plus - minus) / (2.0 * config.eps);
            let a = analytic[i][j];
            let err = (a - numeric).abs();
            report.max_abs_error = report.max_abs_error.max(err);
            report.checked += 1;
            if err.is_nan() || err > config.atol + config.rtol * a.abs().max(numeric.abs()) {
                return Err(format!(
                    "gradcheck: input {i} (shape {:?}) element {j}: analytic {a:.10e} vs numeric {numeric:.10e} (|diff| {err:.3e})",
                    shapes[i]
                ));
            }
        }
    }
    Ok(report)
}
