//! v6, the f32 and f64 GEMM the engine runs on AVX-512 and AVX2 CPUs and on aarch64 (other
//! CPUs run v5). It is written once against the few vector operations of [`Simd`] and compiled
//! for each instruction set and element type (`simd.rs`): AVX-512's 16-lane (f32) or 8-lane
//! (f64) vectors and mask registers, AVX2's 8 or 4 lanes and vector masks, NEON's 4 or 2
//! lanes (partial vectors a lane at a time). The figures below are AVX-512's for f32
//! (f64 tiles are as many vectors, half as wide); AVX2 has 16 registers, so its tile is
//! 6 x 16 (12 accumulators); NEON has 32, so its tile is 6 x 4 vectors like AVX-512's
//! (6 x 16 f32).
//!
//! Three changes from v5, each answering something a profile of the GPT training step showed:
//!
//! - **A 6 x 64 register tile.** v5's 12 x 16 tile issues 13 loads (one vector of B, twelve
//!   broadcasts of A) per 12 FMAs. A core issues two wide loads and two FMAs per cycle, so
//!   the load ports, not the FMA units, set its pace. Four vectors of B and six broadcasts of
//!   A per depth step make it 10 loads per 24 FMAs; the 24 accumulators (of 32 zmm registers)
//!   also cover the FMA latency three times over. A 12 x 32 tile (14 loads per 24 FMAs) ran
//!   5-10% slower on a Sapphire Rapids core, so it only serves products whose width would
//!   leave much of a 64-wide tile on padding (attention's head dimension of 32).
//! - **A read in place.** Packing A copies `M x K` values to serve `M x K x N` multiply-adds:
//!   a `1/N` overhead, but a scalar gather per value. At the transformer's `N = 128` packing A
//!   took a third of the GEMM's time. The kernel reads its 6 rows of A through the strides
//!   when A's rows are contiguous (row-major) or its columns are (a transposed view, as in
//!   `X^T dY`); only the last, partial tile of rows (or an A with neither) is copied, into a
//!   zero-padded panel.
//! - **One fork per product.** B is packed once, whole, with the panels spread over threads;
//!   then every thread walks all depth slices for its blocks of rows. v5 forked and joined
//!   once per `KC` slice, with one thread packing B in between. Partial tiles use masked
//!   loads and stores instead of a scalar tail, and the first depth slice stores into C
//!   rather than adding onto a zeroed C.
//!
//! Later measurements (written up in `docs/kernels/matmul.md`) shaped the loops around the
//! kernel:
//!
//! - Each tile of A walks a block of B's panels (512 KiB, in L2) before the next tile
//!   starts, so the tile is read from L1 after its first panel ([`PANELS_PER_BLOCK`], depth
//!   [`KC`]).
//! - A long product runs in tall tasks, so B crosses from L3 less often ([`MC_TALL`]); a
//!   short one in many, so a late-waking thread can still steal ([`MC`]). While the pool's
//!   workers poll (`on_worker`), none wakes late, and any product of more than a block of
//!   rows per thread runs in tall tasks.
//! - A row-major B is read in place, like A, when packing it would cost more than it buys
//!   (`IN_PLACE_B_MAX_M`, `IN_PLACE_B_MIN`). That is the case in a weight gradient, whose B
//!   is a whole batch of activations and whose A has only a layer's width of rows, and in
//!   any product whose A has at most four tiles of rows (`IN_PLACE_B_FEW_TILES`).
//! - A last tile of fewer rows than the tile runs a kernel with only its rows of
//!   accumulators ([`short_tile`]), and six rows of a row-major A are packed by a transpose
//!   in registers ([`transpose_6x16`]) rather than gathered. Such a last tile of up to six
//!   rows of a row-major A is read in place, like the whole tiles.
//! - A long product's tasks each pack B themselves, one block at a time, into their own
//!   buffer ([`PackedB::PerTask`]): the block then sits in the packing core's L2 instead of
//!   going out to L3 and back.
//! - A short product with a block of rows or less per thread (the MLP's) forks once, into one
//!   task per thread that packs only the part of B it uses: a share of the depth when the
//!   product is deep ([`split_depth`]), else a share of B's panels ([`split_columns`]).

#[cfg(target_arch = "x86_64")]
use std::any::TypeId;
use std::ops::Range;

use rayon::prelude::*;

use super::super::pool;
use super::simd::{Element, Simd};
use super::{MatRef, Output};
use crate::tensor::{Float, HostBuffer};

/// Depth of a slice (at most; [`slice_depth`] evens the slices out). A tile of A, `6 x KC`
/// (12 KiB), stays in L1 while it walks a block of B's panels, and C's tiles are loaded and
/// stored once per slice, so a deeper slice touches C less often. 512 measured 2-3% faster
/// than 256 at 1024² and 2048² once tasks were tall ([`MC_TALL`]); before that, and before the
/// blocks, it made no difference. (128, whose 64-wide panel of B would fit L1, was slower.)
const KC: usize = 512;
/// Panels of B per block: each tile of A walks a block's panels (with 64-wide panels,
/// `KC x 256` values, 512 KiB, in L2) before the next tile starts, so the tile comes from L1
/// for all but the first. The earlier order (each panel meeting every tile before the next
/// panel) kept a panel too big for L1 and fetched every tile of A from L2 once per panel. At
/// depth 256, blocks of 8 panels (the same 512 KiB) measured 3% faster at N = 1024 and 2048
/// than no blocks.
const PANELS_PER_BLOCK: usize = 4;

/// Panels of `nr` columns of `bytes`-byte elements per block: [`PANELS_PER_BLOCK`] of
/// AVX-512's 64- and 32-wide f32 panels (and 32-wide f64 ones), and as many narrower ones as
/// make the same 1 KiB per depth step (AVX2's 16-wide f32 panels, 16 to a block).
fn panels_per_block(nr: usize, bytes: usize) -> usize {
    PANELS_PER_BLOCK.max(1024 / (nr * bytes))
}

/// The most panels a block holds: [`panels_per_block`] for the narrowest panels, NEON's f64
/// ones a vector (2 values, 16 bytes) wide.
const MAX_PANELS_PER_BLOCK: usize = 64;

/// Largest block of rows a task takes in a product that is short (see [`TALL_SHARE_FLOPS`]):
/// with many tasks per thread, rayon's work stealing evens out a thread that starts late
/// (waking a sleeping worker takes tens of microseconds) or is slowed by other work.
const MC: usize = 192;
/// Largest block of rows a task takes in a long product. Each block of B is brought into L2
/// once per task (when B was packed whole and shared, its first tile of rows read it from
/// L3; now the task packs it there), and all the task's tiles of rows use it, so tall tasks
/// fetch B less often: 1024-row tasks measured 4% faster than 192-row ones at 1024² and
/// 2048² on 2 threads. The task's block of A need not stay in L2 (each tile of it
/// is used from L1, one B block at a time).
const MC_TALL: usize = 1024;
/// Work per thread (multiply-adds times two) from which a product takes tall tasks, each
/// packing its own blocks of B ([`PackedB::PerTask`]), about 4 ms on one core: there a late
/// start is lost in the noise and the re-reads of B are not, and each task's copy of B is a
/// small share of its work.
/// The GPT's `2048 x 128 x 384` (0.2 GFLOP) ran 10% slower in two 1024-row tasks than in
/// twelve 174-row ones.
const TALL_SHARE_FLOPS: f64 = 1e9;
/// A lower threshold for deep products. Against the `gemm` crate on 2 threads (three
/// alternated rounds), tall tasks took 768³ from 1.00-1.02x to 1.06-1.09x, 640³ from
/// 1.05-1.07x to 1.07-1.11x, `512 x 1024 x 512` from 0.98-1.02x to 1.02-1.09x and the GPT's
/// `512 x 2048 x 128` (A transposed) from 0.91-1.02x to 0.99-1.05x; 512³ stayed within noise
/// in six. The GPT's `2048 x 128 x 512`, 128 deep, lost (0.97-1.04x to 0.93-0.96x), and its
/// `2048 x 512 x 128`, 128 wide, lost in one set of rounds (1.02-1.04x to 0.97-0.98x) and not
/// in another, hence [`TALL_MIN_DEPTH`] for both. The GPT step did not move.
const TALL_SHARE_FLOPS_DEEP: f64 = 1.2e8;
/// Least depth of a slice whose kernels prefetch their tile of C. Below it the 24 prefetches
/// of a tile cost load slots the depth loop needs (its loads are 10 per 24 FMAs) and hide
/// nothing. One thread, against the `gemm` crate (three alternated rounds): `128 x 10 x 128`
/// 0.99x -> 1.06-1.07x, `128 x 32 x 128` 0.99x -> 1.05-1.06x, `2048 x 64 x 128` 0.96-0.98x
/// -> 1.01x, `2048 x 128 x 384` 0.96-0.97x -> 1.00x; 512³ to 2048³ (512-deep slices, C from
/// L3 or memory) within noise, 384- and 367-deep slices too.
#[cfg(target_arch = "x86_64")]
const PREFETCH_C_MIN_DEPTH: usize = 256;
/// Least depth and width for [`TALL_SHARE_FLOPS_DEEP`].
const TALL_MIN_DEPTH: usize = 256;

