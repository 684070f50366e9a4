"""The baseline users have today: MSML's augmentation per sample on the CPU, in a PyTorch ``Dataset``
served by a ``DataLoader`` with one worker per core.

Written from the description in DESIGN.md ("MSML's augmentation, as numbers"), with PIL per sample
as MSML does; the numbers come from the same :class:`ops.profiles.Profile` faceocc samples from, so
both draw from one distribution. It is a benchmark baseline, not a product path: it does not share
faceocc's bit-exact semantics (PIL rasterizes the shapes), only its distributions. The occluder
images are decoded once per worker and kept in memory, which favours the baseline.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from dali_pipes.dataset_info import mask_paths
from dali_pipes.recordio import RecordDataset, class_of
from ops import KIND_NAMES, load_profile
from ops.atlas import folder_images
from ops.profiles import Profile


def _pil_groups(occluders: str | os.PathLike | None) -> dict[str, list[Any]]:
    from PIL import Image

    if occluders is None:
        from ops.builtin_occluders import draw_builtin

        images = draw_builtin()
    else:
        images = folder_images(occluders)
    return {g: [Image.fromarray(a, "RGBA") for a in lst] for g, lst in images.items() if lst}


class MsmlStyleDataset:
    """``dataset[i]`` -> ``(img, msk, ori, label)`` torch tensors for image ``i`` of a record dataset:
    one occluder drawn with MSML's probabilities, resize, flip, face lighting, normalization."""

    def __init__(self, data_dir: str | os.PathLike, profile: str | Profile = "ms1m",
                 occluders: str | os.PathLike | None = None, size: tuple[int, int] = (112, 112),
                 seed: int = 0) -> None:
        self.data_dir = Path(data_dir)
        with RecordDataset(self.data_dir) as ds:
            self.keys = ds.image_keys.copy()
        self.has_masks = mask_paths(self.data_dir) is not None
        prof = load_profile(profile)
        self.profile = prof if self.has_masks else prof.without_mask3d()
        probs = np.asarray(self.profile.kind_probabilities())
        self.kind_p = probs / probs.sum()
        self.occluders = occluders
        self.size = tuple(size)
        self.seed = seed
        self._files: dict[str, RecordDataset] | None = None
        self._groups: dict[str, list[Any]] | None = None
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.keys)

    def worker_init(self, worker_id: int) -> None:
        """``DataLoader(worker_init_fn=...)``: a generator of its own per worker."""
        self.rng = np.random.default_rng([self.seed, worker_id])

    def _open(self) -> dict[str, RecordDataset]:
        if self._files is None:       # opened in the worker, after the fork
            self._files = {"train": RecordDataset(self.data_dir)}
            if self.has_masks:
                self._files.update({k: RecordDataset(p) for k, p in mask_paths(self.data_dir).items()})
            self._groups = _pil_groups(self.occluders)
        return self._files

    def _image(self, name: str, key: int, mode: str) -> tuple[Any, int]:
        from PIL import Image

        header, payload = self._open()[name].read(key)
        return Image.open(io.BytesIO(payload)).convert(mode), class_of(header)

    def __getitem__(self, index: int) -> tuple:
        import torch
        from PIL import Image

        key = int(self.keys[index])
        face, label = self._image("train", key, "RGB")
        if face.size != (self.size[1], self.size[0]):
            face = face.resize((self.size[1], self.size[0]), Image.BILINEAR)
        kind = KIND_NAMES[self.rng.choice(len(self.kind_p), p=self.kind_p)]
        ori = face.copy()
        mask = Image.new("L", face.size, 255)
        if kind == "mask3d":
            face = self._image("mask_out", key, "RGB")[0].resize(face.size, Image.BILINEAR)
            mask = self._image("mask", key, "L")[0].resize(face.size, Image.NEAREST)
            face = self._mask_pixels(face, mask)
        elif kind != "none":
            getattr(self, f"_{kind}")(face, mask)
        if self.rng.random() < self.profile.flip_p:
            face, mask, ori = (im.transpose(Image.FLIP_LEFT_RIGHT) for im in (face, mask, ori))
        img = self._light(np.asarray(face, np.float32) / 255)
        msk = torch.from_numpy((np.asarray(mask) >= 128).astype(np.int32))
        return self._tensor(img), msk, self._tensor(np.asarray(ori, np.float32) / 255), torch.tensor(label)

    def _tensor(self, hwc: np.ndarray) -> Any:
        import torch

        if self.profile.normalize:
            hwc = (hwc - 0.5) / 0.5
        return torch.from_numpy(np.ascontiguousarray(hwc.transpose(2, 0, 1), np.float32))

    def _colour(self, lo: int, hi: int) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.rng.integers(lo, hi + 1, 3))

    # -- the six occluders, drawn onto the face (PIL, in place) and onto the mask -------------------

    def _rectangle(self, face: Any, mask: Any) -> None:
        from PIL import ImageDraw

        w, h = face.size
        c = self.profile.rectangle
        r = self.rng.integers(c.area_percent[0], c.area_percent[1] + 1) / 100
        rw = int(self.rng.integers(int(w * r) + 1, w + 1))
        rh = int(w * h * r / rw)
        x, y = int(self.rng.integers(0, w - rw + 1)), int(self.rng.integers(0, h - rh + 1))
        if rh > 0:
            ImageDraw.Draw(face).rectangle([x, y, x + rw - 1, y + rh - 1], fill=self._colour(*c.colour))
            ImageDraw.Draw(mask).rectangle([x, y, x + rw - 1, y + rh - 1], fill=0)

    def _ellipse(self, face: Any, mask: Any) -> None:
        from PIL import ImageDraw

        w, h = face.size
        c = self.profile.ellipse
        cy, cx = self.rng.uniform(c.centre[0] * h, c.centre[1] * h), self.rng.uniform(c.centre[0] * w, c.centre[1] * w)
        ah = self.rng.uniform(c.min_semi_axis, max(c.min_semi_axis, min(cy, h - cy)))
        aw = w * h * self.rng.uniform(*c.area_ratio) / (math.pi * ah)
        box = [cx - aw, cy - ah, cx + aw, cy + ah]
        ImageDraw.Draw(face).ellipse(box, fill=self._colour(*c.colour))
        ImageDraw.Draw(mask).ellipse(box, fill=0)

    def _polygon(self, face: Any, mask: Any) -> None:
        from PIL import ImageDraw

        w, h = face.size
        c = self.profile.polygon
        n = int(self.rng.integers(c.points[0], c.points[1] + 1))
        radius = self.rng.uniform(c.radius[0] * h, c.radius[1] * h)
        cx, cy = self.rng.uniform(c.centre[0] * w, c.centre[1] * w), self.rng.uniform(c.centre[0] * h, c.centre[1] * h)
        points, angle = [], self.rng.uniform(0, 2 * math.pi)
        for _ in range(n):
            points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
            if self.rng.random() < c.inner_p:
                inner = radius / self.rng.uniform(*c.inner_divisor)
                a = angle + math.pi / n * self.rng.uniform(*c.inner_step)
                points.append((cx + inner * math.cos(a), cy + inner * math.sin(a)))
            angle += 2 * math.pi / n * self.rng.uniform(*c.outer_step)
        ImageDraw.Draw(face).polygon(points, fill=self._colour(*c.colour))
        ImageDraw.Draw(mask).polygon(points, fill=0)

    def _pick(self, *groups: str) -> Any:
        have = [g for g in groups if g in self._groups]
        group = have[int(self.rng.integers(len(have)))]
        items = self._groups[group]
        return items[int(self.rng.integers(len(items)))]

    def _paste(self, face: Any, mask: Any, occ: Any, x: int, y: int, replace_alpha: int | None,
               mask_alpha: int) -> None:
        alpha = np.asarray(occ.getchannel("A"))
        from PIL import Image

        paste = Image.fromarray(((alpha > replace_alpha) * 255).astype(np.uint8)) if replace_alpha is not None \
            else occ.getchannel("A")
        face.paste(occ.convert("RGB"), (x, y), paste)
        mask.paste(0, (x, y), Image.fromarray(((alpha > mask_alpha) * 255).astype(np.uint8)))

    def _step(self, spec: tuple[float, float, int, int], extent: int) -> int:
        base, step, lo, hi = spec
        return int((base + step * int(self.rng.integers(lo, hi + 1))) * extent)

    def _glasses(self, face: Any, mask: Any) -> None:
        from PIL import Image

        w, h = face.size
        c = self.profile.glasses
        groups = ("eyeglasses", "glasses") if self.rng.random() < c.eyeglasses_p else ("glasses", "eyeglasses")
        size = (max(1, int(c.size[0] * w * self.rng.uniform(*c.scale))),
                max(1, int(c.size[1] * h * self.rng.uniform(*c.scale))))
        occ = self._pick(*groups).resize(size, Image.BILINEAR)
        self._paste(face, mask, occ, self._step(c.x, w), self._step(c.y, h), c.replace_alpha, c.mask_alpha)

    def _scarf(self, face: Any, mask: Any) -> None:
        from PIL import Image

        w, _ = face.size
        c = self.profile.scarf
        side = c.size * w / 112
        size = (max(1, int(side * self.rng.uniform(*c.scale))), max(1, int(side * self.rng.uniform(*c.scale))))
        occ = self._pick("scarf").resize(size, Image.BILINEAR)
        self._paste(face, mask, occ, self._step(c.x, w), self._step(c.y, w), None, c.mask_alpha)

    def _object(self, face: Any, mask: Any) -> None:
        from PIL import Image, ImageOps

        w, h = face.size
        c = self.profile.object
        side = max(1, int(c.size * w / 112))
        occ = ImageOps.fit(self._pick("object"), (side, side), Image.BILINEAR)
        occ = occ.resize((max(1, int(side * self.rng.uniform(*c.scale))),
                          max(1, int(side * self.rng.uniform(*c.scale)))), Image.BILINEAR)
        lo, hi = c.position_percent
        x, y = (int(self.rng.integers(lo, hi + 1) / 100 * e) for e in (w, h))
        self._paste(face, mask, occ, x, y, None, c.mask_alpha)

    # -- pixel-level steps ----------------------------------------------------------------------------

    def _mask_pixels(self, face: Any, mask: Any) -> Any:
        from PIL import Image

        c = self.profile.mask3d
        img = np.asarray(face, np.float32).copy()
        h, w = img.shape[:2]
        bw, bh = (max(1, int(self.rng.uniform(*c.box_size) * e)) for e in (w, h))
        x0, y0 = int(self.rng.integers(0, w - bw + 1)), int(self.rng.integers(0, h - bh + 1))
        sel = np.zeros((h, w), bool)
        sel[y0:y0 + bh, x0:x0 + bw] = True
        sel &= np.asarray(mask) < 128
        modes = ["light", "noise", "block"]
        probs = np.asarray([c.modes.get(m, 0.0) for m in modes])
        mode = modes[self.rng.choice(3, p=probs / probs.sum())]
        jitter = np.where(self.rng.random(3) < c.jitter_p, self.rng.uniform(*c.jitter, 3), 1.0)
        if mode == "light":
            yy, xx = np.mgrid[0:h, 0:w]
            cx, cy = x0 + self.rng.random() * bw, y0 + self.rng.random() * bh
            sigma = self.rng.uniform(*c.light_sigma) * w / 112
            light = self.rng.uniform(*c.light_gain) * 255 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
            img[sel] += light[sel][:, None] * jitter
        elif mode == "noise":
            img[sel] += self.rng.normal(0, self.rng.uniform(*c.noise_sigma), (int(sel.sum()), 3)) * jitter
        else:
            img[sel] = 255.0 if self.rng.random() < 0.5 else 0.0
        return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))

    def _light(self, face: np.ndarray) -> np.ndarray:
        c = self.profile.lighting
        if self.rng.random() >= c.p:
            return face
        h, w = face.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w]
        cx, cy = self.rng.uniform(0, w), self.rng.uniform(0, h)
        sigma = c.sigma * w / 112
        light = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2)) * self.rng.uniform(*c.gain)
        lit = np.minimum(face * light[..., None], 1.0)
        return lit / max(float(lit.max()), 1e-6)


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
