//! Views (reshape, transpose, permute, narrow, broadcast_to, unsqueeze, squeeze: new layouts
//! over the same storage, no copy), copies (contiguous, to_dtype) and joins (concat, stack,
//! split).

use crate::autograd::Op;
use crate::backend;
use crate::tensor::{DType, Layout};
use crate::Tensor;

impl Tensor {
    /// The same elements in `shape` (same element count). A view when `self` is contiguous;
    /// otherwise the elements are first copied into row-major order.
    pub fn reshape(&self, shape: &[usize]) -> Tensor {
        let numel = crate::tensor::numel_of("reshape", shape);
        assert_eq!(
            numel,
            self.numel(),
            "reshape: cannot view shape {:?} ({} elements) as {:?} ({} elements)",
            self.shape(),
            self.numel(),
            shape,
            numel
        );
        if self.shape() == shape {
            return self.clone();
        }
        match self.layout().reshape(shape) {
            Some(layout) => self.view_op(layout, Op::Reshape(self.clone())),
            None => self.contiguous().reshape(shape),
        }
    }

    /// Flattens dims `start..` into one: `[a, b, c, d].flatten_from(1)` is `[a, b*c*d]`.
    pub fn flatten_from(&self, start: usize) -> Tensor {
        assert!(
            start <= self.rank(),
            "flatten_from: start {start} is past rank {} (shape {:?})",
            self.rank(),
            self.shape()
        );
        let mut shape = self.shape()[..start].to_vec();
        shape.push(self.shape()[start..].iter().product());
        self.reshape(&shape)
    }

    /// Swaps dims `dim0` and `dim1` (a view).
    pub fn transpose(&self, dim0: usize, dim1: usize) -> Tensor {
        self.check_dim("transpose", dim0);
        self.check_dim("transpose", dim1);
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(dim0, dim1);
        self.permute(&perm)
    }

    /// Swaps the last two dims (a view): the matrix transpose, batched.
    pub fn t(&self) -> Tensor {
        assert!(self.rank() >= 2, "t: needs at least 2 dims, got shape {:?}", self.shape());
        self.transpose(self.rank() - 2, self.rank() - 1)
    }

