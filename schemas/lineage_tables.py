"""Schemas of ``clip_lineage`` (written by `ingest`) and ``clip_categories`` (written by `annotate pull`).

``clip_lineage`` keeps captions from being lost when a re-ingest moves clip boundaries: clip ids are the flight
plus the frame range, so a clip whose boundaries move gets a new id, while captions (annotate's and imports' rows)
still name the old one. Ingest never rewrites caption rows; it records here which new clip covers each old clip's
span, or that none does (an orphan), and readers of captions map them through `dvtr_data.lineage`.

``clip_categories`` is the annotators' scene category of each clip: the majority of their choices, with the vote
kept visible (votes, annotators, agreement, and ties as an empty category). The clips table belongs to ingest and
import, so the annotated category lives in a table of its own, joined where it is read (split, card).
"""

from __future__ import annotations

import pyarrow as pa

from dvtr_data.schemas.tables import TABLES, TableSchema, _register

_STR = pa.string()
_F64 = pa.float64()
_I32 = pa.int32()
_TS = pa.timestamp("us", tz="UTC")


def _f(name: str, typ: pa.DataType, nullable: bool = True) -> pa.Field:
    return pa.field(name, typ, nullable=nullable)


CLIP_LINEAGE = TableSchema(
    name="clip_lineage",
    version=1,
    owner="ingest",
    key=("old_clip_id",),
    clean_ids=("old_clip_id", "new_clip_id", "flight_id"),
    schema=pa.schema(
        [
            _f("old_clip_id", _STR, False),  # a clip id that an earlier ingest wrote and the latest did not
            _f("new_clip_id", _STR),  # the clip now covering most of its span; null: orphaned (no clip does)
            _f("flight_id", _STR, False),
            _f("reason", _STR, False),  # boundaries moved | orphaned: <why>
            _f("overlap", _F64),  # share of the old clip's frames inside the new clip, 0-1
            _f("recorded_at", _TS, False),
        ]
    ),
)

CLIP_CATEGORIES = TableSchema(
    name="clip_categories",
    version=1,
    owner="annotate",
    key=("clip_id",),
    clean_ids=("clip_id",),
    schema=pa.schema(
        [
            _f("clip_id", _STR, False),
            _f("category", _STR),  # the majority choice; null on a tie (the card counts it as no majority)
            _f("votes", pa.map_(_STR, _I32), False),  # every category chosen, with how many annotators chose it
            _f("n_annotators", _I32, False),  # annotators who chose a category for this clip
            _f("agreement", _F64, False),  # votes of the most chosen category / n_annotators, 0-1
            _f("tie", pa.bool_(), False),  # two or more categories share the most votes
        ]
    ),
)

for _table in (CLIP_LINEAGE, CLIP_CATEGORIES):
    if _table.name not in TABLES:
        _register(_table)
