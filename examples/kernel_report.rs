//! The kernel ladder report: measures this machine's FMA peak and memory bandwidth, then runs
//! every version of every CPU kernel family in `glassbox::backend::cpu::ladders()`, validates
//! each against its reference, and prints GFLOP/s, GB/s, arithmetic intensity, % of the
//! measured peak and the speed-up over the previous version.
//!
//! `cargo run --release --example kernel_report` (about 20 s on 2 cores);
//! `-- --help` lists the flags. Exits with status 1 if any version fails its check.

mod common;

use std::time::{Duration, Instant};

use glassbox::backend::cpu::matmul::tile_ceiling;
use glassbox::backend::cpu::peak::{fma_peak, stream_bandwidth, Bandwidth, FmaPeak, ACCUMULATORS};
use glassbox::backend::cpu::{ladders, Ladder, Limit};
use glassbox::inspect::{format_bytes, format_duration, Align, TextTable};

/// Each timed version runs at least this long (repeating) so short kernels are timed well.
const MIN_TIMING: Duration = Duration::from_millis(300);
/// ... and at least this many times after the validation run.
const MIN_REPS: usize = 2;
/// FMA peak rounds (the best is reported) and the length of each.
/// Many short rounds: on a shared machine some round usually runs undisturbed.
const PEAK_ROUNDS: usize = 20;
const PEAK_ROUND_TIME: Duration = Duration::from_millis(50);
/// STREAM repetitions (the best is reported).
const STREAM_REPS: usize = 8;

/// The machine's yardsticks, on one thread and on all.
struct Peaks {
    fma_one: FmaPeak,
    fma_all: FmaPeak,
    bw_one: Bandwidth,
    bw_all: Bandwidth,
}

impl Peaks {
    /// The peak a version is held to: compute or memory, one thread or all.
    fn for_version(&self, limit: Limit, parallel: bool) -> f64 {
        match (limit, parallel) {
            (Limit::Compute, false) => self.fma_one.gflops,
            (Limit::Compute, true) => self.fma_all.gflops,
            (Limit::Memory, false) => self.bw_one.gbytes_per_s,
            (Limit::Memory, true) => self.bw_all.gbytes_per_s,
        }
    }
}

fn main() {
    let mut flags = common::Flags::from_env();
    let threads: Option<usize> = flags.optional("threads", "worker threads (default: RAYON_NUM_THREADS or all cores)");
    let family: Option<String> = flags.optional("family", "run only this kernel family (e.g. matmul)");
    let stream_mib: usize =
        flags.get("stream-mib", 256, "MiB per STREAM array (3 arrays; make them exceed the caches)");
    flags.finish("glassbox kernel report: every version of every CPU kernel family, against this machine's peaks");
    let threads = common::init_threads(threads);

    println!("glassbox kernel report");
    println!("machine: {}, {threads} threads{}", cpu_model(), cache_note());
    if let Some(load) = load_average() {
        let busy =
            if load > 0.5 { " (other processes are competing for the cores: figures will be noisy)" } else { "" };
        println!("load average before the run: {load:.2}{busy}");
    }
    let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a one-thread pool");
    let stream_len = stream_mib * (1 << 20) / 4;
    let started = Instant::now();
    let peaks = Peaks {
        fma_one: fma_peak(1, PEAK_ROUNDS, PEAK_ROUND_TIME),
        fma_all: fma_peak(threads, PEAK_ROUNDS, PEAK_ROUND_TIME),
        bw_one: one_thread.install(|| stream_bandwidth(stream_len, STREAM_REPS)),
        bw_all: stream_bandwidth(stream_len, STREAM_REPS),
    };
    println!("\nmeasured peaks ({} to measure):", format_duration(started.elapsed()));
    println!(
        "  FMA peak:          {:>8.1} GFLOP/s on 1 thread, {:>8.1} on {} ({} loop, {ACCUMULATORS} independent \
         accumulators, best of {PEAK_ROUNDS} rounds)",
        peaks.fma_one.gflops,
        peaks.fma_all.gflops,
        peaks.fma_all.threads,
        peaks.fma_all.isa.name()
    );
    // The GEMM's register tile alone: the share of the FMA peak its loads let it reach here,
    // which bounds every product's share below.
    let tiles = (tile_ceiling(1, PEAK_ROUNDS, PEAK_ROUND_TIME), tile_ceiling(threads, PEAK_ROUNDS, PEAK_ROUND_TIME));
    if let (Some(one), Some(all)) = tiles {
        println!(
            "  GEMM tile alone:   {:>8.1} GFLOP/s on 1 thread, {:>8.1} on {threads} (v6's {} x {} tile over a block of B in \
             L2, nothing else: {:.0}% and {:.0}% of the FMA peak)",
            one.gflops,
            all.gflops,
            one.tile.0,
            one.tile.1,
            100.0 * one.gflops / peaks.fma_one.gflops,
            100.0 * all.gflops / peaks.fma_all.gflops
        );
    }
    println!(
        "  memory bandwidth:  {:>8.1} GB/s    on 1 thread, {:>8.1} on {threads} (STREAM triad over {}, best of {STREAM_REPS})",
        peaks.bw_one.gbytes_per_s,
        peaks.bw_all.gbytes_per_s,
        format_bytes(peaks.bw_all.footprint)
    );
    println!(
        "  ridge point:       {:>8.1} flop/byte (all threads): kernels with a lower arithmetic intensity are memory-bound",
        peaks.fma_all.gflops / peaks.bw_all.gbytes_per_s
    );

    let (mut failed, mut above_peak, mut ran) = (0, 0, 0);
    for ladder in ladders() {
        if family.as_deref().is_some_and(|f| f != ladder.family) {
            continue;
        }
        ran += 1;
        let (f, a) = report_family(&ladder, &peaks);
        (failed, above_peak) = (failed + f, above_peak + a);
    }
    if above_peak > 0 {
        println!(
            "\nnote: {above_peak} result(s) above 100% of the peak: the peak was measured while something else ran. \
             Rerun on a quiet machine."
        );
    }
    if ran == 0 {
        eprintln!("error: no kernel family named {:?}", family.unwrap_or_default());
        std::process::exit(2);
    }
    println!(
        "\nCUDA: this report covers the CPU kernels; the CUDA kernels' ladders are timed against cuBLAS by \
         `cargo bench --features cublas-bench --bench cuda` (needs a GPU)."
    );
    println!("total time {}", format_duration(started.elapsed()));
    if failed > 0 {
        eprintln!("error: {failed} kernel version(s) failed validation");
        std::process::exit(1);
    }
}

