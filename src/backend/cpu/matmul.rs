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
//! | `matmul_v3_blocked` | tiles of `BLOCK` x `BLOCK_COLS` | a tile of B stays in cache while a slab of rows of A uses it, instead of all of B streaming through the cache for every row |
//! | `matmul_v4_packed` | packed panels + an `MR x NR` register tile, compiled for AVX-512 / AVX2+FMA at run time | operands are copied once into the exact order the inner kernel reads them; the kernel keeps `MR x NR` sums in registers and does `MR + NR` loads per `MR * NR` fused multiply-adds |
//! | `matmul_v5_packed_parallel` | v4 with row blocks spread over rayon threads | every core works (B packed first, then one fork); small products stay on one thread |
//! | `matmul_v6_wide` | (f32 and f64, AVX-512, AVX2 or NEON) a 6 x 64 f32 tile (12 x 32 for narrow B; 6 x 16 with AVX2 or NEON), A read in place, B packed once per product, or per task in long ones (`matmul/wide.rs`) | 10 loads per 24 FMAs instead of 13 per 12, so the FMA units set the pace; no pass over A; each tile of A walks a block of B's panels held in L2 |
//!
//! All versions accept strided operands ([`MatRef`]), so `A^T B` and `A B^T` (what backward
//! needs) run without materializing a transpose: the packing step reads through the strides.
//! `benches/matmul.rs` measures the ladder; the engine calls [`gemm`], which runs v6 where it
//! applies and v4 / v5 elsewhere.

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
use std::any::TypeId;
use std::cell::RefCell;

use rayon::prelude::*;

use super::isa;
#[cfg(target_arch = "x86_64")]
use super::isa::Isa;
use super::pool;
use crate::tensor::{Float, HostBuffer, Layout};

// v6 is written against a few vector operations (`simd.rs`) implemented for x86-64 (AVX-512,
// AVX2) and aarch64 (NEON); other architectures run v5 (and the ladder's v6 entry falls back
// to it there).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod simd;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod wide;

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

    /// The same view over `data`, a buffer of another element type with the same layout.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn with_data<U>(self, data: &[U]) -> MatRef<'_, U> {
        MatRef {
            data,
            offset: self.offset,
            rows: self.rows,
            cols: self.cols,
            row_stride: self.row_stride,
            col_stride: self.col_stride,
        }
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
        ("v6_wide", matmul_v6_wide::<T>),
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

/// Checks a product written as rows `ldc` apart, and returns `c` trimmed to exactly the
/// values from the first output element to the last (so splitting it into blocks of rows
/// gives every block its own rows and no empty blocks).
fn strided_out<'c, T>(a: &MatRef<'_, T>, b: &MatRef<'_, T>, c: &'c mut [T], ldc: usize) -> &'c mut [T] {
    assert_eq!(a.cols, b.rows, "matmul kernel: inner dims differ ({}x{} times {}x{})", a.rows, a.cols, b.rows, b.cols);
    assert!(ldc >= b.cols, "matmul kernel: output rows {ldc} apart cannot hold {} columns", b.cols);
    if a.rows == 0 || b.cols == 0 {
        return &mut c[..0];
    }
    let needed = (a.rows - 1) * ldc + b.cols;
    assert!(
        c.len() >= needed,
        "matmul kernel: output holds {} values, a {}x{} product with rows {ldc} apart needs {needed}",
        c.len(),
        a.rows,
        b.cols
    );
    &mut c[..needed]
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

/// Rows of A and C per v3 slab, and depth of a v3 tile of B.
const BLOCK: usize = 64;
/// Columns of a v3 tile of B: `BLOCK x BLOCK_COLS` f32 values are 64 KiB, which stays in L2
/// while a slab of 64 rows of A passes over it, and each row's pass is 256 values long, long
/// enough that the loop's own overhead stays small (64-wide tiles ran at 0.8x v2).
const BLOCK_COLS: usize = 256;

