//! The ladders of the memory-bound row kernels: softmax, log-softmax, cross-entropy, layer norm
//! (forward and backward), GELU (forward and backward) and the fused AdamW update.
//!
//! Each family's versions are the ones its kernel file describes: where a textbook version
//! exists (`v1_naive`, the three-pass softmax), it comes first; then the product kernel built
//! for the x86-64 baseline (`*_portable`, SSE2) and the same body dispatched to AVX-512 or
//! AVX2 + FMA at run time (`*_simd`, what the ops use). All are held to the bytes they must
//! move (every input read once, every output written once) against the STREAM triad.
//!
//! The reference is the family's first version run in f64 on the same inputs (f64 uses the C
//! library's exp and tanh), so the check covers both the f32 rounding and the SIMD builds.

use std::sync::OnceLock;

use super::isa::{self, Isa};
use super::ladder::{Ladder, LadderVersion, Limit, Workload};
use super::optim::AdamStep;
use crate::autograd::UnaryOp;
use crate::tensor::{Float, HostBuffer, Layout};

/// Largest accepted `|y - y64| / max(1, |y64|)`: f32 carries about 6e-8 relative error per
/// rounding, and the row sums (up to 4096 terms) and the polynomial exp / tanh add a few
/// hundred roundings at worst; 1e-4 leaves room for that and still catches a wrong index.
const TOLERANCE: f64 = 1e-4;

/// Runs version `version` of a family on `[rows, cols]` inputs, returning its outputs; a
/// version that updates in place (AdamW) returns none and leaves its result in `inputs`.
type RunFn<T> = fn(version: usize, rows: usize, cols: usize, inputs: &mut [HostBuffer<T>]) -> Vec<HostBuffer<T>>;

/// One family of the ladder: its name, source file and versions, how to build its inputs,
/// its cost model, and its run function in f32 (timed) and f64 (the reference).
struct Family {
    name: &'static str,
    source: &'static str,
    versions: &'static [&'static str],
    /// True when a run updates its inputs in place (AdamW); `reset` restores them.
    in_place: bool,
    /// `[rows, cols] -> inputs`, built from a seed (all f32).
    inputs: fn(rows: usize, cols: usize, seed: u64) -> Vec<HostBuffer<f32>>,
    /// `[rows, cols] -> (bytes, flops)` of one run.
    cost: fn(rows: usize, cols: usize) -> (f64, f64),
    run32: RunFn<f32>,
    run64: RunFn<f64>,
    report_sizes: Vec<Vec<usize>>,
}

const NAIVE_PORTABLE_SIMD: &[&str] = &["v1_naive", "v2_portable", "v3_simd"];
const PORTABLE_SIMD: &[&str] = &["v1_portable", "v2_simd"];

/// The instruction set a version name asks for (`*_portable`: the baseline build).
fn isa_of(versions: &[&str], version: usize) -> Isa {
    if versions[version].ends_with("portable") {
        Isa::Portable
    } else {
        isa::detect()
    }
}

/// Every family with its ladder; see the module doc. (`setup` must be a plain `fn`, so each
/// entry names its family twice.)
pub fn ladders() -> Vec<Ladder> {
    vec![
        ladder(softmax(), |dims, seed| workload(softmax(), dims, seed)),
        ladder(log_softmax(), |dims, seed| workload(log_softmax(), dims, seed)),
        ladder(cross_entropy(), |dims, seed| workload(cross_entropy(), dims, seed)),
        ladder(layernorm_forward(), |dims, seed| workload(layernorm_forward(), dims, seed)),
        ladder(layernorm_backward(), |dims, seed| workload(layernorm_backward(), dims, seed)),
        ladder(gelu_forward(), |dims, seed| workload(gelu_forward(), dims, seed)),
        ladder(gelu_backward(), |dims, seed| workload(gelu_backward(), dims, seed)),
        ladder(adamw(), |dims, seed| workload(adamw(), dims, seed)),
    ]
}

