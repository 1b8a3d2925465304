//! A CUDA device: its engine (the driver, or the CPU emulator in tests), a caching allocator,
//! and launches checked against the kernels' signatures.
//!
//! **Caching allocator.** `cuMemAlloc` and `cuMemFree` synchronize the device and cost
//! microseconds to milliseconds, far more than a small kernel. A training step allocates and
//! frees the same sizes every step, so freed blocks are kept in free lists by rounded size
//! and handed out again: after the first step, a step allocates nothing from the driver
//! ([`AllocatorStats::driver_allocs`] stops growing). Sizes round up to a power of two up to
//! 1 MiB and to a multiple of 1 MiB above, so a block serves requests of nearby sizes. When the
//! driver runs out of memory, the cache is emptied and the allocation tried once more. All work
//! runs on one stream, so a block freed after a kernel was queued can be handed out again at
//! once: the next user's work is queued after that kernel.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use super::kernels::{check_args, KernelArg};

/// An error from the CUDA backend, saying what was attempted and what went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CudaError(pub String);

impl fmt::Display for CudaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cuda: {}", self.0)
    }
}

impl std::error::Error for CudaError {}

/// Results of the CUDA backend.
pub type CudaResult<T> = Result<T, CudaError>;

/// What runs the kernels.
enum Engine {
    /// A GPU through the driver API.
    #[cfg(feature = "cuda")]
    Driver(super::driver::Driver),
    /// kernels/*.cu compiled for the host (test tooling).
    #[cfg(feature = "cuda-emu")]
    Emulator,
}

/// Counters of the caching allocator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocatorStats {
    /// Allocations that went to the driver (cache misses).
    pub driver_allocs: u64,
    /// Allocations served from the cache.
    pub cache_hits: u64,
    /// Bytes in blocks handed out and not yet returned.
    pub in_use_bytes: usize,
    /// Bytes in free blocks kept for reuse.
    pub cached_bytes: usize,
}

#[derive(Default)]
struct Pool {
    free: HashMap<usize, Vec<u64>>,
    stats: AllocatorStats,
}

/// One CUDA device (or the emulator standing in for one).
pub struct CudaDevice {
    ordinal: usize,
    engine: Engine,
    pool: Mutex<Pool>,
}

/// The size class a request of `bytes` is served from.
fn rounded(bytes: usize) -> usize {
    const MIB: usize = 1 << 20;
    if bytes <= MIB {
        bytes.max(256).next_power_of_two()
    } else {
        bytes.div_ceil(MIB) * MIB
    }
}

/// True when device `ordinal` should be the emulator: always when the crate was built with
/// `cuda-emu` and without `cuda`; with both, when `GLASSBOX_CUDA_EMU=1`.
#[allow(unreachable_code)]
fn use_emulator() -> bool {
    #[cfg(all(feature = "cuda-emu", not(feature = "cuda")))]
    return true;
    #[cfg(all(feature = "cuda-emu", feature = "cuda"))]
    return std::env::var("GLASSBOX_CUDA_EMU").is_ok_and(|v| v == "1");
    false
}

impl CudaDevice {
    /// Device `ordinal`, opened on first use and shared afterwards. An error (never a panic)
    /// when there is no driver, no such device, or the backend was not built in.
    pub fn get(ordinal: usize) -> CudaResult<Arc<CudaDevice>> {
        static DEVICES: OnceLock<Mutex<HashMap<usize, Arc<CudaDevice>>>> = OnceLock::new();
        let mut devices = DEVICES.get_or_init(Default::default).lock().expect("device table poisoned");
        if let Some(d) = devices.get(&ordinal) {
            return Ok(d.clone());
        }
        let device = Arc::new(CudaDevice { ordinal, engine: Self::open_engine(ordinal)?, pool: Mutex::default() });
        devices.insert(ordinal, device.clone());
        Ok(device)
    }

    #[allow(unreachable_code)]
    fn open_engine(ordinal: usize) -> CudaResult<Engine> {
        if use_emulator() {
            #[cfg(feature = "cuda-emu")]
            return if ordinal == 0 {
                Ok(Engine::Emulator)
            } else {
                Err(CudaError(format!("no CUDA device {ordinal}: the emulator is device 0 only")))
            };
        }
        #[cfg(feature = "cuda")]
        return super::driver::Driver::open(ordinal).map(Engine::Driver).map_err(CudaError);
        Err(CudaError(format!("no CUDA device {ordinal}: glassbox was built without the `cuda` feature")))
    }

    /// The device's index.
    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// True when kernels run on the CPU emulator rather than a GPU.
    pub fn is_emulator(&self) -> bool {
        match &self.engine {
            #[cfg(feature = "cuda")]
            Engine::Driver(_) => false,
            #[cfg(feature = "cuda-emu")]
            Engine::Emulator => true,
        }
    }

