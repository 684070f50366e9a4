"""FaceOcclusionLoader on CPU DALI: MSML's tensors, sharding, determinism, resume, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from datasets import add_masks, face_dataset, mask_for
from faceocc.ops import Kind

from faceocc import FaceOcclusionLoader
from faceocc.recordio import RecordDataset, RecordIOError

pytest.importorskip("nvidia.dali")


@pytest.fixture(scope="module")
def data(faces_with_masks):
    return faces_with_masks


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return face_dataset(tmp_path_factory.mktemp("plain"), identities=5, per_identity=7)


def _loader(folder, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return FaceOcclusionLoader(folder, kw.pop("batch_size", 8), device="cpu", **kw)


def test_batches_have_msmls_tensors(data):
    loader = _loader(data, batch_size=8)
    assert len(loader) == 48 // 8
    with RecordDataset(data) as ds:
        for batch in loader:
            assert batch["img"].shape == batch["ori"].shape == (8, 3, 112, 112)
            assert batch["img"].dtype == torch.float32 and batch["msk"].dtype == torch.int32
            assert batch["msk"].shape == (8, 112, 112) and batch["label"].dtype == torch.int64
            assert batch["kind"].dtype == torch.int8 and batch["label"].shape == (8,)
            assert batch["label"].tolist() == [ds.label(int(k)) for k in batch["key"]]
            plain = batch["kind"] != Kind.MASK3D         # MSML leaves the mask-pixel offsets unclipped
            assert batch["img"][plain].min() >= -1 and batch["img"][plain].max() <= 1
            assert batch["ori"].min() >= -1 and batch["ori"].max() <= 1


def test_half_precision_output(plain):
    batch = next(iter(_loader(plain, dtype=torch.float16)))
    assert batch["img"].dtype == torch.float16 and batch["ori"].dtype == torch.float16


def test_mask3d_rows_carry_the_mask_from_mask_rec(data):
    seen = 0
    for epoch in range(3):
        for batch in _loader(data, batch_size=16, seed=epoch):
            for i in np.flatnonzero(batch["kind"].numpy() == Kind.MASK3D):
                want = (mask_for(int(batch["key"][i])) > 128).astype(np.int32)      # MSML: <= 128 is mask
                got = batch["msk"][i].numpy()
                assert np.array_equal(got, want) or np.array_equal(got, want[:, ::-1])
                seen += 1
    assert seen >= 5


def test_without_masks_no_mask3d(plain):
    kinds = torch.cat([b["kind"] for b in _loader(plain, batch_size=5)])
    assert (kinds != Kind.MASK3D).all() and len(set(kinds.tolist())) > 3


@pytest.mark.parametrize("last_batch", ["drop", "keep"])
def test_two_shards_cover_every_image_once(plain, last_batch):
    keys = []
    lengths = []
    for shard in range(2):
        loader = _loader(plain, batch_size=4, shard_id=shard, num_shards=2, last_batch=last_batch)
        got = torch.cat([b["key"] for b in loader]).tolist()
        lengths.append(len(loader))
        keys += got
    assert len(keys) == len(set(keys))
    if last_batch == "keep":
        assert sorted(keys) == list(range(1, 36))
    else:
        assert len(keys) == 2 * (35 // 2 // 4 * 4) and lengths[0] == lengths[1]


def test_same_seed_same_batches_other_seed_differs(plain):
    a = [b["img"] for b in _loader(plain, seed=3)]
    b = [b["img"] for b in _loader(plain, seed=3)]
    c = [b["img"] for b in _loader(plain, seed=4)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_epochs_differ_and_resume_matches_uninterrupted_run(data):
    full = _loader(data, batch_size=8, seed=1)
    reference = [b for _ in range(2) for b in full]
    assert not torch.equal(reference[0]["key"], reference[len(full)]["key"])
    first = _loader(data, batch_size=8, seed=1)
    it = iter(first)
    for _ in range(4):
        next(it)
    state = first.state_dict()
    resumed = _loader(data, batch_size=8, seed=1)
    resumed.load_state_dict(state)
    rest = [b for _ in range(2) for b in resumed][: len(reference) - 4]
    for want, got in zip(reference[4:], rest):
        for name in ("img", "msk", "ori", "label", "kind", "key"):
            assert torch.equal(want[name], got[name]), name
    with pytest.raises(ValueError, match="seed"):
        _loader(data, batch_size=8, seed=2).load_state_dict(state)


def test_misaligned_mask_records_are_refused(tmp_path):
    folder = face_dataset(tmp_path / "d", identities=3, per_identity=4)
    add_masks(folder, corrupt_label_of=5)
    with pytest.raises(RecordIOError, match="differ") as err:
        _loader(folder, batch_size=4)
    assert err.value.key == 5


def test_bad_input_fails_at_construction(tmp_path, plain):
    with pytest.raises(RecordIOError):
        _loader(tmp_path / "missing", batch_size=4)
    with pytest.raises(ValueError, match="larger than a shard"):
        _loader(plain, batch_size=100)
    with pytest.raises(ValueError, match="shard_id 2 out of range"):
        _loader(plain, batch_size=4, shard_id=2, num_shards=2)
    with pytest.raises(ValueError, match="device"):
        FaceOcclusionLoader(plain, 4, device="tpu")
    from faceocc.recordio import IRHeader, RecordWriter

    (tmp_path / "empty").mkdir()
    with RecordWriter(tmp_path / "empty" / "train.rec") as w:
        w.write(0, IRHeader(2, np.array([1, 1], np.float32), 0, 0), b"")
    with pytest.raises(ValueError, match="no image records"):
        _loader(tmp_path / "empty", batch_size=4)


def test_placement_follows_torchrun_environment(monkeypatch):
    from faceocc.dali_pipes.loader import distributed_placement

    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed_placement(None, None) == (3, 4, 1)
    assert distributed_placement(0, 2) == (0, 2, 1)


def test_images_of_the_output_size_skip_the_resize_and_others_are_resized(tmp_path):
    """The pipeline resizes only images of another size (DALI's resize copies an image of the output
    size unchanged): a batch mixing sizes equals decode + resize of every image, in order."""
    import dataclasses
    import io

    from conftest import jpeg_bytes, random_face
    from faceocc.ops import load_profile
    from nvidia.dali import fn, pipeline_def, types
    from PIL import Image

    from faceocc.datasets.pack import write_insightface

    rng = np.random.default_rng(2)
    sizes = [(112, 112), (128, 96), (80, 80), (112, 112), (150, 112), (112, 120)]
    items = []
    for label in range(4):
        for h, w in sizes:
            face = random_face(rng, max(h, w))[:h, :w]
            items.append((label, jpeg_bytes(np.ascontiguousarray(face))))
    folder = write_insightface(tmp_path / "mixed", items)
    base = load_profile("ms1m")
    off = dataclasses.replace(base, kinds={"none": 1.0}, lighting=dataclasses.replace(base.lighting, p=0.0),
                              flip_p=0.0, normalize=False)
    loader = _loader(folder, batch_size=8, profile=off, shuffle=True)

    @pipeline_def(batch_size=8, num_threads=1, device_id=None, exec_pipelined=False, exec_async=False)
    def every_image_resized():
        data = fn.external_source(name="data", dtype=types.UINT8)
        image = fn.decoders.image(data, device="cpu", adjust_orientation=True, output_type=types.RGB)
        return fn.resize(image, resize_x=112, resize_y=112, interp_type=types.INTERP_LINEAR, antialias=True)

    reference = every_image_resized()
    reference.build()
    resized = 0
    with RecordDataset(folder) as ds:
        for batch in loader:
            payloads = [np.frombuffer(ds.read(int(k))[1], np.uint8) for k in batch["key"]]
            reference.feed_input("data", payloads)
            want = np.stack([np.asarray(x) for x in reference.run()[0]])
            got = np.rint(batch["ori"].numpy().transpose(0, 2, 3, 1) * 255).astype(np.uint8)
            assert np.array_equal(got, want)
            assert torch.equal(batch["img"], batch["ori"])
            resized += sum(Image.open(io.BytesIO(p.tobytes())).size != (112, 112) for p in payloads)
    assert 0 < resized < len(loader) * 8
