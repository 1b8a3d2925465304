//! The `Tensor` type: a shared handle to a storage, a layout over it, and (when it came from an
//! op that needs gradients) the op that made it.

mod buffer;
mod device;
mod display;
mod dtype;
mod layout;
mod storage;

pub use buffer::{HostBuffer, BUFFER_ALIGN};
pub use device::{Device, DeviceError};
pub use dtype::{DType, Float};
pub use layout::{broadcast_shapes, checked_numel, contiguous_strides, Layout, StridedOffsets};
pub use storage::{CpuStorage, Storage};

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::autograd::{self, Op};
use crate::rng::Rng;

/// A unique id per tensor handle created, used by the autograd graph walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(usize);

impl TensorId {
    fn fresh() -> TensorId {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        TensorId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// The storage cell a tensor shares with its views.
///
/// Kernels take a snapshot (an `Arc` clone, under the lock for a moment) and compute without
/// holding any lock, so an op may read the same storage twice (`x * x`) without deadlock.
/// In-place writers (optimizers, `copy_from`) mutate under the lock; `Arc::make_mut` copies
/// only if a snapshot is alive at that moment, so nothing a reader holds ever changes under it.
type StorageCell = Arc<Mutex<Arc<Storage>>>;

/// An n-dimensional array with reverse-mode autograd. Cloning is cheap: clones share the same
/// storage, gradient and graph node.
///
/// ```
/// use glassbox::Tensor;
/// let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]).requires_grad_();
/// let y = x.matmul(&x.t()).sum_all();
/// y.backward();
/// // d/dx sum(x x^T) = (1 1^T) x + (1 1^T) x  = column sums of x, doubled, broadcast to rows
/// assert_eq!(x.grad().unwrap().to_vec(), vec![8.0, 12.0, 8.0, 12.0]);
/// ```
#[derive(Clone)]
pub struct Tensor(Arc<TensorInner>);

struct TensorInner {
    id: TensorId,
    storage: StorageCell,
    layout: Layout,
    dtype: DType,
    /// How this tensor was computed, kept only when a gradient must flow through it.
    op: Option<Op>,
    requires_grad: AtomicBool,
    grad: Mutex<Option<Tensor>>,
}

impl Tensor {
    // ----- construction -------------------------------------------------------------------

    /// A tensor over `storage` seen through `layout`, outside any graph.
    pub fn from_storage(storage: Storage, layout: Layout) -> Tensor {
        assert!(
            layout.storage_extent() <= storage.len(),
            "Tensor::from_storage: layout {:?} reaches element {} but the storage holds {}",
            layout.shape(),
            layout.storage_extent(),
            storage.len()
        );
        Tensor::build(Arc::new(Mutex::new(Arc::new(storage))), layout, None)
    }

    /// The result of an op: records `op` in the graph when grad mode is on and some input
    /// needs a gradient; otherwise the tensor is a plain constant.
    /// With anomaly mode on, the output is checked for NaN and infinity first.
    pub(crate) fn from_op(storage: Storage, layout: Layout, op: Op) -> Tensor {
        if autograd::is_anomaly_mode() {
            autograd::anomaly::check_forward(&storage, &layout, &op);
        }
        let op =
            if autograd::is_grad_enabled() && op.inputs().iter().any(|t| t.requires_grad()) { Some(op) } else { None };
        Tensor::build(Arc::new(Mutex::new(Arc::new(storage))), layout, op)
    }

    /// A view: same storage cell as `self`, a new layout, recorded as `op`.
    pub(crate) fn view_op(&self, layout: Layout, op: Op) -> Tensor {
        let op = if autograd::is_grad_enabled() && self.requires_grad() { Some(op) } else { None };
        Tensor::build(self.0.storage.clone(), layout, op)
    }

    fn build(storage: StorageCell, layout: Layout, op: Option<Op>) -> Tensor {
        let dtype = storage.lock().expect("storage lock poisoned").dtype();
        let requires_grad = op.is_some();
        Tensor(Arc::new(TensorInner {
            id: TensorId::fresh(),
            storage,
            layout,
            dtype,
            op,
            requires_grad: AtomicBool::new(requires_grad),
            grad: Mutex::new(None),
        }))
    }

    /// An f32 tensor of `shape` holding `data` in row-major order. The values are copied
    /// once, into a cache-line-aligned [`HostBuffer`]; [`Tensor::from_buffer`] takes one
    /// without a copy.
    ///
    /// Panics if `data.len()` is not the product of `shape`.
    pub fn from_vec(data: Vec<f32>, shape: &[usize]) -> Tensor {
        Tensor::from_float_vec(data, shape)
    }

    /// An f64 tensor of `shape` holding `data` in row-major order.
    pub fn from_vec_f64(data: Vec<f64>, shape: &[usize]) -> Tensor {
        Tensor::from_float_vec(data, shape)
    }

    /// A tensor of any [`Float`] element type. The values are copied into a 64-byte-aligned
    /// [`HostBuffer`] (see there why); [`Tensor::from_buffer`] takes one without a copy.
    pub fn from_float_vec<T: Float>(data: Vec<T>, shape: &[usize]) -> Tensor {
        // Checked before the copy, and named as the caller knows it.
        check_fill("Tensor::from_vec", data.len(), shape);
        Tensor::from_storage(Storage::Cpu(T::wrap(HostBuffer::from(data))), Layout::contiguous(shape))
    }

    /// A tensor of `shape` owning `data` (row-major), without a copy.
    ///
    /// Panics if `data.len()` is not the product of `shape`.
    pub fn from_buffer<T: Float>(data: HostBuffer<T>, shape: &[usize]) -> Tensor {
        check_fill("Tensor::from_buffer", data.len(), shape);
        Tensor::from_storage(Storage::Cpu(T::wrap(data)), Layout::contiguous(shape))
    }

    /// A scalar (rank-0) f32 tensor.
    pub fn scalar(value: f32) -> Tensor {
        Tensor::from_vec(vec![value], &[])
    }

    /// A tensor of `shape` and `dtype` with every element `value`.
    pub fn full_dtype(shape: &[usize], value: f64, dtype: DType) -> Tensor {
        let n = numel_of("Tensor::full", shape);
        // The buffer comes from the pool, where dropped tensors park theirs. Allocated fresh,
        // every zeros tensor a backward formula makes (the padding of `narrow`'s gradient, say)
        // would be parked when dropped and never asked for again: the pool grew by 10 MB per
        // LSTM training step, up to its cap, while every step paid for fresh pages.
        crate::with_float!(dtype, T => {
            Tensor::from_buffer(crate::backend::cpu::pool::filled(n, T::from_f64(value)), shape)
        })
    }

    /// A tensor of `shape` and `dtype` with every element `value`, made directly on `device`.
    pub fn full_on(shape: &[usize], value: f64, dtype: DType, device: Device) -> Tensor {
        if device == Device::Cpu {
            return Tensor::full_dtype(shape, value, dtype);
        }
        let n = numel_of("Tensor::full", shape);
        Tensor::from_storage(crate::backend::full_on(n, value, dtype, device), Layout::contiguous(shape))
    }

    /// An f32 tensor of `shape` with every element `value`.
    pub fn full(shape: &[usize], value: f32) -> Tensor {
        Tensor::full_dtype(shape, value as f64, DType::F32)
    }

    /// An f32 tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 0.0)
    }

    /// An f32 tensor of ones.
    pub fn ones(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 1.0)
    }

