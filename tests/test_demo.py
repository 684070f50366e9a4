"""`faceocc demo`: embedded dataset + masks + loader + preview + summary, and on the user's data."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from faceocc.cli import main
from faceocc.datasets.example import base_face, jittered, make_example_dataset

pytest.importorskip("nvidia.dali")

ROW = 112 + 4


def test_demo_builds_renders_runs_and_previews(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--batches", "12", "--batch-size", "16", "--device", "cpu",
                 "--quiet"]) == 0
    text = capsys.readouterr().out
    line = text.strip().splitlines()[-1]
    assert re.fullmatch(r"faceocc demo: \d+ img/s on cpu \(\d+ CPU cores\), 176 images in 11 timed batches "
                        r"of 16; preview .*preview\.png", line), line
    assert "mask_out.rec + mask.rec present" in text
    summary = json.loads((out / "summary.json").read_text())
    assert sum(summary["kinds"].values()) == 12 * 16
    seen = sum(1 for v in summary["kinds"].values() if v)
    with Image.open(out / "preview.png") as im:
        assert im.size[1] == seen * ROW
    assert summary["kinds"]["mask3d"] > 0      # the rendered masks reached the loader
    # a second run reuses its own folder
    assert main(["demo", "--out", str(out), "--batches", "2", "--batch-size", "8", "--device", "cpu",
                 "--quiet"]) == 0


def test_demo_on_users_data_without_masks(small_dataset, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--data", str(small_dataset), "--out", str(out), "--batches", "3", "--batch-size", "4",
                 "--device", "cpu", "--quiet"]) == 0
    assert "masks       none" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kinds"]["mask3d"] == 0
    assert not (out / "dataset").exists()      # the user's data is used in place


def test_demo_refuses_a_folder_it_did_not_make(tmp_path, capsys):
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "precious.txt").write_text("keep me")
    assert main(["demo", "--out", str(tmp_path), "--batches", "2", "--quiet"]) == 2
    assert "not made by `faceocc demo`" in capsys.readouterr().err
    assert (tmp_path / "dataset" / "precious.txt").exists()


def test_demo_refuses_a_dataset_smaller_than_a_batch(small_dataset, tmp_path, capsys):
    assert main(["demo", "--data", str(small_dataset), "--out", str(tmp_path), "--batch-size", "64",
                 "--device", "cpu", "--quiet"]) == 2
    assert "batch_size 64 is larger than a shard (12 images" in capsys.readouterr().err


def test_jittered_views_differ_but_stay_the_face():
    face = base_face()
    rng = np.random.default_rng(0)
    views = [jittered(face, rng, np.ones(3, np.float32)) for _ in range(4)]
    for v in views:
        assert v.shape == face.shape and v.dtype == np.uint8
        assert np.corrcoef(v[..., 1].ravel().astype(float), face[..., 1].ravel().astype(float))[0, 1] > 0.6
    assert not np.array_equal(views[0], views[1])


def test_example_dataset_is_deterministic(tmp_path):
    a = make_example_dataset(tmp_path / "a", identities=2, per_identity=3)
    b = make_example_dataset(tmp_path / "b", identities=2, per_identity=3)
    assert (a / "train.rec").read_bytes() == (b / "train.rec").read_bytes()
