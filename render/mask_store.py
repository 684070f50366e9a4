"""Where ``faceocc render`` keeps finished mask sets, how a new set replaces the old one as a whole,
and the lock that keeps two renders off one folder.

A finished set is a generation folder ``DIR/.faceocc-masks/g-<id>/`` holding mask_out.rec/.idx,
mask.rec/.idx and render.json. ``DIR/.faceocc-masks/current`` links to one generation, and the four
names beside train.rec are fixed links through it (``mask_out.rec -> .faceocc-masks/current/
mask_out.rec``), so MXNet, MSML's code and DALI open them as ordinary files. Installing a set is one
atomic replacement of ``current``; every step before it leaves the old set readable, complete and
unchanged, so at every instant readers see either the complete old set or the complete new one.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import uuid
from pathlib import Path

from dali_pipes.mask_records import CURRENT, STORE, current_generation, fixed_link, set_files


class RenderBusyError(RuntimeError):
    """Another render holds the folder."""


def store_dir(data_dir: Path) -> Path:
    return Path(data_dir) / STORE


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


def _is_fixed_link(path: Path) -> bool:
    return path.is_symlink() and os.readlink(path) == fixed_link(path.name)


def new_generation(data_dir: Path) -> Path:
    """A fresh, empty generation folder."""
    gen = store_dir(data_dir) / f"g-{uuid.uuid4().hex[:12]}"
    gen.mkdir(parents=True)
    return gen


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
            try:
                os.link(f, gen / f.name)
            except OSError:
                shutil.copy2(f, gen / f.name)
    _fsync_dir(gen)
    _point(store_dir(data_dir) / CURRENT, gen.name, store_dir(data_dir))


def install(data_dir: str | os.PathLike, generation: Path) -> None:
    """Make ``generation`` the dataset's mask set, replacing the old set (if any) as a whole.

    Idempotent: an installation interrupted at any step is finished by calling it again.
    """
    d = Path(data_dir)
    _adopt_plain_files(d)
    for f in set_files(d):
        if not _is_fixed_link(f):
            _point(f, fixed_link(f.name), store_dir(d))
    _fsync_dir(d)
    _point(store_dir(d) / CURRENT, generation.name, store_dir(d))
    _fsync_dir(store_dir(d))
    discard_stale(d)


def discard_stale(data_dir: str | os.PathLike) -> None:
    """Remove generations other than the current one (old sets, interrupted merges) and stray links."""
    store = store_dir(Path(data_dir))
    if not store.is_dir():
        return
    keep = current_generation(data_dir)
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
