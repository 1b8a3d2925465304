// Scaled dot-product attention, O = softmax(Q K^T * scale [+ causal mask]) V, forward and
// backward, per (batch, head), with scale = 1 / sqrt(d).
//
// | version | what | memory for the scores |
// |---|---|---|
// | v1 naive | the composition S = Q K^T (matmul), P = softmax(S) (softmax.cu), O = P V (matmul) | T x T per head, written and read back: O(T^2) traffic dominates at long T |
// | v2 flash | one kernel: tiles of K and V stream through shared memory while each query row keeps a running max m, sum l and output accumulator (online softmax, as softmax_v3_online); S and P never leave registers (Dao et al., FlashAttention, 2022) | none: O(T d) traffic, and the T x T matrix is never stored |
//
// v1 is not a kernel of its own: benches/cuda.rs runs it from matmul.cu and softmax.cu. The
// math, and the CPU reference these kernels are tested against, is in
// src/backend/cpu/attention.rs.
//
// Forward (v2), block = 32 threads for 32 query rows (one row each), looping over key tiles:
//   s_j = scale q_i . k_j for the tile; m' = max(m, max_j s_j); l = l e^(m - m') + sum_j e^(s_j - m');
//   acc = acc e^(m - m') + sum_j e^(s_j - m') v_j;  at the end o_i = acc / l, lse_i = m + ln l.
// Backward (v2), with P recomputed from the saved lse and D_i = dO_i . o_i (from a small first
// kernel), block = 2 BC threads for BC keys (two per key row, each with half the head dim),
// looping over query rows:
//   p = e^(s_ij - lse_i); dv_j += p dO_i; dp = dO_i . v_j; ds = p (dp - D_i) scale;
//   dk_j += ds q_i; dq_i += sum_j ds k_j (summed in the block, then one atomicAdd per element).
// dk and dv of a key row belong to one thread of one block, so they are stored plainly; dq_i
// gets contributions from every key block, hence the atomics (the gradient buffer is zeroed
// first).
//
// Operands are read in place through head layouts (so GPT's packed [B, T, 3C] projection needs
// no copy): row t of head h of batch b starts at offset + b * batch_stride + h * head_stride +
// t * row_stride. The output is [batch, t_q, heads * d]; lse is [batch, heads, t_q]. Head dims
// up to 32, 64 and 128 get their own instantiations: registers hold a row's accumulators, so
// their number is fixed at compile time, and a smaller head runs the smallest one that fits
// (the padding is zeros, computed for nothing).

struct AttnHeads {
    int offset;
    int batch_stride;
    int head_stride;
    int row_stride;
};

struct AttnShape {
    int batch;
    int heads;
    int t_q;
    int t_k;
    int d;
    int causal;
    float scale;
};

// Where the backward pass writes dq, dk, dv: `chunk` elements per batch element, each gradient
// laid out inside its chunk by its head layout (batch_stride unused).
struct AttnGrads {
    int chunk;
    AttnHeads dq;
    AttnHeads dk;
    AttnHeads dv;
};

#define ATT_INF __int_as_float(0x7f800000)

static __device__ __forceinline__ size_t head_row(const AttnHeads& l, int b, int h, int t) {
    return (size_t)l.offset + (size_t)b * l.batch_stride + (size_t)h * l.head_stride + (size_t)t * l.row_stride;
}

// ----- forward ---------------------------------------------------------------------------------------

template <int D, int BR, int BC>
static __device__ __forceinline__ void flash_forward(const float* q, AttnHeads ql, const float* k, AttnHeads kl,
                                                     const float* v, AttnHeads vl, float* o, float* lse, AttnShape s) {
    // The query tile is padded by one column: thread t reads row t, and with a row stride of
    // D + 1 floats the 32 rows fall on 32 different banks. K and V rows are read by all threads
    // at once (a broadcast), so they need no padding.
    __shared__ float qs[BR][D + 1];
    __shared__ float ks[BC][D];
    __shared__ float vs[BC][D];
    int b = blockIdx.y / s.heads, h = blockIdx.y % s.heads;
    int i0 = blockIdx.x * BR, t = threadIdx.x, i = i0 + t;
    for (int e = t; e < BR * D; e += blockDim.x) {
        int r = e / D, c = e % D;
        qs[r][c] = (i0 + r < s.t_q && c < s.d) ? q[head_row(ql, b, h, i0 + r) + c] * s.scale : 0.0f;
    }
    float acc[D];
#pragma unroll
    for (int e = 0; e < D; ++e) acc[e] = 0.0f;
    float m = -ATT_INF, l = 0.0f;
    int my_keys = s.causal ? min(s.t_k, i + 1) : s.t_k;
    // The keys any row of this block may see.
    int block_keys = s.causal ? min(s.t_k, i0 + BR) : s.t_k;
    for (int j0 = 0; j0 < block_keys; j0 += BC) {
        // Everyone is done with the previous tile (and, the first time, Q is loaded).
        __syncthreads();
        for (int e = t; e < BC * D; e += blockDim.x) {
            int r = e / D, c = e % D;
            bool in = j0 + r < s.t_k && c < s.d;
            ks[r][c] = in ? k[head_row(kl, b, h, j0 + r) + c] : 0.0f;
            vs[r][c] = in ? v[head_row(vl, b, h, j0 + r) + c] : 0.0f;
        }
        __syncthreads();
        if (i >= s.t_q) continue;
        float sc[BC];
        float tile_max = -ATT_INF;
#pragma unroll
        for (int jj = 0; jj < BC; ++jj) {
            float dot = 0.0f;
#pragma unroll
            for (int e = 0; e < D; ++e) dot += qs[t][e] * ks[jj][e];
            sc[jj] = j0 + jj < my_keys ? dot : -ATT_INF;
            tile_max = fmaxf(tile_max, sc[jj]);
        }
        if (tile_max == -ATT_INF) continue;
        float m_new = fmaxf(m, tile_max);
        float correction = expf(m - m_new);
        l *= correction;
#pragma unroll
        for (int e = 0; e < D; ++e) acc[e] *= correction;
#pragma unroll
        for (int jj = 0; jj < BC; ++jj) {
            float p = expf(sc[jj] - m_new);
            l += p;
#pragma unroll
            for (int e = 0; e < D; ++e) acc[e] += p * vs[jj][e];
        }
        m = m_new;
    }
    if (i >= s.t_q) return;
    int hd = s.heads * s.d;
    float* o_row = o + ((size_t)b * s.t_q + i) * hd + (size_t)h * s.d;
    float inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
    for (int e = 0; e < D; ++e)
        if (e < s.d) o_row[e] = acc[e] * inv;
    lse[((size_t)b * s.heads + h) * s.t_q + i] = l > 0.0f ? m + logf(l) : -ATT_INF;
}

