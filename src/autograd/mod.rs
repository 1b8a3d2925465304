//! Reverse-mode automatic differentiation.
//!
//! Every op that needs a gradient stores an [`Op`] in its output tensor: which op ran, on which
//! input tensors, and anything the gradient formula needs later. The graph is just these links.
//! [`Tensor::backward`](crate::Tensor::backward) sorts the graph topologically and walks it in
//! reverse, asking [`backward::op_backward`] (the one place that holds every gradient formula)
//! for each node's input gradients and summing them where a tensor was used more than once.
//!
//! [`anomaly`] mode checks every op's output and every gradient for NaN and infinity, and
//! reports the first op that produced one with the chain of ops that led there.

pub(crate) mod accumulate;
pub mod anomaly;
pub mod backward;
mod engine;
pub mod gradcheck;
pub mod trace;

use std::cell::Cell;
use std::sync::Arc;

use crate::Tensor;

pub use anomaly::{detect_anomaly, is_anomaly_mode, set_anomaly_mode, AnomalyGuard};
pub use gradcheck::{gradcheck, GradcheckConfig, GradcheckReport};
pub use trace::{capture_traces, BackwardTrace, InputTrace, NodeTrace};

/// Elementwise functions of one tensor (with their scalar parameters).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    /// -x
    Neg,
    /// e^x
    Exp,
    /// ln x
    Log,
    /// sqrt(x)
    Sqrt,
    /// |x|
    Abs,
    /// max(x, 0)
    Relu,
    /// 1 / (1 + e^-x)
    Sigmoid,
    /// tanh x
    Tanh,
    /// GELU, tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), as GPT-2 uses.
    Gelu,
    /// x^p
    Powf(f64),
    /// x * mul + add (scalar arithmetic on tensors)
    Affine {
        /// factor
        mul: f64,
        /// offset
        add: f64,
    },
}

/// Elementwise functions of two tensors, broadcast against each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    /// a + b
    Add,
    /// a - b
    Sub,
    /// a * b
    Mul,
    /// a / b
    Div,
}

/// Reductions over a set of dimensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    /// Sum of the elements.
    Sum,
    /// Arithmetic mean.
    Mean,
    /// Largest element; its gradient is shared equally among ties (as `torch.amax`).
    Max,
}

