// MSML's online occlusion, one batch per launch pair. Semantics: ops/reference.py (the NumPy twin),
// step for step and in the same floating-point operation order; compile with --fmad=false for parity.
//
// pass 1: one thread per output pixel (b, y, x): canvas (face or masked face), shape or web occluder
//         in the unflipped frame, grayscale, face lighting in the output frame before the division by
//         the sample's peak; writes ori, msk and the lit values, and reduces the per-sample peak.
// pass 2: divides by the peak, subtracts the mask3d pixel offset on mask pixels, normalizes, writes
//         img in its final dtype and layout.
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
#define FIX_ONE 65536LL       // OpenCV's XY_ONE: polygon crossings in 16.16 fixed point
#define RESAMPLE_BITS 22      // Pillow's PRECISION_BITS

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

// C's integer division of OpenCV: truncated toward zero
__device__ __forceinline__ long long moved(long long a, long long p, long long dq, long long dp) {
  return (long long)((double)(a - p) * (double)dq / (double)(dp != 0 ? dp : 1));
}

__device__ __forceinline__ int outcode(long long x, long long y, int right, int bottom, bool with_y) {
  int c = (x < 0) * 1 + (x > right) * 2;
  return with_y ? c + (y < 0) * 4 + (y > bottom) * 8 : c;
}

// OpenCV's clipLine, step for step; the points move even when the segment stays invisible
__device__ bool clip_line(long long& x1, long long& y1, long long& x2, long long& y2, int w, int h) {
  const int right = w - 1, bottom = h - 1;
  int c1 = outcode(x1, y1, right, bottom, true), c2 = outcode(x2, y2, right, bottom, true);
  if ((c1 & c2) == 0 && (c1 | c2) != 0) {
    if (c1 & 12) {
      const long long a = c1 < 8 ? 0 : bottom;
      x1 += moved(a, y1, x2 - x1, y2 - y1);
      y1 = a;
      c1 = outcode(x1, y1, right, bottom, false);
    }
    if (c2 & 12) {
      const long long a = c2 < 8 ? 0 : bottom;
      x2 += moved(a, y2, x2 - x1, y2 - y1);
      y2 = a;
      c2 = outcode(x2, y2, right, bottom, false);
    }
    if ((c1 & c2) == 0 && (c1 | c2) != 0) {
      if (c1) {
        const long long a = c1 == 1 ? 0 : right;
        y1 += moved(a, x1, y2 - y1, x2 - x1);
        x1 = a;
        c1 = 0;
      }
      if (c2) {
        const long long a = c2 == 1 ? 0 : right;
        y2 += moved(a, x2, y2 - y1, x2 - x1);
        x2 = a;
        c2 = 0;
      }
    }
  }
  return (c1 | c2) == 0;
}

// OpenCV's 8-connected line from (x1, y1) to (x2, y2), drawn left to right: is (X, Y) on it?
__device__ bool on_line(long long x1, long long y1, long long x2, long long y2, long long X, long long Y) {
  if (x2 < x1) {
    long long tx = x1, ty = y1;
    x1 = x2; y1 = y2; x2 = tx; y2 = ty;
  }
  const long long dx = x2 - x1, dy = y2 - y1;
  const long long sy = dy < 0 ? -1 : 1, ady = dy < 0 ? -dy : dy;
  if (dx >= ady) {
    const long long k = X - x1;
    if (k < 0 || k > dx) return false;
    const long long minor = dx > 0 ? (2 * ady * k + dx - 1) / (2 * dx) : 0;
    return Y == y1 + sy * minor;
  }
  const long long k = (Y - y1) * sy;
  if (k < 0 || k > ady) return false;
  return X == x1 + (2 * dx * k + ady - 1) / (2 * ady);
}

