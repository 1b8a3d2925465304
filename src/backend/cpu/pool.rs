//! A pool of recycled host buffers.
//!
//! A training step allocates the same buffers in the same sizes every step, and frees them
//! all at its end. Fresh large allocations come from the OS as untouched pages, and the first
//! write to each page faults into the kernel: profiling a GPT step showed about a quarter of
//! its time in page faults and zeroing. So a dropped [`CpuStorage`] of at least
//! [`MIN_POOLED_ELEMENTS`] elements parks its buffer here, keyed by element type and length,
//! and the next kernel asking for that size takes it back (already paged in). The pool holds
//! at most [`MAX_POOLED_BYTES`]; past that, dropped buffers are freed as usual.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::tensor::{CpuStorage, DType, Float};

/// Buffers smaller than this are left to the allocator, which recycles them well by itself.
pub const MIN_POOLED_ELEMENTS: usize = 1 << 12;
/// Upper bound on the bytes parked in the pool.
pub const MAX_POOLED_BYTES: usize = 1 << 30;

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
pub fn zeros<T: Float>(len: usize) -> Vec<T> {
    let mut v = reuse::<T>(len);
    v.fill(T::ZERO);
    v
}

/// A buffer of `len` elements whose values are unspecified (left over from an earlier use,
/// or zeros): for kernels that overwrite every element, skipping a pass of zeroing.
pub fn reuse<T: Float>(len: usize) -> Vec<T> {
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
                return T::unwrap_vec(storage);
            }
            None => {
                MISSES.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    vec![T::ZERO; len]
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
            if pool.bytes + bytes <= MAX_POOLED_BYTES {
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

/// Frees a storage's buffer directly (its `Drop` then finds an empty buffer and does nothing).
fn free_without_pooling(storage: CpuStorage) {
    drop(storage.into_empty());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_buffer_is_reused_for_the_same_size() {
        let len = MIN_POOLED_ELEMENTS + 17;
        let first: Vec<f64> = zeros(len);
        let ptr = first.as_ptr();
        drop(CpuStorage::F64(first));
        let again: Vec<f64> = zeros(len);
        assert_eq!(again.as_ptr(), ptr, "the parked buffer should come back");
        assert!(again.iter().all(|&v| v == 0.0), "recycled buffers are zeroed");
    }
}
