"""MSML's own mask files (``cvt_casia_webface_masked.py``'s layout: image keys only, flag 0, scalar
label, JPEG q95, single-channel mask) are read as they are; the loader, ``info`` and ``verify`` apply
one alignment rule and refuse misaligned files naming file, key and offset."""

from __future__ import annotations

import json
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import mxnet_python
from datasets import add_masks, face_dataset, msml_masks
from faceocc.ops import Kind

from faceocc.cli import main
from faceocc.datasets.mask_alignment import check_alignment
from faceocc.datasets.mask_sets import mask_paths
from faceocc.recordio import IRHeader, RecordDataset, RecordIOError, RecordWriter, class_of
from faceocc.recordio.images import decode_image

PYTHON = mxnet_python()


def _mxnet_msml_masks(folder: Path) -> None:
    script = Path(__file__).with_name("mxnet_msml_masks.py")
    subprocess.run([PYTHON, str(script), str(folder)], check=True, capture_output=True, timeout=300)


@pytest.fixture(params=[pytest.param("mxnet", marks=pytest.mark.mxnet), "native"])
def msml(request, tmp_path) -> Path:
    folder = face_dataset(tmp_path / "d", identities=3, per_identity=6)
    if request.param == "mxnet":
        if PYTHON is None:
            pytest.skip("no MXNet oracle venv (.venv-mxnet)")
        _mxnet_msml_masks(folder)
    else:
        msml_masks(folder)
    return folder


def _loader(folder, **kw):
    pytest.importorskip("nvidia.dali")
    from faceocc import FaceOcclusionLoader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return FaceOcclusionLoader(folder, kw.pop("batch_size", 6), device="cpu", **kw)


def test_msml_files_have_msmls_layout(msml):
    with RecordDataset(msml) as train, RecordDataset(msml / "mask_out.rec") as mo, \
            RecordDataset(msml / "mask.rec") as mk:
        for ds in (mo, mk):
            assert ds.layout == "im2rec" and ds.keys.tolist() == train.image_keys.tolist()
        for key in train.image_keys.tolist():
            h0 = train.read(key)[0]
            (h1, face), (h2, mask) = mo.read(key), mk.read(key)
            for h in (h1, h2):
                assert h.flag == 0 and not isinstance(h.label, np.ndarray) and h.id == h0.id == key
                assert class_of(h) == class_of(h0)
            assert face[:3] == mask[:3] == b"\xff\xd8\xff"
            m = decode_image(mask, gray=None)
            assert m.ndim == 2 and (m <= 128).any() and (m > 128).any()


def test_info_verify_and_loader_accept_msml_files(msml, capsys):
    assert main(["info", str(msml), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["has_masks"] is True
    assert info["masks"]["layout"] == "msml" and info["masks"]["aligned"] and info["masks"]["render"] is None
    assert main(["verify", str(msml)]) == 0
    loader = _loader(msml, seed=3)
    assert loader.occluder is not None
    kinds = []
    with RecordDataset(msml / "mask.rec") as mk:
        for _ in range(3):
            for batch in loader:
                for i in np.flatnonzero(batch["kind"].numpy() == Kind.MASK3D):
                    want = (decode_image(mk.read(int(batch["key"][i]))[1], gray=None) > 128).astype(np.int32)
                    got = batch["msk"][i].numpy()
                    agree = max((got == want).mean(), (got == want[:, ::-1]).mean())
                    assert agree > 0.99
                kinds += batch["kind"].tolist()
    assert Kind.MASK3D in kinds                    # mask3d rows drew MSML's masks


def _rewrite(rec: Path, change) -> None:
    """Rewrite one mask file with ``change(key, header) -> header or None (drop)``."""
    with RecordDataset(rec) as ds:
        records = [(k, *ds.read(k)) for k in ds.keys.tolist()]
    with RecordWriter(rec) as w:
        for key, header, payload in records:
            header = change(key, header)
            if header is not None:
                w.write(key, header, payload)


def _offset(rec: Path, key: int) -> int:
    with RecordDataset(rec) as ds:
        return ds.offset_of(key)


CASES = {
    "missing key": (lambda k, h: None if k == 5 else h, "lacks 1 image key", "idx"),
    "other label": (lambda k, h: h._replace(label=float(class_of(h) + 1)) if k == 5 else h, "differ", "rec"),
    "other id": (lambda k, h: h._replace(id=99) if k == 5 else h, "differ", "rec"),
    "extra key": (lambda k, h: h, "does not have", "idx"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_misaligned_msml_files_are_refused_everywhere(msml, case, capsys):
    change, message, where = CASES[case]
    rec = msml / "mask.rec"
    if case == "extra key":
        with RecordDataset(rec) as ds:
            records = [(k, *ds.read(k)) for k in ds.keys.tolist()]
        with RecordWriter(rec) as w:
            for key, header, payload in records + [(999, IRHeader(0, 0.0, 999, 0), records[0][2])]:
                w.write(key, header, payload)
        key = 999
    else:
        _rewrite(rec, change)
        key = 5
    with pytest.raises(RecordIOError, match=message) as err:
        _loader(msml)
    assert err.value.key == key and err.value.path == str(rec.with_suffix(f".{where}"))
    if case != "missing key":
        assert err.value.offset == _offset(rec, key)
    assert main(["info", str(msml), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["has_masks"] is False and message in info["masks"]["problem"]
    assert main(["verify", str(msml)]) == 1
    out = capsys.readouterr().out
    assert f"mask.{where} key={key}" in out and message in out


def test_faceocc_layout_still_accepted_and_one_rule(tmp_path):
    folder = face_dataset(tmp_path / "d", identities=3, per_identity=4)
    add_masks(folder)
    paths = mask_paths(folder)
    with RecordDataset(folder) as train:
        masks = {name: RecordDataset(p) for name, p in paths.items()}
        assert {ds.layout for ds in masks.values()} == {"insightface"}
        check_alignment(train, masks)
    assert main(["verify", str(folder)]) == 0


def test_incomplete_mask_set_is_refused_not_ignored(tmp_path, capsys):
    folder = face_dataset(tmp_path / "d", identities=3, per_identity=4)
    msml_masks(folder)
    (folder / "mask.idx").unlink()
    with pytest.raises(RecordIOError, match="incomplete mask set") as err:
        _loader(folder)
    assert err.value.path.endswith("mask.idx")
    assert main(["verify", str(folder)]) == 1
    assert "incomplete mask set" in capsys.readouterr().out
