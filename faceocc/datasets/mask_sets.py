"""The mask set beside a dataset on disk (``mask_out.rec/.idx``, ``mask.rec/.idx``): where its files are,
how ``faceocc render`` installs a new set in place of the old one as a whole, and the lock that keeps
two renders off one folder. The alignment rule lives in :mod:`faceocc.datasets.mask_alignment`.

A finished set is a generation folder ``DIR/.faceocc-masks/g-<id>/`` holding mask_out.rec/.idx,
mask.rec/.idx and render.json. ``DIR/.faceocc-masks/current`` links to one generation, and the four
names beside train.rec are fixed links through it (``mask_out.rec -> .faceocc-masks/current/
mask_out.rec``), so MXNet, MSML's code and DALI open them as ordinary files. Installing a set is one
atomic replacement of ``current``; every step before it leaves the old set readable, complete and
unchanged, so at every instant readers see either the complete old set or the complete new one.
:func:`mask_paths` reads ``current`` once, so a reader never sees half of one set and half of another.

A set may also be plain files (MSML's, or files copied in): the loader reads them as they are, and the
next render adopts them into a generation before replacing them.

The geometry set of online masks (``mask_geometry.rec/.idx``, made by ``faceocc render --geometry-only``)
is kept the same way in a store of its own, ``DIR/.faceocc-geometry``: every function here takes the
set's :class:`SetKind` (default :data:`MASKS`).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..recordio import RecordIOError

MASK_FILES = ("mask_out", "mask")


STORE = ".faceocc-masks"


CURRENT = "current"


RENDER_MANIFEST = "render.json"


@dataclass(frozen=True)
class SetKind:
    """A kind of record set kept beside train.rec: its record files, its store folder, what it is called
    and what a message about a broken one advises."""

    names: tuple[str, ...]
    store: str
    what: str
    again: str


MASKS = SetKind(MASK_FILES, STORE, "mask set", "render the masks again (faceocc render --overwrite)")
GEOMETRY = SetKind(("mask_geometry",), ".faceocc-geometry", "geometry set",
                   "make the geometry again (faceocc render DIR --geometry-only --overwrite)")


def dataset_dir(path: str | os.PathLike) -> Path:
    """The folder of a dataset given as a folder or as its ``.rec`` path."""
    p = Path(path)
    return p if p.is_dir() else p.parent


def set_files(folder: Path, kind: SetKind = MASKS) -> list[Path]:
    """The files of a set in ``folder``: mask_out.rec/.idx, mask.rec/.idx for the mask set."""
    return [folder / f"{name}{ext}" for name in kind.names for ext in (".rec", ".idx")]


def fixed_link(name: str, kind: SetKind = MASKS) -> str:
    """What the fixed name ``name`` beside train.rec points at in a faceocc-installed set."""
    return f"{kind.store}/{CURRENT}/{name}"


def current_generation(data_dir: str | os.PathLike, kind: SetKind = MASKS) -> Path | None:
    """The generation folder ``.faceocc-masks/current`` (or the kind's) points at, read once; None without one."""
    link = dataset_dir(data_dir) / kind.store / CURRENT
    try:
        target = os.readlink(link)
    except OSError:
        return None
    return link.parent / target


def mask_paths(data_dir: str | os.PathLike, kind: SetKind = MASKS) -> dict[str, Path] | None:
    """``{"mask_out": rec, "mask": rec}`` of the dataset's mask set (or ``{name: rec}`` of another kind's
    set); None when there is none.

    faceocc's fixed links are resolved through one reading of ``current``. Some but not all of the
    set's files present is an incomplete set: :class:`RecordIOError` naming the missing file.
    """
    d = dataset_dir(data_dir)
    generation = current_generation(d, kind)
    files = []
    for path in set_files(d, kind):
        linked = path.is_symlink() and os.readlink(path) == fixed_link(path.name, kind)
        files.append(generation / path.name if linked and generation is not None else path)
    present = [f.is_file() for f in files]
    if not any(present):
        return None
    if not all(present):
        missing = files[present.index(False)]
        raise RecordIOError(f"incomplete {kind.what}: {missing.name} is missing beside "
                            f"{', '.join(f.name for f, p in zip(files, present, strict=True) if p)}; "
                            f"{kind.again}", missing)
    return {name: files[2 * i] for i, name in enumerate(kind.names)}


def render_manifest(data_dir: str | os.PathLike, kind: SetKind = MASKS) -> dict | None:
    """The settings of the installed faceocc render (its ``render.json``), or None."""
    generation = current_generation(data_dir, kind)
    try:
        return json.loads((generation / RENDER_MANIFEST).read_text()) if generation else None
    except (OSError, ValueError):
        return None


class RenderBusyError(RuntimeError):
    """Another render holds the folder."""


def store_dir(data_dir: Path, kind: SetKind = MASKS) -> Path:
    return Path(data_dir) / kind.store


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_replace(src: Path, dst: Path) -> None:
    """One atomic step of an installation (a rename over ``dst``)."""
    os.replace(src, dst)


def _point(link: Path, target: str, store: Path) -> None:
    """Make ``link`` a symlink to ``target`` atomically (a fresh link made in ``store``, renamed over it)."""
    tmp = store / f".link-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.symlink(target, tmp)
    try:
        _atomic_replace(tmp, link)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _is_fixed_link(path: Path, kind: SetKind = MASKS) -> bool:
    return path.is_symlink() and os.readlink(path) == fixed_link(path.name, kind)


def new_generation(data_dir: Path, kind: SetKind = MASKS) -> Path:
    """A fresh, empty generation folder."""
    gen = store_dir(data_dir, kind) / f"g-{uuid.uuid4().hex[:12]}"
    gen.mkdir(parents=True)
    return gen


def _adopt_plain_files(data_dir: Path, kind: SetKind = MASKS) -> None:
    """Bring a set held in plain files (MSML's, or files copied in) under ``current`` without changing
    what any name reads: hard links (or copies) into a generation, then ``current`` points at it."""
    plain = [f for f in set_files(data_dir, kind) if f.is_file() and not _is_fixed_link(f, kind)]
    if not plain:                   # (files, or links of yours)
        return
    cur = current_generation(data_dir, kind)
    if cur is not None and all((cur / f.name).is_file() and os.path.samefile(f, cur / f.name) for f in plain):
        return                      # adopted by an earlier, interrupted installation
    gen = new_generation(data_dir, kind)
    for f in set_files(data_dir, kind):
        if f.is_file():
            try:
                os.link(f, gen / f.name)
            except OSError:
                shutil.copy2(f, gen / f.name)
    _fsync_dir(gen)
    _point(store_dir(data_dir, kind) / CURRENT, gen.name, store_dir(data_dir, kind))


def install(data_dir: str | os.PathLike, generation: Path, kind: SetKind = MASKS) -> None:
    """Make ``generation`` the dataset's set of this kind, replacing the old set (if any) as a whole.

    Idempotent: an installation interrupted at any step is finished by calling it again.
    """
    d = Path(data_dir)
    store = store_dir(d, kind)
    _adopt_plain_files(d, kind)
    for f in set_files(d, kind):
        if not _is_fixed_link(f, kind):
            _point(f, fixed_link(f.name, kind), store)
    _fsync_dir(d)
    _point(store / CURRENT, generation.name, store)
    _fsync_dir(store)
    discard_stale(d, kind)


def discard_stale(data_dir: str | os.PathLike, kind: SetKind = MASKS) -> None:
    """Remove generations other than the current one (old sets, interrupted merges) and stray links."""
    store = store_dir(Path(data_dir), kind)
    if not store.is_dir():
        return
    keep = current_generation(data_dir, kind)
    for entry in store.iterdir():
        if entry.name.startswith("g-") and entry != keep and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.name.startswith(".link-"):
            entry.unlink(missing_ok=True)


class FolderLock:
    """An advisory lock (``flock``) on a file under ``DIR/.faceocc-masks``; released when the process
    ends, however it ends, so a killed render never leaves a stale lock."""

    def __init__(self, data_dir: Path, name: str, shared: bool = False) -> None:
        self.fd: int | None = None               # set first: __del__ runs even when opening fails
        path = store_dir(data_dir) / f"{name}.lock"
        path.parent.mkdir(exist_ok=True)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self.fd)
            self.fd = None
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RenderBusyError(f"another faceocc render is working on {data_dir} (lock {path}); wait "
                                      "for it to finish, or run a different --shard-id") from None
            raise
        if not shared:
            os.ftruncate(self.fd, 0)
            os.write(self.fd, f"{os.getpid()}\n".encode())

    def release(self) -> None:
        """Let go of the lock."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __del__(self) -> None:
        self.release()
