"""What defines a loader's stream of batches, stored by ``state_dict`` and checked by ``load_state_dict``:
a state resumes only a loader that gives the very batches of the run that saved it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import reprlib
from collections.abc import Mapping
from numbers import Integral
from typing import Any

from faceocc.datasets.mask_alignment import train_fingerprint

STATE_FORMAT = 2
_short = reprlib.Repr()
_short.maxstring = _short.maxother = 60


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def stream_identity(loader: Any) -> dict:
    """The fields that decide which batches ``loader`` gives: dataset and mask set fingerprints, seed,
    shard layout, batch and output sizes, dtype, order, the profile and occluder bank digests."""
    occ = loader.occluder
    profile = json.dumps(dataclasses.asdict(occ.profile), sort_keys=True, default=list).encode()
    bank = occ.bank
    groups = json.dumps({k: v.tolist() for k, v in sorted(bank.groups.items())}).encode()
    masks = loader._masks
    return {
        "format": STATE_FORMAT,
        "dataset": train_fingerprint(loader._train),
        "masks": None if masks is None else _digest("".join(train_fingerprint(ds) for ds in masks.values()).encode()),
        "seed": occ.seed,
        "shard_id": loader.shard_id,
        "num_shards": loader.num_shards,
        "batch_size": loader.batch_size,
        "last_batch": loader.order.last_batch,
        "shuffle": bool(loader.order.shuffle),
        "out_size": list(loader.out_size),
        "dtype": str(loader.torch_dtype).replace("torch.", ""),
        "profile": _digest(profile),
        "occluders": _digest(bank.atlas.tobytes() + bank.sizes.tobytes() + groups),
        "max_pixels": loader.max_pixels,
    }


def checked_next_batch(state: Any, mine: dict) -> int:
    """``state["next_batch"]`` once every field of ``mine`` (:func:`stream_identity`) matches the state's;
    otherwise a one-line ValueError naming the field and both values."""
    if not isinstance(state, Mapping):
        raise ValueError(f"state must be the dict of FaceOcclusionLoader.state_dict(), not {type(state).__name__}")
    for field, value in mine.items():
        if field not in state:
            raise ValueError(f"state has no {field!r}: it was not saved by this version's "
                             "FaceOcclusionLoader.state_dict(), so it cannot say which batches come next")
        saved = state[field]
        if saved != value or type(saved) is not type(value):
            raise ValueError(f"state was saved with {field}={_short.repr(saved)}, this loader has "
                             f"{field}={_short.repr(value)}: a state resumes only a loader built with the same "
                             "dataset and arguments")
    n = state.get("next_batch")
    if isinstance(n, bool) or not isinstance(n, Integral) or n < 0:
        raise ValueError(f"state's next_batch must be an integer >= 0, not {_short.repr(n)}")
    return int(n)
