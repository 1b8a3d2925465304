//! Inverted dropout: in training, zero each element with probability `p` and scale the
//! survivors by `1 / (1 - p)`, so the expected value is unchanged and evaluation needs no
//! rescaling.

use rayon::prelude::*;

use crate::autograd::Op;
use crate::rng::Rng;
use crate::tensor::{DType, Float, HostBuffer, Layout};
use crate::Tensor;

impl Tensor {
    /// Dropout with probability `p` when `training`, the identity otherwise. The mask comes
    /// from `rng`, so a seeded generator gives reproducible masks.
    pub fn dropout(&self, p: f64, training: bool, rng: &mut Rng) -> Tensor {
        assert!(
            (0.0..=1.0).contains(&p),
            "dropout: probability {p} is outside [0, 1] (input shape {:?})",
            self.shape()
        );
        if !training || p == 0.0 {
            return self.clone();
        }
        let keep_scale = if p < 1.0 { 1.0 / (1.0 - p) } else { 0.0 };
        // The mask takes one draw from `rng` as the key of a counter-based stream, then 32 bits
        // per element (two per word), filled by all threads: a mask needs only a comparison,
        // and a 53-bit float per element drawn in turn made dropout a tenth of a GPT step.
        // An element is dropped when its bits fall below p * 2^32.
        let key = rng.next_u64();
        let cut = (p * 4_294_967_296.0) as u64;
        let mask = match self.dtype() {
            DType::F32 => Tensor::from_buffer(keep_mask(self.numel(), key, cut, keep_scale as f32), self.shape()),
            DType::F64 => Tensor::from_buffer(keep_mask(self.numel(), key, cut, keep_scale), self.shape()),
        }
        .detach();
        let mask =
            mask.to(self.device()).unwrap_or_else(|e| panic!("dropout: moving the mask to {}: {e}", self.device()));
        // The product is this op's output, checked (in anomaly mode) as dropout's, not as a `mul`.
        let out = crate::autograd::anomaly::quiet(|| crate::autograd::no_grad(|| self.mul(&mask)));
        let op = Op::Dropout { input: self.clone(), mask };
        // `into_storage` hands over the product's buffer: copying it (as unwrapping a snapshot
        // of the still-live `out` would) cost a fresh, unpooled allocation per dropout.
        Tensor::from_op(out.into_storage(), Layout::contiguous(self.shape()), op)
    }
}

/// `n` mask values: `scale` where the element's 32 bits of stream `key` are at least `cut`,
/// zero elsewhere. Element `2w` uses the low half of word `w`, element `2w + 1` the high
/// half, so the result does not depend on how the work is split.
fn keep_mask<T: Float>(n: usize, key: u64, cut: u64, scale: T) -> HostBuffer<T> {
    const PAIRS_PER_TASK: usize = 1 << 13;
    // Every element is written below, so a recycled buffer needs no zeroing.
    let mut mask = crate::backend::cpu::pool::reuse::<T>(n);
    mask.par_chunks_mut(2 * PAIRS_PER_TASK).enumerate().for_each(|(task, chunk)| {
        for (k, pair) in chunk.chunks_mut(2).enumerate() {
            let word = Rng::stream_word(key, (task * PAIRS_PER_TASK + k) as u64);
            let halves = [word & 0xffff_ffff, word >> 32];
            for (m, bits) in pair.iter_mut().zip(halves) {
                *m = if bits >= cut { scale } else { T::ZERO };
            }
        }
    });
    mask
}
