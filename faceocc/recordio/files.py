"""Files faceocc reads and writes beside a dataset, handled as a dataset from elsewhere may hold them.

Reading: only regular files (never a FIFO, a device or ``/dev/zero`` behind a link, which would hang
or grow without bound), and at most a stated number of bytes. Writing: a new file is created with
``O_CREAT | O_EXCL | O_NOFOLLOW`` under a fresh temporary name in the same folder and renamed over
the final name, so a link planted at either name is replaced, never followed; folders faceocc keeps
inside a dataset (``.faceocc-masks``, ``.faceocc-render``) must be real folders, never links.
Removing: a link is unlinked (its target untouched), a real folder removed with its contents.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import uuid
from pathlib import Path

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder", stat.S_IFLNK: "a symbolic link"}


class RefusedFile(ValueError):
    """A file or folder faceocc will not read or write as asked; the message names it and says why."""


def kind_of(mode: int) -> str:
    """What a ``st_mode`` is, in words (``"a FIFO"``, ``"a regular file"``, ...)."""
    return "a regular file" if stat.S_ISREG(mode) else _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def open_regular(path: str | os.PathLike, what: str = "file") -> int:
    """A read-only descriptor of ``path`` (links followed) when it is a regular file; a FIFO, device or
    socket is refused without blocking (opened ``O_NONBLOCK`` and checked with ``fstat``)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise RefusedFile(f"{path} is {kind_of(mode)}, not a regular file: faceocc reads only regular {what}s")
    return fd


def read_regular(path: str | os.PathLike, limit: int, what: str = "file", option: str = "") -> bytes:
    """The bytes of the regular file ``path``, refused (:class:`RefusedFile`) when it is anything else or
    longer than ``limit`` bytes (``option`` names the setting that raises the limit)."""
    fd = open_regular(path, what)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise RefusedFile(f"{path} is {size} bytes, over the limit of {limit} bytes for a {what}"
                              + (f" ({option})" if option else ""))
        chunks, got = [], 0
        while got <= limit:                       # a file growing while read stops at the limit too
            chunk = os.read(fd, min(1 << 20, limit + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        if got > limit:
            raise RefusedFile(f"{path} grew past the limit of {limit} bytes for a {what} while it was read")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_small_text(path: str | os.PathLike, limit: int = 1 << 20) -> str | None:
    """A small text file (``property``, a manifest) as text; None when it is absent, not a regular file,
    over ``limit`` bytes or not UTF-8: callers treat such a file as missing."""
    try:
        return read_regular(path, limit).decode()
    except (OSError, ValueError):
        return None


def real_dir(path: str | os.PathLike, create: bool = True) -> Path:
    """``path`` as a real folder (made when ``create`` and absent): a link there, even to a folder, is
    refused, so nothing is written or deleted through it."""
    path = Path(path)
    if create:
        with contextlib.suppress(FileExistsError):
            path.mkdir()
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        raise RefusedFile(f"{path} does not exist") from None
    if stat.S_ISLNK(mode):
        raise RefusedFile(f"{path} is a symbolic link (to {os.readlink(path)}): faceocc writes and deletes only in "
                          "real folders inside the dataset, never through a link; make it a folder of its own "
                          "(remove the link, or replace it by a copy of what it points at)")
    if not stat.S_ISDIR(mode):
        raise RefusedFile(f"{path} is {kind_of(mode)}, not a folder")
    return path


def create_new(path: str | os.PathLike, mode: int = 0o644) -> int:
    """A descriptor of a new, empty file at ``path`` opened for writing; whatever had the name before (a
    stale partial file, a planted link) is unlinked first, never followed or truncated."""
    path = Path(path)
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISDIR(os.lstat(path).st_mode):
            raise RefusedFile(f"{path} is a folder, not a file faceocc may replace")
        path.unlink()
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, mode)


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a new temporary file in the same folder, synced and renamed
    over ``path``: readers see the old content or the new, and a link at ``path`` is replaced by the
    file, its target untouched."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove(path: str | os.PathLike) -> None:
    """Remove ``path`` without following it: a file or link is unlinked (a link's target stays), a real
    folder is removed with its contents (``shutil.rmtree`` follows no link inside it)."""
    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
