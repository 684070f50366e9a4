"""The CUDA sources, executed on the CPU (g++ and the fake CuPy of tests/cuda_host), through the project's
own launchers (``FaceOccluder(device="gpu")`` -> ops/gpu.py, ``MaskRenderer(device="gpu")`` ->
render/gpu.py) against the NumPy spec (ops.reference, render.raster): real faces and rendered masks,
every built-in profile, float32 and float16, grayscale, normalization off, odd sizes, batches of one,
fuzzed tables, shuffled block order; the C structs against the NumPy dtypes; the kernels under
AddressSanitizer. Run alone with ``pytest -m kernels_on_cpu``.

Outputs are compared generically, from the spec's own keys, shapes and dtypes: integer outputs
(``msk``, ``kind``) must be identical, float outputs (``img``, ``ori``) within 1/255 of the [0, 1] range
(float16: plus its rounding), and never NaN (the fake's ``empty`` is NaN-filled, so an unwritten
output element fails).
"""

from __future__ import annotations

import dataclasses
import re
import subprocess

import numpy as np
import pytest
from cuda_host import (
    GXX,
    installed,
    real_faces,
    rendered_masks,
    requires_gxx,
    run_under_asan,
    session_build,
    shared_dir,
)
from cuda_host.tables import fuzzed_table, mask_inputs
from faceocc.ops import FaceOccluder, Kind, load_profile
from faceocc.ops.profiles import BUILTIN
from faceocc.ops.reference import apply_reference

pytestmark = [pytest.mark.kernels_on_cpu, requires_gxx]
PROFILES = sorted(p.stem for p in BUILTIN.glob("*.yaml"))


@pytest.fixture(scope="session")
def build(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One build folder per test session: each kernel variant is compiled once."""
    return session_build(tmp_path_factory)


@pytest.fixture
def cp(build: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CUDA_HOST_BUILD", build)
    with installed() as fake:
        yield fake


@pytest.fixture(scope="module")
def faces112() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    faces = real_faces(10, (112, 112), seed=1)
    return (faces, *rendered_masks(faces, seed=1))


def assert_matches_spec(got: dict, want: dict, normalize: bool, dtype: object, what: str = "") -> None:
    """Every output of the spec, with the same shape and dtype; integers identical, floats within 1/255."""
    import cupy

    assert set(got) == set(want), f"{what}: kernel outputs {sorted(got)}, spec outputs {sorted(want)}"
    scale = 0.5 if normalize else 1.0
    tol = 1 / 255 + (2e-3 if np.dtype(dtype) == np.float16 else 0.0)
    for key, w in want.items():
        g = cupy.asnumpy(got[key])
        assert (g.shape, g.dtype) == (w.shape, w.dtype), \
            f"{what} {key}: kernel {g.shape} {g.dtype}, spec {w.shape} {w.dtype}"
        if w.dtype.kind in "iub":
            bad = np.argwhere(g != w)
            assert bad.size == 0, f"{what} {key}: {len(bad)} elements differ, first at {bad[0].tolist()}"
        else:
            g, w = g.astype(np.float32), w.astype(np.float32)
            assert not np.isnan(g).any(), f"{what} {key}: {int(np.isnan(g).sum())} elements never written"
            diff = np.abs(g - w) * scale
            worst = np.unravel_index(np.argmax(diff), diff.shape)
            assert diff.max() <= tol, f"{what} {key}: max diff {diff.max() * 255:.3f}/255 at {list(worst)}"


def run_both(occ_gpu: FaceOccluder, table: np.ndarray, faces: np.ndarray, masked: np.ndarray, masks: np.ndarray,
             what: str) -> dict:
    """The kernel (through FaceOccluder.apply) against apply_reference on one table; returns the kernel's."""
    mf, mk = mask_inputs(table, masked, masks)
    p = occ_gpu.profile
    want = apply_reference(faces, table, occ_gpu.bank.atlas, mf, mk, settings=occ_gpu.settings)
    got = occ_gpu.apply(faces, table, mf, mk)
    assert_matches_spec(got, want, p.normalize, occ_gpu.dtype, what)
    return got


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["f32", "f16"])
@pytest.mark.parametrize("profile", PROFILES)
def test_occlude_matches_spec_on_real_faces(cp, faces112, profile, dtype):
    faces, masked, masks = faces112
    occ = FaceOccluder(profile, device="gpu", seed=3, dtype=dtype)
    table = occ.sample(len(faces), batch=0)
    run_both(occ, table, faces, masked, masks, f"{profile} {np.dtype(dtype).name}")
    assert [e.name for e in cp.LOG if e.op == "launch"] == ["occlude_pass1", "occlude_pass2"]


