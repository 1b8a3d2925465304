//! The CUDA arm of every switchboard function in `backend/mod.rs`: each picks the kernel
//! version (the product path of its family), sizes the launch and allocates the output.
//! Shapes were checked by the op front doors; what can still fail here (a device error, an
//! index past 32 bits, a feature a kernel lacks) comes back as a [`CudaError`] naming it.
//!
//! Product paths: elementwise v3 (vec4) when contiguous and 16-byte aligned, else v1 or v2
//! (strided); reduce v2 (block per output) when each output folds many inputs, else v1;
//! matmul v5; softmax v3 (online); layernorm forward v1, backward v2 (block); flash attention.

use std::sync::Arc;

use super::device::{CudaDevice, CudaError, CudaResult};
use super::kernels::KernelArg;
use super::storage::CudaStorage;
use super::structs::{to_i32, AttnGrads, AttnHeads, AttnShape, EwLayout, GatherLayout, RdLayout};
use crate::autograd::{BinaryOp, UnaryOp};
use crate::backend::{AdamStep, AttentionShape, CompareOp, GradientLayout, HeadLayout, ReduceKind};
use crate::tensor::Layout;

/// Threads per block of the one-dimensional (grid-stride) kernels.
const THREADS: u32 = 256;
/// At most this many blocks for grid-stride kernels: enough to fill any current GPU.
const MAX_BLOCKS: usize = 4096;

fn grid_for(n: usize) -> (u32, u32, u32) {
    (n.div_ceil(THREADS as usize).clamp(1, MAX_BLOCKS) as u32, 1, 1)
}

fn i(v: usize, what: &str) -> CudaResult<KernelArg> {
    Ok(KernelArg::I32(to_i32(v, what)?))
}

fn f(v: f64) -> KernelArg {
    KernelArg::F32(v as f32)
}

/// A fresh (uninitialized) storage of `n` floats on `dev`.
fn alloc(dev: &Arc<CudaDevice>, n: usize) -> CudaResult<CudaStorage> {
    Ok(CudaStorage::new(dev.alloc(n * 4)?, n))
}

/// A fresh storage of `n` zeros.
pub fn zeros(dev: &Arc<CudaDevice>, n: usize) -> CudaResult<CudaStorage> {
    Ok(CudaStorage::new(dev.alloc_zeros(n * 4)?, n))
}

/// `n` copies of `value`.
pub fn full(dev: &Arc<CudaDevice>, n: usize, value: f64) -> CudaResult<CudaStorage> {
    if value == 0.0 {
        return zeros(dev, n);
    }
    let out = alloc(dev, n)?;
    dev.launch("elementwise_v1_fill", grid_for(n), (THREADS, 1, 1), &[out.buffer().arg(), f(value), i(n, "a size")?])?;
    Ok(out)
}

/// Uploads host f32 values.
pub fn upload(dev: &Arc<CudaDevice>, values: &[f32]) -> CudaResult<CudaStorage> {
    Ok(CudaStorage::new(dev.upload_f32(values)?, values.len()))
}

fn upload_indices(dev: &Arc<CudaDevice>, indices: &[usize]) -> CudaResult<super::device::DeviceBuffer> {
    let values: Vec<i32> = indices.iter().map(|&v| to_i32(v, "an index")).collect::<CudaResult<_>>()?;
    dev.upload_i32(&values)
}

/// The address of element `offset` of `s`.
fn at(s: &CudaStorage, offset: usize) -> KernelArg {
    s.buffer().arg_at(offset)
}

fn aligned16(s: &CudaStorage, offset: usize) -> bool {
    (s.buffer().ptr() + 4 * offset as u64).is_multiple_of(16)
}

