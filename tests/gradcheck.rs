//! Gradient checks for every differentiable op: the analytic backward pass against f64
//! central differences (see `glassbox::autograd::gradcheck` for the criterion).
//!
//! `CASES` is data: one entry per op (and per interesting variant: broadcasting, views that
//! are not contiguous, non-last dims). `every_recorded_op_kind_is_gradient_checked` walks the
//! graph each case builds and fails if any `OpKind` in `OpKind::ALL` is never exercised, so
//! a new op cannot land without a case here.

use std::collections::BTreeSet;

use glassbox::autograd::{gradcheck, GradcheckConfig, OpKind};
use glassbox::nn::Lstm;
use glassbox::rng::Rng;
use glassbox::{DType, Tensor};

/// Where an input's values are drawn from, so each op is checked inside its domain.
#[derive(Clone, Copy)]
enum Domain {
    /// Standard normal.
    Any,
    /// Uniform in [0.5, 1.5]: for log, sqrt, powf, division.
    Positive,
    /// Uniform in [0.1, 0.9]: probabilities and soft targets.
    Probability,
}

struct Case {
    name: &'static str,
    inputs: &'static [(&'static [usize], Domain)],
    f: fn(&[Tensor]) -> Tensor,
}

use Domain::*;

const CASES: &[Case] = &[
    Case { name: "neg", inputs: &[(&[3, 4], Any)], f: |x| x[0].neg() },
    Case { name: "exp", inputs: &[(&[3, 4], Any)], f: |x| x[0].exp() },
    Case { name: "log", inputs: &[(&[3, 4], Positive)], f: |x| x[0].log() },
    Case { name: "sqrt", inputs: &[(&[3, 4], Positive)], f: |x| x[0].sqrt() },
    Case { name: "abs", inputs: &[(&[3, 4], Any)], f: |x| x[0].abs() },
    Case { name: "relu", inputs: &[(&[3, 4], Any)], f: |x| x[0].relu() },
    Case { name: "sigmoid", inputs: &[(&[3, 4], Any)], f: |x| x[0].sigmoid() },
    Case { name: "tanh", inputs: &[(&[3, 4], Any)], f: |x| x[0].tanh() },
    Case { name: "gelu", inputs: &[(&[3, 4], Any)], f: |x| x[0].gelu() },
    Case { name: "powf", inputs: &[(&[3, 4], Positive)], f: |x| x[0].powf(2.5) },
    Case { name: "affine", inputs: &[(&[3, 4], Any)], f: |x| x[0].affine(-1.5, 0.25) },
    Case { name: "unary_on_transposed_view", inputs: &[(&[3, 4], Any)], f: |x| x[0].t().tanh() },
    Case { name: "add_broadcast", inputs: &[(&[2, 3, 4], Any), (&[3, 1], Any)], f: |x| x[0].add(&x[1]) },
    Case { name: "add_non_contiguous", inputs: &[(&[4, 3], Any), (&[3, 4], Any)], f: |x| x[0].t().add(&x[1]) },
    Case { name: "sub_broadcast_both_ways", inputs: &[(&[3, 1], Any), (&[1, 4], Any)], f: |x| x[0].sub(&x[1]) },
    Case { name: "mul_broadcast", inputs: &[(&[2, 3], Any), (&[3], Any)], f: |x| x[0].mul(&x[1]) },
    Case { name: "mul_same_tensor_twice", inputs: &[(&[5], Any)], f: |x| x[0].mul(&x[0]) },
    Case { name: "div_broadcast", inputs: &[(&[2, 3], Any), (&[2, 1], Positive)], f: |x| x[0].div(&x[1]) },
    Case { name: "sum_dims", inputs: &[(&[2, 3, 4], Any)], f: |x| x[0].sum(&[0, 2], false) },
    Case { name: "sum_keepdim", inputs: &[(&[2, 3, 4], Any)], f: |x| x[0].sum(&[1], true) },
    Case { name: "sum_all", inputs: &[(&[2, 3], Any)], f: |x| x[0].sum_all() },
    Case { name: "mean_dims", inputs: &[(&[2, 3, 4], Any)], f: |x| x[0].mean(&[1], false) },
    Case { name: "mean_of_transposed", inputs: &[(&[3, 4], Any)], f: |x| x[0].t().mean(&[1], true) },
    Case { name: "max_dims", inputs: &[(&[3, 5], Any)], f: |x| x[0].max(&[1], false) },
    Case { name: "max_keepdim_dim0", inputs: &[(&[4, 3], Any)], f: |x| x[0].max(&[0], true) },
    Case { name: "matmul_2d", inputs: &[(&[3, 4], Any), (&[4, 5], Any)], f: |x| x[0].matmul(&x[1]) },
    Case {
        name: "matmul_transposed_operands",
        inputs: &[(&[4, 3], Any), (&[5, 4], Any)],
        f: |x| x[0].t().matmul(&x[1].t()),
    },
    Case {
        name: "matmul_batched_broadcast",
        inputs: &[(&[2, 1, 3, 4], Any), (&[3, 4, 2], Any)],
        f: |x| x[0].matmul(&x[1]),
    },
    Case { name: "linear", inputs: &[(&[4, 3], Any), (&[5, 3], Any), (&[5], Any)], f: |x| x[0].linear(&x[1], &x[2]) },
    Case {
        name: "linear_3d_non_contiguous",
        inputs: &[(&[3, 2, 4], Any), (&[2, 3], Any), (&[2], Any)],
        f: |x| x[0].permute(&[2, 1, 0]).linear(&x[1], &x[2]),
    },
    Case { name: "softmax_last_dim", inputs: &[(&[3, 5], Any)], f: |x| x[0].softmax(1) },
    Case { name: "softmax_first_dim", inputs: &[(&[4, 3], Any)], f: |x| x[0].softmax(0) },
    Case { name: "log_softmax", inputs: &[(&[3, 5], Any)], f: |x| x[0].log_softmax(1) },
    Case { name: "log_softmax_middle_dim", inputs: &[(&[2, 3, 4], Any)], f: |x| x[0].log_softmax(1) },
    Case { name: "cross_entropy", inputs: &[(&[4, 5], Any)], f: |x| x[0].cross_entropy(&[1, 0, 4, 4]) },
    Case { name: "cross_entropy_non_contiguous", inputs: &[(&[5, 3], Any)], f: |x| x[0].t().cross_entropy(&[2, 0, 1]) },
    Case { name: "mse_loss", inputs: &[(&[3, 4], Any), (&[3, 4], Any)], f: |x| x[0].mse_loss(&x[1]) },
    Case {
        name: "binary_cross_entropy",
        inputs: &[(&[6], Probability), (&[6], Probability)],
        f: |x| x[0].binary_cross_entropy(&x[1]),
    },
    Case {
        name: "binary_cross_entropy_with_logits",
        inputs: &[(&[2, 3], Any), (&[2, 3], Probability)],
        f: |x| x[0].binary_cross_entropy_with_logits(&x[1]),
    },
    Case { name: "dropout", inputs: &[(&[4, 5], Any)], f: |x| x[0].dropout(0.3, true, &mut Rng::new(11)) },
    Case {
        name: "concat",
        inputs: &[(&[2, 3], Any), (&[2, 2], Any)],
        f: |x| Tensor::concat(&[x[0].clone(), x[1].clone()], 1),
    },
    Case {
        name: "stack",
        inputs: &[(&[2, 3], Any), (&[2, 3], Any)],
        f: |x| Tensor::stack(&[x[0].clone(), x[1].clone()], 1),
    },
    Case {
        name: "split",
        inputs: &[(&[5, 2], Any)],
        f: |x| {
            let parts = x[0].split(2, 0);
            Tensor::concat(&[parts[2].clone(), parts[0].mul_scalar(3.0)], 0)
        },
    },
    Case { name: "index_select_repeats", inputs: &[(&[3, 4], Any)], f: |x| x[0].index_select(1, &[3, 0, 3]) },
    Case { name: "index_select_transposed", inputs: &[(&[3, 4], Any)], f: |x| x[0].t().index_select(0, &[2, 2, 1]) },
    Case { name: "embedding", inputs: &[(&[5, 3], Any)], f: |x| x[0].embedding(&[4, 0, 4, 2], &[2, 2]) },
    Case { name: "gather", inputs: &[(&[3, 4], Any)], f: |x| x[0].gather(1, &[0, 3, 1, 1, 2, 2], &[3, 2]) },
    Case {
        name: "where",
        inputs: &[(&[2, 3], Any), (&[3], Any)],
        f: |x| Tensor::where_cond(&Tensor::from_vec_f64(vec![1.0, 0.0, 1.0, 0.0, 0.0, 1.0], &[2, 3]), &x[0], &x[1]),
    },
    Case {
        name: "masked_fill",
        inputs: &[(&[2, 3], Any)],
        f: |x| x[0].masked_fill(&Tensor::from_vec_f64(vec![0.0, 1.0, 0.0], &[3]), -2.0),
    },
    Case { name: "clamp_min", inputs: &[(&[3, 4], Any)], f: |x| x[0].clamp_min(0.1) },
    Case { name: "reshape", inputs: &[(&[3, 4], Any)], f: |x| x[0].reshape(&[2, 6]) },
    Case { name: "reshape_of_transposed", inputs: &[(&[3, 4], Any)], f: |x| x[0].t().reshape(&[12]) },
    Case { name: "unsqueeze_squeeze", inputs: &[(&[3, 4], Any)], f: |x| x[0].unsqueeze(1).mul_scalar(2.0).squeeze(1) },
    Case { name: "permute", inputs: &[(&[2, 3, 4], Any)], f: |x| x[0].permute(&[2, 0, 1]) },
    Case { name: "narrow", inputs: &[(&[4, 5], Any)], f: |x| x[0].narrow(1, 1, 3) },
    // Gradients summed in place (`autograd::accumulate`): overlapping slices, a slice next to
    // a use of the whole, the four gates an LSTM cuts from one product, an intermediate used
    // three times. A sum written into a buffer that something else still reads would show
    // here as a wrong gradient.
    Case {
        name: "narrow_overlapping_slices",
        inputs: &[(&[3, 6], Any)],
        f: |x| x[0].narrow(1, 0, 4).mul(&x[0].narrow(1, 2, 4)).add(&x[0].narrow(1, 1, 4).tanh()),
    },
    Case {
        // Row sums hand each slice a broadcast (stride-0) gradient.
        name: "narrow_slices_receiving_broadcast_gradients",
        inputs: &[(&[4, 5], Any)],
        f: |x| x[0].narrow(1, 0, 3).sum(&[1], true).add(&x[0].narrow(1, 2, 3).t().sum(&[0], true).t()),
    },
    Case {
        name: "narrow_next_to_a_use_of_the_whole",
        inputs: &[(&[3, 4], Any)],
        f: |x| x[0].narrow(0, 1, 2).exp().sum(&[0], true).mul(&x[0]),
    },
    Case {
        name: "gates_narrowed_from_one_product",
        inputs: &[(&[3, 5], Any), (&[5, 8], Any)],
        f: |x| {
            let pre = x[0].matmul(&x[1]);
            let gate = |k: usize| pre.narrow(1, 2 * k, 2);
            gate(0).sigmoid().mul(&gate(2).tanh()).add(&gate(1).sigmoid().mul(&gate(3).sigmoid()))
        },
    },
    Case {
        name: "intermediate_used_three_times",
        inputs: &[(&[3, 4], Any)],
        f: |x| {
            let h = x[0].tanh();
            h.add(&h.mul(&h)).add(&h.exp())
        },
    },
    Case { name: "broadcast_to", inputs: &[(&[3, 1], Any)], f: |x| x[0].broadcast_to(&[2, 3, 4]) },
    Case { name: "contiguous", inputs: &[(&[3, 4], Any)], f: |x| x[0].t().contiguous() },
    Case { name: "flatten_from", inputs: &[(&[2, 3, 2], Any)], f: |x| x[0].permute(&[0, 2, 1]).flatten_from(1) },
    Case {
        name: "layer_norm",
        inputs: &[(&[3, 5], Any), (&[5], Any), (&[5], Any)],
        f: |x| x[0].layer_norm(&x[1], &x[2], 1e-5),
    },
    Case {
        name: "layer_norm_3d_non_contiguous",
        inputs: &[(&[4, 2, 3], Any), (&[4], Any), (&[4], Any)],
        f: |x| x[0].permute(&[1, 2, 0]).layer_norm(&x[1], &x[2], 1e-5),
    },
    Case {
        name: "attention_causal",
        inputs: &[(&[2, 5, 4], Any), (&[2, 5, 4], Any), (&[2, 5, 4], Any)],
        f: |x| Tensor::scaled_dot_product_attention(&x[0], &x[1], &x[2], true),
    },
    Case {
        name: "attention_cross_lengths_non_contiguous",
        inputs: &[(&[3, 2, 4], Any), (&[2, 5, 4], Any), (&[2, 5, 4], Any)],
        f: |x| Tensor::scaled_dot_product_attention(&x[0].transpose(0, 1), &x[1], &x[2], false),
    },
    Case {
        name: "multi_head_attention_packed",
        inputs: &[(&[2, 4, 12], Any)],
        f: |x| x[0].multi_head_attention(2, true),
    },
    Case {
        name: "multi_head_attention_non_causal_non_contiguous",
        inputs: &[(&[3, 2, 6], Any)],
        f: |x| x[0].transpose(0, 1).multi_head_attention(1, false),
    },
    Case {
        name: "conv2d_stride_padding_bias_batch",
        inputs: &[(&[2, 2, 5, 4], Any), (&[3, 2, 3, 2], Any), (&[3], Any)],
        f: |x| x[0].conv2d(&x[1], Some(&x[2]), [2, 1], [1, 1]),
    },
    Case {
        name: "conv2d_non_contiguous_input_non_square",
        inputs: &[(&[2, 2, 4, 6], Any), (&[2, 2, 2, 3], Any)],
        f: |x| x[0].transpose(2, 3).conv2d(&x[1], None, [1, 2], [2, 1]),
    },
    Case {
        name: "conv2d_transposed_weight",
        inputs: &[(&[1, 3, 4, 4], Any), (&[3, 2, 2, 2], Any)],
        f: |x| x[0].conv2d(&x[1].transpose(0, 1), None, [1, 1], [0, 0]),
    },
    Case { name: "max_pool2d", inputs: &[(&[2, 2, 4, 6], Any)], f: |x| x[0].max_pool2d([2, 3], [2, 3]) },
    Case {
        name: "max_pool2d_overlapping_non_contiguous",
        inputs: &[(&[2, 3, 5, 4], Any)],
        f: |x| x[0].permute(&[0, 1, 3, 2]).max_pool2d([2, 3], [1, 2]),
    },
    Case {
        name: "conv_relu_pool_flatten_linear",
        inputs: &[(&[2, 1, 6, 6], Any), (&[2, 1, 3, 3], Any), (&[2], Any), (&[3, 8], Any)],
        f: |x| {
            x[0].conv2d(&x[1], Some(&x[2]), [1, 1], [1, 1])
                .relu()
                .max_pool2d([3, 3], [3, 3])
                .flatten_from(1)
                .matmul(&x[3].t())
        },
    },
    Case {
        // x, weight_ih, weight_hh, bias_ih, bias_hh, h0, c0: every hidden state and the last cell.
        name: "lstm_sequence",
        inputs: &[
            (&[2, 3, 3], Any),
            (&[8, 3], Any),
            (&[8, 2], Any),
            (&[8], Any),
            (&[8], Any),
            (&[2, 2], Any),
            (&[2, 2], Any),
        ],
        f: |x| {
            let lstm = Lstm::from_weights(x[1].clone(), x[2].clone(), x[3].clone(), x[4].clone());
            let out = lstm.forward_with_state(&x[0], Some((&x[5], &x[6])));
            Tensor::concat(&[out.outputs.flatten_from(0), out.c.flatten_from(0)], 0)
        },
    },
    Case {
        name: "mlp_composition",
        inputs: &[(&[4, 3], Any), (&[5, 3], Any), (&[5], Any)],
        f: |x| x[0].matmul(&x[1].t()).add(&x[2]).gelu().log_softmax(1),
    },
];