    /// Zeros with the shape, dtype and device of `self`.
    pub fn zeros_like(&self) -> Tensor {
        Tensor::full_on(self.shape(), 0.0, self.dtype(), self.device())
    }

    /// Ones with the shape, dtype and device of `self`.
    pub fn ones_like(&self) -> Tensor {
        Tensor::full_on(self.shape(), 1.0, self.dtype(), self.device())
    }

    // ----- devices ------------------------------------------------------------------------

    /// The same values on `device`: `self` when already there, else a copy. The copy is
    /// recorded like [`contiguous`](Tensor::contiguous)'s, so gradients flow back to `self`'s
    /// device. An error when the device cannot be used (no driver, no such GPU, f64 on CUDA).
    ///
    /// ```
    /// use glassbox::{Device, Tensor};
    /// let x = Tensor::ones(&[2, 3]);
    /// assert_eq!(x.to(Device::Cpu).unwrap().device(), Device::Cpu);
    /// ```
    pub fn to(&self, device: Device) -> Result<Tensor, DeviceError> {
        if self.device() == device {
            return Ok(self.clone());
        }
        let moved = crate::backend::to_device(&crate::backend::contiguous(&self.storage(), self.layout()), device)?;
        Ok(Tensor::from_op(moved, Layout::contiguous(self.shape()), Op::Copy(self.clone())))
    }

