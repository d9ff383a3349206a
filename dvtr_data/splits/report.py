"""The leakage report: what `split` promises, counted again after the assignment without trusting the search.

The grouping stage finds near-duplicates through an index (`neardup`), which may miss pairs. The recount here never
looks at the index or at the pairs it returned: it compares clips of different splits directly, in blocks
(bounded memory), with the same exact rule (cosine in float64 at or above the threshold; hashes at most
``max_hamming`` bits apart). Only cross-split pairs are compared, never pairs inside one split.

While the cross-split comparisons fit ``budget`` (about 110,000 clips with embeddings at 70/10/20), every one is
made: the count is exact and a zero means zero. Above it, a seeded uniform sample of clips, as many as the budget
allows, is compared with every clip of the other splits: pairs found are real (the count is a lower bound), and a zero comes with a stated confidence. If
a share ``p`` of the clips had a near-duplicate in another split, a sample of ``S`` clips would miss all of them with
probability at most ``(1 - p) ** S``; so with none found, ``p < 1 - 0.05 ** (1 / S)`` at 95% confidence
(about ``3 / S``). Pairs between two published clips that the published splits already separate are counted
apart: they are the published dataset's leakage, not ours. Flights and location cells are counted exactly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from itertools import combinations
from typing import Any

import numpy as np

from dvtr_data.splits.assign import SPLIT_NAMES
from dvtr_data.splits.neardup import MARGIN, rescore_cosine

# cross-split comparisons per kind: at 512 dimensions about a minute on 2 cores
RECOUNT_BUDGET = 3_000_000_000
CONFIDENCE = 0.95
BLOCK = 1024  # a block compares BLOCK x 8 BLOCK clips: 32 MB of float32 cosines, 64 MB of hash XORs
MAX_EXAMPLES = 10

ProgressFn = Callable[[int, int], None]
PairTest = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, float | None]]


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


# ---------------------------------------------------------------------------------------------------------
# the recount
# ---------------------------------------------------------------------------------------------------------
def _blocks(n: int, block: int) -> Iterator[tuple[int, int]]:
    for s in range(0, n, block):
        yield s, min(n, s + block)


def cosine_test(vectors: np.ndarray, threshold: float) -> PairTest:
    """Pairs of rows (``a[k]``, ``b[k]`` index ``vectors``) at or above ``threshold``, and the block's largest cosine."""

    def test(rows_a: np.ndarray, rows_b: np.ndarray) -> tuple[np.ndarray, np.ndarray, float | None]:
        sims = vectors[rows_a] @ vectors[rows_b].T
        ii, jj = np.nonzero(sims >= threshold - MARGIN)
        if ii.size:
            ok = rescore_cosine(vectors, rows_a[ii], rows_b[jj]) >= threshold
            ii, jj = ii[ok], jj[ok]
        return ii, jj, float(sims.max())

    return test


def hash_test(hashes: np.ndarray, max_distance: int) -> PairTest:
    """Pairs of 64-bit hashes at most ``max_distance`` bits apart (no score is tracked)."""

    def test(rows_a: np.ndarray, rows_b: np.ndarray) -> tuple[np.ndarray, np.ndarray, float | None]:
        ii, jj = np.nonzero(
            np.bitwise_count(hashes[rows_a][:, None] ^ hashes[rows_b][None, :]) <= max_distance
        )
        return ii, jj, None

    return test


