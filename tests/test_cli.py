"""The dataset tools end to end: info, pack, index, verify, preview."""

from __future__ import annotations

import json
import shutil

import numpy as np
from conftest import MXNET_FIXTURES, jpeg_bytes, random_face, shared_data

from faceocc.cli import main
from faceocc.recordio import RecordDataset, class_of


def test_info_json(small_dataset, capsys):
    assert main(["info", str(small_dataset), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["layout"] == "insightface" and info["images"] == 12 and info["identities"] == 4
    assert info["has_masks"] is False and info["encodings"] == {"jpeg": 12}
    assert info["key_range"] == [1, 12] and info["sizes"] == {"32x32 RGB": 12}


def test_info_sees_mask_records(small_dataset, capsys):
    for name in ("mask_out", "mask"):
        shutil.copy(small_dataset / "train.rec", small_dataset / f"{name}.rec")
        shutil.copy(small_dataset / "train.idx", small_dataset / f"{name}.idx")
    main(["info", str(small_dataset), "--json"])
    assert json.loads(capsys.readouterr().out)["has_masks"] is True
    assert main(["verify", str(small_dataset)]) == 0


def test_info_im2rec(capsys):
    assert main(["info", str(MXNET_FIXTURES / "im2rec" / "train.rec"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["layout"] == "im2rec" and info["images"] == 6 and info["identities"] is None


def _image_tree(root):
    from PIL import Image

    faces = shared_data("faces")
    files = sorted(faces.iterdir()) if faces else []
    rng = np.random.default_rng(3)
    for person in range(3):
        d = root / f"person_{person}"
        d.mkdir(parents=True)
        for i in range(2):
            (d / f"{i}.jpg").write_bytes(jpeg_bytes(random_face(rng)))
        if files:
            shutil.copy(files[person % len(files)], d / f"z{files[person % len(files)].suffix}")
        else:
            Image.fromarray(random_face(rng)[:, :, 0]).save(d / "z.bmp")
    (root / "empty").mkdir()
    return root


def test_pack_folder_keeps_identities_and_bytes(tmp_path, capsys):
    src = _image_tree(tmp_path / "imgs")
    assert main(["pack", str(src), str(tmp_path / "out")]) == 0
    with RecordDataset(tmp_path / "out") as ds:
        assert ds.layout == "insightface" and len(ds) == 9 and ds.num_classes == 3
        assert ds.identity_ranges.tolist() == [[1, 4], [4, 7], [7, 10]]
        assert [ds.label(k) for k in ds.image_keys] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
        assert ds.read(1)[1] == (src / "person_0" / "0.jpg").read_bytes()
        assert ds.read(1)[0].id == 1
    assert main(["pack", str(src), str(tmp_path / "out")]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["verify", str(tmp_path / "out")]) == 0


def test_pack_refuses_empty_folder(tmp_path, capsys):
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    assert main(["pack", str(tmp_path / "imgs"), str(tmp_path / "out")]) == 2
    assert "no identity" in capsys.readouterr().err


def test_index_rebuilds_the_same_index(small_dataset, capsys):
    original = (small_dataset / "train.idx").read_text()
    (small_dataset / "train.idx").unlink()
    assert main(["info", str(small_dataset)]) == 2
    assert "faceocc index" in capsys.readouterr().err
    assert main(["index", str(small_dataset / "train.rec")]) == 0
    assert (small_dataset / "train.idx").read_text() == original
    assert main(["index", str(small_dataset / "train.rec")]) == 2


def _replace_payload(folder, key, payload):
    from faceocc.recordio import RecordWriter

    with RecordDataset(folder) as ds:
        records = [(k, *ds.read(k)) for k in ds.keys.tolist()]
    with RecordWriter(folder / "train.rec", folder / "train.idx") as w:
        for k, header, data in records:
            w.write(k, header, payload if k == key else data)


def test_verify_names_each_bad_key(small_dataset, capsys):
    _replace_payload(small_dataset, 5, b"\xff\xd8\xff not a jpeg")
    assert main(["verify", str(small_dataset)]) == 1
    out = capsys.readouterr().out
    assert "key=5" in out and "does not decode" in out and "FAILED (1 problems)" in out


def test_verify_catches_bad_labels_and_structure(small_dataset, capsys):
    (small_dataset / "property").write_text("4,32,32\n")
    from faceocc.recordio import IRHeader, RecordWriter

    with RecordDataset(small_dataset) as ds:
        records = [(k, *ds.read(k)) for k in ds.keys.tolist()]
    with RecordWriter(small_dataset / "train.rec", small_dataset / "train.idx") as w:
        for k, header, data in records:
            if k == 2:
                header = IRHeader(0, 99.0, header.id, 0)
            w.write(k, header, data)
    assert main(["verify", str(small_dataset)]) == 1
    assert "label 99 outside" in capsys.readouterr().out
    rec = small_dataset / "train.rec"
    rec.write_bytes(rec.read_bytes() + b"\x0a\x23\xd7\xce\x04\x00\x00\x00abcd")
    assert main(["verify", str(small_dataset)]) == 1
    assert "index lists" in capsys.readouterr().out


def test_verify_refuses_misaligned_masks(small_dataset, capsys):
    from faceocc.recordio import IRHeader, RecordWriter

    with RecordDataset(small_dataset) as ds:
        records = [(k, *ds.read(k)) for k in ds.keys.tolist()]
    for name in ("mask_out", "mask"):
        with RecordWriter(small_dataset / f"{name}.rec", small_dataset / f"{name}.idx") as w:
            for k, header, data in records:
                if name == "mask" and k == 4:
                    header = IRHeader(0, float(class_of(header) + 1), header.id, 0)
                w.write(k, header, data)
    assert main(["verify", str(small_dataset)]) == 1
    out = capsys.readouterr().out
    assert "mask.rec key=4" in out and "differ" in out


def test_verify_reports_unreadable_dataset(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "missing.rec")]) == 1
    assert "not found" in capsys.readouterr().out


def test_preview_writes_a_row_per_kind(small_dataset, tmp_path):
    from PIL import Image

    out = tmp_path / "grid.png"
    assert main(["preview", str(small_dataset), "--out", str(out), "--per-kind", "2"]) == 0
    with Image.open(out) as im:
        assert im.size == (64 + 2 * (3 * 112 + 8), 7 * (112 + 4))   # no mask records: 7 kinds
    for name in ("mask_out", "mask"):
        shutil.copy(small_dataset / "train.rec", small_dataset / f"{name}.rec")
        shutil.copy(small_dataset / "train.idx", small_dataset / f"{name}.idx")
    assert main(["preview", str(small_dataset), "--out", str(out), "--per-kind", "1"]) == 0
    with Image.open(out) as im:
        assert im.size[1] == 8 * (112 + 4)


def test_render_and_info_do_not_import_torch(tmp_path):
    """Outside a process group, the dataset commands learn their shard from torchrun's environment
    without importing torch: a CUDA build of torch maps gigabytes of libraries and takes seconds, and a
    render under a memory cap (tests/test_hostile_memory.py) failed on it at random."""
    import subprocess
    import sys

    from datasets import face_dataset

    data = face_dataset(tmp_path / "d", identities=2, per_identity=4)
    code = ("import sys\nfrom faceocc.cli import main\n"
            "assert main(['render', sys.argv[1], '--workers', '1']) == 0\n"
            "assert main(['info', sys.argv[1]]) == 0\n"
            "sys.exit(3 if 'torch' in sys.modules else 0)")
    done = subprocess.run([sys.executable, "-c", code, str(data)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
