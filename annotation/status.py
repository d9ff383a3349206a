"""`annotate status`: progress, annotators and caption quality, from the dataset's own tables (no server needed).

Figures are computed from ``captions.parquet`` as the last pull left it, so status works offline and on a copy of
the dataset. Progress counts accepted captions per clip of the project against the target (captions per task x
annotators per clip from the last push, 5 by default). Moments (`moments_status`) are counted from ``moments`` and
``moment_ratings``: queries, windows, distinct raters per query (the author and the rating round's accepted raters,
QVHighlights wants three) and, per annotator, the queries written and the ratings given.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dvtr_data.annotation.client import AnnotationState
from dvtr_data.annotation.pull import DELETED_FLAG
from dvtr_data.annotation.quality import Quality, caption_quality
from dvtr_data.annotation.reviewed import latest_reviews, reviewed_accepted
from dvtr_data.dataset import Dataset
from dvtr_data.lineage import captions_on_current_clips, orphaned_caption_count

DEFAULT_TARGET = 5
RATERS_WANTED = 3  # QVHighlights: three ratings per relevant 2-s cell


@dataclass(frozen=True)
class MomentAnnotator:
    annotator: str
    origin: str
    queries: int  # accepted moments this annotator wrote
    windows: int  # their windows
    ratings: int  # accepted ratings they gave in the rating round (other people's queries)
    median_lead_s: float | None  # over their moment and rating annotations


@dataclass
class MomentsStatus:
    rows: int  # moment rows (any status)
    queries: int  # accepted moments
    windows: int  # windows of the accepted moments
    raters: dict[int, int]  # distinct raters per accepted query (capped at RATERS_WANTED) -> queries
    rating_rows: int
    ratings_accepted: int
    flags: dict[str, int]  # of moments and ratings together
    annotators: list[MomentAnnotator]

    @property
    def complete(self) -> int:
        """Queries with the three raters QVHighlights wants."""
        return self.raters.get(RATERS_WANTED, 0)


def moments_status(dataset: Dataset) -> MomentsStatus | None:
    """Moment figures (see the module docstring); None when no moment was pulled."""
    moments = dataset.read_table("moments").to_pylist()
    if not moments:
        return None
    ratings = dataset.read_table("moment_ratings").to_pylist() if dataset.has_table("moment_ratings") else []
    accepted = [m for m in moments if m["accepted"]]
    extra: dict[str, list[str]] = {}
    for r in ratings:
        if r["accepted"]:
            extra.setdefault(r["moment_id"], []).append(r["rater"])
    raters = {n: 0 for n in range(1, RATERS_WANTED + 1)}
    for m in accepted:
        who = set(m["raters"] or []) | set(extra.get(m["moment_id"], []))
        raters[max(1, min(RATERS_WANTED, len(who)))] += 1
    flags: dict[str, int] = {}
    for row in [*moments, *ratings]:
        for f in row["flags"] or []:
            flags[f] = flags.get(f, 0) + 1
    people: dict[str, dict[str, Any]] = {}
    for m in moments:
        p = people.setdefault(m["annotator"] or "?", {"q": 0, "w": 0, "r": 0, "lead": [], "src": set()})
        p["src"].add(m["source"])
        if m["lead_time_s"] is not None:
            p["lead"].append(float(m["lead_time_s"]))
        if m["accepted"]:
            p["q"] += 1
            p["w"] += len(m["windows"] or [])
    for r in ratings:
        p = people.setdefault(r["rater"], {"q": 0, "w": 0, "r": 0, "lead": [], "src": set()})
        p["src"].add(r["source"])
        if r["lead_time_s"] is not None:
            p["lead"].append(float(r["lead_time_s"]))
        p["r"] += int(r["accepted"])
    annotators = [
        MomentAnnotator(who, "simulated" if p["src"] == {"simulated"} else "human", p["q"], p["w"], p["r"],
                        statistics.median(p["lead"]) if p["lead"] else None)
        for who, p in people.items()
    ]
    annotators.sort(key=lambda a: (-a.queries, -a.ratings, a.annotator))
    return MomentsStatus(
        rows=len(moments), queries=len(accepted), windows=sum(len(m["windows"] or []) for m in accepted),
        raters=raters, rating_rows=len(ratings), ratings_accepted=sum(1 for r in ratings if r["accepted"]),
        flags=flags, annotators=annotators,
    )


@dataclass(frozen=True)
class AnnotatorStats:
    annotator: str
    origin: str
    annotations: int
    captions: int
    accepted: int
    skipped: int
    median_lead_s: float | None
    annotations_per_hour: float | None
    unchanged_draft_share: float | None
    mean_words: float | None
    reviewed: int = 0  # captions of this annotator that a review decided (the latest review per caption)
    review_accepted: int = 0  # of those, the ones the reviewer accepted

    @property
    def acceptance_rate(self) -> float | None:
        """Share of the annotator's reviewed captions that reviewers accepted (None before any review)."""
        return self.review_accepted / self.reviewed if self.reviewed else None


@dataclass
class StatusReport:
    dataset: Path
    target: int
    clips: int
    progress: dict[int, int]  # accepted captions per clip (capped at target) -> clips
    captions: int  # rows from Label Studio
    accepted: int
    by_origin: dict[str, int]
    by_status: dict[str, int]
    flags: dict[str, int]
    qc_choices: dict[str, int]
    annotators: list[AnnotatorStats]
    quality: Quality
    projects: dict[str, int] = field(default_factory=dict)  # server -> project id
    orphaned: int = 0  # captions whose clip a re-ingest removed with no clip covering its span (clip_lineage)
    moments: MomentsStatus | None = None  # when moments were pulled

    @property
    def complete_clips(self) -> int:
        return self.progress.get(self.target, 0)


