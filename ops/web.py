"""Step 3 of the specification (``ops.reference``): web occluders (glasses, scarf, object). Each row's atlas
rectangle ``src`` (premultiplied RGBa) is resized to its ``box`` exactly as Pillow's bicubic
``Image.resize`` does up to Pillow 12 (MSML pins 8.4: horizontal pass, then vertical, each rounded to 8
bits), then composited: the straight RGB replaces pixels whose alpha exceeds ``replace_alpha``, and
pixels whose alpha exceeds ``mask_alpha`` are occluded. Pixels outside the image are cut.

The resize is Pillow's own, one row at a time (MSML resizes per sample, too); the CUDA kernel computes
the same fixed-point taps per pixel and is tested against this step."""

from __future__ import annotations

import numpy as np


def resize_premultiplied(rgba: np.ndarray, w: int, h: int) -> np.ndarray:
    """Premultiplied RGBa [h', w', 4] uint8 resized to ``w`` x ``h`` as Pillow's bicubic ``Image.resize``
    runs up to Pillow 12 (MSML pins 8.4): the horizontal pass, then the vertical, each rounded to 8 bits.
    Two explicit one-axis resizes fix that order on every Pillow version."""
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(rgba), "RGBa")
    return np.asarray(im.resize((w, rgba.shape[0]), Image.BICUBIC).resize((w, h), Image.BICUBIC))


def box_pixels(row: np.void | np.ndarray, atlas: np.ndarray) -> np.ndarray:
    """Premultiplied RGBa [bh, bw, 4] uint8 of one parameter row's web occluder: its atlas rectangle
    ``src`` resized to its ``box`` (at least 1 x 1)."""
    x0, y0, x1, y1 = (int(v) for v in row["box"])
    sx, sy, sw, sh = (int(v) for v in row["src"])
    cell = atlas.shape[1]
    if min(sx, sy) < 0 or not (0 < sw <= cell - sx and 0 < sh <= cell - sy):
        raise ValueError(f"src {[sx, sy, sw, sh]} is not inside the atlas cell of {cell}")
    return resize_premultiplied(atlas[int(row["atlas"]), sy:sy + sh, sx:sx + sw], max(x1 - x0, 1),
                                max(y1 - y0, 1))


def composite_web(canvas: np.ndarray, rgba: np.ndarray, replace_alpha: int, mask_alpha: int) -> np.ndarray:
    """Replace ``canvas`` ([..., 3] integers, in place) by the straight RGB of the premultiplied
    ``rgba`` ([..., 4], same leading shape; Pillow's RGBa -> RGBA) where alpha exceeds
    ``replace_alpha``; returns the occluded pixels (alpha above ``mask_alpha``)."""
    alpha = rgba[..., 3].astype(np.int32)
    replaced = alpha > replace_alpha
    premul, a = rgba[replaced][:, :3].astype(np.int32), alpha[replaced][:, None]
    canvas[replaced] = np.where((a == 0) | (a == 255), premul, np.minimum(premul * 255 // np.maximum(a, 1), 255))
    return alpha > mask_alpha


def occlude_web(canvas: np.ndarray, occluded: np.ndarray, t: np.ndarray, atlas: np.ndarray,
                rows: np.ndarray) -> None:
    """Step 3 in place on uint8 ``canvas`` [N, H, W, 3] and bool ``occluded`` [N, H, W] for the web rows
    ``rows`` of table ``t``: each row's occluder on the part of its box inside the image."""
    _, h, w, _ = canvas.shape
    for i in rows:
        row = t[i]
        x0, y0, x1, y1 = (int(v) for v in row["box"])
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if cx0 >= cx1 or cy0 >= cy1:
            continue
        rgba = box_pixels(row, atlas)[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
        occluded[i, cy0:cy1, cx0:cx1] |= composite_web(canvas[i, cy0:cy1, cx0:cx1], rgba,
                                                        int(row["replace_alpha"]), int(row["mask_alpha"]))
