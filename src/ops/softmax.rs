//! Softmax and log-softmax along any dim. The kernels work on rows, so the front door views
//! the tensor with `dim` last (packing it if that view is not row-major), and hands back the
//! result through the inverse view.

use super::dense;
use crate::autograd::Op;
use crate::backend;
use crate::tensor::Layout;
use crate::Tensor;

impl Tensor {
    /// `e^x / sum(e^x)` along `dim`, computed with the row max subtracted so no logit
    /// overflows.
    pub fn softmax(&self, dim: usize) -> Tensor {
        self.softmax_op(dim, false)
    }

    /// `x - ln(sum(e^x))` along `dim`: the log of softmax without its underflow.
    pub fn log_softmax(&self, dim: usize) -> Tensor {
        self.softmax_op(dim, true)
    }

    fn softmax_op(&self, dim: usize, log: bool) -> Tensor {
        let name = if log { "log_softmax" } else { "softmax" };
        let dim = self.check_dim(name, dim);
        let last = self.rank() - 1;
        let moved = self.layout().transpose(dim, last);
        let rows = dense(self, &moved);
        let out = backend::softmax_rows(&rows, self.shape()[dim], log);
        let layout = Layout::contiguous(moved.shape()).transpose(dim, last);
        let op =
            if log { Op::LogSoftmax { input: self.clone(), dim } } else { Op::Softmax { input: self.clone(), dim } };
        Tensor::from_op(out, layout, op)
    }
}

/// Input gradient of softmax (or log-softmax) along `dim`, from its output `y` and the
/// upstream gradient `g`; formulas in `backend::cpu::softmax::softmax_backward_rows`.
pub(crate) fn softmax_backward(y: &Tensor, g: &Tensor, dim: usize, log: bool) -> Tensor {
    let last = y.rank() - 1;
    let y_rows = dense(y, &y.layout().transpose(dim, last));
    let g_rows = dense(g, &g.layout().transpose(dim, last));
    let moved_shape = y.layout().transpose(dim, last).shape().to_vec();
    let out = backend::softmax_backward_rows(&y_rows, &g_rows, y.shape()[dim], log);
    Tensor::from_storage(out, Layout::contiguous(&moved_shape).transpose(dim, last))
}
