//! Scaled dot-product attention, `softmax(Q K^T / sqrt(d) + mask) V`, without ever storing the
//! `T x T` score matrix (the idea of FlashAttention, Dao et al. 2022, on a CPU).
//!
//! Operands are read in place through a [`HeadLayout`], so both `[batch * heads, T, d]`
//! tensors and GPT's packed `[batch, T, 3 C]` query-key-value projection work without copies.
//! Each batch element is an independent task for rayon; its heads run in turn.
//!
//! **Forward.** Query rows go in blocks of `QUERY_BLOCK` (64). For a block, `S = Q_blk K^T`
//! is one GEMM over the keys the block can see (a causal block stops at its last row), then
//! each row becomes `P = softmax(S * scale)` with its max subtracted, and `O_blk = P V` is a
//! second GEMM. The row's log-sum-exp `L_i = m + ln(sum exp(s_j - m))` is saved, not `P`:
//! scratch is one `64 x T_k` block per thread, so memory grows like `T`, never `T^2`. (A block
//! sees all its keys at once, so the online softmax's running rescale is not needed; tiling
//! the keys too, with that rescale, would bound the scratch for very long sequences.)
//!
//! **Backward.** With `P_ij = exp(s_ij - L_i)` recomputed from `L`, and `dO` the upstream
//! gradient: `dV = P^T dO`; `dP = dO V^T`; `dS_ij = P_ij (dP_ij - D_i)` with
//! `D_i = dO_i . o_i` (= `sum_j P_ij dP_ij`, the softmax Jacobian's correction term);
//! `dQ = dS K scale`; `dK = dS^T Q scale`. Five GEMMs per block of query rows.
//!
//! With `causal`, query `i` sees keys `j <= i` only (PyTorch's top-left alignment).

use rayon::prelude::*;

use super::isa;
use super::matmul::{gemm, gemm_strided, MatRef};

use crate::tensor::{Float, HostBuffer};

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
pub fn attention_forward<T: Float>(x: AttentionInputs<'_, T>, s: AttentionShape) -> (HostBuffer<T>, HostBuffer<T>) {
    let mut o = super::pool::zeros::<T>(s.batch * s.out_chunk());
    let mut lse = super::pool::reuse::<T>(s.batch * s.heads * s.t_q);
    o.par_chunks_mut(s.out_chunk().max(1)).zip(lse.par_chunks_mut((s.heads * s.t_q).max(1))).enumerate().for_each(
        |(b, (o_b, lse_b))| {
            isa::dispatch(
                #[inline(always)]
                || forward_batch(x, s, b, o_b, lse_b),
            )
        },
    );
    (o, lse)
}

/// The forward pass for batch element `b`, one block of `QUERY_BLOCK` query rows at a time:
/// `S = Q_blk K^T` and `O_blk = P V` are GEMMs (the packed kernels of `matmul.rs`); the
/// softmax between them runs over rows of the `QUERY_BLOCK x T_k` scratch. Inlined into one
/// copy per instruction set (see `isa.rs`), so the row loops use the widest vectors available.
#[inline(always)]
fn forward_batch<T: Float>(x: AttentionInputs<'_, T>, s: AttentionShape, b: usize, o_b: &mut [T], lse_b: &mut [T]) {
    let (tq, tk, d, hd) = (s.t_q, s.t_k, s.d, s.heads * s.d);
    let scale = s.scale::<T>();
    let ((q, ql), (k, kl), (v, vl)) = (x.q, x.k, x.v);
    // Scratch from the buffer pool (the GEMM overwrites every value before it is read): a
    // fresh 32 KiB vector per batch element was 6 MB of allocations per attention call.
    let mut p_blk = super::pool::reuse::<T>(QUERY_BLOCK * tk);
    for h in 0..s.heads {
        for q0 in (0..tq).step_by(QUERY_BLOCK) {
            let rows = QUERY_BLOCK.min(tq - q0);
            // Keys any row of this block may see: causal blocks stop at their last row.
            let keys = s.keys_for(q0 + rows - 1);
            if keys == 0 {
                // No keys at all: the output rows stay zero.
                lse_b[h * tq + q0..h * tq + q0 + rows].fill(T::NEG_INFINITY);
                continue;
            }
            let p = &mut p_blk[..rows * keys];
            gemm(rows_of(q, &ql, b, h, q0, rows, d), rows_of(k, &kl, b, h, 0, keys, d).t(), p, false);
            for (r, row) in p.chunks_exact_mut(keys).enumerate() {
                let n = s.keys_for(q0 + r);
                let lse = &mut lse_b[h * tq + q0 + r];
                if n == 0 {
                    row.fill(T::ZERO);
                    *lse = T::NEG_INFINITY;
                    continue;
                }
                let m = super::reduce::max_contiguous(&row[..n]) * scale;
                // Exponentials and their sum in separate loops, so the exp loop vectorizes.
                exp_rows_then_mask(row, n, scale, m);
                let seen = &mut row[..n];
                let l = super::reduce::sum_contiguous(seen);
                let inv = T::ONE / l;
                for x in seen.iter_mut() {
                    *x *= inv;
                }
                *lse = m + l.ln();
            }
            // O_blk = P V lands straight in the output rows of head h (hd apart).
            let p = MatRef::row_major(p, rows, keys);
            gemm_strided(p, rows_of(v, &vl, b, h, 0, keys, d), &mut o_b[q0 * hd + h * d..], hd, false, false);
        }
    }
    super::pool::give_back(p_blk);
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
) -> HostBuffer<T> {
    let mut grad = super::pool::zeros::<T>(s.batch * g.chunk);
    let saved = Saved { o, lse, d_o };
    grad.par_chunks_mut(g.chunk.max(1)).enumerate().for_each(|(b, grad_b)| {
        isa::dispatch(
            #[inline(always)]
            || backward_batch(x, saved, s, Targets::Chunk(grad_b, g), b),
        )
    });
    grad
}

