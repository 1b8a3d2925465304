//! Every gradient formula in glassbox, one match arm per op: grep for an op's name to find it.
//!
//! Each arm receives the op (its inputs and saved values), the tensor it produced (`out`) and
//! the gradient of the loss with respect to that tensor (`g`), and returns the gradient with
//! respect to each input, in the order of [`Op::inputs`]. Formulas are written with tensor ops,
//! so they run on whatever device the tensors live on. The engine calls this inside `no_grad`.
//!
//! [`formula`] below restates each arm in one line of math for the backward explainer
//! (`Tensor::backward_explained`); change the two together.

use super::{BinaryOp, Op, OpKind, ReduceOp, UnaryOp};
use crate::Tensor;

/// GELU's tanh-form constant sqrt(2 / pi).
pub(crate) const GELU_K: f64 = 0.797_884_560_802_865_4;
/// GELU's cubic coefficient.
pub(crate) const GELU_C: f64 = 0.044_715;

/// Gradients of `op`'s inputs, given the gradient `g` of its output `out`.
/// `None` marks an input no gradient flows to.
pub fn op_backward(op: &Op, out: &Tensor, g: &Tensor) -> Vec<Option<Tensor>> {
    match op {
        Op::Unary(u, x) => vec![Some(match *u {
            // d(-x) = -1
            UnaryOp::Neg => g.neg(),
            // d e^x = e^x, which is the output
            UnaryOp::Exp => g.mul(out),
            // d ln x = 1/x
            UnaryOp::Log => g.div(x),
            // d sqrt(x) = 1 / (2 sqrt(x))
            UnaryOp::Sqrt => g.div(out).mul_scalar(0.5),
            // d |x| = sign(x), taken as 0 at 0
            UnaryOp::Abs => g.mul(&x.gt_scalar(0.0).sub(&x.lt_scalar(0.0))),
            // d relu(x) = 1 where x > 0, else 0
            UnaryOp::Relu => g.mul(&x.gt_scalar(0.0)),
            // d sigmoid = s (1 - s), with s the output
            UnaryOp::Sigmoid => g.mul(&out.mul(&out.affine(-1.0, 1.0))),
            // d tanh = 1 - tanh^2
            UnaryOp::Tanh => g.mul(&out.mul(out).affine(-1.0, 1.0)),
            // gelu = 0.5 x (1 + t), t = tanh(u), u = K (x + C x^3):
            // d gelu = 0.5 (1 + t) + 0.5 x (1 - t^2) K (1 + 3 C x^2), fused into one pass
            UnaryOp::Gelu => crate::ops::gelu_backward(x, g),
            // d x^p = p x^(p-1)
            UnaryOp::Powf(p) => g.mul(&x.powf(p - 1.0)).mul_scalar(p),
            // d (a x + b) = a
            UnaryOp::Affine { mul, .. } => g.mul_scalar(mul),
        })],

        // Broadcasting copies an input along stretched dims, so its gradient sums over them.
        Op::Binary(b, lhs, rhs) => {
            let (gl, gr) = match b {
                BinaryOp::Add => (g.clone(), g.clone()),
                BinaryOp::Sub => (g.clone(), g.neg()),
                BinaryOp::Mul => (g.mul(rhs), g.mul(lhs)),
                // d(a/b)/da = 1/b, d(a/b)/db = -a/b^2 = -out/b
                BinaryOp::Div => (g.div(rhs), g.mul(out).div(rhs).neg()),
            };
            vec![Some(gl.sum_to_shape(lhs.shape())), Some(gr.sum_to_shape(rhs.shape()))]
        }

        Op::Reduce { op, input, dims, keepdim } => {
            // Put the reduced dims back (size 1) so g broadcasts over the input.
            let g_kept = if *keepdim { g.clone() } else { g.reshape(&kept_shape(input.shape(), dims)) };
            vec![Some(match op {
                ReduceOp::Sum => g_kept.broadcast_to(input.shape()).contiguous(),
                ReduceOp::Mean => {
                    let count: usize = dims.iter().map(|&d| input.shape()[d]).product();
                    g_kept.broadcast_to(input.shape()).mul_scalar(1.0 / count as f64)
                }
                // The gradient goes to the maxima, split evenly among ties.
                ReduceOp::Max => {
                    let out_kept = if *keepdim { out.clone() } else { out.reshape(g_kept.shape()) };
                    let is_max = input.eq(&out_kept);
                    let ties = is_max.sum(dims, true);
                    is_max.mul(&g_kept.div(&ties))
                }
            })]
        }

        // C = A B: dA = dC B^T, dB = A^T dC (batch dims that were broadcast are summed away).
        // (Each product is skipped when its input needs no gradient, e.g. a batch of data.)
        Op::Matmul(a, b) => vec![
            a.requires_grad().then(|| g.matmul(&b.t()).sum_to_shape(a.shape())),
            b.requires_grad().then(|| a.t().matmul(g).sum_to_shape(b.shape())),
        ],

        // y = x W^T + b over rows x of the input flattened to [rows, in]:
        // dx = g W, dW = g^T x, db = column sums of g
        Op::Linear { input, weight, bias } => {
            let (inputs, outputs) = (weight.shape()[1], weight.shape()[0]);
            let rows = input.numel() / inputs.max(1);
            let (g2, x2) = (g.reshape(&[rows, outputs]), input.reshape(&[rows, inputs]));
            vec![
                input.requires_grad().then(|| g2.matmul(weight).reshape(input.shape())),
                weight.requires_grad().then(|| g2.t().matmul(&x2)),
                bias.requires_grad().then(|| g2.sum(&[0], false)),
            ]
        }

        // y = softmax(x): dx = y * (g - sum(g * y))
        Op::Softmax { dim, .. } => vec![Some(crate::ops::softmax_backward(out, g, *dim, false))],

        // y = log_softmax(x): dx = g - softmax(x) * sum(g)
        Op::LogSoftmax { dim, .. } => vec![Some(crate::ops::softmax_backward(out, g, *dim, true))],

        // loss = mean_i -log p[i, t_i]: dlogits = (p - onehot(t)) / N, times the upstream scalar
        Op::CrossEntropy { targets, probs, .. } => {
            vec![Some(crate::ops::cross_entropy_backward(probs, targets, g))]
        }

        // loss = mean (p - t)^2: dp = 2 (p - t) / n, dt = -dp
        Op::MseLoss { pred, target } => {
            let dp = pred.sub(target).mul(g).mul_scalar(2.0 / pred.numel() as f64);
            let dt = target.requires_grad().then(|| dp.neg());
            vec![Some(dp), dt]
        }

        // loss = mean -(t ln p + (1 - t) ln(1 - p)):
        // dp = (p - t) / (p (1 - p)) / n, dt = (ln(1 - p) - ln p) / n
        Op::BinaryCrossEntropy { probs, target } => {
            let n = probs.numel() as f64;
            let one_minus_p = probs.affine(-1.0, 1.0);
            let dp = probs.sub(target).div(&probs.mul(&one_minus_p).clamp_min(1e-12)).mul(g).mul_scalar(1.0 / n);
            let dt = target.requires_grad().then(|| one_minus_p.log().sub(&probs.log()).mul(g).mul_scalar(1.0 / n));
            vec![Some(dp), dt]
        }

        // loss = mean max(z, 0) - z t + ln(1 + e^-|z|): dz = (sigmoid(z) - t) / n, dt = -z / n
        Op::BinaryCrossEntropyWithLogits { logits, target } => {
            let n = logits.numel() as f64;
            let dz = logits.sigmoid().sub(target).mul(g).mul_scalar(1.0 / n);
            let dt = target.requires_grad().then(|| logits.mul(g).mul_scalar(-1.0 / n));
            vec![Some(dz), dt]
        }

        // y = xhat * w + b with xhat = (x - mean) * rstd: formulas in backend/cpu/layernorm.rs
        Op::LayerNorm { input, weight, mean, rstd, .. } => {
            let (dx, dw, db) = crate::ops::layer_norm_backward(input, weight, mean, rstd, g);
            vec![Some(dx), Some(dw), Some(db)]
        }

        // o = softmax(q k^T * scale) v, recomputing the probabilities from the saved
        // log-sum-exp: formulas in backend/cpu/attention.rs
        Op::Attention { q, k, v, causal, lse } => {
            let (dq, dk, dv) = crate::ops::attention_backward(q, k, v, out, lse, g, *causal);
            vec![Some(dq), Some(dk), Some(dv)]
        }

        // The same formulas, with the gradient written straight into the packed layout.
        Op::MultiHeadAttention { qkv, n_head, causal, lse } => {
            vec![Some(crate::ops::multi_head_attention_backward(qkv, out, lse, g, *n_head, *causal))]
        }

        // y = x * mask, with the mask already scaled by 1 / (1 - p)
        Op::Dropout { mask, .. } => vec![Some(g.mul(mask))],

        // Each part gets its own slice of g.
        Op::Concat { inputs, dim } => {
            let mut start = 0;
            inputs
                .iter()
                .map(|part| {
                    let len = part.shape()[*dim];
                    let slice = g.narrow(*dim, start, len);
                    start += len;
                    Some(slice)
                })
                .collect()
        }

        // Rows picked (maybe several times) get their gradients summed back in place.
        Op::IndexSelect { input, dim, indices } => {
            vec![Some(crate::ops::index_add_zeros(input.shape(), input.dtype(), *dim, indices, g))]
        }

        // Each gathered element sends its gradient back to where it came from.
        Op::Gather { input, dim, index } => {
            vec![Some(crate::ops::scatter_add_zeros(input.shape(), input.dtype(), *dim, index, g))]
        }

        // The gradient follows the branch that was chosen.
        Op::Where { cond, on_true, on_false } => {
            let zero = g.zeros_like();
            vec![
                Some(Tensor::where_cond(cond, g, &zero).sum_to_shape(on_true.shape())),
                Some(Tensor::where_cond(cond, &zero, g).sum_to_shape(on_false.shape())),
            ]
        }

        // Views: undo the view on the gradient.
        Op::Reshape(x) => vec![Some(g.reshape(x.shape()))],
        Op::Permute { perm, .. } => {
            let mut inverse = vec![0; perm.len()];
            for (new, &old) in perm.iter().enumerate() {
                inverse[old] = new;
            }
            vec![Some(g.permute(&inverse))]
        }
        // Zeros outside the slice: pad g back to the input's length along dim.
        // When the input already has a gradient waiting, the engine adds g onto that
        // gradient's slice instead (`accumulate::add_into_slice`), the same sum in one pass.
        Op::Narrow { input, dim, start } => {
            vec![Some(super::accumulate::zeros_with_slice(input.shape(), *dim, *start, g))]
        }
        Op::Expand(x) => vec![Some(g.sum_to_shape(x.shape()))],
        // A copy (packing a view, or a move between devices): g, back on x's device.
        Op::Copy(x) => vec![Some(if g.device() == x.device() {
            g.clone()
        } else {
            g.to(x.device()).unwrap_or_else(|e| panic!("backward of a device copy: {e}"))
        })],
        Op::Cast(x) => vec![Some(g.to_dtype(x.dtype()))],

        // y = conv(x, w) + b. Per image, with cols = im2col(x) and G = dy as [O, OH OW]:
        // dx = col2im(W^T G), dW = sum_n G cols^T, db = sum of G over batch and pixels.
        // Inputs that need no gradient (the images of a first layer) are skipped: col2im costs
        // as much as the forward pass.
        Op::Conv2d { input, weight, bias, stride, padding } => {
            let dx = input
                .requires_grad()
                .then(|| crate::ops::conv2d_input_grad(g, weight, input.shape(), *stride, *padding));
            let dw = weight
                .requires_grad()
                .then(|| crate::ops::conv2d_weight_grad(input, g, weight.shape(), *stride, *padding));
            let mut grads = vec![dx, dw];
            if bias.is_some() {
                grads.push(Some(g.sum(&[0, 2, 3], false)));
            }
            grads
        }

        // Each window's gradient goes to the one input that was its maximum.
        Op::MaxPool2d { input, kernel, stride, argmax } => {
            vec![Some(crate::ops::max_pool2d_backward(g, argmax, input.shape(), *kernel, *stride))]
        }
    }
}