/// The kernel op code and parameters of a unary op (the table in kernels/elementwise.cu).
fn unary_code(op: UnaryOp) -> (i32, f64, f64) {
    match op {
        UnaryOp::Neg => (1, 0.0, 0.0),
        UnaryOp::Exp => (2, 0.0, 0.0),
        UnaryOp::Log => (3, 0.0, 0.0),
        UnaryOp::Sqrt => (4, 0.0, 0.0),
        UnaryOp::Abs => (5, 0.0, 0.0),
        UnaryOp::Relu => (6, 0.0, 0.0),
        UnaryOp::Sigmoid => (7, 0.0, 0.0),
        UnaryOp::Tanh => (8, 0.0, 0.0),
        UnaryOp::Gelu => (9, 0.0, 0.0),
        UnaryOp::Powf(p) => (10, p, 0.0),
        UnaryOp::Affine { mul, add } => (11, mul, add),
    }
}

/// The kernel op code of an arithmetic binary op.
pub fn binary_code(op: BinaryOp) -> i32 {
    match op {
        BinaryOp::Add => 0,
        BinaryOp::Sub => 1,
        BinaryOp::Mul => 2,
        BinaryOp::Div => 3,
    }
}

/// The kernel op code of a comparison.
pub fn compare_code(op: CompareOp) -> i32 {
    match op {
        CompareOp::Gt => 4,
        CompareOp::Ge => 5,
        CompareOp::Lt => 6,
        CompareOp::Le => 7,
        CompareOp::Eq => 8,
    }
}

/// The op code of GELU's backward, `g * gelu'(x)`.
pub const GELU_BACKWARD_CODE: i32 = 9;

/// A unary op (kernel code 0 is a plain copy) over the view `(x, layout)` into a contiguous output.
fn unary_code_op(code: i32, p0: f64, p1: f64, x: &CudaStorage, layout: &Layout) -> CudaResult<CudaStorage> {
    let dev = x.device();
    let n = layout.numel();
    let out = alloc(dev, n)?;
    if n == 0 {
        return Ok(out);
    }
    if layout.is_contiguous() {
        let off = layout.offset();
        let name = if aligned16(x, off) { "elementwise_v3_unary_vec4" } else { "elementwise_v1_unary_contiguous" };
        let args = [KernelArg::I32(code), f(p0), f(p1), at(x, off), out.buffer().arg(), i(n, "an element count")?];
        dev.launch(name, grid_for(n), (THREADS, 1, 1), &args)?;
    } else {
        let l = EwLayout::new(&[layout])?;
        let args =
            [KernelArg::I32(code), f(p0), f(p1), KernelArg::from_struct(&l), x.buffer().arg(), out.buffer().arg()];
        dev.launch("elementwise_v2_unary_strided", grid_for(n), (THREADS, 1, 1), &args)?;
    }
    Ok(out)
}

/// `op` of every element.
pub fn unary(op: UnaryOp, x: &CudaStorage, layout: &Layout) -> CudaResult<CudaStorage> {
    let (code, p0, p1) = unary_code(op);
    unary_code_op(code, p0, p1, x, layout)
}

/// A contiguous copy of a view.
pub fn contiguous(x: &CudaStorage, layout: &Layout) -> CudaResult<CudaStorage> {
    if layout.is_contiguous() {
        let n = layout.numel();
        let out = alloc(x.device(), n)?;
        x.device().dtod(out.buffer().ptr(), x.buffer().ptr() + 4 * layout.offset() as u64, n * 4)?;
        return Ok(out);
    }
    unary_code_op(0, 0.0, 0.0, x, layout)
}

