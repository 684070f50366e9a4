"""What a profile may hold: one rule per field path (types and magnitudes), then the rules that relate
fields to each other and to the image size. Every refusal is a ValueError naming the field path and
the allowed values.

Lengths in pixels are for a 112 x 112 image (they scale with the image). Every leaf field of
:class:`~ops.profiles.Profile` has exactly one entry in :data:`FIELD_RULES` (a test checks it), so a new
or renamed field needs its rule here.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, get_args

from .kinds import KIND_NAMES
from .options import OriMode

_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxdict = 3, 6, 6, 6
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 60, 60, 40


def short(value: Any) -> str:
    """``repr(value)`` cut to about 60 characters a part and 3 levels: a message stays one short line
    whatever a profile holds (a YAML alias bomb's repr would otherwise take minutes and gigabytes)."""
    return _SHORT.repr(value)


def _number(value: Any, integer: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, Real):
        return False
    try:
        if not math.isfinite(float(value)):
            return False
    except OverflowError:                      # an integer past float's range (10**400) is no profile number
        return False
    return not integer or isinstance(value, Integral) or float(value).is_integer()


def _show(value: Any) -> str:
    return f"{short(value)} ({type(value).__name__})" if not _number(value) else short(value)


def _bounds(lo: float, hi: float, lo_open: bool, hi_open: bool) -> str:
    return f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


@dataclass(frozen=True)
class Number:
    """A number (not a bool, string, list or null) in ``[lo, hi]`` (open ends where asked)."""

    lo: float
    hi: float
    integer: bool = False
    lo_open: bool = False
    hi_open: bool = False
    unit: str = ""

    def allowed(self) -> str:
        kind = "an integer" if self.integer else "a number"
        return f"{kind} in {_bounds(self.lo, self.hi, self.lo_open, self.hi_open)}{self.unit}"

    def inside(self, v: float) -> bool:
        return (self.lo < v if self.lo_open else self.lo <= v) and (v < self.hi if self.hi_open else v <= self.hi)

    def problem(self, value: Any) -> str | None:
        if not _number(value, self.integer) or not self.inside(float(value)):
            return f"= {_show(value)}: must be {self.allowed()}"
        return None


@dataclass(frozen=True)
class Probability(Number):
    lo: float = 0.0
    hi: float = 1.0

    def problem(self, value: Any) -> str | None:
        found = super().problem(value)
        return None if found is None else f"= {_show(value)} is not a probability: must be {self.allowed()}"


@dataclass(frozen=True)
class Interval(Number):
    """A pair ``[a, b]`` of such numbers with ``a <= b`` (a range to draw from)."""

    def allowed(self) -> str:
        return f"a pair [lo, hi] with lo <= hi, both {super().allowed()}"

    def problem(self, value: Any) -> str | None:
        if (not isinstance(value, (tuple, list)) or len(value) != 2
                or not all(_number(v, self.integer) and self.inside(float(v)) for v in value)
                or value[0] > value[1]):
            return f"= {_show(value)}: must be {self.allowed()}"
        return None


@dataclass(frozen=True)
class Pair(Number):
    """A pair of such numbers, unordered (e.g. a width and a height)."""

    def allowed(self) -> str:
        return f"a pair [width, height], each {super().allowed()}"

    def problem(self, value: Any) -> str | None:
        if (not isinstance(value, (tuple, list)) or len(value) != 2
                or not all(_number(v, self.integer) and self.inside(float(v)) for v in value)):
            return f"= {_show(value)}: must be {self.allowed()}"
        return None


@dataclass(frozen=True)
class Flag:
    def allowed(self) -> str:
        return "true or false (a YAML boolean, not a string or number)"

    def problem(self, value: Any) -> str | None:
        return None if isinstance(value, bool) else f"= {_show(value)}: must be {self.allowed()}"


@dataclass(frozen=True)
class Placement:
    """``(base, step, k_lo, k_hi)``: positions ``base + step * k`` (fractions), k integer in [k_lo, k_hi]."""

    def allowed(self) -> str:
        return "[base, step, k_lo, k_hi] with integers k_lo <= k_hi and every base + step * k in [0, 1)"

    def problem(self, value: Any) -> str | None:
        if (not isinstance(value, (tuple, list)) or len(value) != 4 or not all(_number(v) for v in value[:2])
                or not all(_number(v, integer=True) for v in value[2:]) or value[2] > value[3]):
            return f"= {_show(value)}: must be {self.allowed()}"
        base, step, klo, khi = value
        if not (base + step * klo >= 0 and base + step * khi < 1):
            return f"= {_show(value)} places the occluder outside the image: must be {self.allowed()}"
        return None


@dataclass(frozen=True)
class Choice:
    """One of a few allowed values (compared with their types: ``1`` is not ``'1'`` or ``True``)."""

    values: tuple[Any, ...]

    def allowed(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)

    def problem(self, value: Any) -> str | None:
        ok = any(type(value) is type(v) and value == v for v in self.values)
        return None if ok else f"= {_show(value)}: must be {self.allowed()}"


@dataclass(frozen=True)
class Offsets:
    """``(base, lo, hi)``: pixels ``base + k``, k a uniform integer in [lo, hi], every one inside [0, 112]."""

    def allowed(self) -> str:
        return "[base, k_lo, k_hi], integers with k_lo <= k_hi and every base + k in [0, 112]" + PX

    def problem(self, value: Any) -> str | None:
        if (not isinstance(value, (tuple, list)) or len(value) != 3
                or not all(_number(v, integer=True) for v in value) or value[1] > value[2]
                or not 0 <= value[0] + value[1] <= value[0] + value[2] <= 112):
            return f"= {_show(value)}: must be {self.allowed()}"
        return None


@dataclass(frozen=True)
class Distribution:
    """A mapping from names to probabilities that sum to 1."""

    names: tuple[str, ...]

    def allowed(self) -> str:
        return f"a mapping of {', '.join(self.names)} to probabilities >= 0 that sum to 1"

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, dict):
            return f"= {_show(value)}: must be {self.allowed()}"
        unknown = sorted(map(short, set(value) - set(self.names)))
        if unknown:
            return f"names unknown kinds {short(unknown)}: must be {self.allowed()}"
        probs = [value.get(n, 0.0) for n in self.names]
        bad = {n: v for n, v in value.items() if not _number(v) or v < 0}
        if bad:
            return f"has {short(bad)}: must be {self.allowed()}"
        if abs(sum(probs) - 1.0) > 1e-6:
            return f"probabilities must be >= 0 and sum to 1; got {probs} (sum {sum(probs):.6f})"
        return None


