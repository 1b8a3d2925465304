//! Attention as single ops (the kernel and its math are in `backend/cpu/attention.rs`):
//! `scaled_dot_product_attention` on separate `q`, `k`, `v`, and `multi_head_attention` on a
//! GPT's packed `[batch, T, 3 C]` projection, read in place.

use super::dense;
use crate::autograd::Op;
use crate::backend::{self, AttentionShape, GradientLayout, HeadLayout};
use crate::tensor::{contiguous_strides, Device, Layout};
use crate::Tensor;

impl Tensor {
    /// `softmax(q k^T / sqrt(d)) v` over the last two dims, for `q` `[.., T_q, d]` and `k`,
    /// `v` `[.., T_k, d]` with equal leading dims. With `causal`, query `i` attends to keys
    /// `j <= i`. Memory stays `O(T d)`: the `T x T` scores are never stored.
    ///
    /// ```
    /// use glassbox::Tensor;
    /// let q = Tensor::randn(&[2, 4, 8], 0);
    /// let o = Tensor::scaled_dot_product_attention(&q, &q, &q, true);
    /// assert_eq!(o.shape(), &[2, 4, 8]);
    /// ```
    pub fn scaled_dot_product_attention(q: &Tensor, k: &Tensor, v: &Tensor, causal: bool) -> Tensor {
        let name = "scaled_dot_product_attention";
        q.check_same_kind(name, k);
        q.check_same_kind(name, v);
        let r = q.rank();
        assert!(
            r >= 2 && k.rank() == r && v.rank() == r,
            "{name}: q, k and v need the same rank >= 2, got shapes {:?}, {:?} and {:?}",
            q.shape(),
            k.shape(),
            v.shape()
        );
        let (t_q, d) = (q.shape()[r - 2], q.shape()[r - 1]);
        let t_k = k.shape()[r - 2];
        assert!(
            q.shape()[..r - 2] == k.shape()[..r - 2] && k.shape() == v.shape() && k.shape()[r - 1] == d,
            "{name}: expected k and v shaped [.., T_k, {d}] with the leading dims of q {:?}; got k {:?} and v {:?}",
            q.shape(),
            k.shape(),
            v.shape()
        );
        let shape = separate_shape(q, k, causal);
        let (o, lse) = backend::attention_forward(
            (&dense(q, q.layout()), HeadLayout::contiguous(1, t_q, d)),
            (&dense(k, k.layout()), HeadLayout::contiguous(1, t_k, d)),
            (&dense(v, v.layout()), HeadLayout::contiguous(1, t_k, d)),
            shape,
        );
        let lse = Tensor::from_storage(lse, Layout::contiguous(&[shape.batch * t_q]));
        let op = Op::Attention { q: q.clone(), k: k.clone(), v: v.clone(), causal, lse };
        Tensor::from_op(o, Layout::contiguous(q.shape()), op)
    }

    /// Multi-head self-attention on a packed projection: `self` is `[batch, T, 3 C]` holding
    /// queries, keys and values side by side (as GPT's `c_attn` produces them), split into
    /// `n_head` heads of `C / n_head` features. Returns `[batch, T, C]` with the heads side by
    /// side. The heads are read in place, and the gradient comes back in the packed layout,
    /// so no head is ever copied out, permuted or padded.
    pub fn multi_head_attention(&self, n_head: usize, causal: bool) -> Tensor {
        let shape = self.packed_attention_shape(n_head, causal);
        let (b, t, d) = (shape.batch, shape.t_q, shape.d);
        let qkv = dense(self, self.layout());
        let (o, lse) = backend::attention_forward(
            (&qkv, HeadLayout::packed_qkv(0, n_head, t, d)),
            (&qkv, HeadLayout::packed_qkv(1, n_head, t, d)),
            (&qkv, HeadLayout::packed_qkv(2, n_head, t, d)),
            shape,
        );
        let lse = Tensor::from_storage(lse, Layout::contiguous(&[b * n_head * t]));
        let op = Op::MultiHeadAttention { qkv: self.clone(), n_head, causal, lse };
        Tensor::from_op(o, Layout::contiguous(&[b, t, n_head * d]), op)
    }

