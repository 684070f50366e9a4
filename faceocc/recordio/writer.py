"""``RecordWriter``: an indexed record file written under temporary names and moved into place on close."""

from __future__ import annotations

import contextlib
import os
from array import array
from bisect import bisect_left
from pathlib import Path

from .errors import RecordIOError
from .files import create_new
from .frames import encode_record
from .header import IRHeader, pack_header


class RecordWriter:
    """Writes an indexed record file under temporary names and moves both into place on close.

    Keys must be written in strictly increasing order (as InsightFace and every faceocc writer
    produce them). A crash, or an exception inside the ``with`` block, leaves the final names
    untouched. The ``.partial`` files are created new (``O_EXCL | O_NOFOLLOW``, a link planted at
    their names is removed, never followed) and renamed over the final names, which replaces a link
    there rather than writing through it.
    """

    def __init__(self, rec_path: str | os.PathLike, idx_path: str | os.PathLike | None = None) -> None:
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path) if idx_path else self.rec_path.with_suffix(".idx")
        self._tmp_rec = self.rec_path.with_name(self.rec_path.name + ".partial")
        self._tmp_idx = self.idx_path.with_name(self.idx_path.name + ".partial")
        self._rec = os.fdopen(create_new(self._tmp_rec), "wb")
        try:
            self._idx = os.fdopen(create_new(self._tmp_idx), "w")
        except BaseException:
            self._rec.close()
            self._tmp_rec.unlink(missing_ok=True)
            raise
        self._keys = array("q")
        self._offsets = array("q")
        self.offset = 0

    def write(self, key: int, header: IRHeader, payload: bytes) -> int:
        """Append one record under ``key``; returns its byte offset."""
        return self.write_raw(key, pack_header(header, payload))

    def write_raw(self, key: int, record: bytes) -> int:
        """Append an already packed record (header included) under ``key``; returns its offset."""
        key = int(key)
        if key < 0 or (self._keys and key <= self._keys[-1]):
            raise RecordIOError("keys must be non-negative and strictly increasing",
                                self._tmp_rec, key)
        framed = encode_record(record)
        offset = self.offset
        self._rec.write(framed)
        self._idx.write(f"{key}\t{offset}\n")
        self._keys.append(key)
        self._offsets.append(offset)
        self.offset += len(framed)
        return offset

    def patch(self, key: int, header: IRHeader, payload: bytes) -> None:
        """Overwrite the record written earlier under ``key`` with one of the same framed size."""
        i = bisect_left(self._keys, key)
        if i == len(self._keys) or self._keys[i] != key:
            raise RecordIOError("cannot patch a key that was not written", self._tmp_rec, key)
        offset = self._offsets[i]
        end = self._offsets[i + 1] if i + 1 < len(self._offsets) else self.offset
        framed = encode_record(pack_header(header, payload))
        if len(framed) != end - offset:
            raise RecordIOError("a patched record must keep its framed size", self._tmp_rec, key,
                                offset)
        self._rec.flush()
        os.pwrite(self._rec.fileno(), framed, offset)

    def close(self) -> None:
        """Flush, sync and move the files to their final names."""
        if self._rec.closed:
            return
        try:
            for f in (self._rec, self._idx):
                f.flush()
                os.fsync(f.fileno())
                f.close()
        except BaseException:           # disk full while flushing: leave no partial files behind
            self.abort()
            raise
        os.replace(self._tmp_rec, self.rec_path)
        os.replace(self._tmp_idx, self.idx_path)

    def abort(self) -> None:
        """Drop everything written so far."""
        for f, tmp in ((self._rec, self._tmp_rec), (self._idx, self._tmp_idx)):
            with contextlib.suppress(OSError):      # a close that flushes into a full disk
                f.close()
            tmp.unlink(missing_ok=True)

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
