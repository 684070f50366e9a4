"""The NumPy twin of the CUDA kernels: the specification of what applying a parameter table means.

Per sample, in this order (pixel (y, x) has its centre at (x + 0.5, y + 0.5)):

1. canvas = the face; for kind mask3d, the pre-rendered masked face, occluded where mask < 128.
2. shapes (rectangle, ellipse, polygon): pixels whose centre is covered take the fill colour and
   are occluded. Coverage is exact integer arithmetic in 1/16 pixel (``SUB``); polygons use the
   even-odd rule.
3. web occluders (glasses, scarf, object): the atlas crop ``src`` is stretched over ``box`` with
   8-bit fixed-point bilinear sampling of premultiplied RGBA; ``blend = 0`` replaces pixels whose
   alpha exceeds ``replace_alpha``, ``blend = 1`` alpha-blends (integer, rounded); pixels whose alpha
   exceeds ``mask_alpha`` are occluded. Pixels outside the image are clipped.
4. mask3d pixel augmentation, on occluded pixels inside ``box``: add a Gaussian light
   (``gain * 255 * exp(-d^2 / (2 sigma^2)) * jitter[c]``), add noise (``sigma * n * jitter[c]``, n a
   unit-variance Irwin-Hall sum of four hashed uniforms), or set the block colour; clip to [0, 255].
5. face lighting: ``v = min(canvas / 255 * gain * exp(-d^2 / (2 sigma^2)), 1)``, then ``v / max(v)``
   over the sample; without lighting ``v = canvas / 255``.
6. flip, grayscale (0.299 R + 0.587 G + 0.114 B), normalization ``(v - 0.5) / 0.5``.
``ori`` is the clean face through step 6 without lighting; ``msk`` is 1 where clean, 0 where occluded.
"""

from __future__ import annotations

import numpy as np

from .kinds import Kind
from .params import M3D_BLOCK, M3D_LIGHT, M3D_NOISE, SUB

GRAY = np.array([0.299, 0.587, 0.114], np.float32)
SQRT3 = np.float32(1.7320508075688772)


def mix32(x: np.ndarray) -> np.ndarray:
    """A 32-bit integer finalizer (lowbias32); the kernel computes the same bits."""
    x = np.asarray(x, np.uint32)
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint32(16))
        x = x * np.uint32(0x7FEB352D)
        x = x ^ (x >> np.uint32(15))
        x = x * np.uint32(0x846CA68B)
    return x ^ (x >> np.uint32(16))


def hashed_uniform(seed: np.ndarray, counter: np.ndarray) -> np.ndarray:
    """Uniform float32 in [0, 1) from (seed, counter), identical bits on both backends."""
    h = mix32(mix32(counter) ^ np.asarray(seed, np.uint32))
    return (h >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / (1 << 24))


def hashed_normal(seed: np.ndarray, pixel: np.ndarray, channel: int) -> np.ndarray:
    """Approximately standard-normal noise: (u0 + u1 + u2 + u3 - 2) * sqrt(3), summed left to right."""
    base = (pixel.astype(np.uint32) * np.uint32(3) + np.uint32(channel)) * np.uint32(4)
    total = hashed_uniform(seed, base)
    for k in range(1, 4):
        total = total + hashed_uniform(seed, base + np.uint32(k))
    return (total - np.float32(2.0)) * SQRT3


