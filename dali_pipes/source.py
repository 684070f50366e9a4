"""The external source that feeds the DALI pipeline: encoded records of one batch, its labels, keys
and occlusion parameter table, all a pure function of (seed, shard, epoch, batch).

Masked faces and masks are read only for the rows the sampler gave a 3D mask (about 20%); the other
rows get a 1 x 1 placeholder that costs next to nothing to decode.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ops import FaceOccluder, Kind
from ops.params import PARAM_DTYPE

from .mask_records import check_alignment, mask_paths  # noqa: F401 - check_alignment re-exported
from .order import ShardOrder
from .recordio import RecordDataset, RecordIOError, class_of


def _placeholder(fmt: str, mode: str, value: int) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, (1, 1), value if mode == "L" else (value,) * 3).save(buf, fmt)
    return np.frombuffer(buf.getvalue(), np.uint8)


class RecordBatchSource:
    """Callable for ``fn.external_source(batch=True, batch_info=True)``; batch ``i`` of the pipeline's
    life is global batch ``start + i`` (epoch = global // batches per epoch).

    The mask records' alignment with train.rec is checked once, by :func:`check_alignment` when the
    loader is built; each batch checks the rows it reads again.
    """

    def __init__(self, data_dir: str | os.PathLike, order: ShardOrder, occluder: FaceOccluder,
                 start: int = 0, read_threads: int = 4) -> None:
        self.data_dir = Path(data_dir)
        self.order = order
        self.occluder = occluder
        self.start = int(start)
        self.read_threads = read_threads
        self.train = RecordDataset(self.data_dir)
        paths = mask_paths(self.data_dir)
        self.masks = None if paths is None else {k: RecordDataset(p) for k, p in paths.items()}
        self._pool = ThreadPoolExecutor(read_threads) if read_threads > 1 else None
        self._jpeg_stub = _placeholder("JPEG", "RGB", 0)
        self._png_stub = _placeholder("PNG", "L", 255)

    @property
    def has_masks(self) -> bool:
        return self.masks is not None

    def position(self, iteration: int) -> tuple[int, int]:
        """(epoch, batch) of the pipeline's ``iteration``-th batch."""
        return divmod(self.start + iteration, len(self.order))

    def _read(self, dataset: RecordDataset, keys: np.ndarray) -> list:
        if self._pool is None or len(keys) < 64:
            return [dataset.read(int(k)) for k in keys]
        return list(self._pool.map(lambda k: dataset.read(int(k)), keys.tolist(), chunksize=1))

    def __call__(self, info) -> tuple:  # noqa: ANN001 - DALI's BatchInfo
        epoch, batch = self.position(info.iteration)
        keys = self.order.batch_keys(epoch, batch)
        records = self._read(self.train, keys)
        table = self.occluder.sample(len(keys), self.order.shard_id, epoch, batch)
        m3d = np.flatnonzero(table["kind"] == Kind.MASK3D)
        table["m3d_slot"] = -1
        table["m3d_slot"][m3d] = m3d
        jpegs = [np.frombuffer(payload, np.uint8) for _, payload in records]
        labels = [np.array([class_of(h)], np.int64) for h, _ in records]
        out = [jpegs, labels, [np.array([k], np.int64) for k in keys.tolist()],
               list(np.ascontiguousarray(table).view(np.uint8).reshape(len(keys), PARAM_DTYPE.itemsize))]
        if self.masks is not None:
            masked = [self._jpeg_stub] * len(keys)
            masks = [self._png_stub] * len(keys)
            for name, target in (("mask_out", masked), ("mask", masks)):
                for row, (header, payload) in zip(m3d.tolist(), self._read(self.masks[name], keys[m3d])):
                    h0 = records[row][0]
                    if header.id != h0.id or class_of(header) != class_of(h0):
                        raise RecordIOError(f"{name}.rec does not match train.rec (id/label "
                                            f"{header.id}/{class_of(header)} vs {h0.id}/{class_of(h0)}); "
                                            "re-render the masks", self.masks[name].rec_path, int(keys[row]))
                    target[row] = np.frombuffer(payload, np.uint8)
            out += [masked, masks]
        return tuple(out)

