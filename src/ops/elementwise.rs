//! Elementwise ops: unary functions, broadcast arithmetic, comparisons and `where`.

use crate::autograd::{BinaryOp, Op, UnaryOp};
use crate::backend::{self, CompareOp};
use crate::tensor::{broadcast_shapes, Layout};
use crate::Tensor;

impl Tensor {
    fn unary_op(&self, op: UnaryOp) -> Tensor {
        let out = backend::unary(op, &self.storage(), self.layout());
        Tensor::from_op(out, Layout::contiguous(self.shape()), Op::Unary(op, self.clone()))
    }

    /// -x
    pub fn neg(&self) -> Tensor {
        self.unary_op(UnaryOp::Neg)
    }
    /// e^x
    pub fn exp(&self) -> Tensor {
        self.unary_op(UnaryOp::Exp)
    }
    /// Natural logarithm.
    pub fn log(&self) -> Tensor {
        self.unary_op(UnaryOp::Log)
    }
    /// Square root.
    pub fn sqrt(&self) -> Tensor {
        self.unary_op(UnaryOp::Sqrt)
    }
    /// |x| (gradient taken as 0 at 0).
    pub fn abs(&self) -> Tensor {
        self.unary_op(UnaryOp::Abs)
    }
    /// max(x, 0)
    pub fn relu(&self) -> Tensor {
        self.unary_op(UnaryOp::Relu)
    }
    /// 1 / (1 + e^-x), overflow-free for any x.
    pub fn sigmoid(&self) -> Tensor {
        self.unary_op(UnaryOp::Sigmoid)
    }
    /// Hyperbolic tangent.
    pub fn tanh(&self) -> Tensor {
        self.unary_op(UnaryOp::Tanh)
    }
    /// GELU in its tanh form, `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))` (GPT-2's;
    /// PyTorch's `gelu(approximate="tanh")`).
    pub fn gelu(&self) -> Tensor {
        self.unary_op(UnaryOp::Gelu)
    }
    /// x^p
    pub fn powf(&self, p: f64) -> Tensor {
        self.unary_op(UnaryOp::Powf(p))
    }
    /// x * mul + add, in one pass.
    pub fn affine(&self, mul: f64, add: f64) -> Tensor {
        self.unary_op(UnaryOp::Affine { mul, add })
    }
    /// x * s
    pub fn mul_scalar(&self, s: f64) -> Tensor {
        self.affine(s, 0.0)
    }
    /// x + s
    pub fn add_scalar(&self, s: f64) -> Tensor {
        self.affine(1.0, s)
    }

    /// The shape `self` and `other` broadcast to, with both layouts stretched to it; panics
    /// naming `op` and both shapes when they are incompatible.
    fn broadcast_pair(&self, op: &str, other: &Tensor) -> (Vec<usize>, Layout, Layout) {
        self.check_same_kind(op, other);
        let shape = broadcast_shapes(self.shape(), other.shape()).unwrap_or_else(|| {
            panic!(
                "{op}: shapes {:?} and {:?} cannot be broadcast together (trailing dims must be equal or 1)",
                self.shape(),
                other.shape()
            )
        });
        let la = self.layout().broadcast_to(&shape).expect("checked by broadcast_shapes");
        let lb = other.layout().broadcast_to(&shape).expect("checked by broadcast_shapes");
        (shape, la, lb)
    }

    fn binary_op(&self, other: &Tensor, op: BinaryOp, name: &str) -> Tensor {
        let (shape, la, lb) = self.broadcast_pair(name, other);
        let out = backend::binary(op, &self.storage(), &la, &other.storage(), &lb);
        Tensor::from_op(out, Layout::contiguous(&shape), Op::Binary(op, self.clone(), other.clone()))
    }

    /// Elementwise a + b, broadcasting (NumPy rules).
    pub fn add(&self, other: &Tensor) -> Tensor {
        self.binary_op(other, BinaryOp::Add, "add")
    }
    /// Elementwise a - b, broadcasting.
    pub fn sub(&self, other: &Tensor) -> Tensor {
        self.binary_op(other, BinaryOp::Sub, "sub")
    }
    /// Elementwise a * b, broadcasting.
    pub fn mul(&self, other: &Tensor) -> Tensor {
        self.binary_op(other, BinaryOp::Mul, "mul")
    }
    /// Elementwise a / b, broadcasting.
    pub fn div(&self, other: &Tensor) -> Tensor {
        self.binary_op(other, BinaryOp::Div, "div")
    }

    fn compare_op(&self, other: &Tensor, op: CompareOp, name: &str) -> Tensor {
        let (shape, la, lb) = self.broadcast_pair(name, other);
        let out = backend::compare(op, &self.storage(), &la, &other.storage(), &lb);
        Tensor::from_storage(out, Layout::contiguous(&shape))
    }

