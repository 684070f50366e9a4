// MSML's online occlusion, one batch per launch pair. Semantics: ops/reference.py (the NumPy twin),
// step for step and in the same float32 operation order; compile with --fmad=false for parity.
//
// pass 1: one thread per output pixel (b, y, x): canvas (face or masked face), shape or web occluder,
//         mask3d pixel augmentation, face lighting before the division by the sample's peak; writes
//         ori, msk and the lit values, and reduces the per-sample peak.
// pass 2: divides by the peak, grayscale, normalization, writes img in its final dtype and layout.
#include "params.cuh"

#ifdef FO_HALF
#include <cuda_fp16.h>
typedef __half out_t;
__device__ __forceinline__ out_t to_out(float v) { return __float2half_rn(v); }
#else
typedef float out_t;
__device__ __forceinline__ out_t to_out(float v) { return v; }
#endif

#define KIND_RECTANGLE 1
#define KIND_ELLIPSE 2
#define KIND_POLYGON 3
#define KIND_GLASSES 4
#define KIND_SCARF 5
#define KIND_OBJECT 6
#define KIND_MASK3D 7
#define M3D_LIGHT 1
#define M3D_NOISE 2
#define M3D_BLOCK 3

__device__ __forceinline__ unsigned int mix32(unsigned int x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

__device__ __forceinline__ float hashed_uniform(unsigned int seed, unsigned int counter) {
  return (float)(mix32(mix32(counter) ^ seed) >> 8) * (1.0f / 16777216.0f);
}

__device__ float hashed_normal(unsigned int seed, unsigned int pixel, int channel) {
  unsigned int base = (pixel * 3u + (unsigned int)channel) * 4u;
  float total = hashed_uniform(seed, base);
  for (unsigned int k = 1; k < 4; ++k) total = total + hashed_uniform(seed, base + k);
  return (total - 2.0f) * 1.7320508075688772f;
}

__device__ bool polygon_covers(const Params& p, long long X, long long Y) {
  bool inside = false;
  int n = p.n_vertices;
  for (int i = 0; i < n; ++i) {
    int j = (i + 1 < n) ? i + 1 : 0;
    long long x1 = p.vx[i], y1 = p.vy[i], x2 = p.vx[j], y2 = p.vy[j];
    bool straddles = (y1 > Y) != (y2 > Y);
    long long lhs = (X - x1) * (y2 - y1);
    long long rhs = (Y - y1) * (x2 - x1);
    bool left = (y2 > y1) ? (lhs < rhs) : (lhs > rhs);
    if (straddles && left) inside = !inside;
  }
  return inside;
}

__device__ bool shape_covers(const Params& p, int x, int y) {
  if (p.kind == KIND_RECTANGLE)
    return x >= p.box[0] && x < p.box[2] && y >= p.box[1] && y < p.box[3];
  long long X = (long long)x * FO_SUB + FO_SUB / 2, Y = (long long)y * FO_SUB + FO_SUB / 2;
  if (p.kind == KIND_ELLIPSE) {
    long long ax2 = (long long)p.ellipse[2] * p.ellipse[2], ay2 = (long long)p.ellipse[3] * p.ellipse[3];
    long long dx = X - p.ellipse[0], dy = Y - p.ellipse[1];
    return dx * dx * ay2 + dy * dy * ax2 <= ax2 * ay2;
  }
  if (p.kind == KIND_POLYGON) return polygon_covers(p, X, Y);
  return false;
}

// source index pair and 8-bit weight along one axis, as _fixed_point_axis in the twin
__device__ __forceinline__ void axis_taps(int pos, int start, int length, int src0, int src_len,
                                          int* i0, int* i1, int* f) {
  int u = ((2 * (pos - start) + 1) * src_len * 256) / (2 * length) - 128;
  u = min(max(u, 0), (src_len - 1) * 256);
  int i = u >> 8;
  *i0 = src0 + i;
  *i1 = src0 + min(i + 1, src_len - 1);
  *f = u & 255;
}

// premultiplied RGB and alpha of the web occluder at (x, y); alpha 0 outside its box
__device__ void sample_atlas(const Params& p, const unsigned char* atlas, int cell, int x, int y,
                             int rgba[4]) {
  for (int c = 0; c < 4; ++c) rgba[c] = 0;
  if (x < p.box[0] || x >= p.box[2] || y < p.box[1] || y >= p.box[3]) return;
  int x0, x1, fx, y0, y1, fy;
  axis_taps(x, p.box[0], p.box[2] - p.box[0], p.src[0], p.src[2], &x0, &x1, &fx);
  axis_taps(y, p.box[1], p.box[3] - p.box[1], p.src[1], p.src[3], &y0, &y1, &fy);
  const unsigned char* e = atlas + (size_t)p.atlas * cell * cell * 4;
  for (int c = 0; c < 4; ++c) {
    int top = e[(y0 * cell + x0) * 4 + c] * (256 - fx) + e[(y0 * cell + x1) * 4 + c] * fx;
    int bottom = e[(y1 * cell + x0) * 4 + c] * (256 - fx) + e[(y1 * cell + x1) * 4 + c] * fx;
    rgba[c] = (top * (256 - fy) + bottom * fy + 32768) >> 16;
  }
}

extern "C" __global__ void occlude_pass1(const unsigned char* __restrict__ faces,
                                         const unsigned char* __restrict__ masked,
                                         const unsigned char* __restrict__ masks,
                                         const Params* __restrict__ params,
                                         const unsigned char* __restrict__ atlas, int cell, int h, int w,
                                         int grayscale, int normalize, float* __restrict__ lit,
                                         out_t* __restrict__ ori, int* __restrict__ msk,
                                         unsigned int* __restrict__ peak) {
  const int b = blockIdx.y;
  const int pix = blockIdx.x * blockDim.x + threadIdx.x;
  const Params& p = params[b];
  float local_peak = 0.0f;
  if (pix < h * w) {
    const int y = pix / w, xo = pix % w;
    const int x = p.flip ? w - 1 - xo : xo;
    const size_t src = ((size_t)b * h + y) * w + x;
    const size_t plane = (size_t)h * w;
    const size_t out = (size_t)b * 3 * plane + (size_t)y * w + xo;

    float face[3];
    for (int c = 0; c < 3; ++c) face[c] = (float)faces[src * 3 + c] * (1.0f / 255.0f);
    if (grayscale) {
      float g = face[0] * 0.299f + face[1] * 0.587f + face[2] * 0.114f;
      face[0] = face[1] = face[2] = g;
    }
    for (int c = 0; c < 3; ++c) ori[out + c * plane] = to_out(normalize ? (face[c] - 0.5f) / 0.5f : face[c]);

    int canvas[3];
    bool occluded = false;
    if (p.m3d_slot >= 0) {
      const size_t m = ((size_t)p.m3d_slot * h + y) * w + x;
      for (int c = 0; c < 3; ++c) canvas[c] = masked[m * 3 + c];
      occluded = masks[m] < 128;
    } else {
      for (int c = 0; c < 3; ++c) canvas[c] = faces[src * 3 + c];
    }
    if (shape_covers(p, x, y)) {
      for (int c = 0; c < 3; ++c) canvas[c] = p.colour[c];
      occluded = true;
    } else if (p.kind == KIND_GLASSES || p.kind == KIND_SCARF || p.kind == KIND_OBJECT) {
      int rgba[4];
      sample_atlas(p, atlas, cell, x, y, rgba);
      const int a = rgba[3];
      for (int c = 0; c < 3; ++c) {
        if (p.blend == 1)
          canvas[c] = (canvas[c] * (255 - a) + rgba[c] * 255 + 127) / 255;
        else if (a > p.replace_alpha)
          canvas[c] = min((rgba[c] * 255 + a / 2) / max(a, 1), 255);
      }
      occluded = occluded || a > p.mask_alpha;
    }
    msk[(size_t)b * plane + (size_t)y * w + xo] = occluded ? 0 : 1;

    float v[3];
    for (int c = 0; c < 3; ++c) v[c] = (float)canvas[c];
    if (p.kind == KIND_MASK3D && occluded && x >= p.box[0] && x < p.box[2] && y >= p.box[1] &&
        y < p.box[3]) {
      float light = 0.0f;
      if (p.m3d_mode == M3D_LIGHT) {
        float dx = ((float)x + 0.5f) - p.m3d[0], dy = ((float)y + 0.5f) - p.m3d[1];
        float two_s2 = 2.0f * p.m3d[2] * p.m3d[2];
        if (!(two_s2 > 0.0f)) two_s2 = 1.0f;
        light = p.m3d[3] * 255.0f * expf(-(dx * dx + dy * dy) / two_s2);
      }
      for (int c = 0; c < 3; ++c) {
        float value;
        if (p.m3d_mode == M3D_BLOCK) {
          value = (float)p.colour[c];
        } else {
          float add = 0.0f;
          if (p.m3d_mode == M3D_LIGHT) add = light;
          if (p.m3d_mode == M3D_NOISE) add = p.m3d[0] * hashed_normal(p.noise_seed, (unsigned int)(y * w + x), c);
          value = v[c] + add * p.jitter[c];
        }
        v[c] = fminf(fmaxf(value, 0.0f), 255.0f);
      }
    }

    for (int c = 0; c < 3; ++c) v[c] = v[c] * (1.0f / 255.0f);
    if (p.light) {
      const float two_s2 = 2.0f * p.light_params[3] * p.light_params[3];
      const float dx = ((float)x + 0.5f) - p.light_params[0];
      const float dy = ((float)y + 0.5f) - p.light_params[1];
      const float L = expf(-(dy * dy) / two_s2) * expf(-(dx * dx) / two_s2);
      for (int c = 0; c < 3; ++c) {
        v[c] = fminf(v[c] * L * p.light_params[2], 1.0f);
        local_peak = fmaxf(local_peak, v[c]);
      }
    }
    for (int c = 0; c < 3; ++c) lit[out + c * plane] = v[c];
  }
  // per-sample peak: warp reduction, then one atomic per warp (non-negative floats order as uints)
  for (int off = 16; off > 0; off >>= 1)
    local_peak = fmaxf(local_peak, __shfl_down_sync(0xffffffffu, local_peak, off));
  if ((threadIdx.x & 31) == 0 && local_peak > 0.0f) atomicMax(peak + b, __float_as_uint(local_peak));
}

extern "C" __global__ void occlude_pass2(const float* __restrict__ lit, const Params* __restrict__ params,
                                         const unsigned int* __restrict__ peak, int h, int w,
                                         int grayscale, int normalize, out_t* __restrict__ img) {
  const int b = blockIdx.y;
  const int pix = blockIdx.x * blockDim.x + threadIdx.x;
  if (pix >= h * w) return;
  const size_t plane = (size_t)h * w;
  const size_t out = (size_t)b * 3 * plane + pix;
  float v[3];
  for (int c = 0; c < 3; ++c) v[c] = lit[out + c * plane];
  if (params[b].light) {
    float top = __uint_as_float(peak[b]);
    if (!(top > 0.0f)) top = 1.0f;
    for (int c = 0; c < 3; ++c) v[c] = v[c] / top;
  }
  if (grayscale) {
    float g = v[0] * 0.299f + v[1] * 0.587f + v[2] * 0.114f;
    v[0] = v[1] = v[2] = g;
  }
  for (int c = 0; c < 3; ++c) img[out + c * plane] = to_out(normalize ? (v[c] - 0.5f) / 0.5f : v[c]);
}
