//! The loaders of outside bytes under attack: a seeded mutation fuzzer (stable Rust, no outside
//! tool) over valid IDX files (plain and gzipped, small generated ones and a slice of the real
//! MNIST) and valid safetensors files.
//!
//! Each case is a pure function of (target, seed): a valid file from the corpus, then a few
//! mutations drawn from the seed: format-aware ones (wrong magic, lying dimensions, huge
//! declared sizes, edited JSON numbers and dtypes, a header length that lies) and byte-level
//! ones (truncation, bit flips, inserted, deleted, duplicated and spliced byte ranges). For
//! every case the parser must
//! - not panic (each call runs under `catch_unwind`; the failure names the seed),
//! - not hang (a watchdog aborts with the seed if a case runs for 10 s),
//! - not allocate without bound: this binary counts allocations, and no single one may exceed
//!   a small multiple of the input's length (`allocation_cap`), whatever size the bytes declare,
//! - return a consistent `Ok` (data length = product of the dims; a safetensors file we
//!   accept must also survive being written back and read again, bit for bit),
//! - or an `Err` that names the input and says what was wrong.
//!
//! CI runs 360,000 cases (the `fuzz_*` tests, a few seconds in all). The soak runs as many as you like:
//! `GLASSBOX_FUZZ_ITERATIONS=10000000 cargo test --release --test fuzz_loaders -- --ignored`
//! (also `GLASSBOX_FUZZ_SEED` for the first seed, `GLASSBOX_FUZZ_TARGET` for one target; with
//! `GLASSBOX_FUZZ_ITERATIONS=1` this replays the one case a failure named).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use glassbox::data::mnist::default_dir;
use glassbox::data::{read_idx, read_idx_from_bytes};
use glassbox::io::{decode_safetensors, encode_safetensors, save_checkpoint, TrainState};
use glassbox::nn::{Activation, Module, Sequential};
use glassbox::optim::{Adam, Optimizer};
use glassbox::rng::Rng;
use glassbox::tensor::checked_numel;
use glassbox::{DType, Tensor};

// ---------------------------------------------------------------------------------------------
// Allocation accounting

/// The system allocator, noting the largest single request made on each thread.
struct CountingAlloc;

thread_local! {
    /// Largest allocation (bytes) requested on this thread since the last `reset_largest`.
    /// A const-initialised Cell without destructor: reading it never allocates.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // try_with: during thread teardown the slot may be gone; the count is then not needed.
    let _ = LARGEST.try_with(|l| {
        if size > l.get() {
            l.set(size);
        }
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// GlobalAlloc contract (valid layouts, pointers from this allocator) passes straight through;
// `note` only updates a thread-local integer and never allocates or unwinds.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's layout, forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as for alloc.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: `ptr` was allocated by this allocator (that is, by System) with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by System (through this allocator) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

/// Runs `f` and returns its result with the largest single allocation it made on this thread.
fn with_largest_allocation<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LARGEST.with(|l| l.set(0));
    let result = f();
    (result, LARGEST.with(Cell::get))
}

/// Deflate expands at most about 1032 times, so no honest gzip reader needs more than that.
const DEFLATE_MAX_EXPANSION: usize = 1032;

/// The most one allocation may take while parsing `len` bytes of `target`: linear in the
/// input, never in what the input declares. Plain IDX and safetensors hold their data as read
/// (safetensors' JSON tree costs up to ~32 bytes per header byte, and a Vec growing by
/// doubling may reserve twice what it holds); gzip input may expand 1032 times. The constant
/// covers decoder state and small fixed buffers.
fn allocation_cap(target: Target, len: usize) -> usize {
    let per_byte = match target {
        Target::IdxPlain | Target::Safetensors => 64,
        Target::IdxGzip | Target::IdxGzipInner => 2 * DEFLATE_MAX_EXPANSION,
    };
    per_byte * len + (1 << 20)
}

// ---------------------------------------------------------------------------------------------
// The corpus of valid files

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).expect("gzip in memory");
    encoder.finish().expect("gzip in memory")
}