// cv2.fillPoly (LINE_8, shift 0), OpenCV's algorithm: edges clipped (clipLine) and drawn as 8-connected lines,
// plus the even-odd spans between the edges' 16.16 fixed-point crossings (tested against cv2 via the twin)
__device__ bool polygon_covers(const Params& p, int X, int Y, int w, int h) {
  bool odd = false, covered = false;
  const int n = p.n_vertices;
  const long long P = (long long)X * FIX_ONE;
  for (int i = 0; i < n; ++i) {
    const int j = (i + 1 < n) ? i + 1 : 0;
    const long long x0 = p.vx[i], y0 = p.vy[i], x1 = p.vx[j], y1 = p.vy[j];
    long long cx0 = x0, cy0 = y0, cx1 = x1, cy1 = y1;
    const bool visible = clip_line(cx0, cy0, cx1, cy1, w, h);
    covered = covered || (visible && on_line(cx0, cy0, cx1, cy1, X, Y));
    if (y0 == y1) continue;
    const bool outside = x0 < 0 || x0 >= w || x1 < 0 || x1 >= w || y0 < 0 || y0 >= h || y1 < 0 || y1 >= h;
    const bool clip_y = outside && cy0 != cy1;
    const long long py0 = clip_y ? cy0 : y0, py1 = clip_y ? cy1 : y1;
    const long long px0 = (outside ? cx0 : x0) * FIX_ONE, px1 = (outside ? cx1 : x1) * FIX_ONE;
    const long long step = (px1 - px0) / (py1 != py0 ? py1 - py0 : 1);
    const bool down = y0 < y1;
    const long long yt = down ? y0 : y1, yb = down ? y1 : y0;
    const long long xt = down ? px0 + (y0 - py0) * step : px1 + (y1 - py1) * step;
    if (yt <= Y && Y < yb) {
      const long long crossing = xt + ((long long)Y - yt) * step;
      if (crossing <= P) odd = !odd;
      if (crossing == P) covered = true;
    }
  }
  return covered || odd;
}

__device__ bool shape_covers(const Params& p, int x, int y, int w, int h) {
  if (p.kind == KIND_RECTANGLE)
    return x >= p.box[0] && x < p.box[2] && y >= p.box[1] && y < p.box[3];
  if (p.kind == KIND_ELLIPSE) {
    const long long A = 2LL * p.ellipse[2] + 1, B = 2LL * p.ellipse[3] + 1;
    const long long dx = 2LL * (x - p.ellipse[0]), dy = 2LL * (y - p.ellipse[1]);
    return dx * dx * B * B + dy * dy * A * A <= A * A * B * B;
  }
  if (p.kind == KIND_POLYGON) return polygon_covers(p, x, y, w, h);
  return false;
}

// Pillow's bicubic filter (a = -0.5), in its operation order
__device__ __forceinline__ double bicubic(double x) {
  if (x < 0.0) x = -x;
  if (x < 1.0) return (1.5 * x - 2.5) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * -0.5;
  return 0.0;
}

// Pillow's taps for output position pos of an axis resized from in_size to out_size
struct Taps {
  int first, count;
  double center, ss, total;
};

__device__ Taps taps(int in_size, int out_size, int pos) {
  Taps t;
  const double scale = (double)in_size / (double)out_size;
  const double fscale = scale > 1.0 ? scale : 1.0;
  const double support = 2.0 * fscale;
  t.ss = 1.0 / fscale;
  t.center = (pos + 0.5) * scale;
  double lo = trunc(t.center - support + 0.5);
  if (lo < 0) lo = 0;
  double hi = trunc(t.center + support + 0.5);
  if (hi > in_size) hi = in_size;
  t.first = (int)lo;
  t.count = (int)(hi - lo);
  t.total = 0.0;
  for (int i = 0; i < t.count; ++i) t.total = t.total + bicubic((i + lo - t.center + 0.5) * t.ss);
  if (t.total == 0.0) t.total = 1.0;
  return t;
}

__device__ __forceinline__ int tap_weight(const Taps& t, int i) {
  const double w = bicubic((i + (double)t.first - t.center + 0.5) * t.ss) / t.total * (double)(1 << RESAMPLE_BITS);
  return (int)(w < 0 ? w - 0.5 : w + 0.5);
}

__device__ __forceinline__ int clip8(int acc) {
  const int v = acc >> RESAMPLE_BITS;
  return v < 0 ? 0 : (v > 255 ? 255 : v);
}

