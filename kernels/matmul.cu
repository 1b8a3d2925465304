// Matrix multiplication C[M, N] = A[M, K] B[K, N], row-major f32, batched over gridDim.z (batch
// z reads A + z M K, B + z K N and writes C + z M N).
//
// Each output is a length-K dot product: 2 M N K flops over M K + K N + M N numbers, so a GEMM
// can be compute-bound, but only if every number loaded from global memory is reused many
// times from faster memory (shared memory, then registers). Each version below changes one
// thing. The CPU ladder with the same idea one level down (caches instead of shared memory) is
// src/backend/cpu/matmul.rs. The tensor-core version (v6) is in matmul_tc.cu: it needs
// <mma.h>, which NVRTC finds only with the CUDA headers, so the versions here never do.
//
// | version | block | what changes | why it is faster |
// |---|---|---|---|
// | v1 naive | 16x16 | one thread per C element; threadIdx.x walks rows | (the reference: the 16 threads of a half-warp read 16 different rows of A, K floats apart, so every load is a separate transaction, and C is written with stride N) |
// | v2 coalesced | 32x8 | threadIdx.x walks columns instead | a warp reads 32 consecutive floats of a row of B and writes 32 consecutive floats of C: one transaction each; A[row][k] is one address for the whole warp (a broadcast) |
// | v3 shared tiles | 32x32 | the block stages a 32x32 tile of A and of B in shared memory, then each thread does 32 multiply-adds from there | each global float is loaded once per tile instead of 32 times; shared memory serves the reuse at about 10x the bandwidth |
// | v4 register blocking | 256 threads, 128x128 tile | each thread computes an 8x8 block of C, keeping 8 values of A and 8 of B in registers per k step | 16 shared-memory loads feed 64 FMAs (v3: 2 loads per FMA); the tile's arithmetic intensity is 4x v3's |
// | v5 vectorized, double-buffered | 256 threads, 128x128 tile | global loads as float4, shared reads as float4, and two shared buffers: the next tile is loaded into registers while the current one is used | a quarter of the load instructions; the memory latency of the next tile hides behind the current tile's FMAs; one __syncthreads per tile instead of two |
//
// Measured figures belong next to each version once a GPU has run benches/cuda.rs; none has yet.

// ----- v1: naive -------------------------------------------------------------------------------------

extern "C" __global__ void matmul_v1_naive(const float* a, const float* b, float* c, int m, int n, int k) {
    a += (size_t)blockIdx.z * m * k;
    b += (size_t)blockIdx.z * k * n;
    c += (size_t)blockIdx.z * m * n;
    int row = blockIdx.x * blockDim.x + threadIdx.x;
    int col = blockIdx.y * blockDim.y + threadIdx.y;
    if (row >= m || col >= n) return;
    float sum = 0.0f;
    for (int p = 0; p < k; ++p) sum += a[(size_t)row * k + p] * b[(size_t)p * n + col];
    c[(size_t)row * n + col] = sum;
}

// ----- v2: coalesced ---------------------------------------------------------------------------------

extern "C" __global__ void matmul_v2_coalesced(const float* a, const float* b, float* c, int m, int n, int k) {
    a += (size_t)blockIdx.z * m * k;
    b += (size_t)blockIdx.z * k * n;
    c += (size_t)blockIdx.z * m * n;
    int col = blockIdx.x * blockDim.x + threadIdx.x;
    int row = blockIdx.y * blockDim.y + threadIdx.y;
    if (row >= m || col >= n) return;
    float sum = 0.0f;
    for (int p = 0; p < k; ++p) sum += a[(size_t)row * k + p] * b[(size_t)p * n + col];
    c[(size_t)row * n + col] = sum;
}

// ----- v3: shared-memory tiles -------------------------------------------------------------------------
// Launch with a 32x32 block over a grid of ceil(N/32) x ceil(M/32) tiles. Out-of-range tile
// elements are loaded as 0 so the inner loop needs no bounds checks.

#define V3_TILE 32

