//! Kernels, by device. This file is the switchboard: each function takes storages and
//! layouts, picks the kernel for the storage's device and element type, and returns a new
//! storage. The op front doors in `ops` call these after checking shapes.

pub mod cpu;

use crate::autograd::{BinaryOp, UnaryOp};
use crate::tensor::{DType, Float, Layout, Storage};
use crate::with_float;

pub use cpu::conv::{Conv2dShape, Pool2dShape};
pub use cpu::elementwise::CompareOp;
pub use cpu::optim::AdamStep;
pub use cpu::reduce::ReduceKind;

/// Runs `f` on the f32 or f64 slice inside a CPU storage and wraps its result back up.
macro_rules! cpu_map {
    ($storage:expr, $T:ident, |$slice:ident| $body:expr) => {{
        let s = $storage.cpu();
        Storage::Cpu(with_float!(s.dtype(), $T => { let $slice = $T::slice(s); $T::wrap($body) }))
    }};
}

/// `op` of every element.
pub fn unary(op: UnaryOp, x: &Storage, layout: &Layout) -> Storage {
    cpu_map!(x, T, |xs| cpu::elementwise::unary::<T>(op, xs, layout))
}

/// `a op b`; both layouts already broadcast to the output shape.
pub fn binary(op: BinaryOp, a: &Storage, la: &Layout, b: &Storage, lb: &Layout) -> Storage {
    cpu_map!(a, T, |xs| cpu::elementwise::binary::<T>(op, xs, la, T::slice(b.cpu()), lb))
}

/// 1.0 where `a op b`, else 0.0; both layouts already broadcast to the output shape.
pub fn compare(op: CompareOp, a: &Storage, la: &Layout, b: &Storage, lb: &Layout) -> Storage {
    cpu_map!(a, T, |xs| cpu::elementwise::compare::<T>(op, xs, la, T::slice(b.cpu()), lb))
}

/// `on_true` where `cond != 0`, else `on_false`; all layouts broadcast to the output shape.
pub fn where_cond(cond: (&Storage, &Layout), on_true: (&Storage, &Layout), on_false: (&Storage, &Layout)) -> Storage {
    cpu_map!(on_true.0, T, |xs| cpu::elementwise::where_cond::<T>(
        (T::slice(cond.0.cpu()), cond.1),
        (xs, on_true.1),
        (T::slice(on_false.0.cpu()), on_false.1)
    ))
}

/// A contiguous copy of a view.
pub fn contiguous(x: &Storage, layout: &Layout) -> Storage {
    cpu_map!(x, T, |xs| cpu::elementwise::copy_strided::<T>(xs, layout))
}

/// A contiguous copy of a view converted to `dtype`.
pub fn cast(x: &Storage, layout: &Layout, dtype: DType) -> Storage {
    let s = x.cpu();
    Storage::Cpu(
        with_float!(s.dtype(), S => with_float!(dtype, D => D::wrap(cpu::elementwise::cast::<S, D>(S::slice(s), layout)))),
    )
}

/// Sum or max over `dims`, contiguous in the input's shape with those dims set to 1.
pub fn reduce(kind: ReduceKind, x: &Storage, layout: &Layout, dims: &[usize]) -> Storage {
    cpu_map!(x, T, |xs| cpu::reduce::reduce::<T>(kind, xs, layout, dims))
}

/// Batched matrix product of `[batch.., M, K]` and `[batch.., K, N]` views.
pub fn matmul(a: &Storage, la: &Layout, b: &Storage, lb: &Layout) -> Storage {
    cpu_map!(a, T, |xs| cpu::matmul::matmul::<T>(xs, la, T::slice(b.cpu()), lb))
}

/// 2-D convolution of the `[N, C, H, W]` view `(x, lx)` with a contiguous `[O, C, KH, KW]`
/// weight and optional `[O]` bias; contiguous `[N, O, OH, OW]` out.
pub fn conv2d(x: &Storage, lx: &Layout, w: &Storage, bias: Option<&Storage>, shape: &Conv2dShape) -> Storage {
    cpu_map!(x, T, |xs| cpu::conv::conv2d::<T>(xs, lx, T::slice(w.cpu()), bias.map(|b| T::slice(b.cpu())), shape))
}

/// Input gradient of conv2d from the contiguous output gradient `dy` and weight `w`.
pub fn conv2d_input_grad(dy: &Storage, w: &Storage, shape: &Conv2dShape) -> Storage {
    cpu_map!(dy, T, |gs| cpu::conv::conv2d_input_grad::<T>(gs, T::slice(w.cpu()), shape))
}

/// Weight gradient of conv2d from the input view `(x, lx)` and contiguous output gradient `dy`.
pub fn conv2d_weight_grad(x: &Storage, lx: &Layout, dy: &Storage, shape: &Conv2dShape) -> Storage {
    cpu_map!(x, T, |xs| cpu::conv::conv2d_weight_grad::<T>(xs, lx, T::slice(dy.cpu()), shape))
}

/// Max pooling of the `[N, C, H, W]` view: the contiguous output and, per output element, the
/// index of its maximum in the contiguous input.
pub fn max_pool2d(x: &Storage, layout: &Layout, shape: &Pool2dShape) -> (Storage, Vec<usize>) {
    let s = x.cpu();
    with_float!(s.dtype(), T => {
        let (y, argmax) = cpu::conv::max_pool2d::<T>(T::slice(s), layout, shape);
        (Storage::Cpu(T::wrap(y)), argmax)
    })
}

