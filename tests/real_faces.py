"""Real faces for the landmark tests: the faces in photos shipped by installed packages (insightface's
group photo t1.jpg cut per face with dlib's HOG detector, its sample face, scikit-image's astronaut)
and ../shared/data/faces when present, aligned; and turned, tilted, shifted views of them."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from conftest import oracles_required, shared_data


def require_landmarks_extra() -> None:
    """Skip without dlib and its models, except in CI (FACEOCC_REQUIRE_ORACLES=1), where it fails."""
    from faceocc.render import dlib_models

    if not dlib_models.available():
        if oracles_required():
            pytest.fail("FACEOCC_REQUIRE_ORACLES=1 but the extra faceocc[landmarks] (dlib-bin, "
                        "face-recognition-models) is not installed")
        pytest.skip("needs the extra faceocc[landmarks] (dlib-bin, face-recognition-models)")


@functools.cache
def real_crops() -> np.ndarray:
    """Aligned 112 x 112 crops [N, 112, 112, 3] of every real face at hand (8 without shared data)."""
    from faceocc.align import faces_in_photo, package_faces, read_rgb

    crops = package_faces()
    folder = shared_data("faces")
    if folder is not None:
        for path in sorted(folder.iterdir()):
            crops += [f.crop for f in faces_in_photo(read_rgb(path))[:1]]
    return np.stack(crops)


VIEWS = [(0, 0, 0), (25, 5, -4), (-25, -6, 5), (15, -8, -6), (-15, 8, 6), (0, 9, -7)]   # degrees, dx, dy


@functools.cache
def turned_views() -> tuple[np.ndarray, np.ndarray]:
    """Every real crop under each of ``VIEWS`` (rotation about the centre, then shift; the border
    replicated): faces [N * len(VIEWS), 112, 112, 3] and the 2 x 3 maps [N * len(VIEWS), 2, 3]."""
    import cv2

    faces, maps = [], []
    for crop in real_crops():
        for angle, dx, dy in VIEWS:
            m = cv2.getRotationMatrix2D((56.0, 56.0), angle, 1.0)
            m[:, 2] += (dx, dy)
            faces.append(cv2.warpAffine(crop, m, (112, 112), borderMode=cv2.BORDER_REPLICATE))
            maps.append(m)
    return np.stack(faces), np.stack(maps)
