// Reductions: sum or max over any set of dims of a tensor of any layout.
//
// The host permutes the view so the kept dims come first and the reduced dims last (a new
// layout, no copy), then merges what it can. Output element `o` is the reduction of the
// `n_red` input elements whose kept coordinates spell `o`. Max propagates NaN, as the CPU
// path (src/backend/cpu/reduce.rs) does. Memory-bound: each input element is read once.
//
// | version | what changes | why it is faster |
// |---|---|---|
// | v1 naive | one thread per output element loops over its n_red inputs | (the reference; fine when there are many outputs, e.g. a bias gradient's column sums; with few outputs most of the GPU idles) |
// | v2 block | one block per output: threads stride over the inputs, then a warp-shuffle tree and one shared-memory step combine the partials | all threads work even for one output (a full sum); the tree takes log2(256) steps instead of 256 |

#define RD_MAX_DIMS 8

// The input view: `rank` dims, the first `kept` of which index the output; the rest are reduced.
struct RdLayout {
    int rank;
    int kept;
    int shape[RD_MAX_DIMS];
    int strides[RD_MAX_DIMS];
    int offset;
};

#define RD_INF __int_as_float(0x7f800000)

// Input index of reduction element `r` of output `o`: the kept coordinates come from `o`,
// the reduced ones from `r`, both row-major.
static __device__ __forceinline__ int input_index(const RdLayout& l, int o, int r) {
    int at = l.offset;
#pragma unroll
    for (int d = RD_MAX_DIMS - 1; d >= 0; --d) {
        if (d < l.rank) {
            if (d >= l.kept) {
                at += (r % l.shape[d]) * l.strides[d];
                r /= l.shape[d];
            } else {
                at += (o % l.shape[d]) * l.strides[d];
                o /= l.shape[d];
            }
        }
    }
    return at;
}

// kind 0: sum; kind 1: max (a NaN wins, as on the CPU).
static __device__ __forceinline__ float combine(int kind, float acc, float v) {
    if (kind == 0) return acc + v;
    return (v > acc || v != v) ? v : acc;
}

// ----- v1: one thread per output ------------------------------------------------------------------

extern "C" __global__ void reduce_v1_naive(int kind, RdLayout l, const float* x, float* out, int n_out, int n_red) {
    int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= n_out) return;
    float acc = kind == 0 ? 0.0f : -RD_INF;
    for (int r = 0; r < n_red; ++r) acc = combine(kind, acc, x[input_index(l, o, r)]);
    out[o] = acc;
}

// ----- v2: one block per output -------------------------------------------------------------------
// Launch with 256 threads (8 warps). Each thread folds a strided share of the inputs; each warp
// folds its 32 partials with shuffles (no shared memory, no __syncthreads); warp 0 folds the 8
// warp results that the other warps left in shared memory.

static __device__ __forceinline__ float warp_combine(int kind, float v) {
    for (int offset = 16; offset > 0; offset /= 2) v = combine(kind, v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

extern "C" __global__ void __launch_bounds__(256) reduce_v2_block(int kind, RdLayout l, const float* x, float* out, int n_out, int n_red) {
    __shared__ float partial[32];
    int o = blockIdx.x;
    float acc = kind == 0 ? 0.0f : -RD_INF;
    for (int r = threadIdx.x; r < n_red; r += blockDim.x) acc = combine(kind, acc, x[input_index(l, o, r)]);
    acc = warp_combine(kind, acc);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
    if (lane == 0) partial[warp] = acc;
    __syncthreads();
    if (warp == 0) {
        acc = lane < warps ? partial[lane] : (kind == 0 ? 0.0f : -RD_INF);
        acc = warp_combine(kind, acc);
        if (lane == 0) out[o] = acc;
    }
}
