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

import loader_gpu_cases as cases
import numpy as np
import pytest
from cuda_host import imports_on_the_null_stream, requires_gxx
from datasets import face_dataset
from faceocc.ops import Kind, load_profile
from loader_gpu_cases import CASES

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
    imports_on_the_null_stream(cp, monkeypatch)
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


@pytest.mark.parametrize("name", list(CASES))
def test_gpu_cases_on_the_cpu(cp, tmp_path, monkeypatch, name):
    """The cases tests/test_loader_gpu.py runs on a GPU (images of another size through fn.resize, float16,
    out_size 96, batches with no / only 3D-mask rows), here through the same seams: each batch against
    the twin on the inputs the kernels read, and against the CPU loader."""
    monkeypatch.setenv("LOCAL_RANK", str(LOCAL_RANK))
    gpu_seams(monkeypatch, [])
    case = CASES[name]
    data = cases.dataset(tmp_path / "d", case)
    got = cases.loader(data, "gpu", case)
    assert got.device_id == LOCAL_RANK
    want = cases.loader(data, "cpu", case)
    cp.LOG.clear()
    m3d = cases.check_batches(got, want, case, batches=1)
    assert (m3d > 0) == (case.profile != "no_m3d")
    assert {(e.device, e.stream) for e in cp.LOG} == {(LOCAL_RANK, TORCH_STREAM)}


def test_occlusion_op_pipeline_of_the_gpu_test_on_the_cpu(datasets):
    """The user's pipeline that tests/test_loader_gpu.py builds around ``occlusion_op`` on a GPU, built
    here on the CPU (cpu decode, the twin inside): its outputs are the twin's on its decoded faces."""
    from faceocc.dali_pipes.source import unpack_meta
    from faceocc.ops import FaceOccluder
    from nvidia.dali.plugin.pytorch import DALIGenericIterator

    import faceocc

    prof = cases.ms1m_with_mask3d(0.0)
    occ = FaceOccluder(prof, None, (112, 112), "cpu", 3, has_masks=False)
    names = ["face", "meta", "img", "msk", "ori", "kind"]
    pipe = cases.occlusion_op_pipeline(datasets["plain"], occ, BATCH, None, True, faceocc.occlusion_op)
    out = next(iter(DALIGenericIterator(pipe, names, size=-1)))[0]
    table, _, keys = unpack_meta(out["meta"].numpy())
    assert len(set(keys.tolist())) == BATCH
    want = occ.apply(out["face"].numpy(), table)
    for name in names[2:]:
        cases.close(out[name].reshape(-1) if name == "kind" else out[name], want[name], prof.normalize, name)


def test_dalis_outputs_outlive_the_kernels_that_read_them(cp, datasets, monkeypatch):
    """DALI may reuse an output's memory once nothing holds it; the kernels that read it run later on
    torch's stream. So the loader holds DALI's outputs of a batch until an event recorded after its
    launches is done, and waits for the oldest once it holds more than prefetch + 2 batches."""
    import gc
    import weakref

    monkeypatch.setenv("LOCAL_RANK", str(LOCAL_RANK))
    gpu_seams(monkeypatch, [])
    got = loader(datasets["masked"], "gpu", "ms1m")
    held = []
    occlude = got._occlude_gpu

    def watched(out):
        held.append([weakref.ref(t) for t in out.values()])
        return occlude(out)

    got._occlude_gpu = watched
    cp.EVENTS_PENDING = True                     # the GPU has not reached the events yet
    batches = iter(got)
    next(batches)
    gc.collect()
    assert all(r() is not None for r in held[0]), "DALI's outputs were let go with kernels still queued"
    records = [i for i, e in enumerate(cp.LOG) if e.op == "record"]
    launches = [i for i, e in enumerate(cp.LOG) if e.op == "launch"]
    assert len(records) == 1 and records[0] > max(launches)        # recorded after the batch's launches
    assert cp.LOG[records[0]].stream == TORCH_STREAM
    limit = 1 + 2                                                   # prefetch + 2
    for _ in range(limit):
        next(batches)
    gc.collect()
    assert all(r() is None for r in held[0]) and all(r() is not None for r in held[1])   # the oldest waited for
    cp.complete_events()                                            # the GPU caught up
    next(batches)
    gc.collect()
    assert all(r() is None for batch in held[:-1] for r in batch) and len(got._in_flight) <= 1


def test_local_rank_wraps_around_the_visible_devices(cp, datasets, monkeypatch):
    """Under a launcher that gives each rank its own GPU through CUDA_VISIBLE_DEVICES, LOCAL_RANK 3 sees
    fewer devices than 4: the loader takes LOCAL_RANK modulo the visible count (here 2 -> device 1)."""
    from faceocc.dali_pipes.placement import local_gpu

    monkeypatch.setenv("LOCAL_RANK", "3")
    gpu_seams(monkeypatch, [])
    monkeypatch.setattr("faceocc.dali_pipes.loader.build_pipeline", lambda *a, **k: pytest.fail("not built"))
    got = loader(datasets["plain"], "gpu", "ms1m")
    assert got.device_id == 1 and got.occluder._gpu.device_id == 1
    assert (local_gpu(3, 4), local_gpu(3, 1), local_gpu(5, 4), local_gpu(0, 8)) == (3, 0, 1, 0)
    monkeypatch.setenv("LOCAL_RANK", "2")
    assert local_gpu() == 0 and local_gpu(device_count=3) == 2
    with pytest.raises(RuntimeError, match="no CUDA device"):
        local_gpu(0, 0)


def test_ori_occluded_uses_the_host_copy_of_the_parameters(cp, datasets, monkeypatch):
    """``ori: occluded`` needs the parameter table on the host; the loader has it there (the pipeline's
    meta is a host output), so nothing is copied back from the device."""
    monkeypatch.setenv("LOCAL_RANK", str(LOCAL_RANK))
    gpu_seams(monkeypatch, [])
    want = next(iter(loader(datasets["plain"], "cpu", profile("gray1"))))
    got_loader = loader(datasets["plain"], "gpu", profile("gray1"))

    def refused(*_, **__):
        raise AssertionError("a device array was copied back to the host")

    monkeypatch.setattr(cp, "asnumpy", refused)
    got = next(iter(got_loader))
    assert_same_batch(got, want, True, "gray1 ori occluded")
