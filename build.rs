//! Build script. The CUDA backend will compile `kernels/*.cu` to PTX here; until then it only
//! tells Cargo when to rerun.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=kernels");
}
