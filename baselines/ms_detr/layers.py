"""Building blocks of the DETR-family moment models, batch-first (B, L, d) throughout.

Each block follows the released MS-DETR code (``ms_detr/transformer.py``, ``attention.py``,
``position_encoding.py``, ``model.py``); names in the docstrings point at the original.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """logit(x) with x clamped to [eps, 1 - eps], as the released code does (keeps anchors finite)."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them (DETR's FFN head)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        outs = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims, outs, strict=True))

    def zero_last(self) -> MLP:
        """Zero the last layer (the released span heads start by predicting the anchor itself)."""
        last = self.layers[-1]
        if isinstance(last, nn.Linear):
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class LinearLayer(nn.Module):
    """LayerNorm -> dropout -> linear -> optional ReLU: the input projections of Moment-DETR and MS-DETR."""

    def __init__(self, in_dim: int, out_dim: int, *, dropout: float, relu: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_dim, out_dim)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(self.dropout(self.norm(x)))
        return F.relu(x) if self.relu else x


def input_projection(in_dim: int, hidden: int, n_layers: int, dropout: float) -> nn.Sequential:
    """``n_layers`` LinearLayers; the last has no ReLU (``relu_args[n_input_proj - 1] = False``)."""
    layers = [
        LinearLayer(in_dim if i == 0 else hidden, hidden, dropout=dropout, relu=i < n_layers - 1)
        for i in range(n_layers)
    ]
    return nn.Sequential(*layers)


def sine_position_embedding(mask: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """(B, L) valid mask -> (B, L, dim) normalised sine embedding of the clip index
    (``PositionEmbeddingSine``).

    Positions are the running count of valid clips scaled to (0, 2π] by the item's own length.
    """
    x = mask.float().cumsum(1)
    x = x / (x[:, -1:] + 1e-6) * (2 * math.pi)
    dim_t = torch.arange(dim, dtype=torch.float32, device=mask.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / dim)
    pos = x[:, :, None] / dim_t
    return torch.stack((pos[:, :, 0::2].sin(), pos[:, :, 1::2].cos()), dim=3).flatten(2)


def span_sine_embedding(spans: torch.Tensor, dim: int) -> torch.Tensor:
    """(B, Q, 2) centre/width anchors -> (B, Q, dim): half for the centre, half for the width
    (``gen_sineembed_for_position``; the original hard-codes 128 per half for d = 256)."""
    half = dim // 2
    dim_t = torch.arange(half, dtype=torch.float32, device=spans.device)
    dim_t = 10000 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / half)
    parts = []
    for k in range(2):
        p = spans[:, :, k, None] * (2 * math.pi) / dim_t
        parts.append(torch.stack((p[:, :, 0::2].sin(), p[:, :, 1::2].cos()), dim=3).flatten(2))
    return torch.cat(parts, dim=2)


def activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "prelu":
        return nn.PReLU()
    if name == "gelu":
        return nn.GELU()
    raise ValueError(f"unknown activation {name!r}")


