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


STEPS: dict[tuple[str, int], Step] = {
    ("clips", 1): _clips_1_to_2,
    ("captions", 1): _captions_1_to_2,
    ("splits", 1): _splits_1_to_2,
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