/// Cast is linear, but an f32 round trip rounds at ~1e-7 relative, so it needs a step far
/// larger than the default and a tolerance at the scale of f32 rounding / eps.
const CAST_CONFIG: GradcheckConfig = GradcheckConfig { eps: 1e-2, atol: 1e-4, rtol: 1e-3, seed: 0 };

fn cast_case(x: &[Tensor]) -> Tensor {
    x[0].to_dtype(DType::F32).mul_scalar(3.0).to_dtype(DType::F64)
}

fn make_inputs(case_inputs: &[(&[usize], Domain)], seed: u64) -> Vec<Tensor> {
    let mut rng = Rng::new(seed);
    case_inputs
        .iter()
        .map(|(shape, domain)| {
            let n: usize = shape.iter().product();
            let values: Vec<f64> = (0..n)
                .map(|_| match domain {
                    Any => rng.normal(),
                    Positive => 0.5 + rng.uniform(),
                    Probability => 0.1 + 0.8 * rng.uniform(),
                })
                .collect();
            Tensor::from_vec_f64(values, shape)
        })
        .collect()
}

fn recorded_kinds(root: &Tensor, into: &mut BTreeSet<OpKind>) {
    let mut stack = vec![root.clone()];
    while let Some(t) = stack.pop() {
        if let Some(op) = t.op() {
            into.insert(op.kind());
            stack.extend(op.inputs().into_iter().cloned());
        }
    }
}

