"""Clip lineage: captions follow their clip when a re-ingest moves its boundaries, or are counted as orphans.

A clip id is the flight plus the frame range (``<flight>-<start>-<end>``), so when a re-ingest moves a boundary
(new transition detection, other window settings) the clip gets a new id while the captions written for it
(rows of `annotate` or an import, which ingest must not rewrite) still name the old one. Ingest records, in
its own table ``clip_lineage``, which new clip covers each vanished clip's span (`plan_lineage`,
`record_lineage`); every reader of captions maps them through `captions_on_current_clips`, the one helper
for it. The rule for carrying a caption over:

- the new clip of the same flight that shares the most frames with the old clip takes its captions, provided it
  holds at least half of the old clip's frames (``MIN_OVERLAP``): the caption then still describes most of what
  the new clip shows;
- otherwise the old clip is an orphan (its frames are mostly in no clip now: a transition, a dropped tail, a
  flight whose file changed), and ingest reports how many captions that leaves without a clip. Orphaned
  captions keep their old clip id, which no current clip has, so every reader leaves them out as before.

Lineage chains (A moved to B, later B to C) are followed to the current clip. A clip id that exists again
(settings reverted) is its own current clip, whatever the table says.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

import dvtr_data.schemas.lineage_tables  # noqa: F401  (registers clip_lineage)
from dvtr_data.dataset import Dataset

TABLE = "clip_lineage"
MIN_OVERLAP = 0.5  # share of the old clip's frames the new clip must hold to take its captions


@dataclass(frozen=True)
class LineageUpdate:
    """What a re-ingest did to clip ids, and to the captions that name them."""

    rows: list[dict[str, Any]] = field(default_factory=list)  # the whole clip_lineage table to write
    moved: int = 0  # clips of this run that vanished and whose span a new clip covers
    orphaned: int = 0  # clips of this run that vanished with no new clip covering half their frames
    captions_carried: int = 0  # captions now read on a new clip
    captions_orphaned: int = 0  # captions whose clip no longer exists in any form (all runs, not only this one)

    @property
    def message(self) -> str | None:
        """One line for ingest's report, or None when no clip id changed and no caption is orphaned."""
        if not (self.moved or self.orphaned or self.captions_orphaned):
            return None
        text = f"{self.moved + self.orphaned} clip(s) changed boundaries: {self.moved} carried to the new clip covering them"
        text += f" ({self.captions_carried} caption(s) follow)" if self.captions_carried else ""
        text += f", {self.orphaned} orphaned (no new clip holds half their frames)"
        if self.captions_orphaned:
            text += f"; {self.captions_orphaned} caption(s) are orphaned: their clip is gone (see clip_lineage)"
        return text


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> int:
    return max(0, min(a["end_frame"], b["end_frame"]) - max(a["start_frame"], b["start_frame"]))


def plan_lineage(
    old_clips: Iterable[dict[str, Any]],
    new_clips: Iterable[dict[str, Any]],
    previous: Iterable[dict[str, Any]] = (),
    caption_clip_ids: Iterable[str] = (),
    now: datetime | None = None,
) -> LineageUpdate:
    """The lineage after an ingest turned ``old_clips`` into ``new_clips`` (rows with clip_id, flight_id,
    start_frame, end_frame), given the ``previous`` lineage rows and the clip id of every caption."""
    now = now or datetime.now(UTC)
    new_list = list(new_clips)
    current = {c["clip_id"] for c in new_list}
    by_flight: dict[str, list[dict[str, Any]]] = {}
    for c in new_list:
        by_flight.setdefault(c["flight_id"], []).append(c)
    # earlier rows stay (chains), except for ids that exist again
    rows = {r["old_clip_id"]: dict(r) for r in previous if r["old_clip_id"] not in current}
    moved = orphaned = 0
    for old in old_clips:
        oid = old["clip_id"]
        if oid in current:
            continue
        length = old["end_frame"] - old["start_frame"]
        candidates = by_flight.get(old["flight_id"], [])
        best = max(candidates, key=lambda c: (_overlap(old, c), -c["start_frame"]), default=None)
        share = _overlap(old, best) / length if best is not None and length > 0 else 0.0
        if best is not None and share >= MIN_OVERLAP:
            rows[oid] = dict(old_clip_id=oid, new_clip_id=best["clip_id"], flight_id=old["flight_id"],
                             reason="boundaries moved", overlap=round(share, 4), recorded_at=now)
            moved += 1
        else:
            why = "flight no longer ingested" if not candidates else "no new clip holds half its frames"
            rows[oid] = dict(old_clip_id=oid, new_clip_id=None, flight_id=old["flight_id"],
                             reason=f"orphaned: {why}", overlap=round(share, 4), recorded_at=now)
            orphaned += 1
    mapping = _mapping(rows.values())
    counts = Counter(caption_clip_ids)
    carried = sum(n for cid, n in counts.items() if cid not in current and resolve(cid, mapping, current) in current)
    lost = sum(n for cid, n in counts.items() if cid in mapping and resolve(cid, mapping, current) is None)
    ordered = [rows[k] for k in sorted(rows)]
    return LineageUpdate(ordered, moved, orphaned, carried, lost)


