//! Reductions: sum, mean and max over dimensions, and `sum_to_shape` (the adjoint of
//! broadcasting, which every broadcast op's gradient uses).

use crate::autograd::{Op, ReduceOp};
use crate::backend::{self, ReduceKind};
use crate::tensor::Layout;
use crate::Tensor;

impl Tensor {
    /// Sorted, de-duplicated dims, each checked against the rank.
    fn reduce_dims(&self, op: &str, dims: &[usize]) -> Vec<usize> {
        let mut sorted: Vec<usize> = dims.iter().map(|&d| self.check_dim(op, d)).collect();
        sorted.sort_unstable();
        sorted.dedup();
        sorted
    }

    fn reduce_op(&self, op: ReduceOp, name: &str, dims: &[usize], keepdim: bool) -> Tensor {
        let dims = self.reduce_dims(name, dims);
        if op == ReduceOp::Max {
            for &d in &dims {
                assert!(
                    self.shape()[d] > 0,
                    "{name}: cannot take the max over dim {d} of size 0 (shape {:?})",
                    self.shape()
                );
            }
        }
        let kind = if op == ReduceOp::Max { ReduceKind::Max } else { ReduceKind::Sum };
        let mut out = backend::reduce(kind, &self.storage(), self.layout(), &dims);
        if op == ReduceOp::Mean {
            let count: usize = dims.iter().map(|&d| self.shape()[d]).product();
            out = backend::unary(
                crate::autograd::UnaryOp::Affine { mul: 1.0 / count as f64, add: 0.0 },
                &out,
                &Layout::contiguous(&[out.len()]),
            );
        }
        let shape: Vec<usize> = self
            .shape()
            .iter()
            .enumerate()
            .filter_map(|(d, &n)| match (dims.contains(&d), keepdim) {
                (false, _) => Some(n),
                (true, true) => Some(1),
                (true, false) => None,
            })
            .collect();
        Tensor::from_op(out, Layout::contiguous(&shape), Op::Reduce { op, input: self.clone(), dims, keepdim })
    }

    /// Sum over `dims`; with `keepdim` the reduced dims stay as size 1.
    pub fn sum(&self, dims: &[usize], keepdim: bool) -> Tensor {
        self.reduce_op(ReduceOp::Sum, "sum", dims, keepdim)
    }

    /// Mean over `dims`.
    pub fn mean(&self, dims: &[usize], keepdim: bool) -> Tensor {
        self.reduce_op(ReduceOp::Mean, "mean", dims, keepdim)
    }

    /// Max over `dims` (gradient split evenly among tied maxima, as `torch.amax`).
    pub fn max(&self, dims: &[usize], keepdim: bool) -> Tensor {
        self.reduce_op(ReduceOp::Max, "max", dims, keepdim)
    }

    /// Sum of all elements, as a scalar tensor.
    pub fn sum_all(&self) -> Tensor {
        self.sum(&(0..self.rank()).collect::<Vec<_>>(), false)
    }

    /// Mean of all elements, as a scalar tensor.
    pub fn mean_all(&self) -> Tensor {
        self.mean(&(0..self.rank()).collect::<Vec<_>>(), false)
    }

    /// Sums away the dims along which `shape` was broadcast to give `self.shape()`: the
    /// adjoint of [`broadcast_to`](Tensor::broadcast_to). Panics if `shape` does not
    /// broadcast to `self.shape()`.
    pub fn sum_to_shape(&self, shape: &[usize]) -> Tensor {
        if self.shape() == shape {
            return self.clone();
        }
        let rank = self.rank();
        assert!(
            shape.len() <= rank && Layout::contiguous(shape).broadcast_to(self.shape()).is_some(),
            "sum_to_shape: shape {:?} does not broadcast to {:?}",
            shape,
            self.shape()
        );
        let lead = rank - shape.len();
        let dims: Vec<usize> =
            (0..rank).filter(|&d| d < lead || (shape[d - lead] == 1 && self.shape()[d] != 1)).collect();
        self.sum(&dims, true).reshape(shape)
    }

    /// Index of the largest element along `dim` for every other position (row-major over the
    /// remaining dims); ties go to the lowest index. Not differentiable.
    pub fn argmax(&self, dim: usize) -> Vec<usize> {
        let dim = self.check_dim("argmax", dim);
        let n = self.shape()[dim];
        assert!(n > 0, "argmax: dim {dim} has size 0 (shape {:?})", self.shape());
        let moved = self.transpose(dim, self.rank() - 1).contiguous().to_vec_f64();
        moved
            .chunks(n)
            .map(|row| {
                let mut best = 0;
                for (i, &v) in row.iter().enumerate() {
                    if v > row[best] || (v.is_nan() && !row[best].is_nan()) {
                        best = i;
                    }
                }
                best
            })
            .collect()
    }
}
