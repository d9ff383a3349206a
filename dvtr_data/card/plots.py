"""The card's figures as PNG bytes (matplotlib's object API on the Agg canvas: no pyplot state, no display).

Labels drawn from data (categories, region names) are text, never mathtext: matplotlib parses a label holding
two ``$`` as TeX and raises on a malformed one, so a category such as ``$5 parking$`` or ``$\\frac{$`` would
crash the card. `plain` escapes every dollar sign (matplotlib then draws them as plain dollars).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
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


def plain(text: object) -> str:
    """``text`` as matplotlib shows it literally: every ``$`` escaped so that no mathtext is parsed."""
    return str(text).replace("$", r"\$")


def _set_labels(ax: Any, axis: str, positions: Sequence[float], labels: list[str]) -> None:
    """Fixed tick positions with literal labels (a categorical axis would also accept them, unescaped)."""
    setter = ax.set_yticks if axis == "y" else ax.set_xticks
    setter(positions, labels=[plain(x) for x in labels])


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
        pos = list(range(len(items)))
        if horizontal:
            ax.barh(pos, values[::-1], color="#4477aa")
            _set_labels(ax, "y", pos, labels[::-1])
            ax.set_xlabel(xlabel or "count")
        else:
            ax.bar(pos, values, color="#4477aa")
            _set_labels(ax, "x", pos, labels)
            ax.set_ylabel(xlabel or "count")
    else:
        _empty(ax, "none")
    ax.set_title(plain(title))
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


def map_extent(points: list[tuple[float, float, str]]) -> tuple[float, float, float, float]:
    """(lon_min, lon_max, lat_min, lat_max) around ``points``, padded, at least 1 degree tall so that a single
    site still shows the coast or border nearest to it, and kept inside the globe."""
    lats = [p[0] for p in points]
    lons = [p[1] for p in points]
    lat0, lat1, lon0, lon1 = min(lats), max(lats), min(lons), max(lons)
    mid_lat = (lat0 + lat1) / 2
    cos = max(0.05, math.cos(math.radians(mid_lat)))
    half_h = max(0.5, 0.6 * (lat1 - lat0))
    half_w = max(0.6 * (lon1 - lon0), half_h / cos)  # about as wide as tall on the ground
    half_h = max(half_h, 0.5 * half_w * cos)  # a long east-west spread still gets some height
    mid_lon = (lon0 + lon1) / 2
    return (
        max(-180.0, mid_lon - half_w),
        min(180.0, mid_lon + half_w),
        max(-90.0, mid_lat - half_h),
        min(90.0, mid_lat + half_h),
    )


def location_map(points: list[tuple[float, float, str]], lines: Any = None) -> bytes:
    """Clip positions coloured by split over GSHHG coastlines, lakes and national borders (``lines``, a
    `coastlines.MapLines` for `map_extent` of the points), or on a plain grid when ``lines`` is None."""
    fig, ax = _subplots((6.0, 4.8))
    extent = map_extent(points) if points else (-180.0, 180.0, -90.0, 90.0)
    if lines is not None:
        ax.set_facecolor("#eef4fa")
        if extent[1] - extent[0] <= 30:  # lakes only clutter a continental or world map
            for lon, lat in lines.lakes:
                ax.plot(lon, lat, color="#88aacc", linewidth=0.5)
        for lon, lat in lines.coast:
            ax.plot(lon, lat, color="#335577", linewidth=0.7)
        for lon, lat in lines.borders:
            ax.plot(lon, lat, color="#aa5555", linewidth=0.6, linestyle=(0, (4, 2)))
    by_split: dict[str, list[tuple[float, float]]] = {}
    for lat, lon, split in points:
        by_split.setdefault(split, []).append((lat, lon))
    for split, pts in sorted(by_split.items()):
        ax.scatter(
            [p[1] for p in pts],
            [p[0] for p in pts],
            s=8,
            alpha=0.8,
            label=plain(split),
            color=SPLIT_COLOURS.get(split, "#444444"),
            zorder=3,
        )
    ax.set_xlabel("longitude (°)")
    ax.set_ylabel("latitude (°)")
    ax.set_title("clip locations" + ("" if lines is not None else " (no coastline data found)"))
    if by_split:
        ax.legend(markerscale=2, fontsize=8, loc="best")
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
        mid_lat = (extent[2] + extent[3]) / 2
        ax.set_aspect(1.0 / max(0.05, math.cos(math.radians(mid_lat))), adjustable="box")
        ax.grid(True, color="#cccccc", linewidth=0.4)
    else:
        _empty(ax, "no telemetry")
    return _png(fig)


def hours(counts: dict[int, int]) -> bytes:
    """Clips per hour of the day (camera clock), with night hours shaded."""
    fig, ax = _subplots((5.5, 3.0))
    hs = list(range(24))
    ax.bar(hs, [counts.get(h, 0) for h in hs], color="#4477aa", width=0.85)
    for a, b in ((0, 5), (21, 24)):
        ax.axvspan(a - 0.5, b - 0.5, color="#dddddd", zorder=0)
    ax.set_xticks(list(range(0, 24, 3)))
    ax.set_xlim(-0.5, 23.5)
    ax.set_xlabel("hour of day (camera clock; night shaded)")
    ax.set_ylabel("clips")
    ax.set_title("recording time of day")
    return _png(fig)
