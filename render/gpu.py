"""Launcher of the mask rasterizer in ``raster.cu`` (CuPy RawModule); same semantics as the twin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .raster import RENDER_DTYPE

HERE = Path(__file__).parent
THREADS = 256


def compile_options() -> tuple[str, ...]:
    """No FMA contraction (bit parity with NumPy), and the parameter struct size check."""
    return ("--fmad=false", f"-DFO_RENDER_PARAM_SIZE={RENDER_DTYPE.itemsize}", "--std=c++17")


class GpuRasterizer:
    """Textures, mesh topology and compiled kernels on the device; ``render`` runs a batch in two
    launches on the current CuPy stream."""

    def __init__(self, textures: np.ndarray, tris: np.ndarray, uv: np.ndarray) -> None:
        import cupy as cp

        self.cp = cp
        self.textures = cp.asarray(textures)
        self.tris = cp.asarray(tris.astype(np.int32))
        self.uv = cp.asarray(uv.astype(np.float32))
        self.n_tris = int(len(tris))
        module = cp.RawModule(code=(HERE / "raster.cu").read_text(), options=compile_options())
        self.depth = module.get_function("raster_depth")
        self.shade = module.get_function("raster_shade")

    def render(self, faces: Any, verts: np.ndarray, params: np.ndarray) -> tuple[Any, Any]:
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
