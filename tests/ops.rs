//! Forward values of the ops against hand-computed results, view semantics (no copies), and
//! the messages of shape misuse.

mod common;

use common::{assert_close, F32_TIGHT};
use glassbox::rng::Rng;
use glassbox::{DType, Tensor};

fn t(values: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_vec(values.to_vec(), shape)
}

#[test]
fn constructors_fill_shapes() {
    assert_eq!(Tensor::zeros(&[2, 3]).to_vec(), vec![0.0; 6]);
    assert_eq!(Tensor::ones(&[2]).to_vec(), vec![1.0; 2]);
    assert_eq!(Tensor::full(&[2, 2], 7.5).to_vec(), vec![7.5; 4]);
    assert_eq!(Tensor::arange(4).to_vec(), vec![0.0, 1.0, 2.0, 3.0]);
    assert_eq!(Tensor::scalar(3.0).item(), 3.0);
    assert_eq!(Tensor::from_vec_f64(vec![1.0], &[1]).dtype(), DType::F64);
}

#[test]
fn random_constructors_are_reproducible_from_their_seed() {
    assert_eq!(Tensor::randn(&[5], 3).to_vec(), Tensor::randn(&[5], 3).to_vec());
    assert_ne!(Tensor::randn(&[5], 3).to_vec(), Tensor::randn(&[5], 4).to_vec());
    assert!(Tensor::rand(&[100], 1).to_vec().iter().all(|v| (0.0..1.0).contains(v)));
}

#[test]
fn broadcast_arithmetic_matches_hand_computation() {
    let a = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let col = t(&[10.0, 20.0], &[2, 1]);
    let row = t(&[1.0, 2.0, 3.0], &[3]);
    assert_eq!(a.add(&col).to_vec(), vec![11.0, 12.0, 13.0, 24.0, 25.0, 26.0]);
    assert_eq!(a.sub(&row).to_vec(), vec![0.0, 0.0, 0.0, 3.0, 3.0, 3.0]);
    assert_eq!(col.mul(&row).shape(), &[2, 3]);
    assert_eq!(col.mul(&row).to_vec(), vec![10.0, 20.0, 30.0, 20.0, 40.0, 60.0]);
    assert_eq!(a.div(&row).to_vec(), vec![1.0, 1.0, 1.0, 4.0, 2.5, 2.0]);
    assert_eq!((&a + &a).to_vec(), a.mul_scalar(2.0).to_vec());
}

#[test]
fn unary_functions_match_std() {
    let xs = [-2.0f32, -0.5, 0.0, 0.5, 3.0];
    let x = t(&xs, &[5]);
    let check = |got: Tensor, f: fn(f32) -> f32, name: &str| {
        let expected: Vec<f64> = xs.iter().map(|&v| f(v) as f64).collect();
        assert_close(&got.to_vec_f64(), &expected, F32_TIGHT, name);
    };
    check(x.exp(), f32::exp, "exp");
    check(x.tanh(), f32::tanh, "tanh");
    check(x.relu(), |v| v.max(0.0), "relu");
    check(x.abs(), f32::abs, "abs");
    check(x.sigmoid(), |v| 1.0 / (1.0 + (-v).exp()), "sigmoid");
    check(x.neg(), |v| -v, "neg");
    check(x.affine(2.0, 1.0), |v| 2.0 * v + 1.0, "affine");
    check(x.gelu(), |v| 0.5 * v * (1.0 + (0.797_884_6 * (v + 0.044715 * v * v * v)).tanh()), "gelu");
    let p = t(&[0.25, 1.0, 4.0], &[3]);
    assert_close(&p.sqrt().to_vec_f64(), &[0.5, 1.0, 2.0], F32_TIGHT, "sqrt");
    assert_close(&p.log().to_vec_f64(), &[0.25f64.ln(), 0.0, 4.0f64.ln()], F32_TIGHT, "log");
    assert_close(&p.powf(1.5).to_vec_f64(), &[0.125, 1.0, 8.0], F32_TIGHT, "powf");
}

#[test]
fn sigmoid_saturates_without_overflow() {
    let y = t(&[-1e4, 1e4], &[2]).sigmoid().to_vec();
    assert_eq!(y, vec![0.0, 1.0]);
}