/// Gradients `[dq, dk, dv]` of attention with one head per batch element (separate `q`, `k`,
/// `v`), each `[batch, t, d]` in a buffer of its own. Three views of one buffer would cost
/// a copy each: a leaf keeps a gradient as it is only when no other tensor shares its
/// storage (5-10% of an attention forward and backward at `16 x 4 x 128 x 32`).
pub fn attention_backward_separate<T: Float>(
    x: AttentionInputs<'_, T>,
    o: &[T],
    lse: &[T],
    d_o: &[T],
    s: AttentionShape,
) -> [HostBuffer<T>; 3] {
    assert_eq!(s.heads, 1, "attention_backward_separate: one head per batch element, got {}", s.heads);
    let (q_len, k_len) = (s.t_q * s.d, s.t_k * s.d);
    let (mut dq, mut dk, mut dv) = (
        super::pool::zeros::<T>(s.batch * q_len),
        super::pool::zeros(s.batch * k_len),
        super::pool::zeros(s.batch * k_len),
    );
    if q_len > 0 && k_len > 0 {
        let saved = Saved { o, lse, d_o };
        let per_batch = dq.par_chunks_mut(q_len).zip(dk.par_chunks_mut(k_len)).zip(dv.par_chunks_mut(k_len));
        per_batch.enumerate().for_each(|(b, ((dq_b, dk_b), dv_b))| {
            isa::dispatch(
                #[inline(always)]
                || backward_batch(x, saved, s, Targets::Separate([dq_b, dk_b, dv_b], s.d), b),
            )
        });
    }
    [dq, dk, dv]
}

/// Where one batch element's gradients go.
enum Targets<'a, T> {
    /// The element's chunk of one buffer, each gradient laid out in it by `GradientLayout`
    /// (the packed `[t, 3 C]` projection of `multi_head_attention`).
    Chunk(&'a mut [T], GradientLayout),
    /// `[dq, dk, dv]` in buffers of their own, one head of rows `d` values long.
    Separate([&'a mut [T]; 3], usize),
}

impl<T> Targets<'_, T> {
    /// Gradient `which` (0 `dq`, 1 `dk`, 2 `dv`) from row `t0` of head `h` on, and the step
    /// between its rows. (Within a chunk the batch stride does not apply: rows are found as
    /// batch 0's.)
    fn rows_from(&mut self, which: usize, h: usize, t0: usize) -> (&mut [T], usize) {
        match self {
            Targets::Chunk(chunk, g) => {
                let layout = [g.dq, g.dk, g.dv][which];
                (&mut chunk[layout.row(0, h, t0)..], layout.row_stride)
            }
            Targets::Separate(buffers, d) => (&mut buffers[which][t0 * *d..], *d),
        }
    }
}

/// What the forward pass left for the backward pass, plus the upstream gradient.
#[derive(Clone, Copy)]
struct Saved<'a, T> {
    o: &'a [T],
    lse: &'a [T],
    d_o: &'a [T],
}

