"""The baseline engine: a registry of baseline configs, training and scoring on a dataset, and clip search.

Quickstart::

    from dvtr_data.baselines.engine import registered, run_baseline, search
    cfg = registered("msam")                       # or resolve("my-config.json")
    result = run_baseline(cfg, "my-dataset", split_train="train", split_eval=("val", "test"))
    hits = search("my-dataset", result.run_id, "a red car on a road", top=10).hits

Registry and configs import neither torch nor open_clip (the CLI lists baselines instantly); everything else
is imported on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .config import BaselineConfig
from .registry import baseline_names, describe, registered, resolve

_LAZY = {
    "run_baseline": "train",
    "resume_run": "train",
    "build_model": "train",
    "RunResult": "train",
    "resolve_device": "train",
    "search": "search",
    "open_index": "search",
    "build_index": "search",
    "naive_scores": "search",
    "SearchIndex": "search",
    "SearchResult": "search",
    "retrieval_metrics": "metrics",
    "evaluate_features": "evaluate",
    "paper_protocol_similarity": "evaluate",
    "single_query_similarity": "evaluate",
    "authors_loop_similarity": "evaluate",
    "SplitFeatures": "evaluate",
    "BertAdam": "optim",
    "warmup_cosine": "optim",
    "load_split": "data",
    "results_table": "runs",
    "list_runs": "runs",
}

__all__ = ["BaselineConfig", "baseline_names", "describe", "registered", "resolve", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
