"""Profile validation: every garbage value is refused at construction, naming the field and its range."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from faceocc.ops import FaceOccluder, load_profile
from faceocc.ops.profile_rules import CROSS_RULES, FIELD_RULES, validate_profile
from faceocc.ops.profiles import Profile


def _leaf_paths(obj, prefix=""):
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from _leaf_paths(value, f"{prefix}{f.name}.")
        else:
            yield prefix + f.name


def test_every_field_has_exactly_one_rule():
    assert sorted(_leaf_paths(Profile())) == sorted(FIELD_RULES)
    assert CROSS_RULES


@pytest.mark.parametrize("name", ["ms1m", "casia", "msml_exact"])
def test_builtin_profiles_pass(name):
    validate_profile(load_profile(name))


# (YAML text, the field the message must name, words of the allowed range it must state)
GARBAGE = [
    ("lighting: {sigma: 0}", "lighting.sigma", "[1, 1e+06]"),
    ("lighting: {sigma: -3}", "lighting.sigma", "[1, 1e+06]"),
    ("lighting: {sigma: '128'}", "lighting.sigma", "a number"),
    ("lighting: {gain: [0, 0]}", "lighting.gain", "[0.05, 4]"),
    ("lighting: {gain: [90, 100]}", "lighting.gain", "[0.05, 4]"),
    ("lighting: {gain: 5}", "lighting.gain", "a pair [lo, hi]"),
    ("lighting: {gain: [1.2, 0.8]}", "lighting.gain", "lo <= hi"),
    ("object: {size: -5}", "object.size", "[1, 112]"),
    ("scarf: {size: 0}", "scarf.size", "[1, 112]"),
    ("scarf: {size: 2000}", "scarf.size", "[1, 112]"),
    ("scarf: {size: 100, scale: [1.0, 1.5]}", "scarf.size", "1 to 112 pixels"),
    ("object: {size: 1, scale: [0.5, 1.0]}", "object.size", "1 to 112 pixels"),
    ("glasses: {size: [0.0, 0.3]}", "glasses.size", "(0, 1]"),
    ("glasses: {size: [0.9, 0.3], scale: [1.0, 1.2]}", "glasses.size", "full 112-pixel image"),
    ("normalize: 'false'", "normalize", "true or false"),
    ("grayscale: 'no'", "grayscale", "true or false"),
    ("grayscale: 1", "grayscale", "true or false"),
    ("glasses: {replace_alpha: 999}", "glasses.replace_alpha", "[0, 255]"),
    ("scarf: {mask_alpha: -1}", "scarf.mask_alpha", "[0, 255]"),
    ("object: {mask_alpha: 12.5}", "object.mask_alpha", "an integer"),
    ("rectangle: {colour: [200, 10]}", "rectangle.colour", "lo <= hi"),
    ("rectangle: {area_percent: [-10, 20]}", "rectangle.area_percent", "[0, 99]"),
    ("mask3d: {noise_std: -5}", "mask3d.noise_std", "[0, 10]"),
    ("mask3d: {light_sigma: 0}", "mask3d.light_sigma", "[1, 100]"),
    ("mask3d: {light_sigma: [0, 10]}", "mask3d.light_sigma", "[1, 100]"),
    ("mask3d: {threshold: 255}", "mask3d.threshold", "[0, 254]"),
    ("mask3d: {left: [40, 20, -20]}", "mask3d.left", "k_lo <= k_hi"),
    ("mask3d: {right: [100, -20, 30]}", "mask3d.right", "[0, 112]"),
    ("mask3d: {left: [40, -20, 50]}", "mask3d.left", "must stay below"),
    ("gray_channels: 2", "gray_channels", "one of 1, 3"),
    ("ori: second", "ori", "'clean', 'occluded'"),
    ("object: {replace_alpha: 300}", "object.replace_alpha", "[0, 255]"),
    ("object: {scale: [-2, -1]}", "object.scale", "(0, 4]"),
    ("polygon: {points: [4.5, 8]}", "polygon.points", "an integer"),
    ("polygon: {radius: [0.001, 0.01]}", "polygon.radius", "1 pixel"),
    ("flip_p: null", "flip_p", "[0, 1]"),
    ("flip_p: [0.5]", "flip_p", "[0, 1]"),
    ("flip_p: 'half'", "flip_p", "[0, 1]"),
    ("flip_p: true", "flip_p", "[0, 1]"),
    ("flip_p: .nan", "flip_p", "[0, 1]"),
    ("lighting: {p: 2}", "lighting.p", "not a probability"),
    ("kinds: {none: '1'}", "kinds", "sum to 1"),
    ("mask3d: {modes: {light: 0.5, noise: 0.5, sparkle: 0}}", "mask3d.modes", "light, noise, block"),
    ("glasses: {x: [0.1, 0.01, 2, -2]}", "glasses.x", "k_lo <= k_hi"),
    ("scarf: {y: [0.6, 0.01, -5.5, 4]}", "scarf.y", "integers"),
    ("mask3d: {source: rendered}", "mask3d.source", "'offline', 'online'"),
    ("mask3d: {render: {textures: 3}}", "mask3d.render.textures", "a folder path"),
    ("mask3d: {render: {top: [0.5, 1.5]}}", "mask3d.render.top", "[0, 1]"),
    ("mask3d: {render: {gain: [0, 1]}}", "mask3d.render.gain", "(0, 4]"),
    ("mask3d: {render: {tint_p: 1.5}}", "mask3d.render.tint_p", "not a probability"),
    ("mask3d: {render: {tint: [1.0, 0.5]}}", "mask3d.render.tint", "lo <= hi"),
    ("mask3d: {render: {light_x: 0.3}}", "mask3d.render.light_x", "a pair [lo, hi]"),
]


@pytest.mark.parametrize("text, field, allowed", GARBAGE)
def test_garbage_is_refused_naming_field_and_range(tmp_path, text, field, allowed):
    path = tmp_path / "bad.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ValueError) as err:
        FaceOccluder(profile=path)
    message = str(err.value)
    assert f" {field} " in f" {message} " or f"field {field} " in message, message
    assert allowed in message, message


def test_python_profiles_are_checked_too():
    bad = dataclasses.replace(load_profile("ms1m"), normalize="false")
    with pytest.raises(ValueError, match="field normalize"):
        FaceOccluder(profile=bad)


def _lit(gain: float, sigma: float) -> np.ndarray:
    profile = dataclasses.replace(load_profile("ms1m"), kinds={"none": 1.0}, flip_p=0.0, normalize=False)
    profile.lighting = dataclasses.replace(profile.lighting, p=1.0, gain=(gain, gain), sigma=sigma)
    occ = FaceOccluder(profile=profile, has_masks=False, size=(32, 32))
    yy, xx = np.mgrid[:32, :32]
    faces = np.repeat(np.dstack([60 + xx * 4, 80 + yy * 3, np.full((32, 32), 120)]).astype(np.uint8)[None], 8, 0)
    out = occ(faces)
    assert (out["msk"] == 1).all()                                 # lighting never marks occlusion
    return out["img"].astype(np.float32)


@pytest.mark.parametrize("gain, sigma", [(0.05, 1.0), (0.05, 1e6), (4.0, 1.0), (4.0, 1e6)])
def test_lighting_at_its_bounds_is_neither_black_nor_white(gain, sigma):
    img = _lit(gain, sigma)
    for sample in img:
        assert sample.max() > 0.5 and sample.min() < 0.99, (gain, sigma)
