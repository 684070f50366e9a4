"""Online 3D masks (profile ``mask3d.source: online``): the masked faces and masks of a batch's 3D-mask
rows rasterized in the apply step from each face's stored geometry, instead of read from offline records.

A row is drawn when its ``render_texture`` is >= 0 (the sampler sets the render fields of every mask3d
row, ``ops.sampler.sample_render``); its face is draped by its landmarks [68, 3] (``geometry``, aligned
with the faces) and rendered by :class:`ops.raster.MaskMesh` on the CPU, :class:`ops.raster_gpu.GpuRasterizer`
on the GPU. The results are aligned with the faces, as offline renders are (``ops.params``: ``m3d_slot``);
the rows not drawn are never read by the apply step and are left as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .mask_textures import load_textures
from .params import RENDER_DTYPE, RENDER_OFFSET, render_rows
from .profiles import MaskRender
from .raster import MaskMesh

Alloc = Callable[..., np.ndarray]
LANDMARKS = (68, 3)


class OnlineMasks:
    """The mask textures (``render.textures``: a folder, or the insightface package's four), the mesh
    and, with ``device="gpu"``, the rasterizer's kernels on device ``device_id``."""

    def __init__(self, render: MaskRender, device: str = "cpu", device_id: int | None = None) -> None:
        textures, self.texture_names = load_textures(render.textures)
        self.mesh = MaskMesh(textures)
        self._gpu = None
        if device == "gpu":
            from .raster_gpu import GpuRasterizer

            self._gpu = GpuRasterizer(self.mesh, device_id)

    @property
    def textures(self) -> int:
        return len(self.mesh.textures)

    def drawn(self, table: np.ndarray) -> np.ndarray:
        """The rows of a host table that get an online mask."""
        return np.flatnonzero(table["render_texture"] >= 0)

    def check(self, table: np.ndarray, geometry: Any) -> None:
        """Refuse a table whose drawn rows have no geometry, or name a texture that does not exist."""
        undrawn = np.flatnonzero((table["m3d_slot"] >= 0) & (table["render_texture"] < 0))
        if undrawn.size:
            raise ValueError(f"row {int(undrawn[0])} uses a 3D mask but has no render (render_texture -1): a table "
                             "drawn for offline masks? Sample it with this occluder (mask3d.source: online)")
        rows = self.drawn(table)
        if not rows.size:
            return
        if geometry is None:
            raise ValueError(f"{rows.size} rows get an online 3D mask (mask3d.source: online): pass geometry=, "
                             "the faces' landmarks [N, 68, 3] (faceocc.datasets.geometry.GeometryReader reads "
                             "them from a dataset's mask_geometry.rec)")
        if tuple(geometry.shape) != (len(table), *LANDMARKS):
            raise ValueError(f"geometry must be [{len(table)}, 68, 3] (aligned with the faces); got "
                             f"{tuple(geometry.shape)}")
        bad = rows[table["render_texture"][rows] >= self.textures]
        if bad.size:
            raise ValueError(f"row {int(bad[0])} names mask texture {int(table['render_texture'][bad[0]])}; there "
                             f"are {self.textures}")

    def host(self, faces: np.ndarray, table: np.ndarray, geometry: np.ndarray, alloc: Alloc = np.empty,
             pool: ThreadPoolExecutor | None = None, parts: list[tuple[int, int]] | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """Masked faces [N, H, W, 3] and masks [N, H, W] (uint8, 0 where masked) aligned with ``faces``,
        by the NumPy twin; with ``pool``, each of the contiguous row ranges ``parts`` on its own thread."""
        n, h, w, _ = faces.shape
        masked = alloc((n, h, w, 3), np.uint8)
        masks = alloc((n, h, w), np.uint8)

        def draw(a: int, b: int) -> None:
            rows = a + self.drawn(table[a:b])
            if rows.size:
                out, mask = self.mesh.render(faces[rows], np.asarray(geometry)[rows], render_rows(table[rows]))
                masked[rows], masks[rows] = out, mask

        ranges = parts or [(0, n)]
        if pool is None or len(ranges) == 1:
            for a, b in ranges:
                draw(a, b)
        else:
            for job in [pool.submit(draw, a, b) for a, b in ranges]:
                job.result()
        return masked, masks

    def render_device(self, faces: Any, geometry: Any, rows: np.ndarray) -> tuple[Any, Any]:
        """Masked faces and masks (CuPy) of host render rows (``RENDER_DTYPE``), by the kernels."""
        return self._gpu.render(faces, geometry, rows)

    def device(self, faces: Any, params: Any, geometry: Any) -> tuple[Any, Any]:
        """Masked faces and masks (CuPy, aligned with ``faces``) of device parameter rows [N, row bytes]
        (uint8) and device landmarks [N, 68, 3]: the kernels over every row (rows not drawn are skipped
        by the kernels: their face copied, mask 255), no per-sample Python and no copy to the host."""
        cp = self._gpu.cp
        with self._gpu.device():
            rows = cp.ascontiguousarray(params[:, RENDER_OFFSET:RENDER_OFFSET + RENDER_DTYPE.itemsize])
        return self._gpu.render(faces, geometry, rows)

