"""``FaceOccluder``: one object that samples parameter tables and applies them, on GPU or CPU."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .atlas import OccluderBank, default_bank
from .host import apply_host
from .profiles import Profile, load_profile
from .sampler import Sampler, batch_rng


class FaceOccluder:
    """MSML's online occlusion for batches of ``size = (H, W)`` uint8 RGB faces.

    Everything is checked at construction (profile, occluder bank, sizes), before any batch runs.
    ``device="gpu"`` applies with the CUDA kernels on CuPy arrays, ``"cpu"`` with the NumPy twin.
    Without mask records (``has_masks=False``) the mask3d share goes to the other kinds. On the CPU,
    ``threads`` > 1 splits each batch's rows over that many threads (same result). ``device_id`` (GPU only;
    default the current device) is the CUDA device that holds the atlas and runs every launch: the
    pipeline's device (``LOCAL_RANK`` under torchrun).
    """

    def __init__(self, profile: str | os.PathLike | Profile | None = "ms1m",
                 occluders: str | os.PathLike | OccluderBank | None = None,
                 size: tuple[int, int] = (112, 112), device: str = "cpu", seed: int = 0,
                 has_masks: bool = True, dtype: Any = np.float32, threads: int = 1,
                 device_id: int | None = None) -> None:
        if device not in ("cpu", "gpu"):
            raise ValueError(f"device must be 'cpu' or 'gpu', not {device!r}")
        prof = load_profile(profile).validate(size)      # before the bank is prepared from its numbers
        if not has_masks:
            prof = prof.without_mask3d()
        if isinstance(occluders, OccluderBank):
            self.bank = occluders
        else:
            self.bank = default_bank(occluders, layout=prof.atlas_layout())
        self.sampler = Sampler(prof, self.bank, size)
        self.profile = self.sampler.profile
        self.size = tuple(size)
        self.device = device
        self.device_id = device_id
        self.seed = int(seed)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float16):
            raise ValueError("dtype must be float32 or float16")
        self.threads = max(1, int(threads))
        self._pool = ThreadPoolExecutor(self.threads) if device == "cpu" and self.threads > 1 else None
        self._gpu = None
        if device == "gpu":
            from .gpu import GpuOccluder

            self._gpu = GpuOccluder(self.bank.atlas, device_id)

    def sample(self, n: int, shard: int = 0, epoch: int = 0, batch: int = 0) -> np.ndarray:
        """The parameter table of one batch; a pure function of (seed, shard, epoch, batch, n)."""
        return self.sampler.sample(n, batch_rng(self.seed, shard, epoch, batch))

    def apply(self, faces: Any, table: np.ndarray, masked_faces: Any = None, masks: Any = None,
              ori_table: np.ndarray | None = None, alloc: Any = None) -> dict:
        """Outputs ``img``, ``msk``, ``ori``, ``kind`` for a batch [N, H, W, 3] and its table. With the
        profile's ``ori: occluded`` (or an explicit ``ori_table``), ``ori`` is :meth:`sample_ori`'s
        table applied to the clean faces with the img's flip and no lighting, as MSML's ``ori``.
        On the CPU, ``alloc(shape, dtype)`` (default ``np.empty``; e.g. an ``ops.buffers.BufferPool``)
        gives the arrays the outputs are written to."""
        if tuple(faces.shape[1:3]) != self.size or faces.shape[3:] != (3,):
            raise ValueError(f"faces must be [N, {self.size[0]}, {self.size[1]}, 3] uint8 (one size per "
                             f"batch); got {tuple(faces.shape)}")
        if len(table) != faces.shape[0]:
            raise ValueError(f"table has {len(table)} rows for {faces.shape[0]} faces")
        needed = int((table["m3d_slot"] >= 0).sum())
        if needed and (masked_faces is None or masks is None or len(masked_faces) < needed):
            raise ValueError(f"{needed} rows use a 3D mask but masked_faces/masks hold fewer")
        if ori_table is not None and len(ori_table) != len(table):
            raise ValueError(f"ori_table has {len(ori_table)} rows for {len(table)} faces")
        out = self._apply(faces, table, masked_faces, masks, alloc)
        if ori_table is not None or self.profile.ori == "occluded":
            out["ori"] = self._occluded_ori(faces, table, ori_table, alloc)
        return out

    def apply_device(self, faces: Any, params: Any, masked_faces: Any = None, masks: Any = None,
                     table: np.ndarray | None = None) -> dict:
        """The GPU path of :meth:`apply` for a table already on the device (uint8 rows [N, row bytes]),
        with the profile's options and ``ori: occluded``; what a DALI pipeline on the GPU calls.
        ``table``: the same rows on the host when the caller has them (``ori: occluded`` needs them
        there; without, they are copied back from the device)."""
        p = self.profile
        out = self._gpu.apply_device(faces, params, masked_faces, masks, p.grayscale, p.normalize, self.dtype,
                                     **self.options())
        if p.ori == "occluded":
            if table is None:
                from .params import PARAM_DTYPE

                table = np.ascontiguousarray(self._gpu.cp.asnumpy(params)).view(PARAM_DTYPE).ravel()
            out["ori"] = self._occluded_ori(faces, table)
        return out

    def _occluded_ori(self, faces: Any, table: np.ndarray, ori_table: np.ndarray | None = None,
                      alloc: Any = None) -> Any:
        """MSML's ``ori``: ``ori_table`` (default :meth:`sample_ori` of ``table``) applied to the clean
        faces with the img's flip, as the img of that table."""
        ori_table = self.sample_ori(table) if ori_table is None else ori_table.copy()
        ori_table["flip"] = table["flip"]
        return self._apply(faces, ori_table, None, None, alloc)["img"]

    def options(self) -> dict:
        """The apply step's settings from the profile (keyword arguments of both backends)."""
        p = self.profile
        return {"gray_channels": p.gray_channels, "gray_offset_divisor": p.gray_offset_divisor,
                "mask_threshold": p.mask3d.threshold}

    def _apply(self, faces: Any, table: np.ndarray, masked_faces: Any, masks: Any, alloc: Any = None) -> dict:
        p = self.profile
        if self._gpu is not None:
            return self._gpu.apply(faces, table, masked_faces, masks, p.grayscale, p.normalize, self.dtype,
                                   **self.options())
        return apply_host(np.asarray(faces), table, self.bank.atlas, masked_faces, masks, p.grayscale,
                          p.normalize, self.dtype, self._pool, self.threads, alloc or np.empty, **self.options())

    def sample_ori(self, table: np.ndarray) -> np.ndarray:
        """The table of MSML's ``ori``, a second occlusion draw independent of the img's, as a pure
        function of ``table`` (its generator is seeded by the rows' noise seeds)."""
        rng = np.random.default_rng([1, *table["noise_seed"].tolist()])
        return self.sampler.sample_ori(len(table), rng)

    def __call__(self, faces: Any, masked_faces: Any = None, masks: Any = None, shard: int = 0,
                 epoch: int = 0, batch: int = 0) -> dict:
        """Sample and apply in one call."""
        return self.apply(faces, self.sample(len(faces), shard, epoch, batch), masked_faces, masks)
