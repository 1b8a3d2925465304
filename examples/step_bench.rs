//! Times three workloads in glassbox and, with `--pytorch PYTHON`, the same three in PyTorch
//! (`scripts/pytorch_steps.py`) in the same run, printing the ratio of each:
//!
//! 1. one MNIST MLP training step (784-256-128-10, ReLU, cross-entropy, Adam, batch 128);
//! 2. one char-level GPT training step (vocab 65, block 128, 4 layers, 4 heads, width 128,
//!    batch 16, AdamW, gradient clipping);
//! 3. causal attention forward + backward (batch 16, 4 heads, T 128, head dim 32);
//! 4. one epoch of the MLP in (1) on the MNIST training set (from `--mnist`, by default the
//!    repository's `data/mnist`; skipped with a warning if it cannot be loaded): reshuffled,
//!    cut into 469 batches of 128, each gathered and normalized (`ImageSet::gather_normalized`,
//!    as the `mnist` example does), then one training step.
//!
//! It also reports, once warm, the buffer pool's misses per run (each a fresh allocation, with
//! its page faults, which a steady training loop should not need), how much the pool grew
//! per run (buffers parked that no later run asks for: also 0 in a steady loop), and every
//! call to the allocator per run with the bytes it asked for (this binary installs a counting
//! global allocator): graph nodes, shapes, small vectors, everything the pool does not serve.
//!
//! `cargo run --release --example step_bench -- --pytorch /path/to/python --threads 2`
//! Timings are medians; run on a quiet machine (other load makes OpenMP's spin-waits, and so
//! PyTorch's multi-threaded figures, collapse).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use glassbox::backend::cpu::pool;
use glassbox::data::{shuffled_batches, ImageSet, Mnist};
use glassbox::nn::{Activation, Gpt, GptConfig, Module, Sequential};
use glassbox::optim::{clip_grad_norm, Adam, AdamW, Optimizer};
use glassbox::rng::Rng;
use glassbox::Tensor;

/// The system allocator, counting calls and bytes: what "allocations per training step" means
/// to the allocator, below the buffer pool.
struct CountingAlloc;

static ALLOC_CALLS: AtomicUsize = AtomicUsize::new(0);
static ALLOC_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call goes to `System` unchanged (same layout, same pointer); the counters are
// atomics and never allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOC_CALLS.fetch_add(1, Ordering::Relaxed);
        ALLOC_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout, which satisfies `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOC_CALLS.fetch_add(1, Ordering::Relaxed);
        ALLOC_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOC_CALLS.fetch_add(1, Ordering::Relaxed);
        ALLOC_BYTES.fetch_add(new_size, Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by this allocator (that is, by `System`) with `layout`,
        // as the caller guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as in `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: CountingAlloc = CountingAlloc;

fn median_ms(mut f: impl FnMut(), warmup: usize, runs: usize) -> f64 {
    for _ in 0..warmup {
        f();
    }
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// What one workload measured.
struct Measured {
    /// Median milliseconds per run.
    ms: f64,
    /// Fresh allocations per run, once warm: buffers the pool could not supply.
    misses: f64,
    /// Growth of the bytes parked in the pool, per run, once warm: buffers a run parks that
    /// no later run asks for (a steady loop should show 0).
    growth_kib: f64,
    /// Calls to the allocator per run (every allocation, not only tensor buffers).
    allocs: f64,
    /// KiB the allocator was asked for per run.
    alloc_kib: f64,
}

/// Times `f` after `warmup` runs and reports the pool's behaviour over the timed runs.
fn measure(f: impl FnMut(), warmup: usize, runs: usize) -> Measured {
    let mut f = f;
    for _ in 0..warmup {
        f();
    }
    let before = pool::stats();
    let (calls, bytes) = (ALLOC_CALLS.load(Ordering::Relaxed), ALLOC_BYTES.load(Ordering::Relaxed));
    let ms = median_ms(&mut f, 0, runs);
    let after = pool::stats();
    // (The timing loop's own vector of `runs` times is one of the counted allocations.)
    let (calls, bytes) = (ALLOC_CALLS.load(Ordering::Relaxed) - calls, ALLOC_BYTES.load(Ordering::Relaxed) - bytes);
    let per_run = |x: f64| x / runs as f64;
    Measured {
        ms,
        misses: per_run((after.misses - before.misses) as f64),
        growth_kib: per_run((after.pooled_bytes as f64 - before.pooled_bytes as f64) / 1024.0),
        allocs: per_run(calls as f64),
        alloc_kib: per_run(bytes as f64 / 1024.0),
    }
}

fn mnist_step() -> impl FnMut() {
    let mut rng = Rng::new(0);
    let model = Sequential::mlp(&[784, 256, 128, 10], Activation::Relu, 0.0, &mut rng);
    let mut opt = Adam::new(model.parameters(), 1e-3);
    let x = Tensor::randn(&[128, 784], 1);
    let y: Vec<usize> = (0..128).map(|_| rng.below(10)).collect();
    move || {
        let loss = model.forward(&x).cross_entropy(&y);
        opt.zero_grad();
        loss.backward();
        opt.step();
    }
}

fn mnist_epoch(train: ImageSet) -> impl FnMut() {
    let mut rng = Rng::new(0);
    let model = Sequential::mlp(&[784, 256, 128, 10], Activation::Relu, 0.0, &mut rng);
    let mut opt = Adam::new(model.parameters(), 1e-3);
    let (mut x_buf, mut y_buf) = (glassbox::tensor::HostBuffer::new(), Vec::new());
    move || {
        for batch in shuffled_batches(train.len(), 128, &mut rng) {
            train.gather_normalized(&batch, &mut x_buf);
            train.gather_labels(&batch, &mut y_buf);
            let x = Tensor::from_buffer(std::mem::take(&mut x_buf), &[batch.len(), 784]);
            let loss = model.forward(&x).cross_entropy(&y_buf);
            opt.zero_grad();
            loss.backward();
            opt.step();
        }
    }
}

fn gpt_step() -> impl FnMut() {
    let mut rng = Rng::new(0);
    let config = GptConfig { vocab_size: 65, block_size: 128, n_layer: 4, n_head: 4, n_embd: 128 };
    let model = Gpt::new(config, &mut rng);
    let params = model.parameters();
    let exempt: Vec<Tensor> = params.iter().filter(|t| t.rank() < 2).cloned().collect();
    let mut opt = AdamW::new(params.clone(), 2e-3).betas(0.9, 0.95).weight_decay(0.1).no_weight_decay_for(&exempt);
    let x: Vec<usize> = (0..16 * 128).map(|_| rng.below(65)).collect();
    let y: Vec<usize> = (0..16 * 128).map(|_| rng.below(65)).collect();
    move || {
        let loss = model.loss(&x, &y, 16, 128);
        opt.zero_grad();
        loss.backward();
        clip_grad_norm(&params, 1.0);
        opt.step();
    }
}

fn attention_fwd_bwd() -> impl FnMut() {
    let [q, k, v] = [1, 2, 3].map(|s| Tensor::randn(&[16, 4, 128, 32], s).requires_grad_());
    let g = Tensor::randn(&[16, 4, 128, 32], 4);
    move || {
        for t in [&q, &k, &v] {
            t.zero_grad();
        }
        Tensor::scaled_dot_product_attention(&q, &k, &v, true).backward_with_grad(&g);
    }
}

/// Runs the PyTorch script and returns (name, milliseconds) pairs.
fn pytorch(python: &str, threads: usize, mnist_dir: &str) -> Result<Vec<(String, f64)>, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pytorch_steps.py");
    let out = Command::new(python)
        .args([script, "--threads", &threads.to_string(), "--mnist", mnist_dir])
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{python} {script} failed:\n{}", String::from_utf8_lossy(&out.stderr)));
    }
    // Lines look like {"name": "gpt_step", "ms": 88.1, ...}; pick the two fields by hand.
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |line: &str, key: &str| -> Option<String> {
        let start = line.find(&format!("\"{key}\": "))? + key.len() + 4;
        let rest = &line[start..];
        let end = rest.find([',', '}'])?;
        Some(rest[..end].trim().trim_matches('"').to_string())
    };
    text.lines()
        .map(|line| {
            let name = field(line, "name").ok_or_else(|| format!("unexpected line {line:?}"))?;
            let ms = field(line, "ms").and_then(|v| v.parse().ok()).ok_or_else(|| format!("no time in {line:?}"))?;
            Ok((name, ms))
        })
        .collect()
}

