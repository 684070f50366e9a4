"""``faceocc.occlude``: MSML's occlusion on a batch of torch tensors, on the GPU or the CPU (kornia style).

A thin layer over :class:`faceocc.ops.FaceOccluder`: the parameter table is its :meth:`~FaceOccluder.sample`,
the pixels its :meth:`~FaceOccluder.apply`: the CUDA kernels on CuPy views of the tensors (DLPack, no copy),
on torch's current stream, for CUDA tensors; the NumPy twin for CPU tensors. No augmentation code of its own.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections import OrderedDict
from typing import Any

import numpy as np

from faceocc.ops import FaceOccluder, load_profile
from faceocc.ops.atlas import OccluderBank
from faceocc.ops.params import PARAM_DTYPE
from faceocc.ops.profiles import Profile
from faceocc.ops.sampler import BatchTables

CACHED = 8                     # occluders kept (each holds its occluder bank, and on a GPU its kernels)
SEED_BOUND = 2**63 - 1         # seeds drawn from a torch.Generator lie in [0, this)
_occluders: OrderedDict = OrderedDict()
_lock = threading.Lock()        # calls from several threads share the cache


def _cuda_index(images: Any) -> int | None:
    """The CUDA device of ``images``, or None for a tensor in host memory."""
    return images.device.index if images.device.type == "cuda" else None


def _occluder(prof: Profile, occluders: Any, size: tuple[int, int], cuda: int | None, has_masks: bool,
              dtype: Any) -> FaceOccluder:
    """A FaceOccluder for these settings, made once (its occluder bank is prepared, and on a GPU its atlas
    uploaded and kernels compiled, only the first time)."""
    bank = isinstance(occluders, OccluderBank)
    source = id(occluders) if bank else (None if occluders is None else os.fspath(occluders))
    key = (repr(prof), source, size, cuda, has_masks, np.dtype(dtype).str)
    with _lock:
        if key in _occluders:
            _occluders.move_to_end(key)
            return _occluders[key][0]
        with warnings.catch_warnings():  # without masks the mask3d share goes to the other kinds, as documented
            warnings.simplefilter("ignore", UserWarning)
            occ = FaceOccluder(prof, occluders, size, "cpu" if cuda is None else "gpu", has_masks=has_masks,
                               dtype=dtype, device_id=cuda)
        _occluders[key] = (occ, occluders)     # a bank given by the caller stays alive with its id in the key
        while len(_occluders) > CACHED:
            _occluders.popitem(last=False)
    return occ


def clear_cache() -> None:
    """Forget the occluders made so far (their banks, atlases and kernels)."""
    with _lock:
        _occluders.clear()


def _seed_of(seed: Any) -> int:
    import torch

    if isinstance(seed, torch.Generator):
        return int(torch.randint(0, SEED_BOUND, (1,), generator=seed, device=seed.device).item())
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0 or a torch.Generator, not {seed!r}")
    return int(seed)


def sample_params(occ: FaceOccluder, n: int, seed: int) -> np.ndarray:
    """The parameter table :func:`occlude` draws for ``n`` faces and ``seed``: ``FaceOccluder.sample`` of an
    occluder with that seed and ``occ``'s profile and bank (3D-mask rows point at their own row), drawn by
    ``occ``'s own sampler under that seed's rule (``ops.sampler.BatchTables``) instead of a new occluder."""
    table = BatchTables(occ.sampler, seed)(n)
    table["m3d_slot"] = np.where(table["m3d_slot"] >= 0, np.arange(n), -1)
    return table


def _checked_table(params: Any, n: int) -> np.ndarray:
    table = np.asarray(params)
    if table.dtype != PARAM_DTYPE or table.shape != (n,):
        raise ValueError(f"params must be a parameter table of {n} rows (the 'params' of an earlier call), "
                         f"not {table.dtype} {table.shape}")
    return table


def _faces(images: Any, what: str = "images") -> Any:
    """uint8 [N, H, W, 3] (a copy, contiguous) of ``images`` [N, 3, H, W]: uint8, or float in [0, 1]."""
    import torch

    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{what} must be a tensor [N, 3, H, W] (RGB), not {got}")
    images = images.detach()
    if images.dtype.is_floating_point:
        low, high = torch.aminmax(images) if images.numel() else (torch.tensor(0), torch.tensor(1))
        if low < 0 or high > 1:
            raise ValueError(f"float {what} must lie in [0, 1] (found {float(low):.3g} .. {float(high):.3g})")
        images = images.mul(255).round_().to(torch.uint8)
    elif images.dtype != torch.uint8:
        raise ValueError(f"{what} must be uint8, or float in [0, 1], not {images.dtype}")
    return images.permute(0, 2, 3, 1).contiguous()


def _mask_planes(masks: Any, shape: tuple) -> Any:
    """uint8 [N, H, W] of 3D-mask records given as [N, H, W] or [N, 1, H, W]."""
    import torch

    planes = masks[:, 0] if isinstance(masks, torch.Tensor) and masks.ndim == 4 and masks.shape[1] == 1 else masks
    if not isinstance(planes, torch.Tensor) or planes.dtype != torch.uint8 or tuple(planes.shape) != shape:
        got = (planes.dtype, tuple(planes.shape)) if isinstance(planes, torch.Tensor) else type(masks).__name__
        raise ValueError(f"masks must be uint8 [N, H, W] or [N, 1, H, W] with N, H, W {shape}, not {got}")
    return planes.contiguous()


def occlude(images: Any, *, seed: Any = None, params: np.ndarray | None = None,
            profile: str | os.PathLike | Profile = "ms1m", occluders: str | os.PathLike | OccluderBank | None = None,
            masks: tuple[Any, Any] | None = None, dtype: Any = None) -> dict[str, Any]:
    """MSML's occlusion of a batch of aligned faces, on the tensors' device.

    The parameter table is drawn on the host from ``seed`` (a pure function of seed, profile and batch size)
    or given as ``params``; the pixels are computed by the CUDA kernels for CUDA tensors (through DLPack, on
    torch's current stream of that device, no copy of the outputs) and by the NumPy twin for CPU tensors:
    the same as :meth:`faceocc.ops.FaceOccluder.apply` of that table.

    Args:
        images: [N, 3, H, W] RGB faces, uint8 or float in [0, 1], on a CUDA device or the CPU.
        seed: an integer >= 0, or a ``torch.Generator`` (one seed is drawn from it per call).
        params: instead of ``seed``, a parameter table to replay (the ``params`` of an earlier call).
        profile: a built-in profile name (``ms1m``, ``casia``, ``msml_exact``), a YAML file or a Profile.
        occluders: a folder of RGBA occluder images (MSML's layout), an OccluderBank, or None for the
            built-in procedural bank.
        masks: ``(masked_faces, masks)``, the offline 3D-mask renders of the same faces ([N, 3, H, W] uint8,
            and [N, H, W] or [N, 1, H, W] uint8 with 0 where the mask covers the face, 255 elsewhere), on
            the images' device; without them the profile's mask3d share goes to the other kinds.
        dtype: ``torch.float32`` (default) or ``torch.float16`` for ``img`` and ``ori``.

    Returns:
        ``img`` and ``ori`` [N, C, H, W] (occluded face, and the clean face with the same flip; normalized
        to [-1, 1] by the default profiles), ``msk`` [N, H, W] int32 (1 clean, 0 occluded), ``kind`` [N]
        int8 (:class:`faceocc.ops.Kind` codes), all on the images' device, and ``params``, the NumPy
        parameter table used.

    Example::

        out = faceocc.occlude(faces, seed=0)                 # faces: [N, 3, 112, 112] uint8 on cuda:0
        again = faceocc.occlude(faces, params=out["params"])  # the same tensors
    """
    import torch

    if (seed is None) == (params is None):
        raise ValueError("give exactly one of seed (an integer or a torch.Generator) and params")
    faces = _faces(images)
    n, h, w, _ = faces.shape
    if n == 0:
        raise ValueError("images hold no faces (N = 0)")
    np_dtype = {None: np.float32, torch.float32: np.float32, torch.float16: np.float16}.get(dtype)
    if np_dtype is None:
        raise ValueError(f"dtype must be torch.float32 or torch.float16, not {dtype!r}")
    masked = planes = None
    if masks is not None:
        masked, planes = masks
        masked = _faces(masked, "masked_faces")
        planes = _mask_planes(planes, (n, h, w))
        if tuple(masked.shape) != (n, h, w, 3):
            raise ValueError(f"masked_faces must match images [{n}, 3, {h}, {w}], not {tuple(masked.shape)}")
        if masked.device != faces.device or planes.device != faces.device:
            raise ValueError(f"masks must be on the images' device ({faces.device})")
    cuda = _cuda_index(images)
    occ = _occluder(load_profile(profile), occluders, (h, w), cuda, masks is not None, np_dtype)
    table = sample_params(occ, n, _seed_of(seed)) if params is None else _checked_table(params, n)
    if cuda is None:
        out = occ.apply(faces.numpy(), table, None if masked is None else masked.numpy(),
                        None if planes is None else planes.numpy())
        result = {k: torch.from_numpy(v) for k, v in out.items()}
    else:
        result = _apply_cuda(occ, cuda, table, faces, masked, planes)
    result["params"] = table
    return result


def _apply_cuda(occ: FaceOccluder, cuda: int, table: np.ndarray, *tensors: Any) -> dict:
    """``occ.apply`` on CuPy views of CUDA tensors, on torch's current stream of device ``cuda``."""
    import cupy as cp
    import torch

    with cp.cuda.Device(cuda):
        stream = cp.cuda.ExternalStream(torch.cuda.current_stream(cuda).cuda_stream)
        with stream:       # torch made the inputs on this stream and reads the outputs on it: no extra sync
            faces, masked, masks = (None if t is None else cp.from_dlpack(t) for t in tensors)
            out = occ.apply(faces, table, masked, masks)
            return {k: torch.from_dlpack(v) for k, v in out.items()}


__all__ = ["clear_cache", "occlude", "sample_params"]