    /// Moves this leaf tensor's elements to `device` in place: every clone and view of it
    /// sees the new device (how a model's parameters move; see `nn::move_parameters`). Its
    /// accumulated gradient, which stays behind on the old device, is dropped. An error for a
    /// tensor computed by a recorded op (move the leaves instead) or an unusable device.
    pub fn move_to_(&self, device: Device) -> Result<(), DeviceError> {
        if let Some(op) = &self.0.op {
            return Err(DeviceError(format!(
                "move_to_: tensor of shape {:?} was computed by {}; only leaf tensors move in place (use to(device))",
                self.shape(),
                op.kind().name()
            )));
        }
        let mut cell = self.0.storage.lock().expect("storage lock poisoned");
        if cell.device() != device {
            *cell = std::sync::Arc::new(crate::backend::to_device(&cell, device)?);
        }
        drop(cell);
        self.zero_grad();
        Ok(())
    }

    /// The f32 vector `[0, 1, .., n - 1]`.
    pub fn arange(n: usize) -> Tensor {
        Tensor::from_vec((0..n).map(|i| i as f32).collect(), &[n])
    }

    /// Standard normal samples (f32) drawn from a generator seeded with `seed`.
    pub fn randn(shape: &[usize], seed: u64) -> Tensor {
        Tensor::randn_dtype(shape, DType::F32, &mut Rng::new(seed))
    }

    /// Uniform samples in `[0, 1)` (f32) drawn from a generator seeded with `seed`.
    pub fn rand(shape: &[usize], seed: u64) -> Tensor {
        Tensor::rand_dtype(shape, DType::F32, &mut Rng::new(seed))
    }

    /// Standard normal samples of `dtype`, continuing the stream of `rng`.
    pub fn randn_dtype(shape: &[usize], dtype: DType, rng: &mut Rng) -> Tensor {
        let n = numel_of("Tensor::randn", shape);
        let values: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        Tensor::from_vec_f64(values, shape).to_dtype(dtype).detach()
    }

    /// Uniform samples in `[0, 1)` of `dtype`, continuing the stream of `rng`.
    pub fn rand_dtype(shape: &[usize], dtype: DType, rng: &mut Rng) -> Tensor {
        let n = numel_of("Tensor::rand", shape);
        let values: Vec<f64> = (0..n).map(|_| rng.uniform()).collect();
        Tensor::from_vec_f64(values, shape).to_dtype(dtype).detach()
    }

    // ----- reading ------------------------------------------------------------------------

    /// The size of each dimension.
    pub fn shape(&self) -> &[usize] {
        self.0.layout.shape()
    }

    /// Size of dimension `dim`; panics with the shape if `dim` is out of range.
    pub fn dim(&self, dim: usize) -> usize {
        self.shape()[self.check_dim("dim", dim)]
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.layout.rank()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.0.layout.numel()
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.0.dtype
    }

    /// The device holding the elements (read from the storage, which
    /// [`move_to_`](Tensor::move_to_) may move).
    pub fn device(&self) -> Device {
        self.0.storage.lock().expect("storage lock poisoned").device()
    }

    /// Shape, strides and offset of this view.
    pub fn layout(&self) -> &Layout {
        &self.0.layout
    }

    /// True when the elements are packed row-major without gaps.
    pub fn is_contiguous(&self) -> bool {
        self.0.layout.is_contiguous()
    }

    /// This handle's id (clones share it).
    pub fn id(&self) -> TensorId {
        self.0.id
    }