/// Kernel op `code` of kernels/elementwise.cu (arithmetic, comparison, GELU backward) over two
/// views of one shape.
pub fn binary_code_op(
    code: i32,
    a: &CudaStorage,
    la: &Layout,
    b: &CudaStorage,
    lb: &Layout,
) -> CudaResult<CudaStorage> {
    let dev = a.device();
    let n = la.numel();
    let out = alloc(dev, n)?;
    if n == 0 {
        return Ok(out);
    }
    if la.is_contiguous() && lb.is_contiguous() {
        let (oa, ob) = (la.offset(), lb.offset());
        let name = if aligned16(a, oa) && aligned16(b, ob) {
            "elementwise_v3_binary_vec4"
        } else {
            "elementwise_v1_binary_contiguous"
        };
        let args = [KernelArg::I32(code), at(a, oa), at(b, ob), out.buffer().arg(), i(n, "an element count")?];
        dev.launch(name, grid_for(n), (THREADS, 1, 1), &args)?;
    } else {
        let l = EwLayout::new(&[la, lb])?;
        let args =
            [KernelArg::I32(code), KernelArg::from_struct(&l), a.buffer().arg(), b.buffer().arg(), out.buffer().arg()];
        dev.launch("elementwise_v2_binary_strided", grid_for(n), (THREADS, 1, 1), &args)?;
    }
    Ok(out)
}

/// `on_true` where `cond != 0`, else `on_false`.
pub fn where_cond(
    cond: (&CudaStorage, &Layout),
    on_true: (&CudaStorage, &Layout),
    on_false: (&CudaStorage, &Layout),
) -> CudaResult<CudaStorage> {
    let dev = cond.0.device();
    let n = cond.1.numel();
    let out = alloc(dev, n)?;
    if n == 0 {
        return Ok(out);
    }
    let l = EwLayout::new(&[cond.1, on_true.1, on_false.1])?;
    let args = [
        KernelArg::from_struct(&l),
        cond.0.buffer().arg(),
        on_true.0.buffer().arg(),
        on_false.0.buffer().arg(),
        out.buffer().arg(),
    ];
    dev.launch("elementwise_v2_where_strided", grid_for(n), (THREADS, 1, 1), &args)?;
    Ok(out)
}

/// Copies the view `(src, src_layout)` into the view `dst_layout` of `dst`, in place.
pub fn assign(dst: &mut CudaStorage, dst_layout: &Layout, src: &CudaStorage, src_layout: &Layout) -> CudaResult<()> {
    let n = dst_layout.numel();
    if n == 0 {
        return Ok(());
    }
    let l = EwLayout::new(&[dst_layout, src_layout])?;
    let args = [KernelArg::from_struct(&l), dst.buffer().arg(), src.buffer().arg()];
    dst.device().launch("elementwise_v2_assign_strided", grid_for(n), (THREADS, 1, 1), &args)
}

/// Sum or max over `dims`.
pub fn reduce(kind: ReduceKind, x: &CudaStorage, layout: &Layout, dims: &[usize]) -> CudaResult<CudaStorage> {
    let dev = x.device();
    let (l, n_out, n_red) = RdLayout::new(layout, dims)?;
    let out = alloc(dev, n_out)?;
    if n_out == 0 {
        return Ok(out);
    }
    let code = KernelArg::I32(if kind == ReduceKind::Sum { 0 } else { 1 });
    let args = [
        code,
        KernelArg::from_struct(&l),
        x.buffer().arg(),
        out.buffer().arg(),
        i(n_out, "an output count")?,
        i(n_red, "a reduction length")?,
    ];
    if n_red >= 64 {
        dev.launch("reduce_v2_block", (to_i32(n_out, "an output count")? as u32, 1, 1), (256, 1, 1), &args)?;
    } else {
        dev.launch("reduce_v1_naive", (n_out.div_ceil(THREADS as usize) as u32, 1, 1), (THREADS, 1, 1), &args)?;
    }
    Ok(out)
}

/// A launch's grid (blocks in x, y, z) and block (threads in x, y, z).
pub type LaunchDims = ((u32, u32, u32), (u32, u32, u32));

