//! [`HostBuffer`]: the heap array behind every CPU tensor, starting on a cache-line boundary.
//!
//! A `Vec<f32>` is only promised 4-byte alignment, and the C allocator hands out large blocks
//! 16 bytes past a page boundary. Every 64-byte vector load or store at such an address
//! straddles two cache lines, and the core pays for both: the softmax and layer-norm kernels
//! moved 8-15% fewer bytes per second from such buffers than from 64-byte-aligned ones, and
//! two threads writing neighbouring rows of a matrix product would share the line at each
//! row's seam. So host tensors own a `HostBuffer`, allocated with 64-byte alignment.

use std::alloc::{self, Layout};
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// The alignment of every [`HostBuffer`]: one cache line, and the width of an AVX-512 vector.
pub const BUFFER_ALIGN: usize = 64;

/// A fixed-length heap array whose first element sits on a [`BUFFER_ALIGN`]-byte boundary.
/// It reads and writes as a slice (`Deref<Target = [T]>`); its length never changes.
///
/// ```
/// use glassbox::tensor::{HostBuffer, BUFFER_ALIGN};
/// let mut b = HostBuffer::<f32>::zeroed(1000);
/// b[3] = 2.0;
/// assert_eq!(b.iter().sum::<f32>(), 2.0);
/// assert_eq!(b.as_ptr() as usize % BUFFER_ALIGN, 0);
/// ```
pub struct HostBuffer<T: bytemuck::Pod> {
    /// The first element, on a [`BUFFER_ALIGN`]-byte boundary inside the allocation.
    ptr: NonNull<T>,
    /// The start of the allocation (what is given back to the allocator).
    base: NonNull<u8>,
    len: usize,
    owns: PhantomData<T>,
}

// SAFETY: a HostBuffer owns its elements outright (no shared pointer escapes but through
// borrows of `self`), exactly as a Vec<T> does, so it may move to and be shared between
// threads whenever T may.
unsafe impl<T: bytemuck::Pod + Send> Send for HostBuffer<T> {}
// SAFETY: as above; `&HostBuffer` only hands out `&[T]`.
unsafe impl<T: bytemuck::Pod + Sync> Sync for HostBuffer<T> {}

impl<T: bytemuck::Pod> HostBuffer<T> {
    /// An empty buffer (no allocation).
    pub const fn new() -> Self {
        HostBuffer { ptr: NonNull::dangling(), base: NonNull::dangling(), len: 0, owns: PhantomData }
    }

    /// `len` elements of all-zero bits (0.0 for floats). A large buffer comes from fresh,
    /// already zeroed pages of the OS, so this costs no pass over the memory until it is
    /// touched.
    pub fn zeroed(len: usize) -> Self {
        let Some(layout) = Self::layout(len) else { return Self::new() };
        // SAFETY: the layout has a nonzero size (checked by `layout`).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let base = NonNull::new(raw).unwrap_or_else(|| alloc::handle_alloc_error(layout));
        // The allocation holds BUFFER_ALIGN bytes more than the elements need, and starts on
        // a boundary of at least align_of::<T>(), so the first 64-byte boundary at or after
        // it leaves room for all `len` elements and is aligned for T.
        let skip = raw.align_offset(BUFFER_ALIGN);
        assert!(skip < BUFFER_ALIGN, "HostBuffer: the allocator returned an unalignable pointer");
        // SAFETY: `skip + len * size_of::<T>()` is within the allocation (see above), the
        // result is aligned for T, and all-zero bits are a valid T because T is Pod.
        let ptr = unsafe { NonNull::new_unchecked(raw.add(skip).cast::<T>()) };
        HostBuffer { ptr, base, len, owns: PhantomData }
    }

    /// `len` copies of `value`.
    pub fn filled(len: usize, value: T) -> Self {
        let mut buffer = Self::zeroed(len);
        buffer.fill(value);
        buffer
    }

    /// A copy of `values`.
    pub fn from_slice(values: &[T]) -> Self {
        let mut buffer = Self::zeroed(values.len());
        buffer.copy_from_slice(values);
        buffer
    }

