//! Elementwise kernels: unary maps, broadcast binary ops, comparisons, `where`, strided copies
//! and dtype casts. All walk their inputs through a [`RowPlan`], so any layout (transposed,
//! sliced, broadcast) is read in place, and write a fresh contiguous output.
//!
//! The arithmetic kernels run each segment through [`isa::dispatch`], so the same loops are
//! also built for AVX-512 and AVX2 + FMA and the best build runs. That matters most for the
//! transcendental ones (GELU, tanh, sigmoid, exp: a polynomial per element, 4 lanes wide in
//! the SSE2 baseline, 16 with AVX-512); plain adds and multiplies are memory-bound either way.

use super::isa::{self, Isa};
use super::strided::RowPlan;
use crate::autograd::backward::{GELU_C, GELU_K};
use crate::autograd::{BinaryOp, UnaryOp};
use crate::tensor::{Float, HostBuffer, Layout};

/// Comparisons producing 1.0 where true and 0.0 where false.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    /// a > b
    Gt,
    /// a >= b
    Ge,
    /// a < b
    Lt,
    /// a <= b
    Le,
    /// a == b
    Eq,
}

impl CompareOp {
    /// The comparison's name, as the front doors call it (`gt`, `ge`, `lt`, `le`, `eq`).
    pub fn name(self) -> &'static str {
        match self {
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
            CompareOp::Eq => "eq",
        }
    }
}

/// Values per step of the unit-stride loops below: with `AHEAD`, each step first asks for
/// the lines [`isa::PREFETCH_AHEAD_BYTES`] ahead of it in every input, then runs a loop of
/// fixed length that the compiler vectorizes. That is for functions with much arithmetic per
/// value (a polynomial, a division): at 4096 x 4096 on 2 threads GELU's forward pass went
/// from 22 to 31 GB/s with it, its backward pass from 23 to 35. A cheap function (an add, a
/// ReLU) keeps enough misses in flight by itself, and the prefetches only cost it 4-8%.
const STEP: usize = 64;

/// Fills `out` with `f` of the elements of `x` starting at `start`, stepping by `stride`;
/// `AHEAD` prefetches (see [`STEP`]).
#[inline(always)]
fn map1<T: Float, const AHEAD: bool>(out: &mut [T], x: &[T], start: usize, stride: usize, f: impl Fn(T) -> T) {
    if stride == 1 {
        let x = &x[start..start + out.len()];
        let (out_steps, out_tail) = out.as_chunks_mut::<STEP>();
        let (x_steps, x_tail) = x.as_chunks::<STEP>();
        for (k, (o, xs)) in out_steps.iter_mut().zip(x_steps).enumerate() {
            if AHEAD {
                isa::prefetch_ahead(x, k * STEP, STEP);
            }
            for (o, &v) in o.iter_mut().zip(xs) {
                *o = f(v);
            }
        }
        for (o, &v) in out_tail.iter_mut().zip(x_tail) {
            *o = f(v);
        }
    } else {
        for (j, o) in out.iter_mut().enumerate() {
            *o = f(x[start + j * stride]);
        }
    }
}

/// Fills `out` with `f(a, b)`; the unit-stride and broadcast-scalar cases get their own loops
/// so the compiler can vectorize them. `AHEAD` prefetches (see [`STEP`]).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn map2<T: Float, const AHEAD: bool>(
    out: &mut [T],
    a: &[T],
    sa: usize,
    ia: usize,
    b: &[T],
    sb: usize,
    ib: usize,
    f: impl Fn(T, T) -> T,
) {
    let n = out.len();
    match (ia, ib) {
        (1, 1) => {
            let (a, b) = (&a[sa..sa + n], &b[sb..sb + n]);
            let (out_steps, out_tail) = out.as_chunks_mut::<STEP>();
            let ((a_steps, a_tail), (b_steps, b_tail)) = (a.as_chunks::<STEP>(), b.as_chunks::<STEP>());
            for (k, ((o, xs), ys)) in out_steps.iter_mut().zip(a_steps).zip(b_steps).enumerate() {
                if AHEAD {
                    isa::prefetch_ahead(a, k * STEP, STEP);
                    isa::prefetch_ahead(b, k * STEP, STEP);
                }
                for ((o, &x), &y) in o.iter_mut().zip(xs).zip(ys) {
                    *o = f(x, y);
                }
            }
            for ((o, &x), &y) in out_tail.iter_mut().zip(a_tail).zip(b_tail) {
                *o = f(x, y);
            }
        }
        (1, 0) => {
            let y = b[sb];
            map1::<T, AHEAD>(out, a, sa, 1, |x| f(x, y));
        }
        (0, 1) => {
            let x = a[sa];
            map1::<T, AHEAD>(out, b, sb, 1, |y| f(x, y));
        }
        _ => {
            for (j, o) in out.iter_mut().enumerate() {
                *o = f(a[sa + j * ia], b[sb + j * ib]);
            }
        }
    }
}