// premultiplied RGBa of the web occluder at (x, y): its atlas rectangle resized to its box as Pillow's
// bicubic resize (horizontal pass, then vertical, each clipped to 8 bits); 0 outside the box
__device__ void sample_atlas(const Params& p, const unsigned char* atlas, int cell, int x, int y, int rgba[4]) {
  for (int c = 0; c < 4; ++c) rgba[c] = 0;
  if (x < p.box[0] || x >= p.box[2] || y < p.box[1] || y >= p.box[3]) return;
  const int bw = p.box[2] - p.box[0] > 1 ? p.box[2] - p.box[0] : 1;
  const int bh = p.box[3] - p.box[1] > 1 ? p.box[3] - p.box[1] : 1;
  const Taps tx = taps(p.src[2], bw, x - p.box[0]);
  const Taps ty = taps(p.src[3], bh, y - p.box[1]);
  const unsigned char* e = atlas + (size_t)p.atlas * cell * cell * 4;
  int acc[4];
  for (int c = 0; c < 4; ++c) acc[c] = 1 << (RESAMPLE_BITS - 1);
  for (int j = 0; j < ty.count; ++j) {
    const unsigned char* row = e + (size_t)(p.src[1] + ty.first + j) * cell * 4;
    int h[4];
    for (int c = 0; c < 4; ++c) h[c] = 1 << (RESAMPLE_BITS - 1);
    for (int i = 0; i < tx.count; ++i) {
      const int k = tap_weight(tx, i);
      const unsigned char* px = row + (size_t)(p.src[0] + tx.first + i) * 4;
      for (int c = 0; c < 4; ++c) h[c] += px[c] * k;
    }
    const int k = tap_weight(ty, j);
    for (int c = 0; c < 4; ++c) acc[c] += clip8(h[c]) * k;
  }
  for (int c = 0; c < 4; ++c) rgba[c] = clip8(acc[c]);
}

__device__ __forceinline__ int luma(const int c[3]) {
  return (c[0] * 19595 + c[1] * 38470 + c[2] * 7471 + 32768) >> 16;
}

__device__ __forceinline__ float gauss(float dx, float dy, float sigma) {
  float two_s2 = 2.0f * sigma * sigma;
  if (!(two_s2 > 0.0f)) two_s2 = 1.0f;  // sigma 0: as the spec guards it
  return expf(-(dy * dy) / two_s2) * expf(-(dx * dx) / two_s2);
}

extern "C" __global__ void occlude_pass1(const unsigned char* __restrict__ faces,
                                         const unsigned char* __restrict__ masked,
                                         const unsigned char* __restrict__ masks,
                                         const Params* __restrict__ params,
                                         const unsigned char* __restrict__ atlas, int cell, int h, int w,
                                         int grayscale, int normalize, int channels, int threshold,
                                         float* __restrict__ lit, out_t* __restrict__ ori, int* __restrict__ msk,
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
    const int cin = grayscale ? 1 : 3;
    const size_t out = (size_t)b * channels * plane + (size_t)y * w + xo;
    const size_t lit_at = (size_t)b * cin * plane + (size_t)y * w + xo;

    int face[3];
    for (int c = 0; c < 3; ++c) face[c] = faces[src * 3 + c];
    if (grayscale) face[0] = luma(face);
    for (int c = 0; c < channels; ++c) {
      const float v = (float)face[grayscale ? 0 : c] * (1.0f / 255.0f);
      ori[out + c * plane] = to_out(normalize ? (v - 0.5f) / 0.5f : v);
    }

    int canvas[3];
    bool occluded = false;
    if (p.m3d_slot >= 0) {
      const size_t m = ((size_t)p.m3d_slot * h + y) * w + x;
      for (int c = 0; c < 3; ++c) canvas[c] = masked[m * 3 + c];
      occluded = masks[m] <= threshold;
    } else {
      for (int c = 0; c < 3; ++c) canvas[c] = faces[src * 3 + c];
    }
    if (shape_covers(p, x, y, w, h)) {
      for (int c = 0; c < 3; ++c) canvas[c] = p.colour[c];
      occluded = true;
    } else if (p.kind == KIND_GLASSES || p.kind == KIND_SCARF || p.kind == KIND_OBJECT) {
      int rgba[4];
      sample_atlas(p, atlas, cell, x, y, rgba);
      const int a = rgba[3];
      if (a > p.replace_alpha)
        for (int c = 0; c < 3; ++c) {
          const int straight = rgba[c] * 255 / (a > 1 ? a : 1);
          canvas[c] = (a == 0 || a == 255) ? rgba[c] : (straight < 255 ? straight : 255);
        }
      occluded = occluded || a > p.mask_alpha;
    }
    msk[(size_t)b * plane + (size_t)y * w + xo] = occluded ? 0 : 1;
    if (grayscale) canvas[0] = luma(canvas);

    float v[3];
    for (int c = 0; c < cin; ++c) v[c] = (float)canvas[c] * (1.0f / 255.0f);
    if (p.light) {
      const float dx = truncf((float)xo - p.light_params[0]);
      const float dy = truncf((float)y - p.light_params[1]);
      const float L = gauss(dx, dy, p.light_params[3]);
      for (int c = 0; c < cin; ++c) {
        v[c] = v[c] * L;
        v[c] = v[c] * p.light_params[2];
        local_peak = fmaxf(local_peak, v[c]);
      }
    }
    for (int c = 0; c < cin; ++c) lit[lit_at + c * plane] = v[c];
  }
  // per-sample peak: warp reduction, then one atomic per warp (non-negative floats order as uints)
  for (int off = 16; off > 0; off >>= 1)
    local_peak = fmaxf(local_peak, __shfl_down_sync(0xffffffffu, local_peak, off));
  if ((threadIdx.x & 31) == 0 && local_peak > 0.0f) atomicMax(peak + b, __float_as_uint(local_peak));
}

