"""Invariants of the NumPy twin, the specification of the occlusion operators."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import random_face
from faceocc.ops import FaceOccluder, Kind, load_profile
from faceocc.ops.params import M3D_BLOCK, M3D_LIGHT, M3D_NOISE
from faceocc.ops.reference import hashed_normal, hashed_uniform, mix32


def _faces(n: int, size: int = 112, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([random_face(rng, size) for _ in range(n)])


def _plain(**changes) -> FaceOccluder:
    """No lighting, no flip, no normalization: img equals the canvas / 255."""
    p = load_profile("ms1m")
    p = dataclasses.replace(p, lighting=dataclasses.replace(p.lighting, p=0.0), flip_p=0.0, normalize=False,
                            **changes)
    return FaceOccluder(profile=p, seed=11)


def _masks(n: int, size: int = 112) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(9)
    masked = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    masks = np.full((n, size, size), 255, np.uint8)
    masks[:, size // 2:, size // 5: 4 * size // 5] = 0
    return masked, masks


def _to_hwc(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 2, 3, 1)


def test_output_shapes_and_dtypes():
    occ = FaceOccluder(seed=0)
    faces = _faces(16)
    masked, masks = _masks(16)
    out = occ(faces, masked, masks)
    assert out["img"].shape == out["ori"].shape == (16, 3, 112, 112) and out["img"].dtype == np.float32
    assert out["msk"].shape == (16, 112, 112) and out["msk"].dtype == np.int32
    assert out["kind"].dtype == np.int8 and set(np.unique(out["msk"])) <= {0, 1}
    plain = out["kind"] != Kind.MASK3D      # MSML does not clip the mask offsets (noise: std 2 normalized)
    assert out["img"][plain].min() >= -1 and out["img"][plain].max() <= 1
    bound = 2 * (0.5 + 2 * np.sqrt(3)) + 1e-5   # the hashed normal is bounded at +-2 sqrt(3)
    assert np.abs(out["img"]).max() <= bound and out["ori"].min() >= -1 and out["ori"].max() <= 1
    half = FaceOccluder(seed=0, dtype=np.float16)(faces, masked, masks)
    assert half["img"].dtype == np.float16
    assert np.abs(half["img"].astype(np.float32) - out["img"]).max() < 2e-3


def test_msk_is_zero_exactly_where_pixels_were_replaced():
    occ = _plain()
    faces = _faces(256, seed=1)
    masked, masks = _masks(256)
    table = occ.sample(256, batch=3)
    out = occ.apply(faces, table, masked, masks)
    img = np.rint(_to_hwc(out["img"]) * 255).astype(int)
    changed = np.any(img != faces, axis=-1)
    for kind in (Kind.RECTANGLE, Kind.ELLIPSE, Kind.POLYGON, Kind.SCARF, Kind.OBJECT):
        rows = np.flatnonzero(table["kind"] == kind)
        assert rows.size
        clean = out["msk"][rows] == 1
        assert not changed[rows][clean].any(), f"{kind.name}: a clean pixel changed"
        if kind <= Kind.POLYGON:
            colour = table["colour"][rows].reshape(-1, 1, 1, 3)
            occluded = ~clean
            assert np.all((img[rows] == colour).all(-1)[occluded]), f"{kind.name}: not the fill colour"
    glasses = np.flatnonzero(table["kind"] == Kind.GLASSES)
    assert not changed[glasses][out["msk"][glasses] == 1].any()
    none = np.flatnonzero(table["kind"] == Kind.NONE)
    assert (out["msk"][none] == 1).all() and not changed[none].any()
    assert np.array_equal(out["img"][none], out["ori"][none])


def test_mask3d_rows_carry_the_rendered_mask_and_clean_ori():
    p = load_profile("ms1m")
    p = dataclasses.replace(p, kinds={"mask3d": 1.0})
    occ = FaceOccluder(profile=p, seed=4)
    faces = _faces(32, seed=2)
    masked, masks = _masks(32)
    table = occ.sample(32)
    out = occ.apply(faces, table, masked, masks)
    flip = table["flip"] == 1
    expect = (masks >= 128).astype(np.int32)
    expect[flip] = expect[flip][:, :, ::-1]
    assert np.array_equal(out["msk"], expect)
    ori = _to_hwc(out["ori"]) * 0.5 + 0.5
    clean = faces / 255.0
    clean[flip] = clean[flip][:, :, ::-1]
    assert np.abs(ori - clean).max() < 1e-6
    assert set(table["m3d_mode"]) <= {M3D_LIGHT, M3D_NOISE, M3D_BLOCK}


def test_mask_pixel_augmentation_stays_inside_mask_and_box():
    """Offsets (MSML: after lighting, in [0, 1] units, not clipped) touch only mask pixels inside the
    row's box (block: its own rows); block subtracts exactly +-1."""
    p = load_profile("ms1m")
    p = dataclasses.replace(p, kinds={"mask3d": 1.0}, lighting=dataclasses.replace(p.lighting, p=0.0),
                            flip_p=0.0, normalize=False)
    occ = FaceOccluder(profile=p, seed=5)
    faces = _faces(64, seed=3)
    masked, masks = _masks(64)
    table = occ.sample(64)
    out = occ.apply(faces, table, masked, masks)
    offset = masked / np.float32(255) - _to_hwc(out["img"])
    changed = np.any(np.abs(offset) > 1e-6, axis=-1)
    ys, xs = np.mgrid[:112, :112]
    assert changed.any()
    for i, row in enumerate(table):
        x0, y0, x1, y1 = row["box"]
        if row["m3d_mode"] == M3D_BLOCK:
            y0, y1 = row["m3d_rows"]
        region = (masks[i] <= 128) & (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
        assert not changed[i][~region].any()
        if row["m3d_mode"] == M3D_BLOCK and region.any():
            assert np.allclose(offset[i][region], row["m3d"][0], atol=1e-6) and abs(row["m3d"][0]) == 1
        if row["m3d_mode"] == M3D_LIGHT:
            assert np.abs(offset[i]).max() <= 0.4 + 1e-6
        if row["m3d_mode"] != M3D_BLOCK:
            on = row["m3d_channels"].astype(bool)
            assert not np.abs(offset[i][..., ~on]).max(initial=0) > 1e-6     # untouched channels


def test_flip_mirrors_msk_and_ori_and_the_occlusion():
    """The occluder is drawn in the unflipped frame and mirrored with the face; lighting and the mask3d
    boxes belong to the output frame (MSML flips before them), so only rows without them mirror img."""
    occ = FaceOccluder(seed=2)
    faces = _faces(32, seed=4)
    masked, masks = _masks(32)
    table = occ.sample(32)
    table["flip"] = 0
    straight = occ.apply(faces, table, masked, masks)
    table["flip"] = 1
    flipped = occ.apply(faces, table, masked, masks)
    assert np.allclose(flipped["ori"], straight["ori"][..., ::-1], atol=1e-6)
    assert np.array_equal(flipped["msk"], straight["msk"][..., ::-1])
    table["light"], table["m3d_mode"] = 0, 0
    flipped = occ.apply(faces, table, masked, masks)
    table["flip"] = 0
    straight = occ.apply(faces, table, masked, masks)
    assert np.allclose(flipped["img"], straight["img"][..., ::-1], atol=1e-6)


def test_lighting_peaks_at_one_and_grayscale_has_one_channel():
    p = dataclasses.replace(load_profile("ms1m"), grayscale=True, normalize=False, flip_p=0.0)
    occ = FaceOccluder(profile=p, seed=6, has_masks=False)
    faces = _faces(16, seed=5)
    out = occ(faces)
    assert out["img"].shape == out["ori"].shape == (16, 1, 112, 112)
    assert np.allclose(out["img"].reshape(16, -1).max(axis=1), 1.0)
    from PIL import Image

    luma = np.stack([np.array(Image.fromarray(f).convert("L")) for f in faces])
    assert np.array_equal(np.rint(out["ori"][:, 0] * 255).astype(int), luma)   # Pillow's 'L', as MSML
    three = FaceOccluder(profile=dataclasses.replace(p, gray_channels=3), seed=6, has_masks=False)(faces)
    assert three["img"].shape == (16, 3, 112, 112) and np.array_equal(three["img"][:, 1], out["img"][:, 0])
    p2 = dataclasses.replace(load_profile("ms1m"), normalize=False)
    color = FaceOccluder(profile=p2, seed=6, has_masks=False)(_faces(16, seed=5))["img"]
    assert np.allclose(color.reshape(16, -1).max(axis=1), 1.0)


def test_ori_occluded_is_a_second_independent_draw():
    p = dataclasses.replace(load_profile("ms1m"), ori="occluded")
    occ = FaceOccluder(profile=p, seed=3)
    faces = _faces(64, seed=6)
    masked, masks = _masks(64)
    table = occ.sample(64)
    out = occ.apply(faces, table, masked, masks)
    ori_table = occ.sample_ori(table)
    assert np.array_equal(ori_table, occ.sample_ori(table))                 # a pure function of the table
    assert (ori_table["kind"] != Kind.MASK3D).all() and not ori_table["light"].any()
    assert (ori_table["kind"] != table["kind"]).any()
    clean = FaceOccluder(seed=3).apply(faces, table, masked, masks)
    differs = np.abs(out["ori"] - clean["ori"]).reshape(64, -1).max(axis=1) > 1e-6
    assert np.array_equal(differs, ori_table["kind"] != Kind.NONE)
    assert np.array_equal(out["img"], clean["img"]) and np.array_equal(out["msk"], clean["msk"])


def test_bad_batches_are_refused():
    occ = FaceOccluder(seed=0)
    with pytest.raises(ValueError, match="faces must be"):
        occ(_faces(4, size=96))
    with pytest.raises(ValueError, match="rows"):
        occ.apply(_faces(4), occ.sample(5))
    table = occ.sample(64)
    assert (table["m3d_slot"] >= 0).any()
    with pytest.raises(ValueError, match="3D mask"):
        occ.apply(_faces(64), table)
    with pytest.raises(ValueError, match="device"):
        FaceOccluder(device="tpu")
    web = occ.sample(64, batch=1)
    web = web[np.isin(web["kind"], (Kind.GLASSES, Kind.SCARF, Kind.OBJECT)) & (web["m3d_slot"] < 0)][:1].copy()
    web["src"][0, 0] = occ.bank.cell - web["src"][0, 2] + 1          # one column past the atlas cell
    with pytest.raises(ValueError, match="not inside the atlas cell"):
        occ.apply(_faces(1), web)


def test_any_image_size_works():
    occ = FaceOccluder(size=(96, 80), seed=1, has_masks=False)
    faces = np.zeros((8, 96, 80, 3), np.uint8)
    out = occ(faces)
    assert out["img"].shape == (8, 3, 96, 80)


def test_hash_is_uniform_and_noise_is_standard():
    counter = np.arange(200000, dtype=np.uint32)
    u = hashed_uniform(np.uint32(12345), counter)
    assert u.dtype == np.float32 and u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
    n = hashed_normal(np.uint32(7), counter, 1)
    assert abs(n.mean()) < 0.01 and abs(n.std() - 1) < 0.01
    assert mix32(np.uint32(0)) == 0 and mix32(np.uint32(1)) != mix32(np.uint32(2))


@pytest.mark.parametrize("threads", [2, 3, 5])
def test_threaded_host_apply_equals_one_call(threads):
    """Rows split over threads (each part's 3D-mask slots re-based to its own rows) give the single call's
    result."""
    from concurrent.futures import ThreadPoolExecutor

    from faceocc.ops.host import apply_host

    rng = np.random.default_rng(4)
    occ = FaceOccluder("ms1m", seed=2)
    n = 80
    faces = rng.integers(0, 256, (n, 112, 112, 3), dtype=np.uint8)
    table = occ.sample(n, batch=3)
    m3d = np.flatnonzero(table["m3d_slot"] >= 0)
    assert m3d.size > 0
    masked = rng.integers(0, 256, (n, 112, 112, 3), dtype=np.uint8)
    masks = np.where(rng.random((n, 112, 112)) < 0.3, 0, 255).astype(np.uint8)
    args = (faces, table, occ.bank.atlas, masked, masks)
    want = apply_host(*args, settings=occ.settings)
    with ThreadPoolExecutor(threads) as pool:
        got = apply_host(*args, settings=occ.settings, pool=pool, threads=threads)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])


