//! Model weights and training checkpoints, as safetensors files.
//!
//! [`save_module`] writes a model's [`named_parameters`](Module::named_parameters) under their
//! own names (`0.weight`, `0.bias`, ..), which are PyTorch's `state_dict` names for the same
//! architecture, so `model.load_state_dict(safetensors.torch.load_file(path))` takes them as
//! they are. [`load_module`] copies a file's tensors back into an existing model's parameters.
//!
//! [`save_checkpoint`] adds what a training run needs to continue exactly where it stopped:
//! the optimizer's [`state`](Optimizer::state) (as tensors named `optimizer.<entry>`, for
//! example `optimizer.exp_avg.0`), and in the header's metadata the step and epoch counters and
//! the random generator's state. [`load_checkpoint`] restores all of it; a run resumed from a
//! checkpoint then computes bit for bit the losses an uninterrupted run would have
//! (`tests/checkpoint.rs` proves it). The model's tensors keep their plain names in a checkpoint
//! too, so PyTorch can read one after dropping the `optimizer.` entries.
//!
//! Loading checks everything before changing anything: a missing, misshaped or mistyped tensor,
//! an unexpected one, or bad metadata is an [`IoError`] naming the file and the tensor, and the
//! model and optimizer are left as they were.
//!
//! Not saved: the generators inside [`Dropout`](crate::nn::Dropout) layers (a model with
//! dropout resumes with fresh masks, so its losses after a resume differ from an uninterrupted
//! run's), and hyper-parameters other than the learning rate (they come from the code that
//! builds the optimizer).

use std::collections::BTreeMap;
use std::path::Path;

use super::safetensors::{load_safetensors, save_safetensors, TensorFile};
use super::IoError;
use crate::nn::Module;
use crate::optim::Optimizer;
use crate::rng::{Rng, RngState};
use crate::Tensor;

/// The `format` metadata of a training checkpoint, versioned so a future layout can be told apart.
pub const CHECKPOINT_FORMAT: &str = "glassbox.checkpoint.v1";

/// Name prefix of the optimizer's entries in a checkpoint.
pub const OPTIMIZER_PREFIX: &str = "optimizer.";

/// Where a training run stands, besides its parameters and optimizer state.
#[derive(Clone, Debug)]
pub struct TrainState {
    /// Optimizer steps taken so far.
    pub step: u64,
    /// Epochs completed so far.
    pub epoch: u64,
    /// The generator that shuffles batches (and anything else the run draws), as it stands.
    pub rng: Rng,
}

/// Saves `module`'s parameters to `path` (atomically), named as in
/// [`named_parameters`](Module::named_parameters).
pub fn save_module(path: &Path, module: &dyn Module) -> Result<(), IoError> {
    save_safetensors(path, &module.named_parameters(), &BTreeMap::new())
}

/// Copies the tensors of the safetensors file at `path` into `module`'s parameters, by name.
///
/// Every parameter must be in the file with its shape and dtype, and the file must hold no other
/// tensor (apart from `optimizer.` entries, so a training checkpoint loads too); otherwise the
/// error names the tensor and nothing is changed.
pub fn load_module(path: &Path, module: &dyn Module) -> Result<(), IoError> {
    let file = load_safetensors(path)?;
    let params = module.named_parameters();
    let sources = match_parameters(path, &file, &params)?;
    copy_parameters(&params, &sources);
    Ok(())
}

/// Saves a training run (parameters, optimizer state, `state`) to `path`, atomically: a crash
/// mid-save leaves the previous checkpoint intact.
///
/// ```
/// use glassbox::io::{load_checkpoint, save_checkpoint, TrainState};
/// use glassbox::nn::{Activation, Module, Sequential};
/// use glassbox::optim::{Adam, Optimizer};
/// use glassbox::rng::Rng;
/// # let dir = std::env::temp_dir().join(format!("glassbox-ckpt-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("run.safetensors");
/// let model = Sequential::mlp(&[3, 4, 2], Activation::Relu, 0.0, &mut Rng::new(0));
/// let opt = Adam::new(model.parameters(), 1e-3);
/// let state = TrainState { step: 10, epoch: 1, rng: Rng::new(5) };
/// save_checkpoint(&path, &model, &opt, &state).unwrap();
///
/// // Later, perhaps in another process: build the same model and optimizer, then restore.
/// let fresh = Sequential::mlp(&[3, 4, 2], Activation::Relu, 0.0, &mut Rng::new(99));
/// let mut fresh_opt = Adam::new(fresh.parameters(), 1e-3);
/// let resumed = load_checkpoint(&path, &fresh, &mut fresh_opt).unwrap();
/// assert_eq!((resumed.step, resumed.epoch), (10, 1));
/// assert_eq!(fresh.parameters()[0].to_vec(), model.parameters()[0].to_vec());
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub fn save_checkpoint(
    path: &Path,
    module: &dyn Module,
    optimizer: &dyn Optimizer,
    state: &TrainState,
) -> Result<(), IoError> {
    let mut tensors = module.named_parameters();
    if let Some((name, _)) = tensors.iter().find(|(n, _)| n.starts_with(OPTIMIZER_PREFIX)) {
        return Err(IoError::tensor(
            path,
            name,
            format!("model parameter names must not start with '{OPTIMIZER_PREFIX}', which marks optimizer state"),
        ));
    }
    tensors.extend(optimizer.state().into_iter().map(|(k, t)| (format!("{OPTIMIZER_PREFIX}{k}"), t)));
    let rng = state.rng.state();
    let spare = match rng.spare_normal {
        // The bits, so the value comes back exactly.
        Some(z) => format!("{:#018x}", z.to_bits()),
        None => "none".to_string(),
    };
    let metadata = BTreeMap::from([
        ("format".to_string(), CHECKPOINT_FORMAT.to_string()),
        ("step".to_string(), state.step.to_string()),
        ("epoch".to_string(), state.epoch.to_string()),
        ("rng.counter".to_string(), rng.counter.to_string()),
        ("rng.spare_normal".to_string(), spare),
    ]);
    save_safetensors(path, &tensors, &metadata)
}

