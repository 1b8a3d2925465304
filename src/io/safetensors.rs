//! The safetensors file format: named tensors and string metadata, as PyTorch and Hugging Face
//! save weights.
//!
//! ```text
//! 8 bytes    N, the header's length in bytes (little-endian u64)
//! N bytes    the header: UTF-8 JSON, padded with spaces (we pad to a multiple of 8 so the data
//!            starts aligned). One entry per tensor, and optionally string metadata:
//!              {"__metadata__": {"step": "1200"},
//!               "0.weight": {"dtype": "F32", "shape": [256, 784], "data_offsets": [0, 802816]},
//!               ...}
//! the rest   the data: each tensor's elements, row-major, little-endian, at
//!            [begin, end) counted from the end of the header
//! ```
//!
//! We read and write the dtypes glassbox has, `F32` and `F64`. The JSON parsing is
//! `serde_json`'s; everything else is here, because the checks are what matter: a file comes from
//! outside the program, so before allocating anything the reader checks every declared size
//! against the bytes actually present. The header length must fit in the file (and under
//! [`MAX_HEADER_BYTES`]); each tensor's `data_offsets` must span exactly `numel * dtype size`
//! bytes; and the tensors must tile the data section exactly, in offset order, with no gap,
//! overlap or trailing byte (the reference implementation's rule, so a file we accept is one
//! PyTorch accepts). Element counts are computed with checked arithmetic. Duplicate names are an
//! error, not a silent "last one wins". Every problem is an [`IoError`] naming the file and, when
//! one is to blame, the tensor.
//!
//! The writer orders tensors as the reference implementation does (larger dtypes first, then by
//! name) and writes the header the same way, so for the same tensors and at most one metadata
//! entry our bytes equal those of Python's `safetensors.numpy.save_file` (`tests/checkpoint.rs`
//! checks this against a fixture made by Python).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use super::IoError;
use crate::tensor::{checked_numel, CpuStorage};
use crate::{DType, Tensor};

/// The largest header we read: 100 MB, the reference implementation's limit. A header holds a
/// few dozen bytes per tensor, so this allows millions of tensors; a larger declared length
/// means the file is corrupt or not safetensors at all.
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// The key under which the header holds string metadata instead of a tensor.
const METADATA_KEY: &str = "__metadata__";

/// The length prefix.
const LEN_BYTES: usize = 8;

/// Tensors and metadata read from a safetensors file.
#[derive(Clone, Debug, Default)]
pub struct TensorFile {
    /// The tensors in file order (by data offset), each contiguous and outside any graph.
    pub tensors: Vec<(String, Tensor)>,
    /// The header's `__metadata__` entries (empty if it has none).
    pub metadata: BTreeMap<String, String>,
}

impl TensorFile {
    /// The tensor called `name`, if the file has one.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

/// The safetensors name of a dtype.
fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "F32",
        DType::F64 => "F64",
    }
}

/// Every dtype name the format defines, so a file with one we do not read gets a message that
/// says so rather than "unknown".
const OTHER_DTYPES: &[&str] = &[
    "BOOL", "U8", "I8", "U16", "I16", "F16", "BF16", "U32", "I32", "U64", "I64", "C64", "F8_E5M2", "F8_E4M3",
    "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4",
];

// ---------------------------------------------------------------------------------------------
// Writing

