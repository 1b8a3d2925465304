use glassbox::backend::cpu::matmul::{gemm, MatRef};
use std::time::Instant;

fn crate_gemm(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32], threads: usize) {
    let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        )
    }
}

fn time(mut f: impl FnMut(), flops: f64) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..2 {
        let reps = ((2e9 / 20.0 / flops).ceil() as usize).max(1);
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    flops / best / 1e9
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("peak") {
        peak();
        return;
    }
    let threads: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(1);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let shapes: Vec<(usize, usize, usize)> = std::env::args()
        .nth(2)
        .map(|s| {
            s.split(',')
                .map(|t| {
                    let v: Vec<usize> = t.split('x').map(|x| x.parse().unwrap()).collect();
                    (v[0], v[1], v[2])
                })
                .collect()
        })
        .unwrap_or(vec![
            (128, 784, 256),
            (2048, 128, 384),
            (2048, 128, 512),
            (2048, 512, 128),
            (512, 512, 512),
            (1024, 1024, 1024),
            (2048, 2048, 2048),
        ]);
    pool.install(|| {
        for (m, k, n) in shapes {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32) * 0.1).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32) * 0.1).collect();
            let mut c_store = vec![0f32; m * n + 16];
            let skip = if std::env::var("MISALIGN").is_ok() {
                (c_store.as_ptr().align_offset(64) + 4) % 16
            } else {
                c_store.as_ptr().align_offset(64)
            };
            let c = &mut c_store[skip..skip + m * n];
            eprintln!("c offset mod 64 = {}", c.as_ptr() as usize % 64);
            let flops = 2.0 * (m * k * n) as f64;
            let mut ratios = vec![];
            let mut o = vec![];
            for _ in 0..9 {
                let ours =
                    time(|| gemm(MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n), c, threads > 1), flops);
                let theirs = time(|| crate_gemm(m, k, n, &a, &b, c, threads), flops);
                ratios.push(ours / theirs);
                o.push(ours);
            }
            ratios.sort_by(|x, y| x.partial_cmp(y).unwrap());
            o.sort_by(|x, y| x.partial_cmp(y).unwrap());
            println!(
                "{m}x{k}x{n}: ours {:.0} GFLOP/s, median ratio {:.3} (min {:.3} max {:.3})",
                o[4], ratios[4], ratios[0], ratios[8]
            );
        }
    });
}
#[allow(dead_code)]
fn peak() {
    let p = glassbox::backend::cpu::peak::fma_peak(
        std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(1),
        5,
        std::time::Duration::from_millis(200),
    );
    println!("{p:?}");
}
