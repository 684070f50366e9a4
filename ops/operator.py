"""``FaceOccluder``: one object that samples parameter tables and applies them, on GPU or CPU."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .atlas import OccluderBank, default_bank
from .host import apply_parts, join_parts
from .options import Device, check_option
from .profiles import Profile, load_profile
from .sampler import BatchTables, Sampler
from .settings import ApplySettings


class FaceOccluder:
    """MSML's online occlusion for batches of ``size = (H, W)`` uint8 RGB faces: :meth:`sample` draws a
    parameter table (one row per face, ``ops.params``), :meth:`apply` applies it; calling the object
    does both.

    Everything is checked at construction (profile, occluder bank, sizes, options), before any batch
    runs. :meth:`sample` gives exactly the rows ``FaceOcclusionLoader`` uses for the same seed, profile
    and batch; :meth:`apply` is deterministic given the table, the same on GPU (CUDA kernels) and CPU
    (the NumPy twin, ``ops.reference``).

    Args:
        profile: a built-in profile name (``"ms1m"``, ``"casia"``, ``"msml_exact"``), a YAML file, or a
            :class:`~ops.profiles.Profile`; validated once, here.
        occluders: a folder of RGBA occluder images (MSML's layout), an ``OccluderBank``, or None for
            the built-in bank.
        size: ``(H, W)`` of the faces.
        device: ``"cpu"`` (NumPy twin, NumPy arrays) or ``"gpu"`` (CUDA kernels, CuPy or NumPy arrays in,
            CuPy arrays out).
        seed: the seed of every table (with shard, epoch and batch).
        has_masks: whether offline 3D-mask renders come with the faces; without them the profile's
            mask3d share goes to the other kinds (with a warning).
        dtype: ``img``/``ori`` dtype, ``np.float32`` or ``np.float16``.
        threads: CPU only: each batch's rows split over this many threads (same result).
        device_id: GPU only: the CUDA device that holds the atlas and runs every launch (default the
            current one; the pipeline's device, ``LOCAL_RANK`` under torchrun).

    Attributes ``profile`` (validated), ``settings`` (:class:`~ops.settings.ApplySettings`, the apply
    step's fixed inputs) and ``sampler`` are set once.

    Example:
        >>> import numpy as np
        >>> from faceocc.ops import FaceOccluder
        >>> occ = FaceOccluder("casia", has_masks=False, seed=0)   # no 3D-mask renders at hand
        >>> faces = np.zeros((4, 112, 112, 3), np.uint8)
        >>> table = occ.sample(4, shard=0, epoch=0, batch=0)
        >>> out = occ.apply(faces, table)                  # or occ(faces, batch=0): sample and apply
        >>> out["img"].shape, out["msk"].dtype, out["kind"].tolist() == table["kind"].tolist()
        ((4, 3, 112, 112), dtype('int32'), True)
    """

    def __init__(self, profile: str | os.PathLike | Profile | None = "ms1m",
                 occluders: str | os.PathLike | OccluderBank | None = None,
                 size: tuple[int, int] = (112, 112), device: Device = "cpu", seed: int = 0,
                 has_masks: bool = True, dtype: Any = np.float32, threads: int = 1,
                 device_id: int | None = None) -> None:
        check_option("device", device, Device)
        prof = load_profile(profile).validate(size)      # before the bank is prepared from its numbers
        if not has_masks:
            prof = prof.without_mask3d()
        if isinstance(occluders, OccluderBank):
            self.bank = occluders
        else:
            self.bank = default_bank(occluders, layout=prof.atlas_layout())
        self.sampler = Sampler(prof, self.bank, size)
        self.tables = BatchTables(self.sampler, seed)
        self.profile = self.sampler.profile
        self.size = tuple(size)
        self.device = device
        self.device_id = device_id
        self.seed = int(seed)
        self.settings = ApplySettings.from_profile(self.profile, dtype)    # the apply step's fixed inputs
        self.dtype = self.settings.dtype
        self.threads = max(1, int(threads))
        self._pool = ThreadPoolExecutor(self.threads) if device == "cpu" and self.threads > 1 else None
        self._gpu = None
        if device == "gpu":
            from .gpu import GpuOccluder

            self._gpu = GpuOccluder(self.bank.atlas, device_id)

    def sample(self, n: int, shard: int = 0, epoch: int = 0, batch: int = 0) -> np.ndarray:
        """The parameter table of batch ``batch`` of epoch ``epoch`` on shard ``shard``, ``n`` rows: a pure
        function of (seed, shard, epoch, batch, n), and exactly the rows ``FaceOcclusionLoader`` (same seed
        and profile, batch size ``n``) uses for that batch (``ops.sampler.BatchTables``)."""
        return self.tables(n, shard, epoch, batch)

    def _check(self, faces: Any, table: np.ndarray, masked_faces: Any, masks: Any,
               ori_table: np.ndarray | None) -> None:
        if tuple(faces.shape[1:3]) != self.size or faces.shape[3:] != (3,):
            raise ValueError(f"faces must be [N, {self.size[0]}, {self.size[1]}, 3] uint8 (one size per "
                             f"batch); got {tuple(faces.shape)}")
        n = faces.shape[0]
        if len(table) != n:
            raise ValueError(f"table has {len(table)} rows for {n} faces")
        used = np.flatnonzero(table["m3d_slot"] >= 0)
        if used.size and not np.array_equal(table["m3d_slot"][used], used):
            raise ValueError("m3d_slot must be -1 or the row's own index (see ops.params); row "
                             f"{int(used[table['m3d_slot'][used] != used][0])} says otherwise")
        if used.size and (masked_faces is None or masks is None or len(masked_faces) != n or len(masks) != n):
            raise ValueError(f"{used.size} rows use a 3D mask: masked_faces and masks must hold one image per "
                             f"face, aligned with faces ([{n}, H, W, 3] and [{n}, H, W])")
        if ori_table is not None and len(ori_table) != n:
            raise ValueError(f"ori_table has {len(ori_table)} rows for {n} faces")

    def _ori_table(self, table: np.ndarray, ori_table: np.ndarray | None = None) -> np.ndarray | None:
        """The table whose img is the ``ori`` output: ``ori_table`` (default :meth:`sample_ori` of ``table``
        with the profile's ``ori: occluded``) with the img's flip; None for the clean face."""
        if ori_table is None and self.profile.ori != "occluded":
            return None
        ori_table = self.sample_ori(table) if ori_table is None else ori_table.copy()
        ori_table["flip"] = table["flip"]
        return ori_table

    def apply(self, faces: Any, table: np.ndarray, masked_faces: Any = None, masks: Any = None,
              ori_table: np.ndarray | None = None, alloc: Any = None) -> dict:
        """Outputs ``img``, ``msk``, ``ori``, ``kind`` for a batch [N, H, W, 3] and its table. With the
        profile's ``ori: occluded`` (or an explicit ``ori_table``), ``ori`` is :meth:`sample_ori`'s
        table applied to the clean faces with the img's flip and no lighting, as MSML's ``ori``.
        On the CPU, ``alloc(shape, dtype)`` (default ``np.empty``; e.g. an ``ops.buffers.BufferPool``)
        gives the arrays the outputs are written to."""
        if self._gpu is None:
            alloc = alloc or np.empty
            return join_parts(self.apply_parts(faces, table, masked_faces, masks, ori_table, alloc=alloc,
                                               pool=self._pool, threads=self.threads), alloc)
        self._check(faces, table, masked_faces, masks, ori_table)
        out = self._gpu.apply(faces, table, masked_faces, masks, self.settings)
        ori_table = self._ori_table(table, ori_table)
        if ori_table is not None:
            out["ori"] = self._gpu.apply(faces, ori_table, None, None, self.settings)["img"]
        return out

    def apply_parts(self, faces: np.ndarray, table: np.ndarray, masked_faces: np.ndarray | None = None,
                    masks: np.ndarray | None = None, ori_table: np.ndarray | None = None, *, alloc: Any = None,
                    pool: ThreadPoolExecutor | None = None, threads: int = 1) -> list[dict]:
        """The CPU path of :meth:`apply`, its rows split into contiguous parts (``ops.host.row_ranges``)
        applied on ``pool``'s ``threads`` threads: one output dict per part, in row order, not joined
        (what a DALI step hands out row by row). The parts together equal :meth:`apply`'s outputs."""
        if self._gpu is not None:
            raise ValueError("apply_parts is the CPU path; this occluder runs on the GPU (use apply)")
        self._check(faces, table, masked_faces, masks, ori_table)
        faces, alloc = np.asarray(faces), alloc or np.empty
        run = dict(settings=self.settings, pool=pool, threads=threads, alloc=alloc)
        parts = apply_parts(faces, table, self.bank.atlas, masked_faces, masks, **run)
        ori_table = self._ori_table(table, ori_table)
        if ori_table is not None:
            for part, ori in zip(parts, apply_parts(faces, ori_table, self.bank.atlas, **run)):
                part["ori"] = ori["img"]
        return parts

    def apply_device(self, faces: Any, params: Any, masked_faces: Any = None, masks: Any = None,
                     table: np.ndarray | None = None) -> dict:
        """The GPU path of :meth:`apply` for a table already on the device (uint8 rows [N, row bytes]),
        with the profile's options and ``ori: occluded``; what a DALI pipeline on the GPU calls.
        ``table``: the same rows on the host when the caller has them (``ori: occluded`` needs them
        there; without, they are copied back from the device)."""
        out = self._gpu.apply_device(faces, params, masked_faces, masks, self.settings)
        if self.profile.ori == "occluded":
            if table is None:
                from .params import PARAM_DTYPE

                table = np.ascontiguousarray(self._gpu.cp.asnumpy(params)).view(PARAM_DTYPE).ravel()
            out["ori"] = self._gpu.apply(faces, self._ori_table(table), None, None, self.settings)["img"]
        return out

    def sample_ori(self, table: np.ndarray) -> np.ndarray:
        """The table of MSML's ``ori``, a second occlusion draw independent of the img's, as a pure
        function of ``table`` (its generator is seeded by the rows' noise seeds)."""
        rng = np.random.default_rng([1, *table["noise_seed"].tolist()])
        return self.sampler.sample_ori(len(table), rng)

    def __call__(self, faces: Any, masked_faces: Any = None, masks: Any = None, shard: int = 0,
                 epoch: int = 0, batch: int = 0) -> dict:
        """Sample and apply in one call."""
        return self.apply(faces, self.sample(len(faces), shard, epoch, batch), masked_faces, masks)
