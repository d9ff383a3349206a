"""Rating rounds on annotated moments: more raters paint the 0-4 saliency of a moment's 2-s cells in Label Studio.

QVHighlights gives every relevant 2-s cell three ratings from three people. A moment's author rates its cells while
annotating (`annotation.moments`); `push_ratings` makes a second project whose tasks are the accepted moments,
``--overlap`` raters per task (default 2, so that with the author there are three). One task per moment: the rater
sees the flight (a span of it, the segment, named in the header), the query as text and its windows both as clock
times and drawn on the timeline, and paints ratings exactly as the moments project does (labels
"4 very good" ... "0 not relevant" in the same TimelineLabels tag as the "query window" regions, the only tag
Label Studio 1.23 draws with; each relevant cell takes the rating covering most of it).

Why the windows come as a *prediction* (and as text): Label Studio 1.23's page turns a task's prediction into the
annotator's starting annotation (seen with the captions project, see push.py), so the windows appear as regions on
the timeline the rater paints under, in the free edition, with no ML backend. Pull never reads those regions back:
the moment's windows are the author's, from the ``moments`` table; a rater who moves them changes nothing.

A rater never rates their own query: Label Studio's open-source edition cannot keep a user away from a task, so the
task says "skip if you wrote this query" and pull flags a rating by the moment's author ``own_query`` and never
accepts it (the author's ratings already count once, from the moments table).

`pull_ratings` writes ``moment_ratings`` (owner annotate, one row per (moment, rater): a rater who submitted twice
counts once, their latest annotation). `simulate_ratings` answers tasks of generated flights from their truth with
per-rater noise (see `rater_noise`), as simulated annotators other than the author.
"""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from dvtr_data.annotation.client import AnnotationState, Connection, Studio
from dvtr_data.annotation.labeling import _clock, _environment
from dvtr_data.annotation.moments import (
    MEDIA_DIR,
    SALIENCY,
    SALIENCY_COLOURS,
    SALIENCY_LABELS,
    VIDEO,
    WINDOWS,
    _ranges,
    cell_scores,
    frames_to_seconds,
    has_legacy_saliency,
    media_name,
    seconds_to_frames,
    segment_header,
    truth_moments,
)
from dvtr_data.annotation.projects import (
    find_project,
    import_tasks,
    merge_pulled,
    place_flight_videos,
    upsert_project,
)
from dvtr_data.annotation.pull import _time, annotator_of, completed_by_id, is_simulated
from dvtr_data.annotation.push import LOCAL_FILES_PREFIX
from dvtr_data.annotation.simulate import ensure_simulated_users
from dvtr_data.dataset import Dataset
from dvtr_data.errors import DatasetError, ServiceError, UsageError
from dvtr_data.runlog import RunLog
from dvtr_data.schemas.records import MomentRatingRow
from dvtr_data.synth.simulated import load_truth

PROJECT_MARKER = "dvtr-ratings:"
STATE_KEY = "ratings"  # the ratings project's entry inside the server's state (beside captions and moments)
WINDOW_LABEL = "query window"
PREFILL_VERSION = "dvtr-moment-windows"  # model_version of the predictions that draw the windows
DEFAULT_OVERLAP = 2
TABLE = "moment_ratings"
NOISE = (-1, 0, 0, 1)  # a simulated rater's per-cell offset from the truth rating, drawn uniformly

Say = Any


def _quiet(_: str) -> None:
    pass


def render_ratings_config(video_height: int = 260, *, legacy_saliency: bool = False) -> str:
    text = _environment().get_template("ratings_config.xml.j2").render(
        legacy_saliency=legacy_saliency, legacy_name=SALIENCY,
        video_name=VIDEO, windows_name=WINDOWS, window_label=WINDOW_LABEL,
        saliency_labels=list(zip(SALIENCY_LABELS, SALIENCY_COLOURS, strict=True)), video_height=video_height,
        timeline_height=120,
    )
    ET.fromstring(text)
    return text.strip() + "\n"


def windows_text(windows: list[list[float]]) -> str:
    return "windows: " + ", ".join(f"{_clock(a)}-{_clock(b)}" for a, b in windows)


def ratable_moments(dataset: Dataset) -> list[dict[str, Any]]:
    """Accepted moments with a query, windows and relevant cells, on an ingested flight, by moment id."""
    flights = {f["flight_id"] for f in dataset.read_table("flights").to_pylist() if f["status"] == "ok"}
    rows = dataset.read_table("moments").to_pylist()
    return sorted(
        (r for r in rows if r["accepted"] and r["windows"] and r["query"].strip() and r["saliency_clip_ids"]
         and r["flight_id"] in flights),
        key=lambda r: r["moment_id"],
    )


