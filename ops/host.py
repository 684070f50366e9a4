"""The NumPy twin spread over threads: the table's rows in contiguous chunks, one
:func:`ops.reference.apply_reference` call per chunk. Every step of the specification is per row, so
the result equals a single call on the whole batch (tested); NumPy releases the GIL in the array
work, so chunks run in parallel."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .reference import apply_reference

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


def apply_host(faces: np.ndarray, t: np.ndarray, atlas: np.ndarray, masked: np.ndarray | None,
               masks: np.ndarray | None, grayscale: bool, normalize: bool, dtype: np.dtype,
               pool: ThreadPoolExecutor | None = None, threads: int = 1, **options: object) -> dict:
    """:func:`apply_reference` with the rows split over ``threads`` workers of ``pool``; ``options``
    are its keyword arguments (gray_channels, gray_offset_divisor, mask_threshold)."""
    n = len(t)
    parts = min(threads, n // MIN_ROWS) if pool is not None else 1
    if parts <= 1:
        return apply_reference(faces, t, atlas, masked, masks, grayscale, normalize, dtype, **options)
    bounds = np.linspace(0, n, parts + 1).astype(int)
    jobs = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        f, rows, mf, mk = _chunk(faces, t, masked, masks, a, b)
        jobs.append(pool.submit(apply_reference, f, rows, atlas, mf, mk, grayscale, normalize, dtype, **options))
    outs = [j.result() for j in jobs]
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
