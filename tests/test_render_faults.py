"""``faceocc render`` under faults: a set is replaced as a whole, a mixed or foreign set is refused,
every interruption resumes to the byte-identical result, and disk full, bad images, read-only folders
and a second render end with a clear message."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import face_dataset, msml_masks

from dali_pipes.mask_records import STORE, check_alignment, current_generation, mask_paths, set_files
from dali_pipes.recordio import RecordDataset
from faceocc.cli import main

ROOT = Path(__file__).resolve().parents[1]
RENDER = ["--chunk-size", "4", "--batch-size", "4", "--workers", "1"]


def _render(folder: Path, *extra: str) -> int:
    return main(["render", str(folder), *RENDER, *extra])


def _state(folder: Path) -> tuple | None:
    """The bytes a reader gets from the four names beside train.rec; None without a set. Asserts the
    set is complete and passes the loader's alignment and identity rule."""
    paths = mask_paths(folder)
    if paths is None:
        return None
    with RecordDataset(folder) as train:
        masks = {name: RecordDataset(p) for name, p in paths.items()}
        try:
            check_alignment(train, masks)
        finally:
            for ds in masks.values():
                ds.close()
    return tuple(p.read_bytes() for p in set_files(folder))


def _leftovers(folder: Path) -> list[str]:
    """Anything a finished render should not leave: partial files, work folders, stale generations."""
    found = [str(p) for p in folder.rglob("*.partial")]
    if (folder / ".faceocc-render").exists():
        found.append(".faceocc-render")
    store, current = folder / STORE, current_generation(folder)
    if store.is_dir():
        found += [e.name for e in store.iterdir()
                  if e.name != "current" and e != current and not e.name.endswith(".lock")]
    return found


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return face_dataset(tmp_path_factory.mktemp("base") / "d", identities=3, per_identity=3)


@pytest.fixture(scope="module")
def rendered(base, tmp_path_factory) -> dict[str, tuple]:
    """Reference sets of uninterrupted renders: seed 0 and seed 1."""
    out = {}
    for seed in (0, 1):
        d = tmp_path_factory.mktemp(f"ref{seed}") / "d"
        shutil.copytree(base, d)
        assert _render(d, "--seed", str(seed)) == 0
        out[seed] = _state(d)
    return out


@pytest.fixture
def data(base, tmp_path) -> Path:
    shutil.copytree(base, tmp_path / "d")
    return tmp_path / "d"


KILL = """
import os, signal, sys
import render.job as job, render.mask_store as store
from dali_pipes.recordio import RecordWriter
from faceocc.cli import main
where, after = os.environ["KILL_AT"], int(os.environ["KILL_AFTER"])
calls = [0]
def dying(original):
    def wrapper(*args, **kw):
        result = original(*args, **kw)
        calls[0] += 1
        if calls[0] == after:
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    return wrapper
if where == "step":
    store._atomic_replace = dying(store._atomic_replace)
elif where == "merge":
    write_set = job.RenderJob._write_set
    def merging(self, *args):
        RecordWriter.write_raw = dying(RecordWriter.write_raw)
        return write_set(self, *args)
    job.RenderJob._write_set = merging
elif where == "installed":
    job.install = dying(job.install)
sys.exit(main(sys.argv[1:]))
"""


def _killed_render(folder: Path, where: str, after: int, *extra: str) -> None:
    """Run a render that SIGKILLs itself right after the ``after``-th call at ``where``."""
    env = {**os.environ, "KILL_AT": where, "KILL_AFTER": str(after), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", KILL, "render", str(folder), *RENDER, *extra], cwd=ROOT,
                          env=env, timeout=300, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]


@pytest.mark.parametrize(("where", "after"), [("merge", 10), ("merge", 15), ("installed", 1)])
def test_first_render_killed_in_merge_or_cleanup_resumes_identically(data, rendered, where, after):
    _killed_render(data, where, after)
    assert _state(data) in (None, rendered[0])          # never a partial or mixed set
    assert _render(data) == 0                           # the same command, no --overwrite
    assert _state(data) == rendered[0]
    assert _leftovers(data) == []


@pytest.fixture(scope="module")
def old_sets(base, tmp_path_factory) -> dict[str, Path]:
    """A folder holding a faceocc-rendered set (seed 0), and one holding MSML-made plain files."""
    out = {}
    for old in ("faceocc", "msml"):
        d = tmp_path_factory.mktemp(old) / "d"
        shutil.copytree(base, d)
        if old == "faceocc":
            assert _render(d, "--seed", "0") == 0
        else:
            msml_masks(d)
        out[old] = d
    return out


@pytest.mark.parametrize("old", ["faceocc", "msml"])
def test_overwrite_replaces_the_whole_set_at_every_instant(old_sets, rendered, tmp_path, old):
    """``render --overwrite`` killed after each atomic step of the installation (and inside the merge)
    leaves the complete old set or the complete new one, never a mix; the same command run again
    finishes the new set, byte-identical to an uninterrupted render."""
    template = old_sets[old]
    before = _state(template)
    steps = 1 if old == "faceocc" else 6        # the switch; or adopting the plain files, 4 links, the switch
    for after in [*range(1, steps + 1), "merge"]:
        d = tmp_path / f"killed-{after}"
        shutil.copytree(template, d, symlinks=True)
        if after == "merge":
            _killed_render(d, "merge", 15, "--overwrite", "--seed", "1")
        else:
            _killed_render(d, "step", after, "--overwrite", "--seed", "1")
        assert _state(d) == (rendered[1] if after == steps else before), f"killed after step {after}"
        assert _render(d, "--overwrite", "--seed", "1") == 0
        assert _state(d) == rendered[1]
        assert _leftovers(d) == []
