"""The apply step's one settings object (ops.settings.ApplySettings): built once from the profile, frozen,
checked with errors that name the field; the profile validated once on the way in."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from faceocc.ops import FaceOccluder, load_profile
from faceocc.ops.settings import ApplySettings


def test_settings_come_from_the_profile_and_the_output_options():
    prof = dataclasses.replace(load_profile("ms1m"), grayscale=True, gray_channels=3, gray_offset_divisor=2.5,
                               normalize=False)
    prof = dataclasses.replace(prof, mask3d=dataclasses.replace(prof.mask3d, threshold=100))
    occ = FaceOccluder(prof, dtype=np.float16)
    assert occ.settings == ApplySettings(grayscale=True, gray_channels=3, gray_offset_divisor=2.5, normalize=False,
                                         mask_threshold=100, dtype=np.float16)
    assert occ.settings.channels == 3 and occ.settings.half and occ.dtype == np.float16
    assert ApplySettings().channels == 3 and ApplySettings(grayscale=True).channels == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        occ.settings.normalize = True


@pytest.mark.parametrize("field, value", [("dtype", np.float64), ("dtype", "int8"), ("gray_channels", 2),
                                          ("gray_channels", True), ("gray_offset_divisor", 0),
                                          ("mask_threshold", 256), ("grayscale", "yes"), ("normalize", 1)])
def test_bad_settings_are_refused_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"^{field} must be .*; got "):
        ApplySettings(**{field: value})


def test_the_profile_is_validated_once(monkeypatch):
    import faceocc.ops.profiles as profiles

    calls = []
    real = profiles.validate_profile
    monkeypatch.setattr(profiles, "validate_profile", lambda *a: calls.append(a) or real(*a))
    FaceOccluder("casia", has_masks=False)
    assert len(calls) == 1
    bad = dataclasses.replace(load_profile("ms1m"), flip_p=2.0)
    with pytest.raises(ValueError, match="flip_p"):
        FaceOccluder(bad)
