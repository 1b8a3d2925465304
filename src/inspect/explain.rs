//! The backward explainer's table.
//!
//! [`Tensor::backward_explained`](crate::Tensor::backward_explained) (or [`capture_traces`],
//! or `GLASSBOX_EXPLAIN=1`) records a [`BackwardTrace`]; printing it gives one row per node in
//! the order the engine ran them:
//!
//! ```text
//! backward of a [] f32 tensor: 18 nodes in 3.21 ms, 2.8 MiB held for backward
//!  #  op             output      inputs                  |g| at output  |g| sent to inputs      saved      time
//!  1  cross_entropy  []          [128, 10]                       1.000  0.08400              11.0 KiB    5.4 us
//!     dlogits = (softmax(logits) - onehot(targets)) * g / N  (softmax saved by forward)
//!     kernels: softmax::cross_entropy_backward_rows/f32
//!  2  add            [128, 10]   [128, 10], [10]               0.08400  0.08400, 0.09373      5.0 KiB    7.4 us
//!     da = g, db = g        (each summed over the dims it was broadcast along)
//!     kernels: reduce::reduce[sum]/f32
//! ```
//!
//! (the first two nodes of the MNIST example's first step: `--explain`).
//!
//! - **|g| at output** is the L2 norm of the gradient that reached the node (summed over every
//!   consumer of its output); **|g| sent to inputs** are the norms of what its formula passed
//!   back, one per input (`-` where the input needs no gradient).
//! - **saved** is what the node kept alive since the forward pass so that it could do this:
//!   its inputs and saved values ([`Op::saved_bytes`](crate::autograd::Op::saved_bytes)).
//! - **time** covers the formula and adding its results into gradients already waiting at the
//!   inputs; **kernels** are the backend functions that ran (paths under `backend::cpu`).
//!
//! Leaves appear as `leaf` rows: their step adds the gradient into `.grad()`.

use std::collections::BTreeMap;
use std::fmt;

use super::table::{Align, TextTable};
use super::{format_bytes, format_duration, format_sig};
use crate::backend::KernelCall;

pub use crate::autograd::trace::{capture_traces, BackwardTrace, InputTrace, NodeTrace, LEAF_FORMULA};

/// `calls` with repeats folded: `elementwise::binary[mul]/f32 x2, reduce::reduce[sum]/f32`.
pub fn summarize_kernels(calls: &[KernelCall]) -> String {
    let mut counts: Vec<(KernelCall, usize)> = Vec::new();
    for call in calls {
        match counts.iter_mut().find(|(c, _)| c == call) {
            Some((_, n)) => *n += 1,
            None => counts.push((*call, 1)),
        }
    }
    let parts: Vec<String> =
        counts.iter().map(|(c, n)| if *n == 1 { c.to_string() } else { format!("{c} x{n}") }).collect();
    if parts.is_empty() {
        "none (views and leaves that only hand the gradient on)".to_string()
    } else {
        parts.join(", ")
    }
}

fn shape(s: &[usize]) -> String {
    format!("{s:?}")
}

impl fmt::Display for BackwardTrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "backward of a {} {} tensor: {} nodes in {}, {} held for backward",
            shape(&self.root_shape),
            self.dtype,
            self.nodes.len(),
            format_duration(self.total_time),
            format_bytes(self.saved_bytes())
        )?;
        let mut table = TextTable::new(&[
            ("#", Align::Right),
            ("op", Align::Left),
            ("output", Align::Left),
            ("inputs", Align::Left),
            ("|g| at output", Align::Right),
            ("|g| sent to inputs", Align::Left),
            ("saved", Align::Right),
            ("time", Align::Right),
        ]);
        for (i, node) in self.nodes.iter().enumerate() {
            let inputs: Vec<String> = node.inputs.iter().map(|x| shape(&x.shape)).collect();
            let sent: Vec<String> =
                node.inputs.iter().map(|x| x.grad_norm.map(format_sig).unwrap_or_else(|| "-".into())).collect();
            table.row(vec![
                (i + 1).to_string(),
                node.name().to_string(),
                shape(&node.shape),
                inputs.join(", "),
                format_sig(node.grad_norm),
                sent.join(", "),
                format_bytes(node.saved_bytes),
                format_duration(node.time),
            ]);
            table.note(node.formula());
            table.note(format!("kernels: {}", summarize_kernels(&node.kernels)));
        }
        write!(f, "{table}")?;
        let mut by_op: BTreeMap<&str, (usize, std::time::Duration)> = BTreeMap::new();
        for node in &self.nodes {
            let entry = by_op.entry(node.name()).or_default();
            entry.0 += 1;
            entry.1 += node.time;
        }
        let mut slowest: Vec<_> = by_op.into_iter().collect();
        slowest.sort_by_key(|(_, (_, time))| std::cmp::Reverse(*time));
        let summary: Vec<String> = slowest
            .iter()
            .take(4)
            .map(|(op, (n, t))| format!("{op} {} ({n} node{})", format_duration(*t), if *n == 1 { "" } else { "s" }))
            .collect();
        writeln!(f, "most time: {}", summary.join(", "))
    }
}
