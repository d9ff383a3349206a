"""The leakage report: what `split` promises, checked again from scratch after the assignment.

The check does not trust the grouping code. It takes every pair of near-duplicates (the exhaustive list of
embedding pairs at or above the threshold that `split` enumerated, or, with ``recheck``, a fresh comparison of every
clip of one split with every clip of another, which also gives the largest cross-split cosine), every pair of
keyframe hashes within the Hamming limit (always recomputed: it is cheap), and every flight and location cell, and
counts those that cross splits. Pairs between two published clips that the published splits already separate are counted apart:
they are the published dataset's leakage, not ours.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import combinations
from typing import Any

import numpy as np

from dvtr_data.splits.assign import SPLIT_NAMES
from dvtr_data.splits.neardup import cross_cosine, hamming_pairs


def split_sizes(
    split: np.ndarray,
    flight_ids: list[str],
    duration_s: np.ndarray,
    n_captions: np.ndarray,
    group_label: np.ndarray | None = None,
) -> dict[str, dict[str, Any]]:
    """Clips, captions, flights, hours (and groups) per split."""
    out: dict[str, dict[str, Any]] = {}
    flights = np.asarray(flight_ids, dtype=object)
    for name in SPLIT_NAMES:
        m = split == name
        row: dict[str, Any] = {
            "clips": int(m.sum()),
            "captions": int(n_captions[m].sum()),
            "flights": len(set(flights[m].tolist())),
            "hours": round(float(duration_s[m].sum()) / 3600.0, 4),
        }
        if group_label is not None:
            row["groups"] = len(set(group_label[m].tolist()))
        out[name] = row
    return out


def leakage(
    split: np.ndarray,
    imported: np.ndarray,
    flight_ids: list[str],
    clip_ids: list[str],
    *,
    vectors: np.ndarray | None,
    vector_rows: np.ndarray | None,
    threshold: float,
    cosine_edges: tuple[np.ndarray, np.ndarray] | None = None,
    recheck: bool = True,
    hashes: np.ndarray | None,
    max_hamming: int,
    cells: np.ndarray | None,
) -> dict[str, Any]:
    """Cross-split pairs of every kind. ``vector_rows[i]`` is clip i's row in ``vectors`` (-1: no embedding)."""
    report: dict[str, Any] = {"threshold": threshold, "max_hamming": max_hamming}
    pairs_ours: dict[str, int] = {}
    pairs_published: dict[str, int] = {}
    max_cos: dict[str, float] = {}
    examples: list[dict[str, Any]] = []
    checked = 0
    method = None
    if (
        vectors is not None
        and vector_rows is not None
        and len(vectors)
        and not recheck
        and cosine_edges is not None
    ):
        method = "pair-list"
        for a, b in combinations(SPLIT_NAMES, 2):
            pairs_ours[f"{a}-{b}"] = pairs_published[f"{a}-{b}"] = 0
            max_cos[f"{a}-{b}"] = None
        ii, jj = cosine_edges
        for i, j in zip(ii.tolist(), jj.tolist(), strict=True):
            if split[i] == split[j] or split[i] not in SPLIT_NAMES or split[j] not in SPLIT_NAMES:
                continue
            a, b = sorted((split[i], split[j]), key=SPLIT_NAMES.index)
            target = pairs_published if imported[i] and imported[j] else pairs_ours
            target[f"{a}-{b}"] += 1
            if not (imported[i] and imported[j]) and len(examples) < 10:
                examples.append({"a": clip_ids[i], "b": clip_ids[j]})
        has = (vector_rows >= 0) & np.isin(split, SPLIT_NAMES)
        checked = sum(
            int((has & (split == a)).sum()) * int((has & (split == b)).sum())
            for a, b in combinations(SPLIT_NAMES, 2)
        )
    elif vectors is not None and vector_rows is not None and len(vectors):
        method = "recomputed"
        for a, b in combinations(SPLIT_NAMES, 2):
            ia = np.flatnonzero((split == a) & (vector_rows >= 0))
            ib = np.flatnonzero((split == b) & (vector_rows >= 0))
            checked += len(ia) * len(ib)
            n, best, ex = cross_cosine(vectors[vector_rows[ia]], vectors[vector_rows[ib]], threshold)
            pa_ = ia[imported[ia]]
            pb_ = ib[imported[ib]]
            n_pub = 0
            if len(pa_) and len(pb_) and n:
                n_pub, _, _ = cross_cosine(vectors[vector_rows[pa_]], vectors[vector_rows[pb_]], threshold)
            key = f"{a}-{b}"
            pairs_ours[key] = n - n_pub
            pairs_published[key] = n_pub
            max_cos[key] = None if np.isnan(best) else round(best, 4)
            for i, j, s in ex:
                if len(examples) < 10 and not (imported[ia[i]] and imported[ib[j]]):
                    examples.append({"a": clip_ids[ia[i]], "b": clip_ids[ib[j]], "cosine": round(s, 4)})
    report["cosine_check"] = method
    report["embedding_pairs_checked"] = checked
    report["cosine_pairs"] = pairs_ours
    report["cosine_pairs_published"] = pairs_published
    report["max_cross_split_cosine"] = max_cos
    report["cosine_examples"] = examples

    hash_ours: dict[str, int] = defaultdict(int)
    hash_pub: dict[str, int] = defaultdict(int)
    if hashes is not None and max_hamming >= 0:
        in_split = np.isin(split, SPLIT_NAMES)
        masked = np.where(in_split, hashes, np.uint64(0))
        ii, jj = hamming_pairs(masked, max_hamming)
        for i, j in zip(ii.tolist(), jj.tolist(), strict=True):
            if split[i] == split[j]:
                continue
            a, b = sorted((split[i], split[j]), key=SPLIT_NAMES.index)
            target = hash_pub if imported[i] and imported[j] else hash_ours
            target[f"{a}-{b}"] += 1
        report["keyframes_hashed"] = int((masked != 0).sum())
    report["phash_pairs"] = {
        f"{a}-{b}": hash_ours.get(f"{a}-{b}", 0) for a, b in combinations(SPLIT_NAMES, 2)
    }
    report["phash_pairs_published"] = {
        f"{a}-{b}": hash_pub.get(f"{a}-{b}", 0) for a, b in combinations(SPLIT_NAMES, 2)
    }

    own = np.isin(split, SPLIT_NAMES) & ~imported
    report["flights_straddling"] = _straddling(np.asarray(flight_ids, dtype=object)[own], split[own])
    if cells is not None:
        has = own & (cells >= 0)
        report["cells_straddling"] = _straddling(cells[has], split[has])
    report["leaks"] = int(sum(pairs_ours.values()) + sum(report["phash_pairs"].values()))
    return report


def _straddling(keys: np.ndarray, split: np.ndarray) -> int:
    seen: dict[Any, set[str]] = defaultdict(set)
    for k, s in zip(keys.tolist(), split.tolist(), strict=True):
        seen[k].add(s)
    return sum(len(v) > 1 for v in seen.values())