struct Corpus {
    /// Valid plain IDX files.
    idx: Vec<Vec<u8>>,
    /// The same, gzipped, plus a real gzipped MNIST file as shipped.
    idx_gz: Vec<Vec<u8>>,
    /// Valid safetensors files.
    safetensors: Vec<Vec<u8>>,
}

fn corpus() -> &'static Corpus {
    static CORPUS: OnceLock<Corpus> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let mut rng = Rng::new(2024);
        let mut random_bytes = |n: usize| (0..n).map(|_| rng.below(256) as u8).collect::<Vec<u8>>();
        let mut idx = vec![
            idx_bytes(&[20], &(0..20).map(|i| (i % 10) as u8).collect::<Vec<_>>()),
            idx_bytes(&[3, 4, 5], &random_bytes(60)),
            idx_bytes(&[7, 3], &random_bytes(21)),
            idx_bytes(&[1, 1, 1], &[255]),
            idx_bytes(&[0], &[]),
            idx_bytes(&[2, 0, 9], &[]),
        ];
        // A slice of the real MNIST: the first 100 test labels and the first 8 test images.
        let labels = read_idx(&default_dir().join("t10k-labels-idx1-ubyte.gz")).expect("real MNIST labels");
        let images = read_idx(&default_dir().join("t10k-images-idx3-ubyte.gz")).expect("real MNIST images");
        idx.push(idx_bytes(&[100], &labels.data[..100]));
        idx.push(idx_bytes(&[8, 28, 28], &images.data[..8 * 784]));
        let mut idx_gz: Vec<Vec<u8>> = idx.iter().map(|b| gzip(b)).collect();
        idx_gz.push(std::fs::read(default_dir().join("t10k-labels-idx1-ubyte.gz")).expect("real gz file"));

        let named = |pairs: Vec<(&str, Tensor)>| pairs.into_iter().map(|(n, t)| (n.to_string(), t)).collect::<Vec<_>>();
        let encode = |tensors: Vec<(String, Tensor)>, meta: &[(&str, &str)]| {
            let meta = meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            encode_safetensors("corpus", &tensors, &meta).expect("encode a valid file")
        };
        let mut safetensors = vec![
            encode(named(vec![("w", Tensor::randn(&[3, 4], 1)), ("b", Tensor::randn(&[4], 2))]), &[]),
            encode(
                named(vec![
                    ("x64", Tensor::from_vec_f64(vec![1.0, -2.5, 3.25], &[3])),
                    ("scalar", Tensor::scalar(7.0)),
                    ("empty", Tensor::zeros(&[0, 5])),
                    ("cube", Tensor::randn(&[2, 2, 2], 3)),
                ]),
                &[("format", "pt"), ("note", "a \"quoted\" value")],
            ),
            encode(Vec::new(), &[("only", "metadata")]),
            encode(Vec::new(), &[]),
        ];
        // A real training checkpoint: a small MLP with Adam state and the run's metadata.
        let model = Sequential::mlp(&[6, 5, 3], Activation::Relu, 0.0, &mut Rng::new(0));
        let optimizer = Adam::new(model.parameters(), 1e-3);
        let dir = std::env::temp_dir().join(format!("glassbox-fuzz-corpus-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("ckpt.safetensors");
        let state = TrainState { step: 3, epoch: 1, rng: Rng::new(4) };
        save_checkpoint(&path, &model, &optimizer as &dyn Optimizer, &state).expect("save checkpoint");
        safetensors.push(std::fs::read(&path).expect("read checkpoint"));
        let _ = std::fs::remove_dir_all(&dir);
        Corpus { idx, idx_gz, safetensors }
    })
}

// ---------------------------------------------------------------------------------------------
// Mutations

/// Numbers that break parsers: zero, one, sign and width boundaries.
const INTERESTING_U64: &[u64] = &[
    0,
    1,
    2,
    7,
    8,
    0xff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    1 << 32,
    1 << 40,
    100_000_000,
    99_999_999,
    (1 << 62) - 1,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
];