/// v3: v2 on tiles. A `BLOCK`-row slab of C is updated from a `BLOCK x BLOCK_COLS` tile of B
/// that stays in cache for all the rows of the slab, instead of all of B streaming through
/// the cache once per row of A. v2 slows down once B outgrows L2 (at 1024², B is 4 MiB);
/// v3 keeps the same pace at every size. Like v2, it has a unit-stride path the compiler
/// vectorizes, and a strided one for transposed operands.
pub fn matmul_v3_blocked<T: Float>(a: MatRef<'_, T>, b: MatRef<'_, T>, c: &mut [T]) {
    check_shapes(&a, &b, c);
    let (m, k, n) = (a.rows, a.cols, b.cols);
    c.fill(T::ZERO);
    for i0 in (0..m).step_by(BLOCK) {
        for p0 in (0..k).step_by(BLOCK) {
            for j0 in (0..n).step_by(BLOCK_COLS) {
                let j1 = (j0 + BLOCK_COLS).min(n);
                for i in i0..(i0 + BLOCK).min(m) {
                    let c_row = &mut c[i * n + j0..i * n + j1];
                    for p in p0..(p0 + BLOCK).min(k) {
                        let a_ip = a.at(i, p);
                        let b_row = b.offset + p * b.row_stride;
                        if b.col_stride == 1 {
                            for (cv, &bv) in c_row.iter_mut().zip(&b.data[b_row + j0..b_row + j1]) {
                                *cv += a_ip * bv;
                            }
                        } else {
                            for (j, cv) in c_row.iter_mut().enumerate() {
                                *cv += a_ip * b.data[b_row + (j0 + j) * b.col_stride];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Depth of a packed block: a `KC x NR` panel of B (16 KiB in f32 for NR = 16) stays in L1.
const KC: usize = 256;
/// Rows of a packed block of A: `MC x KC` (96 KiB in f32) stays in L2. A multiple of every MR.
const MC: usize = 96;
/// Columns of a packed block of B: `KC x NC` (1 MiB in f32) is reused from L2/L3 by every row block.
const NC: usize = 1024;
/// Products below this many flops stay on one thread (a rayon split costs microseconds).
const PARALLEL_MIN_FLOPS: usize = 1 << 21;
/// The same while the pool's workers poll (`threads::workers_polling`, as in the training
/// loops): a fork then wakes no one, and splits pay from a quarter of the size. From a polling
/// worker on 2 threads (Zen 5, v6, two rounds): `256 x 10 x 256` +56-58%, `128 x 32 x 128`
/// +34%, `100 x 50 x 100` +42-43%, `64 x 64 x 64` +6-21%, `48 x 96 x 64` -1 to -4%; halved
/// again, to 2^18, `128 x 10 x 128` and `64 x 64 x 32` lost 3-24%.
const PARALLEL_MIN_FLOPS_POLLING: usize = 1 << 19;

/// Copies rows `i0..i0 + mc`, depth `p0..p0 + kc` of A into panels of `MR` rows, each panel
/// stored depth-major (`MR` values per depth step), zero-padding the last panel. Returns the
/// packed values: the first `mc` rounded up to `MR`, times `kc`, values of `out`.
fn pack_a<'o, T: Float, const MR: usize>(
    a: &MatRef<'_, T>,
    i0: usize,
    mc: usize,
    p0: usize,
    kc: usize,
    out: &'o mut [T],
) -> &'o [T] {
    let out = &mut out[..mc.div_ceil(MR) * MR * kc];
    for (panel, dst) in out.chunks_exact_mut(MR * kc).enumerate() {
        let rows = (mc - panel * MR).min(MR);
        let first = a.offset + (i0 + panel * MR) * a.row_stride + p0 * a.col_stride;
        // The two common layouts take loops with fixed-size steps (the general loop below, a
        // multiply by a run-time stride and a bounds check per value, was 16% of a GPT step
        // where v6 does not run, and 9% of an AVX2 MNIST step as `pack_b`'s).
        if a.row_stride == 1 {
            // A transposed (`X^T dY`; for `pack_b`, a row-major B): each depth step's values
            // are adjacent. A whole panel's step is a fixed-size copy (vector moves, not a
            // memmove call); a last, partial one copies its rows and zero-pads the rest.
            for (p, dst_p) in dst.chunks_exact_mut(MR).enumerate() {
                let src = first + p * a.col_stride;
                if rows == MR {
                    let whole: &mut [T; MR] = dst_p.try_into().expect("a panel step is MR values");
                    *whole = a.data[src..src + MR].try_into().expect("MR values of A");
                } else {
                    let (values, padding) = dst_p.split_at_mut(rows);
                    values.copy_from_slice(&a.data[src..src + rows]);
                    padding.fill(T::ZERO);
                }
            }
            continue;
        }
        if rows == MR && a.col_stride == 1 {
            // A row-major (for `pack_b`, a transposed B: `X W^T`, every linear layer's
            // forward): the panel's MR rows, each `kc` values long, pre-sliced.
            let rows_of_a: [&[T]; MR] = std::array::from_fn(|i| &a.data[first + i * a.row_stride..][..kc]);
            for (p, dst_p) in dst.chunks_exact_mut(MR).enumerate() {
                for (d, row) in dst_p.iter_mut().zip(&rows_of_a) {
                    *d = row[p];
                }
            }
            continue;
        }
        for i in 0..MR {
            if i >= rows {
                (0..kc).for_each(|p| dst[p * MR + i] = T::ZERO);
                continue;
            }
            // Walk one row of A (unit stride when A is row-major), scattering into the panel.
            let src = a.offset + (i0 + panel * MR + i) * a.row_stride + p0 * a.col_stride;
            for p in 0..kc {
                dst[p * MR + i] = a.data[src + p * a.col_stride];
            }
        }
    }
    out
}

/// Copies depth `p0..p0 + kc`, columns `j0..j0 + nc` of B into panels of `NR` columns, each
/// stored depth-major (`NR` values per depth step), zero-padding the last panel. Returns the
/// packed values: the first `kc` times `nc` rounded up to `NR` values of `out`.
///
/// A panel of B's columns is a panel of B^T's rows laid out the same way, so this is
/// [`pack_a`] on the transposed view (no copy).
fn pack_b<'o, T: Float, const NR: usize>(
    b: &MatRef<'_, T>,
    p0: usize,
    kc: usize,
    j0: usize,
    nc: usize,
    out: &'o mut [T],
) -> &'o [T] {
    pack_a::<T, NR>(&b.t(), j0, nc, p0, kc, out)
}

/// Values [`pack_b`] writes for a `kc x nc` block.
fn packed_b_len<const NR: usize>(kc: usize, nc: usize) -> usize {
    nc.div_ceil(NR) * NR * kc
}

/// The register tile: `MR x NR` sums live in registers while `kc` depth steps stream through.
/// Each step loads `NR` values of B and broadcasts `MR` values of A into `MR * NR`
/// multiply-adds. `MR` independent accumulator rows hide the FMA latency (4 cycles, 2 per
/// cycle on this machine: at least 8 chains in flight). With `FMA` the multiply-add is one
/// fused instruction (only valid where FMA is enabled).
#[inline(always)]
fn micro_kernel<T: Float, const MR: usize, const NR: usize, const FMA: bool>(
    a: &[T],
    b: &[T],
    acc: &mut [[T; NR]; MR],
) {
    // Zipped exact chunks: the compiler sees fixed sizes and drops every bounds check.
    for (a_p, b_p) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
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
fn macro_kernel<T: Float, const MR: usize, const NR: usize, const FMA: bool>(
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
            micro_kernel::<T, MR, NR, FMA>(a_panel, b_panel, &mut acc);
            let width = (nc - jr).min(NR);
            for (i, acc_row) in acc.iter().enumerate().take((mc - ir).min(MR)) {
                let row = (ir + i) * ldc + j0 + jr;
                for (cv, &v) in c[row..row + width].iter_mut().zip(acc_row) {
                    *cv += v;
                }
            }
        }
    }
}

// Register tiles per instruction set. The compiler keeps an accumulator tile in registers only
// up to about 96 scalars (6 x 16: larger tiles spill to the stack and run 20x slower), so the
// tiles below are what auto-vectorization handles well: AVX2's 16 ymm registers hold 6 x 16
// f32 as 12 accumulators plus two for B. For f32 on AVX-512 the hand-written 12 x 16 kernel
// (`micro_kernel_avx512_f32`) keeps 12 independent zmm accumulators, enough to hide the FMA
// latency; f64 and the other paths use the auto-vectorized tiles.
#[cfg(target_arch = "x86_64")]
const AVX512_TILE: (usize, usize) = (6, 16);
#[cfg(target_arch = "x86_64")]
const AVX2_TILE: (usize, usize) = (6, 16);
const PORTABLE_TILE: (usize, usize) = (4, 8);

/// Tile of the hand-written AVX-512 f32 kernel.
#[cfg(target_arch = "x86_64")]
const AVX512_F32_TILE: (usize, usize) = (12, 16);

/// The f32 register tile in AVX-512 intrinsics: 12 rows of C as 12 zmm accumulators (16
/// lanes each). Per depth step: one load of 16 B values, then 12 broadcasts of A fused into
/// 12 FMAs. Twelve independent chains cover the FMA latency (4 cycles x 2 units).
///
/// # Safety
/// The CPU must support AVX-512F. `a` must hold `12 * kc` and `b` `16 * kc` values (checked).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn micro_kernel_avx512_f32(a: &[f32], b: &[f32], acc: &mut [[f32; 16]; 12]) {
    use std::arch::x86_64::{_mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps};
    let kc = b.len() / 16;
    assert!(
        a.len() == 12 * kc && b.len() == 16 * kc,
        "micro_kernel_avx512_f32: panels of {} and {} values",
        a.len(),
        b.len()
    );
    let mut c = [_mm512_setzero_ps(); 12];
    for p in 0..kc {
        // SAFETY: p < kc, so b[16p..16p + 16] and a[12p..12p + 12] are inside the slices
        // (lengths asserted above); loadu has no alignment requirement.
        let bv = _mm512_loadu_ps(b.as_ptr().add(16 * p));
        let ap = a.as_ptr().add(12 * p);
        for (i, ci) in c.iter_mut().enumerate() {
            *ci = _mm512_fmadd_ps(_mm512_set1_ps(*ap.add(i)), bv, *ci);
        }
    }
    for (row, ci) in acc.iter_mut().zip(c) {
        // SAFETY: each row is a [f32; 16], exactly one unaligned 512-bit store.
        _mm512_storeu_ps(row.as_mut_ptr(), ci);
    }
}

/// The macro kernel over the hand-written AVX-512 f32 tile.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn macro_kernel_avx512_f32(
    kc: usize,
    mc: usize,
    nc: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    ldc: usize,
    j0: usize,
) {
    const MR: usize = AVX512_F32_TILE.0;
    const NR: usize = AVX512_F32_TILE.1;
    for jr in (0..nc).step_by(NR) {
        let b_panel = &b[jr * kc..(jr + NR) * kc];
        for ir in (0..mc).step_by(MR) {
            let a_panel = &a[ir * kc..(ir + MR) * kc];
            let mut acc = [[0.0f32; NR]; MR];
            micro_kernel_avx512_f32(a_panel, b_panel, &mut acc);
            let width = (nc - jr).min(NR);
            for (i, acc_row) in acc.iter().enumerate().take((mc - ir).min(MR)) {
                let row = (ir + i) * ldc + j0 + jr;
                for (cv, &v) in c[row..row + width].iter_mut().zip(acc_row) {
                    *cv += v;
                }
            }
        }
    }
}

/// `s` seen as `&[U]` when `T` is `U`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn same_type<T: Float, U: Float>(s: &[T]) -> Option<&[U]> {
    (TypeId::of::<T>() == TypeId::of::<U>()).then(|| {
        // SAFETY: T and U have the same TypeId, so they are the same type: the memory is a
        // valid [U] of the same length and lifetime.
        unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<U>(), s.len()) }
    })
}

