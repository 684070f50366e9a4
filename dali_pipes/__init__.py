"""DALI pipelines over MXNet RecordIO face datasets, and the RecordIO format layer they stand on."""

from .recordio import IRHeader, RecordDataset, RecordIOError, RecordWriter, pack_image, unpack_image

__all__ = ["IRHeader", "RecordDataset", "RecordIOError", "RecordWriter", "pack_image", "unpack_image"]
