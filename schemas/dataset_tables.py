"""Schemas of the tables written by `import` (published datasets) and read by `export` (moments).

``imports`` maps our clean clip ids back to the published ids, verbatim, with everything needed to write the
published files again byte for byte: the order of videos in the source file, the order inside each split list, and
the published split. ``moments`` holds moment-retrieval windows and saliency scores, when someone annotated them;
without it, `export --format qvhighlights` derives one window per caption from the clip's span.
``moment_ratings`` holds the extra raters' 0-4 ratings of a moment's cells (`annotate pull --task ratings`), one row
per (moment, rater); the export joins them to the moment's own (the author's) ratings.
"""

from __future__ import annotations

import pyarrow as pa

from dvtr_data.schemas.tables import TABLES, TableSchema, _register

_STR = pa.string()
_F64 = pa.float64()
_I32 = pa.int32()
_I64 = pa.int64()
_TS = pa.timestamp("us", tz="UTC")


def _f(name: str, typ: pa.DataType, nullable: bool = True) -> pa.Field:
    return pa.field(name, typ, nullable=nullable)


IMPORTS = TableSchema(
    name="imports",
    version=1,
    owner="import",
    key=("clip_id",),
    clean_ids=("clip_id",),
    schema=pa.schema(
        [
            _f("clip_id", _STR, False),  # ours: "<source>-<sanitised published id>", clean
            _f("source", _STR, False),  # the import's name, e.g. "usrd" (also the clip id prefix)
            _f("format", _STR, False),  # clip4clip | capera | amfmn
            _f("source_id", _STR, False),  # the published id, verbatim (USRD ids end in " " or " 1")
            _f("source_split", _STR),  # train | val | test, when the published set says; else null
            _f(
                "source_order", _I64, False
            ),  # position in the published caption file (pickle dict order, ...)
            _f("list_order", _I64),  # position inside the published split list of source_split
            _f("n_captions", _I32, False),
            _f("media_path", _STR),  # the published video or image this clip's file was taken from
            _f("imported_at", _TS, False),
        ]
    ),
)

MOMENTS = TableSchema(
    name="moments",
    version=2,  # 2: one row per annotated query (was: per caption), segment span, raters, Label Studio ids
    owner="annotate",
    key=("moment_id",),
    clean_ids=("moment_id", "flight_id", "caption_id", "clip_id"),
    schema=pa.schema(
        [
            _f("moment_id", _STR, False),  # ls-p<project>-a<annotation> | v1-<caption_id> (migrated)
            _f("query", _STR, False),  # raw text exactly as written (untrusted: escape wherever rendered)
            _f("flight_id", _STR, False),  # the untrimmed video
            _f("segment_start_s", _F64, False),  # the span of the flight the annotator saw (<= 150 s), in
            _f("segment_end_s", _F64, False),  # flight seconds; a whole flight is [0, duration]
            _f("windows", pa.list_(pa.list_(_F64)), False),  # [[start_s, end_s], ...] in flight seconds
            _f("saliency_clip_ids", pa.list_(_I64)),  # 2-s cells of the segment: cell k = segment start + [2k, 2k+2)
            _f("saliency_scores", pa.list_(pa.list_(_I32))),  # per cell above, one 0-4 score per rater (null: unrated)
            _f("raters", pa.list_(_STR)),  # who gave each score column, in order
            _f("annotator", _STR),  # who wrote the query and marked the windows
            _f("source", _STR, False),  # human | simulated | derived | model
            _f("status", _STR, False),  # submitted | cancelled
            _f("flags", pa.list_(_STR)),  # no_window | empty_query | unrated_cells | deleted_in_labelstudio
            _f("accepted", pa.bool_(), False),  # usable: submitted, a query, a window, no blocking flag
            _f("caption_id", _STR),  # v1 rows: the caption the query came from
            _f("clip_id", _STR),  # v1 rows: the clip that caption was written for
            _f("ls_project_id", _I64),
            _f("ls_task_id", _I64),
            _f("ls_annotation_id", _I64),
            _f("lead_time_s", _F64),
            _f("created_at", _TS),
            _f("updated_at", _TS),
        ]
    ),
)

MOMENT_RATINGS = TableSchema(
    name="moment_ratings",
    version=1,
    owner="annotate",  # `annotate pull --task ratings`
    key=("moment_id", "rater"),
    clean_ids=("moment_id",),
    schema=pa.schema(
        [
            _f("moment_id", _STR, False),  # the rated moment (moments.moment_id); joined where read
            _f("rater", _STR, False),  # who rated (email, else username): never the moment's author when accepted
            _f("saliency_clip_ids", pa.list_(_I64)),  # the moment's relevant 2-s cells of its segment
            _f("saliency_scores", pa.list_(_I32)),  # one 0-4 score per cell above (null: the rater left it unrated)
            _f("source", _STR, False),  # human | simulated
            _f("status", _STR, False),  # submitted | cancelled
            _f("flags", pa.list_(_STR)),  # own_query | unrated_cells | no_rating | deleted_in_labelstudio | superseded
            _f("accepted", pa.bool_(), False),  # usable: submitted, not the author, at least one cell rated
            _f("ls_project_id", _I64),
            _f("ls_task_id", _I64),
            _f("ls_annotation_id", _I64),
            _f("lead_time_s", _F64),
            _f("created_at", _TS),
            _f("updated_at", _TS),
        ]
    ),
)

for _table in (IMPORTS, MOMENTS, MOMENT_RATINGS):
    if _table.name not in TABLES:
        _register(_table)