/// The gradient formula of `kind` in one line, as the backward explainer prints it: `g` is the
/// gradient arriving at the op's output `y`; `x` (or `a`, `b`, ...) are the inputs; `dx` is
/// what the op sends back to `x`. Each line restates the matching arm of [`op_backward`].
///
/// The match lists every kind (no catch-all), so a new op does not compile without its line.
pub fn formula(kind: OpKind) -> &'static str {
    match kind {
        OpKind::Neg => "dx = -g",
        OpKind::Exp => "dx = g * y            (y = e^x)",
        OpKind::Log => "dx = g / x",
        OpKind::Sqrt => "dx = g * 0.5 / y      (y = sqrt x)",
        OpKind::Abs => "dx = g * sign(x)      (0 at x = 0)",
        OpKind::Relu => "dx = g * [x > 0]",
        OpKind::Sigmoid => "dx = g * y * (1 - y)  (y = sigmoid x)",
        OpKind::Tanh => "dx = g * (1 - y^2)    (y = tanh x)",
        OpKind::Gelu => "dx = g * (0.5 (1 + t) + 0.5 x (1 - t^2) K (1 + 3 C x^2)),  t = tanh(K (x + C x^3))",
        OpKind::Powf => "dx = g * p * x^(p - 1)",
        OpKind::Affine => "dx = g * a            (y = a x + b)",
        OpKind::Add => "da = g, db = g        (each summed over the dims it was broadcast along)",
        OpKind::Sub => "da = g, db = -g       (each summed over its broadcast dims)",
        OpKind::Mul => "da = g * b, db = g * a  (each summed over its broadcast dims)",
        OpKind::Div => "da = g / b, db = -g * y / b  (y = a / b; each summed over its broadcast dims)",
        OpKind::Sum => "dx = g, broadcast back over the summed dims",
        OpKind::Mean => "dx = g / n, broadcast back over the n averaged elements",
        OpKind::Max => "dx = g / (number of ties) where x is the max, 0 elsewhere",
        OpKind::Matmul => "dA = g B^T, dB = A^T g  (batch dims that were broadcast are summed)",
        OpKind::Linear => "dx = g W, dW = g^T x, db = sum of g over rows  (y = x W^T + b)",
        OpKind::Softmax => "dx = y * (g - sum(g * y))  (y = softmax x, sum along dim)",
        OpKind::LogSoftmax => "dx = g - softmax(x) * sum(g)  (sum along dim)",
        OpKind::CrossEntropy => "dlogits = (softmax(logits) - onehot(targets)) * g / N  (softmax saved by forward)",
        OpKind::MseLoss => "dp = 2 (p - t) * g / n, dt = -dp",
        OpKind::BinaryCrossEntropy => "dp = (p - t) / (p (1 - p)) * g / n, dt = (ln(1 - p) - ln p) * g / n",
        OpKind::BinaryCrossEntropyWithLogits => "dz = (sigmoid(z) - t) * g / n, dt = -z * g / n",
        OpKind::LayerNorm => {
            "dx = rstd (g w - mean(g w) - xhat mean(g w xhat)), dw = sum of g xhat, db = sum of g  (mean, rstd saved)"
        }
        OpKind::Attention | OpKind::MultiHeadAttention => {
            "P = exp(s - lse) recomputed; dV = P^T g; dS = P (g V^T - rowsum(g o)); dQ = dS K scale, dK = dS^T Q scale"
        }
        OpKind::Conv2d => "dx = col2im(W^T g), dW = sum over images of g im2col(x)^T, db = sum of g over N, H, W",
        OpKind::MaxPool2d => "dx = g sent to each window's argmax (saved by forward), 0 elsewhere",
        OpKind::Dropout => "dx = g * mask          (mask = 0 or 1 / (1 - p), saved by forward)",
        OpKind::Concat => "d part_i = the slice of g that part_i filled",
        OpKind::IndexSelect => "dx = zeros, then g's slices added back at the picked indices (repeats sum)",
        OpKind::Gather => "dx = zeros, then each element of g added back where it was read (scatter_add)",
        OpKind::Where => "d on_true = g where cond, else 0; d on_false = g where not cond, else 0",
        OpKind::Reshape => "dx = g reshaped to x's shape",
        OpKind::Permute => "dx = g permuted back by the inverse permutation",
        OpKind::Narrow => "dx = g padded with zeros outside the slice",
        OpKind::Expand => "dx = g summed over the broadcast (stride-0) dims",
        OpKind::Copy => "dx = g                (moved back to x's device if the copy crossed devices)",
        OpKind::Cast => "dx = g cast back to x's dtype",
    }
}

/// `shape` with each of `dims` set to 1.
fn kept_shape(shape: &[usize], dims: &[usize]) -> Vec<usize> {
    let mut kept = shape.to_vec();
    for &d in dims {
        kept[d] = 1;
    }
    kept
}
