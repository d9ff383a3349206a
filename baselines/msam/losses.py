"""MSAM's three loss terms, with the authors' reductions (msam.md §2.5, §4.2, §4.3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dvtr_data.errors import UsageError


def symmetric_cross_entropy(logits: Tensor) -> Tensor:
    """CLIP4Clip ``CrossEn`` on the matrix and on its transpose, averaged; targets on the diagonal.

    Pairs sharing a video in the batch count as negatives (no masking), as in the authors' code.
    """
    if logits.ndim != 2 or logits.shape[0] != logits.shape[1]:
        raise UsageError(
            f"the contrastive loss needs a square [pairs, pairs] matrix, got {tuple(logits.shape)}"
        )
    rows = -torch.diagonal(F.log_softmax(logits, dim=1)).mean()
    cols = -torch.diagonal(F.log_softmax(logits, dim=0)).mean()
    return (rows + cols) / 2


def gaussian_kl(mu_q: Tensor, sigma_q: Tensor, mu_p: Tensor, sigma_p: Tensor) -> Tensor:
    """``KL(N(mu_q, sigma_q²) ‖ N(mu_p, sigma_p²))`` summed over all slots and dimensions, divided by batch.

    In MSAM ``q`` is the video and ``p`` the text. The sum (not a mean) over 7×512 dimensions is the
    authors' reduction; it makes this term large next to the contrastive loss.
    """
    ratio = sigma_q / sigma_p
    per_dim = 2 * torch.log(sigma_p / sigma_q) - 1 + ratio.square() + ((mu_p - mu_q) / sigma_p).square()
    return 0.5 * per_dim.sum() / mu_q.shape[0]


def slot_diversity(mu: Tensor, sigma: Tensor) -> Tensor:
    """Mean over samples of ``mean_{jk} |Γ_jk − δ_jk|`` with ``Γ`` the cosine Gram of the slots ``μ/σ``.

    Pushes the K slot embeddings of one sample towards orthogonality (L1 on the off-diagonal cosines).
    """
    slots = F.normalize(mu / sigma, dim=-1)
    gram = slots @ slots.transpose(-1, -2)
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    return (gram - eye).abs().mean(dim=(-2, -1)).mean()
