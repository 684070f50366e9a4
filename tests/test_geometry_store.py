"""The geometry set of online 3D masks (``faceocc render DIR --geometry-only``): key-aligned records with
a render identity, at most 512 bytes a face, resumable, sharded and merged like the mask set, checked by
info and verify, refused when misaligned or damaged; ``faceocc render`` reusing it."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from datasets import face_dataset
from faceocc.render.face_geometry import template_landmarks

from faceocc.cli import main
from faceocc.datasets.geometry import GEOMETRY_BYTES, GeometryReader, check_geometry, geometry_status
from faceocc.datasets.mask_alignment import render_identity
from faceocc.recordio import RecordDataset, RecordIOError, RecordWriter

MS1M_FACES = 5_822_653           # MS1M-RetinaFace (ms1m-retinaface-t1): images in train.rec


def _geometry(folder: Path, *extra: str) -> int:
    return main(["render", str(folder), "--geometry-only", "--chunk-size", "8", "--batch-size", "4", *extra])


def _files(folder: Path) -> dict[str, bytes]:
    return {ext: (folder / f"mask_geometry{ext}").read_bytes() for ext in (".rec", ".idx")}


@pytest.fixture
def dataset(tmp_path):
    return face_dataset(tmp_path / "d", identities=4, per_identity=7)


def test_geometry_set_is_aligned_identified_and_verifies(dataset, capsys):
    assert _geometry(dataset) == 0
    assert main(["verify", str(dataset)]) == 0
    assert main(["info", str(dataset)]) == 0
    assert "mask_geometry.rec present, aligned with train.rec; landmarks template" in capsys.readouterr().out
    with RecordDataset(dataset) as train, RecordDataset(dataset / "mask_geometry.rec") as geo:
        assert np.array_equal(train.keys, geo.keys) and geo.layout == "insightface"
        ids = set()
        for key in train.image_keys.tolist():
            h0, _ = train.read(key)
            h1, payload = geo.read(key)
            assert (h1.id, h1.label) == (h0.id, h0.label) and len(payload) == GEOMETRY_BYTES
            ids.add(render_identity(h1))
        assert len(ids) == 1 and None not in ids
        lm = GeometryReader(dataset).read(train.image_keys)
    assert np.abs(lm - template_landmarks()).max() < 0.04          # float16 of the template, every face
    assert _geometry(dataset) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_a_face_takes_at_most_512_bytes_and_ms1m_fits_in_3_gb(dataset):
    """The bytes a face costs, measured on a written set: its image record, and its index line at MS1M's
    largest key and offset."""
    assert _geometry(dataset) == 0
    with RecordDataset(dataset / "mask_geometry.rec") as geo:
        starts = geo.offsets_of(geo.image_keys)
        record = int(np.diff(starts).max())                 # consecutive image records
        assert record == 8 + 24 + GEOMETRY_BYTES == 440
    index_line = len(f"{MS1M_FACES}\t{MS1M_FACES * record}\n")
    per_face = record + index_line
    assert per_face <= 512
    assert MS1M_FACES * per_face <= 3e9                     # 5.82M x 460 bytes = 2.68 GB


def test_shards_merge_and_resume_equal_a_single_run(dataset, tmp_path, monkeypatch):
    from faceocc.render.geometry_job import GeometryJob

    single = tmp_path / "single"
    shutil.copytree(dataset, single)
    assert _geometry(single) == 0
    sharded = tmp_path / "sharded"
    shutil.copytree(dataset, sharded)
    assert _geometry(sharded, "--shard-id", "0", "--num-shards", "2") == 0
    assert main(["render", "merge", str(sharded), "--geometry-only"]) == 2           # shard 1 missing
    assert _geometry(sharded, "--shard-id", "1", "--num-shards", "2") == 0
    assert main(["render", "merge", str(sharded), "--geometry-only"]) == 0
    assert _files(sharded) == _files(single)
    assert not (sharded / ".faceocc-geometry-render").exists()

    finish, count = GeometryJob._render_chunk, []

    def crash_after_two(self, *args):
        finish(self, *args)
        count.append(1)
        if len(count) == 2:
            raise KeyboardInterrupt
    monkeypatch.setattr(GeometryJob, "_render_chunk", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        _geometry(dataset)
    assert not (dataset / "mask_geometry.rec").exists()
    assert len(list((dataset / ".faceocc-geometry-render").glob("*.done"))) == 2
    monkeypatch.setattr(GeometryJob, "_render_chunk", finish)
    assert _geometry(dataset) == 0
    assert _files(dataset) == _files(single)


def test_masks_and_geometry_are_separate_sets(dataset):
    assert main(["render", str(dataset), "--chunk-size", "8"]) == 0
    masks = {n: (dataset / n).read_bytes() for n in ("mask_out.rec", "mask.rec")}
    assert _geometry(dataset) == 0
    assert {n: (dataset / n).read_bytes() for n in masks} == masks
    geometry = _files(dataset)
    assert main(["render", str(dataset), "--chunk-size", "8", "--overwrite", "--seed", "3"]) == 0
    assert _files(dataset) == geometry
    assert main(["verify", str(dataset)]) == 0


def test_render_reuses_stored_geometry_and_says_so(dataset, monkeypatch):
    """With a geometry set of the same landmark source, ``faceocc render`` reads the landmarks instead of
    finding them, and its masks are those of the stored geometry."""
    from faceocc.render import landmarks as sources
    from faceocc.render.job import RenderJob

    assert _geometry(dataset) == 0
    calls = []
    monkeypatch.setattr(sources.TemplateLandmarks, "__call__", lambda self, faces: calls.append(1) or 1 / 0)
    with RenderJob(dataset, chunk_size=8) as job:
        assert job.stored is not None and "geometry" in job.manifest
        job.run(progress=False)
        job.merge(progress=False)
    assert not calls
    assert main(["verify", str(dataset)]) == 0


def _plant(folder: Path, key: int, payload: bytes) -> None:
    """Rewrite mask_geometry.rec (plain files) with ``payload`` for ``key``."""
    src = {ext: (folder / f"mask_geometry{ext}").read_bytes() for ext in (".rec", ".idx")}
    tmp = Path(tempfile.mkdtemp())
    for ext, data in src.items():
        (tmp / f"g{ext}").write_bytes(data)
    with RecordDataset(tmp / "g.rec") as old, RecordWriter(tmp / "new.rec") as new:
        for k in old.keys.tolist():
            header, data = old.read(k)
            new.write(k, header, payload if k == key else data)
    for ext in (".rec", ".idx"):
        (folder / f"mask_geometry{ext}").unlink()
        shutil.copy(tmp / f"new{ext}", folder / f"mask_geometry{ext}")


def test_damaged_or_foreign_geometry_is_refused(dataset, tmp_path, capsys):
    other = face_dataset(tmp_path / "other", identities=5, per_identity=7)
    assert _geometry(other) == 0
    for ext in (".rec", ".idx"):
        shutil.copy(other / f"mask_geometry{ext}", dataset / f"mask_geometry{ext}")
    assert "holds 8 key(s) that train.rec does not have" in geometry_status(dataset)["problem"]
    assert main(["verify", str(dataset)]) == 1
    with RecordDataset(dataset) as train, pytest.raises(RecordIOError, match="train.rec does not have"):
        check_geometry(train, dataset)

    assert _geometry(dataset, "--overwrite") == 0
    assert main(["verify", str(dataset)]) == 0
    _plant(dataset, 5, b"\0" * 400)
    capsys.readouterr()
    assert main(["verify", str(dataset)]) == 1
    assert "key=5: geometry payload of 400 bytes, not 408" in capsys.readouterr().out
    with pytest.raises(RecordIOError, match="geometry record of 400 bytes") as err:
        GeometryReader(dataset).read(np.array([3, 5]))
    with RecordDataset(dataset / "mask_geometry.rec") as geo:
        assert err.value.key == 5 and err.value.offset == geo.offset_of(5)
    assert _geometry(dataset, "--overwrite") == 0
    _plant(dataset, 6, np.full(204, np.inf, "<f2").tobytes())
    assert main(["verify", str(dataset)]) == 1
    with pytest.raises(RecordIOError, match="not finite") as err:
        GeometryReader(dataset).read(np.array([6]))
    with RecordDataset(dataset / "mask_geometry.rec") as geo:
        assert err.value.key == 6 and err.value.offset == geo.offset_of(6)


@pytest.mark.parametrize("size", [[0, 112], "ab", [1e-40, 112], [112], [True, 112], [70000, 112]])
def test_a_geometry_set_made_at_an_impossible_size_is_refused(tmp_path, size):
    """render.json's size scales every landmark: zero, text, a tiny float (inf landmarks) or a huge side is
    one line naming the file, not a ZeroDivisionError or infinities in the rasterizer."""
    import json

    from faceocc.datasets.geometry import geometry_path

    data = face_dataset(tmp_path / "d", identities=2, per_identity=4)
    assert _geometry(data) == 0
    manifest = geometry_path(data).parent / "render.json"
    doc = json.loads(manifest.read_text())
    doc["size"] = size
    manifest.chmod(0o644)
    manifest.write_text(json.dumps(doc))
    with pytest.raises(RecordIOError, match="render.json's size must be") as err:
        GeometryReader(data)
    assert err.value.path == str(manifest)


def test_dlib_geometry_is_each_faces_own(tmp_path):
    from faceocc.render.dlib_landmarks import DlibLandmarks
    from real_faces import real_crops, require_landmarks_extra

    from faceocc.datasets.pack import write_insightface

    require_landmarks_extra()
    from conftest import jpeg_bytes

    crops = real_crops()
    folder = write_insightface(tmp_path / "real", [(i, jpeg_bytes(c, 98)) for i, c in enumerate(crops)],
                               image_size=(112, 112))
    assert _geometry(folder, "--landmarks", "dlib") == 0
    with RecordDataset(folder) as train:
        from faceocc.recordio.images import decode_image

        faces = np.stack([decode_image(train.read(k)[1]) for k in train.image_keys.tolist()])
        stored = GeometryReader(folder).read(train.image_keys)
    want = DlibLandmarks()(faces)
    assert np.abs(stored - want).max() < 0.07                     # float16 of each face's own landmarks
    assert np.abs(stored - stored[:1]).max() > 5                   # not one geometry for all


def test_reader_scales_to_the_loaders_size(dataset):
    assert _geometry(dataset) == 0
    keys = np.array([1, 2, 9])
    full = GeometryReader(dataset).read(keys)
    half = GeometryReader(dataset, (56, 84)).read(keys)          # (H, W): x and z by 84/112, y by 56/112
    np.testing.assert_allclose(half[..., 0], full[..., 0] * 0.75, rtol=1e-6)
    np.testing.assert_allclose(half[..., 1], full[..., 1] * 0.5, rtol=1e-6)
    np.testing.assert_allclose(half[..., 2], full[..., 2] * 0.75, rtol=1e-6)


def test_pack_overwrite_removes_the_geometry_of_the_old_train_rec(dataset):
    from conftest import jpeg_bytes, random_face

    from faceocc.datasets.pack import write_insightface

    assert _geometry(dataset) == 0
    rng = np.random.default_rng(9)
    items = [(label, jpeg_bytes(random_face(rng, 112))) for label in range(4) for _ in range(7)]
    with pytest.raises(FileExistsError, match="mask_geometry"):
        write_insightface(dataset, items)
    write_insightface(dataset, items, overwrite=True)
    assert not any((dataset / n).exists() or (dataset / n).is_symlink()
                   for n in ("mask_geometry.rec", "mask_geometry.idx", ".faceocc-geometry"))