// grid (ceil(t_q / 32), batch * heads), block 32.
extern "C" __global__ void __launch_bounds__(32) attention_v2_flash_forward_d32(const float* q, AttnHeads ql, const float* k,
                                                                       AttnHeads kl, const float* v, AttnHeads vl,
                                                                       float* o, float* lse, AttnShape s) {
    flash_forward<32, 32, 32>(q, ql, k, kl, v, vl, o, lse, s);
}

// grid (ceil(t_q / 32), batch * heads), block 32.
extern "C" __global__ void __launch_bounds__(32) attention_v2_flash_forward_d64(const float* q, AttnHeads ql, const float* k,
                                                                       AttnHeads kl, const float* v, AttnHeads vl,
                                                                       float* o, float* lse, AttnShape s) {
    flash_forward<64, 32, 32>(q, ql, k, kl, v, vl, o, lse, s);
}

// grid (ceil(t_q / 32), batch * heads), block 32; key tiles of 16 keep shared memory under 48 KiB.
extern "C" __global__ void __launch_bounds__(32) attention_v2_flash_forward_d128(const float* q, AttnHeads ql, const float* k,
                                                                        AttnHeads kl, const float* v, AttnHeads vl,
                                                                        float* o, float* lse, AttnShape s) {
    flash_forward<128, 32, 16>(q, ql, k, kl, v, vl, o, lse, s);
}

// ----- backward ------------------------------------------------------------------------------------

// D_i = dO_i . o_i for every query row: one warp per row. grid ceil(rows / 8), block 256, where
// rows = batch * heads * t_q; dvec is laid out like lse.
extern "C" __global__ void attention_v2_flash_backward_dot(const float* o, const float* dout, float* dvec, AttnShape s) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= s.batch * s.heads * s.t_q) return;
    int i = row % s.t_q, h = (row / s.t_q) % s.heads, b = row / (s.t_q * s.heads);
    size_t at = ((size_t)b * s.t_q + i) * s.heads * s.d + (size_t)h * s.d;
    float acc = 0.0f;
    for (int e = lane; e < s.d; e += 32) acc += o[at + e] * dout[at + e];
    for (int offset = 16; offset > 0; offset /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, offset);
    if (lane == 0) dvec[row] = acc;
}