/// `s` seen as `&mut [U]` when `T` is `U`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn same_type_mut<T: Float, U: Float>(s: &mut [T]) -> Option<&mut [U]> {
    (TypeId::of::<T>() == TypeId::of::<U>()).then(|| {
        // SAFETY: as in `same_type`; the exclusive borrow of `s` is moved into the result.
        unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<U>(), s.len()) }
    })
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
    macro_kernel::<T, { AVX512_TILE.0 }, { AVX512_TILE.1 }, true>(kc, mc, nc, a, b, c, ldc, j0)
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
    macro_kernel::<T, { AVX2_TILE.0 }, { AVX2_TILE.1 }, true>(kc, mc, nc, a, b, c, ldc, j0)
}

/// v4: packing + register tiling, one thread. For each `KC`-deep slice of the product, B's
/// `KC x NC` block is packed once and reused by every `MC`-row block of A.
pub fn matmul_v4_packed<T: Float>(a: MatRef<'_, T>, b: MatRef<'_, T>, c: &mut [T]) {
    check_shapes(&a, &b, c);
    c.fill(T::ZERO);
    packed_for_isa(a, b, c, b.cols, false);
}

/// v5: v4 with the row blocks of C computed by different rayon threads. All of B is packed
/// first (its blocks spread over the threads), then one fork: each task runs every block of
/// B over its rows, packing its own A. Tasks are at most `MC` rows and as many for every
/// thread (the MLP's M = 128 on 2 threads splits 66 + 62; 256 rows are four tasks of 64).
pub fn matmul_v5_packed_parallel<T: Float>(a: MatRef<'_, T>, b: MatRef<'_, T>, c: &mut [T]) {
    check_shapes(&a, &b, c);
    c.fill(T::ZERO);
    packed_for_isa(a, b, c, b.cols, worth_parallel(&a, &b));
}

