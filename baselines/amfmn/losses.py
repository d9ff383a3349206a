"""AMFMN's losses: the released fixed-margin bidirectional hinge and the paper's dynamic variable margin.

Scores are ``[B, B]`` with images on rows and captions on columns, the positive pairs on the diagonal (the
released ``calcul_loss``). For image ``i`` and caption ``j != i``::

    cost_s[i, j]  = [m[i, j] + S(i, j) - S(i, i)]_+     (caption retrieval: a wrong caption j for image i)
    cost_im[i, j] = [m[i, j] + S(i, j) - S(j, j)]_+     (image retrieval: a wrong image i for caption j)

summed over every negative (released: ``max_violation 0``), or the hardest one per row / column (VSE++).

The released code has ``m = 0.2``. The paper's margin depends on the pair (its Eq. 13-14)::

    m[i, j] = gamma * (e^beta - e^(beta * P[i, j])) / (e^beta - 1)

where ``P[i, j]`` is the prior similarity of caption ``j`` to image ``i``'s captions (1: a copy of one of them,
margin 0; 0: unrelated, margin gamma). In both hinge terms of a pair (i, j) the negative relation is the same
(caption j against image i's captions), so one ``[B, B]`` margin matrix serves both.

The prior similarity is the released ``Rct/generate_t2i_sim_matrix.py``: the mean of (a) sentence BLEU-4 of
the caption against the image's captions (NLTK ``sentence_bleu``, no smoothing; exactly 1 when the caption's
tokens equal one reference's) and (b) the mean over the image's captions of |shared content words| / |that
caption's content words| (Porter-stemmed, lower-cased, stop words and ``,`` ``.`` removed after stemming, as
released; references without content words are skipped). Tokens: ``text.word_tokens`` (NLTK's word tokenizer;
see ``text.py`` for the stand-ins of NLTK data files).
"""

from __future__ import annotations

import math
import sys
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from nltk.stem import PorterStemmer
from nltk.translate.bleu_score import sentence_bleu
from torch import Tensor

from .text import stop_words, word_tokens

_STOP = stop_words() | {",", "."}
_STEMMER = PorterStemmer()


def dynamic_margin(prior: Tensor | float, gamma: float, beta: float) -> Tensor:
    """``gamma * (e^beta - e^(beta * prior)) / (e^beta - 1)``; ``beta = 0`` is its limit ``gamma * (1 - prior)``."""
    p = torch.as_tensor(prior, dtype=torch.float64 if not isinstance(prior, Tensor) else prior.dtype)
    if abs(beta) < 1e-12:
        return gamma * (1 - p)
    return gamma * (math.exp(beta) - torch.exp(beta * p)) / (math.exp(beta) - 1)


def triplet_loss(scores: Tensor, margin: Tensor | float, *, max_violation: bool = False) -> Tensor:
    """The bidirectional hinge of the module docstring; ``margin`` a number or a ``[B, B]`` matrix."""
    n = scores.shape[0]
    diagonal = scores.diagonal().view(n, 1)
    cost_s = (margin + scores - diagonal).clamp(min=0)
    cost_im = (margin + scores - diagonal.t()).clamp(min=0)
    eye = torch.eye(n, dtype=torch.bool, device=scores.device)
    cost_s = cost_s.masked_fill(eye, 0)
    cost_im = cost_im.masked_fill(eye, 0)
    if max_violation:
        return cost_s.max(1)[0].sum() + cost_im.max(0)[0].sum()
    return cost_s.sum() + cost_im.sum()


@lru_cache(maxsize=65536)
def _preprocess(sentence: str) -> tuple[tuple[str, ...], frozenset[str]]:
    """(stemmed lower-cased tokens, content-word set) of a caption."""
    tokens = tuple(_STEMMER.stem(w.lower()) for w in word_tokens(sentence))
    return tokens, frozenset(w for w in tokens if w not in _STOP)


def prior_similarity(references: Sequence[str], caption: str) -> float:
    """The released ``calc_sim(sent_visual, sent_caption)``: mean of BLEU-4 and content-word overlap."""
    refs = [_preprocess(r) for r in references]
    tokens, content = _preprocess(caption)
    ref_tokens = [list(r[0]) for r in refs]
    if list(tokens) in ref_tokens:
        bleu = 1.0
    else:
        with warnings.catch_warnings():  # NLTK warns when an n-gram order has no overlap (the score is then ~0)
            warnings.simplefilter("ignore")
            bleu = float(sentence_bleu(ref_tokens, list(tokens), weights=(0.25, 0.25, 0.25, 0.25)))
    overlaps = [len(set(r[1]) & content) / len(r[1]) for r in refs if len(r[1]) != 0]
    overlap = float(np.mean(overlaps)) if overlaps else float("nan")
    return float(np.mean([bleu, overlap]))


