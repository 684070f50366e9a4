"""The NumPy twin of the CUDA kernels: the specification of what applying a parameter table means.

Per sample, in MSML's order (occlude -> flip -> lighting and divide by max -> mask-pixel
augmentation -> normalize):

1. canvas = the face; for kind mask3d, the pre-rendered masked face, occluded where mask <= 128.
2. shapes, in the unflipped frame, with OpenCV's coverage as MSML draws them: rectangle = its box;
   ellipse (integer centre and semi-axes a, b) = pixels within the ellipse of semi-axes a + 1/2,
   b + 1/2 (boundary pixels included, as ``cv2.ellipse``); polygon = exactly ``cv2.fillPoly``
   (clipped 8-connected edge lines plus even-odd scanline spans), integer arithmetic. Covered pixels
   take the fill colour and are occluded.
3. web occluders (glasses, scarf, object; ``ops.web``): the atlas rectangle ``src`` (premultiplied RGBa) resized to
   ``box`` exactly as Pillow's bicubic ``Image.resize`` (MSML's per-sample resize); the occluder's
   straight RGB replaces pixels whose alpha exceeds ``replace_alpha``; pixels whose alpha exceeds
   ``mask_alpha`` are occluded. Pixels outside the image are cut.
4. grayscale: integer luma ``(19595 R + 38470 G + 7471 B + 32768) >> 16`` (Pillow's 'L'), one channel.
5. flip; ``v = canvas / 255``; face lighting in the output frame: ``v * L * gain`` with
   ``L = exp(-dy^2 / (2 s^2)) * exp(-dx^2 / (2 s^2))``, ``dx = trunc(x - cx)``, then ``v / max(v)`` over
   the sample, no clipping before it.
6. mask3d pixel augmentation on the mask pixels in the output frame, not clipped: ``v -= offset * on[c]``
   with offset (light) ``(g - 1/2) * 2 * amplitude`` (``g`` the Gaussian of ``trunc(x - box_x0 - cx)``,
   ``trunc(y - box_y0 - cy)``), (noise) ``std * n`` (n a hashed normal per pixel, shared by the
   channels), (block) the block value on rows ``m3d_rows``; grayscale: the luma of the three offsets
   divided by ``gray_offset_divisor``.
7. normalization ``(v - 0.5) / 0.5``.
``ori`` is the clean face through steps 4, 5 (flip only) and 7; ``msk`` is 1 where clean, 0 where
occluded, flipped with the image.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .kinds import Kind
from .params import M3D_BLOCK, M3D_LIGHT, M3D_NOISE
from .settings import ApplySettings
from .web import occlude_web

Alloc = Callable[..., np.ndarray]   # (shape, dtype) -> an array to overwrite
DEFAULT = ApplySettings()           # MSML's colour output: 3 channels, normalized, float32

LUMA = np.array([19595, 38470, 7471], np.int32)     # Pillow's RGB -> L, 16-bit fixed point
OFFSET_LUMA = np.array([0.2989, 0.5870, 0.1140], np.float32)   # MSML's grey mask offset
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


def hashed_normal(seed: np.ndarray, pixel: np.ndarray, channel: int = 0) -> np.ndarray:
    """Approximately standard-normal noise: (u0 + u1 + u2 + u3 - 2) * sqrt(3), summed left to right."""
    base = (pixel.astype(np.uint32) * np.uint32(3) + np.uint32(channel)) * np.uint32(4)
    total = hashed_uniform(seed, base)
    for k in range(1, 4):
        total = total + hashed_uniform(seed, base + np.uint32(k))
    return (total - np.float32(2.0)) * SQRT3


def _col(a: np.ndarray) -> np.ndarray:
    return a.astype(np.int64).reshape(-1, 1, 1)


def shape_coverage(t: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bool [N, H, W]: pixels a rectangle, ellipse or polygon row covers."""
    covered = np.zeros((t.size, h, w), bool)
    Y, X = np.arange(h, dtype=np.int64).reshape(1, h, 1), np.arange(w, dtype=np.int64).reshape(1, 1, w)
    rows = np.flatnonzero(t["kind"] == Kind.RECTANGLE)
    box = t["box"][rows].reshape(-1, 4, 1, 1)
    covered[rows] = (box[:, 0] <= X) & (box[:, 2] > X) & (box[:, 1] <= Y) & (box[:, 3] > Y)
    rows = np.flatnonzero(t["kind"] == Kind.ELLIPSE)
    e = t["ellipse"][rows]
    A, B = 2 * _col(e[:, 2]) + 1, 2 * _col(e[:, 3]) + 1
    dx, dy = 2 * (X - _col(e[:, 0])), 2 * (Y - _col(e[:, 1]))
    covered[rows] = dx * dx * B * B + dy * dy * A * A <= A * A * B * B
    for i in np.flatnonzero(t["kind"] == Kind.POLYGON):
        covered[i] = polygon_coverage(t["vx"][i], t["vy"][i], int(t["n_vertices"][i]), h, w)
    return covered


