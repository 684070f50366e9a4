"""The external source that feeds the DALI pipeline: encoded records of one batch, its labels, keys
and occlusion parameter table, all a pure function of (seed, shard, epoch, batch) for a batch size.

A batch is read at once (:class:`~faceocc.recordio.batch.BatchReader`: one memory map, headers parsed
with NumPy) and goes out as dense arrays (encoded images as rows of one array plus their lengths),
so no per-sample Python runs for it, here or in DALI's external source; a batch whose longest record
would make that padding cost more than its own bytes goes out as a list of rows instead
(:meth:`~faceocc.recordio.batch.Batch.encoded`). Images over ``max_pixels`` are refused from their
headers, before anything decodes them. Masked faces and
masks are read only for the rows the sampler gave a 3D mask; the other rows get length 0 and the
pipeline never decodes them (``use_m3d`` is False there).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
from faceocc.ops.params import PARAM_DTYPE
from faceocc.ops.sampler import BatchTables, Sampler

from faceocc.datasets.mask_alignment import check_alignment  # noqa: F401 - check_alignment re-exported
from faceocc.datasets.mask_sets import open_set
from faceocc.recordio import RecordDataset, RecordIOError
from faceocc.recordio.batch import Batch, BatchReader
from faceocc.recordio.images import MAX_PIXELS, ImageDecodeError

from .order import ShardOrder

ROW = PARAM_DTYPE.itemsize
META_BYTES = ROW + 16


def pack_meta(table: np.ndarray, labels: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """``[N, META_BYTES]`` uint8 rows: the parameter row, then label and key as little-endian int64."""
    n = len(table)
    meta = np.empty((n, META_BYTES), np.uint8)
    meta[:, :ROW] = np.ascontiguousarray(table, PARAM_DTYPE).view(np.uint8).reshape(n, ROW)
    meta[:, ROW:] = np.stack([labels, keys], axis=1).astype("<i8").view(np.uint8).reshape(n, 16)
    return meta


def unpack_meta(meta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(parameter table, labels int64, keys int64) of ``meta`` rows (NumPy)."""
    meta = np.ascontiguousarray(meta).reshape(-1, META_BYTES)
    table = np.ascontiguousarray(meta[:, :ROW]).view(PARAM_DTYPE).reshape(-1)
    ints = np.ascontiguousarray(meta[:, ROW:]).view("<i8")
    return table, ints[:, 0].astype(np.int64), ints[:, 1].astype(np.int64)


class Records(NamedTuple):
    """What one batch reads: served keys, parameter table, 3D-mask rows, train.rec records and the
    mask records of the 3D-mask rows (``{"mask_out": Batch, "mask": Batch}``, in row order)."""

    keys: np.ndarray
    table: np.ndarray
    m3d: np.ndarray
    train: Batch
    masks: dict[str, Batch]


