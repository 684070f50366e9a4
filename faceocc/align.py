"""Faces in ordinary photos -> ArcFace-aligned 112 x 112 crops, as InsightFace aligns them.

dlib's HOG detector finds the faces, its 68-point predictor places the landmarks, and the five
ArcFace points (eye centres, nose tip, mouth corners) derived from them are mapped onto the ArcFace
template by a least-squares similarity transform (``insightface.utils.face_align.estimate_norm``:
the Umeyama fit of scikit-image's ``SimilarityTransform``), then warped with ``cv2.warpAffine``
(bilinear, black border) as ``face_align.norm_crop`` does. Needs the extra ``faceocc[landmarks]``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from render import dlib_models
from render.landmarks import ARCFACE_5, five_points, mean_face_68, similarity_fit
from render.pose import fit_pose

MIN_FACE = 40                 # px: smaller detections are refused as unusable
MAX_RESIDUAL = 0.12           # landmark fit residual (per unit of face scale) above which a face is unusable


class AlignError(ValueError):
    """A photo that yields no usable face; ``reason`` says why."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


@dataclasses.dataclass
class AlignedFace:
    """One aligned face: the crop [S, S, 3] uint8 RGB, the detector box (left, top, right, bottom) and
    score in the photo, and the five points in the photo [5, 2]."""

    crop: np.ndarray
    box: tuple[int, int, int, int]
    score: float
    points: np.ndarray


def estimate_norm(points: np.ndarray, image_size: int = 112) -> np.ndarray:
    """The 2 x 3 similarity taking five points [5, 2] onto the ArcFace template (for ``image_size``
    a multiple of 112), as ``insightface.utils.face_align.estimate_norm`` computes it."""
    if image_size % 112:
        raise ValueError(f"image_size must be a multiple of 112, not {image_size}")
    scale, rot, shift = similarity_fit(np.asarray(points, np.float64), ARCFACE_5 * (image_size / 112))
    return np.hstack([scale * rot, shift[:, None]])


def norm_crop(image: np.ndarray, points: np.ndarray, image_size: int = 112) -> np.ndarray:
    """The aligned crop [S, S, 3] of ``image`` for its five points, as ``face_align.norm_crop``."""
    import cv2

    m = estimate_norm(points, image_size)
    return cv2.warpAffine(np.ascontiguousarray(image), m, (image_size, image_size), borderValue=0.0)


def _upsample(image: np.ndarray) -> int:
    """HOG finds faces of 80 px and more: small photos are searched at 2x or 4x."""
    short = min(image.shape[:2])
    return 0 if short >= 400 else 1 if short >= 160 else 2


def faces_in_photo(image: np.ndarray, image_size: int = 112, min_face: int = MIN_FACE) -> list[AlignedFace]:
    """Every usable face of an RGB uint8 photo, aligned, largest first."""
    mean = mean_face_68()
    found = []
    for box, score in dlib_models.detect(image, _upsample(image)):
        if min(box[2] - box[0], box[3] - box[1]) < min_face:
            continue
        lm = dlib_models.predict(image, box, 68)
        pose = fit_pose(lm[None], mean)
        if not pose.residual[0] / pose.scale[0] < MAX_RESIDUAL:
            continue
        pts = five_points(lm)
        found.append(AlignedFace(norm_crop(image, pts, image_size), box, score, pts))
    return sorted(found, key=lambda f: (-(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]), -f.score))


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file as RGB uint8 (EXIF orientation applied)."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def align_photo(path: str | os.PathLike, image_size: int = 112, min_face: int = MIN_FACE) -> AlignedFace:
    """The largest face of the photo at ``path``, aligned; :class:`AlignError` when there is none
    (or none usable: too small, or landmarks that do not fit a face)."""
    try:
        image = read_rgb(path)
    except Exception as exc:         # noqa: BLE001 - any unreadable file is reported, not fatal
        raise AlignError(str(path), f"unreadable image ({exc.__class__.__name__}: {exc})") from exc
    detections = dlib_models.detect(image, _upsample(image))
    if not detections:
        raise AlignError(str(path), "no face found")
    faces = faces_in_photo(image, image_size, min_face)
    if not faces:
        sizes = ", ".join(f"{b[2] - b[0]}x{b[3] - b[1]}" for b, _ in detections)
        raise AlignError(str(path), f"no usable face (detected {sizes} px; smaller than {min_face} px or "
                                    "landmarks that do not fit a face)")
    return faces[0]


def package_photos() -> list[Path]:
    """Photos with faces that ship inside installed packages: insightface's group photo ``t1.jpg``
    and sample face, scikit-image's ``astronaut.png`` (those present)."""
    from .example import package_file

    found = [package_file("insightface", "data", "images", "t1.jpg"),
             package_file("insightface", "data", "images", "Tom_Hanks_54745.png"),
             package_file("skimage", "data", "astronaut.png")]
    return [p for p in found if p is not None]


def package_faces(image_size: int = 112) -> list[np.ndarray]:
    """Every face found in :func:`package_photos`, aligned: one identity each."""
    return [f.crop for p in package_photos() for f in faces_in_photo(read_rgb(p), image_size)]
