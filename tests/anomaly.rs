//! Anomaly mode reports the first op (or backward formula) that produced a NaN or infinity,
//! with shapes and the chain of ops behind it; and the softmax family and the losses stay
//! finite, values and gradients, for logits of +/-1e4 (checked with anomaly mode on, so any
//! non-finite intermediate result would be reported too).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use glassbox::autograd::{detect_anomaly, is_anomaly_mode, set_anomaly_mode, AnomalyGuard};
use glassbox::Tensor;

/// Anomaly mode is process-wide and tests run on parallel threads: each test that depends on
/// the mode holds this lock.
fn mode_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The panic message of `f`, which must panic.
fn panic_message(f: impl FnOnce()) -> String {
    let payload = catch_unwind(AssertUnwindSafe(f)).expect_err("expected an anomaly report");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

fn assert_contains(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "report should contain {part:?}:\n{text}");
    }
}

#[test]
fn nan_from_log_of_a_negative_is_reported_naming_log_and_its_chain() {
    let _lock = mode_lock();
    let x = Tensor::from_vec((0..12).map(|i| i as f32 * 0.1).collect(), &[3, 4]).requires_grad_();
    let w = Tensor::ones(&[4, 2]).requires_grad_();
    let shift = Tensor::from_vec(vec![1.0, 3.0], &[2]);
    let report = panic_message(|| {
        detect_anomaly(|| {
            // Row sums of x are 0.6, 2.2, 3.8; minus [1, 3] gives [[-0.4, -2.4], [1.2, -0.8],
            // [2.8, 0.8]]: the first negative is element 0.
            let _ = x.matmul(&w).sub(&shift).log();
        })
    });
    assert_contains(
        &report,
        &[
            "`log` produced NaN (element 0 of its output, shape [3, 2])",
            "input 0: shape [3, 2], f32, computed by `sub`, finite",
            "its inputs were all finite, so this op made the bad value",
            "chain (newest first): log <- sub <- matmul <- leaf[3, 4]",
            "sub[3, 2] <- (matmul[3, 2], leaf[2])",
            "matmul[3, 2] <- (leaf[3, 4], leaf[4, 2])",
        ],
    );
    assert!(!is_anomaly_mode() || std::env::var("GLASSBOX_ANOMALY").is_ok(), "the scope restores the mode");
}

#[test]
fn a_gradient_nan_is_reported_naming_the_backward_op() {
    let _lock = mode_lock();
    let _on = AnomalyGuard::new();
    // sqrt(0) = 0 is fine going forward; its backward divides the (zero) upstream gradient by
    // 2 sqrt(0): 0 / 0.
    let x = Tensor::from_vec(vec![0.0, 4.0], &[2]).requires_grad_();
    let loss = x.sqrt().mul_scalar(0.0).sum_all();
    let report = panic_message(|| loss.backward());
    assert_contains(
        &report,
        &[
            "the backward of `sqrt` produced NaN in the gradient of its input 0 (element 0, gradient shape [2])",
            "the upstream gradient (shape [2]) was finite",
            "chain (newest first): sqrt <- leaf[2]",
        ],
    );

    // An infinite gradient from finite values: d sqrt(x) / dx at 0.
    let y = Tensor::from_vec(vec![1.0, 0.0], &[2]).requires_grad_();
    let report = panic_message(|| y.mul_scalar(2.0).sqrt().sum_all().backward());
    assert_contains(&report, &["the backward of `sqrt` produced Inf", "element 1", "sqrt <- affine <- leaf[2]"]);
}

#[test]
fn a_nan_already_in_a_leaf_is_traced_to_the_leaf() {
    let _lock = mode_lock();
    let _on = AnomalyGuard::new();
    let data = Tensor::from_vec(vec![1.0, f32::NAN, 2.0], &[3]);
    let report = panic_message(|| drop(data.exp()));
    assert_contains(
        &report,
        &[
            "`exp` produced NaN (element 1",
            "input 0: shape [3], f32, a leaf, already holds NaN at element 1",
            "from a leaf",
        ],
    );
}

#[test]
fn overflow_to_infinity_is_reported_too() {
    let _lock = mode_lock();
    let _on = AnomalyGuard::new();
    let big = Tensor::from_vec_f64(vec![1e300], &[1]);
    let report = panic_message(|| drop(big.to_dtype(glassbox::DType::F32)));
    assert_contains(&report, &["`to_dtype` produced Inf", "input 0: shape [1], f64, a leaf, finite"]);
}

#[test]
fn with_the_mode_off_nans_pass_silently_and_guards_restore_the_mode() {
    let _lock = mode_lock();
    let initial = is_anomaly_mode();
    set_anomaly_mode(false);
    let y = Tensor::from_vec(vec![-1.0], &[1]).log();
    assert!(y.item().is_nan());
    {
        let _on = AnomalyGuard::new();
        assert!(is_anomaly_mode());
    }
    assert!(!is_anomaly_mode());
    set_anomaly_mode(initial);
}

