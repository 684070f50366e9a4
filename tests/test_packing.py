"""`pack`: overwriting a dataset never leaves masks of the old one beside it; undecodable files refused."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from conftest import jpeg_bytes, random_face

from faceocc.cli import main
from faceocc.datasets.info import verify
from faceocc.datasets.mask_sets import mask_paths
from faceocc.datasets.pack import write_insightface
from faceocc.recordio import RecordDataset


def _tree(root, seed):
    rng = np.random.default_rng(seed)
    for person in range(2):
        (root / f"p{person}").mkdir(parents=True)
        for i in range(3):
            (root / f"p{person}" / f"{i}.jpg").write_bytes(jpeg_bytes(random_face(rng)))
    return root


def _fake_masks(out):
    for name in ("mask_out", "mask"):                           # same keys: alignment alone cannot tell
        shutil.copy(out / "train.rec", out / f"{name}.rec")
        shutil.copy(out / "train.idx", out / f"{name}.idx")
    (out / ".faceocc-render").mkdir()
    (out / ".faceocc-render" / "manifest.json").write_text("{}")


def test_pack_overwrite_removes_the_old_masks(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["pack", str(_tree(tmp_path / "a", 0)), str(out)]) == 0
    _fake_masks(out)
    assert mask_paths(out) is not None
    assert main(["pack", str(_tree(tmp_path / "b", 1)), str(out)]) == 2      # refused without --overwrite
    assert "mask" in capsys.readouterr().err and mask_paths(out) is not None
    assert main(["pack", str(tmp_path / "b"), str(out), "--overwrite"]) == 0
    assert mask_paths(out) is None and not (out / ".faceocc-render").exists()
    assert sorted(p.name for p in out.iterdir()) == ["property", "train.idx", "train.rec"]
    with RecordDataset(out) as ds:
        assert ds.read(1)[1] == (tmp_path / "b" / "p0" / "0.jpg").read_bytes()
    assert verify(out, progress=False).ok


def test_failed_overwrite_keeps_the_old_dataset_whole(tmp_path):
    out = write_insightface(tmp_path / "ds", [(0, jpeg_bytes(random_face(np.random.default_rng(0))))])
    _fake_masks(out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    def items():
        yield 0, jpeg_bytes(random_face(np.random.default_rng(1)))
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_insightface(out, items(), overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_pack_refuses_an_image_the_loader_cannot_decode(tmp_path, capsys):
    from PIL import Image

    src = _tree(tmp_path / "imgs", 0)
    buf = io.BytesIO()
    Image.fromarray(random_face(np.random.default_rng(2))).save(buf, "GIF")
    (src / "p1" / "9.png").write_bytes(buf.getvalue())          # a GIF under a .png name
    assert main(["pack", str(src), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "9.png" in err and "GIF" in err
    assert not (tmp_path / "out" / "train.rec").exists()


def test_pack_applies_exif_orientation_of_reencoded_files(tmp_path):
    from PIL import Image

    face = random_face(np.random.default_rng(3), size=32)[:, :24].copy()
    exif = Image.Exif()
    exif[0x0112] = 6
    (tmp_path / "imgs" / "p0").mkdir(parents=True)
    Image.fromarray(face).save(tmp_path / "imgs" / "p0" / "a.webp", lossless=True, exif=exif.tobytes())
    out = tmp_path / "out"
    assert main(["pack", str(tmp_path / "imgs"), str(out)]) == 0
    assert (out / "property").read_text().strip() == "1,24,32"             # H, W after the turn
