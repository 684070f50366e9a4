"""``faceocc render DIR --geometry-only``: every face of train.rec -> its 68 landmarks with fitted depth,
stored once in ``mask_geometry.rec/.idx`` (:mod:`faceocc.datasets.geometry`), from which the loader
renders a new 3D mask every epoch (``mask3d.source: online``).

The same job as the offline masks' (:class:`render.job.RenderJob`): chunks of consecutive keys written
atomically to ``DIR/.faceocc-geometry-render/``, resumable, sharded (``--shard-id/--num-shards``, then
``faceocc render merge DIR --geometry-only``), installed as a whole with a render identity in every
record's ``id2``. The ``template`` source gives every face the same geometry and reads no pixels.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from tqdm import tqdm

from faceocc.datasets.geometry import GEOMETRY_BYTES, GEOMETRY_DTYPE, NAME, encode
from faceocc.datasets.mask_alignment import train_fingerprint
from faceocc.datasets.mask_sets import GEOMETRY
from faceocc.recordio import IRHeader

from .job import RenderJob
from .landmarks import TemplateLandmarks, landmark_source

FORMAT_VERSION = 1


class GeometryJob(RenderJob):
    """One dataset's geometry for online masks: settings, chunk plan, and the work folder."""

    kind = GEOMETRY
    work_name = ".faceocc-geometry-render"
    outputs = (NAME,)

    def _setup(self, landmarks: str, textures: str | os.PathLike | None, device: str, landmark_model: str | None,
               device_id: int | None) -> dict:
        self.renderer = None
        self.landmarks = landmark_source(landmarks, self.size, landmark_model)
        return {"version": FORMAT_VERSION, "set": "geometry", "chunk_size": self.chunk_size,
                "landmarks": landmarks, "points": 68, "dtype": GEOMETRY_DTYPE.str, "bytes": GEOMETRY_BYTES,
                "images": int(len(self.keys)), "size": list(self.size), "train": train_fingerprint(self.train)}

    def _chunk_payloads(self, c: int, keys: np.ndarray, pool: ThreadPoolExecutor, bar: tqdm
                        ) -> tuple[list[IRHeader], dict[str, list]]:
        payloads: list[bytes] = []
        headers: list[IRHeader] = []
        pixels = not isinstance(self.landmarks, TemplateLandmarks)
        for faces, batch_headers in self._batches(keys, pool, decode=pixels):
            payloads += encode(self.landmarks(faces))
            headers += batch_headers
            bar.update(len(faces))
        return headers, {NAME: payloads}
