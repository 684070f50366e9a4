"""MXNet RecordIO, implemented natively (no MXNet, no DALI): the InsightFace ``train.rec``/``train.idx``
datasets read and written byte for byte as ``mxnet.recordio`` and dmlc-core do.

Example::

    from faceocc.recordio import RecordDataset

    with RecordDataset("data/casia") as ds:          # a folder with train.rec/train.idx, or a .rec
        header, jpeg = ds.read(int(ds.image_keys[0]))
        print(ds.layout, len(ds), ds.num_classes, header.label)

Modules: :mod:`~faceocc.recordio.frames` (framing), :mod:`~faceocc.recordio.header` (``IRHeader``),
:mod:`~faceocc.recordio.index` (``.idx``), :mod:`~faceocc.recordio.dataset` (``RecordDataset``),
:mod:`~faceocc.recordio.writer` (``RecordWriter``), :mod:`~faceocc.recordio.batch` (many records per
call), :mod:`~faceocc.recordio.images` (decoding with the loader's semantics, ``pack_image``),
:mod:`~faceocc.recordio.files` (reading and writing beside a dataset without following planted links).
"""

from .batch import Batch, BatchReader
from .dataset import RecordDataset
from .errors import RecordIOError
from .frames import MAGIC, MAX_PART, encode_record, read_record_at, scan_records
from .header import MAX_CLASSES, IRHeader, class_of, pack_header, unpack_header
from .images import ImageDecodeError, decode_image, pack_image, unpack_image
from .index import read_index
from .writer import RecordWriter

__all__ = [
    "MAGIC",
    "MAX_CLASSES",
    "MAX_PART",
    "Batch",
    "BatchReader",
    "IRHeader",
    "ImageDecodeError",
    "RecordDataset",
    "RecordIOError",
    "RecordWriter",
    "class_of",
    "decode_image",
    "encode_record",
    "pack_header",
    "pack_image",
    "read_index",
    "read_record_at",
    "scan_records",
    "unpack_header",
    "unpack_image",
]