/// The launch grid and block of matmul `version` for `batch` products of `m x n`.
pub fn matmul_launch(version: &str, batch: usize, m: usize, n: usize) -> CudaResult<LaunchDims> {
    let (block, tile_rows, tile_cols, rows_on_x) = match version {
        "matmul_v1_naive" => ((16, 16, 1), 16, 16, true),
        "matmul_v2_coalesced" => ((32, 8, 1), 8, 32, false),
        "matmul_v3_shared" => ((32, 32, 1), 32, 32, false),
        "matmul_v4_register_blocked" | "matmul_v5_vectorized" => ((256, 1, 1), 128, 128, false),
        "matmul_v6_tf32_wmma" | "matmul_v6_bf16_wmma" => ((128, 1, 1), 64, 64, false),
        other => return Err(CudaError(format!("no matmul version named {other}"))),
    };
    if batch > 65535 {
        return Err(CudaError(format!("matmul: {batch} batched products exceed the grid's 65535 in z")));
    }
    let (rows, cols) = (m.div_ceil(tile_rows) as u32, n.div_ceil(tile_cols) as u32);
    let grid = if rows_on_x { (rows, cols, batch as u32) } else { (cols, rows, batch as u32) };
    Ok((grid, block))
}

/// Batched `C = A B` of contiguous operands with matmul `version`: `batch` products of
/// `[m, k] x [k, n]` stored back to back.
#[allow(clippy::too_many_arguments)]
pub fn matmul_contiguous(
    version: &str,
    a: &CudaStorage,
    a_offset: usize,
    b: &CudaStorage,
    b_offset: usize,
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
) -> CudaResult<CudaStorage> {
    let dev = a.device();
    let out = alloc(dev, batch * m * n)?;
    if batch * m * n == 0 {
        return Ok(out);
    }
    if k == 0 {
        return zeros(dev, batch * m * n);
    }
    to_i32(batch * m * k.max(n), "a matmul operand's size")?;
    let (grid, block) = matmul_launch(version, batch, m, n)?;
    let args = [at(a, a_offset), at(b, b_offset), out.buffer().arg(), i(m, "m")?, i(n, "n")?, i(k, "k")?];
    dev.launch(version, grid, block, &args)?;
    Ok(out)
}

/// The matmul version the product path uses.
pub const MATMUL_PRODUCT: &str = "matmul_v5_vectorized";

/// Batched matrix product of `[batch.., M, K]` and `[batch.., K, N]` views: operands that are
/// not already packed row-major are packed first (transposes and broadcasts included).
pub fn matmul(a: &CudaStorage, la: &Layout, b: &CudaStorage, lb: &Layout) -> CudaResult<CudaStorage> {
    let r = la.rank();
    let (m, k, n) = (la.shape()[r - 2], la.shape()[r - 1], lb.shape()[r - 1]);
    let batch: usize = la.shape()[..r - 2].iter().product();
    let packed_a;
    let (a, a_off) = if la.is_contiguous() {
        (a, la.offset())
    } else {
        packed_a = contiguous(a, la)?;
        (&packed_a, 0)
    };
    let packed_b;
    let (b, b_off) = if lb.is_contiguous() {
        (b, lb.offset())
    } else {
        packed_b = contiguous(b, lb)?;
        (&packed_b, 0)
    };
    matmul_contiguous(MATMUL_PRODUCT, a, a_off, b, b_off, batch, m, k, n)
}

/// `x W^T + b` for contiguous `x` `[rows, in]`, `W` `[out, in]`, `b` `[out]`.
pub fn linear(
    x: &CudaStorage,
    w: &CudaStorage,
    b: &CudaStorage,
    rows: usize,
    inputs: usize,
    outputs: usize,
) -> CudaResult<CudaStorage> {
    let w_t = contiguous(w, &Layout::contiguous(&[outputs, inputs]).transpose(0, 1))?;
    let y = matmul_contiguous(MATMUL_PRODUCT, x, 0, &w_t, 0, 1, rows, inputs, outputs)?;
    let bias = Layout::contiguous(&[outputs]).broadcast_to(&[rows, outputs]).expect("[out] broadcasts to [rows, out]");
    binary_code_op(0, &y, &Layout::contiguous(&[rows, outputs]), b, &bias)
}

/// Rows per block of the warp-per-row kernels (256 threads).
const ROWS_PER_BLOCK: usize = 8;

