"""Shuffling identity-sorted datasets: a batch holds as many identities as a true shuffle gives."""

from __future__ import annotations

import numpy as np
import pytest
from faceocc.dali_pipes.order import ShardOrder


def _identity_sorted(n_ids: int = 2000, rng_seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(rng_seed)
    sizes = rng.integers(10, 120, n_ids)          # MS1M-like: tens of images per identity
    return np.repeat(np.arange(n_ids), sizes)


def _expected_distinct(labels: np.ndarray, batch: int) -> float:
    """Mean distinct identities in a batch drawn by a uniform permutation (hypergeometric)."""
    from scipy.special import gammaln

    n = labels.size
    counts = np.bincount(labels)
    counts = counts[counts > 0]
    log_none = ((gammaln(n - counts + 1) - gammaln(n - counts - batch + 1))
                - (gammaln(n + 1) - gammaln(n - batch + 1)))
    return float(np.sum(1 - np.exp(log_none)))


def _buffer_shuffle(n: int, buffer: int, rng: np.random.Generator) -> np.ndarray:
    """A reader's shuffle buffer over a file read in order (what readers.mxnet does)."""
    out, pool = [], list(range(min(buffer, n)))
    nxt = len(pool)
    while pool:
        i = rng.integers(len(pool))
        out.append(pool[i])
        if nxt < n:
            pool[i] = nxt
            nxt += 1
        else:
            pool[i] = pool[-1]
            pool.pop()
    return np.asarray(out)


def test_batches_hold_the_identities_of_a_true_shuffle():
    labels = _identity_sorted()
    keys = np.arange(1, labels.size + 1)
    order = ShardOrder(keys, 512, seed=0)
    expected = _expected_distinct(labels, 512)
    distinct = [np.unique(labels[order.batch_keys(e, b) - 1]).size
                for e in range(2) for b in range(0, 100, 7)]
    assert np.mean(distinct) >= 0.9 * expected
    buffered = _buffer_shuffle(labels.size, 32768, np.random.default_rng(0))
    buffer_distinct = np.mean([np.unique(labels[buffered[i * 512:(i + 1) * 512]]).size
                               for i in range(0, 100, 7)])
    assert buffer_distinct < 0.9 * expected      # what the mechanism replaces would fail this bar


def test_each_epoch_is_a_new_permutation_and_shards_partition_it():
    keys = np.arange(100, 1100)
    orders = [ShardOrder(keys, 16, seed=5, shard_id=s, num_shards=3, last_batch="keep") for s in range(3)]
    epoch0 = np.concatenate([o.epoch_keys(0) for o in orders])
    assert sorted(epoch0.tolist()) == keys.tolist()
    assert not np.array_equal(orders[0].epoch_keys(0), orders[0].epoch_keys(1))
    assert [len(o) for o in orders] == [21, 21, 21]
    batches = np.concatenate([o.batch_keys(0, b) for o in orders for b in range(len(o))])
    assert sorted(batches.tolist()) == keys.tolist()
    with pytest.raises(IndexError):
        orders[0].batch_keys(0, 21)
    drop = ShardOrder(keys, 16, seed=5, shard_id=2, num_shards=3)
    assert drop.shard_size == 333 and len(drop) == 20
