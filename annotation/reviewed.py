"""Reading captions with their reviews: the reviewer's verdict decides where a review exists.

``captions.accepted`` is what the automatic checks of the caption's own pull decided; a review (``reviews``
table, written by `annotate review pull`) overrides it for that caption: accepted only when its latest review
accepted it, never when the latest review rejected or fixed it (a fix is a caption row of its own, writer
``review``, judged by the same checks). Captions without a review keep their own ``accepted``. Kept free of
Label Studio imports so that `split` and `status` can read it cheaply.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pyarrow as pa

ACCEPTED, REJECTED, FIXED = "accepted", "rejected", "fixed"
STATUSES = (ACCEPTED, REJECTED, FIXED)


def latest_reviews(reviews: pa.Table | list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The deciding review per caption: the one updated last (ties: the higher review id, i.e. made later)."""
    rows = reviews.to_pylist() if isinstance(reviews, pa.Table) else list(reviews)
    out: dict[str, dict[str, Any]] = {}

    def order(r: dict[str, Any]) -> tuple[datetime | str, str]:
        when = r.get("updated_at") or r.get("created_at")
        return (when.isoformat() if isinstance(when, datetime) else str(when or ""), str(r["review_id"]))

    for r in sorted(rows, key=order):
        out[str(r["caption_id"])] = r
    return out


def reviewed_accepted(caption: dict[str, Any], verdict: dict[str, Any] | None) -> bool:
    """Whether a caption counts as accepted once its review (or None) is joined."""
    if verdict is None:
        return bool(caption.get("accepted"))
    return verdict["status"] == ACCEPTED and caption.get("status") == "submitted"


def apply_reviews(captions: pa.Table, reviews: pa.Table | None) -> pa.Table:
    """``captions`` with ``accepted`` replaced by the reviewed verdict (unchanged when there are no reviews)."""
    if reviews is None or not reviews.num_rows or not captions.num_rows:
        return captions
    verdicts = latest_reviews(reviews)
    ids = captions.column("caption_id").to_pylist()
    if not verdicts.keys() & set(ids):
        return captions
    status = captions.column("status").to_pylist()
    accepted = captions.column("accepted").to_pylist()
    joined = [
        reviewed_accepted({"accepted": acc, "status": st}, verdicts.get(cid))
        for cid, st, acc in zip(ids, status, accepted, strict=True)
    ]
    i = captions.schema.get_field_index("accepted")
    return captions.set_column(i, captions.schema.field(i), pa.array(joined, captions.schema.field(i).type))
