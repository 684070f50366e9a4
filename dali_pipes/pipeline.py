"""The DALI pipeline: external source (records) -> decode (mixed on GPU, cpu without) -> resize ->
outputs, and the occlusion step that follows decoding.

Two places for the occlusion step, one semantics:

* in the pipeline, as ``fn.python_function`` (:class:`OcclusionStep`): the loader's CPU mode, and the
  DALI-composable operator for users who build their own pipelines (:func:`occlusion_op`);
* after the pipeline, on dense device arrays (:func:`occlude_device`): the loader's GPU mode. The
  pipeline hands out decoded faces and the parameter table, DALI's own iterator turns them into
  torch CUDA tensors, and one kernel pass per batch runs on torch's current stream.

Masked faces and masks are decoded only for the rows that use a 3D mask (a DALI conditional); the
other rows carry the face itself there, untouched by the apply step (their ``m3d_slot`` is -1).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ops import FaceOccluder
from ops.params import PARAM_DTYPE

from .source import RecordBatchSource

OUTPUTS = ("img", "msk", "ori", "label", "kind", "key")
DECODED = ("face", "params", "label", "key", "masked", "mask")  # GPU mode; masked/mask with mask records


def occlude_device(gpu: Any, faces: Any, params: Any, masked: Any, masks: Any, grayscale: bool,
                   normalize: bool, dtype: Any, stream: Any = None) -> dict:
    """One kernel pass over a batch of CuPy arrays: faces [N, H, W, 3] uint8, params [N, row bytes]
    uint8, masked [N, H, W, 3] / masks [N, H, W] or [N, H, W, 1] uint8 or None; on ``stream`` (a CuPy
    stream) when given, else on CuPy's current stream. ``gpu`` is an ``ops.gpu.GpuOccluder``.
    Returns ``img``, ``msk``, ``ori``, ``kind`` as CuPy arrays."""
    if masks is not None and masks.ndim == 4:
        masks = masks.reshape(masks.shape[:3])
    if stream is None:
        return gpu.apply_device(faces, params, masked, masks, grayscale, normalize, dtype)
    with stream:
        return gpu.apply_device(faces, params, masked, masks, grayscale, normalize, dtype)


class OcclusionStep:
    """The ``fn.python_function`` body (batch processing): stacks the batch, applies the parameter
    table (NumPy twin on CPU, :func:`occlude_device` on GPU), splits per sample."""

    def __init__(self, occluder: FaceOccluder) -> None:
        self.occluder = occluder

    def __call__(self, faces: list, params: list, masked: list | None = None, masks: list | None = None
                 ) -> tuple[list, list, list, list]:
        occ = self.occluder
        p = occ.profile
        if occ.device == "gpu":
            import cupy as cp

            xp = cp
            out = occlude_device(occ._gpu, cp.stack(faces), cp.stack(params),
                                 None if masked is None else cp.stack(masked),
                                 None if masks is None else cp.stack(masks), p.grayscale, p.normalize, occ.dtype)
        else:
            xp = np
            table = np.stack(params).view(PARAM_DTYPE).ravel()
            out = occ.apply(np.stack(faces), table, None if masked is None else np.stack(masked),
                            None if masks is None else np.stack(masks)[..., 0])
        kind = xp.ascontiguousarray(out["kind"].reshape(-1, 1))
        n = len(faces)
        return ([out["img"][i] for i in range(n)], [out["msk"][i] for i in range(n)],
                [out["ori"][i] for i in range(n)], [kind[i] for i in range(n)])


def occlusion_op(occluder: FaceOccluder, faces: Any, params: Any, masked: Any = None, masks: Any = None) -> tuple:
    """The occlusion as a DALI operator inside a user's pipeline definition: ``faces`` decoded
    [H, W, 3] uint8 samples, ``params`` rows of ``occluder.sample(...)`` as uint8 [row bytes];
    ``masked``/``masks`` for 3D-mask rows (``m3d_slot`` = row). Returns DataNodes img, msk, ori, kind."""
    from nvidia.dali import fn

    extra = () if masked is None else (masked, masks)
    return fn.python_function(faces, params, *extra, function=OcclusionStep(occluder), batch_processing=True,
                              num_outputs=4, device=occluder.device)


def build_pipeline(source: RecordBatchSource, batch_size: int, device_id: int | None, size: tuple[int, int],
                   num_threads: int = 4, prefetch: int = 2, occluder: FaceOccluder | None = None) -> Any:
    """A built DALI pipeline. With ``occluder`` (CPU mode) its outputs are :data:`OUTPUTS`; without,
    :data:`DECODED` (``masked``/``mask`` only when the source reads mask records)."""
    from nvidia.dali import fn, pipeline_def, types

    gpu = device_id is not None
    has_masks = source.has_masks
    h, w = size

    def decode(data: Any, gray: bool = False) -> Any:
        image = fn.decoders.image(data, device="mixed" if gpu else "cpu", adjust_orientation=True,
                                  output_type=types.GRAY if gray else types.RGB)
        return fn.resize(image, resize_x=w, resize_y=h,
                         interp_type=types.INTERP_NN if gray else types.INTERP_LINEAR, antialias=not gray)

    @pipeline_def(batch_size=batch_size, num_threads=num_threads, device_id=device_id,
                  prefetch_queue_depth=prefetch, py_start_method="spawn", enable_conditionals=has_masks)
    def pipe() -> tuple:
        outs = fn.external_source(source=source, num_outputs=source.num_outputs, batch=True, batch_info=True,
                                  cycle=None, dtype=[types.UINT8, types.INT64, types.INT64, types.UINT8]
                                  + ([types.BOOL, types.UINT8, types.UINT8] if has_masks else []))
        jpegs, labels, keys, params = outs[:4]
        faces = decode(jpegs)
        if gpu:
            params = params.gpu()
        extra = ()
        if has_masks:
            use_m3d, masked_jpegs, mask_pngs = outs[4:]
            if use_m3d:
                masked = decode(masked_jpegs)
                masks = decode(mask_pngs, gray=True)
            else:  # never read by the apply step; the face is at hand and costs no decode
                masked = faces
                masks = faces[:, :, 0:1]
            extra = (masked, masks)
        if occluder is None:
            return (faces, params, labels, keys, *extra)
        img, msk, ori, kind = occlusion_op(occluder, faces, params, *extra)
        return img, msk, ori, labels, kind, keys

    p = pipe()
    p.build()
    return p
