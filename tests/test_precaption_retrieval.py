"""Retrieval: chunked top-k equals a plain full-matrix sort; near-identical drafts collapse; zero-shot tags."""

from __future__ import annotations

import numpy as np
import pytest

from dvtr_data.precaption.retrieval import distinct_top_k, near_identical, top_k
from dvtr_data.precaption.tags import class_vectors, load_class_list, zero_shot


def reference_top_k(q: np.ndarray, b: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The naive answer: every score, sorted by score (descending) then bank position."""
    scores = q.astype(np.float64) @ b.astype(np.float64).T
    idx = np.array([sorted(range(len(b)), key=lambda j: (-scores[i, j], j))[:k] for i in range(len(q))])
    return np.take_along_axis(scores, idx, 1), idx


@pytest.mark.parametrize("chunk,block", [(7, 5), (64, 1000), (10_000, 3)])
@pytest.mark.parametrize("k", [1, 5, 40])
def test_top_k_matches_the_full_matrix(chunk, block, k):
    rng = np.random.default_rng(k + chunk)
    # small integers: every dot product is exact in float32, and ties are frequent
    q = rng.integers(-3, 4, (23, 6)).astype(np.float32)
    b = rng.integers(-3, 4, (301, 6)).astype(np.float32)
    scores, idx = top_k(q, b, k, chunk=chunk, query_block=block)
    ref_s, ref_i = reference_top_k(q, b, k)
    np.testing.assert_array_equal(idx, ref_i)
    np.testing.assert_allclose(scores, ref_s)


def test_top_k_on_unit_vectors_and_small_banks():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(50, 32)).astype(np.float32)
    b = rng.normal(size=(1000, 32)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    scores, idx = top_k(q, b, 10, chunk=128)
    _, ref_i = reference_top_k(q, b, 10)
    np.testing.assert_array_equal(idx, ref_i)
    assert np.all(np.diff(scores, axis=1) <= 0)
    # k larger than the bank: the whole bank, sorted
    s2, i2 = top_k(q[:2], b[:3], 10)
    assert i2.shape == (2, 3) and sorted(i2[0].tolist()) == [0, 1, 2]
    assert top_k(q[:0], b, 3)[0].shape == (0, 3)


def test_the_right_caption_is_found_in_a_bank_whose_vectors_are_known():
    """Bank vector j is a noisy copy of query j (and 5,000 distractors): query j must retrieve j first."""
    rng = np.random.default_rng(1)
    d = 64
    queries = rng.normal(size=(40, d)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    distractors = rng.normal(size=(5000, d)).astype(np.float32)
    bank = np.concatenate([queries + 0.02 * rng.normal(size=queries.shape).astype(np.float32), distractors])
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    order = rng.permutation(len(bank))  # hide the answers at random positions
    bank = bank[order]
    where = np.argsort(order)[:40]
    _, idx = top_k(queries, bank, 5, chunk=512)
    assert (idx[:, 0] == where).all()


def test_near_identical_captions():
    assert near_identical("a red car on a road", "a red car on a road", 0.9)
    assert near_identical("a red car on a road", "a red car on the road", 0.9)
    assert not near_identical("a red car on a road", "a blue boat in a port", 0.9)
    assert not near_identical("a red car on a road", "a red car on the road", 1.0)


def test_distinct_drafts_collapse_near_copies():
    texts = ["A boat in a port.", "a boat in a port", "A boat  in a port!", "A boat in a ports.",
             "A tractor ploughs a field.", "Cars are parked along a street.", "A church with a tower."]
    # the query is text 0's vector; near copies 1-3 score just below it, the rest further away
    vecs = np.array([[1, 0, 0], [0.99, 0.1, 0], [0.98, 0.2, 0], [0.97, 0.24, 0],
                     [0.5, 0.86, 0], [0.4, 0, 0.9], [0.3, 0.3, 0.9]], np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    q = np.array([[1, 0, 0]], np.float32)
    (drafts,) = distinct_top_k(q, vecs, texts, 3)
    assert [d.index for d in drafts] == [0, 4, 5]
    assert [d.rank for d in drafts] == [1, 2, 3]
    assert drafts[0].score == pytest.approx(1.0)
    assert drafts[0].score >= drafts[1].score >= drafts[2].score
    # threshold 1.0 collapses only repeats after normalisation (case, spacing, end punctuation): 3 now counts
    (drafts,) = distinct_top_k(q, vecs, texts, 3, threshold=1.0)
    assert [d.index for d in drafts] == [0, 3, 4]


def test_distinct_drafts_fetch_deeper_when_the_best_are_all_copies():
    texts = [f"a boat in a port{'!' * i}" for i in range(40)] + ["a tractor in a field", "cars on a street"]
    vecs = np.array([[1.0, 0.01 * i] for i in range(40)] + [[0.2, 1.0], [0.1, 1.0]], np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    (drafts,) = distinct_top_k(np.array([[1.0, 0.0]], np.float32), vecs, texts, 3, overfetch=1)
    assert [d.index for d in drafts] == [0, 40, 41]


def test_a_bank_of_copies_yields_fewer_drafts_not_an_error():
    texts = ["a port", "A port.", "a port!"]
    vecs = np.eye(3, dtype=np.float32)
    (drafts,) = distinct_top_k(np.eye(3, dtype=np.float32)[:1], vecs, texts, 5)
    assert len(drafts) == 1


def test_zero_shot_tags_rank_the_right_class_first():
    classes = load_class_list("era")
    prompts = classes.prompt_texts()
    rng = np.random.default_rng(0)
    base = rng.normal(size=(len(classes.classes), 16)).astype(np.float32)
    prompt_vecs = np.stack([base[c] + 0.05 * rng.normal(size=16) for c, _ in prompts]).astype(np.float32)
    prompt_vecs /= np.linalg.norm(prompt_vecs, axis=1, keepdims=True)
    cls = class_vectors(classes, prompt_vecs)
    flood = classes.tags.index("flood")
    clip = base[flood:flood + 1] / np.linalg.norm(base[flood])
    (tags,) = zero_shot(clip, cls, classes.tags, logit_scale=100.0, top=3)
    assert tags[0].tag == "flood" and tags[0].rank == 1
    assert tags[0].score > 0.9 and tags[0].similarity > 0.95
    assert tags[0].score >= tags[1].score >= tags[2].score
    assert len(classes.tags) == 25
