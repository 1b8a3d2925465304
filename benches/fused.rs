//! The memory-bound row kernels (softmax, log-softmax, cross-entropy, layer norm forward and
//! backward, GELU forward and backward, the fused AdamW update) at the GPT's shapes and at
//! 4096 x 4096, every version of each ladder (`backend::cpu::fused_ladder`), with the STREAM
//! triad (`backend::cpu::peak::triad` over 3 x 256 MiB) as the yardstick in every group.
//! Throughput is the bytes each kernel must move (inputs read once, outputs written once), so
//! criterion's GB/s for a kernel and for `yardstick_stream_triad` compare directly; 80% of the
//! triad at 4096 x 4096 is the target.
//!
//! `cargo bench --bench fused` (`-- softmax` for one family).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use glassbox::backend::cpu::fused_ladder::ladders;
use glassbox::backend::cpu::peak::{stream_bandwidth, triad};

/// f32 elements per STREAM array: 3 x 256 MiB, far beyond the caches, as the kernel report
/// measures it (with arrays the size of the kernel's data, the triad ran from cache).
const STREAM_LEN: usize = 64 << 20;

fn bench_fused(c: &mut Criterion) {
    let bw = stream_bandwidth(STREAM_LEN, 8);
    println!("STREAM triad over {} MiB: {:.1} GB/s (best of 8)", bw.footprint >> 20, bw.gbytes_per_s);
    let (mut a, b, d) = (vec![0.0f32; STREAM_LEN], vec![1.0f32; STREAM_LEN], vec![2.0f32; STREAM_LEN]);
    for ladder in ladders() {
        for dims in &ladder.report_sizes {
            let mut work = (ladder.setup)(dims, 1);
            let mut group = c.benchmark_group(format!("{}/{}", ladder.family, work.size()));
            group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
            group.throughput(Throughput::Bytes(work.bytes() as u64));
            for (v, version) in ladder.versions.iter().enumerate() {
                // Checked before it is timed, as in the kernel report.
                work.reset();
                work.run(v);
                let error = work.error();
                assert!(
                    ladder.accepts(error),
                    "{} {}: error {error:e} over {:e}",
                    ladder.family,
                    version.name,
                    ladder.tolerance
                );
                group.bench_function(BenchmarkId::from_parameter(version.name), |bench| bench.iter(|| work.run(v)));
            }
            // The yardstick, in the same group so the GB/s sit side by side.
            group.throughput(Throughput::Bytes(12 * STREAM_LEN as u64));
            group.bench_function(BenchmarkId::from_parameter("yardstick_stream_triad"), |bench| {
                bench.iter(|| triad(&mut a, &b, &d, 3.0))
            });
            group.finish();
        }
    }
}

criterion_group!(benches, bench_fused);
criterion_main!(benches);
