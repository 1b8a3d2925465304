//! Matrix multiplication on the CPU: `C[M, N] = A[M, K] B[K, N]`, as a ladder of versions.
//!
//! Each output element is a dot product of a row of A and a column of B: `2 M N K` flops over
//! only `M K + K N + M N` numbers, so a good GEMM is limited by arithmetic, not memory — if it
//! keeps the numbers it reuses close to the core. Each version below changes one thing:
//!
//! | version | what it adds | why it is faster |
//! |---|---|---|
//! | `matmul_v1_naive` | `i, j, k` loops, one dot product per element | (the reference) |
//! | `matmul_v2_ikj` | loop order `i, k, j` | the inner loop walks rows of B and C contiguously, so it vectorizes and streams |
//! | `matmul_v3_blocked` | tiles of `BLOCK` x `BLOCK` | the tiles of A, B and C being combined stay in cache instead of streaming B from memory for every row |
//! | `matmul_v4_packed` | packed panels + an `MR x NR` register tile, compiled for AVX-512 / AVX2+FMA at run time | operands are copied once into the exact order the inner kernel reads them; the kernel keeps `MR x NR` sums in registers and does `MR + NR` loads per `MR * NR` fused multiply-adds |
//! | `matmul_v5_packed_parallel` | v4 with row blocks spread over rayon threads | both cores work; small products stay on one thread |
//!
//! All versions accept strided operands ([`MatRef`]), so `A^T B` and `A B^T` (what backward
//! needs) run without materializing a transpose: the packing step reads through the strides.
//! `benches/matmul.rs` measures the ladder; the dispatcher uses v5.

use rayon::prelude::*;

use crate::tensor::{Float, Layout};

/// A read-only strided matrix: element `(i, j)` is `data[offset + i * row_stride + j * col_stride]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a, T> {
    /// The buffer the matrix lives in.
    pub data: &'a [T],
    /// Index of element `(0, 0)`.
    pub offset: usize,
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Step between rows.
    pub row_stride: usize,
    /// Step between columns.
    pub col_stride: usize,
}

impl<'a, T: Float> MatRef<'a, T> {
    /// A contiguous row-major matrix.
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> MatRef<'a, T> {
        assert_eq!(data.len(), rows * cols, "MatRef::row_major: {} values for a {rows}x{cols} matrix", data.len());
        MatRef { data, offset: 0, rows, cols, row_stride: cols, col_stride: 1 }
    }

    /// The same matrix transposed (no copy).
    pub fn t(self) -> MatRef<'a, T> {
        MatRef { rows: self.cols, cols: self.rows, row_stride: self.col_stride, col_stride: self.row_stride, ..self }
    }

    #[inline(always)]
    fn at(&self, i: usize, j: usize) -> T {
        self.data[self.offset + i * self.row_stride + j * self.col_stride]
    }
}

/// Signature shared by every version: writes `A B` into the contiguous `M x N` buffer `c`.
pub type MatmulFn<T> = fn(MatRef<'_, T>, MatRef<'_, T>, &mut [T]);

/// Every version by name, slowest first, for tests and benches.
pub fn versions<T: Float>() -> Vec<(&'static str, MatmulFn<T>)> {
    vec![
        ("v1_naive", matmul_v1_naive::<T>),
        ("v2_ikj", matmul_v2_ikj::<T>),
        ("v3_blocked", matmul_v3_blocked::<T>),
        ("v4_packed", matmul_v4_packed::<T>),
        ("v5_packed_parallel", matmul_v5_packed_parallel::<T>),
    ]
}

fn check_shapes<T>(a: &MatRef<'_, T>, b: &MatRef<'_, T>, c: &[T]) {
    assert_eq!(a.cols, b.rows, "matmul kernel: inner dims differ ({}x{} times {}x{})", a.rows, a.cols, b.rows, b.cols);
    assert_eq!(
        c.len(),
        a.rows * b.cols,
        "matmul kernel: output holds {} values, expected {}",
        c.len(),
        a.rows * b.cols
    );
}

