"""The long fuzz script runs, mutates deterministically, and reports escapes by step and type."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.fuzz_records import _bad_payloads, mutate  # noqa: E402


def test_mutations_are_a_function_of_seed_and_case(tmp_path):
    bad = _bad_payloads(np.random.default_rng(0))
    runs = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        applied = mutate(np.random.default_rng([0, 17]), folder, bad)
        runs.append((applied, {p.name: p.read_bytes() for p in folder.iterdir()}))
    assert runs[0] == runs[1]


def test_short_run_writes_figures(tmp_path):
    out = tmp_path / "fuzz.json"
    subprocess.run([sys.executable, "-m", "benchmarks.fuzz_records", "--cases", "60",
                    "--loader-every", "30", "--out", str(out)], check=True, cwd=ROOT, capture_output=True,
                   timeout=300)
    figures = json.loads(out.read_text())["figures"]
    assert figures["cases"] == 60 and figures["loader_epochs"] == 2 and figures["hangs"] == 0
    assert sum(figures["mutations_tried"].values()) >= 60
    for tag, example in figures["escape_examples"].items():
        assert tag in figures["escapes_by_step_and_type"] and example["mutations"]
