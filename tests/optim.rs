//! Optimizers, gradient clipping, penalties and schedules, checked against the textbook
//! formulas on small f64 cases worked out here by hand.

use glassbox::optim::{
    clip_grad_norm, l1_penalty, l2_penalty, Adam, AdamW, CosineSchedule, Optimizer, RmsProp, Sgd, StepDecay,
};
use glassbox::Tensor;

/// The kernels and the references below do the same f64 arithmetic, sometimes in another order
/// (the Adam kernel folds the bias corrections into its constants), so they agree to a few
/// ulps of values near 1. 1e-12 leaves room for that and still catches any wrong formula, which
/// shows at 1e-3 or more.
const F64_TOL: f64 = 1e-12;

/// Adam's and RMSprop's first step is `lr` (or `10 lr`) per element up to the relative effect
/// of `eps = 1e-8` against gradients of size ~1, i.e. a few 1e-9.
const EPS_EFFECT_TOL: f64 = 1e-8;

/// The starting parameter of the hand-computed cases.
const W0: [f64; 3] = [1.0, -2.0, 3.0];

/// A 1-D f64 parameter that wants a gradient.
fn param(values: &[f64]) -> Tensor {
    Tensor::from_vec_f64(values.to_vec(), &[values.len()]).requires_grad_()
}

/// Backpropagates `loss = sum(w * c)`, so that `dloss/dw = c` exactly.
fn backward_linear(w: &Tensor, c: &[f64]) {
    w.mul(&Tensor::from_vec_f64(c.to_vec(), &[c.len()])).sum_all().backward();
}

/// Backpropagates `loss = sum(w^2)`, so that `dloss/dw = 2 w`, which changes as `w` moves.
fn backward_quadratic(w: &Tensor) {
    w.mul(w).sum_all().backward();
}

#[track_caller]
fn assert_close(actual: &[f64], expected: &[f64], tol: f64, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!((a - e).abs() <= tol, "{what}: element {i} is {a}, expected {e} (tolerance {tol})\n  got {actual:?}");
    }
}

// ----- SGD -------------------------------------------------------------------------------

#[test]
fn sgd_plain_step_is_w_minus_lr_times_grad() {
    let w = param(&W0);
    let mut opt = Sgd::new(vec![w.clone()], 0.1);
    backward_linear(&w, &[0.5, -1.0, 2.0]);
    opt.step();
    // [1 - 0.05, -2 + 0.1, 3 - 0.2]
    assert_close(&w.to_vec_f64(), &[0.95, -1.9, 2.8], F64_TOL, "w after one step");
}

#[test]
fn sgd_momentum_buffer_accumulates_across_two_steps() {
    let c = [0.5, -1.0, 2.0];
    let w = param(&W0);
    let mut opt = Sgd::new(vec![w.clone()], 0.1).momentum(0.9);

    // Step 1: buf = c, w -= 0.1 c.
    backward_linear(&w, &c);
    opt.step();
    opt.zero_grad();
    assert_close(&w.to_vec_f64(), &[0.95, -1.9, 2.8], F64_TOL, "w after step 1");

    // Step 2: buf = 0.9 c + c = 1.9 c, w -= 0.19 c; in all w0 - 0.29 c.
    backward_linear(&w, &c);
    opt.step();
    assert_close(&w.to_vec_f64(), &[0.855, -1.71, 2.42], F64_TOL, "w after step 2");
}

#[test]
fn sgd_weight_decay_adds_wd_times_w_to_the_gradient() {
    let w = param(&W0);
    let mut opt = Sgd::new(vec![w.clone()], 0.1).weight_decay(0.1);
    backward_linear(&w, &[0.5, -1.0, 2.0]);
    opt.step();
    // d = c + 0.1 w = [0.6, -1.2, 2.3]; w -= 0.1 d
    assert_close(&w.to_vec_f64(), &[0.94, -1.88, 2.77], F64_TOL, "w after one step");
}

// ----- Adam and AdamW --------------------------------------------------------------------

