"""Host-side sampling: a NumPy Generator, seeded by (seed, shard, epoch, batch), fills the parameter table.

All randomness of the augmentation lives here; the apply step (kernel or twin) is deterministic
given the table. The distributions are those of MSML's code (``datasets/augment/rand_occ.py`` and
``datasets/load_dataset.py``), with every number taken from the profile. Lengths given for a
112 x 112 image scale with the image size.
"""

from __future__ import annotations

import math

import numpy as np

from .atlas import OccluderBank
from .kinds import Kind
from .params import M3D_BLOCK, M3D_LIGHT, M3D_NOISE, MAX_VERTICES, RENDER_DTYPE, batch_rows, empty_params
from .profiles import MaskRender, Profile

CHUNK_ROWS = 4096  # rows drawn per sampler call: 4096 rows cost about 2.6x what 256 cost (4.8 vs 1.8 ms)
CHUNKED_FROM = 32  # smaller batches are drawn one per call (see BatchTables)


def sample_render(n: int, rng: np.random.Generator, textures: int, spec: MaskRender | None = None) -> np.ndarray:
    """Render rows [n] (``RENDER_DTYPE``) of 3D masks: texture, top edge, ambient, gain, light direction
    and tint, drawn in that order from ``spec``'s ranges (default: ``faceocc render``'s)."""
    spec = spec or MaskRender()
    p = np.zeros(n, RENDER_DTYPE)
    p["texture"] = rng.integers(0, textures, n)
    p["top"] = rng.uniform(*spec.top, n)
    p["ambient"] = rng.uniform(*spec.ambient, n)
    p["gain"] = rng.uniform(*spec.gain, n)
    light = np.stack([rng.uniform(*spec.light_x, n), rng.uniform(*spec.light_y, n), np.ones(n)], 1)
    p["light"] = light / np.linalg.norm(light, axis=1, keepdims=True)
    p["tint"] = 1.0
    if spec.tint_p > 0:
        on = rng.random(n) < spec.tint_p
        p["tint"] = np.where(on[:, None], rng.uniform(*spec.tint, (n, 3)), 1.0)
    return p


def _offset(spec: tuple[float, float, int, int], k: np.ndarray, extent: int) -> np.ndarray:
    """MSML's ``int((base + k * step) * extent)``."""
    base, step = spec[0], spec[1]
    return ((base + k * step) * extent).astype(int)


