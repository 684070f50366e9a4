"""The loader's GPU path on a GPU (skipped without one): the same batches as the CPU path, the
occlusion applied after DALI's iterator on torch's stream."""

from __future__ import annotations

import warnings

import pytest
import torch
from datasets import add_masks, face_dataset
from gpu import requires_gpu

from faceocc import FaceOcclusionLoader

pytest.importorskip("nvidia.dali")


@requires_gpu
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