fn row_grid(rows: usize) -> (u32, u32, u32) {
    (rows.div_ceil(ROWS_PER_BLOCK).max(1) as u32, 1, 1)
}

/// Softmax or log-softmax over the rows of a contiguous `[rows, cols]` buffer.
pub fn softmax_rows(x: &CudaStorage, cols: usize, log: bool) -> CudaResult<CudaStorage> {
    let rows = x.len().checked_div(cols).unwrap_or(0);
    let out = alloc(x.device(), x.len())?;
    if rows == 0 {
        return Ok(out);
    }
    let args = [x.buffer().arg(), out.buffer().arg(), i(rows, "rows")?, i(cols, "cols")?, KernelArg::I32(log as i32)];
    x.device().launch("softmax_v3_online", row_grid(rows), (256, 1, 1), &args)?;
    Ok(out)
}

/// Input gradient of (log-)softmax over rows.
pub fn softmax_backward_rows(y: &CudaStorage, g: &CudaStorage, cols: usize, log: bool) -> CudaResult<CudaStorage> {
    let rows = y.len().checked_div(cols).unwrap_or(0);
    let out = alloc(y.device(), y.len())?;
    if rows == 0 {
        return Ok(out);
    }
    let args = [
        y.buffer().arg(),
        g.buffer().arg(),
        out.buffer().arg(),
        i(rows, "rows")?,
        i(cols, "cols")?,
        KernelArg::I32(log as i32),
    ];
    y.device().launch("softmax_backward_v1_warp", row_grid(rows), (256, 1, 1), &args)?;
    Ok(out)
}

/// Mean cross-entropy of contiguous `[rows, cols]` logits, and their softmax. The per-row
/// losses come back to the host to be averaged in f64 (a sync point, like `item()`).
pub fn cross_entropy_rows(x: &CudaStorage, cols: usize, targets: &[usize]) -> CudaResult<(f64, CudaStorage)> {
    let dev = x.device();
    let rows = targets.len();
    let probs = alloc(dev, x.len())?;
    if rows == 0 || cols == 0 {
        return Ok((0.0, probs));
    }
    let t = upload_indices(dev, targets)?;
    let losses = alloc(dev, rows)?;
    let args =
        [x.buffer().arg(), t.arg(), probs.buffer().arg(), losses.buffer().arg(), i(rows, "rows")?, i(cols, "cols")?];
    dev.launch("cross_entropy_v1_forward", row_grid(rows), (256, 1, 1), &args)?;
    let total: f64 = losses.to_vec()?.iter().map(|&v| v as f64).sum();
    Ok((total / rows as f64, probs))
}

/// `(probs - onehot(targets)) * scale` over contiguous rows.
pub fn cross_entropy_backward_rows(
    probs: &CudaStorage,
    cols: usize,
    targets: &[usize],
    scale: f64,
) -> CudaResult<CudaStorage> {
    let dev = probs.device();
    let out = alloc(dev, probs.len())?;
    if probs.is_empty() {
        return Ok(out);
    }
    let t = upload_indices(dev, targets)?;
    let args =
        [probs.buffer().arg(), t.arg(), out.buffer().arg(), i(targets.len(), "rows")?, i(cols, "cols")?, f(scale)];
    dev.launch("cross_entropy_v1_backward", grid_for(probs.len()), (THREADS, 1, 1), &args)?;
    Ok(out)
}

/// Splits a shape around `dim` into (outer, size, inner).
fn around(shape: &[usize], dim: usize) -> (usize, usize, usize) {
    (shape[..dim].iter().product(), shape[dim], shape[dim + 1..].iter().product())
}

