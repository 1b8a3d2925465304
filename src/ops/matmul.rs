//! Matrix product over the last two dims, with broadcast batch dims.

use super::dense;
use crate::autograd::Op;
use crate::backend;
use crate::tensor::{broadcast_shapes, Layout};
use crate::Tensor;

impl Tensor {
    /// `self @ other`: `[.., M, K] x [.., K, N] -> [.., M, N]`, batch dims broadcast (NumPy
    /// rules). Both operands need at least two dims; transposed or sliced views are read in
    /// place.
    ///
    /// ```
    /// use glassbox::Tensor;
    /// let a = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    /// let b = Tensor::ones(&[3, 1]);
    /// assert_eq!(a.matmul(&b).to_vec(), vec![6.0, 15.0]);
    /// ```
    pub fn matmul(&self, other: &Tensor) -> Tensor {
        self.check_same_kind("matmul", other);
        let (ra, rb) = (self.rank(), other.rank());
        assert!(
            ra >= 2 && rb >= 2,
            "matmul: needs operands with at least 2 dims, got shapes {:?} and {:?} (unsqueeze a vector to [1, n] or [n, 1])",
            self.shape(),
            other.shape()
        );
        let (m, k) = (self.shape()[ra - 2], self.shape()[ra - 1]);
        let (k2, n) = (other.shape()[rb - 2], other.shape()[rb - 1]);
        assert!(
            k == k2,
            "matmul: shapes {:?} and {:?} do not match (inner dims {k} vs {k2})",
            self.shape(),
            other.shape()
        );
        let batch = broadcast_shapes(&self.shape()[..ra - 2], &other.shape()[..rb - 2]).unwrap_or_else(|| {
            panic!("matmul: batch dims of {:?} and {:?} cannot be broadcast together", self.shape(), other.shape())
        });
        let with = |tail: [usize; 2]| -> Vec<usize> { batch.iter().copied().chain(tail).collect() };
        let la = self.layout().broadcast_to(&with([m, k])).expect("batch dims broadcast");
        let lb = other.layout().broadcast_to(&with([k, n])).expect("batch dims broadcast");
        let out = backend::matmul(&self.storage(), &la, &other.storage(), &lb);
        Tensor::from_op(out, Layout::contiguous(&with([m, n])), Op::Matmul(self.clone(), other.clone()))
    }
}

impl Tensor {
    /// A linear layer's map `self W^T + b` over the last dim: `self` is `[.., in]`, `weight`
    /// `[out, in]` (PyTorch's layout), `bias` `[out]`; the result is `[.., out]`. The bias is
    /// added inside the GEMM, not in a second pass.
    pub fn linear(&self, weight: &Tensor, bias: &Tensor) -> Tensor {
        self.check_same_kind("linear", weight);
        self.check_same_kind("linear", bias);
        assert!(weight.rank() == 2, "linear: weight must be [out, in], got shape {:?}", weight.shape());
        let (outputs, inputs) = (weight.shape()[0], weight.shape()[1]);
        assert!(
            self.rank() >= 1 && self.shape()[self.rank() - 1] == inputs,
            "linear: input of shape {:?} does not end in {inputs} features (weight {:?})",
            self.shape(),
            weight.shape()
        );
        assert!(bias.shape() == [outputs], "linear: bias has shape {:?}, expected [{outputs}]", bias.shape());
        let rows = self.numel() / inputs.max(1);
        let out = backend::linear(
            &dense(self, self.layout()),
            &dense(weight, weight.layout()),
            &dense(bias, bias.layout()),
            rows,
            inputs,
            outputs,
        );
        let mut shape = self.shape().to_vec();
        *shape.last_mut().expect("rank >= 1") = outputs;
        let op = Op::Linear { input: self.clone(), weight: weight.clone(), bias: bias.clone() };
        Tensor::from_op(out, Layout::contiguous(&shape), op)
    }
}
