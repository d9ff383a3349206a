"""Span geometry and Hungarian matching of the MS-DETR port, on hand cases and against brute force."""

from __future__ import annotations

import itertools

import pytest
import torch

from dvtr_data.baselines.ms_detr.matcher import HungarianMatcher, linear_sum_assignment
from dvtr_data.baselines.ms_detr.spans import cxw_to_xx, generalized_temporal_iou, temporal_iou, xx_to_cxw


def test_span_forms_round_trip() -> None:
    xx = torch.tensor([[0.1, 0.5], [0.0, 1.0]])
    torch.testing.assert_close(cxw_to_xx(xx_to_cxw(xx)), xx)
    torch.testing.assert_close(xx_to_cxw(xx), torch.tensor([[0.3, 0.4], [0.5, 1.0]]))


def test_iou_and_giou_hand_cases() -> None:
    a = torch.tensor([[0.0, 0.2], [0.0, 0.4]])
    b = torch.tensor([[0.4, 0.6], [0.2, 0.4]])
    iou, _ = temporal_iou(a, b)
    # [0,.4] vs [.2,.4]: inter .2, union .4 -> .5 ; [0,.2] vs [.4,.6]: disjoint
    assert iou[1, 1].item() == pytest.approx(0.5)
    assert iou[0, 0].item() == 0.0
    giou = generalized_temporal_iou(a, b)
    # disjoint: enclosing .6, union .4 -> 0 - .2/.6
    assert giou[0, 0].item() == pytest.approx(-1 / 3)
    # nested spans: enclosing equals union -> GIoU = IoU
    assert giou[1, 1].item() == pytest.approx(0.5)


def _brute_force(cost: torch.Tensor) -> float:
    n, m = cost.shape
    if n <= m:
        return min(sum(cost[i, p[i]].item() for i in range(n)) for p in itertools.permutations(range(m), n))
    return _brute_force(cost.T)


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (5, 3), (4, 4), (2, 6)])
def test_assignment_is_optimal(shape: tuple[int, int]) -> None:
    g = torch.Generator().manual_seed(sum(shape))
    for _ in range(20):
        cost = torch.rand(shape, generator=g) * 10 - 3
        rows, cols = linear_sum_assignment(cost)
        assert len(rows) == min(shape)
        assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)
        assert rows.tolist() == sorted(rows.tolist())
        assert cost[rows, cols].sum().item() == pytest.approx(_brute_force(cost), abs=1e-5)


def test_matcher_crosses_when_predictions_are_swapped() -> None:
    # prediction 0 sits on target 1 and prediction 1 on target 0; prediction 2 is far from both
    pred_spans = torch.tensor([[[0.8, 0.2], [0.2, 0.2], [0.5, 0.9]]])
    logits = torch.zeros(1, 3, 2)
    targets = [torch.tensor([[0.2, 0.2], [0.8, 0.2]])]
    ((i, j),) = HungarianMatcher(cost_class=4, cost_span=10, cost_giou=1)(logits, pred_spans, targets)
    assert dict(zip(i.tolist(), j.tolist(), strict=True)) == {0: 1, 1: 0}


def test_matcher_class_cost_breaks_a_tie() -> None:
    # two identical spans: the one with the higher foreground probability is matched
    pred_spans = torch.tensor([[[0.5, 0.2], [0.5, 0.2]]])
    logits = torch.tensor([[[0.0, 2.0], [2.0, 0.0]]])  # query 1 is foreground (class 0)
    ((i, j),) = HungarianMatcher()(logits, pred_spans, [torch.tensor([[0.5, 0.2]])])
    assert i.tolist() == [1] and j.tolist() == [0]


def test_matcher_with_no_window() -> None:
    ((i, j),) = HungarianMatcher()(torch.zeros(1, 2, 2), torch.rand(1, 2, 2), [torch.zeros(0, 2)])
    assert len(i) == 0 and len(j) == 0
