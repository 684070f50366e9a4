"""The CUDA kernels against the NumPy twin on the same parameter tables (GPU), and their compilation
with nvcc (no GPU needed)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from conftest import oracles_required, random_face
from faceocc.ops import FaceOccluder, load_profile
from faceocc.ops.gpu import HERE, compile_options


@pytest.mark.parametrize("half", [False, True])
def test_kernels_compile_with_nvcc_for_sm90(tmp_path, half):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        if oracles_required():
            pytest.fail("FACEOCC_REQUIRE_ORACLES=1 but nvcc is not on PATH")
        pytest.skip("nvcc not on PATH")
    done = subprocess.run([nvcc, "-arch=sm_90", *compile_options(half), "-c", str(HERE / "occlude.cu"),
                           "-o", str(tmp_path / "occlude.o")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _batch(n: int, seed: int):
    rng = np.random.default_rng(seed)
    faces = np.stack([random_face(rng, 112) for _ in range(n)])
    masked = rng.integers(0, 256, (n, 112, 112, 3), dtype=np.uint8)
    masks = np.full((n, 112, 112), 255, np.uint8)
    masks[:, 60:, 20:92] = 0
    return faces, masked, masks


@pytest.mark.gpu
@pytest.mark.parametrize("profile", ["ms1m", "casia"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_kernels_match_the_twin(profile, dtype):
    import cupy as cp

    faces, masked, masks = _batch(512, 1)
    gpu = FaceOccluder(profile=profile, device="gpu", seed=3, dtype=dtype)
    cpu = FaceOccluder(profile=profile, device="cpu", seed=3, dtype=dtype)
    p = load_profile(profile)
    for batch in range(3):
        table = cpu.sample(512, batch=batch)
        want = cpu.apply(faces, table, masked, masks)
        got = {k: cp.asnumpy(v) for k, v in gpu.apply(cp.asarray(faces), table, cp.asarray(masked),
                                                       cp.asarray(masks)).items()}
        assert np.array_equal(got["msk"], want["msk"])
        assert np.array_equal(got["kind"], want["kind"])
        scale = 0.5 if p.normalize else 1.0        # back to [0, 1] before comparing
        tol = 1 / 255 + (2e-3 if dtype == np.float16 else 0)
        for key in ("img", "ori"):
            diff = np.abs(got[key].astype(np.float32) - want[key].astype(np.float32)) * scale
            assert diff.max() <= tol, f"{key}: max diff {diff.max() * 255:.3f}/255"