#[test]
fn reductions_over_dims_with_and_without_keepdim() {
    let a = t(&[1.0, 5.0, 3.0, 4.0, 2.0, 6.0], &[2, 3]);
    assert_eq!(a.sum(&[0], false).to_vec(), vec![5.0, 7.0, 9.0]);
    assert_eq!(a.sum(&[1], true).shape(), &[2, 1]);
    assert_eq!(a.sum(&[1], true).to_vec(), vec![9.0, 12.0]);
    assert_eq!(a.mean(&[0, 1], false).item(), 3.5);
    assert_eq!(a.max(&[1], false).to_vec(), vec![5.0, 6.0]);
    assert_eq!(a.max(&[0], false).to_vec(), vec![4.0, 5.0, 6.0]);
    assert_eq!(a.t().sum(&[1], false).to_vec(), vec![5.0, 7.0, 9.0]);
    assert_eq!(a.argmax(1), vec![1, 2]);
    assert_eq!(a.sum_all().item(), 21.0);
}

#[test]
fn big_reductions_agree_with_a_serial_sum() {
    // Large enough to take the parallel path.
    let n = 300_000;
    let x = Tensor::rand(&[3, n], 5);
    let rows = x.sum(&[1], false).to_vec_f64();
    let v = x.to_vec_f64();
    for r in 0..3 {
        let expected: f64 = v[r * n..(r + 1) * n].iter().sum();
        assert!((rows[r] - expected).abs() / expected < 1e-5, "row {r}: {} vs {expected}", rows[r]);
    }
}

#[test]
fn matmul_matches_hand_computation_and_batches() {
    let a = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let b = t(&[7.0, 8.0, 9.0, 10.0, 11.0, 12.0], &[3, 2]);
    assert_eq!(a.matmul(&b).to_vec(), vec![58.0, 64.0, 139.0, 154.0]);
    // A batch of two copies of `a` against one `b`: the batch dim broadcasts.
    let batch = Tensor::stack(&[a.clone(), a.mul_scalar(2.0)], 0);
    assert_eq!(batch.matmul(&b).to_vec(), vec![58.0, 64.0, 139.0, 154.0, 116.0, 128.0, 278.0, 308.0]);
    // Transposed views are read in place.
    assert_eq!(b.t().matmul(&a.t()).to_vec(), vec![58.0, 139.0, 64.0, 154.0]);
}

#[test]
fn softmax_rows_sum_to_one_and_extreme_logits_stay_finite() {
    let x = t(&[1.0, 2.0, 3.0, -1e4, 0.0, 1e4], &[2, 3]);
    let s = x.softmax(1).to_vec();
    assert!((s[0] + s[1] + s[2] - 1.0).abs() < 1e-6);
    assert_close(
        &s[..3].iter().map(|&v| v as f64).collect::<Vec<_>>(),
        &[0.09003057, 0.24472847, 0.66524096],
        F32_TIGHT,
        "softmax",
    );
    assert_eq!(&s[3..], &[0.0, 0.0, 1.0]);
    let ls = x.log_softmax(1).to_vec();
    assert!(ls.iter().all(|v| v.is_finite()), "{ls:?}");
    assert!((ls[5]).abs() < 1e-6 && (ls[3] + 2e4).abs() < 1.0);
    let ce = x.cross_entropy(&[2, 0]).item();
    assert!(ce.is_finite() && (ce - (0.40760596 + 2e4) / 2.0).abs() < 1.0, "{ce}");
    let col = x.softmax(0).to_vec();
    assert!((col[0] + col[3] - 1.0).abs() < 1e-6);
}

#[test]
fn binary_cross_entropy_stays_finite_at_the_edges() {
    let p = t(&[0.0, 1.0, 0.5], &[3]);
    let target = t(&[1.0, 0.0, 1.0], &[3]);
    let loss = p.binary_cross_entropy(&target).item();
    assert!((loss - (100.0 + 100.0 + 2f32.ln()) / 3.0).abs() < 1e-3, "{loss}");
    let z = t(&[-1e4, 1e4, 0.0], &[3]);
    let loss = z.binary_cross_entropy_with_logits(&target).item();
    assert!((loss - (1e4 + 1e4 + 2f32.ln()) / 3.0).abs() < 1.0, "{loss}");
}

#[test]
fn mse_matches_definition() {
    let a = t(&[1.0, 2.0, 3.0], &[3]);
    let b = t(&[1.0, 0.0, 6.0], &[3]);
    assert_eq!(a.mse_loss(&b).item(), (0.0 + 4.0 + 9.0) / 3.0);
}

