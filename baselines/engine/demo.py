"""The demo's baseline step: a small MSAM run and one search query on a dataset that has captions and splits.

It trains ``msam-tiny-random`` (full MSAM on a small random CLIP: no weights needed, minutes on 2 CPU cores)
under a fixed run id, so re-running the demo reports the finished run instead of training again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dvtr_data.dataset import Dataset

from .registry import registered
from .runs import RunFolder, runs_dir

DEMO_RUN_ID = "demo-msam-tiny-random"
DEMO_QUERY = "a car driving along a road"


@dataclass
class DemoBaseline:
    run_id: str
    report: Path
    test_t2v_r1: float | None
    hits: list  # search.SearchHit


def run_demo_baseline(
    dataset: str | Path,
    *,
    query: str = DEMO_QUERY,
    say: Callable[[str], None] = print,
    device: str = "cpu",
    top: int = 5,
) -> DemoBaseline:
    """Train (or find) the demo run, print its test metrics and the top clips for ``query``."""
    from .search import search
    from .train import resume_run, run_baseline

    ds = Dataset(dataset).require()
    run = RunFolder(runs_dir(ds) / DEMO_RUN_ID)
    cfg = registered("msam-tiny-random")
    if run.exists():
        result = resume_run(ds.root, DEMO_RUN_ID, device=device, log=say)
        for message in result.messages:
            say(f"{DEMO_RUN_ID}: {message}")
    else:
        say(f"baseline {cfg.name}: {cfg.description}")
        result = run_baseline(cfg, ds.root, split_train="train", split_eval=("val", "test"), device=device, run_id=DEMO_RUN_ID, log=say)
    final: dict[str, Any] = result.final.get("test") or next(iter(result.final.values()), {})
    r1 = final.get("paper", {}).get("t2v", {}).get("R1") if final else None
    if final:
        p, s = final["paper"], final["single"]
        say(
            f"test: t2v R@1 {p['t2v']['R1']:.1f} (paper protocol) / {s['t2v']['R1']:.1f} (single query), "
            f"v2t R@1 {p['v2t']['R1']:.1f} / {s['v2t']['R1']:.1f}; report {result.report}"
        )
    found = search(ds.root, DEMO_RUN_ID, query, top=top, device=device)
    say(f"search {query!r} over {found.clips} clips ({found.seconds * 1000:.1f} ms):")
    for h in found.hits:
        span = "" if h.start_s is None else f" {h.start_s:.1f}-{h.end_s:.1f} s"
        say(f"  {h.rank}. {h.score:7.3f}  {h.clip_id}  (flight {h.flight_id}{span})")
    return DemoBaseline(DEMO_RUN_ID, result.report, r1, found.hits)
