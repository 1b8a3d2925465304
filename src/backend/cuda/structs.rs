//! The structs kernels take by value, mirrored field for field from the `.cu` files.

use super::device::{CudaError, CudaResult};
use super::kernels::KernelStruct;
use crate::tensor::Layout;

/// `EW_MAX_DIMS` of kernels/elementwise.cu.
pub const EW_MAX_DIMS: usize = 6;

/// `EwLayout` of kernels/elementwise.cu: the output shape and, per operand, strides and offset.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EwLayout {
    /// Number of dims used.
    pub rank: i32,
    /// Product of the shape.
    pub numel: i32,
    /// The output shape (first `rank` entries).
    pub shape: [i32; EW_MAX_DIMS],
    /// Per operand, its stride along each dim.
    pub strides: [[i32; EW_MAX_DIMS]; 3],
    /// Per operand, where element `[0, ..]` lives.
    pub offsets: [i32; 3],
}

// SAFETY: `#[repr(C)]`, only i32 fields and arrays of them, identical to the C struct.
unsafe impl KernelStruct for EwLayout {
    const C_NAME: &'static str = "EwLayout";
}

/// `value` as an `int` kernel argument, or an error naming `what` when it does not fit.
pub fn to_i32(value: usize, what: &str) -> CudaResult<i32> {
    i32::try_from(value)
        .map_err(|_| CudaError(format!("{what} is {value}, more than the kernels' 32-bit indices hold")))
}

impl EwLayout {
    /// Up to three views of one shape, simplified as the CPU's RowPlan does: size-1 dims
    /// vanish and neighbouring dims merge when every view steps through them as one, so a
    /// contiguous tensor becomes rank 1. An error when more than 6 dims remain or an index
    /// does not fit in 32 bits.
    pub fn new(layouts: &[&Layout]) -> CudaResult<EwLayout> {
        assert!(!layouts.is_empty() && layouts.len() <= 3, "internal: EwLayout takes 1 to 3 views");
        let shape = layouts[0].shape();
        let mut dims: Vec<(usize, Vec<usize>)> = Vec::new();
        for (d, &len) in shape.iter().enumerate() {
            if len == 1 {
                continue;
            }
            let strides: Vec<usize> = layouts.iter().map(|l| l.strides()[d]).collect();
            if let Some((size, prev)) = dims.last_mut() {
                if prev.iter().zip(&strides).all(|(&p, &s)| p == s * len) {
                    *size *= len;
                    *prev = strides;
                    continue;
                }
            }
            dims.push((len, strides));
        }
        if dims.len() > EW_MAX_DIMS {
            return Err(CudaError(format!(
                "a view of shape {shape:?} keeps {} dims after merging; the elementwise kernels take at most {EW_MAX_DIMS}",
                dims.len()
            )));
        }
        let mut out = EwLayout {
            rank: dims.len() as i32,
            numel: to_i32(layouts[0].numel(), "an element count")?,
            ..Default::default()
        };
        for (d, (size, strides)) in dims.iter().enumerate() {
            out.shape[d] = to_i32(*size, "a dim")?;
            for (k, &s) in strides.iter().enumerate() {
                out.strides[k][d] = to_i32(s, "a stride")?;
            }
        }
        for (k, l) in layouts.iter().enumerate() {
            to_i32(l.storage_extent(), "a storage extent")?;
            out.offsets[k] = to_i32(l.offset(), "an offset")?;
        }
        Ok(out)
    }
}

/// `RD_MAX_DIMS` of kernels/reduce.cu.
pub const RD_MAX_DIMS: usize = 8;

/// `RdLayout` of kernels/reduce.cu: an input view with its kept dims first and reduced dims last.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RdLayout {
    /// Number of dims used.
    pub rank: i32,
    /// How many of them (the first ones) are kept.
    pub kept: i32,
    /// Sizes.
    pub shape: [i32; RD_MAX_DIMS],
    /// Strides in the input buffer.
    pub strides: [i32; RD_MAX_DIMS],
    /// Index of the first element.
    pub offset: i32,
}

