// Indexing: index_select (embedding lookup is index_select on dim 0 of a [vocab, dim] table),
// gather, and their adjoints index_add and scatter_add, which the backward passes use.
//
// A contiguous tensor split around `dim` is [outer, size, inner]. index_select picks slices
// along `dim`; its gradient adds each picked slice's gradient back where it came from. When an
// index repeats (a token that occurs twice in a batch), two threads add into the same place at
// once: atomicAdd makes each add indivisible, so no contribution is lost (the order of the
// adds, and so the last bits of the sum, may vary between runs). The CPU reference is
// src/backend/cpu/index.rs. One thread per element moved, grid-stride; memory-bound.
//
// | kernel | what |
// |---|---|
// | index_v1_select | out[o, k, i] = x[o, idx[k], i] |
// | index_v1_add_atomic | out[o, idx[k], i] += src[o, k, i]  (embedding backward; out zeroed first) |
// | index_v1_gather | out[p] = x[p with coordinate `dim` replaced by idx[p]] |
// | index_v1_scatter_add_atomic | out[p with coordinate `dim` replaced by idx[p]] += src[p]  (out zeroed first) |

#define IX_MAX_DIMS 8

// For gather / scatter: the index tensor's shape (= the gathered output's) and the strides of
// the contiguous tensor read from (gather) or added into (scatter).
struct GatherLayout {
    int rank;
    int dim;
    int index_shape[IX_MAX_DIMS];
    int strides[IX_MAX_DIMS];
};

extern "C" __global__ void index_v1_select(const float* x, const int* idx, float* out, int outer, int n_idx, int size,
                                           int inner) {
    int n = outer * n_idx * inner;
    for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < n; e += gridDim.x * blockDim.x) {
        int i = e % inner, k = (e / inner) % n_idx, o = e / (inner * n_idx);
        out[e] = x[((size_t)o * size + idx[k]) * inner + i];
    }
}

extern "C" __global__ void index_v1_add_atomic(const float* src, const int* idx, float* out, int outer, int n_idx,
                                               int size, int inner) {
    int n = outer * n_idx * inner;
    for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < n; e += gridDim.x * blockDim.x) {
        int i = e % inner, k = (e / inner) % n_idx, o = e / (inner * n_idx);
        atomicAdd(&out[((size_t)o * size + idx[k]) * inner + i], src[e]);
    }
}

// Where element p (row-major over the index shape) of a gather reads from, given its index value.
static __device__ __forceinline__ int gather_at(const GatherLayout& l, int p, int index_value) {
    int at = 0;
#pragma unroll
    for (int d = IX_MAX_DIMS - 1; d >= 0; --d) {
        if (d < l.rank) {
            int coord = p % l.index_shape[d];
            p /= l.index_shape[d];
            at += (d == l.dim ? index_value : coord) * l.strides[d];
        }
    }
    return at;
}

extern "C" __global__ void index_v1_gather(const float* x, const int* idx, float* out, GatherLayout l, int n) {
    for (int p = blockIdx.x * blockDim.x + threadIdx.x; p < n; p += gridDim.x * blockDim.x) {
        out[p] = x[gather_at(l, p, idx[p])];
    }
}

extern "C" __global__ void index_v1_scatter_add_atomic(const float* src, const int* idx, float* out, GatherLayout l,
                                                       int n) {
    for (int p = blockIdx.x * blockDim.x + threadIdx.x; p < n; p += gridDim.x * blockDim.x) {
        atomicAdd(&out[gather_at(l, p, idx[p])], src[p]);
    }
}