/// Large rows, far beyond L2 (64 MiB per f32 array).
const BIG: [usize; 2] = [4096, 4096];
/// The GPT's shapes: 16 x 128 tokens by vocab 65 (softmax, cross-entropy) and width 128.
const GPT_LOGITS: [usize; 2] = [2048, 65];
const GPT_WIDTH: [usize; 2] = [2048, 128];

fn softmax() -> Family {
    Family {
        name: "softmax",
        source: "src/backend/cpu/softmax.rs",
        versions: NAIVE_PORTABLE_SIMD,
        in_place: false,
        inputs: |r, c, seed| vec![randn(r * c, seed, 3.0)],
        // An exp counted as one flop.
        cost: |r, c| (8.0 * (r * c) as f64, 5.0 * (r * c) as f64),
        run32: run_softmax::<f32, false>,
        run64: run_softmax::<f64, false>,
        report_sizes: vec![GPT_LOGITS.to_vec(), BIG.to_vec()],
    }
}

fn log_softmax() -> Family {
    Family { name: "log_softmax", run32: run_softmax::<f32, true>, run64: run_softmax::<f64, true>, ..softmax() }
}

fn cross_entropy() -> Family {
    // Reads the logits, writes the softmax the backward pass needs (targets are implicit).
    Family { name: "cross_entropy", run32: run_cross_entropy::<f32>, run64: run_cross_entropy::<f64>, ..softmax() }
}

fn layernorm_forward() -> Family {
    Family {
        name: "layernorm_forward",
        source: "src/backend/cpu/layernorm.rs",
        versions: PORTABLE_SIMD,
        in_place: false,
        inputs: |r, c, seed| vec![randn(r * c, seed, 1.0), randn(c, seed + 1, 1.0), randn(c, seed + 2, 1.0)],
        // Reads x, w, b; writes y, mean, rstd.
        cost: |r, c| (4.0 * (2 * r * c + 2 * c + 2 * r) as f64, 8.0 * (r * c) as f64),
        run32: run_layernorm_forward::<f32>,
        run64: run_layernorm_forward::<f64>,
        report_sizes: vec![GPT_WIDTH.to_vec(), BIG.to_vec()],
    }
}

fn layernorm_backward() -> Family {
    Family {
        name: "layernorm_backward",
        inputs: layernorm_backward_inputs,
        // Reads x, g, w, mean, rstd; writes dx, dw, db.
        cost: |r, c| (4.0 * (3 * r * c + 3 * c + 2 * r) as f64, 16.0 * (r * c) as f64),
        run32: run_layernorm_backward::<f32>,
        run64: run_layernorm_backward::<f64>,
        ..layernorm_forward()
    }
}

fn gelu_forward() -> Family {
    Family {
        name: "gelu_forward",
        source: "src/backend/cpu/elementwise.rs",
        versions: PORTABLE_SIMD,
        in_place: false,
        inputs: |r, c, seed| vec![randn(r * c, seed, 2.0)],
        // An exponential counted as one flop.
        cost: |r, c| (8.0 * (r * c) as f64, 8.0 * (r * c) as f64),
        run32: run_gelu_forward::<f32>,
        run64: run_gelu_forward::<f64>,
        // The MLP's hidden layer: 2048 tokens x 512.
        report_sizes: vec![vec![2048, 512], BIG.to_vec()],
    }
}

fn gelu_backward() -> Family {
    Family {
        name: "gelu_backward",
        inputs: |r, c, seed| vec![randn(r * c, seed, 2.0), randn(r * c, seed + 1, 1.0)],
        cost: |r, c| (12.0 * (r * c) as f64, 16.0 * (r * c) as f64),
        run32: run_gelu_backward::<f32>,
        run64: run_gelu_backward::<f64>,
        ..gelu_forward()
    }
}

