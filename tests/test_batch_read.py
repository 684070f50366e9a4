"""BatchReader: a batch of records at once gives exactly what per-record reads give, errors included."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import jpeg_bytes, random_face

from faceocc.recordio import MAGIC, IRHeader, RecordDataset, RecordIOError, RecordWriter, class_of
from faceocc.recordio.batch import BatchReader

FIXTURES = Path(__file__).parent / "fixtures" / "mxnet"


def _odd_dataset(folder: Path) -> Path:
    """im2rec layout: scalar and vector labels, a payload holding the magic word at an aligned
    position (a multi-part record), an empty payload, a record at the very end of the file."""
    rng = np.random.default_rng(0)
    rec = folder / "train.rec"
    with RecordWriter(rec) as w:
        for key in range(12):
            payload = jpeg_bytes(random_face(rng, 24))
            if key == 3:
                payload = b"abcd" + struct.pack("<I", MAGIC) + payload
            if key == 5:
                payload = b""
            label = np.array([key % 4, 7.5, -1], np.float32) if key % 3 == 0 else float(key % 4)
            w.write(key, IRHeader(0, label, 1000 + key, 0), payload)
    return rec


def _per_record(ds: RecordDataset, keys: np.ndarray) -> list:
    return [ds.read(int(k)) for k in keys]


@pytest.mark.parametrize("source", ["odd", "insightface", "im2rec", "vector"])
def test_batch_equals_per_record_reads(tmp_path, source):
    path = _odd_dataset(tmp_path) if source == "odd" else FIXTURES / source / "train.rec"
    with RecordDataset(path) as ds:
        reader = BatchReader(ds)
        keys = np.random.default_rng(1).permutation(ds.image_keys)
        keys = np.concatenate([keys, keys[:3]])  # repeated keys too
        got = reader.read(keys)
        want = _per_record(ds, keys)
        assert [bytes(p) for p in got.payloads()] == [p for _, p in want]
        assert got.labels.tolist() == [class_of(h) for h, _ in want]
        assert got.ids.tolist() == [h.id for h, _ in want]
        images, lengths = got.dense()
        assert lengths.dtype == np.int32 and lengths.shape == (len(keys), 1)
        assert [bytes(images[i, :n]) for i, n in enumerate(lengths[:, 0])] == [p for _, p in want]
        reader.close()


def test_dense_places_rows_and_leaves_the_others_empty(tmp_path):
    with RecordDataset(_odd_dataset(tmp_path)) as ds:
        got = BatchReader(ds).read(np.array([7, 3, 11]))
        images, lengths = got.dense(6, np.array([4, 0, 2]))
        assert lengths[:, 0].tolist()[1::2] == [0, 0, 0]
        for row, key in zip((4, 0, 2), (7, 3, 11)):
            assert bytes(images[row, :lengths[row, 0]]) == ds.read(key)[1]


def test_bad_record_is_named_like_a_per_record_read(tmp_path):
    rec = _odd_dataset(tmp_path)
    with RecordDataset(rec) as ds:
        offset = ds.offset_of(6)
    data = bytearray(rec.read_bytes())
    data[offset:offset + 4] = b"\0\0\0\0"
    rec.write_bytes(bytes(data))
    with RecordDataset(rec) as ds:
        with pytest.raises(RecordIOError, match="magic") as err:
            BatchReader(ds).read(np.array([1, 2, 6, 8]))
        assert (err.value.key, err.value.offset) == (6, offset)
        assert BatchReader(ds).read(np.array([1, 2, 8])).labels.size == 3
        with pytest.raises(RecordIOError, match="not in index"):
            BatchReader(ds).read(np.array([1, 99]))
