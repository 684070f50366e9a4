"""``FaceOcclusionLoader``: MSML's tensors (img, msk, ori, label) from a record dataset, via DALI."""

from __future__ import annotations

import logging
import os
from collections import deque
from pathlib import Path
from typing import Any, Literal

import numpy as np
from faceocc.ops import FaceOccluder, Kind
from faceocc.ops.options import Device, check_option
from faceocc.ops.profiles import Profile, load_profile

from faceocc.datasets.geometry import GeometryReader
from faceocc.datasets.mask_alignment import check_alignment
from faceocc.datasets.mask_sets import open_set
from faceocc.recordio import RecordDataset, RecordIOError
from faceocc.recordio.images import MAX_PIXELS, ImageDecodeError

from .decode_check import undecodable
from .order import LastBatch, ShardOrder
from .pipeline import CPU_OUTPUTS, GPU_OUTPUTS, OUTPUTS, HandOff, build_pipeline, occlude_device
from .placement import distributed_placement, local_gpu, whole_number
from .resume import checked_next_batch, stream_identity
from .source import ROW, RecordBatchSource

log = logging.getLogger("faceocc.loader")
OnBadImage = Literal["raise", "skip"]


def _out_size(value: Any) -> tuple[int, int]:
    try:
        h, w = value
        return whole_number("out_size height", h, 1), whole_number("out_size width", w, 1)
    except (TypeError, ValueError) as err:
        raise ValueError(f"out_size must be (height, width), two integers >= 1, not {value!r}") from err


