"""Shared test helpers: fixture locations, the optional shared data, small datasets made on the fly."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
MXNET_FIXTURES = FIXTURES / "mxnet"
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(*parts: str) -> Path | None:
    """A path under ../shared/data when that folder exists, else None."""
    p = SHARED_DATA.joinpath(*parts)
    return p if p.exists() else None


def jpeg_bytes(img: np.ndarray, quality: int = 95) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def random_face(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """A smooth random RGB image (decodes like a photo, not like noise)."""
    coarse = rng.integers(0, 256, size=(4, 4, 3)).astype(np.float32)
    img = np.kron(coarse, np.ones((size // 4, size // 4, 1), np.float32))
    return np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def small_dataset(tmp_path: Path) -> Path:
    """An InsightFace-layout dataset: 4 identities x 3 images of 32 x 32."""
    from faceocc.datasets.pack import write_insightface

    rng = np.random.default_rng(0)
    items = [(label, jpeg_bytes(random_face(rng))) for label in range(4) for _ in range(3)]
    return write_insightface(tmp_path / "ds", items, image_size=(32, 32))


@pytest.fixture(scope="session")
def faces_with_masks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 faces of 6 identities (112 x 112) with key-aligned mask_out/mask records; read-only: a test
    that changes a dataset makes its own."""
    from datasets import add_masks, face_dataset

    folder = face_dataset(tmp_path_factory.mktemp("faces"))
    add_masks(folder)
    return folder


@pytest.fixture
def cp(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """tests/cuda_host's fake CuPy installed as ``cupy`` with two devices; kernels compiled once per
    session. A module that needs another setup defines its own ``cp``."""
    from cuda_host import installed, session_build

    monkeypatch.setenv("CUDA_HOST_BUILD", session_build(tmp_path_factory))
    with installed(device_count=2) as fake:
        yield fake


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FACEOCC_CACHE", str(tmp_path_factory.mktemp("cache")))


def oracles_required() -> bool:
    """True in CI, where a missing oracle (MXNet venv, nvcc) is a failure rather than a skip."""
    return os.environ.get("FACEOCC_REQUIRE_ORACLES") == "1"


def mxnet_python() -> str | None:
    """The interpreter of the MXNet 1.9.1 oracle venv, when one is set up."""
    candidates = [os.environ.get("FACEOCC_MXNET_PYTHON"),
                  str(Path(__file__).resolve().parents[1] / ".venv-mxnet" / "bin" / "python")]
    found = next((c for c in candidates if c and Path(c).is_file()), None)
    if found is None and oracles_required():
        pytest.fail("FACEOCC_REQUIRE_ORACLES=1 but the MXNet oracle venv (.venv-mxnet) is missing")
    return found


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``gpu`` tests: skipped without a GPU (CuPy; DALI for those also marked ``dali``), failed instead
    with FACEOCC_REQUIRE_GPU=1 (see tests/gpu.py)."""
    from gpu import check

    check(item)
