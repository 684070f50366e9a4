"""The apply path's contracts: one settings object (ops.settings.ApplySettings, built once from the profile,
frozen, checked with errors that name the field; the profile validated once on the way in), one meaning
of ``m3d_slot`` (the row itself), one row-splitting over threads (ops.host) used by the operator and the
DALI steps."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from faceocc.ops import FaceOccluder, Kind, load_profile
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


def _batch(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    faces = rng.integers(0, 256, (n, 112, 112, 3), dtype=np.uint8)
    masked = rng.integers(0, 256, (n, 112, 112, 3), dtype=np.uint8)
    masks = np.where(rng.random((n, 112, 112)) < 0.4, 0, 255).astype(np.uint8)
    return faces, masked, masks


def test_m3d_slot_is_the_row_itself_and_parts_are_rebased():
    from faceocc.ops.params import batch_rows

    occ = FaceOccluder("ms1m", seed=1)
    t = occ.sample(200, batch=2)
    used = t["kind"] == Kind.MASK3D
    assert used.any() and (t["m3d_slot"] == np.where(used, np.arange(200), -1)).all()
    part = batch_rows(t, 37, 120)
    assert (part["m3d_slot"] == np.where(used[37:120], np.arange(83), -1)).all()
    same = part.copy()
    same["m3d_slot"] = t["m3d_slot"][37:120]
    assert same.tobytes() == t[37:120].tobytes()                 # every other field as it was
    assert (t["m3d_slot"] == np.where(used, np.arange(200), -1)).all()       # a copy: the table is untouched


def test_apply_refuses_other_slots_and_unaligned_renders():
    occ = FaceOccluder("ms1m", seed=1)
    t = occ.sample(64, batch=2)
    faces, masked, masks = _batch(64)
    used = np.flatnonzero(t["m3d_slot"] >= 0)
    with pytest.raises(ValueError, match="aligned with faces"):
        occ.apply(faces, t, masked[:used.size], masks[:used.size])      # one render per 3D-mask row: refused
    bad = t.copy()
    bad["m3d_slot"][used] = np.arange(used.size)
    with pytest.raises(ValueError, match="m3d_slot must be -1 or the row's own index"):
        occ.apply(faces, bad, masked, masks)
    out = occ.apply(faces, t, masked, masks)
    rows = used[:3]
    alone = occ.apply(faces[rows], _rebased(t, rows), masked[rows], masks[rows])
    for name in ("img", "msk"):                                  # each 3D-mask row reads its own render
        assert np.array_equal(out[name][rows], alone[name]), name


def _rebased(t: np.ndarray, rows: np.ndarray) -> np.ndarray:
    sub = t[rows].copy()
    sub["m3d_slot"] = np.arange(len(rows))
    return sub


def test_row_ranges_split_evenly_and_not_below_min_rows():
    from faceocc.ops.host import MIN_ROWS, row_ranges

    assert row_ranges(100, 1) == [(0, 100)]
    assert row_ranges(100, 3) == [(0, 33), (33, 66), (66, 100)]
    assert row_ranges(2 * MIN_ROWS - 1, 8) == [(0, 2 * MIN_ROWS - 1)]
    assert len(row_ranges(4 * MIN_ROWS, 8)) == 4 and row_ranges(0, 4) == [(0, 0)]


@pytest.mark.parametrize("ori", ["clean", "occluded"])
@pytest.mark.parametrize("threads", [1, 3])
def test_parts_on_threads_equal_one_call(ori, threads):
    """FaceOccluder.apply_parts (the DALI steps' path) and a threaded FaceOccluder give apply's outputs,
    MSML's occluded ori included (drawn once per batch, not per part)."""
    from concurrent.futures import ThreadPoolExecutor

    prof = dataclasses.replace(load_profile("ms1m"), ori=ori)
    one = FaceOccluder(prof, seed=4)
    faces, masked, masks = _batch(70, seed=2)
    t = one.sample(70, batch=1)
    want = one.apply(faces, t, masked, masks)
    with ThreadPoolExecutor(threads) as pool:
        parts = one.apply_parts(faces, t, masked, masks, pool=pool, threads=threads)
    assert len(parts) == threads
    threaded = FaceOccluder(prof, seed=4, threads=threads).apply(faces, t, masked, masks)
    for name in want:
        joined = np.concatenate([p[name] for p in parts])
        assert np.array_equal(joined, want[name]) and np.array_equal(threaded[name], want[name]), name


def test_occlusion_step_reads_renders_only_for_3d_mask_rows():
    """The DALI CPU step takes per-sample renders where the rows without a 3D mask carry a 1 x 1 crop
    (as the loader's pipeline gives them) and equals apply on aligned arrays."""
    from faceocc.dali_pipes.pipeline import OcclusionStep
    from faceocc.ops.params import PARAM_DTYPE

    occ = FaceOccluder("ms1m", seed=6)
    faces, masked, masks = _batch(40, seed=3)
    t = occ.sample(40, batch=5)
    used = t["m3d_slot"] >= 0
    params = list(np.ascontiguousarray(t).view(np.uint8).reshape(40, PARAM_DTYPE.itemsize))
    crops = [masked[i] if used[i] else masked[i, :1, :1] for i in range(40)]
    mask_crops = [masks[i][..., None] if used[i] else masks[i, :1, :1, None] for i in range(40)]
    img, msk, ori, kind = OcclusionStep(occ, threads=2)(list(faces), params, crops, mask_crops)
    want = occ.apply(faces, t, masked, masks)
    assert np.array_equal(np.stack(img), want["img"]) and np.array_equal(np.stack(msk), want["msk"])
    assert np.array_equal(np.stack(ori), want["ori"]) and np.stack(kind).ravel().tolist() == want["kind"].tolist()


def test_string_options_are_literals_refused_naming_option_value_and_choices(faces_with_masks):
    """device, last_batch, on_bad_image, ori, landmarks: typed as Literal on the public classes, and any
    other value refused at construction with the option, the value and the allowed values."""
    import typing

    from faceocc.ops.options import Device, OriMode, check_option
    from faceocc.ops.profiles import Profile
    from faceocc.render.renderer import MaskRenderer

    assert typing.get_args(typing.get_type_hints(FaceOccluder.__init__)["device"]) == ("cpu", "gpu")
    assert typing.get_type_hints(Profile)["ori"] == OriMode
    with pytest.raises(ValueError, match=r"^device must be one of 'cpu', 'gpu'; got 'tpu'$"):
        FaceOccluder(device="tpu")
    with pytest.raises(ValueError, match=r"^device must be one of 'cpu', 'gpu'; got 'GPU'$"):
        MaskRenderer(device="GPU")
    with pytest.raises(ValueError, match=r"^landmarks must be one of 'template', 'dlib', 'insightface'; got 'x'$"):
        MaskRenderer(landmarks="x")
    with pytest.raises(ValueError, match=r"^profile field ori .*'clean'.*'occluded'"):
        FaceOccluder(dataclasses.replace(load_profile("ms1m"), ori="second"))
    with pytest.raises(ValueError, match=r"^device must be one of 'cpu', 'gpu'; got 1$"):
        check_option("device", 1, Device)
    pytest.importorskip("nvidia.dali")
    from faceocc import FaceOcclusionLoader

    hints = typing.get_type_hints(FaceOcclusionLoader.__init__)
    assert {k: typing.get_args(hints[k]) for k in ("device", "last_batch", "on_bad_image")} == {
        "device": ("cpu", "gpu"), "last_batch": ("drop", "keep"), "on_bad_image": ("raise", "skip")}
    for option, value, allowed in (("device", "cuda", "'cpu', 'gpu'"), ("last_batch", "partial", "'drop', 'keep'"),
                                   ("on_bad_image", "ignore", "'raise', 'skip'")):
        with pytest.raises(ValueError, match=rf"^{option} must be one of {allowed}; got '{value}'$"):
            FaceOcclusionLoader(faces_with_masks, 4, **{option: value})


def test_docstring_examples_run():
    """The examples of FaceOccluder and ApplySettings (public API) run as written."""
    import doctest
    import warnings

    from faceocc.ops import operator, settings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        finder = doctest.DocTestFinder()
        tests = [t for obj, name in ((operator.FaceOccluder, "FaceOccluder"), (settings.ApplySettings, "ApplySettings"))
                 for t in finder.find(obj, name, globs={"np": np, "ApplySettings": ApplySettings}) if t.examples]
        runner = doctest.DocTestRunner()
        for t in tests:
            runner.run(t)
    assert tests and runner.summarize(verbose=False).failed == 0
    assert len(tests) == 2 and runner.summarize(verbose=False).attempted >= 6
