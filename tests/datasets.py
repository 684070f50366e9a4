"""Small record datasets for loader tests: faces, and key-aligned mask_out/mask records."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from conftest import jpeg_bytes, random_face

from faceocc.datasets.pack import write_insightface
from faceocc.recordio import RecordDataset, RecordWriter


def png_bytes(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    return buf.getvalue()


def face_dataset(folder: Path, identities: int = 6, per_identity: int = 8, size: int = 112) -> Path:
    rng = np.random.default_rng(1)
    items = [(label, jpeg_bytes(random_face(rng, size))) for label in range(identities)
             for _ in range(per_identity)]
    return write_insightface(folder, items, image_size=(size, size))


def mask_for(key: int, size: int = 112) -> np.ndarray:
    """An asymmetric lower-face mask that differs per key: 0 where masked, 255 elsewhere."""
    mask = np.full((size, size), 255, np.uint8)
    mask[size // 2 + key % 7:, size // 6: size // 2 + 10 + key % 13] = 0
    return mask


def add_masks(folder: Path, corrupt_label_of: int | None = None) -> None:
    """mask_out.rec / mask.rec aligned with train.rec (header and identity records kept)."""
    with RecordDataset(folder) as ds:
        records = [(k, *ds.read(k)) for k in ds.keys.tolist()]
        images = set(ds.image_keys.tolist())
    from faceocc.recordio import IRHeader
    from faceocc.recordio.images import decode_image

    with RecordWriter(folder / "mask_out.rec") as mo, RecordWriter(folder / "mask.rec") as mk:
        for key, header, payload in records:
            if key not in images:
                mo.write(key, header, payload)
                mk.write(key, header, payload)
                continue
            face = decode_image(payload, gray=None).copy()
            mask = mask_for(key, face.shape[0])
            face[mask == 0] = (40, 120, 220)
            mo.write(key, header, jpeg_bytes(face))
            if key == corrupt_label_of:
                header = IRHeader(0, float(header.label) + 1, header.id, 0)
            mk.write(key, header, png_bytes(mask))


def msml_masks(folder: Path, drop_key: int | None = None, relabel_key: int | None = None) -> None:
    """mask_out.rec / mask.rec in MSML's layout (as its cvt script writes them): image keys only,
    flag 0 and a scalar label, both JPEG q95, the mask single-channel (255 clean, 0 masked)."""
    from faceocc.recordio import IRHeader, class_of
    from faceocc.recordio.images import decode_image

    with RecordDataset(folder) as ds:
        records = [(k, *ds.read(k)) for k in ds.image_keys.tolist()]
    with RecordWriter(folder / "mask_out.rec") as mo, RecordWriter(folder / "mask.rec") as mk:
        for key, header, payload in records:
            if key == drop_key:
                continue
            label = class_of(header) + (1 if key == relabel_key else 0)
            head = IRHeader(0, float(label), header.id, header.id2)
            face = decode_image(payload, gray=None).copy()
            mask = mask_for(key, face.shape[0])
            face[mask == 0] = (40, 120, 220)
            mo.write(key, head, jpeg_bytes(face))
            mk.write(key, head, jpeg_bytes(mask))