def _mapping(rows: Iterable[dict[str, Any]]) -> dict[str, str | None]:
    return {r["old_clip_id"]: r["new_clip_id"] for r in rows}


def resolve(clip_id: str, mapping: dict[str, str | None], current: set[str] | None = None) -> str | None:
    """The current clip of ``clip_id``: itself when it exists (or has no lineage), the end of its chain
    otherwise, None for an orphan."""
    seen: set[str] = set()
    cid: str | None = clip_id
    while cid is not None and cid in mapping and (current is None or cid not in current) and cid not in seen:
        seen.add(cid)
        cid = mapping[cid]
    return cid


def record_lineage(ds: Dataset, old_clips: Iterable[dict[str, Any]], new_clips: Iterable[dict[str, Any]]) -> LineageUpdate:
    """Plan the lineage and write ``clip_lineage`` (ingest's table; call under ingest's write lock)."""
    previous = ds.read_table(TABLE).to_pylist() if ds.has_table(TABLE) else []
    captions = ds.read_table("captions")
    cap_ids = captions.column("clip_id").to_pylist() if captions.num_rows else []
    update = plan_lineage(old_clips, new_clips, previous, cap_ids)
    if update.rows or previous:
        ds.write_table(TABLE, update.rows)
    return update


def captions_on_current_clips(ds: Dataset, captions: pa.Table | None = None) -> pa.Table:
    """``captions`` (default: the captions table) as every reader sees them: each clip id mapped to its current
    clip, and ``accepted`` decided by the latest review where a caption has one (annotation/reviewed.py).

    The one helper every reader of captions uses (export, split, releases, card, listings, annotation status).
    Captions of clips that still exist keep their id; orphans keep their old id, which matches no clip.
    """
    if captions is None:
        captions = ds.read_table("captions")
    captions = _reviewed(ds, captions)
    if not captions.num_rows or not ds.has_table(TABLE):
        return captions
    lineage = ds.read_table(TABLE)
    if not lineage.num_rows:
        return captions
    mapping = _mapping(lineage.to_pylist())
    clips = ds.read_table("clips")
    current = set(clips.column("clip_id").to_pylist()) if clips.num_rows else set()
    ids = captions.column("clip_id").to_pylist()
    mapped = [(resolve(c, mapping, current) or c) if c in mapping else c for c in ids]
    if mapped == ids:
        return captions
    col = captions.schema.get_field_index("clip_id")
    return captions.set_column(col, captions.schema.field(col), pa.array(mapped, pa.string()))


def _reviewed(ds: Dataset, captions: pa.Table) -> pa.Table:
    if not captions.num_rows or not ds.has_table("reviews"):
        return captions
    from dvtr_data.annotation.reviewed import apply_reviews  # the review step's own rule

    return apply_reviews(captions, ds.read_table("reviews"))


def orphaned_caption_count(ds: Dataset, captions: pa.Table | None = None) -> int:
    """Captions whose clip vanished in a re-ingest with no clip covering its span (see `clip_lineage`)."""
    if not ds.has_table(TABLE):
        return 0
    if captions is None:
        captions = ds.read_table("captions")
    if not captions.num_rows:
        return 0
    mapping = _mapping(ds.read_table(TABLE).to_pylist())
    clips = ds.read_table("clips")
    current = set(clips.column("clip_id").to_pylist()) if clips.num_rows else set()
    return sum(1 for c in captions.column("clip_id").to_pylist() if c in mapping and resolve(c, mapping, current) is None)
