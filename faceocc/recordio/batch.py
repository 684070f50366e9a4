"""Many records at once: one memory map of the record file, the frames and image headers of a whole
batch parsed with NumPy, the encoded images handed out as zero-copy views.

Only the common case is vectorized (single-part records); any row that is not (a multi-part record,
a bad frame, a header longer than its record, a label that is not a finite number) is read again by
:meth:`RecordDataset.read`, which either handles it or raises its :class:`RecordIOError` naming file,
key and offset. So the fast path and the per-record path give the same payloads, labels and errors.
"""

from __future__ import annotations

import contextlib
import mmap
from typing import NamedTuple

import numpy as np

from .dataset import RecordDataset
from .frames import MAGIC, MAX_PART
from .header import MAX_CLASSES, class_of
from .images import pixel_problem

_HEAD = np.dtype([("magic", "<u4"), ("lrec", "<u4"), ("flag", "<u4"), ("label", "<f4"), ("id", "<u8"),
                  ("id2", "<u8")])  # frame (8 bytes) + IRHeader (24 bytes)


class Batch(NamedTuple):
    """Records of a batch in the order asked: where their encoded images lie in the memory map
    (``starts``, ``lengths``; rows read by the per-record path in ``odd``), identity classes, ids."""

    buf: np.ndarray
    starts: np.ndarray     # int64
    lengths: np.ndarray    # int64
    labels: np.ndarray     # int64, class_of(header)
    ids: np.ndarray        # uint64, header.id
    odd: dict[int, np.ndarray]

    def payloads(self) -> list[np.ndarray]:
        """The encoded images as arrays (zero-copy views of the map)."""
        out = [self.buf[a:a + n] for a, n in zip(self.starts.tolist(), self.lengths.tolist())]
        for row, payload in self.odd.items():
            out[row] = payload
        return out

    def _placement(self, size: int | None, at: np.ndarray | None) -> tuple[int, np.ndarray, np.ndarray]:
        """``size`` and ``at`` with their defaults (the batch's own rows), and every image's length."""
        n = self.lengths.size
        lengths = self.lengths.copy()
        for row, payload in self.odd.items():
            lengths[row] = payload.size
        return n if size is None else size, np.arange(n) if at is None else np.asarray(at), lengths

    def dense(self, size: int | None = None, at: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(images [size, longest] uint8, lengths [size, 1] int32)``: image ``i`` at the start of row
        ``at[i]`` (default: row ``i``), followed by whatever bytes come next (the pipeline slices
        each row to its length); rows not in ``at`` have length 0."""
        size, at, lengths = self._placement(size, at)
        width = int(lengths.max(initial=0))
        out = np.zeros((size, width), np.uint8)
        take = (self.starts + width <= self.buf.size) & (lengths > 0)
        for row in self.odd:
            take[row] = False
        if width and take.any():
            windows = np.ndarray((self.buf.size - width + 1, width), np.uint8, self.buf, strides=(1, 1))
            out[at[take]] = windows[self.starts[take]]
        for row in np.flatnonzero((lengths > 0) & ~take).tolist():
            payload = self.odd.get(row)
            if payload is None:
                payload = self.buf[self.starts[row]:self.starts[row] + lengths[row]]
            out[at[row], :payload.size] = payload
        full = np.zeros((size, 1), np.int32)
        full[at, 0] = lengths
        return out, full

    def encoded(self, size: int | None = None, at: np.ndarray | None = None
                ) -> tuple[np.ndarray | list[np.ndarray], np.ndarray]:
        """What DALI's external source is handed, never padded to the longest record: :meth:`dense`'s
        ``(images, lengths)`` when the padding costs at most the images' own bytes (plus 1 MiB), else the
        images as a list of ``size`` 1-D uint8 arrays (zero-copy views; rows not in ``at`` empty) with
        the same lengths. So a batch costs at most about twice its own bytes, however long one record is
        (one 6 MB photo among 5 kB faces no longer makes every row 6 MB)."""
        size, at, lengths = self._placement(size, at)
        if size * int(lengths.max(initial=0)) <= 2 * int(lengths.sum()) + (1 << 20):
            return self.dense(size, at)
        empty = np.zeros(0, np.uint8)
        rows = [empty] * size
        for i, payload in enumerate(self.payloads()):
            rows[int(at[i])] = payload
        full = np.zeros((size, 1), np.int32)
        full[at, 0] = lengths
        return rows, full

    def oversized(self, max_pixels: int | None) -> dict[int, str]:
        """``{row: why}`` for the images over ``max_pixels`` pixels, read from their headers (about 1 us a
        JPEG or PNG record), so that nothing over the limit is ever decoded."""
        if max_pixels is None:
            return {}
        view = memoryview(self.buf)
        found = {}
        for row, (a, n) in enumerate(zip(self.starts.tolist(), self.lengths.tolist())):
            payload = self.odd.get(row)
            problem = pixel_problem(view[a:a + n] if payload is None else payload.tobytes(), max_pixels)
            if problem:
                found[row] = problem
        return found


class BatchReader:
    """Reads the records of many keys of one :class:`RecordDataset` per call."""

    def __init__(self, dataset: RecordDataset) -> None:
        self.dataset = dataset
        self._map()

    def _map(self) -> None:
        size = self.dataset.file_size
        if size == 0:
            self._mm, self._buf = None, np.zeros(0, np.uint8)
            return
        # the dataset's own descriptor, not its name: a file replaced or removed since it was opened (a
        # mask set swapped by render --overwrite) is still the one read
        self._mm = mmap.mmap(self.dataset.fileno(), size, access=mmap.ACCESS_READ)
        if hasattr(self._mm, "madvise"):
            self._mm.madvise(mmap.MADV_RANDOM)
        self._buf = np.frombuffer(self._mm, np.uint8)

    def __getstate__(self) -> dict:
        return {"dataset": self.dataset}

    def __setstate__(self, state: dict) -> None:
        self.dataset = state["dataset"]
        self._map()

    def read(self, keys: np.ndarray) -> Batch:
        """Payloads, labels and ids of ``keys`` (raises RecordIOError naming the first bad one)."""
        keys = np.asarray(keys, np.int64)
        offsets = self.dataset.offsets_of(keys)
        n, buf = keys.size, self._buf
        fits = offsets + _HEAD.itemsize <= buf.size
        head = np.zeros(n, _HEAD)
        if buf.size >= _HEAD.itemsize:
            windows = np.ndarray((buf.size - _HEAD.itemsize + 1, _HEAD.itemsize), np.uint8, buf, strides=(1, 1))
            head = windows[np.where(fits, offsets, 0)].view(_HEAD).reshape(n)
        length = (head["lrec"] & MAX_PART).astype(np.int64)
        flag = head["flag"].astype(np.int64)
        start = offsets + 8 + 24 + 4 * flag
        end = offsets + 8 + length
        label = head["label"].astype(np.float64)
        vector = flag > 0
        if vector.any():
            at = np.where(vector & fits & (start <= buf.size), offsets + 32, 0)
            label[vector] = buf[at[vector, None] + np.arange(4)].view("<f4").reshape(-1)
        ok = (fits & (head["magic"] == MAGIC) & (head["lrec"] >> 29 == 0) & (length >= 24)
              & (start <= end) & (end <= buf.size) & self._is_class(label))
        labels = np.where(ok, label, 0).astype(np.int64)
        ids = head["id"].copy()
        odd = {}
        for i in np.flatnonzero(~ok).tolist():  # the per-record path handles or names the odd ones
            header, payload = self.dataset.read(int(keys[i]))
            odd[i] = np.frombuffer(payload, np.uint8)
            labels[i] = class_of(header, self.dataset.rec_path, int(keys[i]), int(offsets[i]),
                                 self.dataset.num_classes)
            ids[i] = header.id
        return Batch(buf, np.where(ok, start, 0), np.where(ok, end - start, 0), labels, ids, odd)

    def _is_class(self, label: np.ndarray) -> np.ndarray:
        """Labels that :func:`class_of` accepts (whole numbers in ``0 .. classes - 1``); the others take
        the per-record path, which names them."""
        bound = MAX_CLASSES if self.dataset.num_classes is None else self.dataset.num_classes   # as class_of
        with np.errstate(invalid="ignore"):
            return np.isfinite(label) & (label >= 0) & (label < bound) & (label == np.floor(label))

    def close(self) -> None:
        self._buf = np.zeros(0, np.uint8)
        if self._mm is not None:
            with contextlib.suppress(BufferError):  # views still alive elsewhere; the map goes with them
                self._mm.close()
            self._mm = None

