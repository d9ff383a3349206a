"""AMFMN's losses, prior similarity, vocabulary and learning-rate schedule against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dvtr_data.baselines.amfmn import (
    PriorSimilarity,
    Vocabulary,
    dynamic_margin,
    prior_similarity,
    triplet_loss,
)
from dvtr_data.baselines.amfmn.family import AMFMNFamily
from dvtr_data.baselines.amfmn.text import caption_tokens
from dvtr_data.baselines.engine.registry import registered


def test_dynamic_margin_end_points_and_a_middle_value() -> None:
    # S = 0 -> gamma; S = 1 -> 0; gamma 0.6, beta 5, S 0.5: 0.6 (e^5 - e^2.5) / (e^5 - 1) = 0.554485 (by hand)
    got = dynamic_margin(torch.tensor([0.0, 1.0, 0.5]), 0.6, 5.0)
    torch.testing.assert_close(got, torch.tensor([0.6, 0.0, 0.5544851]), rtol=0, atol=1e-6)
    # beta -> 0 is linear: gamma (1 - S)
    torch.testing.assert_close(dynamic_margin(torch.tensor([0.25]), 0.8, 0.0), torch.tensor([0.6]))
    # beta > 0 is convex decay: the margin stays high longer than the linear one
    assert float(dynamic_margin(torch.tensor(0.5), 0.6, 5.0)) > 0.3


def test_triplet_loss_sums_every_violating_negative_both_ways() -> None:
    s = torch.tensor([[0.5, 0.6], [0.4, 0.3]])  # rows images, columns captions, positives on the diagonal
    # caption retrieval: .2+.6-.5 = .3, .2+.4-.3 = .3; image retrieval: .2+.6-.3 = .5, .2+.4-.5 = .1
    assert float(triplet_loss(s, 0.2)) == pytest.approx(1.2)
    # a margin per pair: m[0,1] = 0, m[1,0] = .1 -> .1 + .2 + .3 + 0
    m = torch.tensor([[9.0, 0.0], [0.1, 9.0]])  # the diagonal is never used
    assert float(triplet_loss(s, m)) == pytest.approx(0.6)


def test_triplet_loss_hardest_negatives() -> None:
    s = torch.tensor([[0.5, 0.6, 0.1], [0.4, 0.3, 0.2], [0.0, 0.9, 0.7]])
    # rows (caption retrieval): max .3, .3, .4 = 1.0; columns (image retrieval): max .1, .8, 0 = .9
    assert float(triplet_loss(s, 0.2, max_violation=True)) == pytest.approx(1.9)
    # summed: rows .3 + .3 + .1 + .4 = 1.1; columns .1 + .5 + .8 = 1.4
    assert float(triplet_loss(s, 0.2)) == pytest.approx(2.5)


def test_prior_similarity_hand_cases() -> None:
    refs = ["a red car on the road", "two trees"]
    # an exact copy: BLEU 1; content words {red, car, road}: 3/3 against the first reference, 0/2 the second
    assert prior_similarity(refs, "a red car on the road") == pytest.approx((1 + 0.5) / 2)
    # nothing shared: BLEU 0 (no unigram), overlap 0
    assert prior_similarity(["a red car on the road"], "green field") == pytest.approx(0.0)
    # one word changed: n-gram precisions 5/6, 4/5, 3/4, 2/3, same length -> BLEU (1/3)^(1/4) = 0.759836;
    # content words all shared ("the" is a stop word)
    assert prior_similarity(["a red car on the road"], "the red car on the road") == pytest.approx(0.8799178, abs=1e-6)
    # Porter stemming: "buildings" and "building" are one content word
    assert prior_similarity(["tall buildings"], "a tall building") > prior_similarity(["tall buildings"], "a tall tree")


def test_prior_similarity_blocks_are_the_released_matrix_entries() -> None:
    clips = [["a red car", "red car on a road"], ["green trees", "a park with trees"]]
    caps = ["a red car", "red car on a road", "green trees", "a park with trees"]
    prior = PriorSimilarity(clips, caps)
    full = prior.matrix()
    assert full.shape == (2, 4)
    for i in range(2):
        for j in range(4):
            assert float(full[i, j]) == pytest.approx(prior_similarity(clips[i], caps[j]), abs=1e-6)
    torch.testing.assert_close(prior.block([1, 0], [3, 0]), full[[1, 0]][:, [3, 0]])
    assert float(full[0, 0]) > float(full[1, 0])  # a caption is closer to its own image's captions


def test_fast_prior_similarity_is_nltks_on_random_captions() -> None:
    """The precomputed-counts BLEU equals NLTK's sentence_bleu: short and long captions, repeats, stop words,
    punctuation, exact copies, no shared word."""
    rng = np.random.default_rng(0)
    words = ["a", "the", "red", "car", "cars", "on", "road", "two", "trees", "is", "near", ",", ".", "white", "house"]

    def sentence() -> str:
        return " ".join(rng.choice(words, size=int(rng.integers(1, 12))))

    clips = [[sentence() for _ in range(int(rng.integers(1, 6)))] for _ in range(12)]
    caps = [sentence() for _ in range(30)] + [clips[0][0], clips[3][-1], "green field"]
    for refs in clips:  # near copies (one word changed, or cut short): BLEU strictly between 0 and 1
        toks = max(refs, key=len).split()
        caps.append(" ".join([*toks[:2], "green", *toks[3:]]) if len(toks) > 6 else " ".join(toks + ["green"]))
    prior = PriorSimilarity(clips, caps)
    got = prior.matrix().double()
    for i, refs in enumerate(clips):
        for j, cap in enumerate(caps):
            expected = prior_similarity(refs, cap)
            if math.isnan(expected):  # no reference with a content word: the BLEU term alone here
                continue
            assert float(got[i, j]) == pytest.approx(expected, abs=1e-6), (refs, cap)
    assert float(got[0, 30]) >= 0.5  # an exact copy: BLEU 1
    bleu_between = [sentence_bleu_of(clips[i], caps[33 + i]) for i in range(len(clips))]
    assert sum(0.1 < b < 1 for b in bleu_between) >= 3  # the comparison covered partial BLEU, not only 0 and 1


def sentence_bleu_of(refs: list[str], cap: str) -> float:
    """The BLEU term of the prior alone, straight from NLTK."""
    import warnings

    from nltk.stem import PorterStemmer
    from nltk.translate.bleu_score import sentence_bleu

    from dvtr_data.baselines.amfmn.text import word_tokens

    stem = PorterStemmer().stem
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(sentence_bleu([[stem(w.lower()) for w in word_tokens(r)] for r in refs],
                                   [stem(w.lower()) for w in word_tokens(cap)]))


def test_vocabulary_as_amfmn_builds_it() -> None:
    vocab = Vocabulary.build(["A red car.", "a red boat", "red car"], threshold=2)
    # stop word "a" out; red x3, car x2 kept in first-appearance order; boat x1 dropped; <unk> last
    assert vocab.word2idx == {"red": 1, "car": 2, "<unk>": 3} and vocab.size == 4
    assert vocab.encode("The red car!") == [3, 1, 2]  # stop words become <unk>; "!" is dropped
    assert caption_tokens("Two boats, side-by-side.") == ["two", "boats", "side-by-side"]


def test_learning_rate_decays_as_released() -> None:
    cfg = registered("amfmn")  # lr 2e-4, x0.7 at the start of epochs 20, 40, ... (0-based 19, 39)
    family = AMFMNFamily()
    assert family.learning_rate(cfg, 0) == pytest.approx(2e-4)
    assert family.learning_rate(cfg, 18) == pytest.approx(2e-4)
    assert family.learning_rate(cfg, 19) == pytest.approx(1.4e-4)
    assert family.learning_rate(cfg, 39) == pytest.approx(0.98e-4)
