//! Build script. Without features it only tells Cargo when to rerun: the default build compiles
//! nothing CUDA-related.
//!
//! With feature `cuda` or `cuda-emu` it reads every `kernels/*.cu`, finds each
//! `extern "C" __global__` kernel and its parameters, and writes `$OUT_DIR/kernels.rs`: the
//! sources (embedded, for NVRTC at run time), the PTX when nvcc is found, and every kernel's
//! signature, so a launch with the wrong arguments is an error that names the kernel.
//!
//! - `cuda`: nvcc is looked up in `$NVCC`, `$CUDA_HOME/bin`, `$CUDA_PATH/bin`, then `PATH`, and
//!   compiles each file with `-ptx -arch=sm_80 -O3 -std=c++17 -lineinfo`. Without nvcc the build
//!   still succeeds (the kernels are compiled by NVRTC when first used) unless
//!   `GLASSBOX_REQUIRE_NVCC=1`, which CI sets. A file nvcc rejects is always a build error.
//! - `cuda-emu`: each `.cu` file is compiled as host C++ against `tests/cuda_emu/shim.h` with a
//!   generated wrapper per kernel (`gb_emu_call_<name>(void** args)`, the argument convention of
//!   cuLaunchKernel) and a table of them by name, all linked into the crate.
use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=kernels");
    let cuda = env::var_os("CARGO_FEATURE_CUDA").is_some();
    let emu = env::var_os("CARGO_FEATURE_CUDA_EMU").is_some();
    if !cuda && !emu {
        return;
    }
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let files = kernel_files(&root.join("kernels"));
    let parsed: Vec<(PathBuf, Vec<Kernel>)> = files
        .iter()
        .map(|path| {
            println!("cargo:rerun-if-changed={}", path.display());
            let source = fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            let kernels = parse_kernels(&source).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path.clone(), kernels)
        })
        .collect();
    let ptx = if cuda { compile_ptx(&parsed, &out) } else { vec![None; parsed.len()] };
    write_table(&parsed, &ptx, &out.join("kernels.rs"));
    if emu {
        build_emulator(&root, &parsed, &out);
    }
}

/// Every `.cu` file in `dir`, sorted by name.
fn kernel_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "cu"))
        .collect();
    files.sort();
    files
}

/// One `extern "C" __global__` kernel: its name and its parameters as (type, name).
struct Kernel {
    name: String,
    params: Vec<(String, String)>,
}

/// `source` without `//` and `/* */` comments (string literals in kernels hold no `//`).
fn strip_comments(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("//") {
            rest = after.find('\n').map_or("", |i| &after[i..]);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.find("*/").map_or("", |i| &after[i + 2..]);
            out.push(' ');
        } else {
            let c = rest.chars().next().expect("non-empty");
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// Finds every `extern "C" __global__ void [__launch_bounds__(..)] name(params)`.
fn parse_kernels(source: &str) -> Result<Vec<Kernel>, String> {
    let text = strip_comments(source);
    let mut kernels = Vec::new();
    for (start, _) in text.match_indices("extern \"C\" __global__") {
        let mut rest = text[start + "extern \"C\" __global__".len()..].trim_start();
        rest = rest.strip_prefix("void").ok_or("a kernel must return void")?.trim_start();
        if let Some(after) = rest.strip_prefix("__launch_bounds__") {
            let close = after.find(')').ok_or("unclosed __launch_bounds__")?;
            rest = after[close + 1..].trim_start();
        }
        let open = rest.find('(').ok_or("kernel without a parameter list")?;
        let name = rest[..open].trim().to_string();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("cannot read the kernel name in `{}`", &rest[..open.min(60)]));
        }
        let close = rest[open..].find(')').ok_or_else(|| format!("{name}: unclosed parameter list"))? + open;
        let mut params = Vec::new();
        for param in rest[open + 1..close].split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let cleaned = param.replace("__restrict__", " ");
            let words: Vec<&str> = cleaned.split_whitespace().collect();
            let (last, ty) = words.split_last().ok_or_else(|| format!("{name}: empty parameter"))?;
            // `float *x` puts the star on the name; move it to the type.
            let stars = last.chars().take_while(|&c| c == '*').count();
            let mut ty = ty.join(" ");
            ty.push_str(&"*".repeat(stars));
            let ty = ty.replace(" *", "*");
            params.push((ty, last[stars..].to_string()));
        }
        kernels.push(Kernel { name, params });
    }
    if kernels.is_empty() {
        return Err("no `extern \"C\" __global__` kernel found".into());
    }
    Ok(kernels)
}

