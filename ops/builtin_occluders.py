"""A built-in occluder bank drawn at start-up, so that a fresh install works with no data.

Glasses and sunglasses, thin-framed eyeglasses, scarves with patterns, and a few object
silhouettes (hand, cup, phone, ball, book, microphone), in varied colours and textures. Drawn at
twice the size and shrunk, for smooth edges. Deterministic: the same bank on every machine.
"""

from __future__ import annotations

import numpy as np

SS = 2  # supersampling


def _canvas(w: int, h: int):
    from PIL import Image, ImageDraw

    im = Image.new("RGBA", (w * SS, h * SS), (0, 0, 0, 0))
    return im, ImageDraw.Draw(im)


def _finish(im) -> np.ndarray:
    from PIL import Image

    w, h = im.size
    return np.array(im.convert("RGBa").resize((w // SS, h // SS), Image.LANCZOS).convert("RGBA"))


def _colour(rng: np.random.Generator, lo: int = 0, hi: int = 255, alpha: int = 255) -> tuple:
    return (*rng.integers(lo, hi + 1, 3).tolist(), alpha)


def _glasses(rng: np.random.Generator, sun: bool, thin: bool) -> np.ndarray:
    w, h = 240, 110
    im, d = _canvas(w, h)
    s = SS
    frame = _colour(rng, 0, 90) if rng.random() < 0.7 else _colour(rng, 60, 220)
    lens = (*rng.integers(10, 60, 3).tolist(), 235) if sun else (*rng.integers(150, 230, 3).tolist(), 50)
    width = (3 if thin else 8) * s
    rounded = rng.random() < 0.5
    lw, lh = rng.integers(88, 104), rng.integers(58, 80)
    top = (h - lh) // 2 + 4
    for x0 in (14, w - 14 - lw):
        box = [x0 * s, top * s, (x0 + lw) * s, (top + lh) * s]
        if rounded:
            d.ellipse(box, fill=lens, outline=frame, width=width)
        else:
            d.rounded_rectangle(box, radius=18 * s, fill=lens, outline=frame, width=width)
    mid = top + lh // 3
    d.line([((14 + lw) * s, mid * s), ((w - 14 - lw) * s, mid * s)], fill=frame, width=width)
    d.line([(0, (top + 6) * s), (14 * s, (top + 8) * s)], fill=frame, width=width)
    d.line([((w - 14) * s, (top + 8) * s), (w * s, (top + 6) * s)], fill=frame, width=width)
    return _finish(im)


def _scarf(rng: np.random.Generator) -> np.ndarray:
    w = h = 160
    im, d = _canvas(w, h)
    s = SS
    base = np.array(_colour(rng, 20, 235)[:3])
    top = [(x * s, (24 + 10 * np.sin(x / w * np.pi * rng.uniform(1, 3)) + rng.uniform(-2, 2)) * s)
           for x in range(0, w + 1, 8)]
    d.polygon(top + [(w * s, h * s), (0, h * s)], fill=(*base.tolist(), 255))
    pattern = rng.integers(0, 3)
    stripe = tuple(np.clip(base + rng.integers(-120, 120, 3), 0, 255).tolist()) + (255,)
    for k in range(0, h, 18):
        if pattern == 0:
            d.rectangle([0, (k + 30) * s, w * s, (k + 36) * s], fill=stripe)
        elif pattern == 1:
            for j in range(0, w, 18):
                if (j // 18 + k // 18) % 2:
                    d.rectangle([j * s, (k + 30) * s, (j + 9) * s, (k + 39) * s], fill=stripe)
    rgba = np.array(im)
    noise = rng.normal(0, 10, rgba.shape[:2] + (1,))
    rgba[..., :3] = np.clip(rgba[..., :3] + noise, 0, 255).astype(np.uint8)
    from PIL import Image

    return _finish(Image.fromarray(rgba, "RGBA"))


def _object(rng: np.random.Generator, shape: int) -> np.ndarray:
    w = h = 120
    im, d = _canvas(w, h)
    s = SS
    c = _colour(rng, 20, 235)
    dark = tuple(max(0, v - 60) for v in c[:3]) + (255,)
    if shape == 0:    # hand: palm and four fingers and a thumb
        d.ellipse([30 * s, 50 * s, 90 * s, 115 * s], fill=c)
        for i in range(4):
            d.rounded_rectangle([(32 + 14 * i) * s, 8 * s, (44 + 14 * i) * s, 70 * s], radius=6 * s, fill=c)
        d.rounded_rectangle([82 * s, 48 * s, 112 * s, 62 * s], radius=7 * s, fill=c)
    elif shape == 1:  # cup with a handle
        d.rounded_rectangle([25 * s, 25 * s, 85 * s, 110 * s], radius=8 * s, fill=c)
        d.ellipse([75 * s, 45 * s, 110 * s, 85 * s], outline=c, width=9 * s)
        d.rectangle([25 * s, 25 * s, 85 * s, 33 * s], fill=dark)
    elif shape == 2:  # phone
        d.rounded_rectangle([30 * s, 5 * s, 90 * s, 115 * s], radius=10 * s, fill=(25, 25, 30, 255))
        d.rectangle([35 * s, 15 * s, 85 * s, 100 * s], fill=c)
    elif shape == 3:  # ball with shading
        for r in range(50, 0, -5):
            shade = tuple(min(255, v + (50 - r) * 2) for v in c[:3]) + (255,)
            d.ellipse([(60 - r - (50 - r) // 3) * s, (60 - r - (50 - r) // 3) * s,
                       (60 + r - (50 - r) // 3) * s, (60 + r - (50 - r) // 3) * s], fill=shade)
    elif shape == 4:  # book
        d.rectangle([15 * s, 20 * s, 105 * s, 100 * s], fill=c)
        d.rectangle([15 * s, 20 * s, 27 * s, 100 * s], fill=dark)
        d.rectangle([40 * s, 40 * s, 95 * s, 48 * s], fill=(240, 240, 230, 255))
    else:             # microphone
        d.ellipse([35 * s, 5 * s, 85 * s, 55 * s], fill=(90, 90, 95, 255))
        d.rounded_rectangle([52 * s, 50 * s, 68 * s, 118 * s], radius=5 * s, fill=c)
    return _finish(im)


def draw_builtin(seed: int = 7) -> dict[str, list[np.ndarray]]:
    """Straight-alpha RGBA occluders by group (``glasses``, ``eyeglasses``, ``scarf``, ``object``)."""
    rng = np.random.default_rng(seed)
    return {
        "glasses": [_glasses(rng, sun=i % 2 == 0, thin=False) for i in range(8)],
        "eyeglasses": [_glasses(rng, sun=False, thin=True) for _ in range(6)],
        "scarf": [_scarf(rng) for _ in range(8)],
        "object": [_object(rng, i % 6) for i in range(12)],
    }
