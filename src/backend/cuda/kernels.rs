//! The CUDA kernels as the build saw them: every `kernels/*.cu` file's source, its PTX (when
//! nvcc was found at build time) and the signature of each `extern "C"` kernel, from
//! `$OUT_DIR/kernels.rs` (written by build.rs). Launches go through [`KernelArg`] lists that are
//! checked against these signatures, so a wrong argument is an error naming the kernel instead
//! of a corrupted launch.

/// The run-time kind of one kernel parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param {
    /// A device pointer (`float*`, `const int*`, ...).
    Ptr,
    /// `int`.
    I32,
    /// `unsigned`.
    U32,
    /// `float`.
    F32,
    /// A struct passed by value, by its C name (`EwLayout`).
    Struct(&'static str),
}

/// One kernel's name and parameter kinds.
#[derive(Debug)]
pub struct KernelSignature {
    /// The `extern "C"` name, `family_vN_what`.
    pub name: &'static str,
    /// Its parameters, in order.
    pub params: &'static [Param],
}

/// One `kernels/*.cu` file.
#[derive(Debug)]
pub struct KernelFile {
    /// The file's stem (`matmul`), which is also its module's name in the module cache.
    pub name: &'static str,
    /// The CUDA C++ source, for NVRTC.
    pub source: &'static str,
    /// PTX from nvcc at build time (sm_80), when nvcc was found.
    pub ptx: Option<&'static str>,
    /// The kernels it defines.
    pub kernels: &'static [KernelSignature],
}

include!(concat!(env!("OUT_DIR"), "/kernels.rs"));

/// The file that defines kernel `name`, and its signature.
pub fn find(name: &str) -> Option<(&'static KernelFile, &'static KernelSignature)> {
    KERNEL_FILES.iter().find_map(|f| f.kernels.iter().find(|k| k.name == name).map(|k| (f, k)))
}

/// One argument of a launch. Pointers are device addresses (host addresses under the emulator).
#[derive(Clone, Debug, PartialEq)]
pub enum KernelArg {
    /// A device address.
    Ptr(u64),
    /// An `int`.
    I32(i32),
    /// An `unsigned`.
    U32(u32),
    /// A `float`.
    F32(f32),
    /// A `#[repr(C)]` struct passed by value: its C name and its bytes.
    Struct(&'static str, Vec<u8>),
}

impl KernelArg {
    /// A struct argument from a `#[repr(C)]` value made only of `i32`/`f32` fields (no padding).
    pub fn from_struct<T: KernelStruct>(value: &T) -> KernelArg {
        let size = std::mem::size_of::<T>();
        // SAFETY: `T: KernelStruct` promises a `#[repr(C)]` type of 4-byte fields without
        // padding, so all `size` bytes behind the reference are initialized.
        let bytes = unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size) };
        KernelArg::Struct(T::C_NAME, bytes.to_vec())
    }

    /// A pointer to the argument's bytes, as cuLaunchKernel's `kernelParams` wants them.
    pub fn as_ptr(&self) -> *mut std::ffi::c_void {
        match self {
            KernelArg::Ptr(p) => p as *const u64 as *mut _,
            KernelArg::I32(v) => v as *const i32 as *mut _,
            KernelArg::U32(v) => v as *const u32 as *mut _,
            KernelArg::F32(v) => v as *const f32 as *mut _,
            KernelArg::Struct(_, bytes) => bytes.as_ptr() as *mut _,
        }
    }

    fn matches(&self, param: Param) -> bool {
        matches!(
            (self, param),
            (KernelArg::Ptr(_), Param::Ptr)
                | (KernelArg::I32(_), Param::I32)
                | (KernelArg::U32(_), Param::U32)
                | (KernelArg::F32(_), Param::F32)
        ) || matches!((self, param), (KernelArg::Struct(a, _), Param::Struct(b)) if *a == b)
    }
}

/// A `#[repr(C)]` struct that kernels take by value, mirrored field for field from a `.cu`
/// file.
///
/// # Safety
/// The type must be `#[repr(C)]`, made only of 4-byte fields (`i32`, `f32`, arrays of them),
/// so it has no padding, and match the C struct named [`KernelStruct::C_NAME`] exactly.
pub unsafe trait KernelStruct {
    /// The struct's name in the `.cu` file.
    const C_NAME: &'static str;
}

/// Checks `args` against kernel `name`'s signature; the error names the kernel and the first
/// mismatch.
pub fn check_args(name: &str, args: &[KernelArg]) -> Result<(&'static KernelFile, &'static KernelSignature), String> {
    let (file, sig) = find(name).ok_or_else(|| format!("no kernel named {name} in kernels/*.cu"))?;
    if sig.params.len() != args.len() {
        return Err(format!("{name} takes {} arguments, got {}", sig.params.len(), args.len()));
    }
    for (i, (arg, &param)) in args.iter().zip(sig.params).enumerate() {
        if !arg.matches(param) {
            return Err(format!("{name}: argument {i} should be {param:?}, got {arg:?}"));
        }
    }
    Ok((file, sig))
}
