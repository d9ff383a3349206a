"""Training on generated moments: a tiny model overfits planted windows (R1@0.7 from chance to near 100), and
the run folder holds predictions the official format accepts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dvtr_data.baselines.ms_detr.config import load_config
from dvtr_data.baselines.ms_detr.data import FeatureStore, MomentDataset, read_split
from dvtr_data.baselines.ms_detr.model import build_model
from dvtr_data.baselines.ms_detr.qvh_eval import evaluate
from dvtr_data.baselines.ms_detr.synthetic import generate_moments
from dvtr_data.baselines.ms_detr.train import moment_results_table, predict, train_moment_model

TINY = {
    "hidden_dim": 32,
    "nheads": 4,
    "dim_feedforward": 64,
    "num_queries": 6,
    "dn_groups": 2,
    "dropout": 0.0,
    "input_dropout": 0.0,
    "batch_size": 8,
    "lr": 1e-3,
    "device": "cpu",
    "eval_every": 1000,
}


def _chance(folders: dict[str, Path], cfg) -> dict:
    """The same tiny model, untrained: its R1@0.7 is the chance level of this data."""
    torch.manual_seed(cfg.seed)
    store = FeatureStore([folders["video"]], folders["text"], cfg)
    rows = read_split(folders["qvh"], "train")
    dims = store.dims(rows[0]["vid"], rows[0]["qid"])
    model = build_model(cfg, video_dim=dims[0], text_dim=dims[2], motion_dim=dims[1])
    data = MomentDataset(rows, store)
    return evaluate(predict(model, data, cfg, torch.device("cpu")), rows)["brief"]


def test_run_folder_and_submission_format(tmp_path: Path) -> None:
    folders = generate_moments(tmp_path / "data", n_videos=3, seed=1)
    cfg = load_config("ms-detr", **{**TINY, "epochs": 2, "eval_every": 1})
    metrics = train_moment_model(folders["qvh"], folders["video"], folders["text"], cfg, tmp_path / "run")
    run = tmp_path / "run"
    assert metrics["status"] == "finished" and metrics["best_epoch"] in (1, 2)
    assert json.loads((run / "metrics.json").read_text())["final"]["test"] == metrics["final"]["test"]
    saved = json.loads((run / "config.json").read_text())["baseline"]
    assert saved["variant"] == "ms-detr" and saved["family"] == "moment"
    assert "MR-full-R1@0.7" in (run / "report.md").read_text()
    assert (run / "best.pt").is_file()
    header, rows = moment_results_table(tmp_path)
    assert [r[:3] for r in rows] == [["run", "ms-detr", "ms-detr"]]
    assert rows[0][header.index("MR-full-R1@0.7")] == f"{metrics['final']['test']['MR-full-R1@0.7']:.2f}"
    gts = {r["qid"]: r for r in read_split(folders["qvh"], "val")}
    preds = [json.loads(x) for x in (run / "predictions" / "val_preds.jsonl").read_text().splitlines()]
    assert {p["qid"] for p in preds} == set(gts)
    for p in preds:
        gt = gts[p["qid"]]
        assert len(p["pred_saliency_scores"]) == int(gt["duration"] / 2)
        scores = [w[2] for w in p["pred_relevant_windows"]]
        assert scores == sorted(scores, reverse=True) and len(scores) <= 10
        for start, end, _ in p["pred_relevant_windows"]:
            assert 0 <= start <= end <= gt["duration"] and start % 2 == 0 and end % 2 == 0


@pytest.mark.slow
@pytest.mark.parametrize(("variant", "epochs"), [("ms-detr", 80), ("moment-detr", 150)])
def test_tiny_model_overfits_planted_windows(tmp_path: Path, variant: str, epochs: int) -> None:
    folders = generate_moments(tmp_path / "data", n_videos=8, seed=0)
    cfg = load_config(variant, **{**TINY, "epochs": epochs})
    before = _chance(folders, cfg)["MR-full-R1@0.7"]
    metrics = train_moment_model(
        folders["qvh"],
        folders["video"],
        folders["text"],
        cfg,
        tmp_path / "run",
        eval_splits=("train",),
        select_split=None,
    )
    after = metrics["final"]["train"]
    assert before <= 25.0, before  # 16 queries, two planted windows per video: a random model rarely lands
    assert after["MR-full-R1@0.7"] >= 90.0, after
    assert after["MR-full-R1@0.5"] >= 90.0
    first, last = metrics["epochs"][0]["loss"]["total"], metrics["epochs"][-1]["loss"]["total"]
    assert last < first / 3