extern "C" __global__ void __launch_bounds__(1024) matmul_v3_shared(const float* a, const float* b, float* c, int m, int n, int k) {
    __shared__ float as[V3_TILE][V3_TILE];
    __shared__ float bs[V3_TILE][V3_TILE];
    a += (size_t)blockIdx.z * m * k;
    b += (size_t)blockIdx.z * k * n;
    c += (size_t)blockIdx.z * m * n;
    int tx = threadIdx.x, ty = threadIdx.y;
    int row = blockIdx.y * V3_TILE + ty;
    int col = blockIdx.x * V3_TILE + tx;
    float sum = 0.0f;
    for (int k0 = 0; k0 < k; k0 += V3_TILE) {
        // Each thread loads one element of each tile; a warp (fixed ty) reads 32 consecutive floats.
        as[ty][tx] = (row < m && k0 + tx < k) ? a[(size_t)row * k + k0 + tx] : 0.0f;
        bs[ty][tx] = (k0 + ty < k && col < n) ? b[(size_t)(k0 + ty) * n + col] : 0.0f;
        __syncthreads();
        // as[ty][p] is one address per warp (broadcast); bs[p][tx] is 32 consecutive banks.
        for (int p = 0; p < V3_TILE; ++p) sum += as[ty][p] * bs[p][tx];
        // Nobody may overwrite the tiles while another thread still reads them.
        __syncthreads();
    }
    if (row < m && col < n) c[(size_t)row * n + col] = sum;
}

// ----- v4: 2-D register blocking -------------------------------------------------------------------------
// 256 threads compute a 128x128 tile of C; thread (tr, tc) = (tid / 16, tid % 16) owns the 8x8
// block at rows tr * 8.., columns tc * 8... Per k step of a BK = 8 deep slice, it reads 8 values
// of A (a column of its rows) and 8 of B (a row of its columns) into registers and does their
// 64-term outer product. A's tile is stored transposed (as[k][row]) so those 8 values are
// consecutive.

#define BM 128
#define BN 128
#define BK 8
#define TM 8
#define TN 8

extern "C" __global__ void __launch_bounds__(256) matmul_v4_register_blocked(const float* a, const float* b, float* c, int m, int n, int k) {
    __shared__ float as[BK][BM];
    __shared__ float bs[BK][BN];
    a += (size_t)blockIdx.z * m * k;
    b += (size_t)blockIdx.z * k * n;
    c += (size_t)blockIdx.z * m * n;
    int tid = threadIdx.x;
    int row0 = blockIdx.y * BM, col0 = blockIdx.x * BN;
    int tr = tid / (BN / TN), tc = tid % (BN / TN);
    float acc[TM][TN] = {};
    float reg_a[TM], reg_b[TN];
    for (int k0 = 0; k0 < k; k0 += BK) {
        // 1024 elements per tile, 4 per thread. A: consecutive threads take consecutive k of a
        // row (8 threads span BK... then the next row); B: consecutive threads, consecutive columns.
        for (int e = tid; e < BM * BK; e += 256) {
            int r = e / BK, p = e % BK;
            as[p][r] = (row0 + r < m && k0 + p < k) ? a[(size_t)(row0 + r) * k + k0 + p] : 0.0f;
        }
        for (int e = tid; e < BK * BN; e += 256) {
            int p = e / BN, col = e % BN;
            bs[p][col] = (k0 + p < k && col0 + col < n) ? b[(size_t)(k0 + p) * n + col0 + col] : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int p = 0; p < BK; ++p) {
#pragma unroll
            for (int i = 0; i < TM; ++i) reg_a[i] = as[p][tr * TM + i];
#pragma unroll
            for (int j = 0; j < TN; ++j) reg_b[j] = bs[p][tc * TN + j];
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] += reg_a[i] * reg_b[j];
        }
        __syncthreads();
    }
    for (int i = 0; i < TM; ++i) {
        int row = row0 + tr * TM + i;
        if (row >= m) break;
        for (int j = 0; j < TN; ++j) {
            int col = col0 + tc * TN + j;
            if (col < n) c[(size_t)row * n + col] = acc[i][j];
        }
    }
}

// ----- v5: vectorized loads and double buffering ------------------------------------------------------------
// v4's tiles and thread blocks, with three changes:
// 1. Each thread loads its share of a tile as ONE float4 (A: row tid / 2, k (tid % 2) * 4;
//    B: row tid / 32, column (tid % 32) * 4). That needs k and n to be multiples of 4 so a
//    float4 never straddles a row end or the matrix edge; otherwise (`vec4` = 0) the same
//    four elements are loaded one by one.
// 2. Two shared buffers: while the block multiplies tile t from buffer t % 2, each thread's
//    loads of tile t + 1 are already in flight into registers; they are stored into the other
//    buffer after the arithmetic. One __syncthreads per tile: the buffer being written was last
//    read before the previous barrier.
// 3. Shared reads of the 8 A and 8 B values as two float4 each.

