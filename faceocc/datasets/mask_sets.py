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
next render adopts them into a generation before replacing them. A copy that followed the links
(``cp -rL``, ``rsync -L``, an object store) has plain files and a ``current`` that is a folder: it reads
as it is and the next render takes that folder in as a generation. A copy that left the store out
(``cp -r ds/* new/``) has four dangling links: :func:`mask_paths` calls that set broken, saying how to
mend it.

Nothing is written or deleted through a link: the store and the lock files must be real (a store
linked to another dataset's is refused), and clean-up removes only ``g-*`` folders inside this
dataset's own store. Readers (:func:`open_set`) that meet a set being swapped open the new one.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from pathlib import Path

from ..recordio import RecordDataset, RecordIOError
from ..recordio.files import RefusedFile, read_small_text, real_dir

MASK_FILES = ("mask_out", "mask")


STORE = ".faceocc-masks"


CURRENT = "current"


RENDER_MANIFEST = "render.json"


def dataset_dir(path: str | os.PathLike) -> Path:
    """The folder of a dataset given as a folder or as its ``.rec`` path."""
    p = Path(path)
    return p if p.is_dir() else p.parent


def set_files(folder: Path) -> list[Path]:
    """The four files of a mask set in ``folder``: mask_out.rec/.idx, mask.rec/.idx."""
    return [folder / f"{name}{ext}" for name in MASK_FILES for ext in (".rec", ".idx")]


def fixed_link(name: str) -> str:
    """What the fixed name ``name`` beside train.rec points at in a faceocc-installed set."""
    return f"{STORE}/{CURRENT}/{name}"


_ATTEMPTS = 8          # a set swapped this many times while one reader opens it is a render gone mad


def _current_target(data_dir: Path) -> str | None:
    try:
        return os.readlink(Path(data_dir) / STORE / CURRENT)
    except OSError:
        return None


def current_generation(data_dir: str | os.PathLike) -> Path | None:
    """The generation folder ``.faceocc-masks/current`` points at, read once; None without one."""
    d = dataset_dir(data_dir)
    target = _current_target(d)
    return None if target is None else d / STORE / target


def _paths_once(d: Path, target: str | None) -> dict[str, Path] | None:
    generation = None if target is None else d / STORE / target
    files = []
    for path in set_files(d):
        linked = path.is_symlink() and os.readlink(path) == fixed_link(path.name)
        files.append(generation / path.name if linked and generation is not None else path)
    present = [f.is_file() for f in files]
    if not any(present):
        dangling = [p for p in set_files(d) if p.is_symlink()]
        if dangling:
            raise RecordIOError(f"broken mask set: {dangling[0].name} links to {os.readlink(dangling[0])}, which does "
                                f"not exist (the dataset copied without its {STORE} folder?); copy that folder too "
                                f"(cp -a), or render the masks again (faceocc render {d} --overwrite)", dangling[0])
        return None
    if not all(present):
        missing = files[present.index(False)]
        raise RecordIOError(f"incomplete mask set: {missing.name} is missing beside "
                            f"{', '.join(f.name for f, p in zip(files, present, strict=True) if p)}; "
                            "render the masks again (faceocc render --overwrite)", missing)
    return {name: files[2 * i] for i, name in enumerate(MASK_FILES)}


def mask_paths(data_dir: str | os.PathLike) -> dict[str, Path] | None:
    """``{"mask_out": rec, "mask": rec}`` of the dataset's mask set; None when there is none.

    faceocc's fixed links are resolved through one reading of ``current`` (read again when a render
    swapped the set meanwhile). Some but not all of the four files present is an incomplete set, links
    to nothing a broken one: :class:`RecordIOError` naming the file and how to mend it.
    """
    d = dataset_dir(data_dir)
    for attempt in range(_ATTEMPTS):
        seen = _current_target(d)
        try:
            return _paths_once(d, seen)
        except RecordIOError:
            if attempt + 1 == _ATTEMPTS or _current_target(d) == seen:
                raise
    raise AssertionError("unreachable")


def open_set(data_dir: str | os.PathLike) -> dict[str, RecordDataset] | None:
    """The dataset's mask set opened (``{"mask_out": ..., "mask": ...}``), or None without one. A set
    swapped by ``render --overwrite`` while it is opened (its old generation removed under the reader)
    is opened again, so a reader gets the old set or the new one, never an error; once open, the
    descriptors keep reading that set whatever replaces it."""
    d = dataset_dir(data_dir)
    for attempt in range(_ATTEMPTS):
        seen = _current_target(d)
        opened: dict[str, RecordDataset] = {}
        try:
            paths = mask_paths(d)
            if paths is None:
                return None
            for name, rec in paths.items():
                opened[name] = RecordDataset(rec)
            return opened
        except (RecordIOError, OSError):
            for ds in opened.values():
                ds.close()
            if attempt + 1 == _ATTEMPTS or _current_target(d) == seen:
                raise
    raise AssertionError("unreachable")


def render_manifest(data_dir: str | os.PathLike) -> dict | None:
    """The settings of the installed faceocc render (its ``render.json``), or None."""
    generation = current_generation(data_dir)
    text = read_small_text(generation / RENDER_MANIFEST) if generation else None
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


class RenderBusyError(RuntimeError):
    """Another render holds the folder."""


def store_dir(data_dir: Path) -> Path:
    return Path(data_dir) / STORE


def writable_store(data_dir: Path) -> Path:
    """The store as a real folder inside the dataset (made if absent); a link there is refused, so that
    no render writes into, or cleans up, another dataset's store."""
    return real_dir(store_dir(data_dir))


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
    if link.is_dir() and not link.is_symlink():
        raise RefusedFile(f"{link} is a folder; faceocc replaces only files and links there")
    tmp = store / f".link-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.symlink(target, tmp)
    try:
        _atomic_replace(tmp, link)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _is_fixed_link(path: Path) -> bool:
    return path.is_symlink() and os.readlink(path) == fixed_link(path.name)


def new_generation(data_dir: Path) -> Path:
    """A fresh, empty generation folder."""
    gen = writable_store(data_dir) / f"g-{uuid.uuid4().hex[:12]}"
    gen.mkdir()
    return gen


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _unfold_current(data_dir: Path) -> None:
    """A copy that followed links made ``current`` a folder of its own: take its files in as a generation
    (names that read through it are pointed at that generation first, so every name stays readable),
    move the folder aside and point ``current`` at the generation."""
    store, cur = store_dir(data_dir), store_dir(data_dir) / CURRENT
    if cur.is_symlink() or not cur.is_dir():
        return
    gen = new_generation(data_dir)
    for f in [*set_files(cur), cur / RENDER_MANIFEST]:
        if f.is_file():
            _link_or_copy(f, gen / f.name)
    _fsync_dir(gen)
    for name in set_files(data_dir):
        if _is_fixed_link(name):
            _point(name, f"{STORE}/{gen.name}/{name.name}", store)
    os.replace(cur, store / f"g-trash-{uuid.uuid4().hex[:8]}")
    _point(cur, gen.name, store)


def _adopt_plain_files(data_dir: Path) -> None:
    """Bring a set held in plain files (MSML's, or files copied in) under ``current`` without changing
    what any name reads: hard links (or copies) into a generation, then ``current`` points at it."""
    plain = [f for f in set_files(data_dir) if f.is_file() and not _is_fixed_link(f)]   # files, or links of yours
    if not plain:
        return
    cur = current_generation(data_dir)
    if cur is not None and all((cur / f.name).is_file() and os.path.samefile(f, cur / f.name) for f in plain):
        return                      # adopted by an earlier, interrupted installation
    gen = new_generation(data_dir)
    for f in set_files(data_dir):
        if f.is_file():
            _link_or_copy(f, gen / f.name)
    _fsync_dir(gen)
    _point(store_dir(data_dir) / CURRENT, gen.name, store_dir(data_dir))


def install(data_dir: str | os.PathLike, generation: Path) -> None:
    """Make ``generation`` the dataset's mask set, replacing the old set (if any) as a whole.

    Idempotent: an installation interrupted at any step is finished by calling it again.
    """
    d = Path(data_dir)
    writable_store(d)
    _unfold_current(d)
    _adopt_plain_files(d)
    for f in set_files(d):
        if not _is_fixed_link(f):
            _point(f, fixed_link(f.name), store_dir(d))
    _fsync_dir(d)
    _point(store_dir(d) / CURRENT, generation.name, store_dir(d))
    _fsync_dir(store_dir(d))
    discard_stale(d)


def discard_stale(data_dir: str | os.PathLike) -> None:
    """Remove generations other than the current one (old sets, interrupted merges) and stray links, from
    the dataset's own store only: through a linked store nothing is removed."""
    store = store_dir(Path(data_dir))
    if store.is_symlink() or not store.is_dir():
        return
    keep = current_generation(data_dir)
    for entry in store.iterdir():
        if entry.name.startswith("g-") and entry != keep and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.name.startswith(".link-"):
            entry.unlink(missing_ok=True)


def _lock(data_dir: Path, name: str, timeout: float = 0) -> object:
    """``DIR/.faceocc-masks/NAME.lock`` held (filelock's flock; released when the process ends, however it
    ends). filelock >= 3.20.1 opens the file with ``O_NOFOLLOW``: a link planted at the name is refused,
    never followed (older versions truncated its target)."""
    from filelock import FileLock, Timeout

    path = writable_store(data_dir) / f"{name}.lock"
    lock = FileLock(path, timeout=timeout)
    try:
        lock.acquire()
    except Timeout:
        raise RenderBusyError(f"another faceocc render is working on {data_dir} (lock {path}); wait for it to "
                              "finish, or run a different --shard-id") from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.EMLINK):
            raise RefusedFile(f"{path} is not a lock file of faceocc's (a symbolic link or a folder); faceocc "
                              "never follows a link planted there: remove it and run again") from None
        raise
    return lock


def hold_folder(data_dir: str | os.PathLike, shard_id: int = 0, num_shards: int = 1) -> list:
    """Hold the dataset folder for a render: alone (``num_shards == 1``, and for merging), or as shard
    ``shard_id`` of ``num_shards``, whose shards share the folder, each shard exclusively. Raises
    :class:`RenderBusyError` when another render holds what this one needs. Returns the held locks
    (``release()`` each, or let the process end)."""
    d = Path(data_dir)
    folder = _lock(d, "render", 0 if num_shards == 1 else 30)   # shards hold it only for a moment
    try:
        if num_shards == 1:
            for probe in sorted(writable_store(d).glob("shard-*-of-*.lock")):
                _lock(d, probe.name[:-len(".lock")]).release()          # a shard still running refuses
            return [folder]
        shard = _lock(d, f"shard-{shard_id}-of-{num_shards}")
    except BaseException:
        folder.release()
        raise
    folder.release()
    return [shard]
