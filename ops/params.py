"""The per-sample parameter table: one row per sample, everything the apply step needs.

The row layout is a C struct (``ops/params.cuh``, same field order, all 32-bit), so the table's
bytes go to the GPU as they are. Occluder geometry is in the unflipped source frame; the face
lighting and the mask3d boxes are in the output frame (after the flip), as MSML orders the steps.
Polygon vertices and ellipse parameters are whole pixels in OpenCV's convention (pixel ``(x, y)``
is the point ``(x, y)``).

``m3d_slot`` has one meaning everywhere (sampler, loader, twin, kernel): ``-1`` for a row without an
offline 3D mask, else the row's own index in its batch. The masked faces and masks that go with a table
are aligned with its faces (``masked_faces[i]``, ``masks[i]`` are row ``i``'s renders; the rows without a
3D mask are never read), and the apply step reads row ``i``'s at ``m3d_slot``. A contiguous part of a
batch is a batch of its own: :func:`batch_rows` re-bases its slots.
"""

from __future__ import annotations

import numpy as np

MAX_VERTICES = 21   # n <= 10: n + 1 outer vertices, each of the last n followed by at most one inner one

PARAM_FIELDS = [
    ("kind", np.int32),            # Kind code
    ("flip", np.int32),            # 1: mirror horizontally
    ("box", np.int32, 4),          # x0, y0, x1, y1 (exclusive): rectangle, web occluder, mask3d box
    ("colour", np.int32, 3),       # fill colour of shapes
    ("n_vertices", np.int32),
    ("vx", np.int32, MAX_VERTICES),  # polygon vertices, whole pixels
    ("vy", np.int32, MAX_VERTICES),
    ("ellipse", np.int32, 4),      # centre x, y and semi-axes a (x), b (y), whole pixels
    ("atlas", np.int32),           # atlas entry
    ("src", np.int32, 4),          # source rectangle inside the atlas entry: x0, y0, w, h
    ("replace_alpha", np.int32),   # the occluder's RGB replaces the face where alpha > this
    ("mask_alpha", np.int32),      # msk = 0 where alpha > mask_alpha
    ("m3d_slot", np.int32),        # the row's own index in its batch if it uses an offline 3D mask, else -1
    ("m3d_mode", np.int32),        # 0 none, 1 light, 2 noise, 3 block
    ("m3d_rows", np.int32, 2),     # block mode: rows [top, bottom) of the block (columns from box)
    ("m3d", np.float32, 4),        # light: centre x, y (drawn in image units, used in box units), sigma,
                                   # amplitude * sign; noise: std; block: value * sign
    ("m3d_channels", np.int32, 3),  # 1: the channel takes the offset, 0: untouched
    ("noise_seed", np.uint32),
    ("light", np.int32),           # 1: face lighting on
    ("light_params", np.float32, 4),  # centre x, y, gain, sigma
]
PARAM_DTYPE = np.dtype(PARAM_FIELDS, align=True)

M3D_NONE, M3D_LIGHT, M3D_NOISE, M3D_BLOCK = 0, 1, 2, 3


def empty_params(n: int) -> np.ndarray:
    """A table of ``n`` rows meaning 'no occluder, no flip, no lighting'."""
    table = np.zeros(n, PARAM_DTYPE)
    table["m3d_slot"] = -1
    return table


def batch_rows(table: np.ndarray, a: int, b: int) -> np.ndarray:
    """Rows ``a:b`` of a table as a batch of their own (a copy): each 3D-mask row's ``m3d_slot`` is again
    its own index, so the part goes with ``masked_faces[a:b]`` and ``masks[a:b]``."""
    rows = table[a:b].copy()
    used = rows["m3d_slot"] >= 0
    rows["m3d_slot"][used] = np.flatnonzero(used)
    return rows