def shape_coverage(t: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bool [N, H, W]: pixels whose centre a rectangle, ellipse or polygon row covers."""
    covered = np.zeros((t.size, h, w), bool)
    ys, xs = np.arange(h).reshape(1, h, 1), np.arange(w).reshape(1, 1, w)
    X = (xs * SUB + SUB // 2).astype(np.int64)
    Y = (ys * SUB + SUB // 2).astype(np.int64)
    rows = np.flatnonzero(t["kind"] == Kind.RECTANGLE)
    box = t["box"][rows].reshape(-1, 4, 1, 1)
    covered[rows] = (xs >= box[:, 0]) & (xs < box[:, 2]) & (ys >= box[:, 1]) & (ys < box[:, 3])
    rows = np.flatnonzero(t["kind"] == Kind.ELLIPSE)
    e = t["ellipse"][rows].astype(np.int64).reshape(-1, 4, 1, 1)
    ax2, ay2 = e[:, 2] * e[:, 2], e[:, 3] * e[:, 3]
    dx, dy = X - e[:, 0], Y - e[:, 1]
    covered[rows] = dx * dx * ay2 + dy * dy * ax2 <= ax2 * ay2
    rows = np.flatnonzero(t["kind"] == Kind.POLYGON)
    covered[rows] = polygon_coverage(t[rows], X, Y)
    return covered


def polygon_coverage(t: np.ndarray, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Even-odd crossing test of pixel centres (X, Y in 1/16 px) against each row's polygon."""
    n = t.size
    inside = np.zeros((n, Y.shape[1], X.shape[2]), bool)
    vx = t["vx"].astype(np.int64)
    vy = t["vy"].astype(np.int64)
    count = t["n_vertices"]
    for i in range(vx.shape[1]):
        j = np.where(i + 1 < count, i + 1, 0)
        active = (i < count).reshape(n, 1, 1)
        x1, y1 = vx[:, i].reshape(n, 1, 1), vy[:, i].reshape(n, 1, 1)
        rows = np.arange(n)
        x2, y2 = vx[rows, j].reshape(n, 1, 1), vy[rows, j].reshape(n, 1, 1)
        straddles = (y1 > Y) != (y2 > Y)
        lhs = (X - x1) * (y2 - y1)
        rhs = (Y - y1) * (x2 - x1)
        left = np.where(y2 > y1, lhs < rhs, lhs > rhs)
        inside ^= active & straddles & left
    return inside


def _fixed_point_axis(pos: np.ndarray, start: np.ndarray, length: np.ndarray, src0: np.ndarray,
                      src_len: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (i0, i1) and 8-bit weight of i1 for destination pixels along one axis."""
    u = ((2 * (pos - start) + 1) * src_len * 256) // (2 * length) - 128
    u = np.clip(u, 0, (src_len - 1) * 256)
    i0 = u >> 8
    return src0 + i0, src0 + np.minimum(i0 + 1, src_len - 1), u & 255


def sample_atlas(t: np.ndarray, atlas: np.ndarray, xs: np.ndarray, ys: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Premultiplied RGB [N, Y, X, 3] and alpha [N, Y, X] (int32) of each row's web occluder at the
    pixels ``ys`` [N, Y] x ``xs`` [N, X]; alpha is 0 outside the row's box."""
    n = t.size
    box = t["box"].astype(np.int32)
    src = t["src"].astype(np.int32)
    x0, y0, x1, y1 = (box[:, k:k + 1] for k in range(4))
    sx, sy, sw, sh = (src[:, k:k + 1] for k in range(4))
    ix0, ix1, fx = _fixed_point_axis(xs, x0, x1 - x0, sx, sw)
    iy0, iy1, fy = _fixed_point_axis(ys, y0, y1 - y0, sy, sh)
    entry = t["atlas"].reshape(n, 1, 1)
    fx, fy = fx[:, None, :, None], fy[:, :, None, None]

    def tap(iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
        return atlas[entry, iy[:, :, None], ix[:, None, :]].astype(np.int32)

    top = tap(iy0, ix0) * (256 - fx) + tap(iy0, ix1) * fx
    bottom = tap(iy1, ix0) * (256 - fx) + tap(iy1, ix1) * fx
    value = (top * (256 - fy) + bottom * fy + 32768) >> 16
    inside = ((xs >= x0) & (xs < x1))[:, None, :] & ((ys >= y0) & (ys < y1))[:, :, None]
    value *= inside[..., None]
    return value[..., :3], value[..., 3]


def composite_web(canvas: np.ndarray, t: np.ndarray, premul: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Lay the sampled occluders over ``canvas`` (int32 [N, Y, X, 3], in place); returns the occluded
    pixels."""
    a = alpha[..., None]
    blend = np.flatnonzero(t["blend"] == 1)
    canvas[blend] = (canvas[blend] * (255 - a[blend]) + premul[blend] * 255 + 127) // 255
    rep = np.flatnonzero(t["blend"] != 1)
    replaced = a[rep] > t["replace_alpha"][rep].reshape(-1, 1, 1, 1)
    straight = np.minimum((premul[rep] * 255 + a[rep] // 2) // np.maximum(a[rep], 1), 255)
    canvas[rep] = np.where(replaced, straight, canvas[rep])
    return alpha > t["mask_alpha"].reshape(-1, 1, 1)


def occlude_web(canvas: np.ndarray, occluded: np.ndarray, t: np.ndarray, atlas: np.ndarray) -> None:
    """Step 3 in place on uint8 ``canvas`` [N, H, W, 3] and ``occluded`` for web rows ``t``.

    Works on a window per row (the row's box clipped to the image, all windows of one size), which
    gives the same pixels as the whole frame: outside its box a row's alpha is 0.
    """
    n, h, w, _ = canvas.shape
    box = t["box"]
    x0, y0 = np.clip(box[:, 0], 0, w), np.clip(box[:, 1], 0, h)
    ww = max(1, int((np.clip(box[:, 2], 0, w) - x0).max()))
    wh = max(1, int((np.clip(box[:, 3], 0, h) - y0).max()))
    ox, oy = np.minimum(x0, w - ww), np.minimum(y0, h - wh)
    xs = ox[:, None] + np.arange(ww)
    ys = oy[:, None] + np.arange(wh)
    rows = np.arange(n)[:, None, None]
    window = (rows, ys[:, :, None], xs[:, None, :])
    premul, alpha = sample_atlas(t, atlas, xs, ys)
    sub = canvas[window].astype(np.int32)
    occluded[window] |= composite_web(sub, t, premul, alpha)
    canvas[window] = sub


def augment_mask_pixels(v: np.ndarray, occluded: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Step 4, in place on float32 ``v`` [N, H, W, 3] of mask3d rows ``t``; returns ``v``."""
    n, h, w, _ = v.shape
    yi, xi = np.arange(h).reshape(1, h, 1), np.arange(w).reshape(1, 1, w)
    box = t["box"].reshape(n, 4, 1, 1)
    region = occluded & (xi >= box[:, 0]) & (xi < box[:, 2]) & (yi >= box[:, 1]) & (yi < box[:, 3])
    value = v.copy()
    rows = np.flatnonzero(t["m3d_mode"] == M3D_LIGHT)
    if rows.size:
        m = t["m3d"][rows].reshape(-1, 4, 1, 1)
        dx = xi.astype(np.float32) + np.float32(0.5) - m[:, 0]
        dy = yi.astype(np.float32) + np.float32(0.5) - m[:, 1]
        two_s2 = np.float32(2) * m[:, 2] * m[:, 2]
        two_s2 = np.where(two_s2 > 0, two_s2, np.float32(1))       # sigma 0: as the kernel guards it
        light = m[:, 3] * np.float32(255) * np.exp(-(dx * dx + dy * dy) / two_s2)
        value[rows] = v[rows] + light[..., None] * t["jitter"][rows].reshape(-1, 1, 1, 3)
    rows = np.flatnonzero(t["m3d_mode"] == M3D_NOISE)
    if rows.size:
        pixel = (yi * w + xi).astype(np.uint32)
        seed = t["noise_seed"][rows].reshape(-1, 1, 1)
        sigma = t["m3d"][rows, 0].reshape(-1, 1, 1)
        for c in range(3):
            noise = sigma * hashed_normal(seed, pixel, c)
            value[rows, ..., c] = v[rows, ..., c] + noise * t["jitter"][rows, c].reshape(-1, 1, 1)
    rows = np.flatnonzero(t["m3d_mode"] == M3D_BLOCK)
    value[rows] = t["colour"][rows].reshape(-1, 1, 1, 3)
    np.copyto(v, np.clip(value, 0, 255), where=region[..., None])
    return v


def face_lighting(v: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Step 5, in place on ``v`` = canvas / 255 [N, 3, H, W] of rows with lighting; returns ``v``."""
    n, _, h, w = v.shape
    lp = t["light_params"]
    two_s2 = (np.float32(2) * lp[:, 3] * lp[:, 3])[:, None]
    dx = np.arange(w, dtype=np.float32)[None] + np.float32(0.5) - lp[:, 0:1]
    dy = np.arange(h, dtype=np.float32)[None] + np.float32(0.5) - lp[:, 1:2]
    lx, ly = np.exp(-(dx * dx) / two_s2), np.exp(-(dy * dy) / two_s2)
    v *= (ly[:, :, None] * lx[:, None, :])[:, None]
    v *= lp[:, 2].reshape(n, 1, 1, 1)
    np.minimum(v, np.float32(1), out=v)
    peak = v.reshape(n, -1).max(axis=1)
    v /= np.where(peak > 0, peak, np.float32(1)).reshape(n, 1, 1, 1)
    return v


def finish(v: np.ndarray, grayscale: bool, normalize: bool, dtype: type) -> np.ndarray:
    """Step 6 (after the flip) on float32 ``v`` [N, 3, H, W] in [0, 1], in place: grayscale and
    normalization; returns it as ``dtype``."""
    if grayscale:
        v[:, :] = (v[:, 0] * GRAY[0] + v[:, 1] * GRAY[1] + v[:, 2] * GRAY[2])[:, None]
    if normalize:
        v -= np.float32(0.5)
        v /= np.float32(0.5)
    return v.astype(dtype, copy=False)


def _flip_rows(a: np.ndarray, flip: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(flip == 1)
    a[rows] = a[rows, ..., ::-1]
    return a


def apply_reference(faces: np.ndarray, t: np.ndarray, atlas: np.ndarray,
                    masked_faces: np.ndarray | None = None, masks: np.ndarray | None = None,
                    grayscale: bool = False, normalize: bool = True,
                    dtype: type = np.float32) -> dict[str, np.ndarray]:
    """Apply a parameter table to a batch of uint8 faces [N, H, W, 3].

    ``masked_faces`` [M, H, W, 3] and ``masks`` [M, H, W] (0 where the mask covers the face) hold the
    offline renders of the rows with ``m3d_slot >= 0``. Returns ``img`` and ``ori`` [N, 3, H, W] of
    ``dtype``, ``msk`` [N, H, W] int32 (1 clean, 0 occluded) and ``kind`` [N] int8.
    """
    n, h, w, _ = faces.shape
    canvas = faces.copy()
    occluded = np.zeros((n, h, w), bool)
    m3d = np.flatnonzero(t["m3d_slot"] >= 0)
    if m3d.size:
        canvas[m3d] = masked_faces[t["m3d_slot"][m3d]]
        occluded[m3d] = masks[t["m3d_slot"][m3d]] < 128
    shapes = np.flatnonzero(np.isin(t["kind"], (Kind.RECTANGLE, Kind.ELLIPSE, Kind.POLYGON)))
    if shapes.size:
        covered = shape_coverage(t[shapes], h, w)
        colour = t["colour"][shapes].reshape(-1, 1, 1, 3)
        canvas[shapes] = np.where(covered[..., None], colour, canvas[shapes])
        occluded[shapes] |= covered
    for kind in (Kind.GLASSES, Kind.SCARF, Kind.OBJECT):
        rows = np.flatnonzero(t["kind"] == kind)
        if rows.size:
            sub, sub_occluded = canvas[rows], occluded[rows]
            occlude_web(sub, sub_occluded, t[rows], atlas)
            canvas[rows], occluded[rows] = sub, sub_occluded
    v = canvas.transpose(0, 3, 1, 2).astype(np.float32)
    if m3d.size:
        augmented = augment_mask_pixels(canvas[m3d].astype(np.float32), occluded[m3d], t[m3d])
        v[m3d] = augmented.transpose(0, 3, 1, 2)
    v *= np.float32(1 / 255)
    lit = np.flatnonzero(t["light"] == 1)
    if lit.size == n:
        face_lighting(v, t)
    elif lit.size:
        v[lit] = face_lighting(v[lit], t[lit])
    img = finish(_flip_rows(v, t["flip"]), grayscale, normalize, dtype)
    clean = _flip_rows(faces.transpose(0, 3, 1, 2).copy(), t["flip"])
    if grayscale:
        ori = finish(clean * np.float32(1 / 255), grayscale, normalize, dtype)
    else:
        ori = finish(np.arange(256, dtype=np.float32) * np.float32(1 / 255), False, normalize, dtype)[clean]
    msk = _flip_rows(~occluded, t["flip"]).astype(np.int32)
    return {"img": img, "msk": msk, "ori": ori, "kind": t["kind"].astype(np.int8)}
