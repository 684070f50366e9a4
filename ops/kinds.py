"""Occluder kind codes carried in the ``kind`` output; tools rely on these numbers."""

from __future__ import annotations

from enum import IntEnum


class Kind(IntEnum):
    """Which occluder a sample got (int8 in the ``kind`` tensor)."""

    NONE = 0
    RECTANGLE = 1
    ELLIPSE = 2
    POLYGON = 3
    GLASSES = 4
    SCARF = 5
    OBJECT = 6
    MASK3D = 7


KIND_NAMES = [k.name.lower() for k in Kind]
WEB_KINDS = (Kind.GLASSES, Kind.SCARF, Kind.OBJECT)
