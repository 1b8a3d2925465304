//! v6, the f32 GEMM the engine runs on AVX-512 CPUs (other element types and CPUs run v5).
//!
//! Three changes from v5, each answering something a profile of the GPT training step showed:
//!
//! - **A 12 x 32 register tile.** v5's 12 x 16 tile issues 13 loads (one vector of B, twelve
//!   broadcasts of A) per 12 FMAs. A core issues two loads and two FMAs per cycle, so the load
//!   ports, not the FMA units, set its pace. Two vectors of B per depth step make it 14 loads
//!   per 24 FMAs; the 24 accumulators (of 32 zmm registers) also cover the FMA latency twice.
//! - **A read in place.** Packing A copies `M x K` values to serve `M x K x N` multiply-adds:
//!   a `1/N` overhead, but a scalar gather per value. At the transformer's `N = 128` packing A
//!   took a third of the GEMM's time. The kernel reads its 12 rows of A through the strides
//!   when A's rows are contiguous (row-major) or its columns are (a transposed view, as in
//!   `X^T dY`); only the last, partial tile of rows (or an A with neither) is copied, into a
//!   zero-padded panel.
//! - **One fork per product.** B is packed once, whole, with the panels spread over threads;
//!   then every thread walks all depth slices for its blocks of rows. v5 forked and joined
//!   once per `KC` slice, with one thread packing B in between. Partial tiles use masked
//!   loads and stores instead of a scalar tail, and the first depth slice stores into C
//!   rather than adding onto a zeroed C.

use std::cell::RefCell;

use rayon::prelude::*;

use super::super::pool;
use super::{check_shapes, MatRef};

/// Rows of the register tile.
const MR: usize = 12;
/// Columns of the register tile: two 16-lane vectors.
const NR: usize = 32;
/// Depth of a slice: a `KC x NR` panel of B (32 KiB) stays in L1 while the row tiles of a
/// block stream past it.
const KC: usize = 256;
/// Largest block of rows a task takes: its `MC x KC` slice of A (192 KiB) stays in L2 while
/// every panel of B passes over it.
const MC: usize = 192;

/// How the kernel finds element `(i, p)` of A's tile.
#[derive(Clone, Copy, Debug)]
enum TileA {
    /// Rows are contiguous: `(i, p)` is at `i * step + p` (A row-major, read in place).
    Rows(usize),
    /// Columns are contiguous: `(i, p)` is at `i + p * step` (a packed panel).
    Columns(usize),
}

/// `C = A B`, `C += A B` or `C = A B + bias` (by `start`) for f32 matrices, C contiguous
/// `M x N`.
///
/// # Safety
/// The CPU must support AVX-512F.
pub(super) unsafe fn gemm(a: MatRef<'_, f32>, b: MatRef<'_, f32>, c: &mut [f32], parallel: bool, start: Start<'_>) {
    check_shapes(&a, &b, c);
    if let Start::Bias(bias) = start {
        assert_eq!(bias.len(), b.cols, "matmul_bias: bias of {} values for {} columns", bias.len(), b.cols);
    }
    assert!(in_bounds(&a) && in_bounds(&b), "matmul v6: a strided operand reaches past its buffer");
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        match start {
            Start::Overwrite => c.fill(0.0),
            Start::Accumulate => {}
            Start::Bias(bias) => c.chunks_exact_mut(n).for_each(|row| row.copy_from_slice(bias)),
        }
        return;
    }
    let threads = if parallel { rayon::current_num_threads() } else { 1 };
    let mc = rows_per_task(m, threads);
    let (b_len, a_len) = (k * n.next_multiple_of(NR), mc.next_multiple_of(MR) * KC);
    if threads == 1 {
        // Small products (attention runs hundreds per step) take their scratch from this
        // thread's own buffers: no lock, no allocation. Nothing below calls back into rayon,
        // so the buffers cannot be asked for twice on one thread; if they were, fresh ones
        // would be used.
        SCRATCH.with(|cell| {
            let mut fresh = (Vec::new(), Vec::new());
            let mut guard = cell.try_borrow_mut();
            let (packed, panels_a) = match guard.as_deref_mut() {
                Ok((b_buf, a_buf)) => (b_buf, a_buf),
                Err(_) => (&mut fresh.0, &mut fresh.1),
            };
            grow(packed, b_len);
            grow(panels_a, a_len);
            pack_b(&b, &mut packed[..b_len], false);
            for (blk, c_rows) in c.chunks_mut(mc * n).enumerate() {
                // SAFETY: the caller vouched for AVX-512F; `a` and `b` were checked in bounds
                // above; `c_rows` is a whole block of rows of C.
                unsafe { row_block(&a, blk * mc, c_rows, &packed[..b_len], k, n, start, panels_a) }
            }
        });
        return;
    }
    let mut packed = pool::reuse::<f32>(b_len);
    pack_b(&b, &mut packed, true);
    c.par_chunks_mut(mc * n).enumerate().for_each(|(blk, c_rows)| {
        let mut panels_a = pool::reuse::<f32>(a_len);
        // SAFETY: as in the one-thread branch.
        unsafe { row_block(&a, blk * mc, c_rows, &packed, k, n, start, &mut panels_a) };
        pool::give_back(panels_a);
    });
    pool::give_back(packed);
}

