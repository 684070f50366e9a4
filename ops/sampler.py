"""Host-side sampling: a NumPy Generator, seeded by (seed, shard, epoch, batch), fills the parameter table.

All randomness of the augmentation lives here; the apply step (kernel or twin) is deterministic
given the table. The distributions are MSML's, with every number taken from the profile.
"""

from __future__ import annotations

import math

import numpy as np

from .atlas import OccluderBank
from .kinds import Kind
from .params import M3D_BLOCK, M3D_LIGHT, M3D_NOISE, MAX_VERTICES, SUB, empty_params
from .profiles import Profile


def batch_rng(seed: int, shard: int = 0, epoch: int = 0, batch: int = 0) -> np.random.Generator:
    """The generator of one batch: independent streams for every (seed, shard, epoch, batch)."""
    return np.random.default_rng([int(seed), int(shard), int(epoch), int(batch)])


def _sub(v: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(v) * SUB).astype(np.int32)


def _add_vertex(vx: np.ndarray, vy: np.ndarray, count: np.ndarray, on: np.ndarray, x: np.ndarray,
                y: np.ndarray) -> None:
    rows = np.flatnonzero(on)
    vx[rows, count[rows]] = x[rows]
    vy[rows, count[rows]] = y[rows]
    count[rows] += 1


