// Matrix multiplication on tensor cores: matmul v6, C[M, N] = A[M, K] B[K, N] with TF32 or
// bf16 operands and f32 accumulation, batched over gridDim.z like kernels/matmul.cu (whose
// header has v1 to v5). It lives in its own file because it includes <mma.h> and
// <cuda_bf16.h>: NVRTC finds them only when given the CUDA include folder, and no other
// kernel should depend on them.
//
// A tensor core multiplies small matrix tiles in one instruction: per warp, a 16x8 tile of A
// times an 8x16 tile of B into a 16x16 accumulator (the m16n16k8 TF32 shape). TF32 keeps f32's
// 8-bit exponent but only 10 mantissa bits, so each product is accurate to about 2^-11
// relative: results differ from f32 in the fourth significant digit, which training tolerates
// (PyTorch's allow_tf32). We use the WMMA C++ API (nvcuda::wmma) rather than inline `mma.sync`
// PTX: it is readable, portable across architectures, and the test emulator can run it.
//
// | version | block | what changes | why it is faster |
// |---|---|---|---|
// | v6 tf32 wmma | 128 threads (4 warps), 64x64 tile, BK = 32 | tiles of A and B staged in shared memory as in v3; each warp owns a 32x32 quarter of the C tile as 2x2 accumulator fragments and issues 4 mma_sync per 8-deep k step | one mma_sync does 16 * 16 * 8 = 2048 multiply-adds; on an A100/H100 the TF32 tensor-core peak is 8x (A100) to 15x (H100) the f32 FMA peak |
// | v6 bf16 wmma | same tiles | operands converted to bf16 (8 mantissa bits) while staged, m16n16k16 fragments | half the shared memory per tile and twice the tensor-core rate of TF32; the inputs stay f32 in memory, so this shows the arithmetic, not the halved traffic a bf16 model would also get |
//
// The C tile goes through shared memory on its way out, so partial tiles at the matrix edge
// are written with ordinary bounds checks (a fragment can only be stored whole).

#include <cuda_bf16.h>
#include <mma.h>

using namespace nvcuda;

#define TC_BM 64
#define TC_BN 64
#define TC_BK 32
// Padding keeps rows of the shared tiles off the same banks; strides stay multiples of 4 floats
// (16 bytes) as load_matrix_sync requires, and fragment starts 32-byte aligned.
#define TC_PAD 4

extern "C" __global__ void __launch_bounds__(128) matmul_v6_tf32_wmma(const float* a, const float* b, float* c, int m, int n, int k) {
    __shared__ __align__(32) float as[TC_BM][TC_BK + TC_PAD];
    __shared__ __align__(32) float bs[TC_BK][TC_BN + TC_PAD];
    __shared__ __align__(32) float cs[TC_BM][TC_BN + TC_PAD];
    a += (size_t)blockIdx.z * m * k;
    b += (size_t)blockIdx.z * k * n;
    c += (size_t)blockIdx.z * m * n;
    int tid = threadIdx.x, warp = tid / 32;
    int row0 = blockIdx.y * TC_BM, col0 = blockIdx.x * TC_BN;
    // Warp w owns rows (w / 2) * 32.. and columns (w % 2) * 32.. of the tile.
    int wr = (warp / 2) * 32, wc = (warp % 2) * 32;

    wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[2][2];
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

    for (int k0 = 0; k0 < k; k0 += TC_BK) {
        for (int e = tid; e < TC_BM * TC_BK; e += blockDim.x) {
            int r = e / TC_BK, p = e % TC_BK;
            as[r][p] = (row0 + r < m && k0 + p < k) ? a[(size_t)(row0 + r) * k + k0 + p] : 0.0f;
        }
        for (int e = tid; e < TC_BK * TC_BN; e += blockDim.x) {
            int p = e / TC_BN, col = e % TC_BN;
            bs[p][col] = (k0 + p < k && col0 + col < n) ? b[(size_t)(k0 + p) * n + col0 + col] : 0.0f;
        }
        __syncthreads();
        for (int p = 0; p < TC_BK; p += 8) {
            wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb[2];
            for (int i = 0; i < 2; ++i) {
                wmma::load_matrix_sync(fa[i], &as[wr + i * 16][p], TC_BK + TC_PAD);
                // The documented contract: round f32 to TF32 before the multiply.
                for (int e = 0; e < fa[i].num_elements; ++e) fa[i].x[e] = wmma::__float_to_tf32(fa[i].x[e]);
            }
            for (int j = 0; j < 2; ++j) {
                wmma::load_matrix_sync(fb[j], &bs[p][wc + j * 16], TC_BN + TC_PAD);
                for (int e = 0; e < fb[j].num_elements; ++e) fb[j].x[e] = wmma::__float_to_tf32(fb[j].x[e]);
            }
            for (int i = 0; i < 2; ++i)
                for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
        }
        __syncthreads();
    }
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j)
            wmma::store_matrix_sync(&cs[wr + i * 16][wc + j * 16], acc[i][j], TC_BN + TC_PAD, wmma::mem_row_major);
    __syncthreads();
    for (int e = tid; e < TC_BM * TC_BN; e += blockDim.x) {
        int r = e / TC_BN, col = e % TC_BN;
        if (row0 + r < m && col0 + col < n) c[(size_t)(row0 + r) * n + col0 + col] = cs[r][col];
    }
}