def _find_project(studio: Studio, dataset: Dataset, state: AnnotationState) -> dict[str, Any] | None:
    return find_project(studio, dataset, state, STATE_KEY, PROJECT_MARKER)


def _require_project(studio: Studio, dataset: Dataset, conn: Connection) -> dict[str, Any]:
    project = _find_project(studio, dataset, AnnotationState(dataset))
    if project is None:
        raise ServiceError(f"{conn.url} has no ratings project for this dataset yet",
                           hint=f"run `dvtr-data annotate push --task ratings --dataset {dataset.root}` first")
    return project


def windows_prediction(windows: list[list[float]], fps: float) -> dict[str, Any]:
    """The prediction drawing the moment's windows on the timeline (the rater's starting annotation)."""
    result = []
    for a, b in windows:
        s, e = seconds_to_frames(a, b, fps)
        result.append({"from_name": WINDOWS, "to_name": VIDEO, "type": "timelinelabels",
                       "value": {"ranges": [{"start": s, "end": e}], "timelinelabels": [WINDOW_LABEL]}})
    return {"model_version": PREFILL_VERSION, "score": 1.0, "result": result}


# ----------------------------------------------------------------------------------------------------------------
# push
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class RatingsPushReport:
    url: str
    project_id: int
    project_created: bool
    moments: int = 0
    tasks_existing: int = 0
    tasks_created: int = 0
    media_placed: int = 0
    missing_videos: list[str] = field(default_factory=list)


def push_ratings(
    dataset_dir: Path, conn: Connection, *, overlap: int = DEFAULT_OVERLAP, media_url: str | None = None,
    say: Say = _quiet, studio: Studio | None = None,
) -> RatingsPushReport:
    """Create (once) the ratings project and a task per accepted moment; idempotent (tasks found by
    ``data.moment_id``)."""
    dataset = Dataset(dataset_dir).require()
    if overlap < 1:
        raise UsageError("--overlap must be at least 1")
    if media_url is None and not conn.local:
        raise UsageError(f"{conn.url} is not this dataset's own server, so it cannot read the flight videos here",
                         hint="pass --media-url PREFIX (where the server finds annotation_media/flights/...)")
    moments = ratable_moments(dataset)
    if not moments:
        raise DatasetError(f"{dataset.root} has no accepted moments to rate",
                           hint="run `dvtr-data annotate pull --task moments` after moments were annotated")
    flights = {f["flight_id"]: f for f in dataset.read_table("flights").to_pylist()}
    studio = studio or Studio(conn)
    studio.check()
    with dataset.writing("annotate"):
        state = AnnotationState(dataset)
        project = _find_project(studio, dataset, state)
        created = project is None
        settings = dict(label_config=render_ratings_config(legacy_saliency=has_legacy_saliency(project)),
                        maximum_annotations=overlap,
                        overlap_cohort_percentage=100, show_skip_button=True, show_collab_predictions=True)
        project = upsert_project(
            studio, dataset, project, kind="ratings", marker=PROJECT_MARKER, settings=settings,
            summary="Ratings: rate each 2-s stretch of another annotator's query windows 0-4.")
        pid = int(project["id"])
        report = RatingsPushReport(conn.url, pid, created, moments=len(moments))
        log = RunLog(dataset.logs_dir, "annotate-push-ratings")
        try:
            if media_url is None:
                place_flight_videos(studio, dataset, pid, [flights[fid] for fid in sorted({m["flight_id"] for m in moments})],
                                    MEDIA_DIR, media_name, report)
            prefix = media_url if media_url is not None else LOCAL_FILES_PREFIX
            existing = {str((t.get("data") or {}).get("moment_id")) for t in studio.tasks(pid)}
            todo = []
            for m in moments:
                if m["moment_id"] in existing:
                    report.tasks_existing += 1
                    continue
                f = flights[m["flight_id"]]
                fps = round(float(f.get("fps") or 25.0), 5)
                windows = [[float(a), float(b)] for a, b in m["windows"]]
                todo.append({
                    "data": {
                        "video": prefix + quote(media_name(f), safe="/"), "fps": fps, "moment_id": m["moment_id"],
                        "flight_id": m["flight_id"], "query": m["query"], "windows": windows,
                        "windows_text": windows_text(windows), "author": m["annotator"],
                        "segment_start_s": float(m["segment_start_s"]), "segment_end_s": float(m["segment_end_s"]),
                        "header": segment_header(f["file_name"], float(m["segment_start_s"]),
                                                 float(m["segment_end_s"]), float(f["duration_s"])),
                    },
                    "predictions": [windows_prediction(windows, fps)],
                })
            report.tasks_created += import_tasks(studio, pid, todo, "rating", say)
            if todo and (studio.project(pid) or {}).get("model_version") != PREFILL_VERSION:
                # the windows' predictions are the ones the page shows (they exist now, so the server accepts it)
                studio.call("updating the ratings project", studio.sdk.projects.update, pid,
                            model_version=PREFILL_VERSION)
            state.server(conn.state_key)[STATE_KEY] = {"project_id": pid, "overlap": overlap}
            state.save()
            log.write("summary", project_id=pid, moments=len(moments), created=report.tasks_created,
                      existing=report.tasks_existing, missing_videos=len(report.missing_videos))
        finally:
            log.close()
    return report


