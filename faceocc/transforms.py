"""``MSMLOcclusion``: MSML's occlusion as a step of a torchvision ``transforms.v2`` pipeline.

For per-sample pipelines (a PyTorch ``Dataset`` with transforms, as MSML's own loader): one aligned face in,
``(occluded face, mask)`` out. A thin layer over :func:`faceocc.occlude` (a batch of one, the NumPy twin on
the CPU); needs torchvision: ``pip install "faceocc[torchvision]"``.
"""

from __future__ import annotations

import os
from typing import Any

import PIL.Image
import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from faceocc.functional import SEED_BOUND, occlude
from faceocc.ops import load_profile
from faceocc.ops.atlas import OccluderBank
from faceocc.ops.profiles import Profile

WORKER_STRIDE = 0x9E3779B97F4A7C15   # odd: DataLoader workers' copies of one generator give distinct seeds


class MSMLOcclusion(torch.nn.Module):
    """MSML's occlusion of an aligned face: returns ``(image, mask)``.

    ``image`` is the occluded face in the input's type: a PIL image (RGB, or L with a one-channel grayscale
    profile), a uint8 tensor [..., C, H, W], a float tensor in [0, 1], or a ``tv_tensors.Image``, as given;
    the profile's flip and face lighting included, not normalized (add ``v2.Normalize`` for that).
    ``mask`` is a ``tv_tensors.Mask`` [..., H, W] uint8, 1 where the face is clean and 0 where occluded, in
    the output's frame, so later v2 steps (flips, crops, resizes) move it with the image. It takes one
    input, the face: put it first in a ``v2.Compose`` called on the image alone (not on ``(image, label)``
    or a dict), since its output gains the mask.

    Each call draws one seed from ``generator`` (default: torch's global generator, which the DataLoader
    seeds differently in every worker and ``torch.manual_seed`` makes repeatable); the occlusion itself is
    :func:`faceocc.occlude` of that seed. Several faces stacked in one tensor share the call's seed (one
    table, a row per face).

    Args:
        profile: a built-in profile name (``ms1m``, ``casia``, ``msml_exact``), a YAML file or a Profile.
        occluders: a folder of RGBA occluder images (MSML's layout), an OccluderBank, or None for the
            built-in procedural bank.
        generator: a ``torch.Generator`` to draw the seeds from; each DataLoader worker holds a copy of
            it, made anew every epoch, and draws from it with the worker's seed mixed in (the DataLoader's
            base seed of the epoch plus the worker's id), so that workers and epochs differ. Under
            DDP, give each rank its own generator seed (e.g. ``seed + rank``).

    Example::

        from torchvision.transforms import v2
        from faceocc.transforms import MSMLOcclusion

        pipeline = v2.Compose([MSMLOcclusion("casia"), v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                               v2.Normalize([0.5] * 3, [0.5] * 3)])
        image, mask = pipeline(pil_face)          # image [3, 112, 112] float, mask [112, 112] uint8
    """

    def __init__(self, profile: str | os.PathLike | Profile = "ms1m",
                 occluders: str | os.PathLike | OccluderBank | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.profile = load_profile(profile)
        self.occluders = occluders
        self.generator = generator

    def extra_repr(self) -> str:
        return f"occluders={self.occluders!r}, generator={'global' if self.generator is None else 'own'}"

    def seed(self) -> int:
        """The seed of the next call."""
        draw = int(torch.randint(0, SEED_BOUND, (1,), generator=self.generator).item())
        worker = torch.utils.data.get_worker_info()
        if self.generator is not None and worker is not None:
            # each worker starts every epoch from a fresh copy of the generator: worker.seed (a new base
            # seed per epoch, plus the worker's id) makes workers and epochs differ
            draw = (draw + worker.seed * WORKER_STRIDE) % SEED_BOUND
        return draw

    def forward(self, *inputs: Any) -> tuple[Any, tv_tensors.Mask]:
        if len(inputs) != 1:
            raise TypeError(f"MSMLOcclusion takes one face, not {len(inputs)} inputs: it adds the mask, so it "
                            "runs on the image alone (transform(image)), before other inputs such as labels join")
        image = inputs[0]
        if isinstance(image, PIL.Image.Image):
            faces = F.pil_to_tensor(image.convert("RGB"))[None]
        elif isinstance(image, torch.Tensor) and image.ndim >= 3 and image.shape[-3] == 3:
            faces = image.as_subclass(torch.Tensor).reshape(-1, *image.shape[-3:])
        else:
            got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise TypeError(f"MSMLOcclusion takes one RGB face: a PIL image or a tensor [..., 3, H, W], not {got}")
        out = occlude(faces, seed=self.seed(), profile=self.profile, occluders=self.occluders)
        unit = out["img"] * 0.5 + 0.5 if self.profile.normalize else out["img"]
        lead = () if isinstance(image, PIL.Image.Image) else tuple(image.shape[:-3])
        mask = tv_tensors.Mask(out["msk"].to(torch.uint8).reshape(*lead, *out["msk"].shape[1:]))
        if isinstance(image, torch.Tensor) and image.dtype.is_floating_point:
            face = unit.clamp(0, 1).to(image.dtype)
        else:
            face = unit.mul(255).round_().clamp_(0, 255).to(torch.uint8)
        face = face.reshape(*lead, *face.shape[1:])
        if isinstance(image, PIL.Image.Image):
            return F.to_pil_image(face), mask
        if isinstance(image, tv_tensors.TVTensor):
            return tv_tensors.wrap(face, like=image), mask
        return face, mask


__all__ = ["MSMLOcclusion"]
