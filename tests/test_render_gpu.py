"""The CUDA mask rasterizer against its NumPy twin (GPU), and its compilation with nvcc (no GPU)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from conftest import oracles_required
from faceocc.ops.raster_gpu import HERE, compile_options
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


@pytest.mark.gpu
def test_online_masks_on_the_gpu_equal_the_twin():
    """Online 3D masks (mask3d.source: online) on a real GPU: surface vertices bit-identical to the twin's,
    masks identical, colours within a grey level; then the whole apply step (msk identical)."""
    import dataclasses

    import cupy as cp
    from faceocc.ops import FaceOccluder, load_profile
    from faceocc.ops.params import render_rows
    from faceocc.render.face_geometry import template_landmarks
    from faceocc.render.pose import rotation_matrix

    rng = np.random.default_rng(2)
    lm = template_landmarks()
    centre = lm.mean(0)
    geometry = np.stack([(lm - centre) @ rotation_matrix(*rng.uniform(-30, 30, 3)).T + centre
                         for _ in range(256)]).astype(np.float32)
    faces = rng.integers(0, 256, (256, 112, 112, 3), dtype=np.uint8)
    p = load_profile("ms1m")
    p = dataclasses.replace(p, mask3d=dataclasses.replace(p.mask3d, source="online",
                                                          render=dataclasses.replace(p.mask3d.render, tint_p=0.5)))
    cpu, gpu = FaceOccluder(p, seed=1), FaceOccluder(p, seed=1, device="gpu")
    table = cpu.sample(256)
    rows = render_rows(table)
    drawn = rows["texture"] >= 0
    assert drawn.sum() > 20
    verts = cp.asnumpy(gpu.online._gpu.vertices(geometry, rows))
    assert np.array_equal(verts[drawn].view(np.uint32), cpu.online.mesh.surface(geometry, rows)[drawn].view(np.uint32))
    want_masked, want_masks = cpu.online.host(faces, table, geometry)
    got_masked, got_masks = (cp.asnumpy(a) for a in gpu.online.render_device(faces, geometry, rows))
    assert np.array_equal(got_masks[drawn], want_masks[drawn])
    assert np.abs(got_masked[drawn].astype(int) - want_masked[drawn].astype(int)).max() <= 1
    want, got = cpu.apply(faces, table, geometry=geometry), gpu.apply(cp.asarray(faces), table, geometry=geometry)
    assert np.array_equal(cp.asnumpy(got["msk"]), want["msk"])
