//! `Layout`: how a flat buffer is seen as an n-dimensional array.
//!
//! Element `[i0, i1, ..]` of a tensor lives at `offset + i0 * strides[0] + i1 * strides[1] + ..`
//! in its storage. Every view (transpose, permute, narrow, broadcast, reshape of a contiguous
//! tensor) is a new `Layout` over the same storage: no element is copied. A stride of 0 repeats
//! one element along a dimension, which is how broadcasting costs nothing.

/// Shape, strides and offset of a tensor's view into its storage (strides counted in elements).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    shape: Vec<usize>,
    strides: Vec<usize>,
    offset: usize,
}

/// Row-major strides of a contiguous array of `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; shape.len()];
    let mut step = 1;
    for (stride, &dim) in strides.iter_mut().zip(shape).rev() {
        *stride = step;
        step *= dim;
    }
    strides
}

/// The number of elements of `shape`, or `None` when its dims are too large to index: the
/// product of its non-zero dims must fit in `usize`. (Requiring that even of a shape with a
/// zero dim means every partial product, such as a stride, fits too, in whatever order the
/// dims are multiplied.)
///
/// ```
/// use glassbox::tensor::checked_numel;
/// assert_eq!(checked_numel(&[2, 3]), Some(6));
/// assert_eq!(checked_numel(&[]), Some(1));
/// assert_eq!(checked_numel(&[4, 0, 5]), Some(0));
/// assert_eq!(checked_numel(&[usize::MAX, 2, 0]), None);
/// ```
pub fn checked_numel(shape: &[usize]) -> Option<usize> {
    let nonzero = shape.iter().filter(|&&d| d != 0).try_fold(1usize, |acc, &d| acc.checked_mul(d))?;
    Some(if shape.contains(&0) { 0 } else { nonzero })
}

/// The shape two shapes broadcast to under NumPy rules (align trailing dims; a dim of 1
/// stretches), or `None` if they are incompatible.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i < rank - a.len() { 1 } else { a[i - (rank - a.len())] };
        let db = if i < rank - b.len() { 1 } else { b[i - (rank - b.len())] };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

impl Layout {
    /// A fresh row-major layout of `shape` starting at element 0.
    pub fn contiguous(shape: &[usize]) -> Layout {
        Layout { shape: shape.to_vec(), strides: contiguous_strides(shape), offset: 0 }
    }

    /// A layout from raw parts; the caller vouches that every index stays inside the storage.
    pub fn from_parts(shape: Vec<usize>, strides: Vec<usize>, offset: usize) -> Layout {
        assert_eq!(shape.len(), strides.len(), "Layout: shape and strides differ in rank");
        Layout { shape, strides, offset }
    }

