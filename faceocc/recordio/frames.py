"""RecordIO framing, as dmlc-core writes it: ``uint32 magic``, ``uint32 lrec`` (continuation flag in the
upper 3 bits, length in the lower 29), the payload, zero padding to 4 bytes; long or magic-bearing
payloads split into parts."""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator

import numpy as np

from .errors import RecordIOError

MAGIC = 0xCED7230A
MAX_PART = (1 << 29) - 1
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_FRAME = struct.Struct("<II")


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


