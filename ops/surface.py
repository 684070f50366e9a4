"""The mask surface: a (u, v) grid over the lower face, draped on 68 3D landmarks; the NumPy twin of the
``mask_surface`` kernel in ``raster.cu`` (same float32 operations in the same order, so the vertices are
bit-identical on both backends).

u runs from the left jaw to the right jaw, v from the top edge (cheek - nose bridge - cheek) to the jaw
line under the chin. Per face, in float32:

* top edge: the quadratic ``(1 - u)^2 L + 2 u (1 - u) C + u^2 R`` through the jaw points ``L`` = 1 and
  ``R`` = 15 (iBUG numbering) that passes at u = 1/2 through ``M = tip + top (bridge - tip)``: the nose at
  the per-sample height ``top`` (the fraction of the way from the nose tip 30 up to the bridge top 27),
  ``C = 2 M - (L + R) / 2``;
* bottom edge: the jaw points 2..14, pushed out from the nose tip by ``1 + margin`` in x and y, resampled
  at ``u`` by 2D arc length (segment ``j`` = how many of the normalized lengths ``t_1..t_11`` are <= u,
  then linear between its ends; a jaw of length 0 gives its point 13);
* vertex (j, i) at ``u = i / nu``, ``v = j / nv``: ``(1 - v) top(u) + v bottom(u)``; depth is interpolated
  from the landmarks, so the surface drapes over nose and cheeks.
"""

from __future__ import annotations

import numpy as np

NU, NV = 24, 12          # grid quads along u and v
MARGIN = 0.04            # the jaw line pushed out from the nose tip by this fraction
LEFT, RIGHT, JAW = 1, 15, slice(2, 15)
NOSE_BRIDGE_TOP, NOSE_TIP = 27, 30
F32 = np.float32


def _gather(a: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``a[n, index[n, u]]`` for a [N, K] and index [N, U]."""
    return np.take_along_axis(a, index, axis=1)


def mask_surface(landmarks: np.ndarray, top: np.ndarray, margin: float = MARGIN,
                 nu: int = NU, nv: int = NV) -> np.ndarray:
    """Surface vertices [N, nv + 1, nu + 1, 3] float32 (x, y pixels; z, larger nearer) for 68-point
    landmarks [N, 68, 3] and per-sample top-edge heights ``top`` [N]."""
    lm = np.asarray(landmarks, F32)
    top = np.asarray(top, F32).reshape(-1, 1)
    left, right, tip, bridge = lm[:, LEFT], lm[:, RIGHT], lm[:, NOSE_TIP], lm[:, NOSE_BRIDGE_TOP]
    middle = tip + top * (bridge - tip)
    control = F32(2) * middle - (left + right) * F32(0.5)
    u = np.arange(nu + 1, dtype=F32) / F32(nu)
    uu, ww = u[None, :, None], (F32(1) - u)[None, :, None]
    top_edge = (ww * ww) * left[:, None] + ((F32(2) * uu) * ww) * control[:, None] + (uu * uu) * right[:, None]

    jaw = lm[:, JAW]
    scale = F32(1 + margin)
    centre = tip[:, None, :2]
    jaw_xy = centre + (jaw[..., :2] - centre) * scale
    d = jaw_xy[:, 1:] - jaw_xy[:, :-1]
    seg = np.sqrt(d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1])
    cum = np.concatenate([np.zeros((len(lm), 1), F32), np.cumsum(seg, axis=1, dtype=F32)], axis=1)
    total = cum[:, -1:]
    t = cum / np.where(total > 0, total, F32(1))
    j = (t[:, None, 1:-1] <= u[None, :, None]).sum(-1)                     # [N, U] in 0..11
    t0, t1 = _gather(t, j), _gather(t, j + 1)
    span = t1 - t0
    frac = np.where(span > 0, (u[None] - t0) / np.where(span > 0, span, F32(1)), F32(0))[..., None]
    points = np.concatenate([jaw_xy, jaw[..., 2:]], axis=-1)                 # [N, 13, 3]
    p0 = np.take_along_axis(points, j[..., None], axis=1)
    p1 = np.take_along_axis(points, j[..., None] + 1, axis=1)
    bottom = p0 + frac * (p1 - p0)

    v = (np.arange(nv + 1, dtype=F32) / F32(nv))[None, :, None, None]
    return (F32(1) - v) * top_edge[:, None] + v * bottom[:, None]


def grid_triangles(nu: int = NU, nv: int = NV) -> np.ndarray:
    """Vertex indices [T, 3] of the grid's triangles (two per quad), into the flattened grid."""
    j, i = np.meshgrid(np.arange(nv), np.arange(nu), indexing="ij")
    v00 = j * (nu + 1) + i
    v01, v10, v11 = v00 + 1, v00 + nu + 1, v00 + nu + 2
    tris = np.stack([np.stack([v00, v10, v11], -1), np.stack([v00, v11, v01], -1)], axis=2)
    return tris.reshape(-1, 3).astype(np.int32)


def grid_uv(nu: int = NU, nv: int = NV) -> np.ndarray:
    """Texture coordinates [(nv + 1) * (nu + 1), 2] (u, v) of the flattened grid."""
    v, u = np.meshgrid(np.linspace(0, 1, nv + 1), np.linspace(0, 1, nu + 1), indexing="ij")
    return np.stack([u.ravel(), v.ravel()], -1).astype(np.float32)
