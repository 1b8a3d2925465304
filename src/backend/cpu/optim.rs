//! Fused, in-place optimizer updates: one pass over each parameter, its gradient and its
//! state, instead of a chain of tensor ops that would each allocate a temporary.
//!
//! Each update is one body, run per chunk through [`isa::run_on`] so it is also built for
//! AVX-512 and AVX2 + FMA (Adam's square root and division per element are 4 lanes wide in the
//! SSE2 baseline, 16 with AVX-512). The ladder (`backend::cpu::fused_ladder`) times the
//! baseline build (`v1_portable`) against the dispatched one (`v2_simd`).
//!
//! Optimizer state is kept out of the subnormal floats (below `MIN_POSITIVE`, about 1.2e-38
//! in f32): a value that small is flushed to zero. On x86 an arithmetic instruction that
//! reads or writes a subnormal takes a microcode assist, some hundred cycles. The states
//! decay geometrically where gradients are zero (a dead ReLU unit's weights): Adam's first
//! moment `m = 0.9 m` sinks into the subnormals within some 800 steps, and never leaves, since
//! 0.9 times the smallest subnormal rounds back to itself. Measured on an MNIST MLP trained on
//! noise, whose ReLUs all die, that doubled the epoch (PyTorch's too). Flushing loses nothing:
//! such a moment moves a weight by less than `lr * 1e-38 / eps`.

use rayon::prelude::*;

use super::isa::{self, Isa};
use super::strided::PARALLEL_MIN_ELEMENTS;
use crate::tensor::Float;

/// `x`, or zero if `x` is subnormal (see the module notes). A compare and a select: it
/// vectorizes with the update around it.
#[inline(always)]
fn flush_subnormal<T: Float>(x: T) -> T {
    if x.abs() < T::MIN_POSITIVE {
        T::ZERO
    } else {
        x
    }
}

/// Runs `f` on matching chunks of `w`, `g` and one or two state buffers, in parallel when
/// large, each chunk compiled for `isa` (so `f` must be `#[inline(always)]`, see
/// [`isa::dispatch`]).
fn zip_chunks<T: Float>(
    isa: Isa,
    w: &mut [T],
    g: &[T],
    s1: &mut [T],
    s2: &mut [T],
    f: impl Fn(&mut [T], &[T], &mut [T], &mut [T]) + Sync,
) {
    const CHUNK: usize = 1 << 14;
    if w.len() >= PARALLEL_MIN_ELEMENTS {
        let s2_chunks: Vec<&mut [T]> = if s2.is_empty() {
            (0..w.len().div_ceil(CHUNK)).map(|_| &mut [][..]).collect()
        } else {
            s2.chunks_mut(CHUNK).collect()
        };
        w.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(s1.par_chunks_mut(CHUNK))
            .zip(s2_chunks.into_par_iter())
            .for_each(|(((w, g), s1), s2)| {
                isa::run_on(
                    isa,
                    #[inline(always)]
                    || f(w, g, s1, s2),
                )
            });
    } else {
        isa::run_on(
            isa,
            #[inline(always)]
            || f(w, g, s1, s2),
        );
    }
}

/// SGD with momentum `mu` and L2 weight decay `wd` (PyTorch's formulation, no dampening):
/// `d = g + wd w; buf = mu buf + d; w -= lr buf` (with `mu = 0`, `w -= lr d`).
pub fn sgd<T: Float>(w: &mut [T], g: &[T], buf: &mut [T], lr: f64, mu: f64, wd: f64) {
    let (lr, mu, wd) = (T::from_f64(lr), T::from_f64(mu), T::from_f64(wd));
    zip_chunks(
        isa::detect(),
        w,
        g,
        buf,
        &mut [],
        #[inline(always)]
        |w, g, buf, _| {
            for ((w, &g), b) in w.iter_mut().zip(g).zip(buf.iter_mut()) {
                let d = g + wd * *w;
                *b = flush_subnormal(mu * *b + d);
                *w -= lr * *b;
            }
        },
    );
}

/// Hyper-parameters of one Adam / AdamW step.
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first-moment average.
    pub beta1: f64,
    /// Decay of the second-moment average.
    pub beta2: f64,
    /// Added to the root of the second moment.
    pub eps: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// AdamW (decay the weights directly) rather than Adam (add `wd w` to the gradient).
    pub decoupled: bool,
    /// 1-based step number, for bias correction.
    pub step: u64,
}

/// Adam (Kingma and Ba, 2015) and AdamW (Loshchilov and Hutter, 2019):
/// `m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; w -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`.
pub fn adam<T: Float>(w: &mut [T], g: &[T], m: &mut [T], v: &mut [T], h: AdamStep) {
    adam_on(isa::detect(), w, g, m, v, h)
}

/// [`adam`] compiled for a chosen instruction set.
pub fn adam_on<T: Float>(isa: Isa, w: &mut [T], g: &[T], m: &mut [T], v: &mut [T], h: AdamStep) {
    let t = h.step as i32;
    let c1 = 1.0 / (1.0 - h.beta1.powi(t));
    let c2 = 1.0 / (1.0 - h.beta2.powi(t));
    let [b1, b2, eps, lr, wd] = [h.beta1, h.beta2, h.eps, h.lr, h.weight_decay].map(T::from_f64);
    let (c1, c2_sqrt) = (T::from_f64(c1), T::from_f64(c2.sqrt()));
    let shrink = if h.decoupled { T::ONE - lr * wd } else { T::ONE };
    let l2 = if h.decoupled { T::ZERO } else { wd };
    zip_chunks(
        isa,
        w,
        g,
        m,
        v,
        #[inline(always)]
        |w, g, m, v| {
            for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                let g = g + l2 * *w;
                *m = flush_subnormal(b1 * *m + (T::ONE - b1) * g);
                *v = flush_subnormal(b2 * *v + (T::ONE - b2) * g * g);
                // sqrt(v / (1 - b2^t)) = sqrt(v) * sqrt(c2)
                *w = *w * shrink - lr * (*m * c1) / ((*v).sqrt() * c2_sqrt + eps);
            }
        },
    );
}

/// RMSprop (Hinton's lecture 6e, as PyTorch has it, without momentum):
/// `s = alpha s + (1 - alpha) g^2; w -= lr g / (sqrt(s) + eps)`, `g` including `wd w`.
pub fn rmsprop<T: Float>(w: &mut [T], g: &[T], s: &mut [T], lr: f64, alpha: f64, eps: f64, wd: f64) {
    let [lr, alpha, eps, wd] = [lr, alpha, eps, wd].map(T::from_f64);
    zip_chunks(
        isa::detect(),
        w,
        g,
        s,
        &mut [],
        #[inline(always)]
        |w, g, s, _| {
            for ((w, &g), s) in w.iter_mut().zip(g).zip(s.iter_mut()) {
                let g = g + wd * *w;
                *s = flush_subnormal(alpha * *s + (T::ONE - alpha) * g * g);
                *w -= lr * g / ((*s).sqrt() + eps);
            }
        },
    );
}
