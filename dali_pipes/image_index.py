"""The image-only index that DALI's ``readers.mxnet`` is given, kept in a cache, never beside the data.

DALI reads every key of the index it gets and decodes each payload, so the header and identity
records of the InsightFace layout (empty payloads) must be left out.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from faceocc.recordio import RecordDataset
from faceocc.recordio.files import write_atomic


def cache_dir() -> Path:
    """``$FACEOCC_CACHE``, or ``~/.cache/faceocc``."""
    return Path(os.environ.get("FACEOCC_CACHE") or Path.home() / ".cache" / "faceocc")


def _fingerprint(dataset: RecordDataset) -> str:
    h = hashlib.sha256()
    for p in (dataset.rec_path, dataset.idx_path):
        st = p.stat()
        h.update(f"{p.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()[:20]


def image_index_path(dataset: RecordDataset) -> Path:
    """Path of an index listing only ``dataset``'s image records, written to the cache if absent.

    The file name is keyed by the dataset's path, size and modification time, so a changed dataset
    gets a fresh index. Lines are ``key\\toffset`` in key order.
    """
    target = cache_dir() / "index" / f"{dataset.rec_path.stem}-{_fingerprint(dataset)}.idx"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    keys = dataset.image_keys
    offsets = dataset.offsets_of(keys)
    rows = "".join(f"{k}\t{o}\n" for k, o in zip(keys.tolist(), offsets.tolist(), strict=False))
    write_atomic(target, rows)                 # a new temporary file, renamed: a link there is replaced
    return target
