// Fused optimizer updates: one pass over each parameter, its gradient and its state, in place.
//
// Written as tensor ops, an AdamW step is about ten elementwise kernels, each reading and
// writing whole parameter-sized buffers; fused, every element is loaded once (w, g, m, v),
// updated in registers and stored once (w, m, v): 7 floats of traffic per parameter instead of
// about 30. The formulas and their CPU reference are in src/backend/cpu/optim.rs. One thread
// per element, grid-stride; all three are memory-bound by design.
//
// | kernel | update |
// |---|---|
// | optim_v1_adamw | Adam / AdamW: g' = g + l2 w; m = b1 m + (1 - b1) g'; v = b2 v + (1 - b2) g'^2; w = w shrink - lr (m c1) / (sqrt(v) c2s + eps) |
// | optim_v1_sgd | SGD with momentum and L2 decay: d = g + wd w; buf = mu buf + d; w -= lr buf |
// | optim_v1_rmsprop | RMSprop: g' = g + wd w; s = alpha s + (1 - alpha) g'^2; w -= lr g' / (sqrt(s) + eps) |
//
// For AdamW the host passes shrink = 1 - lr wd and l2 = 0; for Adam shrink = 1 and l2 = wd.
// c1 = 1 / (1 - b1^t) and c2s = sqrt(1 / (1 - b2^t)) are the bias corrections of step t.
//
// The states are flushed to zero when they fall below the smallest normal float, as on the
// CPU. A GPU handles subnormals at full speed; the CPU does not (see src/backend/cpu/optim.rs),
// and the two backends keep the same states.

__device__ __forceinline__ float flush_subnormal(float x) { return fabsf(x) < 1.17549435e-38f ? 0.0f : x; }

extern "C" __global__ void optim_v1_adamw(float* w, const float* g, float* m, float* v, int n, float lr, float beta1,
                                          float beta2, float eps, float shrink, float l2, float c1, float c2s) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        float wi = w[i];
        float gi = g[i] + l2 * wi;
        float mi = flush_subnormal(beta1 * m[i] + (1.0f - beta1) * gi);
        float vi = flush_subnormal(beta2 * v[i] + (1.0f - beta2) * gi * gi);
        m[i] = mi;
        v[i] = vi;
        w[i] = wi * shrink - lr * (mi * c1) / (sqrtf(vi) * c2s + eps);
    }
}

extern "C" __global__ void optim_v1_sgd(float* w, const float* g, float* buf, int n, float lr, float momentum,
                                        float weight_decay) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        float d = g[i] + weight_decay * w[i];
        float b = flush_subnormal(momentum * buf[i] + d);
        buf[i] = b;
        w[i] -= lr * b;
    }
}

extern "C" __global__ void optim_v1_rmsprop(float* w, const float* g, float* sq, int n, float lr, float alpha, float eps,
                                            float weight_decay) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        float gi = g[i] + weight_decay * w[i];
        float s = flush_subnormal(alpha * sq[i] + (1.0f - alpha) * gi * gi);
        sq[i] = s;
        w[i] -= lr * gi / (sqrtf(s) + eps);
    }
}
