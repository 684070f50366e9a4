"""A small embedded dataset built from images that ship inside installed packages."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from faceocc.datasets.pack import write_insightface
from faceocc.resources import package_file


def base_face(size: int = 112) -> np.ndarray:
    """An aligned RGB face: InsightFace's sample crop, or a drawn stand-in when it is missing."""
    from PIL import Image, ImageDraw

    src = package_file("insightface", "data", "images", "Tom_Hanks_54745.png")
    if src is not None:
        with Image.open(src) as im:
            return np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR))
    im = Image.new("RGB", (size, size), (90, 110, 130))
    d = ImageDraw.Draw(im)
    s = size / 112
    d.ellipse([24 * s, 14 * s, 88 * s, 100 * s], fill=(215, 175, 150))
    for x in (38, 74):
        d.ellipse([(x - 6) * s, 46 * s, (x + 6) * s, 54 * s], fill=(40, 30, 30))
    d.polygon([(56 * s, 56 * s), (50 * s, 72 * s), (62 * s, 72 * s)], fill=(190, 140, 120))
    d.rectangle([44 * s, 82 * s, 68 * s, 86 * s], fill=(150, 60, 60))
    return np.asarray(im)


def load_face(path: str | os.PathLike, size: int = 112) -> np.ndarray:
    """An image file as an RGB face of ``size`` x ``size``."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR))


def jittered(face: np.ndarray, rng: np.random.Generator, tint: np.ndarray) -> np.ndarray:
    """A new view of an aligned face: rotated up to 6 degrees, scaled by 1..1.08, shifted up to
    4 px, brightness 0.85..1.15, times the identity's colour ``tint``."""
    from PIL import Image

    h, w = face.shape[:2]
    angle, scale = rng.uniform(-6, 6), rng.uniform(1.0, 1.08)
    dx, dy = rng.integers(-4, 5, size=2)
    im = Image.fromarray(face).rotate(angle, Image.BILINEAR, center=(w / 2, h / 2), translate=(int(dx), int(dy)),
                                      fillcolor=tuple(int(v) for v in face[0, 0]))
    sw, sh = round(w * scale), round(h * scale)
    im = im.resize((sw, sh), Image.BILINEAR)
    left, top = (sw - w) // 2, (sh - h) // 2
    im = im.crop((left, top, left + w, top + h))
    out = np.asarray(im, np.float32) * tint * rng.uniform(0.85, 1.15)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def make_face_dataset(out_dir: str | os.PathLike, sources: list[np.ndarray], identities: int,
                      per_identity: int, seed: int = 0, overwrite: bool = True) -> Path:
    """An InsightFace-layout dataset: identity ``i`` is source ``i % len(sources)`` with its own
    tint, each image a :func:`jittered` view encoded as JPEG (quality 85..95)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    size = sources[0].shape[:2]

    def items():
        for label in range(identities):
            tint = rng.uniform(0.88, 1.12, size=3).astype(np.float32)
            for _ in range(per_identity):
                buf = io.BytesIO()
                face = jittered(sources[label % len(sources)], rng, tint)
                Image.fromarray(face).save(buf, "JPEG", quality=int(rng.integers(85, 96)))
                yield label, buf.getvalue()

    return write_insightface(out_dir, items(), image_size=(int(size[0]), int(size[1])), overwrite=overwrite)


def make_example_dataset(out_dir: str | os.PathLike, identities: int = 8, per_identity: int = 8,
                         size: int = 112, seed: int = 0, overwrite: bool = True) -> Path:
    """The embedded dataset: jittered views of the sample face that ships with insightface."""
    return make_face_dataset(out_dir, [base_face(size)], identities, per_identity, seed, overwrite)
