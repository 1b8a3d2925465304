//! Where a tensor's elements live.

use std::fmt::Display;

/// The device holding a tensor's storage. Every op checks that its inputs share one device and
/// dispatches its kernel by this value; the CUDA backend adds its variant here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Device {
    /// Host memory, computed by the rayon + SIMD kernels in `backend::cpu`.
    #[default]
    Cpu,
}

impl Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
        }
    }
}
