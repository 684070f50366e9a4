"""Looking at a dataset: a summary (``faceocc info``) and a full verification (``faceocc verify``)."""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .decoding import decode_image, decode_problem
from .packing import encoded_format
from .recordio import RecordDataset, RecordIOError, class_of, scan_records

MASK_FILES = ("mask_out", "mask")


def dataset_dir(path: str | os.PathLike) -> Path:
    """The folder of a dataset given as a folder or as its ``.rec`` path."""
    p = Path(path)
    return p if p.is_dir() else p.parent


def mask_paths(data_dir: str | os.PathLike) -> dict[str, Path] | None:
    """``{"mask_out": rec, "mask": rec}`` when both mask record files and their indexes exist."""
    d = dataset_dir(data_dir)
    paths = {name: d / f"{name}.rec" for name in MASK_FILES}
    if all(p.is_file() and p.with_suffix(".idx").is_file() for p in paths.values()):
        return paths
    return None


def _image_facts(data: bytes) -> tuple[str, str]:
    image = decode_image(data, gray=None)                         # as the loader sees it (EXIF applied)
    return encoded_format(data), f"{image.shape[1]}x{image.shape[0]} {'L' if image.ndim == 2 else 'RGB'}"


def describe(path: str | os.PathLike, sample: int = 256) -> dict:
    """Summary of a dataset: layout, counts, key range, encodings and sizes seen in a sample."""
    with RecordDataset(path) as ds:
        keys = ds.image_keys
        pick = keys if keys.size <= sample else keys[np.linspace(0, keys.size - 1, sample).astype(int)]
        encodings: Counter[str] = Counter()
        sizes: Counter[str] = Counter()
        labels = set()
        for key in pick.tolist():
            header, data = ds.read(key)
            labels.add(class_of(header))
            try:
                enc, size = _image_facts(data)
            except Exception:
                enc, size = "undecodable", "?"
            encodings[enc] += 1
            sizes[size] += 1
        identities = ds.num_classes
        return {
            "path": str(ds.rec_path),
            "layout": ds.layout,
            "images": len(ds),
            "identities": identities,
            "key_range": [int(keys.min()), int(keys.max())] if keys.size else None,
            "sampled": int(pick.size),
            "encodings": dict(encodings),
            "sizes": dict(sizes),
            "labels_in_sample": len(labels),
            "has_masks": mask_paths(path) is not None,
        }


@dataclass
class VerifyReport:
    """Problems found by :func:`verify`, each ``(file, key or None, message)``."""

    checked: int = 0
    problems: list[tuple[str, int | None, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, file: str | Path, key: int | None, message: str) -> None:
        self.problems.append((str(file), key, message))


def _decode_problem(data: bytes) -> str | None:
    return decode_problem(data)                                   # the loader's verdict (DALI), not PIL's


def _check_structure(ds: RecordDataset, report: VerifyReport) -> None:
    starts = set()
    try:
        for offset, _ in scan_records(ds.rec_path):
            starts.add(offset)
    except RecordIOError as exc:
        report.add(ds.rec_path, exc.key, str(exc))
    stray = [k for k, o in zip(ds.keys.tolist(), ds.offsets.tolist(), strict=False) if o not in starts]
    for key in stray[:100]:
        report.add(ds.idx_path, key, "index and data disagree: offset is not a record start")
    if len(starts) > ds.keys.size:
        report.add(ds.idx_path, None,
                   f"index lists {ds.keys.size} records but the file holds {len(starts)}")


def verify(path: str | os.PathLike, progress: bool = True, workers: int | None = None) -> VerifyReport:
    """Full scan: structure, every image record decodes, labels in range, mask records aligned."""
    report = VerifyReport()
    try:
        ds = RecordDataset(path)
    except RecordIOError as exc:
        report.add(exc.path or str(path), exc.key, str(exc))
        return report
    with ds:
        _check_structure(ds, report)
        classes = ds.num_classes
        masks = {}
        for name, rec in (mask_paths(path) or {}).items():
            try:
                masks[name] = RecordDataset(rec)
            except RecordIOError as exc:
                report.add(rec, exc.key, str(exc))
        for name, other in list(masks.items()):
            if not np.array_equal(other.keys, ds.keys):
                differ = np.setxor1d(other.keys, ds.keys)
                report.add(other.rec_path, int(differ[0]) if differ.size else None,
                           f"{name} keys differ from train.rec keys ({differ.size} differ)")
                masks.pop(name).close()

        def check(key: int) -> list[tuple[str, int | None, str]]:
            found = []
            try:
                header, data = ds.read(key)
            except RecordIOError as exc:
                return [(str(ds.rec_path), key, str(exc))]
            label = class_of(header)
            if label < 0 or (classes is not None and label >= classes):
                found.append((str(ds.rec_path), key, f"label {label} outside 0..{classes}"))
            problem = _decode_problem(data)
            if problem:
                found.append((str(ds.rec_path), key, problem))
            for name, other in masks.items():
                try:
                    h2, d2 = other.read(key)
                except RecordIOError as exc:
                    found.append((str(other.rec_path), key, str(exc)))
                    continue
                if h2.id != header.id or class_of(h2) != label:
                    found.append((str(other.rec_path), key,
                                  f"{name} id/label ({h2.id}, {class_of(h2)}) differ from "
                                  f"train.rec ({header.id}, {label})"))
                problem = _decode_problem(d2)
                if problem:
                    found.append((str(other.rec_path), key, f"{name}: {problem}"))
            return found

        keys = ds.image_keys.tolist()
        with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool, \
                tqdm(total=len(keys), unit="img", desc="verifying", disable=not progress) as bar:
            for start in range(0, len(keys), 4096):
                chunk = keys[start:start + 4096]
                for found in pool.map(check, chunk):
                    report.problems.extend(found)
                report.checked += len(chunk)
                bar.update(len(chunk))
        for other in masks.values():
            other.close()
    return report
