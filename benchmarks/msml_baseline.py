"""The baseline users have today: MSML's augmentation per sample on the CPU, in a PyTorch ``Dataset``
served by a ``DataLoader`` with one worker per core.

It does what MSML's code does (``datasets/augment/rand_occ.py``, ``datasets/load_dataset.py``), with the
libraries MSML calls: OpenCV fills the ellipse and the polygon, Pillow resizes the occluder images,
NumPy (float16 maps, as MSML) does the face lighting and the mask-pixel augmentation. The numbers come
from the same :class:`ops.profiles.Profile` faceocc samples from, so both draw from one distribution;
``benchmarks/msml_stats.py --baseline`` checks it against the statistics of MSML's own run. It is a
benchmark baseline, not a product path. The occluder images are prepared once per worker and kept in
memory, as MSML preloads them.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from faceocc.ops import KIND_NAMES, load_profile
from faceocc.ops.atlas import folder_images
from faceocc.ops.profiles import Profile

from faceocc.datasets.mask_sets import mask_paths
from faceocc.recordio import RecordDataset, class_of


def _prepared(occluders: str | os.PathLike | None, profile: Profile) -> dict[str, list[Any]]:
    """The occluder images as MSML preloads them: glasses and scarves resized whole, objects fitted into
    a square (aspect kept) and padded by torchvision 0.8.2's centre crop (Pillow fills with zeros)."""
    from PIL import Image

    if occluders is None:
        from faceocc.ops.builtin_occluders import draw_builtin

        images = draw_builtin()
    else:
        images = folder_images(occluders)
    out: dict[str, list[Any]] = {}
    for group, arrays in images.items():
        prepared = []
        for rgba in arrays:
            im = Image.fromarray(rgba, "RGBA")
            if group in ("glasses", "eyeglasses"):
                im = im.resize(tuple(profile.glasses.pre_size))
            elif group == "scarf":
                im = im.resize(tuple(profile.scarf.pre_size))
            else:
                side, bias = int(profile.object.size), int(profile.object.pad_bias)
                ratio = max(im.width / side, im.height / side)
                im = im.resize((int(im.width / ratio), int(im.height / ratio)))
                left, top = int((im.width - side + bias) * 0.5), int((im.height - side + bias) * 0.5)
                im = im.crop((left, top, left + side, top + side))
            prepared.append(im)
        if prepared:
            out[group] = prepared
    return out


