//! The CPU emulation of CUDA as a device engine (feature `cuda-emu`, test tooling): kernels
//! are the unchanged `kernels/*.cu` files compiled as host C++ against `tests/cuda_emu/shim.h`
//! (build.rs), device memory is host memory, and a launch runs one host thread per CUDA thread
//! of a block, one block after another (`tests/cuda_emu/launch.cpp`). Slow, exact about
//! indexing and synchronization, silent about speed: for tests on small shapes.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ffi::{c_char, c_void, CString};

use super::kernels::KernelArg;

extern "C" {
    fn gb_emu_launch(
        name: *const c_char,
        gx: u32,
        gy: u32,
        gz: u32,
        bx: u32,
        by: u32,
        bz: u32,
        args: *mut *mut c_void,
        err: *mut c_char,
        err_len: i32,
    ) -> i32;
}

/// Alignment of emulated device allocations (cudaMalloc gives at least 256 bytes).
const ALIGN: usize = 256;

/// Allocates `bytes` (> 0) of zeroed "device" memory; returns its address.
pub(super) fn alloc(bytes: usize) -> Result<u64, String> {
    let layout = Layout::from_size_align(bytes.max(1), ALIGN).map_err(|e| format!("emulator: {e}"))?;
    // SAFETY: the layout has a non-zero size.
    let ptr = unsafe { alloc_zeroed(layout) };
    if ptr.is_null() {
        return Err(format!("emulator: out of host memory allocating {bytes} bytes"));
    }
    Ok(ptr as u64)
}

/// Frees memory from [`alloc`] of the same size.
pub(super) fn free(ptr: u64, bytes: usize) {
    let layout = Layout::from_size_align(bytes.max(1), ALIGN).expect("checked when allocated");
    // SAFETY: `ptr` came from `alloc(bytes)` with this same layout and is freed once (the
    // caching allocator owns each block exactly once).
    unsafe { dealloc(ptr as *mut u8, layout) }
}

/// Copies `len` bytes between emulated device (or host) addresses.
///
/// # Safety
/// Both ranges must be valid for `len` bytes and not overlap.
pub(super) unsafe fn copy(dst: u64, src: u64, len: usize) {
    // SAFETY: guaranteed by the caller.
    unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst as *mut u8, len) }
}

/// Runs kernel `name` on the emulator; the arguments were checked against its signature.
pub(super) fn launch(
    name: &str,
    grid: (u32, u32, u32),
    block: (u32, u32, u32),
    args: &[KernelArg],
) -> Result<(), String> {
    let c_name = CString::new(name).map_err(|_| format!("kernel name {name:?} holds a NUL byte"))?;
    let mut pointers: Vec<*mut c_void> = args.iter().map(KernelArg::as_ptr).collect();
    let mut err = vec![0 as c_char; 512];
    // SAFETY: `pointers` holds one pointer per parameter, each to a live value of the kernel's
    // parameter type (checked by `check_args` before this call); `err` has the length passed.
    let status = unsafe {
        gb_emu_launch(
            c_name.as_ptr(),
            grid.0,
            grid.1,
            grid.2,
            block.0,
            block.1,
            block.2,
            pointers.as_mut_ptr(),
            err.as_mut_ptr(),
            err.len() as i32,
        )
    };
    if status == 0 {
        Ok(())
    } else {
        let bytes: Vec<u8> = err.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        Err(format!("emulator: {}", String::from_utf8_lossy(&bytes)))
    }
}
