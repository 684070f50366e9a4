"""How close an augmentation is to MSML's: the statistics of ``../shared/msml_reference`` computed
from faceocc (or the MSML-style baseline) and compared with the reference by KS distance.

The definitions follow ``msml_reference/README.md``: per kind the occluded area and the occluded
box's centre and size (six kinds, unflipped frames), and for mask3d the mean/std over the mask and
clean pixels and the share of mask values the pixel augmentation changes. The distance of a
statistic is the largest gap between the sample's empirical CDF and the reference CDF drawn by
straight lines through the fine quantiles (``q_fine``), checked on both sides of every sample value
and quantile; ``empty`` is the gap between empty shares.

    python -m benchmarks.msml_stats [--n 4000] [--baseline] [--kinds polygon,object]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "msml_reference"
OCCLUDERS = Path(__file__).resolve().parents[2] / "shared" / "data" / "occluders"
FACE = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces" / "375_face.jpg"
SIX = ("rectangle", "ellipse", "polygon", "glasses", "scarf", "object")
SHAPE_STATS = ("area", "cx", "cy", "w", "h")
MASK3D_STATS = ("mask_mean", "mask_std", "clean_mean", "clean_std", "mask_changed", "mask_changed_px")
LIMIT = 0.05


def load_reference(root: str | os.PathLike = REFERENCE) -> dict:
    """reference.json of an MSML reference folder."""
    return json.loads((Path(root) / "reference.json").read_text())


def reference_face(path: str | os.PathLike = FACE, size: int = 112) -> np.ndarray:
    """MSML's sample face as uint8 RGB [H, W, 3], loaded the way the reference run loaded it."""
    from PIL import Image

    with Image.open(path) as im:
        return np.array(im.convert("RGB").resize((size, size)))


