"""The DALI pipeline: external source (records) -> decode (mixed on GPU, cpu without) -> resize ->
outputs, and the occlusion step that follows decoding.

Two places for the occlusion step, one semantics:

* in the pipeline, as ``fn.python_function`` (:class:`OcclusionStep`): the loader's CPU mode, and the
  DALI-composable operator for users who build their own pipelines (:func:`occlusion_op`);
* after the pipeline, on dense device arrays (:func:`occlude_device`): the loader's GPU mode. The
  pipeline hands out decoded faces (and the parameter table, left on the host), DALI's own iterator
  turns them into torch tensors, and one kernel pass per batch runs on torch's current stream.

Masked faces and masks are cut out and decoded only for the rows that use a 3D mask (a DALI
conditional); the other rows carry a 1 x 1 crop of the face there (padded to full size where a
dense batch is needed), never read by the apply step (their ``m3d_slot`` is -1). Every pipeline
output costs DALI time per batch: label, key and the parameter row travel together as one ``meta``
row (:func:`faceocc.dali_pipes.source.pack_meta`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from faceocc.ops import FaceOccluder
from faceocc.ops.buffers import BufferPool
from faceocc.ops.params import PARAM_DTYPE

from .source import ROW, RecordBatchSource

OUTPUTS = ("img", "msk", "ori", "label", "kind", "key")
CPU_OUTPUTS = ("kind", "meta")                             # CPU mode: img/msk/ori via HandOff.ready
GPU_OUTPUTS = ("face", "meta", "masked", "mask")           # GPU mode; masked/mask with mask records
RECORD_OUTPUTS = ("jpeg", "meta", "masked_jpeg", "mask_png")  # decode=False: the record path alone


def occlude_device(occ: FaceOccluder, faces: Any, params: Any, masked: Any, masks: Any, stream: Any = None,
                   host_params: np.ndarray | None = None) -> dict:
    """One kernel pass over a batch of CuPy arrays: faces [N, H, W, 3] uint8, params [N, row bytes]
    uint8 (a wider row, such as a ``meta`` row, is cut to the parameters), masked [N, H, W, 3] and
    masks [N, H, W] or [N, H, W, 1] uint8, or None; on ``stream`` (a CuPy stream) when given, else
    on CuPy's current stream, with every option of ``occ``'s profile (``FaceOccluder.apply_device``).
    ``host_params``: the same rows on the host, when the caller has them (``ori: occluded`` reads the
    table there instead of copying it back from the device). Returns ``img``, ``msk``, ``ori``,
    ``kind`` as CuPy arrays."""
    if params.shape[1] != ROW:
        params = params[:, :ROW]
    extra = {}
    if host_params is not None:
        rows = np.ascontiguousarray(np.asarray(host_params, np.uint8)[:, :ROW])
        extra["table"] = rows.view(PARAM_DTYPE).ravel()
    if masks is not None and masks.ndim == 4:
        masks = masks.reshape(masks.shape[:3])
    if stream is None:
        return occ.apply_device(faces, params, masked, masks, **extra)
    with stream:
        return occ.apply_device(faces, params, masked, masks, **extra)


def aligned(samples: list | None, rows: np.ndarray, alloc: BufferPool) -> np.ndarray | None:
    """The samples of ``rows`` (e.g. a batch's 3D-mask rows) at their own index of one array aligned
    with the batch, as the apply step reads them (``ops.params``: ``m3d_slot``), a trailing channel
    of 1 dropped; the other rows are left unwritten (never read). None without samples or rows."""
    if samples is None or not len(rows):
        return None
    first = np.asarray(samples[rows[0]])
    shape = first.shape[:-1] if first.ndim == 3 and first.shape[-1] == 1 else first.shape
    out = alloc((len(samples), *shape), np.uint8)
    for i in rows.tolist():
        out[i] = np.asarray(samples[i]).reshape(shape)
    return out


class OcclusionStep:
    """The ``fn.python_function`` body (batch processing): stacks the batch, applies the parameter
    rows (the first ``ROW`` bytes of each ``params`` sample), splits per sample. Outputs img, msk,
    ori and, with ``kind=True``, kind. On the CPU, ``threads`` > 1 applies contiguous row ranges in
    parallel (the apply step is per row, so the result is the same) and hands out their rows
    without joining them first."""

    def __init__(self, occluder: FaceOccluder, kind: bool = True, threads: int = 1) -> None:
        self.occluder = occluder
        self.kind = kind
        self.threads = max(1, int(threads))
        self._pool = None
        self._buffers = BufferPool(self.threads + 2)   # DALI copies the outputs: they come back soon

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pool": None}

    def _parts(self, faces: np.ndarray, table: np.ndarray, masked: list | None, masks: list | None) -> list[dict]:
        if self._pool is None and self.threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.threads)
        rows = np.flatnonzero(table["m3d_slot"] >= 0)
        return self.occluder.apply_parts(faces, table, aligned(masked, rows, self._buffers),
                                         aligned(masks, rows, self._buffers), alloc=self._buffers, pool=self._pool,
                                         threads=self.threads)

    def __call__(self, faces: list, params: list, masked: list | None = None, masks: list | None = None
                 ) -> tuple[list, ...]:
        occ = self.occluder
        if occ.device == "gpu":
            import cupy as cp

            xp = cp
            out = occlude_device(occ, cp.stack(faces), cp.stack(params), None if masked is None else cp.stack(masked),
                                 None if masks is None else cp.stack(masks))
            parts = [out]
        else:
            xp = np
            rows = np.stack(params)
            table = np.ascontiguousarray(rows[:, :ROW]).view(PARAM_DTYPE).ravel()
            parts = self._parts(np.stack(faces), table, masked, masks)
        names = ("img", "msk", "ori", "kind") if self.kind else ("img", "msk", "ori")
        split = []
        for name in names:
            arrays = [xp.ascontiguousarray(part[name].reshape(-1, 1)) if name == "kind" else part[name]
                      for part in parts]
            split.append([row for array in arrays for row in array])
        return tuple(split)


class HandOff:
    """The loader's CPU step (a ``fn.python_function`` body): stacks the batch, hands the twin's work
    on it to one of ``threads`` worker threads and puts ``(keys, future of {"img", "msk", "ori"})`` on
    :attr:`ready`; DALI itself carries only ``kind`` per sample. So the big tensors skip DALI's
    output copy and the iterator's copy (on a CPU, copying them costs as much as the twin), the
    step does not hold a DALI thread while the twin runs, and consecutive batches are occluded in
    parallel, each whole (no join). DALI runs one operator's iterations in order, so :attr:`ready`
    is in batch order; the keys let the consumer check that. The outputs are written to arrays of a
    :class:`faceocc.ops.buffers.BufferPool` (up to ``keep`` per output): those of batches the consumer has let
    go of are reused, those it keeps are never touched."""

    def __init__(self, occluder: FaceOccluder, threads: int = 1, keep: int = 8) -> None:
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        self.occluder = occluder
        self.ready: deque = deque()
        self.buffers = BufferPool(keep)
        self._pool = ThreadPoolExecutor(max(1, int(threads)), thread_name_prefix="faceocc-occlusion")

    def __call__(self, faces: list, meta: list, masked: list | None = None, masks: list | None = None) -> list:
        from .source import unpack_meta

        table, _, keys = unpack_meta(np.stack(meta))
        n = len(table)
        rows = np.flatnonzero(table["m3d_slot"] >= 0)     # only these rows hold full masked faces and masks
        masked, masks = aligned(masked, rows, self.buffers), aligned(masks, rows, self.buffers)
        stacked = np.stack(faces, out=self.buffers((n, *np.shape(faces[0])), np.uint8))
        job = self._pool.submit(self.occluder.apply, stacked, table, masked, masks, alloc=self.buffers)
        self.ready.append((keys, job))
        return list(table["kind"].astype(np.int8).reshape(n, 1))

    def take(self) -> tuple[np.ndarray, dict]:
        """The oldest batch: its keys and ``{"img", "msk", "ori"}`` (waits for the twin)."""
        keys, job = self.ready.popleft()
        return keys, {k: v for k, v in job.result().items() if k != "kind"}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def occlusion_op(occluder: FaceOccluder, faces: Any, params: Any, masked: Any = None, masks: Any = None,
                 kind: bool = True, threads: int = 1) -> tuple:
    """The occlusion as a DALI operator inside a user's pipeline definition (a ``fn.python_function``
    with ``batch_processing=True``): CuPy kernels on the occluder's GPU, the NumPy twin on the CPU.

    Args:
        occluder: a :class:`faceocc.FaceOccluder` whose ``size`` is the faces' size; its ``device``
            is the operator's.
        faces: DataNode of decoded [H, W, 3] uint8 samples.
        params: DataNode of parameter rows, one per sample: the bytes of a row of
            ``occluder.sample(...)`` as uint8 [row bytes].
        masked, masks: DataNodes of the 3D-mask rows' masked face [H, W, 3] and mask [H, W, 1]
            (uint8, one per sample: ``m3d_slot`` is the row, see ``faceocc.ops.params``; other rows'
            samples are never read and may be any size); ``None`` when the table has no such rows.
        kind: also return each sample's kind code.
        threads: CPU threads that share each batch's rows.

    Returns:
        DataNodes ``img``, ``msk``, ``ori`` (and ``kind`` with ``kind=True``), as
        ``occluder.apply`` gives them.

    Example::

        import numpy as np
        from nvidia.dali import fn, pipeline_def, types
        from faceocc import FaceOccluder, occlusion_op

        occ = FaceOccluder("casia", None, (112, 112), "cpu", seed=0, has_masks=False)
        faces = np.zeros((32, 112, 112, 3), np.uint8)     # your decoded faces
        rows = occ.sample(32, batch=0).view(np.uint8).reshape(32, -1)

        @pipeline_def(batch_size=32, num_threads=2, device_id=None)
        def pipe():
            f, p = fn.external_source(source=lambda: (faces, rows), num_outputs=2, batch=True,
                                      dtype=[types.UINT8, types.UINT8])
            return tuple(occlusion_op(occ, f, p, threads=2))
    """
    from nvidia.dali import fn

    extra = () if masked is None else (masked, masks)
    step = OcclusionStep(occluder, kind, threads)
    return fn.python_function(faces, params, *extra, function=step, batch_processing=True,
                              num_outputs=4 if kind else 3, device=occluder.device)


def source_types(has_masks: bool) -> list:
    """DALI types of :class:`RecordBatchSource`'s outputs, in order."""
    from nvidia.dali import types

    base = [types.UINT8, types.INT32, types.UINT8]
    return base + ([types.BOOL, types.UINT8, types.INT32, types.UINT8, types.INT32] if has_masks else [])


