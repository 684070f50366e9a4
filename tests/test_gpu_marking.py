"""The GPU tests as CI can hold them without a GPU: every one is marked ``gpu`` (those that need DALI also
``dali``) and is among the files benchmarks/gpu_run.sh runs on the GPU machine; without a GPU they skip,
and under FACEOCC_REQUIRE_GPU=1 (the GPU machine's setting) they fail, so that a broken CuPy or DALI
there cannot pass for a green run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from gpu import cupy_problem, dali_problem

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_run.sh"
NEW = ["test_gpu_batches_match_the_twin_on_their_inputs[resize_120]",       # issue 21's GPU cases
       "test_gpu_batches_match_the_twin_on_their_inputs[float16]",
       "test_gpu_batches_match_the_twin_on_their_inputs[out_96]",
       "test_gpu_batches_match_the_twin_on_their_inputs[no_mask3d_rows]",
       "test_gpu_batches_match_the_twin_on_their_inputs[only_mask3d_rows]",
       "test_occlusion_op_in_a_gpu_pipeline_matches_the_twin[True]",
       "test_gpu_loader_on_a_device_other_than_the_current_one",
       "test_gpu_batches_match_the_cpu_batches"]


def script_files(name: str) -> list[str]:
    """The test files of one of gpu_run.sh's arrays (CUPY_TESTS, DALI_TESTS)."""
    found = re.search(rf"^{name}=\(([^)]*)\)", SCRIPT.read_text(), re.M)
    assert found, name
    return found.group(1).split()


def pytest_run(*args: str, require: bool, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "FACEOCC_REQUIRE_GPU"}
    if require:
        env["FACEOCC_REQUIRE_GPU"] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


COLLECT = """
import json, sys, pytest

class Markers:
    def pytest_collection_finish(self, session):
        self.items = [(i.nodeid, i.get_closest_marker("dali") is not None) for i in session.items]

m = Markers()
rc = pytest.main(["-q", "--collect-only", "-p", "no:cacheprovider", "-m", "gpu", "tests"], plugins=[m])
print("COLLECTED", json.dumps(m.items))
sys.exit(rc)
"""


def collected() -> dict[str, bool]:
    """Every test marked gpu in the suite: node id -> also marked dali (one collection, in a subprocess)."""
    done = subprocess.run([sys.executable, "-c", COLLECT], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return dict(json.loads(done.stdout.split("COLLECTED ", 1)[1]))


def test_every_gpu_test_is_in_the_files_the_gpu_run_runs():
    cupy, dali = script_files("CUPY_TESTS"), script_files("DALI_TESTS")
    tests = collected()
    with_dali = [t for t, d in tests.items() if d]
    without = [t for t, d in tests.items() if not d]
    assert {t.split("::")[0] for t in with_dali} <= set(dali), with_dali
    assert {t.split("::")[0] for t in without} <= set(cupy), without
    names = {t.split("::", 1)[1] for t in with_dali}
    assert set(NEW) <= names, set(NEW) - names                      # the loader's GPU tests and issue 21's
    assert any("test_kernels_match_the_twin" in t for t in without)
    assert any("test_rasterizer_matches_the_twin" in t for t in without)


def test_gpu_tests_skip_without_a_gpu_and_fail_when_one_is_required():
    if cupy_problem() is None and dali_problem() is None:
        pytest.skip("this machine has a GPU with CuPy and DALI: nothing is missing to require")
    files = script_files("CUPY_TESTS") + script_files("DALI_TESTS")
    lax = pytest_run("-q", "-rs", "-m", "gpu", *files, require=False)
    assert lax.returncode == 0, lax.stdout[-3000:]
    skipped = int(re.search(r"(\d+) skipped", lax.stdout).group(1))
    assert skipped >= len(NEW) + 5 and " passed" not in lax.stdout and "error" not in lax.stdout
    strict = pytest_run("-q", "-rfE", "-m", "gpu", *files, require=True)
    assert strict.returncode == 1, strict.stdout[-3000:]
    failed = re.search(r"(\d+) errors?", strict.stdout)
    assert failed and int(failed.group(1)) == skipped and "skipped" not in strict.stdout
    assert strict.stdout.count("FACEOCC_REQUIRE_GPU=1 but") >= skipped
