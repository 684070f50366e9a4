"""faceocc draws what MSML's code draws: the reference statistics (KS <= 0.05 against
../shared/msml_reference, measured by running MSML's code), and the rasterizing/resampling steps
checked against the libraries MSML calls (OpenCV, Pillow)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from faceocc.ops import FaceOccluder, Kind, load_profile
from faceocc.ops.atlas import OccluderBank
from faceocc.ops.params import empty_params
from faceocc.ops.reference import shape_coverage
from faceocc.ops.web import box_pixels, composite_web

from benchmarks import msml_stats as ms

HAVE_REFERENCE = (ms.REFERENCE / "reference.json").is_file() and ms.OCCLUDERS.is_dir() and ms.FACE.is_file()
needs_reference = pytest.mark.skipif(not HAVE_REFERENCE, reason="../shared/msml_reference or its data is absent")
SAMPLES = 4000          # per kind: an independent run of MSML's code scores <= 0.031 at this size


def _only(kind: str, seed: int = 0) -> tuple[FaceOccluder, np.ndarray]:
    occ = FaceOccluder(dataclasses.replace(load_profile("ms1m"), kinds={kind: 1.0}), seed=seed)
    return occ, occ.sample(1500)


# -- the measuring instrument ----------------------------------------------------------------------

def test_ks_distance_separates_a_shifted_sample_from_its_own_quantiles():
    rng = np.random.default_rng(0)
    probs = np.linspace(0, 1, 101)
    q = np.quantile(rng.normal(size=20000), probs)
    assert ms.ks_distance(rng.normal(size=4000), q, probs) < 0.03
    assert ms.ks_distance(rng.normal(0.2, 1, size=4000), q, probs) > 0.06
    ints = rng.integers(0, 5, 20000).astype(float)         # steps: both sides of a jump are checked
    qi = np.quantile(ints, probs)
    assert ms.ks_distance(rng.integers(0, 5, 4000).astype(float), qi, probs) < 0.03
    assert ms.ks_distance(rng.integers(1, 6, 4000).astype(float), qi, probs) > 0.15


def test_shape_stats_of_known_masks():
    msk = np.ones((2, 112, 112), np.int32)
    msk[0, 10:20, 30:50] = 0
    s = ms.shape_stats(msk)
    assert s["area"][0] == pytest.approx(200 / 112**2) and s["area"][1] == 0
    assert (s["cx"][0], s["cy"][0], s["w"][0], s["h"][0]) == (40.0, 15.0, 20.0, 10.0)
    assert np.isnan(s["w"][1]) and s["empty"] == 0.5


# -- MSML's drawing, checked against the libraries MSML calls --------------------------------------

def test_polygons_are_cv2_fillpoly_of_msml_vertices():
    cv2 = pytest.importorskip("cv2")
    _, t = _only("polygon")
    covered = shape_coverage(t, 112, 112)
    crossing = 0
    for i in range(len(t)):
        m = t["n_vertices"][i]
        pts = np.stack([t["vx"][i, :m], t["vy"][i, :m]], 1).astype(np.int32)
        crossing += pts.min() < 0 or pts.max() > 111             # OpenCV clips these edges first
        img = np.zeros((112, 112), np.uint8)
        cv2.fillPoly(img, pts[None], 255)
        assert np.array_equal(img > 0, covered[i]), f"row {i}: {pts.tolist()}"
    assert crossing > 20


def test_ellipses_match_cv2_ellipse_within_one_percent_of_their_pixels():
    cv2 = pytest.importorskip("cv2")
    _, t = _only("ellipse")
    covered = shape_coverage(t, 112, 112)
    differ = total = 0
    for i, (cx, cy, a, b) in enumerate(t["ellipse"]):
        img = np.zeros((112, 112), np.uint8)
        cv2.ellipse(img, (int(cx), int(cy)), (int(a), int(b)), 0, 0, 360, 255, -1)
        differ += int(((img > 0) != covered[i]).sum())
        total += int((img > 0).sum())
        rows, cols = np.flatnonzero(covered[i].any(1)), np.flatnonzero(covered[i].any(0))
        assert cols.size == min(cx + a, 111) - max(cx - a, 0) + 1       # boundary pixels included
        assert rows.size == min(cy + b, 111) - max(cy - b, 0) + 1
    assert differ < 0.01 * total


def _pillow_two_pass(rgba: np.ndarray, w: int, h: int) -> np.ndarray:
    """Pillow's bicubic resize of RGBA as Pillow <= 12 (MSML pins 8.4) runs it: premultiply, width
    pass, height pass, un-premultiply (Pillow 13 may run the height pass first)."""
    from PIL import Image

    im = Image.fromarray(rgba, "RGBA").convert("RGBa")
    im = im.resize((w, rgba.shape[0]), Image.BICUBIC).resize((w, h), Image.BICUBIC)
    return np.array(im.convert("RGBA"))


def test_web_occluders_are_resized_exactly_as_pillow_resizes_rgba():
    rng = np.random.default_rng(1)
    images = []
    for _ in range(5):
        h, w = rng.integers(20, 100, 2)
        rgba = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        rgba[..., 3] = np.where(rng.random((h, w)) < 0.3, 0, rgba[..., 3])
        images.append(rgba)
    bank = OccluderBank.from_images({"object": images}, "random", layout={})
    for e, rgba in enumerate(images):
        for _ in range(4):                      # up and down on each axis
            w, h = (int(v) for v in rng.integers(10, 120, 2))
            want = _pillow_two_pass(rgba, w, h)
            t = empty_params(1)
            t["box"], t["src"], t["atlas"], t["replace_alpha"] = [0, 0, w, h], [0, 0, *rgba.shape[1::-1]], e, -1
            resized = box_pixels(t[0], bank.atlas)
            rgb = np.zeros((h, w, 3), np.int64)
            composite_web(rgb, resized, -1, 0)
            assert np.array_equal(resized[..., 3], want[..., 3]) and np.array_equal(rgb, want[..., :3])


def test_objects_are_fitted_and_padded_never_cropped():
    from faceocc.ops.atlas import fit_pad

    tall = np.zeros((100, 40, 4), np.uint8)
    tall[..., 3] = 255
    out = fit_pad(tall, 55, 1)
    cols = np.flatnonzero(out[..., 3].any(0))
    assert out.shape == (55, 55, 4) and out[..., 3].any(1).all()       # the whole height kept
    assert cols[0] == (54 - cols.size) // 2 and cols.size == int(40 / (100 / 55))


# -- the statistics ------------------------------------------------------------------------------

@needs_reference
def test_mask3d_record_is_the_reference_one():
    ref = ms.load_reference()
    face = ms.reference_face()
    masked, mask = ms.mask3d_record(face, ref["how"])
    rec = ref["how"]["mask3d_record"]
    assert ms.sha1(face) == ref["how"]["face"]["rgb_sha1"]
    assert ms.sha1(masked) == rec["masked_face_rgb_sha1"] and ms.sha1(mask) == rec["mask_l_sha1"]
    assert int((mask <= 128).sum()) == rec["mask_l_values_le_128"]


@needs_reference
@pytest.mark.parametrize("kind", [*ms.SIX, "mask3d"])
def test_faceocc_matches_msml_statistics(kind):
    ref = ms.load_reference()
    scores = ms.score(ms.faceocc_sampler(reference=ref), SAMPLES, seed=7, kinds=(kind,), reference=ref)
    worst = {name: round(d, 4) for name, d in scores[kind].items() if d > ms.LIMIT}
    assert not worst, f"{kind}: KS above {ms.LIMIT}: {worst}"


@needs_reference
def test_the_msml_style_baseline_matches_msml_statistics():
    ref = ms.load_reference()
    scores = ms.score(ms.baseline_sampler(reference=ref), SAMPLES, seed=7, reference=ref)
    worst = {(kind, name): round(d, 4) for kind, s in scores.items() for name, d in s.items() if d > ms.LIMIT}
    assert not worst, f"KS above {ms.LIMIT}: {worst}"


def test_polygons_of_fewer_than_three_vertices_are_what_cv2_draws():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(4)
    t = empty_params(30)
    t["kind"] = Kind.POLYGON
    t["n_vertices"] = np.arange(30) % 3                  # 0, 1, 2 vertices
    t["vx"] = rng.integers(-20, 130, t["vx"].shape)
    t["vy"] = rng.integers(-20, 130, t["vy"].shape)
    covered = shape_coverage(t, 112, 112)
    for i in range(30):
        m = t["n_vertices"][i]
        img = np.zeros((112, 112), np.uint8)
        if m:
            cv2.fillPoly(img, np.stack([t["vx"][i, :m], t["vy"][i, :m]], 1).astype(np.int32)[None], 1)
        assert np.array_equal(img > 0, covered[i]), i
