"""`dvtr-data baseline ms-detr|moment-detr`: train and score a moment baseline on a dataset's annotated moments.

The run folder ``<dataset>/runs/<run id>/`` gets the QVHighlights export of the chosen splits with its CLIP
features (``export/``: exactly what `export --format qvhighlights --features` writes, manifest included), the
split files under the trainer's names (``qvh/<split>.jsonl``), and the trainer's own files (``config.json``,
``metrics.json``, ``best.pt``, ``report.md``, ``predictions/``). Features are computed once per run; the trainer
reads them from there (the cached path `benchmarks/moment_features.py` measures). Run folders carry
``"family": "moment"``, so `baseline table` shows them with `moment_results_table` and the retrieval table skips
them.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dvtr_data.dataset import Dataset
from dvtr_data.errors import InputError, UsageError
from dvtr_data.export import export_dataset
from dvtr_data.export.moment_features import FeatureOptions

from .config import load_config
from .data import SPLITS
from .train import train_moment_model


@dataclass
class MomentRun:
    run_id: str
    run_dir: Path
    metrics: dict[str, Any]
    notes: list[str]


def run_moment_baseline(
    dataset: Path | str,
    baseline: str = "ms-detr",
    *,
    features: FeatureOptions | None = None,
    overrides: dict[str, Any] | None = None,
    split_train: str = "train",
    split_eval: tuple[str, ...] = ("val", "test"),
    extra_feature_dirs: list[Path] | None = None,
    run_id: str | None = None,
) -> MomentRun:
    """Export the moments of ``split_train`` and ``split_eval`` with features into a new run folder, then train
    ``baseline`` (a registered name or a JSON config) on them; the first eval split selects the epoch.

    ``extra_feature_dirs``: feature folders the user brings (e.g. SlowFast ``{vid}.npz``), read before the CLIP
    folder (MS-DETR: the first is its motion stream, with ``motion="features"``).
    """
    ds = Dataset(dataset).require()
    cfg = load_config(baseline, **(overrides or {}))
    splits = tuple(dict.fromkeys((split_train, *split_eval)))
    bad = [s for s in splits if s not in SPLITS]
    if bad:
        raise UsageError(f"unknown split(s) {bad}; moment baselines read {', '.join(SPLITS)}")
    run_id = run_id or f"{cfg.name}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
    run_dir = ds.root / "runs" / run_id
    if run_dir.exists():
        raise UsageError(f"run folder {run_dir} already exists", hint="pass another --run-id")
    for extra in extra_feature_dirs or []:
        if not Path(extra).is_dir():
            raise InputError(f"feature folder {extra} does not exist")
    run_dir.mkdir(parents=True)
    try:
        result = export_dataset(ds, "qvhighlights", run_dir / "export", splits=splits,
                                features=features or FeatureOptions())
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)  # nothing trained yet: leave no half run behind
        raise
    if result.manifest.get("source") != "moments":
        shutil.rmtree(run_dir, ignore_errors=True)
        raise InputError(f"{ds.root} has no annotated moments to train on",
                         hint="annotate moments: `dvtr-data annotate push --task moments`, then `pull`")
    qvh = run_dir / "qvh"
    qvh.mkdir()
    for split in splits:
        src = run_dir / "export" / f"highlight_{split}_release.jsonl"
        if src.is_file() and src.stat().st_size:
            shutil.copyfile(src, qvh / f"{split}.jsonl")
    if not (qvh / f"{split_train}.jsonl").is_file():
        shutil.rmtree(run_dir, ignore_errors=True)
        raise InputError(f"split {split_train!r} holds no annotated moment", hint="annotate moments of its flights")
    feats = [Path(p) for p in extra_feature_dirs or []] + [run_dir / "export" / "features" / "clip"]
    evals = tuple(s for s in split_eval if (qvh / f"{s}.jsonl").is_file())
    metrics = train_moment_model(
        qvh, feats if len(feats) > 1 else feats[0], run_dir / "export" / "features" / "text", cfg, run_dir,
        train_split=split_train, eval_splits=evals, select_split=evals[0] if evals else None,
    )
    return MomentRun(run_id, run_dir, metrics, list(result.notes))