fn main() {
    let mut flags = common::Flags::from_env();
    let python: Option<String> =
        flags.optional("pytorch", "Python with torch installed: also time PyTorch, in this run");
    let threads: Option<usize> = flags.optional("threads", "worker threads for both engines (default: all cores)");
    let runs: usize = flags.get("runs", 30, "timed runs per workload (medians are reported)");
    let only: Option<String> = flags.optional("only", "time just this workload (for profiling one of them)");
    let mnist_dir: String = flags.get(
        "mnist",
        glassbox::data::mnist::default_dir().display().to_string(),
        "directory of the MNIST files, for the epoch workload",
    );
    flags.finish("glassbox vs PyTorch: training steps and attention, timed in one run");
    let threads = common::init_threads(threads);

    let wanted = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let ours = glassbox::on_worker(|| {
        let mut ours = Vec::new();
        if wanted("mnist_mlp_step") {
            ours.push(("mnist_mlp_step", measure(mnist_step(), 5, runs * 4)));
        }
        if wanted("gpt_step") {
            ours.push(("gpt_step", measure(gpt_step(), 3, runs)));
        }
        if wanted("attention_fwd_bwd") {
            ours.push(("attention_fwd_bwd", measure(attention_fwd_bwd(), 3, runs * 2)));
        }
        if wanted("mnist_epoch") {
            match Mnist::load(std::path::Path::new(&mnist_dir)) {
                Ok(mnist) => ours.push(("mnist_epoch", measure(mnist_epoch(mnist.train), 1, (runs / 6).max(3)))),
                Err(e) => eprintln!("warning: no mnist_epoch: {e}"),
            }
        }
        ours
    });
    let theirs = python.as_deref().map(|p| pytorch(p, threads, &mnist_dir));
    if let Some(Err(e)) = &theirs {
        eprintln!("warning: no PyTorch figures: {e}");
    }
    println!("{threads} threads, medians of {runs}+ runs");
    println!(
        "{:<20} {:>12} {:>16} {:>18} {:>11} {:>14} {:>12} {:>17}",
        "workload",
        "glassbox ms",
        "pool misses/run",
        "pool KiB grown/run",
        "allocs/run",
        "alloc KiB/run",
        "PyTorch ms",
        "glassbox/PyTorch"
    );
    for (name, Measured { ms, misses, growth_kib, allocs, alloc_kib }) in ours {
        let torch_ms = match &theirs {
            Some(Ok(list)) => list.iter().find(|(n, _)| n == name).map(|(_, t)| *t),
            _ => None,
        };
        let (torch_col, ratio_col) = match torch_ms {
            Some(t) => (format!("{t:.2}"), format!("{:.2}x", ms / t)),
            None => ("-".to_string(), "-".to_string()),
        };
        println!(
            "{name:<20} {ms:>12.2} {misses:>16.1} {growth_kib:>18.1} {allocs:>11.0} {alloc_kib:>14.1} {torch_col:>12} {ratio_col:>17}"
        );
    }
}
