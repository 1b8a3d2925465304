//! Kernels, by device. This file is the switchboard: each function takes storages and
//! layouts, picks the kernel for the storage's device and element type, and returns a new
//! storage. The op front doors in `ops` call these after checking shapes.
//!
//! Every function here first calls `note`, which appends the kernel's name to a thread-local
//! log while [`record_kernels`] is running (the backward explainer uses it to show which
//! kernels each node ran); otherwise `note` is one thread-local flag test.

pub mod cpu;
#[cfg(any(feature = "cuda", feature = "cuda-emu"))]
pub mod cuda;

use std::cell::{Cell, RefCell};

use crate::autograd::{BinaryOp, UnaryOp};
use crate::tensor::{CpuStorage, DType, Device, DeviceError, Float, Layout, Storage};
use crate::with_float;

pub use cpu::attention::{AttentionShape, GradientLayout, HeadLayout};
pub use cpu::conv::{Conv2dShape, Pool2dShape};
pub use cpu::elementwise::CompareOp;
pub use cpu::optim::AdamStep;
pub use cpu::reduce::ReduceKind;

// ----- kernel log ----------------------------------------------------------------------------

/// One kernel the switchboard ran, as logged by [`record_kernels`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelCall {
    /// The kernel function, as its path under `backend::cpu` (`elementwise::binary`), so a grep
    /// finds it.
    pub kernel: &'static str,
    /// The op it was asked for, where one kernel serves several (`mul` for `elementwise::binary`).
    pub variant: Option<&'static str>,
    /// The element type it ran on.
    pub dtype: DType,
}

impl std::fmt::Display for KernelCall {
    /// `elementwise::binary[mul]/f32`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.kernel)?;
        if let Some(v) = self.variant {
            write!(f, "[{v}]")?;
        }
        write!(f, "/{}", self.dtype)
    }
}

thread_local! {
    /// Whether `note` should log: a plain `Cell` so the test on every kernel call is one load.
    static LOGGING: Cell<bool> = const { Cell::new(false) };
    static LOG: RefCell<Vec<KernelCall>> = const { RefCell::new(Vec::new()) };
}

/// Logs a kernel call if [`record_kernels`] is running on this thread.
#[inline]
fn note(kernel: &'static str, variant: Option<&'static str>, dtype: DType) {
    if LOGGING.with(Cell::get) {
        LOG.with(|log| log.borrow_mut().push(KernelCall { kernel, variant, dtype }));
    }
}

/// Restores the log state that was current before a [`record_kernels`] scope, even on panic.
struct LogScope {
    was_logging: bool,
    outer_log: Vec<KernelCall>,
}

impl Drop for LogScope {
    fn drop(&mut self) {
        LOGGING.with(|on| on.set(self.was_logging));
        LOG.with(|log| *log.borrow_mut() = std::mem::take(&mut self.outer_log));
    }
}

/// Runs `f` and returns, with its result, every kernel this switchboard ran for it on this
/// thread, in order. (Work a kernel hands to rayon's threads is still one call here.) Scopes
/// nest: an inner scope's calls are reported to it alone.
pub fn record_kernels<R>(f: impl FnOnce() -> R) -> (R, Vec<KernelCall>) {
    let scope = LogScope {
        was_logging: LOGGING.with(|on| on.replace(true)),
        outer_log: LOG.with(|log| std::mem::take(&mut *log.borrow_mut())),
    };
    let result = f();
    let calls = LOG.with(|log| std::mem::take(&mut *log.borrow_mut()));
    drop(scope);
    (result, calls)
}

// ----- the CUDA arm ------------------------------------------------------------------------------

/// The CUDA result of switchboard function `kernel`, or a panic naming it and the device's
/// error (an op cannot return an error; device failures are as fatal as shape errors).
#[cfg(any(feature = "cuda", feature = "cuda-emu"))]
fn on_cuda<T>(kernel: &str, result: cuda::CudaResult<T>) -> T {
    result.unwrap_or_else(|e| panic!("{kernel}: {e}"))
}

