"""The render jobs' small helpers: encoding a render's images (JPEG q95, PNG), decoding and sizing a face
of train.rec, and checking a job's integer settings."""

from __future__ import annotations

import io

import numpy as np

from faceocc.recordio.images import MAX_PIXELS, decode_image


def encode(image: np.ndarray, fmt: str) -> bytes:
    """``image`` as JPEG (quality 95) or PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    if fmt == "JPEG":
        Image.fromarray(image).save(buf, "JPEG", quality=95)
    else:
        Image.fromarray(image).save(buf, "PNG", compress_level=6)
    return buf.getvalue()


def whole_setting(name: str, value: object, lo: int) -> int:
    """``value`` as an int >= ``lo`` (not a bool, float or string), else a one-line ValueError naming it."""
    from numbers import Integral

    if isinstance(value, bool) or not isinstance(value, Integral) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, not {value!r}")
    return int(value)


def face_at(payload: bytes, size: tuple[int, int], max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """An encoded face decoded as RGB and resized (bilinear) to ``size`` (H, W)."""
    from PIL import Image

    img = decode_image(payload, max_pixels=max_pixels)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.shape[:2] != size:
        img = np.asarray(Image.fromarray(img).resize((size[1], size[0]), Image.BILINEAR))
    return img
