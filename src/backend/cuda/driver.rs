//! The real device engine (feature `cuda`): the CUDA driver API through cudarc, loaded at run
//! time, so a machine without a driver gets an error, never a link failure or a panic.
//!
//! Everything runs on the context's legacy default stream, so kernels, copies and the reuse
//! of cached allocations are ordered without events. Modules load lazily, one per
//! `kernels/*.cu` file, on the first launch of one of its kernels: from the PTX that nvcc wrote
//! at build time when there is one, else (or when the driver rejects that PTX as newer than
//! itself, or built for a newer GPU than this one) from the embedded source through NVRTC, for
//! the device's own architecture.

use std::collections::HashMap;
use std::ffi::{c_void, CString};
use std::sync::{Arc, Mutex};

use cudarc::driver::sys::{self, CUresult};
use cudarc::driver::{result, CudaContext, DriverError};

use super::kernels::{KernelArg, KernelFile};

/// A loaded module and a function handle. Raw driver handles are plain pointers.
#[derive(Clone, Copy)]
struct Handle<T>(T);
// SAFETY: module and function handles are valid in every thread that has their context
// current, and every use below binds the context first.
unsafe impl<T> Send for Handle<T> {}
// SAFETY: as above; the handles are only read after creation.
unsafe impl<T> Sync for Handle<T> {}

/// One device's context and the lazily filled module cache.
pub(super) struct Driver {
    ctx: Arc<CudaContext>,
    modules: Mutex<HashMap<&'static str, Handle<sys::CUmodule>>>,
    functions: Mutex<HashMap<&'static str, Handle<sys::CUfunction>>>,
}

fn describe(e: DriverError) -> String {
    let name = e.error_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|_| format!("{:?}", e.0));
    let text = e.error_string().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    format!("{name} ({text})")
}

/// The compute-capability names NVRTC takes, for the architectures it may be asked for.
fn nvrtc_arch(major: i32, minor: i32) -> Option<&'static str> {
    Some(match (major, minor) {
        (7, 0) => "compute_70",
        (7, 5) => "compute_75",
        (8, 0) => "compute_80",
        (8, 6) => "compute_86",
        (8, 7) => "compute_87",
        (8, 9) => "compute_89",
        (9, 0) => "compute_90",
        (10, 0) => "compute_100",
        (12, 0) => "compute_120",
        _ => return None,
    })
}

impl Driver {
    /// Opens device `ordinal`; an error (never a panic) when there is no driver or no such GPU.
    pub(super) fn open(ordinal: usize) -> Result<Driver, String> {
        // SAFETY: only tries to dlopen libcuda; no driver state is touched.
        if !unsafe { sys::is_culib_present() } {
            return Err("no NVIDIA driver found (libcuda.so could not be loaded)".into());
        }
        let count = CudaContext::device_count().map_err(|e| format!("cannot count CUDA devices: {}", describe(e)))?;
        if ordinal >= count.max(0) as usize {
            return Err(format!("no CUDA device {ordinal}: the driver reports {count} device(s)"));
        }
        let ctx =
            CudaContext::new(ordinal).map_err(|e| format!("cannot open CUDA device {ordinal}: {}", describe(e)))?;
        Ok(Driver { ctx, modules: Mutex::new(HashMap::new()), functions: Mutex::new(HashMap::new()) })
    }

    /// The device's name and compute capability, for messages.
    pub(super) fn describe_device(&self) -> String {
        let name = self.ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        match self.ctx.compute_capability() {
            Ok((major, minor)) => format!("{name} (sm_{major}{minor})"),
            Err(_) => name,
        }
    }

    fn bind(&self) -> Result<(), String> {
        self.ctx.bind_to_thread().map_err(|e| format!("cannot make the CUDA context current: {}", describe(e)))
    }

    pub(super) fn alloc(&self, bytes: usize) -> Result<u64, String> {
        self.bind()?;
        // SAFETY: a plain cuMemAlloc with the context current.
        unsafe { result::malloc_sync(bytes) }
            .map_err(|e| format!("cuMemAlloc of {bytes} bytes failed: {}", describe(e)))
    }

