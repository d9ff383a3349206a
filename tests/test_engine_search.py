"""The fast exact search score against the model's own single-query score and its naive head path."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dvtr_data.baselines.engine.data import ClipRecord
from dvtr_data.baselines.engine.registry import registered
from dvtr_data.baselines.engine.search import SearchIndex, build_index, naive_scores
from dvtr_data.baselines.engine.train import build_model
from dvtr_data.testing.engine import TINY_OVERRIDES


def make_model(name: str = "msam", **options):
    cfg = registered(name).with_overrides({**TINY_OVERRIDES, "model": {"options": options}})
    model = build_model(cfg).eval()
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100))  # OpenAI CLIP's scale: logits up to 40, the hardest case for 1e-5
        for p in model.head.gate.parameters():
            p.normal_(0, 0.3)
    return model


def clip_set(n: int = 500, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(n, 12, 128, generator=g)
    mask = torch.zeros(n, 12, dtype=torch.long)
    lengths = torch.randint(1, 13, (n,), generator=g)
    for i, k in enumerate(lengths.tolist()):
        mask[i, :k] = 1
    frames = torch.where(mask.bool()[..., None], frames, frames[:1, :1])
    clips = [ClipRecord(f"c{i}", Path(f"c{i}.mp4"), flight_id=f"f{i % 7}", start_s=float(i), end_s=i + 5.0) for i in range(n)]
    return clips, frames, mask


def queries(n: int = 20, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 128, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("options", [{}, {"mask_padding_in_head": True}, {"similarity": "fusion_no_gate"}])
def test_search_score_equals_the_models_single_query_score(options) -> None:
    model = make_model(**options)
    clips, frames, mask = clip_set(n=300)
    index = build_index(model, clips, frames, mask)
    for sentence in queries(8):
        # the model scoring this query alone; batching queries changes float32 rounding by ~1e-5 at this scale
        expected = model.single_query_similarity_from_features(sentence[None], frames, mask)[0]
        got = index.scores(F.normalize(sentence, dim=-1))
        assert (got - expected).abs().max().item() <= 1e-5
        assert expected.abs().max() > 5  # real logits, not near-zero values


def test_fast_path_equals_the_naive_head_path_with_identical_top_k() -> None:
    model = make_model()
    clips, frames, mask = clip_set(n=1500)
    index = build_index(model, clips, frames, mask)
    unit_frames = model.frame_embeddings(frames, mask)
    for q in queries(5):
        q = F.normalize(q, dim=-1)
        fast = index.scores(q)
        naive = naive_scores(model, q, unit_frames, mask, chunk=256)
        assert (fast - naive).abs().max().item() <= 1e-5
        assert torch.equal(index.top(q, 10)[1], torch.topk(naive, 10).indices)


def test_mean_pooling_baselines_search_the_pooled_vector() -> None:
    model = make_model("clip4clip-meanp-zeroshot")
    clips, frames, mask = clip_set(n=200)
    index = build_index(model, clips, frames, mask)
    assert index.kind == "mean" and index.frames is None
    sentences = queries(6)
    expected = model.similarity_from_features(sentences, frames, mask)
    got = torch.stack([index.scores(F.normalize(s, dim=-1)) for s in sentences])
    assert (got - expected).abs().max().item() <= 1e-5


def test_half_precision_store_is_close_and_roundtrips() -> None:
    model = make_model()
    clips, frames, mask = clip_set(n=400)
    exact = build_index(model, clips, frames, mask)
    half = build_index(model, clips, frames, mask, store_dtype=torch.float16)
    assert half.frames.dtype == torch.float16 and half.gram.dtype == torch.float32
    q = F.normalize(queries(1)[0], dim=-1)
    err = (half.scores(q) - exact.scores(q)).abs().max().item()
    assert err < 0.05  # logits up to ~40
    state = SearchIndex.from_state(exact.to_state())
    assert state.spans[3] == (3.0, 8.0) and state.flight_ids[3] == "f3"
    torch.testing.assert_close(state.scores(q), exact.scores(q))
