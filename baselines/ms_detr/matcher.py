"""Hungarian matching of predicted spans to ground-truth windows (DETR's set matching, as MS-DETR uses it).

The assignment solver is written here (shortest augmenting paths with potentials, O(n² m)) so the baseline
needs no SciPy; ``tests/test_ms_detr_matcher.py`` checks it against brute force over all assignments.
"""

from __future__ import annotations

import torch
from torch import nn

from .spans import cxw_to_xx, generalized_temporal_iou


def linear_sum_assignment(cost: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimum-cost assignment of a (rows, cols) matrix; every row is assigned when rows <= cols, else every
    col.

    Returns ``(row_ind, col_ind)`` with ``row_ind`` increasing, like ``scipy.optimize.linear_sum_assignment``.
    """
    c = cost.detach().to(torch.float64).cpu()
    transposed = c.shape[0] > c.shape[1]
    if transposed:
        c = c.T
    n, m = c.shape
    if n == 0:
        empty = torch.zeros(0, dtype=torch.int64)
        return empty, empty
    a = c.tolist()
    inf = float("inf")
    u = [0.0] * (n + 1)
    v = [0.0] * (m + 1)
    p = [0] * (m + 1)  # p[j]: row (1-based) assigned to column j
    way = [0] * (m + 1)
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv = [inf] * (m + 1)
        used = [False] * (m + 1)
        while True:
            used[j0] = True
            i0 = p[j0]
            delta = inf
            j1 = 0
            for j in range(1, m + 1):
                if not used[j]:
                    cur = a[i0 - 1][j - 1] - u[i0] - v[j]
                    if cur < minv[j]:
                        minv[j] = cur
                        way[j] = j0
                    if minv[j] < delta:
                        delta = minv[j]
                        j1 = j
            for j in range(m + 1):
                if used[j]:
                    u[p[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while True:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
            if j0 == 0:
                break
    pairs = sorted((p[j] - 1, j - 1) for j in range(1, m + 1) if p[j] != 0)
    rows = torch.tensor([r for r, _ in pairs], dtype=torch.int64)
    cols = torch.tensor([q for _, q in pairs], dtype=torch.int64)
    if transposed:
        order = torch.argsort(cols)
        return cols[order], rows[order]
    return rows, cols


class HungarianMatcher(nn.Module):
    """One-to-one matching of decoder queries to windows by ``w_span·L1 + w_giou·(−GIoU) + w_class·(−p_fg)``.

    Class 0 is foreground (as in the released code); spans are normalised (centre, width).
    """

    def __init__(self, cost_class: float = 4.0, cost_span: float = 10.0, cost_giou: float = 1.0) -> None:
        super().__init__()
        self.cost_class = cost_class
        self.cost_span = cost_span
        self.cost_giou = cost_giou

    @torch.no_grad()
    def forward(
        self, pred_logits: torch.Tensor, pred_spans: torch.Tensor, target_spans: list[torch.Tensor]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``pred_logits`` (B, Q, 2), ``pred_spans`` (B, Q, 2), one (n_i, 2) tensor of windows per item."""
        indices = []
        prob_fg = pred_logits.softmax(-1)[..., 0]
        for b, tgt in enumerate(target_spans):
            if len(tgt) == 0:
                empty = torch.zeros(0, dtype=torch.int64)
                indices.append((empty, empty))
                continue
            spans = pred_spans[b]
            cost = (
                self.cost_span * torch.cdist(spans, tgt.to(spans), p=1)
                - self.cost_giou * generalized_temporal_iou(cxw_to_xx(spans), cxw_to_xx(tgt.to(spans)))
                - self.cost_class * prob_fg[b][:, None]
            )
            indices.append(linear_sum_assignment(cost))
        return indices
