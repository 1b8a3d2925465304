//! Semantics of the autograd engine: accumulation, zeroing, detach, no_grad, and errors.

use glassbox::autograd::{no_grad, NoGradGuard};
use glassbox::Tensor;

#[test]
fn gradients_accumulate_over_uses_and_over_backward_calls() {
    let x = Tensor::from_vec(vec![1.0, 2.0], &[2]).requires_grad_();
    // x used twice: d/dx (x * 3 + x) = 4
    let y = x.mul_scalar(3.0).add(&x).sum_all();
    y.backward();
    assert_eq!(x.grad().unwrap().to_vec(), vec![4.0, 4.0]);
    y.backward();
    assert_eq!(x.grad().unwrap().to_vec(), vec![8.0, 8.0]);
    x.zero_grad();
    assert!(x.grad().is_none());
    x.mul(&x).sum_all().backward();
    assert_eq!(x.grad().unwrap().to_vec(), vec![2.0, 4.0]);
}

#[test]
fn a_gradient_the_caller_holds_keeps_its_values_when_more_is_accumulated() {
    let x = Tensor::from_vec(vec![1.0, 2.0], &[2]).requires_grad_();
    x.mul_scalar(2.0).sum_all().backward();
    let first = x.grad().unwrap();
    x.mul_scalar(3.0).sum_all().backward();
    assert_eq!(first.to_vec(), vec![2.0, 2.0], "the held gradient must not be added into");
    assert_eq!(x.grad().unwrap().to_vec(), vec![5.0, 5.0]);
}

/// Address of the first element of a host tensor's buffer.
fn buffer_address(t: &Tensor) -> usize {
    match t.storage().cpu() {
        glassbox::tensor::CpuStorage::F32(b) => b.as_ptr() as usize,
        glassbox::tensor::CpuStorage::F64(b) => b.as_ptr() as usize,
    }
}

#[test]
fn a_leaf_gradient_nobody_holds_is_accumulated_in_its_own_buffer() {
    let x = Tensor::zeros(&[3, 5]).requires_grad_();
    x.mul_scalar(2.0).sum_all().backward();
    let first = buffer_address(&x.grad().unwrap());
    x.mul_scalar(3.0).sum_all().backward();
    assert_eq!(buffer_address(&x.grad().unwrap()), first, "the second backward should add in place");
    assert_eq!(x.grad().unwrap().to_vec(), vec![5.0; 15]);
}

#[test]
fn diamond_graph_sums_both_paths() {
    let x = Tensor::from_vec(vec![3.0], &[1]).requires_grad_();
    let a = x.mul_scalar(2.0);
    let b = x.exp();
    // d/dx (2x * e^x) = 2 e^x + 2x e^x
    a.mul(&b).sum_all().backward();
    let e3 = 3f32.exp();
    assert!((x.grad().unwrap().item() - (2.0 * e3 + 6.0 * e3)).abs() < 1e-3);
}

#[test]
fn detach_and_no_grad_stop_the_graph() {
    let x = Tensor::ones(&[2]).requires_grad_();
    assert!(!x.detach().requires_grad());
    let y = no_grad(|| x.mul_scalar(2.0));
    assert!(!y.requires_grad() && y.is_leaf());
    {
        let _guard = NoGradGuard::new();
        assert!(!x.exp().requires_grad());
    }
    assert!(x.exp().requires_grad(), "grad mode returns after the guard");
    // Only the non-detached path contributes.
    x.mul(&x.detach()).sum_all().backward();
    assert_eq!(x.grad().unwrap().to_vec(), vec![1.0, 1.0]);
}

#[test]
fn frozen_leaves_get_no_gradient() {
    let w = Tensor::ones(&[2]).requires_grad_();
    let frozen = Tensor::ones(&[2]).requires_grad_();
    frozen.set_requires_grad(false);
    w.mul(&frozen).sum_all().backward();
    assert!(w.grad().is_some());
    assert!(frozen.grad().is_none());
}

#[test]
fn broadcast_gradients_are_reduced_to_each_input_shape() {
    let a = Tensor::ones(&[2, 3]).requires_grad_();
    let b = Tensor::ones(&[3]).requires_grad_();
    a.add(&b).sum_all().backward();
    assert_eq!(b.grad().unwrap().shape(), &[3]);
    assert_eq!(b.grad().unwrap().to_vec(), vec![2.0, 2.0, 2.0]);
    assert_eq!(a.grad().unwrap().shape(), &[2, 3]);
}

#[test]
fn backward_with_explicit_upstream_gradient_seeds_a_non_scalar() {
    let x = Tensor::from_vec(vec![1.0, 2.0, 3.0], &[3]).requires_grad_();
    let y = x.mul_scalar(2.0);
    y.backward_with_grad(&Tensor::from_vec(vec![1.0, 0.0, -1.0], &[3]));
    assert_eq!(x.grad().unwrap().to_vec(), vec![2.0, 0.0, -2.0]);
}

fn panic_message(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
    let err = std::panic::catch_unwind(f).expect_err("expected a panic");
    err.downcast_ref::<String>().cloned().unwrap_or_else(|| err.downcast_ref::<&str>().unwrap_or(&"").to_string())
}

#[test]
fn backward_from_a_non_scalar_is_a_clear_error() {
    let x = Tensor::ones(&[2, 2]).requires_grad_();
    let msg = panic_message(|| x.mul_scalar(2.0).backward());
    assert!(msg.contains("backward") && msg.contains("[2, 2]") && msg.contains("scalar"), "{msg}");
}

#[test]
fn backward_without_any_grad_input_is_a_clear_error() {
    let msg = panic_message(|| Tensor::ones(&[1]).exp().backward());
    assert!(msg.contains("does not require grad"), "{msg}");
}

#[test]
fn deep_chains_do_not_overflow_the_stack() {
    let x = Tensor::ones(&[1]).requires_grad_();
    let mut y = x.clone();
    for _ in 0..20_000 {
        y = y.mul_scalar(1.0);
    }
    y.sum_all().backward();
    assert_eq!(x.grad().unwrap().item(), 1.0);
}
