"""Launcher of the CUDA kernels in ``occlude.cu`` (CuPy RawModule); same semantics as the twin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .params import PARAM_DTYPE

HERE = Path(__file__).parent
THREADS = 256


def compile_options(half: bool) -> tuple[str, ...]:
    """NVRTC/nvcc options: no FMA contraction (bit parity with NumPy), the params struct size check."""
    opts = ("--fmad=false", f"-I{HERE}", f"-DFO_PARAM_SIZE={PARAM_DTYPE.itemsize}", "--std=c++17")
    return opts + (("-DFO_HALF",) if half else ())


def _device_uint8(cp: Any, array: Any) -> Any:
    return cp.ascontiguousarray(cp.asarray(array, dtype=cp.uint8))


class GpuOccluder:
    """Holds the atlas on the device and the compiled kernels; ``apply`` runs a batch in two launches
    on the current CuPy stream, with no per-sample Python loop."""

    def __init__(self, atlas: np.ndarray) -> None:
        import cupy as cp

        self.cp = cp
        self.atlas = cp.asarray(atlas)
        self.cell = int(atlas.shape[1])
        self._kernels: dict[bool, tuple[Any, Any]] = {}
        self._empty3 = cp.zeros((1, 1, 1, 3), cp.uint8)
        self._empty1 = cp.zeros((1, 1, 1), cp.uint8)

    def kernels(self, half: bool) -> tuple[Any, Any]:
        if half not in self._kernels:
            source = (HERE / "occlude.cu").read_text()
            module = self.cp.RawModule(code=source, options=compile_options(half))
            self._kernels[half] = (module.get_function("occlude_pass1"), module.get_function("occlude_pass2"))
        return self._kernels[half]

    def apply(self, faces: Any, table: np.ndarray, masked_faces: Any, masks: Any, grayscale: bool,
              normalize: bool, dtype: np.dtype, gray_channels: int = 1, gray_offset_divisor: float = 3.0,
              mask_threshold: int = 128) -> dict:
        """Apply a host parameter table to device (or host) uint8 faces [N, H, W, 3]; the keyword
        arguments are those of :func:`ops.reference.apply_reference`."""
        params = self.cp.asarray(np.ascontiguousarray(table, PARAM_DTYPE).view(np.uint8))
        return self.apply_device(faces, params, masked_faces, masks, grayscale, normalize, dtype,
                                 gray_channels, gray_offset_divisor, mask_threshold)

    def apply_device(self, faces: Any, params: Any, masked_faces: Any, masks: Any, grayscale: bool,
                     normalize: bool, dtype: np.dtype, gray_channels: int = 1, gray_offset_divisor: float = 3.0,
                     mask_threshold: int = 128) -> dict:
        """Like :meth:`apply`, with the table already on the device as uint8 rows [N, row bytes]."""
        cp = self.cp
        faces = _device_uint8(cp, faces)
        n, h, w, _ = faces.shape
        half = np.dtype(dtype) == np.float16
        pass1, pass2 = self.kernels(half)
        params = cp.ascontiguousarray(params).reshape(n, PARAM_DTYPE.itemsize)
        masked = self._empty3 if masked_faces is None else _device_uint8(cp, masked_faces)
        mask = self._empty1 if masks is None else _device_uint8(cp, masks)
        out_t = cp.float16 if half else cp.float32
        channels = gray_channels if grayscale else 3
        img = cp.empty((n, channels, h, w), out_t)
        ori = cp.empty((n, channels, h, w), out_t)
        msk = cp.empty((n, h, w), cp.int32)
        lit = cp.empty((n, 1 if grayscale else 3, h, w), cp.float32)
        peak = cp.zeros(n, cp.uint32)
        grid = ((h * w + THREADS - 1) // THREADS, n)
        flags = (np.int32(grayscale), np.int32(normalize), np.int32(channels))
        pass1(grid, (THREADS,), (faces, masked, mask, params, self.atlas, np.int32(self.cell), np.int32(h),
                                 np.int32(w), *flags, np.int32(mask_threshold), lit, ori, msk, peak))
        pass2(grid, (THREADS,), (lit, params, peak, msk, np.int32(h), np.int32(w), *flags,
                                 np.float32(gray_offset_divisor), img))
        kind = params.view(cp.int32)[:, 0].astype(cp.int8)
        return {"img": img, "msk": msk, "ori": ori, "kind": kind}
