"""The MSML-style baseline and the benchmark harness: what they compute, not how fast."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cuda_host import requires_gxx
from datasets import add_masks, face_dataset, mask_for
from faceocc.ops import KIND_NAMES, load_profile

from benchmarks.chart import bar_chart
from benchmarks.msml_baseline import MsmlStyleDataset, msml_loader

pytest.importorskip("nvidia.dali")


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    folder = face_dataset(tmp_path_factory.mktemp("faces"), identities=4, per_identity=6)
    add_masks(folder)
    return folder


def _only(kind: str, **changes):
    base = load_profile("ms1m")
    return dataclasses.replace(base, kinds={kind: 1.0}, flip_p=0.0,
                               lighting=dataclasses.replace(base.lighting, p=0.0), **changes)


@pytest.mark.parametrize("kind", [k for k in KIND_NAMES if k != "mask3d"])
def test_baseline_changes_only_occluded_pixels(faces, kind):
    ds = MsmlStyleDataset(faces, _only(kind), seed=3)
    occluded = 0
    for i in range(len(ds)):
        img, msk, ori, label = ds[i]
        assert img.shape == ori.shape == (3, 112, 112) and msk.shape == (112, 112)
        assert img.dtype == ori.dtype == torch.float32
        clean = msk.numpy() == 1
        np.testing.assert_array_equal(img.numpy()[:, clean], ori.numpy()[:, clean])
        occluded += int((~clean).any())
    if kind == "none":
        assert occluded == 0
    else:
        assert occluded >= 0.8 * len(ds)


def test_baseline_mask3d_takes_the_rendered_mask(faces):
    ds = MsmlStyleDataset(faces, _only("mask3d"), seed=0)
    for i in range(0, len(ds), 5):
        _, msk, _, _ = ds[i]
        np.testing.assert_array_equal(msk.numpy(), (mask_for(int(ds.keys[i])) > 128).astype(np.int32))


def test_baseline_labels_and_dataloader_batches(faces):
    loader = msml_loader(faces, batch_size=8, workers=0)
    batches = list(loader)
    assert len(batches) == 24 // 8
    labels = sorted(int(v) for b in batches for v in b[3])
    assert labels == sorted([i // 6 for i in range(24)])
    img, ori = batches[0][0], batches[0][2]
    assert img.shape == ori.shape == (8, 3, 112, 112) and float(ori.min()) >= -1 and float(ori.max()) <= 1
    assert torch.isfinite(img).all()      # MSML leaves the mask offsets unclipped (noise: a normal per pixel)


def test_bar_chart_switches_to_log_scale_for_wide_ranges(tmp_path):
    from PIL import Image

    from benchmarks.chart import chart_figure

    linear = chart_figure("t", [("a", 10.0, "10"), ("b", 20.0, "20")]).axes[0]
    wide = chart_figure("t", [("a", 10.0, "10"), ("b", 1e6, "1M"), ("c", 0.0, "n/a")], ["footer"]).axes[0]
    assert linear.get_xscale() == "linear" and wide.get_xscale() == "log"
    a, b = (p.get_width() for p in linear.patches)
    assert b == 2 * a                                   # bar "a" is half of bar "b" on a linear scale
    assert [p.get_width() for p in wide.patches][2] == 0       # no value, no bar
    assert [t.get_text() for t in wide.get_yticklabels()] == ["a", "b", "c"]
    path = bar_chart("t", [("a", 10.0, "10"), ("b", 1e6, "1M")], tmp_path / "b.png", ["footer"])
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 0


def test_harness_writes_json_and_png(tmp_path, capsys):
    from benchmarks.harness import main

    out = tmp_path / "result.json"     # 128 images in batches of 32: 6 batches span two epochs
    assert main(["--device", "cpu", "--images", "128", "--batch-size", "32", "--batches", "4",
                 "--warmup", "2", "--workers", "1", "--twin-batch", "16", "--render-batch", "8",
                 "--work", str(tmp_path / "work"), "--out", str(out), "--quiet"]) == 0
    doc = json.loads(out.read_text())
    figures = doc["figures"]["img_per_s"]
    for name in ("bare_dali", "faceocc_ms1m", "faceocc_casia", "msml_dataloader", "twin_one_core",
                 "render_template_cpu_twin"):
        assert figures[name] > 0
    ratios = doc["figures"]["ratios"]
    assert ratios["loader_vs_msml"] == pytest.approx(figures["faceocc_ms1m"] / figures["msml_dataloader"])
    assert ratios["loader_vs_bare_dali"] == pytest.approx(figures["faceocc_ms1m"] / figures["bare_dali"])
    targets = doc["figures"]["targets"]
    assert targets["kernel_img_per_s"]["met"] is None and "not measured" in targets["kernel_img_per_s"]["note"]
    assert "H100" in targets["loader_vs_msml"]["note"]
    assert doc["settings"]["dataset"]["images"] == 128 and doc["environment"]["cpu_count"] >= 1
    assert out.with_suffix(".png").stat().st_size > 0
    assert "wrote" in capsys.readouterr().out


def test_alternation_times_only_the_turns_own_steps():
    """Each turn runs its settle steps untimed, so a step that is slow only right after another
    contender's turn (the other's background work still running) is not charged for it."""
    import time

    from benchmarks.timing import alternate

    calls = {"a": 0, "b": 0}
    last = [None]

    def step(name: str) -> None:
        calls[name] += 1
        if last[0] != name:                      # the first steps after a switch pay for the other's work
            time.sleep(0.05)
        last[0] = name

    rates = alternate({"a": lambda: step("a"), "b": lambda: step("b")}, batches=5, rounds=3, warmup=1, batch=1,
                      device="cpu", settle=2)
    assert calls == {"a": 1 + 3 * (2 + 5), "b": 1 + 3 * (2 + 5)}
    assert min(rates.values()) > 5 / 0.05                      # no timed step slept


def test_bench_loader_dataset_is_a_folder_the_first_time_and_after(tmp_path):
    """A fresh machine's first run got prepare_embedded's (folder, note) tuple, which RecordDataset refused."""
    from benchmarks.bench_loader import dataset
    from faceocc.recordio import RecordDataset

    first = dataset(tmp_path, "cpu", 64)
    stamp = (first / "train.rec").stat().st_mtime_ns
    again = dataset(tmp_path, "cpu", 64)
    assert isinstance(first, Path) and first == again and (again / "train.rec").stat().st_mtime_ns == stamp
    with RecordDataset(again) as ds:
        assert len(ds.image_keys) == 64 and (again / "mask.rec").is_file()
    with RecordDataset(dataset(tmp_path, "cpu", 96)) as ds:           # another size: built again
        assert len(ds.image_keys) == 96


@pytest.mark.kernels_on_cpu
@requires_gxx
def test_bench_ops_gpu_figures_through_the_fake_cupy(cp, tmp_path, monkeypatch):
    """bench_ops's GPU path (kernels at several batch sizes, both dtypes; the GPU renderer), run by
    tests/cuda_host on the CPU: the figures it writes, and every launch on the GPU."""
    import faceocc.runtime
    from benchmarks.bench_ops import main

    monkeypatch.setattr(faceocc.runtime, "synchronize", lambda device: None)   # torch has no CUDA here
    out = tmp_path / "ops.json"
    assert main(["--twin-batch", "4", "--repeats", "1", "--gpu-batch", "2", "3", "--gpu-repeats", "1",
                 "--render-batch", "2", "--out", str(out)]) == 0
    figures = json.loads(out.read_text())["figures"]
    assert set(figures["kernel_img_per_s_by_batch"]) == {"2", "3"}
    assert all(set(v) == {"float32", "float16"} for v in figures["kernel_img_per_s_by_batch"].values())
    assert figures["gpu_batch"] == 2 and figures["kernel_img_per_s_float32"] > 0
    # the fake's events are 1 ms apart: batch / (1 ms / repeats) is the formula, exactly
    assert figures["kernel_img_per_s_by_batch"]["3"]["float16"] == pytest.approx(3000)
    assert figures["render_template_img_per_s_gpu"] > 0
    assert figures["targets"]["kernel_img_per_s_float32"]["met"] is False      # measured, and judged
    launches = {e.name for e in cp.LOG if e.op == "launch"}
    assert {"occlude_pass1", "occlude_pass2"} <= launches and len(launches) > 2     # and the rasterizer's


def test_bench_occlude_writes_its_rows(tmp_path):
    from benchmarks.bench_occlude import main

    out = tmp_path / "occlude.json"
    assert main(["--device", "cpu", "--calls", "3", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    ms = doc["figures"]["ms_per_call"]
    for name in ("apply_one_face_table_given_cpu", "occlude_one_face_profile_by_name",
                 "occlude_one_face_profile_object", "occlude_batch_256"):
        assert ms[name] > 0
    assert doc["figures"]["img_per_s"]["occlude_batch_256"] == pytest.approx(256e3 / ms["occlude_batch_256"])
