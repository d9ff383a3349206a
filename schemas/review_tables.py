"""Schema of ``reviews`` (written by `annotate review pull`): one row per review of a submitted caption.

Label Studio's open-source edition has no review stream, so reviews are made in a review project of their own (see
``annotation/review.py``) and land here, not in ``captions``: a caption row stays as its author's pull wrote it and
readers join the verdict (``annotation/reviewed.py``). A fix is a new caption row (writer ``review``) whose id is
this table's ``fixed_caption_id``: the link from a fix to the caption it fixes lives here, so the captions schema
does not change.
"""

from __future__ import annotations

import pyarrow as pa

from dvtr_data.schemas.tables import TABLES, TableSchema, _register

_STR = pa.string()
_F64 = pa.float64()
_I64 = pa.int64()
_TS = pa.timestamp("us", tz="UTC")


def _f(name: str, typ: pa.DataType, nullable: bool = True) -> pa.Field:
    return pa.field(name, typ, nullable=nullable)


REVIEWS = TableSchema(
    name="reviews",
    version=1,
    owner="annotate",
    key=("review_id",),
    clean_ids=("review_id", "caption_id", "clip_id", "fixed_caption_id"),
    schema=pa.schema(
        [
            _f("review_id", _STR, False),  # rv-p<review project>-a<annotation>
            _f("caption_id", _STR, False),  # the caption reviewed
            _f("clip_id", _STR, False),
            _f("status", _STR, False),  # accepted | rejected | fixed
            _f("reviewer", _STR, False),  # the reviewer's email (never the caption's author: pull refuses those)
            _f("author", _STR),  # the caption's annotator, as the review task carried it
            _f("reason", _STR),  # why it was rejected or fixed (required for a rejection)
            _f("fixed_caption_id", _STR),  # status fixed: the new caption row (writer review) that replaces it
            _f("ls_project_id", _I64),
            _f("ls_task_id", _I64),
            _f("ls_annotation_id", _I64),
            _f("lead_time_s", _F64),
            _f("created_at", _TS),
            _f("updated_at", _TS),
        ]
    ),
)

if REVIEWS.name not in TABLES:
    _register(REVIEWS)
