"""Augmentation profiles: every probability and range of MSML's augmentation, as data.

A profile is a :class:`Profile` dataclass or a YAML file that overrides any of its fields (on top of
the profile named by its ``base:`` key, ``ms1m`` when it names none). Lengths
are in pixels of a 112 x 112 image and scale with the image size; positions are fractions of it.
``ms1m`` (default) and ``casia`` reproduce MSML's two sample-level mixes.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .kinds import KIND_NAMES
from .profile_rules import validate_profile

Range = tuple[float, float]
BUILTIN = Path(__file__).parent / "profiles"


@dataclass
class Rectangle:
    area_percent: tuple[int, int] = (0, 35)      # area ratio r = k / 100, k uniform integer
    colour: tuple[int, int] = (0, 255)


@dataclass
class Ellipse:
    centre: Range = (0.2, 0.8)                   # fraction of H (y) and W (x), [lo, hi)
    min_semi_axis: float = 20.0                  # vertical semi-axis in [this, min(cy, H - cy))
    area_ratio: Range = (0.2, 0.4)
    colour: tuple[int, int] = (1, 255)


@dataclass
class Polygon:
    points: tuple[int, int] = (4, 10)            # outer points, uniform integer
    radius: Range = (0.2, 0.26)                  # fraction of H: [H/5, 1.3 H/5)
    centre: Range = (0.2, 0.8)
    inner_p: float = 0.5                         # chance of an inner point after each outer one
    inner_divisor: Range = (1.3, 2.6)            # inner radius = outer / U(...)
    outer_step: Range = (0.7, 1.3)               # x 2 pi / n
    inner_step: Range = (0.6, 1.4)               # x pi / n after the outer point
    colour: tuple[int, int] = (1, 255)


@dataclass
class Glasses:
    eyeglasses_p: float = 0.5                    # the eyeglasses group instead of glasses
    size: tuple[float, float] = (80 / 120, 40 / 120)   # fractions of (W, H)
    scale: Range = (1 / 1.1, 1.1)                # per side
    x: tuple[float, float, int, int] = (0.12, 0.02, -5, 5)   # (base + step * k) * W, k in [lo, hi]
    y: tuple[float, float, int, int] = (0.30, 0.01, -5, 5)   # of H
    replace_alpha: int = 10                      # alpha above this replaces the face
    mask_alpha: int = 0                          # alpha above this is occluded in msk


@dataclass
class Scarf:
    size: float = 90.0                           # pixels, both sides
    scale: Range = (1 / 1.1, 1.0)
    x: tuple[float, float, int, int] = (0.10, 0.01, -5, 4)   # of W
    y: tuple[float, float, int, int] = (0.60, 0.01, -5, 4)   # of W, as MSML does
    mask_alpha: int = 0


@dataclass
class RealObject:
    size: float = 55.0                           # centre-cropped square, pixels
    scale: Range = (1.0, 2.0)                    # per side
    position_percent: tuple[int, int] = (15, 50)  # top-left at k / 100 of W and H
    mask_alpha: int = 0


@dataclass
class Mask3D:
    """Augmentation of the pixels of an offline 3D mask."""

    modes: dict[str, float] = field(default_factory=lambda: {"light": 4 / 11, "noise": 2 / 11,
                                                             "block": 5 / 11})
    box_size: Range = (0.3, 1.0)                 # box sides, fractions of W and H
    light_sigma: Range = (10.0, 40.0)            # pixels
    light_gain: Range = (0.2, 0.7)               # added, times 255, at the light's centre
    noise_sigma: Range = (4.0, 24.0)             # grey levels
    jitter_p: float = 0.5                        # per channel, for light and noise
    jitter: Range = (0.7, 1.3)


@dataclass
class Lighting:
    p: float = 1.0
    sigma: float = 128.0                         # pixels: exp(-d^2 / (2 sigma^2))
    gain: Range = (0.7, 1.4)


@dataclass
class Profile:
    """Everything the sampler draws from; validate() runs at construction time of the operator."""

    kinds: dict[str, float] = field(default_factory=dict)
    rectangle: Rectangle = field(default_factory=Rectangle)
    ellipse: Ellipse = field(default_factory=Ellipse)
    polygon: Polygon = field(default_factory=Polygon)
    glasses: Glasses = field(default_factory=Glasses)
    scarf: Scarf = field(default_factory=Scarf)
    object: RealObject = field(default_factory=RealObject)
    mask3d: Mask3D = field(default_factory=Mask3D)
    lighting: Lighting = field(default_factory=Lighting)
    flip_p: float = 0.5                          # MSML's code flips with 0.6 by accident
    grayscale: bool = False
    normalize: bool = True                       # (x - 0.5) / 0.5

    def kind_probabilities(self) -> list[float]:
        """Probabilities in :class:`Kind` code order."""
        return [float(self.kinds.get(name, 0.0)) for name in KIND_NAMES]

    def validate(self, size: tuple[int, int] = (112, 112)) -> Profile:
        """Raise ValueError, naming the field path and its allowed values, for any field of the wrong
        type or magnitude (the rules: :mod:`ops.profile_rules`); returns the profile."""
        validate_profile(self, size)
        return self

    def without_mask3d(self) -> Profile:
        """The same profile with the mask3d share given to the other kinds in proportion."""
        p = self.kind_probabilities()
        share = p[-1]
        if share == 0:
            return self
        rest = sum(p[:-1])
        if rest == 0:
            raise ValueError("the profile uses only mask3d, but the dataset has no mask records")
        warnings.warn(f"no mask_out/mask records: the mask3d share ({share:.3f}) goes to the other "
                      "kinds in proportion; run `faceocc render DIR` to make them", stacklevel=2)
        kinds = {name: p[i] / rest for i, name in enumerate(KIND_NAMES[:-1])}
        return dataclasses.replace(self, kinds={**kinds, "mask3d": 0.0})


def _merge(obj: object, data: dict, where: str) -> object:
    if not isinstance(data, dict):
        raise ValueError(f"profile section {where or 'root'} must be a mapping")
    names = {f.name: f for f in dataclasses.fields(obj)}
    changes = {}
    for key, value in data.items():
        if key not in names:
            raise ValueError(f"unknown profile field {where}{key}; known: {sorted(names)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            changes[key] = _merge(current, value, f"{where}{key}.")
        elif isinstance(current, tuple) and isinstance(value, (list, tuple)):
            changes[key] = tuple(value)                     # anything else is left for the rules to refuse
        else:
            changes[key] = value
    return dataclasses.replace(obj, **changes)


def load_profile(profile: str | os.PathLike | Profile | None = "ms1m") -> Profile:
    """A built-in profile by name (``ms1m``, ``casia``), a YAML path, or a Profile (returned as is)."""
    if isinstance(profile, Profile):
        return profile
    name = "ms1m" if profile is None else str(profile)
    path = BUILTIN / f"{name}.yaml" if (BUILTIN / f"{name}.yaml").is_file() else Path(name)
    if not path.is_file():
        raise ValueError(f"profile {name!r} is neither a built-in (ms1m, casia) nor a YAML file")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"profile {path} must be a YAML mapping")
    base = data.pop("base", None if path.parent == BUILTIN else "ms1m")
    start = load_profile(base) if base is not None else Profile()
    return _merge(start, data, "")