#[test]
fn every_case_matches_finite_differences() {
    let mut failures = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        let inputs = make_inputs(case.inputs, 100 + i as u64);
        let config = GradcheckConfig { seed: i as u64, ..GradcheckConfig::default() };
        match gradcheck(case.f, &inputs, config) {
            Ok(report) => assert!(report.checked > 0, "{}: nothing checked", case.name),
            Err(e) => failures.push(format!("{}: {e}", case.name)),
        }
    }
    let inputs = make_inputs(&[(&[3, 4], Any)], 7);
    if let Err(e) = gradcheck(cast_case, &inputs, CAST_CONFIG) {
        failures.push(format!("to_dtype: {e}"));
    }
    assert!(failures.is_empty(), "gradient checks failed:\n{}", failures.join("\n"));
}

#[test]
fn every_recorded_op_kind_is_gradient_checked() {
    let mut covered = BTreeSet::new();
    for case in CASES {
        let inputs: Vec<Tensor> = make_inputs(case.inputs, 1).into_iter().map(|t| t.requires_grad_()).collect();
        recorded_kinds(&(case.f)(&inputs), &mut covered);
    }
    let x = make_inputs(&[(&[3, 4], Any)], 7).remove(0).requires_grad_();
    recorded_kinds(&cast_case(&[x]), &mut covered);
    let missing: Vec<&str> = OpKind::ALL.iter().filter(|k| !covered.contains(k)).map(|k| k.name()).collect();
    assert!(missing.is_empty(), "ops without a gradient check case in tests/gradcheck.rs: {missing:?}");
}

#[test]
fn gradcheck_catches_a_wrong_gradient() {
    // d/dx of x * detach(x) is only half of d/dx x^2: the check must notice.
    let x = Tensor::from_vec_f64(vec![0.5, -1.0, 2.0], &[3]);
    let result = gradcheck(|x| x[0].mul(&x[0].detach()), &[x], GradcheckConfig::default());
    let message = result.expect_err("a wrong gradient must fail the check");
    assert!(message.contains("analytic") && message.contains("numeric"), "{message}");
}
