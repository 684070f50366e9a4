"""GPU tests: what they need, and what happens when it is missing.

A test marked ``gpu`` needs CuPy and a CUDA device; one marked ``gpu`` and ``dali`` needs NVIDIA DALI and
torch's CUDA too. Without them it is skipped, except with ``FACEOCC_REQUIRE_GPU=1`` (set by
``benchmarks/gpu_run.sh`` on a GPU machine), where it fails and says what is missing: a broken CuPy
or DALI on the GPU machine must not look like a green run. ``tests/conftest.py`` applies this to
every test so marked (``pytest_runtest_setup``).
"""

from __future__ import annotations

import functools
import os

import pytest


def gpu_required() -> bool:
    """True where a missing GPU, CuPy or DALI is a failure rather than a skip."""
    return os.environ.get("FACEOCC_REQUIRE_GPU") == "1"


@functools.cache
def cupy_problem() -> str | None:
    """None when CuPy imports and sees a CUDA device; else what is wrong."""
    try:
        import cupy
    except Exception as err:
        return f"CuPy does not import ({type(err).__name__}: {err})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:
        return f"CuPy sees no CUDA device ({type(err).__name__}: {err})"
    return None if count > 0 else "CuPy sees no CUDA device (device count 0)"


@functools.cache
def dali_problem() -> str | None:
    """None when NVIDIA DALI imports and sees a CUDA device and torch has CUDA; else what is wrong."""
    try:
        from nvidia.dali import backend
    except Exception as err:
        return f"NVIDIA DALI does not import ({type(err).__name__}: {err})"
    try:
        count = backend.GetCUDADeviceCount()
    except Exception as err:
        return f"DALI sees no CUDA device ({type(err).__name__}: {err})"
    if count < 1:
        return "DALI sees no CUDA device (device count 0)"
    import torch

    return None if torch.cuda.is_available() else "torch has no CUDA device"


def check(item: pytest.Item) -> None:
    """Skip (or, with FACEOCC_REQUIRE_GPU=1, fail) a ``gpu`` test whose GPU, CuPy or DALI is missing."""
    if item.get_closest_marker("gpu") is None:
        return
    problem = cupy_problem()
    if problem is None and item.get_closest_marker("dali") is not None:
        problem = dali_problem()
    if problem is None:
        return
    if gpu_required():
        pytest.fail(f"FACEOCC_REQUIRE_GPU=1 but {problem}", pytrace=False)
    pytest.skip(f"needs a CUDA GPU with CuPy{' and DALI' if item.get_closest_marker('dali') else ''}: {problem}")


def second_device() -> int | None:
    """A CUDA device other than the current one, or None on a machine with one."""
    import cupy

    count = cupy.cuda.runtime.getDeviceCount()
    current = cupy.cuda.runtime.getDevice()
    return next((d for d in range(count) if d != current), None)


requires_gpu = pytest.mark.gpu                              # kept for the modules that use it
requires_dali_gpu = [pytest.mark.gpu, pytest.mark.dali]     # pytestmark of the DALI GPU tests
