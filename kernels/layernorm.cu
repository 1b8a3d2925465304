// Layer normalization over the rows of a contiguous [rows, cols] matrix, forward and backward.
//
// Forward, per row: mean = sum(x) / C, var = sum((x - mean)^2) / C, rstd = 1 / sqrt(var + eps),
// y = (x - mean) * rstd * w + b; mean and rstd are saved for the backward pass.
// Backward, with g = dL/dy, xhat = (x - mean) * rstd and dxhat = g * w:
//   dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
//   dw = sum over rows of g * xhat,   db = sum over rows of g.
// The CPU reference (and the derivation) is src/backend/cpu/layernorm.rs.
//
// | version | what changes | why it is faster |
// |---|---|---|
// | forward v1 warp | one warp per row; lanes stride along the row; shuffles give the sums | coalesced loads, no shared memory; the variance is a second pass over a row that is still in L1 |
// | backward v1 atomic | one warp per row for dx; every lane adds its g * xhat and g into dw, db with atomicAdd | (the simple one: rows * cols atomics on the same cols addresses serialize when rows is large) |
// | backward v2 block | one block of 8 warps takes a band of rows; each warp does a row's dx and adds into a per-block dw, db in shared memory; one atomicAdd per column per block at the end | atomics to global memory drop by the band height (here 32 rows per block); shared-memory atomics are cheap |

static __device__ __forceinline__ float ln_warp_sum(float v) {
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

// ----- forward --------------------------------------------------------------------------------------

extern "C" __global__ void layernorm_v1_forward(const float* x, const float* w, const float* b, float* y, float* mean,
                                                float* rstd, int rows, int cols, float eps) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;
    const float* xr = x + (size_t)row * cols;
    float sum = 0.0f;
    for (int j = lane; j < cols; j += 32) sum += xr[j];
    float m = ln_warp_sum(sum) / cols;
    float sq = 0.0f;
    for (int j = lane; j < cols; j += 32) {
        float d = xr[j] - m;
        sq += d * d;
    }
    float s = rsqrtf(ln_warp_sum(sq) / cols + eps);
    float* yr = y + (size_t)row * cols;
    for (int j = lane; j < cols; j += 32) yr[j] = (xr[j] - m) * s * w[j] + b[j];
    if (lane == 0) {
        mean[row] = m;
        rstd[row] = s;
    }
}

// One row's dx, done by one warp; `add_wb(j, dw_j, db_j)` receives each column's contribution to
// dw and db.
template <class AddWb>
static __device__ __forceinline__ void row_backward(const float* x, const float* w, const float* mean, const float* rstd,
                                                    const float* g, float* dx, int row, int cols, int lane, AddWb add_wb) {
    const float* xr = x + (size_t)row * cols;
    const float* gr = g + (size_t)row * cols;
    float m = mean[row], s = rstd[row];
    float sum_dxhat = 0.0f, sum_dxhat_xhat = 0.0f;
    for (int j = lane; j < cols; j += 32) {
        float xhat = (xr[j] - m) * s;
        float dxhat = gr[j] * w[j];
        sum_dxhat += dxhat;
        sum_dxhat_xhat += dxhat * xhat;
        add_wb(j, gr[j] * xhat, gr[j]);
    }
    float mean_dxhat = ln_warp_sum(sum_dxhat) / cols;
    float mean_dxhat_xhat = ln_warp_sum(sum_dxhat_xhat) / cols;
    float* dr = dx + (size_t)row * cols;
    for (int j = lane; j < cols; j += 32) {
        float xhat = (xr[j] - m) * s;
        dr[j] = s * (gr[j] * w[j] - mean_dxhat - xhat * mean_dxhat_xhat);
    }
}

// ----- backward v1: atomics straight to global memory ---------------------------------------------
// dw and db must be zeroed before the launch.

extern "C" __global__ void layernorm_backward_v1_atomic(const float* x, const float* w, const float* mean,
                                                        const float* rstd, const float* g, float* dx, float* dw,
                                                        float* db, int rows, int cols) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;
    row_backward(x, w, mean, rstd, g, dx, row, cols, lane, [&](int j, float dw_j, float db_j) {
        atomicAdd(&dw[j], dw_j);
        atomicAdd(&db[j], db_j);
    });
}

// ----- backward v2: a band of rows per block, dw and db summed in shared memory first ----------------
// Launch with 256 threads; block b takes rows [b * LN_BAND, (b + 1) * LN_BAND). Columns are
// handled in chunks of LN_CHUNK so any width fits the fixed shared arrays. dw and db must be
// zeroed before the launch.

#define LN_BAND 32
#define LN_CHUNK 1024

extern "C" __global__ void __launch_bounds__(256) layernorm_backward_v2_block(const float* x, const float* w,
                                                                             const float* mean, const float* rstd,
                                                                             const float* g, float* dx, float* dw,
                                                                             float* db, int rows, int cols) {
    __shared__ float dw_band[LN_CHUNK];
    __shared__ float db_band[LN_CHUNK];
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
    int first = blockIdx.x * LN_BAND;
    int last = min(first + LN_BAND, rows);
    for (int c0 = 0; c0 < cols; c0 += LN_CHUNK) {
        int c1 = min(c0 + LN_CHUNK, cols);
        for (int j = threadIdx.x; j < c1 - c0; j += blockDim.x) {
            dw_band[j] = 0.0f;
            db_band[j] = 0.0f;
        }
        __syncthreads();
        for (int row = first + warp; row < last; row += warps) {
            // dx is computed once, with the first chunk; later chunks only add their columns'
            // dw, db.
            const float* xr = x + (size_t)row * cols;
            const float* gr = g + (size_t)row * cols;
            float m = mean[row], s = rstd[row];
            if (c0 == 0) {
                row_backward(x, w, mean, rstd, g, dx, row, cols, lane, [&](int j, float dw_j, float db_j) {
                    if (j < c1) {
                        atomicAdd(&dw_band[j], dw_j);
                        atomicAdd(&db_band[j], db_j);
                    }
                });
            } else {
                for (int j = c0 + lane; j < c1; j += 32) {
                    atomicAdd(&dw_band[j - c0], gr[j] * (xr[j] - m) * s);
                    atomicAdd(&db_band[j - c0], gr[j]);
                }
            }
        }
        __syncthreads();
        for (int j = threadIdx.x; j < c1 - c0; j += blockDim.x) {
            atomicAdd(&dw[c0 + j], dw_band[j]);
            atomicAdd(&db[c0 + j], db_band[j]);
        }
        __syncthreads();
    }
}
