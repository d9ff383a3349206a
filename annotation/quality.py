"""Caption quality figures Label Studio's open-source edition does not compute.

- **Consensus** between the captions of one clip: leave-one-out BLEU-4 and CIDEr-D, each caption scored against
  the clip's other captions (coco-caption's scorers, `pycocoevalcap`, so the figures match what captioning papers
  report). Higher = annotators agree on what the clip shows.
- **Diversity** of the whole set: distinct-n (unique n-grams / all n-grams) and self-BLEU (each caption's BLEU-4
  against all other captions; lower = more diverse), vocabulary size and mean length.
- **Draft reliance**: the share of captions submitted as the draft, unchanged.

Inputs are token lists (`dvtr_data.synth.simulated.tokenize`), so every figure sees the same normalisation.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider

SELF_BLEU_SAMPLE = 300  # hypotheses scored for self-BLEU (all captions up to this many; a seeded sample above)
SELF_BLEU_REFS = 1000  # references per hypothesis, likewise


@dataclass(frozen=True)
class Quality:
    captions: int
    clips_scored: int  # clips with two or more captions (leave-one-out needs a reference)
    bleu4_loo: float | None
    cider_d_loo: float | None
    distinct_1: float | None
    distinct_2: float | None
    self_bleu4: float | None
    mean_words: float | None
    vocabulary: int
    unchanged_draft_share: float | None


def _joined(tokens: Sequence[str]) -> str:
    return " ".join(tokens)


def leave_one_out(by_clip: dict[str, list[list[str]]]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(references, hypotheses) in coco-caption's shape: caption i of a clip against the clip's others."""
    gts: dict[str, list[str]] = {}
    res: dict[str, list[str]] = {}
    for clip_id, caps in sorted(by_clip.items()):
        caps = [c for c in caps if c]
        if len(caps) < 2:
            continue
        for i, hyp in enumerate(caps):
            key = f"{clip_id}#{i}"
            res[key] = [_joined(hyp)]
            gts[key] = [_joined(c) for j, c in enumerate(caps) if j != i]
    return gts, res


def bleu4(gts: dict[str, list[str]], res: dict[str, list[str]]) -> tuple[float, list[float]]:
    """Corpus BLEU-4 (coco-caption: clipped counts summed over all hypotheses, closest reference length) and the
    per-hypothesis BLEU-4 scores."""
    score, per_item = Bleu(4).compute_score(gts, res, verbose=0)
    return float(score[3]), [float(s) for s in per_item[3]]


def cider_d(gts: dict[str, list[str]], res: dict[str, list[str]]) -> float:
    """CIDEr-D (coco-caption's `Cider`: tf-idf n-gram cosine with clipping and a length penalty, x10); the
    document frequencies come from the references passed in, as in the original."""
    score, _ = Cider().compute_score(gts, res)
    return float(score)


def distinct_n(captions: Sequence[Sequence[str]], n: int) -> float | None:
    total = 0
    unique: set[tuple[str, ...]] = set()
    for toks in captions:
        grams = [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]
        total += len(grams)
        unique.update(grams)
    return len(unique) / total if total else None


def self_bleu4(captions: Sequence[Sequence[str]], *, seed: int = 0) -> float | None:
    """Mean sentence BLEU-4 of each caption against every other caption of the set (Texygen's self-BLEU)."""
    caps = [list(c) for c in captions if c]
    if len(caps) < 2:
        return None
    rng = random.Random(seed)
    idx = list(range(len(caps)))
    hyps = idx if len(idx) <= SELF_BLEU_SAMPLE else sorted(rng.sample(idx, SELF_BLEU_SAMPLE))
    gts: dict[str, list[str]] = {}
    res: dict[str, list[str]] = {}
    for i in hyps:
        others = [j for j in idx if j != i]
        if len(others) > SELF_BLEU_REFS:
            others = rng.sample(others, SELF_BLEU_REFS)
        res[str(i)] = [_joined(caps[i])]
        gts[str(i)] = [_joined(caps[j]) for j in others]
    _, per_item = bleu4(gts, res)
    return sum(per_item) / len(per_item)


def caption_quality(by_clip: dict[str, list[list[str]]], unchanged: int = 0, with_draft: int = 0) -> Quality:
    """Every figure of the module docstring for the accepted captions of a dataset, grouped by clip."""
    flat = [c for caps in by_clip.values() for c in caps if c]
    gts, res = leave_one_out(by_clip)
    b4 = bleu4(gts, res)[0] if res else None
    cd = cider_d(gts, res) if res else None
    return Quality(
        captions=len(flat),
        clips_scored=len({k.rsplit("#", 1)[0] for k in res}),
        bleu4_loo=b4,
        cider_d_loo=cd,
        distinct_1=distinct_n(flat, 1),
        distinct_2=distinct_n(flat, 2),
        self_bleu4=self_bleu4(flat),
        mean_words=sum(map(len, flat)) / len(flat) if flat else None,
        vocabulary=len({t for c in flat for t in c}),
        unchanged_draft_share=unchanged / with_draft if with_draft else None,
    )
