"""``MaskRenderer``: landmarks -> surface -> rasterized mask, for batches of aligned faces."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from faceocc.ops.options import Device, check_option

from .landmarks import LandmarkSource, landmark_source
from .raster import RENDER_DTYPE, render_masks
from .surface import grid_triangles, grid_uv, mask_surface
from .textures import load_textures

TOP_RANGE = (0.33, 0.5)
AMBIENT_RANGE = (0.55, 0.8)
GAIN_RANGE = (0.85, 1.1)


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
        self.tris = grid_triangles()
        self.uv = grid_uv()
        self.device = device
        self._gpu = None
        if device == "gpu":
            from .gpu import GpuRasterizer

            self._gpu = GpuRasterizer(self.textures, self.tris, self.uv, device_id)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Per-face parameters: texture, top-edge height, ambient light, gain, light direction."""
        p = np.zeros(n, RENDER_DTYPE)
        p["texture"] = rng.integers(0, len(self.textures), n)
        p["top"] = rng.uniform(*TOP_RANGE, n)
        p["ambient"] = rng.uniform(*AMBIENT_RANGE, n)
        p["gain"] = rng.uniform(*GAIN_RANGE, n)
        light = np.stack([rng.uniform(-0.6, 0.6, n), rng.uniform(-0.6, 0.3, n), np.ones(n)], 1)
        p["light"] = light / np.linalg.norm(light, axis=1, keepdims=True)
        return p

    def surface(self, faces: np.ndarray, params: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
        """Surface vertices [N, V, 3] float32 for the faces (landmarks computed when not given)."""
        lm = self.landmarks(faces) if landmarks is None else landmarks
        return mask_surface(lm, params["top"]).reshape(len(faces), -1, 3)

    def render(self, faces: Any, params: np.ndarray, landmarks: np.ndarray | None = None
               ) -> tuple[Any, Any]:
        """Masked faces [N, H, W, 3] uint8 and masks [N, H, W] uint8 (0 where masked, 255 elsewhere).

        ``faces`` may be host (NumPy) or device (CuPy) arrays; landmarks, when not given, are computed from
        the pixels either way (device faces are copied to the host for them)."""
        if tuple(faces.shape[1:3]) != self.size:
            raise ValueError(f"faces must be [N, {self.size[0]}, {self.size[1]}, 3]; got {tuple(faces.shape)}")
        if landmarks is None:
            host = faces if isinstance(faces, np.ndarray) else _to_host(faces)
            landmarks = self.landmarks(host)
        verts = self.surface(faces, params, landmarks)
        if self._gpu is not None:
            return self._gpu.render(faces, verts, params)
        return render_masks(np.asarray(faces), verts, self.uv, self.tris, self.textures, params)


def _to_host(array: Any) -> np.ndarray:
    """A NumPy copy of a CuPy (or other array-interface) array."""
    return array.get() if hasattr(array, "get") else np.asarray(array)
