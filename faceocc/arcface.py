"""``get_dataloader``: faceocc in InsightFace's ``recognition/arcface_torch``, in place of its own.

arcface_torch's ``train_v2.py`` builds its loader with ``dataset.get_dataloader(root_dir, local_rank,
batch_size, dali, dali_aug, seed, num_workers)``, iterates ``for _, (img, local_labels) in
enumerate(train_loader)`` and, with DALI, calls ``train_loader.reset()`` after each epoch. This function takes
the same arguments in the same order and returns a loader used the same way, over
:class:`faceocc.FaceOcclusionLoader`: the faces occluded by MSML's augmentation, a seeded global shuffle every
epoch (no ``shuffle_rec.py`` rewrite of the ``.rec``), and the same number of batches on every rank.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Literal

from faceocc.dali_pipes.loader import FaceOcclusionLoader
from faceocc.dali_pipes.placement import whole_number
from faceocc.ops.profiles import Profile

OUTPUTS = {"arcface": ("img", "label"), "msml": ("img", "msk", "ori", "label")}


class ArcFaceLoader:
    """What :func:`get_dataloader` returns: iterating gives one epoch of ``(img, local_labels)`` (or MSML's
    ``(img, msk, ori, label)``) tuples on ``device``; iterating again gives the next epoch. ``len()`` is
    batches per epoch, the same on every rank. ``loader`` is the :class:`faceocc.FaceOcclusionLoader` below
    (its ``state_dict`` / ``load_state_dict`` resume a run in the middle of an epoch)."""

    def __init__(self, loader: FaceOcclusionLoader, outputs: tuple[str, ...], device: Any) -> None:
        self.loader = loader
        self.outputs = outputs
        self.device = device

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            yield tuple(batch[name].to(self.device, non_blocking=True) for name in self.outputs)

    def set_epoch(self, epoch: int) -> None:
        """Start the next iteration at the beginning of ``epoch`` (its own permutation and occlusions).
        ``train_v2.py`` calls ``set_epoch`` only on a torch ``DataLoader``, so a run resumed at
        ``start_epoch`` must call ``train_loader.set_epoch(start_epoch)`` itself, or it replays epoch 0."""
        state = self.loader.state_dict()
        state["next_batch"] = whole_number("epoch", epoch, 0) * len(self.loader)
        self.loader.load_state_dict(state)

    def reset(self) -> None:
        """After an epoch (as ``train_v2.py`` calls it with DALI) nothing is left to do; in the middle of
        one, the rest of that epoch is dropped and the next iteration starts the next epoch."""
        state = self.loader.state_dict()
        per_epoch = len(self.loader)
        if state["next_batch"] % per_epoch:
            state["next_batch"] = (state["next_batch"] // per_epoch + 1) * per_epoch
            self.loader.load_state_dict(state)


def _device(device: str, local_rank: int) -> tuple[str, Any]:
    """(the loader's device, where the tensors go)."""
    import torch

    if device not in ("auto", "gpu", "cpu"):
        raise ValueError(f"device must be 'auto', 'gpu' or 'cpu', not {device!r}")
    cuda = torch.cuda.is_available()
    if device == "gpu" and not cuda:
        raise ValueError("device='gpu' but torch sees no CUDA GPU; use device='cpu' (or 'auto')")
    if device == "auto":
        if not cuda:
            warnings.warn("faceocc.arcface.get_dataloader: no CUDA GPU, so the faces are decoded and occluded on "
                          "the CPU and the batches stay there", stacklevel=3)
        device = "gpu" if cuda else "cpu"
    return device, torch.device("cuda", local_rank) if cuda else torch.device("cpu")


def get_dataloader(root_dir: str | os.PathLike, local_rank: int, batch_size: int, dali: bool = False,
                   dali_aug: bool = False, seed: int = 2048, num_workers: int = 2, *,
                   profile: str | os.PathLike | Profile = "ms1m", occluders: str | os.PathLike | None = None,
                   outputs: Literal["arcface", "msml"] = "arcface", device: Literal["auto", "gpu", "cpu"] = "auto",
                   dtype: Any = None, shard_id: int | None = None, num_shards: int | None = None) -> ArcFaceLoader:
    """arcface_torch's ``dataset.get_dataloader``, with MSML's occlusion, over :class:`FaceOcclusionLoader`.

    Yields ``(img, local_labels)``: ``img`` [N, 3, 112, 112] float32 normalized as arcface_torch does
    ((x - 0.5) / 0.5: [-1, 1], except the pixels of offline 3D masks, whose augmentation MSML leaves
    unclipped), occluded by ``profile``; ``local_labels`` [N] int64; both on ``cuda:local_rank`` (on the
    CPU where no GPU is). Every epoch is a fresh seeded permutation of the whole dataset split evenly over
    the ranks (torch.distributed's, or ``shard_id``/``num_shards``), the last partial batch dropped, so every
    rank runs the same number of batches. Iterating again runs the next epoch; ``reset()`` is accepted.

    Args:
        root_dir: an InsightFace dataset folder (``train.rec``/``train.idx``; with ``mask_out``/``mask``
            records from ``faceocc render`` the mask3d share is drawn too).
        local_rank: the GPU of this process.
        batch_size: faces per batch on this rank.
        dali: accepted for arcface_torch's call; faceocc always reads through its own DALI pipeline.
        dali_aug: arcface_torch's extra DALI augmentation (resize, blur, HSV, gray); not applied (a warning
            says so when True): the occlusion profile is the augmentation.
        seed: the seed of the shuffle and the occlusion, the same on every rank.
        num_workers: the pipeline's CPU threads (at least 1).
        profile: the occlusion profile: ``ms1m`` (default), ``casia``, ``msml_exact``, a YAML file or a
            Profile.
        occluders: a folder of RGBA occluder images in MSML's layout; None: the built-in procedural bank.
        outputs: ``"arcface"``: ``(img, label)``; ``"msml"``: MSML's ``(img, msk, ori, label)``.
        device: ``"auto"`` (the GPU path where CUDA is, else the CPU path with a warning), ``"gpu"``
            (decoding with nvJPEG, occlusion with the CUDA kernels; needs ``faceocc[gpu]``) or ``"cpu"``.
        dtype: ``torch.float32`` (default) or ``torch.float16``.
        shard_id, num_shards: this rank and the number of ranks; default torch.distributed's (or torchrun's
            RANK / WORLD_SIZE).

    Example (``train_v2.py``: this import in place of ``from dataset import get_dataloader``)::

        from faceocc.arcface import get_dataloader
        train_loader = get_dataloader(cfg.rec, local_rank, cfg.batch_size, cfg.dali, cfg.dali_aug, cfg.seed,
                                      cfg.num_workers)
        for epoch in range(start_epoch, cfg.num_epoch):
            for _, (img, local_labels) in enumerate(train_loader):
                ...
    """
    if str(root_dir) == "synthetic" or not (Path(root_dir) / "train.rec").is_file():
        raise ValueError(f"{root_dir}: faceocc reads InsightFace RecordIO datasets (train.rec and train.idx); "
                         "arcface_torch's synthetic data and image folders have no records to read")
    if outputs not in OUTPUTS:
        raise ValueError(f"outputs must be one of {sorted(OUTPUTS)}, not {outputs!r}")
    import torch

    local_rank = whole_number("local_rank", local_rank, 0)
    if not (isinstance(dali_aug, bool) or (isinstance(dali_aug, int) and dali_aug in (0, 1))):
        raise ValueError(f"dali_aug must be a bool, not {dali_aug!r}: the arguments are (root_dir, local_rank, "
                         "batch_size, dali, dali_aug, seed, num_workers); an older train_v2.py that passes "
                         "(..., cfg.dali, cfg.seed, cfg.num_workers) shifts the seed into dali_aug, so name them: "
                         "seed=cfg.seed, num_workers=cfg.num_workers")
    if dali_aug:
        warnings.warn("faceocc.arcface.get_dataloader: dali_aug (arcface_torch's resize, blur, HSV and gray "
                      "augmentation) is not applied; the occlusion profile is the augmentation", stacklevel=2)
    loader_device, target = _device(device, local_rank)
    loader = FaceOcclusionLoader(root_dir, batch_size, device=loader_device, profile=profile, occluders=occluders,
                                 seed=seed, shard_id=shard_id, num_shards=num_shards, dtype=dtype,
                                 num_threads=max(1, whole_number("num_workers", num_workers, 0)),
                                 device_id=local_rank)
    if loader.device_id is not None:    # the loader's GPU: local_rank modulo the visible devices
        target = torch.device("cuda", loader.device_id)
    return ArcFaceLoader(loader, OUTPUTS[outputs], target)


__all__ = ["ArcFaceLoader", "get_dataloader"]
