"""``--landmarks dlib``: masks that follow each face's pose, on real faces turned, tilted and shifted.

The pose test is run for both sources: it passes for ``dlib`` and fails for ``template`` (whose mask
never moves), so it can tell a mask that follows the face from one that does not.
"""

from __future__ import annotations

import numpy as np
import pytest
from faceocc.render.face_geometry import (
    EYES,
    MOUTH_CORNERS,
    NOSE_TIP,
    mean_face_68,
    similarity_fit,
    template_landmarks,
)
from faceocc.render.pose import fit_pose, rotation_matrix
from real_faces import VIEWS, real_crops, require_landmarks_extra, turned_views

LOWER_FACE = list(range(2, 15)) + [NOSE_TIP] + list(range(48, 60))      # jaw, nose tip, outer lip


@pytest.fixture(scope="module")
def views():
    require_landmarks_extra()
    from faceocc.render.dlib_landmarks import dlib_points

    faces, maps = turned_views()
    return faces, maps, dlib_points(faces), dlib_points(real_crops())


def test_pose_fit_recovers_yaw_pitch_roll_scale_and_shift():
    mean = mean_face_68()
    angles = np.array([(30, -10, 20), (-40, 15, -5), (0, 0, 0), (10, 25, -25)], np.float64)
    rot = np.stack([rotation_matrix(*a) for a in angles])
    scale, shift = np.array([60.0, 80, 50, 70]), np.array([[56, 60], [50, 70], [60, 50], [55, 55.0]])
    points = (np.einsum("nij,kj->nki", rot, mean) * scale[:, None, None])[..., :2] + shift[:, None]
    noisy = points + np.random.default_rng(0).normal(0, 0.5, points.shape)
    pose = fit_pose(noisy, mean)
    np.testing.assert_allclose(pose.angles(), angles, atol=1.5)
    np.testing.assert_allclose(pose.scale, scale, rtol=0.01)
    np.testing.assert_allclose(pose.shift, shift, atol=0.5)
    assert (pose.residual < 1.0).all()
    depth = pose.points(mean)[..., 2]
    np.testing.assert_allclose(depth, (np.einsum("nij,kj->nki", rot, mean) * scale[:, None, None])[..., 2],
                               atol=2.0)


