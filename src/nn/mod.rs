//! Layers. A layer is a [`Module`]: a `forward` from tensors to tensors built from public
//! tensor ops (so autograd handles its backward), plus the list of its parameters.
//!
//! | file | what |
//! |---|---|
//! | `module.rs` | the [`Module`] trait |
//! | `linear.rs` | [`Linear`]: `y = x W^T + b` |
//! | `activation.rs` | [`Relu`], [`Sigmoid`], [`Tanh`], [`Gelu`] as modules |
//! | `conv.rs` | [`Conv2d`], [`MaxPool2d`], [`Flatten`] |
//! | `lstm.rs` | [`Lstm`]: batch-first, PyTorch parameter names and layout |
//! | `dropout.rs` | [`Dropout`] with a seeded mask stream |
//! | `sequential.rs` | [`Sequential`] container and the [`Sequential::mlp`] builder |
//! | `embedding.rs` | [`Embedding`] lookup tables |
//! | `layernorm.rs` | [`LayerNorm`] |
//! | `gpt.rs` | causal self-attention, the transformer block, [`Gpt`] |
//! | `init.rs` | Kaiming, Xavier and LeCun (std 1/sqrt(fan_in)) initializers |

mod activation;
mod conv;
mod dropout;
mod embedding;
pub mod gpt;
pub mod init;
mod layernorm;
mod linear;
mod lstm;
mod module;
mod sequential;

pub use activation::{Activation, Gelu, Relu, Sigmoid, Tanh};
pub use conv::{Conv2d, Flatten, MaxPool2d};
pub use dropout::Dropout;
pub use embedding::Embedding;
pub use gpt::{Gpt, GptConfig};
pub use init::Init;
pub use layernorm::LayerNorm;
pub use linear::Linear;
pub use lstm::{Lstm, LstmOutput};
pub use module::Module;
pub use sequential::Sequential;
