"""The loader's GPU cases and how a GPU batch is checked, shared by the GPU tests (tests/test_loader_gpu.py,
real DALI and CUDA) and their CPU run (tests/test_loader_gpu_step_on_cpu.py, DALI on the CPU and
tests/cuda_host's fake CuPy), so that what runs on the GPU machine has run here first.

A GPU batch is checked twice: against the NumPy twin applied to the very inputs the kernels read (DALI's
decoded faces, masked faces and masks of that batch, captured on the way in: ``msk`` and ``kind``
identical, ``img``/``ori`` within 1/255), and against the CPU loader's batch (``label``, ``key``, ``kind``
identical: pure functions of the seed; the pixels differ by decoder).
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import torch
from datasets import add_masks, face_dataset
from faceocc.ops import Kind, load_profile

BATCH = 8


def ms1m_with_mask3d(share: float):
    """MS1M with the mask3d share set to ``share`` (the other kinds scaled to fill the rest)."""
    base = load_profile("ms1m")
    rest = sum(v for k, v in base.kinds.items() if k != "mask3d")
    kinds = {k: (share if k == "mask3d" else v * (1 - share) / rest) for k, v in base.kinds.items()}
    return dataclasses.replace(base, kinds=kinds)


@dataclasses.dataclass(frozen=True)
class Case:
    """One GPU configuration: the dataset's image size, loader options, and what its batches must show."""

    size: int = 112
    profile: str = "ms1m"            # "ms1m", "gray1" (one grey channel, ori occluded), "no_m3d", "only_m3d"
    dtype: torch.dtype = torch.float32
    out_size: tuple[int, int] = (112, 112)
    masks: bool = True

    def make_profile(self):
        if self.profile == "gray1":
            return dataclasses.replace(load_profile("ms1m"), grayscale=True, gray_channels=1, ori="occluded")
        if self.profile == "no_m3d":      # mask records read (a mask3d share), but no batch row draws one
            return ms1m_with_mask3d(1e-9)
        if self.profile == "only_m3d":
            return ms1m_with_mask3d(1.0)
        return self.profile

    def m3d_rows(self, kinds: np.ndarray) -> bool | None:
        """What the batch's 3D-mask rows must be: None (any), or whether every row / no row is one."""
        m3d = kinds == Kind.MASK3D
        if self.profile == "no_m3d":
            return not m3d.any()
        if self.profile == "only_m3d":
            return bool(m3d.all())
        return None


CASES = {
    "resize_120": Case(size=120),                        # fn.resize with data: images of another size
    "float16": Case(dtype=torch.float16),
    "out_96": Case(out_size=(96, 96)),                   # resize down, every occluder scaled
    "no_mask3d_rows": Case(profile="no_m3d"),            # the conditional's 3D-mask branch empty
    "only_mask3d_rows": Case(profile="only_m3d"),        # ... and its other branch empty
}


def dataset(folder: Path, case: Case) -> Path:
    data = face_dataset(folder, size=case.size)
    if case.masks:
        add_masks(data)
    return data


def loader(data: Path, device: str, case: Case, **extra):
    from faceocc import FaceOcclusionLoader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return FaceOcclusionLoader(data, BATCH, device=device, profile=case.make_profile(), seed=3, shard_id=0,
                                   num_shards=1, num_threads=2, prefetch=1, dtype=case.dtype,
                                   out_size=case.out_size, **extra)


def capture_inputs(gpu_loader) -> list[dict]:
    """From now on, a host copy of DALI's outputs of every batch the loader occludes (appended)."""
    seen: list[dict] = []
    occlude = gpu_loader._occlude_gpu

    def wrapped(out: dict) -> dict:
        seen.append({k: v.cpu().numpy().copy() for k, v in out.items()})
        return occlude(out)

    gpu_loader._occlude_gpu = wrapped
    return seen


def twin_of(cpu_loader, inputs: dict) -> dict:
    """The NumPy twin's img, msk, ori, kind for DALI's outputs of one GPU batch."""
    from faceocc.dali_pipes.source import unpack_meta

    table, _, _ = unpack_meta(inputs["meta"])
    masked = inputs.get("masked")
    masks = inputs.get("mask")
    return cpu_loader.occluder.apply(inputs["face"], table, masked, None if masks is None else masks[..., 0])


