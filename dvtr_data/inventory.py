"""What a dataset folder holds: the numbers `dvtr-data info` prints and the demo summarises."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow.parquet as pq

from dvtr_data.dataset import Dataset


@dataclass
class Inventory:
    name: str
    root: str
    flights: int = 0
    flights_failed: int = 0
    flight_hours: float = 0.0
    clips: int = 0
    clip_hours: float = 0.0
    clips_with_file: int = 0
    clips_failed: int = 0
    qc: dict[str, int] = field(default_factory=dict)
    qc_reasons: dict[str, int] = field(default_factory=dict)  # reasons of rejected clips
    qc_flags: dict[str, int] = field(default_factory=dict)  # reasons on clips that were not rejected
    motion: dict[str, int] = field(default_factory=dict)
    with_telemetry: int = 0
    flight_errors: list[tuple[str, str]] = field(default_factory=list)
    warnings: int = 0
    tables: dict[str, int] = field(default_factory=dict)
    stages: dict[str, Any] = field(default_factory=dict)


def inventory(dataset: Dataset) -> Inventory:
    dataset.require()
    cfg = dataset.config()
    inv = Inventory(name=cfg.get("name", dataset.root.name), root=str(dataset.root), stages=cfg.get("stages", {}))
    flights = dataset.read_table("flights").to_pylist()
    clips = dataset.read_table("clips").to_pylist()
    inv.flights = len(flights)
    inv.flights_failed = sum(f["status"] != "ok" for f in flights)
    inv.flight_hours = sum(f["duration_s"] or 0.0 for f in flights if f["status"] == "ok") / 3600
    inv.flight_errors = [(f["file_name"], f["error"]) for f in flights if f["status"] != "ok"]
    inv.warnings = sum(len(f["warnings"] or []) for f in flights)
    inv.clips = len(clips)
    inv.clip_hours = sum(c["duration_s"] for c in clips) / 3600
    inv.clips_with_file = sum(bool(c["clip_path"]) for c in clips)
    inv.clips_failed = sum(c["status"] != "ok" for c in clips)
    inv.qc = dict(Counter(c["qc_verdict"] for c in clips))
    # "rejected for" counts the reasons of rejected clips only; the reasons a passing clip carries (a telemetry
    # flag, say) are flags, not rejections, and are counted apart
    inv.qc_reasons = dict(Counter(r.split(":")[0] for c in clips if c["qc_verdict"] == "reject"
                                  for r in (c["qc_reasons"] or [])))
    inv.qc_flags = dict(Counter(r for c in clips if c["qc_verdict"] != "reject" for r in (c["qc_reasons"] or [])))
    inv.motion = dict(Counter(c["motion_kind"] for c in clips if c["motion_kind"]))
    inv.with_telemetry = sum(c["lat"] is not None for c in clips)
    import dvtr_data.schemas.dataset_tables  # noqa: F401  (registers the tables declared beside the core ones)
    from dvtr_data.schemas import TABLES

    for name in TABLES:  # every table the dataset has, in the registry's order
        path = dataset.table_path(name)
        if path.exists():
            inv.tables[name] = pq.ParquetFile(path).metadata.num_rows
    return inv
