"""The GPU glue around the kernels, run on the CPU with the fake CuPy of tests/cuda_host (which records the
device and stream of every allocation and launch, and fails cross-device and cross-stream accesses):
devices (multi-GPU), streams (DALI's), the kernel cache key, device faces in the renderer; and the
sigma-0 rule of the spec and the profile."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
from cuda_host import real_faces, requires_gxx
from faceocc.ops import FaceOccluder, load_profile
from faceocc.ops.reference import apply_reference
from faceocc.ops.settings import ApplySettings


def on_cpu(test):
    """Marks a test that runs CUDA code through the fake CuPy (needs g++)."""
    return pytest.mark.kernels_on_cpu(requires_gxx(test))


def dali_stream(cp):
    """What DALI's python_function does around the function: a CuPy stream object pointed at DALI's own
    (non-blocking) stream, made current."""
    s = cp.cuda.Stream(null=True)
    s.ptr = 0xDA11
    return s


@on_cpu
def test_occluder_keeps_every_allocation_and_launch_on_its_device(cp):
    faces = real_faces(3)
    occ = FaceOccluder("ms1m", device="gpu", seed=1, device_id=1)     # built while device 0 is current
    table = occ.sample(3)
    table["m3d_slot"] = -1
    table["kind"][table["kind"] == 7] = 0
    with cp.cuda.Device(1), dali_stream(cp):                          # DALI's thread on rank 1
        got = {k: cp.asnumpy(v) for k, v in occ.apply(cp.asarray(faces), table).items()}
    assert cp.LOG and {e.device for e in cp.LOG} == {1}
    assert {e.stream for e in cp.LOG if e.op == "launch"} == {0xDA11}
    want = apply_reference(faces, table, occ.bank.atlas, settings=ApplySettings(dtype=np.float32))
    assert np.array_equal(got["msk"], want["msk"])
    assert np.abs(got["img"] - want["img"]).max() <= 2 / 255


def _without_3d_masks(profile: str, **kw) -> FaceOccluder:
    """An occluder whose tables have no 3D-mask rows (these tests pass no renders)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return FaceOccluder(profile, has_masks=False, **kw)


@on_cpu
def test_faces_on_another_device_are_refused_by_name(cp):
    occ = _without_3d_masks("ms1m", device="gpu")                     # device 0
    with cp.cuda.Device(1):
        faces = cp.asarray(real_faces(2))
    with pytest.raises(ValueError, match="faces are on device 1 but this occluder lives on device 0"):
        occ.apply(faces, occ.sample(2))


@on_cpu
def test_constant_uploads_are_visible_on_dalis_stream(cp, monkeypatch):
    faces = real_faces(2)
    with dali_stream(cp):
        table = np.asarray(_without_3d_masks("casia").sample(2))
        _without_3d_masks("casia", device="gpu").apply(cp.asarray(faces), table)
    # without the synchronization at construction the same call is a race (the test can fail)
    monkeypatch.setattr(cp.Stream, "synchronize", lambda self: None)
    occ = _without_3d_masks("casia", device="gpu")
    with dali_stream(cp), pytest.raises(cp.CUDARuntimeError, match="race"):
        occ.apply(cp.asarray(faces), occ.sample(2))


@on_cpu
def test_kernel_cache_key_covers_included_headers(cp, tmp_path):
    """CuPy hashes the source string and the options, not the files it includes: a reordered struct of the
    same size would reuse a stale binary. ``kernel_source`` inlines the header, so the key changes."""
    from faceocc.ops.gpu import kernel_source

    kernel = tmp_path / "k.cu"
    kernel.write_text('#include "row.cuh"\nextern "C" __global__ void first(const Row* r, int* out) '
                      '{ out[0] = r->a; }\n')
    rows = np.array([1, 2], np.int32).view(np.uint8)                       # one row, as the launchers upload it

    def run(code, options=()):
        out = cp.zeros(1, cp.int32)
        cp.RawModule(code=code, options=options).get_function("first")((1,), (1,), (cp.asarray(rows), out))
        return int(cp.asnumpy(out)[0])

    (tmp_path / "row.cuh").write_text("struct Row { int a; int b; };\n")
    assert run(kernel.read_text(), (f"-I{tmp_path}",)) == 1
    assert run(kernel_source(kernel)) == 1
    (tmp_path / "row.cuh").write_text("struct Row { int b; int a; };\n")      # same size, reordered
    assert run(kernel.read_text(), (f"-I{tmp_path}",)) == 1                   # stale binary: CuPy's behaviour
    assert run(kernel_source(kernel)) == 2                                     # header in the key: rebuilt


