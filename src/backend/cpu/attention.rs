//! Scaled dot-product attention, `softmax(Q K^T / sqrt(d) + mask) V`, without ever storing the
//! `T x T` score matrix (the idea of FlashAttention, Dao et al. 2022, on a CPU).
//!
//! Operands are read in place through a [`HeadLayout`], so both `[batch * heads, T, d]`
//! tensors and GPT's packed `[batch, T, 3 C]` query-key-value projection work without copies.
//! Each batch element is an independent task for rayon; its heads run in turn.
//!
//! **Forward.** For each query row `i`, walk the keys once with an *online softmax*: keep the
//! running max `m`, the running sum `l = sum exp(s_j - m)` and the running output
//! `acc = sum exp(s_j - m) v_j`. When a new score raises the max to `m'`, the old terms are
//! rescaled by `exp(m - m')`. At the end `o_i = acc / l`. We save only `o` and the row's
//! log-sum-exp `L_i = m + ln l`: `O(T d)` memory instead of `O(T^2)`.
//!
//! **Backward.** With `P_ij = exp(s_ij - L_i)` recomputed from `L`, and `dO` the upstream
//! gradient: `dV_j = sum_i P_ij dO_i`; `dP_ij = dO_i . v_j`; `dS_ij = P_ij (dP_ij - D_i)` with
//! `D_i = dO_i . o_i` (= `sum_j P_ij dP_ij`, the softmax Jacobian's correction term);
//! `dQ_i = scale sum_j dS_ij k_j`; `dK_j = scale sum_i dS_ij q_i`.
//!
//! With `causal`, query `i` sees keys `j <= i` only (PyTorch's top-left alignment).

use rayon::prelude::*;

use super::isa::{self, Isa};

use crate::tensor::Float;

/// Where one operand's rows live: row `t` of head `h` of batch element `b` is the `d` values
/// starting at `b * batch_stride + h * head_stride + t * row_stride + offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadLayout {
    /// Index of batch 0, head 0, row 0.
    pub offset: usize,
    /// Step between batch elements.
    pub batch_stride: usize,
    /// Step between heads.
    pub head_stride: usize,
    /// Step between rows (positions).
    pub row_stride: usize,
}

impl HeadLayout {
    /// `[batch, heads, t, d]` packed contiguously.
    pub fn contiguous(heads: usize, t: usize, d: usize) -> HeadLayout {
        HeadLayout { offset: 0, batch_stride: heads * t * d, head_stride: t * d, row_stride: d }
    }

    /// Part `part` (0 = q, 1 = k, 2 = v) of a `[batch, t, 3 * heads * d]` projection.
    pub fn packed_qkv(part: usize, heads: usize, t: usize, d: usize) -> HeadLayout {
        let width = heads * d;
        HeadLayout { offset: part * width, batch_stride: t * 3 * width, head_stride: d, row_stride: 3 * width }
    }

    #[inline(always)]
    fn row(&self, b: usize, h: usize, t: usize) -> usize {
        self.offset + b * self.batch_stride + h * self.head_stride + t * self.row_stride
    }
}

/// Sizes of a batch of multi-head attentions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionShape {
    /// Independent sequences.
    pub batch: usize,
    /// Heads per sequence.
    pub heads: usize,
    /// Query length.
    pub t_q: usize,
    /// Key / value length.
    pub t_k: usize,
    /// Head dimension (of queries, keys and values).
    pub d: usize,
    /// Mask keys after the query's position.
    pub causal: bool,
}

impl AttentionShape {
    fn keys_for(&self, i: usize) -> usize {
        if self.causal {
            (i + 1).min(self.t_k)
        } else {
            self.t_k
        }
    }

    fn scale<T: Float>(&self) -> T {
        T::from_f64(1.0 / (self.d.max(1) as f64).sqrt())
    }