/// Not a test by itself: the child process of `the_environment_variable_turns_the_mode_on`.
#[test]
#[ignore = "child process of the_environment_variable_turns_the_mode_on"]
fn anomaly_env_child() {
    let _ = Tensor::from_vec(vec![-1.0], &[1]).log();
}

#[test]
fn the_environment_variable_turns_the_mode_on() {
    let exe = std::env::current_exe().expect("test binary path");
    let output = Command::new(exe)
        .args(["anomaly_env_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env("GLASSBOX_ANOMALY", "1")
        .output()
        .expect("run the child");
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "with GLASSBOX_ANOMALY=1 the child should panic:\n{text}");
    assert_contains(&text, &["anomaly mode: `log` produced NaN"]);
}

// ---------------------------------------------------------------------------------------------
// The softmax family and the losses at extreme logits

/// Logits of +/-1e4 (and ordinary ones) in a [3, 4] batch.
fn extreme_logits() -> Tensor {
    Tensor::from_vec(vec![1e4, -1e4, 0.0, 1.0, -1e4, -1e4, -1e4, 1e4, 1e4, 1e4, -1e4, 0.5], &[3, 4]).requires_grad_()
}

fn finite(values: &[f32]) -> bool {
    values.iter().all(|v| v.is_finite())
}

/// Runs `loss_of(logits)` forward and backward under anomaly mode; returns the loss and the
/// logits' gradient, both checked finite.
fn forward_backward(loss_of: impl Fn(&Tensor) -> Tensor) -> (Vec<f32>, Vec<f32>) {
    let _on = AnomalyGuard::new();
    let logits = extreme_logits();
    let loss = loss_of(&logits);
    loss.backward();
    let (value, grad) = (loss.to_vec(), logits.grad().expect("gradient").to_vec());
    assert!(finite(&value) && finite(&grad), "value {value:?}, gradient {grad:?}");
    (value, grad)
}

#[test]
fn softmax_and_log_softmax_stay_finite_for_logits_of_1e4() {
    let _lock = mode_lock();
    let weights = Tensor::from_vec((0..12).map(|i| (i % 5) as f32 - 2.0).collect(), &[3, 4]);
    for dim in [0, 1] {
        let (_, grad) = forward_backward(|x| x.softmax(dim).mul(&weights).sum_all());
        assert!(grad.iter().all(|g| g.abs() <= 10.0), "softmax({dim}) gradient {grad:?}");
        let (_, grad) = forward_backward(|x| x.log_softmax(dim).mul(&weights).sum_all());
        assert!(grad.iter().all(|g| g.abs() <= 10.0), "log_softmax({dim}) gradient {grad:?}");
    }
    let _on = AnomalyGuard::new();
    let s = extreme_logits().softmax(1).to_vec();
    assert_eq!(&s[..4], &[1.0, 0.0, 0.0, 0.0]);
    assert_eq!(&s[8..], &[0.5, 0.5, 0.0, 0.0]);
    let ls = extreme_logits().log_softmax(1).to_vec();
    assert_eq!(ls[1], -2e4);
}

#[test]
fn cross_entropy_stays_finite_for_logits_of_1e4() {
    let _lock = mode_lock();
    // Targets at the winning class of row 0, a losing class of row 1 (a 2e4 gap).
    let (loss, grad) = forward_backward(|x| x.cross_entropy(&[0, 0, 1]));
    let expected = (0.0 + 2e4 + 2f64.ln()) / 3.0;
    assert!((loss[0] as f64 - expected).abs() < 1e-2, "loss {loss:?}, expected {expected}");
    // d/dlogits = (softmax - onehot) / 3, each within [-1/3, 1/3].
    assert!(grad.iter().all(|g| g.abs() <= 1.0 / 3.0 + 1e-6), "{grad:?}");
}

#[test]
fn binary_cross_entropy_in_both_forms_stays_finite_for_logits_of_1e4() {
    let _lock = mode_lock();
    let target = Tensor::from_vec(vec![1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.5, 1.0, 0.0, 1.0, 1.0, 0.0], &[3, 4]);
    let (loss, grad) = forward_backward(|x| x.binary_cross_entropy_with_logits(&target));
    assert!(loss[0] > 1e3, "confidently wrong logits must cost about 1e4 each: {loss:?}");
    assert!(grad.iter().all(|g| g.abs() <= 1.0 / 12.0 + 1e-6), "(sigmoid(z) - t) / n: {grad:?}");

    // The probability form, fed sigmoid(+/-1e4) = exactly 1 or 0: each log clamps at -100.
    let (loss, grad) = forward_backward(|x| x.sigmoid().binary_cross_entropy(&target));
    assert!(loss[0] > 10.0 && loss[0] <= 100.0, "{loss:?}");
    assert!(finite(&grad), "{grad:?}");
}
