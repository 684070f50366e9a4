"""A horizontal bar chart as PNG, drawn with Pillow (no plotting library needed)."""

from __future__ import annotations

import os
from pathlib import Path

BAR_H, GAP, LABEL_W, BAR_W, VALUE_W = 22, 8, 260, 520, 150


def bar_chart(title: str, bars: list[tuple[str, float, str]], out: str | os.PathLike,
              footer: list[str] = ()) -> Path:
    """``bars`` are (label, value, value text); lengths are proportional to value (log scale when
    values span more than 100x, so that a kernel figure does not flatten the loaders)."""
    import math

    from PIL import Image, ImageDraw

    values = [v for _, v, _ in bars if v and v > 0]
    log = bool(values) and max(values) / min(values) > 100
    top = max(values, default=1.0)
    lo = min(values, default=1.0) / 2 if log else 0.0

    def length(v: float) -> int:
        if not v or v <= 0:
            return 0
        if log:
            return int(BAR_W * math.log(v / lo) / math.log(top / lo))
        return int(BAR_W * v / top)

    height = 40 + len(bars) * (BAR_H + GAP) + 16 * len(footer) + 16
    im = Image.new("RGB", (LABEL_W + BAR_W + VALUE_W, height), (255, 255, 255))
    d = ImageDraw.Draw(im)
    d.text((8, 10), title + (" (log scale)" if log else ""), fill=(0, 0, 0))
    palette = [(52, 101, 164), (78, 154, 6), (204, 0, 0), (117, 80, 123), (193, 125, 17), (85, 87, 83)]
    for i, (label, value, text) in enumerate(bars):
        y = 40 + i * (BAR_H + GAP)
        d.text((8, y + 5), label, fill=(0, 0, 0))
        n = length(value)
        if n:
            d.rectangle([LABEL_W, y, LABEL_W + n, y + BAR_H], fill=palette[i % len(palette)])
        d.text((LABEL_W + n + 6, y + 5), text, fill=(0, 0, 0))
    for j, line in enumerate(footer):
        d.text((8, 40 + len(bars) * (BAR_H + GAP) + 4 + 16 * j), line, fill=(60, 60, 60))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    im.save(out)
    return out
