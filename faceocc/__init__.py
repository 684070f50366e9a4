"""faceocc: MSML's occlusion augmentation for face-recognition training, on the GPU, in DALI.

The front door; names are imported on first use (the loader pulls in torch and DALI)::

    import faceocc
    loader = faceocc.FaceOcclusionLoader("data/ms1m", batch_size=256)
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "FaceOcclusionLoader": "dali_pipes.loader",
    "ImageDecodeError": "dali_pipes.decoding",
    "RecordDataset": "dali_pipes.recordio",
    "RecordIOError": "dali_pipes.recordio",
    "RecordWriter": "dali_pipes.recordio",
    "IRHeader": "dali_pipes.recordio",
    "pack_image": "dali_pipes.recordio",
    "unpack_image": "dali_pipes.recordio",
    "ShardOrder": "dali_pipes.order",
    "occlusion_op": "dali_pipes.pipeline",
    "occlude_device": "dali_pipes.pipeline",
    "FaceOccluder": "ops",
    "Kind": "ops",
    "KIND_NAMES": "ops",
    "Profile": "ops",
    "load_profile": "ops",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'faceocc' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