/// A recorded op: the node of the autograd graph stored in the tensor it produced.
///
/// Each variant holds its differentiable inputs and what its gradient formula needs. The
/// formulas are all in [`backward::op_backward`].
#[derive(Clone, Debug)]
pub enum Op {
    /// An elementwise function of one tensor.
    Unary(UnaryOp, Tensor),
    /// An elementwise function of two broadcast tensors.
    Binary(BinaryOp, Tensor, Tensor),
    /// A reduction over `dims`.
    Reduce {
        /// which reduction
        op: ReduceOp,
        /// the reduced tensor
        input: Tensor,
        /// dimensions reduced (sorted, unique)
        dims: Vec<usize>,
        /// whether the reduced dims were kept with size 1
        keepdim: bool,
    },
    /// Matrix product over the last two dims, batch dims broadcast.
    Matmul(Tensor, Tensor),
    /// A linear layer's map `x W^T + b` over the last dim of `x` (bias fused into the GEMM).
    Linear {
        /// input `[.., in]`
        input: Tensor,
        /// weight `[out, in]`
        weight: Tensor,
        /// bias `[out]`
        bias: Tensor,
    },
    /// Softmax along `dim`.
    Softmax {
        /// the logits
        input: Tensor,
        /// normalized dimension
        dim: usize,
    },
    /// Log-softmax along `dim`.
    LogSoftmax {
        /// the logits
        input: Tensor,
        /// normalized dimension
        dim: usize,
    },
    /// Mean softmax cross-entropy of `[N, C]` logits against class indices.
    CrossEntropy {
        /// the logits
        logits: Tensor,
        /// one class index per row
        targets: Arc<[usize]>,
        /// softmax of the logits, saved by the forward pass
        probs: Tensor,
    },
    /// Mean squared error.
    MseLoss {
        /// prediction
        pred: Tensor,
        /// target
        target: Tensor,
    },
    /// Mean binary cross-entropy of probabilities.
    BinaryCrossEntropy {
        /// probabilities in (0, 1)
        probs: Tensor,
        /// targets in [0, 1]
        target: Tensor,
    },
    /// Mean binary cross-entropy of logits (sigmoid folded in, stable for any logit).
    BinaryCrossEntropyWithLogits {
        /// logits
        logits: Tensor,
        /// targets in [0, 1]
        target: Tensor,
    },
    /// Layer normalization over the last dim, with elementwise affine weight and bias.
    LayerNorm {
        /// the normalized tensor
        input: Tensor,
        /// per-feature scale
        weight: Tensor,
        /// per-feature shift
        bias: Tensor,
        /// each row's mean, saved by the forward pass
        mean: Tensor,
        /// each row's 1 / sqrt(var + eps), saved by the forward pass
        rstd: Tensor,
    },
    /// Scaled dot-product attention `softmax(q k^T / sqrt(d)) v` (optionally causal).
    Attention {
        /// queries `[.., T_q, d]`
        q: Tensor,
        /// keys `[.., T_k, d]`
        k: Tensor,
        /// values `[.., T_k, d]`
        v: Tensor,
        /// whether query i saw only keys j <= i
        causal: bool,
        /// each query row's log-sum-exp of scores, saved by the forward pass
        lse: Tensor,
    },
    /// Multi-head attention read in place from a packed `[batch, T, 3 C]` projection.
    MultiHeadAttention {
        /// queries, keys and values side by side
        qkv: Tensor,
        /// number of heads
        n_head: usize,
        /// whether query i saw only keys j <= i
        causal: bool,
        /// each query row's log-sum-exp of scores, saved by the forward pass
        lse: Tensor,
    },
    /// Inverted dropout: `input * mask`, where the mask holds 0 or 1/(1-p).
    Dropout {
        /// the input
        input: Tensor,
        /// the scaled keep mask
        mask: Tensor,
    },
    /// Tensors joined along `dim`.
    Concat {
        /// the parts, in order
        inputs: Vec<Tensor>,
        /// joined dimension
        dim: usize,
    },
    /// Slices of `input` along `dim` picked by `indices` (also embedding lookup).
    IndexSelect {
        /// the source
        input: Tensor,
        /// selected dimension
        dim: usize,
        /// picked positions
        indices: Arc<[usize]>,
    },
    /// `out[i][j][k] = input[i][index[i][j][k]][k]` for `dim = 1` (and likewise for others).
    Gather {
        /// the source
        input: Tensor,
        /// gathered dimension
        dim: usize,
        /// index values, laid out in the output's shape
        index: Arc<[usize]>,
    },
    /// Elementwise choice: `on_true` where `cond` is non-zero, else `on_false`.
    Where {
        /// the condition (not differentiated)
        cond: Tensor,
        /// chosen where the condition holds
        on_true: Tensor,
        /// chosen elsewhere
        on_false: Tensor,
    },
    /// Same elements, new shape.
    Reshape(Tensor),
    /// Dimensions reordered (transpose is a permute).
    Permute {
        /// the input
        input: Tensor,
        /// new dim i is old dim perm\[i\]
        perm: Vec<usize>,
    },
    /// A slice `start..start + len` along `dim`.
    Narrow {
        /// the input
        input: Tensor,
        /// sliced dimension
        dim: usize,
        /// first index kept
        start: usize,
    },
    /// Broadcast to a larger shape by stride-0 dims.
    Expand(Tensor),
    /// A contiguous copy.
    Copy(Tensor),
    /// A change of element type.
    Cast(Tensor),
    /// 2-D convolution (NCHW), as PyTorch's `conv2d`.
    Conv2d {
        /// the images `[N, C, H, W]`
        input: Tensor,
        /// the filters `[O, C, KH, KW]`
        weight: Tensor,
        /// one value per output channel, if any
        bias: Option<Tensor>,
        /// step between windows (rows, columns)
        stride: [usize; 2],
        /// zeros added on each side (rows, columns)
        padding: [usize; 2],
    },
    /// 2-D max pooling (NCHW).
    MaxPool2d {
        /// the images `[N, C, H, W]`
        input: Tensor,
        /// window size (rows, columns)
        kernel: [usize; 2],
        /// step between windows (rows, columns)
        stride: [usize; 2],
        /// per output element, where its maximum sits in the contiguous input
        argmax: Arc<[usize]>,
    },
}

/// Declares [`OpKind`] and its list [`OpKind::ALL`] from one table, so no kind can be added
/// without joining the list that the gradient-check suite must cover.
macro_rules! op_kinds {
    ($($kind:ident => $name:literal,)*) => {
        /// The kind of a recorded op, without its operands.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum OpKind { $(#[doc = $name] $kind,)* }

        impl OpKind {
            /// Every kind. `tests/gradcheck.rs` fails unless its cases exercise each one.
            pub const ALL: &'static [OpKind] = &[$(OpKind::$kind,)*];

            /// The op's name, as used in messages and reports.
            pub fn name(self) -> &'static str {
                match self { $(OpKind::$kind => $name,)* }
            }
        }
    };
}