/// Widest B for which a row-major A, and a row-major B, are read in place rather than packed.
/// (A wider B's rows lie so far apart that a block of its panels would crowd a few cache sets
/// once its row length is a power of two, and a wide product amortizes the packing anyway.)
const IN_PLACE_MAX_N: usize = 512;
/// Tallest A for which a row-major B is read in place. Packing B costs one copy of it, and
/// buys contiguous panels that every tile of rows reads, which the hardware prefetchers can
/// follow (B's rows in place are a new 4 KiB page every row or two). At `128 x 2048 x 384`
/// (the GPT's weight gradients) reading in place was 20% faster; at 384 and 512 rows it was
/// slower on 2 threads (`512 x 512 x 512` 0.73-0.95x the `gemm` crate against 0.97-1.02x
/// packed, the GPT's `512 x 2048 x 128` with A transposed 0.89-0.92x against 0.98-1.06x),
/// and on one thread, from 320 to 512 rows, it swung between 68% and 94% of the FMA peak
/// with the task boundaries.
const IN_PLACE_B_MAX_M: usize = 256;
/// Smallest B (in values: 1 MiB of f32) read in place. A smaller one is copied within L2 and
/// read from there. Read in place, the MNIST MLP's gradient products gain a lot alone
/// (`128 x 128 x 256` 0.57-0.63x -> 0.88-0.98x the `gemm` crate) but the epoch measured
/// 429-476 ms against 418-452 (four alternated rounds): in a step, B was just written by the
/// previous op, half in each core's cache, and in place each core reads all of it.
const IN_PLACE_B_MIN: usize = 1 << 18;
/// Most tiles of rows for which any row-major B is read in place, whatever its size. Packing
/// copies all of B to serve `M / MR` tiles; with a few, the copy costs as much as the
/// multiply-adds. Reading in place took `10 x 128 x 128` (the MNIST output layer) from 0.50x
/// to 0.91x the `gemm` crate on one thread, `12 x 784 x 256` from 0.17x to 1.08x on two, and
/// `6 x 1024 x 1024` from 0.23-0.38x to 0.96-1.12x. Up to four tiles rather than two:
/// `18 x 784 x 256` 0.69x -> 0.98x on one thread and 0.24x -> 0.67x on two, `24 x 784 x 256`
/// 0.39x -> 1.01x on two (and faster with B just written by both cores, 132-166 -> 102-114
/// µs). At eight tiles, `48 x 1024 x 1024` lost a fifth.
const IN_PLACE_B_FEW_TILES: usize = 4;

/// How the kernel finds element `(i, p)` of A's tile.
#[derive(Clone, Copy, Debug)]
enum TileA {
    /// Rows are contiguous: `(i, p)` is at `i * step + p` (A row-major, read in place).
    Rows(usize),
    /// A packed panel: `(i, p)` is at `i + p * MR`.
    Packed,
}

/// How the kernel finds the `LANES` values of vector `v` at depth step `p` of B's panel.
#[derive(Clone, Copy, Debug)]
enum TileB<E> {
    /// B's rows are contiguous: the step is at `p * step + LANES v` (B row-major, read in
    /// place).
    Rows(usize),
    /// As `Rows`, and each vector read is also stored where `Packed` would read it, in the
    /// panel that starts at the pointer: the kernel packs the panel for the tiles after it.
    RowsCopied(usize, *mut E),
    /// A packed panel: the step is at `(p * VECS + v) * LANES`.
    Packed,
}

/// `C = A B`, `C += A B` or `C = A B + bias` (by `output`) for f32 or f64 matrices, C's rows
/// `ldc` apart, `K > 0`. `c` runs from C's first element to its last (as `strided_out` trims
/// it), and a bias has one value per column (both checked by the caller, `best`).
///
/// With AVX-512 the register tile is 6 rows by four vectors (64 f32 columns), or 12 by two
/// vectors (32) when B's width rounds up to four vectors much worse than to two: attention's
/// products with a head dimension of 32, or a vocabulary of 65, would leave half or a quarter
/// of the wide tile's multiply-adds on padding. Both tiles hold 24 accumulators; the wide one
/// needs 10 loads per 24 FMAs, the narrow one 14, and is 5-10% slower where both fit.
///
/// With AVX2 (`avx512` false) the tile is 6 rows by two vectors (16 f32 or 8 f64 columns): 12
/// accumulators, two vectors of B and a broadcast fill 15 of its 16 registers, 8 loads per 12
/// FMAs.
///
/// A B no wider than one vector (the MNIST output layer's 10 classes) takes a tile one vector
/// wide and tall instead: 24 rows with AVX-512 (and NEON), 12 with AVX2. It needs a load per
/// multiply-add (a broadcast of A for each row), but the narrow tile would spend two thirds of
/// its multiply-adds on padding. From a polling worker on 2 threads, against the `gemm` crate:
/// `128 x 128 x 10` 0.92-0.93x -> 1.20-1.22x, `128 x 784 x 10` 0.86x -> 1.13-1.14x,
/// `2048 x 128 x 16` 0.90-0.91x -> 1.38-1.53x.
///
/// # Safety
/// The CPU must support AVX-512F (with AVX2 and FMA) when `avx512`, else AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn gemm<E: Element>(
    avx512: bool,
    a: MatRef<'_, E>,
    b: MatRef<'_, E>,
    c: &mut [E],
    ldc: usize,
    parallel: bool,
    output: Output<'_, E>,
) {
    // SAFETY: the caller vouched for the instruction set.
    unsafe {
        if avx512 {
            tiled_32_registers::<E::Avx512>(a, b, c, ldc, parallel, output)
        } else if b.cols <= E::Avx2::LANES {
            tiled::<E::Avx2, 12, 1>(a, b, c, ldc, parallel, output)
        } else {
            tiled::<E::Avx2, 6, 2>(a, b, c, ldc, parallel, output)
        }
    }
}

/// [`gemm`] on aarch64, with NEON's 128-bit vectors: the tiles of AVX-512, chosen by the same
/// rules ([`tiled_32_registers`]), as NEON has 32 registers too: 6 x 4 vectors (6 x 16 f32,
/// 6 x 8 f64; 24 registers hold the accumulators, 4 the step's B and one A's broadcast),
/// 12 x 2 or 24 x 1. NEON is part of every aarch64 CPU, so nothing needs checking at run time.
#[cfg(target_arch = "aarch64")]
pub(super) fn gemm_neon<E: Element>(
    a: MatRef<'_, E>,
    b: MatRef<'_, E>,
    c: &mut [E],
    ldc: usize,
    parallel: bool,
    output: Output<'_, E>,
) {
    // SAFETY: `tiled_32_registers` asks only that the CPU support `S`, and NEON is in the
    // aarch64 baseline.
    unsafe { tiled_32_registers::<E::Neon>(a, b, c, ldc, parallel, output) }
}

/// The product on an instruction set with 32 vector registers (AVX-512, NEON), its tile chosen
/// by B's width: 24 x 1 vectors for a B no wider than a vector, 12 x 2 where the 6 x 4 tile's
/// padding outweighs its fewer loads ([`narrow_tile_fits_better`]), else 6 x 4.
///
/// # Safety
/// The CPU must support `S`.
unsafe fn tiled_32_registers<S: Simd>(
    a: MatRef<'_, S::E>,
    b: MatRef<'_, S::E>,
    c: &mut [S::E],
    ldc: usize,
    parallel: bool,
    output: Output<'_, S::E>,
) {
    let (n, lanes) = (b.cols, S::LANES);
    // SAFETY: the caller vouched for S.
    unsafe {
        if n <= lanes {
            tiled::<S, 24, 1>(a, b, c, ldc, parallel, output)
        } else if narrow_tile_fits_better(n, lanes) {
            tiled::<S, 12, 2>(a, b, c, ldc, parallel, output)
        } else {
            tiled::<S, 6, 4>(a, b, c, ldc, parallel, output)
        }
    }
}

/// True when a B `n` wide fits the 12 x 2 vector tile much better than the 6 x 4 one (vectors
/// of `lanes`): when rounding `n` up to four vectors costs more than 8/7 of rounding it up to
/// two, the wide tile's padding outweighs its fewer loads per FMA.
fn narrow_tile_fits_better(n: usize, lanes: usize) -> bool {
    n.next_multiple_of(4 * lanes) * 7 > n.next_multiple_of(2 * lanes) * 8
}