def test_occlude_source_has_its_header_inlined():
    from faceocc.ops.gpu import HERE, kernel_source

    source = kernel_source(HERE / "occlude.cu")
    assert '#include "' not in source
    assert (HERE / "params.cuh").read_text().strip() in source


@on_cpu
def test_renderer_computes_landmarks_from_device_faces(cp):
    from faceocc.render.renderer import MaskRenderer

    faces = real_faces(3)
    r = MaskRenderer(device="gpu")
    seen = []
    source = r.landmarks
    r.landmarks = lambda f: (seen.append(np.array(f)), source(f))[1]
    params = r.sample(3, np.random.default_rng(0))
    got = [cp.asnumpy(a) for a in r.render(cp.asarray(faces), params)]
    want = [cp.asnumpy(a) for a in r.render(faces, params)]
    assert len(seen) == 2 and np.array_equal(seen[0], faces) and np.array_equal(seen[1], faces)
    assert all(np.array_equal(a, b) for a, b in zip(got, want))


@on_cpu
def test_render_command_runs_on_local_rank(cp, small_dataset, monkeypatch):
    from faceocc.cli import main

    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert main(["render", str(small_dataset), "--device", "gpu", "--workers", "2"]) == 0
    launches = [e for e in cp.LOG if e.op == "launch"]
    assert launches and {e.device for e in cp.LOG} == {1}
    assert (small_dataset / "mask.rec").is_file() and (small_dataset / "mask_out.rec").is_file()


def test_spec_guards_mask3d_light_sigma_zero_as_the_kernel_does():
    """The kernel takes 2 sigma^2 = 1 when sigma is 0; the spec divided by zero (NaN at the centre, no
    light elsewhere). With the guard, sigma 0 gives exactly what sigma = 1/sqrt(2) gives."""
    occ = FaceOccluder(dataclasses.replace(load_profile("ms1m"), kinds={"mask3d": 1.0}), seed=2)
    faces = real_faces(2)
    t = occ.sample(2)
    t["m3d_mode"], t["m3d_slot"], t["flip"], t["light"] = 1, [0, 1], 0, 0
    t["m3d_channels"] = 1
    t["box"] = [0, 0, 112, 112]
    t["m3d"] = [40.0, 60.0, 0.0, 0.4]                               # sigma 0, amplitude 0.4
    masks = np.zeros(faces.shape[:3], np.uint8)                     # the whole face is mask
    img = apply_reference(faces, t, occ.bank.atlas, faces, masks, settings=ApplySettings(normalize=False))["img"]
    assert np.isfinite(img).all()
    t["m3d"][:, 2] = np.float32(np.sqrt(0.5))
    same = apply_reference(faces, t, occ.bank.atlas, faces, masks, settings=ApplySettings(normalize=False))["img"]
    assert np.allclose(img, same, atol=1e-6)
    t["m3d_mode"] = 0
    plain = apply_reference(faces, t, occ.bank.atlas, faces, masks, settings=ApplySettings(normalize=False))["img"]
    assert not np.allclose(img, plain, atol=1e-3)                   # the light did change the mask pixels


@pytest.mark.parametrize("field, value", [("mask3d.light_sigma", 0.0), ("lighting.sigma", 0.0),
                                          ("mask3d.light_sigma", -1.0)])
def test_profile_refuses_a_zero_or_negative_sigma(field, value):
    section, name = field.split(".")
    p = load_profile("ms1m")
    bad = dataclasses.replace(p, **{section: dataclasses.replace(getattr(p, section), **{name: value})})
    with pytest.raises(ValueError, match=field.replace(".", r"\.") + r".*must be a number in \[1, "):
        bad.validate()