#[test]
fn views_share_storage_and_contiguous_copies_only_when_needed() {
    let a = Tensor::arange(12).reshape(&[3, 4]);
    let views = [
        a.t(),
        a.narrow(1, 1, 2),
        a.reshape(&[2, 6]),
        a.unsqueeze(0),
        a.permute(&[1, 0]),
        a.sum(&[0], true).broadcast_to(&[5, 4]),
    ];
    for v in &views[..5] {
        assert!(v.shares_storage_with(&a), "{v:?} should be a view");
    }
    assert_eq!(views[5].layout().strides(), &[0, 1]);
    assert!(a.contiguous().shares_storage_with(&a));
    let tc = a.t().contiguous();
    assert!(!tc.shares_storage_with(&a));
    assert_eq!(tc.to_vec(), vec![0.0, 4.0, 8.0, 1.0, 5.0, 9.0, 2.0, 6.0, 10.0, 3.0, 7.0, 11.0]);
    assert_eq!(a.narrow(1, 1, 2).to_vec(), vec![1.0, 2.0, 5.0, 6.0, 9.0, 10.0]);
    assert_eq!(a.t().reshape(&[12]).to_vec(), tc.to_vec());
}

#[test]
fn concat_stack_split_round_trip() {
    let a = Tensor::arange(6).reshape(&[2, 3]);
    let b = Tensor::arange(4).reshape(&[2, 2]).add_scalar(10.0);
    let c = Tensor::concat(&[a.clone(), b.clone()], 1);
    assert_eq!(c.to_vec(), vec![0.0, 1.0, 2.0, 10.0, 11.0, 3.0, 4.0, 5.0, 12.0, 13.0]);
    let parts = c.split(3, 1);
    assert_eq!(parts[0].to_vec(), a.to_vec());
    assert_eq!(parts[1].to_vec(), b.to_vec());
    let s = Tensor::stack(&[a.clone(), a.clone()], 0);
    assert_eq!(s.shape(), &[2, 2, 3]);
}

#[test]
fn indexing_ops_pick_the_right_elements() {
    let a = Tensor::arange(12).reshape(&[3, 4]);
    assert_eq!(a.index_select(0, &[2, 0]).to_vec(), vec![8.0, 9.0, 10.0, 11.0, 0.0, 1.0, 2.0, 3.0]);
    assert_eq!(a.index_select(1, &[3, 3]).to_vec(), vec![3.0, 3.0, 7.0, 7.0, 11.0, 11.0]);
    assert_eq!(a.gather(1, &[1, 0, 3], &[3, 1]).to_vec(), vec![1.0, 4.0, 11.0]);
    let e = a.embedding(&[2, 1], &[1, 2]);
    assert_eq!(e.shape(), &[1, 2, 4]);
    assert_eq!(e.to_vec(), vec![8.0, 9.0, 10.0, 11.0, 4.0, 5.0, 6.0, 7.0]);
}

#[test]
fn where_and_masked_fill_choose_elementwise() {
    let x = t(&[1.0, -2.0, 3.0, -4.0], &[2, 2]);
    let mask = x.lt_scalar(0.0);
    assert_eq!(mask.to_vec(), vec![0.0, 1.0, 0.0, 1.0]);
    assert_eq!(x.masked_fill(&mask, 0.0).to_vec(), vec![1.0, 0.0, 3.0, 0.0]);
    assert_eq!(Tensor::where_cond(&mask, &x.neg(), &x).to_vec(), vec![1.0, 2.0, 3.0, 4.0]);
}

#[test]
fn dropout_keeps_the_expected_value_and_is_identity_in_eval() {
    let x = Tensor::ones(&[100_000]);
    let y = x.dropout(0.25, true, &mut Rng::new(1)).to_vec();
    let zeros = y.iter().filter(|&&v| v == 0.0).count() as f64 / y.len() as f64;
    assert!((zeros - 0.25).abs() < 0.01, "dropped fraction {zeros}");
    assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
    let mean = y.iter().map(|&v| v as f64).sum::<f64>() / y.len() as f64;
    assert!((mean - 1.0).abs() < 0.01);
    assert!(x.dropout(0.25, false, &mut Rng::new(1)).shares_storage_with(&x));
}

#[test]
fn to_dtype_round_trips_and_display_is_readable() {
    let x = t(&[1.5, -2.25], &[2]);
    let d = x.to_dtype(DType::F64);
    assert_eq!(d.dtype(), DType::F64);
    assert_eq!(d.to_vec(), vec![1.5, -2.25]);
    assert_eq!(x.to_string(), "tensor([ 1.5000, -2.2500], shape=[2], dtype=f32)");
}

