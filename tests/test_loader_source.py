"""The loader's record source and pipeline: dense outputs, meta rows, mask records only where used,
nothing decoded for rows that do not use it, the GPU step's launch, the ``faceocc`` front door."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from faceocc.dali_pipes.order import ShardOrder
from faceocc.dali_pipes.source import META_BYTES, RecordBatchSource, pack_meta, unpack_meta
from faceocc.ops import FaceOccluder, Kind
from faceocc.ops.params import PARAM_DTYPE

from faceocc.recordio import RecordDataset

pytest.importorskip("nvidia.dali")


@pytest.fixture(scope="module")
def data(faces_with_masks):
    return faces_with_masks


def _source(folder, batch=8, seed=0, start=0, profile="ms1m"):
    with RecordDataset(folder) as ds:
        order = ShardOrder(ds.image_keys.copy(), batch, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        occ = FaceOccluder(profile, None, (112, 112), "cpu", seed)
    return RecordBatchSource(folder, order, occ.sampler, seed, start)


def test_meta_rows_round_trip():
    table = np.zeros(5, PARAM_DTYPE)
    table["kind"] = [0, 7, 3, 1, 5]
    table["noise_seed"] = [1, 2**32 - 1, 5, 6, 7]
    labels, keys = np.array([3, 0, 2**40, 5, 1]), np.array([1, 2, 3, 2**33, 9])
    meta = pack_meta(table, labels, keys)
    assert meta.shape == (5, META_BYTES) and meta.dtype == np.uint8
    t2, l2, k2 = unpack_meta(meta)
    assert t2.tobytes() == table.tobytes() and l2.tolist() == labels.tolist() and k2.tolist() == keys.tolist()


def test_batch_carries_records_and_mask_records_of_3d_rows_only(data):
    src = _source(data)
    seen = 0
    with RecordDataset(data) as ds, RecordDataset(data / "mask.rec") as mk:
        for batch in range(len(src.order)):
            images, lengths, meta, use_m3d, mo, mo_len, mask, mask_len = src.batch(0, batch)
            table, labels, keys = unpack_meta(meta)
            assert keys.tolist() == src.order.batch_keys(0, batch).tolist()
            assert labels.tolist() == [ds.label(int(k)) for k in keys]
            for i, k in enumerate(keys.tolist()):
                assert bytes(images[i, :lengths[i, 0]]) == ds.read(k)[1]
            assert use_m3d.tolist() == (table["kind"] == Kind.MASK3D).tolist()
            assert (table["m3d_slot"][use_m3d] == np.flatnonzero(use_m3d)).all()
            assert (mo_len[~use_m3d] == 0).all() and (mask_len[~use_m3d] == 0).all()
            for i in np.flatnonzero(use_m3d).tolist():
                assert bytes(mask[i, :mask_len[i, 0]]) == mk.read(int(keys[i]))[1]
                seen += 1
    assert seen > 0


def test_batches_are_a_pure_function_of_their_position(data):
    a, b = _source(data), _source(data, start=5)
    for g in (0, 5, 7, 13):
        epoch, batch = divmod(g, len(a.order))
        for x, y in zip(a.batch(epoch, batch), b.batch(epoch, batch)):
            assert np.array_equal(x, y)
    other = _source(data, seed=1)
    assert not np.array_equal(a.batch(0, 0)[2], other.batch(0, 0)[2])
    tables = [unpack_meta(a.batch(0, i)[2])[0] for i in range(2)]
    assert tables[0].tobytes() != tables[1].tobytes()


class _Garbage(RecordBatchSource):
    """Puts undecodable bytes, with a length, into the mask payloads of every row; ``rows`` says
    which rows say they use a 3D mask."""

    def __init__(self, *args, used: bool, **kw) -> None:
        super().__init__(*args, **kw)
        self.used = used

    def batch(self, epoch, batch):
        out = list(super().batch(epoch, batch))
        n = len(out[0])
        junk, lengths = np.full((n, 64), 7, np.uint8), np.full((n, 1), 64, np.int32)
        table, labels, keys = unpack_meta(out[2])
        table["kind"] = Kind.MASK3D if self.used else Kind.NONE
        table["m3d_slot"] = np.arange(n) if self.used else -1
        out[2] = pack_meta(table, labels, keys)
        out[3] = np.full(n, self.used)
        out[4:8] = [junk, lengths, junk, lengths]
        return tuple(out)


@pytest.mark.parametrize("used", [False, True])
def test_rows_without_a_3d_mask_decode_nothing_of_the_mask_records(data, used):
    from faceocc.dali_pipes.pipeline import HandOff, build_pipeline

    base = _source(data)
    src = _Garbage(data, base.order, base.sampler, 0, used=used)
    occ = FaceOccluder("ms1m", None, (112, 112), "cpu", 0)
    handoff = HandOff(occ, 1)
    if used:  # the control: the same bytes in rows that use them fail to decode
        with pytest.raises(RuntimeError):
            build_pipeline(src, 8, None, (112, 112), 2, 1, handoff).run()
        return
    pipe = build_pipeline(src, 8, None, (112, 112), 2, 1, handoff)
    for _ in range(3):
        kind, meta = pipe.run()
        keys, arrays = handoff.take()
        assert arrays["img"].shape == (8, 3, 112, 112) and (arrays["msk"] == 1).all()


def test_occlude_device_takes_parameter_rows_out_of_meta_rows_on_the_given_stream():
    from faceocc.dali_pipes.pipeline import occlude_device
    from faceocc.dali_pipes.source import ROW

    calls = []

    class Occluder:
        def apply_device(self, *args):
            calls.append(args)
            return {"img": 1}

    class Stream:
        entered = 0

        def __enter__(self):
            Stream.entered += 1

        def __exit__(self, *exc):
            return False

    meta = np.zeros((4, META_BYTES), np.uint8)
    faces = np.zeros((4, 8, 8, 3), np.uint8)
    masks = np.zeros((4, 8, 8, 1), np.uint8)
    occlude_device(Occluder(), faces, meta, faces, masks, Stream())
    faces_, params, masked, masks_, *_ = calls[0]
    assert params.shape == (4, ROW) and masks_.shape == (4, 8, 8) and Stream.entered == 1
    occlude_device(Occluder(), faces, meta[:, :ROW], None, None)
    assert calls[1][1].shape == (4, ROW) and calls[1][2] is None


def test_front_door_names_the_public_classes():
    import faceocc.ops as ops

    import faceocc
    from faceocc import FaceOcclusionLoader
    from faceocc.recordio import RecordDataset as RD

    assert faceocc.FaceOcclusionLoader is FaceOcclusionLoader
    assert faceocc.RecordDataset is RD and faceocc.FaceOccluder is ops.FaceOccluder
    assert faceocc.Kind is ops.Kind and callable(faceocc.load_profile)
    assert {"FaceOcclusionLoader", "FaceOccluder", "RecordDataset", "ImageDecodeError"} <= set(dir(faceocc))
    with pytest.raises(AttributeError):
        faceocc.NoSuchThing  # noqa: B018


def test_gpu_path_outputs_on_the_cpu_give_the_loaders_batches(data):
    """The GPU path's pipeline (dense faces, meta, padded masked/mask) through DALI's iterator, run
    on the CPU, then the twin on the dense batch: the same tensors as the CPU loader serves."""
    from faceocc.dali_pipes.pipeline import GPU_OUTPUTS, build_pipeline
    from nvidia.dali.plugin.pytorch import DALIGenericIterator

    from faceocc import FaceOcclusionLoader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        loader = FaceOcclusionLoader(data, 8, device="cpu", seed=2)
    src = RecordBatchSource(data, loader.order, loader.occluder.sampler, 2)
    pipe = build_pipeline(src, 8, None, (112, 112), 2, 1, uniform=True)
    it = DALIGenericIterator(pipe, list(GPU_OUTPUTS), size=-1)
    used = 0
    for want in loader:
        out = next(it)[0]
        assert out["masked"].shape == (8, 112, 112, 3) and out["mask"].shape == (8, 112, 112, 1)
        table, labels, keys = unpack_meta(out["meta"].numpy())
        got = loader.occluder.apply(out["face"].numpy(), table, out["masked"].numpy(), out["mask"].numpy()[..., 0])
        for name in ("img", "msk", "ori"):
            assert np.array_equal(got[name], want[name].numpy()), name
        assert keys.tolist() == want["key"].tolist() and labels.tolist() == want["label"].tolist()
        assert got["kind"].tolist() == want["kind"].tolist()
        used += int((table["m3d_slot"] >= 0).sum())
    assert used > 0


def test_occlusion_op_in_a_users_pipeline_equals_the_twin():
    from faceocc.dali_pipes.pipeline import occlusion_op
    from faceocc.ops.params import PARAM_DTYPE
    from nvidia.dali import fn, pipeline_def, types

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        occ = FaceOccluder("ms1m", None, (112, 112), "cpu", 4, has_masks=False)
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (32, 112, 112, 3), dtype=np.uint8)
    table = occ.sample(32, batch=3)
    rows = np.ascontiguousarray(table).view(np.uint8).reshape(32, PARAM_DTYPE.itemsize)

    @pipeline_def(batch_size=32, num_threads=2, device_id=None)
    def pipe():
        f, p = fn.external_source(source=lambda: (faces, rows), num_outputs=2, batch=True,
                                  dtype=[types.UINT8, types.UINT8])
        return tuple(occlusion_op(occ, f, p, threads=2))

    p = pipe()
    p.build()
    img, msk, ori, kind = (np.array(t.as_tensor()) for t in p.run())
    want = occ.apply(faces, table)
    assert np.array_equal(img, want["img"]) and np.array_equal(msk, want["msk"])
    assert np.array_equal(ori, want["ori"]) and kind.ravel().tolist() == want["kind"].tolist()


@pytest.mark.parametrize("shuffle", [True, False])
def test_the_loaders_tables_are_face_occluder_sample(data, shuffle):
    """One seeding rule: for every (shard, epoch, batch), the parameter rows the loader's pipeline gets
    (its meta rows) and the kinds it serves are ``FaceOccluder.sample(n, shard, epoch, batch)`` of an
    occluder built apart with the same seed and profile; a final smaller batch included."""
    from faceocc import FaceOcclusionLoader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        loader = FaceOcclusionLoader(data, 5, device="cpu", seed=3, shard_id=1, num_shards=2, shuffle=shuffle,
                                     last_batch="keep", num_threads=1, prefetch=1)
        occ = FaceOccluder("ms1m", seed=3)
    src = loader._new_source()
    sizes, used = [], 0
    for epoch in range(2):
        for batch, served in enumerate(loader):
            n = len(served["key"])
            want = occ.sample(n, 1, epoch, batch)
            table, _, keys = unpack_meta(src.batch(epoch, batch)[2])
            assert table.tobytes() == want.tobytes(), (epoch, batch)
            assert keys.tolist() == served["key"].tolist()
            assert served["kind"].tolist() == want["kind"].tolist()
            sizes.append(n)
            used += int((want["m3d_slot"] >= 0).sum())
    assert sizes == [5, 5, 5, 5, 4] * 2 and used > 0
