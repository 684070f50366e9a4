"""DALI's readers.mxnet (CPU) reads InsightFace-layout data through faceocc's image-only index."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import MXNET_FIXTURES
from faceocc.dali_pipes.image_index import cache_dir, image_index_path

from faceocc.recordio import RecordDataset, class_of
from faceocc.recordio.images import decode_image

dali = pytest.importorskip("nvidia.dali")


def _read_all_with_dali(rec, idx, n):
    from nvidia.dali import fn, pipeline_def, types

    @pipeline_def(batch_size=n, num_threads=1, device_id=None)
    def pipe():
        jpegs, labels = fn.readers.mxnet(path=[str(rec)], index_path=[str(idx)], random_shuffle=False,
                                         name="r")
        return fn.decoders.image(jpegs, device="cpu", output_type=types.RGB), labels

    p = pipe()
    p.build()
    images, labels = p.run()
    return [np.array(images[i]) for i in range(n)], [np.array(labels[i]) for i in range(n)]


def test_dali_reads_insightface_layout_through_image_index():
    with RecordDataset(MXNET_FIXTURES / "insightface") as ds:
        idx = image_index_path(ds)
        assert idx.parent.parent == cache_dir() and ds.rec_path.parent != idx.parent
        images, labels = _read_all_with_dali(ds.rec_path, idx, len(ds))
        for key, img, label in zip(ds.image_keys.tolist(), images, labels, strict=False):
            header, payload = ds.read(key)
            assert float(label.ravel()[0]) == class_of(header)
            ref = decode_image(payload, gray=None)
            if ref.ndim == 2:
                ref = np.repeat(ref[:, :, None], 3, axis=2)
            assert img.shape == ref.shape
            assert np.abs(img.astype(int) - ref.astype(int)).mean() < 3


def test_image_index_lists_only_images_and_follows_changes(small_dataset):
    with RecordDataset(small_dataset) as ds:
        first = image_index_path(ds)
        rows = [line.split("\t") for line in first.read_text().splitlines()]
        assert [int(k) for k, _ in rows] == ds.image_keys.tolist()
        assert [int(o) for _, o in rows] == ds.offsets_of(ds.image_keys).tolist()
        assert image_index_path(ds) == first
    idx = small_dataset / "train.idx"
    idx.write_text(idx.read_text())
    import os
    os.utime(idx, ns=(1, 1))
    with RecordDataset(small_dataset) as ds:
        assert image_index_path(ds) != first
    assert sorted(p.name for p in small_dataset.iterdir()) == ["property", "train.idx", "train.rec"]
