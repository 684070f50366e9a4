"""The similarity fit that places point sets on the ArcFace template (scikit-image's Umeyama estimate)."""

from __future__ import annotations

import numpy as np
import pytest
from faceocc.render.face_geometry import ARCFACE_5, similarity_fit


def test_a_known_similarity_is_recovered_exactly():
    rng = np.random.default_rng(3)
    src = rng.normal(size=(68, 2)) * 30
    angle = np.radians(23.0)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    scale, got_rot, shift = similarity_fit(src, 1.7 * src @ rot.T + [5.0, -2.0])
    assert scale == pytest.approx(1.7) and np.allclose(got_rot, rot) and np.allclose(shift, [5.0, -2.0])


def test_the_fit_is_least_squares_and_never_mirrors():
    """A mirrored target gets a proper rotation (det +1), and no other rotation or scale fits better."""
    rng = np.random.default_rng(4)
    src = rng.normal(size=(5, 2)) * 20
    dst = ARCFACE_5 * [-1, 1] + rng.normal(size=(5, 2))
    scale, rot, shift = similarity_fit(src, dst)
    assert np.linalg.det(rot) == pytest.approx(1.0)
    best = ((scale * src @ rot.T + shift - dst) ** 2).sum()
    for da in np.radians([-2, -0.5, 0.5, 2]):
        r = np.array([[np.cos(da), -np.sin(da)], [np.sin(da), np.cos(da)]]) @ rot
        for s in (scale * 0.98, scale, scale * 1.02):
            t = dst.mean(0) - s * r @ src.mean(0)
            assert ((s * src @ r.T + t - dst) ** 2).sum() >= best - 1e-9


def test_points_that_fix_no_similarity_give_nan():
    scale, rot, shift = similarity_fit(np.zeros((5, 2)), ARCFACE_5)
    assert np.isnan(scale) and np.isnan(rot).all() and np.isnan(shift).all()
