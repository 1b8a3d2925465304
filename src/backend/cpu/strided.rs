//! Walking several strided views of one shape together, row by row.
//!
//! Elementwise kernels need, for every output element, where each input element lives. Instead
//! of an odometer per element, we first simplify the shape: size-1 dims vanish, and neighbouring
//! dims merge when every view steps through them as through one longer dim
//! (`stride[i] == stride[i + 1] * shape[i + 1]`). A contiguous tensor then becomes one long row,
//! a bias broadcast over a batch becomes `batch` rows with an inner stride of 1 for both sides.
//! The kernels run a tight loop along each row, with a fast path when every inner stride is 1.

use rayon::prelude::*;

use crate::tensor::Layout;

/// Work below this many elements stays on the calling thread: a rayon split costs a few
/// microseconds, about what one core needs for this many simple flops.
pub const PARALLEL_MIN_ELEMENTS: usize = 1 << 15;
/// Elements per parallel task (big enough to amortise scheduling, small enough to balance).
const CHUNK: usize = 1 << 14;

/// `N` views of one shape, simplified to rows of `row_len` elements.
pub struct RowPlan<const N: usize> {
    /// Elements per row (1 for an empty shape).
    pub row_len: usize,
    /// Number of rows.
    pub rows: usize,
    /// Each view's stride along a row.
    pub inner: [usize; N],
    /// Each view's storage offset of the first element of every row.
    pub starts: [Vec<usize>; N],
}

impl<const N: usize> RowPlan<N> {
    /// Plans a walk of `layouts`, which must all have the same shape.
    pub fn new(layouts: [&Layout; N]) -> RowPlan<N> {
        let shape = layouts[0].shape();
        for l in &layouts {
            debug_assert_eq!(l.shape(), shape, "RowPlan: views of different shapes");
        }
        let numel: usize = shape.iter().product();
        if numel == 0 {
            return RowPlan { row_len: 0, rows: 0, inner: [0; N], starts: std::array::from_fn(|_| Vec::new()) };
        }
        // Simplified dims, outermost first: (size, stride of each view).
        let mut dims: Vec<(usize, [usize; N])> = Vec::new();
        for (d, &len) in shape.iter().enumerate() {
            if len == 1 {
                continue;
            }
            let strides: [usize; N] = std::array::from_fn(|k| layouts[k].strides()[d]);
            if let Some((size, prev)) = dims.last_mut() {
                if (0..N).all(|k| prev[k] == strides[k] * len) {
                    *size *= len;
                    *prev = strides;
                    continue;
                }
            }
            dims.push((len, strides));
        }
        let (row_len, inner) = dims.pop().unwrap_or((1, [0; N]));
        let rows: usize = dims.iter().map(|(size, _)| size).product();
        let starts = std::array::from_fn(|k| {
            let mut starts = Vec::with_capacity(rows);
            let mut index = vec![0usize; dims.len()];
            let mut offset = layouts[k].offset();
            for _ in 0..rows {
                starts.push(offset);
                // Odometer over the outer dims.
                for d in (0..dims.len()).rev() {
                    index[d] += 1;
                    offset += dims[d].1[k];
                    if index[d] < dims[d].0 {
                        break;
                    }
                    offset -= dims[d].1[k] * dims[d].0;
                    index[d] = 0;
                }
            }
            starts
        });
        RowPlan { row_len, rows, inner, starts }
    }

    /// Calls `body(out_segment, starts)` over `out` (contiguous, in row-major order of the
    /// planned shape) in pieces that never cross a row; `starts[k]` is where view `k`'s
    /// elements for the piece begin. Large outputs are split across rayon threads.
    pub fn for_each_segment<T: Send>(&self, out: &mut [T], body: impl Fn(&mut [T], [usize; N]) + Sync) {
        let run = |first: usize, piece: &mut [T]| {
            let mut element = first;
            let mut done = 0;
            while done < piece.len() {
                let (row, col) = (element / self.row_len, element % self.row_len);
                let len = (self.row_len - col).min(piece.len() - done);
                let starts = std::array::from_fn(|k| self.starts[k][row] + col * self.inner[k]);
                body(&mut piece[done..done + len], starts);
                element += len;
                done += len;
            }
        };
        if out.len() >= PARALLEL_MIN_ELEMENTS {
            out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, piece)| run(c * CHUNK, piece));
        } else {
            run(0, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_views_become_one_row() {
        let l = Layout::contiguous(&[4, 5, 6]);
        let plan = RowPlan::new([&l, &l]);
        assert_eq!((plan.rows, plan.row_len, plan.inner), (1, 120, [1, 1]));
    }

    #[test]
    fn bias_broadcast_keeps_unit_inner_strides() {
        let out = Layout::contiguous(&[3, 4]);
        let bias = Layout::contiguous(&[4]).broadcast_to(&[3, 4]).unwrap();
        let plan = RowPlan::new([&out, &bias]);
        assert_eq!((plan.rows, plan.row_len, plan.inner), (3, 4, [1, 1]));
        assert_eq!(plan.starts[1], vec![0, 0, 0]);
        assert_eq!(plan.starts[0], vec![0, 4, 8]);
    }

    #[test]
    fn segments_visit_every_element_in_order() {
        let t = Layout::contiguous(&[3, 5]).transpose(0, 1); // shape [5, 3]
        let plan = RowPlan::new([&t]);
        let mut out = vec![0usize; 15];
        plan.for_each_segment(&mut out, |seg, [s]| {
            for (j, o) in seg.iter_mut().enumerate() {
                *o = s + j * plan.inner[0];
            }
        });
        assert_eq!(out, t.offsets().collect::<Vec<_>>());
    }
}
