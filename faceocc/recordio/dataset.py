"""``RecordDataset``: indexed reading of a face dataset in MXNet RecordIO, in the InsightFace or im2rec
layout. The byte layout follows dmlc-core and ``mxnet.recordio`` exactly, so files written by MXNet are
read here with identical payloads and headers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path

import numpy as np

from .errors import RecordIOError
from .files import RefusedFile, open_regular, read_small_text
from .frames import read_record_at
from .header import IRHeader, class_of, unpack_header
from .index import read_index


class RecordDataset:
    """Read access to an indexed MXNet record file of face images, in any of the three layouts.

    Layouts (:attr:`layout`): ``"insightface"`` (record 0 an empty-payload header labelled
    ``[N+1, N+1+C]``, images at keys 1..N, identity records after them) and ``"im2rec"`` (every key an
    image; vector labels allowed, the class being the first value). The index is checked when the
    dataset is opened; malformed input raises :class:`RecordIOError` naming file, key and byte offset.
    Reads are ``pread`` calls on one file handle (no MXNet, no DALI); use it as a context manager or
    call :meth:`close`.

    Args:
        path: a folder holding ``train.rec``/``train.idx``, or a ``.rec`` file.
        idx_path: the index; default the ``.rec`` path with the suffix ``.idx``.

    Example::

        from faceocc.recordio import RecordDataset

        with RecordDataset("/data/casia-webface") as ds:
            print(ds.layout, len(ds), ds.num_classes)        # "insightface", images, identities
            header, jpeg = ds.read(int(ds.image_keys[0]))     # IRHeader(flag, label, id, id2), bytes
            ranges = ds.identity_ranges                       # [first, last + 1) per identity
    """

    def __init__(self, path: str | os.PathLike, idx_path: str | os.PathLike | None = None) -> None:
        path = Path(path)
        self.rec_path = path / "train.rec" if path.is_dir() else path
        self.idx_path = Path(idx_path) if idx_path else self.rec_path.with_suffix(".idx")
        self._fd = None
        try:
            self._fd = open_regular(self.rec_path, "record file")     # a FIFO or device: refused, not read
        except FileNotFoundError:
            raise RecordIOError("record file not found", self.rec_path) from None
        except RefusedFile as exc:
            raise RecordIOError(str(exc), self.rec_path) from None
        try:
            keys, offsets = read_index(self.idx_path)
        except BaseException:
            self.close()
            raise
        self.file_size = os.fstat(self._fd).st_size
        order = np.argsort(keys, kind="stable")
        self.keys, self.offsets = keys[order], offsets[order]
        self._check_index()
        self._image_span: tuple[int, int] | None = None     # keys whose labels read() checks
        self.layout, self.image_keys, self.num_classes, self._id_keys = self._detect_layout()
        self._image_span = (1, int(self._header_end)) if self.layout == "insightface" else (0, 1 << 63)

    def _check_index(self) -> None:
        keys, offsets = self.keys, self.offsets
        if keys.size and keys[0] < 0:
            raise RecordIOError("negative key in index", self.idx_path, int(keys[0]))
        dup = np.flatnonzero(keys[1:] == keys[:-1])
        if dup.size:
            raise RecordIOError("duplicate key in index", self.idx_path, int(keys[dup[0]]))
        # offsets > size - 8, not offsets + 8 > size: an offset near 2**63 would wrap around
        bad = np.flatnonzero((offsets < 0) | (offsets > self.file_size - 8) | (offsets % 4 != 0))
        if bad.size:
            i = bad[0]
            raise RecordIOError(f"index offset is past the end of the {self.file_size}-byte record "
                                "file or not a record boundary", self.idx_path, int(keys[i]),
                                int(offsets[i]))
        ordered = offsets if np.all(offsets[1:] > offsets[:-1]) else np.sort(offsets)
        if np.any(ordered[1:] == ordered[:-1]):
            raise RecordIOError("index and data disagree: two keys point at one record", self.idx_path)

    def _detect_layout(self) -> tuple[str, np.ndarray, int | None, np.ndarray]:
        empty = np.zeros(0, np.int64)
        self._header_end = 0
        if self.keys.size == 0:
            return "im2rec", empty, self._property_classes(), empty
        first_key = int(self.keys[0])
        header, payload = self.read(first_key)
        if first_key == 0 and header.flag >= 2 and not payload:
            end, last = float(header.label[0]), float(header.label[1])
            if not (1 <= end <= last < 2.0**53 and end.is_integer() and last.is_integer()):
                raise RecordIOError(f"header record has an invalid label {header.label.tolist()}",
                                    self.rec_path, 0, self.offset_of(0))
            end, last = int(end), int(last)
            self._header_end = end
            in_images = (self.keys >= 1) & (self.keys < end)
            id_keys = self.keys[(self.keys >= end) & (self.keys < last)]
            return "insightface", self.keys[in_images], last - end, id_keys
        self._refuse_unindexed_header()
        return "im2rec", self.keys, self._property_classes(), empty

    def _refuse_unindexed_header(self) -> None:
        """An InsightFace header at byte 0 that the index does not list (its ``0`` line deleted) would
        silently turn the dataset into an im2rec one whose identity records fail to decode."""
        if (self.offsets == 0).any():
            return
        try:
            record, _ = read_record_at(self._fd, 0, self.file_size, str(self.rec_path), None)
            header, payload = unpack_header(record)
        except RecordIOError:
            return          # not a record at byte 0: a structural problem that verify reports
        if header.flag >= 2 and not payload:
            raise RecordIOError("the InsightFace header record at byte 0 is missing from the index (its "
                                "'0' line was deleted?), which would read the dataset as im2rec; rebuild "
                                "the index with `faceocc index`", self.idx_path, 0, 0)

    @property
    def header_range(self) -> tuple[int, int] | None:
        """The header record's ``(N + 1, N + 1 + C)`` in the InsightFace layout, else None."""
        return (self._header_end, self._header_end + self.num_classes) if self.layout == "insightface" else None

    @property
    def identity_keys(self) -> np.ndarray:
        """Keys of the identity-range records present in the index (InsightFace layout)."""
        return self._id_keys

    def _property_classes(self) -> int | None:
        text = read_small_text(self.rec_path.parent / "property", 4096)
        try:
            return int(text.split(",")[0]) if text else None
        except ValueError:
            return None

    @cached_property
    def identity_ranges(self) -> np.ndarray | None:
        """``[first, last + 1)`` image-key ranges, one row per identity record; None if absent."""
        if self.layout != "insightface":
            return None
        rows = []
        for key in self._id_keys.tolist():
            header = self.read(key)[0]
            if header.flag < 2 or not np.all(np.isfinite(header.label[:2])):
                raise RecordIOError("identity record has no [first, last) label", self.rec_path, key,
                                    self.offset_of(key))
            bounds = header.label[:2].astype(np.float64)
            if np.any(bounds < 0) or np.any(bounds >= 2.0**53) or np.any(bounds % 1):
                raise RecordIOError(f"identity record's range {bounds.tolist()} is not two key numbers",
                                    self.rec_path, key, self.offset_of(key))
            rows.append(header.label[:2])
        return np.asarray(rows, dtype=np.int64).reshape(-1, 2)

    def offset_of(self, key: int) -> int:
        """Byte offset of ``key`` in the record file."""
        i = int(np.searchsorted(self.keys, key))
        if i >= self.keys.size or self.keys[i] != key:
            raise RecordIOError("key not in index", self.idx_path, int(key))
        return int(self.offsets[i])

    def offsets_of(self, keys: np.ndarray) -> np.ndarray:
        """Byte offsets of many keys at once (all must be in the index)."""
        keys = np.asarray(keys, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.keys, keys), max(self.keys.size - 1, 0))
        missing = np.flatnonzero(self.keys[pos] != keys) if keys.size else []
        if len(missing):
            raise RecordIOError("key not in index", self.idx_path, int(keys[missing[0]]))
        return self.offsets[pos]

    def read_raw(self, key: int) -> bytes:
        """The record stored under ``key``, header included."""
        offset = self.offset_of(key)
        return read_record_at(self._fd, offset, self.file_size, str(self.rec_path), int(key))[0]

    def read(self, key: int) -> tuple[IRHeader, bytes]:
        """The header and encoded image stored under ``key``.

        An image record's label must be an identity class (a whole number in ``0..classes-1`` when
        the class count is known): anything else raises :class:`RecordIOError` naming the key.
        """
        key = int(key)
        offset = self.offset_of(key)
        record, _ = read_record_at(self._fd, offset, self.file_size, str(self.rec_path), key)
        header, payload = unpack_header(record, str(self.rec_path), key, offset)
        span = self._image_span
        if span is not None and span[0] <= key < span[1]:
            class_of(header, self.rec_path, key, offset, self.num_classes)
        return header, payload

    def label(self, key: int) -> int:
        """Identity class of the image at ``key``."""
        return class_of(self.read(key)[0], self.rec_path, key, self.offset_of(key), self.num_classes)

    def __len__(self) -> int:
        return int(self.image_keys.size)

    def __iter__(self) -> Iterator[tuple[int, IRHeader, bytes]]:
        for key in self.image_keys.tolist():
            yield (key, *self.read(key))

    def fileno(self) -> int:
        """The open descriptor of the record file: it keeps reading the file this dataset opened, even
        after that file's name is removed or replaced."""
        return self._fd

    def close(self) -> None:
        """Release the file handle; the dataset cannot be read afterwards."""
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RecordDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_fd"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._fd = os.open(self.rec_path, os.O_RDONLY)