    /// True when `self` and `other` view the same storage cell.
    pub fn shares_storage_with(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.0.storage, &other.0.storage)
    }

    /// True when this handle is the only way to reach its elements, so writing them in place
    /// cannot change anything another tensor, view, clone or snapshot sees: no other handle
    /// to this tensor, no view sharing its storage cell, no kernel holding a snapshot. It must
    /// also be a plain host buffer seen whole (contiguous, from element 0, every element) and
    /// outside any graph. The autograd engine uses it to add gradients in place.
    pub(crate) fn is_unshared_host_buffer(&self) -> bool {
        if Arc::strong_count(&self.0) != 1 || Arc::strong_count(&self.0.storage) != 1 || self.0.op.is_some() {
            return false;
        }
        let storage = self.0.storage.lock().expect("storage lock poisoned");
        Arc::strong_count(&storage) == 1
            && matches!(**storage, Storage::Cpu(_))
            && self.0.layout.is_contiguous()
            && self.0.layout.offset() == 0
            && self.0.layout.numel() == storage.len()
    }

    /// A snapshot of the storage; holding it never blocks anyone.
    pub fn storage(&self) -> Arc<Storage> {
        self.0.storage.lock().expect("storage lock poisoned").clone()
    }

    /// The storage, moved out without a copy when no other handle shares it (a fresh result
    /// about to become another op's output), copied otherwise. `Arc::unwrap_or_clone` on a
    /// [`storage`](Tensor::storage) snapshot of a live tensor would always copy: the tensor
    /// itself holds the other reference.
    pub(crate) fn into_storage(self) -> Storage {
        let snapshot = self.storage();
        drop(self);
        Arc::unwrap_or_clone(snapshot)
    }

    /// Exclusive access to the storage for in-place updates (optimizers, `copy_from`). Readers
    /// holding a snapshot keep their old values: the buffer is copied first in that case.
    pub(crate) fn storage_mut(&self) -> StorageWriteGuard<'_> {
        StorageWriteGuard(self.0.storage.lock().expect("storage lock poisoned"))
    }

    /// The elements in row-major order, converted to f32.
    pub fn to_vec(&self) -> Vec<f32> {
        self.to_vec_as::<f32>()
    }

    /// The elements in row-major order, converted to f64.
    pub fn to_vec_f64(&self) -> Vec<f64> {
        self.to_vec_as::<f64>()
    }

    fn to_vec_as<T: Float>(&self) -> Vec<T> {
        let storage = self.storage();
        let host = storage.to_cpu();
        let layout = self.layout();
        crate::with_float!(self.dtype(), S => {
            let data = S::slice(&host);
            if layout.is_contiguous() {
                let start = layout.offset();
                data[start..start + layout.numel()].iter().map(|v| T::from_f64(v.to_f64())).collect()
            } else {
                layout.offsets().map(|i| T::from_f64(data[i].to_f64())).collect()
            }
        })
    }

    /// The value of a one-element tensor as f32; panics naming the shape otherwise.
    pub fn item(&self) -> f32 {
        self.item_f64() as f32
    }

    /// The value of a one-element tensor as f64.
    pub fn item_f64(&self) -> f64 {
        assert_eq!(
            self.numel(),
            1,
            "item: tensor of shape {:?} has {} elements; item() needs exactly one",
            self.shape(),
            self.numel()
        );
        self.to_vec_f64()[0]
    }

    // ----- autograd handles ---------------------------------------------------------------

    /// Marks this tensor as a leaf whose gradient `backward` should compute; returns it.
    ///
    /// Panics on a tensor computed by a recorded op: only leaves can be marked.
    pub fn requires_grad_(self) -> Tensor {
        self.set_requires_grad(true);
        self
    }

    /// Turns gradient tracking of a leaf on or off (e.g. to freeze a layer).
    pub fn set_requires_grad(&self, on: bool) {
        assert!(
            self.0.op.is_none(),
            "set_requires_grad: tensor of shape {:?} was computed by {}; only leaf tensors can change it",
            self.shape(),
            self.0.op.as_ref().map(|o| o.kind().name()).unwrap_or("?")
        );
        self.0.requires_grad.store(on, Ordering::Relaxed);
    }

    /// True when gradients flow to or through this tensor.
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad.load(Ordering::Relaxed)
    }

    /// True for tensors not computed by a recorded op (inputs and parameters).
    pub fn is_leaf(&self) -> bool {
        self.0.op.is_none()
    }

    /// The op that computed this tensor, if recorded.
    pub fn op(&self) -> Option<&Op> {
        self.0.op.as_ref()
    }

    /// The accumulated gradient of a leaf, if a backward pass has reached it since the last
    /// [`zero_grad`](Tensor::zero_grad).
    pub fn grad(&self) -> Option<Tensor> {
        self.0.grad.lock().expect("grad lock poisoned").clone()
    }

    /// Forgets the accumulated gradient.
    pub fn zero_grad(&self) {
        *self.0.grad.lock().expect("grad lock poisoned") = None;
    }

    /// Adds `g` to the accumulated gradient (gradients of a leaf sum over uses and over
    /// backward calls until zeroed).
    pub(crate) fn accumulate_grad(&self, g: Tensor) {
        let mut slot = self.0.grad.lock().expect("grad lock poisoned");
        *slot = Some(match slot.take() {
            // A gradient nobody else can see is kept as it is.
            None if g.is_unshared_host_buffer() => g,
            // Otherwise an owned copy: the incoming gradient may share storage with another
            // input's gradient (add hands both the same `g`) or with the caller's seed, and
            // optimizers write gradients in place.
            None => Tensor::from_storage(
                crate::backend::contiguous(&g.storage(), g.layout()),
                Layout::contiguous(g.shape()),
            ),
            // Added into the stored gradient's buffer when the caller holds no handle to it.
            Some(old) => autograd::no_grad(|| autograd::accumulate::add_into(old, &g)),
        });
    }

    /// Another view of this tensor's storage, outside any graph (kernels that compute several
    /// results into one buffer hand them out this way).
    pub(crate) fn view_detached(&self, layout: Layout) -> Tensor {
        Tensor::build(self.0.storage.clone(), layout, None)
    }

    /// The same values, cut out of the graph: no gradient flows back through the result.
    pub fn detach(&self) -> Tensor {
        Tensor::build(self.0.storage.clone(), self.0.layout.clone(), None)
    }

    // ----- shared checks ------------------------------------------------------------------

    /// Panics unless `dim < rank`, naming the op and the shape.
    pub(crate) fn check_dim(&self, op: &str, dim: usize) -> usize {
        assert!(
            dim < self.rank(),
            "{op}: dim {dim} is out of range for a tensor of shape {:?} (rank {})",
            self.shape(),
            self.rank()
        );
        dim
    }

    /// Panics unless `self` and `other` share dtype and device, naming the op and both.
    pub(crate) fn check_same_kind(&self, op: &str, other: &Tensor) {
        assert!(
            self.device() == other.device(),
            "{op}: tensors on different devices ({} and {}); move one with to(device)",
            self.device(),
            other.device()
        );
        assert!(
            self.dtype() == other.dtype(),
            "{op}: dtypes differ ({} with shape {:?} and {} with shape {:?}); convert one with to_dtype",
            self.dtype(),
            self.shape(),
            other.dtype(),
            other.shape()
        );
    }
}