class MsmlAugment:
    """MSML's augmentation of one aligned uint8 RGB face at a time (``size = (H, W)``)."""

    def __init__(self, profile: str | Profile = "ms1m", occluders: str | os.PathLike | None = None,
                 size: tuple[int, int] = (112, 112), seed: int = 0, flip_p: float | None = None) -> None:
        self.profile = load_profile(profile)
        self.flip_p = self.profile.flip_p if flip_p is None else flip_p
        self.size = tuple(size)
        self.occluders = occluders
        self.rng = np.random.default_rng(seed)
        self._groups: dict[str, list[Any]] | None = None

    @property
    def groups(self) -> dict[str, list[Any]]:
        if self._groups is None:                 # prepared in the worker, after the fork
            self._groups = _prepared(self.occluders, self.profile)
        return self._groups

    # -- the six occluders: (occluded face, mask 255 clean / 0 occluded) ---------------------------------

    def occlude(self, face: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """``face`` with one occluder of ``kind`` drawn on it, and its mask."""
        img = face.copy()
        msk = np.full(face.shape[:2], 255, np.uint8)
        if kind != "none":
            getattr(self, f"_{kind}")(img, msk)
        return img, msk

    def _int(self, lo: int, hi: int) -> int:
        """Uniform integer in [lo, hi) (numpy's randint)."""
        return int(self.rng.integers(lo, hi))

    def _colour(self, lo: int, hi: int) -> np.ndarray:
        return np.array([self._int(lo, hi + 1) for _ in range(3)], np.uint8)

    def _rectangle(self, img: np.ndarray, msk: np.ndarray) -> None:
        h, w = msk.shape
        c = self.profile.rectangle
        ratio = self._int(c.area_percent[0], c.area_percent[1] + 1) * 0.01
        size = int(w * h * ratio)
        rw = self._int(int(w * ratio) + 1, w + 1)
        rh = int(size / rw)
        x, y = self._int(0, w - rw + 1), self._int(0, h - rh + 1)
        img[y:y + rh, x:x + rw] = self._colour(*c.colour)
        msk[y:y + rh, x:x + rw] = 0

    def _fill(self, img: np.ndarray, msk: np.ndarray, shape: np.ndarray, colour: tuple[int, int]) -> None:
        img[shape > 0] = self._colour(*colour)
        msk[shape > 0] = 0

    def _ellipse(self, img: np.ndarray, msk: np.ndarray) -> None:
        import cv2

        h, w = msk.shape
        c = self.profile.ellipse
        cy, cx = self._int(int(c.centre[0] * h), int(c.centre[1] * h)), self._int(int(c.centre[0] * w),
                                                                                  int(c.centre[1] * w))
        b = self._int(int(c.min_semi_axis * h / 112), min(cy, h - cy))
        a = int(h * w * self.rng.uniform(*c.area_ratio) / (c.pi * b))
        shape = np.zeros((h, w), np.uint8)
        cv2.ellipse(shape, (cx, cy), (a, b), 0, 0, 360, 255, -1)
        self._fill(img, msk, shape, c.colour)

    def _polygon(self, img: np.ndarray, msk: np.ndarray) -> None:
        import cv2

        h, w = msk.shape
        c = self.profile.polygon
        n = self._int(c.points[0], c.points[1] + 1)
        cx, cy = self._int(int(c.centre[0] * w), int(c.centre[1] * w)), self._int(int(c.centre[0] * h),
                                                                                  int(c.centre[1] * h))
        big = self._int(int(c.radius[0] * h), int(c.radius[1] * h))
        small = big / self.rng.uniform(*c.inner_divisor)
        outer = inner = 0.0
        points = [(int(cx + big * math.cos(outer)), int(cy + big * math.sin(outer)))]
        for _ in range(n):
            outer += 2 * math.pi / n * self.rng.uniform(*c.outer_step)
            points.append((int(cx + big * math.cos(outer)), int(cy + big * math.sin(outer))))
            if self.rng.random() > 1 - c.inner_p:
                inner += 2 * math.pi / n * self.rng.uniform(*c.inner_step)
                points.append((int(cx + small * math.cos(inner)), int(cy + small * math.sin(inner))))
        shape = np.zeros((h, w), np.uint8)
        cv2.fillPoly(shape, np.array([points], np.int32), 255)
        self._fill(img, msk, shape, c.colour)

    def _pick(self, *groups: str) -> Any:
        have = [g for g in groups if g in self.groups]
        items = self.groups[have[0]]
        return items[self._int(0, len(items))]

    def _paste(self, img: np.ndarray, msk: np.ndarray, occ: Any, x: int, y: int, replace_alpha: int,
               mask_alpha: int) -> None:
        """Replace the face by the occluder's RGB where alpha > replace_alpha, mask where alpha >
        mask_alpha; the occluder is cut at the image border."""
        h, w = msk.shape
        rgba = np.asarray(occ)[: max(0, h - y), : max(0, w - x)]
        alpha = rgba[..., 3]
        region = img[y:y + rgba.shape[0], x:x + rgba.shape[1]]
        region[alpha > replace_alpha] = rgba[..., :3][alpha > replace_alpha]
        msk[y:y + rgba.shape[0], x:x + rgba.shape[1]][alpha > mask_alpha] = 0

    def _step(self, spec: tuple[float, float, int, int], extent: int) -> int:
        base, step, lo, hi = spec
        return int((base + self._int(lo, hi + 1) * step) * extent)

    def _glasses(self, img: np.ndarray, msk: np.ndarray) -> None:
        h, w = msk.shape
        c = self.profile.glasses
        groups = ("eyeglasses", "glasses") if self.rng.random() < c.eyeglasses_p else ("glasses", "eyeglasses")
        occ = self._pick(*groups)
        size = (int(w * c.size[0] * self.rng.uniform(*c.scale)), int(h * c.size[1] * self.rng.uniform(*c.scale)))
        occ = occ.resize(size)
        self._paste(img, msk, occ, self._step(c.x, w), self._step(c.y, h), c.replace_alpha, c.mask_alpha)

    def _scarf(self, img: np.ndarray, msk: np.ndarray) -> None:
        w = msk.shape[1]
        c = self.profile.scarf
        occ = self._pick("scarf")
        side = c.size * w / 112
        occ = occ.resize((int(side * self.rng.uniform(*c.scale)), int(side * self.rng.uniform(*c.scale))))
        self._paste(img, msk, occ, self._step(c.x, w), self._step(c.y, w), c.replace_alpha, c.mask_alpha)

    def _object(self, img: np.ndarray, msk: np.ndarray) -> None:
        h, w = msk.shape
        c = self.profile.object
        occ = self._pick("object")
        side = c.size * w / 112
        occ = occ.resize((int(side * self.rng.uniform(*c.scale)), int(side * self.rng.uniform(*c.scale))))
        lo, hi = c.position_percent
        x, y = int(self._int(lo, hi + 1) * 0.01 * w), int(self._int(lo, hi + 1) * 0.01 * h)
        self._paste(img, msk, occ, x, y, c.replace_alpha, c.mask_alpha)

    # -- pixel steps, in [0, 1] units, CHW float32 ---------------------------------------------------------

    def _gauss(self, width: int, height: int, cx: float, cy: float, sigma: float) -> np.ndarray:
        """MSML's ``_get_gauss``: distances truncated to int16 per axis, float32 map."""
        x = (np.arange(width) - cx).astype(np.int16)[None, :].repeat(height, 0)
        y = (np.arange(height) - cy).astype(np.int16)[:, None].repeat(width, 1)
        return np.exp(-0.5 * np.sqrt(x ** 2 + y ** 2) ** 2 / sigma ** 2)

    def light(self, img: np.ndarray) -> np.ndarray:
        """Face lighting: ``img * light * gain`` divided by its maximum (no clipping before it)."""
        c = self.profile.lighting
        if self.rng.random() >= c.p:
            return img
        _, h, w = img.shape
        cx, cy = w * self.rng.random(), h * self.rng.random()
        light = self._gauss(w, h, cx, cy, c.sigma * w / 112).astype(np.float16) * np.float16(self.rng.uniform(*c.gain))
        lit = img * light.astype(np.float32)
        return lit / lit.max()

    def mask_offset(self, msk: np.ndarray) -> np.ndarray:
        """The mask-pixel offset [3, H, W] (float32) MSML subtracts, for mask pixels ``msk == 0``."""
        c = self.profile.mask3d
        h, w = msk.shape
        sx, sy = w / 112, h / 112
        names = ["light", "noise", "block"]
        probs = np.asarray([c.modes.get(k, 0.0) for k in names])
        mode = names[int(self.rng.choice(3, p=probs / probs.sum()))]
        left = int((c.left[0] + self._int(c.left[1], c.left[2] + 1)) * sx)
        right = int((c.right[0] + self._int(c.right[1], c.right[2] + 1)) * sx)
        top, bottom = int(c.rows[0] * sy), int(c.rows[1] * sy)
        rescale = np.zeros((h, w), np.float16)
        offset = np.zeros((3, h, w), np.float16)
        offset[:] = (msk == 0).astype(np.float16)
        if mode == "light":
            bw, bh = right - left, bottom - top
            cx, cy = left + bw * self.rng.random(), top + bh * self.rng.random()
            edge = max(bw, bh)
            sigma = self.rng.uniform(int(edge / c.light_sigma), int(edge * c.light_sigma))
            sign = self._int(0, 2) * 2 - 1
            rescale[top:bottom, left:right] = (self._gauss(bw, bh, cx, cy, sigma) - 0.5) * 2 * c.light_amplitude * sign
        elif mode == "noise":
            rescale[top:bottom, left:right] = self.rng.standard_normal((bottom - top, right - left)) * c.noise_std
        else:
            btop = int((c.block_top[0] + self._int(c.block_top[1], c.block_top[2] + 1)) * sy)
            bbottom = int((c.block_bottom[0] + self._int(c.block_bottom[1], c.block_bottom[2] + 1)) * sy)
            block = np.zeros((h, w), np.float16)
            block[btop:bbottom, left:right] = (self._int(0, 2) * 2 - 1) * c.block_value
            offset = offset * block
        if mode != "block":
            for ch in range(3):
                offset[ch] = offset[ch] * rescale if self.rng.random() < c.channel_p else 0
        return offset.astype(np.float32)

    def _normalize(self, chw: np.ndarray) -> np.ndarray:
        return (chw - 0.5) / 0.5 if self.profile.normalize else chw

    def mask3d_pair(self, masked: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A masked face record through lighting and the mask-pixel augmentation (no flip): normalized
        img, the same without the augmentation, and msk (1 clean, 0 mask)."""
        msk = np.where(mask <= self.profile.mask3d.threshold, 0, 1).astype(np.int32)
        lit = self.light(masked.transpose(2, 0, 1).astype(np.float32) / 255)
        return self._normalize(lit - self.mask_offset(msk)), self._normalize(lit), msk

    def __call__(self, face: np.ndarray, masked: np.ndarray | None = None, mask: np.ndarray | None = None,
                 kind: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(img [C, H, W], msk [H, W] int32, ori [C, H, W]) of one face; ``masked``/``mask`` are its 3D
        mask record (needed when the drawn kind is mask3d)."""
        from PIL import Image

        p = self.profile
        probs = np.asarray(p.kind_probabilities())
        if kind is None:
            kind = KIND_NAMES[int(self.rng.choice(len(probs), p=probs / probs.sum()))]
        if kind == "mask3d":
            img, msk = masked, np.where(mask <= p.mask3d.threshold, 0, 255).astype(np.uint8)
        else:
            img, msk = self.occlude(face, kind)
        ori = face
        if p.ori == "occluded":
            probs[-1] = 0
            ori = self.occlude(face, KIND_NAMES[int(self.rng.choice(len(probs), p=probs / probs.sum()))])[0]
        if self.rng.random() < self.flip_p:
            img, msk, ori = img[:, ::-1], msk[:, ::-1], ori[:, ::-1]
        if p.grayscale:
            img, ori = (np.asarray(Image.fromarray(np.ascontiguousarray(a)).convert("L"))[..., None]
                        for a in (img, ori))
        chw = self.light(np.ascontiguousarray(img.transpose(2, 0, 1), np.float32) / 255)
        mask01 = (msk == 255).astype(np.int32)
        if kind == "mask3d":
            offset = self.mask_offset(mask01)
            if p.grayscale:
                offset = ((0.2989 * offset[0] + 0.5870 * offset[1] + 0.1140 * offset[2]) / p.gray_offset_divisor)[None]
            chw = chw - offset
        ori_chw = np.ascontiguousarray(ori.transpose(2, 0, 1), np.float32) / 255
        reps = p.channels() // chw.shape[0]
        return (np.repeat(self._normalize(chw), reps, 0).astype(np.float32), np.ascontiguousarray(mask01),
                np.repeat(self._normalize(ori_chw), reps, 0).astype(np.float32))


class MsmlStyleDataset:
    """``dataset[i]`` -> ``(img, msk, ori, label)`` torch tensors for image ``i`` of a record dataset,
    augmented by :class:`MsmlAugment`."""

    def __init__(self, data_dir: str | os.PathLike, profile: str | Profile = "ms1m",
                 occluders: str | os.PathLike | None = None, size: tuple[int, int] = (112, 112),
                 seed: int = 0) -> None:
        self.data_dir = Path(data_dir)
        with RecordDataset(self.data_dir) as ds:
            self.keys = ds.image_keys.copy()
        self.has_masks = mask_paths(self.data_dir) is not None
        prof = load_profile(profile)
        self.profile = prof if self.has_masks else prof.without_mask3d()
        self.size = tuple(size)
        self.seed = seed
        self.augment = MsmlAugment(self.profile, occluders, self.size, seed)
        self._files: dict[str, RecordDataset] | None = None

    def __len__(self) -> int:
        return len(self.keys)

    def worker_init(self, worker_id: int) -> None:
        """``DataLoader(worker_init_fn=...)``: a generator of its own per worker."""
        self.augment.rng = np.random.default_rng([self.seed, worker_id])

    def _open(self) -> dict[str, RecordDataset]:
        if self._files is None:       # opened in the worker, after the fork
            self._files = {"train": RecordDataset(self.data_dir)}
            if self.has_masks:
                self._files.update({k: RecordDataset(p) for k, p in mask_paths(self.data_dir).items()})
        return self._files

    def _image(self, name: str, key: int, mode: str) -> tuple[np.ndarray, int]:
        from PIL import Image

        header, payload = self._open()[name].read(key)
        im = Image.open(io.BytesIO(payload)).convert(mode)
        if im.size != (self.size[1], self.size[0]):
            im = im.resize((self.size[1], self.size[0]), Image.BILINEAR)
        return np.asarray(im), class_of(header)

    def __getitem__(self, index: int) -> tuple:
        import torch

        key = int(self.keys[index])
        face, label = self._image("train", key, "RGB")
        masked = mask = None
        if self.has_masks:
            masked, mask = self._image("mask_out", key, "RGB")[0], self._image("mask", key, "L")[0]
        img, msk, ori = self.augment(face, masked, mask)
        return torch.from_numpy(img), torch.from_numpy(msk), torch.from_numpy(ori), torch.tensor(label)


def msml_loader(data_dir: str | os.PathLike, batch_size: int, workers: int | None = None,
                profile: str | Profile = "ms1m", occluders: str | os.PathLike | None = None, seed: int = 0) -> Any:
    """A shuffling ``torch.utils.data.DataLoader`` over :class:`MsmlStyleDataset` with ``workers``
    processes (default: one per core), as a training script would build it."""
    import torch

    ds = MsmlStyleDataset(data_dir, profile, occluders, seed=seed)
    workers = (os.cpu_count() or 1) if workers is None else workers
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                                       drop_last=True, worker_init_fn=ds.worker_init if workers else None,
                                       persistent_workers=workers > 0,
                                       generator=torch.Generator().manual_seed(seed))