op_kinds! {
    Neg => "neg", Exp => "exp", Log => "log", Sqrt => "sqrt", Abs => "abs", Relu => "relu",
    Sigmoid => "sigmoid", Tanh => "tanh", Gelu => "gelu", Powf => "powf", Affine => "affine",
    Add => "add", Sub => "sub", Mul => "mul", Div => "div",
    Sum => "sum", Mean => "mean", Max => "max",
    Matmul => "matmul", Linear => "linear", Softmax => "softmax", LogSoftmax => "log_softmax",
    CrossEntropy => "cross_entropy", MseLoss => "mse_loss",
    BinaryCrossEntropy => "binary_cross_entropy",
    BinaryCrossEntropyWithLogits => "binary_cross_entropy_with_logits",
    LayerNorm => "layer_norm", Attention => "scaled_dot_product_attention",
    MultiHeadAttention => "multi_head_attention",
    Dropout => "dropout", Concat => "concat", IndexSelect => "index_select", Gather => "gather",
    Where => "where", Reshape => "reshape", Permute => "permute", Narrow => "narrow",
    Expand => "expand", Copy => "contiguous", Cast => "to_dtype",
    Conv2d => "conv2d", MaxPool2d => "max_pool2d",
}

impl UnaryOp {
    /// The [`OpKind`] of this function (its name is `kind().name()`).
    pub fn kind(self) -> OpKind {
        match self {
            UnaryOp::Neg => OpKind::Neg,
            UnaryOp::Exp => OpKind::Exp,
            UnaryOp::Log => OpKind::Log,
            UnaryOp::Sqrt => OpKind::Sqrt,
            UnaryOp::Abs => OpKind::Abs,
            UnaryOp::Relu => OpKind::Relu,
            UnaryOp::Sigmoid => OpKind::Sigmoid,
            UnaryOp::Tanh => OpKind::Tanh,
            UnaryOp::Gelu => OpKind::Gelu,
            UnaryOp::Powf(_) => OpKind::Powf,
            UnaryOp::Affine { .. } => OpKind::Affine,
        }
    }
}

impl BinaryOp {
    /// The [`OpKind`] of this function.
    pub fn kind(self) -> OpKind {
        match self {
            BinaryOp::Add => OpKind::Add,
            BinaryOp::Sub => OpKind::Sub,
            BinaryOp::Mul => OpKind::Mul,
            BinaryOp::Div => OpKind::Div,
        }
    }
}

impl Op {
    /// Which op this is.
    pub fn kind(&self) -> OpKind {
        match self {
            Op::Unary(u, _) => u.kind(),
            Op::Binary(b, _, _) => b.kind(),
            Op::Reduce { op, .. } => match op {
                ReduceOp::Sum => OpKind::Sum,
                ReduceOp::Mean => OpKind::Mean,
                ReduceOp::Max => OpKind::Max,
            },
            Op::Matmul(..) => OpKind::Matmul,
            Op::Linear { .. } => OpKind::Linear,
            Op::Softmax { .. } => OpKind::Softmax,
            Op::LogSoftmax { .. } => OpKind::LogSoftmax,
            Op::CrossEntropy { .. } => OpKind::CrossEntropy,
            Op::MseLoss { .. } => OpKind::MseLoss,
            Op::BinaryCrossEntropy { .. } => OpKind::BinaryCrossEntropy,
            Op::BinaryCrossEntropyWithLogits { .. } => OpKind::BinaryCrossEntropyWithLogits,
            Op::LayerNorm { .. } => OpKind::LayerNorm,
            Op::Attention { .. } => OpKind::Attention,
            Op::MultiHeadAttention { .. } => OpKind::MultiHeadAttention,
            Op::Dropout { .. } => OpKind::Dropout,
            Op::Concat { .. } => OpKind::Concat,
            Op::IndexSelect { .. } => OpKind::IndexSelect,
            Op::Gather { .. } => OpKind::Gather,
            Op::Where { .. } => OpKind::Where,
            Op::Reshape(_) => OpKind::Reshape,
            Op::Permute { .. } => OpKind::Permute,
            Op::Narrow { .. } => OpKind::Narrow,
            Op::Expand(_) => OpKind::Expand,
            Op::Copy(_) => OpKind::Copy,
            Op::Cast(_) => OpKind::Cast,
            Op::Conv2d { .. } => OpKind::Conv2d,
            Op::MaxPool2d { .. } => OpKind::MaxPool2d,
        }
    }

