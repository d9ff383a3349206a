"""Cross-modal interactive feature fusion pooling: MSAM's similarity function (msam.md §3).

The authors' ``ImprovedBidirectionalAttentionPooling`` + ``AttentionFusionPooling``. For unit texts ``t_j``
and unit frames ``f_{b,i}``:

1. ``α_{b,·,j} = softmax_i(<f_{b,i}, t_j> / τ)`` and ``v_{b,j} = Σ_i α f_{b,i}`` (text-conditioned pooling);
2. ``β_{b,·} = softmax_j(<v_{b,j}, t_j> / τ)`` **over the texts scored together** and ``ṽ_b = Σ_j β v_{b,j}``;
3. ``a = sigmoid(MLP(v_{b,j})) / 0.7`` and ``u = a·v + (1 - a)·ṽ + v``;
4. ``score_{j,b} = 0.4 · <u/|u|, t_j>`` (the caller multiplies by ``exp(logit_scale)``).

Step 2 makes the head transductive: a score depends on which texts share the chunk. Videos are independent,
so the video axis can be tiled freely. For a single text (``T = 1``) ``β = 1``, ``ṽ = v`` and ``u = 2v``: the
gate cancels and the score has the closed form of :func:`single_query_scores`.

Paper term without an operation in the code, "fine-grained interactions between words and frames": frames
interact here with the *sentence* vector only; word tokens never meet frames (they only feed the text PIENet
of the auxiliary loss).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FusionPoolingOutput(NamedTuple):
    scores: Tensor  # [T, V]: head_scale · cos(û_{b,j}, t_j), without exp(logit_scale)
    gate_logit: Tensor | None  # [V, T]: pre-sigmoid gate, None without a gate
    frame_attention: Tensor  # [V, F, T]: α
    text_attention: Tensor  # [V, T]: β


class FusionPoolingHead(nn.Module):
    """The gated, text-conditioned frame pooling head.

    Only ``gate`` (``Linear(C, C/2) - ReLU - Linear(C/2, 1)``) is learned; τ, the scale and the gate divisor
    are constants in the authors' code. ``use_gate=False`` is the authors' gate-free variant (``u = v + ṽ``).
    """

    def __init__(
        self,
        width: int,
        hidden: int,
        *,
        tau: float = 0.01,
        scale: float = 0.4,
        gate_divisor: float = 0.7,
        use_gate: bool = True,
    ) -> None:
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.tau = tau
        self.scale = scale
        self.gate_divisor = gate_divisor
        self.use_gate = use_gate

    def detailed(self, text: Tensor, frames: Tensor, video_mask: Tensor | None = None) -> FusionPoolingOutput:
        """Scores and attention maps.

        Args:
            text: unit sentence vectors ``[T, C]``; all of them form one transductive chunk.
            frames: unit (post-temporal) frame vectors ``[V, F, C]``.
            video_mask: ``[V, F]``; when given, padded frames are left out of the frame softmax. The authors
                pass none (padded frames take part), so the model passes it only under
                ``MSAMOptions.mask_padding_in_head``.
        """
        sims = torch.einsum("vfc,tc->vft", frames, text)
        if video_mask is not None:
            sims = sims.masked_fill(~video_mask.bool()[:, :, None], float("-inf"))
        frame_attention = torch.softmax(sims / self.tau, dim=1)
        pooled = torch.einsum("vft,vfc->vtc", frame_attention, frames)  # v_{b,j}
        text_attention = torch.softmax(torch.einsum("vtc,tc->vt", pooled, text) / self.tau, dim=1)  # β
        consensus = torch.einsum("vt,vtc->vc", text_attention, pooled)[:, None, :]  # ṽ_b
        if self.use_gate:
            gate_logit = self.gate(pooled).squeeze(-1)
            a = (torch.sigmoid(gate_logit) / self.gate_divisor).unsqueeze(-1)
            fused = a * pooled + (1.0 - a) * consensus + pooled  # the last term is the authors' residual
        else:
            gate_logit = None
            fused = pooled + consensus
        fused = F.normalize(fused, dim=-1)
        scores = torch.einsum("vtc,tc->tv", fused, text) * self.scale
        return FusionPoolingOutput(scores, gate_logit, frame_attention, text_attention)

    def forward(self, text: Tensor, frames: Tensor, video_mask: Tensor | None = None) -> Tensor:
        """``[T, V]`` scores (see :meth:`detailed`)."""
        return self.detailed(text, frames, video_mask).scores


def frame_gram(frames: Tensor) -> Tensor:
    """Per-video Gram matrices ``[V, F, F]`` of unit frame vectors ``[V, F, C]``; cacheable next to them."""
    return frames @ frames.transpose(-1, -2)


def single_query_scores(
    text: Tensor,
    frames: Tensor,
    *,
    gram: Tensor | None = None,
    video_mask: Tensor | None = None,
    tau: float = 0.01,
    scale: float | Tensor = 0.4,
) -> Tensor:
    """Exact head score of each query scored **alone** (``T = 1``), for every video: ``[Q, V]``.

    With one text the gate cancels and ``û = v/|v|``, so ``score = scale · (α·s) / sqrt(αᵀ G α)`` with
    ``s`` the frame-text cosines, ``α = softmax(s/τ)`` and ``G`` the video's frame Gram matrix. This is what a
    search service computes: per video only the ``F×C`` frame matrix and the ``F×F`` Gram are needed, no MLP.
    Queries are independent of each other here (no transductive chunk); pass ``scale =
    head_scale · exp(logit_scale)`` to get the model's logits.

    Args:
        text: unit query vectors ``[Q, C]``.
        frames: unit post-temporal frame vectors ``[V, F, C]`` (see ``MSAM.frame_embeddings``).
        gram: precomputed :func:`frame_gram` of ``frames``; computed when omitted.
        video_mask: ``[V, F]``; given only to reproduce ``mask_padding_in_head=True``.
    """
    sims = torch.einsum("qc,vfc->qvf", text, frames)
    logits = sims if video_mask is None else sims.masked_fill(~video_mask.bool()[None], float("-inf"))
    alpha = torch.softmax(logits / tau, dim=-1)
    if gram is None:
        gram = frame_gram(frames)
    numerator = (alpha * sims).sum(-1)
    norm_sq = torch.einsum("qvf,vfg,qvg->qv", alpha, gram, alpha)
    return scale * numerator / norm_sq.clamp_min(torch.finfo(norm_sq.dtype).tiny).sqrt()


def mean_pooled_video(frames: Tensor, video_mask: Tensor) -> Tensor:
    """``normalise(masked mean of unit frames)``: CLIP4Clip's meanP video vector (``g`` in msam.md).

    A video without valid frames divides by 1 instead of 0, as CLIP4Clip does.
    """
    keep = video_mask.to(frames.dtype).unsqueeze(-1)
    total = (frames * keep).sum(dim=1)
    count = keep.sum(dim=1)
    count = torch.where(count == 0, torch.ones_like(count), count)
    return F.normalize(total / count, dim=-1)
