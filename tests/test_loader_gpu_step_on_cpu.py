"""The loader's GPU step, executed on the CPU: ``FaceOcclusionLoader(device="gpu")`` iterated for real
(``_build`` -> DALI's iterator -> ``_fetch`` -> ``_occlude_gpu`` -> ``occlude_device`` ->
``FaceOccluder.apply_device`` -> ops/gpu.py -> occlude.cu), with tests/cuda_host's fake CuPy (kernels
built by g++; devices and streams tracked) and the GPU pipeline's dense outputs made by DALI on the CPU.
What a CPU-only machine cannot run is replaced at two seams only: the pipeline is built on the CPU
(``device_id=None``, ``uniform=True``: the GPU path's outputs, as host tensors) and torch's current CUDA
stream is a stand-in pointer. The batches must be the CPU loader's (``msk``, ``kind``, ``label``, ``key``
identical, ``img``/``ori`` within 1/255). ``OcclusionStep``'s GPU branch (``occlusion_op`` on a GPU
pipeline) is run the same way against its CPU branch.
"""

from __future__ import annotations

import dataclasses
import types
import warnings

import numpy as np
import pytest
from cuda_host import requires_gxx
from datasets import face_dataset
from faceocc.ops import Kind, load_profile

pytest.importorskip("nvidia.dali")
pytestmark = [pytest.mark.kernels_on_cpu, requires_gxx]

LOCAL_RANK = 1                    # the loader's device under torchrun: not device 0
TORCH_STREAM = 0x70C5             # torch's current stream on that device (a stream DALI and CuPy did not make)
BATCH = 8
BATCHES = 3                       # compared per case (of 6 per epoch)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory, faces_with_masks):
    return {"plain": face_dataset(tmp_path_factory.mktemp("plain")), "masked": faces_with_masks}


def profile(name):
    if name == "ms1m":
        return "ms1m"
    # MSML's grayscale with one channel, and ori as its second occlusion draw (the apply_device branch
    # that reads the parameter rows back to the host)
    return dataclasses.replace(load_profile("ms1m"), grayscale=True, gray_channels=1, ori="occluded")


def loader(data, device, prof, dtype=None):
    from faceocc import FaceOcclusionLoader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return FaceOcclusionLoader(data, BATCH, device=device, profile=prof, seed=3, shard_id=0, num_shards=1,
                                   num_threads=2, prefetch=1, dtype=dtype)


def gpu_seams(monkeypatch, torch_streams):
    """The pipeline the loader builds, on the CPU; torch's current stream, a stand-in pointer."""
    import faceocc.dali_pipes.loader as loader_module
    import torch
    from faceocc.dali_pipes.pipeline import build_pipeline

    def on_the_cpu(source, batch_size, device_id, size, num_threads, prefetch, handoff):
        if handoff is not None:                          # the CPU loader's pipeline, as it is
            assert device_id is None
            return build_pipeline(source, batch_size, device_id, size, num_threads, prefetch, handoff)
        assert device_id == LOCAL_RANK
        return build_pipeline(source, batch_size, None, size, num_threads, prefetch, uniform=True)

    def current_stream(device=None):
        torch_streams.append(device)
        return types.SimpleNamespace(cuda_stream=TORCH_STREAM)

    monkeypatch.setattr(loader_module, "build_pipeline", on_the_cpu)
    monkeypatch.setattr(torch.cuda, "current_stream", current_stream)


def assert_same_batch(got, want, normalize, what):
    import torch

    assert set(got) == set(want), what
    for name, w in want.items():
        g = got[name]
        assert isinstance(g, torch.Tensor) and g.device.type == "cpu", f"{what} {name}"
        assert (g.shape, g.dtype) == (w.shape, w.dtype), f"{what} {name}: {g.shape} {g.dtype}, want {w.shape} {w.dtype}"
        if w.dtype.is_floating_point:
            diff = ((g.float() - w.float()).abs() * (0.5 if normalize else 1.0)).max().item()
            assert not g.isnan().any() and diff <= 1 / 255 + (2e-3 if w.dtype == torch.float16 else 0), \
                f"{what} {name}: max diff {diff * 255:.3f}/255"
        else:
            assert torch.equal(g, w), f"{what} {name}: {int((g != w).sum())} elements differ"


