"""mR, the summary AMFMN reports: the mean of R@1/5/10 in both directions (hand-computed case)."""

from __future__ import annotations

import pytest
import torch

from dvtr_data.baselines.engine.metrics import mean_recall, retrieval_metrics


def test_mean_recall_of_a_hand_ranked_matrix() -> None:
    # 2 videos, 2 captions each; caption 1 ranks its video second, the others first.
    sim = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.1, 0.7], [0.3, 0.6]])
    caption_clip = torch.tensor([0, 0, 1, 1])
    result = retrieval_metrics(sim, caption_clip, protocol="single")
    assert result["t2v"]["R1"] == 75.0 and result["t2v"]["R5"] == 100.0
    # video 0's best caption (0.9) ranks first; video 1's best own caption (0.7) is behind caption 1 (0.8)
    assert result["v2t"]["R1"] == 50.0 and result["v2t"]["R10"] == 100.0
    assert mean_recall(result) == pytest.approx((75 + 100 + 100 + 50 + 100 + 100) / 6)