/// The product with an `MR x LANES VECS` register tile of instruction set `S`.
///
/// # Safety
/// The CPU must support `S`.
unsafe fn tiled<S: Simd, const MR: usize, const VECS: usize>(
    a: MatRef<'_, S::E>,
    b: MatRef<'_, S::E>,
    c: &mut [S::E],
    ldc: usize,
    parallel: bool,
    output: Output<'_, S::E>,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(a.cols == b.rows && ldc >= n, "matmul v6: {}x{} times {}x{} into rows {ldc} apart", m, k, b.rows, n);
    if m == 0 || n == 0 {
        return;
    }
    assert!(k > 0, "matmul v6: an empty inner dimension is handled by the caller");
    assert_eq!(c.len(), (m - 1) * ldc + n, "matmul v6: output of {} values for {m} rows {ldc} apart", c.len());
    assert!(in_bounds(&a) && in_bounds(&b), "matmul v6: a strided operand reaches past its buffer");
    let threads = if parallel { rayon::current_num_threads() } else { 1 };
    // Tall tasks, each packing its own blocks of B (`PackedB::PerTask`), for a long product,
    // and for any with more than a block of rows per thread while the pool's other workers
    // poll (`on_worker`, as in the training loops). Many short tasks let rayon's stealing
    // absorb a thread that starts late, waking from sleep; with the workers polling, none
    // does, and one task per thread that packs its own B (as the `gemm` crate splits its
    // work) avoids reading the half of a shared packed B that the other core wrote.
    let tall = is_long((m, k, n), threads) || (threads > 1 && m > MC * threads && crate::threads::workers_polling());
    let mc = rows_per_task(m, threads, MR, tall);
    let depth = slice_depth(k);
    // A row-major B is read in place when A is short, all but a last partial panel (which is
    // packed, zero-padded): packing copies all of B to serve only `M / MR` tiles per panel, a
    // large share of a weight gradient's time (`X^T dY`: M is the layer's width, B the whole
    // batch of activations), and all of it when A has only a few tiles of rows. Only the
    // columns after the panels read in place are packed, into a buffer sized for them.
    let few_tiles = m <= IN_PLACE_B_FEW_TILES * MR;
    let b_in_place =
        b.col_stride == 1 && (few_tiles || (n <= IN_PLACE_MAX_N && m <= IN_PLACE_B_MAX_M && k * n >= IN_PLACE_B_MIN));
    let nr = S::LANES * VECS;
    let n_panels = n.div_ceil(nr);
    let in_place_panels = if b_in_place { n / nr } else { 0 };
    let skipped = in_place_panels * nr;
    let b_packed = MatRef { offset: b.offset + skipped * b.col_stride, cols: n - skipped, ..b };
    // A long product's tasks each pack B one block at a time into a buffer of their own (see
    // `PackedB::PerTask`); any other packs all of B once, shared by its tasks.
    let per_task = in_place_panels == 0 && tall;
    let b_len = if per_task { 0 } else { k * b_packed.cols.next_multiple_of(nr) };
    let a_len = mc.next_multiple_of(MR) * depth;
    // Block `blk` holds rows blk * mc .. of C.
    let rows_of = |blk: usize| mc.min(m - blk * mc);
    if threads == 1 {
        // Small products (attention runs hundreds per step) take their scratch from this
        // thread's own buffers (`super::with_scratch`): no lock, no allocation. Their 64-byte
        // alignment matters as the pool's does below.
        super::with_scratch(|b_words, a_words| {
            let b_buffer = super::words_as::<S::E>(b_words, b_len);
            // SAFETY: the caller vouched for S; `b_packed` is a column range of `b`, checked
            // in bounds above, and `b_buffer` holds `b_len` values.
            let b_panels = unsafe { panels_b::<S, VECS>(&b, &b_packed, b_buffer, in_place_panels, per_task, false) };
            let panels_a = super::words_as::<S::E>(a_words, a_len);
            // SAFETY: the caller vouched for S.
            unsafe {
                S::run(
                    #[inline(always)]
                    || {
                        for (blk, c_rows) in c.chunks_mut(mc * ldc).enumerate() {
                            // SAFETY: `a` and `b` were checked in bounds above; `c_rows` holds
                            // block `blk`'s rows of C, all its columns.
                            row_block::<S, MR, VECS>(
                                &a,
                                blk * mc,
                                rows_of(blk),
                                c_rows.as_mut_ptr(),
                                ldc,
                                &b_panels,
                                0..n_panels,
                                output,
                                panels_a,
                            )
                        }
                    },
                )
            }
        });
        return;
    }
    // A short product with only a block or so of rows per thread runs in one task per thread,
    // each packing the panels of B it needs, as it goes: one fork, not a fork to pack B and a
    // second to multiply by it. A deep one splits the depth (`depth_parts`), any other B's
    // panels (`split_columns`).
    let one_fork = in_place_panels == 0 && !per_task;
    if one_fork && split_depth(m, k, threads) {
        // SAFETY: the caller vouched for S; the operands were checked above.
        unsafe { depth_parts::<S, MR, VECS>(a, b, c, ldc, threads, output) };
        return;
    }
    if one_fork && split_columns(m, n_panels, threads) {
        let out = SharedOutput(c.as_mut_ptr());
        let b_panels = PanelsB { b: &b, packed: PackedB::PerTask, in_place_panels: 0 };
        (0..threads).into_par_iter().for_each(|task| {
            let panels = task * n_panels / threads..(task + 1) * n_panels / threads;
            let mut panels_a = pool::reuse::<S::E>(m.next_multiple_of(MR) * depth);
            // SAFETY: as in the one-thread branch; the tasks' panel ranges do not overlap, so
            // each writes its own columns of C, all of whose rows `c` holds.
            unsafe {
                S::run(
                    #[inline(always)]
                    || row_block::<S, MR, VECS>(&a, 0, m, out.get(), ldc, &b_panels, panels, output, &mut panels_a),
                )
            };
            pool::give_back(panels_a);
        });
        return;
    }
    // A pool buffer starts on a cache line, as every `HostBuffer` does: each depth step of a B
    // panel is whole 64-byte vector loads, and from an unaligned buffer every one of them
    // would straddle two lines.
    let mut buffer = pool::reuse::<S::E>(b_len);
    // SAFETY: as in the one-thread branch.
    let b_panels = unsafe { panels_b::<S, VECS>(&b, &b_packed, &mut buffer, in_place_panels, per_task, true) };
    c.par_chunks_mut(mc * ldc).enumerate().for_each(|(blk, c_rows)| {
        let mut panels_a = pool::reuse::<S::E>(a_len);
        // SAFETY: as in the one-thread branch (this task runs as a function of its own, so it
        // enables S itself).
        unsafe {
            S::run(
                #[inline(always)]
                || {
                    let (i0, rows) = (blk * mc, rows_of(blk));
                    let c_rows = c_rows.as_mut_ptr();
                    row_block::<S, MR, VECS>(&a, i0, rows, c_rows, ldc, &b_panels, 0..n_panels, output, &mut panels_a)
                },
            )
        };
        pool::give_back(panels_a);
    });
    pool::give_back(buffer);
}

/// C's first element, shared by tasks that each write their own columns of it
/// ([`split_columns`]).
struct SharedOutput<E>(*mut E);

// SAFETY: tasks write through the pointer only to their own columns of C, which no other task
// touches (see `tiled`), and C outlives them (the parallel loop returns before `tiled` does).
unsafe impl<E: Send> Sync for SharedOutput<E> {}

impl<E> SharedOutput<E> {
    /// The pointer (a method, so that a closure captures the whole `Sync` wrapper rather than
    /// its raw field).
    fn get(&self) -> *mut E {
        self.0
    }
}

/// True when a short product of `m` rows and `n_panels` panels of B runs as one task of
/// columns per thread rather than as tasks of rows. Each task then packs only its own panels,
/// as it goes, and multiplies all rows of A by them: one fork per product. Tasks of rows need
/// all of B packed before any starts, a fork of its own, and each reads the half of the
/// packed B that the other core wrote. A product that gives each thread a block of at most
/// [`MC`] rows gains nothing from the row split's stealing.
///
/// With B hot in both cores' caches (the GEMM bench's case), on 2 threads, against the `gemm`
/// crate (four alternated rounds, from a polling worker): `128 x 128 x 256` 0.60-0.62x ->
/// 0.86-0.91x, `128 x 784 x 256` 0.82-0.83x -> 0.99-1.00x (that one now splits its depth).
/// The panels must divide evenly among the threads: `256 x 128 x 832` (13 panels, A
/// transposed) ran at 0.76-0.78x the crate split 6 + 7, against 0.91x by rows, while 768 and
/// 896 columns gained.
fn split_columns(m: usize, n_panels: usize, threads: usize) -> bool {
    m <= MC * threads && n_panels >= threads && n_panels.is_multiple_of(threads)
}

/// True when a short product of `m` rows runs as [`depth_parts`]: A has at most a block of
/// [`MC`] rows per thread, and the product is deeper than one slice ([`KC`]), with at least
/// half a slice per thread.
///
/// Each task then packs the rows of B in its share of the depth. When B was just written by
/// a parallel op that split it by rows, as the optimizer's update leaves a weight matrix,
/// those are mostly rows the same core wrote; a task of columns (`split_columns`) would read
/// half of its rows from the other core's cache. The MNIST MLP's first layer,
/// `128 x 784 x 256` on 2 threads, with B rewritten by both cores before each product (the
/// GEMM bench's second summary line, three runs): 0.89-0.90x the `gemm` crate by columns,
/// 1.07-1.10x by rows, 1.21-1.31x by depth. With B hot the depth split kept the columns'
/// 0.97-1.00x; at `128 x 512 x 256` it fell to 0.77-0.86x, hence more than one slice.
fn split_depth(m: usize, k: usize, threads: usize) -> bool {
    m <= MC * threads && k > KC && 2 * k >= KC * threads
}

/// `C = A B` (or `C += A B`, or plus a bias, by `output`) as `parts` tasks, task `t` taking
/// the `t`-th share of the depth: A's columns and B's rows in it, multiplied on one thread
/// ([`tiled`] with its own scratch). The first task writes into C itself, with `output`; the
/// others overwrite buffers of their own, which are then added onto C, a block of rows per
/// thread. Splitting the depth costs that addition (`(parts - 1) M N` loads and adds), small
/// against the `2 M N K / parts` flops of a task when K is deep.
///
/// # Safety
/// The CPU supports `S`; the operands and C were checked by [`tiled`] (in bounds, `c` holding
/// M rows of N values `ldc` apart); `parts > 0`.
unsafe fn depth_parts<S: Simd, const MR: usize, const VECS: usize>(
    a: MatRef<'_, S::E>,
    b: MatRef<'_, S::E>,
    c: &mut [S::E],
    ldc: usize,
    parts: usize,
    output: Output<'_, S::E>,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let mut partial = pool::reuse::<S::E>((parts - 1) * m * n);
    // Part 0 writes C itself; part p > 0 overwrites the (p - 1)-th M N of `partial`.
    let targets = rayon::iter::once((&mut *c, ldc, output))
        .chain(partial.par_chunks_mut(m * n).map(|sums| (sums, n, Output::Overwrite)));
    targets.enumerate().for_each(|(part, (target, ld, out))| {
        let depth = part * k / parts..(part + 1) * k / parts;
        let a_part = MatRef { offset: a.offset + depth.start * a.col_stride, cols: depth.len(), ..a };
        let b_part = MatRef { offset: b.offset + depth.start * b.row_stride, rows: depth.len(), ..b };
        // SAFETY: the caller vouched for S; the operands' depth ranges lie inside the checked
        // ones, and each target holds M rows of N values `ld` apart.
        unsafe { tiled::<S, MR, VECS>(a_part, b_part, target, ld, false, out) }
    });
    // The sums are added in parallel too, each task taking a block of C's rows. On the caller
    // alone the addition took a tenth of `128 x 784 x 256` (reading the other core's sums):
    // against the `gemm` crate with B hot, from a polling worker, 0.97-1.00x -> 1.01-1.02x, and
    // `128 x 1024 x 128` 0.88-0.96x -> 1.00-1.02x (four alternated rounds).
    let rows_per_task = m.div_ceil(parts);
    let sums = &partial[..];
    c.par_chunks_mut(rows_per_task * ldc).enumerate().for_each(|(task, c_rows)| {
        let first_row = task * rows_per_task;
        // SAFETY: the caller vouched for S; `c_rows` holds rows first_row .. of C, `n` values
        // each from a multiple of `ldc`, and row i of each partial sum is `n` values from
        // i * n of its M N; masked-off lanes are not touched.
        unsafe {
            S::run(
                #[inline(always)]
                || {
                    for (local, i) in (first_row..m.min(first_row + rows_per_task)).enumerate() {
                        let row = c_rows.as_mut_ptr().add(local * ldc);
                        for j in (0..n).step_by(S::LANES) {
                            let mask = S::first_lanes(n - j);
                            let mut sum = S::load_masked(mask, row.add(j));
                            for part in sums.chunks_exact(m * n) {
                                sum = S::add(sum, S::load_masked(mask, part.as_ptr().add(i * n + j)));
                            }
                            S::store_masked(row.add(j), mask, sum);
                        }
                    }
                },
            )
        }
    });
    pool::give_back(partial);
}

