"""Contact sheets: one row per occluder kind, each sample as occluded face | mask overlay | clean face."""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from faceocc.datasets.mask_sets import mask_paths
from faceocc.ops import KIND_NAMES, FaceOccluder, Kind, load_profile
from faceocc.ops.options import Device
from faceocc.recordio import RecordDataset
from faceocc.recordio.images import read_image

LABEL_W = 64


def _sized(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resized as the loader resizes: bilinear for faces, nearest for (single-channel) masks."""
    from PIL import Image

    if image.shape[:2] != size:
        how = Image.NEAREST if image.ndim == 2 else Image.BILINEAR
        image = np.asarray(Image.fromarray(image).resize((size[1], size[0]), how))
    return image


def load_faces(data_dir: str | os.PathLike, n: int, size: tuple[int, int] = (112, 112), seed: int = 0
               ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``n`` faces drawn from the dataset (with their masked faces and masks when records exist)."""
    with RecordDataset(data_dir) as ds:
        if len(ds) == 0:
            raise ValueError(f"{data_dir} holds no image records")
        keys = np.random.default_rng(seed).choice(ds.image_keys, size=n, replace=len(ds) < n)
        faces = np.stack([_sized(read_image(ds, int(k))[1], size) for k in keys])
    paths = mask_paths(data_dir)
    if paths is None:
        return faces, None, None
    with RecordDataset(paths["mask_out"]) as mo, RecordDataset(paths["mask"]) as mk:
        masked = np.stack([_sized(read_image(mo, int(k))[1], size) for k in keys])
        masks = np.stack([_sized(read_image(mk, int(k), gray=True)[1], size) for k in keys])
    return faces, masked, masks


def _to_uint8(chw: np.ndarray, normalized: bool) -> np.ndarray:
    v = chw.astype(np.float32).transpose(1, 2, 0)
    v = v * 0.5 + 0.5 if normalized else v
    return np.clip(v * 255 + 0.5, 0, 255).astype(np.uint8)


def triptych(img: np.ndarray, msk: np.ndarray, ori: np.ndarray, normalized: bool) -> np.ndarray:
    """One sample as uint8 HWC: occluded face | clean face with occluded pixels tinted red | clean face."""
    img8, ori8 = _to_uint8(img, normalized), _to_uint8(ori, normalized)
    overlay = ori8.copy()
    hole = msk == 0
    overlay[hole] = (0.4 * overlay[hole] + 0.6 * np.array([255, 0, 0])).astype(np.uint8)
    return np.concatenate([img8, overlay, ori8], axis=1)


def kind_sheet(rows: list[tuple[str, list[np.ndarray]]], size: tuple[int, int], per_kind: int) -> Any:
    """A PIL image with one labelled row of triptychs per kind (rows may hold fewer than ``per_kind``)."""
    from PIL import Image, ImageDraw

    h, w = size
    sheet = Image.new("RGB", (LABEL_W + per_kind * (3 * w + 8), len(rows) * (h + 4)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for r, (name, tiles) in enumerate(rows):
        draw.text((4, r * (h + 4) + h // 2 - 6), name, fill=(0, 0, 0))
        for c, tile in enumerate(tiles[:per_kind]):
            sheet.paste(Image.fromarray(tile), (LABEL_W + c * (3 * w + 8), r * (h + 4)))
    return sheet


def make_preview(data_dir: str | os.PathLike, out: str | os.PathLike, profile: str = "ms1m",
                 device: Device = "cpu", occluders: str | None = None, per_kind: int = 4, seed: int = 0,
                 size: tuple[int, int] = (112, 112)) -> Path:
    """Write a PNG contact sheet for every kind the dataset allows; returns its path."""
    faces, masked, masks = load_faces(data_dir, per_kind * len(Kind), size, seed)
    base = load_profile(profile)
    kinds = [k for k in Kind if k != Kind.MASK3D or masks is not None]
    rows = []
    for r, kind in enumerate(kinds):
        only = dataclasses.replace(base, kinds={KIND_NAMES[kind]: 1.0})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            occ = FaceOccluder(profile=only, occluders=occluders, size=size, device=device, seed=seed + r)
        sel = slice(r * per_kind, (r + 1) * per_kind)
        args = (masked[sel], masks[sel]) if kind == Kind.MASK3D else (None, None)
        if device == "gpu":
            import cupy as cp

            result = occ(cp.asarray(faces[sel]), *(None if a is None else cp.asarray(a) for a in args))
            result = {k: cp.asnumpy(v) for k, v in result.items()}
        else:
            result = occ(faces[sel], *args)
        rows.append((KIND_NAMES[kind], [triptych(result["img"][c], result["msk"][c], result["ori"][c],
                                                 base.normalize) for c in range(per_kind)]))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    kind_sheet(rows, size, per_kind).save(out)
    return out


def make_mask_sheet(data_dir: str | os.PathLike, out: str | os.PathLike, count: int = 32, seed: int = 0,
                    columns: int = 8, size: tuple[int, int] = (112, 112)) -> Path:
    """A PNG of ``count`` faces from the offline renders: masked face | mask | face."""
    from PIL import Image

    if mask_paths(data_dir) is None:
        raise ValueError(f"{data_dir} has no mask_out/mask records; run `faceocc render {data_dir}` first")
    faces, masked, masks = load_faces(data_dir, count, size, seed)
    h, w = size
    rows = -(-count // columns)
    sheet = Image.new("RGB", (columns * (3 * w + 6), rows * (h + 6)), (255, 255, 255))
    for i in range(count):
        tile = np.concatenate([masked[i], np.repeat(masks[i][..., None], 3, axis=2), faces[i]], axis=1)
        sheet.paste(Image.fromarray(tile), ((i % columns) * (3 * w + 6), (i // columns) * (h + 6)))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
