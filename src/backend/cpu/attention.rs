//! Scaled dot-product attention, `softmax(Q K^T / sqrt(d) + mask) V`, without ever storing the
//! `T x T` score matrix (the idea of FlashAttention, Dao et al. 2022, on a CPU).
//!
//! Inputs are contiguous `[heads, T, d]` (batch and heads folded together); each head is an
//! independent task for rayon.
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

use crate::tensor::Float;

/// Shape of one attention problem: `heads` independent `[t_q, d] x [t_k, d]` attentions.
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape {
    /// Batch times heads.
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

#[inline(always)]
fn axpy<T: Float>(alpha: T, x: &[T], y: &mut [T]) {
    for (yv, &xv) in y.iter_mut().zip(x) {
        *yv += alpha * xv;
    }
}

/// `[t, d]` -> `[d, t]`, so that a query row's scores against all keys become `d` unit-stride
/// multiply-adds over the keys (vectorized across keys) instead of one horizontal dot product
/// per key.
fn transpose<T: Float>(m: &[T], t: usize, d: usize) -> Vec<T> {
    let mut out = super::pool::zeros::<T>(t * d);
    for j in 0..t {
        for p in 0..d {
            out[p * t + j] = m[j * d + p];
        }
    }
    out
}

/// `scores[j] = scale * (q_i . k_j)` for the first `scores.len()` keys, from K transposed.
#[inline(always)]
fn row_scores<T: Float>(q_i: &[T], k_t: &[T], t_k: usize, scale: T, scores: &mut [T]) {
    scores.fill(T::ZERO);
    let n = scores.len();
    for (p, &qp) in q_i.iter().enumerate() {
        axpy(qp * scale, &k_t[p * t_k..p * t_k + n], scores);
    }
}

/// Returns `(o, lse)`: the output `[heads, t_q, d]` and each query row's log-sum-exp of scores.
pub fn attention_forward<T: Float>(q: &[T], k: &[T], v: &[T], s: AttentionShape) -> (Vec<T>, Vec<T>) {
    let (tq, tk, d) = (s.t_q, s.t_k, s.d);
    let mut o = super::pool::zeros::<T>(s.heads * tq * d);
    let mut lse = super::pool::zeros::<T>(s.heads * tq);
    let scale = s.scale::<T>();
    o.par_chunks_mut((tq * d).max(1)).zip(lse.par_chunks_mut(tq.max(1))).enumerate().for_each(|(h, (o_h, lse_h))| {
        let (q_h, k_h, v_h) =
            (&q[h * tq * d..(h + 1) * tq * d], &k[h * tk * d..(h + 1) * tk * d], &v[h * tk * d..(h + 1) * tk * d]);
        let k_t = transpose(k_h, tk, d);
        // One row of scores is the only scratch: O(T_k), reused by every query row.
        let mut scores = super::pool::zeros::<T>(tk);
        for i in 0..tq {
            let n = s.keys_for(i);
            if n == 0 {
                lse_h[i] = T::NEG_INFINITY;
                continue;
            }
            let row = &mut scores[..n];
            row_scores(&q_h[i * d..(i + 1) * d], &k_t, tk, scale, row);
            // With the whole row at hand the online softmax needs one rescale: take the max
            // first, then exponentiate and sum.
            let m = row.iter().fold(T::NEG_INFINITY, |a, &b| a.max(b));
            for x in row.iter_mut() {
                *x = (*x - m).exp();
            }
            let l: T = row.iter().copied().sum();
            let o_i = &mut o_h[i * d..(i + 1) * d];
            for (j, &p) in row.iter().enumerate() {
                axpy(p, &v_h[j * d..(j + 1) * d], o_i);
            }
            let inv = T::ONE / l;
            for x in o_i.iter_mut() {
                *x *= inv;
            }
            lse_h[i] = m + l.ln();
        }
    });
    (o, lse)
}

/// Gradients `(dq, dk, dv)` from the inputs, the saved output and log-sum-exp, and `d_o`.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<T: Float>(
    q: &[T],
    k: &[T],
    v: &[T],
    o: &[T],
    lse: &[T],
    d_o: &[T],
    s: AttentionShape,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let (tq, tk, d) = (s.t_q, s.t_k, s.d);
    let mut dq = super::pool::zeros::<T>(s.heads * tq * d);
    let mut dk = super::pool::zeros::<T>(s.heads * tk * d);
    let mut dv = super::pool::zeros::<T>(s.heads * tk * d);
    let scale = s.scale::<T>();
    let (q_len, k_len) = ((tq * d).max(1), (tk * d).max(1));
    dq.par_chunks_mut(q_len).zip(dk.par_chunks_mut(k_len).zip(dv.par_chunks_mut(k_len))).enumerate().for_each(
        |(h, (dq_h, (dk_h, dv_h)))| {
            let qs = h * tq * d..(h + 1) * tq * d;
            let ks = h * tk * d..(h + 1) * tk * d;
            let (q_h, o_h, do_h) = (&q[qs.clone()], &o[qs.clone()], &d_o[qs]);
            let (k_h, v_h) = (&k[ks.clone()], &v[ks]);
            let (k_t, v_t) = (transpose(k_h, tk, d), transpose(v_h, tk, d));
            let (mut p_row, mut ds_row) = (super::pool::zeros::<T>(tk), super::pool::zeros::<T>(tk));
            for i in 0..tq {
                let n = s.keys_for(i);
                if n == 0 {
                    continue;
                }
                let (q_i, do_i) = (&q_h[i * d..(i + 1) * d], &do_h[i * d..(i + 1) * d]);
                let d_i = dot(do_i, &o_h[i * d..(i + 1) * d]);
                let l_i = lse[h * tq + i];
                // P_ij recomputed from the saved log-sum-exp.
                let p = &mut p_row[..n];
                row_scores(q_i, &k_t, tk, scale, p);
                for x in p.iter_mut() {
                    *x = (*x - l_i).exp();
                }
                // dP_ij = dO_i . v_j, vectorized over keys through V transposed.
                let ds = &mut ds_row[..n];
                row_scores(do_i, &v_t, tk, T::ONE, ds);
                for (x, &pj) in ds.iter_mut().zip(p.iter()) {
                    *x = pj * (*x - d_i) * scale;
                }
                let dq_i = &mut dq_h[i * d..(i + 1) * d];
                for j in 0..n {
                    axpy(p[j], do_i, &mut dv_h[j * d..(j + 1) * d]);
                    axpy(ds[j], &k_h[j * d..(j + 1) * d], dq_i);
                    axpy(ds[j], q_i, &mut dk_h[j * d..(j + 1) * d]);
                }
            }
        },
    );
    (dq, dk, dv)
}