/// Runs `f`, expecting a panic whose message contains every one of `parts`.
fn assert_panics_with(f: impl FnOnce() + std::panic::UnwindSafe, parts: &[&str]) {
    let err = std::panic::catch_unwind(f).expect_err("expected a panic");
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    for p in parts {
        assert!(msg.contains(p), "panic message {msg:?} should mention {p:?}");
    }
}

#[test]
fn shape_misuse_panics_with_op_shapes_and_expectation() {
    let a = Tensor::zeros(&[2, 3]);
    let b = Tensor::zeros(&[4, 5]);
    assert_panics_with(|| drop(a.matmul(&b)), &["matmul", "[2, 3]", "[4, 5]", "inner dims 3 vs 4"]);
    assert_panics_with(|| drop(a.add(&b)), &["add", "[2, 3]", "[4, 5]", "broadcast"]);
    assert_panics_with(|| drop(a.reshape(&[4, 2])), &["reshape", "[2, 3]", "[4, 2]"]);
    assert_panics_with(|| drop(a.sum(&[2], false)), &["sum", "dim 2", "[2, 3]"]);
    assert_panics_with(|| drop(a.narrow(1, 2, 2)), &["narrow", "out of bounds", "size 3"]);
    assert_panics_with(|| drop(a.cross_entropy(&[0, 3])), &["cross_entropy", "class 3", "3 classes"]);
    assert_panics_with(|| drop(a.cross_entropy(&[0])), &["cross_entropy", "1 targets", "2 rows"]);
    assert_panics_with(|| drop(Tensor::arange(3).matmul(&a)), &["matmul", "at least 2 dims", "[3]"]);
    assert_panics_with(|| drop(a.index_select(0, &[5])), &["index_select", "5", "size 2"]);
    assert_panics_with(|| drop(a.permute(&[0, 0])), &["permute", "[0, 0]", "[2, 3]"]);
    assert_panics_with(|| drop(a.mse_loss(&Tensor::zeros(&[3, 2]))), &["mse_loss", "[2, 3]", "[3, 2]"]);
    assert_panics_with(|| drop(a.add(&a.to_dtype(DType::F64))), &["add", "dtypes differ", "f32", "f64"]);
    assert_panics_with(|| drop(Tensor::from_vec(vec![1.0; 5], &[2, 3])), &["5 values", "[2, 3]"]);
    assert_panics_with(
        || {
            let _ = a.item();
        },
        &["item", "[2, 3]"],
    );
}

#[test]
fn empty_and_zero_size_tensors_work() {
    let e = Tensor::zeros(&[0, 3]);
    assert_eq!(e.sum_all().item(), 0.0);
    assert_eq!(e.relu().shape(), &[0, 3]);
    assert_eq!(e.matmul(&Tensor::zeros(&[3, 2])).shape(), &[0, 2]);
    assert_eq!(Tensor::zeros(&[2, 0]).matmul(&Tensor::zeros(&[0, 3])).to_vec(), vec![0.0; 6]);
}

#[test]
fn fused_attention_matches_the_naive_composition() {
    let (b, t, d) = (3, 7, 5);
    let q = Tensor::randn(&[b, t, d], 1);
    let k = Tensor::randn(&[b, t, d], 2);
    let v = Tensor::randn(&[b, t, d], 3);
    for causal in [false, true] {
        let fused = Tensor::scaled_dot_product_attention(&q, &k, &v, causal);
        let mut scores = q.matmul(&k.t()).mul_scalar(1.0 / (d as f64).sqrt());
        if causal {
            // Mask where key index > query index.
            let above: Vec<f32> = (0..t * t).map(|i| if i % t > i / t { 1.0 } else { 0.0 }).collect();
            scores = scores.masked_fill(&Tensor::from_vec(above, &[t, t]), f64::NEG_INFINITY);
        }
        let naive = scores.softmax(2).matmul(&v);
        let to64 = |x: &Tensor| x.to_vec_f64();
        assert_close(&to64(&fused), &to64(&naive), F32_TIGHT, &format!("attention causal={causal}"));
    }
}

#[test]
fn layer_norm_matches_its_definition() {
    // 1030 columns: a row past 4 KiB takes the kernel's long-row loop (whole 16-value steps,
    // then a tail of 6).
    for cols in [6, 1030] {
        let x = Tensor::randn(&[4, cols], 9);
        let w = Tensor::randn(&[cols], 10);
        let b = Tensor::randn(&[cols], 11);
        let fused = x.layer_norm(&w, &b, 1e-5);
        let mean = x.mean(&[1], true);
        let centered = x.sub(&mean);
        let var = centered.mul(&centered).mean(&[1], true);
        let reference = centered.div(&var.add_scalar(1e-5).sqrt()).mul(&w).add(&b);
        assert_close(&fused.to_vec_f64(), &reference.to_vec_f64(), F32_TIGHT, &format!("layer_norm, {cols} columns"));
    }
}

