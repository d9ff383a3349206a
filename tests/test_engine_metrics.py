"""Retrieval metrics against a plain full-matrix implementation of the authors' metrics, and the paper
protocol's dependence on its 32-caption chunks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dvtr_data.baselines.engine.evaluate import (
    SplitFeatures,
    authors_loop_similarity,
    authors_video_chunks,
    evaluate_features,
    paper_protocol_similarity,
    single_query_similarity,
)
from dvtr_data.baselines.engine.metrics import (
    retrieval_metrics,
    t2v_ranks,
    v2t_ranks_paper,
    v2t_ranks_single,
)
from dvtr_data.baselines.engine.registry import registered
from dvtr_data.baselines.engine.train import build_model
from dvtr_data.testing.engine import TINY_OVERRIDES


# ---------------------------------------------------------------------------------------------- plain reference
def plain_metrics(sim: np.ndarray, caption_clip: np.ndarray) -> dict[str, dict[str, float]]:
    """The authors' eval_epoch + metrics.py, written out: pad to [videos, max captions, videos] with -inf,
    text-to-video by a double argsort on the diagonal blocks, video-to-text by compute_metrics on the group max."""
    n_videos = sim.shape[1]
    cut = [int(np.nonzero(caption_clip == v)[0].max()) + 1 for v in range(n_videos)]
    starts = [0] + cut[:-1]
    max_len = max(e - s for s, e in zip(starts, cut, strict=False))
    padded = np.stack(
        [np.concatenate([sim[s:e], np.full((max_len - (e - s), n_videos), -np.inf)]) for s, e in zip(starts, cut, strict=False)]
    )  # [videos, max_len, videos]
    # tensor_text_to_video_metrics
    stacked = np.transpose(padded, (1, 0, 2))  # [max_len, videos, videos]
    first = np.argsort(-stacked, axis=-1, kind="stable")
    second = np.argsort(first, axis=-1, kind="stable")
    ranks = np.stack([np.diagonal(second[k]) for k in range(max_len)]).reshape(-1)
    diag = np.stack([np.diagonal(padded[:, k, :]) for k in range(max_len)]).reshape(-1)
    valid = ranks[np.isfinite(diag)]
    t2v = {
        "R1": 100 * np.mean(valid < 1), "R5": 100 * np.mean(valid < 5), "R10": 100 * np.mean(valid < 10),
        "MdR": float(np.sort(valid + 1)[(len(valid) - 1) // 2]),  # torch.median: the lower middle value
        "MnR": float(np.mean(valid + 1)),
    }
    # compute_metrics(tensor_video_to_text_sim(.))
    x = padded.max(axis=1).T  # [video queries, caption groups]
    sx = np.sort(-x, axis=1)
    d = np.diag(-x)[:, None]
    ind = np.where(sx - d == 0)[1]
    v2t = {
        "R1": 100 * np.mean(ind == 0), "R5": 100 * np.mean(ind < 5), "R10": 100 * np.mean(ind < 10),
        "MdR": float(np.median(ind) + 1), "MnR": float(np.mean(ind) + 1),
    }
    return {"t2v": t2v, "v2t": v2t}


def random_case(seed: int, n_videos: int = 23, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 6, size=n_videos)  # uneven captions per video
    caption_clip = np.repeat(np.arange(n_videos), counts)
    sim = rng.normal(size=(len(caption_clip), n_videos)).astype(np.float32)
    sim[np.arange(len(caption_clip)), caption_clip] += 1.5  # better than chance
    if ties:
        sim = np.round(sim)  # many exact ties
    return sim, caption_clip


@pytest.mark.parametrize("seed", range(5))
def test_paper_metrics_match_the_plain_full_matrix_implementation(seed: int) -> None:
    sim, caption_clip = random_case(seed)
    ours = retrieval_metrics(torch.from_numpy(sim), torch.from_numpy(caption_clip), protocol="paper")
    ref = plain_metrics(sim, caption_clip)
    for d in ("t2v", "v2t"):
        for m in ("R1", "R5", "R10", "MdR", "MnR"):
            assert ours[d][m] == pytest.approx(ref[d][m], abs=1e-9), (d, m)


@pytest.mark.parametrize("seed", range(3))
def test_video_to_text_ties_count_like_the_authors(seed: int) -> None:
    """compute_metrics emits one rank per tied position; ours reproduces that by default."""
    sim, caption_clip = random_case(seed, ties=True)
    ref = plain_metrics(sim, caption_clip)["v2t"]
    ours = retrieval_metrics(torch.from_numpy(sim), torch.from_numpy(caption_clip), protocol="paper")["v2t"]
    assert ours == pytest.approx(ref)
    expanded = v2t_ranks_paper(torch.from_numpy(sim), torch.from_numpy(caption_clip))
    once = v2t_ranks_paper(torch.from_numpy(sim), torch.from_numpy(caption_clip), ties="optimistic")
    assert len(once) == sim.shape[1] and len(expanded) > len(once)


def test_text_to_video_ties_break_by_video_order() -> None:
    sim = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    assert t2v_ranks(sim, torch.tensor([0, 1, 2])).tolist() == [0, 1, 2]


def test_single_query_video_to_text_ranks_individual_captions() -> None:
    # video 0 owns captions 0, 1; video 1 owns caption 2. Scores [captions, videos].
    sim = torch.tensor([[0.2, 0.9], [0.5, 0.1], [0.7, 0.3]])
    caption_clip = torch.tensor([0, 0, 1])
    # video 0 ranks captions by column 0: c2 (0.7) > c1 (0.5) > c0: its best own caption (c1) is 2nd -> rank 1
    # video 1 ranks by column 1: c0 (0.9) > c2 (0.3): its own c2 is 2nd -> rank 1
    assert v2t_ranks_single(sim, caption_clip).tolist() == [1, 1]
    # the paper protocol ranks groups: video 0's best own caption 0.5 < group 1's 0.7 -> rank 1; video 1: 0.3 < 0.9 -> 1
    assert v2t_ranks_paper(sim, caption_clip).tolist() == [1, 1]


def test_median_conventions() -> None:
    sim = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.5], [0.0, 1.0]])
    m = retrieval_metrics(sim, torch.tensor([0, 0, 1, 1]), protocol="paper")
    # t2v ranks (1-based): 1, 2, 2, 1 -> torch.median takes the lower middle: 1
    assert m["t2v"]["MdR"] == 1.0 and m["t2v"]["MnR"] == 1.5


# ---------------------------------------------------------------------------------------------- chunking
@pytest.fixture(scope="module")
def model():
    cfg = registered("msam").with_overrides(TINY_OVERRIDES)
    torch.manual_seed(0)
    m = build_model(cfg).eval()
    with torch.no_grad():  # a gate that varies across pairs, so the fusion really depends on the chunk
        for p in m.head.gate.parameters():
            p.normal_(0, 0.3)
    return m


def features(n_videos: int = 17, per_video: int = 5, seed: int = 0) -> SplitFeatures:
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(n_videos, 12, 128, generator=g)
    mask = torch.zeros(n_videos, 12, dtype=torch.long)
    for v in range(n_videos):
        mask[v, : 3 + v % 9] = 1
    frames = torch.where(mask.bool()[..., None], frames, frames[:1, :1])  # padding frames share one feature
    caption_clip = torch.arange(n_videos).repeat_interleave(per_video)
    sentence = torch.randn(len(caption_clip), 128, generator=g) + 0.5 * frames[caption_clip].mean(1)
    return SplitFeatures(sentence, frames, mask, caption_clip)


def test_paper_protocol_scores_each_chunk_of_32_on_its_own(model) -> None:
    feats = features()  # 85 captions: chunks of 32, 32, 21
    sim = paper_protocol_similarity(model, feats, chunk_size=32)
    for start in (0, 32, 64):
        part = SplitFeatures(feats.sentence[start : start + 32], feats.frame_cls, feats.video_mask, feats.caption_clip)
        alone = paper_protocol_similarity(model, part, chunk_size=1000)
        torch.testing.assert_close(sim[start : start + 32], alone, rtol=0, atol=1e-5)
    everything = paper_protocol_similarity(model, feats, chunk_size=1000)
    assert (sim - everything).abs().max() > 1e-3  # the scores depend on the chunk


def test_chunk_dependence_changes_the_metrics_but_not_single_query(model) -> None:
    feats = features()
    shift = torch.roll(torch.arange(len(feats.caption_clip)), 7)  # same captions, other chunks
    shifted = SplitFeatures(feats.sentence[shift], feats.frame_cls, feats.video_mask, feats.caption_clip[shift])
    a = paper_protocol_similarity(model, feats)
    b = paper_protocol_similarity(model, shifted)
    inverse = torch.argsort(shift)
    assert (a - b[inverse]).abs().max() > 1e-3
    sa, sb = single_query_similarity(model, feats), single_query_similarity(model, shifted)
    torch.testing.assert_close(sa, sb[inverse], rtol=0, atol=1e-5)
    torch.testing.assert_close(sa, paper_protocol_similarity(model, feats, chunk_size=1), rtol=0, atol=1e-5)


def test_fast_paper_protocol_equals_the_authors_loop(model) -> None:
    feats = features(n_videos=29, per_video=5)
    fast = paper_protocol_similarity(model, feats, chunk_size=32, video_chunk_size=8)
    loop = authors_loop_similarity(model, feats, chunk_size=32)
    torch.testing.assert_close(fast, loop, rtol=0, atol=1e-5 * loop.abs().max().item())


def test_authors_video_chunks_follow_the_caption_batches() -> None:
    caption_clip = torch.tensor([0] * 5 + [1] * 5 + [2] * 5 + [3] * 5)
    chunks = authors_video_chunks(caption_clip, chunk_size=8)
    # last captions at 4, 9, 14, 19 -> caption batches 0, 1, 1, 2
    assert [c.tolist() for c in chunks] == [[0], [1, 2], [3]]
    assert [c.tolist() for c in authors_video_chunks(caption_clip, 32)] == [[0, 1, 2, 3]]


def test_evaluate_features_reports_both_protocols(model) -> None:
    result = evaluate_features(model, features(), protocols=("paper", "single"))
    assert set(result) == {"paper", "single"}
    for protocol in result.values():
        assert set(protocol) == {"t2v", "v2t"}
        assert 0 <= protocol["t2v"]["R1"] <= protocol["t2v"]["R5"] <= protocol["t2v"]["R10"] <= 100