/// The device storage of another operand of a CUDA kernel; the op front doors make sure all
/// operands share a device, so anything else is reported as a mix-up of devices.
#[cfg(any(feature = "cuda", feature = "cuda-emu"))]
fn cu<'a>(kernel: &str, s: &'a Storage) -> &'a cuda::CudaStorage {
    match s {
        Storage::Cuda(c) => c,
        other => panic!(
            "{kernel}: operands on different devices (cuda and {}); move them to one device with to(device)",
            other.device()
        ),
    }
}

/// Mutable form of [`cu`], for the state buffers of in-place updates.
#[cfg(any(feature = "cuda", feature = "cuda-emu"))]
fn cu_mut<'a>(kernel: &str, s: &'a mut Storage) -> &'a mut cuda::CudaStorage {
    match s {
        Storage::Cuda(c) => c,
        other => panic!(
            "{kernel}: operands on different devices (cuda and {}); move them to one device with to(device)",
            other.device()
        ),
    }
}

/// Ops with no CUDA kernel yet say so instead of computing something else.
#[cfg(any(feature = "cuda", feature = "cuda-emu"))]
fn not_on_cuda(op: &str) -> ! {
    panic!("{op} has no CUDA kernel yet; run it on the CPU (move the tensors with to(Device::Cpu))")
}

/// CUDA tensors are f32 only: a cast to f32 is a copy, anything else an error.
#[cfg(any(feature = "cuda", feature = "cuda-emu"))]
fn cuda_cast(x: &cuda::CudaStorage, layout: &Layout, dtype: DType) -> cuda::CudaResult<cuda::CudaStorage> {
    match dtype {
        DType::F32 => cuda::ops::contiguous(x, layout),
        other => Err(cuda::CudaError(format!("cannot cast to {other}: CUDA tensors are f32 only"))),
    }
}

/// Fresh contiguous zeros on `device`.
pub fn zeros_on(numel: usize, dtype: DType, device: Device) -> Storage {
    full_on(numel, 0.0, dtype, device)
}

/// `numel` copies of `value` on `device`.
pub fn full_on(numel: usize, value: f64, dtype: DType, device: Device) -> Storage {
    note("full", None, dtype);
    match device {
        Device::Cpu => Storage::Cpu(with_float!(dtype, T => T::wrap(cpu::pool::filled(numel, T::from_f64(value))))),
        #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
        Device::Cuda(n) => {
            if dtype != DType::F32 {
                panic!("full: cannot make {dtype} values on cuda:{n}: CUDA tensors are f32 only");
            }
            let dev = on_cuda("full", cuda::CudaDevice::get(n));
            Storage::Cuda(on_cuda("full", cuda::ops::full(&dev, numel, value)))
        }
    }
}

/// The elements of `x` on `device`: an upload, a download, or (between two GPUs) both.
pub fn to_device(x: &Storage, device: Device) -> Result<Storage, DeviceError> {
    if x.device() == device {
        return Ok(x.clone());
    }
    match device {
        Device::Cpu => Ok(Storage::Cpu(x.to_cpu().into_owned())),
        #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
        Device::Cuda(n) => {
            let host = x.to_cpu();
            let values = match &*host {
                crate::tensor::CpuStorage::F32(v) => v,
                other => {
                    return Err(DeviceError(format!(
                        "cannot move a {} tensor to cuda:{n}: CUDA tensors are f32 only (convert with to_dtype(DType::F32))",
                        other.dtype()
                    )))
                }
            };
            Ok(Storage::Cuda(cuda::CudaStorage::from_slice(n, values)?))
        }
    }
}

// ----- the switchboard -------------------------------------------------------------------------

/// Runs `f` on the f32 or f64 slice inside a CPU storage and wraps its result back up.
macro_rules! cpu_map {
    ($storage:expr, $T:ident, |$slice:ident| $body:expr) => {{
        let s = $storage.cpu();
        Storage::Cpu(with_float!(s.dtype(), $T => { let $slice = $T::slice(s); $T::wrap($body) }))
    }};
}

