"""The mean face's 3D pose fitted to 2D landmarks: a scaled orthographic camera.

A face's 68 image points ``p`` are modelled as ``s * (R @ X)[:2] + t`` for the 3D mean face ``X``
(x right, y down, z towards the camera, as insightface's ``meanshape_68.pkl``), a rotation ``R``
(yaw, pitch and roll), a scale ``s`` and an image translation ``t``. The fit starts from the
least-squares affine camera made orthonormal and refines (s, R, t) by Gauss-Newton; everything is
batched over faces.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class Pose:
    """Fitted poses of N faces: ``scale`` [N], ``rotation`` [N, 3, 3], ``shift`` [N, 2] and the RMS
    distance in pixels between the landmarks and the fitted projection, ``residual`` [N]."""

    scale: np.ndarray
    rotation: np.ndarray
    shift: np.ndarray
    residual: np.ndarray

    def points(self, shape: np.ndarray) -> np.ndarray:
        """The posed 3D shape [N, K, 3]: x, y in pixels, z (larger nearer) in the same scale."""
        rotated = np.einsum("nij,kj->nki", self.rotation, shape) * self.scale[:, None, None]
        rotated[..., :2] += self.shift[:, None, :]
        return rotated

    def angles(self) -> np.ndarray:
        """(yaw, pitch, roll) in degrees [N, 3] of ``R = Rz(roll) @ Rx(pitch) @ Ry(yaw)``."""
        r = self.rotation
        pitch = np.degrees(np.arcsin(np.clip(r[:, 2, 1], -1, 1)))
        yaw = np.degrees(np.arctan2(-r[:, 2, 0], r[:, 2, 2]))
        roll = np.degrees(np.arctan2(-r[:, 0, 1], r[:, 1, 1]))
        return np.stack([yaw, pitch, roll], 1)


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """``Rz(roll) @ Rx(pitch) @ Ry(yaw)``, angles in degrees (the convention of :meth:`Pose.angles`)."""
    y, p, r = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def _skew(v: np.ndarray) -> np.ndarray:
    """Cross-product matrices [..., 3, 3] of vectors [..., 3]."""
    z = np.zeros(v.shape[:-1])
    x, y, w = v[..., 0], v[..., 1], v[..., 2]
    return np.stack([np.stack([z, -w, y], -1), np.stack([w, z, -x], -1), np.stack([-y, x, z], -1)], -2)


def _rodrigues(w: np.ndarray) -> np.ndarray:
    """Rotation matrices [N, 3, 3] of rotation vectors [N, 3]."""
    theta = np.linalg.norm(w, axis=1)[:, None, None]
    k = _skew(w / np.maximum(theta[..., 0], 1e-12))
    eye = np.eye(3)[None]
    return eye + np.sin(theta) * k + (1 - np.cos(theta)) * k @ k


def _affine_init(points: np.ndarray, shape: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale [N] and rotation [N, 3, 3] from the least-squares affine camera, made orthonormal."""
    xc = shape - shape.mean(0)
    pc = points - points.mean(1, keepdims=True)
    affine = np.einsum("ij,njk->nik", np.linalg.pinv(xc), pc).transpose(0, 2, 1)   # [N, 2, 3]
    u, sig, vt = np.linalg.svd(affine, full_matrices=False)
    rows = u @ vt                                                                     # orthonormal rows
    rotation = np.concatenate([rows, np.cross(rows[:, 0], rows[:, 1])[:, None]], 1)
    return sig.mean(1), rotation


def fit_pose(points: np.ndarray, shape: np.ndarray, iterations: int = 8) -> Pose:
    """Least-squares scaled orthographic pose of ``shape`` [K, 3] for image points [N, K, 2]."""
    p = np.asarray(points, np.float64)
    x = np.asarray(shape, np.float64)
    n, k = p.shape[:2]
    scale, rotation = _affine_init(p, x)
    shift = p.mean(1) - scale[:, None] * np.einsum("nij,j->ni", rotation[:, :2], x.mean(0))
    for _ in range(iterations):
        y = np.einsum("nij,kj->nki", rotation, x)                                   # R X  [N, K, 3]
        resid = p - (scale[:, None, None] * y[..., :2] + shift[:, None])            # [N, K, 2]
        jac = np.empty((n, k, 2, 6))
        # a small rotation w acts as R <- exp([w]x) R, so d(R X) = w x (R X) = -[R X]x w
        jac[..., :3] = -scale[:, None, None, None] * _skew(y)[..., :2, :]
        jac[..., 3] = y[..., :2]
        jac[..., 4:] = np.eye(2)
        jt = jac.reshape(n, 2 * k, 6)
        step = np.linalg.solve(np.einsum("nki,nkj->nij", jt, jt) + 1e-9 * np.eye(6),
                               np.einsum("nki,nk->ni", jt, resid.reshape(n, 2 * k))[..., None])[..., 0]
        rotation = _rodrigues(step[:, :3]) @ rotation
        scale = scale + step[:, 3]
        shift = shift + step[:, 4:]
    y = np.einsum("nij,kj->nki", rotation, x)
    resid = p - (scale[:, None, None] * y[..., :2] + shift[:, None])
    return Pose(scale, rotation, shift, np.sqrt((resid**2).sum(-1).mean(1)))