fn pick<T: Copy>(rng: &mut Rng, items: &[T]) -> T {
    items[rng.below(items.len())]
}

/// One byte-level mutation, blind to the format.
fn mutate_bytes(rng: &mut Rng, bytes: &mut Vec<u8>, donors: &[Vec<u8>]) {
    let len = bytes.len();
    let pos = |rng: &mut Rng| rng.below(len + 1);
    match rng.below(8) {
        0 => bytes.truncate(rng.below(len + 1)),
        1 if len > 0 => {
            let i = rng.below(len);
            bytes[i] ^= 1 << rng.below(8);
        }
        2 if len > 0 => {
            let i = rng.below(len);
            bytes[i] = pick(rng, &[0, 1, 0x7f, 0x80, 0xff, b'0', b'9', b'"', b'{', b'-']);
        }
        3 => {
            let at = pos(rng);
            let n = 1 + rng.below(16);
            let insert: Vec<u8> = (0..n).map(|_| rng.below(256) as u8).collect();
            bytes.splice(at..at, insert);
        }
        4 if len > 0 => {
            let start = rng.below(len);
            let end = start + 1 + rng.below((len - start).min(64));
            bytes.drain(start..end);
        }
        5 if len > 0 => {
            let start = rng.below(len);
            let end = start + 1 + rng.below((len - start).min(64));
            let chunk = bytes[start..end].to_vec();
            let at = pos(rng);
            bytes.splice(at..at, chunk);
        }
        6 => {
            let donor = &donors[rng.below(donors.len())];
            if !donor.is_empty() {
                let start = rng.below(donor.len());
                let end = start + 1 + rng.below((donor.len() - start).min(128));
                let at = pos(rng);
                if rng.below(2) == 0 {
                    bytes.splice(at..at, donor[start..end].iter().copied());
                } else {
                    let stop = (at + end - start).min(len);
                    bytes.splice(at..stop, donor[start..end].iter().copied());
                }
            }
        }
        _ if len >= 8 => {
            // An interesting number, 4 or 8 bytes wide, either byte order, anywhere.
            let value = pick(rng, INTERESTING_U64);
            let wide = rng.below(2) == 0;
            let at = rng.below(len - if wide { 7 } else { 3 });
            let raw: Vec<u8> = match (wide, rng.below(2) == 0) {
                (true, true) => value.to_le_bytes().to_vec(),
                (true, false) => value.to_be_bytes().to_vec(),
                (false, true) => (value as u32).to_le_bytes().to_vec(),
                (false, false) => (value as u32).to_be_bytes().to_vec(),
            };
            bytes[at..at + raw.len()].copy_from_slice(&raw);
        }
        _ => bytes.push(rng.below(256) as u8),
    }
}

/// One IDX-aware mutation of a (valid, plain) IDX file: magic, type, rank, dimensions.
fn mutate_idx(rng: &mut Rng, bytes: &mut [u8]) {
    let ndims = usize::from(bytes[3]).min((bytes.len() - 4) / 4);
    match rng.below(5) {
        // Wrong magic: any of the first four bytes.
        0 => bytes[rng.below(4)] = rng.below(256) as u8,
        // Another element type, known or not.
        1 => bytes[2] = pick(rng, &[0x08, 0x09, 0x0b, 0x0c, 0x0d, 0x0e, 0x00, 0xff]),
        // A lying rank.
        2 => bytes[3] = pick(rng, &[0, 1, 2, 3, 4, 255, bytes[3].wrapping_add(1), bytes[3].wrapping_sub(1)]),
        // A huge declared size.
        3 if ndims > 0 => {
            let k = 4 + 4 * rng.below(ndims);
            let huge = pick(rng, &[0xffff_ffffu32, 0x7fff_ffff, 0x8000_0000, 4_000_000_000, 1 << 24, 65_535]);
            bytes[k..k + 4].copy_from_slice(&huge.to_be_bytes());
        }
        // A dimension off by one (or zero).
        _ if ndims > 0 => {
            let k = 4 + 4 * rng.below(ndims);
            let d = u32::from_be_bytes([bytes[k], bytes[k + 1], bytes[k + 2], bytes[k + 3]]);
            let lie = pick(rng, &[d.wrapping_add(1), d.wrapping_sub(1), 0, d.wrapping_mul(2)]);
            bytes[k..k + 4].copy_from_slice(&lie.to_be_bytes());
        }
        _ => {}
    }
}

