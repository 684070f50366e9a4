"""DALI pipelines over MXNet RecordIO face datasets, and the RecordIO format layer they stand on."""

from .recordio import IRHeader, RecordDataset, RecordIOError, RecordWriter, pack_image, unpack_image

__all__ = ["FaceOcclusionLoader", "IRHeader", "ImageDecodeError", "RecordDataset", "RecordIOError",
           "RecordWriter", "pack_image", "unpack_image"]


def __getattr__(name: str):
    if name in ("FaceOcclusionLoader", "ImageDecodeError"):  # on first use: pulls in torch, DALI, the ops
        from . import loader

        return getattr(loader, name)
    raise AttributeError(name)
