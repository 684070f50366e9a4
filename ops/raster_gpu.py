"""Launcher of the 3D-mask rasterizer in ``raster.cu`` (CuPy RawModule); same semantics as the twins
(:mod:`ops.surface`, :mod:`ops.raster`).

Surface vertices and masks equal the twins'; colours agree within 1 grey level (CuPy compiles with
``-ftz=true``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .gpu import kernel_source
from .params import RENDER_DTYPE
from .raster import MaskMesh

HERE = Path(__file__).parent
THREADS = 256
FAR = np.uint64(0xFFFFFFFFFFFFFFFF)


def compile_options() -> tuple[str, ...]:
    """No FMA contraction (the twins' float32 operation order), and the parameter struct size check."""
    return ("--fmad=false", f"-DFO_RENDER_PARAM_SIZE={RENDER_DTYPE.itemsize}", "--std=c++17")


class GpuRasterizer:
    """Textures, mesh topology and compiled kernels on one device; :meth:`render` runs a batch in three
    launches (surface, depth, shade) on the current CuPy stream, with no per-sample Python.

    ``device_id`` (default: the device current at construction) is where everything lives: every
    allocation and launch happens under ``cupy.cuda.Device(device_id)``; the constant uploads are
    synchronized before the constructor returns.
    """

    def __init__(self, mesh: MaskMesh, device_id: int | None = None) -> None:
        import cupy as cp

        self.cp = cp
        self.mesh = mesh
        self.device_id = cp.cuda.Device(device_id).id
        self.n_tris = int(len(mesh.tris))
        with self.device():
            self.textures = cp.asarray(mesh.textures)
            self.tris = cp.asarray(mesh.tris.astype(np.int32))
            self.uv = cp.asarray(mesh.uv.astype(np.float32))
            module = cp.RawModule(code=kernel_source(HERE / "raster.cu"), options=compile_options())
            self.surface = module.get_function("mask_surface")
            self.depth = module.get_function("raster_depth")
            self.shade = module.get_function("raster_shade")
            cp.cuda.get_current_stream().synchronize()

    def device(self) -> Any:
        """A fresh ``cupy.cuda.Device`` of this object's device, for one ``with`` block (a Device object
        shared by the threads that call into this one is not safe to enter from several of them)."""
        return self.cp.cuda.Device(self.device_id)

    def render(self, faces: Any, landmarks: Any, params: Any) -> tuple[Any, Any]:
        """Masked faces [N, H, W, 3] and masks [N, H, W] (uint8, on this object's device) of uint8 faces
        [N, H, W, 3], landmarks [N, 68, 3] (float32 or float16) and render rows: a host ``RENDER_DTYPE``
        array, or device uint8 rows [N, RENDER_DTYPE.itemsize]. Host inputs are copied to the device."""
        with self.device():
            return self._render(faces, landmarks, params)

    def vertices(self, landmarks: Any, params: Any) -> Any:
        """The surface vertices [N, V, 3] float32 (on the device) of :meth:`render`'s first pass."""
        with self.device():
            return self._surface(self._rows(params, len(landmarks)), landmarks)

    def _rows(self, params: Any, n: int) -> Any:
        if isinstance(params, np.ndarray) and params.dtype == RENDER_DTYPE:
            params = np.ascontiguousarray(params).view(np.uint8).reshape(n, RENDER_DTYPE.itemsize)
        return self.cp.ascontiguousarray(self.cp.asarray(params, dtype=self.cp.uint8)).reshape(n, RENDER_DTYPE.itemsize)

    def _surface(self, p: Any, landmarks: Any) -> Any:
        cp, mesh, n = self.cp, self.mesh, len(p)
        lm = cp.ascontiguousarray(cp.asarray(landmarks).astype(cp.float32, copy=False)).reshape(n, 68, 3)
        n_verts = (mesh.nu + 1) * (mesh.nv + 1)
        verts = cp.empty((n, n_verts, 3), cp.float32)
        self.surface(((n_verts + THREADS - 1) // THREADS, n), (THREADS,),
                     (lm, p, np.int32(mesh.nu), np.int32(mesh.nv), np.float32(1 + mesh.margin), verts))
        return verts

    def _render(self, faces: Any, landmarks: Any, params: Any) -> tuple[Any, Any]:
        cp = self.cp
        faces = cp.ascontiguousarray(cp.asarray(faces, dtype=cp.uint8))
        n, h, w, _ = faces.shape
        p = self._rows(params, n)
        verts = self._surface(p, landmarks)
        n_verts = verts.shape[1]
        zbuf = cp.full((n, h * w), FAR, dtype=cp.uint64)
        self.depth(((self.n_tris + THREADS - 1) // THREADS, n), (THREADS,),
                   (verts, self.tris, p, np.int32(n_verts), np.int32(self.n_tris), np.int32(h), np.int32(w), zbuf))
        out = cp.empty_like(faces)
        mask = cp.empty((n, h, w), cp.uint8)
        th, tw = self.textures.shape[1:3]
        self.shade(((h * w + THREADS - 1) // THREADS, n), (THREADS,),
                   (faces, verts, self.tris, self.uv, self.textures, p, zbuf, np.int32(n_verts), np.int32(h),
                    np.int32(w), np.int32(th), np.int32(tw), out, mask))
        return out, mask
