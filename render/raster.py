"""The NumPy twin of the mask rasterizer (``raster.cu``): the specification of a render.

Per face, given the surface vertices [V, 3] and its parameter row:

1. depth pass: every triangle covers the pixel centres (x + 0.5, y + 0.5) whose three float32 edge
   functions share the sign of its area (edges included); its depth there is the barycentric mix of
   the vertex z. The z-buffer keeps, per pixel, the smallest 64-bit key ``bits(1000 - z) << 32 | t``:
   the nearest triangle, ties to the lower index.
2. shading pass: at each covered pixel the winning triangle's barycentrics give (u, v); the
   premultiplied RGBA texture is sampled bilinearly in 8-bit fixed point (exact integers); pixels
   whose alpha reaches 128 take the texture colour times the flat Lambert shade of the triangle
   (``ambient + (1 - ambient) * max(0, n . l)``, times ``gain``), rounded and clipped; all others keep
   the face. ``mask`` is 0 exactly on the pixels taken, 255 elsewhere.
"""

from __future__ import annotations

import numpy as np

FAR = np.uint64(0xFFFFFFFFFFFFFFFF)
DEPTH_BIAS = np.float32(1000.0)

RENDER_FIELDS = [
    ("texture", np.int32),
    ("top", np.float32),
    ("ambient", np.float32),
    ("gain", np.float32),
    ("light", np.float32, 3),       # unit vector towards the light
]
RENDER_DTYPE = np.dtype(RENDER_FIELDS, align=True)


def edge(ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray, px: np.ndarray,
         py: np.ndarray) -> np.ndarray:
    """float32 edge function (b - a) x (p - a), in the kernel's operation order."""
    return (bx - ax) * (py - ay) - (by - ay) * (px - ax)


def depth_pass(verts: np.ndarray, tris: np.ndarray, h: int, w: int) -> np.ndarray:
    """z-buffer keys [N, H * W] (``FAR`` where no triangle covers the pixel)."""
    n = len(verts)
    zbuf = np.full((n, h * w), FAR, np.uint64)
    rows = np.arange(n)[:, None, None]
    for t, (i0, i1, i2) in enumerate(tris):
        a, b, c = verts[:, i0], verts[:, i1], verts[:, i2]
        xs = np.stack([a[:, 0], b[:, 0], c[:, 0]], 1)
        ys = np.stack([a[:, 1], b[:, 1], c[:, 1]], 1)
        x0 = np.clip(np.floor(xs.min(1)).astype(int), 0, w)
        x1 = np.clip(np.ceil(xs.max(1)).astype(int), 0, w)
        y0 = np.clip(np.floor(ys.min(1)).astype(int), 0, h)
        y1 = np.clip(np.ceil(ys.max(1)).astype(int), 0, h)
        bw, bh = int((x1 - x0).max()), int((y1 - y0).max())
        if bw <= 0 or bh <= 0:
            continue
        px = (x0[:, None] + np.arange(bw))[:, None, :]
        py = (y0[:, None] + np.arange(bh))[:, :, None]
        valid = (px < x1[:, None, None]) & (py < y1[:, None, None])
        fx, fy = px.astype(np.float32) + np.float32(0.5), py.astype(np.float32) + np.float32(0.5)
        col = lambda v, k: v[:, k].reshape(n, 1, 1)  # noqa: E731
        area = edge(col(a, 0), col(a, 1), col(b, 0), col(b, 1), col(c, 0), col(c, 1))
        w0 = edge(col(b, 0), col(b, 1), col(c, 0), col(c, 1), fx, fy)
        w1 = edge(col(c, 0), col(c, 1), col(a, 0), col(a, 1), fx, fy)
        w2 = edge(col(a, 0), col(a, 1), col(b, 0), col(b, 1), fx, fy)
        pos = area > 0
        inside = valid & (area != 0) & np.where(pos, (w0 >= 0) & (w1 >= 0) & (w2 >= 0),
                                                (w0 <= 0) & (w1 <= 0) & (w2 <= 0))
        safe = np.where(area != 0, area, np.float32(1))
        z = (w0 * col(a, 2) + w1 * col(b, 2) + w2 * col(c, 2)) / safe
        key = ((DEPTH_BIAS - z).astype(np.float32).view(np.uint32).astype(np.uint64) << np.uint64(32)) | np.uint64(t)
        r, yy, xx = np.nonzero(inside)
        np.minimum.at(zbuf, (r, py[r, yy, 0] * w + px[r, 0, xx]), key[r, yy, xx])
    del rows
    return zbuf


