"""faceocc: MSML's occlusion augmentation for face-recognition training, on the GPU, in DALI.

The front door; names are imported on first use (the loader pulls in torch and DALI)::

    import faceocc
    loader = faceocc.FaceOcclusionLoader("data/ms1m", batch_size=256)
    out = faceocc.occlude(faces, seed=0)      # a batch of torch tensors [N, 3, H, W], on their device

In arcface_torch: ``faceocc.arcface.get_dataloader``; in torchvision pipelines:
``faceocc.transforms.MSMLOcclusion``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "FaceOcclusionLoader": "faceocc.dali_pipes.loader",
    "ImageDecodeError": "faceocc.recordio",
    "RecordDataset": "faceocc.recordio",
    "RecordIOError": "faceocc.recordio",
    "RecordWriter": "faceocc.recordio",
    "IRHeader": "faceocc.recordio",
    "pack_image": "faceocc.recordio",
    "unpack_image": "faceocc.recordio",
    "ShardOrder": "faceocc.dali_pipes.order",
    "occlusion_op": "faceocc.dali_pipes.pipeline",
    "occlude_device": "faceocc.dali_pipes.pipeline",
    "occlude": "faceocc.functional",
    "FaceOccluder": "faceocc.ops",
    "Kind": "faceocc.ops",
    "KIND_NAMES": "faceocc.ops",
    "Profile": "faceocc.ops",
    "load_profile": "faceocc.ops",
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
