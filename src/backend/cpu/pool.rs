//! A pool of recycled host buffers.
//!
//! A training step allocates the same buffers in the same sizes every step, and frees them
//! all at its end. Fresh large allocations come from the OS as untouched pages, and the first
//! write to each page faults into the kernel: profiling a GPT step showed about a quarter of
//! its time in page faults and zeroing. So a dropped [`CpuStorage`] of at least
//! [`MIN_POOLED_ELEMENTS`] elements parks its buffer here, keyed by element type and length,
//! and the next kernel asking for that size takes it back (already paged in). The pool holds
//! at most [`MAX_POOLED_BYTES`] (or what [`set_capacity`] says); past that, dropped buffers
//! are freed as usual.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::tensor::{CpuStorage, DType, Float, HostBuffer};

/// Buffers smaller than this are left to the allocator, which recycles them well by itself.
pub const MIN_POOLED_ELEMENTS: usize = 1 << 12;
/// Default upper bound on the bytes parked in the pool (see [`set_capacity`]).
pub const MAX_POOLED_BYTES: usize = 512 << 20;

static CAPACITY: AtomicUsize = AtomicUsize::new(MAX_POOLED_BYTES);

/// Sets how many bytes the pool may park (0 turns pooling off); buffers already parked beyond
/// it are kept until taken.
pub fn set_capacity(bytes: usize) {
    CAPACITY.store(bytes, Ordering::Relaxed);
}

struct Pool {
    free: HashMap<(DType, usize), Vec<CpuStorage>>,
    bytes: usize,
}

static POOL: Mutex<Option<Pool>> = Mutex::new(None);
static HITS: AtomicUsize = AtomicUsize::new(0);
static MISSES: AtomicUsize = AtomicUsize::new(0);

/// How often kernels found a recycled buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStats {
    /// Requests served from the pool.
    pub hits: usize,
    /// Requests that went to the allocator (large enough to pool, but none free).
    pub misses: usize,
    /// Bytes parked right now.
    pub pooled_bytes: usize,
}

/// Counters since the start (or the last [`clear`]).
pub fn stats() -> PoolStats {
    let pooled_bytes = POOL.lock().map(|p| p.as_ref().map_or(0, |p| p.bytes)).unwrap_or(0);
    PoolStats { hits: HITS.load(Ordering::Relaxed), misses: MISSES.load(Ordering::Relaxed), pooled_bytes }
}

/// Frees every parked buffer and resets the counters.
pub fn clear() {
    let drained = POOL.lock().ok().and_then(|mut p| p.take());
    // Dropped outside the lock: each CpuStorage's Drop would otherwise try to re-enter it.
    if let Some(pool) = drained {
        for storage in pool.free.into_values().flatten() {
            free_without_pooling(storage);
        }
    }
    HITS.store(0, Ordering::Relaxed);
    MISSES.store(0, Ordering::Relaxed);
}

/// A buffer of `len` zeros, recycled when one of that size is parked.
pub fn zeros<T: Float>(len: usize) -> HostBuffer<T> {
    filled(len, T::ZERO)
}

/// A buffer of `len` copies of `value`, recycled when one of that size is parked.
pub fn filled<T: Float>(len: usize, value: T) -> HostBuffer<T> {
    let mut v = reuse::<T>(len);
    v.fill(value);
    v
}

/// A buffer of `len` elements whose values are unspecified (left over from an earlier use,
/// or zeros): for kernels that overwrite every element, skipping a pass of zeroing.
pub fn reuse<T: Float>(len: usize) -> HostBuffer<T> {
    if len >= MIN_POOLED_ELEMENTS {
        let recycled = POOL.lock().ok().and_then(|mut guard| {
            let pool = guard.as_mut()?;
            let storage = pool.free.get_mut(&(T::DTYPE, len))?.pop()?;
            pool.bytes -= len * T::DTYPE.size_in_bytes();
            Some(storage)
        });
        match recycled {
            Some(storage) => {
                HITS.fetch_add(1, Ordering::Relaxed);
                return T::unwrap_buffer(storage);
            }
            None => {
                MISSES.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    HostBuffer::zeroed(len)
}

/// Parks a buffer for the next kernel that asks for its size, as dropping a tensor would:
/// for kernels' scratch (taken with [`reuse`] or [`zeros`]) and for benches and ladders,
/// which call kernels directly and hold plain buffers, so that repeated runs time the kernel
/// rather than fresh pages faulting in.
pub fn give_back<T: Float>(buffer: HostBuffer<T>) {
    recycle(T::wrap(buffer));
}

/// Called by `CpuStorage`'s `Drop` with the buffer it held: parks it if it is worth keeping
/// and there is room, else lets it go.
pub(crate) fn recycle(storage: CpuStorage) {
    let (dtype, len) = (storage.dtype(), storage.len());
    let bytes = len * dtype.size_in_bytes();
    if len < MIN_POOLED_ELEMENTS {
        free_without_pooling(storage);
        return;
    }
    let rejected = match POOL.lock() {
        Ok(mut guard) => {
            let pool = guard.get_or_insert_with(|| Pool { free: HashMap::new(), bytes: 0 });
            if pool.bytes + bytes <= CAPACITY.load(Ordering::Relaxed) {
                pool.bytes += bytes;
                pool.free.entry((dtype, len)).or_default().push(storage);
                None
            } else {
                Some(storage)
            }
        }
        Err(_) => Some(storage),
    };
    if let Some(storage) = rejected {
        free_without_pooling(storage);
    }
}

/// Frees a storage's buffer directly: the vector is taken out and dropped here, so the
/// storage's own `Drop` finds it empty and does not come back to the pool.
fn free_without_pooling(mut storage: CpuStorage) {
    match &mut storage {
        CpuStorage::F32(v) => drop(std::mem::take(v)),
        CpuStorage::F64(v) => drop(std::mem::take(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test, not two: the pool is process-wide, and a capacity change in one test would
    // race with the other's expectation of reuse.
    #[test]
    fn dropped_buffers_are_reused_and_a_full_pool_frees_them_instead() {
        let len = MIN_POOLED_ELEMENTS + 17;
        let first: HostBuffer<f64> = zeros(len);
        let ptr = first.as_ptr();
        drop(CpuStorage::F64(first));
        let again: HostBuffer<f64> = zeros(len);
        assert_eq!(again.as_ptr(), ptr, "the parked buffer should come back");
        assert!(again.iter().all(|&v| v == 0.0), "recycled buffers are zeroed");

        // Regression: freeing past the capacity once re-entered the pool from the buffer's own
        // drop, recursing until the stack overflowed.
        set_capacity(0);
        drop(CpuStorage::F64(again));
        for _ in 0..3 {
            drop(CpuStorage::F32(zeros::<f32>(len)));
        }
        set_capacity(MAX_POOLED_BYTES);
        clear();
        assert_eq!(stats().pooled_bytes, 0, "clear() empties the pool");
    }
}