@pytest.mark.parametrize("grayscale, normalize, dtype", [(True, True, np.float32), (False, False, np.float32),
                                                         (True, False, np.float16)])
def test_occlude_grayscale_and_unnormalized(cp, faces112, grayscale, normalize, dtype):
    faces, masked, masks = faces112
    base = load_profile("ms1m")
    prof = dataclasses.replace(base, grayscale=grayscale, normalize=normalize)
    occ = FaceOccluder(prof, device="gpu", seed=5, dtype=dtype)
    run_both(occ, occ.sample(6, batch=1), faces[:6], masked, masks, f"grayscale={grayscale} normalize={normalize}")


@pytest.mark.parametrize("size", [(37, 53), (113, 97)])
def test_occlude_odd_sizes(cp, size):
    faces = real_faces(4, size, seed=2)
    masked, masks = rendered_masks(faces, seed=2)
    occ = FaceOccluder("casia", size=size, device="gpu", seed=7)
    run_both(occ, occ.sample(len(faces), batch=2), faces, masked, masks, f"size {size}")


@pytest.mark.parametrize("kind", list(Kind), ids=[k.name.lower() for k in Kind])
def test_occlude_batch_of_one_each_kind(cp, faces112, kind):
    faces, masked, masks = faces112
    prof = dataclasses.replace(load_profile("ms1m"), kinds={kind.name.lower(): 1.0})
    occ = FaceOccluder(prof, device="gpu", seed=11)
    table = occ.sample(1, batch=3)
    assert table["kind"][0] == kind
    run_both(occ, table, faces[:1], masked[:1], masks[:1], f"one {kind.name.lower()}")


@pytest.mark.parametrize("seed", range(4))
def test_occlude_fuzzed_tables(cp, seed):
    size = [(48, 40), (64, 64), (31, 77), (112, 112)][seed]
    faces = real_faces(8, size, seed=seed)
    masked, masks = rendered_masks(faces, seed=seed)
    occ = FaceOccluder("ms1m", size=size, device="gpu", dtype=[np.float32, np.float16][seed % 2])
    table = fuzzed_table(np.random.default_rng(seed), len(faces), size, occ.bank.sizes)
    run_both(occ, table, faces, masked, masks, f"fuzz seed {seed}")


def test_polygons_of_fewer_than_three_vertices_match_the_spec(cp, faces112):
    faces, masked, masks = faces112
    occ = FaceOccluder(dataclasses.replace(load_profile("ms1m"), kinds={"polygon": 1.0}), device="gpu", seed=2)
    table = occ.sample(6, batch=4)
    table["n_vertices"] = np.arange(6) % 3                      # 0, 1, 2 vertices: nothing, a dot, a line
    run_both(occ, table, faces[:6], masked, masks, "degenerate polygons")


def test_mask3d_light_with_sigma_zero_matches_the_kernel(cp, faces112):
    """Defect: the kernel takes 2 sigma^2 = 1 when sigma is 0, the spec divided by zero (NaN at the centre)."""
    faces, masked, masks = faces112
    occ = FaceOccluder(dataclasses.replace(load_profile("ms1m"), kinds={"mask3d": 1.0}), device="gpu", seed=2)
    table = occ.sample(3)
    table["m3d_mode"] = 1
    table["m3d"][:, 2] = 0.0
    table["m3d"][:, :2] = [[40.5, 80.5]] * 3      # a pixel centre: d = 0 there, where 0 / 0 was NaN
    got = run_both(occ, table, faces[:3], masked, masks, "sigma 0")
    assert np.isfinite(cp.asnumpy(got["img"])).all()


