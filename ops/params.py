"""The per-sample parameter table: one row per sample, everything the apply step needs.

The row layout is a C struct (``ops/params.cuh``, same field order, all 32-bit), so the table's
bytes go to the GPU as they are. Lengths in whole pixels; shape geometry in 1/16 pixel (``SUB``),
so that coverage tests are exact integer arithmetic in both backends.
"""

from __future__ import annotations

import numpy as np

SUB = 16            # sub-pixel units per pixel for shape geometry
MAX_VERTICES = 20   # 10 outer points, each followed by at most one inner point

PARAM_FIELDS = [
    ("kind", np.int32),            # Kind code
    ("flip", np.int32),            # 1: mirror horizontally
    ("box", np.int32, 4),          # x0, y0, x1, y1 (exclusive): rectangle, web occluder, mask3d box
    ("colour", np.int32, 3),       # fill colour of shapes; block value of mask3d
    ("n_vertices", np.int32),
    ("vx", np.int32, MAX_VERTICES),  # polygon vertices, 1/16 px
    ("vy", np.int32, MAX_VERTICES),
    ("ellipse", np.int32, 4),      # cx, cy, semi-axis x, semi-axis y, 1/16 px
    ("atlas", np.int32),           # atlas entry
    ("src", np.int32, 4),          # source crop inside the atlas entry: x0, y0, w, h
    ("blend", np.int32),           # 0: replace where alpha > replace_alpha; 1: alpha blend
    ("replace_alpha", np.int32),
    ("mask_alpha", np.int32),      # msk = 0 where alpha > mask_alpha
    ("m3d_slot", np.int32),        # row of the masked-face batch, -1 if none
    ("m3d_mode", np.int32),        # 0 none, 1 light, 2 noise, 3 block
    ("m3d", np.float32, 4),        # light: cx, cy, sigma, gain; noise: sigma
    ("jitter", np.float32, 3),     # per-channel factor on the light or noise
    ("noise_seed", np.uint32),
    ("light", np.int32),           # 1: face lighting on
    ("light_params", np.float32, 4),  # cx, cy, gain, sigma
]
PARAM_DTYPE = np.dtype(PARAM_FIELDS, align=True)

M3D_NONE, M3D_LIGHT, M3D_NOISE, M3D_BLOCK = 0, 1, 2, 3


def empty_params(n: int) -> np.ndarray:
    """A table of ``n`` rows meaning 'no occluder, no flip, no lighting'."""
    table = np.zeros(n, PARAM_DTYPE)
    table["m3d_slot"] = -1
    table["jitter"] = 1.0
    return table
