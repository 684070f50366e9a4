"""Output arrays reused by the CPU apply step (ops.buffers.BufferPool): only arrays nothing refers to,
never a batch the consumer still holds."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
import torch
from faceocc.ops import FaceOccluder
from faceocc.ops.buffers import BufferPool
from faceocc.ops.reference import clean_faces
from faceocc.ops.settings import ApplySettings


def test_an_array_is_reused_only_when_nothing_refers_to_it():
    pool = BufferPool(4)
    a = pool((2, 3), np.float32)
    tensor = torch.from_numpy(a)
    del a
    b = pool((2, 3), np.float32)
    assert not np.shares_memory(b, tensor.numpy())           # the tensor still holds the first one
    view = b[1:]
    del b
    c = pool((2, 3), np.float32)
    assert not np.shares_memory(c, tensor.numpy()) and not np.shares_memory(c, view)
    del tensor
    d = pool((2, 3), np.float32)
    assert pool.reused == 1 and not np.shares_memory(d, view) and not np.shares_memory(d, c)
    del view
    assert pool((2, 3), np.float32).shape == (2, 3) and pool.reused == 2
    assert pool((2, 3), np.int32).dtype == np.int32 and pool.reused == 2    # another type: a new array


def test_at_most_keep_arrays_are_kept_per_shape():
    pool = BufferPool(2)
    held = [pool((4,), np.uint8) for _ in range(5)]
    assert len({id(a) for a in held}) == 5
    del held
    again = [pool((4,), np.uint8) for _ in range(3)]
    assert pool.reused == 2 and len({id(a) for a in again}) == 3


def test_threads_never_get_the_same_array():
    pool = BufferPool(64)
    got: list[list[np.ndarray]] = [[] for _ in range(8)]

    def take(mine: list) -> None:
        for _ in range(200):
            mine.append(pool((16,), np.float32))
            if len(mine) > 3:
                mine.pop(0)

    threads = [threading.Thread(target=take, args=(g,)) for g in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    held = [a for g in got for a in g]
    assert len({id(a) for a in held}) == len(held) == 24


@pytest.mark.parametrize("profile, dtype", [("ms1m", np.float32), ("ms1m", np.float16), ("casia", np.float32)])
def test_apply_writes_the_same_values_into_reused_arrays(profile, dtype):
    occ = FaceOccluder(profile, dtype=dtype, has_masks=False)
    faces = np.random.default_rng(0).integers(0, 256, (12, 112, 112, 3), dtype=np.uint8)
    pool = BufferPool()
    for batch in range(4):
        table = occ.sample(12, batch=batch)
        want = occ.apply(faces, table)
        got = occ.apply(faces, table, alloc=pool)
        for name in ("img", "msk", "ori", "kind"):
            assert got[name].dtype == want[name].dtype and np.array_equal(got[name], want[name]), name
        del got
    assert pool.reused > 0


def test_clean_faces_are_the_specs_arithmetic():
    faces = np.random.default_rng(1).integers(0, 256, (5, 9, 7, 3), dtype=np.uint8)
    flip = np.array([0, 1, 1, 0, 1])
    v = faces.transpose(0, 3, 1, 2).astype(np.float32) * np.float32(1 / 255)
    v[flip == 1] = v[flip == 1][..., ::-1]
    assert np.array_equal(clean_faces(faces, flip, ApplySettings(normalize=False)), v)
    assert np.array_equal(clean_faces(faces, flip), (v - np.float32(0.5)) / np.float32(0.5))
    half = clean_faces(faces, flip, ApplySettings(dtype=np.float16))
    assert half.dtype == np.float16
    assert np.array_equal(half, ((v - np.float32(0.5)) / np.float32(0.5)).astype(np.float16))


@pytest.fixture(scope="module")
def data(faces_with_masks):
    return faces_with_masks


def test_the_loader_never_overwrites_a_batch_the_consumer_keeps(data):
    pytest.importorskip("nvidia.dali")
    from faceocc import FaceOcclusionLoader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        loader = FaceOcclusionLoader(data, 8, device="cpu", seed=5, num_threads=2, prefetch=2)
    kept, copies = [], []
    for _ in range(2):
        for batch in loader:
            kept.append(batch)
            copies.append({k: v.clone() for k, v in batch.items()})
    held = [t.data_ptr() for b in kept for t in (b["img"], b["ori"], b["msk"])]
    assert len(set(held)) == len(held)                    # every kept batch has arrays of its own
    for want, got in zip(copies, kept):
        for name in ("img", "msk", "ori", "key"):
            assert torch.equal(want[name], got[name]), name
    del kept, batch
    again = [{k: v.clone() for k, v in b.items()} for b in loader]   # batches let go of at once
    assert loader._handoff.buffers.reused > 0
    fresh = _reference_epoch(data)
    for want, got in zip(fresh, again):
        for name in ("img", "msk", "ori", "key"):
            assert torch.equal(want[name], got[name]), name


def _reference_epoch(data):
    """The third epoch of a loader with the same settings, every batch kept."""
    from faceocc import FaceOcclusionLoader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        loader = FaceOcclusionLoader(data, 8, device="cpu", seed=5, num_threads=2, prefetch=2)
    for _ in range(2):
        for _ in loader:
            pass
    return [dict(b) for b in loader]


def test_a_pickled_pool_and_occlusion_step_start_empty():
    import pickle

    from faceocc.dali_pipes.pipeline import OcclusionStep

    pool = BufferPool(3)
    held = pool((4,), np.float32)
    copy = pickle.loads(pickle.dumps(pool))
    assert copy.keep == 3 and copy.reused == 0 and not np.shares_memory(copy((4,), np.float32), held)
    step = OcclusionStep(FaceOccluder("ms1m", has_masks=False), threads=3)
    again = pickle.loads(pickle.dumps(step))
    assert again.threads == 3 and again._pool is None and again._buffers.keep == step._buffers.keep
