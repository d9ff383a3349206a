"""The annotators' scene category of each clip: a majority vote, with ties and disagreement kept visible.

Label Studio asks each annotator for one category per clip (``captions.category``, repeated on every caption
slot of the annotation). `annotate pull` turns those choices into ``clip_categories`` (`write_clip_categories`,
right after it writes the captions): one vote per annotator and clip (their latest annotation; cancelled,
skipped and deleted ones do not vote), the most chosen category, how many chose it, and a tie shown as a tie
(``category`` empty, ``tie`` true) rather than broken by chance. The clips table belongs to ingest and import,
so this table stands beside it; `annotated_categories` is how the split and the card join it.

Captions are read through `dvtr_data.lineage.captions_on_current_clips`, so the votes of a clip whose boundaries
a re-ingest moved count for the clip that now covers it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import dvtr_data.schemas.lineage_tables  # noqa: F401  (registers clip_categories)
from dvtr_data.dataset import Dataset
from dvtr_data.lineage import captions_on_current_clips

TABLE = "clip_categories"
WRITER = "annotate"
DELETED_FLAG = "deleted_in_labelstudio"
_EPOCH = datetime.min


def category_votes(captions: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """``clip_categories`` rows from caption rows (clip_id, category, status, annotator, ls_annotation_id,
    updated_at / created_at, flags), one per clip with at least one vote, sorted by clip id."""
    latest: dict[tuple[str, str], tuple[Any, str]] = {}
    for r in captions:
        cat = (r.get("category") or "").strip()
        if not cat or r.get("status") != "submitted" or DELETED_FLAG in (r.get("flags") or []):
            continue
        who = r.get("annotator") or f"annotation-{r.get('ls_annotation_id')}"
        when = r.get("updated_at") or r.get("created_at") or _EPOCH
        key = (r["clip_id"], who)
        stamp = (_naive(when), r.get("ls_annotation_id") or 0)
        if key not in latest or stamp >= latest[key][0]:
            latest[key] = (stamp, cat)
    by_clip: dict[str, Counter[str]] = {}
    for (clip_id, _), (_, cat) in latest.items():
        by_clip.setdefault(clip_id, Counter())[cat] += 1
    rows = []
    for clip_id in sorted(by_clip):
        votes = by_clip[clip_id]
        n = sum(votes.values())
        top = max(votes.values())
        leaders = sorted(c for c, v in votes.items() if v == top)
        tie = len(leaders) > 1
        rows.append(
            {
                "clip_id": clip_id,
                "category": None if tie else leaders[0],
                "votes": dict(sorted(votes.items())),
                "n_annotators": n,
                "agreement": round(top / n, 4),
                "tie": tie,
            }
        )
    return rows


def _naive(when: Any) -> Any:
    return when.replace(tzinfo=None) if isinstance(when, datetime) else when


def write_clip_categories(dataset: Dataset) -> int:
    """Recompute ``clip_categories`` from the annotators' captions; returns the number of clips voted on.

    Call with the dataset's `annotate` write lock held (`annotate pull` does, right after writing captions).
    """
    captions = captions_on_current_clips(dataset)
    ours = [r for r in captions.to_pylist() if r.get("writer") == WRITER] if captions.num_rows else []
    rows = category_votes(ours)
    if rows or dataset.has_table(TABLE):
        dataset.write_table(TABLE, [{**r, "votes": list(r["votes"].items())} for r in rows])
    return len(rows)


def annotated_categories(dataset: Dataset) -> dict[str, str | None]:
    """Clip id -> the annotators' majority category (None on a tie); clips nobody voted on are absent."""
    if not dataset.has_table(TABLE):
        return {}
    table = dataset.read_table(TABLE)
    return dict(zip(table.column("clip_id").to_pylist(), table.column("category").to_pylist(), strict=True))