@pytest.mark.parametrize("records", ["masked", "plain"])
@pytest.mark.parametrize("prof", ["ms1m", "gray1"])
def test_gpu_loader_step_gives_the_cpu_loaders_batches(cp, datasets, monkeypatch, records, prof):
    monkeypatch.setenv("LOCAL_RANK", str(LOCAL_RANK))
    torch_streams = []
    gpu_seams(monkeypatch, torch_streams)
    want_loader = loader(datasets[records], "cpu", profile(prof))
    got_loader = loader(datasets[records], "gpu", profile(prof))
    assert got_loader.device_id == LOCAL_RANK and got_loader.occluder._gpu.device_id == LOCAL_RANK
    assert got_loader.read_masks == (records == "masked")
    cp.LOG.clear()
    used = 0
    for i, (got, want) in enumerate(zip(got_loader, want_loader)):
        assert_same_batch(got, want, want_loader.occluder.profile.normalize, f"{prof} {records} batch {i}")
        used += int((want["kind"] == Kind.MASK3D).sum())
        if i + 1 == BATCHES:
            break
    assert torch_streams == [LOCAL_RANK] * BATCHES
    launches = [e for e in cp.LOG if e.op == "launch"]
    assert len(launches) == BATCHES * (4 if prof == "gray1" else 2)      # ori occluded: a second pass pair
    assert {(e.device, e.stream) for e in cp.LOG} == {(LOCAL_RANK, TORCH_STREAM)}
    assert (used > 0) == (records == "masked")       # mask3d rows read their rendered masks on the GPU path


def test_gpu_loader_step_in_float16(cp, datasets, monkeypatch):
    import torch

    monkeypatch.setenv("LOCAL_RANK", str(LOCAL_RANK))
    gpu_seams(monkeypatch, [])
    want = next(iter(loader(datasets["masked"], "cpu", "ms1m", torch.float16)))
    got = next(iter(loader(datasets["masked"], "gpu", "ms1m", torch.float16)))
    assert_same_batch(got, want, True, "float16")


def test_gpu_step_outside_torchs_stream_is_a_race(cp, datasets, monkeypatch):
    """The control: the same step with the imports made on CuPy's null stream instead of torch's is a
    cross-stream read without synchronization, which the fake reports (so the tests above can fail)."""
    monkeypatch.setenv("LOCAL_RANK", str(LOCAL_RANK))
    gpu_seams(monkeypatch, [])
    got_loader = loader(datasets["plain"], "gpu", "ms1m")
    real = cp.from_dlpack
    null = cp.cuda.Stream(null=True)

    def on_the_null_stream(x):
        with null:
            return real(x)

    monkeypatch.setattr(cp, "from_dlpack", on_the_null_stream)
    with pytest.raises(cp.CUDARuntimeError, match="race"):
        next(iter(got_loader))


def dali_stream(cp):
    """What DALI's python_function does around the function on a GPU: a CuPy stream object pointed at
    DALI's own (non-blocking) stream, made current."""
    s = cp.cuda.Stream(null=True)
    s.ptr = 0xDA11
    return s


@pytest.mark.parametrize("records, prof, kind", [("masked", "ms1m", True), ("plain", "gray1", False)])
def test_occlusion_step_gpu_branch_equals_its_cpu_branch(cp, datasets, records, prof, kind):
    """``occlusion_op``'s function on a GPU pipeline: per-sample device arrays in (params as the wider
    meta rows, masks [H, W, 1]), per-sample device arrays out, on DALI's device and stream."""
    from faceocc.dali_pipes.pipeline import GPU_OUTPUTS, OcclusionStep, build_pipeline
    from faceocc.dali_pipes.source import RecordBatchSource
    from faceocc.ops import FaceOccluder
    from nvidia.dali.plugin.pytorch import DALIGenericIterator

    data = datasets[records]
    prof = profile(prof)
    cpu = loader(data, "cpu", prof)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        gpu = FaceOccluder(prof, None, (112, 112), "gpu", 3, has_masks=records == "masked", device_id=LOCAL_RANK)
    src = RecordBatchSource(data, cpu.order, cpu.occluder.sampler, 3, 0, cpu.read_masks)
    names = list(GPU_OUTPUTS[:4 if cpu.read_masks else 2])
    it = DALIGenericIterator(build_pipeline(src, BATCH, None, (112, 112), 2, 1, uniform=True), names, size=-1)
    out = {k: v.numpy() for k, v in next(it)[0].items()}
    samples = [list(out[k]) for k in names]
    want = OcclusionStep(cpu.occluder, kind)(*samples)
    cp.LOG.clear()
    with cp.cuda.Device(LOCAL_RANK), dali_stream(cp):   # DALI's copy of the outputs runs on its stream too
        got = OcclusionStep(gpu, kind)(*[[cp.asarray(s) for s in column] for column in samples])
        assert all(isinstance(x, cp.ndarray) and x.device.id == LOCAL_RANK and x.flags.c_contiguous
                   for column in got for x in column)
        got = [np.stack([cp.asnumpy(x) for x in column]) for column in got]
    assert len(got) == len(want) == (4 if kind else 3)
    for name, g, w in zip(("img", "msk", "ori", "kind"), got, want):
        w = np.stack(w)
        assert (g.shape, g.dtype) == (w.shape, w.dtype), name
        if w.dtype.kind == "f":
            assert np.abs(g - w).max() * 0.5 <= 1 / 255, name
        else:
            assert np.array_equal(g, w), name
    assert {(e.device, e.stream) for e in cp.LOG if e.op == "launch"} == {(LOCAL_RANK, 0xDA11)}
    if kind:
        assert (np.stack(want[3]).ravel() == Kind.MASK3D).any() == (records == "masked")
