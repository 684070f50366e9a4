"""68-point 3D landmarks per face, from a pluggable source.

``template`` (default, no model): InsightFace's aligned crops map five detected points onto the
ArcFace 112 x 112 template, so the 68-point 3D mean face shipped in the insightface package, fitted
to that template by a similarity transform, places every face. ``insightface``: the 68-point 3D
landmark model of an InsightFace model pack (``1k3d68.onnx``), run with onnxruntime in batches.
Points are (x, y) in pixels and z in the same scale, larger z nearer the camera.
"""

from __future__ import annotations

import os
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


def find_landmark_model(path: str | os.PathLike | None = None) -> Path:
    """``path``, or ``1k3d68.onnx`` in an InsightFace model pack under ``~/.insightface/models``."""
    candidates = [Path(path)] if path else sorted((Path.home() / ".insightface" / "models").glob("*/1k3d68.onnx"))
    for c in candidates:
        if c.is_file():
            return c
    where = str(path) if path else str(Path.home() / ".insightface" / "models" / "*" / "1k3d68.onnx")
    raise FileNotFoundError(
        f"no 68-point 3D landmark model at {where}. It ships in InsightFace's model packs (buffalo_l, "
        "antelopev2): run `python -c \"import insightface; insightface.app.FaceAnalysis(name='buffalo_l')"
        ".prepare(ctx_id=-1)\"` once on a machine with network access, or pass --landmark-model "
        "PATH/1k3d68.onnx; or use --landmarks template, which needs no model")


class InsightFaceLandmarks:
    """InsightFace's ``1k3d68.onnx`` (input 1x3x192x192, output 3309 values; the last 68 triples are
    the points) on whole aligned crops, in batches, on the GPU when onnxruntime-gpu is installed."""

    name = "insightface"
    input_size = 192

    def __init__(self, model: str | os.PathLike | None = None, size: tuple[int, int] = (112, 112)) -> None:
        import onnxruntime as ort

        self.path = find_landmark_model(model)
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                     if p in ort.get_available_providers()]
        self.session = ort.InferenceSession(str(self.path), providers=providers)
        self.input = self.session.get_inputs()[0].name
        self.size = size

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        from PIL import Image

        h, w = self.size
        s = self.input_size
        # the crop is centred with a margin of 1.5x the face box, as InsightFace's landmark model expects
        scale = s / (max(h, w) * 1.5)
        canvas = np.zeros((len(faces), s, s, 3), np.float32)
        fh, fw = round(h * scale), round(w * scale)
        y0, x0 = (s - fh) // 2, (s - fw) // 2
        for i, face in enumerate(faces):
            small = np.asarray(Image.fromarray(face).resize((fw, fh), Image.BILINEAR), np.float32)
            canvas[i, y0:y0 + fh, x0:x0 + fw] = small[..., ::-1]       # the model takes BGR
        out = self.session.run(None, {self.input: canvas.transpose(0, 3, 1, 2)})[0]
        pts = out.reshape(len(faces), -1, 3)[:, -68:, :].astype(np.float64)
        pts[..., :2] = (pts[..., :2] + 1) * (s // 2)
        pts[..., 2] *= s // 2
        pts[..., 0] = (pts[..., 0] - x0) / scale
        pts[..., 1] = (pts[..., 1] - y0) / scale
        pts[..., 2] /= scale
        return pts


def landmark_source(name: str, size: tuple[int, int] = (112, 112), model: str | None = None):
    """``template`` or ``insightface``."""
    if name == "template":
        return TemplateLandmarks(size)
    if name == "insightface":
        return InsightFaceLandmarks(model, size)
    raise ValueError(f"unknown landmark source {name!r}; use template or insightface")
