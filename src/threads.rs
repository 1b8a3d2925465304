//! Where a training loop should run: on one of rayon's worker threads.
//!
//! Every CPU kernel with a parallel path hands its pieces to rayon. Called from a thread
//! outside the pool (a program's main thread), each such kernel is injected into the pool,
//! a worker is woken, and the caller sleeps until the kernel is done: two thread switches per
//! op. A small model's step is dozens of short ops, so the switches add up: the MNIST MLP's
//! step measured 1.79 ms on one thread driven from `main` and 1.14 ms driven from a worker.
//! From a worker, a kernel's pieces go on that worker's own queue, it works on them itself,
//! and idle workers steal the rest. (The GEMM, which forks twice per product, moves itself
//! onto a worker when called from outside; the other kernels do not.)

/// Runs `f` on a worker thread of rayon's global pool and returns its result (on a worker
/// already, it runs in place).
///
/// ```
/// let loss = glassbox::on_worker(|| {
///     let x = glassbox::Tensor::ones(&[64, 64]);
///     x.matmul(&x).mean_all().item()
/// });
/// assert_eq!(loss, 64.0);
/// ```
pub fn on_worker<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let mut result = None;
    rayon::scope(|_| result = Some(f()));
    result.expect("rayon::scope runs its body before returning")
}
