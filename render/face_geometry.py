"""Face geometry shared by the landmark sources and the aligner: the ArcFace five-point template, the
68-point 3D mean face of the insightface package (iBUG 300-W numbering), its five points, and the
similarity fit that places one point set on another."""

from __future__ import annotations

import pickle

import numpy as np
from faceocc.ops.surface import NOSE_TIP

from faceocc.resources import package_file

# ArcFace's five-point template for 112 x 112 crops: eye centres, nose tip, mouth corners
ARCFACE_5 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                      [41.5493, 92.3655], [70.7299, 92.2041]], np.float64)
JAW = list(range(0, 17))
CHIN = 8
MOUTH_CORNERS = (48, 54)
EYES = list(range(36, 48))


def mean_face_68() -> np.ndarray:
    """The 68-point 3D mean face [68, 3] of the insightface package, read without importing it."""
    path = package_file("insightface", "data", "objects", "meanshape_68.pkl")
    if path is None:
        raise FileNotFoundError("the insightface package is not installed; `pip install insightface` "
                                "provides the 68-point mean face (data/objects/meanshape_68.pkl)")
    with open(path, "rb") as f:
        return np.asarray(pickle.load(f), np.float64)


def five_points(lm68: np.ndarray) -> np.ndarray:
    """The ArcFace five points (eye centres, nose tip, mouth corners) of 68-point landmarks [..., 68, k]."""
    return np.stack([lm68[..., 36:42, :].mean(-2), lm68[..., 42:48, :].mean(-2), lm68[..., NOSE_TIP, :],
                     lm68[..., MOUTH_CORNERS[0], :], lm68[..., MOUTH_CORNERS[1], :]], axis=-2)


def similarity_fit(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity (scale, 2x2 rotation, translation) taking 2D points ``src`` onto ``dst``:
    Umeyama's estimate, by scikit-image's ``SimilarityTransform`` as insightface's ``face_align`` uses it.
    Points that fix no similarity (all equal, say) give NaN everywhere, as a failed fit."""
    from skimage.transform import SimilarityTransform

    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if hasattr(SimilarityTransform, "from_estimate"):          # scikit-image >= 0.26 (Python >= 3.11)
        fit = SimilarityTransform.from_estimate(src, dst)
        ok = bool(fit)
    else:
        fit = SimilarityTransform()
        ok = fit.estimate(src, dst)
    if not ok or not np.isfinite(fit.params).all():
        return float("nan"), np.full((2, 2), np.nan), np.full(2, np.nan)
    scale = float(fit.scale)
    return scale, fit.params[:2, :2] / scale, fit.params[:2, 2].copy()


def template_landmarks(size: tuple[int, int] = (112, 112)) -> np.ndarray:
    """The mean face placed on the ArcFace template, scaled to ``size`` = (H, W): [68, 3] pixels."""
    mean = mean_face_68()
    scale, rot, shift = similarity_fit(five_points(mean)[:, :2], ARCFACE_5)
    out = np.empty_like(mean)
    out[:, :2] = mean[:, :2] @ (scale * rot).T + shift
    out[:, 2] = mean[:, 2] * scale
    h, w = size
    return out * np.array([w / 112, h / 112, w / 112])
