"""What every benchmark result carries: when, where, with which versions."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def environment() -> dict:
    """Date, host, CPU count, GPU name (if any) and the versions of the packages that matter."""
    versions = {}
    for dist in ("faceocc", "numpy", "torch", "nvidia-dali-cuda130", "cupy-cuda13x", "pillow"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "gpu": gpu,
        "versions": versions,
    }


def write_result(name: str, settings: dict, figures: dict, out: str | os.PathLike | None = None) -> Path:
    """Write ``{environment, settings, figures}`` as JSON; returns the file written."""
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": name, "environment": environment(), "settings": settings, "figures": figures}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path
