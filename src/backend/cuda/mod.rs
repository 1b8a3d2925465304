//! The CUDA backend (feature `cuda`; feature `cuda-emu` runs the same code on the CPU
//! emulation of CUDA, for tests).
//!
//! | file | what |
//! |---|---|
//! | `kernels.rs` | the `kernels/*.cu` files as built: sources, PTX, every kernel's signature, launch arguments |
//! | `device.rs` | [`CudaDevice`]: the engine, the caching allocator, checked launches |
//! | `driver.rs` | the driver API through cudarc: context, lazily filled module cache, NVRTC fallback |
//! | `emu.rs` | the CPU emulator as an engine (test tooling) |

mod device;
#[cfg(feature = "cuda")]
mod driver;
#[cfg(feature = "cuda-emu")]
mod emu;
pub mod kernels;
pub mod ops;
mod storage;
mod structs;

pub use device::{AllocatorStats, CudaDevice, CudaError, CudaResult, DeviceBuffer};
#[cfg(feature = "cuda")]
pub use driver::nvrtc_compile;
pub use kernels::{KernelArg, KernelStruct, Param, KERNEL_FILES};
pub use storage::CudaStorage;
pub use structs::*;