def test_shuffled_block_order_gives_identical_output(cp, faces112):
    faces, masked, masks = faces112
    occ = FaceOccluder("ms1m", device="gpu", seed=9)
    table = occ.sample(5, batch=4)
    mf, mk = mask_inputs(table, masked, masks)
    runs = []
    for order in (0, 12345):
        cp.ORDER_SEED = order
        runs.append({k: cp.asnumpy(v) for k, v in occ.apply(faces[:5], table, mf, mk).items()})
    for key in runs[0]:
        assert np.array_equal(runs[0][key].view(np.uint8), runs[1][key].view(np.uint8)), key


# -- the rasterizer ---------------------------------------------------------------------------------

@pytest.mark.parametrize("size, n, textures", [((112, 112), 6, "default"), ((112, 112), 4, "shared"),
                                                ((45, 39), 3, "default"), ((112, 112), 1, "default")])
def test_raster_matches_spec(cp, size, n, textures):
    from faceocc.render.renderer import MaskRenderer

    folder = None
    if textures == "shared":
        folder = shared_dir("mask_textures")
        if folder is None:
            pytest.skip("../shared/data/mask_textures not present")
    faces = real_faces(n, size, seed=5)
    cpu, gpu = MaskRenderer(size, device="cpu", textures=folder), MaskRenderer(size, device="gpu", textures=folder)
    params = cpu.sample(n, np.random.default_rng(n))
    want_out, want_mask = cpu.render(faces, params)
    got_out, got_mask = (cp.asnumpy(a) for a in gpu.render(faces, params))
    assert (want_mask == 0).sum() > 50 * n                   # the masks cover something
    assert np.array_equal(got_mask, want_mask)
    assert np.abs(got_out.astype(int) - want_out.astype(int)).max() <= 1


def test_raster_shuffled_block_order_gives_identical_output(cp):
    from faceocc.render.renderer import MaskRenderer

    faces = real_faces(4, seed=6)
    gpu = MaskRenderer(device="gpu")
    params = gpu.sample(4, np.random.default_rng(3))
    runs = []
    for order in (0, 777):
        cp.ORDER_SEED = order
        runs.append([cp.asnumpy(a) for a in gpu.render(faces, params)])
    assert all(np.array_equal(a, b) for a, b in zip(*runs))


# -- C struct layout against the NumPy dtypes -----------------------------------------------------

C_TYPES = {"i1": "signed char", "u1": "unsigned char", "i2": "short", "u2": "unsigned short", "i4": "int",
           "u4": "unsigned int", "i8": "long long", "u8": "unsigned long long", "f2": "__half", "f4": "float",
           "f8": "double"}


def c_struct(source: str, name: str) -> tuple[str, list[str]]:
    """The text of ``struct name { ... };`` (after the source's ``#define`` lines it may use) and its
    member names in order."""
    m = re.search(r"struct\s+" + name + r"\s*\{(.*?)\};", source, re.S)
    assert m, f"no struct {name} found"
    defines = "\n".join(re.findall(r"^[ \t]*#[ \t]*define[^\n]*", source, re.M))
    body = re.sub(r"//[^\n]*|/\*.*?\*/", "", m.group(1), flags=re.S)
    members = [re.match(r"\s*[\w\s]+?\b(\w+)\s*(\[[^\]]*\])*\s*$", d).group(1) for d in body.split(";") if d.strip()]
    return defines + "\n" + m.group(0), members


