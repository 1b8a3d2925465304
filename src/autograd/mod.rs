//! Reverse-mode automatic differentiation.
//!
//! Every op that needs a gradient stores an [`Op`] in its output tensor: which op ran, on which
//! input tensors, and anything the gradient formula needs later. The graph is just these links.
//! [`Tensor::backward`](crate::Tensor::backward) sorts the graph topologically and walks it in
//! reverse, asking [`backward::op_backward`] (the one place that holds every gradient formula)
//! for each node's input gradients and summing them where a tensor was used more than once.

pub mod backward;
mod engine;
pub mod gradcheck;

use std::cell::Cell;
use std::sync::Arc;

use crate::Tensor;

pub use gradcheck::{gradcheck, GradcheckConfig, GradcheckReport};

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
    Matmul => "matmul", Softmax => "softmax", LogSoftmax => "log_softmax",
    CrossEntropy => "cross_entropy", MseLoss => "mse_loss",
    BinaryCrossEntropy => "binary_cross_entropy",
    BinaryCrossEntropyWithLogits => "binary_cross_entropy_with_logits",
    Dropout => "dropout", Concat => "concat", IndexSelect => "index_select", Gather => "gather",
    Where => "where", Reshape => "reshape", Permute => "permute", Narrow => "narrow",
    Expand => "expand", Copy => "contiguous", Cast => "to_dtype",
    Conv2d => "conv2d", MaxPool2d => "max_pool2d",
}

impl Op {
    /// Which op this is.
    pub fn kind(&self) -> OpKind {
        match self {
            Op::Unary(u, _) => match u {
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
            },
            Op::Binary(b, _, _) => match b {
                BinaryOp::Add => OpKind::Add,
                BinaryOp::Sub => OpKind::Sub,
                BinaryOp::Mul => OpKind::Mul,
                BinaryOp::Div => OpKind::Div,
            },
            Op::Reduce { op, .. } => match op {
                ReduceOp::Sum => OpKind::Sum,
                ReduceOp::Mean => OpKind::Mean,
                ReduceOp::Max => OpKind::Max,
            },
            Op::Matmul(..) => OpKind::Matmul,
            Op::Softmax { .. } => OpKind::Softmax,
            Op::LogSoftmax { .. } => OpKind::LogSoftmax,
            Op::CrossEntropy { .. } => OpKind::CrossEntropy,
            Op::MseLoss { .. } => OpKind::MseLoss,
            Op::BinaryCrossEntropy { .. } => OpKind::BinaryCrossEntropy,
            Op::BinaryCrossEntropyWithLogits { .. } => OpKind::BinaryCrossEntropyWithLogits,
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
            Op::Concat { inputs, .. } => inputs.iter().collect(),
            Op::Conv2d { input, weight, bias, .. } => [input, weight].into_iter().chain(bias).collect(),
        }
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
