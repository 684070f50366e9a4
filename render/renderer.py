"""``MaskRenderer``: landmarks and the 3D-mask rasterizer (``ops.raster``, ``ops.raster_gpu``) for aligned faces."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from faceocc.ops.mask_textures import load_textures
from faceocc.ops.options import Device, check_option
from faceocc.ops.params import RENDER_DTYPE
from faceocc.ops.profiles import MaskRender
from faceocc.ops.raster import MaskMesh, check_rows
from faceocc.ops.sampler import sample_render

from .landmarks import LandmarkSource, landmark_source

DEFAULTS = MaskRender()


class MaskRenderer:
    """Renders face masks onto uint8 RGB faces [N, H, W, 3]; the randomness is in :meth:`sample`,
    :meth:`render` is deterministic given the parameter rows. ``device="gpu"`` rasterizes on CUDA device
    ``device_id`` (default: the current one)."""

    def __init__(self, size: tuple[int, int] = (112, 112), landmarks: LandmarkSource = "template",
                 textures: str | os.PathLike | None = None, device: Device = "cpu",
                 landmark_model: str | None = None, device_id: int | None = None) -> None:
        check_option("device", device, Device)
        check_option("landmarks", landmarks, LandmarkSource)
        self.size = tuple(size)
        self.landmarks = landmark_source(landmarks, self.size, landmark_model)
        self.textures, self.texture_names = load_textures(textures)
        self.mesh = MaskMesh(self.textures)
        self.device = device
        self._gpu = None
        if device == "gpu":
            from faceocc.ops.raster_gpu import GpuRasterizer

            self._gpu = GpuRasterizer(self.mesh, device_id)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Per-face render rows (``RENDER_DTYPE``): texture, top-edge height, ambient light, gain, light
        direction (:func:`ops.sampler.sample_render` with its defaults; no tint)."""
        return sample_render(n, rng, len(self.textures), DEFAULTS)

    def surface(self, faces: np.ndarray, params: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
        """Surface vertices [N, V, 3] float32 for the faces (landmarks computed when not given)."""
        lm = self.landmarks(faces) if landmarks is None else landmarks
        return self.mesh.surface(lm, np.asarray(params, RENDER_DTYPE))

    def render(self, faces: Any, params: np.ndarray, landmarks: np.ndarray | None = None
               ) -> tuple[Any, Any]:
        """Masked faces [N, H, W, 3] uint8 and masks [N, H, W] uint8 (0 where masked, 255 elsewhere).

        ``faces`` may be host (NumPy) or device (CuPy) arrays; landmarks [N, 68, 3], when not given, are
        computed from the pixels either way (device faces are copied to the host for them)."""
        if tuple(faces.shape[1:3]) != self.size:
            raise ValueError(f"faces must be [N, {self.size[0]}, {self.size[1]}, 3]; got {tuple(faces.shape)}")
        params = np.asarray(params, RENDER_DTYPE)
        check_rows(params, len(self.textures))
        if landmarks is None:
            host = faces if isinstance(faces, np.ndarray) else _to_host(faces)
            landmarks = self.landmarks(host)
        if self._gpu is not None:
            return self._gpu.render(faces, np.asarray(landmarks, np.float32), params)
        return self.mesh.render(np.asarray(faces), landmarks, params)


def _to_host(array: Any) -> np.ndarray:
    """A NumPy copy of a CuPy (or other array-interface) array."""
    return array.get() if hasattr(array, "get") else np.asarray(array)
