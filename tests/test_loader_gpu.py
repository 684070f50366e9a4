"""The loader's GPU path on a GPU with DALI (marked ``gpu`` and ``dali``: skipped without them, failed under
FACEOCC_REQUIRE_GPU=1): the same batches as the CPU path, the occlusion applied after DALI's iterator on
torch's stream; each case also checked against the twin on the inputs the kernels read
(tests/loader_gpu_cases.py; the same cases run on the CPU in tests/test_loader_gpu_step_on_cpu.py)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from datasets import add_masks, face_dataset
from gpu import requires_dali_gpu, second_device
from loader_gpu_cases import BATCH, CASES, Case, check_batches, close, dataset, loader, ms1m_with_mask3d

from faceocc import FaceOcclusionLoader

pytestmark = requires_dali_gpu


def test_gpu_batches_match_the_cpu_batches(tmp_path):
    folder = face_dataset(tmp_path / "d")
    add_masks(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        cpu = list(FaceOcclusionLoader(folder, 8, device="cpu", seed=3))
        gpu = list(FaceOcclusionLoader(folder, 8, device="gpu", seed=3))
    assert len(cpu) == len(gpu)
    for c, g in zip(cpu, gpu):
        assert g["img"].is_cuda and g["msk"].is_cuda and g["label"].is_cuda
        for name in ("label", "key", "kind", "msk"):
            assert torch.equal(c[name], g[name].cpu()), name
        for name in ("img", "ori"):  # nvJPEG and libjpeg-turbo may differ by a level or two
            assert (c[name] - g[name].cpu()).abs().mean() < 0.03, name


@pytest.mark.parametrize("name", [*CASES, "ms1m", "gray1_ori_occluded"])
def test_gpu_batches_match_the_twin_on_their_inputs(tmp_path, name):
    case = CASES.get(name) or Case(profile="gray1" if name.startswith("gray1") else "ms1m")
    data = dataset(tmp_path / "d", case)
    gpu = loader(data, "gpu", case)
    assert gpu.device_id == torch.cuda.current_device()
    m3d = check_batches(gpu, loader(data, "cpu", case), case, device=torch.device("cuda", gpu.device_id))
    assert (m3d > 0) == (case.profile != "no_m3d")


def test_gpu_loader_on_a_device_other_than_the_current_one(tmp_path, monkeypatch):
    other = second_device()
    if other is None:
        pytest.skip("one GPU: no device other than the current one")
    monkeypatch.setenv("LOCAL_RANK", str(other))
    case = Case()
    data = dataset(tmp_path / "d", case)
    gpu = loader(data, "gpu", case)
    assert gpu.device_id == other != torch.cuda.current_device()
    check_batches(gpu, loader(data, "cpu", case), case, device=torch.device("cuda", other))


@pytest.mark.parametrize("kind", [True, False])
def test_occlusion_op_in_a_gpu_pipeline_matches_the_twin(tmp_path, kind):
    """``faceocc.occlusion_op`` as a GPU ``python_function`` (DALI's stream, CuPy samples) in a pipeline of
    the user's: mixed decode -> occlusion; its outputs against the twin on the decoded faces."""
    from faceocc.ops import FaceOccluder
    from loader_gpu_cases import occlusion_op_pipeline
    from nvidia.dali.plugin.pytorch import DALIGenericIterator

    import faceocc

    data = face_dataset(tmp_path / "d")
    prof = ms1m_with_mask3d(0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        gpu = FaceOccluder(prof, None, (112, 112), "gpu", 3, has_masks=False, device_id=0)
        cpu = FaceOccluder(prof, None, (112, 112), "cpu", 3, has_masks=False)
    names = ["face", "meta", "img", "msk", "ori", "kind"][:6 if kind else 5]
    pipe = occlusion_op_pipeline(data, gpu, BATCH, 0, kind, faceocc.occlusion_op)
    for _, out in zip(range(2), DALIGenericIterator(pipe, names, size=-1)):
        out = out[0]
        assert out["img"].is_cuda and out["msk"].is_cuda
        from faceocc.dali_pipes.source import unpack_meta

        table, _, _ = unpack_meta(out["meta"].cpu().numpy())
        want = cpu.apply(out["face"].cpu().numpy(), table)
        for name in names[2:]:
            got = out[name].reshape(-1) if name == "kind" else out[name]
            close(got, want[name], prof.normalize, f"occlusion_op {name}")
        assert not np.array_equal(want["msk"], np.ones_like(want["msk"]))    # something was occluded


def test_online_masks_on_the_gpu_match_the_cpu_batches(tmp_path):
    """Online 3D masks (geometry read by the loader, rendered by raster.cu after DALI's iterator): the
    same masks as the CPU loader's, colours within nvJPEG's levels; another mask the next epoch."""
    import dataclasses

    from faceocc.ops import load_profile

    from faceocc.cli import main

    folder = face_dataset(tmp_path / "d")
    assert main(["render", str(folder), "--geometry-only", "--chunk-size", "16"]) == 0
    p = load_profile("ms1m")
    prof = dataclasses.replace(p, mask3d=dataclasses.replace(p.mask3d, source="online"),
                               kinds={"mask3d": 1.0}, flip_p=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        cpu = FaceOcclusionLoader(folder, 8, device="cpu", seed=3, profile=prof)
        gpu = FaceOcclusionLoader(folder, 8, device="gpu", seed=3, profile=prof)
        epochs = [(list(cpu), list(gpu)) for _ in range(2)]
    for c_epoch, g_epoch in epochs:
        assert len(c_epoch) == len(g_epoch) > 0
        for c, g in zip(c_epoch, g_epoch):
            assert g["img"].is_cuda and g["msk"].is_cuda
            for name in ("label", "key", "kind", "msk"):
                assert torch.equal(c[name], g[name].cpu()), name
            assert (c["msk"] == 0).float().mean() > 0.1
            assert (c["img"] - g["img"].cpu()).abs().mean() < 0.03
    first, second = (torch.cat([b["msk"] for b in e[1]]).cpu() for e in epochs)
    assert not torch.equal(first, second)
