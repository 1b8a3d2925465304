//! [`CudaStorage`]: a tensor's f32 elements in device memory.

use std::fmt;
use std::sync::Arc;

use super::device::{CudaDevice, CudaResult, DeviceBuffer};

/// `len` f32 values in a block of device memory from the caching allocator.
pub struct CudaStorage {
    buffer: DeviceBuffer,
    len: usize,
}

impl CudaStorage {
    /// Wraps a buffer holding `len` f32 values.
    pub fn new(buffer: DeviceBuffer, len: usize) -> CudaStorage {
        assert!(
            len * 4 <= buffer.len_bytes(),
            "internal: {len} floats do not fit a buffer of {} bytes",
            buffer.len_bytes()
        );
        CudaStorage { buffer, len }
    }

    /// Uploads `values` to device `ordinal`.
    pub fn from_slice(ordinal: usize, values: &[f32]) -> CudaResult<CudaStorage> {
        let device = CudaDevice::get(ordinal)?;
        Ok(CudaStorage::new(device.upload_f32(values)?, values.len()))
    }

    /// Number of f32 values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The device's index.
    pub fn ordinal(&self) -> usize {
        self.buffer.device().ordinal()
    }

    /// The device.
    pub fn device(&self) -> &Arc<CudaDevice> {
        self.buffer.device()
    }

    /// The buffer.
    pub fn buffer(&self) -> &DeviceBuffer {
        &self.buffer
    }

    /// The values, copied to the host.
    pub fn to_vec(&self) -> CudaResult<Vec<f32>> {
        self.device().download_f32(&self.buffer, 0, self.len)
    }
}

impl Clone for CudaStorage {
    /// A copy in a new device buffer (the copy-on-write of in-place updates needs a real
    /// copy). Panics with the device's error if the copy fails.
    fn clone(&self) -> CudaStorage {
        let copy = || -> CudaResult<CudaStorage> {
            let buffer = self.device().alloc(self.len * 4)?;
            self.device().dtod(buffer.ptr(), self.buffer.ptr(), self.len * 4)?;
            Ok(CudaStorage { buffer, len: self.len })
        };
        copy().unwrap_or_else(|e| panic!("copying a cuda:{} storage of {} floats: {e}", self.ordinal(), self.len))
    }
}

impl PartialEq for CudaStorage {
    /// Equal when on the same device with equal values (copied to the host to compare).
    fn eq(&self, other: &CudaStorage) -> bool {
        self.ordinal() == other.ordinal()
            && self.len == other.len
            && self.to_vec().unwrap_or_else(|e| panic!("{e}")) == other.to_vec().unwrap_or_else(|e| panic!("{e}"))
    }
}

impl fmt::Debug for CudaStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CudaStorage({} f32 on cuda:{})", self.len, self.ordinal())
    }
}
