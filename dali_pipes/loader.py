"""``FaceOcclusionLoader``: MSML's tensors (img, msk, ori, label) from a record dataset, via DALI."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ops import FaceOccluder
from ops.profiles import Profile

from .mask_records import check_alignment, mask_paths
from .order import ShardOrder
from .pipeline import OUTPUTS, build_pipeline
from .placement import distributed_placement
from .recordio import RecordDataset, RecordIOError
from .source import RecordBatchSource


class FaceOcclusionLoader:
    """Iterates over batches of ``{"img", "msk", "ori", "label", "kind", "key"}`` torch tensors.

    ``img``/``ori`` [N, 3, H, W] of ``dtype``, ``msk`` [N, H, W] int32 (1 clean, 0 occluded),
    ``label`` [N] int64, ``kind`` [N] int8 (``ops.Kind`` codes), ``key`` [N] int64 (record keys), on
    the pipeline's device. ``len()`` is batches per epoch; iterating again runs the next epoch.
    Every image appears once per epoch across shards, in a seeded uniform permutation (see
    ``dali_pipes.order``; ``last_batch`` states what happens to the remainder).
    """

    def __init__(self, data_dir: str | os.PathLike, batch_size: int, device: str = "gpu",
                 profile: str | os.PathLike | Profile = "ms1m", occluders: str | os.PathLike | None = None,
                 out_size: tuple[int, int] = (112, 112), seed: int = 0, shard_id: int | None = None,
                 num_shards: int | None = None, dtype: Any = None, last_batch: str = "drop",
                 shuffle: bool = True, num_threads: int = 4, read_threads: int = 4,
                 prefetch: int = 2) -> None:
        import torch

        if device not in ("gpu", "cpu"):
            raise ValueError(f"device must be 'gpu' or 'cpu', not {device!r}")
        self.data_dir = Path(data_dir)
        masks = mask_paths(self.data_dir)
        with RecordDataset(self.data_dir) as ds:
            keys = ds.image_keys.copy()
            if masks is not None:
                rendered = {name: RecordDataset(path) for name, path in masks.items()}
                try:
                    check_alignment(ds, rendered)
                finally:
                    for r in rendered.values():
                        r.close()
        self.shard_id, self.num_shards, local = distributed_placement(shard_id, num_shards)
        self.order = ShardOrder(keys, batch_size, seed, self.shard_id, self.num_shards, shuffle, last_batch)
        self.device = device
        self.device_id = local if device == "gpu" else None
        self.torch_dtype = dtype or torch.float32
        np_dtype = {torch.float32: np.float32, torch.float16: np.float16}.get(self.torch_dtype)
        if np_dtype is None:
            raise ValueError("dtype must be torch.float32 or torch.float16")
        self.batch_size = batch_size
        self.out_size = tuple(out_size)
        self.occluder = FaceOccluder(profile, occluders, self.out_size, device, seed,
                                     has_masks=masks is not None, dtype=np_dtype,
                                     threads=num_threads if device == "cpu" else 1)
        self._settings = (num_threads, read_threads, prefetch)
        self._next = 0            # global index of the next batch to hand out
        self._pipe = None
        self._pipe_start = 0
        self._fetched = 0

    def __len__(self) -> int:
        return len(self.order)

    @property
    def epoch(self) -> int:
        """The epoch the next batch belongs to."""
        return self._next // len(self)

    def _build(self) -> None:
        num_threads, read_threads, prefetch = self._settings
        source = RecordBatchSource(self.data_dir, self.order, self.occluder, self._next, read_threads)
        self._pipe = build_pipeline(source, self.occluder, self.batch_size, self.device_id, self.out_size,
                                    num_threads, prefetch)
        self._pipe_start = self._next
        self._fetched = 0

    def _to_torch(self, tensor_list: Any) -> Any:
        import torch

        if self.device == "cpu":
            return torch.from_numpy(np.array(tensor_list.as_tensor()))
        from nvidia.dali.plugin.pytorch import feed_ndarray, to_torch_type

        t = tensor_list.as_tensor()
        out = torch.empty(t.shape(), dtype=to_torch_type[t.dtype], device=f"cuda:{self.device_id}")
        feed_ndarray(t, out, cuda_stream=torch.cuda.current_stream(self.device_id))
        return out

    def _fetch(self) -> dict:
        if self._pipe is None or self._pipe_start + self._fetched != self._next:
            self._build()
        outputs = self._pipe.run()
        self._fetched += 1
        batch = {name: self._to_torch(t) for name, t in zip(OUTPUTS, outputs)}
        batch["label"] = batch["label"].reshape(-1)
        batch["kind"] = batch["kind"].reshape(-1)
        batch["key"] = batch["key"].reshape(-1)
        return batch

    def __iter__(self):
        remaining = len(self) - self._next % len(self)
        for _ in range(remaining):
            batch = self._fetch()
            self._next += 1
            yield batch

    def state_dict(self) -> dict:
        """Where the loader stands: restoring it continues with the batches an uninterrupted run gives."""
        return {"next_batch": self._next, "seed": self.occluder.seed, "shard_id": self.shard_id,
                "num_shards": self.num_shards, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a :meth:`state_dict` of a loader built with the same arguments."""
        mine = self.state_dict()
        for key in ("seed", "shard_id", "num_shards", "batch_size"):
            if state.get(key) != mine[key]:
                raise ValueError(f"state was saved with {key}={state.get(key)}, this loader has {mine[key]}")
        self._next = int(state["next_batch"])
        self._pipe = None


__all__ = ["FaceOcclusionLoader", "RecordIOError", "distributed_placement"]
