"""The CUDA mask rasterizer against its NumPy twin (GPU), and its compilation with nvcc (no GPU)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from conftest import oracles_required
from faceocc.render.gpu import HERE, compile_options
from faceocc.render.renderer import MaskRenderer


def test_rasterizer_compiles_with_nvcc_for_sm90(tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        if oracles_required():
            pytest.fail("FACEOCC_REQUIRE_ORACLES=1 but nvcc is not on PATH")
        pytest.skip("nvcc not on PATH")
    done = subprocess.run([nvcc, "-arch=sm_90", *compile_options(), "-c", str(HERE / "raster.cu"),
                           "-o", str(tmp_path / "raster.o")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.gpu
def test_rasterizer_matches_the_twin():
    import cupy as cp

    faces = np.random.default_rng(0).integers(0, 256, (256, 112, 112, 3), dtype=np.uint8)
    cpu = MaskRenderer(device="cpu")
    gpu = MaskRenderer(device="gpu")
    params = cpu.sample(256, np.random.default_rng(1))
    want_out, want_mask = cpu.render(faces, params)
    got_out, got_mask = gpu.render(faces, params)
    got_out, got_mask = cp.asnumpy(got_out), cp.asnumpy(got_mask)
    assert np.array_equal(got_mask, want_mask)
    assert np.abs(got_out.astype(int) - want_out.astype(int)).max() <= 1