def annotation_status(dataset_dir: Path, target: int | None = None) -> StatusReport:
    dataset = Dataset(dataset_dir).require()
    state = AnnotationState(dataset)
    servers = state.data.get("servers", {})
    if target is None:
        targets = [int(s.get("captions_per_task") or 1) * int(s.get("overlap") or 1) for s in servers.values() if s.get("project_id")]
        target = max(targets) if targets else DEFAULT_TARGET
    target = max(1, target)
    universe: set[str] = set()
    for srv in servers.values():
        universe.update((srv.get("tasks") or {}).keys())
    if not universe:
        universe = {c["clip_id"] for c in dataset.read_table("clips").to_pylist() if c["status"] == "ok" and c["qc_verdict"] == "pass"}

    captions = captions_on_current_clips(dataset)  # captions follow clips whose boundaries a re-ingest moved
    # Label Studio rows (ls-) and reviewers' fixes (rv-), with each reviewed caption's verdict joined in
    rows = [r for r in captions.to_pylist() if str(r["caption_id"]).startswith(("ls-", "rv-"))]
    verdicts = latest_reviews(dataset.read_table("reviews"))
    for r in rows:
        r["accepted"] = reviewed_accepted(r, verdicts.get(r["caption_id"]))
    per_clip: dict[str, int] = dict.fromkeys(universe, 0)
    by_clip_tokens: dict[str, list[list[str]]] = {}
    by_origin: dict[str, int] = {}
    by_status: dict[str, int] = {}
    flags: dict[str, int] = {}
    qc: dict[str, int] = {}
    for r in rows:
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
        by_origin[r["origin"]] = by_origin.get(r["origin"], 0) + 1
        for f in r["flags"] or []:
            flags[f] = flags.get(f, 0) + 1
        if r["accepted"] and DELETED_FLAG not in (r["flags"] or []):
            per_clip[r["clip_id"]] = per_clip.get(r["clip_id"], 0) + 1
            by_clip_tokens.setdefault(r["clip_id"], []).append(list(r["tokens"] or []))
    seen_annotations: set[int] = set()
    for r in rows:
        if r["ls_annotation_id"] not in seen_annotations:
            seen_annotations.add(r["ls_annotation_id"])
            for c in r["qc_choices"] or []:
                qc[c] = qc.get(c, 0) + 1
    progress = {n: 0 for n in range(target + 1)}
    for cid in universe | set(per_clip):
        progress[min(per_clip.get(cid, 0), target)] += 1
    submitted = [r for r in rows if r["status"] == "submitted"]
    with_draft = [r for r in submitted if r["draft_shown"] is not None]
    unchanged = sum(1 for r in with_draft if "unchanged_draft" in (r["flags"] or []))
    return StatusReport(
        dataset=dataset.root,
        target=target,
        clips=len(universe | set(per_clip)),
        progress=progress,
        captions=len(rows),
        accepted=sum(1 for r in rows if r["accepted"]),
        by_origin=by_origin,
        by_status=by_status,
        flags=flags,
        qc_choices=qc,
        annotators=annotator_stats(rows, verdicts),
        quality=caption_quality(by_clip_tokens, unchanged=unchanged, with_draft=len(with_draft)),
        projects={k: int(v["project_id"]) for k, v in servers.items() if v.get("project_id")},
        orphaned=orphaned_caption_count(dataset),
        moments=moments_status(dataset),
    )


def annotator_stats(rows: list[dict[str, Any]], verdicts: dict[str, dict[str, Any]] | None = None) -> list[AnnotatorStats]:
    """Per annotator: volume, speed (from Label Studio's lead time per annotation), draft reliance, and the share
    of their reviewed captions that reviewers accepted (``verdicts``: the latest review per caption id)."""
    verdicts = verdicts or {}
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["annotator"] or "?", []).append(r)
    out = []
    for who, items in groups.items():
        leads: dict[int, float] = {}
        for r in items:
            if r["lead_time_s"] is not None:
                leads.setdefault(r["ls_annotation_id"], float(r["lead_time_s"]))
        submitted = [r for r in items if r["status"] == "submitted"]
        with_draft = [r for r in submitted if r["draft_shown"] is not None]
        words = [len(r["tokens"] or []) for r in submitted if r["text"].strip()]
        total_lead = sum(leads.values())
        n_ann = len({r["ls_annotation_id"] for r in items})
        out.append(
            AnnotatorStats(
                annotator=who,
                origin="simulated" if all(r["origin"] == "simulated" for r in items) else items[0]["origin"],
                annotations=n_ann,
                captions=len(submitted),
                accepted=sum(1 for r in items if r["accepted"]),
                skipped=len({r["ls_annotation_id"] for r in items if r["status"] in ("skipped", "cancelled")}),
                median_lead_s=statistics.median(leads.values()) if leads else None,
                annotations_per_hour=(len(leads) * 3600.0 / total_lead) if total_lead > 0 else None,
                unchanged_draft_share=(
                    sum(1 for r in with_draft if "unchanged_draft" in (r["flags"] or [])) / len(with_draft) if with_draft else None
                ),
                mean_words=sum(words) / len(words) if words else None,
                reviewed=sum(1 for r in submitted if r["caption_id"] in verdicts),
                review_accepted=sum(1 for r in submitted if verdicts.get(r["caption_id"], {}).get("status") == "accepted"),
            )
        )
    out.sort(key=lambda a: (-a.captions, a.annotator))
    return out
