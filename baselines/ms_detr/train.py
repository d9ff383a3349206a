"""Training and scoring MS-DETR / Moment-DETR on a QVHighlights-format folder; one run folder per call.

::

    <out_dir>/
        config.json                 the resolved config and the request (folders, splits, device, versions)
        metrics.json                status, per-epoch losses and validation metrics, the selected epoch
                                    and the final QVHighlights metrics of every evaluated split
        best.pt                     the selected epoch's weights
        predictions/<split>_preds.jsonl   submissions in the official format (qid, query, vid,
                                    pred_relevant_windows [[start, end, score], ...] by score,
                                    pred_saliency_scores)
        report.md                   the metric table

The official ``standalone_eval/eval.py`` scores ``predictions/<split>_preds.jsonl`` against ``<split>.jsonl``
as they are (when every length bucket has a window; otherwise it crashes, which our metrics do not).
"""

from __future__ import annotations

import json
import math
import platform
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dvtr_data.dataset import atomic_write_bytes
from dvtr_data.errors import InputError

from .config import MomentConfig
from .data import FeatureStore, MomentDataset, collate, read_split, to_device
from .losses import MomentCriterion
from .model import build_model
from .qvh_eval import HEADLINE, evaluate
from .spans import cxw_to_xx


def _write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, default=str) + "\n").encode())


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _loader(dataset: MomentDataset, batch_size: int, shuffle: bool, seed: int) -> torch.utils.data.DataLoader:
    g = torch.Generator()
    g.manual_seed(seed)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=collate, generator=g, num_workers=0
    )


@torch.no_grad()
def predict(
    model: torch.nn.Module, dataset: MomentDataset, cfg: MomentConfig, device: torch.device
) -> list[dict[str, Any]]:
    """Submissions in the official format: windows in seconds, rounded to whole clips, by decreasing score."""
    model.eval()
    out_rows = []
    for batch in _loader(dataset, max(1, cfg.batch_size), False, 0):
        b = to_device(batch, device)
        out = model(b["video"], b["video_mask"], b["text"], b["text_mask"])
        prob = out["pred_logits"].softmax(-1)[..., 0].cpu()
        spans = cxw_to_xx(out["pred_spans"].float()).cpu()
        saliency = out["saliency_scores"].float().cpu()
        for i, meta in enumerate(batch["meta"]):
            n = int(batch["video_mask"][i].sum())
            duration = float(meta["duration"])
            windows = (spans[i] * n * cfg.clip_length).clamp(0, duration)
            windows = (torch.round(windows / cfg.clip_length) * cfg.clip_length).clamp(0, duration)
            order = torch.argsort(prob[i], descending=True)[: cfg.max_windows_out]
            pred_windows = [
                [float(windows[j, 0]), float(windows[j, 1]), round(float(prob[i, j]), 4)] for j in order
            ]
            n_out = int(duration / cfg.clip_length)
            sal = saliency[i, :n].tolist()[:n_out]
            if len(sal) < n_out:  # fewer features than clips: the missing ones rank last
                sal += [min(sal, default=0.0) - 1.0] * (n_out - len(sal))
            out_rows.append(
                {
                    "qid": meta["qid"],
                    "query": meta.get("query", ""),
                    "vid": meta["vid"],
                    "pred_relevant_windows": pred_windows,
                    "pred_saliency_scores": [round(s, 4) for s in sal],
                }
            )
    return out_rows