/// B's panels for [`tiled`]: packed by each task as it goes (`per_task`: nothing to do now),
/// or all of `b_packed` (B's columns after the first `in_place_panels` panels) packed into
/// `buffer` now, spread over the threads when `parallel`.
///
/// # Safety
/// The CPU supports `S`; `b_packed` is in bounds and `buffer` holds its `K x N_padded` values.
unsafe fn panels_b<'a, 'b, S: Simd, const VECS: usize>(
    b: &'a MatRef<'b, S::E>,
    b_packed: &MatRef<'_, S::E>,
    buffer: &'a mut [S::E],
    in_place_panels: usize,
    per_task: bool,
    parallel: bool,
) -> PanelsB<'a, 'b, S::E> {
    if per_task {
        return PanelsB { b, packed: PackedB::PerTask, in_place_panels };
    }
    // SAFETY: the caller's promises.
    unsafe { pack_b::<S, VECS>(b_packed, buffer, parallel) };
    PanelsB { b, packed: PackedB::Whole(buffer), in_place_panels }
}

/// True when every element of `m` lies inside its buffer (the kernel reads through raw
/// pointers, so this is checked once per product instead of per load).
fn in_bounds<E: Float>(m: &MatRef<'_, E>) -> bool {
    m.rows == 0 || m.cols == 0 || m.offset + (m.rows - 1) * m.row_stride + (m.cols - 1) * m.col_stride < m.data.len()
}

/// True when an `m x k x n` product gives each of `threads` threads at least
/// [`TALL_SHARE_FLOPS`] of work, or [`TALL_SHARE_FLOPS_DEEP`] with a depth and a width of at
/// least [`TALL_MIN_DEPTH`]: it then runs in tall tasks, each packing its own blocks of B.
fn is_long((m, k, n): (usize, usize, usize), threads: usize) -> bool {
    let per_thread = 2.0 * (m * k) as f64 * n as f64 / threads as f64;
    per_thread >= TALL_SHARE_FLOPS || (per_thread >= TALL_SHARE_FLOPS_DEEP && k.min(n) >= TALL_MIN_DEPTH)
}

/// Depth of each slice for an inner dimension `k`: as near `KC` as an even split allows, so
/// that no thin last slice pays a full load and store of C for a few steps (K = 1100 becomes
/// three slices of 367 rather than two of 512 and one of 76).
fn slice_depth(k: usize) -> usize {
    k.div_ceil(k.div_ceil(KC))
}

/// Rows per task for a product of `m` rows: at most [`MC`] or, for `tall` tasks (a long
/// product, see [`is_long`], or any while the workers poll: see `tiled`), [`MC_TALL`], in
/// whole tiles of `mr` rows, and enough tasks that every thread gets a near-equal share
/// (rayon's work stealing evens out the rest).
fn rows_per_task(m: usize, threads: usize, mr: usize, tall: bool) -> usize {
    let cap = if tall { MC_TALL } else { MC };
    let tasks = m.div_ceil(cap).next_multiple_of(threads).min(m.div_ceil(mr)).max(1);
    m.div_ceil(tasks).next_multiple_of(mr)
}

/// Packs all of B: for each depth slice, panels of `NR = LANES VECS` columns, each stored
/// depth-major (`NR` values per depth step) and zero-padded past column `N`. The panel of
/// slice `p0` and columns `j0..` starts at `p0 * N_padded + j0 * kc`. A B with no columns
/// packs nothing.
///
/// # Safety
/// The CPU supports `S`, and `b` is in bounds (checked by [`tiled`]); `out` holds
/// `K x N_padded` values.
unsafe fn pack_b<S: Simd, const VECS: usize>(b: &MatRef<'_, S::E>, out: &mut [S::E], parallel: bool) {
    let nr = S::LANES * VECS;
    let n_padded = b.cols.next_multiple_of(nr);
    if n_padded == 0 {
        return;
    }
    let depth = slice_depth(b.rows);
    // Slice `s` (depth s * KC ..) is a contiguous `kc x N_padded` run of `out`, and each of its
    // panels a contiguous `kc x NR` run of that.
    let pack = |s: usize, panel: usize, dst: &mut [S::E]| {
        // SAFETY: the caller vouched for S and `b`'s bounds; `dst` is this panel's run.
        unsafe {
            S::run(
                #[inline(always)]
                || pack_panel::<S, VECS>(b, s * depth, panel * nr, dst),
            )
        }
    };
    let panel_len = |slice: &[S::E]| slice.len() / n_padded * nr;
    if parallel && b.rows * b.cols >= 1 << 14 {
        out.par_chunks_mut(depth * n_padded).enumerate().for_each(|(s, slice)| {
            let len = panel_len(slice);
            slice.par_chunks_exact_mut(len).enumerate().for_each(|(panel, dst)| pack(s, panel, dst));
        });
    } else {
        for (s, slice) in out.chunks_mut(depth * n_padded).enumerate() {
            let len = panel_len(slice);
            slice.chunks_exact_mut(len).enumerate().for_each(|(panel, dst)| pack(s, panel, dst));
        }
    }
}

/// The panels `panels` of B at depth `p0..p0 + kc`, one after another (each `kc x NR`, as
/// [`pack_b`] lays out a slice's panels) at the start of `out`: a task's own block, with
/// [`PackedB::PerTask`].
///
/// # Safety
/// Runs inside `S::run`; `b` in bounds; `out` holds `kc x NR` values per panel.
#[inline(always)]
unsafe fn pack_block<S: Simd, const VECS: usize>(
    b: &MatRef<'_, S::E>,
    p0: usize,
    kc: usize,
    panels: std::ops::Range<usize>,
    out: &mut [S::E],
) {
    let nr = S::LANES * VECS;
    assert!(
        out.len() >= panels.len() * kc * nr,
        "matmul v6: a block of {} panels in {} values",
        panels.len(),
        out.len()
    );
    for (panel, dst) in panels.zip(out.chunks_exact_mut(kc * nr)) {
        // SAFETY: the caller vouched for S and `b`'s bounds; `dst` is this panel's run.
        unsafe { pack_panel::<S, VECS>(b, p0, panel * nr, dst) };
    }
}

/// One panel of B: depth `p0..p0 + kc` (kc = `dst.len() / NR`), columns `j0..j0 + NR`, with
/// zeros past column N. A row-major B is a masked vector copy per vector and depth step; any
/// other B is gathered, one vector of columns per instruction (a transposed B, as `Q K^T`
/// has, would otherwise cost a scalar load and store per value).
///
/// # Safety
/// Runs inside `S::run`; `b` in bounds.
#[inline(always)]
unsafe fn pack_panel<S: Simd, const VECS: usize>(b: &MatRef<'_, S::E>, p0: usize, j0: usize, dst: &mut [S::E]) {
    let nr = S::LANES * VECS;
    let cols = nr.min(b.cols - j0);
    // SAFETY (every intrinsic below): the caller runs this inside `S::run`.
    let masks = unsafe { lane_masks::<S, VECS>(cols) };
    let base = b.data.as_ptr();
    // Gather offsets must fit in i32; a stride that large would be a strange matrix, and
    // takes the scalar loop.
    let gather = b.col_stride != 1 && b.col_stride * nr < i32::MAX as usize;
    let offsets = unsafe { S::offsets(if gather { b.col_stride } else { 0 }) };
    for (p, dst_row) in dst.chunks_exact_mut(nr).enumerate() {
        let src = b.offset + (p0 + p) * b.row_stride + j0 * b.col_stride;
        // SAFETY: lanes j < cols address element (p0 + p, j0 + j) of `b`, which is in bounds
        // (p0 + p < K, j0 + j < N); masked-off lanes are neither read nor written, so the
        // wrapping address of the second half is never dereferenced past the matrix.
        if b.col_stride == 1 {
            for (v, &mask) in masks.iter().enumerate() {
                let vector = S::load_masked(mask, base.add(src).wrapping_add(S::LANES * v));
                S::store(dst_row.as_mut_ptr().add(S::LANES * v), vector);
            }
        } else if gather {
            for (v, &mask) in masks.iter().enumerate() {
                let start = base.add(src).wrapping_add(S::LANES * v * b.col_stride);
                S::store(dst_row.as_mut_ptr().add(S::LANES * v), S::gather_masked(mask, start, offsets));
            }
        } else {
            for (j, d) in dst_row.iter_mut().enumerate() {
                *d = if j < cols { b.data[src + j * b.col_stride] } else { S::E::ZERO };
            }
        }
    }
}

