"""Temporal spans: (centre, width) and (start, end) forms, IoU and generalised IoU, all normalised to [0,
1]."""

from __future__ import annotations

import torch


def cxw_to_xx(spans: torch.Tensor) -> torch.Tensor:
    """(..., 2) centre/width -> start/end."""
    c, w = spans[..., 0], spans[..., 1]
    return torch.stack([c - 0.5 * w, c + 0.5 * w], dim=-1)


def xx_to_cxw(spans: torch.Tensor) -> torch.Tensor:
    """(..., 2) start/end -> centre/width."""
    s, e = spans[..., 0], spans[..., 1]
    return torch.stack([0.5 * (s + e), e - s], dim=-1)


def temporal_iou(spans1: torch.Tensor, spans2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU and union of every start/end span of ``spans1`` (N, 2) with every one of ``spans2`` (M, 2)."""
    area1 = spans1[:, 1] - spans1[:, 0]
    area2 = spans2[:, 1] - spans2[:, 0]
    left = torch.max(spans1[:, None, 0], spans2[None, :, 0])
    right = torch.min(spans1[:, None, 1], spans2[None, :, 1])
    inter = (right - left).clamp(min=0)
    union = area1[:, None] + area2[None, :] - inter
    return inter / union, union


def generalized_temporal_iou(spans1: torch.Tensor, spans2: torch.Tensor) -> torch.Tensor:
    """GIoU (N, M) of start/end spans: IoU minus the share of the enclosing span covered by neither.

    The released code asserts ``end >= start``; a prediction in centre/width form with a sigmoid width
    always satisfies it, so no assertion here (it would fire on user data through ``python -O`` differences).
    """
    iou, union = temporal_iou(spans1, spans2)
    left = torch.min(spans1[:, None, 0], spans2[None, :, 0])
    right = torch.max(spans1[:, None, 1], spans2[None, :, 1])
    enclosing = (right - left).clamp(min=0)
    return iou - (enclosing - union) / enclosing