fn worth_parallel<T>(a: &MatRef<'_, T>, b: &MatRef<'_, T>) -> bool {
    let min = if crate::threads::workers_polling() { PARALLEL_MIN_FLOPS_POLLING } else { PARALLEL_MIN_FLOPS };
    2 * a.rows * a.cols * b.cols >= min && rayon::current_num_threads() > 1
}

/// v6: for f32 and f64 on AVX-512, AVX2 or NEON (aarch64), the kernel of `matmul/wide.rs` (a
/// tile of 6 x 4 or 12 x 2 vectors, 6 x 64 or 12 x 32 for f32 with AVX-512, 6 x 16 with
/// NEON, or 6 x 2 vectors with AVX2, and 24 x 1 (AVX2: 12 x 1) for a B one vector wide; A read
/// in place; B in blocks held in L2); elsewhere v5. Parallel when the product is big enough.
pub fn matmul_v6_wide<T: Float>(a: MatRef<'_, T>, b: MatRef<'_, T>, c: &mut [T]) {
    gemm(a, b, c, true);
}

/// The fastest version for this CPU and element type: `C = A B`. With `parallel`, products big
/// enough to gain from it are split over rayon threads; without, the caller's thread does all
/// (for callers that are already one of many parallel tasks).
pub fn gemm<T: Float>(a: MatRef<'_, T>, b: MatRef<'_, T>, c: &mut [T], parallel: bool) {
    check_shapes(&a, &b, c);
    best(a, b, c, b.cols, parallel && worth_parallel(&a, &b), Output::Overwrite);
}

/// [`gemm`] into rows `ldc` apart (a block inside a wider matrix: a head's columns of an
/// attention output, say), overwriting them or, with `accumulate`, adding onto them.
/// Values between the rows are left alone.
pub fn gemm_strided<T: Float>(
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    c: &mut [T],
    ldc: usize,
    parallel: bool,
    accumulate: bool,
) {
    let c = strided_out(&a, &b, c, ldc);
    let output = if accumulate { Output::Accumulate } else { Output::Overwrite };
    best(a, b, c, ldc, parallel && worth_parallel(&a, &b), output);
}

/// What a product does with its output.
#[derive(Clone, Copy, Debug)]
enum Output<'b, T> {
    /// `C = A B`: C's old contents are ignored.
    Overwrite,
    /// `C += A B`.
    Accumulate,
    /// `C = A B + bias`, the bias (one value per column) added to every row.
    Bias(&'b [T]),
}

/// `C = A B + bias` (bias added to every row): the product accumulates onto rows that start
/// as copies of the bias, so a linear layer's bias costs no extra pass over its output.
pub fn matmul_bias<T: Float>(a: MatRef<'_, T>, b: MatRef<'_, T>, bias: &[T], c: &mut [T]) {
    check_shapes(&a, &b, c);
    best(a, b, c, b.cols, worth_parallel(&a, &b), Output::Bias(bias));
}

