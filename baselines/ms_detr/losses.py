"""Losses of MS-DETR and Moment-DETR (``SetCriterion`` of ``ms_detr/model.py`` and ``dn_components.py``).

Terms, each named as in the released weight dict so logs compare:

* ``loss_span`` (L1 on matched normalised centre/width, mean), ``loss_giou`` (1 − GIoU, mean),
  ``loss_label`` (2-way cross-entropy, background weighted by ``eos_coef``, mean over all queries; plus the
  same
  on the negative-query pass with every query labelled background);
* the same per earlier decoder layer (suffix ``_0`` ...), on the encoder's top-k proposals (``_interm``) and,
  labels only, on the proposals under the negative query (``_interm_neg``);
* denoising: ``tgt_loss_ce`` (sigmoid focal loss, α 0.25, γ 2, summed over both logits, per copy),
  ``tgt_loss_bbox`` (L1 summed over centre and width, per copy), ``tgt_loss_giou``;
* ``loss_saliency``: hinge ``[margin + s_neg − s_pos]_+`` on sampled clip pairs, plus (MS-DETR) the
  rank-contrastive loss over thresholds 1..11 of the summed ratings at temperature 0.5 with the negative-query
  clips as extra negatives (divided by 12, as released), plus ``−Σ log(1 − σ(s))`` over the clips scored under
  the negative query.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import MomentConfig
from .matcher import HungarianMatcher
from .spans import cxw_to_xx, generalized_temporal_iou

FOREGROUND, BACKGROUND = 0, 1


def weight_dict(cfg: MomentConfig) -> dict[str, float]:
    """The weight of every loss term (``build_model`` of the released code)."""
    base = {
        "loss_span": cfg.span_loss_coef,
        "loss_giou": cfg.giou_loss_coef,
        "loss_label": cfg.label_loss_coef,
        "loss_saliency": cfg.lw_saliency,
    }
    w = dict(base)
    dn = cfg.variant == "ms-detr" and cfg.use_dn
    if dn:
        w.update(
            {
                "tgt_loss_ce": cfg.label_loss_coef,
                "tgt_loss_bbox": cfg.span_loss_coef,
                "tgt_loss_giou": cfg.giou_loss_coef,
            }
        )
    if cfg.aux_loss:
        layer_terms = {k: v for k, v in w.items() if k != "loss_saliency"}
        for i in range(cfg.dec_layers - 1):
            w.update({f"{k}_{i}": v for k, v in layer_terms.items()})
    if cfg.variant == "ms-detr" and cfg.use_interm:
        for k in ("loss_span", "loss_giou", "loss_label"):
            w[f"{k}_interm"] = base[k] * cfg.interm_loss_coef
        if cfg.interm_neg:
            w["loss_label_interm_neg"] = w["loss_label_interm"]
    return w


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Element-wise focal loss on independent sigmoids (RetinaNet), not reduced."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


class MomentCriterion(nn.Module):
    class_weight: torch.Tensor

    def __init__(self, cfg: MomentConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.matcher = HungarianMatcher(cfg.set_cost_class, cfg.set_cost_span, cfg.set_cost_giou)
        self.weights = weight_dict(cfg)
        self.register_buffer("class_weight", torch.tensor([1.0, cfg.eos_coef]))

    # -------------------------------------------------------------------------------------------- terms
    def loss_spans(
        self,
        pred_spans: torch.Tensor,
        targets: list[torch.Tensor],
        indices: list[tuple[torch.Tensor, torch.Tensor]],
    ) -> dict[str, torch.Tensor]:
        src = torch.cat([pred_spans[b, i] for b, (i, _) in enumerate(indices)])
        tgt = torch.cat([t[j].to(src) for t, (_, j) in zip(targets, indices, strict=True)])
        if len(tgt) == 0:
            zero = pred_spans.sum() * 0
            return {"loss_span": zero, "loss_giou": zero}
        giou = torch.diag(generalized_temporal_iou(cxw_to_xx(src), cxw_to_xx(tgt)))
        return {"loss_span": F.l1_loss(src, tgt, reduction="none").mean(), "loss_giou": (1 - giou).mean()}

    def label_ce(
        self, logits: torch.Tensor, indices: list[tuple[torch.Tensor, torch.Tensor]] | None
    ) -> torch.Tensor:
        """Weighted CE, reduced by a plain mean over queries (``reduction='none'`` then ``.mean()``, as
        released)."""
        target = torch.full(logits.shape[:2], BACKGROUND, dtype=torch.long, device=logits.device)
        if indices is not None:
            for b, (i, _) in enumerate(indices):
                target[b, i.to(logits.device)] = FOREGROUND
        return F.cross_entropy(
            logits.transpose(1, 2), target, self.class_weight.to(logits), reduction="none"
        ).mean()

    def loss_labels(
        self, out: dict[str, Any], indices: list[tuple[torch.Tensor, torch.Tensor]]
    ) -> torch.Tensor:
        loss = self.label_ce(out["pred_logits"], indices)
        if "pred_logits_neg" in out:
            loss = loss + self.label_ce(out["pred_logits_neg"], None)
        return loss

    def loss_saliency(self, out: dict[str, Any], batch: dict[str, Any]) -> torch.Tensor:
        scores = out["saliency_scores"]
        mask = out["video_mask"].float()
        rows = torch.arange(len(scores), device=scores.device)
        pos_idx, neg_idx = batch["saliency_pos"], batch["saliency_neg"]
        n_pairs = pos_idx.shape[1]
        pos = torch.stack([scores[rows, pos_idx[:, c]] for c in range(n_pairs)], 1)
        neg = torch.stack([scores[rows, neg_idx[:, c]] for c in range(n_pairs)], 1)
        hinge = (self.cfg.saliency_margin + neg - pos).clamp(min=0).sum() / (len(pos) * n_pairs) * 2
        if self.cfg.variant != "ms-detr" or "saliency_scores_neg" not in out:
            return hinge
        neg_scores = out["saliency_scores_neg"]
        neg_pair = (-torch.log(1.0 - torch.sigmoid(neg_scores)) * mask).sum(1).mean()
        return (
            hinge
            + rank_contrastive_loss(scores, neg_scores, batch["saliency_all"], mask, self.cfg.rank_tau)
            + neg_pair
        )

    def denoising(self, dn: dict[str, Any], suffix: str, layer: int) -> dict[str, torch.Tensor]:
        q = dn["queries"]
        items = torch.tensor([s[0] for s in q.slots], device=dn["logits"].device)
        slots = torch.tensor([s[1] for s in q.slots], device=dn["logits"].device)
        logits = dn["logits"][layer][items, slots]  # (n, 2)
        spans = dn["spans"][layer][items, slots]
        n = len(q.slots)
        onehot = torch.zeros_like(logits)
        onehot[:, FOREGROUND] = 1.0
        ce = sigmoid_focal_loss(logits, onehot, self.cfg.focal_alpha).sum() / n
        tgt = q.targets.to(spans)
        l1 = F.l1_loss(spans, tgt, reduction="none").sum() / n
        giou = (1 - torch.diag(generalized_temporal_iou(cxw_to_xx(spans), cxw_to_xx(tgt)))).sum() / n
        return {f"tgt_loss_ce{suffix}": ce, f"tgt_loss_bbox{suffix}": l1, f"tgt_loss_giou{suffix}": giou}

    # -------------------------------------------------------------------------------------------- all
    def forward(self, out: dict[str, Any], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        targets = batch["spans"]
        losses: dict[str, torch.Tensor] = {}
        indices = self.matcher(out["pred_logits"], out["pred_spans"], targets)
        losses.update(self.loss_spans(out["pred_spans"], targets, indices))
        losses["loss_label"] = self.loss_labels(out, indices)
        losses["loss_saliency"] = self.loss_saliency(out, batch)
        for i, aux in enumerate(out.get("aux_outputs", [])):
            idx = self.matcher(aux["pred_logits"], aux["pred_spans"], targets)
            losses.update(
                {f"{k}_{i}": v for k, v in self.loss_spans(aux["pred_spans"], targets, idx).items()}
            )
            losses[f"loss_label_{i}"] = self.loss_labels(aux, idx)
        if "interm_outputs" in out:
            interm = out["interm_outputs"]
            idx = self.matcher(interm["pred_logits"], interm["pred_spans"], targets)
            losses.update(
                {f"{k}_interm": v for k, v in self.loss_spans(interm["pred_spans"], targets, idx).items()}
            )
            losses["loss_label_interm"] = self.label_ce(interm["pred_logits"], idx)
        if "interm_outputs_neg" in out:
            losses["loss_label_interm_neg"] = self.label_ce(out["interm_outputs_neg"]["pred_logits"], None)
        if "dn" in out:
            n_layers = out["dn"]["logits"].shape[0]
            losses.update(self.denoising(out["dn"], "", n_layers - 1))
            for i in range(n_layers - 1):
                losses.update(self.denoising(out["dn"], f"_{i}", i))
        return losses

    def total(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """Weighted sum of the terms that have a weight (as the released training loop sums)."""
        return sum(losses[k] * self.weights[k] for k in losses if k in self.weights)  # type: ignore[return-value]


def rank_contrastive_loss(
    scores: torch.Tensor, neg_scores: torch.Tensor, ratings: torch.Tensor, mask: torch.Tensor, tau: float
) -> torch.Tensor:
    """MS-DETR's rank-contrastive saliency loss.

    For each threshold r = 1..11 of the summed ratings (0..12), the clips rated ≥ r are positives of a softmax
    (temperature ``tau``) over all clips of the item under its own query and under the negative query (whose
    clips are rated 0). The loss is −mean log-probability of the positives, averaged over items that have a
    positive at that threshold (items without one count as 0 in the mean); thresholds with no positive in the
    whole batch are skipped; the sum is divided by 12, as released.
    """
    s = torch.cat([scores, neg_scores], 1)
    labels = torch.cat([ratings, torch.zeros_like(ratings)], 1)
    m = mask.repeat(1, 2)
    s = m * s + (1.0 - m) * -1e3
    total = s.new_zeros(())
    for r in range(1, 12):
        pos = (labels >= r).float()
        if pos.sum() == 0:
            continue
        has_pos = (pos.sum(1) > 0).float()
        logits = s / tau
        logits = logits - logits.max(1, keepdim=True).values
        log_prob = logits - torch.log(logits.exp().sum(1, keepdim=True) + 1e-6)
        mean_log_prob_pos = (pos * log_prob * m).sum(1) / (pos.sum(1) + 1e-6)
        total = total + (-mean_log_prob_pos * has_pos).mean()
    return total / 12