# ----------------------------------------------------------------------------------------------------------------
# pull
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class RatingsPullReport:
    url: str
    project_id: int
    annotations: int = 0
    rows_new: int = 0
    rows_updated: int = 0
    superseded: int = 0  # earlier annotations of a rater who submitted the same task again
    kept_deleted: int = 0
    accepted: int = 0
    flags: dict[str, int] = field(default_factory=dict)


def rating_row(task: dict[str, Any], annotation: dict[str, Any], *, project_id: int, emails: dict[int, str],
               author: str | None) -> dict[str, Any]:
    """The ``moment_ratings`` row of one exported rating annotation (windows from the task, never the result)."""
    data = task["data"]
    fps = float(data.get("fps") or 25.0)
    seg_start, seg_end = float(data["segment_start_s"]), float(data["segment_end_s"])
    painted = []
    for s, e, label in _ranges(annotation.get("result") or []):
        if label in SALIENCY_LABELS:
            a, b = frames_to_seconds(s, e, fps)
            painted.append((a, b, SALIENCY_LABELS[label]))
    windows = [[float(a), float(b)] for a, b in data["windows"]]
    cells, scores = cell_scores(windows, painted, seg_start, seg_end)
    rater = annotator_of(annotation, emails) or "unknown"
    cancelled = bool(annotation.get("was_cancelled"))
    flags = []
    if author is not None and rater == author:
        flags.append("own_query")
    if all(s is None for s in scores):
        flags.append("no_rating")
    elif any(s is None for s in scores):
        flags.append("unrated_cells")
    return MomentRatingRow(
        moment_id=str(data["moment_id"]), rater=rater, source="simulated" if is_simulated(rater) else "human",
        status="cancelled" if cancelled else "submitted",
        accepted=not cancelled and not ({"own_query", "no_rating"} & set(flags)),
        saliency_clip_ids=cells, saliency_scores=scores, flags=flags, ls_project_id=project_id,
        ls_task_id=int(task["id"]), ls_annotation_id=int(annotation["id"]),
        lead_time_s=float(annotation["lead_time"]) if annotation.get("lead_time") is not None else None,
        created_at=_time(annotation.get("created_at")), updated_at=_time(annotation.get("updated_at")),
    ).as_dict()


def pull_ratings(dataset_dir: Path, conn: Connection, *, say: Say = _quiet, studio: Studio | None = None) -> RatingsPullReport:
    """Export the ratings project into ``moment_ratings``: this project's rows are replaced, rows whose annotation
    was deleted in Label Studio are kept, flagged and no longer accepted, other projects' rows are kept."""
    dataset = Dataset(dataset_dir).require()
    studio = studio or Studio(conn)
    studio.check()
    with dataset.writing("annotate"):
        pid = int(_require_project(studio, dataset, conn)["id"])
        report = RatingsPullReport(conn.url, pid)
        emails = studio.user_emails()
        authors = {m["moment_id"]: m["annotator"] for m in dataset.read_table("moments").to_pylist()}
        fresh: dict[tuple[str, str], dict[str, Any]] = {}
        for task in studio.export(pid):
            data = task.get("data") or {}
            if data.get("moment_id") not in authors or "windows" not in data:
                continue
            for annotation in sorted(task.get("annotations") or [], key=lambda a: int(a["id"])):
                report.annotations += 1
                row = rating_row(task, annotation, project_id=pid, emails=emails, author=authors[data["moment_id"]])
                key = (row["moment_id"], row["rater"])
                report.superseded += int(key in fresh)
                fresh[key] = row  # annotations in id order: a rater's latest wins
        merged = merge_pulled(dataset.read_table(TABLE).to_pylist(), fresh, lambda r: (r["moment_id"], r["rater"]),
                              pid, report)
        dataset.write_table(TABLE, merged)
        say(f"ratings: {report.rows_new} new, {report.rows_updated} updated, {report.kept_deleted} kept as deleted")
    return report


def accepted_ratings(dataset: Dataset) -> dict[str, list[dict[str, Any]]]:
    """moment id -> its accepted ratings in a stable order (Label Studio annotation id, then rater)."""
    out: dict[str, list[dict[str, Any]]] = {}
    if not dataset.has_table(TABLE):
        return out
    for row in dataset.read_table(TABLE).to_pylist():
        if row["accepted"]:
            out.setdefault(row["moment_id"], []).append(row)
    for rows in out.values():
        rows.sort(key=lambda r: (r["ls_annotation_id"] if r["ls_annotation_id"] is not None else -1, r["rater"]))
    return out


