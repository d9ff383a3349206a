"""Reading a QVHighlights-format folder and its feature files into padded batches (``start_end_dataset.py``).

Layout (what dvtr-data's QVHighlights export writes, and what Moment-DETR/MS-DETR read)::

    <qvh_dir>/{train,val,test}.jsonl     {"qid", "query", "vid", "duration", "relevant_windows",
                                          "relevant_clip_ids", "saliency_scores"} per line
    <feat_dir>/{vid}.npz                 "features": one row per 2-s clip
    <text_dir>/qid{qid}.npz              "last_hidden_state": (tokens, D), "pooler_output": (D,)

MS-DETR reads two video streams, SlowFast (motion) and CLIP (semantics). SlowFast weights cannot be had here,
so with one feature folder the motion stream is the clip-to-clip difference of the (normalised) CLIP features,
``x_t − x_{t−1}`` (0 for the first clip): a cheap stand-in that carries change over time, not appearance. A
second folder given first (``feat_dirs=[motion_dir, semantic_dir]`` with ``motion="features"``) is used as the
motion stream instead, e.g. SlowFast features a user brings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dvtr_data.errors import InputError

from .config import MomentConfig
from .spans import xx_to_cxw

SPLITS = ("train", "val", "test")


def read_split(qvh_dir: Path, split: str) -> list[dict[str, Any]]:
    """The query lines of ``<qvh_dir>/<split>.jsonl``; an InputError names a broken line."""
    path = Path(qvh_dir) / f"{split}.jsonl"
    if not path.is_file():
        raise InputError(
            f"no {split} split: {path} does not exist", hint="export the dataset with --format qvhighlights"
        )
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{n} is not JSON: {exc}") from None
        missing = {"qid", "vid", "duration"} - set(row)
        if missing:
            raise InputError(f"{path}:{n} lacks {', '.join(sorted(missing))}")
        rows.append(row)
    return rows


def _l2(x: np.ndarray) -> np.ndarray:
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-5)


def _load_npz(path: Path, key: str) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"missing feature file {path}", hint="export the features (moment features) first")
    with np.load(path) as data:
        if key not in data:
            raise InputError(f"{path} has no {key!r} array (has {', '.join(data.files)})")
        return np.asarray(data[key], dtype=np.float32)


@dataclass
class FeatureStore:
    """Feature files read once and kept in memory (the cached features the trainer reuses every epoch)."""

    feat_dirs: list[Path]
    text_dir: Path
    cfg: MomentConfig

    def __post_init__(self) -> None:
        self._video: dict[str, np.ndarray] = {}
        self._text: dict[Any, np.ndarray] = {}

    @property
    def two_streams(self) -> bool:
        return self.cfg.variant == "ms-detr"

    def video(self, vid: str) -> np.ndarray:
        """(L, D) clip features; for MS-DETR [motion | semantics] columns."""
        if vid not in self._video:
            parts = [_load_npz(d / f"{vid}.npz", "features")[: self.cfg.max_v_l] for d in self.feat_dirs]
            if self.cfg.normalize_features:
                parts = [_l2(p) for p in parts]
            n = min(len(p) for p in parts)
            if n == 0:
                raise InputError(f"video {vid} has no clip features")
            parts = [p[:n] for p in parts]
            if self.two_streams and self.cfg.motion == "difference":
                sem = np.concatenate(parts, 1)
                motion = np.diff(sem, axis=0, prepend=sem[:1])
                parts = [motion, sem]
            feat = np.concatenate(parts, 1)
            known = next(iter(self._video.values()), None)
            if known is not None and known.shape[1] != feat.shape[1]:
                raise InputError(
                    f"video {vid} has {feat.shape[1]} feature columns, other videos {known.shape[1]}",
                    hint="all videos of a run need features from the same extractor",
                )
            self._video[vid] = feat
        return self._video[vid]

    def text(self, qid: Any) -> np.ndarray:
        if qid not in self._text:
            feat = _load_npz(self.text_dir / f"qid{qid}.npz", "last_hidden_state")[: self.cfg.max_q_l]
            if feat.ndim != 2 or len(feat) == 0:
                raise InputError(
                    f"qid{qid}.npz: last_hidden_state must be (tokens, dim) with at least one token"
                )
            known = next(iter(self._text.values()), None)
            if known is not None and known.shape[1] != feat.shape[1]:
                raise InputError(
                    f"qid{qid}.npz has {feat.shape[1]}-d tokens, other queries {known.shape[1]}-d"
                )
            self._text[qid] = _l2(feat) if self.cfg.normalize_features else feat
        return self._text[qid]

    def dims(self, vid: str, qid: Any) -> tuple[int, int, int]:
        """(video columns, motion columns, text dim)."""
        v = self.video(vid)
        if not self.two_streams:
            return v.shape[1], 0, self.text(qid).shape[1]
        if self.cfg.motion == "difference":
            motion = v.shape[1] // 2
        else:
            if len(self.feat_dirs) < 2:
                raise InputError("motion='features' needs two feature folders: the motion one first")
            motion = _load_npz(self.feat_dirs[0] / f"{vid}.npz", "features").shape[1]
        return v.shape[1], motion, self.text(qid).shape[1]


def saliency_labels(
    clip_ids: list[int], scores: list[list[float]], n_clips: int, rng: np.random.Generator
) -> tuple[list[int], list[int], np.ndarray]:
    """Hinge pairs and summed ratings (``get_saliency_labels_all`` with ``max_n=1``, easy negatives on).

    Positives: the relevant clip with the highest summed rating and one drawn at random; negatives: the lowest
    rated relevant clip and one drawn from outside the windows (the hard ones again when none is outside).
    """
    if len(clip_ids) != len(scores):
        raise InputError(f"{len(clip_ids)} relevant_clip_ids but {len(scores)} saliency_scores rows")
    keep = [(c, s) for c, s in zip(clip_ids, scores, strict=True) if 0 <= c < n_clips]
    all_scores = np.zeros(n_clips, dtype=np.float32)
    if not keep:
        return [0, 0], [0, 0], all_scores
    ids = [c for c, _ in keep]
    agg = np.array([float(np.sum(s)) for _, s in keep])
    for c, a in zip(ids, agg, strict=True):
        all_scores[c] = a
    order = np.argsort(agg, kind="stable")
    hard_pos, hard_neg = [ids[order[-1]]], [ids[order[0]]]
    outside = sorted(set(range(n_clips)) - set(ids))
    if outside:
        easy_pos, easy_neg = [ids[int(rng.integers(len(ids)))]], [outside[int(rng.integers(len(outside)))]]
    else:
        easy_pos, easy_neg = hard_pos, hard_neg
    return hard_pos + easy_pos, hard_neg + easy_neg, all_scores


def span_labels(
    windows: list[list[float]], n_clips: int, clip_length: float, max_windows: int
) -> torch.Tensor:
    """(n, 2) windows as centre/width normalised by the feature length ``n_clips × clip_length``."""
    w = torch.tensor([list(map(float, x[:2])) for x in windows[:max_windows]], dtype=torch.float32).reshape(
        -1, 2
    )
    return xx_to_cxw((w / (n_clips * clip_length)).clamp(0.0, 1.0))


class MomentDataset(torch.utils.data.Dataset):
    def __init__(self, rows: list[dict[str, Any]], store: FeatureStore, *, seed: int = 0) -> None:
        self.rows = rows
        self.store = store
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = self.rows[i]
        cfg = self.store.cfg
        feat = self.store.video(row["vid"])
        n = len(feat)
        tef_start = np.arange(n, dtype=np.float32) / n
        tef = np.stack([tef_start, tef_start + 1.0 / n], 1)
        pos, neg, all_scores = saliency_labels(
            list(row.get("relevant_clip_ids") or []), list(row.get("saliency_scores") or []), n, self.rng
        )
        return {
            "meta": row,
            "video": torch.from_numpy(np.concatenate([feat, tef], 1)),
            "text": torch.from_numpy(self.store.text(row["qid"])),
            "spans": span_labels(row.get("relevant_windows") or [], n, cfg.clip_length, cfg.max_windows),
            "saliency_pos": torch.tensor(pos),
            "saliency_neg": torch.tensor(neg),
            "saliency_all": torch.from_numpy(all_scores),
        }


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Pad video and text to the longest item; masks are True at real positions."""
    b = len(items)
    lv = max(len(x["video"]) for x in items)
    lt = max(len(x["text"]) for x in items)
    video = torch.zeros(b, lv, items[0]["video"].shape[1])
    vmask = torch.zeros(b, lv, dtype=torch.bool)
    text = torch.zeros(b, lt, items[0]["text"].shape[1])
    tmask = torch.zeros(b, lt, dtype=torch.bool)
    sal = torch.zeros(b, lv)
    for i, x in enumerate(items):
        n, t = len(x["video"]), len(x["text"])
        video[i, :n], vmask[i, :n] = x["video"], True
        text[i, :t], tmask[i, :t] = x["text"], True
        sal[i, :n] = x["saliency_all"]
    return {
        "meta": [x["meta"] for x in items],
        "video": video,
        "video_mask": vmask,
        "text": text,
        "text_mask": tmask,
        "spans": [x["spans"] for x in items],
        "saliency_pos": torch.stack([x["saliency_pos"] for x in items]),
        "saliency_neg": torch.stack([x["saliency_neg"] for x in items]),
        "saliency_all": sal,
    }


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            out[k] = v.to(device, non_blocking=True)
        elif k == "spans":
            out[k] = [s.to(device) for s in v]
        else:
            out[k] = v
    return out