/// Slices `indices` along `dim`.
pub fn index_select(x: &CudaStorage, layout: &Layout, dim: usize, indices: &[usize]) -> CudaResult<CudaStorage> {
    let dev = x.device();
    let packed;
    let (x, off) = if layout.is_contiguous() {
        (x, layout.offset())
    } else {
        packed = contiguous(x, layout)?;
        (&packed, 0)
    };
    let (outer, size, inner) = around(layout.shape(), dim);
    let n = outer * indices.len() * inner;
    let out = alloc(dev, n)?;
    if n == 0 {
        return Ok(out);
    }
    let idx = upload_indices(dev, indices)?;
    let args = [
        at(x, off),
        idx.arg(),
        out.buffer().arg(),
        i(outer, "a size")?,
        i(indices.len(), "an index count")?,
        i(size, "a size")?,
        i(inner, "a size")?,
    ];
    dev.launch("index_v1_select", grid_for(n), (THREADS, 1, 1), &args)?;
    Ok(out)
}

/// Zeros of `shape` plus contiguous `src` added at `indices` along `dim` (atomics).
pub fn index_add(shape: &[usize], dim: usize, indices: &[usize], src: &CudaStorage) -> CudaResult<CudaStorage> {
    let dev = src.device();
    let out = zeros(dev, shape.iter().product())?;
    let (outer, size, inner) = around(shape, dim);
    let n = outer * indices.len() * inner;
    if n == 0 {
        return Ok(out);
    }
    let idx = upload_indices(dev, indices)?;
    let args = [
        src.buffer().arg(),
        idx.arg(),
        out.buffer().arg(),
        i(outer, "a size")?,
        i(indices.len(), "an index count")?,
        i(size, "a size")?,
        i(inner, "a size")?,
    ];
    dev.launch("index_v1_add_atomic", grid_for(n), (THREADS, 1, 1), &args)?;
    Ok(out)
}

/// Elements picked along `dim` by `index` (shaped `index_shape`).
pub fn gather(
    x: &CudaStorage,
    layout: &Layout,
    dim: usize,
    index: &[usize],
    index_shape: &[usize],
) -> CudaResult<CudaStorage> {
    let dev = x.device();
    let packed = contiguous(x, layout)?;
    let n = index.len();
    let out = alloc(dev, n)?;
    if n == 0 {
        return Ok(out);
    }
    let l = GatherLayout::new(layout.shape(), dim, index_shape)?;
    let idx = upload_indices(dev, index)?;
    let args =
        [packed.buffer().arg(), idx.arg(), out.buffer().arg(), KernelArg::from_struct(&l), i(n, "an index count")?];
    dev.launch("index_v1_gather", grid_for(n), (THREADS, 1, 1), &args)?;
    Ok(out)
}

/// Zeros of `shape` plus contiguous `src` scattered back where `gather` read it (atomics).
pub fn scatter_add(
    shape: &[usize],
    dim: usize,
    index: &[usize],
    index_shape: &[usize],
    src: &CudaStorage,
) -> CudaResult<CudaStorage> {
    let dev = src.device();
    let out = zeros(dev, shape.iter().product())?;
    let n = index.len();
    if n == 0 {
        return Ok(out);
    }
    let l = GatherLayout::new(shape, dim, index_shape)?;
    let idx = upload_indices(dev, index)?;
    let args = [src.buffer().arg(), idx.arg(), out.buffer().arg(), KernelArg::from_struct(&l), i(n, "an index count")?];
    dev.launch("index_v1_scatter_add_atomic", grid_for(n), (THREADS, 1, 1), &args)?;
    Ok(out)
}

/// In-place SGD step.
pub fn sgd_update(
    w: &mut CudaStorage,
    g: &CudaStorage,
    buf: &mut CudaStorage,
    lr: f64,
    momentum: f64,
    weight_decay: f64,
) -> CudaResult<()> {
    let n = w.len();
    let args = [
        w.buffer().arg(),
        g.buffer().arg(),
        buf.buffer().arg(),
        i(n, "a parameter size")?,
        f(lr),
        f(momentum),
        f(weight_decay),
    ];
    w.device().launch("optim_v1_sgd", grid_for(n), (THREADS, 1, 1), &args)
}

