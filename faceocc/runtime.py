"""Where faceocc runs and how it is timed: device choice, the device's name, synchronization, and
batches across epochs without end."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any


def available_device() -> str:
    """``"gpu"`` when a CUDA device and CuPy are usable, else ``"cpu"``."""
    try:
        import cupy

        return "gpu" if cupy.cuda.runtime.getDeviceCount() > 0 else "cpu"
    except Exception:
        return "cpu"


def device_name(device: str) -> str:
    """The GPU's name, or the CPU count."""
    if device == "gpu":
        import cupy

        return cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    return f"{os.cpu_count()} CPU cores"


def synchronize(device: str) -> None:
    """Wait for the GPU's queued work (nothing to wait for on the CPU)."""
    if device == "gpu":
        import torch

        torch.cuda.synchronize()


def cycle_epochs(epoch: Callable[[], Iterable[Any]]) -> Iterator[Any]:
    """The batches of ``epoch()``, then of ``epoch()`` again, and so on (one call per epoch); an
    epoch without a batch is an error rather than an endless loop."""
    while True:
        empty = True
        for batch in epoch():
            empty = False
            yield batch
        if empty:
            raise RuntimeError("an epoch yielded no batch (dataset smaller than one batch?)")