static __device__ __forceinline__ float4 load4(const float* p, size_t at, bool in_row, int left, bool vec4) {
    // `left` elements remain in the row from `at`; out-of-range elements are 0.
    if (!in_row || left <= 0) return make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (vec4) return *reinterpret_cast<const float4*>(p + at);
    return make_float4(p[at], left > 1 ? p[at + 1] : 0.0f, left > 2 ? p[at + 2] : 0.0f, left > 3 ? p[at + 3] : 0.0f);
}

extern "C" __global__ void __launch_bounds__(256) matmul_v5_vectorized(const float* a, const float* b, float* c, int m, int n, int k) {
    __shared__ __align__(16) float as[2][BK][BM];
    __shared__ __align__(16) float bs[2][BK][BN];
    a += (size_t)blockIdx.z * m * k;
    b += (size_t)blockIdx.z * k * n;
    c += (size_t)blockIdx.z * m * n;
    // float4 loads need every row start 16-byte aligned: k and n multiples of 4, and aligned bases.
    bool vec4 = k % 4 == 0 && n % 4 == 0 && (reinterpret_cast<size_t>(a) % 16 == 0) && (reinterpret_cast<size_t>(b) % 16 == 0);
    int tid = threadIdx.x;
    int row0 = blockIdx.y * BM, col0 = blockIdx.x * BN;
    int tr = tid / (BN / TN), tc = tid % (BN / TN);
    int a_row = tid / 2, a_k = (tid % 2) * 4;
    int b_row = tid / 32, b_col = (tid % 32) * 4;
    float acc[TM][TN] = {};

    float4 next_a = load4(a, (size_t)(row0 + a_row) * k + a_k, row0 + a_row < m, k - a_k, vec4);
    float4 next_b = load4(b, (size_t)b_row * n + col0 + b_col, b_row < k, n - col0 - b_col, vec4);
    int tiles = (k + BK - 1) / BK;
    for (int t = 0; t < tiles; ++t) {
        int cur = t % 2;
        if (t == 0) {
            as[0][a_k + 0][a_row] = next_a.x;
            as[0][a_k + 1][a_row] = next_a.y;
            as[0][a_k + 2][a_row] = next_a.z;
            as[0][a_k + 3][a_row] = next_a.w;
            *reinterpret_cast<float4*>(&bs[0][b_row][b_col]) = next_b;
            __syncthreads();
        }
        if (t + 1 < tiles) {
            int k0 = (t + 1) * BK;
            next_a = load4(a, (size_t)(row0 + a_row) * k + k0 + a_k, row0 + a_row < m, k - k0 - a_k, vec4);
            next_b = load4(b, (size_t)(k0 + b_row) * n + col0 + b_col, k0 + b_row < k, n - col0 - b_col, vec4);
        }
#pragma unroll
        for (int p = 0; p < BK; ++p) {
            float4 a0 = *reinterpret_cast<const float4*>(&as[cur][p][tr * TM]);
            float4 a1 = *reinterpret_cast<const float4*>(&as[cur][p][tr * TM + 4]);
            float4 b0 = *reinterpret_cast<const float4*>(&bs[cur][p][tc * TN]);
            float4 b1 = *reinterpret_cast<const float4*>(&bs[cur][p][tc * TN + 4]);
            float ra[TM] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
            float rb[TN] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] += ra[i] * rb[j];
        }
        if (t + 1 < tiles) {
            int nxt = cur ^ 1;
            as[nxt][a_k + 0][a_row] = next_a.x;
            as[nxt][a_k + 1][a_row] = next_a.y;
            as[nxt][a_k + 2][a_row] = next_a.z;
            as[nxt][a_k + 3][a_row] = next_a.w;
            *reinterpret_cast<float4*>(&bs[nxt][b_row][b_col]) = next_b;
        }
        __syncthreads();
    }
    for (int i = 0; i < TM; ++i) {
        int row = row0 + tr * TM + i;
        if (row >= m) break;
        for (int j = 0; j < TN; ++j) {
            int col = col0 + tc * TN + j;
            if (col < n) c[(size_t)row * n + col] = acc[i][j];
        }
    }
}
