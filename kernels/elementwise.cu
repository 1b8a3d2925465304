// Elementwise kernels: y[i] = f(x[i]) and y[i] = f(a[i], b[i]) over tensors of any layout.
//
// An elementwise op reads each input element once and writes each output element once, so its
// speed is set by memory traffic alone: a good kernel moves bytes at the card's bandwidth and
// does nothing else. The CPU reference is src/backend/cpu/elementwise.rs.
//
// Layouts. A tensor view is `offset + sum_d index_d * stride_d` into its buffer (see
// src/tensor/layout.rs); broadcasting is a stride of 0, a transpose is swapped strides. The
// output is always contiguous. The host merges dims that every operand steps through as one
// (as RowPlan does on the CPU) before launching, so most views arrive with rank 1 or 2.
//
// | version | what changes | why it is faster |
// |---|---|---|
// | v1 contiguous | one element per thread, flat index, grid-stride loop | neighbouring threads touch neighbouring addresses: every warp load is one 128-byte transaction (coalesced) |
// | v2 strided | each thread turns its flat output index into coordinates and reads through the strides | (not faster: it is what makes broadcasting and transposed views work without a copy; a stride-0 operand is served from cache) |
// | v3 vec4 | contiguous, four elements per thread through one 128-bit load / store | a quarter of the load and store instructions and index arithmetic for the same bytes; needs 16-byte aligned buffers |
//
// Op codes (src/backend/cuda/ops.rs keeps the same numbers):
//   unary:  0 copy, 1 neg, 2 exp, 3 log, 4 sqrt, 5 abs, 6 relu, 7 sigmoid, 8 tanh, 9 gelu,
//           10 powf(p0), 11 affine (x * p0 + p1)
//   binary: 0 add, 1 sub, 2 mul, 3 div, 4 gt, 5 ge, 6 lt, 7 le, 8 eq (1.0 or 0.0),
//           9 gelu_backward (a = x, b = upstream gradient)

#define EW_MAX_DIMS 6

// Shape of the output and, per operand (up to three), its strides and offset in elements.
struct EwLayout {
    int rank;
    int numel;
    int shape[EW_MAX_DIMS];
    int strides[3][EW_MAX_DIMS];
    int offsets[3];
};

// GELU (tanh form) constants, as in src/autograd/backward.rs.
#define GELU_K 0.7978845608028654f
#define GELU_C 0.044715f

static __device__ __forceinline__ float unary_op(int op, float x, float p0, float p1) {
    switch (op) {
        case 0: return x;
        case 1: return -x;
        case 2: return expf(x);
        case 3: return logf(x);
        case 4: return sqrtf(x);
        case 5: return fabsf(x);
        case 6: return x > 0.0f ? x : 0.0f;
        case 7: return 1.0f / (1.0f + expf(-x));
        case 8: return tanhf(x);
        case 9: return 0.5f * x * (1.0f + tanhf(GELU_K * (x + GELU_C * x * x * x)));
        case 10: return powf(x, p0);
        default: return x * p0 + p1;
    }
}

static __device__ __forceinline__ float binary_op(int op, float a, float b) {
    switch (op) {
        case 0: return a + b;
        case 1: return a - b;
        case 2: return a * b;
        case 3: return a / b;
        case 4: return a > b ? 1.0f : 0.0f;
        case 5: return a >= b ? 1.0f : 0.0f;
        case 6: return a < b ? 1.0f : 0.0f;
        case 7: return a <= b ? 1.0f : 0.0f;
        case 8: return a == b ? 1.0f : 0.0f;
        default: {
            // g * gelu'(x): with t = tanh(K (x + C x^3)),
            // gelu' = 0.5 (1 + t) + 0.5 x (1 - t^2) K (1 + 3 C x^2).
            float x2 = a * a;
            float t = tanhf(GELU_K * (a + GELU_C * x2 * a));
            return b * (0.5f * (1.0f + t) + 0.5f * a * (1.0f - t * t) * GELU_K * (1.0f + 3.0f * GELU_C * x2));
        }
    }
}

// Where output element `i` (row-major over l.shape) lives in operand `k`. The loop runs over
// all EW_MAX_DIMS dims, unrolled, so every array index is a constant: the layout stays in the
// kernel's parameter space instead of being copied to a stack frame (which a loop bounded by
// `l.rank` causes; ptxas reports it as "stack frame").
static __device__ __forceinline__ int operand_index(const EwLayout& l, int k, int i) {
    int at = l.offsets[k];
#pragma unroll
    for (int d = EW_MAX_DIMS - 1; d >= 0; --d) {
        if (d < l.rank) {
            int coord = i % l.shape[d];
            i /= l.shape[d];
            at += coord * l.strides[k][d];
        }
    }
    return at;
}

