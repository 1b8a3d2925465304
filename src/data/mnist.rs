//! MNIST-format image classification sets: MNIST itself, Fashion-MNIST, or anything else
//! shipped as a pair of IDX files (images `count x rows x cols`, labels `count`, all `u8`).
//!
//! Loading checks everything a training run would otherwise trip over much later: the image and
//! label files have the right shapes, describe the same number of examples, and every label is a
//! valid class number.

use std::path::{Path, PathBuf};

use super::idx::{read_idx, IdxArray, IDX_TYPE_U8};
use super::DataError;
use crate::tensor::HostBuffer;

/// The number of classes in an MNIST-format set (digits 0-9, or Fashion-MNIST's ten garments);
/// every label must be below it.
pub const NUM_CLASSES: usize = 10;

/// Mean of MNIST's training pixels after scaling to `[0, 1]`.
///
/// 0.1307 and [`PIXEL_STD`] are the figures the PyTorch examples and most MNIST code use, so
/// inputs standardized here match published recipes and learning rates. They are measured on
/// MNIST; for Fashion-MNIST (mean about 0.286, std about 0.353) they still give a sensible,
/// roughly centred input scale.
pub const PIXEL_MEAN: f32 = 0.1307;

/// Standard deviation of MNIST's training pixels after scaling to `[0, 1]`; see [`PIXEL_MEAN`].
pub const PIXEL_STD: f32 = 0.3081;

/// The magic number of an MNIST-format image file: unsigned bytes (0x08), 3 dimensions.
pub const IMAGES_MAGIC: u32 = 0x0000_0803;

/// The magic number of an MNIST-format label file: unsigned bytes (0x08), 1 dimension.
pub const LABELS_MAGIC: u32 = 0x0000_0801;

const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

/// A set of labelled greyscale images, stored as the raw bytes of the files.
///
/// Image `i` occupies `images[i * rows * cols..(i + 1) * rows * cols]`, row by row, with 0 for
/// background and 255 for full ink; `labels[i]` is its class, below [`NUM_CLASSES`].
#[derive(Clone, PartialEq, Eq)]
pub struct ImageSet {
    /// All pixels, image after image, each image row-major.
    pub images: Vec<u8>,
    /// One class number per image.
    pub labels: Vec<u8>,
    /// Pixel rows per image.
    pub rows: usize,
    /// Pixel columns per image.
    pub cols: usize,
}

// A derived Debug would print every pixel: 47 million numbers for the MNIST training set.
impl std::fmt::Debug for ImageSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageSet")
            .field("len", &self.len())
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .finish_non_exhaustive()
    }
}

impl ImageSet {
    /// Loads an image file and its label file (each gzipped or plain) and checks that they
    /// belong together.
    ///
    /// Errors name the offending file: wrong magic number or shape, image and label counts that
    /// differ, images with no pixels, or a label that is not below [`NUM_CLASSES`].
    pub fn load(images_path: &Path, labels_path: &Path) -> Result<ImageSet, DataError> {
        let images = read_idx(images_path)?;
        check_magic(images_path, &images, IMAGES_MAGIC, "an image file: count x rows x cols")?;

        let (count, rows, cols) = (images.dims[0], images.dims[1], images.dims[2]);
        if rows == 0 || cols == 0 {
            return Err(DataError::new(
                images_path,
                format!(
                    "images of {rows}x{cols} pixels: an image needs at least one row and one \
                     column"
                ),
            ));
        }
        // The images are checked completely before the labels are read, so the first error
        // reported is the first problem a person reading the files in order would meet.
        let labels = read_idx(labels_path)?;
        check_magic(labels_path, &labels, LABELS_MAGIC, "a label file: one label per image")?;
        if labels.dims[0] != count {
            return Err(DataError::new(
                labels_path,
                format!(
                    "holds {} labels but {} holds {count} images; the two files must describe \
                     the same examples",
                    labels.dims[0],
                    images_path.display()
                ),
            ));
        }
        if let Some((index, &label)) =
            labels.data.iter().enumerate().find(|&(_, &label)| usize::from(label) >= NUM_CLASSES)
        {
            return Err(DataError::new(
                labels_path,
                format!(
                    "label {label} at index {index} is out of range: labels must be class \
                     numbers 0 to {}",
                    NUM_CLASSES - 1
                ),
            ));
        }
        Ok(ImageSet { images: images.data, labels: labels.data, rows, cols })
    }

    /// The number of images (and labels).
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the set holds no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels in one image, `rows * cols` (784 for MNIST).
    pub fn pixels_per_image(&self) -> usize {
        self.rows * self.cols
    }

