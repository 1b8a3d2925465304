//! The IDX reader, the MNIST loader and mini-batching, on the real MNIST files and on small
//! hand-made files that are broken in one specific way each.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use glassbox::data::mnist::{default_dir, PIXEL_MEAN, PIXEL_STD};
use glassbox::data::{
    read_idx, read_idx_from_bytes, sequential_batches, shuffled_batches, DataError, ImageSet, Mnist, NUM_CLASSES,
};
use glassbox::rng::Rng;

// ---------------------------------------------------------------------------------------------
// Helpers

/// A fresh directory under the system temp dir, removed again when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let unique =
            format!("glassbox-data-test-{}-{}-{tag}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let path = std::env::temp_dir().join(unique);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, bytes).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a leftover temp dir is not worth failing a test over.
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The bytes of an IDX file: magic (element type `type_code`), dims, then `data` as given, so
/// callers can make the data disagree with the dims on purpose.
fn idx_bytes(type_code: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 0, type_code, dims.len() as u8];
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

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    GzDecoder::new(bytes).read_to_end(&mut plain).expect("gunzip in memory");
    plain
}

fn real_file(name: &str) -> PathBuf {
    default_dir().join(name)
}

/// The real MNIST, loaded once and shared by the tests that need it.
fn real_mnist() -> &'static Mnist {
    static MNIST: OnceLock<Mnist> = OnceLock::new();
    MNIST.get_or_init(|| {
        let start = std::time::Instant::now();
        let mnist = Mnist::load(&default_dir()).unwrap_or_else(|e| panic!("{e}"));
        eprintln!("loaded MNIST in {:.2?}", start.elapsed());
        mnist
    })
}

/// Asserts that reading `path` fails with an error about `path` whose text contains each of
/// `expected`.
fn assert_read_fails(path: &Path, expected: &[&str]) -> DataError {
    let err = read_idx(path).expect_err("reading a broken file must fail");
    assert_error(&err, path, expected);
    err
}

fn assert_error(err: &DataError, path: &Path, expected: &[&str]) {
    let text = err.to_string();
    assert_eq!(err.path(), path, "{text}");
    let name = path.file_name().and_then(|n| n.to_str()).expect("utf-8 name");
    assert!(text.contains(name), "error should name {name}: {text}");
    for needle in expected {
        assert!(text.contains(needle), "error should contain {needle:?}: {text}");
    }
}

fn label_histogram(set: &ImageSet) -> [usize; NUM_CLASSES] {
    let mut counts = [0; NUM_CLASSES];
    for &label in &set.labels {
        counts[usize::from(label)] += 1;
    }
    counts
}

// ---------------------------------------------------------------------------------------------
// The real MNIST files