class ProjectedAttention(nn.Module):
    """Multi-head attention without input projections (``attention.MultiheadAttention`` of DAB/Conditional
    DETR).

    Queries and keys arrive already projected (the decoder concatenates content and position parts, so their
    width can be twice the value width); values are split into heads as they are; one output projection.
    """

    def __init__(self, qk_dim: int, v_dim: int, nhead: int, dropout: float) -> None:
        super().__init__()
        self.nhead = nhead
        self.qk_dim = qk_dim
        self.out_proj = nn.Linear(v_dim, v_dim)
        nn.init.constant_(self.out_proj.bias, 0.0)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        *,
        attn_mask: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``attn_mask`` (Lq, Lk) and ``key_padding_mask`` (B, Lk) are True where attention is forbidden."""
        b, lq, _ = q.shape
        lk = k.shape[1]
        h = self.nhead
        qh = q.view(b, lq, h, -1).transpose(1, 2) * (self.qk_dim // h) ** -0.5
        kh = k.view(b, lk, h, -1).transpose(1, 2)
        vh = v.view(b, lk, h, -1).transpose(1, 2)
        logits = qh @ kh.transpose(-1, -2)
        if attn_mask is not None:
            logits = logits.masked_fill(attn_mask[None, None], float("-inf"))
        if key_padding_mask is not None:
            logits = logits.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        weights = self.dropout(logits.softmax(-1))
        out = (weights @ vh).transpose(1, 2).reshape(b, lq, -1)
        return self.out_proj(out)


class EncoderLayer(nn.Module):
    """Post-norm self-attention encoder layer, positions added to queries and keys
    (``TransformerEncoderLayer``)."""

    def __init__(self, d: int, nhead: int, ff: int, dropout: float, act: str) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d, nhead, dropout=dropout, batch_first=True)
        self.linear1, self.linear2 = nn.Linear(d, ff), nn.Linear(ff, d)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop, self.drop1, self.drop2 = nn.Dropout(dropout), nn.Dropout(dropout), nn.Dropout(dropout)
        self.act = activation(act)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """``pad`` (B, L) is True at padding."""
        q = x + pos
        x = self.norm1(x + self.drop1(self.attn(q, q, x, key_padding_mask=pad, need_weights=False)[0]))
        return self.norm2(x + self.drop2(self.linear2(self.drop(self.act(self.linear1(x))))))


class TextToVideoLayer(nn.Module):
    """Video clips attend to the query's words only (``T2V_TransformerEncoderLayer``): the motion or the
    semantics stream of MS-DETR's encoder. Text tokens and the global token pass through unchanged."""

    def __init__(self, d: int, nhead: int, ff: int, dropout: float, act: str) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d, nhead, dropout=dropout, batch_first=True)
        self.linear1, self.linear2 = nn.Linear(d, ff), nn.Linear(ff, d)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop, self.drop1, self.drop2 = nn.Dropout(dropout), nn.Dropout(dropout), nn.Dropout(dropout)
        self.act = activation(act)

    def forward(
        self,
        vid: torch.Tensor,
        vid_pos: torch.Tensor,
        txt: torch.Tensor,
        txt_pos: torch.Tensor,
        txt_pad: torch.Tensor,
    ) -> torch.Tensor:
        out = self.attn(vid + vid_pos, txt + txt_pos, txt, key_padding_mask=txt_pad, need_weights=False)[0]
        x = vid + self.drop1(out)
        # as released: the FFN reads norm1(x) but its residual is added to the un-normalised x
        return self.norm2(x + self.drop2(self.linear2(self.drop(self.act(self.linear1(self.norm1(x)))))))


