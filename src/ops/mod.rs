//! The op front doors: one file per family. Each op checks its operands (shapes, dims, dtype,
//! device) and panics with a message naming the op, the shapes and what was expected; then
//! calls the kernel through `backend`, and records an [`Op`](crate::autograd::Op) so the
//! backward pass can find its gradient formula in `autograd/backward.rs`.
//!
//! | file | ops |
//! |---|---|
//! | `elementwise.rs` | add sub mul div neg exp log sqrt abs powf relu sigmoid tanh gelu affine, comparisons, where, masked_fill |
//! | `reduce.rs` | sum mean max (over dims or all), sum_to_shape, argmax |
//! | `matmul.rs` | matmul (2-D and batched) |
//! | `shape.rs` | reshape transpose permute narrow broadcast_to unsqueeze squeeze contiguous concat stack split to_dtype |
//! | `softmax.rs` | softmax log_softmax |
//! | `loss.rs` | cross_entropy mse_loss binary_cross_entropy(_with_logits) |
//! | `index.rs` | index_select gather embedding |
//! | `layernorm.rs` | layer_norm |
//! | `attention.rs` | scaled_dot_product_attention, multi_head_attention (packed qkv) |
//! | `conv.rs` | conv2d max_pool2d (NCHW) |
//! | `dropout.rs` | dropout |
//! | `inplace.rs` | in-place writes for optimizers: copy_from_, fused SGD / Adam / RMSprop steps |

mod attention;
mod conv;
mod dropout;
mod elementwise;
mod index;
mod inplace;
mod layernorm;
mod loss;
mod matmul;
mod reduce;
mod shape;
mod softmax;

pub use inplace::AdamStep;

pub(crate) use attention::{attention_backward, multi_head_attention_backward};
pub(crate) use conv::{conv2d_input_grad, conv2d_weight_grad, max_pool2d_backward};
pub(crate) use elementwise::gelu_backward;
pub(crate) use index::{index_add_zeros, scatter_add_zeros};
pub(crate) use layernorm::layer_norm_backward;
pub(crate) use loss::cross_entropy_backward;
pub(crate) use softmax::softmax_backward;

use std::sync::Arc;

use crate::tensor::{Layout, Storage};
use crate::Tensor;

/// The elements of `layout` as a dense row-major buffer starting at index 0: the storage
/// itself when it already is exactly that, else a packed copy. Kernels that want plain rows
/// (softmax, cross-entropy, scatter sources) call this.
pub(crate) fn dense(t: &Tensor, layout: &Layout) -> Arc<Storage> {
    let storage = t.storage();
    if layout.is_contiguous() && layout.offset() == 0 && storage.len() == layout.numel() {
        storage
    } else {
        Arc::new(crate::backend::contiguous(&storage, layout))
    }
}