def recount(
    split: np.ndarray,
    imported: np.ndarray,
    rows: np.ndarray,
    test: PairTest,
    *,
    exact: bool = False,
    budget: int = RECOUNT_BUDGET,
    seed: int = 0,
    block: int = BLOCK,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Cross-split pairs among the clips with ``rows[i] >= 0`` (their row in the data ``test`` compares).

    Exact when ``exact`` or when all cross-split comparisons fit ``budget``; otherwise a seeded sample of clips
    (as many as the budget allows) is compared with every clip of the other splits. Returns per split pair the
    pairs of our own clips (``ours``) and between two published clips (``published``), the best score seen,
    example pairs (clip indices), the comparisons made and, when sampled, the sample and its confidence bound.
    """
    in_split = np.isin(split, SPLIT_NAMES) & (rows >= 0)
    members = {s: np.flatnonzero(in_split & (split == s)) for s in SPLIT_NAMES}
    keys = [f"{a}-{b}" for a, b in combinations(SPLIT_NAMES, 2)]
    total_cross = sum(len(members[a]) * len(members[b]) for a, b in combinations(SPLIT_NAMES, 2))
    population = int(in_split.sum())
    sampled = not exact and total_cross > budget
    out: dict[str, Any] = {"method": "sampled" if sampled else "exact", "population": population}
    if sampled:
        # a sampled clip meets on average 2 * total_cross / population clips of other splits
        n_sample = int(min(population, max(1, budget * population // (2 * total_cross))))
        rng = np.random.default_rng(seed)
        chosen = np.zeros(len(split), dtype=bool)
        chosen[rng.choice(np.flatnonzero(in_split), size=n_sample, replace=False)] = True
        # each sampled clip against every clip of the other two splits
        jobs = [
            (members[s][chosen[members[s]]], members[o]) for s in SPLIT_NAMES for o in SPLIT_NAMES if o != s
        ]
        out["sample"] = {
            "clips": n_sample,
            "confidence": CONFIDENCE,
            "leaking_clip_share_below": float(1 - (1 - CONFIDENCE) ** (1 / n_sample)),
        }
    else:
        jobs = [(members[a], members[b]) for a, b in combinations(SPLIT_NAMES, 2)]
    work = sum(len(x) * len(y) for x, y in jobs)
    done = 0
    found_i: list[np.ndarray] = []
    found_j: list[np.ndarray] = []
    best: dict[str, float] = {}
    for ia, ib in jobs:
        for a0, a1 in _blocks(len(ia), block):
            for b0, b1 in _blocks(len(ib), block * 8):
                qa, qb = ia[a0:a1], ib[b0:b1]
                ii, jj, top = test(rows[qa], rows[qb])
                if ii.size:
                    found_i.append(qa[ii])
                    found_j.append(qb[jj])
                if top is not None:
                    key = _key(str(split[qa[0]]), str(split[qb[0]]))
                    best[key] = max(best.get(key, -np.inf), top)
                done += len(qa) * len(qb)
                if progress:
                    progress(done, work)
    ours = dict.fromkeys(keys, 0)
    published = dict.fromkeys(keys, 0)
    examples: list[tuple[int, int]] = []
    if found_i:
        gi, gj = np.concatenate(found_i), np.concatenate(found_j)
        pairs = np.unique(np.stack([np.minimum(gi, gj), np.maximum(gi, gj)], axis=1), axis=0)
        for i, j in pairs.tolist():
            both_published = bool(imported[i] and imported[j])
            target = published if both_published else ours
            target[_key(str(split[i]), str(split[j]))] += 1
            if not both_published and len(examples) < MAX_EXAMPLES:
                examples.append((i, j))
    out.update(ours=ours, published=published, best=best, examples=examples, comparisons=done)
    if sampled:
        found = sum(ours.values()) + sum(published.values())
        # a pair is seen once for each of its clips in the sample: expected count 2 * pairs * sample / population
        out["sample"]["estimated_pairs"] = round(found * population / (2 * out["sample"]["clips"]), 1)
    return out


def _key(a: str, b: str) -> str:
    x, y = sorted((a, b), key=SPLIT_NAMES.index)
    return f"{x}-{y}"


def leakage(
    split: np.ndarray,
    imported: np.ndarray,
    flight_ids: list[str],
    clip_ids: list[str],
    *,
    vectors: np.ndarray | None,
    vector_rows: np.ndarray | None,
    threshold: float,
    hashes: np.ndarray | None,
    max_hamming: int,
    cells: np.ndarray | None,
    exact: bool = False,
    budget: int = RECOUNT_BUDGET,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Cross-split pairs of every kind. ``vector_rows[i]`` is clip i's row in ``vectors`` (-1: no embedding).

    ``exact`` compares every cross-split pair whatever it costs (``split --recheck``); otherwise `recount` samples
    above ``budget``, and then ``cosine_sample``/``phash_sample`` state the sample and its bound, the pair counts
    are those found in the sample, and ``max_cross_split_cosine`` is the largest seen in it. ``progress(done,
    total)`` counts comparisons, first of embeddings, then of hashes.
    """
    keys = [f"{a}-{b}" for a, b in combinations(SPLIT_NAMES, 2)]
    report: dict[str, Any] = {"threshold": threshold, "max_hamming": max_hamming}
    cos: dict[str, Any] | None = None
    cos_examples: list[dict[str, Any]] = []
    if vectors is not None and vector_rows is not None and len(vectors):
        cos = recount(
            split,
            imported,
            vector_rows,
            cosine_test(vectors, threshold),
            exact=exact,
            budget=budget,
            seed=seed,
            progress=progress,
        )
        cos_examples = [
            {
                "a": clip_ids[i],
                "b": clip_ids[j],
                "cosine": round(float(rescore_cosine(vectors, vector_rows[[i]], vector_rows[[j]])[0]), 4),
            }
            for i, j in cos["examples"]
        ]
    report["cosine_check"] = cos["method"] if cos else None
    report["embedding_pairs_checked"] = cos["comparisons"] if cos else 0
    report["cosine_pairs"] = cos["ours"] if cos else {}
    report["cosine_pairs_published"] = cos["published"] if cos else {}
    report["max_cross_split_cosine"] = (
        {k: round(cos["best"][k], 4) if k in cos["best"] else None for k in keys} if cos else {}
    )
    report["cosine_examples"] = cos_examples
    if cos and "sample" in cos:
        report["cosine_sample"] = cos["sample"]

    hsh: dict[str, Any] | None = None
    if hashes is not None and max_hamming >= 0:
        hash_rows = np.where(hashes != 0, np.arange(len(hashes)), -1)
        hsh = recount(
            split,
            imported,
            hash_rows,
            hash_test(np.asarray(hashes, dtype=np.uint64), max_hamming),
            exact=exact,
            budget=budget,
            seed=seed + 1,
            progress=progress,
        )
        report["keyframes_hashed"] = hsh["population"]
        report["phash_check"] = hsh["method"]
        report["hash_pairs_checked"] = hsh["comparisons"]
        if "sample" in hsh:
            report["phash_sample"] = hsh["sample"]
    report["phash_pairs"] = hsh["ours"] if hsh else dict.fromkeys(keys, 0)
    report["phash_pairs_published"] = hsh["published"] if hsh else dict.fromkeys(keys, 0)

    own = np.isin(split, SPLIT_NAMES) & ~imported
    report["flights_straddling"] = _straddling(np.asarray(flight_ids, dtype=object)[own], split[own])
    if cells is not None:
        has = own & (cells >= 0)
        report["cells_straddling"] = _straddling(cells[has], split[has])
    report["leaks"] = int(sum(report["cosine_pairs"].values()) + sum(report["phash_pairs"].values()))
    return report


def _straddling(keys: np.ndarray, split: np.ndarray) -> int:
    seen: dict[Any, set[str]] = defaultdict(set)
    for k, s in zip(keys.tolist(), split.tolist(), strict=True):
        seen[k].add(s)
    return sum(len(v) > 1 for v in seen.values())
