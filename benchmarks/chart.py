"""A horizontal bar chart of benchmark figures as PNG (matplotlib, Agg backend)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

LOG_SPAN = 100          # values spanning more than this factor get a log axis


def chart_figure(title: str, bars: list[tuple[str, float, str]], footer: list[str] = ()) -> Any:
    """The figure of :func:`bar_chart`: one bar per (label, value, value text), top to bottom; bars of no
    value (0 or None) are left empty; a log axis when the values span more than ``LOG_SPAN`` times, so
    that a kernel figure does not flatten the loaders."""
    from matplotlib.figure import Figure

    values = [v for _, v, _ in bars if v and v > 0]
    log = bool(values) and max(values) / min(values) > LOG_SPAN
    fig = Figure(figsize=(9, 0.9 + 0.4 * len(bars) + 0.2 * len(footer)), layout="constrained")
    ax = fig.add_subplot()
    widths = [v if v and v > 0 else 0.0 for _, v, _ in bars]
    ys = range(len(bars))
    rects = ax.barh(ys, widths, color=[f"C{i % 10}" for i in ys])
    ax.bar_label(rects, labels=[text for _, _, text in bars], padding=4, fontsize=8)
    ax.set_yticks(list(ys), [label for label, _, _ in bars], fontsize=8)
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
        ax.set_xlim(min(values) / 2, max(values) * 20)
    else:
        ax.set_xlim(0, max(values, default=1.0) * 1.25)
    ax.set_title(title + (" (log scale)" if log else ""), fontsize=10, loc="left")
    if footer:
        fig.supxlabel("\n".join(footer), fontsize=7, x=0.01, ha="left")
    return fig


def bar_chart(title: str, bars: list[tuple[str, float, str]], out: str | os.PathLike,
              footer: list[str] = ()) -> Path:
    """Write :func:`chart_figure` to ``out`` (PNG); returns the path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    chart_figure(title, bars, footer).savefig(out, dpi=100)
    return out
