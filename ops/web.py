"""Step 3 of the specification (``ops.reference``): web occluders (glasses, scarf, object). Each row's atlas
rectangle ``src`` (premultiplied RGBa) is resized to its ``box`` exactly as Pillow's bicubic
``Image.resize`` does up to Pillow 12 (MSML pins 8.4: horizontal pass, then vertical, each rounded to 8
bits), then composited: the straight RGB replaces pixels whose alpha exceeds ``replace_alpha``, and
pixels whose alpha exceeds ``mask_alpha`` are occluded."""

from __future__ import annotations

import numpy as np

RESAMPLE_BITS = 22  # Pillow's PRECISION_BITS for 8-bit resampling


def bicubic(x: np.ndarray) -> np.ndarray:
    """Pillow's bicubic filter (a = -1/2), float64, in Pillow's operation order."""
    x = np.abs(x)
    a = -0.5
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def resample_coefficients(in_size: np.ndarray, out_size: np.ndarray, pos: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Pillow's bicubic resampling taps along one axis: for output positions ``pos`` [N, P] of rows
    resized from ``in_size`` to ``out_size`` [N], the first source index [N, P] and the 22-bit
    fixed-point weights [N, P, K] (0 past each position's last tap)."""
    insz = in_size.astype(np.float64).reshape(-1, 1)
    scale = insz / out_size.astype(np.float64).reshape(-1, 1)
    fscale = np.maximum(scale, 1.0)
    support = 2.0 * fscale
    ss = 1.0 / fscale
    center = (pos + 0.5) * scale
    xmin = np.maximum(np.trunc(center - support + 0.5), 0)
    xmax = np.minimum(np.trunc(center + support + 0.5), insz) - xmin
    k = int(xmax.max()) if xmax.size else 1
    weights = [np.where(i < xmax, bicubic((i + xmin - center + 0.5) * ss), 0.0) for i in range(k)]
    total = weights[0]
    for w in weights[1:]:
        total = total + w
    total = np.where(total != 0.0, total, 1.0)
    fixed = []
    for w in weights:
        w = w / total * float(1 << RESAMPLE_BITS)
        fixed.append(np.trunc(np.where(w < 0, w - 0.5, w + 0.5)).astype(np.int32))
    return xmin.astype(np.int64), np.stack(fixed, axis=-1)


def clip8(acc: np.ndarray) -> np.ndarray:
    """Pillow's clip8 of a 22-bit fixed-point accumulator."""
    return np.clip(acc >> RESAMPLE_BITS, 0, 255)


def _resample(atlas: np.ndarray, entry: np.ndarray, src: tuple, box: tuple, xs: np.ndarray,
              ys: np.ndarray) -> np.ndarray:
    """RGBa [N, Y, X, 4] of atlas rectangles ``src = (sx, sy, sw, sh)`` resized to ``box = (x0, y0,
    bw, bh)`` at pixels ``ys`` x ``xs``: horizontal pass first, then vertical, each clipped to 8 bits."""
    sx, sy, sw, sh = src
    x0, y0, bw, bh = box
    n, cell = entry.shape[0], atlas.shape[1]
    xmin, kx = resample_coefficients(sw, bw, np.clip(xs - x0, 0, bw - 1))
    ymin, ky = resample_coefficients(sh, bh, np.clip(ys - y0, 0, bh - 1))
    pixels = atlas.reshape(-1, 4)
    rows = np.clip(sy[:, :, None] + np.arange(int(sh.max()))[None, :, None], 0, cell - 1)   # [N, R, 1]
    base = (entry.reshape(n, 1, 1) * cell + rows) * cell                                      # [N, R, 1]
    first = np.full((n, rows.shape[1], xs.shape[1], 4), 1 << (RESAMPLE_BITS - 1), np.int32)
    for i in range(kx.shape[-1]):
        cols = np.clip(sx + xmin + i, 0, cell - 1)[:, None, :]                                # [N, 1, X]
        first += pixels[base + cols] * kx[:, None, :, i, None]
    first = clip8(first).reshape(-1, 4)
    value = np.full((n, ys.shape[1], xs.shape[1], 4), 1 << (RESAMPLE_BITS - 1), np.int32)
    across = np.arange(xs.shape[1])[None, None, :]
    for j in range(ky.shape[-1]):
        r = np.clip(ymin + j, 0, rows.shape[1] - 1)[:, :, None]                                # [N, Y, 1]
        at = (np.arange(n).reshape(n, 1, 1) * rows.shape[1] + r) * xs.shape[1] + across
        value += first[at] * ky[:, :, None, j, None]
    return clip8(value)


def sample_atlas(t: np.ndarray, atlas: np.ndarray, xs: np.ndarray, ys: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Premultiplied RGB [N, Y, X, 3] and alpha [N, Y, X] (int64) of each row's web occluder, its atlas
    rectangle ``src`` resized to its ``box`` as Pillow's bicubic ``resize`` does up to Pillow 12 (MSML
    pins 8.4: horizontal pass, then vertical, each rounded to 8 bits), at the pixels ``ys`` [N, Y] x
    ``xs`` [N, X]; 0 outside the box."""
    box = t["box"].astype(np.int64)
    x0, y0, x1, y1 = (box[:, k:k + 1] for k in range(4))
    sx, sy, sw, sh = (t["src"][:, k:k + 1].astype(np.int64) for k in range(4))
    bw, bh = np.maximum(x1 - x0, 1), np.maximum(y1 - y0, 1)
    value = _resample(atlas, t["atlas"].reshape(-1, 1, 1), (sx, sy, sw, sh), (x0, y0, bw, bh), xs, ys)
    inside = ((xs >= x0) & (xs < x1))[:, None, :] & ((ys >= y0) & (ys < y1))[:, :, None]
    value *= inside[..., None]
    return value[..., :3], value[..., 3]


def composite_web(canvas: np.ndarray, t: np.ndarray, premul: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Replace ``canvas`` (int32 [N, Y, X, 3], in place) by the occluders' straight RGB (Pillow's
    RGBa -> RGBA) where alpha exceeds ``replace_alpha``; returns the occluded pixels (alpha above
    ``mask_alpha``)."""
    a = alpha[..., None]
    replaced = a > t["replace_alpha"].reshape(-1, 1, 1, 1)
    straight = np.where((a == 0) | (a == 255), premul, np.minimum(premul * 255 // np.maximum(a, 1), 255))
    np.copyto(canvas, straight, where=replaced)
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
