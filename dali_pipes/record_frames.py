"""RecordIO at the byte level, as dmlc-core and ``mxnet.recordio`` define it: framing, image headers,
the ``.idx`` text index, and the error every malformed input raises.
"""

from __future__ import annotations

import io
import math
import os
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

MAGIC = 0xCED7230A
MAX_PART = (1 << 29) - 1
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_FRAME = struct.Struct("<II")
_IR = struct.Struct("<IfQQ")
MAX_CLASSES = 1 << 31


class RecordIOError(Exception):
    """A record file or index that cannot be read as MXNet RecordIO; names file, key and offset."""

    def __init__(self, message: str, path: str | os.PathLike | None = None,
                 key: int | None = None, offset: int | None = None) -> None:
        self.path = None if path is None else str(path)
        self.key = key
        self.offset = offset
        where = []
        if self.path is not None:
            where.append(self.path)
        if key is not None:
            where.append(f"key {key}")
        if offset is not None:
            where.append(f"byte offset {offset}")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)


class IRHeader(NamedTuple):
    """MXNet's image record header; ``label`` is a float, or a float32 array when ``flag > 0``."""

    flag: int
    label: float | np.ndarray
    id: int
    id2: int


def class_of(header: IRHeader, path: str | os.PathLike | None = None, key: int | None = None,
             offset: int | None = None, classes: int | None = None) -> int:
    """The identity class of an image record: the label, or its first value for vector labels.

    The class must be a finite whole number in ``0 .. classes - 1`` (``classes`` defaults to 2**31);
    anything else (NaN, inf, 1e30, 2.5, -1) raises :class:`RecordIOError` naming ``path``, ``key``
    and ``offset``, never a ValueError or a silently truncated class.
    """
    label = header.label
    if isinstance(label, np.ndarray):
        if label.size == 0:
            raise RecordIOError("image record has an empty label vector", path, key, offset)
        label = label[0]
    value = float(label)
    bound = MAX_CLASSES if classes is None else int(classes)
    if not math.isfinite(value):
        raise RecordIOError(f"label {value} is not a finite number", path, key, offset)
    if not value.is_integer():
        raise RecordIOError(f"label {value} is not a whole number (an identity class)", path, key, offset)
    if not 0 <= value < bound:
        raise RecordIOError(f"label {value:.0f} outside 0..{bound - 1} ({bound} identities)", path, key, offset)
    return int(value)


def pack_header(header: IRHeader, payload: bytes) -> bytes:
    """Prefix ``payload`` with ``header`` as ``mxnet.recordio.pack`` does (array labels set flag)."""
    label = header.label
    if np.ndim(label) == 0:
        head = _IR.pack(0, float(label), int(header.id), int(header.id2))
        return head + bytes(payload)
    values = np.asarray(label, dtype=np.float32).ravel()
    head = _IR.pack(values.size, 0.0, int(header.id), int(header.id2))
    return head + values.tobytes() + bytes(payload)


def unpack_header(record: bytes, path: str | None = None, key: int | None = None,
                  offset: int | None = None) -> tuple[IRHeader, bytes]:
    """Split a record into its header and the payload after it (``mxnet.recordio.unpack``)."""
    if len(record) < _IR.size:
        raise RecordIOError(f"record of {len(record)} bytes is shorter than an image header",
                            path, key, offset)
    flag, label, id_, id2 = _IR.unpack_from(record, 0)
    rest = record[_IR.size:]
    if flag > 0:
        if len(rest) < 4 * flag:
            raise RecordIOError(f"header announces {flag} label values but the record is too short",
                                path, key, offset)
        vector = np.frombuffer(rest, dtype=np.float32, count=flag).copy()
        return IRHeader(flag, vector, id_, id2), rest[4 * flag:]
    return IRHeader(flag, label, id_, id2), rest