/// The backward pass for batch element `b`, one block of query rows at a time, written into
/// its gradients (`out`). Per block, with `P` recomputed from the saved
/// log-sum-exp: `dP = dO V^T`, `dS = P (dP - D) scale`, then `dQ = dS K`, `dK += dS^T Q`,
/// `dV += P^T dO`: five GEMMs on `QUERY_BLOCK x T_k` scratch.
#[inline(always)]
fn backward_batch<T: Float>(
    x: AttentionInputs<'_, T>,
    saved: Saved<'_, T>,
    s: AttentionShape,
    mut out: Targets<'_, T>,
    b: usize,
) {
    let (tq, tk, d, hd) = (s.t_q, s.t_k, s.d, s.heads * s.d);
    let scale = s.scale::<T>();
    let ((q, ql), (k, kl), (v, vl)) = (x.q, x.k, x.v);
    let Saved { o, lse, d_o } = saved;
    // The upstream gradient and output of this batch element, laid out [t_q, heads * d].
    let out_layout = HeadLayout { offset: 0, batch_stride: s.out_chunk(), head_stride: d, row_stride: hd };
    // Pool scratch, as in `forward_batch`.
    let (mut p_blk, mut ds_blk) =
        (super::pool::reuse::<T>(QUERY_BLOCK * tk), super::pool::reuse::<T>(QUERY_BLOCK * tk));
    for h in 0..s.heads {
        for q0 in (0..tq).step_by(QUERY_BLOCK) {
            let rows = QUERY_BLOCK.min(tq - q0);
            let keys = s.keys_for(q0 + rows - 1);
            if keys == 0 {
                continue;
            }
            let (q_blk, do_blk) = (rows_of(q, &ql, b, h, q0, rows, d), rows_of(d_o, &out_layout, b, h, q0, rows, d));
            let (k_all, v_all) = (rows_of(k, &kl, b, h, 0, keys, d), rows_of(v, &vl, b, h, 0, keys, d));
            let p = &mut p_blk[..rows * keys];
            let ds = &mut ds_blk[..rows * keys];
            gemm(q_blk, k_all.t(), p, false);
            gemm(do_blk, v_all.t(), ds, false);
            for (r, (p_row, ds_row)) in p.chunks_exact_mut(keys).zip(ds.chunks_exact_mut(keys)).enumerate() {
                let i = q0 + r;
                let n = s.keys_for(i);
                let out_at = b * s.out_chunk() + i * hd + h * d;
                let d_i = super::reduce::dot_contiguous(&d_o[out_at..out_at + d], &o[out_at..out_at + d]);
                let l_i = lse[(b * s.heads + h) * tq + i];
                exp_rows_then_mask(p_row, n, scale, l_i);
                for (ds, &pj) in ds_row.iter_mut().zip(p_row.iter()) {
                    *ds = pj * (*ds - d_i) * scale;
                }
            }
            let ds_mat = MatRef::row_major(&ds_blk[..rows * keys], rows, keys);
            let p_mat = MatRef::row_major(&p_blk[..rows * keys], rows, keys);
            // The gradients accumulate straight into their rows of this batch element: dQ for
            // the block's rows, dK and dV for every key the block saw.
            let (dq, ldq) = out.rows_from(0, h, q0);
            gemm_strided(ds_mat, k_all, dq, ldq, false, true);
            let (dk, ldk) = out.rows_from(1, h, 0);
            gemm_strided(ds_mat.t(), q_blk, dk, ldk, false, true);
            let (dv, ldv) = out.rows_from(2, h, 0);
            gemm_strided(p_mat.t(), do_blk, dv, ldv, false, true);
        }
    }
    super::pool::give_back(p_blk);
    super::pool::give_back(ds_blk);
}

/// `row[j] = exp(row[j] * scale - shift)` for the `n` keys the row sees, zero for the rest.
/// The exponentials run over whole 16-lane vectors, past `n` up to the row's end where
/// needed: causal rows have every length, and a scalar tail of up to 15 exponentials per row
/// cost as much as the vector part. The extra lanes hold real (masked) scores, so their
/// exponentials are finite (`exp_nonpositive` saturates past 88), never NaN, and are
/// overwritten with zeros. The visible ones are `<= 0` (up to rounding): the shift is the
/// row's max or its log-sum-exp.
#[inline(always)]
fn exp_rows_then_mask<T: Float>(row: &mut [T], n: usize, scale: T, shift: T) {
    let wide = n.next_multiple_of(16).min(row.len());
    for x in row[..wide].iter_mut() {
        *x = (*x * scale - shift).exp_nonpositive();
    }
    row[n..].fill(T::ZERO);
}

/// Query rows per block: the softmax scratch is `QUERY_BLOCK x T_k`, so memory grows with
/// `T`, not `T^2`, and each block's work is large enough for the packed GEMM.
const QUERY_BLOCK: usize = 64;

/// Rows `t0..t0 + rows` of head `h` of batch element `b` as a strided `[rows, d]` matrix.
fn rows_of<'a, T: Float>(
    data: &'a [T],
    l: &HeadLayout,
    b: usize,
    h: usize,
    t0: usize,
    rows: usize,
    d: usize,
) -> MatRef<'a, T> {
    MatRef { data, offset: l.row(b, h, t0), rows, cols: d, row_stride: l.row_stride, col_stride: 1 }
}