/// The run-time kind of a parameter type, as `src/backend/cuda/kernels.rs` names it.
fn param_kind(ty: &str) -> String {
    let base = ty.trim_start_matches("const ").trim();
    match base {
        _ if base.ends_with('*') => "Param::Ptr".into(),
        "int" => "Param::I32".into(),
        "unsigned" | "unsigned int" => "Param::U32".into(),
        "float" => "Param::F32".into(),
        other => format!("Param::Struct({other:?})"),
    }
}

/// nvcc from `$NVCC`, `$CUDA_HOME/bin`, `$CUDA_PATH/bin` or `PATH`.
fn find_nvcc() -> Option<PathBuf> {
    for var in ["NVCC", "CUDA_HOME", "CUDA_PATH", "PATH"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    if let Some(nvcc) = env::var_os("NVCC") {
        return Some(PathBuf::from(nvcc));
    }
    for home in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(dir) = env::var_os(home) {
            let nvcc = PathBuf::from(dir).join("bin").join("nvcc");
            if nvcc.is_file() {
                return Some(nvcc);
            }
        }
    }
    env::split_paths(&env::var_os("PATH")?).map(|dir| dir.join("nvcc")).find(|p| p.is_file())
}

/// PTX of every file (in order), or `None` for all when nvcc is missing and not required.
fn compile_ptx(parsed: &[(PathBuf, Vec<Kernel>)], out: &Path) -> Vec<Option<PathBuf>> {
    println!("cargo:rerun-if-env-changed=GLASSBOX_REQUIRE_NVCC");
    let required = env::var("GLASSBOX_REQUIRE_NVCC").is_ok_and(|v| v == "1");
    let Some(nvcc) = find_nvcc() else {
        if required {
            panic!("GLASSBOX_REQUIRE_NVCC=1 but no nvcc was found in $NVCC, $CUDA_HOME/bin, $CUDA_PATH/bin or PATH");
        }
        println!("cargo:warning=glassbox: nvcc not found; CUDA kernels will be compiled at run time with NVRTC");
        return vec![None; parsed.len()];
    };
    parsed
        .iter()
        .map(|(path, _)| {
            let ptx = out.join(path.file_stem().expect("a .cu file has a stem")).with_extension("ptx");
            let result = Command::new(&nvcc)
                .args(["-ptx", "-arch=sm_80", "-O3", "-std=c++17", "-lineinfo", "-o"])
                .arg(&ptx)
                .arg(path)
                .output()
                .unwrap_or_else(|e| panic!("running {}: {e}", nvcc.display()));
            if !result.status.success() {
                panic!(
                    "nvcc failed on {}:\n{}{}",
                    path.display(),
                    String::from_utf8_lossy(&result.stdout),
                    String::from_utf8_lossy(&result.stderr)
                );
            }
            Some(ptx)
        })
        .collect()
}