/// How the panels of B that are not read in place get packed.
enum PackedB<'a, E> {
    /// All of them, once, before the tasks start, into this buffer (laid out by [`pack_b`]),
    /// which every task then reads.
    Whole(&'a [E]),
    /// By each task, one block of panels at a time, into a buffer of its own
    /// ([`pack_block`]). A long product's tasks each pay for packing all of B, but a block
    /// goes straight into the packing core's L2, where its tiles of A find it. Packed whole,
    /// B is several MiB written out to L3 and read back from there by every task. Per task,
    /// the median ratio to the `gemm` crate rose about 2% at 2048² on 2 threads and 4% at
    /// 1024² on one (1024² on 2 threads: unchanged within the noise).
    PerTask,
}

/// Where B's panels are: the first `in_place_panels` read in place from `b`, the rest packed
/// (by `packed`; with [`PackedB::PerTask`], `in_place_panels` is 0).
struct PanelsB<'a, 'b, E> {
    b: &'a MatRef<'b, E>,
    packed: PackedB<'a, E>,
    in_place_panels: usize,
}

impl<E: Float> PanelsB<'_, '_, E> {
    /// The start of panel `panel` (of `nr` columns) at depth `p0`, `kc` deep, and how the
    /// kernel steps through it. `own_block` is the task's block of panels from `block_start`
    /// on, packed by [`pack_block`] (used only with [`PackedB::PerTask`]).
    ///
    /// # Safety
    /// With [`PackedB::PerTask`], `own_block`'s pointer holds the block's packed panels from
    /// `block_start` to `panel`.
    unsafe fn panel(
        &self,
        p0: usize,
        kc: usize,
        panel: usize,
        nr: usize,
        own_block: (usize, *const E),
    ) -> (*const E, TileB<E>) {
        let b = self.b;
        if panel < self.in_place_panels {
            // In bounds: rows p0 .. p0 + kc <= K and columns panel * nr + nr <= N of a B
            // checked in bounds by `tiled` (only whole panels are read in place).
            return (b.data[b.offset + p0 * b.row_stride + panel * nr..].as_ptr(), TileB::Rows(b.row_stride));
        }
        match self.packed {
            PackedB::Whole(packed) => {
                let packed_width = (b.cols - self.in_place_panels * nr).next_multiple_of(nr);
                let at = p0 * packed_width + (panel - self.in_place_panels) * kc * nr;
                (packed[at..].as_ptr(), TileB::Packed)
            }
            PackedB::PerTask => {
                let (block_start, block) = own_block;
                // SAFETY: the caller's promise.
                (unsafe { block.add((panel - block_start) * kc * nr) }, TileB::Packed)
            }
        }
    }
}

/// One task: rows `i0..i0 + rows` of C (from `c_rows`, `ldc` apart), every depth slice, the
/// columns of B's panels `panel_range` (all of them for a task of rows; a share of them for a
/// task of columns, see [`split_columns`]).
///
/// # Safety
/// Runs inside `S::run`; `a` in bounds (checked by [`tiled`]); `c_rows` valid for writes of
/// `rows` rows of `n` values `ldc` apart, of which no other running task touches the columns
/// of `panel_range`; `panel_range` within B's panels; `panels_a` of at least `rows` rounded up
/// to `MR`, times `KC`, values.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn row_block<S: Simd, const MR: usize, const VECS: usize>(
    a: &MatRef<'_, S::E>,
    i0: usize,
    rows: usize,
    c_rows: *mut S::E,
    ldc: usize,
    b_panels: &PanelsB<'_, '_, S::E>,
    panel_range: Range<usize>,
    output: Output<'_, S::E>,
    panels_a: &mut [S::E],
) {
    let (k, n) = (a.cols, b_panels.b.cols);
    let nr = S::LANES * VECS;
    let full_tiles = rows / MR;
    // A row-major A is read in place when B is narrow: packing A costs a pass over it for
    // every N / 64 tiles of work, a large share when N is 128 or 384 (the transformer's
    // widths). Any other A is copied once per depth slice into panels: a transposed A (one
    // 6-value copy per depth step) would otherwise walk a new cache line per step, and a
    // wide product amortizes the copy, which keeps 6 rows that lie a power-of-two stride
    // apart (N = 1024, 2048) from crowding the same few L1 sets.
    let in_place = a.col_stride == 1 && n <= IN_PLACE_MAX_N;
    let depth = slice_depth(k);
    let per_task = matches!(b_panels.packed, PackedB::PerTask);
    let panels_per_block = panels_per_block(nr, std::mem::size_of::<S::E>());
    assert!(
        panels_per_block <= MAX_PANELS_PER_BLOCK,
        "matmul v6: {panels_per_block} panels of {nr} per block, more than {MAX_PANELS_PER_BLOCK}"
    );
    // A task that packs its own B (`PackedB::PerTask`) copies a row-major B's whole panels
    // inside the first tile's kernel (`TileB::RowsCopied`) rather than in a pass of its own:
    // that kernel loads every vector of the panel anyway, and a store per load fits beside its
    // multiply-adds. The separate pass read the panel from L3 and wrote it to L2 before any
    // tile used it; fused, the first tile pays only the stores. From a polling worker on 2
    // threads (Zen 5, five runs): 512² +0.3-3.1%, 1024² +1.1-2.2%, 2048² +0.9-2.1%.
    let copy_in_first_tile = per_task && b_panels.b.col_stride == 1 && rows >= MR;
    let mut own_block = if per_task { pool::reuse::<S::E>(depth * nr * panels_per_block) } else { HostBuffer::new() };
    // A last, partial tile of at most 6 rows runs a kernel of exactly its rows (`short_tile`),
    // which reads no row past A's end: it too is read in place. (A 12-row tile's last 7 to 11
    // rows run the full kernel, so they are packed, zero-padded.) Packing it cost a gather per
    // depth step, a fifth of the MNIST output layer's `10 x 128 x 128`.
    let in_place_tiles = match (in_place, rows % MR) {
        (false, _) => 0,
        (true, 1..=6) => full_tiles + 1,
        (true, _) => full_tiles,
    };
    for p0 in (0..k).step_by(depth) {
        let kc = depth.min(k - p0);
        let packed_rows = rows.saturating_sub(in_place_tiles * MR);
        pack_a::<S, MR>(a, i0 + in_place_tiles * MR, packed_rows, p0, kc, &mut panels_a[in_place_tiles * MR * kc..]);
        // Only the first depth slice overwrites C or adds the bias; later ones add onto it.
        let output = if p0 == 0 { output } else { Output::Accumulate };
        // A block of panels (`kc x 256` values, 512 KiB) stays in L2 while each tile of A,
        // read from L1 after its first use, passes over all of the block's panels.
        for block in panel_range.clone().step_by(panels_per_block) {
            let panels = block..panel_range.end.min(block + panels_per_block);
            if per_task && !copy_in_first_tile {
                pack_block::<S, VECS>(b_panels.b, p0, kc, panels.clone(), &mut own_block);
            } else if per_task {
                // The first tile's kernel copies the whole panels; a last, partial one (whose
                // zero padding no kernel loads from B) is packed here.
                for panel in panels.clone().filter(|&panel| (panel + 1) * nr > n) {
                    let at = (panel - block) * kc * nr;
                    pack_panel::<S, VECS>(b_panels.b, p0, panel * nr, &mut own_block[at..at + kc * nr]);
                }
            }
            // Each panel's start and layout, worked out once per block rather than again for
            // every tile of rows that walks it (a large share of a shallow product's time).
            // Both the copies made by the first tile and the reads of later ones go through
            // `own`, the task's block.
            let own = own_block.as_mut_ptr();
            let mut panel_at = [(std::ptr::null(), TileB::Packed); MAX_PANELS_PER_BLOCK];
            for (at, panel) in panel_at.iter_mut().zip(panels.clone()) {
                // SAFETY: `own_block` holds the block's panels (packed above, or by the first
                // tile's kernel before any later tile reads them).
                *at = b_panels.panel(p0, kc, panel, nr, (block, own));
            }
            for r0 in (0..rows).step_by(MR) {
                let tile = r0 / MR;
                let tile_rows = MR.min(rows - r0);
                let (a_tile, a_layout) = if tile < in_place_tiles {
                    (a.data.as_ptr().add(a.offset + (i0 + r0) * a.row_stride + p0), TileA::Rows(a.row_stride))
                } else {
                    (panels_a.as_ptr().add(tile * MR * kc), TileA::Packed)
                };
                for (panel, &packed_at) in panels.clone().zip(&panel_at) {
                    let j0 = panel * nr;
                    let cols = nr.min(n - j0);
                    let (b_panel, b_layout) = if copy_in_first_tile && r0 == 0 && j0 + nr <= n {
                        let (b, to) = (b_panels.b, own.add((panel - block) * kc * nr));
                        (b.data[b.offset + p0 * b.row_stride + j0..].as_ptr(), TileB::RowsCopied(b.row_stride, to))
                    } else {
                        packed_at
                    };
                    let c_tile = c_rows.add(r0 * ldc + j0);
                    // SAFETY: in-place tiles of A are rows i0 + r0 .. + tile_rows <= M (a
                    // whole tile, or a last one of at most 6 rows, whose kernel has exactly
                    // its rows) and depth p0 .. + kc <= K of a row-major A checked in
                    // bounds; packed tiles are MR x kc panels inside `panels_a` (tile <
                    // rows / MR rounded up). B's panel is kc x NR values, packed, or (a whole
                    // panel) read in place, and then perhaps copied into its kc x NR run of
                    // the task's block (`own_block` holds the block's panels). C's
                    // tile_rows rows of `cols` values from `c_tile` lie inside `c_rows` (rows
                    // r0 + tile_rows <= rows, ldc apart; j0 + cols <= n), and a bias holds n
                    // values (checked by `best`).
                    let (a_at, b_at) = ((a_tile, a_layout), (b_panel, b_layout));
                    if tile_rows == MR {
                        kernel::<S, MR, MR, VECS>(kc, a_at, b_at, c_tile, ldc, tile_rows, cols, output, j0);
                    } else {
                        short_tile::<S, MR, VECS>(kc, a_at, b_at, c_tile, ldc, tile_rows, cols, output, j0);
                    }
                }
            }
        }
    }
    if per_task {
        pool::give_back(own_block);
    }
}

