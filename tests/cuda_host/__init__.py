"""Running the project's CUDA sources and CuPy launchers on the CPU, for tests (see README.md here).

``installed()`` puts :mod:`cuda_host.fake_cupy` in ``sys.modules["cupy"]`` for the duration of a test, so
that ``ops/gpu.py``, ``ops/raster_gpu.py`` and everything above them run unchanged with the kernels compiled by
g++. Nothing outside tests/ imports this package.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from . import fake_cupy

HERE = Path(__file__).resolve().parent
GXX = shutil.which("g++")
NO_GXX = ("g++ not found: the CUDA sources cannot be compiled on the CPU, so the kernels_on_cpu tests are "
          "skipped (install g++ >= 12 to run them)")
# CI (FACEOCC_REQUIRE_ORACLES=1) runs them regardless, so that a missing g++ fails instead of skipping
requires_gxx = pytest.mark.skipif(GXX is None and os.environ.get("FACEOCC_REQUIRE_ORACLES") != "1", reason=NO_GXX)


@contextlib.contextmanager
def installed(device_count: int = 1) -> Iterator:
    """The fake CuPy as ``cupy`` (knobs reset, ``device_count`` devices) until the block ends."""
    saved = sys.modules.get("cupy")
    fake_cupy.reset()
    fake_cupy.DEVICE_COUNT = device_count
    sys.modules["cupy"] = fake_cupy
    try:
        yield fake_cupy
    finally:
        fake_cupy.reset()
        if saved is None:
            sys.modules.pop("cupy", None)
        else:
            sys.modules["cupy"] = saved


def session_build(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The one build folder of a test session (every kernel variant compiled once per session)."""
    path = tmp_path_factory.getbasetemp() / "cuda-host-build"
    path.mkdir(exist_ok=True)
    return str(path)


def shared_dir(name: str) -> Path | None:
    """A non-empty folder of ../shared/data, or None."""
    p = HERE.parents[2] / "shared" / "data" / name
    return p if p.is_dir() and any(p.iterdir()) else None


def imports_on_the_null_stream(cp, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the fake's ``from_dlpack`` import every tensor on CuPy's null stream instead of the current
    one: the control of the stream tests (a cross-stream read without synchronization, which the fake
    reports as a race)."""
    real = cp.from_dlpack
    null = cp.cuda.Stream(null=True)

    def on_the_null_stream(x):
        with null:
            return real(x)

    monkeypatch.setattr(cp, "from_dlpack", on_the_null_stream)


def real_faces(n: int, size: tuple[int, int] = (112, 112), seed: int = 0) -> np.ndarray:
    """``n`` faces [n, H, W, 3] uint8: the shared sample faces when present (else insightface's sample
    face), resized, then jittered views of them."""
    from PIL import Image

    from faceocc.datasets.example import base_face, jittered, load_face

    folder = shared_dir("faces")
    sources = [load_face(p, 112) for p in sorted(folder.iterdir())] if folder else [base_face(112)]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        face = sources[i % len(sources)]
        if i >= len(sources):
            face = jittered(face, rng, rng.uniform(0.9, 1.1, 3).astype(np.float32))
        if face.shape[:2] != tuple(size):
            face = np.asarray(Image.fromarray(face).resize((size[1], size[0]), Image.BILINEAR))
        out.append(face)
    return np.stack(out)


def rendered_masks(faces: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Masked faces and masks (0 where masked) of ``faces`` from the project's CPU renderer, with the
    shared mask textures when present."""
    from faceocc.render.renderer import MaskRenderer

    r = MaskRenderer(tuple(faces.shape[1:3]), device="cpu", textures=shared_dir("mask_textures"))
    out, mask = r.render(faces, r.sample(len(faces), np.random.default_rng(seed)))
    return np.asarray(out), np.asarray(mask)


def run_under_asan(script: str, *args: str, build: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs ``python cuda_host/<script> args`` in a fresh process with kernels built by
    ``g++ -fsanitize=address`` and libasan preloaded (so that NumPy's buffers get redzones too)."""
    lib = subprocess.run([GXX or "g++", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(lib):
        missing = pytest.fail if os.environ.get("FACEOCC_REQUIRE_ORACLES") == "1" else pytest.skip
        missing("libasan.so not found (g++ -print-file-name=libasan.so): install g++'s AddressSanitizer runtime")
    root = HERE.parents[1]
    env = dict(os.environ, LD_PRELOAD=lib, CUDA_HOST_BUILD=str(build), PYTHONDONTWRITEBYTECODE="1",
               CUDA_HOST_CXXFLAGS="-O1 -g -fsanitize=address -fno-omit-frame-pointer",
               ASAN_OPTIONS="detect_leaks=0:detect_stack_use_after_return=0:abort_on_error=0",
               PYTHONPATH=os.pathsep.join([str(root), str(HERE.parent), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, str(HERE / script), *args], env=env, cwd=root, capture_output=True,
                          text=True, timeout=timeout)