/// `$OUT_DIR/kernels.rs`: every file's source, PTX and kernel signatures.
fn write_table(parsed: &[(PathBuf, Vec<Kernel>)], ptx: &[Option<PathBuf>], dest: &Path) {
    let mut rs = String::from("// Generated by build.rs from kernels/*.cu; do not edit.\n");
    rs.push_str("/// Every kernel file: its source, its PTX from nvcc (when found), its kernels.\n");
    rs.push_str("pub static KERNEL_FILES: &[KernelFile] = &[\n");
    for ((path, kernels), ptx) in parsed.iter().zip(ptx) {
        let stem = path.file_stem().expect("stem").to_string_lossy();
        let ptx = match ptx {
            Some(p) => format!("Some(include_str!({:?}))", p.display().to_string()),
            None => "None".into(),
        };
        writeln!(rs, "    KernelFile {{\n        name: {stem:?},").unwrap();
        writeln!(rs, "        source: include_str!({:?}),", path.display().to_string()).unwrap();
        writeln!(rs, "        ptx: {ptx},\n        kernels: &[").unwrap();
        for k in kernels {
            let params: Vec<String> = k.params.iter().map(|(ty, _)| param_kind(ty)).collect();
            writeln!(rs, "            KernelSignature {{ name: {:?}, params: &[{}] }},", k.name, params.join(", "))
                .unwrap();
        }
        rs.push_str("        ],\n    },\n");
    }
    rs.push_str("];\n");
    fs::write(dest, rs).unwrap_or_else(|e| panic!("writing {}: {e}", dest.display()));
}

/// Compiles the kernels as host C++ with the emulator's shim, plus its launcher and the table
/// of kernels by name, into a static library linked into the crate.
#[cfg(feature = "cuda-emu")]
fn build_emulator(root: &Path, parsed: &[(PathBuf, Vec<Kernel>)], out: &Path) {
    let emu_dir = root.join("tests").join("cuda_emu");
    for f in ["shim.h", "mma.h", "cuda_bf16.h", "launch.cpp"] {
        println!("cargo:rerun-if-changed={}", emu_dir.join(f).display());
    }
    let mut build = cc::Build::new();
    build.cpp(true).std("c++20").flag("-pthread").flag("-Wno-unknown-pragmas").include(&emu_dir).extra_warnings(false);
    let mut table = String::from("// Generated by build.rs: the emulator's kernels by name.\nextern \"C\" {\n");
    table.push_str("struct GbEmuKernel { const char* name; void (*call)(void** args); };\n");
    let mut entries = Vec::new();
    for (path, kernels) in parsed {
        let stem = path.file_stem().expect("stem").to_string_lossy().to_string();
        let mut cpp = format!(
            "// Generated by build.rs: {stem}.cu under the CUDA emulator.\n#include \"shim.h\"\n#include {:?}\n\
             template <class T> static T& gb_arg(void* p) {{ return *static_cast<T*>(p); }}\n",
            path.display().to_string()
        );
        for k in kernels {
            let args: Vec<String> =
                k.params.iter().enumerate().map(|(i, (ty, _))| format!("gb_arg<{ty}>(args[{i}])")).collect();
            writeln!(cpp, "extern \"C\" void gb_emu_call_{0}(void** args) {{ {0}({1}); }}", k.name, args.join(", "))
                .unwrap();
            writeln!(table, "void gb_emu_call_{}(void** args);", k.name).unwrap();
            entries.push(format!("    {{{:?}, gb_emu_call_{}}},", k.name, k.name));
        }
        let file = out.join(format!("emu_{stem}.cpp"));
        fs::write(&file, cpp).unwrap_or_else(|e| panic!("writing {}: {e}", file.display()));
        build.file(file);
    }
    writeln!(table, "extern const GbEmuKernel gb_emu_kernels[] = {{\n{}\n}};", entries.join("\n")).unwrap();
    writeln!(table, "extern const int gb_emu_kernel_count = {};\n}}", entries.len()).unwrap();
    let table_file = out.join("emu_table.cpp");
    fs::write(&table_file, table).unwrap_or_else(|e| panic!("writing {}: {e}", table_file.display()));
    build.file(table_file).file(emu_dir.join("launch.cpp"));
    build.compile("glassbox_cuda_emu");
}

#[cfg(not(feature = "cuda-emu"))]
fn build_emulator(_: &Path, _: &[(PathBuf, Vec<Kernel>)], _: &Path) {
    unreachable!("build_emulator is only called with the cuda-emu feature");
}
