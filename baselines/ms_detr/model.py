"""MS-DETR and Moment-DETR, ported from the released code (snailma0229/MS-DETR, jayleicn/moment_detr).

Inputs (batch-first):

* ``video`` (B, L, D_v + 2): per 2-s clip features with the two temporal-endpoint features (TEF) last. For
  MS-DETR the first ``motion_dim`` columns are the motion stream and the next ``semantic_dim`` the semantics
  stream (SlowFast 2304 and CLIP 512 in the paper; see :mod:`.data` for what replaces SlowFast here).
* ``video_mask`` (B, L) True at real clips; ``text`` (B, T, D_t) word features; ``text_mask`` (B, T).

Outputs are a dict with ``pred_logits`` (B, Q, 2; class 0 = foreground), ``pred_spans`` (B, Q, 2; normalised
centre/width), ``saliency_scores`` (B, L), ``aux_outputs`` (earlier decoder layers) and, for MS-DETR in
training, the intermediate top-k proposals, the negative-query outputs and the denoising reconstructions.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .config import MomentConfig
from .denoising import DenoisingQueries, make_denoising_queries
from .layers import (
    MLP,
    DabDecoder,
    DetrDecoderLayer,
    EncoderLayer,
    TextToVideoLayer,
    clones,
    input_projection,
    inverse_sigmoid,
    sine_position_embedding,
)


def _xavier(module: nn.Module) -> None:
    """The released ``Transformer._reset_parameters``: Xavier-uniform on every matrix of the transformer."""
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)


def _heads(hidden: int, dec_layers: int) -> tuple[nn.Linear, MLP]:
    """Class head (prior 0.01 on both logits, as released) and zero-initialised span head."""
    class_embed = nn.Linear(hidden, 2)
    nn.init.constant_(class_embed.bias, -math.log((1 - 0.01) / 0.01))
    span_embed = MLP(hidden, hidden, 2, 3).zero_last()
    return class_embed, span_embed


class MSDETR(nn.Module):
    """Motion-Semantics DETR (``MS_DETR.forward_sf_clip`` with ``use_tgt``, ``use_dn``, negative queries)."""

    def __init__(self, cfg: MomentConfig, *, motion_dim: int, semantic_dim: int, text_dim: int) -> None:
        super().__init__()
        d = cfg.hidden_dim
        self.cfg = cfg
        self.motion_dim, self.semantic_dim = motion_dim, semantic_dim
        drop = cfg.input_dropout
        self.input_txt_proj = input_projection(text_dim, d, cfg.n_input_proj, drop)
        self.input_motion_proj = input_projection(motion_dim + 2, d, cfg.n_input_proj, drop)
        self.input_semantic_proj = input_projection(semantic_dim + 2, d, cfg.n_input_proj, drop)
        self.concat_vid_proj = input_projection(2 * d, d, cfg.n_input_proj, drop)
        layer = TextToVideoLayer(d, cfg.nheads, cfg.dim_feedforward, cfg.dropout, cfg.activation)
        self.motion_stream = clones(layer, cfg.cross_enc_layers)  # transformer_sf
        self.semantic_stream = clones(layer, cfg.cross_enc_layers)  # transformer_clip
        self.encoder = clones(
            EncoderLayer(d, cfg.nheads, cfg.dim_feedforward, cfg.dropout, cfg.activation), cfg.enc_layers
        )
        self.decoder = DabDecoder(
            d, cfg.nheads, cfg.dim_feedforward, cfg.dropout, cfg.activation, cfg.dec_layers
        )
        for part in (self.motion_stream, self.semantic_stream, self.encoder, self.decoder):
            _xavier(part)
        # one class head and one span head shared by every decoder layer (the released ModuleList repeats one
        # instance), plus copies for the encoder's top-k proposals
        self.class_embed, self.span_embed = _heads(d, cfg.dec_layers)
        self.enc_output = nn.Linear(d, d)
        self.enc_output_norm = nn.LayerNorm(d)
        self.enc_class_embed, self.enc_span_embed = _heads(d, cfg.dec_layers)
        self.tgt_embed = nn.Embedding(cfg.num_queries, d)
        self.label_enc = nn.Embedding(2, d)
        self.saliency_proj1 = nn.Linear(d, d)
        self.saliency_proj2 = nn.Linear(d, d)
        self.global_token = nn.Parameter(torch.randn(d))
        self.global_pos = nn.Parameter(torch.randn(d))

    # -------------------------------------------------------------------------------------------- encoder
    def encode(
        self, video: torch.Tensor, video_mask: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Two text-guided streams, fused, then the shared encoder. Returns memory, global token and
        positions."""
        b = video.shape[0]
        tef = video[..., -2:]
        motion = torch.cat([video[..., : self.motion_dim], tef], -1)
        semantic = torch.cat([video[..., self.motion_dim : self.motion_dim + self.semantic_dim], tef], -1)
        txt = self.input_txt_proj(text)
        txt_pos = torch.zeros_like(txt)
        txt_pad = ~text_mask
        m = self.input_motion_proj(motion)
        s = self.input_semantic_proj(semantic)
        pos = sine_position_embedding(video_mask, self.cfg.hidden_dim)
        for layer in self.motion_stream:
            m = layer(m, pos, txt, txt_pos, txt_pad)
        for layer in self.semantic_stream:
            s = layer(s, pos, txt, txt_pos, txt_pad)
        g = self.global_token.view(1, 1, -1).expand(b, 1, -1)
        fused = self.concat_vid_proj(torch.cat([torch.cat([g, m], 1), torch.cat([g, s], 1)], -1))
        full_pos = torch.cat([self.global_pos.view(1, 1, -1).expand(b, 1, -1), pos], 1)
        pad = torch.cat([torch.zeros(b, 1, dtype=torch.bool, device=video.device), ~video_mask], 1)
        x = fused
        for layer in self.encoder:
            x = layer(x, full_pos, pad)
        return {"memory": x[:, 1:], "global": x[:, 0], "pos": pos, "pad": ~video_mask}

    def proposals(self, memory: torch.Tensor, video_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Saliency-derived queries (``gen_encoder_output_proposals`` + top-k): every clip proposes a span
        centred on itself, 0.1 wide; the k clips with the highest foreground logit become the anchors.

        Deviation: padded clips are excluded from the top-k (the released code can select them, with +inf
        anchors); clips whose proposal falls outside (0.01, 0.99) are excluded the same way.
        """
        length = memory.shape[1]
        valid_len = video_mask.sum(1, keepdim=True).clamp(min=1).float()
        centre = (torch.arange(length, device=memory.device).float()[None] + 0.5) / valid_len
        width = torch.full_like(centre, 0.1)
        props = torch.stack([centre, width], -1)
        usable = video_mask & ((props > 0.01) & (props < 0.99)).all(-1)
        props_unsig = inverse_sigmoid(props, eps=1e-6)
        out_mem = self.enc_output_norm(self.enc_output(memory.masked_fill(~usable[..., None], 0.0)))
        logits = self.enc_class_embed(out_mem)
        coord_unsig = self.enc_span_embed(out_mem) + props_unsig
        k = self.cfg.num_queries
        ranking = logits[..., 0].masked_fill(~usable, float("-inf"))
        top = torch.topk(ranking, min(k, length), dim=1).indices  # usable clips first, best first
        # fewer usable clips than queries: cycle through the usable ones instead of taking padding
        n_usable = usable.sum(1, keepdim=True).clamp(min=1, max=top.shape[1])
        cycle = torch.arange(k, device=memory.device)[None] % n_usable
        top = torch.gather(top, 1, cycle)
        gather = top.unsqueeze(-1)
        anchors_unsig = torch.gather(coord_unsig, 1, gather.expand(-1, -1, 2))
        content = torch.gather(out_mem, 1, gather.expand(-1, -1, out_mem.shape[-1]))
        return {
            "anchors_unsig": anchors_unsig,
            "interm_spans": anchors_unsig.sigmoid(),
            "interm_logits": self.enc_class_embed(content),
            "top": top,
        }

    # -------------------------------------------------------------------------------------------- one pass
    def _pass(
        self,
        video: torch.Tensor,
        video_mask: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        dn: DenoisingQueries | None,
    ) -> dict[str, Any]:
        enc = self.encode(video, video_mask, text, text_mask)
        memory, mem_global = enc["memory"], enc["global"]
        b = memory.shape[0]
        prop = self.proposals(memory, video_mask)
        tgt = self.tgt_embed.weight.unsqueeze(0).expand(b, -1, -1)
        anchors = prop["anchors_unsig"].detach()
        self_mask = None
        if dn is not None:
            tgt = torch.cat([dn.content, tgt], 1)
            anchors = torch.cat([dn.anchors_unsig, anchors], 1)
            self_mask = dn.attn_mask
        hs, refs = self.decoder(
            tgt, memory, anchors_unsig=anchors, mem_pos=enc["pos"], mem_pad=enc["pad"], self_mask=self_mask
        )
        logits = self.class_embed(hs)  # (layers, B, Q', 2)
        spans = (self.span_embed(hs) + inverse_sigmoid(refs)).sigmoid()
        pad_size = dn.pad_size if dn is not None else 0
        saliency = (self.saliency_proj1(memory) * self.saliency_proj2(mem_global).unsqueeze(1)).sum(-1)
        return {
            "logits": logits[:, :, pad_size:],
            "spans": spans[:, :, pad_size:],
            "dn_logits": logits[:, :, :pad_size],
            "dn_spans": spans[:, :, :pad_size],
            "interm": {"pred_logits": prop["interm_logits"], "pred_spans": prop["interm_spans"]},
            "saliency": saliency / math.sqrt(self.cfg.hidden_dim),
        }

    def forward(
        self,
        video: torch.Tensor,
        video_mask: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        target_spans: list[torch.Tensor] | None = None,
    ) -> dict[str, Any]:
        """``target_spans`` (normalised centre/width, one tensor per item) turns on denoising queries."""
        cfg = self.cfg
        dn = None
        if self.training and cfg.use_dn and target_spans is not None:
            dn = make_denoising_queries(
                target_spans, cfg.dn_groups, cfg.box_noise_scale, self.label_enc, cfg.num_queries
            )
        pos = self._pass(video, video_mask, text, text_mask, dn)
        out: dict[str, Any] = {
            "pred_logits": pos["logits"][-1],
            "pred_spans": pos["spans"][-1],
            "saliency_scores": pos["saliency"],
            "video_mask": video_mask,
        }
        if cfg.aux_loss:
            out["aux_outputs"] = [
                {"pred_logits": a, "pred_spans": s}
                for a, s in zip(pos["logits"][:-1], pos["spans"][:-1], strict=True)
            ]
        if cfg.use_interm:
            out["interm_outputs"] = pos["interm"]
        if dn is not None:
            out["dn"] = {"logits": pos["dn_logits"], "spans": pos["dn_spans"], "queries": dn}
        if self.training and video.shape[0] > 1:
            # the negative query of each item is the next item's query (no generated negatives here)
            neg_text, neg_mask = text.roll(-1, 0), text_mask.roll(-1, 0)
            neg = self._pass(video, video_mask, neg_text, neg_mask, dn)
            out["saliency_scores_neg"] = neg["saliency"]
            if cfg.use_decoder_neg:
                out["pred_logits_neg"] = neg["logits"][-1]
                for aux, a in zip(out.get("aux_outputs", []), neg["logits"][:-1], strict=False):
                    aux["pred_logits_neg"] = a
            if cfg.interm_neg and cfg.use_interm:
                out["interm_outputs_neg"] = {"pred_logits": neg["interm"]["pred_logits"]}
        return out


class MomentDETR(nn.Module):
    """Moment-DETR: [video ; query] through one encoder, a vanilla DETR decoder with learned queries, a linear
    saliency head on the video memory (``moment_detr/model.py``)."""

    def __init__(self, cfg: MomentConfig, *, video_dim: int, text_dim: int) -> None:
        super().__init__()
        d = cfg.hidden_dim
        self.cfg = cfg
        self.input_vid_proj = input_projection(video_dim + 2, d, cfg.n_input_proj, cfg.input_dropout)
        self.input_txt_proj = input_projection(text_dim, d, cfg.n_input_proj, cfg.input_dropout)
        self.encoder = clones(
            EncoderLayer(d, cfg.nheads, cfg.dim_feedforward, cfg.dropout, cfg.activation), cfg.enc_layers
        )
        self.decoder = clones(
            DetrDecoderLayer(d, cfg.nheads, cfg.dim_feedforward, cfg.dropout, cfg.activation), cfg.dec_layers
        )
        self.decoder_norm = nn.LayerNorm(d)
        for part in (self.encoder, self.decoder):
            _xavier(part)
        self.query_embed = nn.Embedding(cfg.num_queries, d)
        self.class_embed = nn.Linear(d, 2)
        self.span_embed = MLP(d, d, 2, 3)
        self.saliency_proj = nn.Linear(d, 1)

    def forward(
        self,
        video: torch.Tensor,
        video_mask: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        target_spans: list[torch.Tensor] | None = None,
    ) -> dict[str, Any]:
        b, length, _ = video.shape
        vid = self.input_vid_proj(video)
        txt = self.input_txt_proj(text)
        x = torch.cat([vid, txt], 1)
        pos = torch.cat([sine_position_embedding(video_mask, self.cfg.hidden_dim), torch.zeros_like(txt)], 1)
        pad = ~torch.cat([video_mask, text_mask], 1)
        for layer in self.encoder:
            x = layer(x, pos, pad)
        query_pos = self.query_embed.weight.unsqueeze(0).expand(b, -1, -1)
        tgt = torch.zeros_like(query_pos)
        hs = []
        for layer in self.decoder:
            tgt = layer(tgt, x, query_pos, pos, pad)
            hs.append(self.decoder_norm(tgt))
        h = torch.stack(hs)
        logits = self.class_embed(h)
        spans = self.span_embed(h).sigmoid()
        out: dict[str, Any] = {
            "pred_logits": logits[-1],
            "pred_spans": spans[-1],
            "video_mask": video_mask,
            "saliency_scores": self.saliency_proj(x[:, :length]).squeeze(-1),
        }
        if self.cfg.aux_loss:
            out["aux_outputs"] = [
                {"pred_logits": a, "pred_spans": s} for a, s in zip(logits[:-1], spans[:-1], strict=True)
            ]
        return out


def build_model(cfg: MomentConfig, *, video_dim: int, text_dim: int, motion_dim: int = 0) -> nn.Module:
    """The model of ``cfg.variant``. ``video_dim`` excludes the TEF columns; for MS-DETR ``motion_dim`` of
    them
    are the motion stream and the rest the semantics stream."""
    if cfg.variant == "moment-detr":
        return MomentDETR(cfg, video_dim=video_dim, text_dim=text_dim)
    if not 0 < motion_dim < video_dim:
        raise ValueError(f"MS-DETR needs a motion and a semantics part of the {video_dim} video columns")
    return MSDETR(cfg, motion_dim=motion_dim, semantic_dim=video_dim - motion_dim, text_dim=text_dim)
