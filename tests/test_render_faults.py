"""``faceocc render`` under faults: a set is replaced as a whole, a mixed or foreign set is refused,
every interruption resumes to the byte-identical result, and disk full, bad images, read-only folders
and a second render end with a clear message."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from datasets import face_dataset, msml_masks

from faceocc.cli import main
from faceocc.datasets.mask_alignment import check_set
from faceocc.datasets.mask_sets import STORE, current_generation, mask_paths, set_files
from faceocc.recordio import RecordDataset, RecordIOError, RecordWriter

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
        check_set(train, paths)
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
import faceocc.render.job as job, faceocc.datasets.mask_sets as store
from faceocc.recordio import RecordWriter
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


def _no_space_after(monkeypatch, calls: int) -> None:
    """Every RecordWriter write from the ``calls``-th on fails as a full disk does."""
    original, seen = RecordWriter.write_raw, [0]

    def write_raw(self, key, record):
        seen[0] += 1
        if seen[0] >= calls:
            raise OSError(errno.ENOSPC, "No space left on device", str(self._tmp_rec))
        return original(self, key, record)

    monkeypatch.setattr(RecordWriter, "write_raw", write_raw)


@pytest.mark.parametrize(("calls", "overwrite"), [(5, False), (22, True)])   # in a chunk; in the merge
def test_disk_full_ends_clearly_removes_partials_and_resumes_identically(
        data, rendered, monkeypatch, capsys, calls, overwrite):
    extra = ["--overwrite", "--seed", "1"] if overwrite else ["--seed", "1"]
    if overwrite:
        assert _render(data, "--seed", "0") == 0
    before = _state(data)
    capsys.readouterr()
    with monkeypatch.context() as m:
        _no_space_after(m, calls)
        assert _render(data, *extra) == 2
    err = capsys.readouterr().err
    assert "no space left" in err and "run the same command again" in err and "Traceback" not in err
    assert list(data.rglob("*.partial")) == []
    assert _state(data) == before                      # the old set (or none) untouched
    gens = [e.name for e in (data / STORE).iterdir() if e.name.startswith("g-")]
    assert gens == ([current_generation(data).name] if overwrite else [])
    assert _render(data, *extra) == 0                   # space freed: the same command finishes
    assert _state(data) == rendered[1]
    assert _leftovers(data) == []


def test_bad_image_in_render_names_its_key(data, capsys):
    with RecordDataset(data) as ds:
        records = [(k, *ds.read(k)) for k in ds.keys.tolist()]
        offset = ds.offset_of(5)
    with RecordWriter(data / "train.rec", data / "train.idx") as w:
        for key, header, payload in records:
            w.write(key, header, b"\xff\xd8\xff not a jpeg" if key == 5 else payload)
    assert _render(data) == 2
    err = capsys.readouterr().err
    assert "does not decode" in err and "key 5" in err and f"byte offset {offset}" in err
    assert "Traceback" not in err


def test_read_only_dataset_gives_a_clear_message(data, monkeypatch, capsys):
    real_mkdir, real_open = os.mkdir, os.open

    def inside(path) -> bool:
        return str(path).startswith(str(data))

    def mkdir(path, *args, **kw):
        if inside(path):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_mkdir(path, *args, **kw)

    def open_(path, flags, *args, **kw):
        if inside(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "open", open_)
    assert _render(data) == 2
    err = capsys.readouterr().err
    assert "cannot write in" in err and "Read-only file system" in err and "writable copy" in err
    monkeypatch.undo()
    assert sorted(p.name for p in data.iterdir()) == ["property", "train.idx", "train.rec"]


HOLD = """
import sys, time
from pathlib import Path
from faceocc.datasets.mask_sets import hold_folder
held = hold_folder(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
print("held", flush=True)
time.sleep(120)
"""


def _hold(folder: Path, shard_id: int = 0, num_shards: int = 1) -> subprocess.Popen:
    """Another process holding the folder as a render does (alone, or as one shard of a sharded render)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), str(shard_id), str(num_shards)], cwd=ROOT,
                            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == b"held"
    return proc


def test_a_second_render_on_the_folder_refuses_at_start(data, capsys):
    other = _hold(data)                                 # a render in another process
    try:
        assert _render(data) == 2
        assert "another faceocc render is working on" in capsys.readouterr().err
        assert not (data / ".faceocc-render").exists()
    finally:
        other.kill()
        other.wait()
    shard0 = _hold(data, 0, 2)                          # shard 0 of a sharded render running
    try:
        assert _render(data, "--shard-id", "0", "--num-shards", "2") == 2      # the same shard: refused
        assert _render(data, "--shard-id", "1", "--num-shards", "2") == 0      # another shard: works
        assert main(["render", "merge", str(data)]) == 2                        # merge waits for all
    finally:
        shard0.kill()
        shard0.wait()
    assert _render(data) == 0


def _loader(folder):
    pytest.importorskip("nvidia.dali")
    from faceocc import FaceOcclusionLoader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return FaceOcclusionLoader(folder, 3, device="cpu")


def _plain_copy(src: Path, dst: Path, names: tuple[str, ...]) -> None:
    """Copy mask files (through the links) as plain files, as a user moving files around would."""
    for name in names:
        for ext in (".rec", ".idx"):
            target = dst / f"{name}{ext}"
            target.unlink(missing_ok=True)
            shutil.copyfile(src / f"{name}{ext}", target)


def test_a_pair_from_two_renders_is_refused(data, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(data, other)
    assert _render(data, "--seed", "0") == 0
    assert _render(other, "--seed", "1") == 0
    _plain_copy(other, data, ("mask",))                 # mask_out of seed 0, mask of seed 1
    with pytest.raises(RecordIOError, match="two different renders") as err:
        _loader(data)
    assert err.value.key is not None and err.value.offset is not None
    assert main(["verify", str(data)]) == 1
    assert "two different renders" in capsys.readouterr().out
    assert main(["info", str(data), "--json"]) == 0
    assert "two different renders" in capsys.readouterr().out
    msml_masks(other)                                   # a faceocc file beside an MSML one: mixed too
    _plain_copy(other, data, ("mask",))
    with pytest.raises(RecordIOError, match="two different renders"):
        _loader(data)


def test_masks_rendered_for_another_train_rec_are_refused(data, tmp_path, capsys):
    twin = tmp_path / "twin"                            # same keys, ids and labels; other images
    shutil.copytree(data, twin)
    with RecordDataset(twin) as ds:
        records = [(k, *ds.read(k)) for k in ds.keys.tolist()]
    with RecordWriter(twin / "train.rec", twin / "train.idx") as w:
        for key, header, payload in records:
            w.write(key, header, payload + b"\0" * 4 if payload else payload)
    assert _render(data) == 0
    _plain_copy(data, twin, ("mask_out", "mask"))
    with pytest.raises(RecordIOError, match="rendered for another train.rec"):
        _loader(twin)
    assert main(["verify", str(twin)]) == 1
    assert "rendered for another train.rec" in capsys.readouterr().out


def test_overwrite_over_links_of_your_own_leaves_their_targets_alone(data, rendered, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(data, elsewhere)
    msml_masks(elsewhere)
    for f in set_files(elsewhere):
        (data / f.name).symlink_to(f)
    kept = {f.name: f.read_bytes() for f in set_files(elsewhere)}
    assert _render(data, "--overwrite", "--seed", "1") == 0
    assert _state(data) == rendered[1]
    assert {f.name: f.read_bytes() for f in set_files(elsewhere)} == kept
    assert _leftovers(data) == []