PX = " (pixels at 112 x 112)"
COLOUR = Interval(0, 255, integer=True)
ALPHA = Number(0, 255, integer=True, unit=" (alpha level)")
SCALE = Interval(0, 4, lo_open=True)

FIELD_RULES: dict[str, Any] = {
    "kinds": Distribution(tuple(KIND_NAMES)),
    "rectangle.area_percent": Interval(0, 99, integer=True),
    "rectangle.colour": COLOUR,
    "ellipse.centre": Interval(0, 1),
    "ellipse.min_semi_axis": Number(1, 112, unit=PX),
    "ellipse.area_ratio": Interval(0, 1, lo_open=True),
    "ellipse.pi": Number(3, 3.2),
    "ellipse.colour": COLOUR,
    "polygon.points": Interval(3, 10, integer=True),
    "polygon.radius": Interval(0, 1, lo_open=True, unit=" (fraction of H)"),
    "polygon.centre": Interval(0, 1),
    "polygon.inner_p": Probability(),
    "polygon.inner_divisor": Interval(0, 100, lo_open=True),
    "polygon.outer_step": Interval(0, 4, lo_open=True),
    "polygon.inner_step": Interval(0, 4, lo_open=True),
    "polygon.colour": COLOUR,
    "glasses.eyeglasses_p": Probability(),
    "glasses.pre_size": Pair(1, 1024, integer=True, unit=" (pixels, once per image)"),
    "glasses.size": Pair(0, 1, lo_open=True, unit=" (fractions of W and H)"),
    "glasses.scale": SCALE,
    "glasses.x": Placement(),
    "glasses.y": Placement(),
    "glasses.replace_alpha": ALPHA,
    "glasses.mask_alpha": ALPHA,
    "scarf.pre_size": Pair(1, 1024, integer=True, unit=" (pixels, once per image)"),
    "scarf.size": Number(1, 112, unit=PX),
    "scarf.scale": SCALE,
    "scarf.x": Placement(),
    "scarf.y": Placement(),
    "scarf.replace_alpha": ALPHA,
    "scarf.mask_alpha": ALPHA,
    "object.size": Number(1, 112, unit=PX),
    "object.pad_bias": Number(0, 1, integer=True, unit=" (1: torchvision 0.8.2's padding, 0: later versions)"),
    "object.scale": SCALE,
    "object.position_percent": Interval(0, 99, integer=True),
    "object.replace_alpha": ALPHA,
    "object.mask_alpha": ALPHA,
    "mask3d.modes": Distribution(("light", "noise", "block")),
    "mask3d.left": Offsets(),
    "mask3d.right": Offsets(),
    "mask3d.rows": Interval(0, 112, integer=True, unit=PX),
    "mask3d.block_top": Offsets(),
    "mask3d.block_bottom": Offsets(),
    # sigma U(int(edge / f), int(edge * f)): f >= 1 keeps the range ordered and the Gaussian wider than 0
    "mask3d.light_sigma": Number(1, 100, unit=" (factor on the box's longer side)"),
    "mask3d.light_amplitude": Number(0, 1, unit=" ([0, 1] units)"),
    "mask3d.noise_std": Number(0, 10, unit=" ([0, 1] units)"),
    "mask3d.block_value": Number(0, 10, unit=" ([0, 1] units)"),
    "mask3d.channel_p": Probability(),
    "mask3d.threshold": Number(0, 254, integer=True, unit=" (mask record values <= this are mask)"),
    "lighting.p": Probability(),
    "lighting.sigma": Number(1, 1e6, unit=PX),
    # the light is divided by its maximum: a gain near 0 underflows to black, a large one clips to white
    "lighting.gain": Interval(0.05, 4),
    "flip_p": Probability(),
    "grayscale": Flag(),
    "gray_channels": Choice((1, 3)),
    "gray_offset_divisor": Number(0, 100, lo_open=True),
    "ori": Choice(get_args(OriMode)),
    "normalize": Flag(),
}


