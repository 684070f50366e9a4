"""The NumPy twin of the 3D-mask rasterizer (``raster.cu``): the specification of a mask render.

Per face, given its 68 landmarks [68, 3] and its render row (``ops.params.RENDER_DTYPE``; a row whose
texture is -1 is left alone: the face unchanged, no mask):

0. surface: the (u, v) grid of :func:`ops.surface.mask_surface` at the row's ``top``, as two triangles
   per quad (:func:`ops.surface.grid_triangles`).
1. depth pass: every triangle covers the pixel centres (x + 0.5, y + 0.5) of its clipped bounding box
   whose three float32 edge functions share the sign of its area (edges included); its depth there is
   the barycentric mix of the vertex z. The z-buffer keeps, per pixel, the smallest 64-bit key
   ``bits(1000 - z) << 32 | t``: the nearest triangle, ties to the lower index.
2. shading pass: at each covered pixel the winning triangle's barycentrics give (u, v); the
   premultiplied RGBA texture is sampled bilinearly in 8-bit fixed point (exact integers); pixels
   whose alpha reaches 128 take the texture colour times the flat Lambert shade of the triangle
   (``ambient + (1 - ambient) * max(0, n . l)``, times ``gain``), times the row's ``tint`` per channel,
   rounded and clipped; all others keep the face. ``mask`` is 0 exactly on the pixels taken, 255
   elsewhere.

The depth pass runs over every (face, triangle) pair at once: pairs are grouped by the size of their
bounding box (powers of two), so one group's pixels are one array.
"""

from __future__ import annotations

import numpy as np

from .params import RENDER_DTYPE
from .surface import MARGIN, NU, NV, grid_triangles, grid_uv, mask_surface

FAR = np.uint64(0xFFFFFFFFFFFFFFFF)
DEPTH_BIAS = np.float32(1000.0)
CHUNK = 16          # faces per pass: the temporaries of a pass stay in the CPU's caches
F32 = np.float32


def edge(ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray, px: np.ndarray,
         py: np.ndarray) -> np.ndarray:
    """float32 edge function (b - a) x (p - a), in the kernel's operation order."""
    return (bx - ax) * (py - ay) - (by - ay) * (px - ax)


DRAW_BUDGET = 1 << 20   # elements of one [sh, sw, P] array of _draw: bounds its memory whatever the geometry


def _bucket(extent: np.ndarray) -> np.ndarray:
    """The power of two at or above each extent (0 stays 0)."""
    return np.where(extent > 0, 1 << np.ceil(np.log2(np.maximum(extent, 1))).astype(np.int64), 0)