/// One safetensors-aware mutation of a valid file: the length prefix, or the JSON header
/// (numbers, dtypes, structure, duplicate keys), with the prefix kept consistent half the
/// time so the edit reaches the checks behind the JSON parser.
fn mutate_safetensors(rng: &mut Rng, bytes: &mut Vec<u8>) {
    let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    if rng.below(5) == 0 {
        let len = bytes.len() as u64;
        let lie = pick(
            rng,
            &[0, 1, 2, header_len as u64 + 1, header_len as u64 - 1, len, len - 8, len - 7, 100_000_001, u64::MAX],
        );
        let lie = if rng.below(3) == 0 { pick(rng, INTERESTING_U64) } else { lie };
        bytes[..8].copy_from_slice(&lie.to_le_bytes());
        return;
    }
    let mut header = bytes[8..8 + header_len].to_vec();
    let data = bytes[8 + header_len..].to_vec();
    let digit_runs: Vec<(usize, usize)> = {
        let mut runs = Vec::new();
        let mut i = 0;
        while i < header.len() {
            if header[i].is_ascii_digit() {
                let start = i;
                while i < header.len() && header[i].is_ascii_digit() {
                    i += 1;
                }
                runs.push((start, i));
            } else {
                i += 1;
            }
        }
        runs
    };
    let replace = |header: &mut Vec<u8>, start: usize, end: usize, with: &[u8]| {
        header.splice(start..end, with.iter().copied());
    };
    match rng.below(6) {
        // A shape or offset number replaced by an interesting one.
        0 | 1 if !digit_runs.is_empty() => {
            let (start, end) = digit_runs[rng.below(digit_runs.len())];
            let text = if rng.below(4) == 0 {
                pick(rng, &["-1", "1.5", "1e400", "99999999999999999999999", "null", "\"3\"", "[]"]).to_string()
            } else {
                let current: u64 =
                    std::str::from_utf8(&header[start..end]).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
                let wild = pick(rng, INTERESTING_U64);
                pick(rng, &[current.wrapping_add(1), current.saturating_sub(1), current.wrapping_mul(2), 0, wild])
                    .to_string()
            };
            replace(&mut header, start, end, text.as_bytes());
        }
        // Another dtype, supported or not.
        2 => {
            if let Some(at) = find(&header, b"\"F32\"").or_else(|| find(&header, b"\"F64\"")) {
                let with =
                    pick(rng, &["\"F64\"", "\"F32\"", "\"BF16\"", "\"I64\"", "\"BOOL\"", "\"F3\"", "32", "null"]);
                replace(&mut header, at, at + 5, with.as_bytes());
            }
        }
        // A structural character swapped for another.
        3 => {
            let structural: Vec<usize> =
                header.iter().enumerate().filter(|(_, b)| b"{}[],:\"".contains(b)).map(|(i, _)| i).collect();
            if !structural.is_empty() {
                let at = structural[rng.below(structural.len())];
                header[at] = pick(rng, b"{}[],:\" ");
            }
        }
        // A key written twice: the first entry repeated.
        4 => {
            if let (Some(start), Some(end)) = (find(&header, b"\""), find(&header, b"},")) {
                if start < end {
                    let entry = header[start..end + 2].to_vec();
                    let at = start;
                    header.splice(at..at, entry);
                }
            }
        }
        // Metadata with a value that is not a string, or a deeply nested value.
        _ => {
            let with: &[u8] = pick(
                rng,
                &[
                    &b"\"__metadata__\":{\"k\":1},"[..],
                    &b"\"__metadata__\":[],"[..],
                    &b"\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["[..],
                    &b"\"y\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"[..],
                ],
            );
            if header.first() == Some(&b'{') {
                header.splice(1..1, with.iter().copied());
            }
        }
    }
    let prefix_len = if rng.below(2) == 0 { header.len() } else { header_len } as u64;
    bytes.clear();
    bytes.extend_from_slice(&prefix_len.to_le_bytes());
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(&data);
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// Cases

/// What is being fuzzed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// Plain IDX bytes, mutated.
    IdxPlain,
    /// Gzipped IDX, the compressed bytes mutated.
    IdxGzip,
    /// IDX mutated, then gzipped: valid gzip around a lying IDX file.
    IdxGzipInner,
    /// Safetensors bytes, mutated.
    Safetensors,
}

