"""Issue 23, part 3: clear errors, never a traceback, never a silent wrong answer: index offsets near
2**63, resume states from another run or of garbage, zero and negative sizes, huge integers, looping
profile bases, YAML Python tags, and the same classes found elsewhere (a FIFO or /dev/zero where a
dataset's small files are, integers past int64 in an index)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from datasets import face_dataset

from faceocc.cli import main
from faceocc.recordio import RecordDataset, RecordIOError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return face_dataset(tmp_path_factory.mktemp("base") / "d", identities=4, per_identity=6)


@pytest.fixture
def data(base, tmp_path) -> Path:
    shutil.copytree(base, tmp_path / "d")
    return tmp_path / "d"


# 11. an index offset near 2**63


@pytest.mark.parametrize("offset", [(1 << 63) - 4, (1 << 63) - 8, 99_999_999_999_999_999_999])
def test_an_index_offset_near_2_63_is_a_recordio_error_naming_file_key_offset(data, capsys, offset):
    lines = (data / "train.idx").read_text().splitlines()
    lines[3] = f"3\t{offset}"
    (data / "train.idx").write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordIOError) as err:
        RecordDataset(data)
    assert err.value.path.endswith("train.idx")
    if offset < 1 << 63:
        assert err.value.key == 3 and err.value.offset == offset and "past the end" in str(err.value)
    else:                                         # past int64: the line is refused, never saturated
        assert "index line 4" in str(err.value)
    for command in (["info", str(data)], ["verify", str(data)]):
        assert main(command) in (1, 2)
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err and "train.idx" in captured.out + captured.err


# 12. load_state_dict refuses any state that would give other batches


def _loader(folder, **kw):
    pytest.importorskip("nvidia.dali")
    from faceocc import FaceOcclusionLoader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return FaceOcclusionLoader(folder, kw.pop("batch_size", 4), device="cpu", **kw)


@pytest.fixture(scope="module")
def saved(base) -> dict:
    loader = _loader(base, seed=3)
    it = iter(loader)
    next(it)
    next(it)
    return loader.state_dict()


def test_a_state_resumes_only_the_loader_that_saved_it(base, saved, tmp_path):
    resumed = _loader(base, seed=3)
    resumed.load_state_dict(dict(saved))
    assert resumed.state_dict() == saved
    other = face_dataset(tmp_path / "other", identities=4, per_identity=6, size=96)   # same keys, other images
    profile = tmp_path / "p.yaml"
    profile.write_text("flip_p: 0.25\n")
    import numpy as np
    from PIL import Image

    occluders = tmp_path / "occ"
    rgba = np.zeros((40, 80, 4), np.uint8)
    rgba[8:32, 8:72] = (90, 40, 20, 255)
    for group in ("glasses_crop", "scarf_crop", "object_train"):
        (occluders / group).mkdir(parents=True)
        Image.fromarray(rgba).save(occluders / group / "g.png")
    cases = {"dataset": (other, {}), "profile": (base, {"profile": profile}),
             "out_size": (base, {"out_size": (96, 96)}), "shuffle": (base, {"shuffle": False}),
             "seed": (base, {"seed": 4}), "batch_size": (base, {"batch_size": 3}),
             "last_batch": (base, {"last_batch": "keep"}), "max_pixels": (base, {"max_pixels": 1 << 20}),
             "occluders": (base, {"occluders": occluders})}
    import torch

    cases["dtype"] = (base, {"dtype": torch.float16})
    for field, (folder, kw) in cases.items():
        loader = _loader(folder, **{"seed": 3, **kw})
        with pytest.raises(ValueError, match=f"saved with {field}=") as err:
            loader.load_state_dict(dict(saved))
        assert repr(saved[field])[:20] in str(err.value) and "this loader has" in str(err.value), field
        assert loader.state_dict()["next_batch"] == 0


@pytest.mark.parametrize("value", ["abc", None, [2], -5, 2.9, True])
def test_a_garbage_next_batch_is_refused_by_name(base, saved, value):
    loader = _loader(base, seed=3)
    with pytest.raises(ValueError, match="next_batch must be an integer >= 0"):
        loader.load_state_dict({**saved, "next_batch": value})


@pytest.mark.parametrize("field", ["dataset", "profile", "shuffle"])
def test_a_state_missing_a_field_or_holding_garbage_there_is_refused(base, saved, field):
    loader = _loader(base, seed=3)
    with pytest.raises(ValueError, match=f"no '{field}'"):
        loader.load_state_dict({k: v for k, v in saved.items() if k != field})
    with pytest.raises(ValueError, match=f"saved with {field}="):
        loader.load_state_dict({**saved, field: "x" * 10_000})
    assert len(str(pytest.raises(ValueError, loader.load_state_dict, {**saved, field: "x" * 10_000}).value)) < 400
    with pytest.raises(ValueError, match="must be the dict"):
        loader.load_state_dict(["not", "a", "state"])


# 14. sizes of zero, below zero or past float; looping bases; YAML tags: one line each, no traceback


@pytest.mark.parametrize(("args", "says"), [
    (["--chunk-size", "0"], "argument --chunk-size: must be an integer >= 1, not 0"),
    (["--chunk-size", "-3"], "argument --chunk-size: must be an integer >= 1, not -3"),
    (["--batch-size", "abc"], "argument --batch-size: must be an integer >= 1, not 'abc'"),
    (["--workers", "0"], "argument --workers: must be an integer >= 1"),
    (["--seed", "-1"], "argument --seed: must be an integer >= 0"),
    (["--max-pixels", "0"], "argument --max-pixels: must be an integer >= 1"),
])
def test_render_size_arguments_are_refused_in_one_line(data, args, says):
    proc = subprocess.run([sys.executable, "-m", "faceocc.cli", "render", str(data), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and says in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(("kw", "says"), [({"chunk_size": 0}, "chunk_size must be an integer >= 1, not 0"),
                                          ({"chunk_size": -1}, "chunk_size must be"),
                                          ({"batch_size": 2.5}, "batch_size must be"),
                                          ({"seed": -2}, "seed must be an integer >= 0")])
def test_render_job_refuses_bad_sizes_by_name(data, kw, says):
    from faceocc.render.job import RenderJob

    with pytest.raises(ValueError, match=says):
        RenderJob(data, **kw)


def _profile_error(tmp_path: Path, text: str, name: str = "p.yaml") -> str:
    from faceocc.ops.profiles import load_profile

    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        load_profile(path).validate()
    message = str(err.value)
    assert "\n" not in message and len(message) < 400
    return message


def test_profile_integers_past_float_loops_and_tags_are_refused_in_one_line(tmp_path):
    big = "1" + "0" * 400
    pair = _profile_error(tmp_path, f"rectangle:\n  area_percent: [{big}, 2]\n")
    assert "profile field rectangle.area_percent" in pair
    assert "profile field flip_p" in _profile_error(tmp_path, f"flip_p: {big}\n")
    assert "chain comes back to itself" in _profile_error(tmp_path, "base: self.yaml\nflip_p: 0.3\n", "self.yaml")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    assert "chain comes back" in _profile_error(tmp_path, "base: b.yaml\n", "a.yaml")
    tag = _profile_error(tmp_path, 'flip_p: !!python/object/apply:os.system ["echo pwned"]\n')
    assert "could not determine a constructor" in tag and "line 1" in tag
    assert "contains itself" in _profile_error(tmp_path, "kinds: &k {rectangle: [*k]}\n")
    assert "nests too deeply" in _profile_error(tmp_path, "flip_p: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "base must be a profile name" in _profile_error(tmp_path, "base: [1, 2]\n")


def test_the_cli_reports_a_bad_profile_in_one_line(base, tmp_path, capsys):
    (tmp_path / "p.yaml").write_text('flip_p: !!python/object/apply:os.system ["echo pwned"]\n')
    assert main(["preview", str(base), "--profile", str(tmp_path / "p.yaml"), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: profile") and err.count("\n") == 1 and not (tmp_path / "x.png").exists()


# the same classes elsewhere: a FIFO or /dev/zero where a dataset keeps small files


def _run(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("name", ["train.idx", "property"])
@pytest.mark.parametrize("plant", ["fifo", "dev-zero"])
def test_a_fifo_or_dev_zero_among_a_datasets_files_neither_hangs_nor_grows(data, name, plant):
    target = data / name
    target.unlink()
    if plant == "fifo":
        os.mkfifo(target)
    else:
        target.symlink_to("/dev/zero")
    proc = _run(f"""