/// `op` of every element.
pub fn unary(op: UnaryOp, x: &Storage, layout: &Layout) -> Storage {
    note("elementwise::unary", Some(op.kind().name()), x.dtype());
    #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
    if let Storage::Cuda(x) = x {
        return Storage::Cuda(on_cuda("elementwise::unary", cuda::ops::unary(op, x, layout)));
    }
    cpu_map!(x, T, |xs| cpu::elementwise::unary::<T>(op, xs, layout))
}

/// `a op b`; both layouts already broadcast to the output shape.
pub fn binary(op: BinaryOp, a: &Storage, la: &Layout, b: &Storage, lb: &Layout) -> Storage {
    note("elementwise::binary", Some(op.kind().name()), a.dtype());
    #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
    if let Storage::Cuda(a) = a {
        return Storage::Cuda(on_cuda(
            "elementwise::binary",
            cuda::ops::binary_code_op(cuda::ops::binary_code(op), a, la, cu("elementwise::binary", b), lb),
        ));
    }
    cpu_map!(a, T, |xs| cpu::elementwise::binary::<T>(op, xs, la, T::slice(b.cpu()), lb))
}

/// `g * gelu'(x)`; both layouts of one shape.
pub fn gelu_backward(x: &Storage, lx: &Layout, g: &Storage, lg: &Layout) -> Storage {
    note("elementwise::gelu_backward", None, x.dtype());
    #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
    if let Storage::Cuda(x) = x {
        return Storage::Cuda(on_cuda(
            "elementwise::gelu_backward",
            cuda::ops::binary_code_op(cuda::ops::GELU_BACKWARD_CODE, x, lx, cu("elementwise::gelu_backward", g), lg),
        ));
    }
    cpu_map!(x, T, |xs| cpu::elementwise::gelu_backward::<T>(xs, lx, T::slice(g.cpu()), lg))
}

/// 1.0 where `a op b`, else 0.0; both layouts already broadcast to the output shape.
pub fn compare(op: CompareOp, a: &Storage, la: &Layout, b: &Storage, lb: &Layout) -> Storage {
    note("elementwise::compare", Some(op.name()), a.dtype());
    #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
    if let Storage::Cuda(a) = a {
        return Storage::Cuda(on_cuda(
            "elementwise::compare",
            cuda::ops::binary_code_op(cuda::ops::compare_code(op), a, la, cu("elementwise::compare", b), lb),
        ));
    }
    cpu_map!(a, T, |xs| cpu::elementwise::compare::<T>(op, xs, la, T::slice(b.cpu()), lb))
}

/// `on_true` where `cond != 0`, else `on_false`; all layouts broadcast to the output shape.
pub fn where_cond(cond: (&Storage, &Layout), on_true: (&Storage, &Layout), on_false: (&Storage, &Layout)) -> Storage {
    note("elementwise::where_cond", None, on_true.0.dtype());
    #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
    if let Storage::Cuda(t) = on_true.0 {
        return Storage::Cuda(on_cuda(
            "elementwise::where_cond",
            cuda::ops::where_cond(
                (cu("elementwise::where_cond", cond.0), cond.1),
                (t, on_true.1),
                (cu("elementwise::where_cond", on_false.0), on_false.1),
            ),
        ));
    }
    cpu_map!(on_true.0, T, |xs| cpu::elementwise::where_cond::<T>(
        (T::slice(cond.0.cpu()), cond.1),
        (xs, on_true.1),
        (T::slice(on_false.0.cpu()), on_false.1)
    ))
}

/// A contiguous copy of a view.
pub fn contiguous(x: &Storage, layout: &Layout) -> Storage {
    note("elementwise::copy_strided", None, x.dtype());
    #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
    if let Storage::Cuda(x) = x {
        return Storage::Cuda(on_cuda("elementwise::copy_strided", cuda::ops::contiguous(x, layout)));
    }
    cpu_map!(x, T, |xs| cpu::elementwise::copy_strided::<T>(xs, layout))
}

/// A contiguous copy of a view converted to `dtype`.
pub fn cast(x: &Storage, layout: &Layout, dtype: DType) -> Storage {
    note("elementwise::cast", Some(if dtype == DType::F32 { "to f32" } else { "to f64" }), x.dtype());
    #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
    if let Storage::Cuda(x) = x {
        return Storage::Cuda(on_cuda("elementwise::cast", cuda_cast(x, layout, dtype)));
    }
    let s = x.cpu();
    Storage::Cpu(
        with_float!(s.dtype(), S => with_float!(dtype, D => D::wrap(cpu::elementwise::cast::<S, D>(S::slice(s), layout)))),
    )
}

