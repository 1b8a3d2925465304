//! The registry of CPU kernel ladders: every family with several versions (naive to fast)
//! lists them here, with the problem sizes to time them on, a cost model (flops and bytes per
//! size) and a check against a reference. `examples/kernel_report.rs` times every version of
//! every family from this list; `tests/kernels_ladders.rs` validates every version on small odd
//! sizes. A new family joins both by adding its `ladder()` to
//! [`ladders`].
//!
//! A family provides a [`Workload`]: random inputs of one size, built once, that any version
//! can run on, with the reference answer to compare against.

use super::matmul;

/// What bounds a family's speed, and so which measured peak its "% of peak" compares with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// Arithmetic: compare GFLOP/s with the FMA peak (GEMM, attention).
    Compute,
    /// Memory traffic: compare GB/s with the STREAM triad bandwidth (softmax, layernorm, adds).
    Memory,
}

/// One version of a family.
#[derive(Clone, Copy, Debug)]
pub struct LadderVersion {
    /// The name it is selected by (`v1_naive`, ...), as in the family's own `versions()`.
    pub name: &'static str,
    /// Sizes above this many flops are skipped in the report (a naive version that would take
    /// many seconds there); `None` runs everywhere.
    pub max_flops: Option<f64>,
    /// True when the version spreads its work over rayon's threads, so the report compares it
    /// with the all-thread peak rather than the one-thread peak.
    pub parallel: bool,
}

/// Inputs of one size with their reference result, runnable by any version of the family.
pub trait Workload {
    /// The size in the family's terms, e.g. `128x784x256` (M x K x N for matmul).
    fn size(&self) -> String;
    /// Floating-point operations one run performs (counting a fused multiply-add as two).
    fn flops(&self) -> f64;
    /// Bytes one run must move at least: every input read once, every output written once.
    fn bytes(&self) -> f64;
    /// Runs version number `version` (an index into [`Ladder::versions`]) once.
    fn run(&mut self, version: usize);
    /// The largest error of the last run's output against the reference, measured the way
    /// [`Ladder::tolerance`] is stated.
    fn error(&self) -> f64;
    /// Restores the inputs a run updates in place (an optimizer step), so that the next run's
    /// result can be checked against the reference; a no-op for kernels with fresh outputs.
    fn reset(&mut self) {}
}

/// A kernel family and its ladder of versions.
pub struct Ladder {
    /// The family's name (`matmul`).
    pub family: &'static str,
    /// The file holding the versions, for readers of the report.
    pub source: &'static str,
    /// Compute- or memory-bound.
    pub limit: Limit,
    /// Largest acceptable [`Workload::error`], and how it is measured.
    pub tolerance: f64,
    /// What `tolerance` is relative to, in words.
    pub tolerance_note: &'static str,
    /// Versions, slowest first; the last one is what the dispatcher uses.
    pub versions: Vec<LadderVersion>,
    /// Sizes the report times, smallest first.
    pub report_sizes: Vec<Vec<usize>>,
    /// Small, odd sizes the tests validate every version on.
    pub test_sizes: Vec<Vec<usize>>,
    /// Builds random inputs (from `seed`) of one size.
    pub setup: fn(dims: &[usize], seed: u64) -> Box<dyn Workload>,
}

impl Ladder {
    /// True when a [`Workload::error`] is within the tolerance (a NaN error is not).
    pub fn accepts(&self, error: f64) -> bool {
        error <= self.tolerance
    }

    /// True when the report should skip `version` on a problem of `flops`.
    pub fn skips(&self, version: usize, flops: f64) -> bool {
        self.versions[version].max_flops.is_some_and(|max| flops > max)
    }
}

/// Every CPU kernel family with a ladder of versions.
pub fn ladders() -> Vec<Ladder> {
    let mut all = vec![matmul::ladder(), super::conv::ladder()];
    all.extend(super::fused_ladder::ladders());
    all
}