impl Target {
    const ALL: [Target; 4] = [Target::IdxPlain, Target::IdxGzip, Target::IdxGzipInner, Target::Safetensors];

    fn from_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| format!("{t:?}").eq_ignore_ascii_case(name))
    }
}

/// The input of case `seed` of `target`: a corpus file and 1 to 5 mutations, all drawn from
/// the seed.
fn make_case(target: Target, seed: u64) -> Vec<u8> {
    let c = corpus();
    let mut rng = Rng::new(seed ^ 0x5eed_f00d_d00d_beef);
    let byte_mutations = rng.below(4);
    match target {
        Target::IdxPlain | Target::IdxGzipInner => {
            let mut bytes = c.idx[rng.below(c.idx.len())].clone();
            let aware = if byte_mutations == 0 { 1 } else { rng.below(3) };
            for _ in 0..aware {
                mutate_idx(&mut rng, &mut bytes);
            }
            for _ in 0..byte_mutations {
                mutate_bytes(&mut rng, &mut bytes, &c.idx);
            }
            if target == Target::IdxGzipInner {
                bytes = gzip(&bytes);
                if rng.below(4) == 0 {
                    mutate_bytes(&mut rng, &mut bytes, &c.idx_gz);
                }
            }
            bytes
        }
        Target::IdxGzip => {
            let mut bytes = c.idx_gz[rng.below(c.idx_gz.len())].clone();
            for _ in 0..byte_mutations.max(1) {
                mutate_bytes(&mut rng, &mut bytes, &c.idx_gz);
            }
            // Sometimes aim at the gzip trailer: CRC-32 and ISIZE, the last 8 bytes.
            if rng.below(4) == 0 && bytes.len() >= 8 {
                let at = bytes.len() - 1 - rng.below(8);
                bytes[at] ^= 1 << rng.below(8);
            }
            bytes
        }
        Target::Safetensors => {
            let mut bytes = c.safetensors[rng.below(c.safetensors.len())].clone();
            // At most one aware edit: it parses the (valid) header to edit it, which a second
            // edit could not trust; byte mutations then break whatever they like.
            if byte_mutations == 0 || rng.below(3) != 0 {
                mutate_safetensors(&mut rng, &mut bytes);
            }
            for _ in 0..byte_mutations {
                mutate_bytes(&mut rng, &mut bytes, &c.safetensors);
            }
            bytes
        }
    }
}

/// How one case ended, when it ended well.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Accepted,
    Rejected,
}

/// Parses `bytes` as `target` and checks every promise; `Err` describes a broken one.
fn check_case(target: Target, seed: u64, bytes: &[u8]) -> Result<(Outcome, usize), String> {
    let name = format!("fuzz-{target:?}-{seed}");
    let (result, largest) = with_largest_allocation(|| {
        catch_unwind(AssertUnwindSafe(|| match target {
            Target::Safetensors => check_safetensors(&name, bytes),
            _ => check_idx(&name, bytes),
        }))
    });
    let outcome = match result {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(broken)) => return Err(broken),
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            return Err(format!("panicked: {message}"));
        }
    };
    let cap = allocation_cap(target, bytes.len());
    if largest > cap {
        return Err(format!(
            "allocated {largest} bytes at once for a {}-byte input (cap {cap}): a declared size was trusted",
            bytes.len()
        ));
    }
    Ok((outcome, largest))
}

