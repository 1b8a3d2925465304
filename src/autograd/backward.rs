//! Every gradient formula in glassbox, one match arm per op: grep for an op's name to find it.
//!
//! Each arm receives the op (its inputs and saved values), the tensor it produced (`out`) and
//! the gradient of the loss with respect to that tensor (`g`), and returns the gradient with
//! respect to each input, in the order of [`Op::inputs`]. Formulas are written with tensor ops,
//! so they run on whatever device the tensors live on. The engine calls this inside `no_grad`.

use super::{BinaryOp, Op, ReduceOp, UnaryOp};
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
            // d gelu = 0.5 (1 + t) + 0.5 x (1 - t^2) K (1 + 3 C x^2)
            UnaryOp::Gelu => {
                let x2 = x.mul(x);
                let t = x.add(&x2.mul(x).mul_scalar(GELU_C)).mul_scalar(GELU_K).tanh();
                let left = t.affine(0.5, 0.5);
                let right =
                    x.mul(&t.mul(&t).affine(-1.0, 1.0)).mul(&x2.affine(3.0 * GELU_C * GELU_K, GELU_K)).mul_scalar(0.5);
                g.mul(&left.add(&right))
            }
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
        Op::Matmul(a, b) => {
            vec![Some(g.matmul(&b.t()).sum_to_shape(a.shape())), Some(a.t().matmul(g).sum_to_shape(b.shape()))]
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
            let dt = dp.neg();
            vec![Some(dp), Some(dt)]
        }

        // loss = mean -(t ln p + (1 - t) ln(1 - p)):
        // dp = (p - t) / (p (1 - p)) / n, dt = (ln(1 - p) - ln p) / n
        Op::BinaryCrossEntropy { probs, target } => {
            let n = probs.numel() as f64;
            let one_minus_p = probs.affine(-1.0, 1.0);
            let dp = probs.sub(target).div(&probs.mul(&one_minus_p).clamp_min(1e-12)).mul(g).mul_scalar(1.0 / n);
            let dt = one_minus_p.log().sub(&probs.log()).mul(g).mul_scalar(1.0 / n);
            vec![Some(dp), Some(dt)]
        }

        // loss = mean max(z, 0) - z t + ln(1 + e^-|z|): dz = (sigmoid(z) - t) / n, dt = -z / n
        Op::BinaryCrossEntropyWithLogits { logits, target } => {
            let n = logits.numel() as f64;
            let dz = logits.sigmoid().sub(target).mul(g).mul_scalar(1.0 / n);
            let dt = logits.mul(g).mul_scalar(-1.0 / n);
            vec![Some(dz), Some(dt)]
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
        Op::Narrow { input, dim, start } => {
            let full = input.shape()[*dim];
            let len = g.shape()[*dim];
            let mut parts = Vec::new();
            let mut pad_shape = input.shape().to_vec();
            if *start > 0 {
                pad_shape[*dim] = *start;
                parts.push(Tensor::full_dtype(&pad_shape, 0.0, g.dtype()));
            }
            parts.push(g.clone());
            if start + len < full {
                pad_shape[*dim] = full - start - len;
                parts.push(Tensor::full_dtype(&pad_shape, 0.0, g.dtype()));
            }
            vec![Some(Tensor::concat(&parts, *dim))]
        }
        Op::Expand(x) => vec![Some(g.sum_to_shape(x.shape()))],
        Op::Copy(_) => vec![Some(g.clone())],
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

/// `shape` with each of `dims` set to 1.
fn kept_shape(shape: &[usize], dims: &[usize]) -> Vec<usize> {
    let mut kept = shape.to_vec();
    for &d in dims {
        kept[d] = 1;
    }
    kept
}