def encode_record(data: bytes) -> bytes:
    """Frame ``data`` as dmlc's RecordIOWriter does, splitting it at every aligned magic word.

    dmlc drops each aligned occurrence of the magic word from the data and starts a new part there
    (continuation flags 1, 2, 3); readers put the magic word back when joining the parts. A single
    record must stay under 2**29 bytes, as in dmlc, which refuses longer ones.
    """
    n = len(data)
    if n > MAX_PART:
        raise RecordIOError(f"record of {n} bytes exceeds RecordIO's limit of 2**29 - 1 bytes")
    out = io.BytesIO()
    start = 0
    view = memoryview(data)
    for pos in _aligned_magic_positions(data):
        out.write(_FRAME.pack(MAGIC, ((1 if start == 0 else 2) << 29) | (pos - start)))
        out.write(view[start:pos])
        start = pos + 4
    out.write(_FRAME.pack(MAGIC, ((3 if start else 0) << 29) | (n - start)))
    out.write(view[start:])
    out.write(b"\0" * (-n % 4))
    return out.getvalue()


def _aligned_magic_positions(data: bytes) -> list[int]:
    aligned = len(data) // 4 * 4
    if aligned == 0 or _MAGIC_BYTES not in data:
        return []
    words = np.frombuffer(data, dtype="<u4", count=aligned // 4)
    return (np.flatnonzero(words == MAGIC) * 4).tolist()


def read_record_at(fd: int, offset: int, file_size: int, path: str | None = None,
                   key: int | None = None) -> tuple[bytes, int]:
    """Read the (possibly multi-part) record starting at ``offset``; return it and the next offset."""
    parts = []
    pos = offset
    first = True
    while True:
        frame = os.pread(fd, 8, pos)
        if len(frame) < 8:
            raise RecordIOError("truncated record: file ends inside a record frame", path, key, pos)
        magic, lrec = _FRAME.unpack(frame)
        if magic != MAGIC:
            raise RecordIOError(f"wrong magic 0x{magic:08x}, expected 0x{MAGIC:08x}", path, key, pos)
        cflag, length = lrec >> 29, lrec & MAX_PART
        if cflag not in ((0, 1) if first else (2, 3)):
            raise RecordIOError(f"unexpected continuation flag {cflag}", path, key, pos)
        padded = (length + 3) // 4 * 4
        if pos + 8 + padded > file_size:
            raise RecordIOError(f"truncated record: {length} bytes announced, file ends first",
                                path, key, pos)
        parts.append(os.pread(fd, length, pos + 8))
        pos += 8 + padded
        if cflag in (0, 3):
            return _MAGIC_BYTES.join(parts), pos
        first = False


def read_index(idx_path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Parse a ``key<TAB>offset`` index into int64 arrays (keys, offsets), in file order."""
    path = Path(idx_path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RecordIOError("index file is missing; rebuild it with `faceocc index REC`", path) from None
    raw = raw.rstrip()
    if not raw:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    table = _parse_tab_separated(raw)
    if table is None:
        table = _parse_line_by_line(raw, path)
    return table[:, 0].copy(), table[:, 1].copy()


def _parse_tab_separated(raw: bytes) -> np.ndarray | None:
    """Fast path for MXNet's own format, one tab per line; None when the text is anything else."""
    buf = np.frombuffer(raw, dtype=np.uint8)
    tabs, newlines = np.flatnonzero(buf == 9), np.flatnonzero(buf == 10)
    if tabs.size != newlines.size + 1 or np.any(tabs[:-1] > newlines) or np.any(tabs[1:] < newlines):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            flat = np.fromstring(raw, dtype=np.int64, sep=" ")
        except (ValueError, DeprecationWarning):
            return None
    return flat.reshape(-1, 2) if flat.size == 2 * tabs.size else None


def _parse_line_by_line(raw: bytes, path: Path) -> np.ndarray:
    rows = []
    offset = 0
    for number, line in enumerate(raw.split(b"\n"), 1):
        fields = line.split()
        if len(fields) != 2 or not all(f.isdigit() and len(f) < 19 for f in fields):
            shown = line[:60].decode("utf-8", "replace")
            raise RecordIOError(f"index line {number} is not 'key<TAB>offset': {shown!r}",
                                path, None, offset)
        rows.append((int(fields[0]), int(fields[1])))
        offset += len(line) + 1
    return np.array(rows, dtype=np.int64).reshape(-1, 2)


def scan_records(rec_path: str | os.PathLike) -> Iterator[tuple[int, bytes]]:
    """Yield (offset, record) for every record of a ``.rec`` file, front to back."""
    path = str(rec_path)
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        pos = 0
        while pos < size:
            record, nxt = read_record_at(fd, pos, size, path)
            yield pos, record
            pos = nxt
    finally:
        os.close(fd)


