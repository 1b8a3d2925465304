//! Recording a backward pass node by node, for people who want to watch it run.
//!
//! Off unless asked for. The engine calls `Recorder::start` once per backward pass: a
//! thread-local read, plus one atomic load for the `GLASSBOX_EXPLAIN` budget (the variable is
//! read once per process). When recording, each node's step is timed and its kernels are
//! logged through [`backend::record_kernels`](crate::backend::record_kernels); the norms of
//! the gradients are computed after the timer stops, so they do not count in the node's time.
//!
//! Ways to turn it on:
//! - [`Tensor::backward_explained`]: one backward pass, its trace returned;
//! - [`capture_traces`]: every backward pass run inside a closure;
//! - `GLASSBOX_EXPLAIN=N` in the environment: the first `N` backward passes of the process are
//!   printed to stderr (`all` prints every one; `0` or unset, none).
//!
//! How the trace reads as a table is in [`crate::inspect::explain`], and
//! [`crate::inspect::to_dot_with`] draws it as a graph.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::backward::formula;
use super::OpKind;
use crate::backend::{record_kernels, KernelCall};
use crate::tensor::TensorId;
use crate::{DType, Tensor};

/// What the explainer prints for a leaf: the engine adds its gradient to `grad()`.
pub const LEAF_FORMULA: &str = "grad += g   (a leaf: the gradient is accumulated into .grad())";

/// One backward pass, node by node.
#[derive(Clone, Debug)]
pub struct BackwardTrace {
    /// Shape of the tensor `backward` was called on.
    pub root_shape: Vec<usize>,
    /// Its element type.
    pub dtype: DType,
    /// Every node that received a gradient, in the order the engine processed them (the
    /// reverse topological order: each node after every node that consumes it).
    pub nodes: Vec<NodeTrace>,
    /// Wall time of the pass (graph sort included), without the recorder's own norm work.
    pub total_time: Duration,
}

/// One node of a traced backward pass.
#[derive(Clone, Debug)]
pub struct NodeTrace {
    /// The tensor this node produced (or the leaf itself).
    pub id: TensorId,
    /// The op that produced it; `None` for a leaf, whose step accumulates into `grad()`.
    pub op: Option<OpKind>,
    /// Shape of the node's output (of the leaf, for a leaf).
    pub shape: Vec<usize>,
    /// The op's inputs, in [`Op::inputs`](super::Op::inputs) order (empty for a leaf).
    pub inputs: Vec<InputTrace>,
    /// L2 norm of the gradient arriving at this node (`g`, summed over all its consumers).
    pub grad_norm: f64,
    /// Bytes the node kept alive for backward ([`Op::saved_bytes`](super::Op::saved_bytes));
    /// 0 for a leaf.
    pub saved_bytes: usize,
    /// Time spent on this node: its gradient formula plus adding the results into the
    /// gradients waiting at its inputs.
    pub time: Duration,
    /// The kernels that ran for it, in order.
    pub kernels: Vec<KernelCall>,
}

/// One input of a traced node.
#[derive(Clone, Debug)]
pub struct InputTrace {
    /// The input tensor.
    pub id: TensorId,
    /// Its shape.
    pub shape: Vec<usize>,
    /// L2 norm of the gradient this node sent to it; `None` when the input needs no gradient
    /// (data, a detached or frozen tensor) or the formula sends none.
    pub grad_norm: Option<f64>,
}

impl NodeTrace {
    /// The op's name, or `"leaf"`.
    pub fn name(&self) -> &'static str {
        self.op.map(OpKind::name).unwrap_or("leaf")
    }

    /// The local derivative in one line (from [`formula`], beside the gradient code).
    pub fn formula(&self) -> &'static str {
        self.op.map(formula).unwrap_or(LEAF_FORMULA)
    }
}

impl BackwardTrace {
    /// The traced node that produced `id`, if it received a gradient in this pass.
    pub fn node(&self, id: TensorId) -> Option<&NodeTrace> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Total bytes held for backward by all nodes.
    pub fn saved_bytes(&self) -> usize {
        self.nodes.iter().map(|n| n.saved_bytes).sum()
    }
}

/// L2 norm, accumulated in f64 whatever the dtype. Reads the elements directly (no kernel),
/// so measuring does not show up in the kernel log.
pub(crate) fn l2_norm(t: &Tensor) -> f64 {
    t.to_vec_f64().iter().map(|v| v * v).sum::<f64>().sqrt()
}

thread_local! {
    /// Traces collected by the innermost running [`capture_traces`] on this thread.
    static CAPTURED: RefCell<Option<Vec<BackwardTrace>>> = const { RefCell::new(None) };
}

/// How many more backward passes `GLASSBOX_EXPLAIN` asks to print (read once per process).
fn env_budget() -> &'static AtomicUsize {
    static BUDGET: OnceLock<AtomicUsize> = OnceLock::new();
    BUDGET.get_or_init(|| AtomicUsize::new(parse_explain_env(std::env::var("GLASSBOX_EXPLAIN").ok().as_deref())))
}

/// `GLASSBOX_EXPLAIN`'s value as a count of passes: a number, `all`, or any other non-empty
/// value (`yes`, `true`) meaning 1.
fn parse_explain_env(value: Option<&str>) -> usize {
    match value.map(str::trim) {
        None | Some("") => 0,
        Some(v) if v.eq_ignore_ascii_case("all") => usize::MAX,
        Some(v) => v.parse().unwrap_or(1),
    }
}

/// Takes one pass from the environment budget, if any is left (`all` never runs out).
fn take_env_pass() -> bool {
    env_budget()
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| match n {
            0 => None,
            usize::MAX => Some(n),
            n => Some(n - 1),
        })
        .is_ok()
}

