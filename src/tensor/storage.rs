//! The buffers behind tensors, one enum variant per device and element type.

use super::{DType, Device};

/// Elements in host memory. Large buffers go back to the CPU buffer pool when dropped
/// (see `backend::cpu::pool`).
#[derive(Clone, Debug, PartialEq)]
pub enum CpuStorage {
    /// 32-bit floats.
    F32(Vec<f32>),
    /// 64-bit floats.
    F64(Vec<f64>),
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
}

impl Storage {
    /// The device the elements live on.
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
        }
    }

    /// The element type held.
    pub fn dtype(&self) -> DType {
        match self {
            Storage::Cpu(s) => s.dtype(),
        }
    }

    /// Number of elements held.
    pub fn len(&self) -> usize {
        match self {
            Storage::Cpu(s) => s.len(),
        }
    }

    /// True when no element is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The host storage; every device but the CPU is ruled out by the op front doors.
    pub fn cpu(&self) -> &CpuStorage {
        match self {
            Storage::Cpu(s) => s,
        }
    }

    /// Mutable form of [`Storage::cpu`].
    pub fn cpu_mut(&mut self) -> &mut CpuStorage {
        match self {
            Storage::Cpu(s) => s,
        }
    }
}