    /// The inputs a gradient can flow to, in a fixed order.
    pub fn inputs(&self) -> Vec<&Tensor> {
        match self {
            Op::Unary(_, x)
            | Op::Reduce { input: x, .. }
            | Op::Softmax { input: x, .. }
            | Op::LogSoftmax { input: x, .. }
            | Op::CrossEntropy { logits: x, .. }
            | Op::Dropout { input: x, .. }
            | Op::MultiHeadAttention { qkv: x, .. }
            | Op::IndexSelect { input: x, .. }
            | Op::Gather { input: x, .. }
            | Op::Reshape(x)
            | Op::Permute { input: x, .. }
            | Op::Narrow { input: x, .. }
            | Op::Expand(x)
            | Op::Copy(x)
            | Op::Cast(x)
            | Op::MaxPool2d { input: x, .. } => vec![x],
            Op::Binary(_, a, b)
            | Op::Matmul(a, b)
            | Op::MseLoss { pred: a, target: b }
            | Op::BinaryCrossEntropy { probs: a, target: b }
            | Op::BinaryCrossEntropyWithLogits { logits: a, target: b }
            | Op::Where { on_true: a, on_false: b, .. } => vec![a, b],
            Op::LayerNorm { input, weight, bias, .. } | Op::Linear { input, weight, bias } => vec![input, weight, bias],
            Op::Attention { q, k, v, .. } => vec![q, k, v],
            Op::Concat { inputs, .. } => inputs.iter().collect(),
            Op::Conv2d { input, weight, bias, .. } => [input, weight].into_iter().chain(bias).collect(),
        }
    }

    /// Bytes this node keeps alive for the backward pass: every tensor it holds (its inputs,
    /// plus saved values such as cross-entropy's probabilities or dropout's mask, each counted
    /// as the elements its view sees, and a tensor used twice counted twice) and its index
    /// lists. The backward explainer prints it; it is what `no_grad` saves during evaluation.
    pub fn saved_bytes(&self) -> usize {
        let bytes = |t: &Tensor| t.numel() * t.dtype().size_in_bytes();
        let index_bytes = |n: usize| n * std::mem::size_of::<usize>();
        let inputs: usize = self.inputs().into_iter().map(bytes).sum();
        // Listed per variant (no catch-all) so a new op must say what else it saves.
        let extra = match self {
            Op::CrossEntropy { targets, probs, .. } => index_bytes(targets.len()) + bytes(probs),
            Op::Dropout { mask, .. } => bytes(mask),
            Op::IndexSelect { indices, .. } => index_bytes(indices.len()),
            Op::Gather { index, .. } => index_bytes(index.len()),
            Op::Where { cond, .. } => bytes(cond),
            Op::LayerNorm { mean, rstd, .. } => bytes(mean) + bytes(rstd),
            Op::MaxPool2d { argmax, .. } => index_bytes(argmax.len()),
            Op::Conv2d { .. } => 0,
            Op::Attention { lse, .. } | Op::MultiHeadAttention { lse, .. } => bytes(lse),
            Op::Unary(..)
            | Op::Binary(..)
            | Op::Reduce { .. }
            | Op::Matmul(..)
            | Op::Linear { .. }
            | Op::Softmax { .. }
            | Op::LogSoftmax { .. }
            | Op::MseLoss { .. }
            | Op::BinaryCrossEntropy { .. }
            | Op::BinaryCrossEntropyWithLogits { .. }
            | Op::Concat { .. }
            | Op::Reshape(_)
            | Op::Permute { .. }
            | Op::Narrow { .. }
            | Op::Expand(_)
            | Op::Copy(_)
            | Op::Cast(_) => 0,
        };
        inputs + extra
    }
}

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// True unless inside a [`no_grad`] scope on this thread.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// While alive, ops on this thread record no graph (see [`no_grad`]).
pub struct NoGradGuard {
    previous: bool,
}

impl NoGradGuard {
    /// Turns graph recording off until the guard is dropped.
    pub fn new() -> NoGradGuard {
        NoGradGuard { previous: GRAD_ENABLED.with(|g| g.replace(false)) }
    }
}

impl Default for NoGradGuard {
    fn default() -> Self {
        NoGradGuard::new()
    }
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.previous));
    }
}

/// Runs `f` without recording a graph: for evaluation, optimizer updates and the backward
/// pass itself. Scopes nest, and the previous mode returns even if `f` panics.
///
/// ```
/// use glassbox::{autograd::no_grad, Tensor};
/// let w = Tensor::ones(&[2]).requires_grad_();
/// let y = no_grad(|| w.mul_scalar(3.0));
/// assert!(!y.requires_grad());
/// ```
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _guard = NoGradGuard::new();
    f()
}
