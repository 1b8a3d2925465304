// bfloat16 for the CUDA emulator (see shim.h): the storage type and the two conversions the
// kernels use. bf16 is the top 16 bits of an f32: same exponent range, 8 mantissa bits.
#pragma once

#include "shim.h"

struct __nv_bfloat16 {
    unsigned short bits;
};

/// Rounds to the nearest bf16, ties to even (as the hardware conversion does); NaN stays NaN.
inline __nv_bfloat16 __float2bfloat16(float f) {
    uint32_t u = std::bit_cast<uint32_t>(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return __nv_bfloat16{0x7fc0};
    u += 0x7fffu + ((u >> 16) & 1u);
    return __nv_bfloat16{static_cast<unsigned short>(u >> 16)};
}

inline float __bfloat162float(__nv_bfloat16 b) { return std::bit_cast<float>(static_cast<uint32_t>(b.bits) << 16); }