# ----------------------------------------------------------------------------------------------------------------
# simulate
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class RatingsSimulateReport:
    url: str
    project_id: int
    tasks_with_truth: int = 0
    annotations_created: int = 0
    annotations_existing: int = 0


def rater_noise(seed: int, rater: str, moment_id: str, n: int) -> list[int]:
    """A simulated rater's offsets from the truth rating for the ``n`` cells of a moment: ``NOISE`` drawn by
    ``random.Random(f"{seed}|{rater}|{moment_id}")``, so each rater errs differently and reruns agree."""
    rng = random.Random(f"{seed}|{rater}|{moment_id}")
    return [rng.choice(NOISE) for _ in range(n)]


def simulated_scores(truth_scores: list[int], seed: int, rater: str, moment_id: str) -> list[int]:
    noise = rater_noise(seed, rater, moment_id, len(truth_scores))
    return [min(4, max(0, s + d)) for s, d in zip(truth_scores, noise, strict=True)]


def _truth_cells(truth: dict[str, Any], data: dict[str, Any]) -> dict[int, int] | None:
    """The truth rating of each relevant cell of the task's moment (the truth maneuver with its query), or None."""
    seg_start, seg_end = float(data["segment_start_s"]), float(data["segment_end_s"])
    for m in truth_moments(truth, seg_start, seg_end):
        if m["query"] == data["query"]:
            return dict(zip(m["cells"], m["scores"], strict=True))
    return None


def simulate_ratings(
    dataset_dir: Path, conn: Connection, *, overlap: int | None = None, seed: int = 0, say: Say = _quiet,
    studio: Studio | None = None,
) -> RatingsSimulateReport:
    """Answer every rating task whose moment a generated flight's truth knows: the first ``overlap`` (default: the
    push's) simulated annotators who did not write the query each paint truth + `rater_noise`."""
    dataset = Dataset(dataset_dir).require()
    flights = {f["flight_id"]: f for f in dataset.read_table("flights").to_pylist()}
    truths = {fid: load_truth(Path(f["source_path"])) for fid, f in flights.items() if f.get("source_path")}
    truths = {k: v for k, v in truths.items() if v is not None}
    if not truths:
        raise DatasetError(f"{dataset.root} has no generated flights (no .truth.json beside its videos)",
                           hint="`annotate simulate` stands in for annotators only in the demo and tests")
    studio = studio or Studio(conn)
    studio.check()
    with dataset.writing("annotate"):
        state = AnnotationState(dataset)
        project = _require_project(studio, dataset, conn)
        pid = int(project["id"])
        if overlap is None:
            overlap = int(state.server(conn.state_key).get(STATE_KEY, {}).get("overlap") or DEFAULT_OVERLAP)
        report = RatingsSimulateReport(conn.url, pid)
        plans = []
        for task in studio.tasks(pid, with_annotations=True):
            data = task.get("data") or {}
            truth = truths.get(data.get("flight_id"))
            cells = _truth_cells(truth, data) if truth is not None else None
            if cells is not None:
                plans.append((task, cells))
        report.tasks_with_truth = len(plans)
        users = ensure_simulated_users(studio, overlap + 1)  # one more than needed: a task skips its author
        emails = studio.user_emails()
        rng = random.Random(seed)
        for task, truth_cells in plans:
            data = task["data"]
            done_by = {completed_by_id(a) for a in task.get("annotations") or []}
            raters = [u for u in users if emails.get(u) != data.get("author")][:overlap]
            fps, seg_start = float(data["fps"]), float(data["segment_start_s"])
            names = {v: k for k, v in SALIENCY_LABELS.items()}
            for user in raters:
                if user in done_by:
                    report.annotations_existing += 1
                    continue
                ks = sorted(truth_cells)
                scores = simulated_scores([truth_cells[k] for k in ks], seed, emails[user], str(data["moment_id"]))
                result = []
                for k, score in zip(ks, scores, strict=True):
                    a, b = seconds_to_frames(seg_start + 2 * k, seg_start + 2 * (k + 1), fps)
                    result.append({"from_name": WINDOWS, "to_name": VIDEO, "type": "timelinelabels",
                                   "value": {"ranges": [{"start": a, "end": b}], "timelinelabels": [names[score]]}})
                studio.once("submitting a simulated rating", studio.sdk.annotations.create, int(task["id"]),
                            result=result, completed_by=user, lead_time=round(rng.uniform(20.0, 90.0), 1))
                report.annotations_created += 1
        say(f"simulated ratings: {report.annotations_created} submitted, {report.annotations_existing} already there")
    return report