def mask3d_record(face: np.ndarray, how: dict) -> tuple[np.ndarray, np.ndarray]:
    """The reference's mask3d record pair, rebuilt: (masked face RGB [H, W, 3], mask 'L' [H, W])."""
    import cv2
    from PIL import Image

    rec = how["mask3d_record"]
    (r0, r1), (c0, c1) = rec["region_rows_inclusive"], rec["region_cols_inclusive"]
    quality = [cv2.IMWRITE_JPEG_QUALITY, int(rec["jpeg_quality"])]
    painted = face.copy()
    painted[r0:r1 + 1, c0:c1 + 1] = rec["paint_rgb"]
    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(painted, cv2.COLOR_RGB2BGR), quality)
    masked = cv2.cvtColor(cv2.imdecode(jpg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    mask = np.full(face.shape[:2], 255, np.uint8)
    mask[r0:r1 + 1, c0:c1 + 1] = 0
    ok, jpg = cv2.imencode(".jpg", mask, quality)
    decoded = cv2.cvtColor(cv2.imdecode(jpg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return masked, np.array(Image.fromarray(decoded).convert("L"))


def sha1(a: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest()


# -- statistics -------------------------------------------------------------------------------------

def shape_stats(msk: np.ndarray) -> dict[str, np.ndarray | float]:
    """Per-sample area, cx, cy, w, h (NaN for empty masks) and the empty share, from ``msk``
    [N, H, W] (1 clean, 0 occluded)."""
    occluded = np.asarray(msk) == 0
    n, h, w = occluded.shape
    rows, cols = occluded.any(axis=2), occluded.any(axis=1)
    empty = ~rows.any(axis=1)
    ymin, ymax = rows.argmax(axis=1), h - 1 - rows[:, ::-1].argmax(axis=1)
    xmin, xmax = cols.argmax(axis=1), w - 1 - cols[:, ::-1].argmax(axis=1)

    def defined(v: np.ndarray) -> np.ndarray:
        return np.where(empty, np.nan, v.astype(np.float64))

    return {"area": occluded.reshape(n, -1).mean(axis=1), "cx": defined((xmin + xmax + 1) / 2),
            "cy": defined((ymin + ymax + 1) / 2), "w": defined(xmax - xmin + 1), "h": defined(ymax - ymin + 1),
            "empty": float(empty.mean())}


def mask3d_stats(img: np.ndarray, img_noaug: np.ndarray, msk: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample mask3d statistics from normalized ``img`` and ``img_noaug`` [N, C, H, W] (C = 3 or
    1) and ``msk`` [N, H, W]."""
    img, ref = np.asarray(img, np.float64), np.asarray(img_noaug, np.float64)
    m = (np.asarray(msk) == 0)[:, None]
    c = ~m
    ch = img.shape[1]

    def mean_std(where: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        count = where.sum(axis=(1, 2, 3)) * ch
        mean = (img * where).sum(axis=(1, 2, 3)) / count
        var = (((img - mean[:, None, None, None]) ** 2) * where).sum(axis=(1, 2, 3)) / count
        return mean, np.sqrt(var)

    changed = np.abs(img - ref) > 0.1
    mm, ms = mean_std(m)
    cm, cs = mean_std(c)
    pixels = m[:, 0].sum(axis=(1, 2))
    return {"mask_mean": mm, "mask_std": ms, "clean_mean": cm, "clean_std": cs,
            "mask_changed": (changed & m).sum(axis=(1, 2, 3)) / (pixels * ch),
            "mask_changed_px": (changed.any(axis=1) & m[:, 0]).sum(axis=(1, 2)) / pixels}


def _reference_cdf(q: np.ndarray, p: np.ndarray, x: np.ndarray, right: bool) -> np.ndarray:
    """The reference CDF through (q, p) at ``x``: its right limit (``right``) or left limit."""
    if right:
        k = np.searchsorted(q, x, side="right") - 1
        lo, hi = k, k + 1
        below, above = k < 0, k >= len(q) - 1
    else:
        k = np.searchsorted(q, x, side="left")
        lo, hi = k - 1, k
        below, above = k == 0, k >= len(q)
    lo_c, hi_c = np.clip(lo, 0, len(q) - 1), np.clip(hi, 0, len(q) - 1)
    span = q[hi_c] - q[lo_c]
    t = np.where(span > 0, (x - q[lo_c]) / np.where(span > 0, span, 1), 1.0)
    value = p[lo_c] + (p[hi_c] - p[lo_c]) * t
    return np.where(below, 0.0, np.where(above, 1.0, value))


def ks_distance(samples: np.ndarray, q: list[float], p: list[float]) -> float:
    """KS distance between the finite ``samples`` and the piecewise-linear CDF through (q, p)."""
    s = np.sort(np.asarray(samples, np.float64)[np.isfinite(samples)])
    q, p = np.asarray(q, np.float64), np.asarray(p, np.float64)
    if s.size == 0:
        return 1.0
    x = np.unique(np.concatenate([s, q]))
    gaps = []
    for right in (True, False):
        empirical = np.searchsorted(s, x, side="right" if right else "left") / s.size
        gaps.append(np.abs(empirical - _reference_cdf(q, p, x, right)).max())
    return float(max(gaps))


def compare(kind: str, stats: dict, reference: dict) -> dict[str, float]:
    """KS distance of every statistic of one kind (and ``empty`` for the six kinds)."""
    ref = reference["kinds"][kind]
    probs = reference["probs_fine"]
    out = {name: ks_distance(stats[name], ref["stats"][name]["q_fine"], probs) for name in ref["stats"]}
    if "empty_share" in ref:
        out["empty"] = abs(float(stats["empty"]) - float(ref["empty_share"]))
    return out


# -- what is measured -------------------------------------------------------------------------------

Sampler = Callable[[str, int, int], dict]


def faceocc_sampler(occluders: str | os.PathLike = OCCLUDERS, reference: dict | None = None,
                    batch: int = 500) -> Sampler:
    """``fn(kind, n, seed) -> statistics`` of faceocc's NumPy twin on the reference face, one kind at a
    time (a profile with only that kind and flip_p 0)."""
    from faceocc.ops import FaceOccluder, load_profile
    from faceocc.ops.atlas import default_bank

    reference = reference or load_reference()
    face = reference_face()
    masked, mask = mask3d_record(face, reference["how"])
    bank = default_bank(occluders)

    def run(kind: str, n: int, seed: int) -> dict:
        profile = dataclasses.replace(load_profile("ms1m"), kinds={kind: 1.0}, flip_p=0.0)
        occ = FaceOccluder(profile, bank, seed=seed)
        parts = []
        for b in range(0, n, batch):
            m = min(batch, n - b)
            faces = np.repeat(face[None], m, axis=0)
            table = occ.sample(m, batch=b // batch)
            if kind != "mask3d":
                parts.append({"msk": occ.apply(faces, table)["msk"]})
                continue
            many, masks = np.repeat(masked[None], m, axis=0), np.repeat(mask[None], m, axis=0)
            out = occ.apply(faces, table, many, masks)
            bare = table.copy()
            bare["m3d_mode"] = 0
            plain = occ.apply(faces, bare, many, masks)
            parts.append(mask3d_stats(out["img"], plain["img"], out["msk"]))
        if kind != "mask3d":
            return shape_stats(np.concatenate([p["msk"] for p in parts]))
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    return run


def baseline_sampler(occluders: str | os.PathLike = OCCLUDERS, reference: dict | None = None) -> Sampler:
    """``fn(kind, n, seed) -> statistics`` of the MSML-style DataLoader baseline on the reference face."""
    from benchmarks.msml_baseline import MsmlAugment

    reference = reference or load_reference()
    face = reference_face()
    masked, mask = mask3d_record(face, reference["how"])

    def run(kind: str, n: int, seed: int) -> dict:
        aug = MsmlAugment(occluders=occluders, seed=seed, flip_p=0.0)
        if kind != "mask3d":
            return shape_stats(np.stack([aug.occlude(face, kind)[1] for _ in range(n)]))
        rows = [aug.mask3d_pair(masked, mask) for _ in range(n)]
        img, plain, msk = (np.stack([r[i] for r in rows]) for i in range(3))
        return mask3d_stats(img, plain, msk)

    return run


def score(sampler: Sampler, n: int, seed: int = 0, kinds: tuple[str, ...] = (*SIX, "mask3d"),
          reference: dict | None = None) -> dict[str, dict[str, float]]:
    """KS distance per kind and statistic for ``n`` samples of each kind."""
    reference = reference or load_reference()
    return {kind: compare(kind, sampler(kind, n, seed + i), reference) for i, kind in enumerate(kinds)}


def table(scores: dict[str, dict[str, float]]) -> str:
    """The scores as a fixed-width table, worst first per kind, with a FAIL mark above ``LIMIT``."""
    lines = [f"{'kind':10s} {'statistic':16s} {'KS':>7s}"]
    for kind, stats in scores.items():
        for name, d in stats.items():
            lines.append(f"{kind:10s} {name:16s} {d:7.4f}{'  FAIL' if d > LIMIT else ''}")
    worst = max(d for s in scores.values() for d in s.values())
    lines.append(f"worst {worst:.4f} (limit {LIMIT})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4000, help="samples per kind")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kinds", default=",".join((*SIX, "mask3d")))
    ap.add_argument("--baseline", action="store_true", help="the MSML-style baseline instead of faceocc")
    ap.add_argument("--occluders", default=str(OCCLUDERS))
    ap.add_argument("--reference", default=str(REFERENCE))
    a = ap.parse_args(argv)
    reference = load_reference(a.reference)
    make = baseline_sampler if a.baseline else faceocc_sampler
    scores = score(make(a.occluders, reference), a.n, a.seed, tuple(a.kinds.split(",")), reference)
    print(table(scores))
    return int(max(d for s in scores.values() for d in s.values()) > LIMIT)


if __name__ == "__main__":
    raise SystemExit(main())
