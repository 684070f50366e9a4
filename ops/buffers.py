"""Output arrays of the CPU apply step, reused once nothing else refers to them.

A batch's img, ori and msk are tens of megabytes; fresh ones cost the kernel a page fault per 4 KiB
(on a 2-core machine, as much as the arithmetic that fills them). DALI's iterator avoids that by
reusing its output tensors, which overwrites a batch the consumer kept. :class:`BufferPool` reuses an
array only when its reference count shows that no tensor, view or batch handed out still refers to it
(``torch.from_numpy`` and every view hold a reference), so a batch that is kept stays intact.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence

import numpy as np


def _references(arrays: list, i: int) -> int:
    """``sys.getrefcount`` of ``arrays[i]``; the baseline below is taken through this same call, so
    that what the interpreter adds for the call itself cancels out."""
    return sys.getrefcount(arrays[i])


_FREE = _references([np.empty(0)], 0)     # an array that nothing but its list holds


class BufferPool:
    """``pool(shape, dtype)`` is ``np.empty(shape, dtype)``, or an earlier array of that shape and type
    that nothing but the pool refers to any more; at most ``keep`` arrays are kept per (shape, dtype).
    Thread-safe."""

    def __init__(self, keep: int = 8) -> None:
        self.keep = max(1, int(keep))
        self._arrays: dict[tuple, list[np.ndarray]] = {}
        self._lock = threading.Lock()
        self.reused = 0     # how many calls got an earlier array (for tests and benchmarks)

    def __getstate__(self) -> dict:
        return {"keep": self.keep}     # a copy (pickled, e.g. for a worker process) starts empty

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["keep"])

    def __call__(self, shape: Sequence[int], dtype: type | np.dtype) -> np.ndarray:
        key = (tuple(int(s) for s in shape), np.dtype(dtype))
        with self._lock:
            arrays = self._arrays.setdefault(key, [])
            for i in range(len(arrays)):
                if _references(arrays, i) == _FREE:
                    self.reused += 1
                    return arrays[i]
            array = np.empty(*key)
            if len(arrays) < self.keep:
                arrays.append(array)
            return array
