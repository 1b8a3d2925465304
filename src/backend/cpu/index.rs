//! Indexing kernels: `index_select` and `gather`, and their adjoints `index_add` and
//! `scatter_add` (which the backward passes use: a value read from one place sends its
//! gradient back to that place, summing where a place was read more than once).

use crate::tensor::{contiguous_strides, Float, HostBuffer, Layout};

/// Splits a shape around `dim` into (outer count, inner count).
fn around(shape: &[usize], dim: usize) -> (usize, usize) {
    (shape[..dim].iter().product(), shape[dim + 1..].iter().product())
}

/// Slices `indices` of `dim` of the view `(x, layout)`, stacked in order along `dim`.
pub fn index_select<T: Float>(x: &[T], layout: &Layout, dim: usize, indices: &[usize]) -> HostBuffer<T> {
    let shape = layout.shape();
    let (outer, inner) = around(shape, dim);
    let outer_offsets: Vec<usize> =
        Layout::from_parts(shape[..dim].to_vec(), layout.strides()[..dim].to_vec(), layout.offset())
            .offsets()
            .collect();
    let inner_layout =
        |offset| Layout::from_parts(shape[dim + 1..].to_vec(), layout.strides()[dim + 1..].to_vec(), offset);
    let inner_contiguous = inner_layout(0).is_contiguous();
    // From the pool: the result becomes a tensor, whose buffer is parked in the pool when
    // dropped; a fresh buffer here would be parked and never asked for again (an embedding
    // lookup per training step grew the pool by its size each step).
    let mut out = super::pool::reuse::<T>(outer * indices.len() * inner);
    let starts =
        outer_offsets.iter().flat_map(|&base| indices.iter().map(move |&idx| base + idx * layout.strides()[dim]));
    for (dst, start) in out.chunks_mut(inner.max(1)).zip(starts) {
        if inner_contiguous {
            dst.copy_from_slice(&x[start..start + inner]);
        } else {
            dst.iter_mut().zip(inner_layout(start).offsets()).for_each(|(d, o)| *d = x[o]);
        }
    }
    out
}

/// Zeros of `shape` with the contiguous `src` (shape `shape` with `dim` of length
/// `indices.len()`) added at `indices` along `dim`.
pub fn index_add<T: Float>(shape: &[usize], dim: usize, indices: &[usize], src: &[T]) -> HostBuffer<T> {
    let (outer, inner) = around(shape, dim);
    let mut out = super::pool::zeros::<T>(shape.iter().product());
    for o in 0..outer {
        for (k, &idx) in indices.iter().enumerate() {
            let from = (o * indices.len() + k) * inner;
            let to = (o * shape[dim] + idx) * inner;
            for (d, &s) in out[to..to + inner].iter_mut().zip(&src[from..from + inner]) {
                *d += s;
            }
        }
    }
    out
}

/// `out[p] = x[p with coordinate dim replaced by index[p]]` over every position `p` of
/// `index_shape` (row-major).
pub fn gather<T: Float>(x: &[T], layout: &Layout, dim: usize, index: &[usize], index_shape: &[usize]) -> HostBuffer<T> {
    let mut strides = layout.strides().to_vec();
    let step = strides[dim];
    strides[dim] = 0;
    let bases = Layout::from_parts(index_shape.to_vec(), strides, layout.offset()).offsets();
    // From the pool, for the reason given in `index_select`.
    let mut out = super::pool::reuse::<T>(index.len());
    out.iter_mut().zip(bases.zip(index)).for_each(|(o, (base, &i))| *o = x[base + i * step]);
    out
}

/// Zeros of `shape` with each element of the contiguous `src` (shape of `index`) added at
/// the position `gather` would have read it from.
pub fn scatter_add<T: Float>(
    shape: &[usize],
    dim: usize,
    index: &[usize],
    index_shape: &[usize],
    src: &[T],
) -> HostBuffer<T> {
    let mut out = super::pool::zeros::<T>(shape.iter().product());
    let mut strides = contiguous_strides(shape);
    let step = strides[dim];
    strides[dim] = 0;
    let bases = Layout::from_parts(index_shape.to_vec(), strides, 0).offsets();
    for ((base, &i), &s) in bases.zip(index).zip(src) {
        out[base + i * step] += s;
    }
    out
}