/// The scalar function of a unary op (shared by the kernel and its tests).
#[inline(always)]
pub fn unary_scalar<T: Float>(op: UnaryOp, v: T) -> T {
    match op {
        UnaryOp::Neg => -v,
        UnaryOp::Exp => v.exp(),
        UnaryOp::Log => v.ln(),
        UnaryOp::Sqrt => v.sqrt(),
        UnaryOp::Abs => v.abs(),
        UnaryOp::Relu => v.max(T::ZERO),
        UnaryOp::Sigmoid => sigmoid(v),
        UnaryOp::Tanh => v.tanh(),
        UnaryOp::Gelu => gelu(v),
        UnaryOp::Powf(p) => v.powf(T::from_f64(p)),
        UnaryOp::Affine { mul, add } => v * T::from_f64(mul) + T::from_f64(add),
    }
}

/// 1 / (1 + e^-v), through [`Float::over_one_plus_exp`] (f32's is branch-free, so the loop
/// vectorizes).
#[inline(always)]
fn sigmoid<T: Float>(v: T) -> T {
    T::ONE.over_one_plus_exp(-v)
}

/// `-2u` for GELU's tanh form, `u = K (x + C x^3)`, as `x (-2K - 2KC x^2)`.
#[inline(always)]
fn gelu_minus_2u<T: Float>(x: T) -> T {
    let (a, b) = (T::from_f64(-2.0 * GELU_K), T::from_f64(-2.0 * GELU_K * GELU_C));
    x * (a + b * (x * x))
}

/// GELU (tanh form) is `0.5 x (1 + tanh(u))` with `u = K (x + C x^3)`. Since
/// `0.5 (1 + tanh(u)) = sigmoid(2u)`, it is `x sigmoid(2u) = x / (1 + e^(-2u))`: one
/// exponential and one division, and none of tanh's own arithmetic around them. Saturates by
/// itself: the division gives 0 for very negative x and x for very positive x.
#[inline(always)]
fn gelu<T: Float>(x: T) -> T {
    x.over_one_plus_exp(gelu_minus_2u(x))
}

/// `sigmoid(2u)` as in [`gelu`], which GELU's derivative needs on its own.
#[inline(always)]
fn gelu_sigmoid<T: Float>(x: T) -> T {
    T::ONE.over_one_plus_exp(gelu_minus_2u(x))
}

/// GELU's derivative (tanh form). With `s = sigmoid(2u)` as in [`gelu_sigmoid`],
/// `gelu = x s` and `tanh(u) = 2s - 1`, so the textbook
/// `gelu' = 0.5 (1 + t) + 0.5 x (1 - t^2) K (1 + 3 C x^2)` becomes
/// `gelu' = s + 2 x s (1 - s) K (1 + 3 C x^2)`.
#[inline(always)]
fn gelu_derivative<T: Float>(x: T) -> T {
    let (k2, c3) = (T::from_f64(2.0 * GELU_K), T::from_f64(3.0 * GELU_C));
    let s = gelu_sigmoid(x);
    s + x * s * (T::ONE - s) * k2 * (T::ONE + c3 * (x * x))
}

/// `g * gelu'(x)` for two views of one shape: GELU's backward in one pass.
pub fn gelu_backward<T: Float>(x: &[T], lx: &Layout, g: &[T], lg: &Layout) -> HostBuffer<T> {
    gelu_backward_on(isa::detect(), x, lx, g, lg)
}

/// [`gelu_backward`] compiled for a chosen instruction set (the ladder compares builds).
pub fn gelu_backward_on<T: Float>(isa: Isa, x: &[T], lx: &Layout, g: &[T], lg: &Layout) -> HostBuffer<T> {
    let plan = RowPlan::new([lx, lg]);
    let mut out = super::pool::reuse::<T>(lx.numel());
    let [ix, ig] = plan.inner;
    plan.for_each_segment(&mut out, |seg, [sx, sg]| {
        isa::run_on(
            isa,
            #[inline(always)]
            || map2::<_, true>(seg, x, sx, ix, g, sg, ig, |v, gv| gv * gelu_derivative(v)),
        )
    });
    out
}

