"""Groups of clips that must land in the same split: one flight, one location cell, one near-duplicate component.

Every kind of link goes into one union-find, so overlapping groups merge: two flights over the same field become
one group when location grouping is on, and a near-duplicate pair joins the groups of its two clips.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from dvtr_data.splits.unionfind import UnionFind

M_PER_DEG = 111_320.0


def location_cells(lat: np.ndarray, lon: np.ndarray, cell_m: float) -> tuple[np.ndarray, list[str]]:
    """Grid cell label per clip (-1 without a position) and the cells' names.

    Rows of the grid are ``cell_m`` metres of latitude; inside a row, columns are ``cell_m`` metres of longitude at
    the row's centre, so cells stay roughly square away from the equator. A position of exactly (0, 0) is a receiver
    without a fix, not a place in the Gulf of Guinea.
    """
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    ok = np.isfinite(lat) & np.isfinite(lon) & ~((lat == 0) & (lon == 0))
    labels = np.full(len(lat), -1, dtype=np.int64)
    if not ok.any():
        return labels, []
    row = np.floor(lat[ok] * M_PER_DEG / cell_m)
    centre = (row + 0.5) * cell_m / M_PER_DEG
    col = np.floor(lon[ok] * M_PER_DEG * np.cos(np.radians(centre)) / cell_m)
    keys = np.stack([row, col], axis=1).astype(np.int64)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    labels[ok] = inverse.ravel()
    return labels, [f"cell{int(r)}_{int(c)}" for r, c in uniq]


@dataclass
class Groups:
    """Component label per clip (``0..n_groups-1``), with each group's id, kind and link counts."""

    label: np.ndarray
    group_ids: list[str]
    kinds: list[str]
    members: list[np.ndarray]
    links: dict[str, int] = field(default_factory=dict)

    @property
    def n_groups(self) -> int:
        return len(self.group_ids)


def build_groups(
    clip_ids: list[str],
    flight_ids: list[str],
    *,
    by_flight: bool = True,
    cells: np.ndarray | None = None,
    cell_names: list[str] | None = None,
    pairs: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> Groups:
    """Merge clips into groups by flight, location cell and near-duplicate pairs (``{"cosine": (i, j), ...}``)."""
    n = len(clip_ids)
    uf = UnionFind(n)
    joined_by: list[tuple[int, str]] = []
    links: dict[str, int] = {}

    def join_labels(labels: np.ndarray, kind: str) -> None:
        idx = np.flatnonzero(labels >= 0)
        order = idx[np.argsort(labels[idx], kind="stable")]
        lab = labels[order]
        count = 0
        for k in np.flatnonzero(lab[1:] == lab[:-1]).tolist():
            a, b = int(order[k]), int(order[k + 1])
            if uf.union(a, b):
                joined_by.append((a, kind))
                count += 1
        links[kind] = count

    if by_flight:
        _, flight_label = np.unique(np.asarray(flight_ids, dtype=object), return_inverse=True)
        join_labels(flight_label.astype(np.int64), "flight")
    if cells is not None:
        join_labels(cells, "location")
    for kind, (ii, jj) in (pairs or {}).items():
        count = 0
        for a, b in zip(ii.tolist(), jj.tolist(), strict=True):
            if uf.union(a, b):
                joined_by.append((a, "near-duplicate"))
                count += 1
        links[f"near-duplicate:{kind}"] = count

    roots = uf.roots()
    _, label = np.unique(roots, return_inverse=True)
    label = label.astype(np.int64)
    kinds_of: dict[int, set[str]] = defaultdict(set)
    for a, kind in joined_by:
        kinds_of[int(label[a])].add(kind)
    order = np.argsort(label, kind="stable")
    bounds = np.flatnonzero(np.diff(label[order])) + 1
    members = np.split(order, bounds) if n else []
    group_ids: list[str] = []
    kinds: list[str] = []
    cell_names = cell_names or []
    for g, idx in enumerate(members):
        ks = kinds_of.get(g, set())
        kind = next(iter(ks)) if len(ks) == 1 else ("merged" if ks else "clip")
        if kind == "clip":
            gid = clip_ids[int(idx[0])]
        elif kind == "flight":
            gid = flight_ids[int(idx[0])]
        elif kind == "location" and cells is not None:
            common = Counter(int(c) for c in cells[idx] if c >= 0).most_common(1)
            gid = f"loc-{cell_names[common[0][0]]}" if common else _digest("loc", clip_ids, idx)
        else:
            gid = _digest({"near-duplicate": "dup", "merged": "grp"}.get(kind, "grp"), clip_ids, idx)
        group_ids.append(gid)
        kinds.append(kind)
    return Groups(label=label, group_ids=group_ids, kinds=kinds, members=members, links=links)


def _digest(prefix: str, clip_ids: list[str], idx: np.ndarray) -> str:
    h = hashlib.sha256("\n".join(sorted(clip_ids[int(i)] for i in idx)).encode()).hexdigest()[:12]
    return f"{prefix}-{h}"
