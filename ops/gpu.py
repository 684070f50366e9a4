"""Launcher of the CUDA kernels in ``occlude.cu`` (CuPy RawModule); same semantics as the twin.

What is exact and what is not: ``msk`` and ``kind`` equal the twin's; ``img`` and ``ori`` agree within
1/255 (CuPy compiles with ``-ftz=true`` and the kernel's ``expf`` is approximate, so lit pixels differ
from NumPy's in the last bits; float16 adds its rounding).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from .params import PARAM_DTYPE
from .settings import ApplySettings

HERE = Path(__file__).parent
THREADS = 256
_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"[ \t]*$', re.M)


def kernel_source(path: Path, seen: frozenset[Path] = frozenset()) -> str:
    """The text of a ``.cu`` file with every ``#include "x"`` of a file beside it replaced by that file's
    text, so that CuPy's kernel cache key (a hash of the source string and the options) covers the headers
    too: a changed header can never reuse a stale binary."""
    path = path.resolve()
    if path in seen:
        raise ValueError(f"{path} includes itself")

    def expand(m: re.Match) -> str:
        header = path.parent / m.group(1)
        if not header.is_file():
            return m.group(0)
        return f"// ---- {m.group(1)} (inlined)\n{kernel_source(header, seen | {path})}\n// ---- end {m.group(1)}"

    return _INCLUDE.sub(expand, path.read_text())


def compile_options(half: bool) -> tuple[str, ...]:
    """NVRTC/nvcc options: no FMA contraction (the twin's float32 operation order), the params struct
    size check."""
    opts = ("--fmad=false", f"-DFO_PARAM_SIZE={PARAM_DTYPE.itemsize}", "--std=c++17")
    return opts + (("-DFO_HALF",) if half else ())


def _device_uint8(cp: Any, array: Any) -> Any:
    return cp.ascontiguousarray(cp.asarray(array, dtype=cp.uint8))


class GpuOccluder:
    """Holds the atlas on one device and the compiled kernels; ``apply`` runs a batch in two launches on
    the current CuPy stream, with no per-sample Python loop.

    ``device_id`` (default: the device current at construction) is where everything lives: every
    allocation and launch of this object happens under ``cupy.cuda.Device(device_id)``. The constant
    uploads are synchronized before the constructor returns, so kernels on any stream (DALI's) see them.
    """

    def __init__(self, atlas: np.ndarray, device_id: int | None = None) -> None:
        import cupy as cp

        self.cp = cp
        self.device_id = cp.cuda.Device(device_id).id
        self.cell = int(atlas.shape[1])
        self._kernels: dict[bool, tuple[Any, Any]] = {}
        with self.device():
            self.atlas = cp.asarray(atlas)
            self._empty3 = cp.zeros((1, 1, 1, 3), cp.uint8)
            self._empty1 = cp.zeros((1, 1, 1), cp.uint8)
            cp.cuda.get_current_stream().synchronize()

    def device(self) -> Any:
        """A fresh ``cupy.cuda.Device`` of this object's device, for one ``with`` block (a Device object
        shared by the threads that call into this one is not safe to enter from several of them)."""
        return self.cp.cuda.Device(self.device_id)

    def kernels(self, half: bool) -> tuple[Any, Any]:
        if half not in self._kernels:
            with self.device():
                module = self.cp.RawModule(code=kernel_source(HERE / "occlude.cu"), options=compile_options(half))
                self._kernels[half] = (module.get_function("occlude_pass1"), module.get_function("occlude_pass2"))
        return self._kernels[half]

    def apply(self, faces: Any, table: np.ndarray, masked_faces: Any, masks: Any, settings: ApplySettings) -> dict:
        """Apply a host parameter table to device (or host) uint8 faces [N, H, W, 3] under ``settings``,
        as :func:`ops.reference.apply_reference` does."""
        with self.device():
            params = self.cp.asarray(np.ascontiguousarray(table, PARAM_DTYPE).view(np.uint8))
            return self.apply_device(faces, params, masked_faces, masks, settings)

    def _on_device(self, name: str, array: Any) -> None:
        where = getattr(getattr(array, "device", None), "id", self.device_id)
        if where != self.device_id:
            raise ValueError(f"{name} are on device {where} but this occluder lives on device {self.device_id} "
                             "(build it with device_id set to the pipeline's device)")

    def apply_device(self, faces: Any, params: Any, masked_faces: Any, masks: Any, settings: ApplySettings) -> dict:
        """Like :meth:`apply`, with the table already on the device as uint8 rows [N, row bytes]."""
        for name, array in (("faces", faces), ("parameter rows", params), ("masked faces", masked_faces),
                            ("masks", masks)):
            self._on_device(name, array)
        with self.device():
            return self._launch(faces, params, masked_faces, masks, settings)

    def _launch(self, faces: Any, params: Any, masked_faces: Any, masks: Any, settings: ApplySettings) -> dict:
        cp = self.cp
        faces = _device_uint8(cp, faces)
        n, h, w, _ = faces.shape
        half = settings.half
        pass1, pass2 = self.kernels(half)
        params = cp.ascontiguousarray(params).reshape(n, PARAM_DTYPE.itemsize)
        masked = self._empty3 if masked_faces is None else _device_uint8(cp, masked_faces)
        mask = self._empty1 if masks is None else _device_uint8(cp, masks)
        out_t = cp.float16 if half else cp.float32
        grayscale, channels = settings.grayscale, settings.channels
        img = cp.empty((n, channels, h, w), out_t)
        ori = cp.empty((n, channels, h, w), out_t)
        msk = cp.empty((n, h, w), cp.int32)
        lit = cp.empty((n, 1 if grayscale else 3, h, w), cp.float32)
        peak = cp.zeros(n, cp.uint32)
        grid = ((h * w + THREADS - 1) // THREADS, n)
        flags = (np.int32(grayscale), np.int32(settings.normalize), np.int32(channels))
        pass1(grid, (THREADS,), (faces, masked, mask, params, self.atlas, np.int32(self.cell), np.int32(h),
                                 np.int32(w), *flags, np.int32(settings.mask_threshold), lit, ori, msk, peak))
        pass2(grid, (THREADS,), (lit, params, peak, msk, np.int32(h), np.int32(w), *flags,
                                 np.float32(settings.gray_offset_divisor), img))
        kind = params.view(cp.int32)[:, 0].astype(cp.int8)
        return {"img": img, "msk": msk, "ori": ori, "kind": kind}
