"""The loader under faults: a bad image names its record and leaves the position consistent (raise)
or is replaced deterministically (skip); torchrun placement; arguments refused at construction."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import torch
from conftest import jpeg_bytes, random_face
from faceocc.dali_pipes.placement import distributed_placement

from faceocc import FaceOcclusionLoader
from faceocc.datasets.pack import write_insightface
from faceocc.recordio import ImageDecodeError, RecordDataset

pytest.importorskip("nvidia.dali")

BAD = b"GIF89a this is not an image" * 4


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """40 faces; the image at key 13 is not decodable."""
    rng = np.random.default_rng(3)
    items = [(i // 8, BAD if i == 12 else jpeg_bytes(random_face(rng, 112))) for i in range(40)]
    return write_insightface(tmp_path_factory.mktemp("broken"), items)


def _loader(folder, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return FaceOcclusionLoader(folder, kw.pop("batch_size", 8), device="cpu", seed=kw.pop("seed", 5), **kw)


def _bad_batch(loader) -> int:
    epoch0 = loader.order.epoch_keys(0)
    return int(np.flatnonzero(epoch0 == 13)[0]) // loader.batch_size


def test_bad_image_raises_naming_file_key_offset_and_position_stays(broken):
    loader = _loader(broken)
    bad = _bad_batch(loader)
    with RecordDataset(broken) as ds:
        offset = ds.offset_of(13)
    got = 0
    with pytest.raises(ImageDecodeError) as err:
        for _ in loader:
            got += 1
    assert got == bad and loader.state_dict()["next_batch"] == bad
    assert err.value.key == 13 and err.value.offset == offset and err.value.path.endswith("train.rec")
    assert "key 13" in str(err.value) and "cannot be decoded" in str(err.value)
    with pytest.raises(ImageDecodeError):  # again at the same batch, not a shifted one
        next(iter(loader))
    assert loader.state_dict()["next_batch"] == bad


def test_skip_serves_a_deterministic_substitute_and_logs_once(broken, caplog):
    with caplog.at_level(logging.WARNING, logger="faceocc.loader"):
        loaders = [_loader(broken, on_bad_image="skip") for _ in range(2)]
        runs = [[b for _ in range(2) for b in loader] for loader in loaders]
    assert sum("key 13" in r.message for r in caplog.records) == 2  # once per loader
    for a, b in zip(*runs):
        for name in ("img", "msk", "ori", "label", "kind", "key"):
            assert torch.equal(a[name], b[name])
    keys = torch.cat([b["key"] for b in runs[0]]).tolist()
    assert 13 not in keys and len(runs[0]) == 2 * len(_loader(broken))
    reference = runs[0]
    bad = _bad_batch(_loader(broken))
    resumed = _loader(broken, on_bad_image="skip")
    resumed.load_state_dict({**resumed.state_dict(), "next_batch": bad})
    for want, got in zip(reference[bad:], resumed):
        assert torch.equal(want["img"], got["img"]) and torch.equal(want["key"], got["key"])
    with RecordDataset(broken) as ds:
        batch = reference[bad]
        assert batch["label"].tolist() == [ds.label(int(k)) for k in batch["key"]]


def test_num_shards_without_shard_id_takes_the_rank(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed_placement(None, 2) == (1, 2, 1)
    assert distributed_placement(None, None) == (1, 2, 1)
    assert distributed_placement(0, None) == (0, 2, 1)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="num_shards"):
            distributed_placement(None, bad)
    with pytest.raises(ValueError, match="shard_id"):
        distributed_placement(-1, 2)
    with pytest.raises(ValueError, match="out of range"):
        distributed_placement(None, 1)  # rank 1 of a 1-shard split


@pytest.mark.parametrize("kw, name", [
    ({"batch_size": 2.5}, "batch_size"), ({"batch_size": 0}, "batch_size"),
    ({"out_size": 112}, "out_size"), ({"out_size": (112,)}, "out_size"), ({"out_size": (112, 0)}, "out_size"),
    ({"seed": -1}, "seed"), ({"num_threads": 0}, "num_threads"), ({"prefetch": 0}, "prefetch"),
    ({"on_bad_image": "ignore"}, "on_bad_image"), ({"num_shards": 0}, "num_shards"),
])
def test_bad_arguments_fail_at_construction_naming_them(broken, kw, name):
    with pytest.raises(ValueError, match=name):
        _loader(broken, **kw)


def test_bad_mask_record_is_named_and_skipped_only_where_used(tmp_path):
    import dataclasses

    from datasets import add_masks, face_dataset
    from faceocc.ops import load_profile

    from faceocc.recordio import RecordWriter

    folder = face_dataset(tmp_path / "d", identities=4, per_identity=6)
    add_masks(folder)
    with RecordDataset(folder / "mask_out.rec") as mo:
        records = [(k, *mo.read(k)) for k in mo.keys.tolist()]
    with RecordWriter(folder / "mask_out.rec") as w:  # same headers, key 7's masked face broken
        for key, header, payload in records:
            w.write(key, header, BAD if key == 7 else payload)
    only_masks = dataclasses.replace(load_profile("ms1m"), kinds={"mask3d": 1.0})
    with pytest.raises(ImageDecodeError) as err:
        for _ in _loader(folder, profile=only_masks):
            pass
    assert err.value.key == 7 and err.value.path.endswith("mask_out.rec")
    served = torch.cat([b["key"] for b in _loader(folder, profile=only_masks, on_bad_image="skip")])
    assert 7 not in served.tolist() and len(served) == 24
    no_masks = dataclasses.replace(load_profile("ms1m"), kinds={"none": 1.0})
    served = torch.cat([b["key"] for b in _loader(folder, profile=no_masks)])
    assert 7 in served.tolist()  # never decoded where no row uses it