/// Textbook Adam / AdamW on `loss = sum(w^2)` (gradient `2 w`), written out element by element.
/// Returns `w` after each step.
fn adam_reference(steps: usize, lr: f64, wd: f64, decoupled: bool) -> Vec<[f64; 3]> {
    let (b1, b2, eps) = (0.9_f64, 0.999_f64, 1e-8);
    let (mut w, mut m, mut v) = (W0, [0.0; 3], [0.0; 3]);
    let mut history = Vec::new();
    for t in 1..=steps as i32 {
        for i in 0..3 {
            let mut g = 2.0 * w[i];
            if !decoupled {
                g += wd * w[i];
            }
            m[i] = b1 * m[i] + (1.0 - b1) * g;
            v[i] = b2 * v[i] + (1.0 - b2) * g * g;
            let m_hat = m[i] / (1.0 - b1.powi(t));
            let v_hat = v[i] / (1.0 - b2.powi(t));
            let decay = if decoupled { lr * wd * w[i] } else { 0.0 };
            w[i] -= decay + lr * m_hat / (v_hat.sqrt() + eps);
        }
        history.push(w);
    }
    history
}

#[test]
fn adam_matches_textbook_update_with_bias_correction() {
    let w = param(&W0);
    let mut opt = Adam::new(vec![w.clone()], 0.1);
    let expected = adam_reference(3, 0.1, 0.0, false);
    for (step, want) in expected.iter().enumerate() {
        backward_quadratic(&w);
        opt.step();
        opt.zero_grad();
        assert_close(&w.to_vec_f64(), want, F64_TOL, &format!("w after step {}", step + 1));
    }
}

#[test]
fn adam_first_step_moves_each_element_by_lr() {
    // With bias correction m^ = g and v^ = g^2 at t = 1, so the step is lr g / (|g| + eps).
    let w = param(&W0);
    let mut opt = Adam::new(vec![w.clone()], 0.1);
    backward_quadratic(&w);
    opt.step();
    assert_close(&w.to_vec_f64(), &[0.9, -1.9, 2.9], EPS_EFFECT_TOL, "w after one step");
}

#[test]
fn adam_coupled_weight_decay_matches_textbook_l2_update() {
    let w = param(&W0);
    let mut opt = Adam::new(vec![w.clone()], 0.1).weight_decay(0.1);
    for (step, want) in adam_reference(3, 0.1, 0.1, false).iter().enumerate() {
        backward_quadratic(&w);
        opt.step();
        opt.zero_grad();
        assert_close(&w.to_vec_f64(), want, F64_TOL, &format!("w after step {}", step + 1));
    }
}

#[test]
fn adamw_decoupled_weight_decay_matches_textbook_update() {
    let w = param(&W0);
    let mut opt = AdamW::new(vec![w.clone()], 0.1).weight_decay(0.1);
    for (step, want) in adam_reference(3, 0.1, 0.1, true).iter().enumerate() {
        backward_quadratic(&w);
        opt.step();
        opt.zero_grad();
        assert_close(&w.to_vec_f64(), want, F64_TOL, &format!("w after step {}", step + 1));
    }
}

#[test]
fn adam_l2_and_adamw_decay_give_different_results() {
    // Coupled decay is normalized away by sqrt(v^) on the first step; decoupled decay is not,
    // so after one step AdamW sits lr wd w0 = 0.01 w0 closer to 0 than Adam.
    let (w_adam, w_adamw) = (param(&W0), param(&W0));
    let mut adam = Adam::new(vec![w_adam.clone()], 0.1).weight_decay(0.1);
    let mut adamw = AdamW::new(vec![w_adamw.clone()], 0.1).weight_decay(0.1);
    backward_quadratic(&w_adam);
    backward_quadratic(&w_adamw);
    adam.step();
    adamw.step();
    let gap: Vec<f64> = w_adam.to_vec_f64().iter().zip(w_adamw.to_vec_f64()).map(|(a, b)| a - b).collect();
    // Adam's first step is lr sign(g) whatever the decay; AdamW adds 0.01 w0 on top.
    assert_close(&gap, &[0.01, -0.02, 0.03], EPS_EFFECT_TOL, "Adam minus AdamW after one step");
}

