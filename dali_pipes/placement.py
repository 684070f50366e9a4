"""Where a process stands in a multi-GPU job: shard id, shard count, local device."""

from __future__ import annotations

import os
import sys
from numbers import Integral


def whole_number(name: str, value: object, minimum: int) -> int:
    """``value`` as an int, refusing bools, fractions, strings and values below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, not {value!r}")
    return int(value)


def _rank_and_world() -> tuple[int, int]:
    # A process group exists only where the process imported torch.distributed itself: looking it up in
    # sys.modules spares `faceocc render` importing torch (seconds, and GBs of CUDA libraries mapped).
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def distributed_placement(shard_id: int | None, num_shards: int | None) -> tuple[int, int, int]:
    """(shard_id, num_shards, local device index). Each of ``shard_id`` / ``num_shards`` that is not
    given comes from torch.distributed when initialized, else torchrun's RANK / WORLD_SIZE, else a
    single process; the local device from LOCAL_RANK. So ``num_shards=2`` under torchrun puts each
    rank on its own shard. Raises ValueError for a shard count below 1 or a shard id out of range."""
    local = int(os.environ.get("LOCAL_RANK", 0))
    if num_shards is not None:
        num_shards = whole_number("num_shards", num_shards, 1)
    if shard_id is not None:
        shard_id = whole_number("shard_id", shard_id, 0)
    if shard_id is None or num_shards is None:
        rank, world = _rank_and_world()
        num_shards = world if num_shards is None else num_shards
        shard_id = rank if shard_id is None else shard_id
    if not 0 <= shard_id < num_shards:
        raise ValueError(f"shard_id {shard_id} out of range for {num_shards} shard(s)")
    return shard_id, num_shards, local


def local_gpu(local_rank: int | None = None, device_count: int | None = None) -> int:
    """The CUDA device of this process: its local rank (default ``LOCAL_RANK``, else 0) modulo the
    number of devices it can see (default: CuPy's count, which honours ``CUDA_VISIBLE_DEVICES``).
    Launchers that give each rank its own GPU through ``CUDA_VISIBLE_DEVICES`` leave every rank one
    visible device, device 0; with all GPUs visible, rank r gets device r. Raises RuntimeError when no
    device is visible.

    Example: ``local_gpu(3, 4) == 3``, ``local_gpu(3, 1) == 0`` (one visible GPU per rank).
    """
    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device_count is None:
        import cupy

        device_count = cupy.cuda.runtime.getDeviceCount()
    if device_count < 1:
        raise RuntimeError("no CUDA device is visible to this process (CUDA_VISIBLE_DEVICES?)")
    return int(local_rank) % int(device_count)