from faceocc.recordio import RecordDataset, RecordIOError
try:
    with RecordDataset({str(data)!r}) as ds:
        print("opened", len(ds), ds.num_classes)
except RecordIOError as exc:
    print("refused", exc)
""")
    assert proc.returncode == 0, proc.stderr[-2000:]
    if name == "train.idx":
        assert "refused" in proc.stdout and ("a FIFO" in proc.stdout or "character device" in proc.stdout)
    else:                                             # property is optional: treated as absent
        assert "opened 24" in proc.stdout


def test_render_manifests_that_are_fifos_are_treated_as_foreign(data, capsys):
    assert main(["render", str(data), "--workers", "1"]) == 0
    from faceocc.datasets.mask_sets import RENDER_MANIFEST, current_generation, render_manifest

    manifest = current_generation(data) / RENDER_MANIFEST
    manifest.unlink()
    os.mkfifo(manifest)
    assert render_manifest(data) is None
    assert main(["info", str(data)]) == 0 and "no render identity" in capsys.readouterr().out


def test_pack_align_reads_a_fifo_photo_without_waiting(tmp_path):
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)
    proc = _run(f"""
from faceocc.align import read_rgb
try:
    read_rgb({str(fifo)!r})
except ValueError as exc:
    print("refused", exc)
""", timeout=60)
    assert proc.returncode == 0 and "refused" in proc.stdout and "a FIFO" in proc.stdout, proc.stderr[-2000:]
