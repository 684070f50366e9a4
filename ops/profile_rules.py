"""What a profile may hold: one rule per field path (types and magnitudes), then the rules that relate
fields to each other and to the image size. Every refusal is a ValueError naming the field path and
the allowed values.

Lengths in pixels are for a 112 x 112 image (they scale with the image). Every leaf field of
:class:`~ops.profiles.Profile` has exactly one entry in :data:`FIELD_RULES` (a test checks it), so a new
or renamed field needs its rule here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

from .kinds import KIND_NAMES


def _number(value: Any, integer: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        return False
    return not integer or isinstance(value, Integral) or float(value).is_integer()


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})" if not _number(value) else repr(value)


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
class Distribution:
    """A mapping from names to probabilities that sum to 1."""

    names: tuple[str, ...]

    def allowed(self) -> str:
        return f"a mapping of {', '.join(self.names)} to probabilities >= 0 that sum to 1"

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, dict):
            return f"= {_show(value)}: must be {self.allowed()}"
        unknown = sorted(set(value) - set(self.names))
        if unknown:
            return f"names unknown kinds {unknown}: must be {self.allowed()}"
        probs = [value.get(n, 0.0) for n in self.names]
        bad = {n: v for n, v in value.items() if not _number(v) or v < 0}
        if bad:
            return f"has {bad}: must be {self.allowed()}"
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
    "glasses.size": Pair(0, 1, lo_open=True, unit=" (fractions of W and H)"),
    "glasses.scale": SCALE,
    "glasses.x": Placement(),
    "glasses.y": Placement(),
    "glasses.replace_alpha": ALPHA,
    "glasses.mask_alpha": ALPHA,
    "scarf.size": Number(1, 112, unit=PX),
    "scarf.scale": SCALE,
    "scarf.x": Placement(),
    "scarf.y": Placement(),
    "scarf.mask_alpha": ALPHA,
    "object.size": Number(1, 112, unit=PX),
    "object.scale": SCALE,
    "object.position_percent": Interval(0, 99, integer=True),
    "object.mask_alpha": ALPHA,
    "mask3d.modes": Distribution(("light", "noise", "block")),
    "mask3d.box_size": Interval(0.01, 1),
    "mask3d.light_sigma": Interval(1, 1000, unit=PX),
    "mask3d.light_gain": Interval(0, 1, unit=" (times 255)"),
    "mask3d.noise_sigma": Interval(0, 255, unit=" (grey levels)"),
    "mask3d.jitter_p": Probability(),
    "mask3d.jitter": Interval(0, 10),
    "lighting.p": Probability(),
    "lighting.sigma": Number(1, 1e6, unit=PX),
    # the light is divided by its maximum: a gain near 0 underflows to black, a large one clips to white
    "lighting.gain": Interval(0.05, 4),
    "flip_p": Probability(),
    "grayscale": Flag(),
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


CROSS_RULES: list[Callable[[Any, tuple[int, int]], list[str]]] = [_occluder_sides]


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
