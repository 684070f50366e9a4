"""benchmarks/gpu_run.sh, rehearsed on the CPU: its three calls in order against a copy of the checkout
(as the device tool sends one) with stand-in parts, each call's checks for a fresh machine and missing
parts, the unpacking order, the timeout wrapper, reruns, and every benchmark it starts, from empty
folders (GPU_RUN_REHEARSAL=1: the benchmarks on the CPU with small sizes; the GPU tests fail there, as
FACEOCC_REQUIRE_GPU=1 demands without a GPU)."""

from __future__ import annotations

import io
import lzma
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import time
from pathlib import Path

import pytest
from gpu import cupy_problem

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_run.sh"
needs_tools = pytest.mark.skipif(not all(shutil.which(t) for t in ("bash", "xz", "timeout", "git")),
                                 reason="needs bash, xz, timeout and git")
# the rehearsals expect the GPU tests to fail (FACEOCC_REQUIRE_GPU=1 without a GPU)
no_gpu = pytest.mark.skipif(cupy_problem() is None, reason="a GPU with CuPy is here: the GPU tests would pass")


def tar_xz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return lzma.compress(buf.getvalue())


def checkout_copy(dest: Path) -> Path:
    """The files the device tool sends: tracked and untracked-not-ignored, without .git."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def wheels(dest: Path, parts: int = 3) -> dict[str, bytes]:
    """Stand-ins for gpu-wheels.sh's .devwheels/p0 (small.tar.xz) and p1..pN (part0..partN-1 of one
    xz stream); returns the files the big archive holds."""
    (dest / "p0").mkdir(parents=True)
    (dest / "p0" / "small.tar.xz").write_bytes(tar_xz({"gpurun_small_probe/__init__.py": b"SMALL = 1\n"}))
    big = {"gpurun_big_probe/__init__.py": b"BIG = 2\n", "gpurun_big_probe/blob.bin": os.urandom(3000)}
    blob = tar_xz(big)                              # incompressible: it spans every part
    size = -(-len(blob) // parts)
    for i in range(parts):
        (dest / f"p{i + 1}").mkdir()
        (dest / f"p{i + 1}" / f"part{i}").write_bytes(blob[i * size:(i + 1) * size])
    return big


class Machine:
    """A lent machine, rehearsed: one state folder (its /tmp), a checkout copy that each call gets
    with the carried parts only, and $OUT emptied before each call."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.checkout = checkout_copy(tmp / "checkout")
        self.big = wheels(tmp / "wheels")
        self.state = tmp / "state"
        self.out = tmp / "out"

    def call(self, n: int, carry: tuple[str, ...], timeout: float = 300, **env: str) -> tuple[int, str]:
        dev = self.checkout / ".devwheels"
        shutil.rmtree(dev, ignore_errors=True)
        for name in carry:
            shutil.copytree(self.tmp / "wheels" / name, dev / name)
        shutil.rmtree(self.out, ignore_errors=True)
        self.out.mkdir()
        full = dict(os.environ, OUT=str(self.out), GPU_RUN_STATE=str(self.state), GPU_RUN_REHEARSAL="1",
                    PYTHON=sys.executable, **env)
        full.pop("FACEOCC_REQUIRE_GPU", None)
        done = subprocess.run(["bash", str(self.checkout / "benchmarks" / "gpu_run.sh"), str(n)], env=full,
                              capture_output=True, text=True, timeout=timeout, cwd=self.tmp)
        log = self.out / f"call{n}.log"
        text = done.stdout + done.stderr
        if log.is_file():
            assert log.read_text().strip() in done.stdout, "the log holds what the call printed"
        return done.returncode, text


def test_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0


@pytest.mark.parametrize("args", [[], ["4"], ["setup"]])
def test_a_call_number_is_required(args):
    done = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "usage: bash benchmarks/gpu_run.sh 1|2|3" in done.stderr


@needs_tools
@no_gpu
def test_three_calls_rehearsed_in_order(tmp_path):
    m = Machine(tmp_path)
    rc, text = m.call(2, ("p2",))                                    # call 2 on a machine call 1 never saw
    assert rc == 3 and "FRESH MACHINE: call 2 expected a warm machine" in text and "site folder" in text
    assert not (m.state / "parts" / "part1").exists()

    rc, text = m.call(1, ("p0", "p1"))
    assert rc == 1, text                          # no GPU here: the CuPy tests fail under FACEOCC_REQUIRE_GPU=1
    assert "machine: fresh" in text and ("nvidia-smi is not on PATH" in text or "NVIDIA-SMI" in text)
    assert "FACEOCC_REQUIRE_GPU=1 but" in text and "=== cupy-tests: rc=1" in text
    assert "passed" not in text.split("=== cupy-tests")[1].split("=== ops-bench")[0]
    assert (m.state / "site" / "gpurun_small_probe" / "__init__.py").is_file()
    assert sorted(p.name for p in (m.state / "parts").iterdir()) == ["part0"]
    assert "=== ops-bench: rc=0" in text and (m.out / "ops.json").is_file()        # bench_ops from nothing
    assert (m.checkout / "faceocc" / "ops").is_symlink()
    probe = subprocess.run([sys.executable, "-S", "-c", "import faceocc.ops as o; print(o.__file__)"],
                           cwd=m.checkout, capture_output=True, text=True,
                           env=dict(os.environ, PYTHONPATH=sysconfig.get_paths()["purelib"]))
    assert probe.returncode == 0 and probe.stdout.startswith(str(m.checkout)), probe.stderr  # no install needed

    rc, text = m.call(3, ("p3",))                                    # call 2 skipped: part 2 is missing
    assert rc == 3 and "DALI's part 2 (.devwheels/p2, kept by call 2)" in text and "calls 1, 2 and 3 again" in text

    rc, text = m.call(2, ("p2",))
    assert rc == 0 and "machine: warm" in text and "kept DALI's part 2" in text

    rc, text = m.call(3, ("p3",))
    assert rc == 1, text                                             # the DALI GPU tests fail without a GPU
    site = m.state / "site" / "gpurun_big_probe"
    assert {f"gpurun_big_probe/{p.name}": p.read_bytes() for p in site.iterdir()} == m.big
    assert "DALI decoded a JPEG" in text and "=== dali-tests: rc=1" in text
    assert "=== loader-bench: rc=0" in text and "=== harness-gpu: rc=0" in text and "=== online-bench: rc=0" in text
    for name in ("loader-gpu.json", "harness.json", "harness.png", "online-masks-gpu.json", "call3.log"):  # made here
        assert (m.out / name).stat().st_size > 0, name
    assert len(list(m.out.iterdir())) <= 8                           # the device tool brings back 8 files

    rc, text = m.call(3, ("p3",))                                    # the rerun: finished steps are skipped
    assert rc == 1 and "=== dali-tests: rc=1" in text
    assert text.count("finished in an earlier run") == 3 and "DALI unpacked earlier" in text
    assert not (m.out / "loader-gpu.json").exists()


