"""Parameter tables for the kernel tests: the sampler's, and fuzzed ones that reach the corners the
sampler avoids (boxes partly or wholly outside the image, any atlas crop, 3..MAX_VERTICES vertices with
self-intersections, sigma 0, alpha thresholds at their ends, every flip and lighting choice).

Fields are filled by name only where ``PARAM_DTYPE`` has them, so a table change elsewhere leaves these
tables valid (unknown fields keep :func:`ops.params.empty_params`' values).
"""

from __future__ import annotations

import numpy as np
from faceocc.ops import Kind
from faceocc.ops.params import MAX_VERTICES, empty_params


def _set(t: np.ndarray, name: str, value: object) -> None:
    if name in t.dtype.names:
        t[name] = value


def fuzzed_table(rng: np.random.Generator, n: int, size: tuple[int, int], atlas_sizes: np.ndarray) -> np.ndarray:
    """``n`` random rows valid for images of ``size`` = (H, W) and an atlas of entries ``atlas_sizes``
    [K, 2] (h, w); mask3d rows get slots 0, 1, ... in row order."""
    h, w = size
    t = empty_params(n)
    t["kind"] = rng.integers(0, len(Kind), n)
    _set(t, "flip", rng.integers(0, 2, n))
    x0, y0 = rng.integers(-w // 2, w, n), rng.integers(-h // 2, h, n)
    _set(t, "box", np.stack([x0, y0, x0 + rng.integers(1, 3 * w // 2, n), y0 + rng.integers(1, 3 * h // 2, n)], 1))
    _set(t, "colour", rng.integers(0, 256, (n, 3)))
    _set(t, "n_vertices", rng.integers(3, MAX_VERTICES + 1, n))
    _set(t, "vx", rng.integers(-w // 2, 3 * w // 2, (n, MAX_VERTICES)))       # whole pixels
    _set(t, "vy", rng.integers(-h // 2, 3 * h // 2, (n, MAX_VERTICES)))
    ell = np.stack([rng.integers(-w // 4, 5 * w // 4, n), rng.integers(-h // 4, 5 * h // 4, n),
                    rng.integers(0, w, n), rng.integers(0, h, n)], 1)
    _set(t, "ellipse", ell)
    entry = rng.integers(0, len(atlas_sizes), n)
    _set(t, "atlas", entry)
    eh, ew = atlas_sizes[entry].T
    sx, sy = rng.integers(0, ew), rng.integers(0, eh)
    _set(t, "src", np.stack([sx, sy, rng.integers(1, ew - sx + 1), rng.integers(1, eh - sy + 1)], 1))
    _set(t, "blend", rng.integers(0, 2, n))
    _set(t, "replace_alpha", rng.choice([0, 10, 128, 254, 255], n))
    _set(t, "mask_alpha", rng.choice([0, 1, 128, 255], n))
    m3d = t["kind"] == Kind.MASK3D
    t["m3d_slot"] = np.where(m3d, np.arange(n), -1)               # the row itself (ops.params)
    _set(t, "m3d_mode", rng.integers(0, 4, n))
    if "m3d" in t.dtype.names:
        t["m3d"] = np.stack([rng.uniform(-10, w + 10, n), rng.uniform(-10, h + 10, n),
                             rng.choice([0.0, 0.5, 10.0, 40.0], n), rng.uniform(0, 1, n)], 1)
    _set(t, "jitter", rng.uniform(0.5, 1.5, (n, 3)))
    top = rng.integers(-h // 4, h, n)
    _set(t, "m3d_rows", np.stack([top, top + rng.integers(0, h, n)], 1))
    _set(t, "m3d_channels", rng.integers(0, 2, (n, 3)))
    _set(t, "noise_seed", rng.integers(0, 2**32, n, dtype=np.uint32))
    _set(t, "light", rng.integers(0, 2, n))
    # Face lighting's sigma is validated > 0. A few pixels of sigma with the centre far outside the image
    # leave only float32 denormals, which the GPU flushes (-ftz=true) and NumPy keeps, and the divide by the
    # peak blows that up: a regime no profile reaches, so the fuzz stays at a quarter of the image and above.
    if "light_params" in t.dtype.names:
        t["light_params"] = np.stack([rng.uniform(-w, 2 * w, n), rng.uniform(-h, 2 * h, n),
                                      rng.uniform(0.3, 2.0, n), rng.uniform(max(h, w) / 4, 3 * max(h, w), n)], 1)
    return t


def mask_inputs(t: np.ndarray, masked: np.ndarray, masks: np.ndarray) -> tuple:
    """The masked faces and masks (renders of the row's own face) that a table's mask3d rows use, aligned
    with the table's rows, as exact-size copies (so that a read past the end lands in an AddressSanitizer
    redzone); (None, None) when no row uses one."""
    used = t["m3d_slot"] >= 0
    if not used.any():
        return None, None
    picked = np.arange(len(t)) % len(masked)
    return masked[picked].copy(), masks[picked].copy()