#[test]
fn real_mnist_has_the_published_shapes_and_labels() {
    let mnist = real_mnist();
    let (train, test) = (&mnist.train, &mnist.test);

    assert_eq!((train.len(), train.rows, train.cols), (60_000, 28, 28));
    assert_eq!(train.images.len(), 60_000 * 784);
    assert_eq!(train.labels[..5], [5, 0, 4, 1, 9]);
    assert_eq!(label_histogram(train), [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]);

    assert_eq!((test.len(), test.rows, test.cols), (10_000, 28, 28));
    assert_eq!(test.images.len(), 10_000 * 784);
    assert_eq!(test.labels[..5], [7, 2, 1, 0, 4]);
    assert_eq!(label_histogram(test), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
}

#[test]
fn standardized_training_pixels_have_zero_mean_and_unit_variance() {
    // This is what the constants 0.1307 and 0.3081 are for; it also exercises buffer reuse.
    let train = &real_mnist().train;
    let (mut sum, mut sum_sq, mut count) = (0f64, 0f64, 0usize);
    let mut batch = glassbox::tensor::HostBuffer::new();
    for indices in sequential_batches(train.len(), 5_000) {
        train.gather_normalized(&indices, &mut batch);
        assert_eq!(batch.len(), indices.len() * 784);
        sum += batch.iter().map(|&x| f64::from(x)).sum::<f64>();
        sum_sq += batch.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>();
        count += batch.len();
    }
    let mean = sum / count as f64;
    let std = (sum_sq / count as f64 - mean * mean).sqrt();
    assert!(mean.abs() < 2e-3, "mean {mean}");
    assert!((std - 1.0).abs() < 2e-3, "std {std}");

    let mut first = glassbox::tensor::HostBuffer::new();
    train.gather_normalized(&[0], &mut first);
    let background = (0.0 - PIXEL_MEAN) / PIXEL_STD;
    assert_eq!(first[0], background, "the top-left pixel of a digit is background");
}

#[test]
fn plain_files_load_exactly_like_gzipped_ones() {
    let dir = TempDir::new("plain");
    let gz_path = real_file("t10k-images-idx3-ubyte.gz");
    let gz_bytes = fs::read(&gz_path).expect("read real file");
    let plain_path = dir.write("t10k-images-idx3-ubyte", &gunzip(&gz_bytes));

    let from_gz = read_idx(&gz_path).unwrap_or_else(|e| panic!("{e}"));
    let from_plain = read_idx(&plain_path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(from_gz.dims, vec![10_000, 28, 28]);
    assert!(from_gz == from_plain, "plain and gzipped decode differently");
    let from_memory = read_idx_from_bytes("in memory", &gz_bytes).unwrap_or_else(|e| panic!("{e}"));
    assert!(from_memory == from_gz);
}

#[test]
fn a_directory_mixing_plain_and_gzipped_files_loads_like_the_original() {
    let dir = TempDir::new("mixed");
    let read = |name: &str| fs::read(real_file(name)).expect("read real file");
    // Gzipped under its usual name.
    dir.write("train-images-idx3-ubyte.gz", &read("train-images-idx3-ubyte.gz"));
    // Decompressed, under the plain name.
    dir.write("train-labels-idx1-ubyte", &gunzip(&read("train-labels-idx1-ubyte.gz")));
    dir.write("t10k-images-idx3-ubyte", &gunzip(&read("t10k-images-idx3-ubyte.gz")));
    // Gzipped but named like a plain file: the content, not the name, decides.
    dir.write("t10k-labels-idx1-ubyte", &read("t10k-labels-idx1-ubyte.gz"));

    let mixed = Mnist::load(&dir.0).unwrap_or_else(|e| panic!("{e}"));
    assert!(&mixed == real_mnist(), "mixed directory loads differently");
}

// ---------------------------------------------------------------------------------------------
// Broken IDX files

#[test]
fn a_missing_file_is_reported() {
    let dir = TempDir::new("nofile");
    assert_read_fails(&dir.0.join("absent-idx1-ubyte"), &["cannot open"]);
}

#[test]
fn truncated_headers_are_reported() {
    let dir = TempDir::new("header");
    let empty = dir.write("empty-idx1-ubyte", &[]);
    assert_read_fails(&empty, &["truncated header", "4-byte magic", "holds only 0 bytes"]);

    let short_magic = dir.write("short-idx1-ubyte", &[0, 0]);
    assert_read_fails(&short_magic, &["truncated header", "holds only 2 bytes"]);

    let short_dims = dir.write("dims-idx3-ubyte", &[0, 0, 8, 3, 0, 0, 0, 5, 0, 0]);
    assert_read_fails(
        &short_dims,
        &["truncated header", "declares 3 dimensions, which take 16 header bytes", "holds only 10"],
    );

    let gz_short = dir.write("dims-idx3-ubyte.gz", &gzip(&[0, 0, 8, 3, 0, 0, 0, 5]));
    assert_read_fails(&gz_short, &["truncated header", "decompressed data holds only 8"]);
}

#[test]
fn truncated_data_is_reported_for_plain_and_gzipped_files() {
    let dir = TempDir::new("truncated");
    let plain = dir.write("small-idx3-ubyte", &idx_bytes(8, &[2, 2, 2], &[1, 2, 3]));
    assert_read_fails(&plain, &["truncated: header declares 2x2x2 = 8 bytes of data but the file holds only 3"]);

    let pixels = vec![7u8; 1000];
    let gz = dir.write("train-images-idx3-ubyte.gz", &gzip(&idx_bytes(8, &[60_000, 28, 28], &pixels)));
    assert_read_fails(
        &gz,
        &["truncated: header declares 60000x28x28 = 47040000 bytes of data but the decompressed \
           data holds only 1000"],
    );

    let one_dim = dir.write("labels-idx1-ubyte", &idx_bytes(8, &[10], &[1; 4]));
    assert_read_fails(&one_dim, &["truncated: header declares 10 bytes of data but the file holds only 4"]);
}

#[test]
fn a_gzip_file_cut_short_is_an_error() {
    let dir = TempDir::new("cutgz");
    let real = fs::read(real_file("t10k-labels-idx1-ubyte.gz")).expect("read real file");

    let half = dir.write("half-idx1-ubyte.gz", &real[..real.len() / 2]);
    let err = assert_read_fails(&half, &[]);
    let text = err.to_string();
    assert!(text.contains("corrupt gzip stream") || text.contains("truncated"), "{text}");

    // Everything but the 8-byte trailer (CRC and length): the data is complete, the file is not.
    let no_trailer = dir.write("notrailer-idx1-ubyte.gz", &real[..real.len() - 8]);
    assert_read_fails(&no_trailer, &["corrupt gzip stream"]);
}

#[test]
fn corrupt_gzip_streams_are_reported() {
    let dir = TempDir::new("corrupt");
    for name in ["t10k-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"] {
        let mut bytes = fs::read(real_file(name)).expect("read real file");
        let middle = bytes.len() / 2;
        for byte in &mut bytes[middle..middle + 16] {
            *byte ^= 0xA5;
        }
        let path = dir.write(name, &bytes);
        assert_read_fails(&path, &["corrupt gzip stream"]);
    }

    // A valid gzip stream followed by garbage is not a clean file either.
    let mut bytes = gzip(&idx_bytes(8, &[3], &[1, 2, 3]));
    bytes.extend_from_slice(b"garbage!");
    let path = dir.write("garbage-idx1-ubyte.gz", &bytes);
    assert_read_fails(&path, &["corrupt gzip stream"]);
}

#[test]
fn wrong_magic_and_unsupported_types_are_reported() {
    let dir = TempDir::new("magic");
    let png = dir.write("picture.png", b"\x89PNG\r\n\x1a\n rest of a png");
    assert_read_fails(&png, &["not an IDX file", "starts with bytes 89 50 4e 47", "two zero bytes"]);

    let floats = dir.write("floats-idx1-ubyte", &idx_bytes(0x0D, &[1], &[0, 0, 0, 0]));
    assert_read_fails(&floats, &["unsupported element type 0x0d (32-bit float)", "only 0x08 (unsigned byte)"]);

    let unknown = dir.write("unknown-idx1-ubyte", &idx_bytes(0x42, &[1], &[0]));
    assert_read_fails(&unknown, &["unknown element type 0x42"]);

    let scalar = dir.write("scalar-idx0-ubyte", &idx_bytes(8, &[], &[5]));
    assert_read_fails(&scalar, &["header declares 0 dimensions"]);
}

#[test]
fn huge_declared_sizes_neither_overflow_nor_allocate() {
    let dir = TempDir::new("huge");
    let unaddressable = idx_bytes(8, &[4_000_000_000, 4_000_000_000], &[0; 8]);
    for (name, bytes) in [("huge-idx2-ubyte", unaddressable.clone()), ("huge-idx2-ubyte.gz", gzip(&unaddressable))] {
        let path = dir.write(name, &bytes);
        assert_read_fails(
            &path,
            &["4000000000x4000000000 = 16000000000000000000 bytes", "more than this machine can address"],
        );
    }

    let overflowing = idx_bytes(8, &[4_000_000_000; 3], &[0; 8]);
    let path = dir.write("overflow-idx3-ubyte", &overflowing);
    assert_read_fails(&path, &["4000000000x4000000000x4000000000 elements, more than 2^64"]);

    // Addressable but absurd: a terabyte declared in a few dozen gzipped bytes. Were the reader
    // to reserve the declared size this would abort the test process.
    let terabyte = gzip(&idx_bytes(8, &[1_000_000, 1_000_000], &[0; 10]));
    let path = dir.write("terabyte-idx2-ubyte.gz", &terabyte);
    assert_read_fails(
        &path,
        &["1000000x1000000 = 1000000000000 bytes of data but the decompressed data holds only 10"],
    );
    let path = dir.write("terabyte-idx2-ubyte", &idx_bytes(8, &[1_000_000, 1_000_000], &[0; 10]));
    assert_read_fails(&path, &["the file holds only 10"]);
}

#[test]
fn trailing_bytes_are_reported() {
    let dir = TempDir::new("trailing");
    let bytes = idx_bytes(8, &[4], &[1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let plain = dir.write("extra-idx1-ubyte", &bytes);
    assert_read_fails(&plain, &["trailing bytes: header declares 4 bytes of data but the file holds 9, 5 more"]);
    let gz = dir.write("extra-idx1-ubyte.gz", &gzip(&bytes));
    assert_read_fails(
        &gz,
        &["trailing bytes: header declares 4 bytes of data but the decompressed data holds 9, 5 more"],
    );
}

#[test]
fn errors_from_memory_use_the_given_name() {
    let err = read_idx_from_bytes("my-buffer", &[0, 0, 8]).expect_err("too short");
    assert_eq!(
        err.to_string(),
        "my-buffer: truncated header: an IDX file starts with a 4-byte magic number but the file \
         holds only 3 bytes"
    );
    assert_eq!(err.path(), Path::new("my-buffer"));
}

// ---------------------------------------------------------------------------------------------
// MNIST-format directories

/// Writes a four-file MNIST-format directory of 2x2 images: `train` and `test` give each set's
/// (image count, labels). Returns the directory.
fn write_tiny_mnist(tag: &str, train: (u32, &[u8]), test: (u32, &[u8])) -> TempDir {
    let dir = TempDir::new(tag);
    for (prefix, (count, labels)) in [("train", train), ("t10k", test)] {
        let pixels: Vec<u8> = (0..count * 4).map(|i| (i * 37 % 256) as u8).collect();
        dir.write(&format!("{prefix}-images-idx3-ubyte"), &idx_bytes(8, &[count, 2, 2], &pixels));
        dir.write(&format!("{prefix}-labels-idx1-ubyte.gz"), &gzip(&idx_bytes(8, &[labels.len() as u32], labels)));
    }
    dir
}

#[test]
fn a_tiny_valid_directory_loads() {
    let dir = write_tiny_mnist("tiny", (3, &[0, 9, 4]), (1, &[2]));
    let mnist = Mnist::load(&dir.0).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(mnist.train.labels, [0, 9, 4]);
    assert_eq!((mnist.train.rows, mnist.train.cols), (2, 2));
    assert_eq!(mnist.train.image(1), &[148, 185, 222, 3]);
    assert_eq!(mnist.test.len(), 1);
    let mut labels = Vec::new();
    mnist.train.gather_labels(&[2, 0], &mut labels);
    assert_eq!(labels, [4, 0]);
}

#[test]
fn a_missing_file_in_a_directory_names_both_accepted_names() {
    let dir = write_tiny_mnist("missing", (1, &[0]), (1, &[0]));
    fs::remove_file(dir.0.join("t10k-labels-idx1-ubyte.gz")).expect("remove");
    let err = Mnist::load(&dir.0).expect_err("a file is missing");
    assert_eq!(err.path(), dir.0);
    let text = err.to_string();
    assert!(text.contains(&dir.0.display().to_string()), "{text}");
    assert!(
        text.contains(
            "missing t10k-labels-idx1-ubyte: looked for t10k-labels-idx1-ubyte and \
                       t10k-labels-idx1-ubyte.gz"
        ),
        "{text}"
    );

    let err = Mnist::load(&dir.0.join("no-such-dir")).expect_err("no directory");
    assert!(err.to_string().contains("not a directory"), "{err}");
}

#[test]
fn label_and_image_counts_must_match() {
    let dir = write_tiny_mnist("count", (3, &[1, 2]), (1, &[0]));
    let err = Mnist::load(&dir.0).expect_err("counts differ");
    assert_error(
        &err,
        &dir.0.join("train-labels-idx1-ubyte.gz"),
        &["holds 2 labels but", "train-images-idx3-ubyte holds 3 images"],
    );
}

#[test]
fn labels_must_be_below_ten() {
    let dir = write_tiny_mnist("label", (1, &[0]), (3, &[1, 10, 3]));
    let err = Mnist::load(&dir.0).expect_err("label 10");
    assert_error(&err, &dir.0.join("t10k-labels-idx1-ubyte.gz"), &["label 10 at index 1 is out of range", "0 to 9"]);
}

#[test]
fn files_with_the_wrong_shape_are_reported() {
    let dir = write_tiny_mnist("swapped", (2, &[0, 1]), (1, &[0]));
    // Swap the training files' contents (each stays under the other's name).
    let images = dir.0.join("train-images-idx3-ubyte");
    let labels = dir.0.join("train-labels-idx1-ubyte.gz");
    let image_bytes = fs::read(&images).expect("read");
    let label_bytes = fs::read(&labels).expect("read");
    fs::write(&images, label_bytes).expect("write");
    fs::write(&labels, image_bytes).expect("write");
    let err = Mnist::load(&dir.0).expect_err("swapped");
    assert_error(
        &err,
        &images,
        &[
            "expected an image file",
            "magic 2051 = 0x00000803, 3 dimensions",
            "magic 2049 = 0x00000801 (1 dimension)",
            "swapped",
        ],
    );

    fs::write(&labels, fs::read(&images).expect("read")).expect("write");
    let two_dims = dir.write("train-images-idx3-ubyte", &idx_bytes(8, &[2, 4], &[0; 8]));
    let err = Mnist::load(&dir.0).expect_err("2-d images");
    assert_error(&err, &two_dims, &["expected an image file", "(2 dimensions)"]);

    let no_pixels = dir.write("train-images-idx3-ubyte", &idx_bytes(8, &[2, 0, 5], &[]));
    let err = Mnist::load(&dir.0).expect_err("0x5 images");
    assert_error(&err, &no_pixels, &["images of 0x5 pixels"]);
}

// ---------------------------------------------------------------------------------------------
// Batches

#[test]
fn shuffled_batches_are_reproducible_and_cover_every_index_once() {
    let a = shuffled_batches(103, 10, &mut Rng::new(42));
    let b = shuffled_batches(103, 10, &mut Rng::new(42));
    let c = shuffled_batches(103, 10, &mut Rng::new(43));
    assert_eq!(a, b);
    assert_ne!(a, c);

    let sizes: Vec<usize> = a.iter().map(Vec::len).collect();
    assert_eq!(sizes, [10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 3]);
    let mut all: Vec<usize> = a.concat();
    assert_ne!(all, (0..103).collect::<Vec<_>>(), "the order should be shuffled");
    all.sort_unstable();
    assert_eq!(all, (0..103).collect::<Vec<_>>());

    // Successive epochs from one generator differ.
    let mut rng = Rng::new(7);
    let epoch1 = shuffled_batches(50, 50, &mut rng);
    let epoch2 = shuffled_batches(50, 50, &mut rng);
    assert_ne!(epoch1, epoch2);
}

#[test]
fn batch_sizes_at_the_edges() {
    assert_eq!(shuffled_batches(30, 10, &mut Rng::new(1)).len(), 3);
    assert_eq!(shuffled_batches(5, 100, &mut Rng::new(1))[0].len(), 5);
    assert_eq!(sequential_batches(7, 3), vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
    assert_eq!(sequential_batches(3, usize::MAX), vec![vec![0, 1, 2]]);
}

#[test]
#[should_panic(expected = "shuffled_batches: batch_size must be at least 1, got 0")]
fn a_zero_batch_size_panics() {
    shuffled_batches(10, 0, &mut Rng::new(0));
}
