"""The occluder bank: RGBA occluder images packed once into a fixed-size atlas.

Every entry sits in the top-left corner of a ``cell x cell`` slot, RGB premultiplied by alpha (so
bilinear sampling has no dark fringes). The same uint8 array serves the NumPy twin and, copied once
to the device, the CUDA kernel.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GROUPS = ("glasses", "eyeglasses", "scarf", "object")
# MSML's folder names first (its eyeglasses folder is spelt "eleglasses_crop")
FOLDERS = {
    "glasses": ("glasses_crop", "glasses"),
    "eyeglasses": ("eleglasses_crop", "eyeglasses_crop", "eyeglasses"),
    "scarf": ("scarf_crop", "scarf", "scarves"),
    "object": ("object_train", "object", "objects"),
}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


@dataclass
class OccluderBank:
    """RGBA occluders by group; ``atlas`` [K, cell, cell, 4] uint8 premultiplied, ``sizes`` [K, 2] (h, w)."""

    atlas: np.ndarray
    sizes: np.ndarray
    groups: dict[str, np.ndarray]          # group name -> atlas entry indices
    source: str

    @property
    def cell(self) -> int:
        return int(self.atlas.shape[1])

    def count(self, group: str) -> int:
        return int(self.groups.get(group, np.zeros(0)).size)

    @classmethod
    def from_images(cls, images: dict[str, list[np.ndarray]], source: str, cell: int = 128) -> OccluderBank:
        """Pack straight-alpha RGBA uint8 images, by group, into an atlas."""
        entries, sizes, groups = [], [], {}
        for group in GROUPS:
            idx = []
            for rgba in images.get(group, []):
                fitted = _fit(rgba, cell)
                if fitted is None:
                    continue
                idx.append(len(entries))
                entries.append(fitted)
                sizes.append(fitted.shape[:2])
            if idx:
                groups[group] = np.asarray(idx, np.int32)
        if not entries:
            raise ValueError(f"no usable occluder image in {source}")
        atlas = np.zeros((len(entries), cell, cell, 4), np.uint8)
        for i, e in enumerate(entries):
            atlas[i, : e.shape[0], : e.shape[1]] = _premultiply(e)
        return cls(atlas, np.asarray(sizes, np.int32), groups, source)

    @classmethod
    def from_folder(cls, root: str | os.PathLike, cell: int = 128) -> OccluderBank:
        """Load MSML's folder layout: ``glasses_crop/``, ``eleglasses_crop/``, ``scarf_crop/``,
        ``object_train/`` (other spellings in ``FOLDERS`` too)."""
        return cls.from_images(folder_images(root), str(root), cell)


def folder_images(root: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """Straight-alpha RGBA occluders by group from MSML's folder layout (see ``FOLDERS``)."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"occluder folder not found: {root}")
    images: dict[str, list[np.ndarray]] = {}
    for group, names in FOLDERS.items():
        folder = next((root / n for n in names if (root / n).is_dir()), None)
        if folder is None:
            continue
        images[group] = [rgba for f in sorted(folder.iterdir())
                         if f.suffix.lower() in IMAGE_SUFFIXES and (rgba := load_rgba(f)) is not None]
    if not any(images.values()):
        wanted = ", ".join(n[0] for n in FOLDERS.values())
        raise ValueError(f"no usable occluder image in {root} (expected sub-folders {wanted} "
                         "holding PNGs with alpha, or images on a flat background)")
    return images


def load_rgba(path: Path, key_out: bool = True) -> np.ndarray | None:
    """An image as straight-alpha RGBA; without alpha, a flat background is keyed out (``key_out``)
    or the whole image is kept opaque."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            has_alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
            rgba = np.array(im.convert("RGBA"))
    except (OSError, ValueError):
        return None
    if key_out and (not has_alpha or rgba[..., 3].min() == 255):
        rgba[..., 3] = key_out_background(rgba[..., :3])
    return rgba if (rgba[..., 3] > 0).any() else None


def key_out_background(rgb: np.ndarray, tolerance: float = 40.0) -> np.ndarray:
    """Alpha that is 0 on the flat background (the median colour of the border, where connected to
    the border) and 255 elsewhere, with a soft edge of ``tolerance`` grey levels."""
    from scipy import ndimage

    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]).astype(np.float32)
    background = np.median(border, axis=0)
    distance = np.linalg.norm(rgb.astype(np.float32) - background, axis=-1)
    near, count = ndimage.label(distance < tolerance)
    edge = np.unique(np.concatenate([near[0], near[-1], near[:, 0], near[:, -1]]))
    outside = np.isin(near, edge[edge > 0])
    soft = np.clip((distance - tolerance / 2) * (255.0 / tolerance), 0, 255)
    return np.where(outside, soft, 255).astype(np.uint8)


def _fit(rgba: np.ndarray, cell: int) -> np.ndarray | None:
    """Crop to the alpha's bounding box and shrink (aspect kept) to fit the cell."""
    from PIL import Image

    ys, xs = np.nonzero(rgba[..., 3])
    if ys.size == 0:
        return None
    rgba = rgba[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
    h, w = rgba.shape[:2]
    scale = min(1.0, cell / max(h, w))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        im = Image.fromarray(np.ascontiguousarray(rgba), "RGBA").convert("RGBa")
        rgba = np.array(im.resize(size, Image.LANCZOS).convert("RGBA"))
    return rgba


def _premultiply(rgba: np.ndarray) -> np.ndarray:
    out = rgba.copy()
    a = rgba[..., 3:4].astype(np.uint32)
    out[..., :3] = (rgba[..., :3].astype(np.uint32) * a + 127) // 255
    return out


def default_bank(folder: str | os.PathLike | None = None, cell: int = 128) -> OccluderBank:
    """The user's folder when given, else the built-in procedural bank."""
    if folder is not None:
        return OccluderBank.from_folder(folder, cell)
    from .builtin_occluders import draw_builtin

    return OccluderBank.from_images(draw_builtin(), "built-in procedural bank", cell)
