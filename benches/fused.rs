//! The memory-bound row kernels (softmax, log-softmax, cross-entropy, layer norm forward and
//! backward, GELU forward and backward, the fused AdamW update) at the GPT's shapes and at
//! 4096 x 4096, every version of each ladder (`backend::cpu::fused_ladder`), with a STREAM
//! triad moving the same number of bytes as the yardstick in every group. Throughput is the
//! bytes each kernel must move (inputs read once, outputs written once), so criterion's
//! GB/s for a kernel and for `yardstick_triad` compare directly; 80% of the triad at
//! 4096 x 4096 is the target.
//!
//! `cargo bench --bench fused` (`-- softmax` for one family).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use glassbox::backend::cpu::fused_ladder::ladders;
use glassbox::backend::cpu::peak::{stream_bandwidth, triad};

fn bench_fused(c: &mut Criterion) {
    // The whole-machine figure first, as the kernel report measures it (3 x 256 MiB arrays).
    let bw = stream_bandwidth(64 << 20, 8);
    println!("STREAM triad over {} MiB: {:.1} GB/s (best of 8)", bw.footprint >> 20, bw.gbytes_per_s);
    for ladder in ladders() {
        for dims in &ladder.report_sizes {
            let mut work = (ladder.setup)(dims, 1);
            let bytes = work.bytes();
            let mut group = c.benchmark_group(format!("{}/{}", ladder.family, work.size()));
            group.throughput(Throughput::Bytes(bytes as u64));
            group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
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
            // The triad over three arrays holding the same bytes as the kernel moves.
            let len = (bytes / 12.0).ceil() as usize;
            let (mut a, b, d) = (vec![0.0f32; len], vec![1.0f32; len], vec![2.0f32; len]);
            group.bench_function(BenchmarkId::from_parameter("yardstick_triad"), |bench| {
                bench.iter(|| triad(&mut a, &b, &d, 3.0))
            });
            group.finish();
        }
    }
}

criterion_group!(benches, bench_fused);
criterion_main!(benches);