/// Max-pooling input gradient: the contiguous `dy` sent to each window's maximum.
pub fn max_pool2d_backward(dy: &Storage, argmax: &[usize], shape: &Pool2dShape) -> Storage {
    cpu_map!(dy, T, |gs| cpu::conv::max_pool2d_backward::<T>(gs, argmax, shape))
}

/// Softmax or log-softmax over rows of a contiguous `[rows, cols]` buffer.
pub fn softmax_rows(x: &Storage, cols: usize, log: bool) -> Storage {
    cpu_map!(x, T, |xs| cpu::softmax::softmax_rows::<T>(xs, cols, log))
}

/// Input gradient of (log-)softmax over rows, from its output `y` and upstream `g`.
pub fn softmax_backward_rows(y: &Storage, g: &Storage, cols: usize, log: bool) -> Storage {
    cpu_map!(y, T, |ys| cpu::softmax::softmax_backward_rows::<T>(ys, T::slice(g.cpu()), cols, log))
}

/// Mean cross-entropy of contiguous `[rows, cols]` logits, and their softmax.
pub fn cross_entropy_rows(x: &Storage, cols: usize, targets: &[usize]) -> (f64, Storage) {
    let s = x.cpu();
    with_float!(s.dtype(), T => {
        let (loss, probs) = cpu::softmax::cross_entropy_rows::<T>(T::slice(s), cols, targets);
        (loss, Storage::Cpu(T::wrap(probs)))
    })
}

/// `(probs - onehot(targets)) * scale` over contiguous rows.
pub fn cross_entropy_backward_rows(probs: &Storage, cols: usize, targets: &[usize], scale: f64) -> Storage {
    cpu_map!(probs, T, |ps| cpu::softmax::cross_entropy_backward_rows::<T>(ps, cols, targets, T::from_f64(scale)))
}

/// Slices `indices` along `dim`.
pub fn index_select(x: &Storage, layout: &Layout, dim: usize, indices: &[usize]) -> Storage {
    cpu_map!(x, T, |xs| cpu::index::index_select::<T>(xs, layout, dim, indices))
}

/// Zeros of `shape` plus contiguous `src` added at `indices` along `dim`.
pub fn index_add(shape: &[usize], dim: usize, indices: &[usize], src: &Storage) -> Storage {
    cpu_map!(src, T, |ss| cpu::index::index_add::<T>(shape, dim, indices, ss))
}

/// Elements picked along `dim` by `index` (shaped `index_shape`).
pub fn gather(x: &Storage, layout: &Layout, dim: usize, index: &[usize], index_shape: &[usize]) -> Storage {
    cpu_map!(x, T, |xs| cpu::index::gather::<T>(xs, layout, dim, index, index_shape))
}

/// Zeros of `shape` plus contiguous `src` scattered back where `gather` read it.
pub fn scatter_add(shape: &[usize], dim: usize, index: &[usize], index_shape: &[usize], src: &Storage) -> Storage {
    cpu_map!(src, T, |ss| cpu::index::scatter_add::<T>(shape, dim, index, index_shape, ss))
}

/// Copies the view `(src, src_layout)` into the view `dst_layout` of `dst`, in place.
pub fn assign(dst: &mut Storage, dst_layout: &Layout, src: &Storage, src_layout: &Layout) {
    let d = dst.cpu_mut();
    with_float!(d.dtype(), T => cpu::elementwise::assign::<T>(T::slice_mut(d), dst_layout, T::slice(src.cpu()), src_layout))
}

/// Fresh contiguous zeros.
pub fn zeros(numel: usize, dtype: DType) -> Storage {
    Storage::Cpu(with_float!(dtype, T => T::wrap(vec![T::ZERO; numel])))
}

/// In-place SGD step on contiguous parameter, gradient and momentum buffers.
pub fn sgd_update(w: &mut Storage, g: &Storage, buf: &mut Storage, lr: f64, momentum: f64, weight_decay: f64) {
    let (w, buf) = (w.cpu_mut(), buf.cpu_mut());
    with_float!(w.dtype(), T => cpu::optim::sgd::<T>(T::slice_mut(w), T::slice(g.cpu()), T::slice_mut(buf), lr, momentum, weight_decay))
}

/// In-place Adam / AdamW step.
pub fn adam_update(w: &mut Storage, g: &Storage, m: &mut Storage, v: &mut Storage, step: AdamStep) {
    let (w, m, v) = (w.cpu_mut(), m.cpu_mut(), v.cpu_mut());
    with_float!(w.dtype(), T => cpu::optim::adam::<T>(T::slice_mut(w), T::slice(g.cpu()), T::slice_mut(m), T::slice_mut(v), step))
}

/// In-place RMSprop step.
pub fn rmsprop_update(
    w: &mut Storage,
    g: &Storage,
    sq: &mut Storage,
    lr: f64,
    alpha: f64,
    eps: f64,
    weight_decay: f64,
) {
    let (w, sq) = (w.cpu_mut(), sq.cpu_mut());
    with_float!(w.dtype(), T => cpu::optim::rmsprop::<T>(T::slice_mut(w), T::slice(g.cpu()), T::slice_mut(sq), lr, alpha, eps, weight_decay))
}