#[test]
fn adamw_defaults_to_weight_decay_of_one_hundredth() {
    let w = param(&W0);
    let mut opt = AdamW::new(vec![w.clone()], 0.1);
    backward_quadratic(&w);
    opt.step();
    assert_close(&w.to_vec_f64(), &adam_reference(1, 0.1, 0.01, true)[0], F64_TOL, "w after one step");
}

// ----- RMSprop ---------------------------------------------------------------------------

/// Textbook RMSprop (no momentum, not centered) on `loss = sum(w^2)`; `w` after each step.
fn rmsprop_reference(steps: usize, lr: f64, alpha: f64, wd: f64) -> Vec<[f64; 3]> {
    let eps = 1e-8;
    let (mut w, mut s) = (W0, [0.0; 3]);
    let mut history = Vec::new();
    for _ in 0..steps {
        for i in 0..3 {
            let g = 2.0 * w[i] + wd * w[i];
            s[i] = alpha * s[i] + (1.0 - alpha) * g * g;
            w[i] -= lr * g / (s[i].sqrt() + eps);
        }
        history.push(w);
    }
    history
}

#[test]
fn rmsprop_matches_textbook_update_over_two_steps() {
    let w = param(&W0);
    let mut opt = RmsProp::new(vec![w.clone()], 0.01);
    for (step, want) in rmsprop_reference(2, 0.01, 0.99, 0.0).iter().enumerate() {
        backward_quadratic(&w);
        opt.step();
        opt.zero_grad();
        assert_close(&w.to_vec_f64(), want, F64_TOL, &format!("w after step {}", step + 1));
    }
}

#[test]
fn rmsprop_first_step_is_ten_lr_per_element_with_alpha_099() {
    // s = 0.01 g^2, so sqrt(s) = 0.1 |g| and the step is lr g / (0.1 |g|) = 10 lr sign(g).
    let w = param(&W0);
    let mut opt = RmsProp::new(vec![w.clone()], 0.01);
    backward_quadratic(&w);
    opt.step();
    assert_close(&w.to_vec_f64(), &[0.9, -1.9, 2.9], EPS_EFFECT_TOL, "w after one step");
}

#[test]
fn rmsprop_with_alpha_and_weight_decay_matches_textbook_update() {
    let w = param(&W0);
    let mut opt = RmsProp::new(vec![w.clone()], 0.01).alpha(0.9).weight_decay(0.5);
    for (step, want) in rmsprop_reference(2, 0.01, 0.9, 0.5).iter().enumerate() {
        backward_quadratic(&w);
        opt.step();
        opt.zero_grad();
        assert_close(&w.to_vec_f64(), want, F64_TOL, &format!("w after step {}", step + 1));
    }
}

// ----- what every optimizer shares -------------------------------------------------------

/// Builds an optimizer over the given parameters.
type Maker = fn(Vec<Tensor>) -> Box<dyn Optimizer>;