/// `op` applied to every element of the view `(x, layout)`.
pub fn unary<T: Float>(op: UnaryOp, x: &[T], layout: &Layout) -> HostBuffer<T> {
    unary_on(isa::detect(), op, x, layout)
}

/// [`unary`] compiled for a chosen instruction set (the ladder compares builds).
pub fn unary_on<T: Float>(isa: Isa, op: UnaryOp, x: &[T], layout: &Layout) -> HostBuffer<T> {
    let plan = RowPlan::new([layout]);
    let mut out = super::pool::reuse::<T>(layout.numel());
    // One match outside the loops, so each arm's loop is compiled (and vectorized) for its
    // own function.
    let i = plan.inner[0];
    plan.for_each_segment(&mut out, |seg, [s]| {
        isa::run_on(
            isa,
            #[inline(always)]
            || match op {
                UnaryOp::Neg => map1::<_, false>(seg, x, s, i, |v| -v),
                UnaryOp::Exp => map1::<_, true>(seg, x, s, i, |v| v.exp()),
                UnaryOp::Log => map1::<_, true>(seg, x, s, i, |v| v.ln()),
                UnaryOp::Sqrt => map1::<_, true>(seg, x, s, i, |v| v.sqrt()),
                UnaryOp::Abs => map1::<_, false>(seg, x, s, i, |v| v.abs()),
                UnaryOp::Relu => map1::<_, false>(seg, x, s, i, |v| if v > T::ZERO { v } else { T::ZERO }),
                UnaryOp::Sigmoid => map1::<_, true>(seg, x, s, i, sigmoid),
                UnaryOp::Tanh => map1::<_, true>(seg, x, s, i, |v| v.tanh()),
                UnaryOp::Gelu => map1::<_, true>(seg, x, s, i, gelu),
                UnaryOp::Powf(p) => {
                    let p = T::from_f64(p);
                    map1::<_, true>(seg, x, s, i, |v| v.powf(p))
                }
                UnaryOp::Affine { mul, add } => {
                    let (m, a) = (T::from_f64(mul), T::from_f64(add));
                    map1::<_, false>(seg, x, s, i, |v| v * m + a)
                }
            },
        )
    });
    out
}

/// `a op b` for two views already broadcast to the same shape.
pub fn binary<T: Float>(op: BinaryOp, a: &[T], la: &Layout, b: &[T], lb: &Layout) -> HostBuffer<T> {
    let plan = RowPlan::new([la, lb]);
    let mut out = super::pool::reuse::<T>(la.numel());
    let [ia, ib] = plan.inner;
    plan.for_each_segment(&mut out, |seg, [sa, sb]| {
        isa::dispatch(
            #[inline(always)]
            || match op {
                BinaryOp::Add => map2::<_, false>(seg, a, sa, ia, b, sb, ib, |x, y| x + y),
                BinaryOp::Sub => map2::<_, false>(seg, a, sa, ia, b, sb, ib, |x, y| x - y),
                BinaryOp::Mul => map2::<_, false>(seg, a, sa, ia, b, sb, ib, |x, y| x * y),
                BinaryOp::Div => map2::<_, false>(seg, a, sa, ia, b, sb, ib, |x, y| x / y),
            },
        )
    });
    out
}

/// 1.0 where `a op b` holds, else 0.0, for two views of the same shape.
pub fn compare<T: Float>(op: CompareOp, a: &[T], la: &Layout, b: &[T], lb: &Layout) -> HostBuffer<T> {
    let plan = RowPlan::new([la, lb]);
    let mut out = super::pool::reuse::<T>(la.numel());
    let [ia, ib] = plan.inner;
    let to_float = |c: bool| if c { T::ONE } else { T::ZERO };
    plan.for_each_segment(&mut out, |seg, [sa, sb]| match op {
        CompareOp::Gt => map2::<_, false>(seg, a, sa, ia, b, sb, ib, |x, y| to_float(x > y)),
        CompareOp::Ge => map2::<_, false>(seg, a, sa, ia, b, sb, ib, |x, y| to_float(x >= y)),
        CompareOp::Lt => map2::<_, false>(seg, a, sa, ia, b, sb, ib, |x, y| to_float(x < y)),
        CompareOp::Le => map2::<_, false>(seg, a, sa, ia, b, sb, ib, |x, y| to_float(x <= y)),
        CompareOp::Eq => map2::<_, false>(seg, a, sa, ia, b, sb, ib, |x, y| to_float(x == y)),
    });
    out
}