def payloads(images: Any, lengths: Any) -> Any:
    """Encoded images as DALI samples: each row of ``images`` cut to its length (a DALI slice)."""
    from nvidia.dali import fn

    return fn.slice(images, start=[0], shape=lengths, axes=[0])


def build_pipeline(source: RecordBatchSource, batch_size: int, device_id: int | None, size: tuple[int, int],
                   num_threads: int = 4, prefetch: int = 2, handoff: HandOff | None = None,
                   decode: bool = True, uniform: bool | None = None) -> Any:
    """A built DALI pipeline. With ``handoff`` (CPU mode) its outputs are :data:`CPU_OUTPUTS` (and
    the tensors go to ``handoff.ready``); without, :data:`GPU_OUTPUTS`; with ``decode=False`` (no
    handoff), :data:`RECORD_OUTPUTS`. masked/mask only with mask records that the source reads; their
    rows without a 3D mask hold a 1 x 1 crop, or with ``uniform`` (default: on a GPU) that crop
    padded to full size, so that every output is a dense batch."""
    from nvidia.dali import fn, pipeline_def, types

    gpu = device_id is not None
    uniform = gpu if uniform is None else uniform
    has_masks = source.has_masks
    h, w = size

    def image(data: Any, gray: bool = False) -> Any:
        if not decode:
            return data
        image = fn.decoders.image(data, device="mixed" if gpu else "cpu", adjust_orientation=True,
                                  output_type=types.GRAY if gray else types.RGB)
        shape = fn.peek_image_shape(data, adjust_orientation=True)     # from the header: no decode
        if (shape[0] == h) & (shape[1] == w):   # InsightFace's own size: resizing would copy it unchanged
            out = image
        else:
            out = fn.resize(image, resize_x=w, resize_y=h,
                            interp_type=types.INTERP_NN if gray else types.INTERP_LINEAR, antialias=not gray)
        return out

    @pipeline_def(batch_size=batch_size, num_threads=num_threads, device_id=device_id,
                  prefetch_queue_depth=prefetch, py_start_method="spawn", enable_conditionals=True)
    def pipe() -> tuple:
        outs = fn.external_source(source=source, num_outputs=source.num_outputs, batch=True, batch_info=True,
                                  cycle=None, dtype=source_types(has_masks))
        images, lengths, meta = outs[:3]
        faces = image(payloads(images, lengths))
        extra = ()
        if has_masks:
            use_m3d, masked_images, masked_lengths, mask_images, mask_lengths = outs[3:]
            if use_m3d:
                masked = image(payloads(masked_images, masked_lengths))
                masks = image(payloads(mask_images, mask_lengths), gray=True)
            else:  # never read by the apply step: a 1 x 1 crop of the face (or nothing), no decode
                masked = faces[0:1, 0:1] if decode else masked_images[0:0]
                masks = faces[0:1, 0:1, 0:1] if decode else masked
            if uniform and decode:  # dense batches for DALI's iterator (the GPU path)
                masked = fn.pad(masked, shape=[h, w, 3])
                masks = fn.pad(masks, shape=[h, w, 1])
            extra = (masked, masks)
        if handoff is None:  # meta stays on the host: the loader uploads it and keeps the host copy
            return (faces, meta, *extra)
        kind = fn.python_function(faces, meta, *extra, function=handoff, batch_processing=True, num_outputs=1)
        return kind, meta

    p = pipe()
    p.build()
    return p