// SAFETY: `#[repr(C)]`, only i32 fields and arrays of them, identical to the C struct.
unsafe impl KernelStruct for RdLayout {
    const C_NAME: &'static str = "RdLayout";
}

/// Merges neighbouring `(size, stride)` dims that step as one (`outer stride = inner stride * inner size`).
fn merge_dims(dims: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for &(size, stride) in dims.iter().filter(|(size, _)| *size != 1) {
        match out.last_mut() {
            Some((s, st)) if *st == stride * size => {
                *s *= size;
                *st = stride;
            }
            _ => out.push((size, stride)),
        }
    }
    out
}

impl RdLayout {
    /// The view `layout` reduced over `dims`: returns the kernel layout, the number of outputs
    /// (row-major over the kept dims, as the CPU's output) and the number of inputs per output.
    pub fn new(layout: &Layout, dims: &[usize]) -> CudaResult<(RdLayout, usize, usize)> {
        let pairs: Vec<(usize, usize)> = layout.shape().iter().copied().zip(layout.strides().iter().copied()).collect();
        let kept: Vec<(usize, usize)> =
            pairs.iter().enumerate().filter(|(d, _)| !dims.contains(d)).map(|(_, &p)| p).collect();
        let reduced: Vec<(usize, usize)> =
            pairs.iter().enumerate().filter(|(d, _)| dims.contains(d)).map(|(_, &p)| p).collect();
        let n_out = kept.iter().map(|p| p.0).product();
        let n_red = reduced.iter().map(|p| p.0).product();
        let (kept, reduced) = (merge_dims(&kept), merge_dims(&reduced));
        if kept.len() + reduced.len() > RD_MAX_DIMS {
            return Err(CudaError(format!(
                "reducing dims {dims:?} of shape {:?} needs {} dims after merging; the reduce kernels take at most {RD_MAX_DIMS}",
                layout.shape(),
                kept.len() + reduced.len()
            )));
        }
        let mut out = RdLayout {
            rank: (kept.len() + reduced.len()) as i32,
            kept: kept.len() as i32,
            offset: to_i32(layout.offset(), "an offset")?,
            ..Default::default()
        };
        for (d, &(size, stride)) in kept.iter().chain(&reduced).enumerate() {
            out.shape[d] = to_i32(size, "a dim")?;
            out.strides[d] = to_i32(stride, "a stride")?;
        }
        to_i32(layout.storage_extent(), "a storage extent")?;
        Ok((out, n_out, n_red))
    }
}

/// `IX_MAX_DIMS` of kernels/index.cu.
pub const IX_MAX_DIMS: usize = 8;

/// `GatherLayout` of kernels/index.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GatherLayout {
    /// Number of dims.
    pub rank: i32,
    /// The gathered dim.
    pub dim: i32,
    /// Shape of the index (and of the gathered output).
    pub index_shape: [i32; IX_MAX_DIMS],
    /// Strides of the contiguous tensor gathered from or scattered into.
    pub strides: [i32; IX_MAX_DIMS],
}

// SAFETY: `#[repr(C)]`, only i32 fields and arrays of them, identical to the C struct.
unsafe impl KernelStruct for GatherLayout {
    const C_NAME: &'static str = "GatherLayout";
}

impl GatherLayout {
    /// Gather along `dim` from (or scatter into) a contiguous tensor of `shape`, at positions
    /// laid out in `index_shape`.
    pub fn new(shape: &[usize], dim: usize, index_shape: &[usize]) -> CudaResult<GatherLayout> {
        if shape.len() > IX_MAX_DIMS {
            return Err(CudaError(format!(
                "gather on shape {shape:?}: the index kernels take at most {IX_MAX_DIMS} dims"
            )));
        }
        let strides = crate::tensor::contiguous_strides(shape);
        let mut out = GatherLayout { rank: shape.len() as i32, dim: dim as i32, ..Default::default() };
        for d in 0..shape.len() {
            out.index_shape[d] = to_i32(index_shape[d], "a dim")?;
            out.strides[d] = to_i32(strides[d], "a stride")?;
        }
        to_i32(crate::tensor::checked_numel(shape).unwrap_or(usize::MAX), "an element count")?;
        Ok(out)
    }
}