@pytest.mark.parametrize("grayscale, gray_channels, normalize, dtype",
                         [(False, 1, True, np.float32), (False, 1, False, np.float16), (True, 1, True, np.float32),
                          (True, 3, False, np.float32)])
def test_rows_with_nothing_to_draw_take_the_shortcut_with_the_specs_values(grayscale, gray_channels, normalize,
                                                                          dtype):
    """A batch of rows with no occluder, 3D mask or lighting serves ``img`` = ``ori`` without drawing:
    bit for bit what the specification computes, flips included."""
    from faceocc.ops.host import apply_rows
    from faceocc.ops.params import empty_params
    from faceocc.ops.reference import apply_reference
    from faceocc.ops.settings import ApplySettings

    rng = np.random.default_rng(3)
    faces = rng.integers(0, 256, (6, 24, 20, 3), dtype=np.uint8)
    t = empty_params(6)
    t["flip"] = [0, 1, 1, 0, 1, 0]
    atlas = np.zeros((1, 8, 8, 4), np.uint8)
    args = (faces, t, atlas, None, None)
    settings = ApplySettings(grayscale=grayscale, gray_channels=gray_channels, normalize=normalize, dtype=dtype)
    got = apply_rows(*args, settings=settings)
    want = apply_reference(*args, settings=settings)
    for key in want:
        assert got[key].dtype == want[key].dtype and np.array_equal(got[key], want[key]), key
    t["light"][2] = 1                      # one lit row: no shortcut, the specification itself
    t["light_params"][2] = [10, 10, 1.0, 128]
    assert np.array_equal(apply_rows(*args, settings=settings)["img"],
                          apply_reference(*args, settings=settings)["img"])