/// Sum or max over `dims`, contiguous in the input's shape with those dims set to 1.
pub fn reduce(kind: ReduceKind, x: &Storage, layout: &Layout, dims: &[usize]) -> Storage {
    note("reduce::reduce", Some(if kind == ReduceKind::Sum { "sum" } else { "max" }), x.dtype());
    #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
    if let Storage::Cuda(x) = x {
        return Storage::Cuda(on_cuda("reduce::reduce", cuda::ops::reduce(kind, x, layout, dims)));
    }
    cpu_map!(x, T, |xs| cpu::reduce::reduce::<T>(kind, xs, layout, dims))
}

/// Batched matrix product of `[batch.., M, K]` and `[batch.., K, N]` views.
pub fn matmul(a: &Storage, la: &Layout, b: &Storage, lb: &Layout) -> Storage {
    note("matmul::matmul", None, a.dtype());
    #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
    if let Storage::Cuda(a) = a {
        return Storage::Cuda(on_cuda("matmul::matmul", cuda::ops::matmul(a, la, cu("matmul::matmul", b), lb)));
    }
    cpu_map!(a, T, |xs| cpu::matmul::matmul::<T>(xs, la, T::slice(b.cpu()), lb))
}

/// `x W^T + b` for contiguous `x` `[rows, in]`, `W` `[out, in]` and `b` `[out]`.
pub fn linear(x: &Storage, w: &Storage, b: &Storage, rows: usize, inputs: usize, outputs: usize) -> Storage {
    note("matmul::matmul_bias", Some("linear"), x.dtype());
    #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
    if let Storage::Cuda(x) = x {
        return Storage::Cuda(on_cuda(
            "matmul::matmul_bias",
            cuda::ops::linear(x, cu("matmul::matmul_bias", w), cu("matmul::matmul_bias", b), rows, inputs, outputs),
        ));
    }
    cpu_map!(x, T, |xs| {
        use cpu::matmul::MatRef;
        let mut out = cpu::pool::reuse::<T>(rows * outputs);
        let w_t = MatRef::row_major(T::slice(w.cpu()), outputs, inputs).t();
        cpu::matmul::matmul_bias(MatRef::row_major(xs, rows, inputs), w_t, T::slice(b.cpu()), &mut out);
        out
    })
}

/// 2-D convolution of the `[N, C, H, W]` view `(x, lx)` with a contiguous `[O, C, KH, KW]`
/// weight and optional `[O]` bias; contiguous `[N, O, OH, OW]` out.
pub fn conv2d(x: &Storage, lx: &Layout, w: &Storage, bias: Option<&Storage>, shape: &Conv2dShape) -> Storage {
    note("conv::conv2d", None, x.dtype());
    #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
    if let Storage::Cuda(_x) = x {
        not_on_cuda("conv2d");
    }
    cpu_map!(x, T, |xs| cpu::conv::conv2d::<T>(xs, lx, T::slice(w.cpu()), bias.map(|b| T::slice(b.cpu())), shape))
}

/// Input gradient of conv2d from the contiguous output gradient `dy` and weight `w`.
pub fn conv2d_input_grad(dy: &Storage, w: &Storage, shape: &Conv2dShape) -> Storage {
    note("conv::conv2d_input_grad", None, dy.dtype());
    #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
    if let Storage::Cuda(_x) = dy {
        not_on_cuda("conv2d");
    }
    cpu_map!(dy, T, |gs| cpu::conv::conv2d_input_grad::<T>(gs, T::slice(w.cpu()), shape))
}

/// Weight gradient of conv2d from the input view `(x, lx)` and contiguous output gradient `dy`.
pub fn conv2d_weight_grad(x: &Storage, lx: &Layout, dy: &Storage, shape: &Conv2dShape) -> Storage {
    note("conv::conv2d_weight_grad", None, x.dtype());
    #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
    if let Storage::Cuda(_x) = x {
        not_on_cuda("conv2d");
    }
    cpu_map!(x, T, |xs| cpu::conv::conv2d_weight_grad::<T>(xs, lx, T::slice(dy.cpu()), shape))
}

