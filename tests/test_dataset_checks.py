"""Labels that are not identity classes are refused with their key (info, verify, every read), and
``verify`` cross-checks the structure: header counts against the index, identity ranges, each image's
label against its identity's range, header ids against keys, and an index that lost its ``0`` line."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from faceocc.cli import main
from faceocc.recordio import RecordDataset, RecordIOError, RecordWriter, unpack_header


def _rewrite(folder: Path, change) -> None:
    """Rewrite train.rec/.idx with ``change(key, header) -> header`` applied to every record."""
    with RecordDataset(folder) as ds:
        records = [(k, ds.read_raw(k)) for k in ds.keys.tolist()]
    with RecordWriter(folder / "train.rec", folder / "train.idx") as w:
        for key, raw in records:
            header, payload = unpack_header(raw)
            w.write(key, change(key, header), payload)


BAD_LABELS = {"nan": math.nan, "inf": math.inf, "1e30": 1e30, "fraction": 2.5, "negative": -1.0,
              "out of range": 99.0}


@pytest.mark.parametrize("case", sorted(BAD_LABELS))
def test_bad_labels_are_refused_with_their_key(small_dataset, case, capsys):
    value = BAD_LABELS[case]
    _rewrite(small_dataset, lambda k, h: h._replace(label=value) if k == 5 else h)
    with RecordDataset(small_dataset) as ds:
        with pytest.raises(RecordIOError, match="label") as err:
            ds.read(5)
        assert (err.value.key, err.value.offset) == (5, ds.offset_of(5))
        with pytest.raises(RecordIOError, match="label"):
            ds.label(5)
        ds.read(4)                                        # the others read as before
    assert main(["info", str(small_dataset)]) == 2
    assert "key 5" in capsys.readouterr().err
    assert main(["verify", str(small_dataset)]) == 1
    out = capsys.readouterr().out
    assert "key=5" in out and "label" in out and "FAILED (1 problems)" in out


def test_loader_refuses_a_bad_label_at_read_naming_the_key(small_dataset):
    pytest.importorskip("nvidia.dali")
    from faceocc import FaceOcclusionLoader

    _rewrite(small_dataset, lambda k, h: h._replace(label=math.nan) if k == 5 else h)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        loader = FaceOcclusionLoader(small_dataset, 12, device="cpu", out_size=(32, 32))
    with pytest.raises(Exception, match="key 5") as err:
        next(iter(loader))
    assert not isinstance(err.value, (ValueError, OverflowError))


def _verify_finds(folder: Path, capsys, *needles: str) -> str:
    assert main(["verify", str(folder)]) == 1
    out = capsys.readouterr().out
    for needle in needles:
        assert needle in out, out
    return out


def _offsets(folder: Path) -> dict[int, int]:
    rows = (line.split("\t") for line in (folder / "train.idx").read_text().splitlines())
    return {int(k): int(o) for k, o in rows}


def test_truncated_dataset_with_trimmed_index(small_dataset, capsys):
    offsets = _offsets(small_dataset)
    rec = small_dataset / "train.rec"
    rec.write_bytes(rec.read_bytes()[: offsets[9]])                  # cut at a record boundary
    (small_dataset / "train.idx").write_text("".join(f"{k}\t{o}\n" for k, o in offsets.items() if k < 9))
    _verify_finds(small_dataset, capsys, "header announces 12 images", "lists 8", "key=9",
                  "header announces 4 identities")


def test_header_claiming_more_identities(small_dataset, capsys):
    _rewrite(small_dataset, lambda k, h: h._replace(label=np.array([13, 20], np.float32)) if k == 0 else h)
    _verify_finds(small_dataset, capsys, "header announces 7 identities", "key=17")


def test_reversed_identity_range(small_dataset, capsys):
    _rewrite(small_dataset, lambda k, h: h._replace(label=np.array([30, 3], np.float32)) if k == 14 else h)
    _verify_finds(small_dataset, capsys, "key=14", "empty or reversed range [30, 3)")


def test_label_outside_its_identitys_range(small_dataset, capsys):
    _rewrite(small_dataset, lambda k, h: h._replace(label=1.0) if k == 2 else h)
    out = _verify_finds(small_dataset, capsys, "key=2", "outside its identity's range")
    assert "FAILED (1 problems)" in out


def test_swapped_index_offsets(small_dataset, capsys):
    offsets = _offsets(small_dataset)
    offsets[2], offsets[5] = offsets[5], offsets[2]
    (small_dataset / "train.idx").write_text("".join(f"{k}\t{o}\n" for k, o in sorted(offsets.items())))
    _verify_finds(small_dataset, capsys, "key=2", "header id 5 differs from its index key 2", "key=5")


def test_deleted_header_line_does_not_switch_to_im2rec(small_dataset, capsys):
    idx = small_dataset / "train.idx"
    idx.write_text("".join(line + "\n" for line in idx.read_text().splitlines() if not line.startswith("0\t")))
    with pytest.raises(RecordIOError, match="'0' line") as err:
        RecordDataset(small_dataset)
    assert (err.value.key, err.value.offset) == (0, 0)
    _verify_finds(small_dataset, capsys, "'0' line", "faceocc index")
    assert main(["info", str(small_dataset), "--json"]) == 2
    assert main(["index", str(small_dataset / "train.rec"), "--overwrite"]) == 0
    capsys.readouterr()
    assert main(["info", str(small_dataset), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["layout"] == "insightface"
    assert main(["verify", str(small_dataset)]) == 0


def test_verify_reports_a_truncated_train_rec_beside_mask_records(tmp_path):
    """Found by the long fuzz (case 107): with mask records beside it, a train.rec cut inside its last
    record made verify raise while fingerprinting train.rec for the render identity; it must report."""
    from conftest import jpeg_bytes, random_face
    from datasets import msml_masks

    from faceocc.datasets.info import verify
    from faceocc.recordio import IRHeader

    folder = tmp_path / "d"                 # im2rec layout: the last record is an image
    folder.mkdir()
    rng = np.random.default_rng(0)
    with RecordWriter(folder / "train.rec", folder / "train.idx") as w:
        for key in range(6):
            w.write(key, IRHeader(0, float(key % 2), key, 0), jpeg_bytes(random_face(rng)))
    msml_masks(folder)
    rec = folder / "train.rec"
    rec.write_bytes(rec.read_bytes()[:-40])
    report = verify(folder, progress=False, workers=1)
    assert not report.ok
    assert any("truncated" in str(p) for p in report.problems)
