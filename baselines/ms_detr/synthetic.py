"""Generated moments with planted windows, in the QVHighlights layout: for the tests, the benchmark and demos.

Each video is a sequence of 2-s clip features: noise around a per-video background, plus one *concept* vector
added inside each planted window. Every video holds two windows of two different concepts, so a model must
read
the query to pick the right one. A query's word features are its concept's word vector among filler words.
Ratings inside a window are 4 at its middle clips, falling to 2 at its edges (three raters, one point of
disagreement), so HL metrics have something to rank.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .data import SPLITS


def generate_moments(
    root: Path,
    *,
    n_videos: int = 12,
    n_concepts: int = 6,
    video_dim: int = 32,
    text_dim: int = 24,
    min_clips: int = 20,
    max_clips: int = 30,
    window_clips: tuple[int, int] = (3, 10),
    signal: float = 2.0,
    seed: int = 0,
    splits: dict[str, float] | None = None,
) -> dict[str, Path]:
    """Write ``root/qvh/{split}.jsonl``, ``root/video/{vid}.npz`` and ``root/text/qid{qid}.npz``.

    Returns the three folders. ``splits`` maps split name to share of the videos (default all in train and
    the same queries copied to val and test, which is what an overfitting test wants).
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    qvh, video_dir, text_dir = root / "qvh", root / "video", root / "text"
    for d in (qvh, video_dir, text_dir):
        d.mkdir(parents=True, exist_ok=True)
    concepts = rng.normal(size=(n_concepts, video_dim))
    concepts /= np.linalg.norm(concepts, axis=1, keepdims=True)
    words = rng.normal(size=(n_concepts, text_dim))
    fillers = rng.normal(size=(4, text_dim))
    rows: list[dict[str, Any]] = []
    qid = 0
    for v in range(n_videos):
        n_clips = int(rng.integers(min_clips, max_clips + 1))
        vid = f"synth{v:03d}_0.0_{2.0 * n_clips:.1f}"
        feats = rng.normal(scale=0.5, size=(n_clips, video_dim)) + rng.normal(scale=0.3, size=video_dim)
        pair = rng.choice(n_concepts, size=2, replace=False)
        # two non-overlapping windows
        lengths = [int(rng.integers(window_clips[0], window_clips[1] + 1)) for _ in range(2)]
        first_start = int(rng.integers(0, max(1, n_clips - lengths[0] - lengths[1])))
        gap_max = n_clips - first_start - lengths[0] - lengths[1]
        second_start = first_start + lengths[0] + int(rng.integers(0, max(1, gap_max + 1)))
        starts = [first_start, second_start]
        if rng.random() < 0.5:  # which concept comes first
            pair = pair[::-1]
        for concept, start, length in zip(pair, starts, lengths, strict=True):
            feats[start : start + length] += signal * concepts[concept]
            clip_ids = list(range(start, start + length))
            centre = start + (length - 1) / 2
            ratings = []
            for c in clip_ids:
                base = 4 - min(2, round(abs(c - centre) / max(1.0, length / 4)))
                ratings.append([base, base, max(0, base - 1)])
            tokens = np.concatenate([fillers[:2], words[concept][None], fillers[2:]])
            tokens = tokens + rng.normal(scale=0.05, size=tokens.shape)
            np.savez(
                text_dir / f"qid{qid}.npz",
                last_hidden_state=tokens.astype(np.float32),
                pooler_output=tokens.mean(0).astype(np.float32),
            )
            rows.append(
                {
                    "qid": qid,
                    "query": f"concept {int(concept)}",
                    "vid": vid,
                    "duration": 2.0 * n_clips,
                    "relevant_windows": [[2.0 * start, 2.0 * (start + length)]],
                    "relevant_clip_ids": clip_ids,
                    "saliency_scores": ratings,
                }
            )
            qid += 1
        np.savez(video_dir / f"{vid}.npz", features=feats.astype(np.float32))
    if splits is None:
        parts = {name: rows for name in SPLITS}
    else:
        vids = sorted({r["vid"] for r in rows})
        cut, parts, start = 0, {}, 0
        for name, share in splits.items():
            cut = start + round(share * len(vids))
            chosen = set(vids[start:cut])
            parts[name] = [r for r in rows if r["vid"] in chosen]
            start = cut
    for name, part in parts.items():
        (qvh / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
    return {"qvh": qvh, "video": video_dir, "text": text_dir}
