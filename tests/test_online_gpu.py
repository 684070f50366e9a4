"""Online 3D masks on a GPU (marked ``gpu``: skipped without CuPy and a device, failed under
FACEOCC_REQUIRE_GPU=1): raster.cu compiled by NVRTC against the twin, as tests/test_raster_online.py and
tests/test_online_masks.py check it on the CPU through tests/cuda_host. Vertices bit-identical (the
kernels are built with ``--fmad=false``), masks identical, colours within one grey level."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import test_raster_online as raster
from cuda_host import real_faces
from faceocc.ops import FaceOccluder, load_profile
from faceocc.ops.mask_textures import load_textures
from faceocc.ops.params import RENDER_DTYPE, render_rows
from faceocc.ops.raster import MaskMesh
from faceocc.render.face_geometry import template_landmarks

pytestmark = pytest.mark.gpu


def online_profile(tint_p: float) -> object:
    p = load_profile("ms1m")
    render = dataclasses.replace(p.mask3d.render, tint_p=tint_p)
    return dataclasses.replace(p, mask3d=dataclasses.replace(p.mask3d, source="online", render=render),
                               kinds={"mask3d": 1.0}, flip_p=0.0)


def test_surface_kernel_is_bit_identical_to_the_twin():
    import cupy as cp
    from faceocc.ops.raster_gpu import GpuRasterizer

    mesh = MaskMesh(load_textures()[0])
    lm = raster.turned_faces(256, seed=4)
    params = raster.rows(256, 5, len(mesh.textures))
    params["texture"][7] = -1
    got = cp.asnumpy(GpuRasterizer(mesh).vertices(lm, params))
    want = mesh.surface(lm, params)
    assert got.dtype == want.dtype == np.float32 and got.shape == want.shape
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("size", [(112, 112), (64, 56)])
def test_raster_kernel_matches_the_twin(size):
    import cupy as cp
    from faceocc.ops.raster_gpu import GpuRasterizer

    mesh = MaskMesh(load_textures()[0])
    n = 64
    faces = real_faces(n, size, seed=7)
    lm = raster.turned_faces(n, seed=8) * np.array([size[1] / 112, size[0] / 112, size[1] / 112], np.float32)
    params = raster.rows(n, 9, len(mesh.textures), tint_p=0.7)
    params["texture"][[2, 5]] = -1
    gpu = GpuRasterizer(mesh)
    device_rows = cp.asarray(np.ascontiguousarray(params).view(np.uint8).reshape(n, RENDER_DTYPE.itemsize))
    for landmarks, given in ((lm, params), (lm.astype(np.float16), device_rows)):
        want_out, want_mask = mesh.render(faces, landmarks, params)
        got_out, got_mask = (cp.asnumpy(a) for a in gpu.render(cp.asarray(faces), landmarks, given))
        assert (want_mask == 0).sum() > 30 * n
        assert np.array_equal(got_mask, want_mask)
        assert np.abs(got_out.astype(int) - want_out.astype(int)).max() <= 1
        assert np.array_equal(got_out[[2, 5]], faces[[2, 5]]) and (got_mask[[2, 5]] == 255).all()


def test_face_occluder_online_on_the_gpu_equals_the_twin():
    import cupy as cp

    n = 128
    faces = real_faces(n, seed=2)
    geometry = np.broadcast_to(template_landmarks(), (n, 68, 3)).astype(np.float32).copy()
    geometry[n // 2:, :, 0] += 3.5
    prof = online_profile(tint_p=1.0)
    cpu, gpu = FaceOccluder(prof, seed=1), FaceOccluder(prof, seed=1, device="gpu")
    table = cpu.sample(n)
    want_masked, want_masks = cpu.online.host(faces, table, geometry)
    got_masked, got_masks = (cp.asnumpy(a) for a in gpu.online.render_device(cp.asarray(faces), geometry,
                                                                            render_rows(table)))
    assert np.array_equal(got_masks, want_masks)
    assert np.abs(got_masked.astype(int) - want_masked.astype(int)).max() <= 1
    want = cpu.apply(faces, table, geometry=geometry)
    got = gpu.apply(cp.asarray(faces), table, geometry=cp.asarray(geometry))
    assert np.array_equal(cp.asnumpy(got["msk"]), want["msk"])
    assert np.abs(cp.asnumpy(got["img"]) - want["img"]).max() * 0.5 <= 2 / 255