// ----- v1: contiguous, one element per thread -------------------------------------------------
// The grid-stride loop lets any grid size cover any n: thread t handles t, t + T, t + 2T, ...
// where T is the number of threads in the grid. Consecutive threads read consecutive floats.

extern "C" __global__ void elementwise_v1_unary_contiguous(int op, float p0, float p1, const float* x, float* y, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        y[i] = unary_op(op, x[i], p0, p1);
    }
}

extern "C" __global__ void elementwise_v1_binary_contiguous(int op, const float* a, const float* b, float* y, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        y[i] = binary_op(op, a[i], b[i]);
    }
}

// ----- v2: any layout through strides -----------------------------------------------------------
// The output is still written contiguously (coalesced); inputs are read where their strides
// say. A broadcast operand (stride 0) is read by many threads at one address: one transaction.

extern "C" __global__ void elementwise_v2_unary_strided(int op, float p0, float p1, EwLayout l, const float* x, float* y) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < l.numel; i += gridDim.x * blockDim.x) {
        y[i] = unary_op(op, x[operand_index(l, 0, i)], p0, p1);
    }
}

extern "C" __global__ void elementwise_v2_binary_strided(int op, EwLayout l, const float* a, const float* b, float* y) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < l.numel; i += gridDim.x * blockDim.x) {
        y[i] = binary_op(op, a[operand_index(l, 0, i)], b[operand_index(l, 1, i)]);
    }
}

// y = cond != 0 ? on_true : on_false, three strided operands.
extern "C" __global__ void elementwise_v2_where_strided(EwLayout l, const float* cond, const float* on_true,
                                                        const float* on_false, float* y) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < l.numel; i += gridDim.x * blockDim.x) {
        float c = cond[operand_index(l, 0, i)];
        y[i] = c != 0.0f ? on_true[operand_index(l, 1, i)] : on_false[operand_index(l, 2, i)];
    }
}

// Copies the strided view of operand 1 (`src`) into the strided view of operand 0 (`dst`), which
// must not overlap itself: the in-place write behind concat and copy_from_.
extern "C" __global__ void elementwise_v2_assign_strided(EwLayout l, float* dst, const float* src) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < l.numel; i += gridDim.x * blockDim.x) {
        dst[operand_index(l, 0, i)] = src[operand_index(l, 1, i)];
    }
}

// Fills n contiguous floats with `value`.
extern "C" __global__ void elementwise_v1_fill(float* y, float value, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        y[i] = value;
    }
}

// ----- v3: contiguous, four elements per thread --------------------------------------------------
// One float4 load moves 16 bytes: the same bandwidth with a quarter of the instructions. The
// host launches this only when every pointer is 16-byte aligned; the last n % 4 elements are
// done one at a time by the first threads.

extern "C" __global__ void elementwise_v3_binary_vec4(int op, const float* a, const float* b, float* y, int n) {
    int quads = n / 4;
    const float4* a4 = reinterpret_cast<const float4*>(a);
    const float4* b4 = reinterpret_cast<const float4*>(b);
    float4* y4 = reinterpret_cast<float4*>(y);
    int stride = gridDim.x * blockDim.x;
    int first = blockIdx.x * blockDim.x + threadIdx.x;
    for (int i = first; i < quads; i += stride) {
        float4 u = a4[i], v = b4[i];
        y4[i] = make_float4(binary_op(op, u.x, v.x), binary_op(op, u.y, v.y), binary_op(op, u.z, v.z),
                            binary_op(op, u.w, v.w));
    }
    for (int i = 4 * quads + first; i < n; i += stride) {
        y[i] = binary_op(op, a[i], b[i]);
    }
}

extern "C" __global__ void elementwise_v3_unary_vec4(int op, float p0, float p1, const float* x, float* y, int n) {
    int quads = n / 4;
    const float4* x4 = reinterpret_cast<const float4*>(x);
    float4* y4 = reinterpret_cast<float4*>(y);
    int stride = gridDim.x * blockDim.x;
    int first = blockIdx.x * blockDim.x + threadIdx.x;
    for (int i = first; i < quads; i += stride) {
        float4 u = x4[i];
        y4[i] = make_float4(unary_op(op, u.x, p0, p1), unary_op(op, u.y, p0, p1), unary_op(op, u.z, p0, p1),
                            unary_op(op, u.w, p0, p1));
    }
    for (int i = 4 * quads + first; i < n; i += stride) {
        y[i] = unary_op(op, x[i], p0, p1);
    }
}