/// Runs `f` and returns, with its result, a trace of every backward pass it ran on this
/// thread, in order. Scopes nest: an inner scope keeps its own traces.
///
/// ```
/// use glassbox::{autograd::capture_traces, Tensor};
/// let x = Tensor::from_vec(vec![1.0, 2.0], &[2]).requires_grad_();
/// let ((), traces) = capture_traces(|| x.exp().sum_all().backward());
/// assert_eq!(traces.len(), 1);
/// let names: Vec<&str> = traces[0].nodes.iter().map(|n| n.name()).collect();
/// assert_eq!(names, ["sum", "exp", "leaf"]);
/// ```
pub fn capture_traces<R>(f: impl FnOnce() -> R) -> (R, Vec<BackwardTrace>) {
    /// Puts the outer scope's traces back, even if `f` panics.
    struct Restore(Option<Vec<BackwardTrace>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CAPTURED.with(|c| *c.borrow_mut() = self.0.take());
        }
    }
    let restore = Restore(CAPTURED.with(|c| c.borrow_mut().replace(Vec::new())));
    let result = f();
    let traces = CAPTURED.with(|c| c.borrow_mut().take()).unwrap_or_default();
    drop(restore);
    (result, traces)
}

impl Tensor {
    /// Runs [`backward`](Tensor::backward) and returns the trace of that pass: for each node
    /// in the order it ran, the op, shapes, local derivative, gradient norms in and out, bytes
    /// saved for backward, time and kernels. `println!("{trace}")` prints it as a table.
    ///
    /// ```
    /// use glassbox::Tensor;
    /// let w = Tensor::from_vec(vec![3.0, 4.0], &[2]).requires_grad_();
    /// let trace = w.mul_scalar(2.0).sum_all().backward_explained();
    /// assert_eq!(trace.nodes.len(), 3); // sum, affine, then the leaf w
    /// assert_eq!(trace.nodes[2].grad_norm, 8f64.sqrt()); // dw = [2, 2]
    /// ```
    pub fn backward_explained(&self) -> BackwardTrace {
        let ((), mut traces) = capture_traces(|| self.backward());
        traces.pop().expect("backward records one trace while capturing")
    }
}

/// Records one backward pass for the engine; exists only while tracing is on.
pub(crate) struct Recorder {
    started: Instant,
    /// Time spent measuring norms, subtracted from the total.
    overhead: Duration,
    trace: BackwardTrace,
    print: bool,
    capture: bool,
}

impl Recorder {
    /// A recorder if this pass should be traced: inside [`capture_traces`], or while the
    /// `GLASSBOX_EXPLAIN` budget lasts.
    pub(crate) fn start(root: &Tensor) -> Option<Recorder> {
        let capture = CAPTURED.with(|c| c.borrow().is_some());
        let print = take_env_pass();
        (capture || print).then(|| Recorder {
            started: Instant::now(),
            overhead: Duration::ZERO,
            trace: BackwardTrace {
                root_shape: root.shape().to_vec(),
                dtype: root.dtype(),
                nodes: Vec::new(),
                total_time: Duration::ZERO,
            },
            print,
            capture,
        })
    }

    /// Runs one node's backward step `run` on its incoming gradient `grad` and records it.
    /// `run` returns the gradients it sent to the node's inputs (empty for a leaf).
    pub(crate) fn node(&mut self, node: &Tensor, grad: Tensor, run: impl FnOnce(Tensor) -> Vec<Option<Tensor>>) {
        let measuring = Instant::now();
        let grad_norm = l2_norm(&grad);
        self.overhead += measuring.elapsed();

        let timer = Instant::now();
        let (input_grads, kernels) = record_kernels(|| run(grad));
        let time = timer.elapsed();

        let measuring = Instant::now();
        let (inputs, saved_bytes) = match node.op() {
            None => (Vec::new(), 0),
            Some(op) => {
                let inputs = op
                    .inputs()
                    .into_iter()
                    .zip(&input_grads)
                    .map(|(input, g)| InputTrace {
                        id: input.id(),
                        shape: input.shape().to_vec(),
                        grad_norm: g.as_ref().filter(|_| input.requires_grad()).map(l2_norm),
                    })
                    .collect();
                (inputs, op.saved_bytes())
            }
        };
        self.trace.nodes.push(NodeTrace {
            id: node.id(),
            op: node.op().map(|op| op.kind()),
            shape: node.shape().to_vec(),
            inputs,
            grad_norm,
            saved_bytes,
            time,
            kernels,
        });
        self.overhead += measuring.elapsed();
    }

    /// Hands the finished trace to the capture scope and/or prints it.
    pub(crate) fn finish(mut self) {
        self.trace.total_time = self.started.elapsed().saturating_sub(self.overhead);
        if self.print {
            eprintln!("{}", self.trace);
        }
        if self.capture {
            CAPTURED.with(|c| {
                if let Some(traces) = c.borrow_mut().as_mut() {
                    traces.push(self.trace);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_explain_env;

    #[test]
    fn explain_env_values_parse_to_pass_counts() {
        assert_eq!(parse_explain_env(None), 0);
        assert_eq!(parse_explain_env(Some("")), 0);
        assert_eq!(parse_explain_env(Some("0")), 0);
        assert_eq!(parse_explain_env(Some("1")), 1);
        assert_eq!(parse_explain_env(Some(" 3 ")), 3);
        assert_eq!(parse_explain_env(Some("ALL")), usize::MAX);
        assert_eq!(parse_explain_env(Some("yes")), 1);
    }
}