class Sampler:
    """Draws parameter tables for batches of ``size = (H, W)`` faces under a profile validated for that
    size (``Profile.validate(size)``: the operator validates once, on the way in). With the profile's
    ``mask3d.source: online``, each mask3d row also gets its render (``sample_render``: one of
    ``mask_textures`` textures, drawn after everything else of the row, so offline tables are unchanged)."""

    def __init__(self, profile: Profile, bank: OccluderBank, size: tuple[int, int] = (112, 112),
                 mask_textures: int = 0) -> None:
        self.profile = profile
        self.bank = bank
        self.size = size
        self.mask_textures = int(mask_textures)
        online = profile.mask3d.source == "online" and profile.kind_probabilities()[Kind.MASK3D] > 0
        if online and self.mask_textures < 1:
            raise ValueError("the profile draws online 3D masks (mask3d.source: online) but no mask texture "
                             "was given to the sampler")
        need = {Kind.GLASSES: ("glasses", "eyeglasses"), Kind.SCARF: ("scarf",), Kind.OBJECT: ("object",)}
        probs = profile.kind_probabilities()
        for kind, groups in need.items():
            if probs[kind] > 0 and not any(bank.count(g) for g in groups):
                raise ValueError(f"the profile draws {kind.name.lower()} with p = {probs[kind]:.3f} but "
                                 f"the occluder bank ({bank.source}) has no {'/'.join(groups)} images")

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """A parameter table of ``n`` rows (see ``ops.params.PARAM_FIELDS``)."""
        probs = np.asarray(self.profile.kind_probabilities())
        return self._fill(n, rng, rng.choice(len(Kind), size=n, p=probs / probs.sum()))

    def sample_ori(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """MSML's ``ori``: a second, independent occlusion of the clean face from the same mix without
        mask3d; no lighting, no flip of its own (the operator applies the img's flip)."""
        probs = np.asarray(self.profile.kind_probabilities())
        probs[Kind.MASK3D] = 0
        if probs.sum() == 0:
            probs[Kind.NONE] = 1
        t = self._fill(n, rng, rng.choice(len(Kind), size=n, p=probs / probs.sum()))
        t["light"] = 0
        t["light_params"] = 0
        return t

    def _fill(self, n: int, rng: np.random.Generator, kinds: np.ndarray) -> np.ndarray:
        p = self.profile
        h, w = self.size
        t = empty_params(n)
        t["kind"] = kinds
        t["flip"] = rng.random(n) < p.flip_p
        t["noise_seed"] = rng.integers(0, 2**32, size=n, dtype=np.uint32)
        lit = rng.random(n) < p.lighting.p
        t["light"] = lit
        t["light_params"] = np.stack([w * rng.random(n), h * rng.random(n), rng.uniform(*p.lighting.gain, n),
                                      np.full(n, p.lighting.sigma * w / 112)], axis=1) * lit[:, None]
        for kind, fill in [(Kind.RECTANGLE, self._rectangles), (Kind.ELLIPSE, self._ellipses),
                           (Kind.POLYGON, self._polygons), (Kind.GLASSES, self._glasses),
                           (Kind.SCARF, self._scarves), (Kind.OBJECT, self._objects),
                           (Kind.MASK3D, self._mask3d)]:
            rows = np.flatnonzero(t["kind"] == kind)
            if rows.size:
                t[rows] = fill(t[rows], rng)
        t["m3d_slot"] = np.where(t["kind"] == Kind.MASK3D, np.arange(n), -1)    # see ops.params
        return t

    # -- geometric shapes -------------------------------------------------------------------------

    def _rectangles(self, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = self.size
        r = self.profile.rectangle
        n = t.size
        ratio = rng.integers(r.area_percent[0], r.area_percent[1] + 1, n) * 0.01
        area = (w * h * ratio).astype(int)
        width = rng.integers((w * ratio).astype(int) + 1, w + 1)
        height = np.minimum(area // width, h)
        x0 = rng.integers(0, w - width + 1)
        y0 = rng.integers(0, h - height + 1)
        t["box"] = np.stack([x0, y0, x0 + width, y0 + height], axis=1)
        t["colour"] = rng.integers(r.colour[0], r.colour[1] + 1, (n, 3))
        return t

    def _centres(self, lo_hi: tuple[float, float], n: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        h, w = self.size
        cy = rng.integers(int(lo_hi[0] * h), int(lo_hi[1] * h), n)
        cx = rng.integers(int(lo_hi[0] * w), int(lo_hi[1] * w), n)
        return cx, cy

    def _ellipses(self, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = self.size
        e = self.profile.ellipse
        n = t.size
        cx, cy = self._centres(e.centre, n, rng)
        lo = int(e.min_semi_axis * h / 112)
        b = rng.integers(lo, np.maximum(np.minimum(cy, h - cy), lo + 1))
        a = (h * w * rng.uniform(*e.area_ratio, n) / (e.pi * b)).astype(int)
        t["ellipse"] = np.stack([cx, cy, a, b], axis=1)
        t["colour"] = rng.integers(e.colour[0], e.colour[1] + 1, (n, 3))
        return t

    def _polygons(self, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = self.size
        g = self.profile.polygon
        n = t.size
        points = rng.integers(g.points[0], g.points[1] + 1, n)
        cx, cy = self._centres(g.centre, n, rng)
        radius = rng.integers(int(g.radius[0] * h), max(int(g.radius[1] * h), int(g.radius[0] * h) + 1), n)
        inner = radius / rng.uniform(*g.inner_divisor, n)
        step = 2 * math.pi / points
        vx = np.zeros((n, MAX_VERTICES), np.int64)
        vy = np.zeros((n, MAX_VERTICES), np.int64)
        vx[:, 0], vy[:, 0] = cx + radius, cy      # start angle 0
        count = np.ones(n, int)
        outer_angle = np.zeros(n)
        inner_angle = np.zeros(n)
        rows = np.arange(n)
        for i in range(g.points[1]):
            active = i < points
            outer_angle = outer_angle + np.where(active, step * rng.uniform(*g.outer_step, n), 0.0)
            r = rows[active]
            vx[r, count[r]] = np.trunc(cx + radius * np.cos(outer_angle))[r]
            vy[r, count[r]] = np.trunc(cy + radius * np.sin(outer_angle))[r]
            count[r] += 1
            on = active & (rng.random(n) > 1 - g.inner_p)
            inner_angle = inner_angle + np.where(on, step * rng.uniform(*g.inner_step, n), 0.0)
            r = rows[on]
            vx[r, count[r]] = np.trunc(cx + inner * np.cos(inner_angle))[r]
            vy[r, count[r]] = np.trunc(cy + inner * np.sin(inner_angle))[r]
            count[r] += 1
        t["n_vertices"] = count
        t["vx"], t["vy"] = vx, vy
        t["colour"] = rng.integers(g.colour[0], g.colour[1] + 1, (n, 3))
        return t

    # -- web occluders ----------------------------------------------------------------------------

    def _pick(self, group: str, n: int, rng: np.random.Generator) -> np.ndarray:
        members = self.bank.groups[group]
        return members[rng.integers(0, members.size, n)]

    def _place(self, t: np.ndarray, entries: np.ndarray, width: np.ndarray, height: np.ndarray,
               x0: np.ndarray, y0: np.ndarray, replace_alpha: int, mask_alpha: int) -> None:
        t["atlas"] = entries
        sh, sw = self.bank.sizes[entries].T
        t["src"] = np.stack([np.zeros_like(sw), np.zeros_like(sh), sw, sh], axis=1)
        t["box"] = np.stack([x0, y0, x0 + np.maximum(width, 1), y0 + np.maximum(height, 1)], axis=1)
        t["replace_alpha"], t["mask_alpha"] = replace_alpha, mask_alpha

    def _glasses(self, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = self.size
        g = self.profile.glasses
        n = t.size
        have = [grp for grp in ("glasses", "eyeglasses") if self.bank.count(grp)]
        use_eye = rng.random(n) < g.eyeglasses_p if len(have) == 2 else np.full(n, have == ["eyeglasses"])
        entries = np.where(use_eye, self._pick(have[-1], n, rng), self._pick(have[0], n, rng))
        width = (w * g.size[0] * rng.uniform(*g.scale, n)).astype(int)
        height = (h * g.size[1] * rng.uniform(*g.scale, n)).astype(int)
        x0 = _offset(g.x, rng.integers(g.x[2], g.x[3] + 1, n), w)
        y0 = _offset(g.y, rng.integers(g.y[2], g.y[3] + 1, n), h)
        self._place(t, entries, width, height, x0, y0, g.replace_alpha, g.mask_alpha)
        return t

    def _scarves(self, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = self.size
        s = self.profile.scarf
        n = t.size
        entries = self._pick("scarf", n, rng)
        side = s.size * w / 112
        width = (side * rng.uniform(*s.scale, n)).astype(int)
        height = (side * rng.uniform(*s.scale, n)).astype(int)
        x0 = _offset(s.x, rng.integers(s.x[2], s.x[3] + 1, n), w)
        y0 = _offset(s.y, rng.integers(s.y[2], s.y[3] + 1, n), w)
        self._place(t, entries, width, height, x0, y0, s.replace_alpha, s.mask_alpha)
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
        x0 = (rng.integers(lo, hi + 1, n) * 0.01 * w).astype(int)
        y0 = (rng.integers(lo, hi + 1, n) * 0.01 * h).astype(int)
        self._place(t, entries, width, height, x0, y0, o.replace_alpha, o.mask_alpha)
        return t

    # -- 3D masks (offline or online) -----------------------------------------------------------

    def _mask3d(self, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = self.size
        m = self.profile.mask3d
        n = t.size
        sx, sy = w / 112, h / 112

        def bound(spec: tuple[int, int, int], scale: float) -> np.ndarray:
            return ((spec[0] + rng.integers(spec[1], spec[2] + 1, n)) * scale).astype(int)

        names = ["light", "noise", "block"]
        probs = np.asarray([m.modes.get(k, 0.0) for k in names])
        mode = np.asarray([M3D_LIGHT, M3D_NOISE, M3D_BLOCK])[rng.choice(3, n, p=probs / probs.sum())]
        left, right = bound(m.left, sx), bound(m.right, sx)
        top, bottom = int(m.rows[0] * sy), int(m.rows[1] * sy)
        t["box"] = np.stack([left, np.full(n, top), right, np.full(n, bottom)], axis=1)
        t["m3d_mode"] = mode
        t["m3d_rows"] = np.stack([bound(m.block_top, sy), bound(m.block_bottom, sy)], axis=1)
        sign = rng.integers(0, 2, n) * 2 - 1
        bw, bh = right - left, bottom - top
        light_cx = left + bw * rng.random(n)
        light_cy = top + bh * rng.random(n)
        edge = np.maximum(bw, bh)
        sigma = rng.uniform((edge / m.light_sigma).astype(int), (edge * m.light_sigma).astype(int))
        light = np.stack([light_cx, light_cy, sigma, m.light_amplitude * sign], axis=1)
        other = np.zeros((n, 4))
        other[:, 0] = np.where(mode == M3D_NOISE, m.noise_std, m.block_value * sign)
        t["m3d"] = np.where((mode == M3D_LIGHT)[:, None], light, other)
        channels = rng.random((n, 3)) < m.channel_p
        t["m3d_channels"] = np.where((mode == M3D_BLOCK)[:, None], True, channels)
        if m.source == "online":
            rows = sample_render(n, rng, self.mask_textures, m.render)
            for name in RENDER_DTYPE.names:
                t[f"render_{name}"] = rows[name]
        return t


class BatchTables:
    """The one seeding rule: the parameter table of batch ``batch`` of epoch ``epoch`` on shard ``shard``,
    ``n`` rows, as a pure function of (seed, shard, epoch, batch, n). ``FaceOccluder.sample`` and the
    loader's record source both call this, so the loader's rows for a batch are ``sample``'s.

    The batches of an epoch are drawn in chunks of ``per = max(1, CHUNK_ROWS // n)`` consecutive
    batches: chunk ``c = batch // per`` is one ``Sampler.sample(per * n)`` call with a generator seeded
    by ``[seed, shard, epoch, c, n]``, and the batch is its rows ``(batch % per) * n`` onwards (``m3d_slot``
    re-based to the batch). The last chunk drawn is kept, so consecutive batches cost one call per chunk.
    Batches of fewer than ``CHUNKED_FROM`` rows are drawn one per call (``per = 1``): per-sample callers
    (``faceocc.occlude`` on one face, ``MSMLOcclusion``) draw one batch per seed, so a chunk would be drawn
    for one batch and thrown away (4.8 ms for 4096 rows against 0.5 ms for one row).
    """

    def __init__(self, sampler: Sampler, seed: int) -> None:
        self.sampler = sampler
        self.seed = int(seed)
        self._last: tuple[tuple[int, ...], np.ndarray] | None = None

    def __call__(self, n: int, shard: int = 0, epoch: int = 0, batch: int = 0) -> np.ndarray:
        n = int(n)
        if n < 1:
            raise ValueError(f"a batch has at least one row; got n = {n}")
        per = max(1, CHUNK_ROWS // n) if n >= CHUNKED_FROM else 1
        chunk, pos = divmod(int(batch), per)
        key = (int(shard), int(epoch), chunk, n)
        last = self._last
        if last is None or last[0] != key:
            last = self._last = (key, self.sampler.sample(per * n, np.random.default_rng([self.seed, *key])))
        return batch_rows(last[1], pos * n, pos * n + n)