def close(got: torch.Tensor, want: np.ndarray, normalize: bool, what: str) -> None:
    g = got.detach().cpu()
    assert tuple(g.shape) == want.shape, f"{what}: shape {tuple(g.shape)}, want {want.shape}"
    if want.dtype.kind == "f":
        assert g.dtype == torch.from_numpy(want).dtype, f"{what}: {g.dtype}"
        diff = float(np.abs(g.float().numpy() - want.astype(np.float32)).max()) * (0.5 if normalize else 1.0)
        tol = 1 / 255 + (2e-3 if want.dtype == np.float16 else 0)
        assert not g.isnan().any() and diff <= tol, f"{what}: max diff {diff * 255:.3f}/255"
    else:
        assert np.array_equal(g.numpy(), want), f"{what}: {int((g.numpy() != want).sum())} elements differ"


def check_batches(gpu_loader, cpu_loader, case: Case, batches: int = 2, device: torch.device | None = None) -> int:
    """Compare the first ``batches`` GPU batches with the twin on their own inputs and with the CPU
    loader's batches; returns the number of 3D-mask rows seen."""
    inputs = capture_inputs(gpu_loader)
    normalize = cpu_loader.occluder.profile.normalize
    m3d = 0
    for i, (got, want) in enumerate(zip(gpu_loader, cpu_loader)):
        what = f"{case} batch {i}"
        if device is not None:
            assert all(t.device == device for t in got.values()), f"{what}: {[t.device for t in got.values()]}"
        twin = twin_of(cpu_loader, inputs[i])
        for name in ("img", "ori", "msk"):
            close(got[name], twin[name], normalize, f"{what} {name} vs the twin")
        for name in ("label", "key", "kind"):
            assert torch.equal(got[name].cpu(), want[name]), f"{what} {name} vs the CPU loader"
        kinds = got["kind"].cpu().numpy()
        assert np.array_equal(kinds, twin["kind"]), f"{what} kind vs the twin"
        rule = case.m3d_rows(kinds)
        assert rule in (None, True), f"{what}: kinds {kinds.tolist()}"
        m3d += int((kinds == Kind.MASK3D).sum())
        if i + 1 == batches:
            break
    assert len(inputs) >= batches
    return m3d


def occlusion_op_pipeline(data: Path, occluder, batch: int, device_id: int | None, kind: bool, op):
    """A user's pipeline around ``op`` (``faceocc.occlusion_op``): records of ``data`` (no mask records)
    -> decode (``mixed`` with a ``device_id``, else ``cpu``) -> ``op(occluder, faces, params)``. Outputs
    face, meta (on the decoder's device), img, msk, ori and, with ``kind``, kind."""
    from faceocc.dali_pipes.order import ShardOrder
    from faceocc.dali_pipes.pipeline import payloads, source_types
    from faceocc.dali_pipes.source import RecordBatchSource
    from nvidia.dali import fn, pipeline_def, types

    from faceocc.recordio import RecordDataset

    with RecordDataset(data) as ds:
        order = ShardOrder(ds.image_keys.copy(), batch, occluder.seed)
    source = RecordBatchSource(data, order, occluder.sampler, occluder.seed, read_masks=False)
    gpu = device_id is not None

    @pipeline_def(batch_size=batch, num_threads=2, device_id=device_id, prefetch_queue_depth=1)
    def pipe():
        images, lengths, meta = fn.external_source(source=source, num_outputs=3, batch=True, batch_info=True,
                                                   dtype=source_types(False))
        faces = fn.decoders.image(payloads(images, lengths), device="mixed" if gpu else "cpu",
                                  output_type=types.RGB)
        # DALI 2.4's torch iterator cannot take a host output of a GPU pipeline with torch 2.11 (pinned
        # memory is DLPack device 3, which torch.from_dlpack refuses): a user's pipeline returns it .gpu()
        meta = meta.gpu() if gpu else meta
        return (faces, meta, *op(occluder, faces, meta, kind=kind))

    p = pipe()
    p.build()
    return p
