// cuda_fp16.h for cuda_shim.h: __half as IEEE binary16 bits; float -> half rounds to nearest even
// (cvt.rn.f16.f32), subnormals, infinities and NaN included.
#pragma once
#include <cstdint>
#include <cstring>
struct __half { uint16_t x; };
inline __half __float2half_rn(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
  __half h;
  if (a >= 0x7f800000u) { h.x = (uint16_t)(sign | (a > 0x7f800000u ? 0x7e00u : 0x7c00u)); return h; }
  if (a >= 0x477ff000u) { h.x = (uint16_t)(sign | 0x7c00u); return h; }   // rounds to infinity
  if (a <= 0x33000000u) { h.x = (uint16_t)sign; return h; }               // <= 2^-25 rounds to 0
  const uint32_t e = a >> 23;
  uint32_t mant, base;
  int shift;
  if (e < 113) { mant = (a & 0x7fffffu) | 0x800000u; shift = 126 - (int)e; base = 0; }  // subnormal half
  else { mant = a & 0x7fffffu; shift = 13; base = (e - 112) << 10; }
  const uint32_t q = mant >> shift, rem = mant & ((1u << shift) - 1), halfway = 1u << (shift - 1);
  uint32_t r = base + q;
  if (rem > halfway || (rem == halfway && (q & 1u))) r += 1;
  h.x = (uint16_t)(sign | r);
  return h;
}
inline __half __float2half(float f) { return __float2half_rn(f); }
