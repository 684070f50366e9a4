"""Launcher of the mask rasterizer in ``raster.cu`` (CuPy RawModule); same semantics as the twin.

The mask equals the twin's; colours agree within 1 grey level (CuPy compiles with ``-ftz=true``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from faceocc.ops.gpu import kernel_source

from .raster import RENDER_DTYPE

HERE = Path(__file__).parent
THREADS = 256


def compile_options() -> tuple[str, ...]:
    """No FMA contraction (the twin's float32 operation order), and the parameter struct size check."""
    return ("--fmad=false", f"-DFO_RENDER_PARAM_SIZE={RENDER_DTYPE.itemsize}", "--std=c++17")


class GpuRasterizer:
    """Textures, mesh topology and compiled kernels on one device; ``render`` runs a batch in two
    launches on the current CuPy stream.

    ``device_id`` (default: the device current at construction) is where everything lives: every
    allocation and launch happens under ``cupy.cuda.Device(device_id)``; the constant uploads are
    synchronized before the constructor returns.
    """

    def __init__(self, textures: np.ndarray, tris: np.ndarray, uv: np.ndarray, device_id: int | None = None) -> None:
        import cupy as cp

        self.cp = cp
        self.device_id = cp.cuda.Device(device_id).id
        self.n_tris = int(len(tris))
        with self.device():
            self.textures = cp.asarray(textures)
            self.tris = cp.asarray(tris.astype(np.int32))
            self.uv = cp.asarray(uv.astype(np.float32))
            module = cp.RawModule(code=kernel_source(HERE / "raster.cu"), options=compile_options())
            self.depth = module.get_function("raster_depth")
            self.shade = module.get_function("raster_shade")
            cp.cuda.get_current_stream().synchronize()

    def device(self) -> Any:
        """A fresh ``cupy.cuda.Device`` of this object's device, for one ``with`` block (a Device object
        shared by the threads that call into this one is not safe to enter from several of them)."""
        return self.cp.cuda.Device(self.device_id)

    def render(self, faces: Any, verts: np.ndarray, params: np.ndarray) -> tuple[Any, Any]:
        """Masked faces [N, H, W, 3] and masks [N, H, W] (uint8, on this object's device)."""
        with self.device():
            return self._render(faces, verts, params)

    def _render(self, faces: Any, verts: np.ndarray, params: np.ndarray) -> tuple[Any, Any]:
        cp = self.cp
        faces = cp.ascontiguousarray(cp.asarray(faces, dtype=cp.uint8))
        n, h, w, _ = faces.shape
        v = cp.asarray(np.ascontiguousarray(verts, np.float32))
        p = cp.asarray(np.ascontiguousarray(params, RENDER_DTYPE).view(np.uint8))
        zbuf = cp.full((n, h * w), np.uint64(0xFFFFFFFFFFFFFFFF), dtype=cp.uint64)
        n_verts = verts.shape[1]
        self.depth(((self.n_tris + THREADS - 1) // THREADS, n), (THREADS,),
                   (v, self.tris, np.int32(n_verts), np.int32(self.n_tris), np.int32(h), np.int32(w), zbuf))
        out = cp.empty_like(faces)
        mask = cp.empty((n, h, w), cp.uint8)
        th, tw = self.textures.shape[1:3]
        self.shade(((h * w + THREADS - 1) // THREADS, n), (THREADS,),
                   (faces, v, self.tris, self.uv, self.textures, p, zbuf, np.int32(n_verts), np.int32(h),
                    np.int32(w), np.int32(th), np.int32(tw), out, mask))
        return out, mask
