"""The mask surface: a (u, v) grid over the lower face, draped on the 3D landmarks.

u runs from the left jaw to the right jaw, v from the top edge (cheek - nose bridge - cheek) to the
jaw line under the chin. The top edge passes through the nose bridge at a per-sample height
``top`` (the fraction of the way from the nose tip up to the bridge top, 0.33..0.5 by default, as
InsightFace varies its mask's top edge). Depth is interpolated from the landmarks, so the surface
drapes over nose and cheeks.
"""

from __future__ import annotations

import numpy as np

from .face_geometry import NOSE_BRIDGE_TOP, NOSE_TIP

NU, NV = 24, 12          # grid quads along u and v


def _arc_param(points: np.ndarray) -> np.ndarray:
    """Normalized cumulative 2D arc length along [N, K, 3] polylines: [N, K]."""
    seg = np.linalg.norm(np.diff(points[..., :2], axis=1), axis=-1)
    cum = np.concatenate([np.zeros((len(points), 1)), np.cumsum(seg, axis=1)], axis=1)
    return cum / cum[:, -1:]


def _resample(points: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Points at arc-length parameters ``u`` along [N, K, 3] polylines: [N, len(u), 3]."""
    t = _arc_param(points)
    return np.stack([np.stack([np.interp(u, t[n], points[n, :, c]) for c in range(3)], -1)
                     for n in range(len(points))])


def mask_surface(landmarks: np.ndarray, top: np.ndarray, margin: float = 0.04,
                 nu: int = NU, nv: int = NV) -> np.ndarray:
    """Surface vertices [N, nv + 1, nu + 1, 3] (x, y pixels; z, larger nearer) for 68-point landmarks
    [N, 68, 3] and per-sample top-edge heights ``top`` [N]."""
    lm = np.asarray(landmarks, np.float64)
    top = np.asarray(top, np.float64).reshape(-1, 1)
    u = np.linspace(0.0, 1.0, nu + 1)
    left, right = lm[:, 1], lm[:, 15]
    middle = lm[:, NOSE_TIP] + top * (lm[:, NOSE_BRIDGE_TOP] - lm[:, NOSE_TIP])
    control = 2 * middle - (left + right) / 2            # the quadratic passes through middle at u = 0.5
    uu = u[None, :, None]
    top_edge = (1 - uu) ** 2 * left[:, None] + 2 * uu * (1 - uu) * control[:, None] + uu**2 * right[:, None]
    jaw = lm[:, 2:15].copy()
    centre = lm[:, NOSE_TIP:NOSE_TIP + 1, :2]
    jaw[..., :2] = centre + (jaw[..., :2] - centre) * (1 + margin)
    bottom = _resample(jaw, u)
    v = np.linspace(0.0, 1.0, nv + 1)[None, :, None, None]
    return ((1 - v) * top_edge[:, None] + v * bottom[:, None]).astype(np.float32)


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