    /// What the device is, for messages and reports.
    pub fn describe(&self) -> String {
        match &self.engine {
            #[cfg(feature = "cuda")]
            Engine::Driver(d) => d.describe_device(),
            #[cfg(feature = "cuda-emu")]
            Engine::Emulator => "CPU emulation of CUDA (tests/cuda_emu)".into(),
        }
    }

    /// The allocator's counters.
    pub fn allocator_stats(&self) -> AllocatorStats {
        self.pool.lock().expect("allocator poisoned").stats
    }

    /// Returns every cached free block to the driver.
    pub fn empty_cache(&self) -> CudaResult<()> {
        let free: Vec<(usize, Vec<u64>)> = {
            let mut pool = self.pool.lock().expect("allocator poisoned");
            pool.stats.cached_bytes = 0;
            pool.free.drain().collect()
        };
        for (size, blocks) in free {
            for ptr in blocks {
                self.raw_free(ptr, size)?;
            }
        }
        Ok(())
    }

    fn raw_alloc(&self, bytes: usize) -> CudaResult<u64> {
        match &self.engine {
            #[cfg(feature = "cuda")]
            Engine::Driver(d) => d.alloc(bytes).map_err(CudaError),
            #[cfg(feature = "cuda-emu")]
            Engine::Emulator => super::emu::alloc(bytes).map_err(CudaError),
        }
    }

    fn raw_free(&self, ptr: u64, bytes: usize) -> CudaResult<()> {
        match &self.engine {
            #[cfg(feature = "cuda")]
            Engine::Driver(d) => {
                let _ = bytes;
                d.free(ptr).map_err(CudaError)
            }
            #[cfg(feature = "cuda-emu")]
            Engine::Emulator => {
                super::emu::free(ptr, bytes);
                Ok(())
            }
        }
    }

    /// An uninitialized buffer of at least `bytes` bytes (contents are whatever the block held).
    pub fn alloc(self: &Arc<Self>, bytes: usize) -> CudaResult<DeviceBuffer> {
        let size = rounded(bytes);
        let cached = {
            let mut pool = self.pool.lock().expect("allocator poisoned");
            let hit = pool.free.get_mut(&size).and_then(Vec::pop);
            if hit.is_some() {
                pool.stats.cache_hits += 1;
                pool.stats.cached_bytes -= size;
            } else {
                pool.stats.driver_allocs += 1;
            }
            pool.stats.in_use_bytes += size;
            hit
        };
        let ptr = match cached {
            Some(ptr) => ptr,
            None => match self.raw_alloc(size) {
                Ok(ptr) => ptr,
                Err(_) => {
                    // Out of memory, perhaps only because of the cache: empty it, try once more.
                    self.empty_cache()?;
                    self.raw_alloc(size).inspect_err(|_| {
                        self.pool.lock().expect("allocator poisoned").stats.in_use_bytes -= size;
                    })?
                }
            },
        };
        Ok(DeviceBuffer { ptr, bytes, size, device: self.clone() })
    }

    /// A buffer of `bytes` zero bytes.
    pub fn alloc_zeros(self: &Arc<Self>, bytes: usize) -> CudaResult<DeviceBuffer> {
        let buf = self.alloc(bytes)?;
        self.memset_zero(buf.ptr, bytes)?;
        Ok(buf)
    }

    fn release(&self, ptr: u64, size: usize) {
        let mut pool = self.pool.lock().expect("allocator poisoned");
        pool.stats.in_use_bytes -= size;
        pool.stats.cached_bytes += size;
        pool.free.entry(size).or_default().push(ptr);
    }

    /// Zeroes `bytes` bytes at `ptr`.
    pub fn memset_zero(&self, ptr: u64, bytes: usize) -> CudaResult<()> {
        if bytes == 0 {
            return Ok(());
        }
        match &self.engine {
            #[cfg(feature = "cuda")]
            Engine::Driver(d) => d.memset_zero(ptr, bytes).map_err(CudaError),
            #[cfg(feature = "cuda-emu")]
            Engine::Emulator => {
                // SAFETY: `ptr` addresses a live emulated allocation of at least `bytes` bytes.
                unsafe { std::ptr::write_bytes(ptr as *mut u8, 0, bytes) };
                Ok(())
            }
        }
    }

    /// Copies `src` into the device memory at `dst` (which must hold `src.len()` bytes).
    pub fn htod_bytes(&self, dst: &DeviceBuffer, src: &[u8]) -> CudaResult<()> {
        assert!(src.len() <= dst.bytes, "internal: upload of {} bytes into a buffer of {}", src.len(), dst.bytes);
        if src.is_empty() {
            return Ok(());
        }
        match &self.engine {
            #[cfg(feature = "cuda")]
            Engine::Driver(d) => d.htod(dst.ptr, src).map_err(CudaError),
            #[cfg(feature = "cuda-emu")]
            Engine::Emulator => {
                // SAFETY: `dst` holds at least `src.len()` bytes (asserted above); a host slice
                // and an emulated allocation never overlap.
                unsafe { super::emu::copy(dst.ptr, src.as_ptr() as u64, src.len()) };
                Ok(())
            }
        }
    }

