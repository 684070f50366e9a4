"""The occluder bank: RGBA occluder images prepared once as MSML prepares them and packed into a
fixed-size atlas.

Preparation (the profile's :meth:`~ops.profiles.Profile.atlas_layout`): glasses and scarves are
resized, whole, to one size (Pillow bicubic on premultiplied RGBA, as MSML's ``Image.resize``);
objects are fitted whole into a square keeping their aspect and padded with transparent pixels,
never cropped. Every entry then sits in the top-left corner of a ``cell x cell`` slot, RGB
premultiplied by alpha (so bilinear sampling has no dark fringes). The same uint8 array serves the
NumPy twin and, copied once to the device, the CUDA kernel.

Loading a folder is bounded: only regular files of at most :data:`MAX_FILE_BYTES`, no image over
``max_pixels`` (16 MP; read from its header, never decoded), each reduced on load so that its longer side
is at most :data:`LOAD_MAX_SIDE` (the atlas needs 1024 at most), one image at a time; files left out
(unreadable, too large, fully transparent) are named in one warning with their count.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceocc.recordio.files import read_regular
from faceocc.recordio.images import MAX_PIXELS, pixel_problem

GROUPS = ("glasses", "eyeglasses", "scarf", "object")
# MSML's folder names first (its eyeglasses folder is spelt "eleglasses_crop")
FOLDERS = {
    "glasses": ("glasses_crop", "glasses"),
    "eyeglasses": ("eleglasses_crop", "eyeglasses_crop", "eyeglasses"),
    "scarf": ("scarf_crop", "scarf", "scarves"),
    "object": ("object_train", "object", "objects"),
}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
MAX_FILE_BYTES = 64 << 20      # an occluder or texture file longer than this is left out
LOAD_MAX_SIDE = 2048           # images are reduced on load to at most this longer side


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
    def from_images(cls, images: dict[str, Iterable[np.ndarray]], source: str, cell: int = 128,
                    layout: dict[str, tuple] | None = None) -> OccluderBank:
        """Prepare straight-alpha RGBA uint8 images by group (``layout``, default: the default
        profile's) and pack them into an atlas; each group's images may come one at a time (an
        iterator), so that only prepared entries are held."""
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
    def from_folder(cls, root: str | os.PathLike, cell: int = 128, layout: dict[str, tuple] | None = None,
                    max_pixels: int | None = MAX_PIXELS) -> OccluderBank:
        """Load MSML's folder layout: ``glasses_crop/``, ``eleglasses_crop/``, ``scarf_crop/``,
        ``object_train/`` (other spellings in ``FOLDERS`` too), one image at a time (see the module
        docstring for the bounds; ``max_pixels``: None for no pixel limit).

        Example::

            bank = OccluderBank.from_folder("occluders/", max_pixels=64 << 20)   # larger photos allowed
            loader = FaceOcclusionLoader("data/casia", 256, occluders=bank)
        """
        files = _folder_files(root)
        skipped: list[str] = []
        try:
            bank = cls.from_images({g: _loaded(fs, skipped, max_pixels) for g, fs in files.items()}, str(root),
                                   cell, layout)
        except ValueError as exc:
            raise ValueError(f"{exc}{_skipped_note(skipped)}") from None
        warn_skipped(root, skipped, sum(len(fs) for fs in files.values()))
        return bank


def _folder_files(root: str | os.PathLike) -> dict[str, list[Path]]:
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"occluder folder not found: {root}")
    files: dict[str, list[Path]] = {}
    for group, names in FOLDERS.items():
        folder = next((root / n for n in names if (root / n).is_dir()), None)
        if folder is not None:
            files[group] = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if not any(files.values()):
        wanted = ", ".join(n[0] for n in FOLDERS.values())
        raise ValueError(f"no usable occluder image in {root} (expected sub-folders {wanted} "
                         "holding PNGs with alpha, or images on a flat background)")
    return files


def _loaded(files: list[Path], skipped: list[str], max_pixels: int | None = MAX_PIXELS) -> Iterator[np.ndarray]:
    for f in files:
        try:
            yield load_rgba(f, max_pixels=max_pixels)
        except ValueError as exc:
            skipped.append(str(exc))


def _skipped_list(skipped: list[str]) -> str:
    return "; ".join(skipped[:5]) + ("; ..." if len(skipped) > 5 else "")


def _skipped_note(skipped: list[str]) -> str:
    return f" ({len(skipped)} file(s) left out: {_skipped_list(skipped)})" if skipped else ""


def warn_skipped(where: str | os.PathLike, skipped: list[str], total: int) -> None:
    """One warning naming the files of ``where`` that were left out (the first five), and how many."""
    if skipped:
        warnings.warn(f"{len(skipped)} of {total} images in {where} were left out: {_skipped_list(skipped)}",
                      stacklevel=3)


def folder_images(root: str | os.PathLike, max_pixels: int | None = MAX_PIXELS) -> dict[str, list[np.ndarray]]:
    """Straight-alpha RGBA occluders by group from MSML's folder layout (see ``FOLDERS``), all held (the
    MSML baseline wants them whole); bounded and reported as :meth:`OccluderBank.from_folder` loads them."""
    files = _folder_files(root)
    skipped: list[str] = []
    images = {g: list(_loaded(fs, skipped, max_pixels)) for g, fs in files.items()}
    if not any(images.values()):
        raise ValueError(f"no usable occluder image in {root}{_skipped_note(skipped)}")
    warn_skipped(root, skipped, sum(len(fs) for fs in files.values()))
    return images


def load_rgba(path: Path, key_out: bool = True, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """An image as straight-alpha RGBA; without alpha, a flat background is keyed out (``key_out``)
    or the whole image is kept opaque. Reduced so that its longer side is at most :data:`LOAD_MAX_SIDE`.
    Raises ValueError naming the file when it is left out: not a regular file, over
    :data:`MAX_FILE_BYTES` or ``max_pixels``, unreadable, or without an opaque pixel."""
    from PIL import Image

    try:
        data = read_regular(path, MAX_FILE_BYTES, "image file")
        too_large = pixel_problem(data, max_pixels)
        if too_large:
            raise ValueError(too_large)
        with Image.open(io.BytesIO(data)) as im:
            has_alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
            factor = -(-max(im.size) // LOAD_MAX_SIDE)
            if factor > 1 and im.format == "JPEG":
                im.draft("RGB", (im.size[0] // factor, im.size[1] // factor))   # JPEG: decode reduced
            rgba_im = im.convert("RGBA")
        factor = -(-max(rgba_im.size) // LOAD_MAX_SIDE)
        rgba = np.array(rgba_im.reduce(factor) if factor > 1 else rgba_im)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(str(exc) if str(path) in str(exc) else f"{path}: {exc}") from None
    if key_out and (not has_alpha or rgba[..., 3].min() == 255):
        rgba[..., 3] = key_out_background(rgba[..., :3])
    if not (rgba[..., 3] > 0).any():
        raise ValueError(f"{path}: fully transparent, nothing to paste")
    return rgba


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
