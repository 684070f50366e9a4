"""Making record datasets: InsightFace-layout writing, packing image folders, rebuilding an index."""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from faceocc.recordio import IRHeader, RecordIOError, RecordWriter, read_record_at
from faceocc.recordio.files import RefusedFile, create_new, open_regular, read_regular, remove, write_atomic
from faceocc.recordio.images import MAX_PIXELS, ImageDecodeError, decode_image, image_format

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
MAX_IMAGE_BYTES = 64 << 20      # an image file pack reads (pack_folder's max_image_bytes, --max-image-bytes)
# what was made from an earlier train.rec and would pass alignment beside a new one with the same keys: the
# four mask names, a render's work folder and the mask store with every generation in it
DERIVED = ("mask_out.rec", "mask_out.idx", "mask.rec", "mask.idx", ".faceocc-render", ".faceocc-masks")


def encoded_format(data: bytes) -> str:
    """``"jpeg"``, ``"png"`` or ``"other"`` from an encoded image's leading bytes (:func:`image_format`)."""
    return {"JPEG": "jpeg", "PNG": "png"}.get(image_format(data) or "", "other")


def write_insightface(out_dir: str | os.PathLike, items: Iterable[tuple[int, bytes]],
                      image_size: tuple[int, int] = (112, 112), overwrite: bool = False,
                      progress: bool = False) -> Path:
    """Write ``(label, encoded image)`` pairs, grouped by ascending label, as an InsightFace dataset.

    Produces ``train.rec``/``train.idx`` (header record 0, images at keys 1..N, identity records
    ``[first, last + 1)``) and ``property`` (``classes,height,width``). Labels must run 0..C-1 in
    non-decreasing order. Images are streamed to disk, never all held in memory.

    ``overwrite=True`` replaces an existing dataset and removes what was derived from the old one
    (:data:`DERIVED`: the mask records and a render's work folder), once the new records are
    complete and before they replace the old ones: masks never sit beside a train.rec they were not
    rendered from. Without it, an existing train.rec or derived file is refused.
    """
    out = Path(out_dir)
    rec = out / "train.rec"
    existing = [p for p in [rec, *(out / name for name in DERIVED)] if p.exists() or p.is_symlink()]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(map(str, existing))} already exists; pass overwrite=True (--overwrite) "
                              "to replace the dataset and remove its mask records")
    out.mkdir(parents=True, exist_ok=True)
    starts: list[int] = []
    key = 0
    with RecordWriter(rec, out / "train.idx") as w:
        w.write(0, _range_header(0, 0, 0), b"")
        for label, data in tqdm(items, desc="packing", unit="img", disable=not progress):
            key += 1
            if label != len(starts) - 1:
                if label != len(starts):
                    raise ValueError(f"labels must run 0, 1, 2, ... in order; got {label} at "
                                     f"image {key} after {len(starts) - 1}")
                starts.append(key)
            w.write(key, IRHeader(0, float(label), key, 0), data)
        if key == 0:
            raise ValueError("no images to write")
        n, classes = key, len(starts)
        for c, (first, last) in enumerate(zip(starts, starts[1:] + [n + 1], strict=False)):
            w.write(n + 1 + c, _range_header(first, last, n + 1 + c), b"")
        w.patch(0, _range_header(n + 1, n + 1 + classes, 0), b"")
        _remove_derived(out)
    write_atomic(out / "property", f"{classes},{image_size[0]},{image_size[1]}\n")
    return out


def _remove_derived(out: Path) -> None:
    """Remove what an earlier train.rec left: links unlinked (never their targets), folders removed."""
    for name in DERIVED:
        remove(out / name)
        remove(out / (name + ".partial"))


def _range_header(first: int, last: int, key: int) -> IRHeader:
    return IRHeader(2, np.array([first, last], np.float32), key, 0)


def _load_for_record(path: Path, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_IMAGE_BYTES
                     ) -> tuple[bytes, tuple[int, int]]:
    """The bytes to store and the (H, W) the loader will see; refuses what the loader cannot decode, a file
    that is not a regular file (a FIFO, a device, a link to one) and one over the byte or pixel limit."""
    from PIL import Image

    try:
        data = read_regular(path, max_bytes, "image file", "pack's max_image_bytes, --max-image-bytes")
        image = decode_image(data, gray=None, max_pixels=max_pixels)
    except (ImageDecodeError, RefusedFile) as exc:
        raise ValueError(f"{path}: {exc}") from None
    size = (int(image.shape[0]), int(image.shape[1]))
    if encoded_format(data) != "other":
        return data, size
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=95)          # pixels as decoded: EXIF turn kept
    return buf.getvalue(), size


def pack_folder(image_dir: str | os.PathLike, out_dir: str | os.PathLike,
                overwrite: bool = False, progress: bool = True, max_pixels: int = MAX_PIXELS,
                max_image_bytes: int = MAX_IMAGE_BYTES) -> Path:
    """Pack a folder with one sub-folder per identity into an InsightFace-layout dataset.

    Identities are numbered in sorted folder-name order; JPEG and PNG files are stored byte for
    byte, other formats re-encoded as JPEG (quality 95) from their decoded pixels. A file the loader
    could not decode is refused, naming the file; so is one that is not a regular file (a FIFO, a
    device, a link to one), one over ``max_image_bytes`` bytes and one over ``max_pixels`` pixels.

    Example::

        pack_folder("photos_by_person/", "data/mine")   # data/mine/train.rec, train.idx, property
    """
    root = Path(image_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    people = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            people.append(files)
    if not people:
        raise ValueError(f"{root} has no identity sub-folders with images in them")
    sizes: set[tuple[int, int]] = set()

    def items() -> Iterable[tuple[int, bytes]]:
        for label, files in enumerate(people):
            for f in files:
                data, size = _load_for_record(f, max_pixels, max_image_bytes)
                sizes.add(size)
                yield label, data

    out = write_insightface(out_dir, items(), overwrite=overwrite, progress=progress)
    if len(sizes) == 1:
        h, w = sizes.pop()
        write_atomic(out / "property", f"{len(people)},{h},{w}\n")
    return out


def rebuild_index(rec_path: str | os.PathLike, idx_path: str | os.PathLike | None = None,
                  progress: bool = True) -> Path:
    """Rebuild a ``.idx`` by scanning the ``.rec``; keys are record positions 0, 1, 2, ...

    That is how InsightFace and ``im2rec`` number records. The index is written atomically.
    """
    rec = Path(rec_path)
    idx = Path(idx_path) if idx_path else rec.with_suffix(".idx")
    try:
        fd = open_regular(rec, "record file")
    except FileNotFoundError:
        raise RecordIOError("record file not found", rec) from None
    except RefusedFile as exc:
        raise RecordIOError(str(exc), rec) from None
    tmp = idx.with_name(idx.name + ".partial")
    try:
        size = os.fstat(fd).st_size
        pos, key = 0, 0
        with os.fdopen(create_new(tmp), "w") as out, \
                tqdm(total=size, unit="B", unit_scale=True, desc="indexing", disable=not progress) as bar:
            while pos < size:
                _, nxt = read_record_at(fd, pos, size, str(rec), key)
                out.write(f"{key}\t{pos}\n")
                bar.update(nxt - pos)
                pos, key = nxt, key + 1
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)
    os.replace(tmp, idx)
    return idx