    pub(super) fn free(&self, ptr: u64) -> Result<(), String> {
        self.bind()?;
        // SAFETY: `ptr` came from `alloc` and the caching allocator frees each block once.
        unsafe { result::free_sync(ptr) }.map_err(|e| format!("cuMemFree failed: {}", describe(e)))
    }

    pub(super) fn htod(&self, dst: u64, src: &[u8]) -> Result<(), String> {
        self.bind()?;
        // SAFETY: `dst` is a device allocation of at least `src.len()` bytes (checked by the
        // caller); the copy is synchronous.
        unsafe { result::memcpy_htod_sync(dst, src) }.map_err(|e| format!("copy to the GPU failed: {}", describe(e)))
    }

    pub(super) fn dtoh(&self, dst: &mut [u8], src: u64) -> Result<(), String> {
        self.bind()?;
        // SAFETY: `src` is a device allocation of at least `dst.len()` bytes; the copy is
        // synchronous and waits for the kernels before it on the default stream.
        unsafe { result::memcpy_dtoh_sync(dst, src) }
            .map_err(|e| format!("copy from the GPU failed: {} (an earlier kernel may have faulted)", describe(e)))
    }

    pub(super) fn dtod(&self, dst: u64, src: u64, bytes: usize) -> Result<(), String> {
        self.bind()?;
        // SAFETY: both are device allocations of at least `bytes` bytes; the copy is ordered
        // on the default stream.
        unsafe { result::memcpy_dtod_async(dst, src, bytes, std::ptr::null_mut()) }
            .map_err(|e| format!("device-to-device copy failed: {}", describe(e)))
    }

    pub(super) fn memset_zero(&self, dst: u64, bytes: usize) -> Result<(), String> {
        self.bind()?;
        // SAFETY: `dst` is a device allocation of at least `bytes` bytes.
        unsafe { result::memset_d8_async(dst, 0, bytes, std::ptr::null_mut()) }
            .map_err(|e| format!("cuMemsetD8 failed: {}", describe(e)))
    }

    pub(super) fn synchronize(&self) -> Result<(), String> {
        self.ctx.synchronize().map_err(|e| format!("CUDA synchronize failed: {}", describe(e)))
    }

    /// Loads `file`'s module: its build-time PTX, or NVRTC when there is none or the driver
    /// rejects it as too new.
    fn load_module(&self, file: &'static KernelFile) -> Result<sys::CUmodule, String> {
        if let Some(ptx) = file.ptx {
            match self.load_ptx(ptx) {
                Ok(module) => return Ok(module),
                // PTX newer than the driver, or built for a newer architecture than this GPU:
                // NVRTC compiles the source for what is actually here.
                Err(e)
                    if matches!(
                        e.0,
                        CUresult::CUDA_ERROR_UNSUPPORTED_PTX_VERSION
                            | CUresult::CUDA_ERROR_INVALID_PTX
                            | CUresult::CUDA_ERROR_NO_BINARY_FOR_GPU
                    ) => {}
                Err(e) => return Err(format!("loading the PTX of kernels/{}.cu failed: {}", file.name, describe(e))),
            }
        }
        let ptx = self.compile_with_nvrtc(file)?;
        self.load_ptx(&ptx)
            .map_err(|e| format!("loading NVRTC's PTX of kernels/{}.cu failed: {}", file.name, describe(e)))
    }

    fn load_ptx(&self, ptx: &str) -> Result<sys::CUmodule, DriverError> {
        let image = CString::new(ptx).expect("PTX holds no NUL byte");
        // SAFETY: `image` is a NUL-terminated PTX text that outlives the call; the context is
        // current (bound by the caller).
        unsafe { result::module::load_data(image.as_ptr() as *const c_void) }
    }