/// v1: the definition. One dot product per output element; the B column is read with stride N,
/// so every `k` step touches a new cache line.
pub fn matmul_v1_naive<T: Float>(a: MatRef<'_, T>, b: MatRef<'_, T>, c: &mut [T]) {
    check_shapes(&a, &b, c);
    let n = b.cols;
    for i in 0..a.rows {
        for j in 0..n {
            let mut sum = T::ZERO;
            for p in 0..a.cols {
                sum += a.at(i, p) * b.at(p, j);
            }
            c[i * n + j] = sum;
        }
    }
}

/// v2: swap the two inner loops. `C[i, :] += A[i, p] * B[p, :]` walks a row of B and a row of
/// C with unit stride: the compiler vectorizes it, and the hardware prefetcher streams it.
pub fn matmul_v2_ikj<T: Float>(a: MatRef<'_, T>, b: MatRef<'_, T>, c: &mut [T]) {
    check_shapes(&a, &b, c);
    let n = b.cols;
    c.fill(T::ZERO);
    for i in 0..a.rows {
        let c_row = &mut c[i * n..(i + 1) * n];
        for p in 0..a.cols {
            let a_ip = a.at(i, p);
            let b_row = b.offset + p * b.row_stride;
            if b.col_stride == 1 {
                for (cv, &bv) in c_row.iter_mut().zip(&b.data[b_row..b_row + n]) {
                    *cv += a_ip * bv;
                }
            } else {
                for (j, cv) in c_row.iter_mut().enumerate() {
                    *cv += a_ip * b.data[b_row + j * b.col_stride];
                }
            }
        }
    }
}

/// Tile edge of v3: three 64 x 64 f32 tiles are 48 KiB, about one L1 + L2 slice.
const BLOCK: usize = 64;

/// v3: v2 on tiles. A `BLOCK`-row slab of C is updated from a `BLOCK x BLOCK` tile of B that
/// stays in cache for all the rows of the slab, instead of B streaming from memory per row.
pub fn matmul_v3_blocked<T: Float>(a: MatRef<'_, T>, b: MatRef<'_, T>, c: &mut [T]) {
    check_shapes(&a, &b, c);
    let (m, k, n) = (a.rows, a.cols, b.cols);
    c.fill(T::ZERO);
    for i0 in (0..m).step_by(BLOCK) {
        for p0 in (0..k).step_by(BLOCK) {
            for j0 in (0..n).step_by(BLOCK) {
                let j1 = (j0 + BLOCK).min(n);
                for i in i0..(i0 + BLOCK).min(m) {
                    let c_row = &mut c[i * n + j0..i * n + j1];
                    for p in p0..(p0 + BLOCK).min(k) {
                        let a_ip = a.at(i, p);
                        let b_row = b.offset + p * b.row_stride;
                        for (j, cv) in c_row.iter_mut().enumerate() {
                            *cv += a_ip * b.data[b_row + (j0 + j) * b.col_stride];
                        }
                    }
                }
            }
        }
    }
}

/// Rows of the register tile (one broadcast of A each).
const MR: usize = 6;
/// Columns of the register tile (16 f32 = one AVX-512 or two AVX2 registers per row).
const NR: usize = 16;
/// Depth of a packed block: a `KC x NR` panel of B (16 KiB in f32) stays in L1.
const KC: usize = 256;
/// Rows of a packed block of A: `MC x KC` (96 KiB in f32) stays in L2.
const MC: usize = 96;
/// Columns of a packed block of B: `KC x NC` (1 MiB in f32) is reused from L2/L3 by every row block.
const NC: usize = 1024;
/// Products below this many flops stay on one thread (a rayon split costs microseconds).
const PARALLEL_MIN_FLOPS: usize = 1 << 21;

