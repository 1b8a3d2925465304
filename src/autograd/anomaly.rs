//! Anomaly mode: find the first op that produced a NaN or an infinity.
//!
//! A NaN spreads: once one element of one tensor is NaN, every op downstream (and every
//! gradient upstream) inherits it, and the loss that finally shows `nan` says nothing about
//! where it started. With anomaly mode on, every op's output is checked as it is produced, and
//! every gradient the backward pass computes is checked as it is produced, so the first
//! non-finite value is caught at its source. The report is a panic (as PyTorch's
//! `detect_anomaly` raises) whose message names:
//!
//! - the op (or, for a gradient, the op whose backward formula produced it), where in its
//!   output the first bad value sits, and the shapes and dtypes of its inputs;
//! - whether its inputs were all finite (then this op made the NaN: a log of a negative, a
//!   division by zero, an overflow) or already held one (then it came from a leaf: data with a
//!   NaN, or a parameter an optimizer step broke);
//! - the chain of recorded ops that led there, newest first, down to a leaf:
//!   `log <- sub <- matmul <- leaf[3, 4]` (following the first input that was itself computed),
//!   then one line per op with its inputs.
//!
//! Turn it on with [`set_anomaly_mode`], for a scope with [`AnomalyGuard`] or
//! [`detect_anomaly`], or for a whole program with the environment variable
//! `GLASSBOX_ANOMALY=1`. The mode is process-wide (one flag for all threads). Off, it costs one
//! relaxed atomic load per op and per backward call. On, every op scans its output, which
//! roughly doubles the cost of cheap elementwise ops: a debugging tool, not a training setting.
//!
//! Anything that deliberately makes infinities trips it too: a `masked_fill` with `-inf` (use a
//! large finite value such as -1e9 instead), or `log` of an exact 0. The built-in losses do
//! not: their internal steps (for example the `log(0)` that binary cross-entropy clamps to -100)
//! are not checked, only their results.
//!
//! ```
//! use glassbox::autograd::detect_anomaly;
//! use glassbox::Tensor;
//! let x = Tensor::from_vec(vec![1.0, -1.0], &[2]);
//! let report = std::panic::catch_unwind(|| detect_anomaly(|| x.log()));
//! # // The message is the panic payload.
//! let message = report.unwrap_err().downcast::<String>().unwrap();
//! assert!(message.contains("`log` produced NaN"), "{message}");
//! ```

use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};

use super::Op;
use crate::tensor::{CpuStorage, Layout, Storage};
use crate::Tensor;

/// The environment variable that turns anomaly mode on for a whole program (`1` or `true`).
pub const ANOMALY_ENV_VAR: &str = "GLASSBOX_ANOMALY";

const UNSET: u8 = 0;
const OFF: u8 = 1;
const ON: u8 = 2;

/// Starts UNSET so the first query reads the environment variable, once.
static MODE: AtomicU8 = AtomicU8::new(UNSET);

/// Most links of the chain printed; deep graphs (long recurrences) end with "...".
const MAX_CHAIN: usize = 24;

