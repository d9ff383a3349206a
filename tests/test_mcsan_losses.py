"""MCSAN's losses against hand-computed cases (methods.md §1.4 formulas, worked out on paper below)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dvtr_data.baselines.mcsan.losses import attribute_kl, focal_bce, ranking_loss

LN = math.log


# ---------------------------------------------------------------------------------------------- focal BCE
def test_focal_bce_two_labels_at_half_probability() -> None:
    # p = 0.5 for both labels, y = (1, 0), alpha = 0.25, gamma = 2:
    # positive term 0.25 * 0.5^2 * ln 0.5, negative term 0.75 * 0.5^2 * ln 0.5, mean over K = 2, negated.
    expected = -(0.25 * 0.25 * LN(0.5) + 0.75 * 0.25 * LN(0.5)) / 2
    got = focal_bce(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), alpha=0.25, gamma=2.0)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    assert got.item() == pytest.approx(0.0866434, abs=1e-6)


def test_focal_bce_confident_prediction_weights() -> None:
    z = torch.tensor([[LN(3.0)]])  # sigmoid(ln 3) = 0.75
    # right (y = 1): 0.25 * (1 - 0.75)^2 * ln 0.75; wrong (y = 0): 0.75 * 0.75^2 * ln 0.25
    right = focal_bce(z, torch.ones(1, 1)).item()
    wrong = focal_bce(z, torch.zeros(1, 1)).item()
    assert right == pytest.approx(-(0.25 * 0.0625 * LN(0.75)), rel=1e-6)
    assert wrong == pytest.approx(-(0.75 * 0.5625 * LN(0.25)), rel=1e-6)
    assert wrong > 100 * right  # the focal factor all but silences the well-classified label


def test_focal_bce_averages_over_samples() -> None:
    z = torch.tensor([[0.0], [LN(3.0)]])
    y = torch.tensor([[1.0], [0.0]])
    expected = (-(0.25 * 0.25 * LN(0.5)) - (0.75 * 0.5625 * LN(0.25))) / 2
    assert focal_bce(z, y).item() == pytest.approx(expected, rel=1e-6)


def test_focal_bce_reduces_to_half_bce() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, 7, generator=g) * 3
    y = (torch.rand(5, 7, generator=g) > 0.7).float()
    bce = F.binary_cross_entropy_with_logits(z, y)
    assert focal_bce(z, y, alpha=0.5, gamma=0.0).item() == pytest.approx(0.5 * bce.item(), rel=1e-6)


def test_focal_bce_is_finite_for_saturated_logits() -> None:
    z = torch.tensor([[90.0, -90.0, 90.0, -90.0]], requires_grad=True)
    y = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    loss = focal_bce(z, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
    # two wrong labels at |z| = 90: each contributes weight * 1 * 90 (ln(1 - p) ~ -90); alpha 0.25 / 0.75
    assert loss.item() == pytest.approx((0.75 * 90 + 0.25 * 90) / 4, rel=1e-4)


def test_focal_bce_shape_mismatch_is_an_error() -> None:
    from dvtr_data.errors import UsageError

    with pytest.raises(UsageError):
        focal_bce(torch.zeros(2, 3), torch.zeros(2, 4))


# ---------------------------------------------------------------------------------------------- KL
def test_attribute_kl_hand_case() -> None:
    text = torch.tensor([[0.0, LN(3.0)]])  # softmax: (0.25, 0.75)
    video = torch.tensor([[0.0, 0.0]])  # softmax: (0.5, 0.5)
    t_to_v = 0.25 * LN(0.25 / 0.5) + 0.75 * LN(0.75 / 0.5)
    v_to_t = 0.5 * LN(0.5 / 0.25) + 0.5 * LN(0.5 / 0.75)
    assert attribute_kl(text, video).item() == pytest.approx(t_to_v, rel=1e-6)
    assert attribute_kl(text, video).item() == pytest.approx(0.130812, abs=1e-6)
    assert attribute_kl(text, video, direction="symmetric").item() == pytest.approx(
        (t_to_v + v_to_t) / 2, rel=1e-6
    )


def test_attribute_kl_is_zero_for_equal_distributions_and_shift_invariant() -> None:
    g = torch.Generator().manual_seed(1)
    a = torch.randn(4, 9, generator=g)
    assert attribute_kl(a, a + 5.0).item() == pytest.approx(0.0, abs=1e-6)
    b = torch.randn(4, 9, generator=g)
    naive = (
        sum(
            sum(
                pt * math.log(pt / pv)
                for pt, pv in zip(
                    torch.softmax(a[i], 0).tolist(), torch.softmax(b[i], 0).tolist(), strict=True
                )
            )
            for i in range(4)
        )
        / 4
    )
    assert attribute_kl(a, b).item() == pytest.approx(naive, rel=1e-5)


# ---------------------------------------------------------------------------------------------- ranking
SCORES = torch.tensor([[0.9, 0.5, 0.1], [0.6, 0.7, 0.65], [0.0, 0.3, 0.2]])
# margin 0.2; caption rows (t2v) and video columns (v2t), hinge costs of the negatives:
#   row 0: 0, 0 | row 1: 0.1, 0.15 | row 2: 0.0, 0.3
#   col 0: 0, 0 | col 1: 0.0, 0   | col 2: 0.1, 0.65


def test_ranking_loss_hardest_negatives() -> None:
    t2v = (0 + 0.15 + 0.3) / 3
    v2t = (0 + 0 + 0.65) / 3
    assert ranking_loss(SCORES, margin=0.2).item() == pytest.approx(t2v + v2t, abs=1e-6)


def test_ranking_loss_all_negatives() -> None:
    t2v = (0 + 0.25 + 0.3) / 3
    v2t = (0 + 0 + 0.75) / 3
    assert ranking_loss(SCORES, margin=0.2, negatives="all").item() == pytest.approx(t2v + v2t, abs=1e-6)


def test_ranking_loss_never_uses_a_caption_of_the_same_clip_as_negative() -> None:
    clip = torch.tensor([0, 1, 1])  # captions 1 and 2 describe one clip
    same = clip[:, None] == clip[None, :]
    # without (1, 2) and (2, 1): row 1 keeps 0.1, row 2 keeps 0.0; column 2 keeps 0.1, column 1 keeps 0.0
    expected = (0 + 0.1 + 0) / 3 + (0 + 0 + 0.1) / 3
    assert ranking_loss(SCORES, margin=0.2, same_clip=same).item() == pytest.approx(expected, abs=1e-6)


def test_ranking_loss_is_zero_when_every_positive_wins_by_the_margin() -> None:
    s = torch.eye(4) * 0.5
    assert ranking_loss(s, margin=0.2).item() == 0.0
    assert ranking_loss(s, margin=0.6).item() == pytest.approx(
        2 * 0.1, abs=1e-6
    )  # every anchor misses by 0.1
