// Softmax and log-softmax over the rows of a contiguous [rows, cols] matrix, and their backward.
//
//   softmax(x)_j     = e^(x_j - m) / sum_k e^(x_k - m),      m = max_k x_k
//   log_softmax(x)_j = x_j - m - ln(sum_k e^(x_k - m))
// Subtracting the row max keeps every exponent <= 0, so no logit overflows. The CPU reference
// is src/backend/cpu/softmax.rs. A row is read two or three times and written once, so these
// kernels are memory-bound: what matters is how many passes over the row, and whether all
// threads of the GPU have work.
//
// | version | what changes | why it is faster |
// |---|---|---|
// | v1 naive | one thread per row, three passes (max, sum, write) | (the reference: with few rows most of the GPU idles, and neighbouring threads read addresses `cols` apart, so no load is coalesced) |
// | v2 warp | one warp (32 threads) per row: lanes stride along the row, shuffles combine max and sum | loads are coalesced (lanes read neighbouring floats) and 32x more threads work; the combine is 5 shuffle steps, no shared memory |
// | v3 online | v2 with max and sum in ONE pass: when a larger value appears, the running sum is rescaled by e^(m_old - m_new) (Milakov and Gimelshein, 2018) | one read of the row fewer (two passes instead of three); the same trick flash attention is built on |
//
// Backward (one warp per row): softmax: dx = y * (g - sum(g * y)); log-softmax:
// dx = g - e^y * sum(g), where y is the forward output.

#define SM_INF __int_as_float(0x7f800000)

static __device__ __forceinline__ float warp_max(float v) {
    for (int offset = 16; offset > 0; offset /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

static __device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

// ----- v1: one thread per row ---------------------------------------------------------------------

extern "C" __global__ void softmax_v1_naive(const float* x, float* y, int rows, int cols, int log_softmax) {
    int row = blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= rows) return;
    const float* xr = x + (size_t)row * cols;
    float* yr = y + (size_t)row * cols;
    float m = -SM_INF;
    for (int j = 0; j < cols; ++j) m = fmaxf(m, xr[j]);
    float sum = 0.0f;
    for (int j = 0; j < cols; ++j) sum += expf(xr[j] - m);
    float lse = logf(sum);
    for (int j = 0; j < cols; ++j) yr[j] = log_softmax ? xr[j] - m - lse : expf(xr[j] - m) / sum;
}

// ----- v2: one warp per row -----------------------------------------------------------------------
// Launch with blockDim.x a multiple of 32; warp w of block b handles row b * (blockDim.x / 32) + w.
// A whole warp returns together when its row is past the end, so no shuffle misses a lane.

extern "C" __global__ void softmax_v2_warp(const float* x, float* y, int rows, int cols, int log_softmax) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;
    const float* xr = x + (size_t)row * cols;
    float* yr = y + (size_t)row * cols;
    float m = -SM_INF;
    for (int j = lane; j < cols; j += 32) m = fmaxf(m, xr[j]);
    m = warp_max(m);
    float sum = 0.0f;
    for (int j = lane; j < cols; j += 32) sum += expf(xr[j] - m);
    sum = warp_sum(sum);
    float lse = logf(sum), inv = 1.0f / sum;
    for (int j = lane; j < cols; j += 32) yr[j] = log_softmax ? xr[j] - m - lse : expf(xr[j] - m) * inv;
}

// ----- v3: one warp per row, online max and sum ------------------------------------------------------
// Each lane keeps (m, s) with s = sum e^(x - m) over what it has seen; a new value v above m
// rescales s by e^(m - v). Two lanes' pairs merge the same way, so the warp combine is a
// shuffle of pairs.

extern "C" __global__ void softmax_v3_online(const float* x, float* y, int rows, int cols, int log_softmax) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;
    const float* xr = x + (size_t)row * cols;
    float* yr = y + (size_t)row * cols;
    float m = -SM_INF, s = 0.0f;
    for (int j = lane; j < cols; j += 32) {
        float v = xr[j];
        if (v > m) {
            s = s * expf(m - v) + 1.0f;
            m = v;
        } else {
            s += expf(v - m);
        }
    }
    for (int offset = 16; offset > 0; offset /= 2) {
        float m_other = __shfl_xor_sync(0xffffffffu, m, offset);
        float s_other = __shfl_xor_sync(0xffffffffu, s, offset);
        float m_new = fmaxf(m, m_other);
        // A lane that saw nothing has m = -inf and s = 0: its term must vanish, not be NaN.
        s = (m == -SM_INF ? 0.0f : s * expf(m - m_new)) + (m_other == -SM_INF ? 0.0f : s_other * expf(m_other - m_new));
        m = m_new;
    }
    float lse = logf(s), inv = 1.0f / s;
    for (int j = lane; j < cols; j += 32) yr[j] = log_softmax ? xr[j] - m - lse : expf(xr[j] - m) * inv;
}

// ----- backward: one warp per row -------------------------------------------------------------------

extern "C" __global__ void softmax_backward_v1_warp(const float* y, const float* g, float* dx, int rows, int cols,
                                                    int log_softmax) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;
    const float* yr = y + (size_t)row * cols;
    const float* gr = g + (size_t)row * cols;
    float* dr = dx + (size_t)row * cols;
    float acc = 0.0f;
    for (int j = lane; j < cols; j += 32) acc += log_softmax ? gr[j] : gr[j] * yr[j];
    acc = warp_sum(acc);
    for (int j = lane; j < cols; j += 32) dr[j] = log_softmax ? gr[j] - expf(yr[j]) * acc : yr[j] * (gr[j] - acc);
}
