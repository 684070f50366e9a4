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

from faceocc.recordio.files import read_regular, write_atomic
from faceocc.recordio.images import pixel_problem
from faceocc.render import dlib_models
from faceocc.render.face_geometry import ARCFACE_5, five_points, mean_face_68, similarity_fit
from faceocc.render.pose import fit_pose

MIN_FACE = 40                 # px: smaller detections are refused as unusable
PHOTO_MAX_BYTES = 64 << 20    # a photo file longer than this is left out (listed in the report)
PHOTO_MAX_PIXELS = 1 << 26    # 64 MP: a photo of more pixels is left out, read from its header
MAX_RESIDUAL = 0.12           # landmark fit residual (per unit of face scale) above which a face is unusable
DETECT_ANGLES = (0.0, 20.0, -20.0, 40.0, -40.0)


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


def _rotated(image: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """The image turned by ``angle`` degrees on a canvas that holds all of it, and the 2 x 3 map
    from the rotated image's pixels back to the original's."""
    import cv2

    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(np.ceil(h * sin + w * cos)), int(np.ceil(h * cos + w * sin))
    m[:, 2] += (nw / 2 - w / 2, nh / 2 - h / 2)
    turned = cv2.warpAffine(np.ascontiguousarray(image), m, (nw, nh), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    return turned, cv2.invertAffineTransform(m)


def faces_in_photo(image: np.ndarray, image_size: int = 112, min_face: int = MIN_FACE,
                   angles: tuple[float, ...] = DETECT_ANGLES) -> list[AlignedFace]:
    """Every usable face of an RGB uint8 photo, aligned, largest first. dlib's HOG detector wants
    upright faces: where it finds none, the photo is searched again turned by each of ``angles``."""
    mean = mean_face_68()
    found: list[AlignedFace] = []
    for angle in angles:
        view, back = _rotated(image, angle) if angle else (image, np.hstack([np.eye(2), np.zeros((2, 1))]))
        for box, score in dlib_models.detect(view, _upsample(view)):
            if min(box[2] - box[0], box[3] - box[1]) < min_face:
                continue
            lm = dlib_models.predict(view, box, 68)
            pose = fit_pose(lm[None], mean)
            if not pose.residual[0] / pose.scale[0] < MAX_RESIDUAL:
                continue
            pts = five_points(lm @ back[:, :2].T + back[:, 2])
            corners = np.array([[box[0], box[1]], [box[2], box[1]], [box[0], box[3]], [box[2], box[3]]])
            c = corners @ back[:, :2].T + back[:, 2]
            home = tuple(int(round(v)) for v in (*c.min(0), *c.max(0)))
            found.append(AlignedFace(norm_crop(image, pts, image_size), home, score, pts))
        if found:
            break
    return sorted(found, key=lambda f: (-(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]), -f.score))


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file as RGB uint8 (EXIF orientation applied); only a regular file of at most
    :data:`PHOTO_MAX_BYTES` bytes and :data:`PHOTO_MAX_PIXELS` pixels (a FIFO is refused, not waited on)."""
    import io

    from PIL import Image, ImageOps

    data = read_regular(path, PHOTO_MAX_BYTES, "photo")
    too_large = pixel_problem(data, PHOTO_MAX_PIXELS)
    if too_large:
        raise ValueError(too_large.replace("max_pixels; raise it", "PHOTO_MAX_PIXELS; shrink the photo"))
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def align_photo(path: str | os.PathLike, image_size: int = 112, min_face: int = MIN_FACE) -> AlignedFace:
    """The largest face of the photo at ``path``, aligned; :class:`AlignError` when there is none
    (or none usable: too small, or landmarks that do not fit a face)."""
    try:
        image = read_rgb(path)
    except Exception as exc:         # noqa: BLE001 - any unreadable file is reported, not fatal
        raise AlignError(str(path), f"unreadable image ({exc.__class__.__name__}: {exc})") from exc
    faces = faces_in_photo(image, image_size, min_face)
    if faces:
        return faces[0]
    detections = [d for a in DETECT_ANGLES for d in dlib_models.detect(_rotated(image, a)[0] if a else image,
                                                                        _upsample(image))]
    if not detections:
        raise AlignError(str(path), "no face found")
    sizes = ", ".join(f"{b[2] - b[0]}x{b[3] - b[1]}" for b, _ in detections)
    raise AlignError(str(path), f"no usable face (detected {sizes} px: smaller than {min_face} px, or "
                                "landmarks that do not fit a face)")


def package_photos() -> list[Path]:
    """Photos with faces that ship inside installed packages: insightface's group photo ``t1.jpg``
    and sample face, scikit-image's ``astronaut.png`` (those present)."""
    from faceocc.resources import package_file

    found = [package_file("insightface", "data", "images", "t1.jpg"),
             package_file("insightface", "data", "images", "Tom_Hanks_54745.png"),
             package_file("skimage", "data", "astronaut.png")]
    return [p for p in found if p is not None]


def package_faces(image_size: int = 112) -> list[np.ndarray]:
    """Every face found in :func:`package_photos`, aligned: one identity each."""
    return [f.crop for p in package_photos() for f in faces_in_photo(read_rgb(p), image_size)]


@dataclasses.dataclass
class AlignReport:
    """What ``pack --align`` did: the dataset folder, images packed, identities, the photos left out
    (path, reason) and the report file listing them."""

    out_dir: Path
    images: int
    identities: int
    problems: list[tuple[str, str]]
    report: Path


def _jpeg(crop: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(crop).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def pack_aligned(raw_dir: str | os.PathLike, out_dir: str | os.PathLike, overwrite: bool = False,
                 progress: bool = True, image_size: int = 112, min_face: int = MIN_FACE) -> AlignReport:
    """A folder with one sub-folder of ordinary photos per identity -> an InsightFace-layout dataset of
    ArcFace-aligned ``image_size`` crops (the largest face of each photo, JPEG q95).

    Identities are numbered in sorted folder-name order, skipping folders with no usable photo.
    Every photo left out (unreadable, no face, no usable face) and every identity left empty is
    listed in ``OUT_DIR/align-report.tsv`` (path, reason); nothing is dropped silently.
    """
    from tqdm import tqdm

    from faceocc.datasets.pack import IMAGE_SUFFIXES, write_insightface

    dlib_models.shape_predictor(68)             # fail first, with the install hint, without the extra
    root = Path(raw_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"photo folder not found: {root}")
    people = [(d, sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES))
              for d in sorted(p for p in root.iterdir() if p.is_dir())]
    people = [(d, files) for d, files in people if files]
    if not people:
        raise ValueError(f"{root} has no identity sub-folders with photos in them")
    problems: list[tuple[str, str]] = []
    counts = {"images": 0, "identities": 0}
    bar = tqdm(total=sum(len(f) for _, f in people), desc="aligning", unit="photo", disable=not progress)

    def items():
        for folder, files in people:
            crops = []
            for f in files:
                try:
                    crops.append(_jpeg(align_photo(f, image_size, min_face).crop))
                except AlignError as exc:
                    problems.append((exc.path, exc.reason))
                bar.update(1)
            if not crops:
                problems.append((str(folder), "identity left out: none of its photos has a usable face"))
                continue
            label = counts["identities"]
            counts["identities"] += 1
            counts["images"] += len(crops)
            yield from ((label, c) for c in crops)

    out = Path(out_dir)
    try:
        write_insightface(out, items(), image_size=(image_size, image_size), overwrite=overwrite)
    except ValueError as exc:
        if counts["images"] == 0:
            raise ValueError(f"no usable face in any photo under {root} ({len(problems)} problems, e.g. "
                             f"{problems[0][0]}: {problems[0][1]})") from exc
        raise
    finally:
        bar.close()
    report = out / "align-report.tsv"
    write_atomic(report, "path\treason\n" + "".join(f"{p}\t{r}\n" for p, r in problems))
    return AlignReport(out, counts["images"], counts["identities"], problems, report)