fn adamw() -> Family {
    Family {
        name: "adamw",
        source: "src/backend/cpu/optim.rs",
        versions: PORTABLE_SIMD,
        in_place: true,
        inputs: |r, c, seed| {
            let n = r * c;
            // The second moment must be >= 0.
            let v = randn(n, seed + 3, 1e-3).iter().map(|x| x * x).collect();
            vec![randn(n, seed, 0.1), randn(n, seed + 1, 1e-2), randn(n, seed + 2, 1e-3), v]
        },
        // Reads w, g, m, v; writes w, m, v.
        cost: |r, c| (28.0 * (r * c) as f64, 14.0 * (r * c) as f64),
        run32: run_adamw::<f32>,
        run64: run_adamw::<f64>,
        // About the GPT's 0.8M parameters, then 16M.
        report_sizes: vec![vec![6144, 128], BIG.to_vec()],
    }
}

fn ladder(f: Family, setup: fn(&[usize], u64) -> Box<dyn Workload>) -> Ladder {
    Ladder {
        family: f.name,
        source: f.source,
        limit: Limit::Memory,
        tolerance: TOLERANCE,
        tolerance_note: "|y - y64| / max(1, |y64|) over every output (y64: the first version in f64)",
        versions: f
            .versions
            .iter()
            .map(|&name| LadderVersion { name, max_flops: None, parallel: name != "v1_naive" })
            .collect(),
        report_sizes: f.report_sizes,
        test_sizes: vec![vec![1, 1], vec![3, 7], vec![5, 129], vec![2, 1000]],
        setup,
    }
}

fn workload(f: Family, dims: &[usize], seed: u64) -> Box<dyn Workload> {
    assert!(dims.len() == 2, "{} ladder: sizes are [rows, cols], got {dims:?}", f.name);
    let (rows, cols) = (dims[0], dims[1]);
    let inputs = (f.inputs)(rows, cols, seed);
    let (bytes, flops) = (f.cost)(rows, cols);
    Box::new(RowWorkload {
        rows,
        cols,
        versions: f.versions,
        in_place: f.in_place,
        initial: if f.in_place { inputs.clone() } else { Vec::new() },
        inputs,
        outputs: None,
        exact: OnceLock::new(),
        run: f.run32,
        run64: f.run64,
        bytes,
        flops,
    })
}

/// Inputs of one size, the last run's outputs and the f64 reference.
struct RowWorkload {
    rows: usize,
    cols: usize,
    versions: &'static [&'static str],
    in_place: bool,
    /// The inputs before any run (kept only for in-place kernels, for `reset`).
    initial: Vec<HostBuffer<f32>>,
    inputs: Vec<HostBuffer<f32>>,
    /// `None` until a run (or after a reset), so an unchecked output cannot pass.
    outputs: Option<Vec<HostBuffer<f32>>>,
    /// The reference outputs (or, in place, the updated inputs), computed at the first check.
    exact: OnceLock<Vec<HostBuffer<f64>>>,
    run: RunFn<f32>,
    run64: RunFn<f64>,
    bytes: f64,
    flops: f64,
}

impl RowWorkload {
    /// The first version's result in f64 on the same (f32) inputs.
    fn exact(&self) -> &[HostBuffer<f64>] {
        self.exact.get_or_init(|| {
            let start = if self.in_place { &self.initial } else { &self.inputs };
            let mut state: Vec<HostBuffer<f64>> = start.iter().map(|v| v.iter().map(|&x| x as f64).collect()).collect();
            let outputs = (self.run64)(0, self.rows, self.cols, &mut state);
            if self.in_place {
                state
            } else {
                outputs
            }
        })
    }
}

impl Workload for RowWorkload {
    fn size(&self) -> String {
        format!("{}x{}", self.rows, self.cols)
    }

    fn flops(&self) -> f64 {
        self.flops
    }

    fn bytes(&self) -> f64 {
        self.bytes
    }

    fn run(&mut self, version: usize) {
        assert!(version < self.versions.len(), "no version {version}");
        // The previous outputs go back to the buffer pool first, as a training step's would.
        for buffer in self.outputs.take().into_iter().flatten() {
            super::pool::give_back(buffer);
        }
        let out = (self.run)(version, self.rows, self.cols, &mut self.inputs);
        self.outputs = Some(if self.in_place { Vec::new() } else { out });
    }

