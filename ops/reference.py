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
    n = t.size
    ys = np.arange(h).reshape(1, h, 1)
    xs = np.arange(w).reshape(1, 1, w)
    kind = t["kind"].reshape(n, 1, 1)
    box = t["box"].reshape(n, 4, 1, 1)
    rect = ((kind == Kind.RECTANGLE) & (xs >= box[:, 0]) & (xs < box[:, 2])
            & (ys >= box[:, 1]) & (ys < box[:, 3]))
    X = (xs * SUB + SUB // 2).astype(np.int64)
    Y = (ys * SUB + SUB // 2).astype(np.int64)
    e = t["ellipse"].astype(np.int64).reshape(n, 4, 1, 1)
    ax2, ay2 = e[:, 2] * e[:, 2], e[:, 3] * e[:, 3]
    dx, dy = X - e[:, 0], Y - e[:, 1]
    ellipse = (kind == Kind.ELLIPSE) & (dx * dx * ay2 + dy * dy * ax2 <= ax2 * ay2)
    return rect | ellipse | ((kind == Kind.POLYGON) & polygon_coverage(t, X, Y))


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


def sample_atlas(t: np.ndarray, atlas: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Premultiplied RGB int32 [N, H, W, 3] and alpha [N, H, W] of each row's web occluder (alpha 0
    outside its box)."""
    n = t.size
    box = t["box"].astype(np.int64)
    src = t["src"].astype(np.int64)
    xs = np.arange(w).reshape(1, w)
    ys = np.arange(h).reshape(1, h)
    x0, y0, x1, y1 = (box[:, k:k + 1] for k in range(4))
    sx, sy, sw, sh = (src[:, k:k + 1] for k in range(4))
    ix0, ix1, fx = _fixed_point_axis(xs, x0, x1 - x0, sx, sw)
    iy0, iy1, fy = _fixed_point_axis(ys, y0, y1 - y0, sy, sh)
    entry = t["atlas"].reshape(n, 1, 1)
    fx, fy = fx[:, None, :, None], fy[:, :, None, None]

    def tap(iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
        return atlas[entry, iy[:, :, None], ix[:, None, :]].astype(np.int64)

    top = tap(iy0, ix0) * (256 - fx) + tap(iy0, ix1) * fx
    bottom = tap(iy1, ix0) * (256 - fx) + tap(iy1, ix1) * fx
    value = (top * (256 - fy) + bottom * fy + 32768) >> 16
    inside = ((xs >= x0) & (xs < x1))[:, None, :] & ((ys >= y0) & (ys < y1))[:, :, None]
    value *= inside[..., None]
    return value[..., :3], value[..., 3]


def composite_web(canvas: np.ndarray, t: np.ndarray, premul: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Lay the sampled occluders over ``canvas`` (int, [N, H, W, 3]); returns the occluded pixels."""
    blend = t["blend"].reshape(-1, 1, 1, 1) == 1
    a = alpha[..., None]
    replaced = (a > t["replace_alpha"].reshape(-1, 1, 1, 1)) & ~blend
    straight = np.minimum((premul * 255 + a // 2) // np.maximum(a, 1), 255)
    mixed = (canvas * (255 - a) + premul * 255 + 127) // 255
    canvas[...] = np.where(blend, mixed, np.where(replaced, straight, canvas))
    return alpha > t["mask_alpha"].reshape(-1, 1, 1)


def augment_mask_pixels(canvas: np.ndarray, occluded: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Step 4 on float32 ``canvas`` [N, H, W, 3] for the rows of kind mask3d; returns the canvas."""
    n, h, w, _ = canvas.shape
    ys = np.arange(h, dtype=np.float32).reshape(1, h, 1) + np.float32(0.5)
    xs = np.arange(w, dtype=np.float32).reshape(1, 1, w) + np.float32(0.5)
    box = t["box"].reshape(n, 4, 1, 1)
    yi, xi = np.arange(h).reshape(1, h, 1), np.arange(w).reshape(1, 1, w)
    region = (occluded & (t["kind"] == Kind.MASK3D).reshape(n, 1, 1)
              & (xi >= box[:, 0]) & (xi < box[:, 2]) & (yi >= box[:, 1]) & (yi < box[:, 3]))
    mode = t["m3d_mode"].reshape(n, 1, 1)
    m = t["m3d"].reshape(n, 4, 1, 1)
    dx, dy = xs - m[:, 0], ys - m[:, 1]
    two_s2 = np.float32(2) * m[:, 2] * m[:, 2]
    two_s2 = np.where(two_s2 > 0, two_s2, np.float32(1))
    light = m[:, 3] * np.float32(255) * np.exp(-(dx * dx + dy * dy) / two_s2)
    pixel = (yi * w + xi).astype(np.uint32)
    seed = t["noise_seed"].reshape(n, 1, 1)
    for c in range(3):
        jitter = t["jitter"][:, c].reshape(n, 1, 1)
        noise = m[:, 0] * hashed_normal(seed, pixel, c)
        add = np.where(mode == M3D_LIGHT, light, np.where(mode == M3D_NOISE, noise, np.float32(0)))
        value = np.where(mode == M3D_BLOCK, t["colour"][:, c].reshape(n, 1, 1).astype(np.float32),
                         canvas[..., c] + add * jitter)
        canvas[..., c] = np.where(region, np.clip(value, 0, 255), canvas[..., c])
    return canvas


def face_lighting(canvas: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Step 5: float32 [N, H, W, 3] in [0, 1]."""
    n, h, w, _ = canvas.shape
    lp = t["light_params"]
    two_s2 = np.float32(2) * lp[:, 3] * lp[:, 3]
    on = t["light"] == 1
    safe = np.where(on, two_s2, np.float32(1))
    dx = np.arange(w, dtype=np.float32)[None] + np.float32(0.5) - lp[:, 0:1]
    dy = np.arange(h, dtype=np.float32)[None] + np.float32(0.5) - lp[:, 1:2]
    lx = np.exp(-(dx * dx) / safe[:, None])
    ly = np.exp(-(dy * dy) / safe[:, None])
    v = canvas * np.float32(1 / 255)
    lit = np.minimum(v * (ly[:, :, None, None] * lx[:, None, :, None]) * lp[:, 2].reshape(n, 1, 1, 1),
                     np.float32(1))
    peak = lit.reshape(n, -1).max(axis=1)
    lit = lit / np.where(peak > 0, peak, np.float32(1)).reshape(n, 1, 1, 1)
    return np.where(on.reshape(n, 1, 1, 1), lit, v)


def finish(v: np.ndarray, flip: np.ndarray, grayscale: bool, normalize: bool, dtype: type) -> np.ndarray:
    """Step 6: flip, grayscale, normalization; [N, H, W, 3] -> [N, 3, H, W] of ``dtype``."""
    v = np.where(flip.reshape(-1, 1, 1, 1) == 1, v[:, :, ::-1], v)
    if grayscale:
        g = v[..., 0] * GRAY[0] + v[..., 1] * GRAY[1] + v[..., 2] * GRAY[2]
        v = np.repeat(g[..., None], 3, axis=-1)
    if normalize:
        v = (v - np.float32(0.5)) / np.float32(0.5)
    return np.ascontiguousarray(v.transpose(0, 3, 1, 2), dtype=dtype)


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
    canvas = faces.astype(np.int64)
    occluded = np.zeros((n, h, w), bool)
    slots = t["m3d_slot"]
    rows = np.flatnonzero(slots >= 0)
    if rows.size:
        canvas[rows] = masked_faces[slots[rows]]
        occluded[rows] = masks[slots[rows]] < 128
    covered = shape_coverage(t, h, w)
    canvas = np.where(covered[..., None], t["colour"].reshape(n, 1, 1, 3), canvas)
    occluded |= covered
    web = np.flatnonzero(np.isin(t["kind"], (Kind.GLASSES, Kind.SCARF, Kind.OBJECT)))
    if web.size:
        premul, alpha = sample_atlas(t[web], atlas, h, w)
        sub = canvas[web]
        occluded[web] |= composite_web(sub, t[web], premul, alpha)
        canvas[web] = sub
    v = augment_mask_pixels(canvas.astype(np.float32), occluded, t)
    img = finish(face_lighting(v, t), t["flip"], grayscale, normalize, dtype)
    ori = finish(faces.astype(np.float32) * np.float32(1 / 255), t["flip"], grayscale, normalize, dtype)
    msk = np.where(t["flip"].reshape(-1, 1, 1) == 1, occluded[:, :, ::-1], occluded)
    return {"img": img, "msk": (~msk).astype(np.int32), "ori": ori, "kind": t["kind"].astype(np.int8)}