/// Max pooling of the `[N, C, H, W]` view: the contiguous output and, per output element, the
/// index of its maximum in the contiguous input.
pub fn max_pool2d(x: &Storage, layout: &Layout, shape: &Pool2dShape) -> (Storage, Vec<usize>) {
    note("conv::max_pool2d", None, x.dtype());
    #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
    if let Storage::Cuda(_x) = x {
        not_on_cuda("max_pool2d");
    }
    let s = x.cpu();
    with_float!(s.dtype(), T => {
        let (y, argmax) = cpu::conv::max_pool2d::<T>(T::slice(s), layout, shape);
        (Storage::Cpu(T::wrap(y)), argmax)
    })
}

/// Max-pooling input gradient: the contiguous `dy` sent to each window's maximum.
pub fn max_pool2d_backward(dy: &Storage, argmax: &[usize], shape: &Pool2dShape) -> Storage {
    note("conv::max_pool2d_backward", None, dy.dtype());
    #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
    if let Storage::Cuda(_x) = dy {
        not_on_cuda("max_pool2d");
    }
    cpu_map!(dy, T, |gs| cpu::conv::max_pool2d_backward::<T>(gs, argmax, shape))
}

/// Softmax or log-softmax over rows of a contiguous `[rows, cols]` buffer.
pub fn softmax_rows(x: &Storage, cols: usize, log: bool) -> Storage {
    note("softmax::softmax_rows", Some(if log { "log" } else { "softmax" }), x.dtype());
    #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
    if let Storage::Cuda(x) = x {
        return Storage::Cuda(on_cuda("softmax::softmax_rows", cuda::ops::softmax_rows(x, cols, log)));
    }
    cpu_map!(x, T, |xs| cpu::softmax::softmax_rows::<T>(xs, cols, log))
}

/// Input gradient of (log-)softmax over rows, from its output `y` and upstream `g`.
pub fn softmax_backward_rows(y: &Storage, g: &Storage, cols: usize, log: bool) -> Storage {
    note("softmax::softmax_backward_rows", Some(if log { "log" } else { "softmax" }), y.dtype());
    #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
    if let Storage::Cuda(y) = y {
        return Storage::Cuda(on_cuda(
            "softmax::softmax_backward_rows",
            cuda::ops::softmax_backward_rows(y, cu("softmax::softmax_backward_rows", g), cols, log),
        ));
    }
    cpu_map!(y, T, |ys| cpu::softmax::softmax_backward_rows::<T>(ys, T::slice(g.cpu()), cols, log))
}

/// Mean cross-entropy of contiguous `[rows, cols]` logits, and their softmax.
pub fn cross_entropy_rows(x: &Storage, cols: usize, targets: &[usize]) -> (f64, Storage) {
    note("softmax::cross_entropy_rows", None, x.dtype());
    #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
    if let Storage::Cuda(x) = x {
        return {
            let (loss, probs) = on_cuda("softmax::cross_entropy_rows", cuda::ops::cross_entropy_rows(x, cols, targets));
            (loss, Storage::Cuda(probs))
        };
    }
    let s = x.cpu();
    with_float!(s.dtype(), T => {
        let (loss, probs) = cpu::softmax::cross_entropy_rows::<T>(T::slice(s), cols, targets);
        (loss, Storage::Cpu(T::wrap(probs)))
    })
}

/// `(probs - onehot(targets)) * scale` over contiguous rows.
pub fn cross_entropy_backward_rows(probs: &Storage, cols: usize, targets: &[usize], scale: f64) -> Storage {
    note("softmax::cross_entropy_backward_rows", None, probs.dtype());
    #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
    if let Storage::Cuda(p) = probs {
        return Storage::Cuda(on_cuda(
            "softmax::cross_entropy_backward_rows",
            cuda::ops::cross_entropy_backward_rows(p, cols, targets, scale),
        ));
    }
    cpu_map!(probs, T, |ps| cpu::softmax::cross_entropy_backward_rows::<T>(ps, cols, targets, T::from_f64(scale)))
}