def polygon_coverage(vx: np.ndarray, vy: np.ndarray, count: int, h: int, w: int) -> np.ndarray:
    """Bool [H, W]: ``cv2.fillPoly`` (LINE_8, shift 0) of the polygon of the first ``count`` vertices,
    as MSML draws it (OpenCV clips every edge to the image, draws it as an 8-connected line and fills
    the even-odd spans between the edges' 16.16 fixed-point crossings; the kernel does the same)."""
    import cv2

    out = np.zeros((h, w), np.uint8)
    if count > 0:                       # no vertex, no pixel (cv2 refuses an empty polygon)
        pts = np.stack([vx[:count], vy[:count]], axis=1).astype(np.int32)
        cv2.fillPoly(out, [pts.reshape(-1, 1, 2)], 1)
    return out.view(bool)


def _gauss(d2x: np.ndarray, d2y: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    two_s2 = np.float32(2) * sigma * sigma
    two_s2 = np.where(two_s2 > 0, two_s2, np.float32(1))       # sigma 0: as the kernel guards it
    return np.exp(-d2y / two_s2) * np.exp(-d2x / two_s2)


def face_lighting(v: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Step 5, in place on ``v`` = canvas / 255 [N, C, H, W] (output frame) of rows with lighting."""
    n, _, h, w = v.shape
    lp = t["light_params"]
    dx = np.trunc(np.arange(w, dtype=np.float32)[None] - lp[:, 0:1])
    dy = np.trunc(np.arange(h, dtype=np.float32)[None] - lp[:, 1:2])
    s = lp[:, 3].reshape(n, 1, 1)
    light = _gauss((dx * dx)[:, None, :], (dy * dy)[:, :, None], s)
    v *= light[:, None]
    v *= lp[:, 2].reshape(n, 1, 1, 1)
    peak = v.reshape(n, -1).max(axis=1)
    v /= np.where(peak > 0, peak, np.float32(1)).reshape(n, 1, 1, 1)
    return v


def mask_offset(t: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Step 6's offset [N, 3, H, W] (float32, output frame) of mask3d rows ``t``; ``mask`` [N, H, W]
    holds their mask pixels in the output frame."""
    n, h, w = mask.shape
    yi, xi = np.arange(h).reshape(1, h, 1), np.arange(w).reshape(1, 1, w)
    box = t["box"].reshape(n, 4, 1, 1)
    mode = t["m3d_mode"].reshape(n, 1, 1)
    top = np.where(mode == M3D_BLOCK, t["m3d_rows"][:, 0].reshape(n, 1, 1), box[:, 1])
    bottom = np.where(mode == M3D_BLOCK, t["m3d_rows"][:, 1].reshape(n, 1, 1), box[:, 3])
    region = mask & (xi >= box[:, 0]) & (xi < box[:, 2]) & (yi >= top) & (yi < bottom) & (mode != 0)
    m = t["m3d"]
    offset = np.zeros((n, h, w), np.float32)
    rows = np.flatnonzero(t["m3d_mode"] == M3D_LIGHT)
    if rows.size:
        mm = m[rows]
        dx = np.trunc((xi - box[rows, 0]).astype(np.float32) - mm[:, 0].reshape(-1, 1, 1))
        dy = np.trunc((yi - box[rows, 1]).astype(np.float32) - mm[:, 1].reshape(-1, 1, 1))
        g = _gauss(dx * dx, dy * dy, mm[:, 2].reshape(-1, 1, 1))
        offset[rows] = (g - np.float32(0.5)) * np.float32(2) * mm[:, 3].reshape(-1, 1, 1)
    rows = np.flatnonzero(t["m3d_mode"] == M3D_NOISE)
    if rows.size:
        pixel = (yi * w + xi).astype(np.uint32)
        offset[rows] = m[rows, 0].reshape(-1, 1, 1) * hashed_normal(t["noise_seed"][rows].reshape(-1, 1, 1), pixel)
    rows = np.flatnonzero(t["m3d_mode"] == M3D_BLOCK)
    offset[rows] = m[rows, 0].reshape(-1, 1, 1)
    offset *= region
    return offset[:, None] * t["m3d_channels"].astype(np.float32).reshape(n, 3, 1, 1)


def luma(canvas: np.ndarray) -> np.ndarray:
    """Pillow's 'L' of uint8 RGB [..., 3] as uint8 [...]."""
    c = canvas.astype(np.int32)
    return ((c[..., 0] * LUMA[0] + c[..., 1] * LUMA[1] + c[..., 2] * LUMA[2] + 32768) >> 16).astype(np.uint8)


def _flip_rows(a: np.ndarray, flip: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(flip == 1)
    a[rows] = a[rows, ..., ::-1]
    return a


def _planes(canvas: np.ndarray, flip: np.ndarray, alloc: Alloc = np.empty) -> np.ndarray:
    """Contiguous uint8 [N, C, H, W] of a uint8 [N, C, H, W] view, rows whose ``flip`` is 1 mirrored."""
    planes = alloc(canvas.shape, np.uint8)
    for i, f in enumerate(flip):
        planes[i] = canvas[i, ..., ::-1] if f == 1 else canvas[i]
    return planes


def _lookup(planes: np.ndarray, table: np.ndarray, alloc: Alloc) -> np.ndarray:
    """float32 ``table[planes]`` (``cv2.LUT``: one pass, no index temporaries) in an array from ``alloc``."""
    import cv2

    out = alloc(planes.shape, np.float32)
    flat = out.reshape(-1, planes.shape[-1])
    got = cv2.LUT(planes.reshape(-1, planes.shape[-1]), table, dst=flat)
    if got is not flat:
        flat[...] = got
    return out


def _per_value(normalize: bool) -> np.ndarray:
    """float32 [256]: each uint8 value as steps 5 (``v = canvas / 255``) and, with ``normalize``, 7 compute
    it on an unlit pixel; a lookup of this table gives those steps' exact bits."""
    v = np.arange(256, dtype=np.float32) * np.float32(1 / 255)
    if normalize:
        v = (v - np.float32(0.5)) / np.float32(0.5)
    return v


UNIT, NORMALIZED = _per_value(False), _per_value(True)


def _channels_first(canvas: np.ndarray, grayscale: bool) -> np.ndarray:
    """uint8 [N, C, H, W]: the canvas, or its luma as one channel."""
    return luma(canvas)[:, None] if grayscale else canvas.transpose(0, 3, 1, 2)


def _finish(v: np.ndarray, settings: ApplySettings, alloc: Alloc = np.empty) -> np.ndarray:
    """Step 7 on ``v`` [N, C, H, W] float32 (in place), as ``settings.channels`` channels (one repeated) of
    ``settings.dtype``."""
    if settings.normalize:
        v -= np.float32(0.5)
        v /= np.float32(0.5)
    return _shaped(v, settings.channels, settings.dtype, alloc)


def _shaped(v: np.ndarray, channels: int, dtype: type, alloc: Alloc) -> np.ndarray:
    """``v`` as ``channels`` channels (one repeated) of ``dtype``: ``v`` itself when it is that already."""
    if v.shape[1] == channels and v.dtype == dtype:
        return v
    out = alloc((v.shape[0], channels, *v.shape[2:]), dtype)
    out[...] = v
    return out


def clean_faces(faces: np.ndarray, flip: np.ndarray, settings: ApplySettings = DEFAULT,
                alloc: Alloc = np.empty) -> np.ndarray:
    """``ori``: the faces [N, H, W, 3] unoccluded and unlit, flipped where ``flip`` is 1, as [N, C, H, W]
    of ``settings.dtype``: the arithmetic of ``img`` on an untouched face (steps 4, 5 and 7 as one lookup)."""
    planes = _planes(_channels_first(faces, settings.grayscale), flip, alloc)
    per_value = NORMALIZED if settings.normalize else UNIT
    return _shaped(_lookup(planes, per_value, alloc), settings.channels, settings.dtype, alloc)


def apply_reference(faces: np.ndarray, t: np.ndarray, atlas: np.ndarray,
                    masked_faces: np.ndarray | None = None, masks: np.ndarray | None = None, *,
                    settings: ApplySettings = DEFAULT, alloc: Alloc = np.empty) -> dict[str, np.ndarray]:
    """Apply a parameter table ``t`` to a batch of uint8 faces [N, H, W, 3] under ``settings``.

    ``masked_faces`` [M, H, W, 3] and ``masks`` [M, H, W] (values <= ``settings.mask_threshold`` where
    the mask covers the face) hold the offline renders of the rows with ``m3d_slot >= 0``.
    Returns ``img`` and ``ori`` [N, C, H, W] of ``settings.dtype`` (C = ``settings.channels``), ``msk``
    [N, H, W] int32 (1 clean, 0 occluded) and ``kind`` [N] int8. ``alloc(shape, dtype)`` gives the
    arrays that hold the outputs (``np.empty``, or a :class:`ops.buffers.BufferPool`).
    """
    n, h, w, _ = faces.shape
    grayscale = settings.grayscale
    canvas = alloc(faces.shape, np.uint8)
    np.copyto(canvas, faces)
    occluded = alloc((n, h, w), bool)
    occluded.fill(False)
    m3d = np.flatnonzero(t["m3d_slot"] >= 0)
    if m3d.size:
        canvas[m3d] = masked_faces[t["m3d_slot"][m3d]]
        occluded[m3d] = masks[t["m3d_slot"][m3d]] <= settings.mask_threshold
    shapes = np.flatnonzero(np.isin(t["kind"], (Kind.RECTANGLE, Kind.ELLIPSE, Kind.POLYGON)))
    if shapes.size:
        covered = shape_coverage(t[shapes], h, w)
        for row, cover in zip(shapes, covered):
            canvas[row][cover] = t["colour"][row]
        occluded[shapes] |= covered
    web = np.flatnonzero(np.isin(t["kind"], (Kind.GLASSES, Kind.SCARF, Kind.OBJECT)))
    if web.size:
        occlude_web(canvas, occluded, t, atlas, web)
    v = _lookup(_planes(_channels_first(canvas, grayscale), t["flip"], alloc), UNIT, alloc)
    msk = _flip_rows(~occluded, t["flip"])
    lit = np.flatnonzero(t["light"] == 1)
    if lit.size == n:
        face_lighting(v, t)
    elif lit.size:
        v[lit] = face_lighting(v[lit], t[lit])
    aug = np.flatnonzero(t["m3d_mode"] != 0)
    if aug.size:
        offset = mask_offset(t[aug], ~msk[aug])
        if grayscale:
            offset = (offset[:, 0] * OFFSET_LUMA[0] + offset[:, 1] * OFFSET_LUMA[1]
                      + offset[:, 2] * OFFSET_LUMA[2])[:, None] / np.float32(settings.gray_offset_divisor)
        v[aug] -= offset
    img = _finish(v, settings, alloc)
    ori = clean_faces(faces, t["flip"], settings, alloc)
    out = alloc(msk.shape, np.int32)
    out[...] = msk
    return {"img": img, "msk": out, "ori": ori, "kind": t["kind"].astype(np.int8)}