/// Copies rows `i0..i0 + rows`, depth `p0..p0 + kc` of A into panels of `MR` rows stored as
/// columns (`MR` values per depth step), zero-padding the last panel. Whole 6-row panels of a
/// row-major A go through [`transpose_6x16`] with AVX-512; the rest is gathered one step at a
/// time.
///
/// # Safety
/// Runs inside `S::run`; `a` in bounds.
#[inline(always)]
unsafe fn pack_a<S: Simd, const MR: usize>(
    a: &MatRef<'_, S::E>,
    i0: usize,
    rows: usize,
    p0: usize,
    kc: usize,
    out: &mut [S::E],
) {
    // Row offsets for gathering one depth step of a panel from MR rows (when A's rows are
    // not adjacent in memory); offsets must fit in i32, or the scalar loop runs. A step of
    // the panel is one vector (6 or 12 of AVX-512's 16 f32 lanes, 6 of AVX2's 8) or, where MR
    // is more than a vector holds (f64: 12 of AVX-512's 8 lanes, 6 of AVX2's 4), two.
    let gather = a.row_stride != 1 && a.row_stride * MR < i32::MAX as usize;
    let offsets = S::offsets(if gather { a.row_stride } else { 0 });
    let vectors = MR.div_ceil(S::LANES);
    for (panel, dst) in out.chunks_exact_mut(MR * kc).take(rows.div_ceil(MR)).enumerate() {
        let r0 = panel * MR;
        let panel_rows = MR.min(rows - r0);
        // Six whole row-major f32 rows go 16 depth steps at a time through a transpose in
        // AVX-512 registers; the steps after the last whole 16 (and any other A, f64, or AVX2)
        // take the loop below.
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut transposed = 0;
        #[cfg(target_arch = "x86_64")]
        if TypeId::of::<S::E>() == TypeId::of::<f32>()
            && S::LANES == 16
            && MR == 6
            && panel_rows == 6
            && a.col_stride == 1
        {
            let row = |i: usize| a.data.as_ptr().add(a.offset + (i0 + r0 + i) * a.row_stride + p0).cast::<f32>();
            let rows: [*const f32; 6] = std::array::from_fn(row);
            let dst_f32 = dst.as_mut_ptr().cast::<f32>();
            while transposed + 16 <= kc {
                // SAFETY: the element type is f32 (so the casts change nothing) and 16 lanes
                // of it means S is AVX-512, which the caller vouched for; rows i0 + r0 .. + 6
                // <= M and depth p0 + transposed .. + 16 <= K of an A checked in bounds; the
                // 96 values written are steps transposed .. + 16 of this panel, inside `dst`
                // (6 kc values).
                transpose_6x16(rows.map(|r| r.add(transposed)), dst_f32.add(6 * transposed));
                transposed += 16;
            }
        }
        for (p, dst_p) in dst.chunks_exact_mut(MR).enumerate().skip(transposed) {
            let src = a.offset + (i0 + r0) * a.row_stride + (p0 + p) * a.col_stride;
            if a.row_stride != 1 && !gather {
                for (i, d) in dst_p.iter_mut().enumerate() {
                    *d = if i < panel_rows { a.data[src + i * a.row_stride] } else { S::E::ZERO };
                }
                continue;
            }
            for v in 0..vectors {
                // Rows v LANES .. of the panel: those of them inside A are read, the rest of
                // the vector's MR - v LANES lanes written as zeros.
                let first = v * S::LANES;
                let valid = S::first_lanes(panel_rows.saturating_sub(first));
                let at = a.data.as_ptr().add(src).wrapping_add(first * a.row_stride);
                // SAFETY: lanes i < panel_rows - first read elements (i0 + r0 + first + i,
                // p0 + p) of `a`, in bounds; masked-off lanes are not read (so `at` may lie
                // past A for a vector of padding). The store writes lanes first .. MR of
                // `dst_p`.
                let values = if a.row_stride == 1 {
                    // A transposed: the panel's column is already contiguous, one masked
                    // vector copy (a plain loop here becomes a memmove call per 48 bytes).
                    S::load_masked(valid, at)
                } else {
                    S::gather_masked(valid, at, offsets)
                };
                S::store_masked(dst_p.as_mut_ptr().add(first), S::first_lanes(MR - first), values);
            }
        }
    }
}

/// Lane `l` of output vector `j` of [`transpose_6x16`] holds panel value `16 j + l`: depth
/// step `(16 j + l) / 6` of row `(16 j + l) % 6`. Row pair `q` (rows `2q`, `2q + 1`) supplies
/// it through a two-table permute: index `step` picks from row `2q`, `16 + step` from row
/// `2q + 1`. `PAIR_LANES[j][q]` marks the lanes whose row belongs to pair `q`.
#[cfg(target_arch = "x86_64")]
const PAIR_INDEX: [[[i32; 16]; 3]; 6] = {
    let mut table = [[[0; 16]; 3]; 6];
    let mut j = 0;
    while j < 6 {
        let mut lane = 0;
        while lane < 16 {
            let (row, step) = ((16 * j + lane) % 6, (16 * j + lane) / 6);
            table[j][row / 2][lane] = (step + 16 * (row % 2)) as i32;
            lane += 1;
        }
        j += 1;
    }
    table
};

/// See [`PAIR_INDEX`].
#[cfg(target_arch = "x86_64")]
const PAIR_LANES: [[u16; 3]; 6] = {
    let mut masks = [[0; 3]; 6];
    let mut j = 0;
    while j < 6 {
        let mut lane = 0;
        while lane < 16 {
            masks[j][(16 * j + lane) % 6 / 2] |= 1 << lane;
            lane += 1;
        }
        j += 1;
    }
    masks
};

/// 16 depth steps of six rows of A, from six vector loads (one per row) to the panel's
/// step-major order (six values per step, 96 values, six vector stores), transposed in
/// registers. Each output vector takes its lanes from all six rows: three two-row permutes and
/// two blends. A gather of six values per step did the same with six scattered loads per
/// step, and took a few percent of a 1024² product.
///
/// # Safety
/// AVX-512F; each `rows[i]` readable for 16 values, `dst` writable for 96.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose_6x16(rows: [*const f32; 6], dst: *mut f32) {
    use std::arch::x86_64::*;
    // SAFETY: the caller vouched for 16 readable values per row.
    let r: [__m512; 6] = rows.map(|row| unsafe { _mm512_loadu_ps(row) });
    for (j, (index, lanes)) in PAIR_INDEX.iter().zip(&PAIR_LANES).enumerate() {
        // SAFETY: `index[q]` is 16 i32 values (a whole 64-byte vector).
        let pair = |q: usize| unsafe {
            _mm512_permutex2var_ps(r[2 * q], _mm512_loadu_si512(index[q].as_ptr().cast()), r[2 * q + 1])
        };
        let low = _mm512_mask_blend_ps(lanes[1], pair(0), pair(1));
        // SAFETY: vector j < 6 of the 96 writable values.
        unsafe { _mm512_storeu_ps(dst.add(16 * j), _mm512_mask_blend_ps(lanes[2], low, pair(2))) };
    }
}

/// A last tile of `rows < MR` rows: [`kernel`] with only as many rows of accumulators as the
/// tile has. The full tile would spend the rest of its multiply-adds on zero padding: 5/6 of
/// them for one row, a third of them for the MNIST output layer's 10 rows. Rows 1 to 5 get
/// kernels of their own, a 12-row tile's last tile of 6 or fewer rows the 6-row one, and a
/// 24-row tile's last tile of 7 to 12 rows the 12-row one.
///
/// Never inlined: in the same function as the full tile's loop, the 12-row loop spilled its
/// accumulators to the stack (the GPT's `2048 x 128 x 65` ran at less than half speed). It
/// enables `S` itself, so its kernels are compiled in a function of their own.
///
/// # Safety
/// The CPU supports `S`; otherwise as [`kernel`].
#[allow(clippy::too_many_arguments)]
#[inline(never)]
unsafe fn short_tile<S: Simd, const MR: usize, const VECS: usize>(
    kc: usize,
    a: (*const S::E, TileA),
    b: (*const S::E, TileB<S::E>),
    c: *mut S::E,
    ldc: usize,
    rows: usize,
    cols: usize,
    output: Output<'_, S::E>,
    j0: usize,
) {
    // SAFETY: the caller's promises, for a tile of `rows` rows.
    unsafe {
        S::run(
            #[inline(always)]
            || match rows {
                1 => kernel::<S, 1, MR, VECS>(kc, a, b, c, ldc, rows, cols, output, j0),
                2 => kernel::<S, 2, MR, VECS>(kc, a, b, c, ldc, rows, cols, output, j0),
                3 => kernel::<S, 3, MR, VECS>(kc, a, b, c, ldc, rows, cols, output, j0),
                4 => kernel::<S, 4, MR, VECS>(kc, a, b, c, ldc, rows, cols, output, j0),
                5 => kernel::<S, 5, MR, VECS>(kc, a, b, c, ldc, rows, cols, output, j0),
                6.. if rows <= 6 && MR > 6 => kernel::<S, 6, MR, VECS>(kc, a, b, c, ldc, rows, cols, output, j0),
                7.. if rows <= 12 && MR > 12 => kernel::<S, 12, MR, VECS>(kc, a, b, c, ldc, rows, cols, output, j0),
                _ => kernel::<S, MR, MR, VECS>(kc, a, b, c, ldc, rows, cols, output, j0),
            },
        )
    }
}

