"""Exact top-k retrieval of bank captions for clip embeddings, in bounded memory, and near-duplicate collapse.

Scores are cosine similarities (both sides unit length). The bank is scanned in chunks and the queries in blocks,
so memory stays at ``query_block x chunk`` scores however large the bank is; the running best k are merged after
each chunk, which keeps the result exact. Ties are broken by bank position (lower first), so results are
deterministic and match a plain full-matrix sort.

Banks of real datasets repeat themselves (USRD: 68.5% unique captions), and even deduplicated banks hold captions
that differ by a comma or a plural; drafts that say the same thing waste an annotator's time. `distinct_top_k`
fetches more candidates than asked for and keeps each one only if it is not near-identical to a better one.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dvtr_data.precaption.bank import normalize_caption


def _select(scores: np.ndarray, index: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the ``k`` best (score descending, index ascending) of ``scores`` with bank positions ``index``."""
    order = np.lexsort((index, -scores), axis=-1)[:, :k]
    return np.take_along_axis(scores, order, -1), np.take_along_axis(index, order, -1)


def top_k(queries: np.ndarray, bank: np.ndarray, k: int, *, chunk: int = 8192,
          query_block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` rows of ``bank`` for each query by dot product.

    Returns ``(scores, indices)``, both ``(n_queries, min(k, len(bank)))``, best first.
    """
    queries = np.asarray(queries, np.float32)
    bank = np.asarray(bank, np.float32)
    n, b = len(queries), len(bank)
    k = min(k, b)
    out_s = np.empty((n, k), np.float32)
    out_i = np.empty((n, k), np.int64)
    if n == 0 or k == 0:
        return out_s, out_i
    for q0 in range(0, n, query_block):
        q = queries[q0:q0 + query_block]
        best_s = np.empty((len(q), 0), np.float32)
        best_i = np.empty((len(q), 0), np.int64)
        for c0 in range(0, b, chunk):
            s = q @ bank[c0:c0 + chunk].T
            width = s.shape[1]
            kk = min(k, width)
            if kk < width:
                # cheap partition first; rows whose k-th score is tied beyond the cut take the exact path
                part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
                part_s = np.take_along_axis(s, part, 1)
                kth = part_s.min(axis=1, keepdims=True)
                ties = (s >= kth).sum(axis=1) > kk
                if ties.any():
                    full = np.lexsort((np.broadcast_to(np.arange(width), s.shape), -s), axis=-1)[:, :kk]
                    part[ties] = full[ties]
                    part_s = np.take_along_axis(s, part, 1)
                cand_s, cand_i = part_s, part + c0
            else:
                cand_s, cand_i = s, np.broadcast_to(np.arange(c0, c0 + width), s.shape)
            best_s, best_i = _select(np.concatenate([best_s, cand_s], 1), np.concatenate([best_i, cand_i], 1), k)
        out_s[q0:q0 + len(q)] = best_s
        out_i[q0:q0 + len(q)] = best_i
    return out_s, out_i


def near_identical(a: str, b: str, threshold: float) -> bool:
    """Whether two normalised captions differ by no more than punctuation, case, spacing or a few characters."""
    if a == b:
        return True
    if threshold >= 1.0:
        return False
    sm = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return sm.real_quick_ratio() >= threshold and sm.quick_ratio() >= threshold and sm.ratio() >= threshold


@dataclass(frozen=True)
class Draft:
    """One retrieved caption for one clip."""

    rank: int
    index: int  # position in the bank
    text: str
    score: float


def distinct_top_k(queries: np.ndarray, bank_vectors: np.ndarray, texts: Sequence[str], k: int, *,
                   threshold: float = 0.9, chunk: int = 8192, overfetch: int = 4) -> list[list[Draft]]:
    """Per query, the ``k`` best captions of which no two are near-identical (see `near_identical`).

    Candidates are fetched ``overfetch`` times deeper than ``k``; rows that run out fetch deeper, up to the whole
    bank, so a bank of near-copies still yields its distinct captions.
    """
    n = len(queries)
    results: list[list[Draft]] = [[] for _ in range(n)]
    if n == 0 or k <= 0 or len(texts) == 0:
        return results
    depth = min(len(texts), k * overfetch + 8)
    todo = np.arange(n)
    norm_cache: dict[int, str] = {}
    while len(todo):
        scores, idx = top_k(queries[todo], bank_vectors, depth, chunk=chunk)
        short = []
        for row, q in enumerate(todo):
            chosen: list[tuple[int, float, str]] = []
            for s, i in zip(scores[row], idx[row], strict=True):
                i = int(i)
                norm = norm_cache.get(i)
                if norm is None:
                    norm = norm_cache[i] = normalize_caption(texts[i])
                if any(near_identical(norm, c, threshold) for _, _, c in chosen):
                    continue
                chosen.append((i, float(s), norm))
                if len(chosen) == k:
                    break
            if len(chosen) < k and depth < len(texts):
                short.append(q)
            results[q] = [Draft(r + 1, i, texts[i], s) for r, (i, s, _) in enumerate(chosen)]
        if not short:
            break
        todo = np.asarray(short)
        depth = min(len(texts), depth * 4)
    return results
