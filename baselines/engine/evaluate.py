"""Scoring a split from CLIP features in the two protocols (msam.md §7, §8).

* **paper**: captions in protocol order are scored in chunks of ``chunk_size`` (32) consecutive captions
  against every video; the head's softmax over the texts of a chunk makes each score depend on its chunk, so
  the exact chunking is what reproduces the authors' numbers. Video-to-text ranks caption groups by their best
  caption (lenient, as authored).
* **single**: every caption scored alone (what a search engine sees; for MSAM the gate cancels and the score
  has a closed form). Video-to-text ranks individual captions.

Everything that does not depend on the captions (the temporal transformer, frame normalisation) is computed
once per clip. :func:`authors_loop_similarity` is the authors' double loop, which recomputes it for every chunk
of captions; it is kept as the reference for tests and the benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dvtr_data.baselines.msam import MSAM

from .metrics import retrieval_metrics


@dataclass
class SplitFeatures:
    """CLIP features of one split, in protocol order (see ``data.SplitData``)."""

    sentence: Tensor  # [T, C] unnormalised EOT features
    frame_cls: Tensor  # [V, F, C] raw CLS features
    video_mask: Tensor  # [V, F]
    caption_clip: Tensor  # [T] index of each caption's video

    def to(self, device: torch.device) -> SplitFeatures:
        return SplitFeatures(
            self.sentence.to(device), self.frame_cls.to(device), self.video_mask.to(device), self.caption_clip.to(device)
        )


@torch.no_grad()
def paper_protocol_similarity(
    model: MSAM, feats: SplitFeatures, *, chunk_size: int = 32, video_chunk_size: int | None = None
) -> Tensor:
    """``[T, V]`` logits with captions scored in consecutive chunks of ``chunk_size``."""
    was_training = model.training
    model.eval()
    try:
        return model.similarity_from_features(
            feats.sentence, feats.frame_cls, feats.video_mask, text_chunk_size=chunk_size, video_chunk_size=video_chunk_size
        )
    finally:
        model.train(was_training)


@torch.no_grad()
def single_query_similarity(model: MSAM, feats: SplitFeatures, *, query_chunk_size: int = 256) -> Tensor:
    """``[T, V]`` logits with every caption scored alone (closed form; frames embedded once)."""
    was_training = model.training
    model.eval()
    try:
        if model.options.similarity == "mean":
            return model.similarity_from_features(feats.sentence, feats.frame_cls, feats.video_mask)
        rows = [
            model.single_query_similarity_from_features(part, feats.frame_cls, feats.video_mask)
            for part in feats.sentence.split(query_chunk_size)
        ]
        return torch.cat(rows) if rows else feats.sentence.new_zeros((0, feats.frame_cls.shape[0]))
    finally:
        model.train(was_training)


def authors_video_chunks(caption_clip: Tensor, chunk_size: int) -> list[Tensor]:
    """The authors' video batches: a video is encoded with the caption batch that holds its last caption."""
    last: dict[int, int] = {}
    for pos, v in enumerate(caption_clip.tolist()):
        last[v] = pos
    chunks: dict[int, list[int]] = {}
    for v, pos in sorted(last.items(), key=lambda kv: kv[1]):
        chunks.setdefault(pos // chunk_size, []).append(v)
    return [torch.tensor(chunks[k], dtype=torch.long) for k in sorted(chunks)]


@torch.no_grad()
def authors_loop_similarity(model: MSAM, feats: SplitFeatures, *, chunk_size: int = 32) -> Tensor:
    """The authors' ``_run_on_single_gpu``: every (caption batch, video batch) pair goes through the whole
    similarity, temporal transformer included, so query-independent work repeats for every caption batch.
    Same scores as :func:`paper_protocol_similarity`; the straightforward baseline it is measured against.
    """
    was_training = model.training
    model.eval()
    try:
        video_chunks = authors_video_chunks(feats.caption_clip.cpu(), chunk_size)
        order = torch.cat(video_chunks).to(feats.frame_cls.device)
        rows = []
        device = feats.frame_cls.device
        for text in feats.sentence.split(chunk_size):
            cols = [
                model.similarity_from_features(text, feats.frame_cls[idx.to(device)], feats.video_mask[idx.to(device)])
                for idx in video_chunks
            ]
            rows.append(torch.cat(cols, dim=1))
        sim = torch.cat(rows)
        out = torch.empty_like(sim)
        out[:, order] = sim
        return out
    finally:
        model.train(was_training)


def evaluate_features(
    model: MSAM,
    feats: SplitFeatures,
    *,
    protocols: tuple[str, ...] = ("paper", "single"),
    chunk_size: int = 32,
    video_chunk_size: int | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """``{protocol: {"t2v": metrics, "v2t": metrics}}``."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for protocol in protocols:
        if protocol == "paper":
            sim = paper_protocol_similarity(model, feats, chunk_size=chunk_size, video_chunk_size=video_chunk_size)
        else:
            sim = single_query_similarity(model, feats)
        out[protocol] = retrieval_metrics(sim, feats.caption_clip.cpu(), protocol=protocol)  # type: ignore[arg-type]
    return out