class RecordBatchSource:
    """Callable for ``fn.external_source(batch=True, batch_info=True)``; batch ``i`` of the pipeline's
    life is global batch ``start + i`` (epoch = global // batches per epoch).

    Outputs, all dense: images [N, longest] uint8 and their lengths [N, 1] int32 (the pipeline slices
    each row to its length), ``meta`` [N, META_BYTES] uint8 (parameter row, label, key: see
    :func:`pack_meta`); with mask records also ``use_m3d`` [N] bool, masked faces and their lengths,
    masks and their lengths (length 0 where ``use_m3d`` is False). Every pipeline output costs DALI
    time per batch, so label, key and parameters travel as one. The mask records' alignment with
    train.rec is checked once, by :func:`check_alignment` when the loader is built; each batch checks
    the rows it reads again.

    ``read_masks=False`` leaves mask records aside (a profile that never draws mask3d). ``datasets``:
    train.rec and the mask set (``{"mask_out": ..., "mask": ...}`` or None) already open, to keep
    reading those very files (the loader opens them once); default: opened here from ``data_dir``.
    An image over ``max_pixels`` pixels raises :class:`ImageDecodeError` naming file, key and offset
    before it is decoded.

    ``bad_train`` / ``bad_masks``: keys whose image (or, for rows with a 3D mask, whose masked face or
    mask) cannot be decoded; such a row is served with the nearest earlier usable row of the same
    batch (its key, label and images; the row keeps its own parameters), so a batch depends only on
    the data, never on when a bad image was found.
    """

    def __init__(self, data_dir: str | os.PathLike, order: ShardOrder, sampler: Sampler, seed: int,
                 start: int = 0, read_masks: bool = True,
                 datasets: tuple[RecordDataset, dict[str, RecordDataset] | None] | None = None,
                 max_pixels: int | None = MAX_PIXELS) -> None:
        self.data_dir = Path(data_dir)
        self.order = order
        self.sampler = sampler
        self.seed = int(seed)
        self.start = int(start)
        self.max_pixels = max_pixels
        train, masks = datasets if datasets is not None else (RecordDataset(self.data_dir), open_set(self.data_dir))
        self.train = BatchReader(train)
        masks = masks if read_masks else None
        self.masks = None if masks is None else {k: BatchReader(ds) for k, ds in masks.items()}
        self.tables = BatchTables(sampler, seed)
        self.bad_train: set[int] = set()
        self.bad_masks: set[int] = set()

    @property
    def has_masks(self) -> bool:
        return self.masks is not None

    @property
    def num_outputs(self) -> int:
        return 8 if self.has_masks else 3

    def position(self, iteration: int) -> tuple[int, int]:
        """(epoch, batch) of the pipeline's ``iteration``-th batch."""
        return divmod(self.start + iteration, len(self.order))

    def table(self, n: int, epoch: int, batch: int) -> np.ndarray:
        """The parameter table of a batch of ``n`` rows: the one seeding rule (``ops.sampler.BatchTables``),
        so ``FaceOccluder.sample(n, shard, epoch, batch)`` of the same seed and profile gives the same rows."""
        return self.tables(n, self.order.shard_id, epoch, batch)

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

    def read(self, epoch: int, batch: int) -> Records:
        """The records of global batch (epoch, batch): train.rec for every row, the mask records for
        the rows with a 3D mask (checked against train.rec's ids and labels)."""
        keys = self.order.batch_keys(epoch, batch)
        table = self.table(len(keys), epoch, batch)
        m3d = table["m3d_slot"] >= 0
        keys = self.served_keys(keys, m3d)
        train = self.train.read(keys)
        self._refuse_oversized(self.train, train, keys)
        masks = {}
        if self.masks is not None:
            rows = np.flatnonzero(m3d)
            for name, reader in self.masks.items():
                got = reader.read(keys[rows])
                wrong = (got.ids != train.ids[rows]) | (got.labels != train.labels[rows])
                if wrong.any():
                    i = int(np.flatnonzero(wrong)[0])
                    row = rows[i]
                    raise RecordIOError(f"{name}.rec does not match train.rec (id/label {got.ids[i]}/"
                                        f"{got.labels[i]} vs {train.ids[row]}/{train.labels[row]}); "
                                        "re-render the masks", reader.dataset.rec_path, int(keys[row]))
                self._refuse_oversized(reader, got, keys[rows])
                masks[name] = got
        return Records(keys, table, m3d, train, masks)

    def _refuse_oversized(self, reader: BatchReader, got: Batch, keys: np.ndarray) -> None:
        """Raise :class:`ImageDecodeError` for the first image of ``got`` over ``max_pixels``."""
        found = got.oversized(self.max_pixels)
        if found:
            row, why = next(iter(found.items()))
            key = int(keys[row])
            raise ImageDecodeError(why, reader.dataset.rec_path, key, reader.dataset.offset_of(key))

    def batch(self, epoch: int, batch: int) -> tuple:
        """The outputs of global batch (epoch, batch), dense arrays or, for the images of a batch with one
        very long record, lists of rows (see the class docstring)."""
        r = self.read(epoch, batch)
        out = (*r.train.encoded(), pack_meta(r.table, r.train.labels, r.keys))
        if self.masks is None:
            return out
        extra = [r.m3d]
        rows = np.flatnonzero(r.m3d)
        for name in ("mask_out", "mask"):
            extra += r.masks[name].encoded(len(r.keys), rows)
        return (*out, *extra)

    def __call__(self, info) -> tuple:  # noqa: ANN001 - DALI's BatchInfo
        return self.batch(*self.position(info.iteration))
