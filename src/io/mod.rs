//! Saving and loading tensors: the safetensors file format, and training checkpoints built on it.
//!
//! - [`safetensors`]: named tensors (and string metadata) to and from `.safetensors` files, the
//!   format PyTorch's `safetensors.torch.load_file` reads. Our reader treats every file as
//!   hostile: every size in the header is checked against the file's real length before
//!   anything is allocated, and every problem is an [`IoError`], never a panic.
//! - [`checkpoint`]: a model's parameters ([`save_module`], [`load_module`]) and whole training
//!   runs (parameters, optimizer state, step, epoch, random generator: [`save_checkpoint`],
//!   [`load_checkpoint`]), so that a resumed run continues with exactly the losses of an
//!   uninterrupted one.
//!
//! Every write is atomic: the bytes go to a temporary file in the target's directory, which is
//! flushed to disk and then renamed over the target. A crash at any moment leaves either the
//! old file or the new one, never a mix.
//!
//! ```
//! use glassbox::io::{load_safetensors, save_safetensors};
//! use glassbox::Tensor;
//! # let dir = std::env::temp_dir().join(format!("glassbox-io-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("weights.safetensors");
//! let w = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
//! save_safetensors(&path, &[("w".to_string(), w)], &Default::default()).unwrap();
//! let file = load_safetensors(&path).unwrap();
//! assert_eq!(file.get("w").unwrap().shape(), &[2, 3]);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

pub mod checkpoint;
pub mod safetensors;

pub use checkpoint::{load_checkpoint, load_module, save_checkpoint, save_module, TrainState};
pub use safetensors::{decode_safetensors, encode_safetensors, load_safetensors, save_safetensors, TensorFile};

/// A failure to save or load tensors, naming the file, the tensor (when one is to blame) and
/// what was wrong.
///
/// Displays as `<path>: tensor '<name>': <message>` or `<path>: <message>`, for example
/// `run/ckpt.safetensors: tensor '0.weight': shape [10, 784] in the file, but the model's
/// parameter has shape [256, 784]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoError {
    path: PathBuf,
    tensor: Option<String>,
    message: String,
}

impl IoError {
    /// An error about the file (or in-memory buffer name) `path` as a whole.
    pub fn new(path: impl Into<PathBuf>, message: impl Into<String>) -> IoError {
        IoError { path: path.into(), tensor: None, message: message.into() }
    }

    /// An error about one tensor (or metadata key) of `path`.
    pub fn tensor(path: impl Into<PathBuf>, tensor: impl Into<String>, message: impl Into<String>) -> IoError {
        IoError { path: path.into(), tensor: Some(tensor.into()), message: message.into() }
    }

    /// The file the error is about.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tensor the error is about, if the problem is with one tensor.
    pub fn tensor_name(&self) -> Option<&str> {
        self.tensor.as_deref()
    }

    /// What went wrong, without the path and tensor name.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tensor {
            Some(name) => write!(f, "{}: tensor '{}': {}", self.path.display(), name, self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for IoError {}
