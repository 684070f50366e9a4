"""Profiles, the occluder bank and the sampler: MSML's numbers, and clear errors at construction."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_data
from faceocc.ops import FaceOccluder, Kind, load_profile
from faceocc.ops.atlas import OccluderBank, default_bank
from faceocc.ops.sampler import BatchTables, Sampler
from scipy import stats


@pytest.fixture(scope="module")
def bank() -> OccluderBank:
    return default_bank()


def test_builtin_profiles_reproduce_msml_mix():
    ms1m = load_profile("ms1m").kind_probabilities()
    assert ms1m[Kind.MASK3D] == pytest.approx(0.2)
    assert all(p == pytest.approx(0.8 / 7) for p in ms1m[:7])
    casia = load_profile("casia").kind_probabilities()
    assert casia[Kind.NONE] == pytest.approx(0.4) and casia[Kind.MASK3D] == pytest.approx(0.2)
    assert all(p == pytest.approx(0.4 / 6) for p in casia[1:7])
    assert load_profile("msml_exact").flip_p == 0.6 and load_profile("ms1m").flip_p == 0.5


def test_yaml_profile_overrides_on_a_base(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("base: casia\nflip_p: 0.3\nrectangle:\n  area_percent: [5, 20]\n")
    p = load_profile(path)
    assert p.flip_p == 0.3 and p.rectangle.area_percent == (5, 20)
    assert p.kind_probabilities()[Kind.NONE] == pytest.approx(0.4)


@pytest.mark.parametrize("text, message", [
    ("kinds: {none: 0.5, rectangle: 0.4}", "sum to 1"),
    ("kinds: {none: 0.5, teapot: 0.5}", "unknown kinds"),
    ("rectangle: {area_percent: [10, 140]}", "rectangle.area_percent"),
    ("glasses: {x: [0.9, 0.05, 0, 5]}", "outside the image"),
    ("ellipse: {min_semi_axis: 60}", "no room"),
    ("flip_p: 1.5", "not a probability"),
    ("colour_jitter: 2", "unknown profile field"),
])
def test_bad_profiles_fail_at_construction(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        FaceOccluder(profile=path)


def test_unknown_profile_name():
    with pytest.raises(ValueError, match="neither a built-in"):
        load_profile("imagenet")


def test_mask3d_share_redistributed_with_warning():
    with pytest.warns(UserWarning, match="mask3d share"):
        p = load_profile("casia").without_mask3d()
    probs = p.kind_probabilities()
    assert probs[Kind.MASK3D] == 0 and sum(probs) == pytest.approx(1)
    assert probs[Kind.NONE] == pytest.approx(0.5) and probs[Kind.RECTANGLE] == pytest.approx(0.5 / 6)


def test_builtin_bank_has_every_group(bank):
    assert {g: bank.count(g) > 0 for g in ("glasses", "eyeglasses", "scarf", "object")} == dict.fromkeys(
        ("glasses", "eyeglasses", "scarf", "object"), True)
    assert bank.atlas.dtype == np.uint8 and bank.atlas.shape[1:] == (128, 128, 4)
    assert np.all(bank.atlas[..., :3] <= bank.atlas[..., 3:4])  # premultiplied


def test_msml_occluder_folder_loads():
    root = shared_data("occluders")
    if root is None:
        pytest.skip("../shared/data/occluders not present")
    bank = OccluderBank.from_folder(root)
    assert bank.count("glasses") == 106 and bank.count("eyeglasses") == 23
    assert bank.count("scarf") == 28 and bank.count("object") == 21


def test_images_without_alpha_get_their_background_keyed_out(tmp_path):
    from PIL import Image

    (tmp_path / "scarf_crop").mkdir()
    img = np.full((40, 60, 3), 255, np.uint8)
    img[10:30, 15:45] = (200, 30, 30)
    Image.fromarray(img).save(tmp_path / "scarf_crop" / "red.jpg", quality=95)
    bank = OccluderBank.from_folder(tmp_path)
    assert tuple(bank.sizes[0]) == (90, 90)  # the whole image resized, as MSML prepares scarves
    alpha = bank.atlas[0, :90, :90, 3]
    assert alpha[0, 0] == 0 and alpha[45, 45] == 255  # background keyed out, the object kept


def test_folder_without_usable_images_is_refused(tmp_path):
    (tmp_path / "glasses_crop").mkdir()
    (tmp_path / "glasses_crop" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="no usable occluder"):
        FaceOccluder(occluders=tmp_path)
    with pytest.raises(ValueError, match="not found"):
        FaceOccluder(occluders=tmp_path / "nope")


def test_profile_needing_a_missing_group_is_refused(tmp_path):
    from PIL import Image

    (tmp_path / "glasses_crop").mkdir()
    rgba = np.zeros((20, 40, 4), np.uint8)
    rgba[5:15, 5:35] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "glasses_crop" / "g.png")
    with pytest.raises(ValueError, match="no scarf images"):
        FaceOccluder(occluders=tmp_path)


def test_same_seed_same_table_other_shard_or_epoch_differs(bank):
    s = Sampler(load_profile("ms1m"), bank)
    a = BatchTables(s, 3)(64, 0, 0, 5)
    assert a.tobytes() == BatchTables(s, 3)(64, 0, 0, 5).tobytes()
    for seed, shard, epoch, batch in ((3, 1, 0, 5), (3, 0, 1, 5), (3, 0, 0, 6), (4, 0, 0, 5)):
        assert a.tobytes() != BatchTables(s, seed)(64, shard, epoch, batch).tobytes()


def test_small_batches_are_drawn_alone_large_ones_in_chunks(bank, monkeypatch):
    """A per-sample caller (one face, a new seed each call) draws one row, not a 4096-row chunk; the
    loader's batches of 64 share one draw per chunk. Either way a batch is its own pure function."""
    from faceocc.ops.sampler import CHUNK_ROWS, CHUNKED_FROM

    s = Sampler(load_profile("ms1m"), bank)
    drawn = []
    real = s.sample
    monkeypatch.setattr(s, "sample", lambda n, rng: drawn.append(n) or real(n, rng))
    one = BatchTables(s, 9)(1)
    assert drawn == [1] and one.tobytes() == real(1, np.random.default_rng([9, 0, 0, 0, 1])).tobytes()
    drawn.clear()
    tables = BatchTables(s, 9)
    rows = [tables(64, 0, 0, b) for b in range(3)]
    assert drawn == [CHUNK_ROWS // 64 * 64]
    assert rows[1].tobytes() == BatchTables(s, 9)(64, 0, 0, 1).tobytes()
    drawn.clear()
    BatchTables(s, 9)(CHUNKED_FROM - 1)
    assert drawn == [CHUNKED_FROM - 1]


def test_a_built_in_profile_is_read_once_and_handed_out_as_a_copy():
    a = load_profile("casia")
    a.flip_p = 0.123
    a.kinds["none"] = 0.0
    b = load_profile("casia")
    assert b.flip_p != 0.123 and b.kinds["none"] > 0 and b is not a


def test_kind_frequencies_match_the_profile(bank):
    for name in ("ms1m", "casia"):
        profile = load_profile(name)
        table = Sampler(profile, bank).sample(20000, np.random.default_rng([0, 0, 0, 0]))
        observed = np.bincount(table["kind"], minlength=8)
        expected = np.asarray(profile.kind_probabilities()) * 20000
        assert stats.chisquare(observed, expected).pvalue > 0.001


def test_rectangles_follow_msml(bank):
    t = Sampler(load_profile("ms1m"), bank).sample(20000, np.random.default_rng([1, 0, 0, 0]))
    r = t[t["kind"] == Kind.RECTANGLE]
    x0, y0, x1, y1 = r["box"].T
    width, height = x1 - x0, y1 - y0
    assert x0.min() >= 0 and y0.min() >= 0 and x1.max() <= 112 and y1.max() <= 112
    area = width * height / (112 * 112)
    assert area.max() <= 0.35 + 1e-9 and area.min() >= 0
    assert width.min() >= 1 and (area > 0.3).any() and (area < 0.02).any()
    assert set(np.unique(r["colour"])) <= set(range(256))


def test_shapes_and_web_placements_follow_msml(bank):
    t = Sampler(load_profile("ms1m"), bank).sample(30000, np.random.default_rng([2, 0, 0, 0]))
    e = t[t["kind"] == Kind.ELLIPSE]["ellipse"]
    assert e[:, 0].min() == 22 and e[:, 0].max() == 88 and e[:, 1].min() == 22 and e[:, 1].max() == 88
    assert e[:, 3].min() == 20 and np.all(e[:, 3] < np.minimum(e[:, 1], 112 - e[:, 1]))
    ratio = 3.14 * e[:, 2] * e[:, 3] / 112**2                      # a = int(H W r / (3.14 b))
    assert ratio.max() <= 0.4 and ratio.min() >= 0.2 - 3.14 * e[:, 3].max() / 112**2
    p = t[t["kind"] == Kind.POLYGON]
    assert p["n_vertices"].min() == 5 and p["n_vertices"].max() <= 21   # n + 1 outer, up to n inner
    first = p["vx"][:, 0] - p["vx"][:, 1:].max(axis=1)
    assert (first >= -1).mean() > 0.9                                   # start angle 0: (cx + R, cy)
    g = t[t["kind"] == Kind.GLASSES]["box"]
    assert set(np.unique(g[:, 0])) <= {int((0.12 + 0.02 * k) * 112) for k in range(-5, 6)}
    assert set(np.unique(g[:, 1])) <= {int((0.30 + 0.01 * k) * 112) for k in range(-5, 6)}
    gw, gh = g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]
    assert (gw.min(), gw.max(), gh.min(), gh.max()) == (67, 82, 33, 41)     # truncated, not rounded
    s = t[t["kind"] == Kind.SCARF]["box"]
    sw = s[:, 2] - s[:, 0]
    assert (sw.min(), sw.max()) == (81, 89)
    o = t[t["kind"] == Kind.OBJECT]
    ow = o["box"][:, 2] - o["box"][:, 0]
    assert ow.min() == 55 and ow.max() == 109 and np.all(o["src"][:, 2:] == 55)   # the whole 55 x 55 square
    m = t[t["kind"] == Kind.MASK3D]
    assert t["m3d_slot"][t["kind"] == Kind.MASK3D].tolist() == np.flatnonzero(t["kind"] == Kind.MASK3D).tolist()
    assert (t["m3d_slot"][t["kind"] != Kind.MASK3D] == -1).all()
    modes = np.bincount(m["m3d_mode"], minlength=4)[1:] / len(m)
    assert modes == pytest.approx([4 / 11, 2 / 11, 5 / 11], abs=0.03)
    box = m["box"]
    assert (box[:, 0].min(), box[:, 0].max(), box[:, 2].min(), box[:, 2].max()) == (20, 60, 80, 110)
    assert set(box[:, 1]) == {1} and set(box[:, 3]) == {111}
    rows = m["m3d_rows"]
    assert (rows[:, 0].min(), rows[:, 0].max(), rows[:, 1].min(), rows[:, 1].max()) == (20, 59, 80, 109)
    light = m[m["m3d_mode"] == 1]["m3d"]
    assert light[:, 2].min() >= 73 and light[:, 2].max() < 165 and set(np.abs(light[:, 3])) == {np.float32(0.4)}
    chosen = m[m["m3d_mode"] != 3]["m3d_channels"]
    assert chosen.mean() == pytest.approx(0.5, abs=0.03) and (m[m["m3d_mode"] == 3]["m3d_channels"] == 1).all()
