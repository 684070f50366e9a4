"""The NumPy twin spread over threads: the table's rows in contiguous chunks, one
:func:`ops.reference.apply_reference` call per chunk. Every step of the specification is per row, so
the result equals a single call on the whole batch (tested); NumPy releases the GIL in the array
work, so chunks run in parallel."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .kinds import Kind
from .reference import DEFAULT, Alloc, apply_reference, clean_faces
from .settings import ApplySettings

MIN_ROWS = 16  # below this per thread, threading costs more than it saves


def _chunk(faces: np.ndarray, t: np.ndarray, masked: np.ndarray | None, masks: np.ndarray | None,
           a: int, b: int) -> tuple:
    rows = t[a:b].copy()
    slots = rows["m3d_slot"]
    used = slots >= 0
    if masked is None or not used.any():
        return faces[a:b], rows, None, None
    picked = slots[used]
    slots[used] = np.arange(picked.size)
    return faces[a:b], rows, masked[picked], masks[picked]


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


def apply_host(faces: np.ndarray, t: np.ndarray, atlas: np.ndarray, masked: np.ndarray | None = None,
               masks: np.ndarray | None = None, *, settings: ApplySettings = DEFAULT,
               pool: ThreadPoolExecutor | None = None, threads: int = 1, alloc: Alloc = np.empty) -> dict:
    """:func:`apply_rows` with the rows split over ``threads`` workers of ``pool``; ``alloc`` gives the
    arrays of the outputs."""
    n = len(t)
    parts = min(threads, n // MIN_ROWS) if pool is not None else 1
    if parts <= 1:
        return apply_rows(faces, t, atlas, masked, masks, settings=settings, alloc=alloc)
    bounds = np.linspace(0, n, parts + 1).astype(int)
    jobs = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        f, rows, mf, mk = _chunk(faces, t, masked, masks, a, b)
        jobs.append(pool.submit(apply_rows, f, rows, atlas, mf, mk, settings=settings))
    outs = [j.result() for j in jobs]
    joined = {}
    for k in outs[0]:
        first = outs[0][k]
        joined[k] = np.concatenate([o[k] for o in outs], out=alloc((n, *first.shape[1:]), first.dtype))
    return joined