    /// Copies `dst.len()` bytes from device address `src` (inside a live buffer) to the host.
    pub fn dtoh_bytes(&self, dst: &mut [u8], src: u64) -> CudaResult<()> {
        if dst.is_empty() {
            return Ok(());
        }
        match &self.engine {
            #[cfg(feature = "cuda")]
            Engine::Driver(d) => d.dtoh(dst, src).map_err(CudaError),
            #[cfg(feature = "cuda-emu")]
            Engine::Emulator => {
                // SAFETY: the caller passes an address inside a live allocation with at least
                // `dst.len()` bytes after it.
                unsafe { super::emu::copy(dst.as_mut_ptr() as u64, src, dst.len()) };
                Ok(())
            }
        }
    }

    /// Copies `bytes` bytes between device addresses inside live buffers.
    pub fn dtod(&self, dst: u64, src: u64, bytes: usize) -> CudaResult<()> {
        if bytes == 0 {
            return Ok(());
        }
        match &self.engine {
            #[cfg(feature = "cuda")]
            Engine::Driver(d) => d.dtod(dst, src, bytes).map_err(CudaError),
            #[cfg(feature = "cuda-emu")]
            Engine::Emulator => {
                // SAFETY: the caller passes two ranges of `bytes` bytes inside live, distinct
                // allocations.
                unsafe { super::emu::copy(dst, src, bytes) };
                Ok(())
            }
        }
    }

    /// Uploads f32 values into a fresh buffer.
    pub fn upload_f32(self: &Arc<Self>, values: &[f32]) -> CudaResult<DeviceBuffer> {
        let buf = self.alloc(std::mem::size_of_val(values))?;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.htod_bytes(&buf, &bytes)?;
        Ok(buf)
    }

    /// Uploads i32 values (indices, class targets) into a fresh buffer.
    pub fn upload_i32(self: &Arc<Self>, values: &[i32]) -> CudaResult<DeviceBuffer> {
        let buf = self.alloc(std::mem::size_of_val(values))?;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.htod_bytes(&buf, &bytes)?;
        Ok(buf)
    }

    /// Downloads `len` f32 values starting at element `offset` of `buf`.
    pub fn download_f32(&self, buf: &DeviceBuffer, offset: usize, len: usize) -> CudaResult<Vec<f32>> {
        assert!(
            (offset + len) * 4 <= buf.bytes,
            "internal: download of elements {offset}..{} from a buffer of {} bytes",
            offset + len,
            buf.bytes
        );
        let mut bytes = vec![0u8; len * 4];
        self.dtoh_bytes(&mut bytes, buf.ptr + 4 * offset as u64)?;
        Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    /// Launches kernel `name` after checking `args` against its signature.
    pub fn launch(
        &self,
        name: &str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        args: &[KernelArg],
    ) -> CudaResult<()> {
        let (file, sig) = check_args(name, args).map_err(CudaError)?;
        if grid.0 == 0 || grid.1 == 0 || grid.2 == 0 {
            return Ok(());
        }
        match &self.engine {
            #[cfg(feature = "cuda")]
            Engine::Driver(d) => d.launch(file, sig.name, grid, block, args).map_err(CudaError),
            #[cfg(feature = "cuda-emu")]
            Engine::Emulator => {
                let _ = file;
                super::emu::launch(sig.name, grid, block, args).map_err(CudaError)
            }
        }
    }

    /// Waits for all queued work.
    pub fn synchronize(&self) -> CudaResult<()> {
        match &self.engine {
            #[cfg(feature = "cuda")]
            Engine::Driver(d) => d.synchronize().map_err(CudaError),
            #[cfg(feature = "cuda-emu")]
            Engine::Emulator => Ok(()),
        }
    }
}

impl fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CudaDevice({}: {})", self.ordinal, self.describe())
    }
}

/// A block of device memory from the caching allocator; returned to the cache when dropped.
pub struct DeviceBuffer {
    ptr: u64,
    bytes: usize,
    size: usize,
    device: Arc<CudaDevice>,
}

impl DeviceBuffer {
    /// The device address of the first byte.
    pub fn ptr(&self) -> u64 {
        self.ptr
    }

    /// The address of f32 element `index`, as a kernel argument.
    pub fn arg_at(&self, index: usize) -> KernelArg {
        KernelArg::Ptr(self.ptr + 4 * index as u64)
    }

    /// The address of the first byte, as a kernel argument.
    pub fn arg(&self) -> KernelArg {
        KernelArg::Ptr(self.ptr)
    }

    /// Bytes requested (the block may be larger).
    pub fn len_bytes(&self) -> usize {
        self.bytes
    }

    /// The device holding it.
    pub fn device(&self) -> &Arc<CudaDevice> {
        &self.device
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        self.device.release(self.ptr, self.size);
    }
}

impl fmt::Debug for DeviceBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceBuffer({} bytes on cuda:{})", self.bytes, self.device.ordinal)
    }
}
