"""benchmarks/gpu_run.sh, the part that can run without a GPU: it parses, unpacks the carried parts in
numeric order (part10 after part9) into a folder it creates, and every step leaves its log under $OUT."""

from __future__ import annotations

import importlib.util
import io
import lzma
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_run.sh"
needs_tools = pytest.mark.skipif(not (shutil.which("bash") and shutil.which("xz") and shutil.which("timeout")),
                                 reason="needs bash, xz and timeout")


def test_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0


@needs_tools
def test_setup_unpacks_parts_in_numeric_order_and_steps_leave_logs(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        payload = os.urandom(3000)                 # incompressible, so that it spans every part
        info = tarfile.TarInfo("pkg/data.bin")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    blob = lzma.compress(buf.getvalue())
    parts = tmp_path / "parts"
    parts.mkdir()
    size = -(-len(blob) // 12)
    for i in range(12):                            # part0 .. part11: a plain sort would put part10 before part2
        (parts / f"part{i}").write_bytes(blob[i * size:(i + 1) * size])
    out, site = tmp_path / "out", tmp_path / "no" / "site"      # the site folder's parent does not exist yet
    env = dict(os.environ, OUT=str(out), PARTS=str(parts), SITE=str(site), STEP_LIMIT="60")
    done = subprocess.run(["bash", str(SCRIPT), "setup"], env=env, capture_output=True, text=True, timeout=120)
    assert (site / "pkg" / "data.bin").read_bytes() == payload, done.stdout + done.stderr
    assert (site / ".complete").is_file()
    if importlib.util.find_spec("cupy") is None:   # no GPU stack here: setup fails, so the tests never start
        done = subprocess.run(["bash", str(SCRIPT), "tests"], env=env, capture_output=True, text=True, timeout=120)
        log = (out / "tests.log").read_text()
        assert done.returncode != 0 and "=== rc=1" in log and "pytest" not in log
