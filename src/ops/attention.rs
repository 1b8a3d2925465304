//! Scaled dot-product attention as one op (the kernel is in `backend/cpu/attention.rs`).

use super::dense;
use crate::autograd::Op;
use crate::backend::{self, AttentionShape};
use crate::tensor::Layout;
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
        let heads: usize = q.shape()[..r - 2].iter().product();
        let shape = AttentionShape { heads, t_q, t_k, d, causal };
        let (o, lse) =
            backend::attention_forward(&dense(q, q.layout()), &dense(k, k.layout()), &dense(v, v.layout()), shape);
        let lse = Tensor::from_storage(lse, Layout::contiguous(&[heads * t_q]));
        let op = Op::Attention { q: q.clone(), k: k.clone(), v: v.clone(), causal, lse };
        Tensor::from_op(o, Layout::contiguous(q.shape()), op)
    }
}

/// Gradients `(dq, dk, dv)` of attention, from the op's inputs, output and saved log-sum-exp.
pub(crate) fn attention_backward(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    o: &Tensor,
    lse: &Tensor,
    g: &Tensor,
    causal: bool,
) -> (Tensor, Tensor, Tensor) {
    let r = q.rank();
    let shape = AttentionShape {
        heads: q.shape()[..r - 2].iter().product(),
        t_q: q.shape()[r - 2],
        t_k: k.shape()[r - 2],
        d: q.shape()[r - 1],
        causal,
    };
    let (dq, dk, dv) = backend::attention_backward(
        &dense(q, q.layout()),
        &dense(k, k.layout()),
        &dense(v, v.layout()),
        &dense(o, o.layout()),
        &lse.storage(),
        &dense(g, g.layout()),
        shape,
    );
    (
        Tensor::from_storage(dq, Layout::contiguous(q.shape())),
        Tensor::from_storage(dk, Layout::contiguous(k.shape())),
        Tensor::from_storage(dv, Layout::contiguous(v.shape())),
    )
}
