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

from typing import Literal, get_args

import numpy as np

from .face_geometry import template_landmarks


class TemplateLandmarks:
    """Every aligned face gets the template's landmarks."""

    name = "template"

    def __init__(self, size: tuple[int, int] = (112, 112)) -> None:
        self.points = template_landmarks(size)

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.points, (len(faces), 68, 3)).copy()


LandmarkSource = Literal["template", "dlib", "insightface"]
LANDMARK_SOURCES = get_args(LandmarkSource)


def landmark_source(name: LandmarkSource, size: tuple[int, int] = (112, 112), model: str | None = None):
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