// Two threads per key row: thread t owns key t / 2 and half of the head dim, [(t % 2) D / 2,
// (t % 2 + 1) D / 2), of its dk and dv accumulators. One thread per key would need 2 D
// accumulator registers (256 at D = 128: ptxas spilled 2 KB per thread); split in two, each
// thread holds D and the two halves of every dot product meet with one __shfl_xor_sync.
template <int D, int BC>
static __device__ __forceinline__ void flash_backward(const float* q, AttnHeads ql, const float* k, AttnHeads kl,
                                                      const float* v, AttnHeads vl, const float* lse,
                                                      const float* dvec, const float* dout, float* grad,
                                                      AttnGrads gl, AttnShape s) {
    constexpr int HALF = D / 2;
    __shared__ float ks[BC][D + 1];
    __shared__ float vs[BC][D + 1];
    __shared__ float q_row[D];
    __shared__ float do_row[D];
    __shared__ float ds_col[BC];
    int b = blockIdx.y / s.heads, h = blockIdx.y % s.heads;
    int t = threadIdx.x, jj = t / 2, e0 = (t % 2) * HALF;
    int j0 = blockIdx.x * BC, j = j0 + jj;
    for (int e = t; e < BC * D; e += blockDim.x) {
        int r = e / D, c = e % D;
        bool in = j0 + r < s.t_k && c < s.d;
        ks[r][c] = in ? k[head_row(kl, b, h, j0 + r) + c] : 0.0f;
        vs[r][c] = in ? v[head_row(vl, b, h, j0 + r) + c] : 0.0f;
    }
    float dk[HALF], dv[HALF];
#pragma unroll
    for (int e = 0; e < HALF; ++e) {
        dk[e] = 0.0f;
        dv[e] = 0.0f;
    }
    int hd = s.heads * s.d;
    float* grad_b = grad + (size_t)b * gl.chunk;
    // With the causal mask, query i sees key j only when j <= i: rows before j0 see none of ours.
    for (int i = s.causal ? j0 : 0; i < s.t_q; ++i) {
        __syncthreads();
        const float* do_src = dout + ((size_t)b * s.t_q + i) * hd + (size_t)h * s.d;
        for (int e = t; e < D; e += blockDim.x) {
            q_row[e] = e < s.d ? q[head_row(ql, b, h, i) + e] : 0.0f;
            do_row[e] = e < s.d ? do_src[e] : 0.0f;
        }
        __syncthreads();
        // Both threads of a pair compute their halves of the two dot products, then swap.
        float score = 0.0f, dp = 0.0f;
#pragma unroll
        for (int e = 0; e < HALF; ++e) {
            score += q_row[e0 + e] * ks[jj][e0 + e];
            dp += do_row[e0 + e] * vs[jj][e0 + e];
        }
        score += __shfl_xor_sync(0xffffffffu, score, 1);
        dp += __shfl_xor_sync(0xffffffffu, dp, 1);
        float ds = 0.0f;
        if (j < s.t_k && (!s.causal || j <= i)) {
            size_t stat = ((size_t)b * s.heads + h) * s.t_q + i;
            float p = expf(score * s.scale - lse[stat]);
            ds = p * (dp - dvec[stat]) * s.scale;
#pragma unroll
            for (int e = 0; e < HALF; ++e) {
                dv[e] += p * do_row[e0 + e];
                dk[e] += ds * q_row[e0 + e];
            }
        }
        if (t % 2 == 0) ds_col[jj] = ds;
        __syncthreads();
        // dq_i = sum over this block's keys of ds_j k_j: thread t sums elements t, t + 2 BC, ...
        float* dq = grad_b + (size_t)gl.dq.offset + (size_t)h * gl.dq.head_stride + (size_t)i * gl.dq.row_stride;
        for (int e = t; e < s.d; e += blockDim.x) {
            float sum = 0.0f;
            for (int r = 0; r < BC; ++r) sum += ds_col[r] * ks[r][e];
            atomicAdd(&dq[e], sum);
        }
    }
    if (j >= s.t_k) return;
    float* dk_out = grad_b + (size_t)gl.dk.offset + (size_t)h * gl.dk.head_stride + (size_t)j * gl.dk.row_stride;
    float* dv_out = grad_b + (size_t)gl.dv.offset + (size_t)h * gl.dv.head_stride + (size_t)j * gl.dv.row_stride;
#pragma unroll
    for (int e = 0; e < HALF; ++e) {
        if (e0 + e < s.d) {
            dk_out[e0 + e] = dk[e];
            dv_out[e0 + e] = dv[e];
        }
    }
}

// grid (ceil(t_k / 32), batch * heads), block 64 (two threads per key); `grad` zeroed first.
extern "C" __global__ void __launch_bounds__(64) attention_v2_flash_backward_d32(const float* q, AttnHeads ql, const float* k,
                                                                        AttnHeads kl, const float* v, AttnHeads vl,
                                                                        const float* lse, const float* dvec,
                                                                        const float* dout, float* grad, AttnGrads gl,
                                                                        AttnShape s) {
    flash_backward<32, 32>(q, ql, k, kl, v, vl, lse, dvec, dout, grad, gl, s);
}

// grid (ceil(t_k / 32), batch * heads), block 64 (two threads per key); `grad` zeroed first.
extern "C" __global__ void __launch_bounds__(64) attention_v2_flash_backward_d64(const float* q, AttnHeads ql, const float* k,
                                                                        AttnHeads kl, const float* v, AttnHeads vl,
                                                                        const float* lse, const float* dvec,
                                                                        const float* dout, float* grad, AttnGrads gl,
                                                                        AttnShape s) {
    flash_backward<64, 32>(q, ql, k, kl, v, vl, lse, dvec, dout, grad, gl, s);
}

// grid (ceil(t_k / 32), batch * heads), block 64 (two threads per key); `grad` zeroed first.
extern "C" __global__ void __launch_bounds__(64) attention_v2_flash_backward_d128(const float* q, AttnHeads ql, const float* k,
                                                                         AttnHeads kl, const float* v, AttnHeads vl,
                                                                         const float* lse, const float* dvec,
                                                                         const float* dout, float* grad, AttnGrads gl,
                                                                         AttnShape s) {
    flash_backward<128, 32>(q, ql, k, kl, v, vl, lse, dvec, dout, grad, gl, s);
}