/// Copies rows `i0..i0 + mc`, depth `p0..p0 + kc` of A into panels of `MR` rows, each panel
/// stored depth-major (`MR` values per depth step), zero-padding the last panel.
fn pack_a<T: Float>(a: &MatRef<'_, T>, i0: usize, mc: usize, p0: usize, kc: usize, out: &mut Vec<T>) {
    out.clear();
    for ir in (0..mc).step_by(MR) {
        for p in 0..kc {
            for i in 0..MR {
                out.push(if ir + i < mc { a.at(i0 + ir + i, p0 + p) } else { T::ZERO });
            }
        }
    }
}

/// Copies depth `p0..p0 + kc`, columns `j0..j0 + nc` of B into panels of `NR` columns, each
/// stored depth-major (`NR` values per depth step), zero-padding the last panel.
fn pack_b<T: Float>(b: &MatRef<'_, T>, p0: usize, kc: usize, j0: usize, nc: usize, out: &mut Vec<T>) {
    out.clear();
    for jr in (0..nc).step_by(NR) {
        for p in 0..kc {
            let row = b.offset + (p0 + p) * b.row_stride;
            for j in 0..NR {
                out.push(if jr + j < nc { b.data[row + (j0 + jr + j) * b.col_stride] } else { T::ZERO });
            }
        }
    }
}

/// The register tile: `MR x NR` sums live in registers while `kc` depth steps stream through.
/// With `FMA` the multiply-add is one fused instruction (only valid where FMA is enabled).
#[inline(always)]
fn micro_kernel<T: Float, const FMA: bool>(kc: usize, a: &[T], b: &[T], acc: &mut [[T; NR]; MR]) {
    for p in 0..kc {
        let a_p: &[T; MR] = a[p * MR..p * MR + MR].try_into().expect("packed A panel");
        let b_p: &[T; NR] = b[p * NR..p * NR + NR].try_into().expect("packed B panel");
        for i in 0..MR {
            for j in 0..NR {
                acc[i][j] = if FMA { a_p[i].mul_add(b_p[j], acc[i][j]) } else { acc[i][j] + a_p[i] * b_p[j] };
            }
        }
    }
}

/// Multiplies one packed A block by one packed B block into C (`ldc` = row length of C;
/// `c` starts at the block's first row; the block's columns start at `j0`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn macro_kernel<T: Float, const FMA: bool>(
    kc: usize,
    mc: usize,
    nc: usize,
    a_packed: &[T],
    b_packed: &[T],
    c: &mut [T],
    ldc: usize,
    j0: usize,
) {
    for jr in (0..nc).step_by(NR) {
        let b_panel = &b_packed[jr * kc..(jr + NR) * kc];
        for ir in (0..mc).step_by(MR) {
            let a_panel = &a_packed[ir * kc..(ir + MR) * kc];
            let mut acc = [[T::ZERO; NR]; MR];
            micro_kernel::<T, FMA>(kc, a_panel, b_panel, &mut acc);
            for (i, acc_row) in acc.iter().enumerate().take((mc - ir).min(MR)) {
                let row = (ir + i) * ldc + j0 + jr;
                let width = (nc - jr).min(NR);
                for (cv, &v) in c[row..row + width].iter_mut().zip(acc_row) {
                    *cv += v;
                }
            }
        }
    }
}

/// The instruction sets the packed kernels are compiled for, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Isa {
    Avx512,
    Avx2Fma,
    Portable,
}

fn detect_isa() -> Isa {
    [Isa::Avx512, Isa::Avx2Fma].into_iter().find(|&isa| isa_supported(isa)).unwrap_or(Isa::Portable)
}

