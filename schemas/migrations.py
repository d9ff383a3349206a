"""Bring a table written by an older dvtr-data up to the current schema version, in memory, when it is read.

Tables are never rewritten just because they were read: readers are never blocked and never write. The next
command that owns the table writes it in the current version. Each step takes a table of version N to N+1; a
dataset folder written by any earlier release therefore opens in every later one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import pyarrow as pa

from dvtr_data.schemas.tables import SCHEMA_METADATA_KEY, schema_of


class TableSource(Protocol):
    """What a migration may read besides the table itself (a `Dataset`)."""

    def read_table(self, name: str, *, missing_ok: bool = True) -> pa.Table: ...


Step = Callable[[pa.Table, TableSource], pa.Table]


def version_of(table: pa.Table) -> int:
    tag = (table.schema.metadata or {}).get(SCHEMA_METADATA_KEY, b"").decode()
    _name, _, version = tag.partition("/")
    return int(version or 0)


def _import_sources(source: TableSource) -> dict[str, str]:
    """clip id -> ``import:<name>`` for every imported clip (the imports table says which import made it)."""
    imports = source.read_table("imports")
    if not imports.num_rows:
        return {}
    return {
        cid: f"import:{name}"
        for cid, name in zip(imports.column("clip_id").to_pylist(), imports.column("source").to_pylist(), strict=True)
    }


def _with_writer(table: pa.Table, writers: list[str]) -> pa.Table:
    return table.append_column(pa.field("writer", pa.string(), nullable=False), pa.array(writers, pa.string()))


def _clips_1_to_2(table: pa.Table, source: TableSource) -> pa.Table:
    imported = _import_sources(source)
    return _with_writer(table, [imported.get(c, "ingest") for c in table.column("clip_id").to_pylist()])


def _captions_1_to_2(table: pa.Table, source: TableSource) -> pa.Table:
    imported = _import_sources(source)
    writers = []
    for cid, caption_id, origin in zip(
        table.column("clip_id").to_pylist(),
        table.column("caption_id").to_pylist(),
        table.column("origin").to_pylist(),
        strict=True,
    ):
        if origin == "imported":
            writers.append(imported.get(cid, "import:unknown"))
        elif str(caption_id).startswith("sim-"):
            writers.append("demo")  # the first release's demo wrote the simulator's captions locally
        else:
            writers.append("annotate")
    return _with_writer(table, writers)


def _splits_1_to_2(table: pa.Table, source: TableSource) -> pa.Table:
    imported = _import_sources(source)
    writers = [
        imported.get(cid, "import:unknown") if kind == "published" else "split"
        for cid, kind in zip(table.column("clip_id").to_pylist(), table.column("group_kind").to_pylist(), strict=True)
    ]
    return _with_writer(table, writers)


def _moments_1_to_2(table: pa.Table, source: TableSource) -> pa.Table:
    """v1 was keyed by caption: each row's query is its caption's text, its segment the whole flight (v1 windows
    and 2-s cells are in flight time, so they keep their values), its raters unnamed (``v1-rater-<n>``)."""
    captions = source.read_table("captions")
    texts = (
        dict(zip(captions.column("caption_id").to_pylist(), captions.column("text").to_pylist(), strict=True))
        if captions.num_rows else {}
    )
    flights = source.read_table("flights")
    durations = (
        dict(zip(flights.column("flight_id").to_pylist(), flights.column("duration_s").to_pylist(), strict=True))
        if flights.num_rows else {}
    )
    rows = []
    for r in table.to_pylist():
        windows = [list(w) for w in r["windows"] or []]
        scores = r.get("saliency_scores") or []
        width = max((len(s) for s in scores), default=0)
        end = durations.get(r["flight_id"]) or max((w[1] for w in windows), default=0.0)
        text = texts.get(r["caption_id"])
        flags = [] if text else ["empty_query"]
        rows.append({
            "moment_id": f"v1-{r['caption_id']}", "query": text or "", "flight_id": r["flight_id"],
            "segment_start_s": 0.0, "segment_end_s": float(end), "windows": windows,
            "saliency_clip_ids": r.get("saliency_clip_ids"), "saliency_scores": scores or None,
            "raters": [f"v1-rater-{n}" for n in range(1, width + 1)], "annotator": None, "source": r["source"],
            "status": "submitted", "flags": flags, "accepted": bool(windows) and not flags,
            "caption_id": r["caption_id"], "clip_id": r["clip_id"], "ls_project_id": None, "ls_task_id": None,
            "ls_annotation_id": None, "lead_time_s": None, "created_at": None, "updated_at": None,
        })
    return pa.Table.from_pylist(rows, schema=schema_of("moments").schema)


STEPS: dict[tuple[str, int], Step] = {
    ("clips", 1): _clips_1_to_2,
    ("captions", 1): _captions_1_to_2,
    ("splits", 1): _splits_1_to_2,
    ("moments", 1): _moments_1_to_2,
}


def migrate(name: str, table: pa.Table, source: TableSource) -> pa.Table:
    """``table`` (as read from disk) brought up to the current version of its schema."""
    spec = schema_of(name)
    version = version_of(table)
    while version < spec.version:
        step = STEPS.get((name, version))
        if step is None:
            break  # versions without a step differ only in ways readers tolerate
        table = step(table, source)
        version += 1
    if version_of(table) != spec.version:
        meta: dict[Any, Any] = dict(table.schema.metadata or {})
        meta[SCHEMA_METADATA_KEY] = spec.tag.encode()
        table = table.replace_schema_metadata(meta)
    return table