def _occluder_sides(profile: Any, size: tuple[int, int]) -> list[str]:
    """Occluders drawn below one pixel (nothing pasted while ``kind`` says one is) or past the image."""
    h, w = size
    found = []
    g = profile.glasses
    for axis, side, dim in (("width", g.size[0], w), ("height", g.size[1], h)):
        if round(side * dim * g.scale[0]) < 1 or side * g.scale[1] > 1:
            found.append(f"glasses.size {axis} {side:g} x glasses.scale {tuple(g.scale)} must give 1 pixel to "
                         f"the full {dim}-pixel image")
    for name in ("scarf", "object"):
        o = getattr(profile, name)
        side = o.size * w / 112
        if int(side * o.scale[0]) < 1 or o.size * o.scale[1] > 112:
            found.append(f"{name}.size {o.size:g} x {name}.scale {tuple(o.scale)} must give 1 to 112 pixels{PX}")
    if profile.polygon.radius[0] * h < 1:
        found.append(f"polygon.radius {tuple(profile.polygon.radius)} must give at least 1 pixel of a {h}-pixel "
                     "image")
    e = profile.ellipse
    if e.min_semi_axis * h / 112 >= min(e.centre[0], 1 - e.centre[1]) * h:
        found.append(f"ellipse.min_semi_axis {e.min_semi_axis:g} leaves no room inside a {h}-pixel image for the "
                     f"centre range ellipse.centre {tuple(e.centre)}: must be below "
                     f"{min(e.centre[0], 1 - e.centre[1]) * 112:g}{PX}")
    return found


def _mask3d_boxes(profile: Any, size: tuple[int, int]) -> list[str]:
    """Mask3d boxes that could be empty: every left column must lie before every right one, every block
    top above every block bottom, and the light/noise rows must hold at least one row."""
    m = profile.mask3d
    found = []
    for lo_name, hi_name in (("left", "right"), ("block_top", "block_bottom")):
        lo, hi = getattr(m, lo_name), getattr(m, hi_name)
        if lo[0] + lo[2] >= hi[0] + hi[1]:
            found.append(f"mask3d.{lo_name} {tuple(lo)} reaches mask3d.{hi_name} {tuple(hi)}: the largest "
                         f"{lo_name} ({lo[0] + lo[2]}) must stay below the smallest {hi_name} ({hi[0] + hi[1]})")
    if m.rows[0] >= m.rows[1]:
        found.append(f"mask3d.rows {tuple(m.rows)} must hold at least one row: [top, bottom) with top < bottom")
    return found


CROSS_RULES: list[Callable[[Any, tuple[int, int]], list[str]]] = [_occluder_sides, _mask3d_boxes]


def _value(profile: Any, path: str) -> Any:
    obj = profile
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def validate_profile(profile: Any, size: tuple[int, int] = (112, 112)) -> None:
    """Raise ValueError naming the field path and its allowed values for the first field out of its
    rule; then check the rules between fields (only once every field is well-formed)."""
    for path, rule in FIELD_RULES.items():
        problem = rule.problem(_value(profile, path))
        if problem:
            raise ValueError(f"profile field {path} {problem}")
    for rule in CROSS_RULES:
        found = rule(profile, size)
        if found:
            raise ValueError(f"profile: {found[0]}")