#[test]
fn packed_multi_head_attention_matches_per_head_attention() {
    let (b, t, h, d) = (2, 5, 3, 4);
    let c = h * d;
    let qkv = Tensor::randn(&[b, t, 3 * c], 4);
    let fused = qkv.multi_head_attention(h, true);
    // The same computation with heads split out as separate tensors.
    let heads = qkv.reshape(&[b, t, 3, h, d]).permute(&[2, 0, 3, 1, 4]);
    let part = |i: usize| heads.narrow(0, i, 1).squeeze(0);
    let reference = Tensor::scaled_dot_product_attention(&part(0), &part(1), &part(2), true)
        .permute(&[0, 2, 1, 3])
        .reshape(&[b, t, c]);
    assert_close(&fused.to_vec_f64(), &reference.to_vec_f64(), F32_TIGHT, "multi_head_attention");
}

#[test]
fn attention_across_query_blocks_matches_the_naive_composition_with_gradients() {
    // 150 query rows span three 64-row blocks (the last one partial); keys differ in length
    // for the non-causal case.
    // f64 runs the generic kernels; f32 (d = 32, T up to 260) the AVX-512 GEMM where the CPU
    // has it, with its in-place writes of the output and of dQ / dK / dV.
    let cases = [
        (DType::F64, 8, 150, 150, true, 1e-10),
        (DType::F64, 8, 150, 70, false, 1e-10),
        (DType::F64, 8, 70, 150, false, 1e-10),
        (DType::F32, 32, 260, 260, true, 2e-4),
        (DType::F32, 32, 100, 260, false, 2e-4),
    ];
    for (dtype, d, t_q, t_k, causal, tol) in cases {
        let q = Tensor::randn(&[2, t_q, d], 5).to_dtype(dtype).requires_grad_();
        let k = Tensor::randn(&[2, t_k, d], 6).to_dtype(dtype).requires_grad_();
        let v = Tensor::randn(&[2, t_k, d], 7).to_dtype(dtype).requires_grad_();
        let upstream = Tensor::randn(&[2, t_q, d], 8).to_dtype(dtype);
        let fused = Tensor::scaled_dot_product_attention(&q, &k, &v, causal);
        fused.backward_with_grad(&upstream);
        let fused_grads: Vec<Vec<f64>> = [&q, &k, &v].iter().map(|t| t.grad().unwrap().to_vec_f64()).collect();
        for t in [&q, &k, &v] {
            t.zero_grad();
        }
        let mut scores = q.matmul(&k.t()).mul_scalar(1.0 / (d as f64).sqrt());
        if causal {
            let above: Vec<f64> = (0..t_q * t_k).map(|i| if i % t_k > i / t_k { 1.0 } else { 0.0 }).collect();
            scores = scores.masked_fill(&Tensor::from_vec_f64(above, &[t_q, t_k]).to_dtype(dtype), -1e30);
        }
        let naive = scores.softmax(2).matmul(&v);
        naive.backward_with_grad(&upstream);
        let what = format!("attention {dtype} {t_q}x{t_k} d {d} causal={causal}");
        assert_close(&fused.to_vec_f64(), &naive.to_vec_f64(), tol, &what);
        for (t, fused_grad) in [&q, &k, &v].iter().zip(&fused_grads) {
            assert_close(fused_grad, &t.grad().unwrap().to_vec_f64(), tol, &format!("{what} gradient"));
        }
    }
}

#[test]
fn column_reductions_over_many_rows_match_a_serial_fold() {
    // 1000 rows take the banded parallel path (bands of 256 rows, combined in order).
    let (rows, cols) = (1000, 37);
    let x = Tensor::randn(&[rows, cols], 12).to_dtype(DType::F64);
    let v = x.to_vec_f64();
    let sums = x.sum(&[0], false).to_vec_f64();
    let maxes = x.max(&[0], false).to_vec_f64();
    for c in 0..cols {
        let column: Vec<f64> = (0..rows).map(|r| v[r * cols + c]).collect();
        let expected: f64 = column.iter().sum();
        assert!((sums[c] - expected).abs() < 1e-10, "column {c}: {} vs {expected}", sums[c]);
        assert_eq!(maxes[c], column.iter().copied().fold(f64::NEG_INFINITY, f64::max));
    }
}