class _KeptUntilDone:
    """Objects kept alive until the GPU has run the work queued before an event: DALI's outputs of a
    batch, which its occlusion kernels read from torch's stream after the fetch has returned (DALI may
    reuse that memory once nothing holds it). At most ``limit`` batches are held; past that the oldest
    event is waited for."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: deque = deque()

    def add(self, event: Any, *refs: Any) -> None:
        self._held.append((event, refs))
        while self._held and (len(self._held) > self.limit or self._held[0][0].done):
            event, _ = self._held.popleft()
            event.synchronize()         # at once when done; else waits for the queued kernels

    def __len__(self) -> int:
        return len(self._held)


def _columns(meta: Any, start: int, stop: int, dtype: Any) -> Any:
    """Bytes ``start:stop`` of every ``meta`` row (a uint8 torch tensor) reinterpreted as ``dtype``."""
    import torch

    return meta[:, start:stop].clone(memory_format=torch.contiguous_format).view(dtype)


class FaceOcclusionLoader:
    """Iterates over batches of ``{"img", "msk", "ori", "label", "kind", "key"}`` torch tensors.

    ``img``/``ori`` [N, C, H, W] of ``dtype`` (C = 3, or what the profile's apply step gives),
    ``msk`` [N, H, W] int32 (1 clean, 0 occluded), ``label`` [N] int64, ``kind`` [N] int8
    (``faceocc.Kind`` codes), ``key`` [N] int64 (record keys), on the pipeline's device. ``len()`` is
    batches per epoch; iterating again runs the next epoch. Every image appears once per epoch across
    shards, in a seeded uniform permutation (see ``faceocc.dali_pipes.order``; ``last_batch`` states
    what happens to the remainder). Bad data and bad arguments fail here, at construction, with the
    file, key and offset or the argument's name in the message; mask records that are not aligned
    with ``train.rec`` are refused. The GPU is ``LOCAL_RANK`` modulo the visible device count
    (:func:`~faceocc.dali_pipes.placement.local_gpu`).

    An image the decoder refuses, or one over ``max_pixels`` pixels (read from its header, before any
    decoding; None: no limit), raises :class:`ImageDecodeError` naming file, key and offset
    (``on_bad_image="raise"``), or is replaced by the nearest earlier usable image of its batch and
    logged once (``"skip"``); either way :meth:`state_dict` stays at the batch that failed. A batch
    is handed to DALI without padding every record to the longest.

    train.rec and the mask set are opened once, here: a mask set replaced later (``render
    --overwrite``) is not mixed into this loader's epochs.

    Args:
        data_dir: folder with ``train.rec``/``train.idx`` (any of the three RecordIO layouts), or a
            ``.rec`` path; ``mask_out.rec``/``mask.rec`` beside it feed the ``mask3d`` kind (or, with the
            profile's ``mask3d.source: online``, ``mask_geometry.rec``: ``faceocc render DIR --geometry-only``).
        batch_size: images per batch (per shard).
        device: ``"gpu"`` (decoding and occlusion on ``LOCAL_RANK``'s GPU, needs CuPy) or ``"cpu"``
            (DALI's CPU decoder and the NumPy twin).
        profile: ``"ms1m"``, ``"casia"``, ``"msml_exact"``, a YAML path or a ``Profile``
            (see :func:`faceocc.load_profile`).
        occluders: a folder in MSML's layout (``glasses_crop/``, ``eleglasses_crop/``,
            ``scarf_crop/``, ``object_train/``); ``None`` takes the built-in procedural bank.
        out_size: (height, width) of the outputs; images of another size are resized.
        seed: seeds the order and every occlusion, with shard, epoch and batch.
        shard_id, num_shards: this process's shard; not given, they come from ``torch.distributed``
            or torchrun's ``RANK``/``WORLD_SIZE`` (one given alone takes the other from there).
        dtype: ``torch.float32`` (default) or ``torch.float16`` for ``img``/``ori``.
        last_batch: ``"drop"`` the last partial batch of an epoch, or ``"keep"`` it.
        shuffle: ``False`` reads in key order.
        num_threads: DALI's threads, and on the CPU the occlusion step's worker threads.
        read_threads: accepted for compatibility (a batch is read at once from a memory map).
        prefetch: batches in flight.
        on_bad_image: ``"raise"`` or ``"skip"`` (above).
        max_pixels: images over this many pixels are bad images (read from their headers, before
            decoding); ``None``: no limit.
        device_id: the local rank whose GPU to use (``device="gpu"``), in place of ``LOCAL_RANK``
            (modulo the visible device count, as above).

    Example::

        import faceocc

        loader = faceocc.FaceOcclusionLoader("data/casia", batch_size=256, device="cpu", seed=0)
        for batch in loader:                          # one epoch per pass
            img, msk, ori, label = batch["img"], batch["msk"], batch["ori"], batch["label"]
        state = loader.state_dict()                   # load_state_dict(state) resumes exactly here
                                                      # (refused for another dataset, seed, profile, ...)
    """

    def __init__(self, data_dir: str | os.PathLike, batch_size: int, device: Device = "gpu",
                 profile: str | os.PathLike | Profile = "ms1m", occluders: str | os.PathLike | None = None,
                 out_size: tuple[int, int] = (112, 112), seed: int = 0, shard_id: int | None = None,
                 num_shards: int | None = None, dtype: Any = None, last_batch: LastBatch = "drop",
                 shuffle: bool = True, num_threads: int = 4, read_threads: int = 4,
                 prefetch: int = 2, on_bad_image: OnBadImage = "raise", max_pixels: int | None = MAX_PIXELS,
                 device_id: int | None = None) -> None:
        import torch

        check_option("device", device, Device)
        check_option("on_bad_image", on_bad_image, OnBadImage)
        check_option("last_batch", last_batch, LastBatch)
        batch_size = whole_number("batch_size", batch_size, 1)
        seed = whole_number("seed", seed, 0)
        num_threads = whole_number("num_threads", num_threads, 1)
        whole_number("read_threads", read_threads, 1)
        prefetch = whole_number("prefetch", prefetch, 1)
        self.max_pixels = None if max_pixels is None else whole_number("max_pixels", max_pixels, 1)
        self.out_size = _out_size(out_size)
        self.torch_dtype = dtype or torch.float32
        np_dtype = {torch.float32: np.float32, torch.float16: np.float16}.get(self.torch_dtype)
        if np_dtype is None:
            raise ValueError("dtype must be torch.float32 or torch.float16")
        self.shard_id, self.num_shards, local = distributed_placement(shard_id, num_shards)
        if device_id is not None:
            local = whole_number("device_id", device_id, 0)
        self.data_dir = Path(data_dir)
        profile = load_profile(profile)          # where its 3D masks come from: records, or stored geometry
        self.online = profile.mask3d.source == "online" and profile.kind_probabilities()[Kind.MASK3D] > 0
        self._train = RecordDataset(self.data_dir)
        self._masks = None
        self._geometry = None
        try:
            if self.online:                      # missing or misaligned: refused, naming the command
                self._geometry = GeometryReader(self.data_dir, self.out_size)
                self._geometry.check(self._train)
            else:
                self._masks = open_set(self.data_dir)
                if self._masks is not None:
                    check_alignment(self._train, self._masks)
        except BaseException:
            self._close_files()
            raise
        masks = self._masks
        keys = self._train.image_keys.copy()
        self.order = ShardOrder(keys, batch_size, seed, self.shard_id, self.num_shards, shuffle, last_batch)
        self.device = device
        self.device_id = local_gpu(local) if device == "gpu" else None
        self.batch_size = batch_size
        extra = {"device_id": self.device_id} if device == "gpu" else {}
        self.occluder = FaceOccluder(profile, occluders, self.out_size, device, seed,
                                     has_masks=self.online or masks is not None, dtype=np_dtype,
                                     **extra)  # on the CPU, HandOff spreads batches over threads
        self.read_masks = masks is not None and self.occluder.profile.kind_probabilities()[Kind.MASK3D] > 0
        self.on_bad_image = on_bad_image
        self._settings = (num_threads, prefetch)
        self._bad: tuple[set[int], set[int]] = (set(), set())
        self._logged: set[int] = set()
        self._next = 0            # global index of the next batch to hand out
        self._iter = None
        self._handoff = None
        self._source = None
        self._pipe_start = 0
        self._fetched = 0
        self._in_flight = _KeptUntilDone(prefetch + 2)

    def _close_files(self) -> None:
        for ds in [self._train, *(self._masks or {}).values()]:
            ds.close()
        if self._geometry is not None:
            self._geometry.close()

    def __len__(self) -> int:
        return len(self.order)

    @property
    def epoch(self) -> int:
        """The epoch the next batch belongs to."""
        return self._next // len(self)

    def _new_source(self) -> RecordBatchSource:
        """The record source from the next batch on, leaving out the images found bad so far."""
        source = RecordBatchSource(self.data_dir, self.order, self.occluder.sampler, self.occluder.seed,
                                   self._next, self.read_masks, (self._train, self._masks), self.max_pixels,
                                   self._geometry)
        source.bad_train, source.bad_masks = self._bad
        return source

    def _build(self) -> None:
        from nvidia.dali.plugin.pytorch import DALIGenericIterator

        num_threads, prefetch = self._settings
        self._iter = None
        if self._handoff is not None:
            self._handoff.close()
        source = self._source = self._new_source()
        on_cpu = self.device == "cpu"  # CPU: the twin inside the pipeline, overlapping the consumer
        keep = 2 * (num_threads + prefetch) + 4   # per shape: outputs and temporaries of the batches in flight
        self._handoff = HandOff(self.occluder, num_threads, keep) if on_cpu else None
        pipe = build_pipeline(source, self.batch_size, self.device_id, self.out_size, num_threads, prefetch,
                              self._handoff)
        names = list(CPU_OUTPUTS) if on_cpu else list(GPU_OUTPUTS[:4 if self.read_masks else 2])
        self._pipe_start = self._next
        self._fetched = 0
        self._iter = DALIGenericIterator(pipe, names, size=-1)

    def _occlude_gpu(self, out: dict) -> dict:
        """The kernels over DALI's outputs on torch's current stream; ``meta`` comes from the host (the
        pipeline leaves it there): uploaded once, and its host copy serves ``ori: occluded``."""
        import cupy as cp
        import torch

        with cp.cuda.Device(self.device_id):
            stream = cp.cuda.ExternalStream(torch.cuda.current_stream(self.device_id).cuda_stream)
            with stream:  # everything on torch's current stream: no extra synchronization needed
                arrays = {k: cp.from_dlpack(v) for k, v in out.items() if k != "meta"}
                host_meta = out["meta"].numpy()
                meta = cp.asarray(host_meta)
                res = occlude_device(self.occluder, arrays["face"], meta, arrays.get("masked"), arrays.get("mask"),
                                     host_params=host_meta)
                done = cp.cuda.Event(disable_timing=True)
                done.record(stream)
                self._in_flight.add(done, out, arrays)   # DALI's buffers outlive the kernels that read them
                batch = {k: torch.from_dlpack(v) for k, v in res.items() if k != "kind"}
                batch["meta"] = torch.from_dlpack(meta)
                return batch

    def _handed_off(self, out: dict) -> dict:
        import torch

        keys, arrays = self._handoff.take()
        if not np.array_equal(keys, _columns(out["meta"], ROW + 8, ROW + 16, torch.int64).numpy().ravel()):
            raise RuntimeError("internal error: the occlusion step's output is out of step with the pipeline")
        return {k: torch.from_numpy(v) for k, v in arrays.items()}

    def _fetch(self) -> dict:
        import torch

        for _ in range(self.batch_size * 3 + 2):  # each retry leaves out at least one more bad image
            try:
                if self._iter is None or self._pipe_start + self._fetched != self._next:
                    self._build()
                out = next(self._iter)[0]
            except ImageDecodeError as err:      # over max_pixels: found by the source before decoding
                self._iter = None
                if self.on_bad_image == "raise":
                    raise
                self._leave_out([(self._dataset_of(err), err.key, err.reason)])
                continue
            except RuntimeError as err:
                self._iter = None
                self._on_pipeline_error(err)
                continue
            except BaseException:
                self._iter = None
                raise
            self._fetched += 1
            batch = self._occlude_gpu(out) if self.device == "gpu" else self._handed_off(out)
            meta = batch.pop("meta", out["meta"])   # on the GPU path, the device copy
            ints = _columns(meta, ROW, ROW + 16, torch.int64)
            batch["label"], batch["key"] = ints[:, 0], ints[:, 1]
            batch["kind"] = _columns(meta, 0, 4, torch.int32)[:, 0].to(torch.int8)  # the row's first field
            return {name: batch[name] for name in OUTPUTS}
        raise RuntimeError("the pipeline keeps failing after leaving out every image the decoder refused")

    def _on_pipeline_error(self, err: RuntimeError) -> None:
        """Find the image(s) the decoder refused in the batches the pipeline was working on; raise
        :class:`ImageDecodeError` for the first (``"raise"``) or leave them out (``"skip"``)."""
        _, prefetch = self._settings
        source = self._source or self._new_source()
        found = []
        for g in range(self._next, self._next + prefetch + 1):
            try:
                r = source.read(*divmod(g, len(self)))
            except ImageDecodeError as exc:       # over max_pixels
                found.append((self._dataset_of(exc), exc.key, exc.reason))
                break
            rows = np.flatnonzero(r.m3d)
            files = [(source.train.dataset, r.train, r.keys)]
            files += [(source.masks[name].dataset, got, r.keys[rows]) for name, got in r.masks.items()]
            for ds, got, keys in files:
                for i, why in undecodable(got.payloads()).items():
                    found.append((ds, int(keys[i]), why))
            if found:
                break
        if not found:
            raise err
        if self.on_bad_image == "raise":
            ds, key, why = found[0]
            raise ImageDecodeError(f"the image cannot be decoded: {why}", ds.rec_path, key,
                                   ds.offset_of(key)) from err
        self._leave_out(found)

    def _dataset_of(self, err: RecordIOError) -> RecordDataset:
        """The open dataset (train.rec or a mask file) that ``err`` names."""
        return next((ds for ds in (self._masks or {}).values() if str(ds.rec_path) == err.path), self._train)

    def _leave_out(self, found: list[tuple[RecordDataset, int, str]]) -> None:
        """``on_bad_image="skip"``: serve the batches again without these images, each logged once."""
        for ds, key, why in found:
            (self._bad[0] if ds is self._train else self._bad[1]).add(key)
            if key not in self._logged:
                self._logged.add(key)
                log.warning("skipping an image the decoder refuses (%s, key %d, byte offset %d): %s",
                            ds.rec_path, key, ds.offset_of(key), why)

    def __iter__(self):
        remaining = len(self) - self._next % len(self)
        for _ in range(remaining):
            batch = self._fetch()
            self._next += 1
            yield batch

    def state_dict(self) -> dict:
        """Where the loader stands, and what defines its stream (dataset and mask set fingerprints, seed,
        shard layout, sizes, dtype, order, profile and occluder digests: ``dali_pipes.resume``); restoring
        it continues with the batches an uninterrupted run gives."""
        return {"next_batch": self._next, **stream_identity(self)}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a :meth:`state_dict` of a loader built on the same dataset with the same arguments;
        any other state (another dataset, profile, size, order, ...; a missing or malformed field) is
        refused with a ValueError naming the field and both values."""
        self._next = checked_next_batch(state, stream_identity(self))
        self._iter = None


__all__ = ["FaceOcclusionLoader", "ImageDecodeError", "RecordIOError", "distributed_placement"]