/// The register tile: `C[0..rows, 0..cols] (+)= A_tile B_panel`, `kc` deep, with `ROWS x VECS`
/// vector accumulators (AVX-512's and NEON's 6 x 4 or 12 x 2, AVX2's 6 x 2 for the full
/// tiles) filled by [`depth_loop`], then masked stores into C ([`store_tile`]). A packed tile
/// of A is `MR` values per depth step, of which the first `ROWS` are used.
///
/// # Safety
/// Runs inside `S::run`; `rows <= ROWS <= MR`. A's `ROWS x kc` tile must be readable as `a.1`
/// lays it out from `a.0`, B's `kc x NR` panel as `b.1` lays it out from `b.0`, and C's
/// `rows x cols` tile (row step `ldc`) must be writable.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn kernel<S: Simd, const ROWS: usize, const MR: usize, const VECS: usize>(
    kc: usize,
    (a, a_layout): (*const S::E, TileA),
    (b, b_layout): (*const S::E, TileB<S::E>),
    c: *mut S::E,
    ldc: usize,
    rows: usize,
    cols: usize,
    output: Output<'_, S::E>,
    j0: usize,
) {
    // C's tile is read (or written) only after the depth loop; asking for its lines (64 bytes
    // each) now lets them arrive from L3 while the multiply-adds run, instead of stalling
    // the stores. A shallow slice has too few multiply-adds to hide anything behind, and its
    // C is usually still in cache (see `PREFETCH_C_MIN_DEPTH`). (aarch64's prefetch intrinsic
    // is not stable Rust yet; there the stores wait.)
    #[cfg(target_arch = "x86_64")]
    if kc >= PREFETCH_C_MIN_DEPTH {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        for i in 0..rows {
            for line in (0..cols).step_by(64 / std::mem::size_of::<S::E>()) {
                _mm_prefetch::<_MM_HINT_T0>(c.wrapping_add(i * ldc + line).cast::<i8>());
            }
        }
    }
    // Each pair of layouts gets its own loop, so its addresses are a fixed pattern the
    // compiler can strength-reduce: the layout of A picks its closures here, that of B in
    // `with_b`. Each arm finishes its own tile, so no array of accumulators flows out of a
    // `match` (on aarch64 that merge spilled them in the loop).
    let b = (b, b_layout);
    let tile = TileC { c, ldc, rows, cols, output, j0 };
    // SAFETY (each arm): the caller's promises for A's tile, B's panel, C's tile and the bias.
    match a_layout {
        TileA::Rows(lda) => with_b::<S, ROWS, VECS>(kc, |i, p| a.add(i * lda + p), b, tile),
        TileA::Packed => with_b::<S, ROWS, VECS>(kc, |i, p| a.add(p * MR + i), b, tile),
    }
}

/// The second half of [`kernel`]'s dispatch: B's layout, for A's `a_at` as chosen.
///
/// # Safety
/// As [`kernel`]; `a_at` follows the caller's A.
#[inline(always)]
unsafe fn with_b<S: Simd, const ROWS: usize, const VECS: usize>(
    kc: usize,
    a_at: impl Fn(usize, usize) -> *const S::E,
    (b, b_layout): (*const S::E, TileB<S::E>),
    tile: TileC<'_, S::E>,
) {
    let lanes = S::LANES;
    // Step p's vector v: in a packed panel (as `to` is laid out too), or in B's rows.
    let packed_at = move |panel: *const S::E| move |p: usize, v: usize| panel.add(lanes * (VECS * p + v));
    let in_rows = move |ldb: usize| move |p: usize, v: usize| b.add(p * ldb + lanes * v);
    let copied = move |to: *mut S::E| {
        let at = packed_at(to);
        move |p: usize, v: usize| Some(at(p, v).cast_mut())
    };
    // SAFETY (each arm): the caller's promises.
    match b_layout {
        TileB::Rows(ldb) => {
            store_tile::<S, ROWS, VECS>(depth_loop::<S, ROWS, VECS>(kc, a_at, in_rows(ldb), no_copy), tile)
        }
        TileB::Packed => {
            store_tile::<S, ROWS, VECS>(depth_loop::<S, ROWS, VECS>(kc, a_at, packed_at(b), no_copy), tile)
        }
        TileB::RowsCopied(ldb, to) => {
            store_tile::<S, ROWS, VECS>(depth_loop::<S, ROWS, VECS>(kc, a_at, in_rows(ldb), copied(to)), tile)
        }
    }
}

/// The copy target of an operand that is only read: none.
#[inline(always)]
fn no_copy<E>(_: usize, _: usize) -> Option<*mut E> {
    None
}

/// Where [`store_tile`] puts a tile: `rows x cols` values of C from `c`, rows `ldc` apart,
/// written as `output` says (with a bias, its values from column `j0`).
#[derive(Clone, Copy)]
struct TileC<'b, E> {
    c: *mut E,
    ldc: usize,
    rows: usize,
    cols: usize,
    output: Output<'b, E>,
    j0: usize,
}

/// The end of [`kernel`]: adds the bias to the accumulators when `output` asks, then writes
/// (or adds) the tile's `rows x cols` values into C with masked stores.
///
/// # Safety
/// Runs inside `S::run`; `rows <= ROWS`; C's tile must be writable, and a bias hold `j0 +
/// cols` values.
#[inline(always)]
unsafe fn store_tile<S: Simd, const ROWS: usize, const VECS: usize>(
    mut acc: [[S::V; VECS]; ROWS],
    TileC { c, ldc, rows, cols, output, j0 }: TileC<'_, S::E>,
) {
    let lanes = S::LANES;
    let masks = lane_masks::<S, VECS>(cols);
    if let Output::Bias(bias) = output {
        let at = bias.as_ptr().add(j0);
        for (v, &mask) in masks.iter().enumerate() {
            let bias_v = S::load_masked(mask, at.wrapping_add(lanes * v));
            for acc_i in acc.iter_mut() {
                acc_i[v] = S::add(acc_i[v], bias_v);
            }
        }
    }
    // One loop for each kind of output, rather than the test inside the loop: the compiler
    // kept it there, a compare and a branch per row of every tile.
    if let Output::Accumulate = output {
        store_rows::<S, ROWS, VECS, true>(&acc, c, ldc, rows, &masks);
    } else {
        store_rows::<S, ROWS, VECS, false>(&acc, c, ldc, rows, &masks);
    }
}

/// The stores of [`store_tile`]: the first `rows` rows of `acc` into C from `c` (rows `ldc`
/// apart) through `masks`, added onto C's values with `ADD_ONTO`.
///
/// # Safety
/// As [`store_tile`].
#[inline(always)]
unsafe fn store_rows<S: Simd, const ROWS: usize, const VECS: usize, const ADD_ONTO: bool>(
    acc: &[[S::V; VECS]; ROWS],
    c: *mut S::E,
    ldc: usize,
    rows: usize,
    masks: &[S::Mask; VECS],
) {
    for (i, acc_i) in acc.iter().enumerate().take(rows) {
        // A vector's address may lie past the end of C when `cols` ends before it; its mask is
        // then empty, so nothing is read or written there (masked lanes never fault).
        let row = c.add(i * ldc);
        for (v, (&mask, &sum)) in masks.iter().zip(acc_i).enumerate() {
            let at = row.wrapping_add(S::LANES * v);
            let sum = if ADD_ONTO { S::add(sum, S::load_masked(mask, at)) } else { sum };
            S::store_masked(at, mask, sum);
        }
    }
}

/// The multiply-adds of one tile: for each of `kc` depth steps, `VECS` loads of B (each also
/// stored at `b_to(step, vector)` where that is `Some`: the copy that packs B's panel), then
/// each row's A value (at `a_at(row, step)`) is broadcast into `VECS` FMAs. `b_to` is either
/// always `None` ([`no_copy`]) or always `Some`, so the test vanishes when it inlines.
///
/// On x86, tiles of up to 6 rows run four steps per loop trip, so the loop's own counter and
/// pointer updates (which compete with the FMAs for execution ports) are paid once per 96 FMAs
/// rather than once per 24 (with NEON that unrolling spills: [`Simd::UNROLL_DEPTH`]). The
/// 12-row tile does not: unrolled, the compiler hoists the broadcasts of later steps ahead of
/// the FMAs of earlier ones, runs out of registers, and spills the accumulators to the stack,
/// which halved its speed.
///
/// # Safety
/// Runs inside `S::run`; `a_at(i, p)` must be readable for `i < ROWS`, `p < kc`,
/// `b_at(p, v)` `LANES` values for `p < kc`, `v < VECS`, and a `Some` of `b_to(p, v)`
/// writable for as many, overlapping no other operand.
#[inline(always)]
unsafe fn depth_loop<S: Simd, const ROWS: usize, const VECS: usize>(
    kc: usize,
    a_at: impl Fn(usize, usize) -> *const S::E,
    b_at: impl Fn(usize, usize) -> *const S::E,
    b_to: impl Fn(usize, usize) -> Option<*mut S::E>,
) -> [[S::V; VECS]; ROWS] {
    let mut acc = [[S::zero(); VECS]; ROWS];
    let (a, b) = (&a_at, (&b_at, &b_to));
    let mut p = 0;
    while S::UNROLL_DEPTH && ROWS <= 6 && p + 4 <= kc {
        depth_step::<S, ROWS, VECS>(&mut acc, p, a, b);
        depth_step::<S, ROWS, VECS>(&mut acc, p + 1, a, b);
        depth_step::<S, ROWS, VECS>(&mut acc, p + 2, a, b);
        depth_step::<S, ROWS, VECS>(&mut acc, p + 3, a, b);
        p += 4;
    }
    while p < kc {
        depth_step::<S, ROWS, VECS>(&mut acc, p, a, b);
        p += 1;
    }
    acc
}

