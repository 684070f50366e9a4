"""DALI pipelines over MXNet RecordIO face datasets, and the RecordIO format layer they stand on."""

from .recordio import IRHeader, RecordDataset, RecordIOError, RecordWriter, pack_image, unpack_image

__all__ = ["FaceOcclusionLoader", "IRHeader", "RecordDataset", "RecordIOError", "RecordWriter",
           "pack_image", "unpack_image"]


def __getattr__(name: str):
    if name == "FaceOcclusionLoader":  # imported on first use: it pulls in torch, DALI and the ops
        from .loader import FaceOcclusionLoader

        return FaceOcclusionLoader
    raise AttributeError(name)
