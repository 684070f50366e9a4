"""The 3D-mask rasterizer of online masks: the vectorized twin against a plain per-pixel reading of its
specification, and raster.cu (surface, depth, shade) on the CPU through tests/cuda_host against the twin:
vertices bit-identical, masks identical, colours within one grey level; tint and rows left undrawn."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_host import real_faces, requires_gxx
from faceocc.ops.mask_textures import load_textures
from faceocc.ops.params import RENDER_DTYPE
from faceocc.ops.raster import FAR, MaskMesh, depth_pass
from faceocc.ops.sampler import sample_render
from faceocc.ops.surface import grid_triangles
from faceocc.render.face_geometry import template_landmarks
from faceocc.render.pose import rotation_matrix

F32 = np.float32


def reference_depth(verts: np.ndarray, tris: np.ndarray, h: int, w: int) -> np.ndarray:
    """raster.cu's raster_depth read literally: per face, per triangle, per pixel of its clipped box."""
    zbuf = np.full((len(verts), h * w), FAR, np.uint64)

    def edge(a, b, px, py):
        return F32(F32(b[0] - a[0]) * F32(py - a[1])) - F32(F32(b[1] - a[1]) * F32(px - a[0]))

    for n, v in enumerate(verts.astype(F32)):
        for t, (i0, i1, i2) in enumerate(tris):
            a, b, c = v[i0], v[i1], v[i2]
            x0 = min(max(int(np.floor(min(a[0], b[0], c[0]))), 0), w)
            x1 = min(max(int(np.ceil(max(a[0], b[0], c[0]))), 0), w)
            y0 = min(max(int(np.floor(min(a[1], b[1], c[1]))), 0), h)
            y1 = min(max(int(np.ceil(max(a[1], b[1], c[1]))), 0), h)
            area = edge(a, b, c[0], c[1])
            if area == 0:
                continue
            for py in range(y0, y1):
                for px in range(x0, x1):
                    fx, fy = F32(px) + F32(0.5), F32(py) + F32(0.5)
                    w0, w1, w2 = edge(b, c, fx, fy), edge(c, a, fx, fy), edge(a, b, fx, fy)
                    inside = (w0 >= 0 and w1 >= 0 and w2 >= 0) if area > 0 else (w0 <= 0 and w1 <= 0 and w2 <= 0)
                    if inside:
                        z = F32(F32(F32(F32(w0 * a[2]) + F32(w1 * b[2])) + F32(w2 * c[2])) / area)
                        key = (int(np.array(F32(1000) - z, F32).view(np.uint32)) << 32) | t
                        zbuf[n, py * w + px] = min(int(zbuf[n, py * w + px]), key)
    return zbuf


def test_vectorized_depth_pass_equals_the_per_pixel_spec():
    """Large, thin, flipped, degenerate and clipped triangles, folds (overlaps decided by depth and index)."""
    rng = np.random.default_rng(0)
    h, w = 23, 29
    tris = grid_triangles(4, 3)
    verts = rng.uniform(-8, 36, (5, 20, 3)).astype(F32)             # a crumpled sheet, partly off the image
    verts[1, :, 2] = 0.0                                              # every depth equal: ties to the lower index
    verts[2, 3] = verts[2, 4]                                         # degenerate triangles
    verts[3, :, :2] = np.round(verts[3, :, :2])                       # edges through pixel centres' neighbours
    verts[3, :, :2] += 0.5                                            # ... and through pixel centres
    verts[4, :, :2] *= 0.05                                           # tiny triangles in one corner
    got = depth_pass(verts, tris, h, w)
    want = reference_depth(verts, tris, h, w)
    assert (want != FAR).sum() > 200
    assert np.array_equal(got, want)
    only = depth_pass(verts, tris, h, w, np.array([2, 4]))
    assert np.array_equal(only[[2, 4]], want[[2, 4]]) and (only[[0, 1, 3]] == FAR).all()


def turned_faces(n: int, seed: int = 0) -> np.ndarray:
    """Template landmarks turned (yaw, pitch, roll up to 35 degrees), scaled and shifted: [n, 68, 3]."""
    rng = np.random.default_rng(seed)
    lm = template_landmarks()
    centre = lm.mean(0)
    out = []
    for _ in range(n):
        r = rotation_matrix(*rng.uniform(-35, 35, 3))
        out.append((lm - centre) @ r.T * rng.uniform(0.8, 1.2) + centre + [*rng.uniform(-6, 6, 2), 0])
    return np.stack(out).astype(F32)


def rows(n: int, seed: int, textures: int, tint_p: float = 0.0) -> np.ndarray:
    from faceocc.ops.profiles import MaskRender

    return sample_render(n, np.random.default_rng(seed), textures, MaskRender(tint_p=tint_p, tint=(0.3, 1.2)))