fn check_error_names_input(name: &str, path: &std::path::Path, text: String, message: &str) -> Result<Outcome, String> {
    if path != std::path::Path::new(name) || !text.starts_with(name) {
        return Err(format!("the error does not name the input {name}: {text}"));
    }
    if message.len() < 12 {
        return Err(format!("the error does not say what was wrong: {text}"));
    }
    Ok(Outcome::Rejected)
}

fn check_idx(name: &str, bytes: &[u8]) -> Result<Outcome, String> {
    match read_idx_from_bytes(name, bytes) {
        Ok(array) => {
            let numel = array.dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
            if array.dims.is_empty() || numel != Some(array.data.len()) {
                return Err(format!("Ok with dims {:?} but {} data bytes", array.dims, array.data.len()));
            }
            Ok(Outcome::Accepted)
        }
        Err(e) => check_error_names_input(name, e.path(), e.to_string(), e.message()),
    }
}

fn check_safetensors(name: &str, bytes: &[u8]) -> Result<Outcome, String> {
    match decode_safetensors(name, bytes) {
        Ok(file) => {
            for (tensor_name, t) in &file.tensors {
                if checked_numel(t.shape()) != Some(t.numel()) || !t.is_contiguous() {
                    return Err(format!(
                        "Ok with tensor {tensor_name:?} of shape {:?} and {} elements",
                        t.shape(),
                        t.numel()
                    ));
                }
            }
            // What we accept, we can write back and read again unchanged.
            let again = encode_safetensors(name, &file.tensors, &file.metadata)
                .and_then(|b| decode_safetensors(name, &b))
                .map_err(|e| format!("an accepted file did not survive a round trip: {e}"))?;
            let bits = |t: &Tensor| match t.dtype() {
                DType::F32 => t.to_vec().iter().map(|v| u64::from(v.to_bits())).collect::<Vec<_>>(),
                DType::F64 => t.to_vec_f64().iter().map(|v| v.to_bits()).collect(),
            };
            let same = again.metadata == file.metadata
                && again.tensors.len() == file.tensors.len()
                && file.tensors.iter().all(|(n, t)| {
                    again.get(n).is_some_and(|u| u.shape() == t.shape() && u.dtype() == t.dtype() && bits(u) == bits(t))
                });
            if !same {
                return Err("an accepted file changed in a round trip".to_string());
            }
            Ok(Outcome::Accepted)
        }
        Err(e) => check_error_names_input(name, e.path(), e.to_string(), e.message()),
    }
}

// ---------------------------------------------------------------------------------------------
// The driver

/// What a run of cases saw.
#[derive(Debug, Default)]
struct Stats {
    cases: u64,
    accepted: u64,
    rejected: u64,
    slowest: Duration,
    largest_allocation: usize,
    elapsed: Duration,
}

/// Aborts the process, naming the case, if one case runs longer than `limit` (a hang cannot
/// be caught any other way). Dropping it stops the watch.
struct Watchdog {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    /// `started` holds when the current case began, in microseconds since `clock`.
    fn new(
        target: Target,
        current: Arc<AtomicU64>,
        started: Arc<AtomicU64>,
        clock: Instant,
        limit: Duration,
    ) -> Watchdog {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                let began = Duration::from_micros(started.load(Ordering::Relaxed));
                if clock.elapsed().saturating_sub(began) > limit {
                    let seed = current.load(Ordering::Relaxed);
                    let message = format!(
                        "fuzz_loaders: case {target:?} seed {seed} has run for over {limit:?}: a hang. Replay it with \
                         GLASSBOX_FUZZ_TARGET={target:?} GLASSBOX_FUZZ_SEED={seed} GLASSBOX_FUZZ_ITERATIONS=1\n"
                    );
                    // Straight to the stream: the test harness captures eprintln!, and would
                    // lose the message when the process aborts.
                    let _ = std::io::stderr().write_all(message.as_bytes());
                    std::process::abort();
                }
            }
        });
        Watchdog { stop, thread: Some(thread) }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs cases `first_seed..first_seed + count` of `target`; panics naming the seed of the