thread_local! {
    /// Per-thread scratch of one-thread products: (packed B, packed A panels).
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Makes `v` hold at least `len` values (contents unspecified: every use overwrites them).
fn grow(v: &mut Vec<f32>, len: usize) {
    if v.len() < len {
        v.resize(len, 0.0);
    }
}

/// True when every element of `m` lies inside its buffer (the kernel reads through raw
/// pointers, so this is checked once per product instead of per load).
fn in_bounds(m: &MatRef<'_, f32>) -> bool {
    m.rows == 0 || m.cols == 0 || m.offset + (m.rows - 1) * m.row_stride + (m.cols - 1) * m.col_stride < m.data.len()
}

/// Rows per task: at most `MC`, in whole tiles, and enough tasks that every thread gets a
/// near-equal share (rayon's work stealing evens out the rest).
fn rows_per_task(m: usize, threads: usize) -> usize {
    let tasks = m.div_ceil(MC).next_multiple_of(threads).min(m.div_ceil(MR)).max(1);
    m.div_ceil(tasks).next_multiple_of(MR)
}

/// Packs all of B: for each `KC` slice of depth, panels of `NR` columns, each stored
/// depth-major (`NR` values per depth step) and zero-padded past column `N`. The panel of
/// slice `p0` and columns `j0..` starts at `p0 * N_padded + j0 * kc`.
fn pack_b(b: &MatRef<'_, f32>, out: &mut [f32], parallel: bool) {
    let (k, n) = (b.rows, b.cols);
    let panels = n.div_ceil(NR);
    let pack = |p0: usize, panel: usize, dst: &mut [f32]| {
        let j0 = panel * NR;
        let cols = NR.min(n - j0);
        for (p, dst_row) in dst.chunks_exact_mut(NR).enumerate() {
            let src = b.offset + (p0 + p) * b.row_stride + j0 * b.col_stride;
            if b.col_stride == 1 {
                for (d, &v) in dst_row[..cols].iter_mut().zip(&b.data[src..src + cols]) {
                    *d = v;
                }
            } else {
                for (j, d) in dst_row[..cols].iter_mut().enumerate() {
                    *d = b.data[src + j * b.col_stride];
                }
            }
            dst_row[cols..].fill(0.0);
        }
    };
    if !parallel || k * n < 1 << 14 {
        let mut rest = out;
        for p0 in (0..k).step_by(KC) {
            for panel in 0..panels {
                let (dst, tail) = rest.split_at_mut(KC.min(k - p0) * NR);
                pack(p0, panel, dst);
                rest = tail;
            }
        }
        return;
    }
    // One job per (slice, panel): its destination is a contiguous `kc x NR` run of `out`.
    let mut jobs: Vec<(usize, usize, &mut [f32])> = Vec::with_capacity(k.div_ceil(KC) * panels);
    let mut rest = out;
    for p0 in (0..k).step_by(KC) {
        for panel in 0..panels {
            let (dst, tail) = rest.split_at_mut(KC.min(k - p0) * NR);
            jobs.push((p0, panel, dst));
            rest = tail;
        }
    }
    jobs.into_par_iter().for_each(|(p0, panel, dst)| pack(p0, panel, dst));
}

/// What the first depth slice does with C; later slices always add onto it.
#[derive(Clone, Copy, Debug)]
pub(super) enum Start<'b> {
    /// `C = A B`: C's old contents are ignored.
    Overwrite,
    /// `C += A B`.
    Accumulate,
    /// `C = A B + bias` with the bias (one value per column) added to every row.
    Bias(&'b [f32]),
}

/// One task: rows `i0..` of C (as many as `c_rows` holds), every depth slice, every panel.
///
/// # Safety
/// AVX-512F, `a` in bounds (checked by [`gemm`]), `panels_a` of at least `rows` rounded up
/// to `MR`, times `KC`, values.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn row_block(
    a: &MatRef<'_, f32>,
    i0: usize,
    c_rows: &mut [f32],
    packed: &[f32],
    k: usize,
    n: usize,
    start: Start<'_>,
    panels_a: &mut [f32],
) {
    let rows = c_rows.len() / n;
    let full_tiles = rows / MR;
    let n_padded = n.next_multiple_of(NR);
    // Row-major A is read in place. Any other A is copied once per depth slice into panels
    // (for a transposed A that is one 12-value copy per depth step; reading it in place would
    // walk a new cache line per step, with strides that crowd a few L1 sets).
    let in_place = a.col_stride == 1;
    for p0 in (0..k).step_by(KC) {
        let kc = KC.min(k - p0);
        let first_tile = if in_place { full_tiles } else { 0 };
        pack_a(a, i0 + first_tile * MR, rows - first_tile * MR, p0, kc, &mut panels_a[first_tile * MR * kc..]);
        let start = if p0 == 0 { start } else { Start::Accumulate };
        let slice = &packed[p0 * n_padded..p0 * n_padded + kc * n_padded];
        for (panel, b_panel) in slice.chunks_exact(kc * NR).enumerate() {
            let j0 = panel * NR;
            let cols = NR.min(n - j0);
            for r0 in (0..rows).step_by(MR) {
                let tile = r0 / MR;
                let (a_tile, layout) = if in_place && tile < full_tiles {
                    (a.data.as_ptr().add(a.offset + (i0 + r0) * a.row_stride + p0), TileA::Rows(a.row_stride))
                } else {
                    (panels_a.as_ptr().add(tile * MR * kc), TileA::Columns(MR))
                };
                let c_tile = c_rows.as_mut_ptr().add(r0 * n + j0);
                let tile_rows = MR.min(rows - r0);
                // SAFETY: in-place tiles are rows i0 + r0 .. + 12 <= M and depth p0 .. + kc
                // <= K of a row-major A checked in bounds; packed tiles are MR x kc panels
                // inside `panels_a` (tile < rows / MR rounded up). The B panel holds
                // kc x NR values. C's tile_rows rows of `cols` values from `c_tile` lie
                // inside `c_rows` (r0 + tile_rows <= rows, j0 + cols <= n), and a bias
                // holds n values (checked by the caller).
                kernel(kc, a_tile, layout, b_panel.as_ptr(), c_tile, n, tile_rows, cols, start, j0);
            }
        }
    }
}

