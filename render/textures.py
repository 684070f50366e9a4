"""Mask textures: the four mask images inside the insightface package by default, or a folder.

Each becomes a fixed-size RGBA texture (premultiplied by alpha, so bilinear sampling has no fringes).
The package's four are full-frame fabric; a folder's images without alpha get their flat background
(connected to the border) keyed out, and every texture is cropped to what remains.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from faceocc.ops.atlas import IMAGE_SUFFIXES, load_rgba, warn_skipped

from faceocc.recordio.images import MAX_PIXELS

TEX_H, TEX_W = 128, 256
INSIGHTFACE_MASKS = ("mask_white.jpg", "mask_blue.jpg", "mask_black.jpg", "mask_green.jpg")


def _prepare(rgba: np.ndarray) -> np.ndarray:
    from PIL import Image

    ys, xs = np.nonzero(rgba[..., 3] > 8)
    rgba = rgba[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
    im = Image.fromarray(np.ascontiguousarray(rgba), "RGBA").convert("RGBa")
    return np.array(im.resize((TEX_W, TEX_H), Image.LANCZOS))     # premultiplied (mode RGBa)


def load_textures(folder: str | os.PathLike | None = None,
                  max_pixels: int | None = MAX_PIXELS) -> tuple[np.ndarray, list[str]]:
    """Textures [K, TEX_H, TEX_W, 4] uint8 (premultiplied RGBA) and their names, loaded one at a time and
    bounded as occluders are (:func:`faceocc.ops.atlas.load_rgba`); files left out are named in one
    warning with their count."""
    if folder is None:
        from faceocc.resources import package_file

        files = [package_file("insightface", "data", "images", name) for name in INSIGHTFACE_MASKS]
        files = [f for f in files if f is not None]
        where = "the insightface package (data/images/mask_*.jpg)"
    else:
        root = Path(folder)
        if not root.is_dir():
            raise FileNotFoundError(f"texture folder not found: {root}")
        files = sorted(f for f in root.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        where = str(root)
    textures, names, skipped = [], [], []
    for f in files:
        try:
            rgba = load_rgba(Path(f), key_out=folder is not None, max_pixels=max_pixels)  # package's: full-frame
        except ValueError as exc:
            skipped.append(str(exc))
            continue
        if (rgba[..., 3] > 8).sum() > 64:
            textures.append(_prepare(rgba))
            names.append(Path(f).name)
        else:
            skipped.append(f"{f}: almost fully transparent (64 pixels or fewer with alpha above 8)")
    if not textures:
        raise ValueError(f"no usable mask texture in {where}" + (f": {'; '.join(skipped[:5])}" if skipped else ""))
    warn_skipped(where, skipped, len(files))
    return np.stack(textures), names