@needs_tools
@no_gpu
def test_call_1_without_its_parts_says_what_to_do(tmp_path):
    m = Machine(tmp_path)
    rc, text = m.call(1, ("p1",))
    assert rc == 1 and "MISSING: .devwheels/p0/small.tar.xz was not carried" in text and "gpu-wheels.sh" in text
    assert "cupy-tests" not in text                                  # nothing else ran
    rc, text = m.call(1, ("p0",))
    assert rc == 1 and "MISSING: .devwheels/p1/part* was not carried" in text
    assert "=== cupy-tests" in text and "reminder: DALI's part 1 was not kept" in text


def source(body: str, tmp_path: Path, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    """``body`` run in bash after sourcing the script (its functions, nothing run)."""
    full = dict(os.environ, GPU_RUN_STATE=str(tmp_path / "state"), OUT=str(tmp_path / "out"), **env)
    return subprocess.run(["bash", "-c", f'source "{SCRIPT}"; LOG="{tmp_path}/log"; {body}'], env=full,
                          capture_output=True, text=True, timeout=timeout)


@needs_tools
def test_parts_unpack_in_numeric_order_and_gaps_are_named(tmp_path):
    payload = os.urandom(3000)
    blob = tar_xz({"pkg/data.bin": payload})
    parts = tmp_path / "state" / "parts"
    parts.mkdir(parents=True)
    size = -(-len(blob) // 12)
    for i in range(12):                            # part0 .. part11: a plain sort puts part10 before part2
        (parts / f"part{i}").write_bytes(blob[i * size:(i + 1) * size])
    done = source("unpack_dali", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "state" / "site" / "pkg" / "data.bin").read_bytes() == payload
    assert "DALI unpacked earlier" in source("unpack_dali", tmp_path).stdout
    shutil.rmtree(tmp_path / "state" / "site")
    (parts / "part5").unlink()
    done = source("unpack_dali", tmp_path)
    assert done.returncode == 1 and "none left out" in done.stdout and "part4 part6" in done.stdout
    (parts / "part5").write_bytes(b"\0" * size)    # all there, but one is not of this archive
    done = source("unpack_dali", tmp_path)
    assert done.returncode == 1 and "do not make one whole archive" in done.stdout


@needs_tools
def test_steps_run_under_timeout_within_the_calls_deadline(tmp_path):
    start = time.monotonic()
    done = source("DEADLINE=0; run_step slow 1 sleep 30", tmp_path)
    assert done.returncode == 124 and time.monotonic() - start < 20
    assert "=== slow: rc=124" in done.stdout and "hit its limit of 1s" in done.stdout and "again at once" in done.stdout
    assert "hit its limit" in (tmp_path / "log").read_text()                   # the log has it too
    done = source("DEADLINE=$((SECONDS + 12)); run_step clamped 100 true", tmp_path)
    assert done.returncode == 0 and re.search(r"clamped \(limit [67]s\)", done.stdout), done.stdout  # the deadline wins
    done = source("DEADLINE=$((SECONDS + 6)); run_step late 100 true", tmp_path)
    assert done.returncode == 124 and "late: not started, this call's time is spent" in done.stdout
    done = source("DEADLINE=0; run_step fn 10 say from-a-function; run_step rc 10 bash -c 'exit 7'", tmp_path)
    assert "from-a-function" in done.stdout and "=== rc: rc=7" in done.stdout   # functions and exit codes
    done = source("DEADLINE=0; step once 10 true; step once 10 false; echo rc=$?", tmp_path)
    assert "finished in an earlier run" in done.stdout and "rc=0" in done.stdout
    done = source("DEADLINE=0; step again 10 true; step again 10 false; echo rc=$?", tmp_path, GPU_RUN_REDO="1")
    assert "rc=1" in done.stdout


def test_demo_runs_from_an_empty_folder_as_a_module(tmp_path):
    pytest.importorskip("nvidia.dali")
    out = tmp_path / "empty" / "demo"
    done = subprocess.run([sys.executable, "-m", "faceocc.cli", "demo", "--out", str(out), "--batches", "3",
                           "--batch-size", "16", "--device", "cpu", "--quiet"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert (out / "preview.png").is_file() and (out / "summary.json").is_file()
