"""QVHighlights metrics: hand-computed cases, a naive reference for ranking AP, and the official evaluator's
numbers on a generated set of predictions and ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from dvtr_data.baselines.ms_detr.qvh_eval import (
    bucket_ground_truth,
    clip_ratings,
    detection_ap,
    evaluate,
    iou_cross,
    ranking_ap,
)
from dvtr_data.errors import InputError


def official_fixture() -> tuple[list[dict], list[dict]]:
    """Ground truth with windows in every length bucket and imperfect predictions (seeded, deterministic).

    The same two lists were written as JSONL and scored by jayleicn/moment_detr@b7e553ac
    ``standalone_eval/eval.py`` (numpy 2, scikit-learn 1.9.1) in a temporary folder outside the repo.
    """
    rng = np.random.default_rng(15)
    gts, preds = [], []
    lengths = [4, 6, 8, 12, 20, 26, 40, 64, 96, 8, 18, 50]
    for qid, length in enumerate(lengths):
        duration = 150 if qid % 3 else 127  # an odd duration: 63 clips
        start = int(rng.integers(0, (duration - length) // 2)) * 2
        windows = [[start, start + length]]
        if qid % 4 == 1 and start + length + 10 <= duration - 6:  # a second, short window
            windows.append([start + length + 4, start + length + 10])
        clip_ids = sorted({c for w in windows for c in range(w[0] // 2, w[1] // 2)})
        ratings = rng.integers(0, 5, size=(len(clip_ids), 3)).tolist()
        gts.append(
            {
                "qid": qid,
                "query": f"q{qid}",
                "vid": f"v{qid}",
                "duration": duration,
                "relevant_windows": windows,
                "relevant_clip_ids": clip_ids,
                "saliency_scores": ratings,
            }
        )
        pred_windows = []
        for k in range(12):  # more than the 10 the evaluator keeps
            shift = float(rng.normal(0, length * 0.3 * (1 + k)))
            scale = float(rng.uniform(0.6, 1.4))
            s = max(0.0, round(start + shift, 1))
            e = min(float(duration), round(s + length * scale, 1))
            score = round(float(rng.uniform(0, 1)) if k else 0.99, 3)
            pred_windows.append([s, e, score])
        pred_windows.sort(key=lambda w: -w[2])
        n_clips = int(duration / 2)
        sal = np.round(rng.normal(0, 1, n_clips), 2)
        sal[clip_ids[0]] += 1.5
        sal[:3] = sal[3]  # ties
        preds.append(
            {
                "qid": qid,
                "vid": f"v{qid}",
                "pred_relevant_windows": pred_windows,
                "pred_saliency_scores": sal.tolist(),
            }
        )
    return preds, gts


# Printed by the official evaluator (`python -m standalone_eval.eval` of jayleicn/moment_detr@b7e553ac, run
# in a
# temporary folder outside the repo with numpy and scikit-learn 1.9.1) on official_fixture() written as JSONL.
OFFICIAL_BRIEF: dict[str, float] = {
    "MR-full-R1@0.5": 66.67,
    "MR-full-R1@0.7": 33.33,
    "MR-full-mAP": 31.02,
    "MR-full-mAP@0.5": 70.42,
    "MR-full-mAP@0.75": 21.16,
    "MR-long-mAP": 27.68,
    "MR-middle-mAP": 37.2,
    "MR-short-mAP": 25.55,
    "HL-min-Fair-mAP": 30.22,
    "HL-min-Fair-Hit1": 41.67,
    "HL-min-Good-mAP": 24.41,
    "HL-min-Good-Hit1": 33.33,
    "HL-min-VeryGood-mAP": 10.41,
    "HL-min-VeryGood-Hit1": 25.0,
}


# ---------------------------------------------------------------------------------------------- IoU
def test_iou_cross_hand_cases() -> None:
    iou = iou_cross(np.array([[0, 10], [5, 15]]), np.array([[0, 10], [10, 20], [20, 30]]))
    np.testing.assert_allclose(iou, [[1.0, 0.0, 0.0], [5 / 15, 5 / 15, 0.0]])


# ---------------------------------------------------------------------------------------------- detection AP
def test_detection_ap_hand_case() -> None:
    # GT: [0,10], [20,30]. Predictions by score: [0,10] (TP), [40,50] (FP), [20,30] (TP).
    # precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> envelope 1 then 2/3 -> AP = 0.5*1 + 0.5*2/3 = 5/6
    ap = detection_ap([[0, 10], [20, 30]], [[0, 10, 0.9], [40, 50, 0.8], [20, 30, 0.7]], thresholds=[0.5])
    assert ap[0] == pytest.approx(5 / 6)


def test_detection_ap_one_gt_matched_once() -> None:
    # two predictions on the same GT: the second is a false positive; AP = 1 (recall 1 reached at rank 1)
    ap = detection_ap([[0, 10]], [[0, 10, 0.9], [0, 10, 0.8]], thresholds=[0.5])
    assert ap[0] == pytest.approx(1.0)
    # order by score, not by position: the false positive first -> precision 1/2 at recall 1
    ap = detection_ap([[0, 10]], [[30, 40, 0.1], [0, 10, 0.2], [50, 60, 0.9]], thresholds=[0.5])
    assert ap[0] == pytest.approx(0.5)


def test_detection_ap_thresholds() -> None:
    # IoU of [0,10] with [0,8] is 0.8: a hit up to 0.8 only
    ap = detection_ap([[0, 10]], [[0, 8, 1.0]])
    expected = [1.0 if t <= 0.8 + 1e-9 else 0.0 for t in np.linspace(0.5, 0.95, 10)]
    np.testing.assert_allclose(ap, expected)


# ---------------------------------------------------------------------------------------------- ranking AP
def _naive_ranking_ap(y: list[int], s: list[float]) -> float:
    """Every distinct score as a threshold; precision interpolated over higher recall; mean over recall
    steps."""
    points = []
    for thr in sorted(set(s), reverse=True):
        chosen = [yy for yy, ss in zip(y, s, strict=True) if ss >= thr]
        points.append((sum(chosen) / sum(y), sum(chosen) / len(chosen)))
    total, levels = 0.0, sorted({r for r, _ in points if r > 0})
    for r in levels:
        total += max(p for rr, p in points if rr >= r)
    return total / len(levels)


def test_ranking_ap_hand_case() -> None:
    # ranking: +, -, +, - -> precision 1 at recall 1/2, 2/3 at recall 1 -> AP = (1 + 2/3) / 2
    assert ranking_ap(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1])) == pytest.approx(5 / 6)
    assert ranking_ap(np.array([0, 0]), np.array([1.0, 2.0])) == 0.0
    assert ranking_ap(np.array([1, 1]), np.array([1.0, 2.0])) == 1.0


def test_ranking_ap_matches_naive_reference_with_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(2, 12))
        y = rng.integers(0, 2, n)
        if y.min() == y.max():
            continue
        s = rng.integers(0, 4, n).astype(float)  # many ties
        assert ranking_ap(y, s) == pytest.approx(_naive_ranking_ap(y.tolist(), s.tolist()))


# ------------------------------------------------------------------------------------------- buckets, ratings
def test_buckets_keep_only_windows_of_their_length() -> None:
    gts = [{"qid": 1, "relevant_windows": [[0, 10], [20, 32]]}, {"qid": 2, "relevant_windows": [[0, 60]]}]
    assert [g["relevant_windows"] for g in bucket_ground_truth(gts, "short")] == [[[0, 10]]]
    assert [g["relevant_windows"] for g in bucket_ground_truth(gts, "middle")] == [[[20, 32]]]
    assert [g["qid"] for g in bucket_ground_truth(gts, "long")] == [2]
    assert len(bucket_ground_truth(gts, "full")) == 2


def test_clip_ratings_reject_a_clip_past_the_video() -> None:
    gt = {"qid": 3, "duration": 9, "relevant_clip_ids": [4], "saliency_scores": [[4, 4, 4]]}
    with pytest.raises(InputError, match="int\\(duration / 2\\)"):
        clip_ratings(gt)
    gt["relevant_clip_ids"] = [3]
    assert clip_ratings(gt).shape == (4, 3)


# ------------------------------------------------------------------------------------------- whole evaluation
def _single_query(pred_windows: list[list[float]], sal: list[float]) -> dict:
    gt = {
        "qid": 7,
        "duration": 20,
        "relevant_windows": [[4, 10]],
        "relevant_clip_ids": [2, 3, 4],
        "saliency_scores": [[4, 1, 0], [2, 4, 0], [0, 0, 0]],
    }
    pred = {"qid": 7, "pred_relevant_windows": pred_windows, "pred_saliency_scores": sal}
    return evaluate([pred], [gt])


def test_evaluate_hand_case() -> None:
    # top window [4,9] has IoU 5/6 = 0.83 with [4,10]: R1@0.5 and R1@0.7 hit; mAP@0.95 misses.
    out = _single_query([[4, 9, 0.9], [0, 2, 0.1]], [0, 0, 3, 1, 2, 0, 0, 0, 0, 0])
    b = out["brief"]
    assert b["MR-full-R1@0.5"] == 100.0 and b["MR-full-R1@0.7"] == 100.0
    assert b["MR-full-mAP@0.5"] == 100.0 and b["MR-full-mAP@0.75"] == 100.0
    # thresholds 0.5..0.8 hit (7 of 10) -> mean AP 70
    assert b["MR-full-mAP"] == pytest.approx(70.0)
    # the window is 6 s: short bucket only; middle and long are empty (None, not a crash)
    assert b["MR-short-mAP"] == pytest.approx(70.0)
    assert b["MR-middle-mAP"] is None and b["MR-long-mAP"] is None
    # VeryGood (4): rater 1 clip 2, rater 2 clip 3, rater 3 none. Top clip 2 -> HIT@1 100.
    assert b["HL-min-VeryGood-Hit1"] == 100.0
    # AP per rater: rater 1: clip 2 ranked first -> 1; rater 2: clip 3 ranked third (3 > 2 > 1) -> 1/3;
    # rater 3: no positive -> 0. Mean = (1 + 1/3 + 0) / 3
    assert b["HL-min-VeryGood-mAP"] == pytest.approx(100 * (4 / 3) / 3)


def test_evaluate_rejects_mismatched_qids() -> None:
    gt = {
        "qid": 1,
        "duration": 10,
        "relevant_windows": [[0, 2]],
        "relevant_clip_ids": [0],
        "saliency_scores": [[1, 1, 1]],
    }
    with pytest.raises(InputError, match="qids differ"):
        evaluate([{"qid": 2, "pred_relevant_windows": [[0, 2, 1]]}], [gt])


def test_exact_predictions_score_100() -> None:
    _, gts = official_fixture()
    exact = []
    for g in gts:
        sal = clip_ratings(g).sum(1)
        exact.append(
            {
                "qid": g["qid"],
                "pred_relevant_windows": [[*w, 1.0 - 0.01 * i] for i, w in enumerate(g["relevant_windows"])],
                "pred_saliency_scores": sal.tolist(),
            }
        )
    b = evaluate(exact, gts)["brief"]
    for key in ("MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP", "MR-middle-mAP", "MR-long-mAP"):
        assert b[key] == pytest.approx(100.0), key
    # Predictions are not filtered by bucket: qid 5 has a 26-s window (ranked first) and a 6-s one; in the
    # short bucket only the 6-s window is ground truth, so its AP is 1/2 (FP then TP): (4 + 0.5) / 5 queries.
    assert b["MR-short-mAP"] == pytest.approx(90.0)


def test_shifted_predictions_score_less() -> None:
    _, gts = official_fixture()
    shifted = [
        {
            "qid": g["qid"],
            "pred_relevant_windows": [[w[0] + 3, w[1] + 3, 1.0] for w in g["relevant_windows"]],
            "pred_saliency_scores": clip_ratings(g).sum(1).tolist(),
        }
        for g in gts
    ]
    b = evaluate(shifted, gts)["brief"]
    assert b["MR-full-mAP"] < 100.0 and b["MR-full-R1@0.7"] < 100.0
    # a 3-s shift of a 4-s window leaves IoU 1/7: below every threshold
    assert b["MR-full-R1@0.5"] < 100.0


def test_matches_official_evaluator() -> None:
    preds, gts = official_fixture()
    brief = evaluate(preds, gts)["brief"]
    assert OFFICIAL_BRIEF, "fill OFFICIAL_BRIEF from the official evaluator"
    for key, value in OFFICIAL_BRIEF.items():
        assert brief[key] == pytest.approx(value, abs=0.006), key
