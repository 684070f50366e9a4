"""The geometry set of online 3D masks: ``mask_geometry.rec/.idx`` beside train.rec, made by
``faceocc render DIR --geometry-only``.

One record per image key of train.rec, with train.rec's header (id, label) and the render identity in
``id2``, exactly as a mask set's records (:mod:`faceocc.datasets.mask_alignment` is its alignment rule;
:mod:`faceocc.datasets.mask_sets` installs it, in ``DIR/.faceocc-geometry``); header and identity records
are copied from train.rec. The payload of an image record is the face's 68 landmarks (iBUG 300-W
numbering) with fitted depth: [68, 3] little-endian float16, x and y in pixels of the rendered image
size, z in the same scale, larger nearer the camera: 408 bytes. A record is 8 (frame) + 24 (header) +
408 = 440 bytes and its index line about 20 (``key<TAB>offset``), so about 460 bytes a face:
MS1M-RetinaFace's 5.8M faces take about 2.7 GB.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..recordio import RecordDataset, RecordIOError
from ..recordio.batch import BatchReader
from .mask_alignment import check_alignment
from .mask_sets import GEOMETRY, mask_paths, open_set, render_manifest

POINTS = 68
GEOMETRY_DTYPE = np.dtype("<f2")
GEOMETRY_BYTES = POINTS * 3 * GEOMETRY_DTYPE.itemsize        # 408
NAME = GEOMETRY.names[0]
MAX_SIDE = 65535                                              # pixels: the size a geometry set may be made at
MAKE = "faceocc render DIR --geometry-only [--landmarks template|dlib|insightface]"


def encode(landmarks: np.ndarray) -> list[bytes]:
    """Payloads of landmarks [N, 68, 3] (float16, 408 bytes each); refuses non-finite or out-of-range
    values (float16 holds magnitudes up to 65504)."""
    lm = np.asarray(landmarks, np.float64).reshape(-1, POINTS, 3)
    bad = np.flatnonzero(~(np.isfinite(lm) & (np.abs(lm) < 65000)).all((1, 2)))
    if bad.size:
        raise ValueError(f"landmarks of face {int(bad[0])} are not finite numbers below 65000: {lm[bad[0]][:2]}")
    half = lm.astype(GEOMETRY_DTYPE)
    return [row.tobytes() for row in half]


def decode(payloads: np.ndarray, where: Path | None = None, keys: np.ndarray | None = None,
           dataset: RecordDataset | None = None) -> np.ndarray:
    """Landmarks [N, 68, 3] float32 of payload rows [N, 408] uint8; a row that cannot be a geometry
    (non-finite) raises :class:`RecordIOError` naming its key (and offset, given its ``dataset``)."""
    rows = np.ascontiguousarray(payloads, np.uint8).reshape(-1, GEOMETRY_BYTES)
    lm = rows.view(GEOMETRY_DTYPE).reshape(-1, POINTS, 3).astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(lm).all((1, 2)))
    if bad.size:
        key = int(keys[bad[0]]) if keys is not None else None
        offset = dataset.offset_of(key) if dataset is not None and key is not None else None
        raise RecordIOError(f"the face geometry is not finite; {GEOMETRY.again}", where, key, offset)
    return lm


def payload_problem(payload: bytes | np.ndarray) -> str | None:
    """Why a record's payload is not a face geometry, or None."""
    size = len(payload)
    if size != GEOMETRY_BYTES:
        return f"geometry payload of {size} bytes, not {GEOMETRY_BYTES} (68 x 3 float16)"
    lm = np.frombuffer(bytes(payload), GEOMETRY_DTYPE)
    if not np.isfinite(lm).all():
        return "geometry holds values that are not finite numbers"
    return None


def geometry_path(data_dir: str | os.PathLike) -> Path | None:
    """``mask_geometry.rec`` of the dataset (through its installed generation), or None without one."""
    paths = mask_paths(data_dir, GEOMETRY)
    return None if paths is None else paths[NAME]


def geometry_manifest(data_dir: str | os.PathLike) -> dict | None:
    """The settings of the installed geometry set (landmark source, image size, ...), or None."""
    return render_manifest(data_dir, GEOMETRY)


def _open_geometry(data_dir: str | os.PathLike) -> RecordDataset:
    """The installed geometry set's records; :class:`FileNotFoundError` naming the command that makes it."""
    opened = open_set(data_dir, GEOMETRY)
    if opened is None:
        raise FileNotFoundError(f"{Path(data_dir)} has no face geometry for online 3D masks (mask3d.source: "
                                f"online); make it once with: {MAKE.replace('DIR', str(data_dir))}")
    return opened[NAME]


