"""The ``.idx`` text index beside a record file: one ``key<TAB>offset`` line per record."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from .errors import RecordIOError
from .files import RefusedFile, read_regular


def read_index(idx_path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Parse a ``key<TAB>offset`` index into int64 arrays (keys, offsets), in file order."""
    path = Path(idx_path)
    try:
        raw = read_regular(path, 1 << 40, "index file")       # a FIFO or device is refused, never read
    except FileNotFoundError:
        raise RecordIOError("index file is missing; rebuild it with `faceocc index REC`", path) from None
    except RefusedFile as exc:
        raise RecordIOError(str(exc), path) from None
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
    if flat.size != 2 * tabs.size:
        return None
    if flat.size and (flat.max() == np.iinfo(np.int64).max or flat.min() == np.iinfo(np.int64).min):
        return None     # NumPy saturates numbers past int64: the line-by-line parse refuses them by name
    return flat.reshape(-1, 2)


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

