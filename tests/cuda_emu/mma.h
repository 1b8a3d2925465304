// The WMMA C++ API (`#include <mma.h>`, namespace nvcuda::wmma) emulated per warp, for the
// tensor-core kernels under the CUDA emulator (see shim.h).
//
// On a GPU each lane holds an opaque, layout-dependent share of a fragment. Here every lane
// holds the whole tile, which is layout-agnostic for what kernels may portably do with a
// fragment: load, store, fill, mma, and the same operation on every element of `x` (such as
// rounding to TF32). The collective calls meet the warp's barrier on entry and on exit, as the
// `_sync` in their names promises; only lane 0 stores, so the lanes never race on memory.
// Precision: TF32 operands are rounded to 10 mantissa bits (as __float_to_tf32 does, and as the
// hardware truncates operands that were not rounded); bf16 operands are exact in f32; products
// accumulate in f32.
#pragma once

#include <type_traits>

#include "cuda_bf16.h"
#include "shim.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
namespace precision {
struct tf32 {};
}  // namespace precision
enum layout_t { mem_row_major, mem_col_major };

/// Rounds an f32 to the nearest TF32 (10 explicit mantissa bits), ties away from zero as the
/// hardware conversion does; infinities and NaN pass through.
inline float __float_to_tf32(float f) {
    uint32_t bits = std::bit_cast<uint32_t>(f);
    if ((bits & 0x7f800000u) == 0x7f800000u) return f;
    bits = (bits + 0x1000u) & 0xffffe000u;
    return std::bit_cast<float>(bits);
}

namespace detail {
template <class Use, int M, int N, int K>
struct dims;
template <int M, int N, int K>
struct dims<matrix_a, M, N, K> {
    static constexpr int rows = M, cols = K;
};
template <int M, int N, int K>
struct dims<matrix_b, M, N, K> {
    static constexpr int rows = K, cols = N;
};
template <int M, int N, int K>
struct dims<accumulator, M, N, K> {
    static constexpr int rows = M, cols = N;
};
inline float truncate_tf32(float f) {
    uint32_t bits = std::bit_cast<uint32_t>(f);
    if ((bits & 0x7f800000u) == 0x7f800000u) return f;
    return std::bit_cast<float>(bits & 0xffffe000u);
}
}  // namespace detail

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
    static constexpr int rows = detail::dims<Use, M, N, K>::rows;
    static constexpr int cols = detail::dims<Use, M, N, K>::cols;
    static constexpr int num_elements = rows * cols;
    /// The whole tile, row-major, in every lane.
    float x[num_elements];
};

template <class Use, int M, int N, int K, class T, class L>
inline void fill_fragment(fragment<Use, M, N, K, T, L>& f, float v) {
    for (int i = 0; i < f.num_elements; ++i) f.x[i] = v;
}

namespace detail {
inline float to_float(float v) { return v; }
inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
}  // namespace detail

template <class Use, int M, int N, int K, class T, class L, class P>
inline void load_matrix_sync(fragment<Use, M, N, K, T, L>& f, const P* p, unsigned ldm) {
    __syncwarp();
    constexpr bool col = std::is_same_v<L, col_major>;
    for (int r = 0; r < f.rows; ++r)
        for (int c = 0; c < f.cols; ++c)
            f.x[r * f.cols + c] = detail::to_float(col ? p[c * ldm + r] : p[r * ldm + c]);
    __syncwarp();
}

template <int M, int N, int K, class T>
inline void load_matrix_sync(fragment<accumulator, M, N, K, T>& f, const float* p, unsigned ldm, layout_t layout) {
    __syncwarp();
    for (int r = 0; r < M; ++r)
        for (int c = 0; c < N; ++c) f.x[r * N + c] = layout == mem_col_major ? p[c * ldm + r] : p[r * ldm + c];
    __syncwarp();
}

template <int M, int N, int K, class T>
inline void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, T>& f, unsigned ldm, layout_t layout) {
    __syncwarp();
    if (gb_emu::lane == 0)
        for (int r = 0; r < M; ++r)
            for (int c = 0; c < N; ++c) (layout == mem_col_major ? p[c * ldm + r] : p[r * ldm + c]) = f.x[r * N + c];
    __syncwarp();
}

/// d = a b + c. TF32 operands are truncated to TF32 as the hardware does; bf16 operands were
/// exact in f32 when loaded.
template <int M, int N, int K, class T, class LA, class LB, class TC>
inline void mma_sync(fragment<accumulator, M, N, K, TC>& d, const fragment<matrix_a, M, N, K, T, LA>& a,
                     const fragment<matrix_b, M, N, K, T, LB>& b, const fragment<accumulator, M, N, K, TC>& c) {
    __syncwarp();
    constexpr bool tf32 = std::is_same_v<T, precision::tf32>;
    auto operand = [](float v) { return tf32 ? detail::truncate_tf32(v) : v; };
    float out[M * N];
    for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) {
            float acc = c.x[i * N + j];
            for (int p = 0; p < K; ++p) acc += operand(a.x[i * K + p]) * operand(b.x[p * N + j]);
            out[i * N + j] = acc;
        }
    for (int i = 0; i < M * N; ++i) d.x[i] = out[i];
    __syncwarp();
}

}  // namespace wmma
}  // namespace nvcuda
