"""The card's figures as PNG bytes (matplotlib's object API on the Agg canvas: no pyplot state, no display)."""

from __future__ import annotations

import io
import math
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dvtr_data.splits.assign import SPLIT_NAMES

SPLIT_COLOURS = {
    "train": "#4477aa",
    "val": "#ddaa33",
    "test": "#bb5566",
    "excluded": "#999999",
    "none": "#cccccc",
}


def _subplots(figsize: tuple[float, float], ncols: int = 1) -> tuple[Figure, Any]:
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    return buf.getvalue()


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#666666")
    ax.set_xticks([])
    ax.set_yticks([])


def hist(values: list[float], title: str, xlabel: str, bins: int = 30) -> bytes:
    fig, ax = _subplots((5.5, 3.2))
    if values:
        ax.hist(values, bins=bins, color="#4477aa")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("count")
    else:
        _empty(ax, "no data")
    ax.set_title(title)
    return _png(fig)


def bars(
    counts: dict[str, float], title: str, xlabel: str = "", top: int = 25, horizontal: bool = True
) -> bytes:
    items = list(counts.items())[:top]
    fig, ax = _subplots((5.5, max(2.4, 0.25 * len(items) + 1.0)) if horizontal else (5.5, 3.2))
    if items:
        labels = [str(k)[:40] for k, _ in items]
        values = [v for _, v in items]
        if horizontal:
            ax.barh(labels[::-1], values[::-1], color="#4477aa")
            ax.set_xlabel(xlabel or "count")
        else:
            ax.bar(labels, values, color="#4477aa")
            ax.set_ylabel(xlabel or "count")
    else:
        _empty(ax, "none")
    ax.set_title(title)
    return _png(fig)


def split_bars(per_split: dict[str, dict[str, Any]]) -> bytes:
    names = [s for s in (*SPLIT_NAMES, "excluded") if s in per_split]
    fig, axes = _subplots((8.5, 2.8), 3)
    for ax, key in zip(axes, ("clips", "captions", "hours"), strict=True):
        vals = [per_split[s].get(key, 0) for s in names]
        ax.bar(names, vals, color=[SPLIT_COLOURS[s] for s in names])
        ax.set_title(key)
        ax.tick_params(axis="x", labelrotation=30)
    if not names:
        for ax in axes:
            _empty(ax, "no splits yet")
    return _png(fig)


def location_map(points: list[tuple[float, float, str]]) -> bytes:
    fig, ax = _subplots((5.5, 4.5))
    by_split: dict[str, list[tuple[float, float]]] = {}
    for lat, lon, split in points:
        by_split.setdefault(split, []).append((lat, lon))
    for split, pts in sorted(by_split.items()):
        ax.scatter(
            [p[1] for p in pts],
            [p[0] for p in pts],
            s=6,
            alpha=0.7,
            label=split,
            color=SPLIT_COLOURS.get(split, "#444444"),
        )
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title("clip locations (centre of each clip's telemetry)")
    if by_split:
        ax.legend(markerscale=2, fontsize=8)
        mean_lat = sum(p[0] for p in points) / len(points)
        ax.set_aspect(1.0 / max(0.05, math.cos(math.radians(mean_lat))), adjustable="datalim")
    else:
        _empty(ax, "no telemetry")
    return _png(fig)
