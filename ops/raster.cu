// z-buffered 3D-mask rasterizer; semantics: ops/surface.py and ops/raster.py (the NumPy twins), same
// float32 operation order; compile with --fmad=false so that surface, coverage and depth are bit-identical
// to the twins. A row whose texture is -1 is not drawn (its face is copied, its mask is 255).
// pass 0 (surface): one thread per (face, grid vertex): the mask surface draped on the face's landmarks.
// pass 1 (depth): one thread per (face, triangle), atomicMin of (depth bits << 32 | triangle) per pixel.
// pass 2 (shade): one thread per (face, pixel): texture, shade, tint, composite, mask.

// the render fields of a parameter row (ops/params.py RENDER_DTYPE; the render_* fields of Params)
struct RenderParams {
  int texture;
  float top;
  float ambient;
  float gain;
  float light[3];
  float tint[3];
};

#ifdef FO_RENDER_PARAM_SIZE
static_assert(sizeof(RenderParams) == FO_RENDER_PARAM_SIZE, "RenderParams differs from RENDER_DTYPE");
#endif

#define FO_LANDMARKS 68
#define FO_JAW_FIRST 2
#define FO_JAW_POINTS 13

// the (jv, iu) vertex of the surface grid (nu + 1 columns, nv + 1 rows) of one face's landmarks [68, 3]
extern "C" __global__ void mask_surface(const float* __restrict__ landmarks, const RenderParams* __restrict__ params,
                                        int nu, int nv, float scale, float* __restrict__ verts) {
  const int n = blockIdx.y;
  const int k = blockIdx.x * blockDim.x + threadIdx.x;
  const int n_verts = (nu + 1) * (nv + 1);
  if (k >= n_verts) return;
  float* out = verts + ((size_t)n * n_verts + k) * 3;
  if (params[n].texture < 0) {
    out[0] = 0.0f; out[1] = 0.0f; out[2] = 0.0f;
    return;
  }
  const float* lm = landmarks + (size_t)n * FO_LANDMARKS * 3;
  const float* left = lm + 1 * 3;
  const float* right = lm + 15 * 3;
  const float* bridge = lm + 27 * 3;
  const float* tip = lm + 30 * 3;
  const float u = (float)(k % (nu + 1)) / (float)nu;
  const float v = (float)(k / (nu + 1)) / (float)nv;
  // the jaw line, pushed out from the nose tip, and its normalized 2D arc length
  float jx[FO_JAW_POINTS], jy[FO_JAW_POINTS], t[FO_JAW_POINTS];
  for (int i = 0; i < FO_JAW_POINTS; ++i) {
    const float* p = lm + (FO_JAW_FIRST + i) * 3;
    jx[i] = tip[0] + (p[0] - tip[0]) * scale;
    jy[i] = tip[1] + (p[1] - tip[1]) * scale;
  }
  t[0] = 0.0f;
  for (int i = 1; i < FO_JAW_POINTS; ++i) {
    const float dx = jx[i] - jx[i - 1], dy = jy[i] - jy[i - 1];
    t[i] = t[i - 1] + sqrtf(dx * dx + dy * dy);
  }
  const float total = t[FO_JAW_POINTS - 1] > 0.0f ? t[FO_JAW_POINTS - 1] : 1.0f;
  for (int i = 0; i < FO_JAW_POINTS; ++i) t[i] = t[i] / total;
  int j = 0;
  for (int i = 1; i < FO_JAW_POINTS - 1; ++i) j += t[i] <= u ? 1 : 0;
  const float span = t[j + 1] - t[j];
  const float frac = span > 0.0f ? (u - t[j]) / span : 0.0f;
  const float z0 = lm[(FO_JAW_FIRST + j) * 3 + 2], z1 = lm[(FO_JAW_FIRST + j + 1) * 3 + 2];
  const float bottom[3] = {jx[j] + frac * (jx[j + 1] - jx[j]), jy[j] + frac * (jy[j + 1] - jy[j]),
                           z0 + frac * (z1 - z0)};
  const float top = params[n].top, w = 1.0f - u;
  for (int c = 0; c < 3; ++c) {
    const float middle = tip[c] + top * (bridge[c] - tip[c]);
    const float control = 2.0f * middle - (left[c] + right[c]) * 0.5f;
    const float edge = (w * w) * left[c] + ((2.0f * u) * w) * control + (u * u) * right[c];
    out[c] = (1.0f - v) * edge + v * bottom[c];
  }
}

__device__ __forceinline__ float edge_fn(float ax, float ay, float bx, float by, float px, float py) {
  return (bx - ax) * (py - ay) - (by - ay) * (px - ax);
}

