"""The one alignment rule between a dataset and its mask set, which the loader, ``faceocc info`` and
``faceocc verify`` all apply, and the render identity that ties a set to the render that made it.

Aligned means: every image key of train.rec is present in both files, with the same header id and
the same identity class; no file holds a key train.rec does not have. Both layouts pass: faceocc's
own (train.rec's header and identity records copied, then the image keys) and MSML's (the image keys
only, flag 0 and a scalar label, as ``cvt_casia_webface_masked.py`` writes them).

Sets made by ``faceocc render`` also carry a render identity: the ``id2`` field of every image
record holds a tag, 24 bits of train.rec's fingerprint and 24 bits of the render's digest (settings,
seed, train.rec fingerprint). A pair from two renders, a faceocc file paired with a foreign one, or
masks rendered for another train.rec are refused. Files without the tag (MSML's) have no identity
and are judged by alignment alone.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..recordio import IRHeader, RecordDataset, RecordIOError, class_of
from .mask_sets import current_generation, open_set, render_manifest

IDENTITY_TAG = 0xFACE


def train_fingerprint(train: RecordDataset) -> str:
    """A digest of train.rec that survives copying: its index, size, first and last image records."""
    h = hashlib.blake2b(digest_size=16)
    h.update(train.keys.tobytes())
    h.update(train.offsets.tobytes())
    h.update(str(train.file_size).encode())
    if train.image_keys.size:
        for key in (int(train.image_keys[0]), int(train.image_keys[-1])):
            h.update(train.read_raw(key))
    return h.hexdigest()


def render_digest(settings: dict) -> str:
    """Digest of a render's settings (which include train.rec's fingerprint)."""
    return hashlib.blake2b(json.dumps(settings, sort_keys=True).encode(), digest_size=16).hexdigest()


def identity_id2(train_fp: str, digest: str) -> int:
    """The ``id2`` value that marks every image record of one render."""
    return (IDENTITY_TAG << 48) | (int(train_fp[:6], 16) << 24) | int(digest[:6], 16)


def render_identity(header: IRHeader) -> int | None:
    """The render identity a record carries, or None (a file not made by ``faceocc render``)."""
    return int(header.id2) if int(header.id2) >> 48 == IDENTITY_TAG else None


def key_problem(train: RecordDataset, name: str, ds: RecordDataset) -> RecordIOError | None:
    """A mask file missing an image key of train.rec, or holding a key train.rec lacks."""
    images = train.image_keys
    pos = np.minimum(np.searchsorted(ds.keys, images), max(ds.keys.size - 1, 0))
    absent = np.flatnonzero(ds.keys[pos] != images) if ds.keys.size else np.arange(images.size)
    if absent.size:
        key = int(images[absent[0]])
        return RecordIOError(f"{name}.rec lacks {absent.size} image key(s) of train.rec (first: key {key}); "
                             "render the masks again (faceocc render --overwrite)", ds.idx_path, key)
    extra = np.setdiff1d(ds.keys, train.keys, assume_unique=True)
    if extra.size:
        key = int(extra[0])
        return RecordIOError(f"{name}.rec holds {extra.size} key(s) that train.rec does not have (first: "
                             f"key {key}): masks of another dataset?", ds.idx_path, key, ds.offset_of(key))
    return None


def record_problem(name: str, ds: RecordDataset, key: int, image: IRHeader,
                   mask: IRHeader) -> RecordIOError | None:
    """The mask record at ``key`` differs from train.rec's in header id or identity class."""
    a, b = class_of(image), class_of(mask)
    if image.id != mask.id or a != b:
        return RecordIOError(f"{name}.rec id/label ({mask.id}, {b}) differ from train.rec ({image.id}, {a}); "
                             "render the masks again (faceocc render --overwrite)", ds.rec_path, key,
                             ds.offset_of(key))
    return None


def identity_problem(masks: dict[str, RecordDataset], headers: dict[str, IRHeader], key: int,
                     train_fp: str) -> RecordIOError | None:
    """The two records of ``key`` come from two renders, or from a render of another train.rec."""
    ids = {name: render_identity(h) for name, h in headers.items()}
    if not ids:
        return None
    first, *others = ids.values()
    if any(other != first for other in others):
        shown = ", ".join(f"{n}.rec {'none (not made by faceocc)' if i is None else f'{i:016x}'}"
                          for n, i in ids.items())
        name = next(n for n, i in ids.items() if i != first)
        return RecordIOError(f"mask_out.rec and mask.rec come from two different renders (render identity "
                             f"{shown}): a mixed set; render the masks again (faceocc render --overwrite)",
                             masks[name].rec_path, key, masks[name].offset_of(key))
    if first is not None and train_fp and (first >> 24) & 0xFFFFFF != int(train_fp[:6], 16):
        name = next(iter(masks))
        return RecordIOError("the masks were rendered for another train.rec (its fingerprint differs from "
                             "this one's); render them again for this dataset (faceocc render --overwrite)",
                             masks[name].rec_path, key, masks[name].offset_of(key))
    return None


def check_alignment(train: RecordDataset, masks: dict[str, RecordDataset], sample: int = 512) -> None:
    """Refuse mask records that are not aligned with train.rec (see the module's rule) or that mix
    renders, checking every key's presence and the headers of a sample of keys (first and last
    included); raises the first :class:`RecordIOError` found, naming file, key and offset."""
    for name, ds in masks.items():
        problem = key_problem(train, name, ds)
        if problem:
            raise problem
    keys = train.image_keys
    pick = keys if keys.size <= sample else keys[np.linspace(0, keys.size - 1, sample).astype(int)]
    train_fp = None
    for key in pick.tolist():
        image = train.read(key)[0]
        headers = {name: ds.read(key)[0] for name, ds in masks.items()}
        for name, header in headers.items():
            problem = record_problem(name, masks[name], key, image, header)
            if problem:
                raise problem
        if train_fp is None and any(render_identity(h) is not None for h in headers.values()):
            train_fp = train_fingerprint(train)
        problem = identity_problem(masks, headers, key, train_fp or "")
        if problem:
            raise problem


def check_set(train: RecordDataset, paths: dict[str, Path]) -> None:
    """:func:`check_alignment` of the mask records at ``paths`` (``mask_paths``'s mapping), opened for
    the check and closed after it, whatever happens."""
    opened: dict[str, RecordDataset] = {}
    try:
        for name, rec in paths.items():
            opened[name] = RecordDataset(rec)
        check_alignment(train, opened)
    finally:
        for ds in opened.values():
            ds.close()


def mask_status(data_dir: str | os.PathLike) -> dict:
    """What ``faceocc info`` says about the mask set, decided by the loader's own rule."""
    status: dict = {"present": False, "layout": None, "aligned": False, "problem": None, "render": None}
    try:
        opened = open_set(data_dir)
    except RecordIOError as exc:
        return {**status, "present": True, "problem": str(exc)}
    if opened is None:
        return status
    status["present"] = True
    try:
        with RecordDataset(data_dir) as train:
            layouts = {ds.layout for ds in opened.values()}
            status["layout"] = "faceocc" if layouts == {"insightface"} else \
                "msml" if layouts == {"im2rec"} else "mixed"
            check_alignment(train, opened)
        status["aligned"] = True
        if opened["mask"].rec_path.parent == current_generation(data_dir):
            status["render"] = render_manifest(data_dir)
    except RecordIOError as exc:
        status["problem"] = str(exc)
    finally:
        for ds in opened.values():
            ds.close()
    return status
