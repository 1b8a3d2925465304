//! Lookup tables: token and position embeddings.

use super::Init;
use crate::rng::Rng;
use crate::{DType, Tensor};

/// A `[count, dim]` table of trainable vectors; `forward` picks rows by index. Its gradient
/// scatters back into the picked rows (summing rows picked more than once).
pub struct Embedding {
    /// `[count, dim]`
    pub weight: Tensor,
}

impl Embedding {
    /// A table drawn from `init` (PyTorch draws N(0, 1); GPT-2 uses N(0, 0.02)).
    pub fn new(count: usize, dim: usize, init: Init, rng: &mut Rng) -> Embedding {
        Embedding { weight: init.tensor(&[count, dim], dim, count, DType::F32, rng).requires_grad_() }
    }

    /// The rows for `ids`, laid out as `ids_shape + [dim]`.
    pub fn forward(&self, ids: &[usize], ids_shape: &[usize]) -> Tensor {
        self.weight.embedding(ids, ids_shape)
    }
}
