"""Contrastive denoising queries (``ms_detr/dn_components.py``, DN-DETR style, label noise 0 as released).

Every ground-truth window is copied into ``groups`` denoising groups; each copy's start and end move by up to
``box_noise_scale`` × half its width (uniform magnitude, random sign), clipped to [0, 1]. The copies enter the
decoder in front of the matching queries with the foreground label embedding as content. The attention mask
keeps the matching queries from seeing any copy and each group from seeing the others; the decoder must
reconstruct the clean window from its copy.

Deviations from the released code, both bugs there: ``get_dn_targets`` fills every item of the batch with the
last item's windows (one dict object reused), and the negative-query pass overwrites the reconstructions the
denoising loss reads; here each item keeps its own windows and the loss reads the matching-query pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .layers import inverse_sigmoid
from .spans import cxw_to_xx, xx_to_cxw


@dataclass
class DenoisingQueries:
    content: torch.Tensor  # (B, pad_size, d)
    anchors_unsig: torch.Tensor  # (B, pad_size, 2)
    attn_mask: torch.Tensor  # (pad_size + Q, pad_size + Q), True = blocked
    pad_size: int
    slots: list[tuple[int, int, int]]  # (item, slot in the padded block, window index) of every real copy
    targets: torch.Tensor  # (n_copies, 2) clean centre/width windows, in the order of ``slots``


def jitter_windows(
    spans: torch.Tensor, noise_scale: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Noisy copies of centre/width ``spans`` (N, 2): each end moves by U[0,1)·scale·width/2 with a random
    sign."""
    if noise_scale <= 0 or len(spans) == 0:
        return spans.clone()
    xx = cxw_to_xx(spans)
    half = spans[:, 1:2].expand(-1, 2) / 2
    sign = torch.randint(0, 2, spans.shape, generator=generator, device=spans.device).to(spans.dtype) * 2 - 1
    part = torch.rand(spans.shape, generator=generator, device=spans.device, dtype=spans.dtype)
    xx = (xx + sign * part * half * noise_scale).clamp(0.0, 1.0)
    return xx_to_cxw(xx)


def denoising_attn_mask(single_pad: int, groups: int, num_queries: int, device: torch.device) -> torch.Tensor:
    """(pad + Q)² mask, True = blocked: matching queries cannot see the copies; groups cannot see each
    other."""
    pad = single_pad * groups
    size = pad + num_queries
    mask = torch.zeros(size, size, dtype=torch.bool, device=device)
    mask[pad:, :pad] = True
    for g in range(groups):
        lo, hi = g * single_pad, (g + 1) * single_pad
        mask[lo:hi, :lo] = True
        mask[lo:hi, hi:pad] = True
    return mask


def make_denoising_queries(
    target_spans: list[torch.Tensor],
    groups: int,
    noise_scale: float,
    label_enc: nn.Embedding,
    num_queries: int,
    generator: torch.Generator | None = None,
) -> DenoisingQueries | None:
    """Denoising queries for a batch; None when no item has a window."""
    counts = [len(t) for t in target_spans]
    single_pad = max(counts, default=0)
    if single_pad == 0:
        return None
    device = label_enc.weight.device
    b, d = len(target_spans), label_enc.weight.shape[1]
    pad = single_pad * groups
    content = torch.zeros(b, pad, d, device=device)
    anchors = torch.zeros(b, pad, 2, device=device)
    slots: list[tuple[int, int, int]] = []
    clean = []
    fg = label_enc(torch.zeros(1, dtype=torch.long, device=device))[0]
    for g in range(groups):
        for i, spans in enumerate(target_spans):
            if len(spans) == 0:
                continue
            noisy = jitter_windows(spans.to(device), noise_scale, generator)
            for j in range(len(spans)):
                slot = g * single_pad + j
                content[i, slot] = fg
                anchors[i, slot] = inverse_sigmoid(noisy[j])
                slots.append((i, slot, j))
                clean.append(spans[j].to(device))
    return DenoisingQueries(
        content=content,
        anchors_unsig=anchors,
        attn_mask=denoising_attn_mask(single_pad, groups, num_queries, device),
        pad_size=pad,
        slots=slots,
        targets=torch.stack(clean),
    )
