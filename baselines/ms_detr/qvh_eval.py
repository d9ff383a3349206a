"""QVHighlights metrics (moment retrieval and highlight detection), written from the definitions.

The numbers match Moment-DETR's ``standalone_eval/eval.py`` (which MS-DETR ships unchanged) on the same
files; ``tests/test_ms_detr_eval.py`` holds values printed by that evaluator. Two behaviours differ on
purpose:

* a length bucket (short, middle, long) without any ground-truth window is reported as ``None`` instead of
  crashing the whole evaluation (the official script raises a ``TypeError`` on the empty mean);
* inputs are validated with a :class:`~dvtr_data.errors.InputError` instead of ``assert``.

Definitions (all values in percent):

* **R1@θ**: the top-1 predicted window reaches IoU ≥ θ with the ground-truth window it overlaps most.
* **mAP@θ**: per query, the VOC-style interpolated average precision of the (at most 10) predicted windows
  against the query's ground-truth windows, one ground-truth window matched at most once; mean over queries.
  "mAP" is the mean over θ = 0.50, 0.55, ..., 0.95.
* **Length buckets**: a query takes part in a bucket with only its ground-truth windows of length in
  (0, 10], (10, 30] or (30, 150] seconds; "full" keeps every window.
* **HL mAP / HIT@1** at a minimum rating (2 Fair, 3 Good, 4 VeryGood): each of the three raters' ratings,
  thresholded, is a binary relevance over the 2-s clips of the video (clips outside the windows are 0). HL mAP
  is the average precision of the predicted saliency per rater, averaged over raters and queries; HIT@1 says
  whether the top-scored clip is positive for at least one rater.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dvtr_data.errors import InputError

IOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
LENGTH_BUCKETS: dict[str, tuple[float, float]] = {
    "short": (0.0, 10.0),
    "middle": (10.0, 30.0),
    "long": (30.0, 150.0),
    "full": (0.0, 150.0),
}
SALIENCY_LEVELS: dict[str, int] = {"Fair": 2, "Good": 3, "VeryGood": 4}
MAX_PRED_WINDOWS = 10
CLIP_LENGTH = 2.0


# ---------------------------------------------------------------------------------------------- IoU
def iou_cross(spans1: np.ndarray, spans2: np.ndarray) -> np.ndarray:
    """IoU of every window of ``spans1`` (N, 2) with every window of ``spans2`` (M, 2), in seconds."""
    a = np.asarray(spans1, dtype=float).reshape(-1, 2)
    b = np.asarray(spans2, dtype=float).reshape(-1, 2)
    inter = np.clip(
        np.minimum(a[:, None, 1], b[None, :, 1]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None
    )
    union = (a[:, 1] - a[:, 0])[:, None] + (b[:, 1] - b[:, 0])[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


# ---------------------------------------------------------------------------------------------- AP
def detection_ap(
    gt_windows: Sequence[Sequence[float]],
    preds: Sequence[Sequence[float]],
    thresholds: Sequence[float] = IOU_THRESHOLDS,
) -> np.ndarray:
    """Average precision of scored windows ``[start, end, score]`` against ``gt_windows``, per threshold.

    Predictions are taken in decreasing score (ties keep their given order); each one claims the free
    ground-truth window of highest IoU (ties: the later window first, as the reference implementation's
    reversed argsort does) if that IoU reaches the threshold, else it is a false positive.
    """
    n_thr = len(thresholds)
    if not preds:
        return np.zeros(n_thr)
    order = sorted(range(len(preds)), key=lambda i: -float(preds[i][2]))
    ordered = [preds[i] for i in order]
    gts = np.asarray(gt_windows, dtype=float).reshape(-1, 2)
    tp = np.zeros((n_thr, len(ordered)))
    fp = np.zeros((n_thr, len(ordered)))
    locked = np.full((n_thr, len(gts)), False)
    for p_idx, pred in enumerate(ordered):
        if len(gts) == 0:
            fp[:, p_idx] = 1
            continue
        ious = iou_cross(np.array([pred[:2]]), gts)[0]
        by_iou = sorted(range(len(gts)), key=lambda j: (ious[j], j), reverse=True)
        for t_idx, thr in enumerate(thresholds):
            for j in by_iou:
                if ious[j] < thr:
                    break
                if locked[t_idx, j]:
                    continue
                tp[t_idx, p_idx] = 1
                locked[t_idx, j] = True
                break
            if tp[t_idx, p_idx] == 0:
                fp[t_idx, p_idx] = 1
    n_pos = float(len(gts))
    ap = np.zeros(n_thr)
    for t_idx in range(n_thr):
        tps = np.cumsum(tp[t_idx])
        fps = np.cumsum(fp[t_idx])
        recall = tps / n_pos if n_pos > 0 else np.zeros_like(tps)
        precision = tps / (tps + fps)
        ap[t_idx] = _voc_ap(precision, recall)
    return ap


def _voc_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """Area under the precision envelope (precision made non-increasing in recall), VOC 2011 style."""
    prec = np.concatenate([[0.0], precision, [0.0]])
    rec = np.concatenate([[0.0], recall, [1.0]])
    for i in range(len(prec) - 2, -1, -1):
        prec[i] = max(prec[i], prec[i + 1])
    steps = np.where(rec[1:] != rec[:-1])[0] + 1
    return float(np.sum((rec[steps] - rec[steps - 1]) * prec[steps]))


def ranking_ap(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Interpolated AP of a ranking, at every distinct recall level (what ``get_ap`` of the evaluator
    computes).

    All-negative labels give 0 and all-positive labels give 1, as in the reference. Tied scores form one
    threshold: precision and recall are measured after the whole tie group.
    """
    y = np.asarray(y_true, dtype=float)
    s = np.asarray(scores, dtype=float)
    if len(set(y.tolist())) <= 1:
        return 0.0 if len(y) == 0 or y[0] == 0 else 1.0
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    # cut points: the last index of each group of equal scores
    ends = np.r_[np.where(np.diff(s_sorted) != 0)[0], len(s_sorted) - 1]
    tps = np.cumsum(y_sorted)[ends]
    fps = (ends + 1) - tps
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    # envelope: best precision at this recall or any higher recall (lower threshold)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    levels, first = np.unique(recall, return_index=True)
    keep = levels > 0
    # for a recall level the highest-threshold point (fewest false positives) is its first occurrence
    return float(np.mean(envelope[first[keep]]))


