"""dlib's face detector and shape predictors from the optional extra ``faceocc[landmarks]``.

``dlib-bin`` provides dlib; ``face-recognition-models`` ships the model files: the 68-point shape
predictor (trained on iBUG 300-W: non-commercial use only), the 5-point predictor (CC0) and the CNN
face detector. The HOG face detector is built into dlib.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

INSTALL_HINT = ('pip install "faceocc[landmarks]" (or: pip install dlib-bin face-recognition-models); the '
                "68-point model is for non-commercial use (iBUG 300-W), the 5-point model is CC0")
MODEL_FILES = {68: "shape_predictor_68_face_landmarks.dat", 5: "shape_predictor_5_face_landmarks.dat"}


def available() -> bool:
    """True when dlib and the face-recognition-models files are installed."""
    return importlib.util.find_spec("dlib") is not None and _models_dir() is not None


def _models_dir() -> Path | None:
    # face_recognition_models' own location functions import pkg_resources, which recent setuptools
    # no longer ships; its files are found beside the package instead
    try:
        import face_recognition_models

        return Path(face_recognition_models.pose_predictor_model_location()).parent
    except ImportError:
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            return None
        folder = Path(next(iter(spec.submodule_search_locations)), "models")
        return folder if folder.is_dir() else None


def model_path(points: int) -> Path:
    """The file of dlib's ``points``-point (68 or 5) shape predictor."""
    folder = _models_dir()
    path = folder / MODEL_FILES[points] if folder is not None else None
    if path is None or not path.is_file():
        raise ModuleNotFoundError(f"dlib's {points}-point shape predictor is not installed: {INSTALL_HINT}")
    return path


def _dlib() -> Any:
    try:
        import dlib
    except ImportError as exc:
        raise ModuleNotFoundError(f"dlib is not installed: {INSTALL_HINT}") from exc
    return dlib


@functools.cache
def shape_predictor(points: int = 68) -> Any:
    """dlib's ``points``-point shape predictor (loaded once per process)."""
    return _dlib().shape_predictor(str(model_path(points)))


@functools.cache
def hog_detector() -> Any:
    """dlib's HOG frontal face detector (loaded once per process)."""
    return _dlib().get_frontal_face_detector()


def rectangle(box: tuple[float, float, float, float]) -> Any:
    """A dlib rectangle from (left, top, right, bottom) pixels."""
    return _dlib().rectangle(*(int(round(v)) for v in box))


def predict(image: np.ndarray, box: tuple[float, float, float, float], points: int = 68) -> np.ndarray:
    """Landmarks [points, 2] float64 (x, y pixels) of the face in ``box`` of an RGB uint8 image."""
    shape = shape_predictor(points)(np.ascontiguousarray(image), rectangle(box))
    return np.array([(p.x, p.y) for p in shape.parts()], np.float64)


def detect(image: np.ndarray, upsample: int = 1) -> list[tuple[tuple[float, float, float, float], float]]:
    """HOG detections of an RGB uint8 image: ((left, top, right, bottom), score), best first."""
    rects, scores, _ = hog_detector().run(np.ascontiguousarray(image), upsample, 0.0)
    found = [((r.left(), r.top(), r.right(), r.bottom()), float(s)) for r, s in zip(rects, scores)]
    return sorted(found, key=lambda f: -f[1])
