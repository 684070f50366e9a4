"""68-point 3D landmarks per face, from a pluggable source.

``template`` (default, no model): InsightFace's aligned crops map five detected points onto the
ArcFace 112 x 112 template, so the 68-point 3D mean face shipped in the insightface package, fitted
to that template by a similarity transform, places every face (the same geometry for every face).
``dlib`` (:mod:`render.dlib_landmarks`): each face's own 68 points from dlib's predictor, depth from
the mean face's fitted pose. ``insightface`` (:mod:`render.insightface_landmarks`): the 68-point 3D
landmark model of an InsightFace model pack (``1k3d68.onnx``), run with onnxruntime in batches.
Points are (x, y) in pixels and z in the same scale, larger z nearer the camera.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

# ArcFace's five-point template for 112 x 112 crops: eye centres, nose tip, mouth corners
ARCFACE_5 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                      [41.5493, 92.3655], [70.7299, 92.2041]], np.float64)
JAW = list(range(0, 17))
NOSE_BRIDGE_TOP, NOSE_TIP, CHIN = 27, 30, 8
MOUTH_CORNERS = (48, 54)
EYES = list(range(36, 48))


def mean_face_68() -> np.ndarray:
    """The 68-point 3D mean face [68, 3] of the insightface package, read without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the insightface package is not installed; `pip install insightface` "
                                "provides the 68-point mean face (data/objects/meanshape_68.pkl)")
    path = Path(next(iter(spec.submodule_search_locations)), "data", "objects", "meanshape_68.pkl")
    with open(path, "rb") as f:
        return np.asarray(pickle.load(f), np.float64)


def five_points(lm68: np.ndarray) -> np.ndarray:
    """The ArcFace five points (eye centres, nose tip, mouth corners) of 68-point landmarks [..., 68, k]."""
    return np.stack([lm68[..., 36:42, :].mean(-2), lm68[..., 42:48, :].mean(-2), lm68[..., NOSE_TIP, :],
                     lm68[..., MOUTH_CORNERS[0], :], lm68[..., MOUTH_CORNERS[1], :]], axis=-2)


def similarity_fit(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity (scale, 2x2 rotation, translation) taking 2D ``src`` onto ``dst``."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(d.T @ s / len(src))
    fix = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ fix @ vt
    scale = float(np.trace(np.diag(sig) @ fix) / (s**2).sum(1).mean())
    return scale, rot, mu_d - scale * rot @ mu_s


def template_landmarks(size: tuple[int, int] = (112, 112)) -> np.ndarray:
    """The mean face placed on the ArcFace template, scaled to ``size`` = (H, W): [68, 3] pixels."""
    mean = mean_face_68()
    scale, rot, shift = similarity_fit(five_points(mean)[:, :2], ARCFACE_5)
    out = np.empty_like(mean)
    out[:, :2] = mean[:, :2] @ (scale * rot).T + shift
    out[:, 2] = mean[:, 2] * scale
    h, w = size
    return out * np.array([w / 112, h / 112, w / 112])


class TemplateLandmarks:
    """Every aligned face gets the template's landmarks."""

    name = "template"

    def __init__(self, size: tuple[int, int] = (112, 112)) -> None:
        self.points = template_landmarks(size)

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.points, (len(faces), 68, 3)).copy()


LANDMARK_SOURCES = ("template", "dlib", "insightface")


def landmark_source(name: str, size: tuple[int, int] = (112, 112), model: str | None = None):
    """A callable taking RGB uint8 faces [N, H, W, 3] to landmarks [N, 68, 3]: ``template``, ``dlib``
    (the optional extra ``faceocc[landmarks]``) or ``insightface`` (a ``1k3d68.onnx``)."""
    if name == "template":
        return TemplateLandmarks(size)
    if name == "dlib":
        from .dlib_landmarks import DlibLandmarks

        return DlibLandmarks(size)
    if name == "insightface":
        from .insightface_landmarks import InsightFaceLandmarks

        return InsightFaceLandmarks(model, size)
    raise ValueError(f"unknown landmark source {name!r}; use {', '.join(LANDMARK_SOURCES)}")


def __getattr__(name: str):
    # the insightface source moved to render.insightface_landmarks; old imports keep working
    if name in ("InsightFaceLandmarks", "find_landmark_model"):
        from . import insightface_landmarks

        return getattr(insightface_landmarks, name)
    raise AttributeError(name)
