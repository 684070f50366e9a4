"""Looking at a dataset: a summary (``faceocc info``) and a full verification (``faceocc verify``)."""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from faceocc.datasets.checks import header_problems, identity_problems, image_problems, scan_problems
from faceocc.datasets.mask_alignment import (
    identity_problem,
    key_problem,
    mask_status,
    record_problem,
    render_identity,
    train_fingerprint,
)
from faceocc.datasets.mask_sets import MASK_FILES, dataset_dir, mask_paths, open_set
from faceocc.datasets.pack import encoded_format
from faceocc.recordio import RecordDataset, RecordIOError, class_of
from faceocc.recordio.images import MAX_PIXELS, decode_image, decode_problem

__all__ = ["MASK_FILES", "VerifyReport", "dataset_dir", "describe", "mask_paths", "verify"]


def _image_facts(data: bytes, max_pixels: int | None) -> tuple[str, str]:
    image = decode_image(data, gray=None, max_pixels=max_pixels)  # as the loader sees it (EXIF applied)
    return encoded_format(data), f"{image.shape[1]}x{image.shape[0]} {'L' if image.ndim == 2 else 'RGB'}"


def describe(path: str | os.PathLike, sample: int = 256, max_pixels: int | None = MAX_PIXELS) -> dict:
    """Summary of a dataset: layout, counts, key range, encodings and sizes seen in a sample (an image over
    ``max_pixels`` is counted as undecodable, never decoded)."""
    masks = mask_status(path)
    with RecordDataset(path) as ds:
        keys = ds.image_keys
        pick = keys if keys.size <= sample else keys[np.linspace(0, keys.size - 1, sample).astype(int)]
        encodings: Counter[str] = Counter()
        sizes: Counter[str] = Counter()
        labels = set()
        for key in pick.tolist():
            header, data = ds.read(key)             # refuses a bad label, naming the key
            labels.add(class_of(header))
            try:
                enc, size = _image_facts(data, max_pixels)
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
            "has_masks": masks["aligned"],
            "masks": masks,
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


def _open_masks(path: str | os.PathLike, ds: RecordDataset, report: VerifyReport) -> dict[str, RecordDataset]:
    """The mask files, opened, scanned and key-checked; none when the set is unusable."""
    try:
        masks = open_set(path) or {}
    except RecordIOError as exc:
        report.add(exc.path or str(path), exc.key, str(exc))
        return {}
    paths = dict(masks)
    for name, other in list(masks.items()):
        before = len(report.problems)
        report.problems.extend(scan_problems(other))
        problem = key_problem(ds, name, other)
        if problem:
            report.add(problem.path, problem.key, str(problem))
        if problem or len(report.problems) > before:
            masks.pop(name).close()
    if len(masks) != len(paths):
        for other in masks.values():
            other.close()
        return {}
    return masks


def verify(path: str | os.PathLike, progress: bool = True, workers: int | None = None,
           max_pixels: int | None = MAX_PIXELS) -> VerifyReport:
    """Full scan: structure (index against data, header against keys, identity ranges), every image
    record's label, id and decoding (an image over ``max_pixels`` pixels is reported, never decoded),
    and the mask set (the loader's alignment rule, on every key)."""
    report = VerifyReport()
    try:
        ds = RecordDataset(path)
    except RecordIOError as exc:
        report.add(exc.path or str(path), exc.key, str(exc))
        return report
    with ds:
        report.problems.extend(scan_problems(ds))
        report.problems.extend(header_problems(ds))
        found, class_for = identity_problems(ds)
        report.problems.extend(found)
        masks = _open_masks(path, ds, report)
        train_fp = ""
        if masks:
            try:
                train_fp = train_fingerprint(ds)
            except RecordIOError as exc:     # a broken train.rec: reported, and no render identity to compare
                report.add(exc.path or str(ds.rec_path), exc.key, f"render identity not checked: {exc}")
        identity: dict[str, int | None] = {}

        def check(key: int) -> list[tuple[str, int | None, str]]:
            try:
                header, data = ds.read(key)
            except RecordIOError as exc:
                return [(str(ds.rec_path), key, str(exc))]
            found = image_problems(ds, key, header, class_for)
            problem = decode_problem(data, max_pixels)
            if problem:
                found.append((str(ds.rec_path), key, problem))
            headers = {}
            for name, other in masks.items():
                try:
                    h2, d2 = other.read(key)
                except RecordIOError as exc:
                    found.append((str(other.rec_path), key, str(exc)))
                    continue
                headers[name] = h2
                mismatch = record_problem(name, other, key, header, h2)
                if mismatch:
                    found.append((str(other.rec_path), key, str(mismatch)))
                first = identity.setdefault(name, render_identity(h2))
                if render_identity(h2) != first:
                    found.append((str(other.rec_path), key, f"{name}.rec mixes records of several renders"))
                problem = decode_problem(d2, max_pixels)
                if problem:
                    found.append((str(other.rec_path), key, f"{name}: {problem}"))
            mixed = identity_problem(masks, headers, key, train_fp) if len(headers) == len(masks) else None
            if mixed:
                found.append((str(mixed.path), key, str(mixed)))
            return found

        keys = ds.image_keys.tolist()
        if keys:
            check(keys[0])      # fixes each mask file's identity before the threads compare against it
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