/// Copies rows `i0..i0 + rows`, depth `p0..p0 + kc` of A into panels of `MR` rows stored as
/// columns (`MR` values per depth step), zero-padding the last panel.
#[inline(always)]
fn pack_a(a: &MatRef<'_, f32>, i0: usize, rows: usize, p0: usize, kc: usize, out: &mut [f32]) {
    for (panel, dst) in out.chunks_exact_mut(MR * kc).take(rows.div_ceil(MR)).enumerate() {
        let r0 = panel * MR;
        let panel_rows = MR.min(rows - r0);
        for (p, dst_p) in dst.chunks_exact_mut(MR).enumerate() {
            let src = a.offset + (i0 + r0) * a.row_stride + (p0 + p) * a.col_stride;
            if a.row_stride == 1 {
                // A transposed: the panel's column is already contiguous.
                dst_p[..panel_rows].copy_from_slice(&a.data[src..src + panel_rows]);
            } else {
                for (i, d) in dst_p[..panel_rows].iter_mut().enumerate() {
                    *d = a.data[src + i * a.row_stride];
                }
            }
            dst_p[panel_rows..].fill(0.0);
        }
    }
}

/// The register tile: `C[0..rows, 0..cols] (+)= A_tile B_panel`, `kc` deep, with 24 zmm
/// accumulators (12 rows x 2 vectors). Per depth step: two loads of B, then each row's A
/// value is broadcast from memory straight into two FMAs.
///
/// # Safety
/// AVX-512F. A's 12 x kc tile must be readable through `tile` from `a`, `b` must hold
/// `kc * 32` values, and C's `rows x cols` tile (row step `ldc`) must be writable.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn kernel(
    kc: usize,
    a: *const f32,
    tile: TileA,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    start: Start<'_>,
    j0: usize,
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    // The two A layouts get their own loops, so each one's addresses are a fixed pattern the
    // compiler can strength-reduce.
    match tile {
        TileA::Rows(lda) => {
            for p in 0..kc {
                let b0 = _mm512_loadu_ps(b.add(NR * p));
                let b1 = _mm512_loadu_ps(b.add(NR * p + 16));
                for (i, acc_i) in acc.iter_mut().enumerate() {
                    let a_ip = _mm512_set1_ps(*a.add(i * lda + p));
                    acc_i[0] = _mm512_fmadd_ps(a_ip, b0, acc_i[0]);
                    acc_i[1] = _mm512_fmadd_ps(a_ip, b1, acc_i[1]);
                }
            }
        }
        TileA::Columns(step) => {
            for p in 0..kc {
                let b0 = _mm512_loadu_ps(b.add(NR * p));
                let b1 = _mm512_loadu_ps(b.add(NR * p + 16));
                let a_p = a.add(p * step);
                for (i, acc_i) in acc.iter_mut().enumerate() {
                    let a_ip = _mm512_set1_ps(*a_p.add(i));
                    acc_i[0] = _mm512_fmadd_ps(a_ip, b0, acc_i[0]);
                    acc_i[1] = _mm512_fmadd_ps(a_ip, b1, acc_i[1]);
                }
            }
        }
    }
    // Masks select the tile's valid columns: all 16 lanes of both vectors inside the matrix,
    // fewer at its right edge.
    let lanes = |from: usize| -> __mmask16 {
        let valid = cols.saturating_sub(from).min(16);
        ((1u32 << valid) - 1) as __mmask16
    };
    let (m0, m1) = (lanes(0), lanes(16));
    if let Start::Bias(bias) = start {
        let at = bias.as_ptr().add(j0);
        let (bias0, bias1) = (_mm512_maskz_loadu_ps(m0, at), _mm512_maskz_loadu_ps(m1, at.wrapping_add(16)));
        for acc_i in acc.iter_mut() {
            acc_i[0] = _mm512_add_ps(acc_i[0], bias0);
            acc_i[1] = _mm512_add_ps(acc_i[1], bias1);
        }
    }
    for (i, acc_i) in acc.iter().enumerate().take(rows) {
        // The second vector's address may lie past the end of C when `cols <= 16`; its mask is
        // then empty, so nothing is read or written there (masked lanes never fault).
        let row = c.add(i * ldc);
        let (mut v0, mut v1) = (acc_i[0], acc_i[1]);
        if let Start::Accumulate = start {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, row));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, row.wrapping_add(16)));
        }
        _mm512_mask_storeu_ps(row, m0, v0);
        _mm512_mask_storeu_ps(row.wrapping_add(16), m1, v1);
    }
}