/// Slices `indices` along `dim`.
pub fn index_select(x: &Storage, layout: &Layout, dim: usize, indices: &[usize]) -> Storage {
    note("index::index_select", None, x.dtype());
    #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
    if let Storage::Cuda(x) = x {
        return Storage::Cuda(on_cuda("index::index_select", cuda::ops::index_select(x, layout, dim, indices)));
    }
    cpu_map!(x, T, |xs| cpu::index::index_select::<T>(xs, layout, dim, indices))
}

/// Zeros of `shape` plus contiguous `src` added at `indices` along `dim`.
pub fn index_add(shape: &[usize], dim: usize, indices: &[usize], src: &Storage) -> Storage {
    note("index::index_add", None, src.dtype());
    #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
    if let Storage::Cuda(s) = src {
        return Storage::Cuda(on_cuda("index::index_add", cuda::ops::index_add(shape, dim, indices, s)));
    }
    cpu_map!(src, T, |ss| cpu::index::index_add::<T>(shape, dim, indices, ss))
}

/// Elements picked along `dim` by `index` (shaped `index_shape`).
pub fn gather(x: &Storage, layout: &Layout, dim: usize, index: &[usize], index_shape: &[usize]) -> Storage {
    note("index::gather", None, x.dtype());
    #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
    if let Storage::Cuda(x) = x {
        return Storage::Cuda(on_cuda("index::gather", cuda::ops::gather(x, layout, dim, index, index_shape)));
    }
    cpu_map!(x, T, |xs| cpu::index::gather::<T>(xs, layout, dim, index, index_shape))
}

/// Zeros of `shape` plus contiguous `src` scattered back where `gather` read it.
pub fn scatter_add(shape: &[usize], dim: usize, index: &[usize], index_shape: &[usize], src: &Storage) -> Storage {
    note("index::scatter_add", None, src.dtype());
    #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
    if let Storage::Cuda(s) = src {
        return Storage::Cuda(on_cuda("index::scatter_add", cuda::ops::scatter_add(shape, dim, index, index_shape, s)));
    }
    cpu_map!(src, T, |ss| cpu::index::scatter_add::<T>(shape, dim, index, index_shape, ss))
}

/// Copies the view `(src, src_layout)` into the view `dst_layout` of `dst`, in place.
pub fn assign(dst: &mut Storage, dst_layout: &Layout, src: &Storage, src_layout: &Layout) {
    note("elementwise::assign", None, dst.dtype());
    #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
    if let Storage::Cuda(d) = dst {
        return on_cuda(
            "elementwise::assign",
            cuda::ops::assign(d, dst_layout, cu("elementwise::assign", src), src_layout),
        );
    }
    let d = dst.cpu_mut();
    with_float!(d.dtype(), T => cpu::elementwise::assign::<T>(T::slice_mut(d), dst_layout, T::slice(src.cpu()), src_layout))
}

/// Adds the view `(src, src_layout)` onto the view `dst_layout` of `dst`, both in host
/// memory and of one element type (gradient accumulation in place; see
/// `autograd::accumulate`, which keeps device tensors on the out-of-place path).
pub fn add_assign_host(dst: &mut CpuStorage, dst_layout: &Layout, src: &CpuStorage, src_layout: &Layout) {
    note("elementwise::add_assign", None, dst.dtype());
    with_float!(dst.dtype(), T => cpu::elementwise::add_assign::<T>(T::slice_mut(dst), dst_layout, T::slice(src), src_layout))
}

/// Fresh contiguous zeros in host memory ([`zeros_on`] makes them on any device).
pub fn zeros(numel: usize, dtype: DType) -> Storage {
    note("zeros", None, dtype);
    Storage::Cpu(with_float!(dtype, T => T::wrap(cpu::pool::zeros::<T>(numel))))
}