// the mask3d offset of channel c at output pixel (x, y), 0 outside the row's region
__device__ float mask_offset(const Params& p, int x, int y, int w) {
  const bool block = p.m3d_mode == M3D_BLOCK;
  const int top = block ? p.m3d_rows[0] : p.box[1], bottom = block ? p.m3d_rows[1] : p.box[3];
  if (x < p.box[0] || x >= p.box[2] || y < top || y >= bottom) return 0.0f;
  if (p.m3d_mode == M3D_LIGHT) {
    const float dx = truncf((float)(x - p.box[0]) - p.m3d[0]);
    const float dy = truncf((float)(y - p.box[1]) - p.m3d[1]);
    return (gauss(dx, dy, p.m3d[2]) - 0.5f) * 2.0f * p.m3d[3];
  }
  if (p.m3d_mode == M3D_NOISE) return p.m3d[0] * hashed_normal(p.noise_seed, (unsigned int)(y * w + x), 0);
  return p.m3d[0];
}

extern "C" __global__ void occlude_pass2(const float* __restrict__ lit, const Params* __restrict__ params,
                                         const unsigned int* __restrict__ peak, const int* __restrict__ msk,
                                         int h, int w, int grayscale, int normalize, int channels,
                                         float gray_divisor, out_t* __restrict__ img) {
  const int b = blockIdx.y;
  const int pix = blockIdx.x * blockDim.x + threadIdx.x;
  if (pix >= h * w) return;
  const Params& p = params[b];
  const size_t plane = (size_t)h * w;
  const int cin = grayscale ? 1 : 3;
  float v[3];
  for (int c = 0; c < cin; ++c) v[c] = lit[(size_t)b * cin * plane + c * plane + pix];
  if (p.light) {
    float top = __uint_as_float(peak[b]);
    if (!(top > 0.0f)) top = 1.0f;
    for (int c = 0; c < cin; ++c) v[c] = v[c] / top;
  }
  if (p.m3d_mode != 0 && msk[(size_t)b * plane + pix] == 0) {
    const float offset = mask_offset(p, pix % w, pix / w, w);
    float off[3];
    for (int c = 0; c < 3; ++c) off[c] = p.m3d_channels[c] ? offset : 0.0f;
    if (grayscale) {
      v[0] = v[0] - (off[0] * 0.2989f + off[1] * 0.5870f + off[2] * 0.1140f) / gray_divisor;
    } else {
      for (int c = 0; c < 3; ++c) v[c] = v[c] - off[c];
    }
  }
  for (int c = 0; c < channels; ++c) {
    const float u = v[grayscale ? 0 : c];
    img[(size_t)b * channels * plane + c * plane + pix] = to_out(normalize ? (u - 0.5f) / 0.5f : u);
  }
}