thread_local! {
    /// True while an op computes internal values that are not its result (a loss's inner
    /// steps, the backward formulas): those are checked where they become a result.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// True when anomaly mode is on. One relaxed atomic load, except for the very first call,
/// which reads `GLASSBOX_ANOMALY`.
#[inline]
pub fn is_anomaly_mode() -> bool {
    match MODE.load(Ordering::Relaxed) {
        ON => true,
        OFF => false,
        _ => mode_from_env(),
    }
}

#[cold]
fn mode_from_env() -> bool {
    let on = matches!(std::env::var(ANOMALY_ENV_VAR).as_deref(), Ok("1") | Ok("true"));
    // If set_anomaly_mode ran meanwhile, its choice stands.
    let _ = MODE.compare_exchange(UNSET, if on { ON } else { OFF }, Ordering::Relaxed, Ordering::Relaxed);
    MODE.load(Ordering::Relaxed) == ON
}

/// Turns anomaly mode on or off for the whole process (overriding `GLASSBOX_ANOMALY`).
pub fn set_anomaly_mode(on: bool) {
    MODE.store(if on { ON } else { OFF }, Ordering::Relaxed);
}

/// While alive, anomaly mode is on; dropping it restores the previous mode. The mode is
/// process-wide, so guards on several threads at once interfere.
pub struct AnomalyGuard {
    previous: bool,
}

impl AnomalyGuard {
    /// Turns anomaly mode on until the guard is dropped.
    pub fn new() -> AnomalyGuard {
        let previous = is_anomaly_mode();
        set_anomaly_mode(true);
        AnomalyGuard { previous }
    }
}

impl Default for AnomalyGuard {
    fn default() -> Self {
        AnomalyGuard::new()
    }
}

impl Drop for AnomalyGuard {
    fn drop(&mut self) {
        set_anomaly_mode(self.previous);
    }
}

/// Runs `f` with anomaly mode on (restored afterwards, even if `f` panics).
pub fn detect_anomaly<R>(f: impl FnOnce() -> R) -> R {
    let _guard = AnomalyGuard::new();
    f()
}

/// While alive, this thread's ops skip the anomaly check (see `QUIET`).
pub(crate) struct QuietGuard {
    previous: bool,
}

impl QuietGuard {
    pub(crate) fn new() -> QuietGuard {
        QuietGuard { previous: QUIET.with(|q| q.replace(true)) }
    }
}

impl Drop for QuietGuard {
    fn drop(&mut self) {
        QUIET.with(|q| q.set(self.previous));
    }
}

/// Runs `f` without checking the ops inside it: for an op's internal steps, whose result is
/// checked as a whole.
pub(crate) fn quiet<R>(f: impl FnOnce() -> R) -> R {
    let _guard = QuietGuard::new();
    f()
}

/// The first non-finite element of a storage: (index, "NaN" / "Inf" / "-Inf").
fn first_non_finite(storage: &Storage) -> Option<(usize, &'static str)> {
    fn find<T: Copy + Into<f64>>(values: &[T]) -> Option<(usize, &'static str)> {
        let i = values.iter().position(|&v| !v.into().is_finite())?;
        let v: f64 = values[i].into();
        Some((
            i,
            if v.is_nan() {
                "NaN"
            } else if v > 0.0 {
                "Inf"
            } else {
                "-Inf"
            },
        ))
    }
    match &*storage.to_cpu() {
        CpuStorage::F32(v) => find(v),
        CpuStorage::F64(v) => find(v),
    }
}

/// The first non-finite element a tensor's view sees: (position in row-major order, kind).
fn first_non_finite_in(t: &Tensor) -> Option<(usize, &'static str)> {
    first_non_finite(&crate::backend::contiguous(&t.storage(), t.layout()))
}

/// Checks an op's freshly computed output; panics with the report if it holds NaN or Inf.
/// Called by `Tensor::from_op` when anomaly mode is on.
pub(crate) fn check_forward(storage: &Storage, layout: &Layout, op: &Op) {
    if QUIET.with(Cell::get) {
        return;
    }
    if first_non_finite(storage).is_none() {
        return;
    }
    // Found: now locate it in the output's row-major order (the buffer may be laid out
    // otherwise, as softmax over a leading dim is).
    let (index, kind) = first_non_finite(&crate::backend::contiguous(storage, layout)).unwrap_or((0, "NaN"));
    let name = op.kind().name();
    let mut msg =
        format!("anomaly mode: `{name}` produced {kind} (element {index} of its output, shape {:?})\n", layout.shape());
    describe_inputs(&mut msg, op);
    write_chain(&mut msg, name, layout.shape(), op);
    panic!("{msg}");
}

/// Checks the gradient that `op`'s backward formula produced for its input `input_index`
/// (`out` is the op's output, `upstream` the gradient that flowed into it).
pub(crate) fn check_gradient(op: &Op, out: &Tensor, upstream: &Tensor, input_index: usize, grad: &Tensor) {
    let Some((index, kind)) = first_non_finite_in(grad) else { return };
    let name = op.kind().name();
    let mut msg = format!(
        "anomaly mode: the backward of `{name}` produced {kind} in the gradient of its input {input_index} \
         (element {index}, gradient shape {:?})\n",
        grad.shape()
    );
    match first_non_finite_in(upstream) {
        None => {
            let _ = writeln!(msg, "  the upstream gradient (shape {:?}) was finite", upstream.shape());
        }
        Some((i, k)) => {
            let _ =
                writeln!(msg, "  the upstream gradient (shape {:?}) already held {k} at element {i}", upstream.shape());
        }
    }
    describe_inputs(&mut msg, op);
    write_chain(&mut msg, name, out.shape(), op);
    panic!("{msg}");
}

/// Checks the gradient a backward pass starts from (`backward_with_grad`'s argument).
pub(crate) fn check_seed(root: &Tensor, seed: &Tensor) {
    if let Some((index, kind)) = first_non_finite_in(seed) {
        panic!(
            "anomaly mode: the gradient passed to backward_with_grad holds {kind} at element {index} \
             (shape {:?}, for a tensor of shape {:?})",
            seed.shape(),
            root.shape()
        );
    }
}

/// One line per input: shape, dtype, and whether it already held a non-finite value.
fn describe_inputs(msg: &mut String, op: &Op) {
    let inputs = op.inputs();
    let mut all_finite = true;
    for (i, input) in inputs.iter().enumerate() {
        let what = match input.op() {
            Some(producer) => format!("computed by `{}`", producer.kind().name()),
            None => "a leaf".to_string(),
        };
        let state = match first_non_finite_in(input) {
            None => "finite".to_string(),
            Some((at, kind)) => {
                all_finite = false;
                format!("already holds {kind} at element {at}")
            }
        };
        let _ = writeln!(msg, "  input {i}: shape {:?}, {}, {what}, {state}", input.shape(), input.dtype());
    }
    let _ = writeln!(
        msg,
        "  {}",
        if all_finite {
            "its inputs were all finite, so this op made the bad value (log or sqrt of a negative, a division by \
             zero, an overflow?)"
        } else {
            "an input already held a bad value, so it came from earlier: from a leaf (data with a NaN, a \
             parameter an optimizer step or copy_from_ broke), or an op that ran while anomaly mode was off"
        }
    );
}

/// The summary chain `op <- op <- .. <- leaf[shape]`, then one line per op in it.
fn write_chain(msg: &mut String, name: &str, shape: &[usize], op: &Op) {
    // Follow, from each op, its first input that was itself computed by a recorded op (else
    // its first input, a leaf): the path a NaN most often travels.
    let mut links = vec![(name.to_string(), shape.to_vec(), op.inputs().into_iter().cloned().collect::<Vec<_>>())];
    let mut leaf: Option<Vec<usize>> = None;
    let mut truncated = false;
    let mut next = pick_input(op);
    while let Some(t) = next {
        match t.op() {
            Some(producer) => {
                if links.len() == MAX_CHAIN {
                    truncated = true;
                    break;
                }
                links.push((
                    producer.kind().name().to_string(),
                    t.shape().to_vec(),
                    producer.inputs().into_iter().cloned().collect(),
                ));
                next = pick_input(producer);
            }
            None => {
                leaf = Some(t.shape().to_vec());
                next = None;
            }
        }
    }
    let mut summary: Vec<String> = links.iter().map(|(n, _, _)| n.clone()).collect();
    if truncated {
        summary.push("...".to_string());
    }
    if let Some(shape) = leaf {
        summary.push(format!("leaf{shape:?}"));
    }
    let _ = writeln!(msg, "  chain (newest first): {}", summary.join(" <- "));
    for (n, s, inputs) in &links {
        let ins: Vec<String> = inputs
            .iter()
            .map(|t| match t.op() {
                Some(p) => format!("{}{:?}", p.kind().name(), t.shape()),
                None => format!("leaf{:?}", t.shape()),
            })
            .collect();
        let _ = writeln!(msg, "    {n}{s:?} <- ({})", ins.join(", "));
    }
}

fn pick_input(op: &Op) -> Option<Tensor> {
    let inputs = op.inputs();
    inputs.iter().find(|t| t.op().is_some()).or(inputs.first()).map(|t| (*t).clone())
}
