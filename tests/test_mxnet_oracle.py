"""Real MXNet 1.9.1 (in its own venv, made by .ci/run) reads what faceocc writes, identically."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import jpeg_bytes, mxnet_python, random_face

from faceocc.datasets.pack import write_insightface
from faceocc.recordio import IRHeader, RecordDataset, RecordWriter

PYTHON = mxnet_python()
pytestmark = [pytest.mark.mxnet,
              pytest.mark.skipif(PYTHON is None, reason="no MXNet oracle venv (.venv-mxnet)")]


def _mxnet_reads(*recs: Path) -> dict:
    script = Path(__file__).with_name("mxnet_dump.py")
    done = subprocess.run([PYTHON, str(script), *map(str, recs)], capture_output=True, text=True,
                          check=True, timeout=300)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _ours(rec: Path) -> dict:
    with RecordDataset(rec) as ds:
        rows = {}
        for key in ds.keys.tolist():
            h, data = ds.read(key)
            label = h.label.tolist() if isinstance(h.label, np.ndarray) else h.label
            rows[str(key)] = [h.flag, label, h.id, h.id2, hashlib.sha256(data).hexdigest()]
    return rows


def test_mxnet_reads_what_faceocc_writes(tmp_path):
    rng = np.random.default_rng(5)
    magic = (0xCED7230A).to_bytes(4, "little")
    items = [(label, jpeg_bytes(random_face(rng))) for label in range(3) for _ in range(4)]
    insightface = write_insightface(tmp_path / "if", items) / "train.rec"
    odd = tmp_path / "odd.rec"
    with RecordWriter(odd) as w:
        w.write(0, IRHeader(0, 2.0, 0, 7), magic * 2 + b"ab" + magic)
        w.write(3, IRHeader(0, np.array([4.0, 0.5, -1.0]), 3, 9), jpeg_bytes(random_face(rng)))
        w.write(9, IRHeader(0, 1.0, 9, 0), b"")
        w.write(10, IRHeader(0, 1.0, 10, 0), bytes(range(256)) * 3 + b"x")
    seen = _mxnet_reads(insightface, odd)
    for rec in (insightface, odd):
        got = seen[str(rec)]
        assert got["records"] == _ours(rec)
        with RecordDataset(rec) as ds:
            assert got["sequential_count"] == ds.keys.size


def test_mxnet_reads_rendered_mask_records(tmp_path):
    from datasets import face_dataset

    from faceocc.cli import main
    from faceocc.datasets.mask_alignment import IDENTITY_TAG

    data = face_dataset(tmp_path / "d", identities=3, per_identity=3)
    assert main(["render", str(data), "--chunk-size", "4"]) == 0
    recs = [data / "train.rec", data / "mask_out.rec", data / "mask.rec"]     # fixed links into the set
    seen = _mxnet_reads(*recs)
    train = seen[str(recs[0])]["records"]
    with RecordDataset(data) as ds:
        images = {str(k) for k in ds.image_keys.tolist()}
    identities = set()
    for rec in recs[1:]:
        got = seen[str(rec)]["records"]
        assert got == _ours(rec)
        assert sorted(got) == sorted(train)
        assert all(got[k][:3] == train[k][:3] for k in train)       # same flag, label, id
        # id2: train.rec's for the copied header/identity records, the render's identity on images
        assert all(got[k][3] == train[k][3] for k in train if k not in images)
        identities |= {got[k][3] for k in images}
    assert len(identities) == 1 and identities.pop() >> 48 == IDENTITY_TAG
