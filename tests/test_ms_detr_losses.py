"""Every loss term of the MS-DETR port against a hand-computed value, and the denoising queries."""

from __future__ import annotations

import math

import pytest
import torch

from dvtr_data.baselines.ms_detr.config import MomentConfig
from dvtr_data.baselines.ms_detr.denoising import denoising_attn_mask, jitter_windows, make_denoising_queries
from dvtr_data.baselines.ms_detr.losses import (
    MomentCriterion,
    rank_contrastive_loss,
    sigmoid_focal_loss,
    weight_dict,
)
from dvtr_data.baselines.ms_detr.spans import cxw_to_xx

LN2 = math.log(2)


def _criterion(**kw: object) -> MomentCriterion:
    return MomentCriterion(MomentConfig(**kw))


def test_span_l1_and_giou() -> None:
    # prediction (c .5, w .2) against target (c .5, w .4): L1 mean (0 + .2) / 2; IoU .2/.4, nested -> GIoU .5
    crit = _criterion()
    pred = torch.tensor([[[0.5, 0.2], [0.9, 0.1]]])
    out = crit.loss_spans(pred, [torch.tensor([[0.5, 0.4]])], [(torch.tensor([0]), torch.tensor([0]))])
    assert out["loss_span"].item() == pytest.approx(0.1)
    assert out["loss_giou"].item() == pytest.approx(0.5)


def test_label_cross_entropy_weights_background_by_eos() -> None:
    # zero logits: -log p = ln 2 for either class. One matched query (weight 1), one background (weight .1);
    # plain mean over the two queries: (1 + .1) / 2 * ln 2
    crit = _criterion(eos_coef=0.1)
    loss = crit.label_ce(torch.zeros(1, 2, 2), [(torch.tensor([0]), torch.tensor([0]))])
    assert loss.item() == pytest.approx(0.55 * LN2)
    # the negative query: everything background -> .1 * ln 2
    out = {"pred_logits": torch.zeros(1, 2, 2), "pred_logits_neg": torch.zeros(1, 2, 2)}
    both = crit.loss_labels(out, [(torch.tensor([0]), torch.tensor([0]))])
    assert both.item() == pytest.approx(0.55 * LN2 + 0.1 * LN2)


def test_saliency_hinge() -> None:
    # scores .1 .5 .3; pairs (pos 0, neg 1) and (pos 2, neg 1), margin .2: .6 + .4 = 1.0, / (1 * 2) * 2 = 1.0
    crit = _criterion(variant="moment-detr")
    out = {
        "saliency_scores": torch.tensor([[0.1, 0.5, 0.3]]),
        "video_mask": torch.ones(1, 3, dtype=torch.bool),
    }
    batch = {"saliency_pos": torch.tensor([[0, 2]]), "saliency_neg": torch.tensor([[1, 1]])}
    assert crit.loss_saliency(out, batch).item() == pytest.approx(1.0)


def test_rank_contrastive_hand_case() -> None:
    # one item, two clips scored 1 and 0, rated 12 and 0; negative-query scores 0 0. For every threshold 1..11
    # only clip 0 is positive: logits / .5 = [2, 0, 0, 0] -> -log softmax_0 = log(1 + 3 e^-2). 11 thresholds
    # / 12.
    loss = rank_contrastive_loss(
        torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2), torch.tensor([[12.0, 0.0]]), torch.ones(1, 2), 0.5
    )
    assert loss.item() == pytest.approx(11 / 12 * math.log(1 + 3 * math.exp(-2)), rel=1e-5)


def test_rank_contrastive_ignores_padding() -> None:
    # a padded third clip with a huge score must not change the loss
    base = rank_contrastive_loss(
        torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2), torch.tensor([[12.0, 0.0]]), torch.ones(1, 2), 0.5
    )
    padded = rank_contrastive_loss(
        torch.tensor([[1.0, 0.0, 50.0]]),
        torch.tensor([[0.0, 0.0, 50.0]]),
        torch.tensor([[12.0, 0.0, 0.0]]),
        torch.tensor([[1.0, 1.0, 0.0]]),
        0.5,
    )
    assert padded.item() == pytest.approx(base.item(), rel=1e-5)


def test_ms_detr_saliency_adds_negative_pair_term() -> None:
    # hinge 0 (pairs already separated by more than the margin), rank term as above, negative pair:
    # -log(1 - sigmoid(0)) per clip, summed over 2 clips = 2 ln 2
    crit = _criterion(variant="ms-detr")
    out = {
        "saliency_scores": torch.tensor([[1.0, 0.0]]),
        "saliency_scores_neg": torch.zeros(1, 2),
        "video_mask": torch.ones(1, 2, dtype=torch.bool),
    }
    batch = {
        "saliency_pos": torch.tensor([[0, 0]]),
        "saliency_neg": torch.tensor([[1, 1]]),
        "saliency_all": torch.tensor([[12.0, 0.0]]),
    }
    expected = 0.0 + 11 / 12 * math.log(1 + 3 * math.exp(-2)) + 2 * LN2
    assert crit.loss_saliency(out, batch).item() == pytest.approx(expected, rel=1e-5)


