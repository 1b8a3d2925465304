//! Indexing: `index_select` (and embedding lookup, which is `index_select` on dim 0 of a
//! table), `gather`. Their gradients scatter back with `index_add` / `scatter_add`.

use std::sync::Arc;

use super::dense;
use crate::autograd::Op;
use crate::backend;
use crate::tensor::{DType, Layout};
use crate::Tensor;

impl Tensor {
    /// The slices at `indices` along `dim`, in that order (an index may repeat).
    pub fn index_select(&self, dim: usize, indices: &[usize]) -> Tensor {
        let dim = self.check_dim("index_select", dim);
        let size = self.shape()[dim];
        if let Some((i, &bad)) = indices.iter().enumerate().find(|(_, &v)| v >= size) {
            panic!(
                "index_select: index {i} is {bad}, out of range for dim {dim} of size {size} (shape {:?})",
                self.shape()
            );
        }
        let out = backend::index_select(&self.storage(), self.layout(), dim, indices);
        let mut shape = self.shape().to_vec();
        shape[dim] = indices.len();
        let op = Op::IndexSelect { input: self.clone(), dim, indices: Arc::from(indices) };
        Tensor::from_op(out, Layout::contiguous(&shape), op)
    }

    /// Embedding lookup: `self` is a `[vocab, dim]` table, `ids` (laid out in `ids_shape`)
    /// pick rows; the result has shape `ids_shape + [dim]`.
    pub fn embedding(&self, ids: &[usize], ids_shape: &[usize]) -> Tensor {
        assert!(self.rank() == 2, "embedding: the table must be [vocab, dim], got shape {:?}", self.shape());
        let count: usize = ids_shape.iter().product();
        assert!(count == ids.len(), "embedding: {} ids cannot fill shape {:?}", ids.len(), ids_shape);
        let vocab = self.shape()[0];
        if let Some((i, &bad)) = ids.iter().enumerate().find(|(_, &id)| id >= vocab) {
            panic!(
                "embedding: id {bad} at position {i} is out of range for a vocabulary of {vocab} rows (table shape {:?})",
                self.shape()
            );
        }
        let mut shape = ids_shape.to_vec();
        shape.push(self.shape()[1]);
        self.index_select(0, ids).reshape(&shape)
    }

    /// `out[p] = self[p with coordinate dim replaced by index[p]]` for every position `p` of
    /// `index_shape` (same rank as `self`; other dims no larger than `self`'s).
    pub fn gather(&self, dim: usize, index: &[usize], index_shape: &[usize]) -> Tensor {
        let dim = self.check_dim("gather", dim);
        assert!(
            index_shape.len() == self.rank()
                && index_shape.iter().zip(self.shape()).enumerate().all(|(d, (&i, &s))| d == dim || i <= s),
            "gather: index shape {:?} must have rank {} and no dim (other than {dim}) larger than the input's {:?}",
            index_shape,
            self.rank(),
            self.shape()
        );
        let count: usize = index_shape.iter().product();
        assert!(count == index.len(), "gather: {} index values cannot fill shape {:?}", index.len(), index_shape);
        let size = self.shape()[dim];
        if let Some((i, &bad)) = index.iter().enumerate().find(|(_, &v)| v >= size) {
            panic!(
                "gather: index value {bad} at position {i} is out of range for dim {dim} of size {size} (shape {:?})",
                self.shape()
            );
        }
        let out = backend::gather(&self.storage(), self.layout(), dim, index, index_shape);
        let op = Op::Gather { input: self.clone(), dim, index: Arc::from(index) };
        Tensor::from_op(out, Layout::contiguous(index_shape), op)
    }
}

/// Zeros of `shape` plus `src` added at `indices` along `dim` (the adjoint of index_select).
pub(crate) fn index_add_zeros(shape: &[usize], dtype: DType, dim: usize, indices: &[usize], src: &Tensor) -> Tensor {
    debug_assert_eq!(src.dtype(), dtype);
    let out = backend::index_add(shape, dim, indices, &dense(src, src.layout()));
    Tensor::from_storage(out, Layout::contiguous(shape))
}

/// Zeros of `shape` plus each element of `src` added where gather read it (the adjoint of
/// gather).
pub(crate) fn scatter_add_zeros(shape: &[usize], dtype: DType, dim: usize, index: &[usize], src: &Tensor) -> Tensor {
    debug_assert_eq!(src.dtype(), dtype);
    let out = backend::scatter_add(shape, dim, index, src.shape(), &dense(src, src.layout()));
    Tensor::from_storage(out, Layout::contiguous(shape))
}
