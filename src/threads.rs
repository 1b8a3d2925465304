//! Where a training loop should run: on one of rayon's worker threads, with the other workers
//! kept awake.
//!
//! Every CPU kernel with a parallel path hands its pieces to rayon. Called from a thread
//! outside the pool (a program's main thread), each such kernel is injected into the pool,
//! a worker is woken, and the caller sleeps until the kernel is done: two thread switches per
//! op. A small model's step is dozens of short ops, so the switches add up: the MNIST MLP's
//! step measured 1.79 ms on one thread driven from `main` and 1.14 ms driven from a worker.
//! From a worker, a kernel's pieces go on that worker's own queue, it works on them itself,
//! and idle workers steal the rest. (The GEMM, whose larger products fork twice, moves itself
//! onto a worker when called from outside; the other kernels do not.)
//!
//! Stealing is only quick if the thief is awake. A rayon worker that finds nothing to do for
//! a few tens of microseconds goes to sleep, and waking it takes tens of microseconds more on
//! a virtual machine: the half of a 512³ product that the second worker steals started 16-24
//! µs late. A training step has serial stretches that long between its parallel ops, so its
//! parallel ops kept paying for that wake-up. [`on_worker`] therefore keeps the pool's other
//! workers polling for jobs while the loop runs, as OpenMP runtimes (and so PyTorch) do by
//! default. On 2 threads that took the MNIST step from 0.81-0.85 ms to 0.67-0.70, the MNIST
//! epoch from 416-426 ms to 356-387, the GPT step from 58-61 ms to 54-56 and attention forward
//! and backward from 2.29-2.45 ms to 2.14-2.29 (`step_bench`, three alternated rounds). The
//! price is that those cores stay busy while the loop runs serial code; [`SPIN_VARIABLE`]
//! turns it off.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// The environment variable that lets [`on_worker`]'s idle workers sleep: `GLASSBOX_SPIN=0`
/// (or `off`, `false`, `no`). `1` (`on`, `true`, `yes`) or no value keeps them polling.
pub const SPIN_VARIABLE: &str = "GLASSBOX_SPIN";

/// Runs `f` on a worker thread of rayon's global pool and returns its result. While `f` runs,
/// the pool's other workers poll for jobs instead of sleeping (see the module comment and
/// [`SPIN_VARIABLE`]). On a worker already, `f` runs in place, and no workers are woken for
/// it.
///
/// ```
/// let loss = glassbox::on_worker(|| {
///     let x = glassbox::Tensor::ones(&[64, 64]);
///     x.matmul(&x).mean_all().item()
/// });
/// assert_eq!(loss, 64.0);
/// ```
pub fn on_worker<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    in_pool(|| {
        // Dropped when `f` returns or panics, which sends the other workers back to rayon's
        // own idling.
        let _awake = (spin_enabled() && rayon::current_num_threads() > 1).then(KeptAwake::start);
        f()
    })
}

/// Runs `f` on a worker thread of rayon's global pool (in place on a worker already), leaving
/// the other workers to rayon's usual idling.
pub(crate) fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let mut result = None;
    rayon::scope(|_| result = Some(f()));
    result.expect("rayon::scope runs its body before returning")
}

/// True unless [`SPIN_VARIABLE`] turns polling off (read once; a value it does not know is
/// reported once on stderr and ignored).
fn spin_enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| {
        let Ok(value) = std::env::var(SPIN_VARIABLE) else {
            return true;
        };
        match value.trim().to_ascii_lowercase().as_str() {
            "0" | "off" | "false" | "no" => false,
            "1" | "on" | "true" | "yes" | "" => true,
            _ => {
                eprintln!("glassbox: {SPIN_VARIABLE}={value} is not one of 0, off, 1, on; keeping workers awake");
                true
            }
        }
    })
}

/// How many [`KeptAwake`] guards are alive: while there is one, the global pool's workers poll
/// for jobs instead of sleeping (see [`workers_polling`]).
static KEPT_AWAKE: AtomicUsize = AtomicUsize::new(0);

/// True while a loop run by [`on_worker`] keeps the pool's other workers polling: a job forked
/// now starts on another worker within a microsecond or so, not after a wake-up of tens of
/// microseconds. The GEMM then forks smaller products, and splits them into fewer, taller
/// tasks.
pub(crate) fn workers_polling() -> bool {
    KEPT_AWAKE.load(Ordering::Relaxed) > 0
}