def layout_probe(struct: str, name: str, dtype: np.dtype) -> str:
    """A C++ file of static_asserts: every field's offset, size and element type, and the struct's size."""
    lines = ["#include <cstddef>", "#include <type_traits>", "struct __half { unsigned short x; };", struct]
    for field in dtype.names:
        sub, offset = dtype.fields[field][:2]
        base = sub.base if sub.shape else sub
        ctype = C_TYPES[f"{base.kind}{base.itemsize}"]
        lines += [f'static_assert(offsetof({name}, {field}) == {offset}, "{name}.{field}: offset differs from '
                  f'numpy ({offset})");',
                  f'static_assert(sizeof((({name}*)0)->{field}) == {sub.itemsize}, "{name}.{field}: size differs '
                  f'from numpy ({sub.itemsize})");',
                  f'static_assert(std::is_same_v<std::remove_all_extents_t<decltype({name}::{field})>, {ctype}>, '
                  f'"{name}.{field}: element type differs from numpy ({ctype})");']
    lines.append(f'static_assert(sizeof({name}) == {dtype.itemsize}, "sizeof({name}) differs from numpy '
                 f'({dtype.itemsize})");')
    return "\n".join(lines) + "\n"


def compile_probe(tmp_path, struct: str, name: str, dtype: np.dtype) -> list[str]:
    """The static_assert messages g++ reports for the probe (empty: the layouts agree)."""
    src = tmp_path / f"{name}.cpp"
    src.write_text(layout_probe(struct, name, dtype))
    done = subprocess.run([GXX or "g++", "-std=c++17", "-fsyntax-only", str(src)], capture_output=True, text=True)
    return re.findall(r'static assertion failed[^"]*"([^"]*)"', done.stderr) or (
        [done.stderr.strip()] if done.returncode else [])


def layouts() -> list[tuple[str, str, np.dtype]]:
    from faceocc.ops.gpu import HERE as OPS
    from faceocc.ops.params import PARAM_DTYPE
    from faceocc.render.gpu import HERE as RENDER
    from faceocc.render.raster import RENDER_DTYPE

    return [("Params", (OPS / "params.cuh").read_text(), PARAM_DTYPE),
            ("RenderParams", (RENDER / "raster.cu").read_text(), RENDER_DTYPE)]


@pytest.mark.parametrize("index", [0, 1], ids=["Params", "RenderParams"])
def test_c_struct_layout_matches_numpy_dtype(tmp_path, index):
    name, source, dtype = layouts()[index]
    struct, members = c_struct(source, name)
    assert members == list(dtype.names), f"{name}: C members {members}, numpy fields {list(dtype.names)}"
    assert compile_probe(tmp_path, struct, name, dtype) == []


def test_layout_probe_catches_a_planted_mismatch(tmp_path):
    name, source, dtype = layouts()[0]
    struct, _ = c_struct(source, name)
    first, second = dtype.names[0], dtype.names[1]
    swapped = re.sub(rf"\b({first}|{second})\b", lambda m: second if m.group(1) == first else first, struct)
    errors = compile_probe(tmp_path, swapped, name, dtype)
    assert any(f"{name}.{first}: offset" in e for e in errors), errors
    floats = [f for f in dtype.names if (dtype.fields[f][0].base.kind == "f")]
    if floats:                                     # same size, other element type
        retyped = re.sub(rf"\bfloat(\s+{floats[0]}\b)", r"int\1", struct)
        assert any(f"{name}.{floats[0]}: element type" in e for e in compile_probe(tmp_path, retyped, name, dtype))


# -- AddressSanitizer -------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def asan_build(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("cuda-host-asan-build")


def test_kernels_under_address_sanitizer(asan_build):
    done = run_under_asan("asan_check.py", "kernels", build=asan_build)
    report = done.stderr[done.stderr.find("ERROR: AddressSanitizer"):][:3000]
    assert done.returncode == 0 and "ASAN CLEAN" in done.stdout, report or done.stderr[-3000:]


def test_address_sanitizer_catches_a_planted_out_of_bounds_read(asan_build):
    done = run_under_asan("asan_check.py", "planted", build=asan_build)
    assert done.returncode != 0 and "NOT DETECTED" not in done.stdout
    assert "heap-buffer-overflow" in done.stderr and "in planted" in done.stderr, done.stderr[-2000:]
