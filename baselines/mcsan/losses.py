"""MCSAN's three training terms (methods.md §1.4): ranking, attribute KL alignment and focal binary
cross-entropy.

All three are written from their formulas, each checked against hand-computed cases in
``tests/test_mcsan_losses.py``:

* :func:`ranking_loss`: bidirectional hinge with margin Δ on a ``[texts, videos]`` score matrix, hardest
  negative per anchor (VSE++/HGR "max violation") or every negative summed. Pairs of a caption and a video of
  the *same clip* are never negatives (a batch of captions can hold several captions of one clip; HGR samples
  one caption per video so it never meets them, our engine batches captions). The result is the mean over
  anchors of both directions summed, so its scale does not grow with the batch.
* :func:`attribute_kl`: ``KL(q_t || q_v)`` between the softmax attribute distributions of matched text and
  video embeddings (or its symmetric mean), averaged over pairs.
* :func:`focal_bce`: ``-(1/K) Σ_k [α (1-p_k)^γ y_k log p_k + (1-α) p_k^γ (1-y_k) log(1-p_k)]`` averaged over
  samples, from logits via log-sigmoid so that saturated predictions stay finite.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from dvtr_data.errors import UsageError


def focal_bce(logits: Tensor, targets: Tensor, *, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Focal binary cross-entropy of multi-label ``logits [N, K]`` against 0/1 ``targets [N, K]``.

    ``gamma = 0, alpha = 0.5`` gives half the plain binary cross-entropy (the focal form's weights 0.5/0.5).
    An empty label space (K = 0) contributes 0.
    """
    if logits.shape != targets.shape:
        raise UsageError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in shape")
    if not 0.0 <= alpha <= 1.0 or gamma < 0:
        raise UsageError("focal BCE needs 0 <= alpha <= 1 and gamma >= 0")
    if logits.numel() == 0:
        return logits.sum() * 0.0
    y = targets.to(logits.dtype)
    p = torch.sigmoid(logits)
    log_p = F.logsigmoid(logits)
    log_not_p = F.logsigmoid(-logits)
    pos = alpha * (1.0 - p).pow(gamma) * y * log_p
    neg = (1.0 - alpha) * p.pow(gamma) * (1.0 - y) * log_not_p
    return -(pos + neg).mean(dim=-1).mean()


def attribute_kl(
    text_logits: Tensor,
    video_logits: Tensor,
    *,
    direction: Literal["text_to_video", "symmetric"] = "text_to_video",
) -> Tensor:
    """``KL(softmax(text) || softmax(video))`` per matched pair, averaged (``symmetric``: both ways' mean)."""
    if text_logits.shape != video_logits.shape:
        raise UsageError(
            f"text {tuple(text_logits.shape)} and video {tuple(video_logits.shape)} logits differ in shape"
        )
    if text_logits.shape[-1] == 0:
        return text_logits.sum() * 0.0
    log_t = F.log_softmax(text_logits, dim=-1)
    log_v = F.log_softmax(video_logits, dim=-1)
    t_to_v = (log_t.exp() * (log_t - log_v)).sum(-1).mean()
    if direction == "text_to_video":
        return t_to_v
    if direction == "symmetric":
        v_to_t = (log_v.exp() * (log_v - log_t)).sum(-1).mean()
        return 0.5 * (t_to_v + v_to_t)
    raise UsageError(f"unknown KL direction {direction!r}", hint="text_to_video or symmetric")


def ranking_loss(
    scores: Tensor,
    *,
    margin: float = 0.2,
    negatives: Literal["hardest", "all"] = "hardest",
    same_clip: Tensor | None = None,
) -> Tensor:
    """Bidirectional hinge on square ``scores [B, B]`` (caption i with its clip i on the diagonal).

    ``same_clip [B, B]`` (bool) marks pairs whose caption and video come from one clip; they (and the
    diagonal) are excluded from the negatives. An anchor without any negative contributes 0.
    """
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1]:
        raise UsageError(f"ranking_loss needs square scores, got {tuple(scores.shape)}")
    n = scores.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=scores.device)
    excluded = eye if same_clip is None else (eye | same_clip.to(device=scores.device, dtype=torch.bool))
    positive = scores.diagonal()
    cost_t2v = (
        (margin - positive[:, None] + scores).clamp(min=0).masked_fill(excluded, 0.0)
    )  # row i: caption i
    cost_v2t = (
        (margin - positive[None, :] + scores).clamp(min=0).masked_fill(excluded, 0.0)
    )  # column j: video j
    if negatives == "hardest":
        return cost_t2v.max(dim=1).values.mean() + cost_v2t.max(dim=0).values.mean()
    if negatives == "all":
        return cost_t2v.sum(dim=1).mean() + cost_v2t.sum(dim=0).mean()
    raise UsageError(f"unknown negatives {negatives!r}", hint="hardest or all")
