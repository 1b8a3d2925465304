//! Which vector instruction set this CPU offers, detected once at run time.
//!
//! Kernels that benefit from wide vectors are compiled several times from one generic body:
//! once as plain Rust (SSE2, the x86-64 baseline, or whatever the target has), and once per
//! instruction set inside a `#[target_feature]` function. At run time the kernel calls the
//! best version [`detect`] allows. Calling a `#[target_feature]` function is `unsafe` only
//! because the CPU might lack the feature, so every such call site's `SAFETY` argument is
//! "`detect` returned this ISA, so [`supported`] saw its features".

use std::sync::OnceLock;

/// The instruction sets kernels are compiled for, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512F with AVX2 and FMA: 16 f32 lanes.
    Avx512,
    /// AVX2 with FMA: 8 f32 lanes.
    Avx2Fma,
    /// The compilation target's baseline (SSE2 on x86-64).
    Portable,
}

/// The best instruction set this CPU supports (detected on first use, then cached).
pub fn detect() -> Isa {
    static DETECTED: OnceLock<Isa> = OnceLock::new();
    *DETECTED
        .get_or_init(|| [Isa::Avx512, Isa::Avx2Fma].into_iter().find(|&isa| supported(isa)).unwrap_or(Isa::Portable))
}

/// True when this CPU has every feature the kernels for `isa` are compiled with.
pub fn supported(isa: Isa) -> bool {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => {
            is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
        Isa::Portable => true,
        #[cfg(not(target_arch = "x86_64"))]
        _ => false,
    }
}