    /// The size of each dimension.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The step in elements between neighbours along each dimension.
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }

    /// Where element `[0, 0, ..]` lives in the storage.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements seen through this layout.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when the elements are packed row-major with no gaps (the offset may be non-zero).
    /// Size-1 dimensions may have any stride, as they are never stepped over.
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1;
        for (&dim, &stride) in self.shape.iter().zip(&self.strides).rev() {
            if dim != 1 && stride != expected {
                return false;
            }
            expected *= dim;
        }
        true
    }

    /// One past the largest storage index this layout touches (0 for an empty view).
    pub fn storage_extent(&self) -> usize {
        if self.numel() == 0 {
            return 0;
        }
        self.offset + self.shape.iter().zip(&self.strides).map(|(&d, &s)| (d - 1) * s).sum::<usize>() + 1
    }

    /// The same elements with dimensions `dim0` and `dim1` swapped.
    pub fn transpose(&self, dim0: usize, dim1: usize) -> Layout {
        let mut out = self.clone();
        out.shape.swap(dim0, dim1);
        out.strides.swap(dim0, dim1);
        out
    }

    /// The same elements with dimensions reordered: new dim `i` is old dim `perm[i]`.
    pub fn permute(&self, perm: &[usize]) -> Layout {
        Layout {
            shape: perm.iter().map(|&p| self.shape[p]).collect(),
            strides: perm.iter().map(|&p| self.strides[p]).collect(),
            offset: self.offset,
        }
    }

    /// Elements `start..start + len` along `dim`.
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Layout {
        let mut out = self.clone();
        out.offset += start * self.strides[dim];
        out.shape[dim] = len;
        out
    }

    /// This layout stretched to `shape` (NumPy rules) by giving stretched dims stride 0, or
    /// `None` if it cannot be.
    pub fn broadcast_to(&self, shape: &[usize]) -> Option<Layout> {
        if shape.len() < self.rank() {
            return None;
        }
        let lead = shape.len() - self.rank();
        let mut strides = vec![0; shape.len()];
        for (i, &target) in shape.iter().enumerate().skip(lead) {
            let (dim, stride) = (self.shape[i - lead], self.strides[i - lead]);
            strides[i] = if dim == target {
                stride
            } else if dim == 1 {
                0
            } else {
                return None;
            };
        }
        Some(Layout { shape: shape.to_vec(), strides, offset: self.offset })
    }

    /// The same elements seen with another shape of equal size, if possible without a copy
    /// (always possible for a contiguous layout).
    pub fn reshape(&self, shape: &[usize]) -> Option<Layout> {
        if self.is_contiguous() {
            Some(Layout { shape: shape.to_vec(), strides: contiguous_strides(shape), offset: self.offset })
        } else {
            None
        }
    }

    /// Storage index of the element at multi-index `index`.
    pub fn index_of(&self, index: &[usize]) -> usize {
        self.offset + index.iter().zip(&self.strides).map(|(i, s)| i * s).sum::<usize>()
    }

    /// Storage indices of every element, in row-major order of this layout's shape.
    pub fn offsets(&self) -> StridedOffsets {
        StridedOffsets::new(self)
    }
}

/// Iterator over the storage indices of a layout's elements in row-major order.
pub struct StridedOffsets {
    shape: Vec<usize>,
    strides: Vec<usize>,
    index: Vec<usize>,
    next: Option<usize>,
}

impl StridedOffsets {
    fn new(layout: &Layout) -> StridedOffsets {
        let next = if layout.numel() == 0 { None } else { Some(layout.offset) };
        StridedOffsets {
            shape: layout.shape.clone(),
            strides: layout.strides.clone(),
            index: vec![0; layout.rank()],
            next,
        }
    }
}

impl Iterator for StridedOffsets {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let current = self.next?;
        // Odometer step: bump the last index, carrying into earlier dims.
        let mut offset = current;
        let mut dim = self.shape.len();
        loop {
            if dim == 0 {
                self.next = None;
                break;
            }
            dim -= 1;
            self.index[dim] += 1;
            offset += self.strides[dim];
            if self.index[dim] < self.shape[dim] {
                self.next = Some(offset);
                break;
            }
            offset -= self.strides[dim] * self.shape[dim];
            self.index[dim] = 0;
        }
        Some(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_of_contiguous_is_not_contiguous_and_walks_columns() {
        let l = Layout::contiguous(&[2, 3]);
        let t = l.transpose(0, 1);
        assert!(!t.is_contiguous());
        assert_eq!(t.offsets().collect::<Vec<_>>(), vec![0, 3, 1, 4, 2, 5]);
    }

    #[test]
    fn broadcast_gives_zero_strides() {
        let l = Layout::contiguous(&[3]);
        let b = l.broadcast_to(&[2, 3]).unwrap();
        assert_eq!(b.strides(), &[0, 1]);
        assert_eq!(b.offsets().collect::<Vec<_>>(), vec![0, 1, 2, 0, 1, 2]);
        assert!(Layout::contiguous(&[2]).broadcast_to(&[3]).is_none());
    }

    #[test]
    fn broadcast_shapes_follows_numpy_rules() {
        assert_eq!(broadcast_shapes(&[4, 1, 3], &[2, 1]), Some(vec![4, 2, 3]));
        assert_eq!(broadcast_shapes(&[], &[2]), Some(vec![2]));
        assert_eq!(broadcast_shapes(&[3], &[4]), None);
    }

    #[test]
    fn narrow_moves_the_offset() {
        let l = Layout::contiguous(&[4, 5]).narrow(1, 2, 2);
        assert_eq!(l.offsets().collect::<Vec<_>>(), vec![2, 3, 7, 8, 12, 13, 17, 18]);
        assert_eq!(l.storage_extent(), 19);
    }
}