    fn scalar_like(&self, value: f64) -> Tensor {
        Tensor::full_on(&[], value, self.dtype(), self.device())
    }

    /// 1.0 where a > b, else 0.0 (a mask; not differentiable).
    pub fn gt(&self, other: &Tensor) -> Tensor {
        self.compare_op(other, CompareOp::Gt, "gt")
    }
    /// 1.0 where a >= b, else 0.0.
    pub fn ge(&self, other: &Tensor) -> Tensor {
        self.compare_op(other, CompareOp::Ge, "ge")
    }
    /// 1.0 where a < b, else 0.0.
    pub fn lt(&self, other: &Tensor) -> Tensor {
        self.compare_op(other, CompareOp::Lt, "lt")
    }
    /// 1.0 where a <= b, else 0.0.
    pub fn le(&self, other: &Tensor) -> Tensor {
        self.compare_op(other, CompareOp::Le, "le")
    }
    /// 1.0 where a == b, else 0.0.
    pub fn eq(&self, other: &Tensor) -> Tensor {
        self.compare_op(other, CompareOp::Eq, "eq")
    }
    /// 1.0 where x > s, else 0.0.
    pub fn gt_scalar(&self, s: f64) -> Tensor {
        self.gt(&self.scalar_like(s))
    }
    /// 1.0 where x < s, else 0.0.
    pub fn lt_scalar(&self, s: f64) -> Tensor {
        self.lt(&self.scalar_like(s))
    }
    /// 1.0 where x == s, else 0.0.
    pub fn eq_scalar(&self, s: f64) -> Tensor {
        self.eq(&self.scalar_like(s))
    }

    /// `on_true` where `cond` is non-zero, else `on_false`; all three broadcast together.
    /// The gradient flows to whichever branch was chosen.
    pub fn where_cond(cond: &Tensor, on_true: &Tensor, on_false: &Tensor) -> Tensor {
        on_true.check_same_kind("where", on_false);
        on_true.check_same_kind("where", cond);
        let shape = broadcast_shapes(cond.shape(), on_true.shape())
            .and_then(|s| broadcast_shapes(&s, on_false.shape()))
            .unwrap_or_else(|| {
                panic!(
                    "where: condition {:?}, on_true {:?} and on_false {:?} cannot be broadcast together",
                    cond.shape(),
                    on_true.shape(),
                    on_false.shape()
                )
            });
        let stretch = |t: &Tensor| t.layout().broadcast_to(&shape).expect("checked by broadcast_shapes");
        let out = backend::where_cond(
            (&cond.storage(), &stretch(cond)),
            (&on_true.storage(), &stretch(on_true)),
            (&on_false.storage(), &stretch(on_false)),
        );
        let op = Op::Where { cond: cond.detach(), on_true: on_true.clone(), on_false: on_false.clone() };
        Tensor::from_op(out, Layout::contiguous(&shape), op)
    }

    /// `value` where `mask` is non-zero, else the element of `self` (mask broadcasts).
    pub fn masked_fill(&self, mask: &Tensor, value: f64) -> Tensor {
        Tensor::where_cond(mask, &self.scalar_like(value), self)
    }

    /// max(x, min), with the gradient passing where x > min.
    pub fn clamp_min(&self, min: f64) -> Tensor {
        Tensor::where_cond(&self.gt_scalar(min), self, &self.scalar_like(min))
    }
}

macro_rules! operator {
    ($trait:ident, $method:ident, $call:ident) => {
        impl std::ops::$trait<&Tensor> for &Tensor {
            type Output = Tensor;
            fn $method(self, rhs: &Tensor) -> Tensor {
                self.$call(rhs)
            }
        }
        impl std::ops::$trait<Tensor> for Tensor {
            type Output = Tensor;
            fn $method(self, rhs: Tensor) -> Tensor {
                (&self).$call(&rhs)
            }
        }
    };
}

operator!(Add, add, add);
operator!(Sub, sub, sub);
operator!(Mul, mul, mul);
operator!(Div, div, div);

impl std::ops::Neg for &Tensor {
    type Output = Tensor;
    fn neg(self) -> Tensor {
        Tensor::neg(self)
    }
}

/// `g * gelu'(x)` in one pass (the formula is in `backend/cpu/elementwise.rs`).
pub(crate) fn gelu_backward(x: &Tensor, g: &Tensor) -> Tensor {
    let out = backend::gelu_backward(&x.storage(), x.layout(), &g.storage(), g.layout());
    Tensor::from_storage(out, Layout::contiguous(x.shape()))
}
