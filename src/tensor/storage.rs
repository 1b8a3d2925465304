//! The buffers behind tensors, one enum variant per device and element type.

use super::{DType, Device, HostBuffer};

/// Elements in host memory, in a 64-byte-aligned [`HostBuffer`]. Large buffers go back to the
/// CPU buffer pool when dropped (see `backend::cpu::pool`).
#[derive(Clone, Debug, PartialEq)]
pub enum CpuStorage {
    /// 32-bit floats.
    F32(HostBuffer<f32>),
    /// 64-bit floats.
    F64(HostBuffer<f64>),
}

impl CpuStorage {
    /// The element type held.
    pub fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F64(_) => DType::F64,
        }
    }

    /// Number of elements held (not the number a view looks at).
    pub fn len(&self) -> usize {
        match self {
            CpuStorage::F32(v) => v.len(),
            CpuStorage::F64(v) => v.len(),
        }
    }

    /// True when no element is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for CpuStorage {
    fn drop(&mut self) {
        if self.len() >= crate::backend::cpu::pool::MIN_POOLED_ELEMENTS {
            let taken = match self {
                CpuStorage::F32(v) => CpuStorage::F32(std::mem::take(v)),
                CpuStorage::F64(v) => CpuStorage::F64(std::mem::take(v)),
            };
            crate::backend::cpu::pool::recycle(taken);
        }
    }
}

/// A tensor's buffer on some device. Views share one `Storage` and differ only in their
/// [`Layout`](super::Layout).
#[derive(Clone, Debug, PartialEq)]
pub enum Storage {
    /// Host memory.
    Cpu(CpuStorage),
    /// Memory of a CUDA device (f32 only).
    #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
    Cuda(crate::backend::cuda::CudaStorage),
}

impl Storage {
    /// The device the elements live on.
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
            Storage::Cuda(s) => Device::Cuda(s.ordinal()),
        }
    }

    /// The element type held.
    pub fn dtype(&self) -> DType {
        match self {
            Storage::Cpu(s) => s.dtype(),
            #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
            Storage::Cuda(_) => DType::F32,
        }
    }

    /// Number of elements held.
    pub fn len(&self) -> usize {
        match self {
            Storage::Cpu(s) => s.len(),
            #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
            Storage::Cuda(s) => s.len(),
        }
    }

    /// True when no element is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The host storage. Panics on device storage: the switchboard (`backend`) sends device
    /// storage to device kernels, so a CPU kernel never sees it.
    pub fn cpu(&self) -> &CpuStorage {
        match self {
            Storage::Cpu(s) => s,
            #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
            Storage::Cuda(s) => panic!("internal: a CPU kernel was handed {} storage", Device::Cuda(s.ordinal())),
        }
    }

    /// Mutable form of [`Storage::cpu`].
    pub fn cpu_mut(&mut self) -> &mut CpuStorage {
        match self {
            Storage::Cpu(s) => s,
            #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
            Storage::Cuda(s) => panic!("internal: a CPU kernel was handed {} storage", Device::Cuda(s.ordinal())),
        }
    }

    /// The elements in host memory: borrowed when already there, else copied from the device
    /// (panicking with the device's error if the copy fails).
    pub fn to_cpu(&self) -> std::borrow::Cow<'_, CpuStorage> {
        match self {
            Storage::Cpu(s) => std::borrow::Cow::Borrowed(s),
            #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
            Storage::Cuda(s) => {
                std::borrow::Cow::Owned(CpuStorage::F32(s.to_vec().unwrap_or_else(|e| panic!("{e}")).into()))
            }
        }
    }
}