def test_dlib_points_follow_rotated_and_shifted_faces(views):
    faces, maps, own, base = views
    k = len(VIEWS)
    truth = np.stack([base[i // k] @ maps[i][:, :2].T + maps[i][:, 2] for i in range(len(faces))])
    err = np.sqrt(((own - truth) ** 2).sum(-1).mean(1))
    assert np.median(err) < 2.0, np.round(err, 1)
    assert np.quantile(err, 0.9) < 5.0, np.round(err, 1)


def pose_failures(source: str, faces: np.ndarray, maps: np.ndarray, own: np.ndarray) -> dict:
    """How the masks of ``source`` fail the face's own dlib landmarks ``own``: views whose mask misses
    the nose tip or a mouth corner or covers an eye landmark, and how far (px) the mask centroid
    strays from where the face's landmarks carried it (relative to the lower-face landmarks)."""
    from faceocc.render.renderer import MaskRenderer

    renderer = MaskRenderer(landmarks=source)
    params = renderer.sample(len(faces), np.random.default_rng(0))
    _, mask = renderer.render(faces, params)
    masked = mask == 0
    at = lambda i, p: masked[i, int(np.clip(p[1], 0, 111)), int(np.clip(p[0], 0, 111))]  # noqa: E731
    coverage = [i for i in range(len(faces)) if not all(at(i, own[i][j]) for j in (NOSE_TIP, *MOUTH_CORNERS))
                or any(at(i, own[i][j]) for j in EYES)]
    yy, xx = np.mgrid[:112, :112]
    area = masked.sum((1, 2))
    centroid = np.stack([(masked * xx).sum((1, 2)) / area, (masked * yy).sum((1, 2)) / area], 1)
    k = len(VIEWS)
    drift = []
    for i in range(len(faces)):
        i0 = i - i % k                       # the face's unturned view
        scale, rot, _ = similarity_fit(own[i0], own[i])
        anchor, anchor0 = own[i][LOWER_FACE].mean(0), own[i0][LOWER_FACE].mean(0)
        drift.append(np.linalg.norm((centroid[i] - anchor) - scale * rot @ (centroid[i0] - anchor0)))
    return {"coverage": coverage, "drift": np.array(drift)}


def follows_pose(failures: dict) -> bool:
    """The pose test: every view's mask covers nose tip and mouth corners and no eye landmark, and
    the mask centroid follows the landmarks (median drift under 2.5 px, 90 % under 5.5 px)."""
    drift = failures["drift"]
    return not failures["coverage"] and np.median(drift) < 2.5 and np.quantile(drift, 0.9) < 5.5


def test_pose_test_passes_for_dlib_and_fails_for_template(views):
    faces, maps, own, _ = views
    dlib = pose_failures("dlib", faces, maps, own)
    template = pose_failures("template", faces, maps, own)
    assert follows_pose(dlib), (dlib["coverage"], np.round(dlib["drift"], 1))
    assert not follows_pose(template)
    # the template's mask stays put while the face turns and shifts: its centroid drifts far
    assert np.median(template["drift"]) > 4 * np.median(dlib["drift"])


def test_depth_comes_from_the_fitted_mean_face():
    require_landmarks_extra()
    from faceocc.render.dlib_landmarks import DlibLandmarks

    src = DlibLandmarks()
    mean = mean_face_68()
    rot = rotation_matrix(30, -10, 8)
    posed = np.einsum("ij,kj->ki", rot, mean) * 70
    posed[:, :2] += (56, 62)
    lm = src.fit(posed[None, :, :2])
    assert src.fallbacks == 0
    np.testing.assert_allclose(lm[0, :, :2], posed[:, :2])
    np.testing.assert_allclose(lm[0, :, 2], posed[:, 2], atol=0.5)
    np.testing.assert_allclose(src.last_pose.angles()[0], (30, -10, 8), atol=0.5)
    # turned towards +yaw, the nose tip comes nearer than both eyes, the eyes at different depths
    assert lm[0, NOSE_TIP, 2] > lm[0, EYES, 2].max()
    assert abs(lm[0, 36:42, 2].mean() - lm[0, 42:48, 2].mean()) > 5


def test_points_that_are_no_face_fall_back_to_the_template_and_are_counted():
    require_landmarks_extra()
    from faceocc.render.dlib_landmarks import DlibLandmarks

    src = DlibLandmarks()
    good = template_landmarks()[:, :2] + (3, -2)
    collapsed = np.full((68, 2), 50.0)                          # all points in one place
    scrambled = np.random.default_rng(0).uniform(0, 112, (68, 2))
    lost = good + 300                                            # outside the image
    lm = src.fit(np.stack([good, collapsed, scrambled, lost, np.full((68, 2), np.nan)]))
    assert src.last_failed.tolist() == [False, True, True, True, True]
    assert src.fallbacks == 4
    np.testing.assert_allclose(lm[1:], np.broadcast_to(template_landmarks(), (4, 68, 3)))
    np.testing.assert_allclose(lm[0, :, :2], good)


def test_render_cli_with_dlib_landmarks_counts_fallbacks(tmp_path, capsys, monkeypatch):
    require_landmarks_extra()
    from faceocc.render import dlib_models

    from faceocc.cli import main
    from faceocc.datasets.example import make_face_dataset
    from faceocc.recordio import RecordDataset

    data = make_face_dataset(tmp_path / "ds", list(real_crops()[:3]), identities=3, per_identity=4)
    assert main(["render", str(data), "--landmarks", "dlib", "--chunk-size", "5", "--batch-size", "4"]) == 0
    out = capsys.readouterr().out
    assert "landmarks dlib: 0 of 12 faces fell back" in out
    with RecordDataset(data / "mask.rec") as masks:
        assert len(masks) == 12

    # a predictor that fails on every third call: those faces get the template, and are counted
    real = dlib_models.predict
    calls = iter(range(10_000))
    monkeypatch.setattr(dlib_models, "predict",
                        lambda img, box, n=68: real(img, box, n) if next(calls) % 3 else np.zeros((68, 2)))
    assert main(["render", str(data), "--landmarks", "dlib", "--overwrite", "--chunk-size", "5"]) == 0
    line = next(s for s in capsys.readouterr().out.splitlines() if s.startswith("landmarks dlib"))
    assert int(line.split()[2]) >= 3, line


def test_dlib_source_without_the_extra_says_how_to_install(monkeypatch, capsys, small_dataset):
    from faceocc.render import dlib_models

    from faceocc.cli import main

    dlib_models.shape_predictor.cache_clear()
    monkeypatch.setattr(dlib_models, "_models_dir", lambda: None)
    try:
        assert main(["render", str(small_dataset), "--landmarks", "dlib"]) == 2
    finally:
        dlib_models.shape_predictor.cache_clear()
    assert "faceocc[landmarks]" in capsys.readouterr().err


def test_benchmark_measures_the_dlib_render():
    require_landmarks_extra()
    from benchmarks.harness import render_alone

    assert render_alone("cpu", 8, "dlib", None, 1) > 0