// ----- v6 bf16 ------------------------------------------------------------------------------------
// The TF32 kernel's tiling with bf16 operands: the staging loop rounds each f32 to bf16 as it
// writes shared memory, and each k step of a fragment is 16 deep. 16-bit fragments need a
// leading dimension that is a multiple of 8 elements, hence the padding of 8.

#define TC_PAD16 8

extern "C" __global__ void __launch_bounds__(128) matmul_v6_bf16_wmma(const float* a, const float* b, float* c, int m, int n, int k) {
    __shared__ __align__(32) __nv_bfloat16 as[TC_BM][TC_BK + TC_PAD16];
    __shared__ __align__(32) __nv_bfloat16 bs[TC_BK][TC_BN + TC_PAD16];
    __shared__ __align__(32) float cs[TC_BM][TC_BN + TC_PAD];
    a += (size_t)blockIdx.z * m * k;
    b += (size_t)blockIdx.z * k * n;
    c += (size_t)blockIdx.z * m * n;
    int tid = threadIdx.x, warp = tid / 32;
    int row0 = blockIdx.y * TC_BM, col0 = blockIdx.x * TC_BN;
    int wr = (warp / 2) * 32, wc = (warp % 2) * 32;

    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

    for (int k0 = 0; k0 < k; k0 += TC_BK) {
        for (int e = tid; e < TC_BM * TC_BK; e += blockDim.x) {
            int r = e / TC_BK, p = e % TC_BK;
            as[r][p] = __float2bfloat16((row0 + r < m && k0 + p < k) ? a[(size_t)(row0 + r) * k + k0 + p] : 0.0f);
        }
        for (int e = tid; e < TC_BK * TC_BN; e += blockDim.x) {
            int p = e / TC_BN, col = e % TC_BN;
            bs[p][col] = __float2bfloat16((k0 + p < k && col0 + col < n) ? b[(size_t)(k0 + p) * n + col0 + col] : 0.0f);
        }
        __syncthreads();
        for (int p = 0; p < TC_BK; p += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> fb[2];
            for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(fa[i], &as[wr + i * 16][p], TC_BK + TC_PAD16);
            for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(fb[j], &bs[p][wc + j * 16], TC_BN + TC_PAD16);
            for (int i = 0; i < 2; ++i)
                for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
        }
        __syncthreads();
    }
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j)
            wmma::store_matrix_sync(&cs[wr + i * 16][wc + j * 16], acc[i][j], TC_BN + TC_PAD, wmma::mem_row_major);
    __syncthreads();
    for (int e = tid; e < TC_BM * TC_BN; e += blockDim.x) {
        int r = e / TC_BN, col = e % TC_BN;
        if (row0 + r < m && col0 + col < n) c[(size_t)(row0 + r) * n + col0 + col] = cs[r][col];
    }
}