class Sampler:
    """Draws parameter tables for batches of ``size = (H, W)`` faces under a validated profile."""

    def __init__(self, profile: Profile, bank: OccluderBank, size: tuple[int, int] = (112, 112)) -> None:
        self.profile = profile.validate(size)
        self.bank = bank
        self.size = size
        need = {Kind.GLASSES: ("glasses", "eyeglasses"), Kind.SCARF: ("scarf",), Kind.OBJECT: ("object",)}
        probs = profile.kind_probabilities()
        for kind, groups in need.items():
            if probs[kind] > 0 and not any(bank.count(g) for g in groups):
                raise ValueError(f"the profile draws {kind.name.lower()} with p = {probs[kind]:.3f} but "
                                 f"the occluder bank ({bank.source}) has no {'/'.join(groups)} images")

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """A parameter table of ``n`` rows (see ``ops.params.PARAM_FIELDS``)."""
        p = self.profile
        h, w = self.size
        t = empty_params(n)
        t["kind"] = rng.choice(len(Kind), size=n, p=np.asarray(p.kind_probabilities()) /
                               sum(p.kind_probabilities()))
        t["flip"] = rng.random(n) < p.flip_p
        t["noise_seed"] = rng.integers(0, 2**32, size=n, dtype=np.uint32)
        lit = rng.random(n) < p.lighting.p
        t["light"] = lit
        t["light_params"] = np.stack([rng.uniform(0, w, n), rng.uniform(0, h, n),
                                      rng.uniform(*p.lighting.gain, n),
                                      np.full(n, p.lighting.sigma * w / 112)], axis=1) * lit[:, None]
        for kind, fill in [(Kind.RECTANGLE, self._rectangles), (Kind.ELLIPSE, self._ellipses),
                           (Kind.POLYGON, self._polygons), (Kind.GLASSES, self._glasses),
                           (Kind.SCARF, self._scarves), (Kind.OBJECT, self._objects),
                           (Kind.MASK3D, self._mask3d)]:
            rows = np.flatnonzero(t["kind"] == kind)
            if rows.size:
                t[rows] = fill(t[rows], rng)
        return t

    # -- geometric shapes -------------------------------------------------------------------------

    def _rectangles(self, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = self.size
        r = self.profile.rectangle
        n = t.size
        ratio = rng.integers(r.area_percent[0], r.area_percent[1] + 1, n) / 100
        width = rng.integers((w * ratio).astype(int) + 1, w + 1)
        height = np.minimum((w * h * ratio / width).astype(int), h)
        x0 = rng.integers(0, w - width + 1)
        y0 = rng.integers(0, h - height + 1)
        t["box"] = np.stack([x0, y0, x0 + width, y0 + height], axis=1)
        t["colour"] = rng.integers(r.colour[0], r.colour[1] + 1, (n, 3))
        return t

    def _ellipses(self, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = self.size
        e = self.profile.ellipse
        n = t.size
        cy = rng.uniform(e.centre[0] * h, e.centre[1] * h, n)
        cx = rng.uniform(e.centre[0] * w, e.centre[1] * w, n)
        a_h = rng.uniform(e.min_semi_axis * h / 112, np.minimum(cy, h - cy))
        a_w = w * h * rng.uniform(*e.area_ratio, n) / (math.pi * a_h)
        t["ellipse"] = np.stack([_sub(cx), _sub(cy), _sub(a_w), _sub(a_h)], axis=1)
        t["colour"] = rng.integers(e.colour[0], e.colour[1] + 1, (n, 3))
        return t

    def _polygons(self, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = self.size
        g = self.profile.polygon
        n = t.size
        points = rng.integers(g.points[0], g.points[1] + 1, n)
        radius = rng.uniform(g.radius[0] * h, g.radius[1] * h, n)
        cx = rng.uniform(g.centre[0] * w, g.centre[1] * w, n)
        cy = rng.uniform(g.centre[0] * h, g.centre[1] * h, n)
        angle = rng.uniform(0, 2 * math.pi, n)
        step = 2 * math.pi / points
        vx = np.zeros((n, MAX_VERTICES))
        vy = np.zeros((n, MAX_VERTICES))
        count = np.zeros(n, int)
        for i in range(g.points[1]):
            active = i < points
            outer_step = step * rng.uniform(*g.outer_step, n)
            angle = angle + np.where(active & (i > 0), outer_step, 0.0)
            _add_vertex(vx, vy, count, active, cx + radius * np.cos(angle), cy + radius * np.sin(angle))
            inner = active & (rng.random(n) < g.inner_p)
            theta = angle + step / 2 * rng.uniform(*g.inner_step, n)
            r = radius / rng.uniform(*g.inner_divisor, n)
            _add_vertex(vx, vy, count, inner, cx + r * np.cos(theta), cy + r * np.sin(theta))
        t["n_vertices"] = count
        t["vx"], t["vy"] = _sub(vx), _sub(vy)
        t["colour"] = rng.integers(g.colour[0], g.colour[1] + 1, (n, 3))
        return t

    # -- web occluders ----------------------------------------------------------------------------

    def _pick(self, group: str, n: int, rng: np.random.Generator) -> np.ndarray:
        members = self.bank.groups[group]
        return members[rng.integers(0, members.size, n)]

    def _place(self, t: np.ndarray, entries: np.ndarray, width: np.ndarray, height: np.ndarray,
               x0: np.ndarray, y0: np.ndarray) -> None:
        t["atlas"] = entries
        sh, sw = self.bank.sizes[entries].T
        t["src"] = np.stack([np.zeros_like(sw), np.zeros_like(sh), sw, sh], axis=1)
        t["box"] = np.stack([x0, y0, x0 + np.maximum(width, 1), y0 + np.maximum(height, 1)], axis=1)

    def _glasses(self, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = self.size
        g = self.profile.glasses
        n = t.size
        have = [grp for grp in ("glasses", "eyeglasses") if self.bank.count(grp)]
        use_eye = rng.random(n) < g.eyeglasses_p if len(have) == 2 else np.full(n, have == ["eyeglasses"])
        entries = np.where(use_eye, self._pick(have[-1], n, rng), self._pick(have[0], n, rng))
        width = np.rint(g.size[0] * w * rng.uniform(*g.scale, n)).astype(int)
        height = np.rint(g.size[1] * h * rng.uniform(*g.scale, n)).astype(int)
        x0 = ((g.x[0] + g.x[1] * rng.integers(g.x[2], g.x[3] + 1, n)) * w).astype(int)
        y0 = ((g.y[0] + g.y[1] * rng.integers(g.y[2], g.y[3] + 1, n)) * h).astype(int)
        self._place(t, entries, width, height, x0, y0)
        t["blend"], t["replace_alpha"], t["mask_alpha"] = 0, g.replace_alpha, g.mask_alpha
        return t

    def _scarves(self, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = self.size
        s = self.profile.scarf
        n = t.size
        side = s.size * w / 112
        width = (side * rng.uniform(*s.scale, n)).astype(int)
        height = (side * rng.uniform(*s.scale, n)).astype(int)
        x0 = ((s.x[0] + s.x[1] * rng.integers(s.x[2], s.x[3] + 1, n)) * w).astype(int)
        y0 = ((s.y[0] + s.y[1] * rng.integers(s.y[2], s.y[3] + 1, n)) * w).astype(int)
        self._place(t, self._pick("scarf", n, rng), width, height, x0, y0)
        t["blend"], t["mask_alpha"] = 1, s.mask_alpha
        return t

    def _objects(self, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = self.size
        o = self.profile.object
        n = t.size
        entries = self._pick("object", n, rng)
        side = o.size * w / 112
        width = (side * rng.uniform(*o.scale, n)).astype(int)
        height = (side * rng.uniform(*o.scale, n)).astype(int)
        lo, hi = o.position_percent
        x0 = (rng.integers(lo, hi + 1, n) / 100 * w).astype(int)
        y0 = (rng.integers(lo, hi + 1, n) / 100 * h).astype(int)
        self._place(t, entries, width, height, x0, y0)
        eh, ew = self.bank.sizes[entries].T
        crop = np.minimum(eh, ew)                       # centre-cropped square, aspect kept
        t["src"] = np.stack([(ew - crop) // 2, (eh - crop) // 2, crop, crop], axis=1)
        t["blend"], t["mask_alpha"] = 1, o.mask_alpha
        return t

    # -- offline 3D masks -------------------------------------------------------------------------

    def _mask3d(self, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = self.size
        m = self.profile.mask3d
        n = t.size
        t["m3d_slot"] = np.arange(n)
        names = ["light", "noise", "block"]
        probs = np.asarray([m.modes.get(k, 0.0) for k in names])
        mode = np.asarray([M3D_LIGHT, M3D_NOISE, M3D_BLOCK])[rng.choice(3, n, p=probs / probs.sum())]
        bw = np.maximum((rng.uniform(*m.box_size, n) * w).astype(int), 1)
        bh = np.maximum((rng.uniform(*m.box_size, n) * h).astype(int), 1)
        x0 = rng.integers(0, w - bw + 1)
        y0 = rng.integers(0, h - bh + 1)
        t["box"] = np.stack([x0, y0, x0 + bw, y0 + bh], axis=1)
        t["m3d_mode"] = mode
        light_cx = x0 + rng.random(n) * bw
        light_cy = y0 + rng.random(n) * bh
        sigma = rng.uniform(*m.light_sigma, n) * w / 112
        gain = rng.uniform(*m.light_gain, n)
        noise = rng.uniform(*m.noise_sigma, n)
        t["m3d"] = np.where((mode == M3D_LIGHT)[:, None], np.stack([light_cx, light_cy, sigma, gain], 1),
                            np.stack([noise, 0 * noise, 0 * noise, 0 * noise], 1))
        t["m3d"][mode == M3D_BLOCK] = 0
        jitter = np.where(rng.random((n, 3)) < m.jitter_p, rng.uniform(*m.jitter, (n, 3)), 1.0)
        t["jitter"] = np.where((mode == M3D_BLOCK)[:, None], 1.0, jitter)
        t["colour"] = np.where((mode == M3D_BLOCK) & (rng.random(n) < 0.5), 255, 0)[:, None]
        return t