/// `AttnHeads` of kernels/attention.cu (the CPU's [`HeadLayout`](crate::backend::HeadLayout)).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttnHeads {
    /// Index of batch 0, head 0, row 0.
    pub offset: i32,
    /// Step between batch elements.
    pub batch_stride: i32,
    /// Step between heads.
    pub head_stride: i32,
    /// Step between rows.
    pub row_stride: i32,
}

// SAFETY: `#[repr(C)]`, only i32 fields, identical to the C struct.
unsafe impl KernelStruct for AttnHeads {
    const C_NAME: &'static str = "AttnHeads";
}

impl AttnHeads {
    /// The kernel form of a CPU head layout.
    pub fn new(l: crate::backend::HeadLayout) -> CudaResult<AttnHeads> {
        Ok(AttnHeads {
            offset: to_i32(l.offset, "an offset")?,
            batch_stride: to_i32(l.batch_stride, "a batch stride")?,
            head_stride: to_i32(l.head_stride, "a head stride")?,
            row_stride: to_i32(l.row_stride, "a row stride")?,
        })
    }
}

/// `AttnShape` of kernels/attention.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AttnShape {
    /// Independent sequences.
    pub batch: i32,
    /// Heads per sequence.
    pub heads: i32,
    /// Query length.
    pub t_q: i32,
    /// Key length.
    pub t_k: i32,
    /// Head dim.
    pub d: i32,
    /// 1 for a causal mask.
    pub causal: i32,
    /// 1 / sqrt(d).
    pub scale: f32,
}

// SAFETY: `#[repr(C)]`, only 4-byte i32/f32 fields, identical to the C struct.
unsafe impl KernelStruct for AttnShape {
    const C_NAME: &'static str = "AttnShape";
}

impl AttnShape {
    /// The kernel form of the CPU's attention shape.
    pub fn new(s: crate::backend::AttentionShape) -> CudaResult<AttnShape> {
        to_i32(s.batch * s.heads * s.t_q.max(s.t_k) * s.d, "an attention operand's size")?;
        Ok(AttnShape {
            batch: to_i32(s.batch, "a batch")?,
            heads: to_i32(s.heads, "a head count")?,
            t_q: to_i32(s.t_q, "a query length")?,
            t_k: to_i32(s.t_k, "a key length")?,
            d: to_i32(s.d, "a head dim")?,
            causal: s.causal as i32,
            scale: (1.0 / (s.d.max(1) as f64).sqrt()) as f32,
        })
    }
}

/// `AttnGrads` of kernels/attention.cu (the CPU's [`GradientLayout`](crate::backend::GradientLayout)).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttnGrads {
    /// Elements per batch element.
    pub chunk: i32,
    /// Where dq lives in a chunk.
    pub dq: AttnHeads,
    /// Where dk lives in a chunk.
    pub dk: AttnHeads,
    /// Where dv lives in a chunk.
    pub dv: AttnHeads,
}

// SAFETY: `#[repr(C)]`, an i32 and three all-i32 structs, identical to the C struct.
unsafe impl KernelStruct for AttnGrads {
    const C_NAME: &'static str = "AttnGrads";
}

impl AttnGrads {
    /// The kernel form of the CPU's gradient layout.
    pub fn new(g: crate::backend::GradientLayout) -> CudaResult<AttnGrads> {
        Ok(AttnGrads {
            chunk: to_i32(g.chunk, "a gradient chunk")?,
            dq: AttnHeads::new(g.dq)?,
            dk: AttnHeads::new(g.dk)?,
            dv: AttnHeads::new(g.dv)?,
        })
    }
}