    /// The allocation's layout, or `None` for a buffer that allocates nothing: the elements
    /// plus [`BUFFER_ALIGN`] bytes to move their start to a boundary, with the alignment of
    /// a plain allocation. Asking the allocator for 64-byte alignment instead would cost a
    /// pass of zeroing: Rust's system allocator only hands out lazily zeroed pages (`calloc`)
    /// for alignments up to 16, and zeroes everything else with `memset`, faulting in every
    /// page of a fresh buffer at once.
    fn layout(len: usize) -> Option<Layout> {
        let overflow = "HostBuffer: length overflows the address space";
        let bytes = len.checked_mul(size_of::<T>()).expect(overflow);
        if bytes == 0 {
            return None;
        }
        let align = align_of::<T>().max(16);
        Some(Layout::from_size_align(bytes.checked_add(BUFFER_ALIGN).expect(overflow), align).expect(overflow))
    }
}

impl<T: bytemuck::Pod> Drop for HostBuffer<T> {
    fn drop(&mut self) {
        if let Some(layout) = Self::layout(self.len) {
            // SAFETY: `base` came from `alloc_zeroed` with this same layout (the length never
            // changes after construction), and is freed only here.
            unsafe { alloc::dealloc(self.base.as_ptr(), layout) }
        }
    }
}

impl<T: bytemuck::Pod> Deref for HostBuffer<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` points at `len` initialized elements owned by `self` (or is dangling
        // and well aligned with `len == 0`).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: bytemuck::Pod> DerefMut for HostBuffer<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes this the only borrow.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: bytemuck::Pod> Default for HostBuffer<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: bytemuck::Pod> Clone for HostBuffer<T> {
    fn clone(&self) -> Self {
        Self::from_slice(self)
    }
}

impl<T: bytemuck::Pod + fmt::Debug> fmt::Debug for HostBuffer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: bytemuck::Pod + PartialEq> PartialEq for HostBuffer<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: bytemuck::Pod + PartialEq> PartialEq<Vec<T>> for HostBuffer<T> {
    fn eq(&self, other: &Vec<T>) -> bool {
        **self == **other
    }
}

impl<T: bytemuck::Pod + PartialEq> PartialEq<[T]> for HostBuffer<T> {
    fn eq(&self, other: &[T]) -> bool {
        **self == *other
    }
}

impl<'a, T: bytemuck::Pod> IntoIterator for &'a HostBuffer<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'a, T: bytemuck::Pod> IntoIterator for &'a mut HostBuffer<T> {
    type Item = &'a mut T;
    type IntoIter = std::slice::IterMut<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter_mut()
    }
}

/// Copies the vector's elements into an aligned buffer (a `Vec` cannot give up its own
/// allocation: it was made with `T`'s alignment, and must be freed with it).
impl<T: bytemuck::Pod> From<Vec<T>> for HostBuffer<T> {
    fn from(values: Vec<T>) -> Self {
        Self::from_slice(&values)
    }
}

impl<T: bytemuck::Pod> From<&[T]> for HostBuffer<T> {
    fn from(values: &[T]) -> Self {
        Self::from_slice(values)
    }
}

/// Collects into a vector first (an iterator's length is not known up front), then copies once.
impl<T: bytemuck::Pod> FromIterator<T> for HostBuffer<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        Self::from_slice(&iter.into_iter().collect::<Vec<T>>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_zeroed_and_independent_copies() {
        for len in [1, 3, 4096, 100_003] {
            let mut b = HostBuffer::<f32>::zeroed(len);
            assert_eq!(b.as_ptr() as usize % BUFFER_ALIGN, 0, "length {len}");
            assert!(b.iter().all(|&v| v == 0.0));
            b[len - 1] = 5.0;
            let c = b.clone();
            b[len - 1] = 6.0;
            assert_eq!(c[len - 1], 5.0);
            assert_eq!(c.as_ptr() as usize % BUFFER_ALIGN, 0);
        }
        let empty = HostBuffer::<f64>::zeroed(0);
        assert!(empty.is_empty());
        assert_eq!(HostBuffer::from(vec![1.0f64, 2.0]), HostBuffer::from_slice(&[1.0, 2.0]));
    }
}