class DabDecoderLayer(nn.Module):
    """Conditional/DAB-DETR decoder layer (``TransformerDecoderLayer``): self-attention over the queries, then
    cross-attention whose query and key are [content ; sine(anchor)] per head, then the FFN."""

    def __init__(self, d: int, nhead: int, ff: int, dropout: float, act: str, *, first: bool) -> None:
        super().__init__()
        self.nhead = nhead
        self.sa_qcontent, self.sa_qpos = nn.Linear(d, d), nn.Linear(d, d)
        self.sa_kcontent, self.sa_kpos = nn.Linear(d, d), nn.Linear(d, d)
        self.sa_v = nn.Linear(d, d)
        self.self_attn = ProjectedAttention(d, d, nhead, dropout)
        self.ca_qcontent, self.ca_kcontent = nn.Linear(d, d), nn.Linear(d, d)
        self.ca_kpos, self.ca_v = nn.Linear(d, d), nn.Linear(d, d)
        self.ca_qpos = nn.Linear(d, d) if first else None  # keep_query_pos=False: only the first layer
        self.ca_qpos_sine = nn.Linear(d, d)
        self.cross_attn = ProjectedAttention(2 * d, d, nhead, dropout)
        self.linear1, self.linear2 = nn.Linear(d, ff), nn.Linear(ff, d)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop, self.drop1, self.drop2, self.drop3 = (nn.Dropout(dropout) for _ in range(4))
        self.act = activation(act)

    def forward(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        *,
        query_pos: torch.Tensor,
        query_sine: torch.Tensor,
        mem_pos: torch.Tensor,
        mem_pad: torch.Tensor,
        self_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        q = self.sa_qcontent(tgt) + self.sa_qpos(query_pos)
        k = self.sa_kcontent(tgt) + self.sa_kpos(query_pos)
        tgt = self.norm1(tgt + self.drop1(self.self_attn(q, k, self.sa_v(tgt), attn_mask=self_mask)))

        b, nq, d = tgt.shape
        lk = memory.shape[1]
        h = self.nhead
        q_content = self.ca_qcontent(tgt)
        k_content = self.ca_kcontent(memory)
        k_pos = self.ca_kpos(mem_pos)
        if self.ca_qpos is not None:
            q_content = q_content + self.ca_qpos(query_pos)
            k_content = k_content + k_pos
        q = torch.cat([q_content.view(b, nq, h, -1), self.ca_qpos_sine(query_sine).view(b, nq, h, -1)], 3)
        k = torch.cat([k_content.view(b, lk, h, -1), k_pos.view(b, lk, h, -1)], 3)
        out = self.cross_attn(
            q.view(b, nq, 2 * d), k.view(b, lk, 2 * d), self.ca_v(memory), key_padding_mask=mem_pad
        )
        tgt = self.norm2(tgt + self.drop2(out))
        return self.norm3(tgt + self.drop3(self.linear2(self.drop(self.act(self.linear1(tgt))))))


class DabDecoder(nn.Module):
    """Anchor-refining decoder (``TransformerDecoder``, DAB-DETR with width-modulated attention).

    Each layer turns the current (centre, width) anchors into sine embeddings, scales them by the content
    (``query_scale``) and by a predicted width over the anchor width (``ref_anchor_head``), and refines the
    anchors with its own zero-initialised span MLP. Returns the normalised outputs of every layer and the
    anchors each layer started from.
    """

    def __init__(self, d: int, nhead: int, ff: int, dropout: float, act: str, n_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            DabDecoderLayer(d, nhead, ff, dropout, act, first=i == 0) for i in range(n_layers)
        )
        self.norm = nn.LayerNorm(d)
        self.query_scale = MLP(d, d, d, 2)
        self.ref_point_head = MLP(d, d, d, 2)
        self.ref_anchor_head = MLP(d, d, 1, 2)
        self.bbox_embed = MLP(d, d, 2, 3).zero_last()
        self.d = d

    def forward(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        *,
        anchors_unsig: torch.Tensor,
        mem_pos: torch.Tensor,
        mem_pad: torch.Tensor,
        self_mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ref = anchors_unsig.sigmoid()
        refs = [ref]
        hs = []
        out = tgt
        for i, layer in enumerate(self.layers):
            sine = span_sine_embedding(ref, self.d)
            query_pos = self.ref_point_head(sine)
            if i > 0:
                sine = sine * self.query_scale(out)
            sine = sine * (self.ref_anchor_head(out).sigmoid()[..., 0] / ref[..., 1]).unsqueeze(-1)
            out = layer(
                out,
                memory,
                query_pos=query_pos,
                query_sine=sine,
                mem_pos=mem_pos,
                mem_pad=mem_pad,
                self_mask=self_mask,
            )
            new_ref = (self.bbox_embed(out) + inverse_sigmoid(ref)).sigmoid()
            if i < len(self.layers) - 1:
                refs.append(new_ref)
            ref = new_ref.detach()
            hs.append(self.norm(out))
        return torch.stack(hs), torch.stack(refs)


class DetrDecoderLayer(nn.Module):
    """Vanilla DETR post-norm decoder layer (Moment-DETR): learned query positions added to queries."""

    def __init__(self, d: int, nhead: int, ff: int, dropout: float, act: str) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, nhead, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(d, nhead, dropout=dropout, batch_first=True)
        self.linear1, self.linear2 = nn.Linear(d, ff), nn.Linear(ff, d)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop, self.drop1, self.drop2, self.drop3 = (nn.Dropout(dropout) for _ in range(4))
        self.act = activation(act)

    def forward(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        query_pos: torch.Tensor,
        mem_pos: torch.Tensor,
        mem_pad: torch.Tensor,
    ) -> torch.Tensor:
        q = tgt + query_pos
        tgt = self.norm1(tgt + self.drop1(self.self_attn(q, q, tgt, need_weights=False)[0]))
        out = self.cross_attn(
            tgt + query_pos, memory + mem_pos, memory, key_padding_mask=mem_pad, need_weights=False
        )[0]
        tgt = self.norm2(tgt + self.drop2(out))
        return self.norm3(tgt + self.drop3(self.linear2(self.drop(self.act(self.linear1(tgt))))))


def clones(module: nn.Module, n: int) -> nn.ModuleList:
    return nn.ModuleList(copy.deepcopy(module) for _ in range(n))