/// `on_true` where `cond` is non-zero, else `on_false`; three views of one shape.
pub fn where_cond<T: Float>(
    cond: (&[T], &Layout),
    on_true: (&[T], &Layout),
    on_false: (&[T], &Layout),
) -> HostBuffer<T> {
    let plan = RowPlan::new([cond.1, on_true.1, on_false.1]);
    let mut out = super::pool::reuse::<T>(cond.1.numel());
    let [ic, it, iff] = plan.inner;
    plan.for_each_segment(&mut out, |seg, [sc, st, sf]| {
        for (j, o) in seg.iter_mut().enumerate() {
            *o = if cond.0[sc + j * ic] != T::ZERO { on_true.0[st + j * it] } else { on_false.0[sf + j * iff] };
        }
    });
    out
}

/// The elements of a view, packed contiguously in row-major order.
pub fn copy_strided<T: Float>(x: &[T], layout: &Layout) -> HostBuffer<T> {
    if layout.is_contiguous() {
        let mut out = super::pool::reuse::<T>(layout.numel());
        out.copy_from_slice(&x[layout.offset()..layout.offset() + layout.numel()]);
        return out;
    }
    let plan = RowPlan::new([layout]);
    let mut out = super::pool::reuse::<T>(layout.numel());
    plan.for_each_segment(&mut out, |seg, [s]| map1::<_, false>(seg, x, s, plan.inner[0], |v| v));
    out
}

/// The elements of a view converted to another float type, packed contiguously.
pub fn cast<S: Float, D: Float>(x: &[S], layout: &Layout) -> HostBuffer<D> {
    let plan = RowPlan::new([layout]);
    let mut out = super::pool::reuse::<D>(layout.numel());
    let i = plan.inner[0];
    plan.for_each_segment(&mut out, |seg, [s]| {
        for (j, o) in seg.iter_mut().enumerate() {
            *o = D::from_f64(x[s + j * i].to_f64());
        }
    });
    out
}

/// Adds the view `(src, src_layout)` onto the same-shaped view `dst_layout` of `dst`: how a
/// gradient is accumulated into the one already waiting for the same tensor (or into the
/// slice of it that a `narrow` took), without a new buffer. The destination view must not
/// overlap itself (no stride-0 dims).
pub fn add_assign<T: Float>(dst: &mut [T], dst_layout: &Layout, src: &[T], src_layout: &Layout) {
    if dst_layout.numel() == 0 {
        return;
    }
    let plan = RowPlan::new([dst_layout, src_layout]);
    let [id, is] = plan.inner;
    if dst_layout.is_contiguous() {
        // The whole destination is one run: split it over threads like any elementwise output.
        let start = dst_layout.offset();
        let run = &mut dst[start..start + dst_layout.numel()];
        plan.for_each_segment(run, |seg, [_, ss]| {
            isa::dispatch(
                #[inline(always)]
                || add_row(seg, 1, seg.len(), src, ss, is),
            )
        });
        return;
    }
    for row in 0..plan.rows {
        let (sd, ss) = (plan.starts[0][row], plan.starts[1][row]);
        isa::dispatch(
            #[inline(always)]
            || add_row(&mut dst[sd..], id, plan.row_len, src, ss, is),
        );
    }
}

/// `dst[j * id] += src[ss + j * is]` for `j < n`; unit strides get a loop the compiler
/// vectorizes.
#[inline(always)]
fn add_row<T: Float>(dst: &mut [T], id: usize, n: usize, src: &[T], ss: usize, is: usize) {
    if id == 1 && is == 1 {
        for (d, &s) in dst[..n].iter_mut().zip(&src[ss..ss + n]) {
            *d += s;
        }
    } else {
        for j in 0..n {
            dst[j * id] += src[ss + j * is];
        }
    }
}

/// Copies the view `(src, src_layout)` into the same-shaped view `dst_layout` of `dst`.
/// The destination view must not overlap itself (no stride-0 dims).
pub fn assign<T: Float>(dst: &mut [T], dst_layout: &Layout, src: &[T], src_layout: &Layout) {
    let plan = RowPlan::new([dst_layout, src_layout]);
    let [id, is] = plan.inner;
    for row in 0..plan.rows {
        let (sd, ss) = (plan.starts[0][row], plan.starts[1][row]);
        for j in 0..plan.row_len {
            dst[sd + j * id] = src[ss + j * is];
        }
    }
}
