"""The record format against real MXNet's files: exact headers, payloads and bytes."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
from conftest import MXNET_FIXTURES

from faceocc.recordio import (
    IRHeader,
    RecordDataset,
    RecordIOError,
    RecordWriter,
    class_of,
    encode_record,
    pack_header,
    pack_image,
    read_record_at,
    unpack_header,
    unpack_image,
)

EXPECTED = json.loads((MXNET_FIXTURES / "expected.json").read_text())
LAYOUTS = ["insightface", "im2rec", "vector"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_reader_returns_mxnets_headers_and_payloads(layout):
    expected = EXPECTED[layout]
    with RecordDataset(MXNET_FIXTURES / layout) as ds:
        assert sorted(ds.keys.tolist()) == sorted(int(k) for k in expected)
        for key, want in expected.items():
            header, payload = ds.read(int(key))
            label = header.label.tolist() if isinstance(header.label, np.ndarray) else header.label
            assert (header.flag, label, header.id, header.id2) == (
                want["flag"], want["label"], want["id"], want["id2"])
            assert hashlib.sha256(payload).hexdigest() == want["sha256"]


def test_layouts_are_detected():
    with RecordDataset(MXNET_FIXTURES / "insightface") as ds:
        assert ds.layout == "insightface"
        assert ds.image_keys.tolist() == [1, 2, 3, 4, 5, 6]
        assert ds.num_classes == 3
        assert ds.identity_ranges.tolist() == [[1, 4], [4, 6], [6, 7]]
        assert [ds.label(k) for k in ds.image_keys] == [0, 0, 0, 1, 1, 2]
        assert len(ds) == 6 and [k for k, _, _ in ds] == [1, 2, 3, 4, 5, 6]
    with RecordDataset(MXNET_FIXTURES / "im2rec" / "train.rec") as ds:
        assert ds.layout == "im2rec" and ds.image_keys.tolist() == list(range(6))
        assert ds.num_classes is None and ds.identity_ranges is None
    with RecordDataset(MXNET_FIXTURES / "vector") as ds:
        assert ds.layout == "im2rec"
        assert [ds.label(k) for k in ds.image_keys] == [0, 0, 1, 1]
        assert ds.read(3)[0].label.tolist() == [1.0, 0.75, 7.0]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_writer_reproduces_mxnets_files_byte_for_byte(layout, tmp_path):
    src = MXNET_FIXTURES / layout
    with RecordDataset(src) as ds, RecordWriter(tmp_path / "out.rec", tmp_path / "out.idx") as w:
        for key in ds.keys.tolist():
            header, payload = ds.read(key)
            w.write(key, header, payload)
    assert (tmp_path / "out.rec").read_bytes() == (src / "train.rec").read_bytes()
    assert (tmp_path / "out.idx").read_text() == (src / "train.idx").read_text()


def test_magic_words_inside_a_payload_survive_the_round_trip(tmp_path):
    magic = (0xCED7230A).to_bytes(4, "little")
    for data in [magic, magic * 3, b"ab" + magic + b"cd", b"abcd" + magic, b"x" * 8 + magic + b"y"]:
        framed = encode_record(data)
        path = tmp_path / "one.rec"
        path.write_bytes(framed)
        import os
        fd = os.open(path, os.O_RDONLY)
        try:
            record, end = read_record_at(fd, 0, len(framed))
        finally:
            os.close(fd)
        assert record == data and end == len(framed) and len(framed) % 4 == 0


def test_header_packing_matches_mxnet_conventions():
    scalar = pack_header(IRHeader(7, 3.0, 11, 12), b"img")
    assert len(scalar) == 24 + 3
    header, rest = unpack_header(scalar)
    assert header == IRHeader(0, 3.0, 11, 12) and rest == b"img"  # flag forced to 0 as MXNet does
    vec = pack_header(IRHeader(0, np.array([2.0, 5.0]), 1, 0), b"")
    header, rest = unpack_header(vec)
    assert header.flag == 2 and header.label.tolist() == [2.0, 5.0] and rest == b""
    assert class_of(header) == 2


def test_oversized_record_is_refused():
    with pytest.raises(RecordIOError, match="2\\*\\*29"):
        encode_record(np.zeros(1 << 29, np.uint8))


def test_pack_image_round_trips():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    header, out = unpack_image(pack_image(IRHeader(0, 4.0, 9, 0), rgb, fmt=".png"))
    assert header.label == 4.0 and header.id == 9 and np.array_equal(out, rgb)
    gray = rng.integers(0, 256, (20, 24), dtype=np.uint8)
    assert np.array_equal(unpack_image(pack_image(IRHeader(0, 0.0, 0, 0), gray, ".png"))[1], gray)
    smooth = np.full((16, 16, 3), 120, np.uint8)
    _, dec = unpack_image(pack_image(IRHeader(0, 0.0, 0, 0), smooth, ".jpg", quality=95))
    assert dec.shape == (16, 16, 3) and np.abs(dec.astype(int) - 120).max() <= 2
    with pytest.raises(ValueError):
        pack_image(IRHeader(0, 0.0, 0, 0), smooth, ".gif")


def test_mxnet_png_and_gray_records_decode():
    with RecordDataset(MXNET_FIXTURES / "insightface") as ds:
        _, png = unpack_image(ds.read_raw(5))
        _, gray = unpack_image(ds.read_raw(6))
    assert png.shape == (16, 16, 3) and gray.shape == (16, 16)


def test_writer_is_atomic(tmp_path):
    rec = tmp_path / "a.rec"
    with pytest.raises(RuntimeError), RecordWriter(rec) as w:
        w.write(0, IRHeader(0, 1.0, 0, 0), b"x" * 10)
        raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []
    with RecordWriter(rec) as w:
        w.write(0, IRHeader(0, 1.0, 0, 0), b"x" * 10)
        with pytest.raises(RecordIOError, match="increasing"):
            w.write(0, IRHeader(0, 1.0, 0, 0), b"y")
        assert not rec.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.idx", "a.rec"]


def test_writer_killed_mid_file_leaves_no_final_name(tmp_path):
    import subprocess
    import sys

    code = (
        "import os, sys\n"
        "from dali_pipes.recordio import RecordWriter, IRHeader\n"
        "w = RecordWriter(sys.argv[1])\n"
        "for k in range(100):\n"
        "    w.write(k, IRHeader(0, 1.0, k, 0), b'z' * 1000)\n"
        "os.kill(os.getpid(), 9)\n")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "k.rec")], check=False)
    assert not (tmp_path / "k.rec").exists() and not (tmp_path / "k.idx").exists()


def test_patch_keeps_framed_size(tmp_path):
    with RecordWriter(tmp_path / "p.rec") as w:
        w.write(0, IRHeader(2, np.array([0, 0], np.float32), 0, 0), b"")
        w.write(1, IRHeader(0, 0.0, 1, 0), b"abc")
        w.patch(0, IRHeader(2, np.array([2, 3], np.float32), 0, 0), b"")
        with pytest.raises(RecordIOError):
            w.patch(1, IRHeader(0, 0.0, 1, 0), b"abcdefgh")
        with pytest.raises(RecordIOError):
            w.patch(5, IRHeader(0, 0.0, 1, 0), b"")
    with RecordDataset(tmp_path / "p.rec") as ds:
        assert ds.read(0)[0].label.tolist() == [2.0, 3.0]
        assert ds.read(1)[1] == b"abc"


def test_copy_of_dataset_is_readable_after_pickling(tmp_path):
    import pickle

    shutil.copytree(MXNET_FIXTURES / "insightface", tmp_path / "d")
    with RecordDataset(tmp_path / "d") as ds:
        clone = pickle.loads(pickle.dumps(ds))
        assert clone.read(2)[1] == ds.read(2)[1] and clone.layout == "insightface"
        clone.close()
