"""A small embedded dataset built from images that ship inside installed packages."""

from __future__ import annotations

import importlib.util
import io
import os
from pathlib import Path

import numpy as np

from dali_pipes.packing import write_insightface


def package_file(package: str, *parts: str) -> Path | None:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    return path if path.exists() else None


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


def make_example_dataset(out_dir: str | os.PathLike, identities: int = 8, per_identity: int = 8,
                         size: int = 112, seed: int = 0, overwrite: bool = True) -> Path:
    """An InsightFace-layout dataset of jittered copies of a sample face (tint per identity)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    face = base_face(size).astype(np.float32)

    def items():
        for label in range(identities):
            tint = rng.uniform(0.75, 1.25, size=3)
            for _ in range(per_identity):
                dy, dx = rng.integers(-4, 5, size=2)
                img = np.roll(face, (dy, dx), axis=(0, 1)) * tint * rng.uniform(0.85, 1.15)
                buf = io.BytesIO()
                Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=95)
                yield label, buf.getvalue()

    return write_insightface(out_dir, items(), image_size=(size, size), overwrite=overwrite)