/// first broken promise.
fn fuzz(target: Target, first_seed: u64, count: u64) -> Stats {
    let current = Arc::new(AtomicU64::new(first_seed));
    let started = Arc::new(AtomicU64::new(0));
    let clock = Instant::now();
    let _watchdog = Watchdog::new(target, current.clone(), started.clone(), clock, Duration::from_secs(10));
    let mut stats = Stats::default();
    // Panics are caught and reported with their seed; the default hook would also print each
    // one, so it is silenced for the run (and restored after).
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut failure = None;
    for seed in first_seed..first_seed.saturating_add(count) {
        current.store(seed, Ordering::Relaxed);
        started.store(clock.elapsed().as_micros() as u64, Ordering::Relaxed);
        let bytes = make_case(target, seed);
        let case_start = Instant::now();
        let result = check_case(target, seed, &bytes);
        stats.slowest = stats.slowest.max(case_start.elapsed());
        stats.cases += 1;
        match result {
            Ok((Outcome::Accepted, largest)) => {
                stats.accepted += 1;
                stats.largest_allocation = stats.largest_allocation.max(largest);
            }
            Ok((Outcome::Rejected, largest)) => {
                stats.rejected += 1;
                stats.largest_allocation = stats.largest_allocation.max(largest);
            }
            Err(broken) => {
                failure = Some(format!(
                    "fuzz_loaders: {target:?} seed {seed} ({} input bytes): {broken}\nreplay: GLASSBOX_FUZZ_TARGET={target:?} \
                     GLASSBOX_FUZZ_SEED={seed} GLASSBOX_FUZZ_ITERATIONS=1 cargo test --test fuzz_loaders -- --ignored soak",
                    bytes.len()
                ));
                break;
            }
        }
    }
    std::panic::set_hook(hook);
    if let Some(message) = failure {
        panic!("{message}");
    }
    stats.elapsed = clock.elapsed();
    eprintln!(
        "fuzz_loaders: {target:?}: {} cases ({} accepted, {} rejected) in {:.2?} = {:.0} cases/s; slowest case {:.2?}; \
         largest single allocation {} bytes",
        stats.cases,
        stats.accepted,
        stats.rejected,
        stats.elapsed,
        stats.cases as f64 / stats.elapsed.as_secs_f64(),
        stats.slowest,
        stats.largest_allocation
    );
    stats
}

/// Every target must see both outcomes: a fuzzer whose mutations are all rejected at the first
/// check (or all ignored) tests nothing deeper.
fn assert_reaches_both_outcomes(stats: &Stats, target: Target) {
    assert!(stats.accepted > 0 && stats.rejected > 0, "{target:?}: {stats:?}");
}

#[test]
fn fuzz_plain_idx() {
    let stats = fuzz(Target::IdxPlain, 0, 150_000);
    assert_reaches_both_outcomes(&stats, Target::IdxPlain);
}

#[test]
fn fuzz_gzipped_idx() {
    let stats = fuzz(Target::IdxGzip, 0, 40_000);
    assert_reaches_both_outcomes(&stats, Target::IdxGzip);
}

#[test]
fn fuzz_lying_idx_inside_valid_gzip() {
    let stats = fuzz(Target::IdxGzipInner, 0, 20_000);
    assert_reaches_both_outcomes(&stats, Target::IdxGzipInner);
}

#[test]
fn fuzz_safetensors() {
    let stats = fuzz(Target::Safetensors, 0, 150_000);
    assert_reaches_both_outcomes(&stats, Target::Safetensors);
}