def test_twin_leaves_undrawn_rows_alone_and_tints_the_others():
    faces = real_faces(4, seed=3)
    mesh = MaskMesh(load_textures()[0])
    lm = turned_faces(4, seed=1)
    plain = rows(4, 2, len(mesh.textures))
    tinted = plain.copy()
    tinted["tint"] = [[0.5, 1.0, 1.0], [1.0, 0.25, 1.0], [1.0, 1.0, 1.0], [1.2, 1.2, 1.2]]
    skipped = plain.copy()
    skipped["texture"][1] = -1
    out0, mask0 = mesh.render(faces, lm, plain)
    out1, mask1 = mesh.render(faces, lm, tinted)
    out2, mask2 = mesh.render(faces, lm, skipped)
    assert np.array_equal(mask0, mask1) and (mask0 == 0).mean() > 0.1
    covered = mask0[0] == 0
    assert (out1[0][covered][:, 0] <= out0[0][covered][:, 0]).all() and \
        (out1[0][covered][:, 0] < out0[0][covered][:, 0]).mean() > 0.5                # red halved
    assert np.array_equal(out1[2], out0[2])                                             # tint 1: unchanged
    assert np.array_equal(out2[1], faces[1]) and (mask2[1] == 255).all()
    assert np.array_equal(out2[[0, 2, 3]], out0[[0, 2, 3]]) and np.array_equal(mask2[[0, 2, 3]], mask0[[0, 2, 3]])
    with pytest.raises(ValueError, match="texture 9"):
        bad = plain.copy()
        bad["texture"][2] = 9
        mesh.render(faces, lm, bad)


@pytest.mark.kernels_on_cpu
@requires_gxx
def test_surface_kernel_is_bit_identical_to_the_twin(cp):
    from faceocc.ops.raster_gpu import GpuRasterizer

    mesh = MaskMesh(load_textures()[0])
    lm = turned_faces(12, seed=4)
    lm[5] = lm[5][:, :] * 0 + lm[5][30]               # every point on the nose tip: a jaw of length 0
    params = rows(12, 5, len(mesh.textures))
    params["texture"][7] = -1
    got = cp.asnumpy(GpuRasterizer(mesh).vertices(lm, params))
    want = mesh.surface(lm, params)
    assert got.dtype == want.dtype == np.float32 and got.shape == want.shape
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.kernels_on_cpu
@requires_gxx
@pytest.mark.parametrize("size", [(112, 112), (64, 56)])
def test_raster_kernel_matches_the_twin_with_tint_and_undrawn_rows(cp, size):
    from faceocc.ops.raster_gpu import GpuRasterizer

    mesh = MaskMesh(load_textures()[0])
    n = 8
    faces = real_faces(n, size, seed=7)
    lm = turned_faces(n, seed=8) * np.array([size[1] / 112, size[0] / 112, size[1] / 112], F32)
    params = rows(n, 9, len(mesh.textures), tint_p=0.7)
    params["texture"][[2, 5]] = -1
    gpu = GpuRasterizer(mesh)
    device_rows = cp.asarray(np.ascontiguousarray(params).view(np.uint8).reshape(n, RENDER_DTYPE.itemsize))
    # host rows and float32 landmarks; device rows and float16 landmarks (as the loader passes them)
    for landmarks, given in ((lm, params), (lm.astype(np.float16), device_rows)):
        want_out, want_mask = mesh.render(faces, landmarks, params)
        got_out, got_mask = (cp.asnumpy(a) for a in gpu.render(faces, landmarks, given))
        assert (want_mask == 0).sum() > 30 * n
        assert np.array_equal(got_mask, want_mask)
        assert np.abs(got_out.astype(int) - want_out.astype(int)).max() <= 1
        assert np.array_equal(got_out[[2, 5]], faces[[2, 5]]) and (got_mask[[2, 5]] == 255).all()


def test_depth_pass_in_pieces_equals_it_whole(monkeypatch):
    """depth_pass splits a group of triangles to bound its memory; a per-pixel minimum does not depend on
    the split."""
    import faceocc.ops.raster as raster

    rng = np.random.default_rng(3)
    tris = grid_triangles(6, 5)
    verts = rng.uniform(-10, 40, (3, 42, 3)).astype(F32)
    whole = depth_pass(verts, tris, 31, 29)
    monkeypatch.setattr(raster, "DRAW_BUDGET", 64)
    assert np.array_equal(depth_pass(verts, tris, 31, 29), whole) and (whole != FAR).any()


HOSTILE_JAW = """
import numpy as np
from faceocc.ops.mask_textures import load_textures
from faceocc.ops.params import RENDER_DTYPE
from faceocc.ops.raster import MaskMesh
mesh = MaskMesh(load_textures()[0])
n, s = 16, 224
lm = np.full((n, 68, 3), s / 2, np.float32)
lm[..., 2] = 0
for i in range(2, 15):                     # a jaw zig-zagging between far corners: every triangle covers the image
    lm[:, i, 0] = -30000 if i % 2 else 30000
    lm[:, i, 1] = -30000 if (i // 2) % 2 else 30000
p = np.zeros(n, RENDER_DTYPE)
p["top"], p["ambient"], p["gain"], p["light"], p["tint"] = 0.4, 0.6, 1, (0, 0, 1), 1
faces = np.zeros((n, s, s, 3), np.uint8)
cap(300)
out, mask = mesh.render(faces, lm, p)
assert out.shape == (n, s, s, 3)
"""


def test_hostile_geometry_renders_within_a_memory_cap():
    """Bound tested: 300 MiB over the imports for 16 faces at 224 x 224 whose jaw points lie at +-30000
    (finite, so a geometry record may hold them): 1.4 GB before the depth pass was split, about 80 MB now."""
    from hostile import run_capped

    done = run_capped(HOSTILE_JAW)
    assert done.returncode == 0, done.stderr[-2000:]
