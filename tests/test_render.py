"""Offline 3D masks: landmarks, mask quality on the template path, the resumable sharded job."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_data
from datasets import face_dataset
from faceocc.render.face_geometry import ARCFACE_5, EYES, MOUTH_CORNERS, NOSE_TIP, five_points, template_landmarks
from faceocc.render.renderer import MaskRenderer

from faceocc.cli import main
from faceocc.recordio import RecordDataset
from faceocc.recordio.images import decode_image

ROOT = Path(__file__).resolve().parents[1]


def _faces(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 112, 112, 3), dtype=np.uint8)


def test_template_landmarks_sit_on_the_arcface_template():
    lm = template_landmarks()
    assert np.abs(five_points(lm)[:, :2] - ARCFACE_5).max() < 6
    assert lm[NOSE_TIP, 2] > lm[0, 2]          # the nose is nearer the camera than the jaw corner


def test_missing_landmark_model_says_where_and_how(tmp_path):
    with pytest.raises(FileNotFoundError, match="buffalo_l") as err:
        MaskRenderer(landmarks="insightface", landmark_model=str(tmp_path / "1k3d68.onnx"))
    assert str(tmp_path) in str(err.value)


@pytest.mark.parametrize("textures", [None, "shared"])
def test_masks_cover_nose_and_mouth_not_eyes(textures):
    folder = None
    if textures == "shared":
        folder = shared_data("mask_textures")
        if folder is None:
            pytest.skip("../shared/data/mask_textures not present")
    renderer = MaskRenderer(textures=folder)
    faces = _faces(64)
    params = renderer.sample(64, np.random.default_rng(1))
    out, mask = renderer.render(faces, params)
    assert set(np.unique(mask)) <= {0, 255}
    lm = template_landmarks()
    px = lambda i: (int(lm[i, 1]), int(lm[i, 0]))  # noqa: E731
    area = (mask == 0).mean(axis=(1, 2))
    assert area.min() > 0.12 and area.max() < 0.45
    for i in range(64):
        for point in EYES:
            assert mask[i][px(point)] == 255, f"face {i} covers eye landmark {point}"
        if folder is None:         # the package's textures are opaque everywhere
            for point in (NOSE_TIP, *MOUTH_CORNERS):
                assert mask[i][px(point)] == 0, f"face {i} misses landmark {point}"
        kept = mask[i] == 255
        assert np.array_equal(out[i][kept], faces[i][kept])       # unchanged exactly where mask is 255
        assert (out[i][~kept] != faces[i][~kept]).any(axis=-1).mean() > 0.95


def _render(folder: Path, *extra: str) -> None:
    assert main(["render", str(folder), "--chunk-size", "8", "--batch-size", "4", *extra]) == 0


@pytest.fixture
def dataset(tmp_path):
    return face_dataset(tmp_path / "d", identities=4, per_identity=7)


def test_render_writes_aligned_records_that_verify(dataset, capsys):
    _render(dataset)
    assert main(["verify", str(dataset)]) == 0
    with RecordDataset(dataset) as train, RecordDataset(dataset / "mask_out.rec") as mo, \
            RecordDataset(dataset / "mask.rec") as mk:
        assert np.array_equal(train.keys, mo.keys) and np.array_equal(train.keys, mk.keys)
        assert mo.layout == mk.layout == "insightface" and mk.identity_ranges.tolist() == train.identity_ranges.tolist()
        for key in train.image_keys.tolist():
            h0, face = train.read(key)
            h1, jpeg = mo.read(key)
            h2, png = mk.read(key)
            assert h0.id == h1.id == h2.id and h0.label == h1.label == h2.label
            assert jpeg[:3] == b"\xff\xd8\xff" and png[:4] == b"\x89PNG"
            mask = decode_image(png, gray=None)
            assert mask.ndim == 2 and set(np.unique(mask)) <= {0, 255} and (mask == 0).any()
    assert main(["render", str(dataset)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    _render(dataset, "--overwrite", "--seed", "1")


def test_shards_then_merge_equal_a_single_run(dataset, tmp_path):
    single = tmp_path / "single"
    shutil.copytree(dataset, single)
    _render(single)
    _render(dataset, "--shard-id", "0", "--num-shards", "2")
    assert main(["render", "merge", str(dataset)]) == 2                 # shard 1 not done yet
    _render(dataset, "--shard-id", "1", "--num-shards", "2")
    assert main(["render", "merge", str(dataset)]) == 0
    for name in ("mask_out", "mask"):
        for ext in (".rec", ".idx"):
            assert (dataset / f"{name}{ext}").read_bytes() == (single / f"{name}{ext}").read_bytes()
    assert not (dataset / ".faceocc-render").exists()



def test_merge_needs_no_landmark_source(dataset, monkeypatch):
    """``render merge`` renders nothing: shards rendered with a landmark source that needs a model file
    (insightface) or an extra (dlib) merge without it (it used to rebuild that source and fail)."""
    import json

    _render(dataset, "--shard-id", "0", "--num-shards", "2")
    _render(dataset, "--shard-id", "1", "--num-shards", "2")
    manifest = dataset / ".faceocc-render" / "manifest.json"
    m = json.loads(manifest.read_text())
    m["landmarks"] = "insightface"            # as a shard rendered with --landmark-model PATH leaves it
    manifest.write_text(json.dumps(m))
    monkeypatch.setenv("HOME", str(dataset / "no-home"))     # no ~/.insightface model to find either
    assert main(["render", "merge", str(dataset)]) == 0
    assert (dataset / "mask.rec").is_file()


KILL_AFTER = """
import os, signal, sys
from faceocc.render.job import RenderJob
from faceocc.cli import main
finish = RenderJob._render_chunk
count = 0
def render_then_maybe_die(self, *args):
    global count
    finish(self, *args)
    count += 1
    if count == int(os.environ["KILL_AFTER_CHUNKS"]):
        os.kill(os.getpid(), signal.SIGKILL)
RenderJob._render_chunk = render_then_maybe_die
sys.exit(main(sys.argv[1:]))
"""


def test_killed_job_resumes_to_identical_files(tmp_path):
    data = face_dataset(tmp_path / "d", identities=6, per_identity=10)
    reference = tmp_path / "ref"
    shutil.copytree(data, reference)
    assert main(["render", str(reference), "--chunk-size", "4"]) == 0     # same chunks, other batches
    args = ["render", str(data), "--chunk-size", "4", "--batch-size", "2", "--workers", "1"]
    env = {**os.environ, "KILL_AFTER_CHUNKS": "3"}
    proc = subprocess.run([sys.executable, "-c", KILL_AFTER, *args], cwd=ROOT, env=env, timeout=300,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert not (data / "mask.rec").exists()
    assert len(list((data / ".faceocc-render").glob("*.done"))) == 3      # of 15 chunks
    subprocess.run([sys.executable, "-m", "faceocc.cli", *args], cwd=ROOT, check=True, timeout=300,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for name in ("mask_out", "mask"):
        for ext in (".rec", ".idx"):
            assert (data / f"{name}{ext}").read_bytes() == (reference / f"{name}{ext}").read_bytes()


def test_preview_masks_sheet(dataset, tmp_path):
    from PIL import Image

    _render(dataset)
    out = tmp_path / "masks.png"
    assert main(["preview", str(dataset), "--masks", "--out", str(out)]) == 0
    with Image.open(out) as im:
        assert im.size[0] >= 8 * 3 * 112 and im.size[1] >= 4 * 112