/// The soak: `GLASSBOX_FUZZ_ITERATIONS` cases (default 1,000,000) per target from
/// `GLASSBOX_FUZZ_SEED` (default 1,000,000,000, past CI's seeds), every target or the one
/// `GLASSBOX_FUZZ_TARGET` names (IdxPlain, IdxGzip, IdxGzipInner, Safetensors).
#[test]
#[ignore = "long soak; see the file's documentation"]
fn soak() {
    let env = |key: &str, default: u64| {
        std::env::var(key)
            .ok()
            .map(|v| v.parse().unwrap_or_else(|_| panic!("{key}={v:?} is not a number")))
            .unwrap_or(default)
    };
    let count = env("GLASSBOX_FUZZ_ITERATIONS", 1_000_000);
    let first = env("GLASSBOX_FUZZ_SEED", 1_000_000_000);
    let targets: Vec<Target> = match std::env::var("GLASSBOX_FUZZ_TARGET") {
        Ok(name) => vec![Target::from_name(&name).unwrap_or_else(|| panic!("unknown GLASSBOX_FUZZ_TARGET {name:?}"))],
        Err(_) => Target::ALL.to_vec(),
    };
    for target in targets {
        fuzz(target, first, count);
    }
}

// ---------------------------------------------------------------------------------------------
// Huge declared sizes, one by one

/// Parses `bytes` and returns (the error text, the largest single allocation).
fn rejected_with_allocation(target: Target, bytes: &[u8]) -> (String, usize) {
    let (result, largest) = with_largest_allocation(|| match target {
        Target::Safetensors => decode_safetensors("huge", bytes).map(|_| ()).map_err(|e| e.to_string()),
        _ => read_idx_from_bytes("huge", bytes).map(|_| ()).map_err(|e| e.to_string()),
    });
    (result.expect_err("a lying size must be rejected"), largest)
}

#[test]
fn huge_declared_sizes_allocate_nothing_near_them() {
    let gz_huge = gzip(&idx_bytes(&[60_000, 60_000, 60_000], &[1; 64]));
    let cases: Vec<(Target, Vec<u8>, &str)> = vec![
        (Target::IdxPlain, idx_bytes(&[4_000_000_000], &[0; 16]), "truncated: header declares 4000000000 bytes"),
        (Target::IdxGzip, gz_huge, "60000x60000x60000 = 216000000000000 bytes of data"),
        (
            Target::Safetensors,
            {
                let mut b = u64::MAX.to_le_bytes().to_vec();
                b.extend_from_slice(b"{}");
                b
            },
            "header length 18446744073709551615 is over",
        ),
        (
            Target::Safetensors,
            {
                let mut b = 99_999_999u64.to_le_bytes().to_vec();
                b.extend_from_slice(b"{}      ");
                b
            },
            "the header is 99999999 bytes long but only 8 bytes follow",
        ),
        (
            Target::Safetensors,
            {
                let json = br#"{"w":{"dtype":"F32","shape":[1000000000],"data_offsets":[0,4000000000]}}"#;
                let mut b = (json.len() as u64).to_le_bytes().to_vec();
                b.extend_from_slice(json);
                b.extend_from_slice(&[0; 16]);
                b
            },
            "reach past the data section, which holds 16 bytes",
        ),
    ];
    for (target, bytes, expected) in cases {
        let (text, largest) = rejected_with_allocation(target, &bytes);
        assert!(text.contains(expected), "{target:?}: {text}");
        assert!(largest < 1 << 20, "{target:?}: allocated {largest} bytes for a {}-byte input ({text})", bytes.len());
    }
    // The cap itself would notice a reader that trusted the size: the declared sizes above are
    // gigabytes to terabytes, the cap for these inputs is about a megabyte.
    assert!(allocation_cap(Target::IdxGzip, 100) < 1 << 22);
}

#[test]
fn the_gzip_corpus_decompresses_to_the_plain_one() {
    // The fuzzer's starting points are themselves valid: every gzipped file is its plain twin.
    let c = corpus();
    for (plain, gz) in c.idx.iter().zip(&c.idx_gz) {
        let mut out = Vec::new();
        GzDecoder::new(&gz[..]).read_to_end(&mut out).expect("gunzip");
        assert_eq!(&out, plain);
        assert!(read_idx_from_bytes("corpus", plain).is_ok() && read_idx_from_bytes("corpus", gz).is_ok());
    }
    for file in &c.safetensors {
        assert!(decode_safetensors("corpus", file).is_ok());
    }
}
