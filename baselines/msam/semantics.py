"""The auxiliary multi-semantic branch (msam.md §4): adaptive semantic construction and its distributions.

It exists only to shape the training loss. Neither the slots nor their Gaussians enter the retrieval score.

Paper term without an operation in the code, "fine-grained interactions between words and frames": the
text PIENet attends over word tokens and the video PIENet over frames, separately. Words and frames are
coupled only through the KL term between the two sets of Gaussians, never by an attention between them.

The PIENet gate dropout is the authors' ``nn.Dropout`` (p = 0.2) as a ``draws.SampleDropout``: the same layer
everywhere except inside the engine's training steps (``draws.per_sample``), where each sample's mask comes from
the step's seed, the caption's position and the layer, so runs across processes equal one process.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dvtr_data.baselines.engine.draws import SampleDropout, name_layers


class SlotAttention(nn.Module):
    """Additive multi-head self-attention (Lin et al., ICLR 2017), one head per semantic slot.

    ``A = softmax_N(w_2 tanh(w_1 X))`` and ``R = Aᵀ X``; both projections have no bias. The parameter names
    ``w_1`` / ``w_2`` follow PVSE and the authors' checkpoint.
    """

    def __init__(self, slots: int, width: int, hidden: int) -> None:
        super().__init__()
        self.w_1 = nn.Linear(width, hidden, bias=False)
        self.w_2 = nn.Linear(hidden, slots, bias=False)

    def forward(self, tokens: Tensor, pad_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``tokens`` ``[B, N, C]`` -> slot vectors ``[B, K, C]`` and attention ``[B, N, K]``."""
        logits = self.w_2(torch.tanh(self.w_1(tokens)))
        if pad_mask is not None:
            logits = logits.masked_fill(pad_mask[:, :, None], float("-inf"))
        attention = torch.softmax(logits, dim=1)
        return attention.transpose(1, 2) @ tokens, attention


class PIENet(nn.Module):
    """Adaptive semantic construction: K slots that re-weight a global vector (the authors' ``PIENet``).

    ``slots = fc1(LayerNorm(Dropout(sigmoid(fc(R))) ⊙ x_g))``: each slot is an element-wise gating of the
    *global* vector ``x_g`` by a gate computed from an attention-pooled token mixture ``R``.
    """

    def __init__(self, slots: int, width: int, hidden: int, *, dropout: float = 0.2) -> None:
        super().__init__()
        self.attention = SlotAttention(slots, width, hidden)
        self.fc = nn.Linear(width, width)
        self.dropout = SampleDropout(dropout, layer="pienet.dropout")
        self.layer_norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)

    def forward(self, global_vec: Tensor, tokens: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        """``global_vec`` ``[B, C]``, ``tokens`` ``[B, N, C]``, ``pad_mask`` ``[B, N]`` (True = ignore)."""
        mixed, _ = self.attention(tokens, pad_mask)
        gate = self.dropout(torch.sigmoid(self.fc(mixed)))
        return self.fc1(self.layer_norm(gate * global_vec[:, None, :]))


class MLPHead(nn.Module):
    """``Linear - ReLU - ... - Linear`` (the authors' ``FCN_head``); ``softplus`` on top for the std head."""

    def __init__(self, dims: tuple[int, ...], *, softplus: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            layers.append(nn.Linear(d_in, d_out))
            if i < len(dims) - 2:
                layers.append(nn.ReLU())
        self.layers = nn.Sequential(*layers)
        self.softplus = softplus

    def forward(self, x: Tensor) -> Tensor:
        y = self.layers(x)
        # The authors write log1p(exp(y)); softplus is the same function without the overflow above y ≈ 88.
        return F.softplus(y) if self.softplus else y


class SemanticDistributions(NamedTuple):
    """Per-slot diagonal Gaussians ``[B, K, C]``. ``*_sigma`` is σ itself (the authors call it 'logsigma')."""

    video_mu: Tensor
    video_sigma: Tensor
    text_mu: Tensor
    text_sigma: Tensor


class MultiSemanticBranch(nn.Module):
    """Two PIENets (video, text; not shared) and the mean/std heads (shared by both modalities)."""

    def __init__(
        self,
        width: int,
        *,
        slots: int = 7,
        pie_hidden: int = 256,
        mean_hidden: tuple[int, ...] = (256, 256),
        std_hidden: tuple[int, ...] = (64,),
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.video_pie = PIENet(slots, width, pie_hidden, dropout=dropout)
        self.text_pie = PIENet(slots, width, pie_hidden, dropout=dropout)
        self.mean_head = MLPHead((width, *mean_hidden, width))
        self.std_head = MLPHead((width, *std_hidden, width), softplus=True)
        name_layers(self)  # "video_pie.dropout" and "text_pie.dropout": the two PIENets draw different masks

    def forward(
        self,
        video_global: Tensor,
        frames: Tensor,
        sentence: Tensor,
        tokens: Tensor,
        *,
        frame_pad: Tensor | None = None,
        token_pad: Tensor | None = None,
    ) -> SemanticDistributions:
        """Gaussians of both modalities.

        Args:
            video_global: unit post-temporal pooled video ``g`` ``[B, C]``.
            frames: unit **pre-temporal** CLIP frame features ``[B, F, C]`` (the authors mix the two levels).
            sentence: unit sentence vectors ``[B, C]``.
            tokens: unit token states ``[B, L, C]``, SOT and padding included.
            frame_pad, token_pad: ``[B, N]`` True where a position is ignored; None (the authors) attends
                over everything.
        """
        video_slots = self.video_pie(video_global, frames, frame_pad)
        text_slots = self.text_pie(sentence, tokens, token_pad)
        return SemanticDistributions(
            self.mean_head(video_slots),
            self.std_head(video_slots),
            self.mean_head(text_slots),
            self.std_head(text_slots),
        )