def depth_pass(verts: np.ndarray, tris: np.ndarray, h: int, w: int, rows: np.ndarray | None = None) -> np.ndarray:
    """z-buffer keys [N, H * W] (``FAR`` where no triangle covers the pixel) of float32 vertices
    [N, V, 3]; only the faces in ``rows`` (default: all) are drawn."""
    n = len(verts)
    zbuf = np.full(n * h * w, FAR, np.uint64)
    faces = np.arange(n) if rows is None else np.asarray(rows, np.int64)
    if faces.size == 0 or len(tris) == 0:
        return zbuf.reshape(n, h * w)
    v = verts[faces]
    a, b, c = v[:, tris[:, 0]], v[:, tris[:, 1]], v[:, tris[:, 2]]                # [F, T, 3]
    xs = np.stack([a[..., 0], b[..., 0], c[..., 0]])
    ys = np.stack([a[..., 1], b[..., 1], c[..., 1]])
    x0 = np.clip(np.floor(xs.min(0)), -1, w + 1).astype(np.int64).clip(0, w)    # clip first: no int overflow
    x1 = np.clip(np.ceil(xs.max(0)), -1, w + 1).astype(np.int64).clip(0, w)
    y0 = np.clip(np.floor(ys.min(0)), -1, h + 1).astype(np.int64).clip(0, h)
    y1 = np.clip(np.ceil(ys.max(0)), -1, h + 1).astype(np.int64).clip(0, h)
    area = edge(a[..., 0], a[..., 1], b[..., 0], b[..., 1], c[..., 0], c[..., 1])
    bw, bh = _bucket(x1 - x0), _bucket(y1 - y0)
    live = (bw > 0) & (bh > 0) & (area != 0)
    tri_index = np.broadcast_to(np.arange(len(tris), dtype=np.uint64), area.shape)
    for sw, sh in set(zip(bw[live].tolist(), bh[live].tolist())):
        f_all, t_all = np.nonzero(live & (bw == sw) & (bh == sh))
        step = max(1, DRAW_BUDGET // (sw * sh))      # a minimum per pixel: any split gives the same z-buffer
        for i in range(0, len(f_all), step):
            f, t = f_all[i:i + step], t_all[i:i + step]
            _draw(zbuf, faces[f] * (h * w), a[f, t], b[f, t], c[f, t], area[f, t], tri_index[f, t],
                  x0[f, t], x1[f, t], y0[f, t], y1[f, t], sw, sh, w)
    return zbuf.reshape(n, h * w)


def _draw(zbuf: np.ndarray, base: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray, area: np.ndarray,
          t: np.ndarray, x0: np.ndarray, x1: np.ndarray, y0: np.ndarray, y1: np.ndarray, sw: int, sh: int,
          w: int) -> None:
    """The depth pass of P triangles whose boxes fit ``sh`` x ``sw`` pixels (arrays [sh, sw, P]: the long
    axis last, so that NumPy's inner loops are long).

    Two exact shortcuts: columns and rows beyond a box are NaN (every comparison with them fails), and
    a triangle of negative area has its edge coefficients negated, which negates its edge functions
    exactly, so that 'inside' is always ``min(w0, w1, w2) >= 0`` and the depth is unchanged."""
    xs, ys = np.arange(sw)[:, None], np.arange(sh)[:, None]
    fx = np.where(xs < x1 - x0, (x0 + xs).astype(F32) + F32(0.5), F32(np.nan))[None]     # [1, sw, P]
    fy = np.where(ys < y1 - y0, (y0 + ys).astype(F32) + F32(0.5), F32(np.nan))[:, None]  # [sh, 1, P]
    s = np.where(area > 0, F32(1), F32(-1))
    ax, ay, bx, by, cx, cy = a[:, 0], a[:, 1], b[:, 0], b[:, 1], c[:, 0], c[:, 1]
    with np.errstate(invalid="ignore"):
        w0 = (s * (cx - bx)) * (fy - by) - (s * (cy - by)) * (fx - bx)
        w1 = (s * (ax - cx)) * (fy - cy) - (s * (ay - cy)) * (fx - cx)
        w2 = (s * (bx - ax)) * (fy - ay) - (s * (by - ay)) * (fx - ax)
        inside = np.minimum(np.minimum(w0, w1), w2) >= 0
    idx = np.flatnonzero(inside)
    n = len(area)
    yx, p = np.divmod(idx, n)
    yy, xx = np.divmod(yx, sw)
    z = (w0.ravel()[idx] * a[p, 2] + w1.ravel()[idx] * b[p, 2] + w2.ravel()[idx] * c[p, 2]) / (s[p] * area[p])
    key = ((DEPTH_BIAS - z).astype(F32).view(np.uint32).astype(np.uint64) << np.uint64(32)) | t[p]
    np.minimum.at(zbuf, base[p] + (y0[p] + yy) * w + x0[p] + xx, key)


def triangle_shade(verts: np.ndarray, tris: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Flat shade per triangle [N, T] float32: ambient + (1 - ambient) max(0, n . l), times gain."""
    a, b, c = (verts[:, tris[:, k]] for k in range(3))
    normal = np.cross(b - a, c - a).astype(F32)
    normal *= np.where(normal[..., 2:3] < 0, F32(-1), F32(1))      # face the camera
    length = np.sqrt((normal * normal).sum(-1))
    lit = (normal * params["light"][:, None, :]).sum(-1) / np.where(length > 0, length, F32(1))
    amb = params["ambient"][:, None]
    return ((amb + (F32(1) - amb) * np.maximum(lit, F32(0))) * params["gain"][:, None]).astype(F32)


def _unpremultiply_table() -> np.ndarray:
    """int32 [256, 256]: ``(c * 255 + a // 2) // max(a, 1)`` at ``[a, c]``, the straight colour of a
    premultiplied channel ``c`` of alpha ``a`` (a lookup instead of an integer division per pixel)."""
    a, c = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    return ((c * 255 + a // 2) // np.maximum(a, 1)).astype(np.int32)


UNPREMULTIPLY = _unpremultiply_table().ravel()


def sample_texture(textures: np.ndarray, index: np.ndarray, u: np.ndarray, v: np.ndarray,
                   channels: slice = slice(0, 4)) -> np.ndarray:
    """Premultiplied RGBA int32 [C, P] (channels first; C = 4, or those of ``channels``) at float (u, v)
    [P] in [0, 1] of the textures ``index`` [P]: 8-bit fixed-point bilinear, exact integers."""
    th, tw = textures.shape[1:3]
    fu = np.clip(np.floor(u * F32((tw - 1) * 256)).astype(np.int32), 0, (tw - 1) * 256)
    fv = np.clip(np.floor(v * F32((th - 1) * 256)).astype(np.int32), 0, (th - 1) * 256)
    x0, y0 = fu >> 8, fv >> 8
    x1, y1 = np.minimum(x0 + 1, tw - 1), np.minimum(y0 + 1, th - 1)
    ax, ay = fu & 255, fv & 255
    texels = np.ascontiguousarray(textures).view(np.uint32).reshape(-1)     # one RGBA texel per element
    plane = np.asarray(index, np.int64) * th

    def tap(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        got = texels.take((plane + y) * tw + x).view(np.uint8).reshape(-1, 4)
        return got.T[channels].astype(np.int32)

    top = tap(y0, x0) * (256 - ax) + tap(y0, x1) * ax
    bottom = tap(y1, x0) * (256 - ax) + tap(y1, x1) * ax
    return (top * (256 - ay) + bottom * ay + 32768) >> 16


def render_masks(faces: np.ndarray, verts: np.ndarray, uv: np.ndarray, tris: np.ndarray,
                 textures: np.ndarray, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masked faces [N, H, W, 3] uint8 and masks [N, H, W] uint8 (0 where the mask covers) of surface
    vertices [N, V, 3] and render rows [N] (``RENDER_DTYPE``; rows with texture -1 are not drawn)."""
    n = len(faces)
    verts = verts.reshape(n, -1, 3).astype(F32)
    params = np.asarray(params, RENDER_DTYPE)
    if n <= CHUNK:
        return _render_chunk(faces, verts, uv, tris, textures, params)
    parts = [_render_chunk(faces[i:i + CHUNK], verts[i:i + CHUNK], uv, tris, textures, params[i:i + CHUNK])
             for i in range(0, n, CHUNK)]
    return np.concatenate([a for a, _ in parts]), np.concatenate([b for _, b in parts])


def _render_chunk(faces: np.ndarray, verts: np.ndarray, uv: np.ndarray, tris: np.ndarray,
                  textures: np.ndarray, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n, h, w, _ = faces.shape
    zbuf = depth_pass(verts, tris, h, w, np.flatnonzero(params["texture"] >= 0))
    where = np.flatnonzero(zbuf != FAR)
    r, p = np.divmod(where, h * w)
    q = r * len(tris) + (zbuf.ravel()[where] & np.uint64(0xFFFFFFFF)).astype(np.int64)   # (face, triangle)
    corner = [verts[:, tris[:, k]].reshape(-1, 3) for k in range(3)]                    # [N * T, 3] each
    (ax, ay), (bx, by), (cx, cy) = ((v[:, 0].take(q), v[:, 1].take(q)) for v in corner)
    fx = (p % w).astype(F32) + F32(0.5)
    fy = (p // w).astype(F32) + F32(0.5)
    area = edge(ax, ay, bx, by, cx, cy)
    b0 = edge(bx, by, cx, cy, fx, fy) / area
    b1 = edge(cx, cy, ax, ay, fx, fy) / area
    b2 = edge(ax, ay, bx, by, fx, fy) / area
    t = q % len(tris)
    uva, uvb, uvc = (uv[tris[:, k]] for k in range(3))
    u = b0 * uva[t, 0] + b1 * uvb[t, 0] + b2 * uvc[t, 0]
    v = b0 * uva[t, 1] + b1 * uvb[t, 1] + b2 * uvc[t, 1]
    texture = params["texture"].take(r)
    alpha = sample_texture(textures, texture, u, v, slice(3, 4))[0]
    take = np.flatnonzero(alpha >= 128)
    if take.size < alpha.size:
        r, where, q, alpha, texture, u, v = (x[take] for x in (r, where, q, alpha, texture, u, v))
    rgb = sample_texture(textures, texture, u, v, slice(0, 3))
    straight = UNPREMULTIPLY.take(alpha * 256 + rgb).astype(F32)                         # [3, P]
    shade = triangle_shade(verts, tris, params).reshape(-1).take(q)
    colour = np.rint((straight * shade) * params["tint"].take(r, axis=0).T)
    out = faces.reshape(n * h * w, 3).copy()
    mask = np.full(n * h * w, 255, np.uint8)
    out[where] = np.clip(colour, 0, 255).astype(np.uint8).T
    mask[where] = 0
    return out.reshape(n, h, w, 3), mask.reshape(n, h, w)


class MaskMesh:
    """What a render needs beside faces, landmarks and rows: the textures [K, TH, TW, 4] (premultiplied
    RGBA) and the grid (triangles, texture coordinates, size and margin)."""

    def __init__(self, textures: np.ndarray, nu: int = NU, nv: int = NV, margin: float = MARGIN) -> None:
        self.textures = np.ascontiguousarray(textures, np.uint8)
        self.nu, self.nv, self.margin = int(nu), int(nv), float(margin)
        self.tris = grid_triangles(nu, nv)
        self.uv = grid_uv(nu, nv)

    def surface(self, landmarks: np.ndarray, params: np.ndarray) -> np.ndarray:
        """Surface vertices [N, V, 3] float32 of landmarks [N, 68, 3] at the rows' ``top``."""
        verts = mask_surface(landmarks, params["top"], self.margin, self.nu, self.nv).reshape(len(params), -1, 3)
        verts[params["texture"] < 0] = 0                 # rows not drawn, as the kernel leaves them
        return verts

    def render(self, faces: np.ndarray, landmarks: np.ndarray, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:func:`render_masks` of uint8 faces [N, H, W, 3] draped by their landmarks [N, 68, 3]."""
        params = np.asarray(params, RENDER_DTYPE)
        check_rows(params, len(self.textures))
        verts = self.surface(landmarks, params)
        return render_masks(np.asarray(faces), verts, self.uv, self.tris, self.textures, params)


def check_rows(params: np.ndarray, textures: int) -> None:
    """Refuse render rows naming a texture that does not exist (-1, no mask, is allowed)."""
    bad = np.flatnonzero((params["texture"] < -1) | (params["texture"] >= textures))
    if bad.size:
        raise ValueError(f"render row {int(bad[0])} names texture {int(params['texture'][bad[0]])} but there are "
                         f"{textures} textures (0..{textures - 1}, or -1 for no mask)")