    /// Elements of one batch element's output `[t_q, heads * d]`.
    fn out_chunk(&self) -> usize {
        self.t_q * self.heads * self.d
    }
}

#[inline(always)]
fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::ZERO; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let tail: T = ca.remainder().iter().zip(cb.remainder()).map(|(&x, &y)| x * y).sum();
    acc.iter().copied().sum::<T>() + tail
}

/// `y += alpha x`; with `FMA` one fused multiply-add per element (only where FMA is enabled).
#[inline(always)]
fn axpy<T: Float, const FMA: bool>(alpha: T, x: &[T], y: &mut [T]) {
    for (yv, &xv) in y.iter_mut().zip(x) {
        *yv = if FMA { alpha.mul_add(xv, *yv) } else { *yv + alpha * xv };
    }
}

/// One head's `[t, d]` rows gathered transposed into `[d, t]`, so that a query row's scores
/// against all keys become `d` unit-stride multiply-adds across keys (vectorized) instead of
/// one horizontal dot product per key.
fn gather_transposed<T: Float>(m: &[T], l: &HeadLayout, b: usize, h: usize, t: usize, d: usize, out: &mut [T]) {
    for j in 0..t {
        let row = &m[l.row(b, h, j)..l.row(b, h, j) + d];
        for (p, &v) in row.iter().enumerate() {
            out[p * t + j] = v;
        }
    }
}

/// `scores[j] = scale * (q_i . k_j)` for the first `scores.len()` keys, from K transposed.
#[inline(always)]
fn row_scores<T: Float, const FMA: bool>(q_i: &[T], k_t: &[T], t_k: usize, scale: T, scores: &mut [T]) {
    scores.fill(T::ZERO);
    let n = scores.len();
    for (p, &qp) in q_i.iter().enumerate() {
        axpy::<T, FMA>(qp * scale, &k_t[p * t_k..p * t_k + n], scores);
    }
}

