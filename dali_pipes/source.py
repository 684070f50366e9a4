"""The external source that feeds the DALI pipeline: encoded records of one batch, its labels, keys
and occlusion parameter table, all a pure function of (seed, shard, epoch, batch).

A batch is read at once (:class:`~dali_pipes.batch_read.BatchReader`: one memory map, headers parsed
with NumPy, payloads as zero-copy views); labels, keys and the table go out as dense arrays, so the
only per-sample Python is the list of payload views DALI takes. Masked faces and masks are read only
for the rows the sampler gave a 3D mask; the other rows get an empty payload that the pipeline never
decodes (``use_m3d`` is False there).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ops import Kind
from ops.params import PARAM_DTYPE
from ops.sampler import Sampler, batch_rng

from .batch_read import BatchReader
from .dataset_info import mask_paths
from .order import ShardOrder
from .recordio import RecordDataset, RecordIOError, class_of

_EMPTY = np.zeros(0, np.uint8)


class RecordBatchSource:
    """Callable for ``fn.external_source(batch=True, batch_info=True)``; batch ``i`` of the pipeline's
    life is global batch ``start + i`` (epoch = global // batches per epoch).

    Outputs: payloads, labels [N, 1] int64, keys [N, 1] int64, parameter rows [N, row bytes] uint8;
    with mask records also ``use_m3d`` [N] bool, masked-face payloads and mask payloads (empty where
    ``use_m3d`` is False). The mask records' alignment with train.rec is checked once, by
    :func:`check_alignment` when the loader is built; each batch checks the rows it reads again.

    ``read_masks=False`` leaves mask records aside (a profile that never draws mask3d).

    ``bad_train`` / ``bad_masks``: keys whose image (or, for rows with a 3D mask, whose masked face or
    mask) cannot be decoded; such a row is served with the nearest earlier usable row of the same
    batch (its key, label and images; the row keeps its own parameters), so a batch depends only on
    the data, never on when a bad image was found.
    """

    def __init__(self, data_dir: str | os.PathLike, order: ShardOrder, sampler: Sampler, seed: int,
                 start: int = 0, read_masks: bool = True) -> None:
        self.data_dir = Path(data_dir)
        self.order = order
        self.sampler = sampler
        self.seed = int(seed)
        self.start = int(start)
        self.train = BatchReader(RecordDataset(self.data_dir))
        paths = mask_paths(self.data_dir) if read_masks else None
        self.masks = None if paths is None else {k: BatchReader(RecordDataset(p)) for k, p in paths.items()}
        self.bad_train: set[int] = set()
        self.bad_masks: set[int] = set()

    @property
    def has_masks(self) -> bool:
        return self.masks is not None

    @property
    def num_outputs(self) -> int:
        return 7 if self.has_masks else 4

    def position(self, iteration: int) -> tuple[int, int]:
        """(epoch, batch) of the pipeline's ``iteration``-th batch."""
        return divmod(self.start + iteration, len(self.order))

    def table(self, n: int, epoch: int, batch: int) -> np.ndarray:
        """The parameter table of a batch (``m3d_slot`` = the row itself for 3D-mask rows)."""
        table = self.sampler.sample(n, batch_rng(self.seed, self.order.shard_id, epoch, batch))
        m3d = table["kind"] == Kind.MASK3D
        table["m3d_slot"] = np.where(m3d, np.arange(n), -1)
        return table

    def served_keys(self, keys: np.ndarray, m3d: np.ndarray) -> np.ndarray:
        """``keys`` with every unusable row replaced by the nearest earlier usable one (cyclically)."""
        if not self.bad_train and not self.bad_masks:
            return keys
        listed = keys.tolist()

        def usable(i: int, needs_mask: bool) -> bool:
            return listed[i] not in self.bad_train and not (needs_mask and listed[i] in self.bad_masks)

        out = keys.copy()
        n = len(listed)
        for i in range(n):
            if usable(i, bool(m3d[i])):
                continue
            for step in range(1, n):
                j = (i - step) % n
                if usable(j, bool(m3d[i])):
                    out[i] = keys[j]
                    break
            else:
                raise ImageDecodeError("no image of this batch can be decoded", self.train.dataset.rec_path,
                                       listed[i])
        return out

    def batch(self, epoch: int, batch: int) -> tuple:
        """The outputs of global batch (epoch, batch); see the class docstring."""
        keys = self.order.batch_keys(epoch, batch)
        table = self.table(len(keys), epoch, batch)
        m3d = table["m3d_slot"] >= 0
        keys = self.served_keys(keys, m3d)
        records = self.train.read(keys)
        params = np.ascontiguousarray(table).view(np.uint8).reshape(len(keys), PARAM_DTYPE.itemsize)
        out = (records.payloads, records.labels.reshape(-1, 1), keys.reshape(-1, 1), params)
        if self.masks is None:
            return out
        rows = np.flatnonzero(m3d)
        extra = []
        for name in ("mask_out", "mask"):
            payloads = [_EMPTY] * len(keys)
            got = self.masks[name].read(keys[rows])
            wrong = (got.ids != records.ids[rows]) | (got.labels != records.labels[rows])
            if wrong.any():
                i = int(np.flatnonzero(wrong)[0])
                row = rows[i]
                raise RecordIOError(f"{name}.rec does not match train.rec (id/label {got.ids[i]}/{got.labels[i]} "
                                    f"vs {records.ids[row]}/{records.labels[row]}); re-render the masks",
                                    self.masks[name].dataset.rec_path, int(keys[row]))
            for row, payload in zip(rows.tolist(), got.payloads):
                payloads[row] = payload
            extra.append(payloads)
        return (*out, m3d, *extra)

    def __call__(self, info) -> tuple:  # noqa: ANN001 - DALI's BatchInfo
        return self.batch(*self.position(info.iteration))


class ImageDecodeError(RecordIOError):
    """An image record whose payload the decoder refuses; names file, key and offset."""


def check_alignment(train: RecordDataset, masks: dict[str, RecordDataset], sample: int = 512) -> None:
    """Refuse mask records whose keys differ from train.rec, or whose ids/labels differ on a sample
    of keys (every batch checks the rows it reads again)."""
    for name, ds in masks.items():
        if not np.array_equal(ds.keys, train.keys):
            differ = np.setxor1d(ds.keys, train.keys)
            raise RecordIOError(f"{name}.rec keys differ from train.rec ({differ.size} keys differ); "
                                "re-render the masks with `faceocc render`", ds.idx_path,
                                int(differ[0]) if differ.size else None)
        keys = train.image_keys
        pick = keys if keys.size <= sample else keys[np.linspace(0, keys.size - 1, sample).astype(int)]
        for key in pick.tolist():
            a, b = train.read(key)[0], ds.read(key)[0]
            if a.id != b.id or class_of(a) != class_of(b):
                raise RecordIOError(f"{name}.rec id/label ({b.id}, {class_of(b)}) differ from train.rec "
                                    f"({a.id}, {class_of(a)})", ds.rec_path, key)