/// v6 for f32 and f64 on AVX-512 or AVX2, else the packed v4 / v5 kernels for this CPU. With a
/// bias, the v6 kernel adds it as it first stores C; the others start from rows copied from
/// it. `c` is already checked (and trimmed) for `ldc`; a bias has one value per column.
fn best<T: Float>(a: MatRef<'_, T>, b: MatRef<'_, T>, c: &mut [T], ldc: usize, parallel: bool, output: Output<'_, T>) {
    let n = b.cols;
    if let Output::Bias(bias) = output {
        assert_eq!(bias.len(), n, "matmul_bias: bias of {} values for {n} columns", bias.len());
    }
    if parallel && rayon::current_thread_index().is_none() {
        // Called from outside the pool (a program's main thread): move the whole product onto
        // a worker first. Each of its forks (packing B, then the rows of C) would otherwise be
        // injected into the pool on its own, a wake-up of a worker and a sleep of the caller
        // each. From `main`, `cargo bench --bench matmul`'s `128 x 128 x 256` went from
        // 0.50-0.75x to 0.69-0.82x the `gemm` crate, and its squares did not move.
        return crate::threads::in_pool(move || best(a, b, c, ldc, parallel, output));
    }
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    if a.cols > 0
        && (wide_as::<T, f32>(a, b, c, ldc, parallel, output) || wide_as::<T, f64>(a, b, c, ldc, parallel, output))
    {
        return;
    }
    // The packed kernels add onto C, so C starts as zeros or as copies of the bias (which is
    // also the whole answer when K = 0).
    if n > 0 {
        for row in c.chunks_mut(ldc) {
            match output {
                Output::Overwrite => row[..n].fill(T::ZERO),
                Output::Accumulate => {}
                Output::Bias(bias) => row[..n].copy_from_slice(bias),
            }
        }
    }
    packed_for_isa(a, b, c, ldc, parallel);
}

/// Runs the product through v6 (`wide.rs`) when `T` is `E` (f32 or f64, each a type of its own
/// to `wide.rs`) and this CPU has AVX-512 or AVX2 (on x86-64; aarch64 always has NEON);
/// returns whether it did.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn wide_as<T: Float, E: simd::Element>(
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    c: &mut [T],
    ldc: usize,
    parallel: bool,
    output: Output<'_, T>,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    let isa = isa::detect();
    #[cfg(target_arch = "x86_64")]
    if !matches!(isa, Isa::Avx512 | Isa::Avx2Fma) {
        return false;
    }
    let (Some(a_data), Some(b_data), Some(c)) =
        (same_type::<T, E>(a.data), same_type::<T, E>(b.data), same_type_mut::<T, E>(c))
    else {
        return false;
    };
    let output = match output {
        Output::Overwrite => Output::Overwrite,
        Output::Accumulate => Output::Accumulate,
        Output::Bias(bias) => Output::Bias(same_type::<T, E>(bias).expect("bias has the element type of a")),
    };
    let (a, b) = (a.with_data(a_data), b.with_data(b_data));
    // SAFETY: isa::detect() returned this instruction set, so isa::supported saw its features
    // (avx512f, avx2 and fma; or avx2 and fma) on this CPU.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        wide::gemm(isa == Isa::Avx512, a, b, c, ldc, parallel, output)
    };
    #[cfg(target_arch = "aarch64")]
    wide::gemm_neon(a, b, c, ldc, parallel, output);
    true
}

/// What v6's f32 register tile reaches alone on this machine: [`tile_ceiling`]'s measurement.
#[derive(Clone, Copy, Debug)]
pub struct TileCeiling {
    /// Rows and columns of the register tile (6 x 64 with AVX-512, 6 x 16 with AVX2 or NEON).
    pub tile: (usize, usize),
    /// Depth of each call of the tile's kernel: the product's depth slice.
    pub depth: usize,
    /// Panels of B in the block that each tile of A walks (512 KiB, held in L2).
    pub panels: usize,
    /// Billions of f32 flops per second, all threads together (the best round).
    pub gflops: f64,
    /// Threads that ran it at once.
    pub threads: usize,
}

/// Measures v6's f32 register tile alone, the way the product runs its inner loops but with
/// nothing else: on each of `threads` threads, a packed tile of A held in L1 walks a block of
/// packed panels of B held in L2, over and over, adding into one tile of C. No packing, no
/// tasks, no partial tiles, no C beyond one tile. Best of `rounds` rounds of about
/// `round_time` each, as [`peak::fma_peak`](super::peak::fma_peak) measures the FMA loop.
///
/// The FMA peak counts only multiply-adds on registers; this counts them with the loads that
/// feed them (per step of the 6 x 64 tile, four 64-byte loads of B and six broadcasts of A
/// for 24 FMAs). Its share of the FMA peak is the most that a product with this tile can
/// reach here, and a product's rate divided by this one shows what the rest of it (packing,
/// tasks, edges, C) costs. `cargo bench --bench matmul` and `kernel_report` print both.
///
/// `None` where the engine does not run v6 (an x86-64 CPU without AVX2 + FMA, or with
/// `GLASSBOX_ISA=portable`; any architecture but x86-64 and aarch64).
///
/// ```
/// use std::time::Duration;
/// if let Some(tile) = glassbox::backend::cpu::matmul::tile_ceiling(1, 1, Duration::from_millis(10)) {
///     assert_eq!(tile.tile.0, 6);
///     assert!(tile.gflops > 0.0);
/// }
/// ```
pub fn tile_ceiling(threads: usize, rounds: usize, round_time: std::time::Duration) -> Option<TileCeiling> {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    {
        #[cfg(target_arch = "x86_64")]
        let vectors = match isa::detect() {
            Isa::Avx512 => wide::TileVectors::Avx512,
            Isa::Avx2Fma => wide::TileVectors::Avx2,
            Isa::Portable => return None,
        };
        #[cfg(target_arch = "aarch64")]
        let vectors = wide::TileVectors::Neon;
        let (rows, cols, depth, panels) = wide::tile_alone_shape(vectors);
        let threads = threads.max(1);
        let pass_flops = (2 * rows * cols * depth * panels) as f64;
        // Small values with normal products (1e-6 and up): C grows by about 0.01 a pass, so it
        // stays finite and clear of subnormals (whose slow assists would skew the timing)
        // however long a round.
        let operands = || {
            let a: Vec<f32> = (0..rows * depth).map(|i| (i % 7) as f32 * 1e-3).collect();
            let b: Vec<f32> = (0..depth * cols * panels).map(|i| (i % 5) as f32 * 1e-3).collect();
            (HostBuffer::from(a), HostBuffer::from(b), HostBuffer::<f32>::zeroed(rows * cols))
        };
        let sixteen_passes = |(a, b, c): &mut (HostBuffer<f32>, HostBuffer<f32>, HostBuffer<f32>)| {
            // SAFETY: isa::detect() returned AVX-512 (avx512f, avx2, fma seen by
            // isa::supported) or AVX2 + FMA, or this is aarch64, which always has NEON; the
            // buffers have the lengths `tile_alone` checks.
            unsafe { wide::tile_alone(vectors, a, b, c, 16) };
            std::hint::black_box(&*c);
            16.0 * pass_flops
        };
        let gflops = super::peak::best_rate(threads, rounds, round_time, operands, sixteen_passes);
        Some(TileCeiling { tile: (rows, cols), depth, panels, gflops, threads })
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = (threads, rounds, round_time);
        None
    }
}

