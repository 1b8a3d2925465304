//! The `Module` trait.

use crate::tensor::{Device, DeviceError};
use crate::Tensor;

/// A layer or model: a differentiable function with parameters.
pub trait Module {
    /// Computes the output for input `x`.
    fn forward(&self, x: &Tensor) -> Tensor;

    /// Every trainable tensor, with PyTorch-style dotted names (`"0.weight"`, `"0.bias"`, ..)
    /// so checkpoints line up with PyTorch's `state_dict`.
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// Every trainable tensor (what an optimizer updates).
    fn parameters(&self) -> Vec<Tensor> {
        self.named_parameters().into_iter().map(|(_, t)| t).collect()
    }

    /// Moves every parameter to `device` in place (see [`Tensor::move_to_`]); build the
    /// optimizer after this, so its state is made on the same device.
    fn move_to(&self, device: Device) -> Result<(), DeviceError> {
        self.parameters().iter().try_for_each(|p| p.move_to_(device))
    }

    /// Switches between training behaviour (dropout active) and evaluation.
    fn set_training(&mut self, _training: bool) {}

    /// A one-line description, for summaries.
    fn describe(&self) -> String;
}
