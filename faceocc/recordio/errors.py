"""The one error of the format layer: what cannot be read as MXNet RecordIO, with file, key and offset."""

from __future__ import annotations

import os


class RecordIOError(Exception):
    """A record file or index that cannot be read as MXNet RecordIO; names file, key and offset."""

    def __init__(self, message: str, path: str | os.PathLike | None = None,
                 key: int | None = None, offset: int | None = None) -> None:
        self.reason = message
        self.path = None if path is None else str(path)
        self.key = key
        self.offset = offset
        where = []
        if self.path is not None:
            where.append(self.path)
        if key is not None:
            where.append(f"key {key}")
        if offset is not None:
            where.append(f"byte offset {offset}")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)