/// Picks the tile size and compiled kernel for this CPU.
/// Accumulates `A B` onto C (rows `ldc` apart); callers zero C first for a plain product.
fn packed_for_isa<T: Float>(a: MatRef<'_, T>, b: MatRef<'_, T>, c: &mut [T], ldc: usize, parallel: bool) {
    let isa = isa::detect();
    // Calling a target_feature function is unsafe only because the CPU might lack the feature;
    // the kernel bodies below are safe Rust (or check their panel bounds), so that is the one
    // thing each SAFETY argument has to establish. The assertion re-checks it in tests.
    debug_assert!(isa::supported(isa), "matmul: {isa:?} kernel chosen on a CPU without its features");
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        if let (Some(a_data), Some(b_data)) = (same_type::<T, f32>(a.data), same_type::<T, f32>(b.data)) {
            let c = same_type_mut::<T, f32>(c).expect("c has the element type of a");
            let (a, b) = (a.with_data(a_data), b.with_data(b_data));
            const MR: usize = AVX512_F32_TILE.0;
            const NR: usize = AVX512_F32_TILE.1;
            return packed::<f32, MR, NR>(a, b, c, ldc, parallel, |kc, mc, nc, ap, bp, c, ldc, j0| {
                // SAFETY: isa is Avx512 only when isa_supported saw avx512f (and avx2, fma) on
                // this CPU; the kernel checks its panel lengths before reading through pointers.
                unsafe { macro_kernel_avx512_f32(kc, mc, nc, ap, bp, c, ldc, j0) }
            });
        }
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => {
            packed::<T, { AVX512_TILE.0 }, { AVX512_TILE.1 }>(
                a,
                b,
                c,
                ldc,
                parallel,
                |kc, mc, nc, ap, bp, c, ldc, j0| {
                    // SAFETY: this arm runs only when isa::detect() saw avx512f and fma on this CPU;
                    // the kernel body is safe Rust (every slice access is bounds-checked).
                    unsafe { macro_kernel_avx512(kc, mc, nc, ap, bp, c, ldc, j0) }
                },
            )
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => {
            packed::<T, { AVX2_TILE.0 }, { AVX2_TILE.1 }>(a, b, c, ldc, parallel, |kc, mc, nc, ap, bp, c, ldc, j0| {
                // SAFETY: as above, with avx2 and fma detected.
                unsafe { macro_kernel_avx2(kc, mc, nc, ap, bp, c, ldc, j0) }
            })
        }
        _ => packed::<T, { PORTABLE_TILE.0 }, { PORTABLE_TILE.1 }>(
            a,
            b,
            c,
            ldc,
            parallel,
            |kc, mc, nc, ap, bp, c, ldc, j0| {
                macro_kernel::<T, { PORTABLE_TILE.0 }, { PORTABLE_TILE.1 }, false>(kc, mc, nc, ap, bp, c, ldc, j0)
            },
        ),
    }
}

thread_local! {
    /// Per-thread scratch of one-thread products (v4's and v6's): two buffers for packed B and
    /// packed A. They are 8-byte words, so one pair serves f32 and f64 products alike, in
    /// `HostBuffer`s, so every packed panel starts on a cache line.
    static SCRATCH: RefCell<(HostBuffer<u64>, HostBuffer<u64>)> =
        const { RefCell::new((HostBuffer::new(), HostBuffer::new())) };
}

/// Runs `f` with this thread's two scratch buffers: no lock, no allocation once they have
/// grown. Products never nest on one thread (nothing inside one calls back into rayon or
/// into another product), so the buffers are never asked for twice at once; if they were,
/// fresh ones would be used.
fn with_scratch<R>(f: impl FnOnce(&mut HostBuffer<u64>, &mut HostBuffer<u64>) -> R) -> R {
    SCRATCH.with(|cell| {
        let mut fresh = (HostBuffer::new(), HostBuffer::new());
        let mut guard = cell.try_borrow_mut();
        let (b_words, a_words) = match guard.as_deref_mut() {
            Ok((b_words, a_words)) => (b_words, a_words),
            Err(_) => (&mut fresh.0, &mut fresh.1),
        };
        f(b_words, a_words)
    })
}

