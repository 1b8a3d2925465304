//! In-place writes, for optimizers and checkpoint loading. They bypass autograd (they are
//! not recorded) and require a contiguous destination, which parameters always are.

use crate::backend;
use crate::Tensor;

pub use crate::backend::AdamStep;

impl Tensor {
    fn check_update_target(&self, op: &str, others: &[(&str, &Tensor)]) {
        assert!(self.is_contiguous(), "{op}: the parameter (shape {:?}) must be contiguous", self.shape());
        for (name, t) in others {
            self.check_same_kind(op, t);
            assert!(
                t.shape() == self.shape(),
                "{op}: {name} has shape {:?} but the parameter has shape {:?}",
                t.shape(),
                self.shape()
            );
            assert!(!t.shares_storage_with(self), "{op}: {name} shares storage with the parameter");
        }
    }

    /// Overwrites this tensor's elements with `src`'s (same shape and dtype).
    /// A source on another device is copied there first (how checkpoints load into a model
    /// that lives on a GPU).
    pub fn copy_from_(&self, src: &Tensor) {
        let moved;
        let src = if src.device() != self.device() {
            moved = src.to(self.device()).unwrap_or_else(|e| panic!("copy_from_: {e}"));
            &moved
        } else {
            src
        };
        self.check_update_target("copy_from_", &[("source", src)]);
        let src_storage = src.storage();
        let layout = self.layout().clone();
        backend::assign(self.storage_mut().get(), &layout, &src_storage, src.layout());
    }

    /// One fused SGD step on this parameter: `d = g + wd w; buf = momentum buf + d; w -= lr buf`.
    pub fn sgd_step_(&self, grad: &Tensor, momentum_buf: &Tensor, lr: f64, momentum: f64, weight_decay: f64) {
        self.check_update_target("sgd_step_", &[("grad", grad), ("momentum buffer", momentum_buf)]);
        let g = super::dense(grad, grad.layout());
        let mut buf = momentum_buf.storage_mut();
        backend::sgd_update(self.storage_mut().get(), &g, buf.get(), lr, momentum, weight_decay);
    }

    /// One fused Adam / AdamW step on this parameter, updating the moment buffers `m`, `v`.
    pub fn adam_step_(&self, grad: &Tensor, m: &Tensor, v: &Tensor, step: AdamStep) {
        self.check_update_target("adam_step_", &[("grad", grad), ("m", m), ("v", v)]);
        assert!(!m.shares_storage_with(v), "adam_step_: m and v share storage");
        let g = super::dense(grad, grad.layout());
        let (mut m, mut v) = (m.storage_mut(), v.storage_mut());
        backend::adam_update(self.storage_mut().get(), &g, m.get(), v.get(), step);
    }

    /// One fused RMSprop step on this parameter, updating the squared-gradient average.
    pub fn rmsprop_step_(&self, grad: &Tensor, square_avg: &Tensor, lr: f64, alpha: f64, eps: f64, weight_decay: f64) {
        self.check_update_target("rmsprop_step_", &[("grad", grad), ("square average", square_avg)]);
        let g = super::dense(grad, grad.layout());
        let mut sq = square_avg.storage_mut();
        backend::rmsprop_update(self.storage_mut().get(), &g, sq.get(), lr, alpha, eps, weight_decay);
    }
}
