//! Determinism on the CPU: the same seed and thread count give bit-identical weights after N
//! training steps; and, because every parallel kernel here splits work by *output* element (each
//! output is computed by one thread, in a fixed order), a different thread count gives the very
//! same bits too. The kernel-level test pins that down op by op, at sizes large enough to take
//! each kernel's parallel path (see the thresholds in `backend/cpu`).

mod common;

use common::training::{OptKind, Run, Task};
use glassbox::optim::{Adam, Optimizer};
use glassbox::rng::Rng;
use glassbox::{DType, Tensor};

/// Runs `f` on a rayon pool of exactly `threads` threads.
fn with_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool").install(f)
}

/// Weights (as bits) after `steps` training steps of an MLP big enough that its matmuls,
/// elementwise ops, softmax rows and optimizer updates all split across threads.
fn weights_after_training(threads: usize, steps: usize) -> Vec<u64> {
    with_threads(threads, || {
        assert_eq!(rayon::current_num_threads(), threads);
        let task = Task::new(1024, 64, 64, 3);
        // A batch of 512 x 64 classes = 32,768 logits: the parallel threshold of the row kernels.
        let mut run = Run::new(&[64, 256, 256, 64], OptKind::Adam, 512, 11);
        for _ in 0..steps {
            run.step(&task);
        }
        run.weight_bits()
    })
}

#[test]
fn same_seed_and_thread_count_give_bit_identical_weights() {
    for threads in [1, 2] {
        let a = weights_after_training(threads, 4);
        let b = weights_after_training(threads, 4);
        assert_eq!(a, b, "{threads} thread(s): two runs with one seed differ");
    }
}

#[test]
fn one_and_two_threads_give_bit_identical_weights() {
    assert_eq!(weights_after_training(1, 4), weights_after_training(2, 4), "1 vs 2 threads differ");
}

fn bits(t: &Tensor) -> Vec<u64> {
    match t.dtype() {
        DType::F32 => t.to_vec().iter().map(|v| u64::from(v.to_bits())).collect(),
        DType::F64 => t.to_vec_f64().iter().map(|v| v.to_bits()).collect(),
    }
}

/// Every kernel with a parallel path, on inputs past its threshold, under 1 to 4 threads:
/// results (and gradients) must be identical to the bit.
#[test]
fn every_parallel_kernel_gives_the_same_bits_for_any_thread_count() {
    let run = |threads: usize| {
        with_threads(threads, || {
            let mut rng = Rng::new(42);
            let a = Tensor::randn_dtype(&[300, 200], DType::F32, &mut rng).requires_grad_();
            let b = Tensor::randn_dtype(&[500, 200], DType::F32, &mut rng).requires_grad_();
            let batch = Tensor::randn_dtype(&[3, 120, 90], DType::F32, &mut rng);
            let mut outputs = Vec::new();
            // GEMM, packed and split by row blocks; the backward's A^T B and A B^T too.
            let product = a.matmul(&b.t());
            outputs.push(product.clone());
            // Batched matmul of small matrices, batches spread across threads.
            outputs.push(batch.matmul(&batch.t()));
            // Elementwise maps over 150,000 elements, split in chunks.
            let activated = product.gelu();
            outputs.push(activated.clone());
            // Row reductions (one output per row, rows in parallel) and column sums (row bands).
            outputs.push(activated.sum(&[1], false));
            outputs.push(activated.max(&[1], true));
            outputs.push(activated.sum(&[0], false));
            outputs.push(activated.mean_all());
            // A dropout mask of 150,000 elements, filled by all threads from one key.
            outputs.push(activated.dropout(0.3, true, &mut Rng::new(8)));
            // Softmax and cross-entropy rows.
            outputs.push(activated.softmax(1));
            outputs.push(activated.log_softmax(0));
            let targets: Vec<usize> = (0..300).map(|i| (i * 7) % 500).collect();
            let loss = activated.cross_entropy(&targets);
            outputs.push(loss.clone());
            loss.backward();
            outputs.push(a.grad().expect("grad of a"));
            outputs.push(b.grad().expect("grad of b"));
            // Layer norm (its backward sums dw / db over row bands), a fused linear layer, and
            // packed multi-head attention, forward and backward.
            let w = Tensor::randn_dtype(&[90], DType::F32, &mut rng).requires_grad_();
            let bias = Tensor::randn_dtype(&[90], DType::F32, &mut rng).requires_grad_();
            let proj = Tensor::randn_dtype(&[96, 90], DType::F32, &mut rng).requires_grad_();
            let proj_bias = Tensor::randn_dtype(&[96], DType::F32, &mut rng).requires_grad_();
            let x = Tensor::randn_dtype(&[4, 100, 90], DType::F32, &mut rng);
            let attended = x.layer_norm(&w, &bias, 1e-5).linear(&proj, &proj_bias).multi_head_attention(4, true);
            outputs.push(attended.clone());
            attended.mul(&attended).sum_all().backward();
            for t in [&w, &bias, &proj, &proj_bias] {
                outputs.push(t.grad().expect("grad"));
            }
            // A fused optimizer update on 100,000 weights.
            let mut opt = Adam::new(vec![a.clone(), b.clone()], 1e-2);
            opt.step();
            outputs.push(a.detach());
            outputs.push(b.detach());
            outputs.iter().map(bits).collect::<Vec<_>>()
        })
    };
    let reference = run(1);
    for threads in [2, 3, 4] {
        let other = run(threads);
        for (i, (x, y)) in reference.iter().zip(&other).enumerate() {
            assert!(x == y, "output {i} differs between 1 and {threads} threads");
        }
    }
}