/// In-place SGD step on contiguous parameter, gradient and momentum buffers.
pub fn sgd_update(w: &mut Storage, g: &Storage, buf: &mut Storage, lr: f64, momentum: f64, weight_decay: f64) {
    note("optim::sgd", None, w.dtype());
    #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
    if let Storage::Cuda(w) = w {
        return on_cuda(
            "optim::sgd",
            cuda::ops::sgd_update(w, cu("optim::sgd", g), cu_mut("optim::sgd", buf), lr, momentum, weight_decay),
        );
    }
    let (w, buf) = (w.cpu_mut(), buf.cpu_mut());
    with_float!(w.dtype(), T => cpu::optim::sgd::<T>(T::slice_mut(w), T::slice(g.cpu()), T::slice_mut(buf), lr, momentum, weight_decay))
}

/// In-place Adam / AdamW step.
pub fn adam_update(w: &mut Storage, g: &Storage, m: &mut Storage, v: &mut Storage, step: AdamStep) {
    note("optim::adam", None, w.dtype());
    #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
    if let Storage::Cuda(w) = w {
        return on_cuda(
            "optim::adam",
            cuda::ops::adam_update(w, cu("optim::adam", g), cu_mut("optim::adam", m), cu_mut("optim::adam", v), step),
        );
    }
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
    note("optim::rmsprop", None, w.dtype());
    #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
    if let Storage::Cuda(w) = w {
        return on_cuda(
            "optim::rmsprop",
            cuda::ops::rmsprop_update(
                w,
                cu("optim::rmsprop", g),
                cu_mut("optim::rmsprop", sq),
                lr,
                alpha,
                eps,
                weight_decay,
            ),
        );
    }
    let (w, sq) = (w.cpu_mut(), sq.cpu_mut());
    with_float!(w.dtype(), T => cpu::optim::rmsprop::<T>(T::slice_mut(w), T::slice(g.cpu()), T::slice_mut(sq), lr, alpha, eps, weight_decay))
}

/// Layer norm over rows of a contiguous `[rows, cols]` buffer: `(y, mean, rstd)`.
pub fn layer_norm(x: &Storage, w: &Storage, b: &Storage, cols: usize, eps: f64) -> (Storage, Storage, Storage) {
    note("layernorm::layer_norm", None, x.dtype());
    #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
    if let Storage::Cuda(x) = x {
        return {
            let (y, m, r) = on_cuda(
                "layernorm::layer_norm",
                cuda::ops::layer_norm(x, cu("layernorm::layer_norm", w), cu("layernorm::layer_norm", b), cols, eps),
            );
            (Storage::Cuda(y), Storage::Cuda(m), Storage::Cuda(r))
        };
    }
    let s = x.cpu();
    with_float!(s.dtype(), T => {
        let (y, mean, rstd) = cpu::layernorm::layer_norm::<T>(T::slice(s), T::slice(w.cpu()), T::slice(b.cpu()), cols, eps);
        (Storage::Cpu(T::wrap(y)), Storage::Cpu(T::wrap(mean)), Storage::Cpu(T::wrap(rstd)))
    })
}

/// Layer norm gradients `(dx, dw, db)` over contiguous rows.
pub fn layer_norm_backward(
    x: &Storage,
    w: &Storage,
    mean: &Storage,
    rstd: &Storage,
    g: &Storage,
    cols: usize,
) -> (Storage, Storage, Storage) {
    note("layernorm::layer_norm_backward", None, x.dtype());
    #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
    if let Storage::Cuda(x) = x {
        return {
            let k = "layernorm::layer_norm_backward";
            let (dx, dw, db) =
                on_cuda(k, cuda::ops::layer_norm_backward(x, cu(k, w), cu(k, mean), cu(k, rstd), cu(k, g), cols));
            (Storage::Cuda(dx), Storage::Cuda(dw), Storage::Cuda(db))
        };
    }
    let s = x.cpu();
    with_float!(s.dtype(), T => {
        let (dx, dw, db) = cpu::layernorm::layer_norm_backward::<T>(
            T::slice(s), T::slice(w.cpu()), T::slice(mean.cpu()), T::slice(rstd.cpu()), T::slice(g.cpu()), cols,
        );
        (Storage::Cpu(T::wrap(dx)), Storage::Cpu(T::wrap(dw)), Storage::Cpu(T::wrap(db)))
    })
}