/// Panics, naming `op`, unless `len` values exactly fill `shape`.
fn check_fill(op: &str, len: usize, shape: &[usize]) {
    let numel = numel_of(op, shape);
    assert_eq!(len, numel, "{op}: {len} values cannot fill shape {shape:?} ({numel} elements)");
}

/// The element count of `shape`; panics naming `op` when the dims are too large to index
/// (rather than overflowing into a wrong, small count).
pub(crate) fn numel_of(op: &str, shape: &[usize]) -> usize {
    checked_numel(shape).unwrap_or_else(|| {
        panic!(
            "{op}: shape {shape:?} has more elements than this machine can address (the product of its dims overflows)"
        )
    })
}

/// Exclusive, in-place access to a tensor's storage (see [`Tensor::storage_mut`]).
pub(crate) struct StorageWriteGuard<'a>(MutexGuard<'a, Arc<Storage>>);

impl StorageWriteGuard<'_> {
    /// The storage, copied first if a reader still holds a snapshot of it.
    pub(crate) fn get(&mut self) -> &mut Storage {
        Arc::make_mut(&mut self.0)
    }
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor(shape={:?}, dtype={}, device={}", self.shape(), self.dtype(), self.device())?;
        if let Some(op) = &self.0.op {
            write!(f, ", op={}", op.kind().name())?;
        }
        write!(f, ")")
    }
}
