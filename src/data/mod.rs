//! Loading training data: the IDX file format, MNIST-format image sets, and seeded mini-batches.
//!
//! Nothing here knows about tensors. Loaders hand back plain `Vec<u8>` pixels and labels, and
//! [`ImageSet::gather_normalized`] copies a batch of them into a caller-owned `Vec<f32>`, which
//! the training loop then turns into whatever input it needs. Keeping the boundary at plain
//! vectors means the data code can be tested, and trusted, on its own.
//!
//! Everything that reads a file returns [`DataError`] rather than panicking: data files come
//! from outside the program, so a missing, truncated or corrupt file is an expected failure that
//! should produce a message a person can act on, not a crash.
//!
//! - [`idx`]: the IDX container (gzipped or plain), with bounded, overflow-checked reading.
//! - [`mnist`]: MNIST-format data sets (MNIST, Fashion-MNIST, ...) built on top of IDX.
//! - [`batch`]: shuffled and sequential mini-batch index lists.
//! - [`text`]: character-level corpora: vocabulary, train/validation split, random windows.

use std::fmt;
use std::path::{Path, PathBuf};

pub mod batch;
pub mod idx;
pub mod mnist;
pub mod text;

pub use batch::{sequential_batches, shuffled_batches};
pub use idx::{read_idx, read_idx_from_bytes, IdxArray};
pub use mnist::{ImageSet, Mnist, NUM_CLASSES};
pub use text::{random_windows, CharVocab, TextData};

/// A failure to load a data file, naming the file (or directory) and what was wrong with it.
///
/// Displays as `<path>: <message>`, for example
/// `data/mnist/train-images-idx3-ubyte.gz: truncated: header declares 60000x28x28 = 47040000
/// bytes of data but the decompressed data holds only 1000`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataError {
    path: PathBuf,
    message: String,
}

impl DataError {
    /// An error about `path` (a file, or a directory when the problem is a missing file).
    pub fn new(path: impl Into<PathBuf>, message: impl Into<String>) -> DataError {
        DataError { path: path.into(), message: message.into() }
    }

    /// The file or directory the error is about.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What went wrong, without the path.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for DataError {}