/// In-place Adam / AdamW step (the same formulas as `backend::cpu::optim::adam`).
pub fn adam_update(
    w: &mut CudaStorage,
    g: &CudaStorage,
    m: &mut CudaStorage,
    v: &mut CudaStorage,
    h: AdamStep,
) -> CudaResult<()> {
    let n = w.len();
    let t = h.step as i32;
    let c1 = 1.0 / (1.0 - h.beta1.powi(t));
    let c2s = (1.0 / (1.0 - h.beta2.powi(t))).sqrt();
    let (shrink, l2) = if h.decoupled { (1.0 - h.lr * h.weight_decay, 0.0) } else { (1.0, h.weight_decay) };
    let args = [
        w.buffer().arg(),
        g.buffer().arg(),
        m.buffer().arg(),
        v.buffer().arg(),
        i(n, "a parameter size")?,
        f(h.lr),
        f(h.beta1),
        f(h.beta2),
        f(h.eps),
        f(shrink),
        f(l2),
        f(c1),
        f(c2s),
    ];
    w.device().launch("optim_v1_adamw", grid_for(n), (THREADS, 1, 1), &args)
}

/// In-place RMSprop step.
#[allow(clippy::too_many_arguments)]
pub fn rmsprop_update(
    w: &mut CudaStorage,
    g: &CudaStorage,
    sq: &mut CudaStorage,
    lr: f64,
    alpha: f64,
    eps: f64,
    weight_decay: f64,
) -> CudaResult<()> {
    let n = w.len();
    let args = [
        w.buffer().arg(),
        g.buffer().arg(),
        sq.buffer().arg(),
        i(n, "a parameter size")?,
        f(lr),
        f(alpha),
        f(eps),
        f(weight_decay),
    ];
    w.device().launch("optim_v1_rmsprop", grid_for(n), (THREADS, 1, 1), &args)
}

/// Layer norm over rows: `(y, mean, rstd)`.
pub fn layer_norm(
    x: &CudaStorage,
    w: &CudaStorage,
    b: &CudaStorage,
    cols: usize,
    eps: f64,
) -> CudaResult<(CudaStorage, CudaStorage, CudaStorage)> {
    let dev = x.device();
    let rows = x.len().checked_div(cols).unwrap_or(0);
    let (y, mean, rstd) = (alloc(dev, x.len())?, alloc(dev, rows)?, alloc(dev, rows)?);
    if rows == 0 || cols == 0 {
        return Ok((y, mean, rstd));
    }
    let args = [
        x.buffer().arg(),
        w.buffer().arg(),
        b.buffer().arg(),
        y.buffer().arg(),
        mean.buffer().arg(),
        rstd.buffer().arg(),
        i(rows, "rows")?,
        i(cols, "cols")?,
        f(eps),
    ];
    dev.launch("layernorm_v1_forward", row_grid(rows), (256, 1, 1), &args)?;
    Ok((y, mean, rstd))
}

/// Layer norm gradients `(dx, dw, db)`.
pub fn layer_norm_backward(
    x: &CudaStorage,
    w: &CudaStorage,
    mean: &CudaStorage,
    rstd: &CudaStorage,
    g: &CudaStorage,
    cols: usize,
) -> CudaResult<(CudaStorage, CudaStorage, CudaStorage)> {
    let dev = x.device();
    let rows = mean.len();
    let (dx, dw, db) = (alloc(dev, x.len())?, zeros(dev, cols)?, zeros(dev, cols)?);
    if rows == 0 || cols == 0 {
        return Ok((dx, dw, db));
    }
    let args = [
        x.buffer().arg(),
        w.buffer().arg(),
        mean.buffer().arg(),
        rstd.buffer().arg(),
        g.buffer().arg(),
        dx.buffer().arg(),
        dw.buffer().arg(),
        db.buffer().arg(),
        i(rows, "rows")?,
        i(cols, "cols")?,
    ];
    // 32 rows per block (LN_BAND in kernels/layernorm.cu).
    dev.launch("layernorm_backward_v2_block", (rows.div_ceil(32) as u32, 1, 1), (256, 1, 1), &args)?;
    Ok((dx, dw, db))
}