    fn error(&self) -> f64 {
        let Some(outputs) = &self.outputs else { return f64::NAN };
        let ours = if self.in_place { &self.inputs } else { outputs };
        let mut worst = 0.0f64;
        for (y, e) in ours.iter().zip(self.exact()) {
            if y.len() != e.len() {
                return f64::NAN;
            }
            for (&a, &b) in y.iter().zip(e) {
                let err = (a as f64 - b).abs() / b.abs().max(1.0);
                // A NaN must fail the check, and `max` would drop it.
                if err.is_nan() {
                    return f64::NAN;
                }
                worst = worst.max(err);
            }
        }
        worst
    }

    fn reset(&mut self) {
        if self.in_place {
            for (x, x0) in self.inputs.iter_mut().zip(&self.initial) {
                x.copy_from_slice(x0);
            }
            self.outputs = None;
        }
    }
}

/// `n` normal numbers times `scale`, from `seed`.
fn randn(n: usize, seed: u64, scale: f64) -> HostBuffer<f32> {
    let mut rng = crate::rng::Rng::new(seed);
    (0..n).map(|_| (rng.normal() * scale) as f32).collect()
}

/// x, w, g and the row statistics of x (from the forward kernel), as the backward pass gets them.
fn layernorm_backward_inputs(rows: usize, cols: usize, seed: u64) -> Vec<HostBuffer<f32>> {
    let (x, w) = (randn(rows * cols, seed, 1.0), randn(cols, seed + 1, 1.0));
    let b = HostBuffer::zeroed(cols);
    let (_, mean, rstd) = super::layernorm::layer_norm(&x, &w, &b, cols, LAYERNORM_EPS);
    vec![x, w, mean, rstd, randn(rows * cols, seed + 2, 1.0)]
}

const LAYERNORM_EPS: f64 = 1e-5;

/// The cross-entropy targets: a fixed spread over the columns.
fn target_of(row: usize, cols: usize) -> usize {
    (row * 7919) % cols
}

fn run_softmax<T: Float, const LOG: bool>(
    version: usize,
    _rows: usize,
    cols: usize,
    x: &mut [HostBuffer<T>],
) -> Vec<HostBuffer<T>> {
    let y = match version {
        0 => super::softmax::softmax_rows_naive(&x[0], cols, LOG),
        v => super::softmax::softmax_rows_on(isa_of(NAIVE_PORTABLE_SIMD, v), &x[0], cols, LOG),
    };
    vec![y]
}

fn run_cross_entropy<T: Float>(
    version: usize,
    rows: usize,
    cols: usize,
    x: &mut [HostBuffer<T>],
) -> Vec<HostBuffer<T>> {
    let targets: Vec<usize> = (0..rows).map(|r| target_of(r, cols)).collect();
    let (loss, probs) = match version {
        0 => super::softmax::cross_entropy_rows_naive(&x[0], cols, &targets),
        v => super::softmax::cross_entropy_rows_on(isa_of(NAIVE_PORTABLE_SIMD, v), &x[0], cols, &targets),
    };
    vec![probs, HostBuffer::from_slice(&[T::from_f64(loss)])]
}

fn run_layernorm_forward<T: Float>(
    version: usize,
    _rows: usize,
    cols: usize,
    x: &mut [HostBuffer<T>],
) -> Vec<HostBuffer<T>> {
    let isa = isa_of(PORTABLE_SIMD, version);
    let (y, mean, rstd) = super::layernorm::layer_norm_on(isa, &x[0], &x[1], &x[2], cols, LAYERNORM_EPS);
    vec![y, mean, rstd]
}

fn run_layernorm_backward<T: Float>(
    version: usize,
    _rows: usize,
    cols: usize,
    x: &mut [HostBuffer<T>],
) -> Vec<HostBuffer<T>> {
    let isa = isa_of(PORTABLE_SIMD, version);
    let (dx, dw, db) = super::layernorm::layer_norm_backward_on(isa, &x[0], &x[1], &x[2], &x[3], &x[4], cols);
    vec![dx, dw, db]
}