def triangle_shade(verts: np.ndarray, tris: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Flat shade per triangle [N, T] float32: ambient + (1 - ambient) max(0, n . l), times gain."""
    a, b, c = (verts[:, tris[:, k]] for k in range(3))
    normal = np.cross(b - a, c - a).astype(np.float32)
    normal *= np.where(normal[..., 2:3] < 0, np.float32(-1), np.float32(1))      # face the camera
    length = np.sqrt((normal * normal).sum(-1))
    lit = (normal * params["light"][:, None, :]).sum(-1) / np.where(length > 0, length, np.float32(1))
    amb = params["ambient"][:, None]
    return ((amb + (np.float32(1) - amb) * np.maximum(lit, np.float32(0))) * params["gain"][:, None]
            ).astype(np.float32)


def sample_texture(textures: np.ndarray, index: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Premultiplied RGBA int32 [..., 4] at float (u, v) in [0, 1], 8-bit fixed-point bilinear."""
    th, tw = textures.shape[1:3]
    fu = np.clip(np.floor(u * np.float32((tw - 1) * 256)).astype(np.int32), 0, (tw - 1) * 256)
    fv = np.clip(np.floor(v * np.float32((th - 1) * 256)).astype(np.int32), 0, (th - 1) * 256)
    x0, y0 = fu >> 8, fv >> 8
    x1, y1 = np.minimum(x0 + 1, tw - 1), np.minimum(y0 + 1, th - 1)
    ax, ay = (fu & 255)[..., None], (fv & 255)[..., None]

    def tap(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        return textures[index, y, x].astype(np.int32)

    top = tap(y0, x0) * (256 - ax) + tap(y0, x1) * ax
    bottom = tap(y1, x0) * (256 - ax) + tap(y1, x1) * ax
    return (top * (256 - ay) + bottom * ay + 32768) >> 16


def render_masks(faces: np.ndarray, verts: np.ndarray, uv: np.ndarray, tris: np.ndarray,
                 textures: np.ndarray, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masked faces [N, H, W, 3] uint8 and masks [N, H, W] uint8 (0 where the mask covers)."""
    n, h, w, _ = faces.shape
    verts = verts.reshape(n, -1, 3).astype(np.float32)
    zbuf = depth_pass(verts, tris, h, w)
    covered = zbuf != FAR
    r, p = np.nonzero(covered)
    t = (zbuf[r, p] & np.uint64(0xFFFFFFFF)).astype(np.int64)
    fx = (p % w).astype(np.float32) + np.float32(0.5)
    fy = (p // w).astype(np.float32) + np.float32(0.5)
    a, b, c = (verts[r, tris[t, k]] for k in range(3))
    area = edge(a[:, 0], a[:, 1], b[:, 0], b[:, 1], c[:, 0], c[:, 1])
    b0 = edge(b[:, 0], b[:, 1], c[:, 0], c[:, 1], fx, fy) / area
    b1 = edge(c[:, 0], c[:, 1], a[:, 0], a[:, 1], fx, fy) / area
    b2 = edge(a[:, 0], a[:, 1], b[:, 0], b[:, 1], fx, fy) / area
    uva, uvb, uvc = (uv[tris[t, k]] for k in range(3))
    u = b0 * uva[:, 0] + b1 * uvb[:, 0] + b2 * uvc[:, 0]
    v = b0 * uva[:, 1] + b1 * uvb[:, 1] + b2 * uvc[:, 1]
    rgba = sample_texture(textures, params["texture"][r], u, v)
    alpha = rgba[:, 3]
    take = alpha >= 128
    shade = triangle_shade(verts, tris, params)[r, t]
    straight = (rgba[:, :3] * 255 + alpha[:, None] // 2) // np.maximum(alpha, 1)[:, None]
    colour = np.clip(np.rint(straight.astype(np.float32) * shade[:, None]), 0, 255).astype(np.uint8)
    out = faces.reshape(n, h * w, 3).copy()
    mask = np.full((n, h * w), 255, np.uint8)
    out[r[take], p[take]] = colour[take]
    mask[r[take], p[take]] = 0
    return out.reshape(n, h, w, 3), mask.reshape(n, h, w)
