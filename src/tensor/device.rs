//! Where a tensor's elements live.

use std::fmt::Display;
use std::str::FromStr;

/// The device holding a tensor's storage. Every op checks that its inputs share one device and
/// dispatches its kernel by this value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Device {
    /// Host memory, computed by the rayon + SIMD kernels in `backend::cpu`.
    #[default]
    Cpu,
    /// CUDA device `n`, computed by the kernels in `kernels/*.cu` (feature `cuda`; with
    /// `cuda-emu`, device 0 is the CPU emulation of CUDA used by the tests).
    #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
    Cuda(usize),
}

impl Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            #[cfg(any(feature = "cuda", feature = "cuda-emu"))]
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// A device that cannot be used: not built in, not present, or a transfer that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceError(pub String);

impl Display for DeviceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DeviceError {}

#[cfg(any(feature = "cuda", feature = "cuda-emu"))]
impl From<crate::backend::cuda::CudaError> for DeviceError {
    fn from(e: crate::backend::cuda::CudaError) -> DeviceError {
        DeviceError(e.to_string())
    }
}

impl FromStr for Device {
    type Err = DeviceError;

    /// `cpu`, `cuda` (device 0) or `cuda:N`. Naming CUDA in a build without the `cuda`
    /// feature is an error that says so.
    fn from_str(s: &str) -> Result<Device, DeviceError> {
        match s {
            "cpu" => Ok(Device::Cpu),
            _ if s == "cuda" || s.starts_with("cuda:") => {
                let ordinal = match s.strip_prefix("cuda:") {
                    Some(n) => n
                        .parse::<usize>()
                        .map_err(|_| DeviceError(format!("device {s:?}: {n:?} is not a device number")))?,
                    None => 0,
                };
                cuda_device(ordinal)
            }
            _ => Err(DeviceError(format!("unknown device {s:?}: expected cpu, cuda or cuda:N"))),
        }
    }
}

#[cfg(any(feature = "cuda", feature = "cuda-emu"))]
fn cuda_device(ordinal: usize) -> Result<Device, DeviceError> {
    Ok(Device::Cuda(ordinal))
}

#[cfg(not(any(feature = "cuda", feature = "cuda-emu")))]
fn cuda_device(_: usize) -> Result<Device, DeviceError> {
    Err(DeviceError("CUDA devices need glassbox built with `--features cuda`".into()))
}