    /// The raw pixels of image `index`.
    ///
    /// Panics if `index` is not below [`len`](ImageSet::len).
    pub fn image(&self, index: usize) -> &[u8] {
        self.image_checked("image", index)
    }

    /// Replaces the contents of `out` with the images at `indices`, one after another, as
    /// standardized floats: each pixel `p` becomes `(p / 255 - PIXEL_MEAN) / PIXEL_STD`.
    ///
    /// `out` ends up `indices.len() * pixels_per_image()` long. A buffer of that length is
    /// overwritten in place; any other (an empty one, as a loop that hands each batch's
    /// buffer to [`Tensor::from_buffer`](crate::Tensor::from_buffer) has) is swapped for a
    /// recycled one from the [buffer pool](crate::backend::cpu::pool), where the previous
    /// batch's tensor parked its buffer when it was dropped.
    ///
    /// Panics if an index is not below [`len`](ImageSet::len): indices come from the program,
    /// not from a file, so a bad one is a bug.
    pub fn gather_normalized(&self, indices: &[usize], out: &mut HostBuffer<f32>) {
        use rayon::prelude::*;
        // A fresh 400 KB vector per batch is fresh pages from the OS, each faulting in on its
        // first write: that doubled an MNIST epoch (`step_bench`'s mnist_epoch) next to the
        // steps alone.
        let size = self.pixels_per_image();
        let len = indices.len() * size;
        if out.len() != len {
            *out = crate::backend::cpu::pool::reuse::<f32>(len);
        }
        // Every value is overwritten below, so a recycled buffer's old contents never show.
        // The arithmetic per pixel vectorizes (16 pixels per instruction); a 256-entry lookup
        // table, which would seem cheaper, is a scalar load per pixel and ran 10x slower.
        let normalize = |(dst, &index): (&mut [f32], &usize)| {
            let image = self.image_checked("gather_normalized", index);
            for (d, &p) in dst.iter_mut().zip(image) {
                *d = (f32::from(p) / 255.0 - PIXEL_MEAN) / PIXEL_STD;
            }
        };
        // A batch of MNIST (128 x 784) is worth splitting: run on one thread, the gather was 5%
        // of an epoch, and the other core, idle meanwhile, fell asleep and had to be woken
        // for the next op.
        if len >= crate::backend::cpu::strided::PARALLEL_MIN_ELEMENTS && size > 0 {
            out.par_chunks_mut(size).zip(indices.par_iter()).for_each(normalize);
        } else if size > 0 {
            out.chunks_mut(size).zip(indices).for_each(normalize);
        }
    }

    /// Replaces the contents of `out` with the labels at `indices`, as class numbers.
    ///
    /// Panics if an index is not below [`len`](ImageSet::len).
    pub fn gather_labels(&self, indices: &[usize], out: &mut Vec<usize>) {
        out.clear();
        out.reserve(indices.len());
        for &index in indices {
            self.check_index("gather_labels", index);
            out.push(usize::from(self.labels[index]));
        }
    }

    fn image_checked(&self, caller: &str, index: usize) -> &[u8] {
        self.check_index(caller, index);
        let size = self.pixels_per_image();
        &self.images[index * size..(index + 1) * size]
    }

    fn check_index(&self, caller: &str, index: usize) {
        assert!(
            index < self.len(),
            "ImageSet::{caller}: index {index} is out of range for a set of {} images",
            self.len()
        );
    }
}

/// The MNIST training and test sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mnist {
    /// The 60,000 training images (for MNIST and Fashion-MNIST).
    pub train: ImageSet,
    /// The 10,000 test images.
    pub test: ImageSet,
}

impl Mnist {
    /// Loads the four standard files from `dir`.
    ///
    /// The files are `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
    /// `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`, each either under that name or
    /// with `.gz` appended (gzipped or not: the content decides, not the name). When both
    /// exist the plain one is used, since it loads without decompressing. All four are located
    /// before any is read, so a missing file is reported at once.
    pub fn load(dir: &Path) -> Result<Mnist, DataError> {
        if !dir.is_dir() {
            return Err(DataError::new(
                dir,
                format!(
                    "not a directory (or not readable); expected it to hold {TRAIN_IMAGES}, \
                     {TRAIN_LABELS}, {TEST_IMAGES} and {TEST_LABELS}, each plain or .gz"
                ),
            ));
        }
        let train_images = locate(dir, TRAIN_IMAGES)?;
        let train_labels = locate(dir, TRAIN_LABELS)?;
        let test_images = locate(dir, TEST_IMAGES)?;
        let test_labels = locate(dir, TEST_LABELS)?;
        Ok(Mnist {
            train: ImageSet::load(&train_images, &train_labels)?,
            test: ImageSet::load(&test_images, &test_labels)?,
        })
    }
}

