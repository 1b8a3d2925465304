//! Gradient clipping by global norm.

use crate::{no_grad, DType, Device, Tensor};

/// Added to the norm before dividing, as PyTorch does, so the clipped norm lands just under
/// `max_norm` rather than on it.
const NORM_EPS: f64 = 1e-6;

/// Scales all gradients together so that their global L2 norm is at most `max_norm`, and
/// returns the norm they had before (PyTorch's `clip_grad_norm_`).
///
/// The norm is `sqrt(sum over parameters of sum(g^2))`, accumulated in f64 whatever the
/// gradients' dtype (on a CUDA device, which holds f32 only, each gradient's sum of squares is
/// an f32 reduction there and only the total is f64). When it exceeds `max_norm`, every gradient is multiplied in place by
/// `max_norm / (norm + 1e-6)`, which keeps the direction of the whole update and only shortens
/// it. Parameters without a gradient are ignored. A non-finite norm is returned with the
/// gradients left as they are: no scale can repair them, so the caller should check the
/// result and skip the step.
///
/// ```
/// use glassbox::optim::clip_grad_norm;
/// use glassbox::Tensor;
/// let w = Tensor::from_vec_f64(vec![0.0, 0.0], &[2]).requires_grad_();
/// w.mul(&Tensor::from_vec_f64(vec![3.0, 4.0], &[2])).sum_all().backward(); // gradient [3, 4]
/// let norm = clip_grad_norm(&[w.clone()], 1.0);
/// assert_eq!(norm, 5.0);
/// let g = w.grad().unwrap().to_vec_f64();
/// assert!((g[0] - 0.6).abs() < 1e-6 && (g[1] - 0.8).abs() < 1e-6);
/// ```
pub fn clip_grad_norm(params: &[Tensor], max_norm: f64) -> f64 {
    assert!(max_norm >= 0.0, "clip_grad_norm: max_norm must not be negative, got {max_norm}");
    let grads: Vec<Tensor> = params.iter().filter_map(Tensor::grad).collect();
    no_grad(|| {
        let sum_sq: f64 = grads
            .iter()
            .map(|g| {
                let g = if g.device() == Device::Cpu { g.to_dtype(DType::F64) } else { g.clone() };
                g.mul(&g).sum_all().item_f64()
            })
            .sum();
        let norm = sum_sq.sqrt();
        if norm.is_finite() && norm > max_norm {
            let scale = max_norm / (norm + NORM_EPS);
            // Two parameters' gradients can be the very same elements (the backward of `a + b`
            // hands both inputs one tensor); scaling those twice would scale them by scale^2.
            let mut done: Vec<&Tensor> = Vec::with_capacity(grads.len());
            for g in &grads {
                if done.iter().any(|d| same_elements(d, g)) {
                    continue;
                }
                g.copy_from_(&g.mul_scalar(scale));
                done.push(g);
            }
        }
        norm
    })
}

/// True when `a` and `b` view exactly the same elements of one storage.
fn same_elements(a: &Tensor, b: &Tensor) -> bool {
    a.shares_storage_with(b) && a.layout() == b.layout()
}
