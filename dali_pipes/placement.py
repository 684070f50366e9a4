"""Where a process stands in a multi-GPU job: shard id, shard count, local device."""

from __future__ import annotations

import os


def distributed_placement(shard_id: int | None, num_shards: int | None) -> tuple[int, int, int]:
    """(shard_id, num_shards, local device index): explicit values, else torch.distributed when
    initialized, else torchrun's RANK / WORLD_SIZE / LOCAL_RANK, else a single process."""
    local = int(os.environ.get("LOCAL_RANK", 0))
    if shard_id is not None or num_shards is not None:
        return int(shard_id or 0), int(num_shards or 1), local
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size(), local
    except ImportError:
        pass
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), local
