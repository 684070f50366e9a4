"""``faceocc pack --align``: real photos -> ArcFace-aligned crops in the InsightFace layout, photos
without a usable face reported, never dropped silently."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from faceocc.render.face_geometry import ARCFACE_5, similarity_fit
from real_faces import require_landmarks_extra

from faceocc.cli import main
from faceocc.recordio import RecordDataset
from faceocc.recordio.images import decode_image
from faceocc.resources import package_file


@pytest.fixture(scope="module")
def raw_photos(tmp_path_factory):
    """Identity folders of ordinary photos: each face of insightface's t1.jpg cut out with a margin
    (as photographed, plus a rotated and a rescaled copy), scikit-image's astronaut, a photo with
    no face, a broken file, and a folder whose only photo has no face."""
    require_landmarks_extra()
    from faceocc.render import dlib_models
    from PIL import Image

    from faceocc.align import read_rgb

    root = tmp_path_factory.mktemp("raw")
    group = read_rgb(package_file("insightface", "data", "images", "t1.jpg"))
    boxes = [b for b, _ in dlib_models.detect(group, 1)]
    assert len(boxes) == 6
    for i, (x0, y0, x1, y1) in enumerate(sorted(boxes)):
        m = (x1 - x0) // 2
        cut = Image.fromarray(group[max(0, y0 - m):y1 + m, max(0, x0 - m):x1 + m])
        d = root / f"person{i}"
        d.mkdir()
        cut.save(d / "a.jpg", quality=92)
        cut.rotate(12, Image.BILINEAR, expand=True).save(d / "b.png")
        cut.resize((cut.width * 2, cut.height * 2), Image.BILINEAR).save(d / "c.jpg", quality=90)
    astronaut = package_file("skimage", "data", "astronaut.png")
    if astronaut is not None:
        (root / "astronaut").mkdir()
        Image.open(astronaut).save(root / "astronaut" / "eileen.png")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)).save(root / "person0" / "noise.jpg")
    (root / "person1" / "broken.jpg").write_bytes(b"not an image")
    (root / "nobody").mkdir()
    Image.new("RGB", (160, 160), (120, 140, 160)).save(root / "nobody" / "wall.jpg")
    return root


def test_pack_align_writes_aligned_faces_and_reports_the_rest(raw_photos, tmp_path, capsys):
    from faceocc.render.dlib_landmarks import dlib_points
    from faceocc.render.face_geometry import five_points

    out = tmp_path / "ds"
    assert main(["pack", "--align", str(raw_photos), str(out)]) == 0
    printed = capsys.readouterr().out
    people = 6 + (raw_photos / "astronaut").exists()
    with RecordDataset(out) as ds:
        assert ds.layout == "insightface"
        assert ds.num_classes == people
        assert len(ds) == 6 * 3 + people - 6
        faces = np.stack([decode_image(ds.read(int(k))[1], gray=None) for k in ds.image_keys])
        labels = [int(ds.read(int(k))[0].label) for k in ds.image_keys]
    assert faces.shape[1:] == (112, 112, 3)
    assert labels == sorted(labels) and set(labels) == set(range(people))
    assert (out / "property").read_text().strip() == f"{people},112,112"
    # every crop is aligned: the similarity taking its own five points onto the ArcFace template is
    # (nearly) the identity; what is left is the shape of the face, not its placement
    fits = [similarity_fit(p, ARCFACE_5) for p in five_points(dlib_points(faces))]
    scale = np.array([f[0] for f in fits])
    angle = np.degrees([np.arctan2(f[1][1, 0], f[1][0, 0]) for f in fits])
    moved = np.array([np.abs(f[0] * f[1] @ (56, 60) + f[2] - (56, 60)).max() for f in fits])
    assert np.abs(scale - 1).max() < 0.08 and np.abs(angle).max() < 4 and moved.max() < 4, (scale, angle, moved)
    # the three photos of one person align to the same face
    assert np.abs(faces[0:3].astype(float) - faces[0].astype(float)).mean() < np.abs(
        faces[0].astype(float) - faces[3].astype(float)).mean()
    report = (out / "align-report.tsv").read_text().splitlines()
    assert report[0] == "path\treason"
    reasons = dict(line.split("\t") for line in report[1:])
    assert reasons[str(raw_photos / "person0" / "noise.jpg")] == "no face found"
    assert reasons[str(raw_photos / "person1" / "broken.jpg")].startswith("unreadable image")
    assert reasons[str(raw_photos / "nobody" / "wall.jpg")] == "no face found"
    assert reasons[str(raw_photos / "nobody")].startswith("identity left out")
    assert len(reasons) == 4
    for path in reasons:
        assert f"SKIPPED {path}" in printed
    assert "4 left out" in printed


def test_alignment_is_insightface_own(raw_photos):
    pytest.importorskip("skimage")
    from insightface.utils import face_align

    from faceocc.align import estimate_norm, faces_in_photo, norm_crop, read_rgb

    photo = read_rgb(raw_photos / "person2" / "a.jpg")
    face = faces_in_photo(photo)[0]
    pts = face.points.astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)        # scikit-image's deprecation of estimate()
        theirs_m = face_align.estimate_norm(pts)
        theirs = face_align.norm_crop(photo, pts)

    np.testing.assert_allclose(estimate_norm(pts), theirs_m, atol=1e-3)
    assert np.abs(norm_crop(photo, pts).astype(int) - theirs).max() <= 1
    np.testing.assert_array_equal(face.crop, norm_crop(photo, face.points))


def test_pack_align_refuses_existing_output_and_a_folder_without_faces(raw_photos, tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["pack", "--align", str(raw_photos), str(out)]) == 0
    assert main(["pack", "--align", str(raw_photos), str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["pack", "--align", str(raw_photos), str(out), "--overwrite"]) == 0
    empty = raw_photos.parent / "faceless"
    (empty / "x").mkdir(parents=True)
    (empty / "x" / "broken.jpg").write_bytes(b"nope")
    assert main(["pack", "--align", str(empty), str(tmp_path / "none")]) == 2
    assert "no usable face in any photo" in capsys.readouterr().err


def test_pack_align_without_the_extra_says_how_to_install(tmp_path, monkeypatch, capsys):
    from faceocc.render import dlib_models

    dlib_models.shape_predictor.cache_clear()
    monkeypatch.setattr(dlib_models, "_models_dir", lambda: None)
    (tmp_path / "raw" / "a").mkdir(parents=True)
    try:
        assert main(["pack", "--align", str(tmp_path / "raw"), str(tmp_path / "out")]) == 2
    finally:
        dlib_models.shape_predictor.cache_clear()
    assert "faceocc[landmarks]" in capsys.readouterr().err