extern "C" __global__ void raster_depth(const float* __restrict__ verts, const int* __restrict__ tris,
                                        const RenderParams* __restrict__ params, int n_verts, int n_tris, int h,
                                        int w, unsigned long long* __restrict__ zbuf) {
  const int n = blockIdx.y;
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= n_tris || params[n].texture < 0) return;
  const float* v = verts + (size_t)n * n_verts * 3;
  const float* a = v + tris[t * 3 + 0] * 3;
  const float* b = v + tris[t * 3 + 1] * 3;
  const float* c = v + tris[t * 3 + 2] * 3;
  const int x0 = min(max((int)floorf(fminf(fminf(a[0], b[0]), c[0])), 0), w);
  const int x1 = min(max((int)ceilf(fmaxf(fmaxf(a[0], b[0]), c[0])), 0), w);
  const int y0 = min(max((int)floorf(fminf(fminf(a[1], b[1]), c[1])), 0), h);
  const int y1 = min(max((int)ceilf(fmaxf(fmaxf(a[1], b[1]), c[1])), 0), h);
  const float area = edge_fn(a[0], a[1], b[0], b[1], c[0], c[1]);
  if (area == 0.0f) return;
  unsigned long long* z = zbuf + (size_t)n * h * w;
  for (int py = y0; py < y1; ++py) {
    const float fy = (float)py + 0.5f;
    for (int px = x0; px < x1; ++px) {
      const float fx = (float)px + 0.5f;
      const float w0 = edge_fn(b[0], b[1], c[0], c[1], fx, fy);
      const float w1 = edge_fn(c[0], c[1], a[0], a[1], fx, fy);
      const float w2 = edge_fn(a[0], a[1], b[0], b[1], fx, fy);
      const bool inside = area > 0.0f ? (w0 >= 0.0f && w1 >= 0.0f && w2 >= 0.0f)
                                      : (w0 <= 0.0f && w1 <= 0.0f && w2 <= 0.0f);
      if (!inside) continue;
      const float depth = (w0 * a[2] + w1 * b[2] + w2 * c[2]) / area;
      const float biased = 1000.0f - depth;
      const unsigned long long key = ((unsigned long long)__float_as_uint(biased) << 32) | (unsigned int)t;
      atomicMin(z + py * w + px, key);
    }
  }
}

__device__ __forceinline__ int clampi(int v, int lo, int hi) { return min(max(v, lo), hi); }

extern "C" __global__ void raster_shade(const unsigned char* __restrict__ faces,
                                        const float* __restrict__ verts, const int* __restrict__ tris,
                                        const float* __restrict__ uv, const unsigned char* __restrict__ textures,
                                        const RenderParams* __restrict__ params,
                                        const unsigned long long* __restrict__ zbuf, int n_verts, int h,
                                        int w, int th, int tw, unsigned char* __restrict__ out,
                                        unsigned char* __restrict__ mask) {
  const int n = blockIdx.y;
  const int p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= h * w) return;
  const size_t pix = (size_t)n * h * w + p;
  const unsigned long long key = zbuf[pix];
  for (int c = 0; c < 3; ++c) out[pix * 3 + c] = faces[pix * 3 + c];
  mask[pix] = 255;
  if (key == 0xffffffffffffffffull) return;
  const int t = (int)(key & 0xffffffffull);
  const RenderParams& rp = params[n];
  const float* v = verts + (size_t)n * n_verts * 3;
  const int i0 = tris[t * 3 + 0], i1 = tris[t * 3 + 1], i2 = tris[t * 3 + 2];
  const float* a = v + i0 * 3;
  const float* b = v + i1 * 3;
  const float* c = v + i2 * 3;
  const float fx = (float)(p % w) + 0.5f, fy = (float)(p / w) + 0.5f;
  const float area = edge_fn(a[0], a[1], b[0], b[1], c[0], c[1]);
  const float b0 = edge_fn(b[0], b[1], c[0], c[1], fx, fy) / area;
  const float b1 = edge_fn(c[0], c[1], a[0], a[1], fx, fy) / area;
  const float b2 = edge_fn(a[0], a[1], b[0], b[1], fx, fy) / area;
  const float u = b0 * uv[i0 * 2] + b1 * uv[i1 * 2] + b2 * uv[i2 * 2];
  const float vv = b0 * uv[i0 * 2 + 1] + b1 * uv[i1 * 2 + 1] + b2 * uv[i2 * 2 + 1];
  const int fu = clampi((int)floorf(u * (float)((tw - 1) * 256)), 0, (tw - 1) * 256);
  const int fv = clampi((int)floorf(vv * (float)((th - 1) * 256)), 0, (th - 1) * 256);
  const int x0 = fu >> 8, y0 = fv >> 8, x1 = min(x0 + 1, tw - 1), y1 = min(y0 + 1, th - 1);
  const int ax = fu & 255, ay = fv & 255;
  const unsigned char* tex = textures + (size_t)rp.texture * th * tw * 4;
  int rgba[4];
  for (int k = 0; k < 4; ++k) {
    int top = tex[(y0 * tw + x0) * 4 + k] * (256 - ax) + tex[(y0 * tw + x1) * 4 + k] * ax;
    int bottom = tex[(y1 * tw + x0) * 4 + k] * (256 - ax) + tex[(y1 * tw + x1) * 4 + k] * ax;
    rgba[k] = (top * (256 - ay) + bottom * ay + 32768) >> 16;
  }
  if (rgba[3] < 128) return;
  // flat Lambert shade of the triangle, its normal turned towards the camera
  const float e1x = b[0] - a[0], e1y = b[1] - a[1], e1z = b[2] - a[2];
  const float e2x = c[0] - a[0], e2y = c[1] - a[1], e2z = c[2] - a[2];
  float nx = e1y * e2z - e1z * e2y, ny = e1z * e2x - e1x * e2z, nz = e1x * e2y - e1y * e2x;
  if (nz < 0.0f) { nx = -nx; ny = -ny; nz = -nz; }
  float len = sqrtf(nx * nx + ny * ny + nz * nz);
  if (!(len > 0.0f)) len = 1.0f;
  const float lit = (nx * rp.light[0] + ny * rp.light[1] + nz * rp.light[2]) / len;
  const float shade = (rp.ambient + (1.0f - rp.ambient) * fmaxf(lit, 0.0f)) * rp.gain;
  for (int k = 0; k < 3; ++k) {
    const int straight = (rgba[k] * 255 + rgba[3] / 2) / max(rgba[3], 1);
    const float value = rintf(((float)straight * shade) * rp.tint[k]);
    out[pix * 3 + k] = (unsigned char)fminf(fmaxf(value, 0.0f), 255.0f);
  }
  mask[pix] = 0;
}