fn run_gelu_forward<T: Float>(version: usize, rows: usize, cols: usize, x: &mut [HostBuffer<T>]) -> Vec<HostBuffer<T>> {
    let layout = Layout::contiguous(&[rows, cols]);
    vec![super::elementwise::unary_on(isa_of(PORTABLE_SIMD, version), UnaryOp::Gelu, &x[0], &layout)]
}

fn run_gelu_backward<T: Float>(
    version: usize,
    rows: usize,
    cols: usize,
    x: &mut [HostBuffer<T>],
) -> Vec<HostBuffer<T>> {
    let l = Layout::contiguous(&[rows, cols]);
    vec![super::elementwise::gelu_backward_on(isa_of(PORTABLE_SIMD, version), &x[0], &l, &x[1], &l)]
}

/// One AdamW step (GPT-like hyper-parameters, step 10) on `[w, g, m, v]`, in place.
fn run_adamw<T: Float>(version: usize, _rows: usize, _cols: usize, x: &mut [HostBuffer<T>]) -> Vec<HostBuffer<T>> {
    let h = AdamStep { lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1, decoupled: true, step: 10 };
    let [w, g, m, v] = x else { panic!("adamw ladder: expected inputs [w, g, m, v]") };
    super::optim::adam_on(isa_of(PORTABLE_SIMD, version), w, g, m, v, h);
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No build may change a result: the wide builds vectorize the same operations in the same
    /// order (no fused multiply-add, sums in the same lanes), so a model trains the same on any
    /// x86-64 machine. Every build this CPU can run (AVX2 + FMA included, which the ladders
    /// never pick on an AVX-512 machine) must give the portable build's bits, for every kernel
    /// behind the ladders.
    #[test]
    fn every_supported_isa_gives_the_portable_bits() {
        use crate::backend::cpu::{elementwise, layernorm, optim, softmax};
        let (rows, cols) = (19, 203);
        let x = randn(rows * cols, 1, 2.0);
        let g = randn(rows * cols, 2, 1.0);
        let w = randn(cols, 3, 1.0);
        let targets: Vec<usize> = (0..rows).map(|r| target_of(r, cols)).collect();
        let l = Layout::contiguous(&[rows, cols]);
        let run_all = |isa: Isa| -> Vec<HostBuffer<f32>> {
            let (loss, probs) = softmax::cross_entropy_rows_on(isa, &x, cols, &targets);
            let (y, mean, rstd) = layernorm::layer_norm_on(isa, &x, &w, &w, cols, LAYERNORM_EPS);
            let (dx, dw, db) = layernorm::layer_norm_backward_on(isa, &x, &w, &mean, &rstd, &g, cols);
            let (mut p, mut m, mut v) = (x.clone(), g.clone(), g.iter().map(|a| a * a).collect::<HostBuffer<f32>>());
            let h =
                AdamStep { lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1, decoupled: true, step: 3 };
            optim::adam_on(isa, &mut p, &g, &mut m, &mut v, h);
            vec![
                softmax::softmax_rows_on(isa, &x, cols, false),
                softmax::softmax_rows_on(isa, &x, cols, true),
                probs,
                HostBuffer::from_slice(&[loss as f32]),
                y,
                mean,
                rstd,
                dx,
                dw,
                db,
                elementwise::unary_on(isa, UnaryOp::Gelu, &x, &l),
                elementwise::gelu_backward_on(isa, &x, &l, &g, &l),
                p,
                m,
                v,
            ]
        };
        let bits = |outs: Vec<HostBuffer<f32>>| -> Vec<Vec<u32>> {
            outs.iter().map(|o| o.iter().map(|v| v.to_bits()).collect()).collect()
        };
        let portable = bits(run_all(Isa::Portable));
        for isa in [Isa::Avx2Fma, Isa::Avx512].into_iter().filter(|&i| isa::supported(i)) {
            assert!(bits(run_all(isa)) == portable, "{isa:?} build differs from the portable one");
        }
    }
}