# ------------------------------------------------------------------------------------------- moment retrieval
def _by_qid(rows: Sequence[dict[str, Any]], what: str) -> dict[Any, dict[str, Any]]:
    out: dict[Any, dict[str, Any]] = {}
    for row in rows:
        if "qid" not in row:
            raise InputError(f"a {what} line has no 'qid'")
        out[row["qid"]] = row
    return out


def _in_bucket(window: Sequence[float], bucket: tuple[float, float]) -> bool:
    lo, hi = bucket
    length = float(window[1]) - float(window[0])
    return lo < length <= hi


def bucket_ground_truth(ground_truth: Sequence[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The queries taking part in a length bucket, each with only its windows of that length."""
    if name == "full":
        return list(ground_truth)
    bucket = LENGTH_BUCKETS[name]
    kept = []
    for row in ground_truth:
        windows = [w for w in row["relevant_windows"] if _in_bucket(w, bucket)]
        if windows:
            kept.append({**row, "relevant_windows": windows})
    return kept


def moment_metrics(
    predictions: dict[Any, dict[str, Any]], ground_truth: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """R1 at every threshold and mAP per threshold (and their mean) over the given queries, in percent."""
    aps = []
    r1_hits: dict[float, list[bool]] = {thr: [] for thr in IOU_THRESHOLDS}
    for gt in ground_truth:
        pred = predictions[gt["qid"]]
        windows = [list(map(float, w)) for w in pred.get("pred_relevant_windows") or []]
        aps.append(detection_ap(gt["relevant_windows"], windows[:MAX_PRED_WINDOWS]))
        if not windows:
            for thr in IOU_THRESHOLDS:
                r1_hits[thr].append(False)
            continue
        top = np.array([windows[0][:2]])
        gt_w = np.asarray(gt["relevant_windows"], dtype=float).reshape(-1, 2)
        best = float(iou_cross(top, gt_w)[0].max()) if len(gt_w) else 0.0
        for thr in IOU_THRESHOLDS:
            r1_hits[thr].append(best >= thr)
    ap_mean = np.mean(np.stack(aps), axis=0)
    return {
        "mAP": {
            **{
                f"{t:.2f}".rstrip("0"): 100.0 * float(v) for t, v in zip(IOU_THRESHOLDS, ap_mean, strict=True)
            },
            "average": 100.0 * float(np.mean(ap_mean)),
        },
        "R1": {f"{t:.2f}".rstrip("0"): 100.0 * float(np.mean(r1_hits[t])) for t in IOU_THRESHOLDS},
        "n_queries": len(ground_truth),
    }


# ---------------------------------------------------------------------------------------------- highlights
def clip_ratings(gt: dict[str, Any], clip_length: float = CLIP_LENGTH) -> np.ndarray:
    """(int(duration / clip_length), 3) ratings of every clip of the video; clips outside the windows are
    0."""
    n_clips = int(float(gt["duration"]) / clip_length)
    ratings = np.zeros((n_clips, 3))
    ids = list(gt.get("relevant_clip_ids") or [])
    scores = list(gt.get("saliency_scores") or [])
    if len(ids) != len(scores):
        raise InputError(
            f"qid {gt['qid']}: {len(ids)} relevant_clip_ids but {len(scores)} saliency_scores rows"
        )
    for cid, row in zip(ids, scores, strict=True):
        if not 0 <= int(cid) < n_clips:
            raise InputError(
                f"qid {gt['qid']}: clip id {cid} outside the {n_clips} clips of a {gt['duration']} s video",
                hint="clip ids must be below int(duration / 2)",
            )
        if len(row) != 3:
            raise InputError(f"qid {gt['qid']}: saliency rows need exactly three ratings, got {row}")
        ratings[int(cid)] = row
    return ratings


def highlight_metrics(
    predictions: dict[Any, dict[str, Any]], ground_truth: Sequence[dict[str, Any]], min_rating: int
) -> dict[str, float]:
    """HL mAP and HIT@1 (percent) with clips rated at least ``min_rating`` as positives."""
    aps = []
    hits = []
    for gt in ground_truth:
        binary = (clip_ratings(gt) >= min_rating).astype(float)
        scores = np.asarray(predictions[gt["qid"]].get("pred_saliency_scores") or [], dtype=float)
        n = len(binary)
        aligned = np.zeros(n)
        aligned[: min(n, len(scores))] = scores[:n]
        top = int(np.argmax(scores)) if len(scores) else n
        hits.append(float(binary[top].max()) if top < n else 0.0)
        aps.append(np.mean([ranking_ap(binary[:, r], aligned) for r in range(3)]))
    return {"HL-mAP": 100.0 * float(np.mean(aps)), "HL-Hit1": 100.0 * float(np.mean(hits))}


# ---------------------------------------------------------------------------------------------- all
def evaluate(submission: Sequence[dict[str, Any]], ground_truth: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Every QVHighlights metric, with the evaluator's ``brief`` names, plus per-bucket details.

    Returns ``{"brief": {...}, "buckets": {name: {...} | None}, "highlight": {...}}``; a brief value is
    ``None`` where its bucket holds no ground-truth window.
    """
    preds = _by_qid(submission, "prediction")
    gts = list(_by_qid(ground_truth, "ground-truth").values())
    if not gts:
        raise InputError("no ground-truth queries to evaluate")
    missing = [g["qid"] for g in gts if g["qid"] not in preds]
    extra = set(preds) - {g["qid"] for g in gts}
    if missing or extra:
        raise InputError(
            f"qids differ between predictions and ground truth: missing {missing[:5]}, "
            f"extra {sorted(map(str, extra))[:5]}"
        )
    has_mr = any("pred_relevant_windows" in p for p in preds.values())
    has_hl = any("pred_saliency_scores" in p for p in preds.values())
    brief: dict[str, float | None] = {}
    buckets: dict[str, Any] = {}
    if has_mr:
        for name in LENGTH_BUCKETS:
            part = bucket_ground_truth(gts, name)
            buckets[name] = moment_metrics(preds, part) if part else None
        full = buckets["full"]
        brief.update(
            {
                "MR-full-R1@0.5": full["R1"]["0.5"],
                "MR-full-R1@0.7": full["R1"]["0.7"],
                "MR-full-mAP": full["mAP"]["average"],
                "MR-full-mAP@0.5": full["mAP"]["0.5"],
                "MR-full-mAP@0.75": full["mAP"]["0.75"],
            }
        )
        for name in ("short", "middle", "long"):
            brief[f"MR-{name}-mAP"] = buckets[name]["mAP"]["average"] if buckets[name] else None
    highlight: dict[str, dict[str, float]] = {}
    if has_hl:
        for name, level in SALIENCY_LEVELS.items():
            highlight[f"HL-min-{name}"] = highlight_metrics(preds, gts, level)
            brief[f"HL-min-{name}-mAP"] = highlight[f"HL-min-{name}"]["HL-mAP"]
            brief[f"HL-min-{name}-Hit1"] = highlight[f"HL-min-{name}"]["HL-Hit1"]
    return {"brief": brief, "buckets": buckets, "highlight": highlight}


HEADLINE = (
    "MR-full-R1@0.5",
    "MR-full-R1@0.7",
    "MR-full-mAP@0.5",
    "MR-full-mAP@0.75",
    "MR-full-mAP",
    "HL-min-VeryGood-mAP",
    "HL-min-VeryGood-Hit1",
)
