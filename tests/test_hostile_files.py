"""Issue 23, part 2: nothing outside the dataset folder is written or deleted, however the folder was
made or copied, and readers never fail while a render swaps the mask set. Each test plants the link,
copy or race and checks the files outside (a "victim") are untouched."""

from __future__ import annotations

import os
import shutil
import threading
import warnings
from pathlib import Path

import pytest
from datasets import face_dataset

from faceocc.cli import main
from faceocc.datasets import mask_sets
from faceocc.datasets.mask_sets import STORE, current_generation, install, open_set, set_files
from faceocc.datasets.pack import write_insightface
from faceocc.recordio import RecordDataset
from faceocc.recordio.batch import BatchReader

RENDER = ["--chunk-size", "4", "--batch-size", "4", "--workers", "1"]
PRECIOUS = b"precious: not faceocc's to write\n"


def _render(folder: Path, *extra: str) -> int:
    return main(["render", str(folder), *RENDER, *extra])


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return face_dataset(tmp_path_factory.mktemp("base") / "d", identities=3, per_identity=3)


@pytest.fixture(scope="module")
def rendered(base, tmp_path_factory) -> Path:
    """A dataset with a rendered mask set (seed 0)."""
    d = tmp_path_factory.mktemp("rendered") / "d"
    shutil.copytree(base, d)
    assert _render(d) == 0
    return d


@pytest.fixture
def data(base, tmp_path) -> Path:
    shutil.copytree(base, tmp_path / "d")
    return tmp_path / "d"


@pytest.fixture
def victim(tmp_path) -> Path:
    path = tmp_path / "outside" / "victim.txt"
    path.parent.mkdir()
    path.write_bytes(PRECIOUS)
    return path


def _set_bytes(folder: Path) -> tuple:
    return tuple(f.read_bytes() for f in set_files(folder))


def _images(folder: Path) -> list[bytes]:
    with RecordDataset(folder) as ds:
        return [ds.read(k)[1] for k in ds.image_keys.tolist()]


# 7. planted links: the lock, a render's partial chunk, pack's partial files and property


def test_a_link_planted_at_the_render_lock_is_refused_not_followed(data, victim, capsys):
    (data / STORE).mkdir()
    (data / STORE / "render.lock").symlink_to(victim)
    assert _render(data) == 2
    err = capsys.readouterr().err
    assert "render.lock" in err and "never follows a link" in err and "Traceback" not in err
    assert victim.read_bytes() == PRECIOUS
    (data / STORE / "render.lock").unlink()
    assert _render(data) == 0


def test_the_lock_link_is_not_followed_even_when_the_render_is_refused(rendered, tmp_path, victim, capsys):
    d = tmp_path / "d"
    shutil.copytree(rendered, d, symlinks=True)
    (d / STORE / "render.lock").unlink(missing_ok=True)
    (d / STORE / "render.lock").symlink_to(victim)
    assert _render(d, "--seed", "1") == 2                  # refused: a set exists, no --overwrite
    assert victim.read_bytes() == PRECIOUS


def test_a_link_planted_at_a_partial_chunk_is_replaced_not_followed(data, victim):
    work = data / ".faceocc-render"
    work.mkdir()
    for name in ("mask_out-000000.rec.partial", "mask-000000.idx.partial"):
        (work / name).symlink_to(victim)
    assert _render(data) == 0
    assert victim.read_bytes() == PRECIOUS
    assert not work.exists() and mask_sets.mask_paths(data) is not None
    work.mkdir()
    (work / "manifest.json").symlink_to(victim)             # read, found foreign, never written
    (work / "chunk-000000.done").symlink_to(victim)
    assert _render(data, "--overwrite", "--seed", "1") == 0
    assert victim.read_bytes() == PRECIOUS
    assert not work.exists() and mask_sets.mask_paths(data) is not None