/// The bytes of a safetensors file holding `tensors` (any layout: views are written row-major)
/// and `metadata`. `name` is what error messages call the destination.
///
/// Fails on a duplicate tensor name, or a tensor named `__metadata__`.
pub fn encode_safetensors(
    name: &str,
    tensors: &[(String, Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>, IoError> {
    encode(Path::new(name), tensors, metadata)
}

fn encode(path: &Path, tensors: &[(String, Tensor)], metadata: &BTreeMap<String, String>) -> Result<Vec<u8>, IoError> {
    let mut seen = BTreeSet::new();
    for (name, _) in tensors {
        if name == METADATA_KEY {
            return Err(IoError::tensor(path, name, "this name is reserved for the header's metadata"));
        }
        if !seen.insert(name.as_str()) {
            return Err(IoError::tensor(path, name, "two tensors have this name; names must be unique"));
        }
    }
    // The reference implementation's order: larger elements first (so every tensor starts
    // aligned to its element size), then by name.
    let mut order: Vec<&(String, Tensor)> = tensors.iter().collect();
    order
        .sort_by(|(na, a), (nb, b)| b.dtype().size_in_bytes().cmp(&a.dtype().size_in_bytes()).then_with(|| na.cmp(nb)));

    let mut header = String::from("{");
    let mut entries = Vec::new();
    if !metadata.is_empty() {
        let fields: Vec<String> =
            metadata.iter().map(|(k, v)| format!("{}:{}", json_string(k), json_string(v))).collect();
        entries.push(format!("{}:{{{}}}", json_string(METADATA_KEY), fields.join(",")));
    }
    let mut offset = 0usize;
    for (name, t) in &order {
        let bytes = t.numel() * t.dtype().size_in_bytes();
        let shape: Vec<String> = t.shape().iter().map(|d| d.to_string()).collect();
        entries.push(format!(
            "{}:{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
            json_string(name),
            dtype_name(t.dtype()),
            shape.join(","),
            offset,
            offset + bytes
        ));
        offset += bytes;
    }
    header.push_str(&entries.join(","));
    header.push('}');
    // Spaces are JSON whitespace: padding to 8 bytes aligns the data section.
    while header.len() % LEN_BYTES != 0 {
        header.push(' ');
    }

    let mut out = Vec::with_capacity(LEN_BYTES + header.len() + offset);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for (_, t) in order {
        append_le_bytes(t, &mut out);
    }
    Ok(out)
}

/// `s` as a JSON string literal, quotes and escapes included.
fn json_string(s: &str) -> String {
    // Serializing a &str cannot fail: it is always valid JSON.
    serde_json::to_string(s).unwrap_or_else(|_| unreachable!("a string always serializes"))
}

/// Appends the elements of `t` in row-major order as little-endian bytes.
fn append_le_bytes(t: &Tensor, out: &mut Vec<u8>) {
    // A packed copy starting at index 0 (the storage itself when already so), read exactly: no
    // conversion through another type, so every bit (NaN payloads included) survives.
    let packed = crate::backend::contiguous(&t.storage(), t.layout());
    match &*packed.to_cpu() {
        CpuStorage::F32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        CpuStorage::F64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
    }
}

/// Writes `tensors` and `metadata` to `path` as a safetensors file, atomically (see
/// [`write_atomically`]): a crash mid-save leaves the previous file intact.
pub fn save_safetensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<(), IoError> {
    let bytes = encode(path, tensors, metadata)?;
    write_atomically(path, &bytes)
}

/// Replaces `path` with `bytes` so that at every moment `path` holds either its old content or
/// the new one, complete.
///
/// The bytes go to a fresh temporary file in the same directory (same file system, so the
/// rename cannot turn into a copy), which is synced to disk before it is renamed over `path`;
/// then the directory is synced so the rename itself survives a power cut. A process killed
/// mid-write leaves only a stray hidden `.<name>.tmp-<pid>-<n>` file behind; a failed write
/// removes its temporary file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let file_name = path
        .file_name()
        .ok_or_else(|| IoError::new(path, "cannot write here: the path does not end in a file name"))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp_name =
        format!(".{}.tmp-{}-{}", file_name.to_string_lossy(), std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let tmp = dir.join(tmp_name);
    let result = write_then_rename(&tmp, path, bytes);
    if result.is_err() {
        // Best effort: the error being returned matters more than a leftover temporary file.
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_dir(&dir);
    Ok(())
}

fn write_then_rename(tmp: &Path, path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    let fail = |what: &str, e: std::io::Error| IoError::new(path, format!("{what} {}: {e}", tmp.display()));
    let mut file = OpenOptions::new().write(true).create_new(true).open(tmp).map_err(|e| fail("cannot create", e))?;
    file.write_all(bytes).map_err(|e| fail("cannot write", e))?;
    file.flush().map_err(|e| fail("cannot flush", e))?;
    // Without this the rename could reach the disk before the data, and a power cut would
    // leave `path` naming an empty or partial file.
    file.sync_all().map_err(|e| fail("cannot sync", e))?;
    drop(file);
    fs::rename(tmp, path).map_err(|e| fail("cannot rename into place the temporary file", e))
}

/// Syncs a directory so a rename inside it is durable. Best effort: the rename is already
/// atomic for every reader; this only protects it against a power cut, and some file systems
/// (and every non-Unix system) cannot sync a directory.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

// ---------------------------------------------------------------------------------------------
// Reading

/// Reads a safetensors file. Every problem, from a missing file to a header that lies about a
/// size, is an `Err` naming the file and (where one is to blame) the tensor.
pub fn load_safetensors(path: &Path) -> Result<TensorFile, IoError> {
    let fail = |what: &str, e: std::io::Error| IoError::new(path, format!("{what}: {e}"));
    let file = File::open(path).map_err(|e| fail("cannot open", e))?;
    let len = file.metadata().map_err(|e| fail("cannot read the file's metadata", e))?.len();
    // The file's own length (not anything it declares) bounds the buffer; reading one byte
    // past it notices a file that grows while being read.
    let mut bytes = Vec::new();
    // try_reserve: a file larger than the memory available is an error, not an abort.
    bytes.try_reserve_exact(usize::try_from(len).unwrap_or(usize::MAX)).map_err(|e| {
        IoError::new(path, format!("the file holds {len} bytes, more than can be loaded into memory ({e})"))
    })?;
    file.take(len.saturating_add(1)).read_to_end(&mut bytes).map_err(|e| fail("read failed", e))?;
    if bytes.len() as u64 != len {
        return Err(IoError::new(
            path,
            format!("the file changed while it was read ({len} bytes, then {}); is something writing it?", bytes.len()),
        ));
    }
    decode(path, &bytes)
}

/// Parses a safetensors file held in memory; `name` is what error messages call it. Applies
/// exactly the checks of [`load_safetensors`].
pub fn decode_safetensors(name: &str, bytes: &[u8]) -> Result<TensorFile, IoError> {
    decode(Path::new(name), bytes)
}

/// One tensor's header entry, checked.
struct Entry {
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    begin: usize,
    end: usize,
}

fn decode(path: &Path, bytes: &[u8]) -> Result<TensorFile, IoError> {
    let fail = |message: String| IoError::new(path, message);
    let Some(prefix) = bytes.get(..LEN_BYTES) else {
        return Err(fail(format!(
            "too short for safetensors: the file starts with an 8-byte header length, but it holds only {} bytes",
            bytes.len()
        )));
    };
    let header_len = u64::from_le_bytes(prefix.try_into().unwrap_or([0; LEN_BYTES]));
    let available = (bytes.len() - LEN_BYTES) as u64;
    if header_len > MAX_HEADER_BYTES {
        return Err(fail(format!(
            "header length {header_len} is over the {MAX_HEADER_BYTES}-byte limit: the file is corrupt or not safetensors"
        )));
    }
    if header_len > available {
        return Err(fail(format!(
            "truncated: the header is {header_len} bytes long but only {available} bytes follow the length prefix"
        )));
    }
    // Both fit in usize: header_len <= available < bytes.len().
    let data_start = LEN_BYTES + header_len as usize;
    let header = std::str::from_utf8(&bytes[LEN_BYTES..data_start])
        .map_err(|e| fail(format!("the header is not valid UTF-8 ({e})")))?;
    let entries: HeaderEntries = serde_json::from_str(header)
        .map_err(|e| fail(format!("the header is not a valid JSON object ({e}); the file is corrupt")))?;
    let data = &bytes[data_start..];

    let mut metadata = BTreeMap::new();
    let mut tensors: Vec<Entry> = Vec::new();
    let mut seen = BTreeSet::new();
    for (name, value) in entries.0 {
        if !seen.insert(name.clone()) {
            return Err(IoError::tensor(path, name, "appears twice in the header; names must be unique"));
        }
        if name == METADATA_KEY {
            metadata = parse_metadata(path, value)?;
        } else {
            tensors.push(parse_entry(path, name, value, data.len())?);
        }
    }

    // The tensors must tile the data section exactly, in offset order.
    tensors.sort_by_key(|e| (e.begin, e.end));
    let mut expected_begin = 0usize;
    let mut previous: Option<&str> = None;
    for e in &tensors {
        if e.begin != expected_begin {
            let after =
                previous.map(|p| format!("tensor '{p}' ends")).unwrap_or_else(|| "the data section starts".into());
            let what = if e.begin < expected_begin { "overlaps the tensor before it" } else { "leaves a gap" };
            return Err(IoError::tensor(
                path,
                &e.name,
                format!(
                    "data starts at byte {} but {after} at byte {expected_begin}: it {what}; the header is corrupt",
                    e.begin
                ),
            ));
        }
        expected_begin = e.end;
        previous = Some(&e.name);
    }
    if expected_begin != data.len() {
        return Err(fail(format!(
            "trailing bytes: the tensors' data ends at byte {expected_begin} of the data section, but it holds {} bytes",
            data.len()
        )));
    }

    let tensors = tensors
        .into_iter()
        .map(|e| {
            let raw = &data[e.begin..e.end];
            let t = match e.dtype {
                DType::F32 => Tensor::from_vec(
                    raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
                    &e.shape,
                ),
                DType::F64 => Tensor::from_vec_f64(
                    raw.chunks_exact(8)
                        .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                        .collect(),
                    &e.shape,
                ),
            };
            (e.name, t)
        })
        .collect();
    Ok(TensorFile { tensors, metadata })
}

fn parse_metadata(path: &Path, value: Value) -> Result<BTreeMap<String, String>, IoError> {
    let Value::Object(map) = value else {
        return Err(IoError::tensor(
            path,
            METADATA_KEY,
            format!("must be a JSON object of strings, but is {}", json_kind(&value)),
        ));
    };
    map.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            other => Err(IoError::tensor(
                path,
                METADATA_KEY,
                format!("key '{k}' holds {}, but metadata values must be strings", json_kind(&other)),
            )),
        })
        .collect()
}

fn parse_entry(path: &Path, name: String, value: Value, data_len: usize) -> Result<Entry, IoError> {
    let fail = |message: String| IoError::tensor(path, &name, message);
    let Value::Object(fields) = &value else {
        return Err(fail(format!(
            "header entry is {}, but must be an object with dtype, shape and data_offsets",
            json_kind(&value)
        )));
    };
    let field = |key: &str| fields.get(key).ok_or_else(|| fail(format!("header entry has no \"{key}\"")));

    let dtype = match field("dtype")? {
        Value::String(s) if s == "F32" => DType::F32,
        Value::String(s) if s == "F64" => DType::F64,
        Value::String(s) if OTHER_DTYPES.contains(&s.as_str()) => {
            return Err(fail(format!(
                "dtype {s} is not supported: glassbox reads F32 and F64 (convert the tensor first)"
            )))
        }
        Value::String(s) => return Err(fail(format!("unknown dtype {s:?}; glassbox reads F32 and F64"))),
        other => return Err(fail(format!("dtype must be a string such as \"F32\", but is {}", json_kind(other)))),
    };

    let Value::Array(dims) = field("shape")? else {
        return Err(fail(format!("shape must be an array of sizes, but is {}", json_kind(field("shape")?))));
    };
    let mut shape = Vec::with_capacity(dims.len().min(64));
    for (i, d) in dims.iter().enumerate() {
        let size = d.as_u64().and_then(|s| usize::try_from(s).ok()).ok_or_else(|| {
            fail(format!("shape entry {i} is {d}, but sizes must be non-negative integers that fit in memory"))
        })?;
        shape.push(size);
    }
    let numel = checked_numel(&shape)
        .ok_or_else(|| fail(format!("shape {shape:?} has more elements than this machine can address")))?;
    let needed = numel.checked_mul(dtype.size_in_bytes()).ok_or_else(|| {
        fail(format!("shape {shape:?} of {} needs more bytes than this machine can address", dtype_name(dtype)))
    })?;

    let offsets = match field("data_offsets")? {
        Value::Array(pair) if pair.len() == 2 => pair,
        other => return Err(fail(format!("data_offsets must be [begin, end], but is {other}"))),
    };
    let offset = |i: usize| {
        offsets[i].as_u64().and_then(|o| usize::try_from(o).ok()).ok_or_else(|| {
            fail(format!("data_offsets entry {i} is {}, but offsets must be non-negative integers", offsets[i]))
        })
    };
    let (begin, end) = (offset(0)?, offset(1)?);
    if end < begin {
        return Err(fail(format!("data_offsets [{begin}, {end}] end before they begin")));
    }
    if end > data_len {
        return Err(fail(format!(
            "data_offsets [{begin}, {end}] reach past the data section, which holds {data_len} bytes: the file is truncated or the header is corrupt"
        )));
    }
    if end - begin != needed {
        return Err(fail(format!(
            "data_offsets [{begin}, {end}] span {} bytes, but shape {shape:?} of {} needs {needed}",
            end - begin,
            dtype_name(dtype)
        )));
    }
    Ok(Entry { name, dtype, shape, begin, end })
}

/// What kind of JSON value `v` is, for messages.
fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The header's top-level entries in file order, duplicates kept (so they can be reported:
/// a plain JSON map would silently keep the last one).
struct HeaderEntries(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for HeaderEntries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = HeaderEntries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HeaderEntries, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    entries.push(entry);
                }
                Ok(HeaderEntries(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor)
    }
}