/// True when this CPU has every feature the kernel for `isa` is compiled with (the `unsafe`
/// calls below rely on exactly this).
fn isa_supported(isa: Isa) -> bool {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => {
            is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
        Isa::Portable => true,
        #[cfg(not(target_arch = "x86_64"))]
        _ => false,
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn macro_kernel_avx512<T: Float>(
    kc: usize,
    mc: usize,
    nc: usize,
    a: &[T],
    b: &[T],
    c: &mut [T],
    ldc: usize,
    j0: usize,
) {
    macro_kernel::<T, true>(kc, mc, nc, a, b, c, ldc, j0)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn macro_kernel_avx2<T: Float>(
    kc: usize,
    mc: usize,
    nc: usize,
    a: &[T],
    b: &[T],
    c: &mut [T],
    ldc: usize,
    j0: usize,
) {
    macro_kernel::<T, true>(kc, mc, nc, a, b, c, ldc, j0)
}

/// Runs the macro kernel compiled for `isa`.
#[allow(clippy::too_many_arguments)]
fn run_macro_kernel<T: Float>(
    isa: Isa,
    kc: usize,
    mc: usize,
    nc: usize,
    a: &[T],
    b: &[T],
    c: &mut [T],
    ldc: usize,
    j0: usize,
) {
    // Calling a target_feature function is unsafe only because the CPU might lack the feature;
    // the bodies are safe Rust (every slice access bounds-checked), so that is the one thing
    // each SAFETY argument below has to establish. The debug assertions re-check it in tests.
    debug_assert!(isa_supported(isa), "matmul: {isa:?} kernel called on a CPU without its features");
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: callers pass an `isa` from detect_isa(), which returns Avx512 only when
        // isa_supported saw avx512f, avx2 and fma, the features macro_kernel_avx512 enables.
        Isa::Avx512 => unsafe { macro_kernel_avx512(kc, mc, nc, a, b, c, ldc, j0) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above: Avx2Fma only when avx2 and fma were detected.
        Isa::Avx2Fma => unsafe { macro_kernel_avx2(kc, mc, nc, a, b, c, ldc, j0) },
        _ => macro_kernel::<T, false>(kc, mc, nc, a, b, c, ldc, j0),
    }
}

/// v4: packing + register tiling, one thread. For each `KC`-deep slice of the product, B's
/// `KC x NC` block is packed once and reused by every `MC`-row block of A.
pub fn matmul_v4_packed<T: Float>(a: MatRef<'_, T>, b: MatRef<'_, T>, c: &mut [T]) {
    packed(a, b, c, false);
}

/// v5: v4 with the row blocks of C computed by different rayon threads (each packs its own A
/// block; the B block is packed once and shared). Row blocks are sized so every thread gets
/// an equal share even when M is small (the MLP's M = 128 splits 66 + 62, not 96 + 32).
pub fn matmul_v5_packed_parallel<T: Float>(a: MatRef<'_, T>, b: MatRef<'_, T>, c: &mut [T]) {
    let parallel = 2 * a.rows * a.cols * b.cols >= PARALLEL_MIN_FLOPS && rayon::current_num_threads() > 1;
    packed(a, b, c, parallel);
}

fn packed<T: Float>(a: MatRef<'_, T>, b: MatRef<'_, T>, c: &mut [T], parallel: bool) {
    packed_on(detect_isa(), a, b, c, parallel);
}

/// `packed` with the macro kernel compiled for `isa`, which must be supported by this CPU.
fn packed_on<T: Float>(isa: Isa, a: MatRef<'_, T>, b: MatRef<'_, T>, c: &mut [T], parallel: bool) {
    check_shapes(&a, &b, c);
    let (m, k, n) = (a.rows, a.cols, b.cols);
    c.fill(T::ZERO);
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    let mc = if parallel {
        let per_thread = m.div_ceil(rayon::current_num_threads());
        per_thread.div_ceil(MR).clamp(1, MC / MR) * MR
    } else {
        MC
    };
    let mut b_packed = Vec::with_capacity(KC * NC.min(n.next_multiple_of(NR)));
    for j0 in (0..n).step_by(NC) {
        let nc = NC.min(n - j0);
        for p0 in (0..k).step_by(KC) {
            let kc = KC.min(k - p0);
            pack_b(&b, p0, kc, j0, nc, &mut b_packed);
            let block = |(blk, c_rows): (usize, &mut [T])| {
                let i0 = blk * mc;
                let rows = c_rows.len() / n;
                let mut a_packed = Vec::with_capacity(mc.next_multiple_of(MR) * kc);
                pack_a(&a, i0, rows, p0, kc, &mut a_packed);
                run_macro_kernel(isa, kc, rows, nc, &a_packed, &b_packed, c_rows, n, j0);
            };
            if parallel {
                c.par_chunks_mut(mc * n).enumerate().for_each(block);
            } else {
                c.chunks_mut(mc * n).enumerate().for_each(block);
            }
        }
    }
}

/// Batched product of two views already broadcast to one batch shape: `la` is
/// `[batch.., M, K]`, `lb` is `[batch.., K, N]`; the result is contiguous `[batch.., M, N]`.
pub fn matmul<T: Float>(a: &[T], la: &Layout, b: &[T], lb: &Layout) -> Vec<T> {
    let r = la.rank();
    let (m, k, n) = (la.shape()[r - 2], la.shape()[r - 1], lb.shape()[r - 1]);
    let batch_shape = &la.shape()[..r - 2];
    let batch_offsets = |l: &Layout| -> Vec<usize> {
        Layout::from_parts(batch_shape.to_vec(), l.strides()[..r - 2].to_vec(), l.offset()).offsets().collect()
    };
    let (a_offsets, b_offsets) = (batch_offsets(la), batch_offsets(lb));
    fn mat<'d, T: Float>(data: &'d [T], l: &Layout, offset: usize, rows: usize, cols: usize) -> MatRef<'d, T> {
        let r = l.rank();
        MatRef { data, offset, rows, cols, row_stride: l.strides()[r - 2], col_stride: l.strides()[r - 1] }
    }
    let mut out = vec![T::ZERO; a_offsets.len() * m * n];
    if m * n == 0 {
        return out;
    }
    let one = |(i, c): (usize, &mut [T]), parallel_inside: bool| {
        let (am, bm) = (mat(a, la, a_offsets[i], m, k), mat(b, lb, b_offsets[i], k, n));
        if parallel_inside {
            matmul_v5_packed_parallel(am, bm, c)
        } else {
            matmul_v4_packed(am, bm, c)
        }
    };
    let small = 2 * m * n * k < PARALLEL_MIN_FLOPS;
    if a_offsets.len() > 1 && small {
        out.par_chunks_mut(m * n).enumerate().for_each(|item| one(item, false));
    } else {
        out.chunks_mut(m * n).enumerate().for_each(|item| one(item, true));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every instruction-set path this CPU can run (the portable one always, which the
    /// dispatcher never picks on an AVX machine) against v1 on odd shapes, serial and parallel.
    /// Runs with debug assertions, so it also exercises the checks guarding the `unsafe` calls.
    #[test]
    fn every_isa_path_this_cpu_supports_matches_naive() {
        let isas: Vec<Isa> =
            [Isa::Portable, Isa::Avx2Fma, Isa::Avx512].into_iter().filter(|&isa| isa_supported(isa)).collect();
        assert!(isas.contains(&detect_isa()));
        for (m, k, n) in [(1, 1, 1), (7, 13, 17), (97, 300, 33), (6, 257, 16), (130, 5, 1030)] {
            let a: Vec<f64> = (0..m * k).map(|i| ((i * 37 % 101) as f64 - 50.0) / 25.0).collect();
            let b: Vec<f64> = (0..k * n).map(|i| ((i * 53 % 97) as f64 - 48.0) / 24.0).collect();
            let (am, bm) = (MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n));
            let mut expected = vec![0.0; m * n];
            matmul_v1_naive(am, bm, &mut expected);
            for &isa in &isas {
                for parallel in [false, true] {
                    let mut c = vec![f64::NAN; m * n];
                    packed_on(isa, am, bm, &mut c, parallel);
                    for (i, (x, y)) in c.iter().zip(&expected).enumerate() {
                        assert!(
                            (x - y).abs() <= 1e-12 * y.abs().max(1.0),
                            "{isa:?} {m}x{k}x{n} element {i}: {x} vs {y}"
                        );
                    }
                }
            }
        }
    }
}
