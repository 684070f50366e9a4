"""Augmentation profiles: every probability and range of MSML's augmentation, as data.

A profile is a :class:`Profile` dataclass or a YAML file that overrides any of its fields (on top of
the profile named by its ``base:`` key, ``ms1m`` when it names none). Lengths
are in pixels of a 112 x 112 image and scale with the image size; positions are fractions of it.
``ms1m`` (default) and ``casia`` reproduce MSML's two sample-level mixes.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from faceocc.recordio.files import RefusedFile, read_regular

from .kinds import KIND_NAMES
from .options import OriMode
from .profile_rules import short, validate_profile

Range = tuple[float, float]
BUILTIN = Path(__file__).parent / "builtin_profiles"
MAX_PROFILE_BYTES = 1 << 20       # a profile file longer than this is refused
MAX_PROFILE_NODES = 10_000        # YAML nodes after expanding aliases (a whole profile has about 150)


@dataclass
class Rectangle:
    area_percent: tuple[int, int] = (0, 35)      # area ratio r = k / 100, k uniform integer
    colour: tuple[int, int] = (0, 255)


@dataclass
class Ellipse:
    centre: Range = (0.2, 0.8)                   # uniform integer in [int(lo H), int(hi H)) (y; x of W)
    min_semi_axis: float = 20.0                  # vertical semi-axis: integer in [this, min(cy, H - cy))
    area_ratio: Range = (0.2, 0.4)               # horizontal semi-axis int(H W r / (pi b))
    pi: float = 3.14                             # MSML's value of pi in that formula
    colour: tuple[int, int] = (1, 255)


@dataclass
class Polygon:
    points: tuple[int, int] = (4, 10)            # n, uniform integer: n + 1 outer vertices
    radius: Range = (0.2, 0.26)                  # outer radius: integer in [int(lo H), int(hi H))
    centre: Range = (0.2, 0.8)                   # integers as the ellipse's
    inner_p: float = 0.5                         # chance of an inner vertex after each outer one
    inner_divisor: Range = (1.3, 2.6)            # inner radius = outer / U(...), once per polygon
    outer_step: Range = (0.7, 1.3)               # outer angle += 2 pi / n * U(...)
    inner_step: Range = (0.6, 1.4)               # inner angle (its own) += 2 pi / n * U(...)
    colour: tuple[int, int] = (1, 255)


@dataclass
class Glasses:
    eyeglasses_p: float = 0.5                    # the eyeglasses group instead of glasses
    pre_size: tuple[int, int] = (80, 40)         # every image resized once to (w, h) pixels (bicubic)
    size: tuple[float, float] = (80 / 120, 40 / 120)   # fractions of (W, H), truncated after scaling
    scale: Range = (1 / 1.1, 1.1)                # per side
    x: tuple[float, float, int, int] = (0.12, 0.02, -5, 5)   # (base + step * k) * W, k in [lo, hi]
    y: tuple[float, float, int, int] = (0.30, 0.01, -5, 5)   # of H
    replace_alpha: int = 10                      # alpha above this replaces the face
    mask_alpha: int = 0                          # alpha above this is occluded in msk


@dataclass
class Scarf:
    pre_size: tuple[int, int] = (90, 90)         # every image resized once to (w, h) pixels (bicubic)
    size: float = 90.0                           # pixels, both sides, truncated after scaling
    scale: Range = (1 / 1.1, 1.0)
    x: tuple[float, float, int, int] = (0.10, 0.01, -5, 4)   # of W
    y: tuple[float, float, int, int] = (0.60, 0.01, -5, 4)   # of W, as MSML does
    replace_alpha: int = 0
    mask_alpha: int = 0


@dataclass
class RealObject:
    size: float = 55.0                           # every image fitted (aspect kept) into this square
    pad_bias: int = 1                            # and padded at floor((size - bias - side) / 2)
    scale: Range = (1.0, 2.0)                    # per side
    position_percent: tuple[int, int] = (15, 50)  # top-left at k / 100 of W and H
    replace_alpha: int = 0
    mask_alpha: int = 0


@dataclass
class MaskRender:
    """How an online 3D mask (``mask3d.source: online``) is rendered, drawn per sample; the defaults are
    those of ``faceocc render``. Light: the unit vector along (light_x, light_y, 1)."""

    textures: str | None = None                  # folder of mask textures (default: insightface's four)
    top: Range = (0.33, 0.5)                     # top edge: fraction of the way from nose tip to bridge
    ambient: Range = (0.55, 0.8)
    gain: Range = (0.85, 1.1)
    light_x: Range = (-0.6, 0.6)
    light_y: Range = (-0.6, 0.3)
    tint_p: float = 0.0                          # chance of a tint: the texture colour times U(tint) per channel
    tint: Range = (0.5, 1.0)


@dataclass
class Mask3D:
    """Augmentation of the pixels of an offline 3D mask, in [0, 1] units after the face lighting.

    Box bounds are (base, lo, hi): base + k, k uniform integer in [lo, hi], pixels of a 112 image.
    """

    modes: dict[str, float] = field(default_factory=lambda: {"light": 4 / 11, "noise": 2 / 11,
                                                             "block": 5 / 11})
    left: tuple[int, int, int] = (40, -20, 20)   # box columns [left, right)
    right: tuple[int, int, int] = (100, -20, 10)
    rows: tuple[int, int] = (1, 111)             # light and noise box rows [top, bottom)
    block_top: tuple[int, int, int] = (40, -20, 19)
    block_bottom: tuple[int, int, int] = (100, -20, 9)
    light_sigma: float = 1.5                     # sigma U(int(edge / this), int(edge * this)), edge: longer side
    light_amplitude: float = 0.4                 # offset (map - 0.5) * 2 * this * (+1 or -1)
    noise_std: float = 1.0                       # offset: a normal draw per pixel, shared by the channels
    block_value: float = 1.0                     # offset +-this on the block
    channel_p: float = 0.5                       # light, noise: each channel keeps the offset with this p
    threshold: int = 128                         # mask record values <= this are mask pixels
    source: str = "offline"                      # offline: mask_out/mask records; online: rendered per sample
    render: MaskRender = field(default_factory=MaskRender)   # online masks only


@dataclass
class Lighting:
    p: float = 1.0
    sigma: float = 128.0                         # pixels: exp(-d^2 / (2 sigma^2)), d truncated per axis
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
    grayscale: bool = False                      # integer luma after the occlusion, as MSML
    gray_channels: int = 1                       # output channels when grayscale: 1 (MSML) or 3 (repeated)
    gray_offset_divisor: float = 3.0             # MSML divides the mask offset's luma by 3
    ori: OriMode = "clean"                       # "clean" face, or "occluded": MSML's second independent draw
    normalize: bool = True                       # (x - 0.5) / 0.5

    def kind_probabilities(self) -> list[float]:
        """Probabilities in :class:`Kind` code order."""
        return [float(self.kinds.get(name, 0.0)) for name in KIND_NAMES]

    def validate(self, size: tuple[int, int] = (112, 112)) -> Profile:
        """Raise ValueError, naming the field path and its allowed values, for any field of the wrong
        type or magnitude (the rules: :mod:`faceocc.ops.profile_rules`); returns the profile."""
        validate_profile(self, size)
        return self

    def atlas_layout(self) -> dict[str, tuple]:
        """How the occluder bank prepares each group's images once, before any sampling: ``("resize",
        (w, h))`` or ``("fit_pad", side, bias)``."""
        o = self.object
        return {"glasses": ("resize", tuple(self.glasses.pre_size)),
                "eyeglasses": ("resize", tuple(self.glasses.pre_size)),
                "scarf": ("resize", tuple(self.scarf.pre_size)),
                "object": ("fit_pad", int(o.size), int(o.pad_bias))}

    def channels(self) -> int:
        """Channels of ``img`` and ``ori``: 3, or ``gray_channels`` with grayscale."""
        return self.gray_channels if self.grayscale else 3

    def without_mask3d(self) -> Profile:
        """The same profile with the mask3d share given to the other kinds in proportion."""
        p = self.kind_probabilities()
        share = p[-1]
        if share == 0:
            return self
        rest = sum(p[:-1])
        online = self.mask3d.source == "online"
        what = "face geometry (mask_geometry.rec)" if online else "mask_out/mask records"
        if rest == 0:
            raise ValueError(f"the profile uses only mask3d, but the dataset has no {what}")
        make = "faceocc render DIR --geometry-only" if online else "faceocc render DIR"
        warnings.warn(f"no {what}: the mask3d share ({share:.3f}) goes to the other "
                      f"kinds in proportion; run `{make}` to make them", stacklevel=2)
        kinds = {name: p[i] / rest for i, name in enumerate(KIND_NAMES[:-1])}
        return dataclasses.replace(self, kinds={**kinds, "mask3d": 0.0})


def _merge(obj: object, data: dict, where: str) -> object:
    if not isinstance(data, dict):
        raise ValueError(f"profile section {where or 'root'} must be a mapping")
    names = {f.name: f for f in dataclasses.fields(obj)}
    changes = {}
    for key, value in data.items():
        if key not in names:
            raise ValueError(f"unknown profile field {where}{short(key)}; known: {sorted(names)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            changes[key] = _merge(current, value, f"{where}{key}.")
        elif isinstance(current, tuple) and isinstance(value, (list, tuple)):
            changes[key] = tuple(value)                     # anything else is left for the rules to refuse
        else:
            changes[key] = value
    return dataclasses.replace(obj, **changes)


def _expanded_size(node: yaml.Node, path: Path) -> int:
    """Nodes of the document with every alias expanded, counted without expanding anything (each node once,
    its size remembered); refuses a document over :data:`MAX_PROFILE_NODES` or one that contains itself."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(node, False)]
    open_: set[int] = set()
    while stack:
        current, children_done = stack.pop()
        if id(current) in sizes:
            continue
        if isinstance(current, yaml.MappingNode):
            children = [n for pair in current.value for n in pair]
        elif isinstance(current, yaml.SequenceNode):
            children = list(current.value)
        else:
            children = []
        if children_done:
            open_.discard(id(current))
            sizes[id(current)] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[id(current)] > MAX_PROFILE_NODES:
                raise ValueError(f"profile {path} expands to more than {MAX_PROFILE_NODES} YAML values (aliases "
                                 "count each time they are used): refused, as a profile is about 150")
            continue
        if id(current) in open_:
            raise ValueError(f"profile {path} contains itself through an alias: refused")
        open_.add(id(current))
        stack.append((current, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes[id(node)]


def _read_yaml(path: Path) -> object:
    """The YAML document at ``path``, safely: a regular file of at most :data:`MAX_PROFILE_BYTES`, no Python
    tags, no alias bombs; every problem one ValueError line naming the file."""
    try:
        text = read_regular(path, MAX_PROFILE_BYTES, "profile")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is None:
            return None
        _expanded_size(node, path)
        return yaml.SafeLoader("").construct_document(node)
    except (OSError, RefusedFile) as exc:
        raise ValueError(f"profile {path} cannot be read: {exc}") from None
    except yaml.YAMLError as exc:
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ValueError(f"profile {path} is not a faceocc profile{where}: {problem[:200]}") from None
    except RecursionError:
        raise ValueError(f"profile {path} nests too deeply to be a profile") from None
    except ValueError as exc:
        if str(exc).startswith(f"profile {path}"):
            raise
        raise ValueError(f"profile {path} holds a value that cannot be read: {short(str(exc))}") from None


def load_profile(profile: str | os.PathLike | Profile | None = "ms1m", _chain: tuple[str, ...] = ()) -> Profile:
    """A built-in profile by name, a YAML file, or a Profile (returned as is).

    A YAML file holds only the fields it changes, on top of ``base:`` (a built-in name or another
    YAML path; default ``ms1m``); a chain of bases that comes back to a profile already in it is refused.
    It is read safely (a regular file of at most :data:`MAX_PROFILE_BYTES`, at most
    :data:`MAX_PROFILE_NODES` values with aliases expanded, no Python tags). Field values are checked
    when the occluder is built (:meth:`Profile.validate`, one rule per field in
    :mod:`faceocc.ops.profile_rules`); unknown fields are refused here.

    Args:
        profile: ``"ms1m"`` (the default, also for ``None``), ``"casia"``, ``"msml_exact"`` (``ms1m``
            with MSML's flip probability 0.6), a path to a YAML file, or a :class:`Profile`.

    Raises:
        ValueError: neither a built-in nor a file, not a YAML mapping, unsafe YAML, a looping ``base:``
            chain, or a field that does not exist; one line naming the file or field.

    Example::

        from faceocc import load_profile

        prof = load_profile("casia")
        print(prof.flip_p, prof.kinds)
        mine = load_profile("my.yaml")      # a file holding e.g. "base: casia" and "flip_p: 0.6"
    """
    if isinstance(profile, Profile):
        return profile
    name = "ms1m" if profile is None else str(profile)
    if not _chain and (BUILTIN / f"{name}.yaml").is_file():
        return copy.deepcopy(_builtin(name))       # a copy: a Profile is mutable, the cached one is shared
    return _load_path(BUILTIN / f"{name}.yaml" if (BUILTIN / f"{name}.yaml").is_file() else Path(name), _chain)


@functools.cache
def _builtin(name: str) -> Profile:
    """A built-in profile, read once per process (per-call users such as ``faceocc.occlude`` name them)."""
    return _load_path(BUILTIN / f"{name}.yaml", ())


def _load_path(path: Path, _chain: tuple[str, ...]) -> Profile:
    """The profile in the YAML file ``path`` on top of its ``base:`` (see :func:`load_profile`)."""
    name = str(path)
    if not (path.exists() or path.is_symlink()):
        raise ValueError(f"profile {short(name)} is neither a built-in (ms1m, casia) nor a YAML file")
    here = str(path.resolve())
    if here in _chain:
        raise ValueError(f"profile {path}: its base: chain comes back to itself ({' -> '.join(_chain + (here,))})")
    data = _read_yaml(path) or {}
    if not isinstance(data, dict):
        raise ValueError(f"profile {path} must be a YAML mapping")
    base = data.pop("base", None if path.parent == BUILTIN else "ms1m")
    if base is not None and not isinstance(base, str):
        raise ValueError(f"profile {path}: base must be a profile name or a YAML path, not {short(base)}")
    if base is not None and not (BUILTIN / f"{base}.yaml").is_file() and (path.parent / base).is_file():
        base = str(path.parent / base)                      # a base file beside the profile
    start = load_profile(base, _chain + (here,)) if base is not None else Profile()
    return _merge(start, data, "")
