"""The NumPy twin spread over threads: the table's rows in contiguous parts, one
:func:`ops.reference.apply_reference` call per part. Every step of the specification is per row, so
the parts together equal a single call on the whole batch (tested); NumPy releases the GIL in the array
work, so parts run in parallel. The one place that splits a batch's rows over threads: the operator
(:func:`apply_host`) and the DALI steps (through ``FaceOccluder.apply_parts``) use it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .kinds import Kind
from .params import batch_rows
from .reference import DEFAULT, Alloc, apply_reference, clean_faces
from .settings import ApplySettings

MIN_ROWS = 16  # below this per thread, threading costs more than it saves


def row_ranges(n: int, threads: int) -> list[tuple[int, int]]:
    """Contiguous ``(start, stop)`` row ranges covering ``n`` rows: ``threads`` of them, fewer when a part
    would get under :data:`MIN_ROWS` rows (at least one)."""
    parts = max(1, min(int(threads), n // MIN_ROWS))
    bounds = np.linspace(0, n, parts + 1).astype(int).tolist()
    return list(zip(bounds[:-1], bounds[1:]))


def _draws(t: np.ndarray) -> np.ndarray:
    """Rows with something to draw: an occluder, a 3D mask or lighting."""
    return (t["kind"] != Kind.NONE) | (t["light"] != 0) | (t["m3d_mode"] != 0) | (t["m3d_slot"] >= 0)


def apply_rows(faces: np.ndarray, t: np.ndarray, atlas: np.ndarray, masked: np.ndarray | None = None,
               masks: np.ndarray | None = None, *, settings: ApplySettings = DEFAULT,
               alloc: Alloc = np.empty) -> dict:
    """:func:`apply_reference`, with one shortcut that gives the same values: when no row has anything
    to draw (no occluder, no 3D mask, no lighting), ``img`` is a copy of ``ori`` and only ``ori`` is
    computed."""
    if _draws(t).any():
        return apply_reference(faces, t, atlas, masked, masks, settings=settings, alloc=alloc)
    ori = clean_faces(faces, t["flip"], settings, alloc)
    img = alloc(ori.shape, ori.dtype)
    np.copyto(img, ori)
    msk = alloc((len(t), *faces.shape[1:3]), np.int32)
    msk.fill(1)
    return {"img": img, "msk": msk, "ori": ori, "kind": t["kind"].astype(np.int8)}


def apply_parts(faces: np.ndarray, t: np.ndarray, atlas: np.ndarray, masked: np.ndarray | None = None,
                masks: np.ndarray | None = None, *, settings: ApplySettings = DEFAULT,
                pool: ThreadPoolExecutor | None = None, threads: int = 1, alloc: Alloc = np.empty) -> list[dict]:
    """:func:`apply_rows` on the contiguous parts of :func:`row_ranges` (one part without ``pool``), run
    on ``pool``'s threads: one output dict per part, in row order, not joined. ``masked``/``masks`` are
    aligned with ``faces`` (``ops.params``: ``m3d_slot``); ``alloc`` gives every output array."""
    ranges = row_ranges(len(t), threads if pool is not None else 1)
    if len(ranges) == 1:
        return [apply_rows(faces, t, atlas, masked, masks, settings=settings, alloc=alloc)]
    jobs = [pool.submit(apply_rows, faces[a:b], batch_rows(t, a, b), atlas, None if masked is None else masked[a:b],
                        None if masks is None else masks[a:b], settings=settings, alloc=alloc)
            for a, b in ranges]
    return [j.result() for j in jobs]


def join_parts(parts: list[dict], alloc: Alloc = np.empty) -> dict:
    """The outputs of :func:`apply_parts` as one batch (the single part itself, or each output
    concatenated into an array from ``alloc``)."""
    if len(parts) == 1:
        return parts[0]
    joined = {}
    for k, first in parts[0].items():
        n = sum(len(p[k]) for p in parts)
        joined[k] = np.concatenate([p[k] for p in parts], out=alloc((n, *first.shape[1:]), first.dtype))
    return joined


def apply_host(faces: np.ndarray, t: np.ndarray, atlas: np.ndarray, masked: np.ndarray | None = None,
               masks: np.ndarray | None = None, *, settings: ApplySettings = DEFAULT,
               pool: ThreadPoolExecutor | None = None, threads: int = 1, alloc: Alloc = np.empty) -> dict:
    """:func:`apply_parts` joined: the twin's outputs for the whole batch, its rows split over ``threads``
    workers of ``pool``; ``alloc`` gives the arrays of the outputs."""
    return join_parts(apply_parts(faces, t, atlas, masked, masks, settings=settings, pool=pool, threads=threads,
                                  alloc=alloc), alloc)
