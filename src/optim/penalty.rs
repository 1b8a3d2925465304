//! Weight penalties to add to a loss: differentiable, so `backward` carries their gradient to
//! the parameters along with the loss's.
//!
//! The optimizers' `weight_decay` does the L2 case more cheaply (inside the fused update, no
//! extra graph); these are for when the penalty should show in the reported loss, or for L1,
//! which no optimizer here applies.

use crate::Tensor;

/// `lambda * sum over parameters of sum(|w|)`, a scalar tensor. Its gradient is
/// `lambda * sign(w)`, taken as 0 where `w = 0`.
///
/// All parameters must share a dtype. With no parameters the result is an f32 zero.
///
/// ```
/// use glassbox::optim::l1_penalty;
/// use glassbox::Tensor;
/// let w = Tensor::from_vec(vec![1.0, -2.0], &[2]).requires_grad_();
/// let penalty = l1_penalty(&[w.clone()], 0.5);
/// assert_eq!(penalty.item(), 1.5);
/// penalty.backward();
/// assert_eq!(w.grad().unwrap().to_vec(), vec![0.5, -0.5]);
/// ```
pub fn l1_penalty(params: &[Tensor], lambda: f64) -> Tensor {
    penalty(params, lambda, |w| w.abs().sum_all())
}

/// `lambda * sum over parameters of sum(w^2)`, a scalar tensor; note there is no factor 1/2,
/// so its gradient is `2 lambda w`. (An optimizer's `weight_decay = wd` matches
/// `l2_penalty(params, wd / 2)`.)
///
/// All parameters must share a dtype. With no parameters the result is an f32 zero.
///
/// ```
/// use glassbox::optim::l2_penalty;
/// use glassbox::Tensor;
/// let w = Tensor::from_vec(vec![1.0, -2.0], &[2]).requires_grad_();
/// let penalty = l2_penalty(&[w.clone()], 0.5);
/// assert_eq!(penalty.item(), 2.5);
/// penalty.backward();
/// assert_eq!(w.grad().unwrap().to_vec(), vec![1.0, -2.0]);
/// ```
pub fn l2_penalty(params: &[Tensor], lambda: f64) -> Tensor {
    // w * w rather than powf(2): a product is exact to one rounding, pow need not be.
    penalty(params, lambda, |w| w.mul(w).sum_all())
}

/// `lambda` times the sum of `per_param` over the parameters.
fn penalty(params: &[Tensor], lambda: f64, per_param: fn(&Tensor) -> Tensor) -> Tensor {
    match params.iter().map(per_param).reduce(|total, term| total.add(&term)) {
        Some(total) => total.mul_scalar(lambda),
        None => Tensor::scalar(0.0),
    }
}
