"""The ``insightface`` landmark source: InsightFace's 68-point 3D landmark model (``1k3d68.onnx``).

The model is fed exactly what insightface's own ``model_zoo.landmark.Landmark.get`` feeds it, batched:
the face box scaled so that 1.5 x its longer side fills the 192 x 192 input, centred on the box
(``face_align.transform`` with no rotation, ``cv2.warpAffine``, bilinear, black border); RGB channel
order (insightface reads BGR with cv2 and swaps with ``blobFromImage(..., swapRB=True)``); the
pixels as ``(x - input_mean) / input_std`` with mean and std chosen from the model graph as insightface
chooses them (0 and 1 for a model that normalizes inside itself, else 127.5 and 128). The output's
last 68 triples are decoded as insightface does: ``(x, y) + 1``, times half the input size, z times
half the input size, then mapped back through the inverse crop transform (z scaled by its scale).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


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
        "PATH/1k3d68.onnx; or use --landmarks template (no model) or dlib (pip install faceocc[landmarks])")


def input_normalization(model_path: str | os.PathLike) -> tuple[float, float]:
    """(input_mean, input_std) as insightface's ``Landmark`` picks them from the graph: a model whose
    first nodes subtract and multiply (or start with ``bn_data``) takes raw pixels."""
    import onnx

    nodes = onnx.load(str(model_path)).graph.node[:8]
    sub = any(n.name.startswith(("Sub", "_minus")) for n in nodes)
    mul = any(n.name.startswith(("Mul", "_mul")) for n in nodes)
    if any(i < 3 and n.name == "bn_data" for i, n in enumerate(nodes)):
        sub = mul = True
    return (0.0, 1.0) if sub and mul else (127.5, 128.0)


def crop_transform(box: tuple[float, float, float, float], input_size: int) -> np.ndarray:
    """The 2 x 3 affine map of insightface's landmark crop for a face box (x0, y0, x1, y1)."""
    w, h = box[2] - box[0], box[3] - box[1]
    cx, cy = (box[2] + box[0]) / 2, (box[3] + box[1]) / 2
    s = input_size / (max(w, h) * 1.5)
    return np.array([[s, 0.0, input_size / 2 - cx * s], [0.0, s, input_size / 2 - cy * s]])


def decode(raw: np.ndarray, transforms: np.ndarray, input_size: int, points: int = 68) -> np.ndarray:
    """Model outputs [N, D] -> landmarks [N, points, 3] in image pixels, as insightface decodes them."""
    pred = raw.reshape(len(raw), -1, 3)[:, -points:, :].astype(np.float64)
    half = input_size // 2
    pred[..., :2] = (pred[..., :2] + 1) * half
    pred[..., 2] *= half
    out = np.empty_like(pred)
    for i, m in enumerate(transforms):
        inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
        out[i, :, :2] = pred[i, :, :2] @ inv[:, :2].T + inv[:, 2]
        out[i, :, 2] = pred[i, :, 2] * np.hypot(inv[0, 0], inv[0, 1])
    return out


class InsightFaceLandmarks:
    """InsightFace's ``1k3d68.onnx`` (input N x 3 x 192 x 192, output 3309 values, the last 68 triples
    the points) on aligned crops in batches, on the GPU when onnxruntime-gpu is installed. The face box
    is the whole crop unless ``box`` (x0, y0, x1, y1) is given."""

    name = "insightface"

    def __init__(self, model: str | os.PathLike | None = None, size: tuple[int, int] = (112, 112),
                 box: tuple[float, float, float, float] | None = None) -> None:
        import onnxruntime as ort

        self.path = find_landmark_model(model)
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                     if p in ort.get_available_providers()]
        self.session = ort.InferenceSession(str(self.path), providers=providers)
        first = self.session.get_inputs()[0]
        self.input = first.name
        self.input_size = int(first.shape[2]) if isinstance(first.shape[2], int) else 192
        self.mean, self.std = input_normalization(self.path)
        self.size = tuple(size)
        h, w = self.size
        self.box = box if box is not None else (0.0, 0.0, float(w), float(h))

    def blob(self, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The model input [N, 3, S, S] float32 (RGB) for RGB uint8 faces, and the crop transforms."""
        import cv2

        s = self.input_size
        m = crop_transform(self.box, s)
        crops = np.stack([cv2.warpAffine(np.ascontiguousarray(f), m, (s, s), borderValue=0.0) for f in faces])
        blob = (crops.astype(np.float32) - np.float32(self.mean)) * np.float32(1.0 / self.std)
        return blob.transpose(0, 3, 1, 2).copy(), np.broadcast_to(m, (len(faces), 2, 3))

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        blob, transforms = self.blob(np.asarray(faces))
        raw = self.session.run(None, {self.input: blob})[0]
        return decode(raw, transforms, self.input_size)