    /// Reorders dims: dim `i` of the result is dim `perm[i]` of `self` (a view).
    pub fn permute(&self, perm: &[usize]) -> Tensor {
        let mut seen = vec![false; self.rank()];
        let valid = perm.len() == self.rank()
            && perm.iter().all(|&p| p < self.rank() && !std::mem::replace(&mut seen[p], true));
        assert!(
            valid,
            "permute: {:?} is not a permutation of the {} dims of shape {:?}",
            perm,
            self.rank(),
            self.shape()
        );
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            return self.clone();
        }
        self.view_op(self.layout().permute(perm), Op::Permute { input: self.clone(), perm: perm.to_vec() })
    }

    /// Elements `start..start + len` along `dim` (a view).
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Tensor {
        self.check_dim("narrow", dim);
        let size = self.shape()[dim];
        // checked_add: a huge start must be reported, not overflow inside the check.
        if start.checked_add(len).is_none_or(|end| end > size) {
            let range = match start.checked_add(len) {
                Some(end) => format!("{start}..{end}"),
                None => format!("{start}..{start}+{len}"),
            };
            panic!("narrow: range {range} is out of bounds for dim {dim} of size {size} (shape {:?})", self.shape());
        }
        self.view_op(self.layout().narrow(dim, start, len), Op::Narrow { input: self.clone(), dim, start })
    }

    /// Stretches size-1 dims (and adds leading dims) to reach `shape`, without copying:
    /// stretched dims get stride 0.
    pub fn broadcast_to(&self, shape: &[usize]) -> Tensor {
        if self.shape() == shape {
            return self.clone();
        }
        let layout = self.layout().broadcast_to(shape).unwrap_or_else(|| {
            panic!(
                "broadcast_to: shape {:?} cannot be broadcast to {:?} (only size-1 dims stretch)",
                self.shape(),
                shape
            )
        });
        self.view_op(layout, Op::Expand(self.clone()))
    }

    /// Alias of [`broadcast_to`](Tensor::broadcast_to), PyTorch's name.
    pub fn expand(&self, shape: &[usize]) -> Tensor {
        self.broadcast_to(shape)
    }

    /// Inserts a dim of size 1 at position `dim` (a view).
    pub fn unsqueeze(&self, dim: usize) -> Tensor {
        assert!(
            dim <= self.rank(),
            "unsqueeze: dim {dim} is out of range for shape {:?} (at most {})",
            self.shape(),
            self.rank()
        );
        let (mut shape, mut strides) = (self.shape().to_vec(), self.layout().strides().to_vec());
        shape.insert(dim, 1);
        strides.insert(dim, 0);
        let layout = Layout::from_parts(shape, strides, self.layout().offset());
        self.view_op(layout, Op::Reshape(self.clone()))
    }

    /// Removes dim `dim`, which must have size 1 (a view).
    pub fn squeeze(&self, dim: usize) -> Tensor {
        self.check_dim("squeeze", dim);
        assert!(
            self.shape()[dim] == 1,
            "squeeze: dim {dim} has size {} (shape {:?}); only size-1 dims can be removed",
            self.shape()[dim],
            self.shape()
        );
        let (mut shape, mut strides) = (self.shape().to_vec(), self.layout().strides().to_vec());
        shape.remove(dim);
        strides.remove(dim);
        let layout = Layout::from_parts(shape, strides, self.layout().offset());
        self.view_op(layout, Op::Reshape(self.clone()))
    }

    /// `self` if already contiguous, else a row-major copy.
    pub fn contiguous(&self) -> Tensor {
        if self.is_contiguous() {
            return self.clone();
        }
        let out = backend::contiguous(&self.storage(), self.layout());
        Tensor::from_op(out, Layout::contiguous(self.shape()), Op::Copy(self.clone()))
    }

    /// The same values as `dtype` (a copy unless the dtype already matches).
    pub fn to_dtype(&self, dtype: DType) -> Tensor {
        if self.dtype() == dtype {
            return self.clone();
        }
        let out = backend::cast(&self.storage(), self.layout(), dtype);
        Tensor::from_op(out, Layout::contiguous(self.shape()), Op::Cast(self.clone()))
    }

    /// Joins `parts` along `dim`; all other dims must match.
    pub fn concat(parts: &[Tensor], dim: usize) -> Tensor {
        assert!(!parts.is_empty(), "concat: needs at least one tensor");
        let first = &parts[0];
        first.check_dim("concat", dim);
        for (i, p) in parts.iter().enumerate() {
            first.check_same_kind("concat", p);
            let same_elsewhere =
                p.rank() == first.rank() && (0..first.rank()).all(|d| d == dim || p.shape()[d] == first.shape()[d]);
            assert!(
                same_elsewhere,
                "concat: part {i} has shape {:?} but part 0 has {:?}; all dims except {dim} must match",
                p.shape(),
                first.shape()
            );
        }
        let mut shape = first.shape().to_vec();
        shape[dim] = parts.iter().map(|p| p.shape()[dim]).sum();
        let out_layout = Layout::contiguous(&shape);
        let mut out = backend::zeros_on(out_layout.numel(), first.dtype(), first.device());
        let mut start = 0;
        for p in parts {
            let len = p.shape()[dim];
            backend::assign(&mut out, &out_layout.narrow(dim, start, len), &p.storage(), p.layout());
            start += len;
        }
        Tensor::from_op(out, out_layout, Op::Concat { inputs: parts.to_vec(), dim })
    }

    /// Joins same-shaped `parts` along a new dim `dim`.
    pub fn stack(parts: &[Tensor], dim: usize) -> Tensor {
        assert!(!parts.is_empty(), "stack: needs at least one tensor");
        assert!(
            dim <= parts[0].rank(),
            "stack: dim {dim} is out of range for parts of shape {:?} (at most {})",
            parts[0].shape(),
            parts[0].rank()
        );
        for (i, p) in parts.iter().enumerate() {
            assert_eq!(
                p.shape(),
                parts[0].shape(),
                "stack: part {i} has shape {:?} but part 0 has {:?}",
                p.shape(),
                parts[0].shape()
            );
        }
        let lifted: Vec<Tensor> = parts.iter().map(|p| p.unsqueeze(dim)).collect();
        Tensor::concat(&lifted, dim)
    }

    /// Views of consecutive slices of `size` along `dim` (the last may be shorter).
    pub fn split(&self, size: usize, dim: usize) -> Vec<Tensor> {
        self.check_dim("split", dim);
        assert!(size > 0, "split: size must be positive (shape {:?})", self.shape());
        let total = self.shape()[dim];
        (0..total).step_by(size).map(|start| self.narrow(dim, start, size.min(total - start))).collect()
    }
}
