// cuda_shim.h: compile a CUDA .cu file as C++17 with g++ and run its kernels on the CPU.
//
// Included before the kernel source. CUDA's qualifiers are defined away; threadIdx, blockIdx, blockDim and
// gridDim are globals set by the scheduler in shim_launch.h; the intrinsics the project's kernels use get
// host versions with CUDA's semantics: integer min/max, saturating float -> int conversions, bit casts,
// atomics (exact: one thread runs at a time), warp shuffles and barriers (a yield to the scheduler, which
// resolves them only when every lane named in the mask is waiting there), and an expf that follows the
// instruction sequence NVRTC emits for CUDA 13 (exp2f standing in for ex2.approx, so lit pixels agree
// with a GPU to about 1e-4 of a grey level, not bit for bit).
#pragma once
#include <cfenv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __shared__ static_assert(false, "cuda_shim: __shared__ memory is not modelled");

struct shim_uint3 { unsigned int x, y, z; };
struct shim_dim3 { unsigned int x, y, z; };

namespace shim {
inline shim_uint3 g_threadIdx, g_blockIdx;
inline shim_dim3 g_blockDim, g_gridDim;
inline int g_expf_mode = 1;  // 0: libm expf; 1: CUDA 13 libdevice sequence (see cuda_expf)
// synchronization points, defined in shim_launch.h
void wait_shfl(unsigned mask, int kind, int param, int width, uint64_t value, uint64_t* result);
void wait_block();
void wait_warp(unsigned mask);
}  // namespace shim

#define threadIdx (::shim::g_threadIdx)
#define blockIdx (::shim::g_blockIdx)
#define blockDim (::shim::g_blockDim)
#define gridDim (::shim::g_gridDim)
#define warpSize 32

// CUDA's overloads of min and max
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }

inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
inline int __float_as_int(float f) { int i; std::memcpy(&i, &f, 4); return i; }
inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }

// float -> int saturates on the GPU (NaN -> 0); in C++ out-of-range conversion is undefined
inline int shim_f2i(float f) {
  if (std::isnan(f)) return 0;
  if (f >= 2147483648.0f) return 2147483647;
  if (f < -2147483648.0f) return -2147483647 - 1;
  return (int)f;
}
inline int __float2int_rz(float f) { return shim_f2i(f); }
inline int __float2int_rn(float f) { return shim_f2i(std::nearbyintf(f)); }
inline int __float2int_rd(float f) { return shim_f2i(std::floor(f)); }
inline int __float2int_ru(float f) { return shim_f2i(std::ceil(f)); }
inline float __int2float_rn(int i) { return (float)i; }
inline float __saturatef(float x) { return x > 1.0f ? 1.0f : (x > 0.0f ? x : 0.0f); }

namespace shim {
inline float fma_down(float a, float b, float c) {
  const int old = std::fegetround();
  std::fesetround(FE_DOWNWARD);
  volatile float r = std::fmaf(a, b, c);
  std::fesetround(old);
  return r;
}
// expf as NVRTC (CUDA 13, -ftz=true) emits it, read off the PTX:
//   t = sat(fma(x, 0x3BBB989D, 0.5)); j = fma.rm(t, 252, 0x4B400001); n = j - 0x4B40007F;
//   r = fma(x, log2e_hi, -n); r = fma(x, log2e_lo, r); result = ex2.approx.ftz(r) * bits(j << 23)
inline float cuda_expf(float x) {
  if (g_expf_mode == 0) return std::exp(x);
  float t = std::fmaf(x, __uint_as_float(0x3BBB989Du), 0.5f);
  t = std::isnan(t) ? 0.0f : (t < 0.0f ? 0.0f : (t > 1.0f ? 1.0f : t));
  const float j = fma_down(t, 252.0f, __uint_as_float(0x4B400001u));
  const float n = j - __uint_as_float(0x4B40007Fu);
  float r = std::fmaf(x, __uint_as_float(0x3FB8AA3Bu), -n);
  r = std::fmaf(x, __uint_as_float(0x32A57060u), r);
  return std::exp2f(r) * __uint_as_float(__float_as_uint(j) << 23);
}
}  // namespace shim
#define expf(x) (::shim::cuda_expf(x))
#define __expf(x) (::shim::cuda_expf(x))

// atomics: one CUDA thread runs at a time, so a plain read-modify-write is exact
template <typename T> inline T atomicAdd(T* p, T v) { T o = *p; *p = o + v; return o; }
template <typename T> inline T atomicSub(T* p, T v) { T o = *p; *p = o - v; return o; }
template <typename T> inline T atomicMax(T* p, T v) { T o = *p; *p = o > v ? o : v; return o; }
template <typename T> inline T atomicMin(T* p, T v) { T o = *p; *p = o < v ? o : v; return o; }
template <typename T> inline T atomicExch(T* p, T v) { T o = *p; *p = v; return o; }
template <typename T> inline T atomicOr(T* p, T v) { T o = *p; *p = o | v; return o; }
template <typename T> inline T atomicAnd(T* p, T v) { T o = *p; *p = o & v; return o; }
template <typename T> inline T atomicCAS(T* p, T c, T v) { T o = *p; if (o == c) *p = v; return o; }

// warp shuffles (kind 0 idx, 1 up, 2 down, 3 xor) and barriers: yield until the scheduler resolves them
template <typename T> inline T shim_shfl(unsigned mask, T var, int param, int width, int kind) {
  static_assert(sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
  uint64_t in = 0, out = 0;
  std::memcpy(&in, &var, sizeof(T));
  ::shim::wait_shfl(mask, kind, param, width, in, &out);
  T r;
  std::memcpy(&r, &out, sizeof(T));
  return r;
}
template <typename T> inline T __shfl_sync(unsigned m, T v, int src, int w = 32) { return shim_shfl(m, v, src, w, 0); }
template <typename T> inline T __shfl_up_sync(unsigned m, T v, unsigned d, int w = 32) { return shim_shfl(m, v, (int)d, w, 1); }
template <typename T> inline T __shfl_down_sync(unsigned m, T v, unsigned d, int w = 32) { return shim_shfl(m, v, (int)d, w, 2); }
template <typename T> inline T __shfl_xor_sync(unsigned m, T v, int d, int w = 32) { return shim_shfl(m, v, d, w, 3); }
inline void __syncthreads() { ::shim::wait_block(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { ::shim::wait_warp(mask); }
inline void __threadfence() {}
template <typename T> inline T __ldg(const T* p) { return *p; }