def test_pack_overwrite_replaces_planted_links_without_following_them(data, tmp_path, victim):
    other = tmp_path / "victim-property"
    other.write_bytes(PRECIOUS)
    for name in ("train.rec.partial", "train.idx.partial"):
        (data / name).symlink_to(victim)
    (data / "property").unlink()
    (data / "property").symlink_to(other)
    write_insightface(data, [(0, p) for p in _images(data)[:4]], overwrite=True)
    assert victim.read_bytes() == PRECIOUS and other.read_bytes() == PRECIOUS
    for name in ("train.rec", "train.idx", "property"):
        assert (data / name).is_file() and not (data / name).is_symlink(), name
    assert not list(data.glob("*.partial"))
    with RecordDataset(data) as ds:
        assert len(ds) == 4


def test_index_rebuild_replaces_a_planted_partial_link(data, victim):
    (data / "train.idx.partial").symlink_to(victim)
    assert main(["index", str(data / "train.rec"), "--overwrite"]) == 0
    assert victim.read_bytes() == PRECIOUS and not (data / "train.idx").is_symlink()


def test_a_linked_work_folder_is_refused(data, tmp_path, capsys):
    outside = tmp_path / "outside-work"
    outside.mkdir()
    (data / ".faceocc-render").symlink_to(outside)
    assert _render(data) == 2
    assert "is a symbolic link" in capsys.readouterr().err
    assert list(outside.iterdir()) == []


# 8. a store linked to another dataset's: nothing of the other dataset is deleted