def _ngram_counts(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


@dataclass
class _References:
    """One image's captions, preprocessed once: what BLEU-4 and the overlap need of them."""

    tokens: set[tuple[str, ...]]
    lengths: list[int]
    max_counts: list[dict[tuple[str, ...], int]]  # per n-gram order: the largest count in any reference
    content: list[frozenset[str]]  # non-empty content-word sets


@dataclass
class _Caption:
    tokens: tuple[str, ...]
    counts: list[Counter[tuple[str, ...]]]
    content: frozenset[str]


def _bleu4(refs: _References, cap: _Caption) -> float:
    """NLTK's ``sentence_bleu`` (weights 1/4, no smoothing) from precomputed counts; the same number.

    Modified precision of order n: caption n-grams clipped by their largest count in one reference, over
    ``max(1, caption n-grams)``; an order without a match counts as ``sys.float_info.min`` (NLTK's method0),
    none at order 1 gives 0; brevity penalty from the reference length closest to the caption's (ties: the
    shorter).
    """
    logs = []
    for n in range(4):
        counts = cap.counts[n]
        best = refs.max_counts[n]
        numerator = sum(min(c, best.get(g, 0)) for g, c in counts.items())
        if n == 0 and numerator == 0:
            return 0.0
        denominator = max(1, sum(counts.values()))
        logs.append(0.25 * math.log(numerator / denominator if numerator else sys.float_info.min))
    hyp = len(cap.tokens)
    ref = min(refs.lengths, key=lambda r: (abs(r - hyp), r))
    bp = 1.0 if hyp > ref else (0.0 if hyp == 0 else math.exp(1 - ref / hyp))
    return bp * math.exp(math.fsum(logs))


class PriorSimilarity:
    """Prior similarities of a training split's captions to its clips' caption sets, computed on demand.

    The released script fills the whole ``[images, captions]`` matrix with NLTK first (about 1.5 ms a pair,
    quadratic in the split); a batch needs only its ``B x B`` block. Here every image's reference n-gram counts
    and every caption's own are computed once, and a pair costs a few dictionary look-ups; the numbers are
    :func:`prior_similarity`'s (NLTK's BLEU), which the tests hold it to. Computed pairs are kept, up to
    ``max_cached`` of them (then the store starts again), so memory stays bounded on large splits.
    """

    def __init__(self, clip_captions: Sequence[Sequence[str]], captions: Sequence[str], *, max_cached: int = 2_000_000) -> None:
        self.clip_captions = [list(c) for c in clip_captions]
        self.captions = list(captions)
        self.max_cached = max_cached
        self._refs: dict[int, _References] = {}
        self._caps: dict[int, _Caption] = {}
        self._cache: dict[tuple[int, int], float] = {}

    def _reference(self, clip: int) -> _References:
        if clip not in self._refs:
            pre = [_preprocess(t) for t in self.clip_captions[clip]]
            max_counts: list[dict[tuple[str, ...], int]] = []
            for n in range(1, 5):
                best: dict[tuple[str, ...], int] = {}
                for tokens, _ in pre:
                    for g, c in _ngram_counts(tokens, n).items():
                        best[g] = max(best.get(g, 0), c)
                max_counts.append(best)
            self._refs[clip] = _References(
                {p[0] for p in pre}, [len(p[0]) for p in pre], max_counts, [p[1] for p in pre if p[1]]
            )
        return self._refs[clip]

    def _caption(self, caption: int) -> _Caption:
        if caption not in self._caps:
            tokens, content = _preprocess(self.captions[caption])
            self._caps[caption] = _Caption(tokens, [_ngram_counts(tokens, n) for n in range(1, 5)], content)
        return self._caps[caption]

    def value(self, clip: int, caption: int) -> float:
        key = (clip, caption)
        if key not in self._cache:
            refs, cap = self._reference(clip), self._caption(caption)
            if not refs.lengths:
                value = 0.0  # an image without captions (not in a loaded split)
            else:
                bleu = 1.0 if cap.tokens in refs.tokens else _bleu4(refs, cap)
                overlaps = [len(r & cap.content) / len(r) for r in refs.content]
                # no reference with a content word: the released mean is NaN; the BLEU term alone here
                value = bleu if not overlaps else (bleu + sum(overlaps) / len(overlaps)) / 2
            if len(self._cache) >= self.max_cached:
                self._cache.clear()
            self._cache[key] = value
        return self._cache[key]

    def block(self, clips: Sequence[int], captions: Sequence[int]) -> Tensor:
        """``[len(clips), len(captions)]`` float32."""
        return torch.tensor([[self.value(c, t) for t in captions] for c in clips], dtype=torch.float32)

    def matrix(self) -> Tensor:
        """The released script's full ``[clips, captions]`` matrix."""
        return self.block(range(len(self.clip_captions)), range(len(self.captions)))
