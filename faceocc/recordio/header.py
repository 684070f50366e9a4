"""MXNet's image record header (``IRHeader``, struct ``<IfQQ`` plus ``flag`` float32 label values) and the
identity class it carries, as ``mxnet.recordio.pack``/``unpack`` define them."""

from __future__ import annotations

import math
import os
import struct
from typing import NamedTuple

import numpy as np

from .errors import RecordIOError

_IR = struct.Struct("<IfQQ")
MAX_CLASSES = 1 << 31


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