/// Attention over operands read in place through their head layouts: `(o, lse)`, with `o`
/// laid out `[batch, t_q, heads * d]`.
pub fn attention_forward(
    q: (&Storage, HeadLayout),
    k: (&Storage, HeadLayout),
    v: (&Storage, HeadLayout),
    shape: AttentionShape,
) -> (Storage, Storage) {
    note("attention::attention_forward", None, q.0.dtype());
    #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
    if let Storage::Cuda(q0) = q.0 {
        return {
            let k_ = "attention::attention_forward";
            let (o, lse) =
                on_cuda(k_, cuda::ops::attention_forward((q0, q.1), (cu(k_, k.0), k.1), (cu(k_, v.0), v.1), shape));
            (Storage::Cuda(o), Storage::Cuda(lse))
        };
    }
    let s = q.0.cpu();
    with_float!(s.dtype(), T => {
        let inputs = cpu::attention::AttentionInputs {
            q: (T::slice(s), q.1),
            k: (T::slice(k.0.cpu()), k.1),
            v: (T::slice(v.0.cpu()), v.1),
        };
        let (o, lse) = cpu::attention::attention_forward::<T>(inputs, shape);
        (Storage::Cpu(T::wrap(o)), Storage::Cpu(T::wrap(lse)))
    })
}

/// Attention gradients written into one buffer laid out by `grads`.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    q: (&Storage, HeadLayout),
    k: (&Storage, HeadLayout),
    v: (&Storage, HeadLayout),
    o: &Storage,
    lse: &Storage,
    d_o: &Storage,
    shape: AttentionShape,
    grads: GradientLayout,
) -> Storage {
    note("attention::attention_backward", None, q.0.dtype());
    #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
    if let Storage::Cuda(q0) = q.0 {
        return {
            let k_ = "attention::attention_backward";
            Storage::Cuda(on_cuda(
                k_,
                cuda::ops::attention_backward(
                    (q0, q.1),
                    (cu(k_, k.0), k.1),
                    (cu(k_, v.0), v.1),
                    cu(k_, o),
                    cu(k_, lse),
                    cu(k_, d_o),
                    shape,
                    grads,
                ),
            ))
        };
    }
    let s = q.0.cpu();
    with_float!(s.dtype(), T => {
        let inputs = cpu::attention::AttentionInputs {
            q: (T::slice(s), q.1),
            k: (T::slice(k.0.cpu()), k.1),
            v: (T::slice(v.0.cpu()), v.1),
        };
        let g = cpu::attention::attention_backward::<T>(
            inputs, T::slice(o.cpu()), T::slice(lse.cpu()), T::slice(d_o.cpu()), shape, grads,
        );
        Storage::Cpu(T::wrap(g))
    })
}

/// Attention gradients `[dq, dk, dv]` of separate host `q`, `k`, `v` (one head per batch
/// element, each `[batch, t, d]` contiguous), in three buffers of their own, so that each can
/// become its leaf's gradient without a copy. (On a CUDA device the op asks
/// [`attention_backward`] for one buffer instead.)
pub fn attention_backward_separate(
    q: &Storage,
    k: &Storage,
    v: &Storage,
    o: &Storage,
    lse: &Storage,
    d_o: &Storage,
    shape: AttentionShape,
) -> [Storage; 3] {
    note("attention::attention_backward_separate", None, q.dtype());
    let (tq, tk, d) = (shape.t_q, shape.t_k, shape.d);
    let s = q.cpu();
    with_float!(s.dtype(), T => {
        let inputs = cpu::attention::AttentionInputs {
            q: (T::slice(s), HeadLayout::contiguous(1, tq, d)),
            k: (T::slice(k.cpu()), HeadLayout::contiguous(1, tk, d)),
            v: (T::slice(v.cpu()), HeadLayout::contiguous(1, tk, d)),
        };
        let grads = cpu::attention::attention_backward_separate::<T>(
            inputs, T::slice(o.cpu()), T::slice(lse.cpu()), T::slice(d_o.cpu()), shape,
        );
        grads.map(|g| Storage::Cpu(T::wrap(g)))
    })
}
