"""Assign whole groups to train/val/test: ratios by clip count, stratified, seeded and deterministic.

Greedy largest-first packing: groups are taken from the largest to the smallest (a seeded shuffle breaks ties,
so the seed changes the split and the same seed repeats it), and each goes to the split whose share is furthest
below target, measured both inside the group's stratum and over the whole dataset. Large groups placed first and
small ones filling the gaps keep both the global ratios and the per-stratum ratios close to target.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from dvtr_data.errors import DatasetError

SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class Unit:
    """One group to place: its size in clips, its stratum, and a split it is pinned to (published clips)."""

    key: str
    size: int
    stratum: str
    pinned: str | None = None


def assign(units: list[Unit], ratios: tuple[float, ...], seed: int, tolerance: float) -> dict[str, str]:
    """Split name per unit key. Raises `DatasetError` when the ratios cannot be met within ``tolerance``."""
    names = SPLIT_NAMES[: len(ratios)]
    r = np.asarray(ratios, dtype=np.float64)
    r = r / r.sum()
    total = sum(u.size for u in units)
    out: dict[str, str] = {}
    if total == 0:
        return {u.key: (u.pinned or names[int(np.argmax(r))]) for u in units}
    strata = sorted({u.stratum for u in units})
    s_index = {s: i for i, s in enumerate(strata)}
    s_total = np.zeros(len(strata))
    for u in units:
        s_total[s_index[u.stratum]] += u.size
    counts = np.zeros(len(names))
    s_counts = np.zeros((len(strata), len(names)))
    free: list[Unit] = []
    for u in units:
        if u.pinned is not None:
            out[u.key] = u.pinned
            if u.pinned in names:
                k = names.index(u.pinned)
                counts[k] += u.size
                s_counts[s_index[u.stratum], k] += u.size
        else:
            free.append(u)
    free.sort(key=lambda u: u.key)
    rng = np.random.default_rng(seed)
    shuffle = rng.permutation(len(free))
    order = sorted(range(len(free)), key=lambda i: (-free[i].size, int(shuffle[i])))
    active = r > 0
    for i in order:
        u = free[i]
        s = s_index[u.stratum]
        global_gap = (r * total - counts) / total
        stratum_gap = (r * s_total[s] - s_counts[s]) / max(s_total[s], 1.0)
        score = np.where(active, global_gap + stratum_gap, -np.inf)
        k = int(np.argmax(score))
        out[u.key] = names[k]
        counts[k] += u.size
        s_counts[s, k] += u.size
    _fill_empty_splits(free, out, names, active, counts)
    _repair(free, out, names, r, counts, tolerance)
    _check(units, out, names, r, tolerance)
    return out


def _repair(
    free: list[Unit],
    out: dict[str, str],
    names: tuple[str, ...],
    r: np.ndarray,
    counts: np.ndarray,
    tolerance: float,
    max_moves: int = 200,
) -> None:
    """When the greedy pass (pulled both ways by strata and global ratios) misses the global tolerance, move single
    groups from the most over-full split to the most under-full one, each time the group whose size best fits the
    gap, while that lowers the largest deviation. Strata give way here: the global ratios are the promise."""
    total = counts.sum()
    if not total:
        return
    sizes = {k: [u for u in free if out[u.key] == names[k] and u.size > 0] for k in range(len(names))}
    for _ in range(max_moves):
        dev = counts / total - r
        worst = float(np.abs(dev).max())
        if worst <= tolerance:
            return
        src, dst = int(np.argmax(dev)), int(np.argmin(dev))
        if src == dst or len(sizes[src]) < 2:
            return
        gap = min(dev[src], -dev[dst]) * total
        u = min(sizes[src], key=lambda u: (abs(u.size - gap), u.key))
        trial = counts.copy()
        trial[src] -= u.size
        trial[dst] += u.size
        if float(np.abs(trial / total - r).max()) >= worst:
            return
        counts[:] = trial
        out[u.key] = names[dst]
        sizes[src].remove(u)
        sizes[dst].append(u)


def _fill_empty_splits(
    free: list[Unit], out: dict[str, str], names: tuple[str, ...], active: np.ndarray, counts: np.ndarray
) -> None:
    """Give every wanted split at least one group, taking the smallest group of the most over-full split."""
    for k in np.flatnonzero(active & (counts == 0)).tolist():
        per_split = Counter(out[u.key] for u in free if u.size > 0)
        donors = [u for u in free if u.size > 0 and per_split[out[u.key]] > 1]
        if not donors:
            return
        u = min(donors, key=lambda u: (u.size, u.key))
        counts[names.index(out[u.key])] -= u.size
        out[u.key] = names[k]
        counts[k] += u.size


def _check(
    units: list[Unit], out: dict[str, str], names: tuple[str, ...], r: np.ndarray, tolerance: float
) -> None:
    sizes = np.zeros(len(names))
    for u in units:
        if out[u.key] in names:
            sizes[names.index(out[u.key])] += u.size
    total = sizes.sum()
    if not total:
        return
    share = sizes / total
    bad = [k for k in range(len(names)) if (r[k] > 0 and sizes[k] == 0) or abs(share[k] - r[k]) > tolerance]
    if bad:
        largest = max((u.size for u in units), default=0) / total
        got = "/".join(f"{s:.2f}" for s in share)
        target = "/".join(f"{x:.2f}" for x in r)
        n_groups = sum(1 for u in units if u.size > 0)
        raise DatasetError(
            f"cannot split {int(total)} clips in {n_groups} group(s) {target} within ±{tolerance:.2f}: "
            f"the best found is {got} ({', '.join(names)}); the largest group holds {largest:.0%} of the clips",
            hint="add flights, group by fewer kinds, change --ratios, or raise --tolerance",
        )
