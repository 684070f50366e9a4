"""Structural cross-checks for ``faceocc verify``: the record file against its index, the InsightFace
header against the keys present, the identity records against each other, and each image record
against its key and its identity's range. Each finding is ``(file, key or None, message)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from faceocc.recordio import IRHeader, RecordDataset, RecordIOError, class_of, scan_records

Problem = tuple[str, int | None, str]


def scan_problems(ds: RecordDataset) -> list[Problem]:
    """Every index offset is a record start, and every record of the file is listed in the index."""
    found: list[Problem] = []
    starts = set()
    try:
        for offset, _ in scan_records(ds.rec_path):
            starts.add(offset)
    except RecordIOError as exc:
        found.append((str(ds.rec_path), exc.key, str(exc)))
    stray = [k for k, o in zip(ds.keys.tolist(), ds.offsets.tolist(), strict=True) if o not in starts]
    for key in stray[:100]:
        found.append((str(ds.idx_path), key, "index and data disagree: offset is not a record start"))
    if len(starts) > ds.keys.size:
        found.append((str(ds.idx_path), None, f"index lists {ds.keys.size} records but the file holds {len(starts)}"))
    return found


def _first_missing(keys: np.ndarray, start: int) -> int:
    """The first of ``start, start + 1, ...`` that the sorted, unique ``keys`` lack."""
    expect = np.arange(start, start + keys.size)
    off = np.flatnonzero(keys != expect)
    return int(expect[off[0]]) if off.size else start + int(keys.size)


def header_problems(ds: RecordDataset) -> list[Problem]:
    """The InsightFace header's counts against the keys the index lists."""
    if ds.header_range is None:
        return []
    end, last = ds.header_range
    idx, found = str(ds.idx_path), []
    if ds.image_keys.size != end - 1:
        key = _first_missing(ds.image_keys, 1)
        found.append((idx, key, f"header announces {end - 1} images (keys 1..{end - 1}) but the index lists "
                                f"{ds.image_keys.size} (first missing: key {key}): a truncated dataset?"))
    if ds.identity_keys.size != last - end:
        key = _first_missing(ds.identity_keys, end)
        found.append((idx, key, f"header announces {last - end} identities (keys {end}..{last - 1}) but the "
                                f"index lists {ds.identity_keys.size} identity records (first missing: key {key})"))
    beyond = ds.keys[ds.keys >= last]
    if beyond.size:
        found.append((idx, int(beyond[0]), f"{beyond.size} key(s) lie beyond the header's ranges (keys 0..{last - 1})"))
    return found


def identity_problems(ds: RecordDataset) -> tuple[list[Problem], Callable[[int], int] | None]:
    """Identity ranges must be non-empty and tile the image keys 1..N in order. Returns the findings
    and, when the ranges are sound, a function giving the class an image key's range assigns."""
    if ds.header_range is None or ds.identity_keys.size == 0:
        return [], None
    rec = str(ds.rec_path)
    try:
        ranges = ds.identity_ranges
    except RecordIOError as exc:
        return [(rec, exc.key, str(exc))], None
    end = ds.header_range[0]
    firsts, lasts, id_keys = ranges[:, 0], ranges[:, 1], ds.identity_keys
    reversed_ = np.flatnonzero(firsts >= lasts)
    if reversed_.size:
        i = int(reversed_[0])
        return [(rec, int(id_keys[i]), f"identity {int(id_keys[i]) - end} has an empty or reversed range "
                                       f"[{firsts[i]}, {lasts[i]}) ({reversed_.size} such identities)")], None
    expect_first = np.concatenate([[1], lasts[:-1]])
    gaps = np.flatnonzero(firsts != expect_first)
    if gaps.size or lasts[-1] != end:
        i = int(gaps[0]) if gaps.size else len(firsts) - 1
        return [(rec, int(id_keys[i]), f"identity ranges do not tile the image keys 1..{end - 1}: identity "
                                       f"{int(id_keys[i]) - end} covers [{firsts[i]}, {lasts[i]})")], None

    def class_for(key: int) -> int:
        return int(id_keys[np.searchsorted(firsts, key, side="right") - 1]) - end

    return [], class_for


def image_problems(ds: RecordDataset, key: int, header: IRHeader,
                   class_for: Callable[[int], int] | None) -> list[Problem]:
    """An image record's header against its key and against its identity's range."""
    found: list[Problem] = []
    rec = str(ds.rec_path)
    if int(header.id) != key:
        found.append((rec, key, f"header id {header.id} differs from its index key {key} (index offsets "
                                "swapped or pointing at another record?)"))
    if class_for is not None:
        want, label = class_for(key), class_of(header)
        if label != want:
            found.append((rec, key, f"label {label} outside its identity's range: key {key} lies in the range "
                                    f"of identity {want}"))
    return found
