"""benchmarks/train_ddp.py under torchrun with two CPU processes (gloo), for a few steps."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("nvidia.dali")
ROOT = Path(__file__).resolve().parents[1]


def test_two_cpu_ranks_train_a_few_steps(tmp_path):
    env = {**os.environ, "FACEOCC_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(ROOT / "benchmarks" / "train_ddp.py"),
                           "--device", "cpu", "--steps", "3", "--batch-size", "8"],
                          capture_output=True, text=True, timeout=400, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    reports = re.findall(r"rank (\d)/2 device=cpu steps=3 loss=[\d.]+ img/s=[\d.]+", done.stdout)
    assert sorted(reports) == ["0", "1"], done.stdout      # two ranks may print on one line