/// The flash-attention instantiation for head dim `d`.
fn flash_variant(d: usize) -> CudaResult<&'static str> {
    match d {
        0..=32 => Ok("d32"),
        33..=64 => Ok("d64"),
        65..=128 => Ok("d128"),
        _ => Err(CudaError(format!("attention: head dim {d} is above the CUDA kernels' limit of 128"))),
    }
}

/// Flash attention forward: `(o, lse)`, `o` laid out `[batch, t_q, heads * d]`.
pub fn attention_forward(
    q: (&CudaStorage, HeadLayout),
    k: (&CudaStorage, HeadLayout),
    v: (&CudaStorage, HeadLayout),
    shape: AttentionShape,
) -> CudaResult<(CudaStorage, CudaStorage)> {
    let dev = q.0.device();
    let s = AttnShape::new(shape)?;
    let o = zeros(dev, shape.batch * shape.t_q * shape.heads * shape.d)?;
    let lse = alloc(dev, shape.batch * shape.heads * shape.t_q)?;
    if shape.batch * shape.heads * shape.t_q == 0 {
        return Ok((o, lse));
    }
    let name = format!("attention_v2_flash_forward_{}", flash_variant(shape.d)?);
    let heads = |l| -> CudaResult<KernelArg> { Ok(KernelArg::from_struct(&AttnHeads::new(l)?)) };
    let args = [
        q.0.buffer().arg(),
        heads(q.1)?,
        k.0.buffer().arg(),
        heads(k.1)?,
        v.0.buffer().arg(),
        heads(v.1)?,
        o.buffer().arg(),
        lse.buffer().arg(),
        KernelArg::from_struct(&s),
    ];
    let grid = (shape.t_q.div_ceil(32) as u32, (shape.batch * shape.heads) as u32, 1);
    dev.launch(&name, grid, (32, 1, 1), &args)?;
    Ok((o, lse))
}

/// Flash attention backward, into one buffer laid out by `grads`.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    q: (&CudaStorage, HeadLayout),
    k: (&CudaStorage, HeadLayout),
    v: (&CudaStorage, HeadLayout),
    o: &CudaStorage,
    lse: &CudaStorage,
    d_o: &CudaStorage,
    shape: AttentionShape,
    grads: GradientLayout,
) -> CudaResult<CudaStorage> {
    let dev = q.0.device();
    let s = AttnShape::new(shape)?;
    let out = zeros(dev, shape.batch * grads.chunk)?;
    let rows = shape.batch * shape.heads * shape.t_q;
    if rows == 0 || shape.t_k == 0 {
        return Ok(out);
    }
    let dvec = alloc(dev, rows)?;
    let args = [o.buffer().arg(), d_o.buffer().arg(), dvec.buffer().arg(), KernelArg::from_struct(&s)];
    dev.launch("attention_v2_flash_backward_dot", (rows.div_ceil(8) as u32, 1, 1), (256, 1, 1), &args)?;
    let name = format!("attention_v2_flash_backward_{}", flash_variant(shape.d)?);
    let heads = |l| -> CudaResult<KernelArg> { Ok(KernelArg::from_struct(&AttnHeads::new(l)?)) };
    let args = [
        q.0.buffer().arg(),
        heads(q.1)?,
        k.0.buffer().arg(),
        heads(k.1)?,
        v.0.buffer().arg(),
        heads(v.1)?,
        lse.buffer().arg(),
        dvec.buffer().arg(),
        d_o.buffer().arg(),
        out.buffer().arg(),
        KernelArg::from_struct(&AttnGrads::new(grads)?),
        KernelArg::from_struct(&s),
    ];
    let grid = (shape.t_k.div_ceil(32) as u32, (shape.batch * shape.heads) as u32, 1);
    dev.launch(&name, grid, (64, 1, 1), &args)?;
    Ok(out)
}
