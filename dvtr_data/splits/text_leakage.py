"""Text-level leakage: the same (or almost the same) caption on both sides of a split, or on several clips of one.

Clips are kept apart by flight, place and visual near-duplicates; captions are not, and a caption written word for
word in train and in test lets a model score by remembering text. Three measures, per pair of splits:

* **identical**: captions equal after `dvtr_data.text.normalise` (lower case, punctuation dropped, single spaces).
* **near-identical**: different normalised texts whose `rapidfuzz.fuzz.ratio` (normalised Indel similarity, 0-100)
  is at least ``NEAR_THRESHOLD`` (90: at most one changed character in ten). Up to ``EXACT_MAX`` distinct texts every
  pair is scored (`rapidfuzz.process.cdist`, exact); above it candidates come from MinHash signatures
  (`datasketch`, 128 values over character 3-grams) banded for LSH (16 bands of 8 values, in numpy: datasketch's
  own index inserts and queries one text at a time in Python, minutes too slow at 500,000 texts), and each
  candidate is scored with the same ratio: every reported pair is real, and the count is a lower bound (the
  method is stated). A pair one typo apart has a 3-gram Jaccard around 0.75-0.9, found with probability
  0.85-0.99 per pair; the benchmark (benchmarks/text_leakage.py) measures it.
* **shared inside one split**: a normalised text on two or more clips of one split; text-to-video retrieval then
  has several right answers for that query.

Glue (used by `split`, on by default): clips whose human or imported captions are identical after normalisation are
linked so they land in one split. Generated template captions (origin ``simulated``) and drafts (``precaption``)
never glue: templates repeat by design. A text on more than ``GLUE_CAP`` clips does not glue either (a generic
sentence such as "a road" would otherwise pull hundreds of clips into one group); those texts are reported as cut.
The report recounts the promise from the final splits and the captions alone (`glue_recount`), never from the links.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from dvtr_data.text import normalise

SPLIT_ORDER = ("train", "val", "test")
NEAR_THRESHOLD = 90.0
EXACT_MAX = 4000  # distinct texts up to which every pair is scored (16 M pairs in C++: about a second)
BANDS, ROWS = 16, 8  # LSH: 128 MinHash values in 16 bands of 8; a pair is a candidate when one band agrees
SHINGLE = 3
MAX_BUCKET = 2000  # a band bucket larger than this (a very common phrase) is searched only among neighbours
GLUE_ORIGINS = frozenset({"human", "imported"})
GLUE_CAP = 10
MAX_EXAMPLES = 5


@dataclass(frozen=True)
class CaptionRow:
    """One caption as text leakage sees it: the clip it describes, its raw text and where it came from."""

    clip_id: str
    text: str
    origin: str


def caption_rows(captions: Any, *, accepted_only: bool = True) -> list[CaptionRow]:
    """Rows of a ``captions`` table (pyarrow): submitted ones, and only accepted ones when ``accepted_only``."""
    if not captions.num_rows:
        return []
    cols = {n: captions.column(n).to_pylist() for n in ("clip_id", "text", "origin", "status", "accepted")}
    out: list[CaptionRow] = []
    for cid, text, origin, status, acc in zip(
        cols["clip_id"], cols["text"], cols["origin"], cols["status"], cols["accepted"], strict=True
    ):
        if status != "submitted" or (accepted_only and not acc):
            continue
        out.append(CaptionRow(cid, text or "", origin or ""))
    return out


# ---------------------------------------------------------------------------------------------------------
# near-identical pairs among distinct texts
# ---------------------------------------------------------------------------------------------------------
def _shingles(text: str) -> set[bytes]:
    padded = f" {text} ".encode()
    if len(padded) <= SHINGLE:
        return {padded}
    return {padded[i : i + SHINGLE] for i in range(len(padded) - SHINGLE + 1)}


def _crc32(data: bytes) -> int:
    """The shingle hash MinHash permutes: crc32 is fast C and spreads short strings well enough for it."""
    return zlib.crc32(data)


def _band_candidates(matrix: np.ndarray) -> np.ndarray:
    """Pairs ``(i, j)``, ``i < j``, of rows equal on all ``ROWS`` values of at least one band (unique, sorted).

    The rows are grouped per band by sorting the band's values; a bucket larger than ``MAX_BUCKET`` contributes
    each row paired with its ``MAX_BUCKET`` successors only, which bounds the work on degenerate inputs.
    """
    n = len(matrix)
    chunks: list[np.ndarray] = []
    for b in range(BANDS):
        band = np.ascontiguousarray(matrix[:, b * ROWS : (b + 1) * ROWS])
        keys = band.view(np.dtype((np.void, band.dtype.itemsize * ROWS))).ravel()
        order = np.argsort(keys, kind="stable")
        sk = keys[order]
        starts = np.flatnonzero(np.concatenate([[True], sk[1:] != sk[:-1]]))
        sizes = np.diff(np.concatenate([starts, [n]]))
        for st, size in zip(starts[sizes > 1].tolist(), sizes[sizes > 1].tolist(), strict=True):
            members = np.sort(order[st : st + size])
            if size <= MAX_BUCKET:
                ii, jj = np.triu_indices(size, k=1)
            else:
                ii = np.repeat(np.arange(size), MAX_BUCKET)
                jj = ii + np.tile(np.arange(1, MAX_BUCKET + 1), size)
                keep = jj < size
                ii, jj = ii[keep], jj[keep]
            chunks.append(members[ii].astype(np.int64) * n + members[jj])
    if not chunks:
        return np.zeros((0, 2), dtype=np.int64)
    codes = np.unique(np.concatenate(chunks))
    return np.stack([codes // n, codes % n], axis=1)


def near_pairs(
    texts: Sequence[str],
    threshold: float = NEAR_THRESHOLD,
    *,
    exact_max: int = EXACT_MAX,
    seed: int = 1,
) -> tuple[list[tuple[int, int, float]], str]:
    """Pairs ``(i, j, score)`` with ``i < j`` of distinct ``texts`` whose fuzz.ratio is at least ``threshold``.

    Returns the pairs and the method used: ``exact`` (every pair scored) or ``minhash-lsh`` (candidates, then
    scored). The texts must already be normalised and distinct.
    """
    from rapidfuzz import fuzz, process

    n = len(texts)
    if n < 2:
        return [], "exact"
    found: list[tuple[int, int, float]] = []
    if n <= exact_max:
        block = 512
        for s in range(0, n, block):
            scores = process.cdist(
                texts[s : s + block], texts, scorer=fuzz.ratio, score_cutoff=threshold, dtype=np.float32
            )
            ii, jj = np.nonzero(scores >= threshold)
            for a, b in zip((ii + s).tolist(), jj.tolist(), strict=True):
                if a < b:
                    found.append((a, b, float(scores[a - s, b])))
        return found, "exact"

    from datasketch import MinHash

    # one signature at a time into a uint32 matrix (MinHash values are 32-bit): 512 bytes a text, no set kept
    matrix = np.empty((n, BANDS * ROWS), dtype=np.uint32)
    sigs = MinHash.generator((_shingles(t) for t in texts), num_perm=BANDS * ROWS, seed=seed, hashfunc=_crc32)
    for k, m in enumerate(sigs):
        matrix[k] = m.hashvalues
    for i, j in _band_candidates(matrix).tolist():
        score = fuzz.ratio(texts[i], texts[j], score_cutoff=threshold)
        if score >= threshold:
            found.append((i, j, float(score)))
    found.sort()
    return found, "minhash-lsh"


# ---------------------------------------------------------------------------------------------------------
# the counts
# ---------------------------------------------------------------------------------------------------------
def text_leakage(
    captions: Iterable[CaptionRow],
    split_of: dict[str, str],
    *,
    splits: Sequence[str] = SPLIT_ORDER,
    threshold: float = NEAR_THRESHOLD,
    exact_max: int = EXACT_MAX,
) -> dict[str, Any]:
    """Identical, near-identical and shared-inside-a-split captions of the clips in ``split_of`` (clip -> split).

    Per pair ``a-b`` (``a`` before ``b`` in ``splits``): ``identical.texts`` distinct normalised texts in both,
    ``identical.captions`` captions of ``b`` whose text is in ``a`` and ``identical.share`` their share of ``b``'s
    captions; ``near`` the same for captions of ``b`` with no identical text in ``a`` but a near-identical one.
    Per split: ``shared_within.texts`` texts on two or more of its clips, ``clips`` the clips carrying one,
    ``captions`` the captions carrying one. Empty captions (nothing left after normalisation) are left out.
    """
    texts_of_split: dict[str, dict[str, int]] = {s: defaultdict(int) for s in splits}
    clips_of_text: dict[str, dict[str, set[str]]] = {s: defaultdict(set) for s in splits}
    n_captions = dict.fromkeys(splits, 0)
    for row in captions:
        s = split_of.get(row.clip_id)
        if s not in texts_of_split:
            continue
        t = normalise(row.text)
        if not t:
            continue
        texts_of_split[s][t] += 1
        clips_of_text[s][t].add(row.clip_id)
        n_captions[s] += 1

    distinct = sorted(set().union(*(set(v) for v in texts_of_split.values())))
    index = {t: k for k, t in enumerate(distinct)}
    pairs, method = near_pairs(distinct, threshold, exact_max=exact_max)
    partners: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for i, j, sc in pairs:
        partners[i].append((j, sc))
        partners[j].append((i, sc))

    report: dict[str, Any] = {
        "normalisation": "dvtr_data.text.normalise (lower-cased words, punctuation dropped)",
        "similarity": f"rapidfuzz.fuzz.ratio >= {threshold:g}",
        "near_method": method,
        "distinct_texts": len(distinct),
        "near_text_pairs": len(pairs),
        "captions": n_captions,
        "pairs": {},
        "shared_within": {},
    }
    for a, b in combinations(splits, 2):
        ta, tb = texts_of_split[a], texts_of_split[b]
        same = [t for t in tb if t in ta]
        same_caps = sum(tb[t] for t in same)
        near_texts: list[tuple[str, str, float]] = []
        for t in tb:
            if t in ta:
                continue
            best = max(
                ((distinct[j], sc) for j, sc in partners.get(index[t], []) if distinct[j] in ta),
                key=lambda x: x[1],
                default=None,
            )
            if best is not None:
                near_texts.append((t, best[0], best[1]))
        near_caps = sum(tb[t] for t, _, _ in near_texts)
        denom = n_captions[b] or 1
        report["pairs"][f"{a}-{b}"] = {
            "identical": {
                "texts": len(same),
                "captions": same_caps,
                "share": round(same_caps / denom, 4),
                "examples": sorted(same)[:MAX_EXAMPLES],
            },
            "near": {
                "texts": len(near_texts),
                "captions": near_caps,
                "share": round(near_caps / denom, 4),
                "examples": [
                    {b: t, a: u, "score": round(sc, 1)} for t, u, sc in sorted(near_texts)[:MAX_EXAMPLES]
                ],
            },
        }
    for s in splits:
        shared = {t: c for t, c in clips_of_text[s].items() if len(c) > 1}
        clips_hit = set().union(*shared.values()) if shared else set()
        report["shared_within"][s] = {
            "texts": len(shared),
            "clips": len(clips_hit),
            "captions": sum(texts_of_split[s][t] for t in shared),
            "largest": max((len(c) for c in shared.values()), default=0),
            "examples": [
                {"text": t, "clips": len(c)}
                for t, c in sorted(shared.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:MAX_EXAMPLES]
            ],
        }
    return report


# ---------------------------------------------------------------------------------------------------------
# glue for `split`
# ---------------------------------------------------------------------------------------------------------
def _glue_texts(captions: Iterable[CaptionRow], clip_set: set[str] | None = None) -> dict[str, list[str]]:
    """Normalised human/imported text -> its clips (sorted), for texts on two or more clips."""
    clips_of: dict[str, set[str]] = defaultdict(set)
    for row in captions:
        if row.origin not in GLUE_ORIGINS or (clip_set is not None and row.clip_id not in clip_set):
            continue
        t = normalise(row.text)
        if t:
            clips_of[t].add(row.clip_id)
    return {t: sorted(c) for t, c in clips_of.items() if len(c) > 1}


def glue_pairs(
    clip_ids: Sequence[str],
    captions: Iterable[CaptionRow],
    pinned: np.ndarray | None = None,
    *,
    cap: int = GLUE_CAP,
) -> tuple[tuple[np.ndarray, np.ndarray], dict[str, Any]]:
    """Links ``(i, j)`` (indices into ``clip_ids``) between clips sharing a human or imported caption.

    Each text links its clips in a star from its first clip that is not ``pinned`` (a published clip whose split
    the published set fixes): two pinned clips are never linked to each other, since their split is not ours to
    choose (their overlap is the published set's leakage, counted in the report). Texts on more than ``cap``
    clips do not glue; the returned summary says how many texts and clips that cut.
    """
    pos = {c: k for k, c in enumerate(clip_ids)}
    pin = np.zeros(len(clip_ids), dtype=bool) if pinned is None else np.asarray(pinned, dtype=bool)
    ii: list[int] = []
    jj: list[int] = []
    used = cut = 0
    cut_clips: set[str] = set()
    for _t, members in sorted(_glue_texts(captions, set(pos)).items()):
        if len(members) > cap:
            cut += 1
            cut_clips.update(members)
            continue
        idx = [pos[c] for c in members]
        hubs = [k for k in idx if not pin[k]]
        if not hubs:
            continue
        used += 1
        hub = hubs[0]
        for k in idx:
            if k != hub:
                ii.append(min(hub, k))
                jj.append(max(hub, k))
    info = {
        "origins": sorted(GLUE_ORIGINS),
        "cap": cap,
        "texts_glued": used,
        "links": len(ii),
        "texts_over_cap": cut,
        "clips_in_texts_over_cap": len(cut_clips),
    }
    return (np.asarray(ii, dtype=np.int64), np.asarray(jj, dtype=np.int64)), info


def glue_recount(
    captions: Iterable[CaptionRow],
    split_of: dict[str, str],
    published: set[str] | frozenset[str] = frozenset(),
    *,
    cap: int = GLUE_CAP,
) -> dict[str, Any]:
    """The glue promise counted again from the final splits: glued texts (human/imported, 2..cap clips in a split)
    whose clips sit in more than one split. Texts whose every clip is published are counted apart."""
    in_split = {c for c, s in split_of.items() if s in SPLIT_ORDER}
    straddling = straddling_published = 0
    examples: list[str] = []
    for t, members in sorted(_glue_texts(captions, in_split).items()):
        if len(members) > cap:
            continue
        if len({split_of[c] for c in members}) > 1:
            if all(c in published for c in members):
                straddling_published += 1
            else:
                straddling += 1
                if len(examples) < MAX_EXAMPLES:
                    examples.append(t)
    return {
        "texts_straddling": straddling,
        "texts_straddling_published_only": straddling_published,
        "examples": examples,
    }


# ---------------------------------------------------------------------------------------------------------
# what `split` calls
# ---------------------------------------------------------------------------------------------------------
def split_report(
    split: np.ndarray,
    clip_ids: Sequence[str],
    rows: Sequence[CaptionRow],
    pinned: np.ndarray,
    *,
    glue: dict[str, Any] | None,
    cap: int = GLUE_CAP,
    threshold: float = NEAR_THRESHOLD,
) -> dict[str, Any]:
    """The split report's ``leakage.text`` section: the counts of `text_leakage` over the final splits (accepted
    captions), the glue settings and what the cap cut (``glue``, None when glue was off) and its recount.

    ``pinned[i]`` is true for clips whose split the published set fixed: texts only they share are not ours.
    """
    split_of = {c: str(s) for c, s in zip(clip_ids, split.tolist(), strict=True) if s in SPLIT_ORDER}
    out = text_leakage(rows, split_of, threshold=threshold)
    out["glue"] = glue
    if glue is not None:
        published = {c for c, p in zip(clip_ids, np.asarray(pinned, dtype=bool).tolist(), strict=True) if p}
        out["glue_recount"] = glue_recount(rows, split_of, published, cap=cap)
    return out