/// Restores a training run saved by [`save_checkpoint`] into `module` and `optimizer` (built
/// the same way as the saved ones), and returns the step, epoch and generator to continue with.
///
/// Everything is checked before anything is changed; an error names the file and the tensor
/// or metadata entry at fault.
pub fn load_checkpoint(path: &Path, module: &dyn Module, optimizer: &mut dyn Optimizer) -> Result<TrainState, IoError> {
    let file = load_safetensors(path)?;
    let state = read_train_state(path, &file)?;
    let params = module.named_parameters();
    let sources = match_parameters(path, &file, &params)?;
    let optimizer_state: Vec<(String, Tensor)> = file
        .tensors
        .iter()
        .filter_map(|(name, t)| name.strip_prefix(OPTIMIZER_PREFIX).map(|k| (k.to_string(), t.clone())))
        .collect();
    // load_state checks all its entries before writing any; the parameters were checked above
    // and their copy cannot fail, so an error here still leaves everything unchanged.
    optimizer
        .load_state(&optimizer_state)
        .map_err(|e| IoError::tensor(path, format!("{OPTIMIZER_PREFIX}{}", e.key()), e.message()))?;
    copy_parameters(&params, &sources);
    Ok(state)
}

/// The step, epoch and generator recorded in a checkpoint's metadata.
fn read_train_state(path: &Path, file: &TensorFile) -> Result<TrainState, IoError> {
    let meta = |key: &str| {
        file.metadata.get(key).ok_or_else(|| IoError::tensor(path, format!("__metadata__.{key}"), "missing"))
    };
    let format = file.metadata.get("format").map(String::as_str).unwrap_or("(none)");
    if format != CHECKPOINT_FORMAT {
        return Err(IoError::new(
            path,
            format!(
                "not a glassbox training checkpoint: its metadata 'format' is {format:?}, expected {CHECKPOINT_FORMAT:?} \
                 (a file of weights alone loads with load_module)"
            ),
        ));
    }
    let number = |key: &str| -> Result<u64, IoError> {
        let text = meta(key)?;
        text.parse().map_err(|_| {
            IoError::tensor(path, format!("__metadata__.{key}"), format!("{text:?} is not a whole number"))
        })
    };
    let spare_text = meta("rng.spare_normal")?;
    let spare_normal = if spare_text == "none" {
        None
    } else {
        let bits = spare_text.strip_prefix("0x").and_then(|h| u64::from_str_radix(h, 16).ok()).ok_or_else(|| {
            IoError::tensor(
                path,
                "__metadata__.rng.spare_normal",
                format!("{spare_text:?} is neither \"none\" nor the hexadecimal bits of a number"),
            )
        })?;
        Some(f64::from_bits(bits))
    };
    Ok(TrainState {
        step: number("step")?,
        epoch: number("epoch")?,
        rng: Rng::from_state(RngState { counter: number("rng.counter")?, spare_normal }),
    })
}

/// The file's tensor for each parameter, checked for presence, shape and dtype; and no tensor
/// in the file that is neither a parameter nor optimizer state.
fn match_parameters<'f>(
    path: &Path,
    file: &'f TensorFile,
    params: &[(String, Tensor)],
) -> Result<Vec<&'f Tensor>, IoError> {
    let sources = params
        .iter()
        .map(|(name, p)| {
            let Some(t) = file.get(name) else {
                let mut in_file: Vec<&str> = file.tensors.iter().map(|(n, _)| n.as_str()).collect();
                in_file.truncate(8);
                return Err(IoError::tensor(
                    path,
                    name,
                    format!(
                        "the model has this parameter but the file does not (it holds {} tensors, starting {in_file:?})",
                        file.tensors.len()
                    ),
                ));
            };
            if t.shape() != p.shape() {
                return Err(IoError::tensor(
                    path,
                    name,
                    format!("shape {:?} in the file, but the model's parameter has shape {:?}", t.shape(), p.shape()),
                ));
            }
            if t.dtype() != p.dtype() {
                return Err(IoError::tensor(
                    path,
                    name,
                    format!(
                        "dtype {} in the file, but the model's parameter is {} (convert the model or the file)",
                        t.dtype(),
                        p.dtype()
                    ),
                ));
            }
            if !p.is_contiguous() {
                return Err(IoError::tensor(path, name, "the model's parameter is a strided view; it cannot be loaded in place"));
            }
            Ok(t)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let unexpected = file
        .tensors
        .iter()
        .map(|(n, _)| n)
        .find(|n| !n.starts_with(OPTIMIZER_PREFIX) && !params.iter().any(|(p, _)| p == *n));
    if let Some(name) = unexpected {
        return Err(IoError::tensor(
            path,
            name,
            format!("is in the file but the model has no parameter of that name (it has {})", params.len()),
        ));
    }
    Ok(sources)
}

/// Overwrites each parameter with its checked source tensor.
fn copy_parameters(params: &[(String, Tensor)], sources: &[&Tensor]) {
    crate::no_grad(|| {
        for ((_, p), source) in params.iter().zip(sources) {
            p.copy_from_(source);
        }
    });
}