def _report(cfg: MomentConfig, metrics: dict[str, Any]) -> str:
    lines = [
        f"# {cfg.name} ({cfg.variant})",
        "",
        cfg.description,
        "",
        f"Status: {metrics['status']}; selected epoch: {metrics.get('best_epoch')}",
        "",
    ]
    header = ["split", *HEADLINE, "MR-short-mAP", "MR-middle-mAP", "MR-long-mAP"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" for _ in header) + "|")
    for split, brief in metrics.get("final", {}).items():
        cells = ["-" if brief.get(k) is None else f"{brief[k]:.2f}" for k in header[1:]]
        lines.append("| " + " | ".join([split, *cells]) + " |")
    lines += [
        "",
        (
            "R1@θ: top-1 window reaches IoU θ; mAP: mean over IoU 0.5:0.05:0.95; "
            "HL at rating ≥ 4 (VeryGood). '-': no ground-truth window of that length in the split."
        ),
        "",
    ]
    return "\n".join(lines)


def train_moment_model(
    qvh_dir: Path,
    feat_dir: Path | list[Path],
    text_dir: Path,
    cfg: MomentConfig,
    out_dir: Path,
    *,
    train_split: str = "train",
    eval_splits: tuple[str, ...] = ("val", "test"),
    select_split: str | None = "val",
) -> dict[str, Any]:
    """Train ``cfg`` on ``train_split`` and score every existing split of ``eval_splits``; returns
    metrics.json.

    The selected weights are those of the evaluation (every ``cfg.eval_every`` epochs and at the end) with the
    best ``MR-full-mAP`` on ``select_split``; without that split, the last epoch's.
    """
    cfg.validate()
    qvh_dir, text_dir, out_dir = Path(qvh_dir), Path(text_dir), Path(out_dir)
    feat_dirs = [Path(p) for p in (feat_dir if isinstance(feat_dir, list | tuple) else [feat_dir])]
    _seed_all(cfg.seed)
    device = _device(cfg.device)
    store = FeatureStore(feat_dirs, text_dir, cfg)
    train_rows = read_split(qvh_dir, train_split)
    if not train_rows:
        raise InputError(f"{qvh_dir / (train_split + '.jsonl')} has no queries")
    eval_sets = {
        s: MomentDataset(read_split(qvh_dir, s), store, seed=cfg.seed)
        for s in eval_splits
        if (qvh_dir / f"{s}.jsonl").is_file()
    }
    train_set = MomentDataset(train_rows, store, seed=cfg.seed)
    video_dim, motion_dim, text_dim = store.dims(train_rows[0]["vid"], train_rows[0]["qid"])
    model = build_model(cfg, video_dim=video_dim, text_dim=text_dim, motion_dim=motion_dim).to(device)
    criterion = MomentCriterion(cfg).to(device)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, cfg.lr_drop)
    out_dir.mkdir(parents=True, exist_ok=True)
    request = {
        "qvh_dir": str(qvh_dir),
        "feat_dirs": [str(p) for p in feat_dirs],
        "text_dir": str(text_dir),
        "train_split": train_split,
        "eval_splits": list(eval_sets),
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "dims": {"video": video_dim, "motion": motion_dim, "text": text_dim},
    }
    # "family": the engine's results table and tools tell moment runs from retrieval runs by it
    _write_json(
        out_dir / "config.json", {"baseline": {**cfg.to_dict(), "family": "moment"}, "request": request}
    )
    metrics: dict[str, Any] = {"status": "running", "epochs": [], "best_epoch": None, "final": {}}
    best_score, best_state = -math.inf, None
    loader = _loader(train_set, cfg.batch_size, True, cfg.seed)
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        sums: dict[str, float] = {}
        steps = 0
        for batch in loader:
            b = to_device(batch, device)
            out = model(b["video"], b["video_mask"], b["text"], b["text_mask"], target_spans=b["spans"])
            losses = criterion(out, b)
            total = criterion.total(losses)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            steps += 1
            sums["total"] = sums.get("total", 0.0) + float(total.detach())
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
        scheduler.step()
        record: dict[str, Any] = {"epoch": epoch, "loss": {k: v / max(steps, 1) for k, v in sums.items()}}
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            if select_split in eval_sets:
                brief = evaluate(
                    predict(model, eval_sets[select_split], cfg, device), eval_sets[select_split].rows
                )["brief"]
                record["eval"] = {select_split: brief}
                score = brief["MR-full-mAP"]
            else:
                score = float(epoch)
            if score > best_score:
                best_score, metrics["best_epoch"] = score, epoch
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        metrics["epochs"].append(record)
        _write_json(out_dir / "metrics.json", metrics)
    if best_state is not None:
        model.load_state_dict(best_state)
        torch.save(
            {"config": cfg.to_dict(), "model": best_state, "dims": request["dims"]}, out_dir / "best.pt"
        )
    for split, dataset in eval_sets.items():
        preds = predict(model, dataset, cfg, device)
        pred_path = out_dir / "predictions" / f"{split}_preds.jsonl"
        pred_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(pred_path, "".join(json.dumps(p) + "\n" for p in preds).encode())
        metrics["final"][split] = evaluate(preds, dataset.rows)["brief"]
    metrics["status"] = "finished"
    metrics["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    _write_json(out_dir / "metrics.json", metrics)
    atomic_write_bytes(out_dir / "report.md", _report(cfg, metrics).encode())
    return metrics


TABLE_METRICS = (
    "MR-full-R1@0.5",
    "MR-full-R1@0.7",
    "MR-full-mAP@0.5",
    "MR-full-mAP@0.75",
    "MR-full-mAP",
    "HL-min-VeryGood-mAP",
    "HL-min-VeryGood-Hit1",
)


def moment_results_table(runs_root: Path, *, split: str = "test") -> tuple[list[str], list[list[str]]]:
    """One row per finished moment run under ``runs_root`` (run folders written by
    :func:`train_moment_model`):
    what ``dvtr-data baseline table`` prints for the moment baselines, whose metrics are not retrieval
    ranks."""
    header = ["run", "baseline", "variant", "best epoch", *TABLE_METRICS]
    rows = []
    root = Path(runs_root)
    folders = sorted(p for p in root.iterdir() if (p / "config.json").is_file()) if root.is_dir() else []
    for folder in folders:
        try:
            cfg = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("baseline", {})
            metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        brief = (metrics.get("final") or {}).get(split)
        if (
            metrics.get("status") != "finished"
            or cfg.get("variant") not in ("ms-detr", "moment-detr")
            or not brief
        ):
            continue
        best = metrics.get("best_epoch")
        cells = ["-" if brief.get(k) is None else f"{brief[k]:.2f}" for k in TABLE_METRICS]
        rows.append(
            [
                folder.name,
                str(cfg.get("name", "?")),
                cfg["variant"],
                "-" if best is None else str(best),
                *cells,
            ]
        )
    return header, rows
