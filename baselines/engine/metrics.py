"""Retrieval metrics as the authors' ``metrics.py`` computes them (CLIP4Clip), without the padded 3-D tensor.

Text-to-video: each caption ranks all videos; rank of its own video. Ties are broken by video order (a video
listed earlier ranks first), which is what a stable sort does; the authors' ``argsort`` does not promise an
order for ties at all. MdR is ``torch.median``, i.e. the *lower* middle value for an even count (kept).

Video-to-text, paper protocol (``compute_metrics(tensor_video_to_text_sim(.))``): a caption group scores
``max`` over the group's captions; each video ranks the groups. With ties the authors' ``np.where`` emits one
rank per tied position, so a tied row counts several times (kept, ``ties="authors"``; ``"optimistic"`` counts
each row once). MdR is ``np.median`` (the mean of the two middle values).

Video-to-text, single-query protocol: each video ranks every caption on its own (as a caption search does);
rank of the video's best-placed own caption.

Ranks are 0-based internally; R@K = share of ranks below K in percent, MdR and MnR are 1-based.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from dvtr_data.errors import UsageError


def summarise(ranks: Tensor, *, median: Literal["lower", "mean"]) -> dict[str, float]:
    """R@1/5/10 (percent), median and mean rank (1-based) of 0-based ``ranks``."""
    if ranks.numel() == 0:
        raise UsageError("no queries to score")
    r = ranks.to(torch.float64)
    one_based = r + 1
    if median == "lower":
        md = float(torch.median(one_based))
    else:
        md = float(torch.quantile(one_based, 0.5))
    return {
        "R1": float((r < 1).double().mean() * 100),
        "R5": float((r < 5).double().mean() * 100),
        "R10": float((r < 10).double().mean() * 100),
        "MdR": md,
        "MnR": float(one_based.mean()),
    }


def _check(sim: Tensor, caption_clip: Tensor) -> Tensor:
    if sim.ndim != 2 or caption_clip.ndim != 1 or sim.shape[0] != caption_clip.shape[0]:
        raise UsageError(f"need sim [captions, videos] and caption_clip [captions]; got {tuple(sim.shape)}, {tuple(caption_clip.shape)}")
    return caption_clip.to(device=sim.device, dtype=torch.long)


def t2v_ranks(sim: Tensor, caption_clip: Tensor) -> Tensor:
    """0-based rank of each caption's video among all videos; ties broken by video order."""
    own = _check(sim, caption_clip)
    target = sim.gather(1, own[:, None])
    cols = torch.arange(sim.shape[1], device=sim.device)[None, :]
    ahead = (sim > target) | ((sim == target) & (cols < own[:, None]))
    return ahead.sum(1)


def group_max(sim: Tensor, caption_clip: Tensor, n_videos: int | None = None) -> Tensor:
    """``[video queries, caption groups]``: group g's score for video v = max over g's captions of sim[c, v]."""
    own = _check(sim, caption_clip)
    n = n_videos if n_videos is not None else sim.shape[1]
    out = torch.full((n, sim.shape[1]), float("-inf"), dtype=sim.dtype, device=sim.device)
    out.scatter_reduce_(0, own[:, None].expand_as(sim), sim, reduce="amax", include_self=True)
    return out.T.contiguous()


def v2t_ranks_paper(sim: Tensor, caption_clip: Tensor, *, ties: Literal["authors", "optimistic"] = "authors") -> Tensor:
    """The authors' lenient video-to-text ranks (see the module docstring)."""
    grouped = group_max(sim, caption_clip)
    nan = grouped != grouped
    grouped = grouped.masked_fill(nan, float("-inf"))
    diag = grouped.diagonal()[:, None]
    greater = (grouped > diag).sum(1)
    if ties == "optimistic":
        return greater
    equal = (grouped == diag).sum(1)
    return torch.cat([torch.arange(g, g + max(int(e), 1)) for g, e in zip(greater.tolist(), equal.tolist(), strict=True)])


def v2t_ranks_single(sim: Tensor, caption_clip: Tensor) -> Tensor:
    """Each video ranks every caption; 0-based rank of its first own caption (ties: caption order)."""
    own = _check(sim, caption_clip)
    scores = sim.T  # [videos, captions]
    n_videos = scores.shape[0]
    is_own = own[None, :] == torch.arange(n_videos, device=sim.device)[:, None]
    best = scores.masked_fill(~is_own, float("-inf")).max(1)
    best_score, best_idx = best.values[:, None], best.indices[:, None]
    cols = torch.arange(scores.shape[1], device=sim.device)[None, :]
    ahead = (scores > best_score) | ((scores == best_score) & (cols < best_idx))
    ahead &= ~is_own
    return ahead.sum(1)


def retrieval_metrics(
    sim: Tensor, caption_clip: Tensor, *, protocol: Literal["paper", "single"] = "paper"
) -> dict[str, dict[str, float]]:
    """``{"t2v": {...}, "v2t": {...}}`` for a ``[captions, videos]`` score matrix."""
    sim = sim.detach().float().cpu()
    caption_clip = torch.as_tensor(caption_clip, dtype=torch.long)
    t2v = summarise(t2v_ranks(sim, caption_clip), median="lower")
    if protocol == "paper":
        v2t = summarise(v2t_ranks_paper(sim, caption_clip), median="mean")
    else:
        v2t = summarise(v2t_ranks_single(sim, caption_clip), median="mean")
    return {"t2v": t2v, "v2t": v2t}


def mean_recall(result: dict[str, dict[str, float]]) -> float:
    """mR: the mean of the six recalls (R@1/5/10 both ways), the summary AMFMN and its successors report."""
    values = [result[d][k] for d in ("t2v", "v2t") for k in ("R1", "R5", "R10")]
    return float(sum(values) / len(values))