/// The pool's other workers, each running [`poll_until`] until this is dropped.
struct KeptAwake {
    done: Arc<AtomicBool>,
    /// How many workers are polling now (read by the tests, which check that polling stops).
    #[cfg_attr(not(test), allow(dead_code))]
    polling: Arc<AtomicUsize>,
}

impl KeptAwake {
    /// Sends every worker but the calling one to poll for jobs. Called on a worker.
    fn start() -> Self {
        KEPT_AWAKE.fetch_add(1, Ordering::AcqRel);
        let (done, polling) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let caller = rayon::current_thread_index();
        let (done_flag, count) = (Arc::clone(&done), Arc::clone(&polling));
        // A broadcast job runs once on each worker, on that worker only. The caller's copy
        // returns at once: it may run inside one of the loop's own waits, and polling there
        // until the loop ends would never end.
        rayon::spawn_broadcast(move |worker| {
            if Some(worker.index()) != caller {
                count.fetch_add(1, Ordering::AcqRel);
                poll_until(&done_flag);
                count.fetch_sub(1, Ordering::AcqRel);
            }
        });
        KeptAwake { done, polling }
    }
}

impl Drop for KeptAwake {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Release);
        KEPT_AWAKE.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs the pool's jobs as they arrive (`rayon::yield_now` takes one if there is one), polling
/// rather than sleeping in between, until `done`. It never waits on anything but `done`, and
/// every job it takes it runs to the end, so it cannot hold up the loop it keeps company.
fn poll_until(done: &AtomicBool) {
    while !done.load(Ordering::Acquire) {
        if !matches!(rayon::yield_now(), Some(rayon::Yield::Executed)) {
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// Runs `f` on a thread of its own and fails if it takes longer than `limit` (a deadlock
    /// would otherwise hang the test run).
    fn within<R: Send + 'static>(limit: Duration, f: impl FnOnce() -> R + Send + 'static) -> R {
        let (send, receive) = mpsc::channel();
        std::thread::spawn(move || send.send(f()).expect("the test is waiting"));
        receive.recv_timeout(limit).expect("finished in time (else a deadlock)")
    }

    #[test]
    fn parallel_work_and_nested_and_concurrent_calls_complete_inside_on_worker() {
        within(Duration::from_secs(60), || {
            use rayon::prelude::*;
            let sum: u64 = on_worker(|| (0..1_000_000u64).into_par_iter().map(|x| x % 7).sum());
            assert_eq!(sum, (0..1_000_000u64).map(|x| x % 7).sum::<u64>());
            // Nested and concurrent calls (as parallel tests make) finish too.
            let inner = on_worker(|| on_worker(|| rayon::join(|| 1, || 2)));
            assert_eq!(inner, (1, 2));
            let threads: Vec<_> = (0..4)
                .map(|t| {
                    std::thread::spawn(move || on_worker(|| (0..10_000u64).into_par_iter().map(|x| x * t).sum::<u64>()))
                })
                .collect();
            for (t, handle) in threads.into_iter().enumerate() {
                assert_eq!(handle.join().expect("no panic"), (0..10_000u64).map(|x| x * t as u64).sum::<u64>());
            }
        });
    }

    #[test]
    fn the_other_workers_poll_until_the_loop_ends_even_by_a_panic() {
        within(Duration::from_secs(60), || {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().expect("a pool");
            let polling = pool.install(|| {
                let awake = KeptAwake::start();
                wait_for(|| awake.polling.load(Ordering::Acquire) == 2, "both other workers poll");
                // (Whether it is false afterwards depends on the tests running beside this one.)
                assert!(workers_polling(), "the GEMM sees the workers polling");
                Arc::clone(&awake.polling)
            });
            wait_for(|| polling.load(Ordering::Acquire) == 0, "no worker polls after the loop");

            let slot = std::sync::Mutex::new(None);
            let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                pool.install(|| {
                    let awake = KeptAwake::start();
                    wait_for(|| awake.polling.load(Ordering::Acquire) == 2, "both other workers poll");
                    *slot.lock().expect("not poisoned") = Some(Arc::clone(&awake.polling));
                    panic!("the training loop fails");
                })
            }));
            assert!(failed.is_err());
            let polling = slot.lock().expect("not poisoned").take().expect("the loop ran");
            wait_for(|| polling.load(Ordering::Acquire) == 0, "no worker polls after the panic");
        });
    }

    /// Waits up to 10 s for `condition`, failing with `what` if it never holds.
    fn wait_for(condition: impl Fn() -> bool, what: &str) {
        let start = std::time::Instant::now();
        while !condition() {
            assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
