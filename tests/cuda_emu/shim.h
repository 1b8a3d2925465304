// CUDA on the CPU, for tests: the unchanged kernels/*.cu files compile as host C++ with this
// header included first (build.rs, feature `cuda-emu`).
//
// How a launch runs (tests/cuda_emu/launch.cpp): one std::thread per CUDA thread of a block,
// created once per launch; the blocks of the grid run one after another, each with a fresh
// std::barrier for __syncthreads and one per warp for the shuffles. `__shared__` becomes
// `static`, so every thread of the running block sees the same array; a global mutex lets only
// one launch run at a time, which is what makes that sound.
//
// What it proves: the indexing, tiling, synchronization pattern and arithmetic of a kernel
// give the CPU path's answer on ragged shapes. What it does not: timing, occupancy, races that
// a barrier would hide, memory coalescing, or anything done in inline PTX (not emulated).
// Every intrinsic a kernel uses must be defined here; a missing one is a compile error of the
// emulator build, never a silent difference.
#pragma once

#include <algorithm>
#include <atomic>
#include <barrier>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>

// ----- qualifiers -----------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __restrict__ __restrict
// One copy per program: with one block running at a time, one copy per block.
#define __shared__ static

// ----- built-in vector types and indices ------------------------------------------------------
struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(8) float2 {
    float x, y;
};
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
inline float2 make_float2(float x, float y) { return float2{x, y}; }

namespace gb_emu {
/// One warp's meeting point: a barrier for its live lanes and a slot per lane for shuffles.
struct Warp {
    std::barrier<>* bar;
    uint64_t slot[32];
};
/// The running block's barrier (for __syncthreads), and this thread's warp and lane.
inline thread_local std::barrier<>* block_barrier = nullptr;
inline thread_local Warp* warp = nullptr;
inline thread_local unsigned lane = 0;
}  // namespace gb_emu

inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline dim3 blockDim;
inline dim3 gridDim;
constexpr int warpSize = 32;

// ----- synchronization ------------------------------------------------------------------------
inline void __syncthreads() { gb_emu::block_barrier->arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { gb_emu::warp->bar->arrive_and_wait(); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }

namespace gb_emu {
/// Every lane publishes `v`, the warp meets, each lane reads the slot of `src(lane)`, and the
/// warp meets again so no slot is overwritten before all have read.
template <class T, class Src>
inline T shuffle(T v, Src src) {
    static_assert(sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    warp->slot[lane] = bits;
    warp->bar->arrive_and_wait();
    unsigned from = src(lane);
    uint64_t got = warp->slot[from < 32 ? from : lane];
    warp->bar->arrive_and_wait();
    T out;
    std::memcpy(&out, &got, sizeof(T));
    return out;
}
}  // namespace gb_emu

template <class T>
inline T __shfl_sync(unsigned, T v, int src_lane, int width = 32) {
    return gb_emu::shuffle(v, [=](unsigned l) { return (l / width) * width + (unsigned)src_lane % width; });
}
template <class T>
inline T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
    return gb_emu::shuffle(v, [=](unsigned l) {
        unsigned to = l ^ (unsigned)mask;
        return (to / width == l / width) ? to : l;
    });
}
template <class T>
inline T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
    return gb_emu::shuffle(v, [=](unsigned l) { return (l % width) + delta < (unsigned)width ? l + delta : l; });
}
template <class T>
inline T __shfl_up_sync(unsigned, T v, unsigned delta, int width = 32) {
    return gb_emu::shuffle(v, [=](unsigned l) { return (l % width) >= delta ? l - delta : l; });
}

// ----- atomics (std::atomic_ref on the plain memory the kernel points at) ----------------------
inline float atomicAdd(float* p, float v) { return std::atomic_ref<float>(*p).fetch_add(v); }
inline int atomicAdd(int* p, int v) { return std::atomic_ref<int>(*p).fetch_add(v); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return std::atomic_ref<unsigned>(*p).fetch_add(v); }
inline int atomicMax(int* p, int v) {
    std::atomic_ref<int> a(*p);
    int old = a.load();
    while (old < v && !a.compare_exchange_weak(old, v)) {
    }
    return old;
}
inline int atomicCAS(int* p, int expected, int desired) {
    std::atomic_ref<int>(*p).compare_exchange_strong(expected, desired);
    return expected;
}

// ----- math intrinsics --------------------------------------------------------------------------
inline float __int_as_float(int i) { return std::bit_cast<float>(i); }
inline int __float_as_int(float f) { return std::bit_cast<int>(f); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __saturatef(float x) { return std::min(1.0f, std::max(0.0f, x)); }
template <class T>
inline T __ldg(const T* p) { return *p; }
using std::max;
using std::min;
