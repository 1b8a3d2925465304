//! A pool of recycled host buffers.
//!
//! A training step allocates the same buffers in the same sizes every step, and frees them
//! all at its end. Fresh large allocations come from the OS as untouched pages, and the first
//! write to each page faults into the kernel: profiling a GPT step showed about a quarter of
//! its time in page faults and zeroing. So a dropped [`CpuStorage`] of at least
//! [`MIN_POOLED_ELEMENTS`] elements parks its buffer here, keyed by element type and length,
//! and the next kernel asking for that size takes it back (already paged in). The pool holds
//! at most [`MAX_POOLED_BYTES`] (or what [`set_capacity`] says).
//!
//! When a buffer arrives at a full pool, the buffers parked longest ago are freed to make
//! room for it. A steady loop re-parks the sizes it uses every step, so those stay young,
//! while sizes nobody asks for again (an earlier phase's, a different batch size's, or
//! outputs that some path allocates without the pool) age out. Without that, such leftovers
//! once filled the pool for good: the fused-kernel bench's naive softmax parked 512 MiB of
//! `2048 x 65` outputs, and from then on the `4096 x 4096` ones found no room, so every run
//! faulted 64 MiB of fresh pages in and ran at a sixth of its speed.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::tensor::{CpuStorage, DType, Float, HostBuffer};

/// Buffers smaller than this are left to the allocator, which recycles them well by itself.
pub const MIN_POOLED_ELEMENTS: usize = 1 << 12;
/// Default upper bound on the bytes parked in the pool (see [`set_capacity`]).
pub const MAX_POOLED_BYTES: usize = 512 << 20;

static CAPACITY: AtomicUsize = AtomicUsize::new(MAX_POOLED_BYTES);

/// Sets how many bytes the pool may park (0 turns pooling off); buffers already parked beyond
/// it are kept until taken, or freed when the next buffer is parked.
pub fn set_capacity(bytes: usize) {
    CAPACITY.store(bytes, Ordering::Relaxed);
}

/// The parked buffers, by element type and length, each list oldest first, and each buffer
/// with the tick at which it was parked.
#[derive(Default)]
struct Pool {
    free: HashMap<(DType, usize), VecDeque<(u64, CpuStorage)>>,
    bytes: usize,
    tick: u64,
}

/// The bytes of a buffer of `len` elements of `dtype` (a key of [`Pool::free`]).
fn bytes_of((dtype, len): (DType, usize)) -> usize {
    len * dtype.size_in_bytes()
}

impl Pool {
    /// The buffer of this size parked most recently (its pages the likeliest to be in cache).
    fn take(&mut self, key: (DType, usize)) -> Option<CpuStorage> {
        let (_, storage) = self.free.get_mut(&key)?.pop_back()?;
        self.bytes -= bytes_of(key);
        Some(storage)
    }

    /// Parks `storage`, first taking out the buffers parked longest ago until it fits within
    /// `capacity`; returns those (to be freed outside the lock), or `storage` itself when it
    /// is larger than the whole capacity.
    fn park(&mut self, storage: CpuStorage, capacity: usize) -> Vec<CpuStorage> {
        let key = (storage.dtype(), storage.len());
        let bytes = bytes_of(key);
        if bytes > capacity {
            return vec![storage];
        }
        let mut evicted = Vec::new();
        while self.bytes + bytes > capacity {
            // The oldest buffer is at the front of one of the lists. A scan over every size
            // seen (a few dozen in a training loop) is cheap beside the free it leads to.
            // (Emptied lists stay, so that a steady loop parks without allocating a list.)
            let fronts = self.free.iter().filter_map(|(&key, list)| Some((list.front()?.0, key)));
            let Some((_, oldest)) = fronts.min_by_key(|&(tick, _)| tick) else {
                break;
            };
            let (_, old) = self.free.get_mut(&oldest).and_then(VecDeque::pop_front).expect("the front was just seen");
            self.bytes -= bytes_of(oldest);
            evicted.push(old);
        }
        self.tick += 1;
        self.bytes += bytes;
        self.free.entry(key).or_default().push_back((self.tick, storage));
        evicted
    }
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
        for (_, storage) in pool.free.into_values().flatten() {
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
        let recycled = POOL.lock().ok().and_then(|mut guard| guard.as_mut()?.take((T::DTYPE, len)));
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
/// (making room by freeing the buffers parked longest ago), else lets it go.
pub(crate) fn recycle(storage: CpuStorage) {
    if storage.len() < MIN_POOLED_ELEMENTS {
        free_without_pooling(storage);
        return;
    }
    let freed = match POOL.lock() {
        Ok(mut guard) => guard.get_or_insert_with(Pool::default).park(storage, CAPACITY.load(Ordering::Relaxed)),
        Err(_) => vec![storage],
    };
    // Freed outside the lock: returning large blocks to the OS takes a while.
    for storage in freed {
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

    /// The eviction order, on a pool of the test's own (the process-wide one is shared with
    /// every test running beside this one).
    #[test]
    fn a_full_pool_frees_the_buffers_parked_longest_ago_and_lends_the_newest() {
        let (small, mid) = (MIN_POOLED_ELEMENTS, 2 * MIN_POOLED_ELEMENTS);
        let buffer = |len: usize| -> (CpuStorage, *const f32) {
            let b = HostBuffer::<f32>::zeroed(len);
            let ptr = b.as_ptr();
            (CpuStorage::F32(b), ptr)
        };
        let address = |s: &CpuStorage| match s {
            CpuStorage::F32(b) => b.as_ptr(),
            CpuStorage::F64(_) => panic!("only f32 buffers are parked here"),
        };
        let addresses = |list: Vec<CpuStorage>| list.iter().map(address).collect::<Vec<_>>();
        let mut pool = Pool::default();
        // Room for exactly a small, a mid-sized and a small buffer, parked in that order.
        let capacity = (small + mid + small) * 4;
        let parked = [buffer(small), buffer(mid), buffer(small)];
        let ptrs: Vec<_> = parked.iter().map(|(_, p)| *p).collect();
        for (storage, _) in parked {
            assert!(pool.park(storage, capacity).is_empty(), "room for all three");
        }
        // One more small buffer: the oldest of all goes (the first small one), not the oldest
        // of another size (the mid-sized one).
        let (newest, newest_ptr) = buffer(small);
        assert_eq!(addresses(pool.park(newest, capacity)), vec![ptrs[0]]);
        assert_eq!(pool.bytes, capacity);
        // Of the two small ones parked, the newest is lent first.
        assert_eq!(pool.take((DType::F32, small)).map(|s| address(&s)), Some(newest_ptr));
        assert_eq!(pool.take((DType::F32, small)).map(|s| address(&s)), Some(ptrs[2]));
        assert_eq!(pool.take((DType::F32, small)).map(|s| address(&s)), None);
        // A buffer larger than the whole capacity is handed back, and nothing else leaves.
        let (huge, huge_ptr) = buffer(4 * mid);
        assert_eq!(addresses(pool.park(huge, capacity)), vec![huge_ptr]);
        assert_eq!(pool.take((DType::F32, mid)).map(|s| address(&s)), Some(ptrs[1]));
        assert!(pool.free.values().all(VecDeque::is_empty) && pool.bytes == 0, "nothing is left");
    }

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