/// Where the MNIST files live in this repository: `<crate root>/data/mnist`.
pub fn default_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join("mnist")
}

/// Finds `dir/name` or `dir/name.gz`, preferring the plain file.
fn locate(dir: &Path, name: &str) -> Result<PathBuf, DataError> {
    let plain = dir.join(name);
    if plain.is_file() {
        return Ok(plain);
    }
    let gzipped = dir.join(format!("{name}.gz"));
    if gzipped.is_file() {
        return Ok(gzipped);
    }
    Err(DataError::new(dir, format!("missing {name}: looked for {name} and {name}.gz in this directory")))
}

/// Checks the array's magic number, reconstructed from what `read_idx` accepted: it only accepts
/// unsigned bytes, so the magic number is fixed by the number of dimensions.
fn check_magic(path: &Path, array: &IdxArray, expected: u32, what: &str) -> Result<(), DataError> {
    let ndims = array.dims.len();
    let magic = (u32::from(IDX_TYPE_U8) << 8) | (ndims as u32);
    if magic == expected {
        return Ok(());
    }
    let swapped_hint =
        if magic == IMAGES_MAGIC || magic == LABELS_MAGIC { "; are the image and label files swapped?" } else { "" };
    Err(DataError::new(
        path,
        format!(
            "expected {what} (magic {expected} = 0x{expected:08x}, {} dimension{}) but the header \
             has magic {magic} = 0x{magic:08x} ({ndims} dimension{}){swapped_hint}",
            expected & 0xff,
            if expected & 0xff == 1 { "" } else { "s" },
            if ndims == 1 { "" } else { "s" },
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_set() -> ImageSet {
        ImageSet { images: vec![0, 255, 51, 102, 10, 20, 30, 40], labels: vec![3, 7], rows: 2, cols: 2 }
    }

    #[test]
    fn gather_normalized_standardizes_and_reuses_the_buffer() {
        let set = tiny_set();
        let mut out = HostBuffer::filled(20, 99.0);
        set.gather_normalized(&[1, 0], &mut out);
        assert_eq!(out.len(), 8);
        let expect = |p: u8| (p as f32 / 255.0 - PIXEL_MEAN) / PIXEL_STD;
        assert_eq!(out[0], expect(10));
        assert_eq!(out[4], expect(0));
        assert_eq!(out[5], expect(255));
        assert!((out[4] + 0.4242).abs() < 1e-4, "black is about -0.4242: {}", out[4]);
        assert!((out[5] - 2.8215).abs() < 1e-4, "white is about 2.8215: {}", out[5]);
    }

    #[test]
    fn a_batch_big_enough_to_split_over_threads_gathers_the_same_values() {
        // 64 images of 28 x 28 (50,176 values) take the parallel path; compare it with the
        // formula image by image, into a buffer that held a bigger batch before.
        let mut images = Vec::new();
        for i in 0..100usize {
            images.extend((0..784).map(|p| ((i * 31 + p * 7) % 256) as u8));
        }
        let set = ImageSet { images, labels: vec![0; 100], rows: 28, cols: 28 };
        let indices: Vec<usize> = (0..64).map(|i| (i * 37) % 100).collect();
        let mut out = HostBuffer::filled(100 * 784, f32::NAN);
        set.gather_normalized(&indices, &mut out);
        assert_eq!(out.len(), 64 * 784);
        for (row, &index) in out.chunks(784).zip(&indices) {
            for (&got, &p) in row.iter().zip(set.image(index)) {
                assert_eq!(got, (p as f32 / 255.0 - PIXEL_MEAN) / PIXEL_STD, "image {index}");
            }
        }
    }

    #[test]
    fn gather_labels_and_accessors() {
        let set = tiny_set();
        let mut labels = vec![5; 9];
        set.gather_labels(&[1, 1, 0], &mut labels);
        assert_eq!(labels, vec![7, 7, 3]);
        assert_eq!(set.len(), 2);
        assert!(!set.is_empty());
        assert_eq!(set.pixels_per_image(), 4);
        assert_eq!(set.image(1), &[10, 20, 30, 40]);
        assert_eq!(format!("{set:?}"), "ImageSet { len: 2, rows: 2, cols: 2, .. }");
    }

    #[test]
    #[should_panic(expected = "ImageSet::gather_normalized: index 2 is out of range for a set of 2 images")]
    fn gather_normalized_rejects_a_bad_index() {
        tiny_set().gather_normalized(&[0, 2], &mut HostBuffer::new());
    }
}