    fn packed_attention_shape(&self, n_head: usize, causal: bool) -> AttentionShape {
        assert!(
            self.rank() == 3 && n_head > 0 && self.shape()[2].is_multiple_of(3 * n_head),
            "multi_head_attention: expected a packed [batch, T, 3 C] projection with 3 C divisible by 3 x {n_head} heads, got shape {:?}",
            self.shape()
        );
        let (b, t, width) = (self.shape()[0], self.shape()[1], self.shape()[2] / 3);
        AttentionShape { batch: b, heads: n_head, t_q: t, t_k: t, d: width / n_head, causal }
    }
}

/// Sizes of `scaled_dot_product_attention`: leading dims folded into one batch, one head each.
fn separate_shape(q: &Tensor, k: &Tensor, causal: bool) -> AttentionShape {
    let r = q.rank();
    AttentionShape {
        batch: q.shape()[..r - 2].iter().product(),
        heads: 1,
        t_q: q.shape()[r - 2],
        t_k: k.shape()[r - 2],
        d: q.shape()[r - 1],
        causal,
    }
}

/// A view of `[.., t, d]` rows stored at `offset` inside chunks of `chunk` elements, one chunk
/// per leading index.
fn chunked_view(grads: &Tensor, shape: &[usize], chunk: usize, offset: usize) -> Tensor {
    let r = shape.len();
    let mut strides: Vec<usize> = contiguous_strides(&shape[..r - 2]).into_iter().map(|s| s * chunk).collect();
    strides.extend([shape[r - 1], 1]);
    grads.view_detached(Layout::from_parts(shape.to_vec(), strides, offset))
}

/// Gradients `(dq, dk, dv)` of `scaled_dot_product_attention`: on the CPU in three buffers of
/// their own; on a CUDA device computed into one buffer (`[dq | dk | dv]` per batch element)
/// and handed out as three views of it.
pub(crate) fn attention_backward(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    o: &Tensor,
    lse: &Tensor,
    g: &Tensor,
    causal: bool,
) -> (Tensor, Tensor, Tensor) {
    let shape = separate_shape(q, k, causal);
    let (tq, tk, d) = (shape.t_q, shape.t_k, shape.d);
    let [q_d, k_d, v_d, o_d, g_d] = [q, k, v, o, g].map(|t| dense(t, t.layout()));
    if q.device() == Device::Cpu {
        let [dq, dk, dv] = backend::attention_backward_separate(&q_d, &k_d, &v_d, &o_d, &lse.storage(), &g_d, shape);
        let own = |storage, like: &Tensor| Tensor::from_storage(storage, Layout::contiguous(like.shape()));
        return (own(dq, q), own(dk, k), own(dv, v));
    }
    let part = |offset| HeadLayout { offset, batch_stride: 0, head_stride: 0, row_stride: d };
    let layout = GradientLayout { chunk: (tq + 2 * tk) * d, dq: part(0), dk: part(tq * d), dv: part((tq + tk) * d) };
    let grads = backend::attention_backward(
        (&q_d, HeadLayout::contiguous(1, tq, d)),
        (&k_d, HeadLayout::contiguous(1, tk, d)),
        (&v_d, HeadLayout::contiguous(1, tk, d)),
        &o_d,
        &lse.storage(),
        &g_d,
        shape,
        layout,
    );
    let grads = Tensor::from_storage(grads, Layout::contiguous(&[shape.batch * layout.chunk]));
    (
        chunked_view(&grads, q.shape(), layout.chunk, 0),
        chunked_view(&grads, k.shape(), layout.chunk, tq * d),
        chunked_view(&grads, v.shape(), layout.chunk, (tq + tk) * d),
    )
}

/// Gradient of `multi_head_attention`, in the packed `[batch, T, 3 C]` layout of its input.
pub(crate) fn multi_head_attention_backward(
    qkv: &Tensor,
    o: &Tensor,
    lse: &Tensor,
    g: &Tensor,
    n_head: usize,
    causal: bool,
) -> Tensor {
    let shape = qkv.packed_attention_shape(n_head, causal);
    let (t, d) = (shape.t_q, shape.d);
    let packed = |part| HeadLayout::packed_qkv(part, n_head, t, d);
    let layout = GradientLayout { chunk: t * 3 * n_head * d, dq: packed(0), dk: packed(1), dv: packed(2) };
    let x = dense(qkv, qkv.layout());
    let grads = backend::attention_backward(
        (&x, packed(0)),
        (&x, packed(1)),
        (&x, packed(2)),
        &dense(o, o.layout()),
        &lse.storage(),
        &dense(g, g.layout()),
        shape,
        layout,
    );
    Tensor::from_storage(grads, Layout::contiguous(qkv.shape()))
}
