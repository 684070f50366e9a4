"""GPU availability for tests: CuPy importable and a CUDA device present."""

from __future__ import annotations

import pytest


def gpu_available() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


requires_gpu = pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU with CuPy")