/// Times every version of `ladder` at every report size and prints the table; returns the
/// number of versions that failed validation and the number measured above the peak.
fn report_family(ladder: &Ladder, peaks: &Peaks) -> (usize, usize) {
    let (unit, limit_name) = match ladder.limit {
        Limit::Compute => ("GFLOP/s", "compute-bound: % of the FMA peak"),
        Limit::Memory => ("GB/s", "memory-bound: % of the STREAM bandwidth"),
    };
    println!("\n{} ({}) — {limit_name}", ladder.family, ladder.source);
    println!(
        "  validated before timing: {} <= {:e}; time = best of repeated runs; % peak uses the 1-thread peak for \
         1-thread versions",
        ladder.tolerance_note, ladder.tolerance
    );
    let mut table = TextTable::new(&[
        ("size", Align::Left),
        ("version", Align::Left),
        ("threads", Align::Right),
        ("time", Align::Right),
        (unit, Align::Right),
        ("flop/byte", Align::Right),
        ("% peak", Align::Right),
        ("vs previous", Align::Right),
        ("error", Align::Right),
    ]);
    let (mut failed, mut above_peak) = (0, 0);
    for dims in &ladder.report_sizes {
        let mut work = (ladder.setup)(dims, 1);
        let (flops, bytes) = (work.flops(), work.bytes());
        let mut previous: Option<f64> = None;
        for (v, version) in ladder.versions.iter().enumerate() {
            let threads = if version.parallel { rayon::current_num_threads().to_string() } else { "1".to_string() };
            if ladder.skips(v, flops) {
                table.row(vec![
                    work.size(),
                    version.name.to_string(),
                    threads,
                    "skipped".to_string(),
                    "-".to_string(),
                    format!("{:.1}", flops / bytes),
                    "-".to_string(),
                    "-".to_string(),
                    "-".to_string(),
                ]);
                table.note(format!(
                    "{} is not run above {:.0e} flops: at its pace that would take seconds per run",
                    version.name,
                    version.max_flops.unwrap_or_default()
                ));
                previous = None;
                continue;
            }
            work.reset();
            work.run(v);
            let error = work.error();
            let ok = ladder.accepts(error);
            let mut best = f64::INFINITY;
            let (mut reps, started) = (0, Instant::now());
            while reps < MIN_REPS || started.elapsed() < MIN_TIMING {
                let t = Instant::now();
                work.run(v);
                best = best.min(t.elapsed().as_secs_f64());
                reps += 1;
            }
            let rate = match ladder.limit {
                Limit::Compute => flops / best / 1e9,
                Limit::Memory => bytes / best / 1e9,
            };
            let peak = peaks.for_version(ladder.limit, version.parallel);
            table.row(vec![
                work.size(),
                version.name.to_string(),
                threads,
                format_duration(Duration::from_secs_f64(best)),
                format!("{rate:.1}"),
                format!("{:.1}", flops / bytes),
                format!("{:.1}%", 100.0 * rate / peak),
                previous.map(|p| format!("{:.1}x", p / best)).unwrap_or_else(|| "-".to_string()),
                if ok { format!("{error:.1e}") } else { format!("FAILED {error:.1e}") },
            ]);
            if !ok {
                failed += 1;
            }
            if rate > peak {
                above_peak += 1;
            }
            previous = Some(best);
        }
    }
    print!("{table}");
    (failed, above_peak)
}

/// The CPU's model name (Linux), for the report's header.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string())
}

/// The last-level cache size (Linux), which the STREAM arrays should exceed.
fn cache_note() -> String {
    let read =
        |index: u32| std::fs::read_to_string(format!("/sys/devices/system/cpu/cpu0/cache/index{index}/size")).ok();
    match read(3).or_else(|| read(2)) {
        Some(size) => format!(", last-level cache {}", size.trim()),
        None => String::new(),
    }
}

/// The one-minute load average (Linux): how many processes wanted a core just before the run.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}