class GeometryReader:
    """Landmarks of many keys per call from an installed geometry set, checked against train.rec's ids
    and labels of the same rows, and scaled from the set's image size to ``size`` (H, W)."""

    def __init__(self, data_dir: str | os.PathLike, size: tuple[int, int] | None = None) -> None:
        self.reader = BatchReader(_open_geometry(data_dir))
        made = (geometry_manifest(data_dir) or {}).get("size")
        if made is not None and not (isinstance(made, list) and len(made) == 2 and all(
                isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_SIDE for v in made)):
            raise RecordIOError(f"render.json's size must be [height, width] in whole pixels from 1 to {MAX_SIDE}, "
                                f"not {str(made)[:40]}; {GEOMETRY.again}", self.path.parent / "render.json")
        h, w = size or made or (112, 112)
        mh, mw = made or (h, w)
        self.scale = np.array([w / mw, h / mh, w / mw], np.float32)

    @property
    def path(self) -> Path:
        return self.reader.dataset.rec_path

    def check(self, train: RecordDataset) -> None:
        """Refuse the set this reader reads when it is not aligned with ``train`` (the mask sets' rule)."""
        check_alignment(train, {NAME: self.reader.dataset})

    def read(self, keys: np.ndarray, ids: np.ndarray | None = None, labels: np.ndarray | None = None) -> np.ndarray:
        """Landmarks [len(keys), 68, 3] float32 (pixels of ``size``) of ``keys``; with train.rec's ``ids``
        and ``labels`` of the same rows, a record that does not match them is refused, naming its key."""
        keys = np.asarray(keys, np.int64)
        if keys.size == 0:
            return np.zeros((0, POINTS, 3), np.float32)
        got = self.reader.read(keys)
        if ids is not None:
            wrong = (got.ids != ids) | (got.labels != labels)
            if wrong.any():
                i = int(np.flatnonzero(wrong)[0])
                raise RecordIOError(f"{NAME}.rec does not match train.rec (id/label {got.ids[i]}/{got.labels[i]} vs "
                                    f"{ids[i]}/{labels[i]}); {GEOMETRY.again}", self.path, int(keys[i]),
                                    self.reader.dataset.offset_of(int(keys[i])))
        rows, lengths = got.dense()
        bad = np.flatnonzero(lengths[:, 0] != GEOMETRY_BYTES)
        if bad.size:
            key = int(keys[int(bad[0])])
            raise RecordIOError(f"geometry record of {int(lengths[int(bad[0]), 0])} bytes, not {GEOMETRY_BYTES}; "
                                f"{GEOMETRY.again}", self.path, key, self.reader.dataset.offset_of(key))
        return decode(rows, self.path, keys, self.reader.dataset) * self.scale

    def close(self) -> None:
        self.reader.close()
        self.reader.dataset.close()


def check_geometry(train: RecordDataset, data_dir: str | os.PathLike) -> Path:
    """The geometry set's record file, after checking it is aligned with ``train`` (the mask sets' rule:
    every image key, same ids and classes, one render identity); raises :class:`RecordIOError` naming
    file, key and offset, or :class:`FileNotFoundError` naming the command that makes it."""
    with _open_geometry(data_dir) as ds:
        check_alignment(train, {NAME: ds})
    return ds.rec_path


def stored_geometry(data_dir: str | os.PathLike, train: RecordDataset, settings: dict) -> GeometryReader | None:
    """A reader of the dataset's geometry set when it was made for this train.rec, image size and landmark
    source (``settings``' ``train``, ``size``, ``landmarks``), so that a mask render need not find the
    landmarks again (checked first: :func:`check_geometry`); None otherwise."""
    made = geometry_manifest(data_dir)
    if not made or any(made.get(k) != settings[k] for k in ("train", "size", "landmarks")):
        return None
    check_geometry(train, data_dir)
    return GeometryReader(data_dir, tuple(settings["size"]))


def geometry_status(data_dir: str | os.PathLike) -> dict:
    """What ``faceocc info`` says about the geometry set, decided by the loader's own rule."""
    status: dict = {"present": False, "aligned": False, "problem": None, "render": None}
    try:
        path = geometry_path(data_dir)
    except RecordIOError as exc:
        return {**status, "present": True, "problem": str(exc)}
    if path is None:
        return status
    status["present"] = True
    try:
        with RecordDataset(data_dir) as train:
            check_geometry(train, data_dir)
        status["aligned"] = True
        status["render"] = geometry_manifest(data_dir)
    except RecordIOError as exc:
        status["problem"] = str(exc)
    return status
