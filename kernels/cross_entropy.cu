// Fused softmax cross-entropy over the rows of contiguous [rows, cols] logits with one class
// index per row, forward and backward.
//
//   loss_i  = ln(sum_j e^(x_ij)) - x_i,t_i  = m_i + ln(sum_j e^(x_ij - m_i)) - x_i,t_i
//   dlogits = (softmax(x) - onehot(t)) * scale,   scale = upstream gradient / rows
// Unfused, this is a softmax kernel, a gather, a log and a mean: four passes and three
// temporaries. Fused, the forward reads each row once for the statistics (online max and sum,
// as softmax_v3_online) and once to write the probabilities the backward needs; the mean over
// rows of loss_i is left to the host (rows numbers, not rows * cols). The CPU reference is
// cross_entropy_rows in src/backend/cpu/softmax.rs.
//
// | version | what it does |
// |---|---|
// | v1 forward | one warp per row: online max/sum with shuffles, then probabilities and the row's loss |
// | v1 backward | one thread per element: (p - onehot) * scale, grid-stride |

#define CE_INF __int_as_float(0x7f800000)

extern "C" __global__ void cross_entropy_v1_forward(const float* logits, const int* targets, float* probs, float* losses,
                                                    int rows, int cols) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;
    const float* xr = logits + (size_t)row * cols;
    float m = -CE_INF, s = 0.0f;
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
        s = (m == -CE_INF ? 0.0f : s * expf(m - m_new)) + (m_other == -CE_INF ? 0.0f : s_other * expf(m_other - m_new));
        m = m_new;
    }
    float inv = 1.0f / s;
    float* pr = probs + (size_t)row * cols;
    for (int j = lane; j < cols; j += 32) pr[j] = expf(xr[j] - m) * inv;
    if (lane == 0) losses[row] = m + logf(s) - xr[targets[row]];
}

extern "C" __global__ void cross_entropy_v1_backward(const float* probs, const int* targets, float* dlogits, int rows,
                                                     int cols, float scale) {
    int n = rows * cols;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        int row = i / cols, col = i % cols;
        dlogits[i] = (probs[i] - (col == targets[row] ? 1.0f : 0.0f)) * scale;
    }
}