/// The first `len` values of type `T` in `words`, replaced by a bigger buffer first if it is
/// too short (contents unspecified: the packing functions overwrite every value they hand on).
fn words_as<T: bytemuck::Pod>(words: &mut HostBuffer<u64>, len: usize) -> &mut [T] {
    let needed = (len * std::mem::size_of::<T>()).div_ceil(8);
    if words.len() < needed {
        *words = HostBuffer::zeroed(needed);
    }
    &mut bytemuck::cast_slice_mut::<u64, T>(&mut words[..])[..len]
}

/// The blocked loop nest around a macro kernel compiled for an `MR x NR` tile.
///
/// On one thread (v4): for each `NC`-column block and `KC`-deep slice, pack B's block once,
/// then run every `MC`-row block of A over it. In parallel (v5): first pack all of B's blocks,
/// spread over the threads, then fork once: each task takes a block of rows of C and runs
/// every B block over it, packing its own A. (v5 used to fork and join once per block of B,
/// with one thread packing the next block while the others waited: on 2 threads it gained
/// 1.0-1.3x over v4 below 1024², and 1.8x at 1024².)
fn packed<T: Float, const MR: usize, const NR: usize>(
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    c: &mut [T],
    ldc: usize,
    parallel: bool,
    kernel: impl Fn(usize, usize, usize, &[T], &[T], &mut [T], usize, usize) + Sync,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    // Scratch is never freshly allocated per product: at these sizes that is a page fault per
    // 4 KiB (6% of a 2-thread `128 x 784 x 256` product's samples).
    let a_len = |mc: usize| mc.next_multiple_of(MR) * KC.min(k);
    if !parallel {
        // One-thread products (attention runs hundreds per step, one head per task) use this
        // thread's own scratch; parallel ones below take theirs from the buffer pool.
        with_scratch(|b_words, a_words| {
            let b_buffer = words_as::<T>(b_words, packed_b_len::<NR>(KC.min(k), NC.min(n)));
            let a_buffer = words_as::<T>(a_words, a_len(MC.min(m)));
            for j0 in (0..n).step_by(NC) {
                let nc = NC.min(n - j0);
                for p0 in (0..k).step_by(KC) {
                    let kc = KC.min(k - p0);
                    let b_packed = pack_b::<T, NR>(&b, p0, kc, j0, nc, b_buffer);
                    for (blk, c_rows) in c.chunks_mut(MC * ldc).enumerate() {
                        let (i0, rows) = (blk * MC, MC.min(m - blk * MC));
                        let a_packed = pack_a::<T, MR>(&a, i0, rows, p0, kc, a_buffer);
                        kernel(kc, rows, nc, a_packed, b_packed, c_rows, ldc, j0);
                    }
                }
            }
        });
        return;
    }
    // Every (column block, depth slice) of B, in the order each task walks them, and where
    // its packed values start in one buffer.
    let blocks: Vec<(usize, usize)> =
        (0..n).step_by(NC).flat_map(|j0| (0..k).step_by(KC).map(move |p0| (j0, p0))).collect();
    let lens: Vec<usize> = blocks.iter().map(|&(j0, p0)| packed_b_len::<NR>(KC.min(k - p0), NC.min(n - j0))).collect();
    let mut b_buffer = pool::reuse::<T>(lens.iter().sum());
    let mut b_blocks: Vec<&mut [T]> = Vec::with_capacity(blocks.len());
    let mut rest = &mut b_buffer[..];
    for &len in &lens {
        let (block, after) = rest.split_at_mut(len);
        b_blocks.push(block);
        rest = after;
    }
    b_blocks.par_iter_mut().zip(&blocks).for_each(|(block, &(j0, p0))| {
        pack_b::<T, NR>(&b, p0, KC.min(k - p0), j0, NC.min(n - j0), block);
    });
    // Tasks of at most MC rows, as many for every thread: 256 rows on 2 threads are four
    // tasks of 64, not 96 + 96 + 64 (two of which would land on one thread).
    let tasks = m.div_ceil(MC).next_multiple_of(rayon::current_num_threads());
    let mc = m.div_ceil(tasks).next_multiple_of(MR);
    c.par_chunks_mut(mc * ldc).enumerate().for_each(|(blk, c_rows)| {
        let (i0, rows) = (blk * mc, mc.min(m - blk * mc));
        let mut a_buffer = pool::reuse::<T>(a_len(rows));
        for (&(j0, p0), b_packed) in blocks.iter().zip(&b_blocks) {
            let kc = KC.min(k - p0);
            let a_packed = pack_a::<T, MR>(&a, i0, rows, p0, kc, &mut a_buffer);
            kernel(kc, rows, NC.min(n - j0), a_packed, b_packed, c_rows, ldc, j0);
        }
        pool::give_back(a_buffer);
    });
    drop(b_blocks);
    pool::give_back(b_buffer);
}

