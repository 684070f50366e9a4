"""Data files that ship inside installed packages (insightface's sample faces, mask textures and mean face),
found without importing those packages."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def package_file(package: str, *parts: str) -> Path | None:
    """A data file inside an installed package, found without importing the package; None if absent.

    Example::

        package_file("insightface", "data", "objects", "meanshape_68.pkl")
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    return path if path.exists() else None
