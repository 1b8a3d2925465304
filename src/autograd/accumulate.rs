//! Gradient accumulation: adding a gradient onto the one already waiting for the same tensor.
//!
//! A tensor used twice (a residual connection, a weight shared across LSTM steps) receives a
//! gradient from each use, and the sum is what flows on. Summing with `a.add(b)` takes a third
//! buffer for every addition. When the waiting gradient is a buffer nobody else can see (the
//! usual case: the engine made it and holds the only handle), the new one is added into it
//! instead: the same arithmetic and the same rounding, one buffer fewer, and the cache lines
//! just written stay hot. When anything else shares it (a clone handed to two inputs, a view,
//! a snapshot a kernel holds, a device buffer), the plain `add` runs.

use crate::backend;
use crate::tensor::{Device, Layout};
use crate::Tensor;

/// `acc + g` (same shape), written into `acc`'s own buffer when no one else can see it.
pub(crate) fn add_into(acc: Tensor, g: &Tensor) -> Tensor {
    debug_assert_eq!(acc.shape(), g.shape(), "gradient accumulation of mismatched shapes");
    let whole = acc.layout().clone();
    if add_in_place(&acc, &whole, g) {
        return acc;
    }
    acc.add(g)
}

/// `acc` with `g` added onto its slice `start..start + g.shape()[dim]` along `dim`: the
/// gradient of `narrow`, added where the narrowed input's gradient is waiting. Only the
/// slice is touched, where adding [`zeros_with_slice`]'s full-width result would pass over
/// all of `acc` (the LSTM narrows its four gates out of one matrix every step: four
/// full-width passes where one quarter each is needed).
pub(crate) fn add_into_slice(acc: Tensor, dim: usize, start: usize, g: &Tensor) -> Tensor {
    let slice = acc.layout().narrow(dim, start, g.shape()[dim]);
    if add_in_place(&acc, &slice, g) {
        return acc;
    }
    let full = zeros_with_slice(acc.shape(), dim, start, g);
    add_into(acc, &full)
}

/// The gradient of `narrow` on its own: zeros of the input's `shape`, with `g` at `start`
/// along `dim` (on `g`'s device).
pub(crate) fn zeros_with_slice(shape: &[usize], dim: usize, start: usize, g: &Tensor) -> Tensor {
    let dx = Tensor::full_on(shape, 0.0, g.dtype(), g.device());
    let slice = Layout::contiguous(shape).narrow(dim, start, g.shape()[dim]);
    backend::assign(dx.storage_mut().get(), &slice, &g.storage(), g.layout());
    dx
}

/// Adds `g` onto the view `dst` of `acc`'s buffer, in place, when that buffer is an
/// unshared host buffer and `g` (of the same element type) lives in host memory too. Returns
/// false, having done nothing, otherwise.
fn add_in_place(acc: &Tensor, dst: &Layout, g: &Tensor) -> bool {
    if acc.dtype() != g.dtype() || g.device() != Device::Cpu || !acc.is_unshared_host_buffer() {
        return false;
    }
    let src = g.storage();
    backend::add_assign_host(acc.storage_mut().get().cpu_mut(), dst, src.cpu(), g.layout());
    true
}