def test_a_store_linked_to_another_datasets_is_never_written_or_cleaned(rendered, data, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(rendered, other, symlinks=True)
    before = {p.relative_to(other): p.read_bytes() for p in (other / STORE).rglob("*") if p.is_file()}
    (data / STORE).symlink_to(other / STORE)
    assert _render(data, "--overwrite", "--seed", "1") == 2
    err = capsys.readouterr().err
    assert "is a symbolic link" in err and "never through a link" in err
    write_insightface(data, [(0, p) for p in _images(data)], overwrite=True)   # pack --overwrite: unlinks only
    assert not (data / STORE).exists()
    after = {p.relative_to(other): p.read_bytes() for p in (other / STORE).rglob("*") if p.is_file()}
    assert after == before and mask_sets.mask_paths(other) is not None
    assert _render(other, "--overwrite", "--seed", "1") == 0        # the other dataset still renders


# 9. copies made any way stay readable and re-renderable; a copy without the store is called broken


def test_a_copy_that_followed_links_reads_and_renders_again(rendered, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(rendered, copy, symlinks=False)                 # cp -rL: current becomes a folder
    assert (copy / STORE / "current").is_dir() and not (copy / STORE / "current").is_symlink()
    assert _set_bytes(copy) == _set_bytes(rendered)
    assert main(["verify", str(copy)]) == 0
    fresh = tmp_path / "fresh"
    shutil.copytree(rendered, fresh, symlinks=True)
    assert _render(fresh, "--overwrite", "--seed", "1") == 0
    assert _render(copy, "--overwrite", "--seed", "1") == 0         # no IsADirectoryError
    assert _set_bytes(copy) == _set_bytes(fresh)
    store = sorted(e.name for e in (copy / STORE).iterdir() if not e.name.endswith(".lock"))
    assert store == sorted(["current", current_generation(copy).name])


def test_a_copy_without_the_store_is_a_broken_set_and_says_how_to_mend_it(rendered, tmp_path, capsys):
    copy = tmp_path / "copy"
    copy.mkdir()
    for entry in rendered.iterdir():                                # cp -r ds/* new/: dot folders left out
        if not entry.name.startswith("."):
            shutil.copy(entry, copy, follow_symlinks=False)
    assert all(f.is_symlink() and not f.exists() for f in set_files(copy))
    assert main(["info", str(copy)]) == 0
    out = capsys.readouterr().out
    assert "masks       REFUSED" in out and "broken mask set" in out and "cp -a" in out
    assert main(["verify", str(copy)]) == 1
    assert "broken mask set" in capsys.readouterr().out
    pytest.importorskip("nvidia.dali")
    from faceocc import FaceOcclusionLoader

    with pytest.raises(Exception, match="broken mask set"):
        FaceOcclusionLoader(copy, 3, device="cpu")
    assert _render(copy, "--overwrite") == 0 and main(["verify", str(copy)]) == 0


# 10. pack --overwrite removes the old generation


def test_pack_overwrite_over_a_rendered_dataset_removes_its_masks(rendered, tmp_path):
    d = tmp_path / "d"
    shutil.copytree(rendered, d, symlinks=True)
    write_insightface(d, [(0, p) for p in _images(d)], overwrite=True)
    assert not (d / STORE).exists() and not any(f.exists() or f.is_symlink() for f in set_files(d))


# 13. readers while render --overwrite swaps the set


def _generation_like(rendered: Path, d: Path) -> Path:
    """A copy of ``rendered``'s current generation inside ``d``'s store, ready to install."""
    gen = mask_sets.new_generation(d)
    for f in current_generation(rendered).iterdir():
        shutil.copy(f, gen / f.name)
    return gen


def test_a_reader_opening_during_the_swap_gets_the_new_set_and_an_open_one_keeps_the_old(
        rendered, tmp_path, monkeypatch):
    d = tmp_path / "d"
    shutil.copytree(rendered, d, symlinks=True)
    old = _set_bytes(d)
    other = tmp_path / "other"
    shutil.copytree(rendered, other, symlinks=True)
    assert _render(other, "--overwrite", "--seed", "1") == 0
    held = open_set(d)                                      # opened before the swap
    real = mask_sets._paths_once
    swapped = []

    def racing(folder, target):
        paths = real(folder, target)                        # resolved to the old generation...
        if not swapped:
            swapped.append(install(d, _generation_like(other, d)))   # ...which the swap then deletes
        return paths

    monkeypatch.setattr(mask_sets, "_paths_once", racing)
    fresh = open_set(d)
    assert swapped and fresh["mask"].rec_path.parent == current_generation(d)
    assert _set_bytes(d) == _set_bytes(other) != old
    for ds in held.values():                                # the old generation is gone, its files still read
        assert not ds.rec_path.exists()
        reader = BatchReader(ds)
        assert [bytes(p) for p in reader.read(ds.image_keys).payloads()] == [ds.read(k)[1] for k in
                                                                              ds.image_keys.tolist()]
    for ds in [*held.values(), *fresh.values()]:
        ds.close()


def test_readers_never_fail_while_sets_are_swapped(rendered, tmp_path):
    d = tmp_path / "d"
    shutil.copytree(rendered, d, symlinks=True)
    done, errors = threading.Event(), []

    def swapping():
        try:
            for _ in range(40):
                install(d, _generation_like(rendered, d))
        except BaseException as exc:                         # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=swapping)
    thread.start()
    opened = 0
    while not done.is_set():
        try:
            for ds in (open_set(d) or {}).values():
                ds.read(int(ds.image_keys[0]))
                ds.close()
            opened += 1
        except Exception as exc:                             # noqa: BLE001 - the failure this test is about
            errors.append(exc)
            break
    thread.join()
    assert errors == [] and opened > 0


def test_a_loader_keeps_the_set_it_opened(rendered, tmp_path):
    pytest.importorskip("nvidia.dali")
    from faceocc import FaceOcclusionLoader

    d = tmp_path / "d"
    shutil.copytree(rendered, d, symlinks=True)
    other = tmp_path / "other"
    shutil.copytree(rendered, other, symlinks=True)
    assert _render(other, "--overwrite", "--seed", "1") == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        loader = FaceOcclusionLoader(d, 3, device="cpu", profile="casia", seed=1)
        reference = [b["msk"] for b in FaceOcclusionLoader(d, 3, device="cpu", profile="casia", seed=1)]
    install(d, _generation_like(other, d))                  # the old generation is deleted now
    state = loader.state_dict()
    loader.load_state_dict(state)                            # a rebuild of the pipeline
    got = [b["msk"] for b in loader]
    assert all((a == b).all() for a, b in zip(reference, got, strict=True))
    assert os.path.exists(d / "mask.rec")
