"""Which images a shard reads in which order: a seeded uniform permutation of the whole dataset per
epoch, split into contiguous per-shard slices.

readers.mxnet cannot do this (it sorts its index by offset and shuffles only through a buffer, so
identity-sorted datasets give batches of few identities); a permutation needs no rewrite of the
.rec, only random reads, and makes sharding exact and resuming trivial.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from faceocc.ops.options import check_option

LastBatch = Literal["drop", "keep"]


@dataclass
class ShardOrder:
    """Epoch permutations of ``keys`` for shard ``shard_id`` of ``num_shards``.

    ``last_batch="drop"`` (training): every shard gets ``len(keys) // num_shards`` images per epoch
    (the few left over differ every epoch) and the last partial batch is dropped, so every image is
    seen at most once per epoch and all shards run the same number of batches. ``"keep"``: the
    remainder is spread over the first shards and a final smaller batch is returned, so every image
    is seen exactly once per epoch across shards; shards may differ by one batch.
    """

    keys: np.ndarray
    batch_size: int
    seed: int = 0
    shard_id: int = 0
    num_shards: int = 1
    shuffle: bool = True
    last_batch: LastBatch = "drop"
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_option("last_batch", self.last_batch, LastBatch)
        if self.num_shards < 1 or not 0 <= self.shard_id < self.num_shards:
            raise ValueError(f"shard_id {self.shard_id} out of range for {self.num_shards} shard(s)")
        if len(self.keys) == 0:
            raise ValueError("the dataset has no image records")
        if self.batch_size < 1:
            raise ValueError("batch_size must be positive")
        if self.batch_size > self.shard_size:
            raise ValueError(f"batch_size {self.batch_size} is larger than a shard "
                             f"({self.shard_size} images in shard {self.shard_id} of {self.num_shards})")

    @property
    def shard_bounds(self) -> tuple[int, int]:
        n, s = len(self.keys), self.num_shards
        base, extra = divmod(n, s)
        if self.last_batch == "drop":
            return self.shard_id * base, (self.shard_id + 1) * base
        start = self.shard_id * base + min(self.shard_id, extra)
        return start, start + base + (self.shard_id < extra)

    @property
    def shard_size(self) -> int:
        lo, hi = self.shard_bounds
        return hi - lo

    def __len__(self) -> int:
        """Batches per epoch."""
        if self.last_batch == "drop":
            return self.shard_size // self.batch_size
        return -(-self.shard_size // self.batch_size)

    def epoch_keys(self, epoch: int) -> np.ndarray:
        """This shard's keys for ``epoch``, in reading order."""
        if epoch not in self._cache:
            order = (np.random.default_rng([self.seed, epoch]).permutation(len(self.keys))
                     if self.shuffle else np.arange(len(self.keys)))
            lo, hi = self.shard_bounds
            self._cache.clear()
            self._cache[epoch] = self.keys[order[lo:hi]]
        return self._cache[epoch]

    def batch_keys(self, epoch: int, batch: int) -> np.ndarray:
        """Keys of batch ``batch`` (0-based) of ``epoch``."""
        if not 0 <= batch < len(self):
            raise IndexError(f"batch {batch} out of range (epoch has {len(self)} batches)")
        keys = self.epoch_keys(epoch)
        return keys[batch * self.batch_size:(batch + 1) * self.batch_size]