/// One depth step `p` of [`depth_loop`]: `VECS` loads of B (and their copies), then a
/// broadcast of each row's A value into `VECS` FMAs.
///
/// A function rather than a closure so that it can be inlined by force: the kernel's
/// functions have no target features of their own (they are compiled inside `S::run`), and a
/// closure the compiler chose to leave as a function would be compiled without them, each
/// intrinsic in it a call.
///
/// # Safety
/// As [`depth_loop`], for step `p < kc`.
#[inline(always)]
unsafe fn depth_step<S: Simd, const ROWS: usize, const VECS: usize>(
    acc: &mut [[S::V; VECS]; ROWS],
    p: usize,
    a_at: &impl Fn(usize, usize) -> *const S::E,
    (b_at, b_to): (&impl Fn(usize, usize) -> *const S::E, &impl Fn(usize, usize) -> Option<*mut S::E>),
) {
    let mut b_p = [S::zero(); VECS];
    for (v, b_pv) in b_p.iter_mut().enumerate() {
        *b_pv = S::load(b_at(p, v));
        if let Some(to) = b_to(p, v) {
            S::store(to, *b_pv);
        }
    }
    for (i, acc_i) in acc.iter_mut().enumerate() {
        let a_ip = S::splat(*a_at(i, p));
        for (acc_iv, &b_pv) in acc_i.iter_mut().zip(&b_p) {
            *acc_iv = S::fmadd(a_ip, b_pv, *acc_iv);
        }
    }
}

/// The vector instructions [`tile_alone`] runs the f32 tile with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TileVectors {
    /// AVX-512F (with AVX2 and FMA): the 6 x 64 tile.
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// AVX2 with FMA: the 6 x 16 tile.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// NEON: the 6 x 16 tile.
    #[cfg(target_arch = "aarch64")]
    Neon,
}

/// What [`tile_alone`] runs with `vectors`: the f32 register tile's rows and columns, the depth
/// of each kernel call ([`KC`]) and the panels of B in a block ([`panels_per_block`]), as the
/// product runs them on a B wide enough for the full tile.
pub(super) fn tile_alone_shape(vectors: TileVectors) -> (usize, usize, usize, usize) {
    let cols = match vectors {
        #[cfg(target_arch = "x86_64")]
        TileVectors::Avx512 => 4 * <f32 as Element>::Avx512::LANES,
        #[cfg(target_arch = "x86_64")]
        TileVectors::Avx2 => 2 * <f32 as Element>::Avx2::LANES,
        #[cfg(target_arch = "aarch64")]
        TileVectors::Neon => 4 * <f32 as Element>::Neon::LANES,
    };
    (6, cols, KC, panels_per_block(cols, 4))
}

/// The register tile alone, as the product runs it but with nothing else: `passes` times, a
/// packed tile of A (`rows x KC`, [`tile_alone_shape`]) walks a block of packed panels of B
/// ([`panels_per_block`] of them, `KC x cols` each), each panel one call of [`kernel`] adding
/// into the same tile of C. A tile of A (12 KiB) stays in L1 and the block (512 KiB) in L2,
/// as in the product's inner loops; there is no packing, no task, no edge and no C beyond one
/// tile. So its rate bounds what the product can reach with this tile on this machine: the
/// bench reports it beside the FMA peak. `a` holds `rows * KC` values, `b` the block, `c`
/// one tile (`rows * cols`, rows `cols` apart).
///
/// # Safety
/// The CPU must support `vectors` (AVX-512F with AVX2 and FMA; AVX2 and FMA; NEON is always
/// there).
pub(super) unsafe fn tile_alone(vectors: TileVectors, a: &[f32], b: &[f32], c: &mut [f32], passes: usize) {
    // SAFETY: the caller vouched for the instruction set.
    unsafe {
        match vectors {
            #[cfg(target_arch = "x86_64")]
            TileVectors::Avx512 => tile_alone_as::<<f32 as Element>::Avx512, 4>(a, b, c, passes),
            #[cfg(target_arch = "x86_64")]
            TileVectors::Avx2 => tile_alone_as::<<f32 as Element>::Avx2, 2>(a, b, c, passes),
            #[cfg(target_arch = "aarch64")]
            TileVectors::Neon => tile_alone_as::<<f32 as Element>::Neon, 4>(a, b, c, passes),
        }
    }
}

/// [`tile_alone`] for instruction set `S` and a `6 x LANES VECS` tile.
///
/// # Safety
/// The CPU must support `S`.
unsafe fn tile_alone_as<S: Simd<E = f32>, const VECS: usize>(a: &[f32], b: &[f32], c: &mut [f32], passes: usize) {
    let nr = S::LANES * VECS;
    let panel = KC * nr;
    let panels = panels_per_block(nr, 4);
    assert!(
        a.len() == 6 * KC && b.len() == panels * panel && c.len() == 6 * nr,
        "tile_alone: A of {}, B of {}, C of {} values; the tile needs {}, {} and {}",
        a.len(),
        b.len(),
        c.len(),
        6 * KC,
        panels * panel,
        6 * nr
    );
    let c = c.as_mut_ptr();
    // SAFETY: the caller vouched for `S`; A holds one packed 6 x KC tile, B `panels` packed
    // KC x nr panels and C one 6 x nr tile, rows nr apart (all checked just above).
    unsafe {
        S::run(
            #[inline(always)]
            || {
                for _ in 0..passes {
                    for p in 0..panels {
                        let (a_at, b_at) = ((a.as_ptr(), TileA::Packed), (b.as_ptr().add(p * panel), TileB::Packed));
                        kernel::<S, 6, 6, VECS>(KC, a_at, b_at, c, nr, 6, nr, Output::Accumulate, 0);
                    }
                }
            },
        )
    }
}

/// Masks of a tile's `cols` valid columns, one per vector: all lanes of the vectors inside
/// the matrix, fewer (or none) at its right edge.
///
/// # Safety
/// Runs inside `S::run`.
#[inline(always)]
unsafe fn lane_masks<S: Simd, const VECS: usize>(cols: usize) -> [S::Mask; VECS] {
    // SAFETY: the caller's promise.
    std::array::from_fn(|v| unsafe { S::first_lanes(cols.saturating_sub(S::LANES * v)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn six_rows_transpose_into_the_panel_order() {
        if !is_x86_feature_detected!("avx512f") {
            eprintln!("skipped: this CPU has no AVX-512F");
            return;
        }
        // Row i, step p holds 100 i + p, so every misplaced value shows where it came from.
        let rows: Vec<Vec<f32>> = (0..6).map(|i| (0..16).map(|p| (100 * i + p) as f32).collect()).collect();
        let mut panel = [0.0f32; 96];
        // SAFETY: AVX-512F checked above; six rows of 16 values, 96 values out.
        unsafe { transpose_6x16(std::array::from_fn(|i| rows[i].as_ptr()), panel.as_mut_ptr()) };
        let expected: Vec<f32> = (0..96).map(|f| (100 * (f % 6) + f / 6) as f32).collect();
        assert_eq!(panel.to_vec(), expected);
    }

    /// The instruction sets this CPU can run [`tile_alone`] with.
    fn tile_vectors_here() -> Vec<TileVectors> {
        #[cfg(target_arch = "x86_64")]
        let all = [
            (TileVectors::Avx512, is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma")),
            (TileVectors::Avx2, is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")),
        ];
        #[cfg(target_arch = "aarch64")]
        let all = [(TileVectors::Neon, true)];
        all.iter()
            .filter_map(|&(vectors, here)| {
                if !here {
                    eprintln!("skipped: this CPU lacks {vectors:?}");
                }
                here.then_some(vectors)
            })
            .collect()
    }

    #[test]
    fn the_tile_alone_computes_what_it_is_timed_for() {
        // Small integers, so every sum is exact and any lost or doubled multiply-add shows.
        for vectors in tile_vectors_here() {
            let (rows, cols, depth, panels) = tile_alone_shape(vectors);
            let a: Vec<f32> = (0..rows * depth).map(|i| (i % 3) as f32).collect();
            // Each panel its own values (i / (depth * cols) is the panel).
            let b: Vec<f32> = (0..panels * depth * cols).map(|i| ((i * 7 + i / (depth * cols)) % 4) as f32).collect();
            let mut c = vec![1.0f32; rows * cols];
            // SAFETY: the features were checked by `tile_vectors_here`; the lengths are the
            // shape's.
            unsafe { tile_alone(vectors, &a, &b, &mut c, 2) };
            for (at, &got) in c.iter().enumerate() {
                let (i, j) = (at / cols, at % cols);
                let one_pass: f32 = (0..panels)
                    .flat_map(|panel| (0..depth).map(move |p| (panel, p)))
                    .map(|(panel, p)| a[p * rows + i] * b[(panel * depth + p) * cols + j])
                    .sum();
                assert_eq!(got, 1.0 + 2.0 * one_pass, "{vectors:?}: C[{i}][{j}]");
            }
        }
    }

    #[test]
    fn long_products_take_tall_tasks_and_short_ones_many() {
        // 2048³ on 2 threads: 8.6 GFLOP per thread, one 1024-row task each.
        assert_eq!(rows_per_task(2048, 2, 6, is_long((2048, 2048, 2048), 2)), 1026);
        // The GPT's QKV product, 0.1 GFLOP per thread: twelve tasks of 174 rows.
        assert_eq!(rows_per_task(2048, 2, 6, is_long((2048, 128, 384), 2)), 174);
        // Never fewer tasks than threads, never a task under one tile.
        assert_eq!(rows_per_task(128, 2, 6, is_long((128, 784, 256), 2)), 66);
        assert_eq!(rows_per_task(5, 4, 6, is_long((5, 3000, 3000), 4)), 6);
        // 768³ on 2 threads, 0.23 GFLOP per thread and 768 deep and wide: tall.
        assert!(is_long((768, 768, 768), 2));
        assert_eq!(rows_per_task(768, 2, 6, is_long((768, 768, 768), 2)), 384);
        // The GPT's 2048 x 128 x 512 has as much work, but is 128 deep: short tasks.
        assert!(!is_long((2048, 128, 512), 2));
        assert!(!is_long((512, 512, 512), 4));
    }
}
