//! The backward pass: topological order, then one reverse walk.

use std::collections::{HashMap, HashSet};

use super::accumulate;
use super::anomaly;
use super::backward::op_backward;
use super::no_grad;
use super::trace::Recorder;
use super::Op;
use crate::tensor::TensorId;
use crate::Tensor;

impl Tensor {
    /// Computes the gradient of this scalar with respect to every leaf that requires one,
    /// adding it to each leaf's [`grad`](Tensor::grad).
    ///
    /// Panics if the tensor has more than one element (use
    /// [`backward_with_grad`](Tensor::backward_with_grad) to seed a non-scalar) or does not
    /// require a gradient.
    pub fn backward(&self) {
        assert!(
            self.numel() == 1,
            "backward: called on a tensor of shape {:?} ({} elements); backward() needs a scalar. \
             Reduce it first (e.g. .sum_all()) or pass the upstream gradient with backward_with_grad",
            self.shape(),
            self.numel()
        );
        self.backward_with_grad(&self.ones_like());
    }

    /// Backpropagates `grad` (shaped like `self`) through the graph that produced `self`.
    pub fn backward_with_grad(&self, grad: &Tensor) {
        assert!(
            self.requires_grad(),
            "backward: tensor of shape {:?} does not require grad: no input was marked with \
             requires_grad_(), or it was computed inside no_grad",
            self.shape()
        );
        assert_eq!(
            grad.shape(),
            self.shape(),
            "backward_with_grad: upstream gradient has shape {:?} but the tensor has shape {:?}",
            grad.shape(),
            self.shape()
        );
        self.check_same_kind("backward_with_grad", grad);
        no_grad(|| run_backward(self, grad.clone()));
    }
}

/// Nodes reachable from `root` through tensors that require grad, each after every node that
/// consumes it (so a node's gradient is complete when its turn comes).
fn topological_order(root: &Tensor) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut visited: HashSet<TensorId> = HashSet::new();
    // Iterative post-order DFS: (node, whether its inputs have been pushed).
    let mut stack = vec![(root.clone(), false)];
    while let Some((node, expanded)) = stack.pop() {
        if expanded {
            order.push(node);
            continue;
        }
        if !visited.insert(node.id()) {
            continue;
        }
        stack.push((node.clone(), true));
        if let Some(op) = node.op() {
            for input in op.inputs() {
                if input.requires_grad() && !visited.contains(&input.id()) {
                    stack.push((input.clone(), false));
                }
            }
        }
    }
    order.reverse();
    order
}

fn run_backward(root: &Tensor, seed: Tensor) {
    // Anomaly mode checks each gradient as the formula that made it returns; the ops inside
    // the formulas are not checked one by one (that would blame `div` rather than the
    // backward of `log`).
    let anomaly = anomaly::is_anomaly_mode();
    let _quiet = anomaly::QuietGuard::new();
    if anomaly {
        anomaly::check_seed(root, &seed);
    }
    // None unless this pass is being explained (see `trace.rs`): the only cost when off.
    let mut recorder = Recorder::start(root);
    let order = topological_order(root);
    let mut pending: HashMap<TensorId, Tensor> = HashMap::new();
    pending.insert(root.id(), seed);
    for node in order {
        // Removing frees each intermediate gradient as soon as its node is done.
        let Some(grad) = pending.remove(&node.id()) else { continue };
        match recorder.as_mut() {
            None => {
                backward_node(&node, grad, &mut pending, Checks { anomaly, recording: false });
            }
            Some(recorder) => recorder.node(&node, grad, |grad| {
                backward_node(&node, grad, &mut pending, Checks { anomaly, recording: true })
            }),
        }
    }
    if let Some(recorder) = recorder {
        recorder.finish();
    }
}

/// Who watches the walk: anomaly mode checks every gradient a formula returns, and a
/// recorder (`trace.rs`) keeps them; both need each formula's own result.
#[derive(Clone, Copy)]
struct Checks {
    anomaly: bool,
    recording: bool,
}

/// One step of the walk: a leaf accumulates `grad`; an op node asks its formula for the input
/// gradients and adds each to the gradient waiting at that input. Returns the input gradients
/// (empty for a leaf) for the recorder. With `anomaly`, each summed gradient is checked.
fn backward_node(
    node: &Tensor,
    grad: Tensor,
    pending: &mut HashMap<TensorId, Tensor>,
    checks: Checks,
) -> Vec<Option<Tensor>> {
    let Some(op) = node.op() else {
        node.accumulate_grad(grad);
        return Vec::new();
    };
    // A slice whose input already has a gradient waiting adds straight into that gradient's
    // slice, rather than building a full-width gradient of zeros around it to add.
    if let Op::Narrow { input, dim, start } = op {
        if !checks.anomaly && !checks.recording && input.requires_grad() {
            if let Some(existing) = pending.remove(&input.id()) {
                pending.insert(input.id(), accumulate::add_into_slice(existing, *dim, *start, &grad));
                return vec![None];
            }
        }
    }
    let anomaly = checks.anomaly;
    let input_grads = op_backward(op, node, &grad);
    for (i, (input, input_grad)) in op.inputs().into_iter().zip(&input_grads).enumerate() {
        let Some(input_grad) = input_grad else { continue };
        if !input.requires_grad() {
            continue;
        }
        debug_assert_eq!(input_grad.shape(), input.shape(), "gradient shape of {:?}", op.kind());
        let summed = match pending.remove(&input.id()) {
            Some(existing) => accumulate::add_into(existing, input_grad),
            None => input_grad.clone(),
        };
        if anomaly {
            // The sum is checked too: two finite gradients can overflow when added.
            anomaly::check_gradient(op, node, &grad, i, &summed);
        }
        pending.insert(input.id(), summed);
    }
    input_grads
}