/// The inputs of one attention problem, each with its layout.
#[derive(Clone, Copy)]
pub struct AttentionInputs<'a, T> {
    /// Queries.
    pub q: (&'a [T], HeadLayout),
    /// Keys.
    pub k: (&'a [T], HeadLayout),
    /// Values.
    pub v: (&'a [T], HeadLayout),
}

/// Returns `(o, lse)`: the output laid out `[batch, t_q, heads * d]` (heads side by side, as
/// the next projection wants them) and each query row's log-sum-exp `[batch, heads, t_q]`.
pub fn attention_forward<T: Float>(x: AttentionInputs<'_, T>, s: AttentionShape) -> (Vec<T>, Vec<T>) {
    let mut o = super::pool::zeros::<T>(s.batch * s.out_chunk());
    let mut lse = super::pool::reuse::<T>(s.batch * s.heads * s.t_q);
    let isa = isa::detect();
    o.par_chunks_mut(s.out_chunk().max(1)).zip(lse.par_chunks_mut((s.heads * s.t_q).max(1))).enumerate().for_each(
        |(b, (o_b, lse_b))| match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: isa::detect() returned Avx512, so isa::supported saw avx512f, avx2, fma.
            Isa::Avx512 => unsafe { forward_batch_avx512(x, s, b, o_b, lse_b) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: isa::detect() returned Avx2Fma, so isa::supported saw avx2 and fma.
            Isa::Avx2Fma => unsafe { forward_batch_avx2(x, s, b, o_b, lse_b) },
            _ => forward_batch::<T, false>(x, s, b, o_b, lse_b),
        },
    );
    (o, lse)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn forward_batch_avx512<T: Float>(x: AttentionInputs<'_, T>, s: AttentionShape, b: usize, o_b: &mut [T], lse_b: &mut [T]) {
    forward_batch::<T, true>(x, s, b, o_b, lse_b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_batch_avx2<T: Float>(x: AttentionInputs<'_, T>, s: AttentionShape, b: usize, o_b: &mut [T], lse_b: &mut [T]) {
    forward_batch::<T, true>(x, s, b, o_b, lse_b)
}

/// The forward pass for batch element `b`: every head, every query row. Inlined into one
/// copy per instruction set (see `isa.rs`), so its loops run on the widest vectors available.
#[inline(always)]
fn forward_batch<T: Float, const FMA: bool>(x: AttentionInputs<'_, T>, s: AttentionShape, b: usize, o_b: &mut [T], lse_b: &mut [T]) {
    let (tq, tk, d, hd) = (s.t_q, s.t_k, s.d, s.heads * s.d);
    let scale = s.scale::<T>();
    let ((q, ql), (k, kl), (v, vl)) = (x.q, x.k, x.v);
    let mut k_t = vec![T::ZERO; tk * d];
    // One row of scores is the only per-row scratch: O(T_k), reused by every query.
    let mut scores = vec![T::ZERO; tk];
    for h in 0..s.heads {
        gather_transposed(k, &kl, b, h, tk, d, &mut k_t);
        for i in 0..tq {
            let n = s.keys_for(i);
            if n == 0 {
                lse_b[h * tq + i] = T::NEG_INFINITY;
                continue;
            }
            let row = &mut scores[..n];
            row_scores::<T, FMA>(&q[ql.row(b, h, i)..ql.row(b, h, i) + d], &k_t, tk, scale, row);
            // With the whole row at hand, the online softmax needs one rescale: take the max
            // first, then exponentiate and sum.
            let m = row.iter().fold(T::NEG_INFINITY, |a, &c| a.max(c));
            for x in row.iter_mut() {
                *x = (*x - m).exp();
            }
            let l: T = row.iter().copied().sum();
            let o_i = &mut o_b[i * hd + h * d..i * hd + (h + 1) * d];
            for (j, &p) in row.iter().enumerate() {
                axpy::<T, FMA>(p, &v[vl.row(b, h, j)..vl.row(b, h, j) + d], o_i);
            }
            let inv = T::ONE / l;
            for x in o_i.iter_mut() {
                *x *= inv;
            }
            lse_b[h * tq + i] = m + l.ln();
        }
    }
}

/// Where the backward pass writes `dq`, `dk` and `dv`: one buffer of `batch * chunk`
/// elements; inside batch element `b`'s chunk, each gradient is laid out by its
/// `HeadLayout` (whose `batch_stride` is ignored).
#[derive(Clone, Copy, Debug)]
pub struct GradientLayout {
    /// Elements per batch element.
    pub chunk: usize,
    /// Where `dq` lives within a chunk.
    pub dq: HeadLayout,
    /// Where `dk` lives within a chunk.
    pub dk: HeadLayout,
    /// Where `dv` lives within a chunk.
    pub dv: HeadLayout,
}

/// Gradients of attention, written into a fresh buffer laid out by `g`, from the inputs, the
/// saved output `o` (`[batch, t_q, heads * d]`) and log-sum-exp, and `d_o` (laid out as `o`).
pub fn attention_backward<T: Float>(
    x: AttentionInputs<'_, T>,
    o: &[T],
    lse: &[T],
    d_o: &[T],
    s: AttentionShape,
    g: GradientLayout,
) -> Vec<T> {
    let mut grad = super::pool::zeros::<T>(s.batch * g.chunk);
    let saved = Saved { o, lse, d_o };
    let isa = isa::detect();
    grad.par_chunks_mut(g.chunk.max(1)).enumerate().for_each(|(b, grad_b)| match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: isa::detect() returned Avx512, so isa::supported saw avx512f, avx2, fma.
        Isa::Avx512 => unsafe { backward_batch_avx512(x, saved, s, g, b, grad_b) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: isa::detect() returned Avx2Fma, so isa::supported saw avx2 and fma.
        Isa::Avx2Fma => unsafe { backward_batch_avx2(x, saved, s, g, b, grad_b) },
        _ => backward_batch::<T, false>(x, saved, s, g, b, grad_b),
    });
    grad
}

/// What the forward pass left for the backward pass, plus the upstream gradient.
#[derive(Clone, Copy)]
struct Saved<'a, T> {
    o: &'a [T],
    lse: &'a [T],
    d_o: &'a [T],
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn backward_batch_avx512<T: Float>(
    x: AttentionInputs<'_, T>,
    saved: Saved<'_, T>,
    s: AttentionShape,
    g: GradientLayout,
    b: usize,
    grad_b: &mut [T],
) {
    backward_batch::<T, true>(x, saved, s, g, b, grad_b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn backward_batch_avx2<T: Float>(
    x: AttentionInputs<'_, T>,
    saved: Saved<'_, T>,
    s: AttentionShape,
    g: GradientLayout,
    b: usize,
    grad_b: &mut [T],
) {
    backward_batch::<T, true>(x, saved, s, g, b, grad_b)
}

/// The backward pass for batch element `b`, written into its chunk of the gradient buffer.
#[inline(always)]
fn backward_batch<T: Float, const FMA: bool>(
    x: AttentionInputs<'_, T>,
    saved: Saved<'_, T>,
    s: AttentionShape,
    g: GradientLayout,
    b: usize,
    grad_b: &mut [T],
) {
    let (tq, tk, d, hd) = (s.t_q, s.t_k, s.d, s.heads * s.d);
    let scale = s.scale::<T>();
    let ((q, ql), (k, kl), (v, vl)) = (x.q, x.k, x.v);
    let Saved { o, lse, d_o } = saved;
    let at = |l: &HeadLayout, h: usize, t: usize| l.offset + h * l.head_stride + t * l.row_stride;
    let (mut k_t, mut v_t) = (vec![T::ZERO; tk * d], vec![T::ZERO; tk * d]);
    let (mut p_row, mut ds_row) = (vec![T::ZERO; tk], vec![T::ZERO; tk]);
    for h in 0..s.heads {
        gather_transposed(k, &kl, b, h, tk, d, &mut k_t);
        gather_transposed(v, &vl, b, h, tk, d, &mut v_t);
        for i in 0..tq {
            let n = s.keys_for(i);
            if n == 0 {
                continue;
            }
            let q_i = &q[ql.row(b, h, i)..ql.row(b, h, i) + d];
            let out_row = b * s.out_chunk() + i * hd + h * d;
            let do_i = &d_o[out_row..out_row + d];
            let d_i = dot(do_i, &o[out_row..out_row + d]);
            let l_i = lse[(b * s.heads + h) * tq + i];
            // P_ij recomputed from the saved log-sum-exp.
            let p = &mut p_row[..n];
            row_scores::<T, FMA>(q_i, &k_t, tk, scale, p);
            for x in p.iter_mut() {
                *x = (*x - l_i).exp();
            }
            // dP_ij = dO_i . v_j, vectorized over keys through V transposed.
            let ds = &mut ds_row[..n];
            row_scores::<T, FMA>(do_i, &v_t, tk, T::ONE, ds);
            for (x, &pj) in ds.iter_mut().zip(p.iter()) {
                *x = pj * (*x - d_i) * scale;
            }
            for j in 0..n {
                let k_j = &k[kl.row(b, h, j)..kl.row(b, h, j) + d];
                let dq_at = at(&g.dq, h, i);
                axpy::<T, FMA>(ds[j], k_j, &mut grad_b[dq_at..dq_at + d]);
                let dk_at = at(&g.dk, h, j);
                axpy::<T, FMA>(ds[j], q_i, &mut grad_b[dk_at..dk_at + d]);
                let dv_at = at(&g.dv, h, j);
                axpy::<T, FMA>(p[j], do_i, &mut grad_b[dv_at..dv_at + d]);
            }
        }
    }
}