def test_focal_loss_hand_values() -> None:
    # logit 0: p = .5, CE ln 2, (1 - p_t)^2 = .25; alpha .25 for the positive, .75 for the negative
    loss = sigmoid_focal_loss(torch.zeros(2), torch.tensor([1.0, 0.0]), alpha=0.25)
    torch.testing.assert_close(loss, torch.tensor([LN2 / 16, 3 * LN2 / 16]))


def test_weight_dict_matches_the_released_build() -> None:
    w = weight_dict(MomentConfig(variant="ms-detr", dec_layers=2))
    assert w["loss_span"] == 10 and w["loss_giou"] == 1 and w["loss_label"] == 4 and w["loss_saliency"] == 1
    assert w["loss_span_0"] == 10 and "loss_saliency_0" not in w
    assert w["tgt_loss_ce"] == 4 and w["tgt_loss_bbox"] == 10 and w["tgt_loss_giou_0"] == 1
    assert w["loss_span_interm"] == 10 and w["loss_label_interm_neg"] == 4
    m = weight_dict(MomentConfig(variant="moment-detr", use_dn=False, use_interm=False))
    assert "tgt_loss_ce" not in m and "loss_span_interm" not in m


# ---------------------------------------------------------------------------------------------- denoising
def test_jitter_moves_each_end_at_most_half_width_times_scale() -> None:
    spans = torch.tensor([[0.5, 0.2]] * 200)
    g = torch.Generator().manual_seed(0)
    noisy = cxw_to_xx(jitter_windows(spans, 0.5, g))
    clean = cxw_to_xx(spans)
    moved = (noisy - clean).abs()
    assert moved.max().item() <= 0.5 * 0.1 + 1e-6
    assert moved.max().item() > 0.03  # it does move
    torch.testing.assert_close(jitter_windows(spans, 0.0), spans)


def test_denoising_attention_mask_blocks() -> None:
    mask = denoising_attn_mask(single_pad=2, groups=3, num_queries=2, device=torch.device("cpu"))
    assert mask.shape == (8, 8)
    assert mask[6:, :6].all() and not mask[6:, 6:].any()  # matching queries see no copy
    assert not mask[:6, 6:].any()  # copies see the matching queries
    assert not mask[0:2, 0:2].any() and mask[0:2, 2:6].all()  # group 0 sees only itself
    assert mask[2:4, 0:2].all() and mask[2:4, 4:6].all() and not mask[2:4, 2:4].any()


def test_denoising_queries_keep_each_items_windows() -> None:
    enc = torch.nn.Embedding(2, 4)
    spans = [torch.tensor([[0.3, 0.2]]), torch.tensor([[0.6, 0.2], [0.8, 0.1]])]
    dn = make_denoising_queries(spans, groups=2, noise_scale=0.0, label_enc=enc, num_queries=3)
    assert dn is not None and dn.pad_size == 4
    # item 0 holds one copy per group (slots 0 and 2), item 1 two (slots 0,1 and 2,3)
    assert sorted(dn.slots) == sorted([(0, 0, 0), (1, 0, 0), (1, 1, 1), (0, 2, 0), (1, 2, 0), (1, 3, 1)])
    for (item, slot, j), tgt in zip(dn.slots, dn.targets, strict=True):
        torch.testing.assert_close(tgt, spans[item][j])
        torch.testing.assert_close(dn.anchors_unsig[item, slot].sigmoid(), spans[item][j], atol=1e-4, rtol=0)
    # the unused slot of item 0 stays empty
    assert dn.content[0, 1].abs().sum() == 0 and dn.content[0, 0].abs().sum() > 0
    assert make_denoising_queries([torch.zeros(0, 2)], 2, 0.5, enc, 3) is None


def test_denoising_loss_hand_case() -> None:
    crit = _criterion(variant="ms-detr")
    enc = torch.nn.Embedding(2, 4)
    dn = make_denoising_queries(
        [torch.tensor([[0.5, 0.4]])], groups=1, noise_scale=0.0, label_enc=enc, num_queries=2
    )
    # one layer, the copy predicts (.5, .2) with zero logits
    out = {"logits": torch.zeros(1, 1, 1, 2), "spans": torch.tensor([[[[0.5, 0.2]]]]), "queries": dn}
    losses = crit.denoising(out, "", 0)
    assert losses["tgt_loss_ce"].item() == pytest.approx(LN2 / 16 + 3 * LN2 / 16)
    assert losses["tgt_loss_bbox"].item() == pytest.approx(0.2)  # summed over centre and width
    assert losses["tgt_loss_giou"].item() == pytest.approx(0.5)
