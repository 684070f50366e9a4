"""The ``dlib`` landmark source: each face's own 68 points, with depth from the fitted mean face.

dlib's 68-point predictor (iBUG 300-W convention, the one of insightface's ``meanshape_68.pkl``)
gives 2D points per face; the mean face's scaled orthographic pose is fitted to them
(:mod:`render.pose`), and the rotated mean face supplies each point's depth. The mask surface is then
draped on the face's own points, so it turns, tilts and shifts with the face.

The predictor needs a face box. On aligned crops the default is a fixed box measured from dlib's
HOG detector on ArcFace-aligned 112 x 112 crops (``box="crop"``); ``box="detect"`` runs the HOG
detector on each crop (upsampled) and falls back to the fixed box where it finds nothing. A face
whose points cannot be those of a face (non-finite, far from any pose of the mean face, implausibly
small or large, mostly outside the image) gets the template's landmarks instead, and is counted in
:attr:`DlibLandmarks.fallbacks`.
"""

from __future__ import annotations

import numpy as np

from . import dlib_models
from .face_geometry import ARCFACE_5, five_points, mean_face_68, similarity_fit, template_landmarks
from .pose import Pose, fit_pose

# (left, top, right, bottom) as fractions of (W, H, W, H): dlib's HOG box on ArcFace-aligned crops
CROP_BOX = (0.08, 0.19, 0.90, 0.99)
MAX_RESIDUAL = 0.12            # RMS fit residual, in units of the fitted scale (mean face ~1.5 wide)
SCALE_RANGE = (0.5, 1.8)       # fitted scale relative to the template's
MIN_INSIDE = 0.7               # share of the points that must lie inside the image
REALIGN_PX = 3.0


def crop_box(size: tuple[int, int]) -> tuple[float, float, float, float]:
    """The fixed predictor box (left, top, right, bottom) for aligned crops of ``size`` = (H, W)."""
    h, w = size
    return CROP_BOX[0] * w, CROP_BOX[1] * h, CROP_BOX[2] * w - 1, CROP_BOX[3] * h - 1


def _realigned(face: np.ndarray, points: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """Predict again on the face warped so that its five points sit on the ArcFace template, and map
    the points back: dlib's predictor is not rotation invariant, the re-aligned face is upright."""
    import cv2

    h, w = face.shape[:2]
    with np.errstate(invalid="ignore", divide="ignore"):
        scale, rot, shift = similarity_fit(five_points(points), ARCFACE_5 * np.array([w / 112, h / 112]))
    if not (np.isfinite(scale) and scale > 0.1 and np.isfinite(shift).all()):
        return points                  # no face-like points to align by; judged by the fit later
    m = np.hstack([scale * rot, shift[:, None]])
    upright = cv2.warpAffine(np.ascontiguousarray(face), m, (w, h), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
    again = dlib_models.predict(upright, box, 68)
    return (again - shift) @ rot / scale


def dlib_points(faces: np.ndarray, box: str = "crop") -> np.ndarray:
    """dlib's 68 points [N, 68, 2] of RGB uint8 aligned faces [N, H, W, 3].

    A face whose first five points lie more than ``REALIGN_PX`` (RMS, per 112 px) off the ArcFace
    template (rolled, shifted or scaled in its crop) is predicted again after re-aligning it."""
    if box not in ("crop", "detect"):
        raise ValueError(f"box must be 'crop' or 'detect', not {box!r}")
    size = faces.shape[1:3]
    fixed = crop_box(size)
    target = ARCFACE_5 * np.array([size[1] / 112, size[0] / 112])
    out = np.empty((len(faces), 68, 2))
    for i, face in enumerate(faces):
        rect = fixed
        if box == "detect":
            found = dlib_models.detect(face, upsample=1)
            if found:
                rect = found[0][0]
        pts = dlib_models.predict(face, rect, 68)
        off = np.sqrt(((five_points(pts) - target) ** 2).sum(1).mean()) * 112 / size[1]
        out[i] = _realigned(face, pts, fixed) if off > REALIGN_PX else pts
    return out


class DlibLandmarks:
    """Landmarks [N, 68, 3] of aligned faces from dlib's 68-point predictor, with fitted depth."""

    name = "dlib"

    def __init__(self, size: tuple[int, int] = (112, 112), box: str = "crop") -> None:
        dlib_models.shape_predictor(68)           # fail now, with the install hint, when the extra is missing
        self.size = tuple(size)
        self.box = box
        self.mean = mean_face_68()
        self.template = template_landmarks(self.size)
        self.template_scale = float(fit_pose(self.template[None, :, :2], self.mean).scale[0])
        self.fallbacks = 0
        self.last_pose: Pose | None = None
        self.last_failed = np.zeros(0, bool)

    def plausible(self, points: np.ndarray, pose: Pose) -> np.ndarray:
        """Per face: do the points look like a posed face inside the image?"""
        h, w = self.size
        finite = np.isfinite(points).all((1, 2)) & np.isfinite(pose.residual)
        rel = pose.scale / self.template_scale
        inside = ((points[..., 0] >= 0) & (points[..., 0] < w) & (points[..., 1] >= 0)
                  & (points[..., 1] < h)).mean(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            good = (pose.residual / np.abs(pose.scale) < MAX_RESIDUAL) & (rel > SCALE_RANGE[0]) & (
                rel < SCALE_RANGE[1]) & (inside >= MIN_INSIDE)
        return finite & good

    def fit(self, points: np.ndarray) -> np.ndarray:
        """Landmarks [N, 68, 3] from 2D points [N, 68, 2]: the points themselves, depth from the fitted
        mean face; the template's landmarks where the points are not plausible (counted)."""
        safe = np.where(np.isfinite(points), points, 0.0)
        pose = fit_pose(safe, self.mean)
        ok = self.plausible(points, pose)
        out = np.empty((len(points), 68, 3))
        out[..., :2] = safe
        out[..., 2] = pose.points(self.mean)[..., 2]
        out[~ok] = self.template
        self.last_pose, self.last_failed = pose, ~ok
        self.fallbacks += int((~ok).sum())
        return out

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        return self.fit(dlib_points(np.asarray(faces), self.box))