/// One maker per optimizer, with every option that touches a parameter turned on (weight
/// decay above all, which would move even a parameter whose gradient is zero).
fn every_optimizer() -> [(&'static str, Maker); 4] {
    [
        ("Sgd", |p| Box::new(Sgd::new(p, 0.1).momentum(0.9).weight_decay(0.1))),
        ("Adam", |p| Box::new(Adam::new(p, 0.1).weight_decay(0.1))),
        ("AdamW", |p| Box::new(AdamW::new(p, 0.1).weight_decay(0.1))),
        ("RmsProp", |p| Box::new(RmsProp::new(p, 0.01).weight_decay(0.1))),
    ]
}

#[test]
fn parameter_without_grad_is_left_untouched() {
    for (name, make) in every_optimizer() {
        let (used, unused) = (param(&W0), param(&[4.0, -5.0]));
        let mut opt = make(vec![used.clone(), unused.clone()]);
        for _ in 0..2 {
            backward_quadratic(&used);
            opt.step();
            opt.zero_grad();
        }
        assert_eq!(unused.to_vec_f64(), vec![4.0, -5.0], "{name} moved a parameter that had no gradient");
        assert!(unused.grad().is_none(), "{name}: the unused parameter gained a gradient");
        assert_ne!(used.to_vec_f64(), W0.to_vec(), "{name} did not move the parameter that had a gradient");
    }
}

#[test]
fn zero_grad_clears_every_parameter_gradient() {
    for (name, make) in every_optimizer() {
        let (a, b) = (param(&W0), param(&[1.0]));
        let opt = make(vec![a.clone(), b.clone()]);
        a.mul(&a).sum_all().add(&b.sum_all()).backward();
        assert!(a.grad().is_some() && b.grad().is_some());
        opt.zero_grad();
        assert!(a.grad().is_none() && b.grad().is_none(), "{name}: zero_grad left a gradient");
    }
}

#[test]
fn set_learning_rate_changes_the_next_step() {
    let w = param(&W0);
    let mut opt = Sgd::new(vec![w.clone()], 0.1);
    opt.set_learning_rate(0.5);
    assert_eq!(opt.learning_rate(), 0.5);
    backward_linear(&w, &[1.0, 1.0, 1.0]);
    opt.step();
    assert_close(&w.to_vec_f64(), &[0.5, -2.5, 2.5], F64_TOL, "w after a step at lr 0.5");
}

#[test]
fn learning_rate_can_be_set_to_zero_for_schedules_that_end_there() {
    let w = param(&W0);
    let mut opt = Adam::new(vec![w.clone()], 0.1);
    opt.set_learning_rate(0.0);
    backward_quadratic(&w);
    opt.step();
    assert_eq!(w.to_vec_f64(), W0.to_vec());
}

/// Start at 0 with target [1, -2, 3]: the loss starts at 14. Below 1e-4 every coordinate is
/// within 0.01 of its target. SGD and Adam get to ~1e-12 in the steps given; RMSprop, having no
/// bias correction or decaying step, keeps jittering at a scale set by lr (~3e-6 seen in f32),
/// so 1e-4 leaves it a margin while any broken descent stays far above.
const MINIMIZED_LOSS: f64 = 1e-4;

/// Steps given to each optimizer to get there.
const DESCENT_STEPS: usize = 500;

#[test]
fn every_optimizer_minimizes_a_quadratic_in_f32() {
    // No weight decay here: it would move the minimum away from the target.
    let optimizers: [(&str, Maker); 4] = [
        ("Sgd", |p| Box::new(Sgd::new(p, 0.05).momentum(0.9))),
        ("Adam", |p| Box::new(Adam::new(p, 0.05))),
        ("AdamW", |p| Box::new(AdamW::new(p, 0.05).weight_decay(0.0))),
        ("RmsProp", |p| Box::new(RmsProp::new(p, 0.01))),
    ];
    let target = Tensor::from_vec(vec![1.0, -2.0, 3.0], &[3]);
    let loss_of = |w: &Tensor| w.sub(&target).powf(2.0).sum_all();
    for (name, make) in optimizers {
        let w = Tensor::zeros(&[3]).requires_grad_();
        let mut opt = make(vec![w.clone()]);
        let start = loss_of(&w).item_f64();
        for _ in 0..DESCENT_STEPS {
            loss_of(&w).backward();
            opt.step();
            opt.zero_grad();
        }
        let end = loss_of(&w).item_f64();
        assert!(end < MINIMIZED_LOSS, "{name}: loss went from {start} to {end}, not below {MINIMIZED_LOSS}");
    }
}

#[test]
#[should_panic(expected = "Sgd::new: the learning rate must be positive")]
fn zero_learning_rate_at_construction_panics() {
    Sgd::new(vec![param(&W0)], 0.0);
}

#[test]
#[should_panic(expected = "RmsProp::new: the learning rate must be positive")]
fn negative_learning_rate_panics() {
    RmsProp::new(vec![param(&W0)], -0.01);
}

#[test]
#[should_panic(expected = "Adam::betas: beta2 must lie in [0, 1), got 1")]
fn adam_beta_of_one_panics() {
    let _ = Adam::new(vec![param(&W0)], 0.1).betas(0.9, 1.0);
}

#[test]
#[should_panic(expected = "AdamW::betas: beta1 must lie in [0, 1), got -0.1")]
fn adamw_negative_beta_panics() {
    let _ = AdamW::new(vec![param(&W0)], 0.1).betas(-0.1, 0.999);
}

// ----- gradient clipping -----------------------------------------------------------------

/// Two parameters whose gradients are [1, 2, 2] and [4]: global norm sqrt(1 + 4 + 4 + 16) = 5.
fn two_params_with_grad_norm_five() -> (Tensor, Tensor) {
    let (a, b) = (param(&[0.0, 0.0, 0.0]), param(&[0.0]));
    backward_linear(&a, &[1.0, 2.0, 2.0]);
    backward_linear(&b, &[4.0]);
    (a, b)
}

#[test]
fn clip_grad_norm_returns_the_norm_and_scales_grads_to_max_norm() {
    let (a, b) = two_params_with_grad_norm_five();
    let norm = clip_grad_norm(&[a.clone(), b.clone()], 2.5);
    assert_eq!(norm, 5.0);
    let scale = 2.5 / (5.0 + 1e-6);
    assert_close(&a.grad().unwrap().to_vec_f64(), &[scale, 2.0 * scale, 2.0 * scale], F64_TOL, "a's grad");
    assert_close(&b.grad().unwrap().to_vec_f64(), &[4.0 * scale], F64_TOL, "b's grad");
    // The whole vector now has norm just under the limit.
    let clipped = clip_grad_norm(&[a, b], f64::INFINITY);
    assert!(clipped < 2.5 && clipped > 2.5 - 1e-6, "norm after clipping is {clipped}");
}

#[test]
fn clip_grad_norm_below_the_limit_changes_nothing() {
    let (a, b) = two_params_with_grad_norm_five();
    assert_eq!(clip_grad_norm(&[a.clone(), b.clone()], 10.0), 5.0);
    assert_eq!(a.grad().unwrap().to_vec_f64(), vec![1.0, 2.0, 2.0]);
    assert_eq!(b.grad().unwrap().to_vec_f64(), vec![4.0]);
}

#[test]
fn clip_grad_norm_ignores_parameters_without_grad() {
    let (a, b) = two_params_with_grad_norm_five();
    let bystander = param(&[100.0]);
    assert_eq!(clip_grad_norm(&[a, b, bystander.clone()], 1.0), 5.0);
    assert!(bystander.grad().is_none());
}

#[test]
fn clip_grad_norm_scales_shared_gradient_storage_once() {
    // The backward of a + b gives both inputs the same gradient tensor; each must still end up
    // scaled once, by max_norm / (norm + 1e-6), and not once per parameter.
    let (a, b) = (param(&[0.0, 0.0]), param(&[0.0, 0.0]));
    a.add(&b).sum_all().backward();
    let norm = clip_grad_norm(&[a.clone(), b.clone()], 1.0);
    assert_eq!(norm, 2.0); // four gradients of 1
    let scale = 1.0 / (2.0 + 1e-6);
    assert_close(&a.grad().unwrap().to_vec_f64(), &[scale, scale], F64_TOL, "a's grad");
    assert_close(&b.grad().unwrap().to_vec_f64(), &[scale, scale], F64_TOL, "b's grad");
}

#[test]
fn clip_grad_norm_of_f32_grads_matches_the_f64_norm() {
    /// f32 gradients hold the inputs to ~6e-8 relative, and the sum is taken in f64.
    const F32_TOL: f64 = 1e-6;
    let w = Tensor::from_vec(vec![0.0; 3], &[3]).requires_grad_();
    w.mul(&Tensor::from_vec(vec![0.1, 0.2, 0.3], &[3])).sum_all().backward();
    let expected = (0.1_f32 as f64).powi(2) + (0.2_f32 as f64).powi(2) + (0.3_f32 as f64).powi(2);
    let norm = clip_grad_norm(std::slice::from_ref(&w), 0.1);
    assert!((norm - expected.sqrt()).abs() < F32_TOL, "norm {norm}, expected {}", expected.sqrt());
    let g = w.grad().unwrap().to_vec_f64();
    let clipped = g.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((clipped - 0.1).abs() < F32_TOL, "norm after clipping {clipped}, expected 0.1");
}

// ----- penalties -------------------------------------------------------------------------

#[test]
fn l1_penalty_is_lambda_sum_abs_with_sign_gradient() {
    let (a, b) = (param(&W0), param(&[0.0, -0.5]));
    let penalty = l1_penalty(&[a.clone(), b.clone()], 0.5);
    // 0.5 * (1 + 2 + 3 + 0 + 0.5)
    assert_close(&[penalty.item_f64()], &[3.25], F64_TOL, "l1 penalty");
    penalty.backward();
    assert_close(&a.grad().unwrap().to_vec_f64(), &[0.5, -0.5, 0.5], F64_TOL, "a's grad");
    // The subgradient at 0 is taken as 0.
    assert_close(&b.grad().unwrap().to_vec_f64(), &[0.0, -0.5], F64_TOL, "b's grad");
}

#[test]
fn l2_penalty_is_lambda_sum_of_squares_with_gradient_two_lambda_w() {
    let (a, b) = (param(&W0), param(&[0.0, -0.5]));
    let penalty = l2_penalty(&[a.clone(), b.clone()], 0.25);
    // 0.25 * (1 + 4 + 9 + 0 + 0.25)
    assert_close(&[penalty.item_f64()], &[3.5625], F64_TOL, "l2 penalty");
    penalty.backward();
    assert_close(&a.grad().unwrap().to_vec_f64(), &[0.5, -1.0, 1.5], F64_TOL, "a's grad");
    assert_close(&b.grad().unwrap().to_vec_f64(), &[0.0, -0.25], F64_TOL, "b's grad");
}

#[test]
fn l2_penalty_of_half_wd_steps_like_sgd_weight_decay() {
    // SGD on loss + l2_penalty(wd / 2) and SGD with weight_decay(wd) take the same step.
    let c = [0.5, -1.0, 2.0];
    let (w_pen, w_wd) = (param(&W0), param(&W0));
    let mut with_penalty = Sgd::new(vec![w_pen.clone()], 0.1);
    let mut with_decay = Sgd::new(vec![w_wd.clone()], 0.1).weight_decay(0.1);
    let c_t = Tensor::from_vec_f64(c.to_vec(), &[3]);
    w_pen.mul(&c_t).sum_all().add(&l2_penalty(std::slice::from_ref(&w_pen), 0.05)).backward();
    backward_linear(&w_wd, &c);
    with_penalty.step();
    with_decay.step();
    assert_close(&w_pen.to_vec_f64(), &w_wd.to_vec_f64(), F64_TOL, "penalty vs weight decay");
}

#[test]
fn penalties_of_no_parameters_are_zero() {
    assert_eq!(l1_penalty(&[], 1.0).item(), 0.0);
    assert_eq!(l2_penalty(&[], 1.0).item(), 0.0);
}

// ----- schedules -------------------------------------------------------------------------

#[test]
fn cosine_schedule_warms_up_linearly_then_decays_to_min_lr() {
    let s = CosineSchedule { base_lr: 1.0, min_lr: 0.1, warmup_steps: 10, total_steps: 110 };
    // Warmup: (step + 1) / 10 of the base rate.
    assert_close(&[s.lr_at(0)], &[0.1], F64_TOL, "step 0");
    assert_close(&[s.lr_at(4)], &[0.5], F64_TOL, "step 4");
    assert_close(&[s.lr_at(9)], &[1.0], F64_TOL, "last warmup step");
    // Decay: min + (base - min) (1 + cos(pi p)) / 2 with p = (step - 10) / 100.
    assert_close(&[s.lr_at(10)], &[1.0], F64_TOL, "first decay step");
    assert_close(&[s.lr_at(60)], &[0.55], F64_TOL, "middle of the decay");
    let quarter = 0.1 + 0.45 * (1.0 + std::f64::consts::FRAC_1_SQRT_2);
    assert_close(&[s.lr_at(35)], &[quarter], F64_TOL, "a quarter into the decay");
    assert_close(&[s.lr_at(110)], &[0.1], F64_TOL, "end");
    assert_close(&[s.lr_at(10_000)], &[0.1], F64_TOL, "past the end");
    for step in 10..110 {
        assert!(s.lr_at(step + 1) <= s.lr_at(step), "the decay rose at step {step}");
    }
}

#[test]
fn cosine_schedule_without_warmup_starts_at_base_lr() {
    let s = CosineSchedule { base_lr: 0.5, min_lr: 0.0, warmup_steps: 0, total_steps: 4 };
    let expected = [
        0.5,
        0.25 * (1.0 + std::f64::consts::FRAC_1_SQRT_2),
        0.25,
        0.25 * (1.0 - std::f64::consts::FRAC_1_SQRT_2),
        0.0,
    ];
    let got: Vec<f64> = (0..5).map(|step| s.lr_at(step)).collect();
    assert_close(&got, &expected, F64_TOL, "lr by step");
}

#[test]
fn step_decay_multiplies_by_gamma_every_n_steps() {
    let s = StepDecay { base_lr: 1.0, gamma: 0.5, every: 10 };
    let got: Vec<f64> = [0, 9, 10, 19, 20, 35].iter().map(|&step| s.lr_at(step)).collect();
    assert_close(&got, &[1.0, 1.0, 0.5, 0.5, 0.25, 0.125], F64_TOL, "lr by step");
}

#[test]
#[should_panic(expected = "StepDecay::lr_at: `every` must be at least 1 step")]
fn step_decay_every_zero_panics() {
    StepDecay { base_lr: 1.0, gamma: 0.5, every: 0 }.lr_at(3);
}

#[test]
fn adamw_skips_decay_for_exempt_parameters() {
    let w = Tensor::from_vec_f64(vec![2.0, -4.0], &[2]).requires_grad_();
    let b = Tensor::from_vec_f64(vec![2.0, -4.0], &[2]).requires_grad_();
    let mut opt =
        AdamW::new(vec![w.clone(), b.clone()], 0.1).weight_decay(0.5).no_weight_decay_for(std::slice::from_ref(&b));
    // Zero gradients: only weight decay can move a parameter.
    w.mul_scalar(0.0).add(&b.mul_scalar(0.0)).sum_all().backward();
    opt.step();
    assert_eq!(w.to_vec_f64(), vec![2.0 * (1.0 - 0.1 * 0.5), -4.0 * (1.0 - 0.1 * 0.5)]);
    assert_eq!(b.to_vec_f64(), vec![2.0, -4.0]);
}

/// A state that decays under zero gradients (a dead unit's) must go to zero, never sit in the
/// subnormal floats, where every instruction touching it takes a slow microcode assist. Without
/// the flush, Adam's `m = 0.9 m` reaches the smallest subnormal and stays there for good.
#[test]
fn optimizer_states_decaying_under_zero_gradients_skip_the_subnormals() {
    use glassbox::backend::cpu::optim::{adam, rmsprop, sgd, AdamStep};
    let start = f32::MIN_POSITIVE * 8.0;
    let not_subnormal = |x: f32, what: &str, step: u64| {
        assert!(x == 0.0 || x.is_normal(), "{what} became subnormal ({x:e}) at step {step}");
    };
    let (mut w, g) = (vec![0.5f32; 20], vec![0.0f32; 20]);
    let (mut m, mut v) = (vec![start; 20], vec![start; 20]);
    let (mut momentum, mut square) = (vec![start; 20], vec![start; 20]);
    for step in 1..=400 {
        let h = AdamStep { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: false, step };
        adam(&mut w, &g, &mut m, &mut v, h);
        sgd(&mut w, &g, &mut momentum, 1e-3, 0.9, 0.0);
        rmsprop(&mut w, &g, &mut square, 1e-3, 0.99, 1e-8, 0.0);
        for i in 0..20 {
            not_subnormal(m[i], "Adam's first moment", step);
            not_subnormal(v[i], "Adam's second moment", step);
            not_subnormal(momentum[i], "SGD's momentum", step);
            not_subnormal(square[i], "RMSprop's square average", step);
        }
    }
    // 0.9^400 and 0.99^400 (below 1/8) take these states below MIN_POSITIVE, hence to zero.
    assert!(m.iter().chain(&momentum).chain(&square).all(|&x| x == 0.0));
    assert!(w.iter().all(|&x| x == 0.5), "zero gradients and no decay must leave the weights alone");
}
