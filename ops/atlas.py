"""The occluder bank: RGBA occluder images prepared once as MSML prepares them and packed into a
fixed-size atlas.

Preparation (the profile's :meth:`~ops.profiles.Profile.atlas_layout`): glasses and scarves are
resized, whole, to one size (Pillow bicubic on premultiplied RGBA, as MSML's ``Image.resize``);
objects are fitted whole into a square keeping their aspect and padded with transparent pixels,
never cropped. Every entry then sits in the top-left corner of a ``cell x cell`` slot, RGB
premultiplied by alpha (so bilinear sampling has no dark fringes). The same uint8 array serves the
NumPy twin and, copied once to the device, the CUDA kernel.
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
    def from_images(cls, images: dict[str, list[np.ndarray]], source: str, cell: int = 128,
                    layout: dict[str, tuple] | None = None) -> OccluderBank:
        """Prepare straight-alpha RGBA uint8 images by group (``layout``, default: the default
        profile's) and pack them into an atlas."""
        layout = default_layout() if layout is None else layout
        entries, sizes, groups = [], [], {}
        for group in GROUPS:
            idx = []
            for rgba in images.get(group, []):
                fitted = prepare(rgba, layout.get(group), cell)
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
    def from_folder(cls, root: str | os.PathLike, cell: int = 128,
                    layout: dict[str, tuple] | None = None) -> OccluderBank:
        """Load MSML's folder layout: ``glasses_crop/``, ``eleglasses_crop/``, ``scarf_crop/``,
        ``object_train/`` (other spellings in ``FOLDERS`` too)."""
        return cls.from_images(folder_images(root), str(root), cell, layout)


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


def default_layout() -> dict[str, tuple]:
    """The default profile's preparation of each group."""
    from .profiles import Profile

    return Profile().atlas_layout()


def resize_rgba(rgba: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``rgba`` resized to ``size = (w, h)`` as Pillow's ``Image.resize`` does by default (bicubic,
    on premultiplied RGBA)."""
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(rgba), "RGBA")
    return np.array(im.resize((int(size[0]), int(size[1])), Image.BICUBIC))


def fit_pad(rgba: np.ndarray, side: int, bias: int) -> np.ndarray:
    """The whole image fitted into ``side x side`` keeping its aspect (scale by the longer side,
    lengths truncated), placed at ``-int((length - side + bias) / 2)`` per axis on transparent pixels."""
    h, w = rgba.shape[:2]
    ratio = max(w / side, h / side)
    fw, fh = max(1, int(w / ratio)), max(1, int(h / ratio))
    fitted = resize_rgba(rgba, (fw, fh))
    out = np.zeros((side, side, 4), np.uint8)
    ox, oy = -int((fw - side + bias) / 2), -int((fh - side + bias) / 2)
    sx, sy = max(0, -ox), max(0, -oy)
    ox, oy = max(0, ox), max(0, oy)
    cw, ch = min(fw - sx, side - ox), min(fh - sy, side - oy)
    out[oy:oy + ch, ox:ox + cw] = fitted[sy:sy + ch, sx:sx + cw]
    return out


def prepare(rgba: np.ndarray, how: tuple | None, cell: int) -> np.ndarray | None:
    """One image prepared by ``how`` (see :func:`default_layout`), or None when it has no opaque pixel."""
    if not (rgba[..., 3] > 0).any():
        return None
    if how is None:
        out = rgba
    elif how[0] == "resize":
        out = resize_rgba(rgba, how[1])
    elif how[0] == "fit_pad":
        out = fit_pad(rgba, int(how[1]), int(how[2]))
    else:
        raise ValueError(f"unknown occluder preparation {how!r}")
    if max(out.shape[:2]) > cell:
        raise ValueError(f"a prepared occluder of {out.shape[1]} x {out.shape[0]} does not fit the atlas "
                         f"cell of {cell}; use a larger cell")
    return out


def _premultiply(rgba: np.ndarray) -> np.ndarray:
    """Pillow's RGBA -> RGBa."""
    from PIL import Image

    return np.array(Image.fromarray(np.ascontiguousarray(rgba), "RGBA").convert("RGBa"))


def default_bank(folder: str | os.PathLike | None = None, cell: int = 128,
                 layout: dict[str, tuple] | None = None) -> OccluderBank:
    """The user's folder when given, else the built-in procedural bank, prepared by ``layout``."""
    if folder is not None:
        return OccluderBank.from_folder(folder, cell, layout)
    from .builtin_occluders import draw_builtin

    return OccluderBank.from_images(draw_builtin(), "built-in procedural bank", cell, layout)
