"""The DALI pipeline: external source (records) -> decode (mixed on GPU, cpu without) -> resize ->
occlusion (python_function: CuPy kernels on GPU, NumPy twin on CPU) -> outputs."""

from __future__ import annotations

from typing import Any

import numpy as np

from ops import FaceOccluder
from ops.params import PARAM_DTYPE

from .source import RecordBatchSource

OUTPUTS = ("img", "msk", "ori", "label", "kind", "key")


class OcclusionStep:
    """The python_function body: stacks the batch, applies the parameter table, splits per sample."""

    def __init__(self, occluder: FaceOccluder, has_masks: bool) -> None:
        self.occluder = occluder
        self.has_masks = has_masks

    def __call__(self, faces: list, params: list, masked: list | None = None, masks: list | None = None
                 ) -> tuple[list, list, list, list]:
        p = self.occluder.profile
        if self.occluder.device == "gpu":
            import cupy as cp

            xp = cp
            table = cp.stack(params)
            out = self.occluder._gpu.apply_device(
                cp.stack(faces), table, None if masked is None else cp.stack(masked),
                None if masks is None else cp.stack(masks)[..., 0], p.grayscale, p.normalize,
                self.occluder.dtype)
        else:
            xp = np
            table = np.stack(params).view(PARAM_DTYPE).ravel()
            out = self.occluder.apply(np.stack(faces), table, None if masked is None else np.stack(masked),
                                      None if masks is None else np.stack(masks)[..., 0])
        kind = xp.ascontiguousarray(out["kind"].reshape(-1, 1))
        n = len(faces)
        return ([out["img"][i] for i in range(n)], [out["msk"][i] for i in range(n)],
                [out["ori"][i] for i in range(n)], [kind[i] for i in range(n)])


def build_pipeline(source: RecordBatchSource, occluder: FaceOccluder, batch_size: int,
                   device_id: int | None, size: tuple[int, int], num_threads: int = 4,
                   prefetch: int = 2) -> Any:
    """A built DALI pipeline whose outputs are, in order, :data:`OUTPUTS`."""
    from nvidia.dali import fn, pipeline_def, types

    gpu = device_id is not None
    has_masks = source.has_masks
    step = OcclusionStep(occluder, has_masks)
    h, w = size

    def decode(data: Any, gray: bool = False) -> Any:
        image = fn.decoders.image(data, device="mixed" if gpu else "cpu",
                                  output_type=types.GRAY if gray else types.RGB)
        return fn.resize(image, resize_x=w, resize_y=h,
                         interp_type=types.INTERP_NN if gray else types.INTERP_LINEAR, antialias=not gray)

    @pipeline_def(batch_size=batch_size, num_threads=num_threads, device_id=device_id,
                  prefetch_queue_depth=prefetch, py_start_method="spawn")
    def pipe() -> tuple:
        outs = fn.external_source(source=source, num_outputs=6 if has_masks else 4, batch=True,
                                  batch_info=True, cycle=None,
                                  dtype=[types.UINT8, types.INT64, types.INT64, types.UINT8]
                                  + [types.UINT8] * (2 if has_masks else 0))
        jpegs, labels, keys, params = outs[:4]
        faces = decode(jpegs)
        if gpu:
            params = params.gpu()
        extra = (decode(outs[4]), decode(outs[5], gray=True)) if has_masks else ()
        img, msk, ori, kind = fn.python_function(faces, params, *extra, function=step, batch_processing=True,
                                                 num_outputs=4, device="gpu" if gpu else "cpu")
        return img, msk, ori, labels, kind, keys

    p = pipe()
    p.build()
    return p