/// Batched product of two views already broadcast to one batch shape: `la` is
/// `[batch.., M, K]`, `lb` is `[batch.., K, N]`; the result is contiguous `[batch.., M, N]`.
pub fn matmul<T: Float>(a: &[T], la: &Layout, b: &[T], lb: &Layout) -> HostBuffer<T> {
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
    // Every version overwrites its output, so the buffer's old contents do not matter.
    let mut out = pool::reuse::<T>(a_offsets.len() * m * n);
    if m * n == 0 {
        return out;
    }
    let one = |(i, c): (usize, &mut [T]), parallel_inside: bool| {
        gemm(mat(a, la, a_offsets[i], m, k), mat(b, lb, b_offsets[i], k, n), c, parallel_inside)
    };
    let small = 2 * m * n * k < PARALLEL_MIN_FLOPS;
    if a_offsets.len() > 1 && small {
        out.par_chunks_mut(m * n).enumerate().for_each(|item| one(item, false));
    } else {
        out.chunks_mut(m * n).enumerate().for_each(|item| one(item, true));
    }
    out
}

// ----- the ladder entry for `cpu::ladders()` ---------------------------------------------------

/// Largest error accepted by the ladder check, relative to `sum_k |A[i, k] B[k, j]|` (the
/// scale f32 rounding works at): rounding in a length-k sum grows at most like `k * 6e-8`
/// (6e-5 at k = 1024), while a product dropped or counted twice moves a result by about
/// `1 / k` of that scale.
pub const LADDER_TOLERANCE: f64 = 1e-4;
/// Output elements checked per run: all of them on small sizes, this many sampled on large
/// ones (each check is a length-k dot product in f64).
const CHECKED_ELEMENTS: usize = 4096;
/// The naive version is skipped above this many flops (about a second at its pace).
const NAIVE_MAX_FLOPS: f64 = 3e8;

/// The GEMM ladder as [`cpu::ladders`](super::ladders) lists it: every version of
/// [`versions`] in f32, checked against exact dot products.
pub fn ladder() -> super::ladder::Ladder {
    use super::ladder::{Ladder, LadderVersion, Limit};
    Ladder {
        family: "matmul",
        source: "src/backend/cpu/matmul.rs",
        limit: Limit::Compute,
        tolerance: LADDER_TOLERANCE,
        tolerance_note: "|c - exact| / sum_k |a_ik b_kj|",
        versions: versions::<f32>()
            .into_iter()
            .map(|(name, _)| LadderVersion {
                name,
                max_flops: (name == "v1_naive").then_some(NAIVE_MAX_FLOPS),
                parallel: name == "v5_packed_parallel" || name == "v6_wide",
            })
            .collect(),
        // The MLP's first layer (batch 128, 784 -> 256), then squares from cache-sized to
        // larger than L2.
        report_sizes: vec![vec![128, 784, 256], vec![256, 256, 256], vec![512, 512, 512], vec![1024, 1024, 1024]],
        test_sizes: vec![vec![1, 1, 1], vec![7, 13, 5], vec![67, 300, 33], vec![97, 257, 130]],
        setup: |dims, seed| Box::new(MatmulWorkload::new(dims, seed)),
    }
}

/// Random `M x K` and `K x N` f32 matrices, an output buffer, and exact f64 values of the
/// output elements that get checked.
struct MatmulWorkload {
    m: usize,
    k: usize,
    n: usize,
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
    /// `(index into c, exact value, sum_k |a_ik b_kj|)`.
    checks: Vec<(usize, f64, f64)>,
}

impl MatmulWorkload {
    fn new(dims: &[usize], seed: u64) -> MatmulWorkload {
        assert!(dims.len() == 3, "matmul ladder: sizes are [M, K, N], got {dims:?}");
        let (m, k, n) = (dims[0], dims[1], dims[2]);
        let mut rng = crate::rng::Rng::new(seed);
        let a: Vec<f32> = (0..m * k).map(|_| rng.normal() as f32).collect();
        let b: Vec<f32> = (0..k * n).map(|_| rng.normal() as f32).collect();
        let positions: Vec<usize> = if m * n <= CHECKED_ELEMENTS {
            (0..m * n).collect()
        } else {
            (0..CHECKED_ELEMENTS).map(|_| rng.below(m * n)).collect()
        };
        let checks = positions
            .into_iter()
            .map(|idx| {
                let (i, j) = (idx / n, idx % n);
                let (mut exact, mut scale) = (0.0f64, 0.0f64);
                for p in 0..k {
                    let product = a[i * k + p] as f64 * b[p * n + j] as f64;
                    exact += product;
                    scale += product.abs();
                }
                (idx, exact, scale)
            })
            .collect();
        MatmulWorkload { m, k, n, a, b, c: vec![f32::NAN; m * n], checks }
    }
}

impl super::ladder::Workload for MatmulWorkload {
    fn size(&self) -> String {
        format!("{}x{}x{}", self.m, self.k, self.n)
    }

    fn flops(&self) -> f64 {
        2.0 * (self.m * self.k * self.n) as f64
    }

    fn bytes(&self) -> f64 {
        4.0 * (self.m * self.k + self.k * self.n + self.m * self.n) as f64
    }

    fn run(&mut self, version: usize) {
        let f = versions::<f32>()[version].1;
        f(MatRef::row_major(&self.a, self.m, self.k), MatRef::row_major(&self.b, self.k, self.n), &mut self.c);
    }

    fn error(&self) -> f64 {
        self.checks
            .iter()
            .map(|&(idx, exact, scale)| {
                let err = (self.c[idx] as f64 - exact).abs();
                // NaN (an element never written) must fail, so it is mapped to infinity.
                if err.is_nan() {
                    f64::INFINITY
                } else {
                    err / scale.max(f64::MIN_POSITIVE)
                }
            })
            .fold(0.0, f64::max)
    }
}