    fn compile_with_nvrtc(&self, file: &'static KernelFile) -> Result<String, String> {
        // SAFETY: only tries to dlopen libnvrtc.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return Err(format!(
                "kernels/{}.cu needs NVRTC (its PTX was {}), but libnvrtc.so was not found; add its folder to LD_LIBRARY_PATH",
                file.name,
                if file.ptx.is_some() { "rejected by the driver" } else { "not built: nvcc was missing" }
            ));
        }
        let (major, minor) = self.ctx.compute_capability().map_err(describe)?;
        let opts = cudarc::nvrtc::CompileOptions {
            arch: nvrtc_arch(major, minor),
            options: vec!["-std=c++17".into()],
            include_paths: nvrtc_include_paths(),
            ..Default::default()
        };
        cudarc::nvrtc::compile_ptx_with_opts(file.source, opts)
            .map(|ptx| ptx.to_src())
            .map_err(|e| format!("NVRTC failed on kernels/{}.cu: {e:?}", file.name))
    }

    /// The function `name` from `file`, loading the module on first use.
    fn function(&self, file: &'static KernelFile, name: &'static str) -> Result<sys::CUfunction, String> {
        if let Some(f) = self.functions.lock().expect("function cache poisoned").get(name) {
            return Ok(f.0);
        }
        let module = {
            let mut modules = self.modules.lock().expect("module cache poisoned");
            match modules.get(file.name) {
                Some(m) => m.0,
                None => {
                    let m = self.load_module(file)?;
                    modules.insert(file.name, Handle(m));
                    m
                }
            }
        };
        let c_name = CString::new(name).expect("kernel names hold no NUL byte");
        // SAFETY: `module` is a loaded module of this context, `c_name` a NUL-terminated name.
        let f = unsafe { result::module::get_function(module, c_name) }
            .map_err(|e| format!("kernel {name} not found in kernels/{}.cu: {}", file.name, describe(e)))?;
        self.functions.lock().expect("function cache poisoned").insert(name, Handle(f));
        Ok(f)
    }

    /// Launches a kernel whose arguments were checked against its signature.
    pub(super) fn launch(
        &self,
        file: &'static KernelFile,
        name: &'static str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        args: &[KernelArg],
    ) -> Result<(), String> {
        self.bind()?;
        let f = self.function(file, name)?;
        let mut pointers: Vec<*mut c_void> = args.iter().map(KernelArg::as_ptr).collect();
        // SAFETY: `f` is a function of a loaded module; `pointers` holds one pointer per
        // parameter, each to a live value of that parameter's type (checked against the
        // signature build.rs read from the source), and device pointers among them address
        // live allocations of the sizes the kernel indexes (the callers in ops.rs size them).
        unsafe { result::launch_kernel(f, grid, block, 0, std::ptr::null_mut(), &mut pointers) }
            .map_err(|e| format!("launching {name} (grid {grid:?}, block {block:?}) failed: {}", describe(e)))
    }
}

/// Where NVRTC looks for headers (`mma.h` for the tensor-core kernels): `$GLASSBOX_CUDA_INCLUDE`,
/// then `$CUDA_HOME/include` and `$CUDA_PATH/include` when they exist.
fn nvrtc_include_paths() -> Vec<String> {
    let mut paths = Vec::new();
    if let Ok(p) = std::env::var("GLASSBOX_CUDA_INCLUDE") {
        paths.extend(std::env::split_paths(&p).map(|p| p.display().to_string()));
    }
    for home in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(dir) = std::env::var_os(home) {
            let inc = std::path::PathBuf::from(dir).join("include");
            if inc.is_dir() {
                paths.push(inc.display().to_string());
            }
        }
    }
    paths
}

/// Compiles `source` with NVRTC for `arch` (for CI's check that every kernel file compiles
/// through NVRTC too); the error holds NVRTC's log.
pub fn nvrtc_compile(source: &str, arch: &'static str) -> Result<String, String> {
    // SAFETY: only tries to dlopen libnvrtc.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err("libnvrtc.so not found (add its folder to LD_LIBRARY_PATH)".into());
    }
    let opts = cudarc::nvrtc::CompileOptions {
        arch: Some(arch),
        options: vec!["-std=c++17".into()],
        include_paths: nvrtc_include_paths(),
        ..Default::default()
    };
    cudarc::nvrtc::compile_ptx_with_opts(source, opts).map(|p| p.to_src()).map_err(|e| format!("{e:?}"))
}
