"""Moment annotation in Label Studio: queries, their time windows and 2-s saliency ratings on untrimmed flights.

QVHighlights-style moment retrieval needs what clip captions cannot give: a query written for a stretch of an
untrimmed video, every window of that video the query describes, and a 0-4 rating of each 2-second clip inside
those windows. One Label Studio task per *segment*: a whole flight when it lasts at most 150 s, else equal
spans of at most 150 s starting on the 2-s grid (QVHighlights' videos are 150 s cuts of longer videos). A segment
is a span of its flight, not a new media file: the task plays the whole flight and its header names the span;
windows marked outside the span are clipped to it.

Label Studio can only play files under its document root (the dataset folder), so `push_moments` places each
flight's video at ``annotation_media/flights/<flight_id><ext>`` (a hard link where it can, else a copy). That
folder is owned by `annotate push --task moments`: it is safe to delete and re-made by the next push.

The labeling config (``moments_config.xml.j2``, rendered by :func:`render_moments_config`)::

    TextArea       query     one query per annotation
    TimelineLabels windows   label "relevant": every window the query describes; and labels "4 very good" ...
                             "0 not relevant": the annotator paints the windows; each relevant 2-s cell takes
                             the rating that covers most of it (null if none)

One TimelineLabels tag holds both, because Label Studio 1.23 draws on a video's timeline only with the *first*
TimelineLabels tag naming the video (Video.js ``timelineControl``): with a second tag for the ratings, as this
config first had, a rating could be picked in the browser but never drawn (found by
tests/test_annotate_browser_moments.py). Pull still reads ratings under the old ``saliency`` name.

Timeline ranges are frame numbers of the flight: frame ``f`` (1-based) starts at ``(f - 1) / fps`` and a range
``[s, e]`` covers ``[(s - 1) / fps, e / fps]`` seconds. `pull_moments` writes one ``moments`` row per annotation
(``moment_id = ls-p<project>-a<annotation>``); one annotation is one rater, its author. The rating round
(`annotation.ratings`, ``--task ratings``) adds other raters in ``moment_ratings``; the export takes up to three
distinct raters per query and fills (and marks) only when fewer exist. `simulate_moments` answers the tasks of generated flights from their
truth (maneuver segments and the object classes visible per frame) as simulated annotators.
"""

from __future__ import annotations

import math
import random
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from dvtr_data.annotation.client import AnnotationState, Connection, Studio
from dvtr_data.annotation.labeling import _clock, _environment
from dvtr_data.annotation.projects import (
    find_project,
    import_tasks,
    merge_pulled,
    place_flight_videos,
    upsert_project,
)
from dvtr_data.annotation.pull import SIMULATED_DOMAIN, _time, annotator_of, completed_by_id, is_simulated
from dvtr_data.annotation.push import LOCAL_FILES_PREFIX
from dvtr_data.annotation.simulate import ensure_simulated_users, simulated_email
from dvtr_data.dataset import Dataset
from dvtr_data.errors import DatasetError, ServiceError, UsageError
from dvtr_data.runlog import RunLog
from dvtr_data.synth.simulated import load_truth
from dvtr_data.text import strip_form_newline

CELL_S = 2.0
MAX_SEGMENT_S = 150.0
VIDEO = "video"
QUERY = "query"
WINDOWS = "windows"
SALIENCY = "saliency"  # the ratings' own TimelineLabels tag in configs before the single-tag fix: still read
WINDOW_LABEL = "relevant"
SALIENCY_LABELS: dict[str, int] = {"4 very good": 4, "3 good": 3, "2 fair": 2, "1 poor": 1, "0 not relevant": 0}
SALIENCY_COLOURS = ("#2ca02c", "#98df8a", "#ffbb78", "#ff7f0e", "#d62728")  # "4 very good" ... "0 not relevant"
MEDIA_DIR = "annotation_media/flights"
PROJECT_MARKER = "dvtr-moments:"
STATE_KEY = "moments"  # the moments project's entry inside the server's state (the captions project is beside it)
BLOCKING = frozenset({"no_window", "empty_query"})

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# ----------------------------------------------------------------------------------------------------------------
# segments and the 2-s grid
# ----------------------------------------------------------------------------------------------------------------
def plan_segments(duration: float, max_s: float = MAX_SEGMENT_S) -> list[tuple[float, float]]:
    """Spans of at most ``max_s`` covering ``[0, duration]``: equal lengths rounded up to the 2-s grid, so every
    segment starts on a cell boundary of its flight and a segment's cells are the flight's cells."""
    if duration <= 0:
        return []
    n = math.ceil(duration / max_s - 1e-9)
    length = CELL_S * math.ceil(duration / n / CELL_S - 1e-9)
    out = []
    start = 0.0
    while start < duration - 1e-6:
        out.append((start, round(min(duration, start + length), 6)))
        start += length
    return out


def segment_vid(flight_id: str, start_s: float) -> str:
    """A segment's video id in exports: stable, clean, and unique per flight (segments start on the 2-s grid)."""
    return f"{flight_id}_s{int(round(start_s)):05d}"


def n_cells(duration: float) -> int:
    """Whole 2-s cells of a video: the official evaluator sizes its score array ``int(duration / 2)``, so a last
    partial cell has no id (giving it one makes `mk_gt_scores` fail with an IndexError)."""
    return max(1, int(duration / CELL_S + 1e-9))


def relevant_cells(windows: list[list[float]], duration: float) -> list[int]:
    """2-s cells (of a video starting at 0) at least half inside a window; a window too short to cover half a
    cell gets the cell holding its middle. Only whole cells (see `n_cells`)."""
    total = n_cells(duration)
    cells: set[int] = set()
    for start, end in windows:
        hit = False
        for k in range(max(0, int(start // CELL_S)), min(total, math.ceil(end / CELL_S - 1e-9))):
            overlap = min(end, (k + 1) * CELL_S) - max(start, k * CELL_S)
            if overlap >= CELL_S / 2 - 1e-9:
                cells.add(k)
                hit = True
        if not hit:
            cells.add(min(total - 1, int(((start + end) / 2) // CELL_S)))
    return sorted(cells)


def frames_to_seconds(start_frame: float, end_frame: float, fps: float) -> tuple[float, float]:
    return (max(0.0, (float(start_frame) - 1) / fps), float(end_frame) / fps)


def seconds_to_frames(start_s: float, end_s: float, fps: float) -> tuple[int, int]:
    return (int(round(start_s * fps)) + 1, max(int(round(start_s * fps)) + 1, int(round(end_s * fps))))


# ----------------------------------------------------------------------------------------------------------------
# labeling config
# ----------------------------------------------------------------------------------------------------------------
def render_moments_config(video_height: int = 260, *, legacy_saliency: bool = False) -> str:
    """The moments config; ``video_height`` 260 leaves the query box, the labels and the whole timeline on a
    1600x1000 screen without scrolling (measured in Chromium). ``legacy_saliency`` keeps a hidden ``saliency``
    tag for a project made with the earlier two-tag config, whose annotations use it (see `has_legacy_saliency`)."""
    text = _environment().get_template("moments_config.xml.j2").render(
        legacy_saliency=legacy_saliency, legacy_name=SALIENCY,
        video_name=VIDEO, query_name=QUERY, windows_name=WINDOWS,
        window_label=WINDOW_LABEL, saliency_labels=list(zip(SALIENCY_LABELS, SALIENCY_COLOURS, strict=True)),
        video_height=video_height,
        timeline_height=120,
        placeholder="e.g. the drone circles a white farmhouse beside a field",
    )
    ET.fromstring(text)
    return text.strip() + "\n"


def has_legacy_saliency(project: dict[str, Any] | None) -> bool:
    """Whether a project's config has the separate ``saliency`` tag of the earlier two-tag config: Label Studio
    refuses a new config without a tag that stored annotations use (HTTP 400, seen with 1.23.2)."""
    return project is not None and f'name="{SALIENCY}"' in str(project.get("label_config") or "")


def segment_header(flight_name: str, start_s: float, end_s: float, duration_s: float) -> str:
    whole = start_s <= 0 and end_s >= duration_s - 1e-6
    span = "the whole flight" if whole else f"only {_clock(start_s)}-{_clock(end_s)} of {_clock(duration_s)}"
    return f"Flight {flight_name}  ·  annotate {span}"


# ----------------------------------------------------------------------------------------------------------------
# push
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class MomentsPushReport:
    url: str
    project_id: int
    project_created: bool
    segments: int = 0
    tasks_existing: int = 0
    tasks_created: int = 0
    media_placed: int = 0
    missing_videos: list[str] = field(default_factory=list)


def _find_project(studio: Studio, dataset: Dataset, state: AnnotationState) -> dict[str, Any] | None:
    return find_project(studio, dataset, state, STATE_KEY, PROJECT_MARKER)


def moment_tasks(dataset: Dataset, flight_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """One task per segment of every ingested flight (or of ``flight_ids``), in flight order."""
    flights = [f for f in dataset.read_table("flights").to_pylist() if f["status"] == "ok" and f.get("duration_s")]
    if flight_ids:
        unknown = sorted(set(flight_ids) - {f["flight_id"] for f in flights})
        if unknown:
            raise UsageError(f"{len(unknown)} flight id(s) not in the dataset, e.g. {unknown[0]!r}")
        flights = [f for f in flights if f["flight_id"] in set(flight_ids)]
    out = []
    for f in sorted(flights, key=lambda f: f["flight_id"]):
        duration = float(f["duration_s"])
        for start, end in plan_segments(duration):
            out.append({"flight": f, "start_s": start, "end_s": end, "vid": segment_vid(f["flight_id"], start)})
    return out


def media_name(flight: dict[str, Any]) -> str:
    suffix = Path(str(flight.get("source_path") or flight["file_name"])).suffix.lower() or ".mp4"
    return f"{MEDIA_DIR}/{flight['flight_id']}{suffix}"


def push_moments(
    dataset_dir: Path, conn: Connection, *, overlap: int = 1, flight_ids: list[str] | None = None,
    media_url: str | None = None, say: Say = _quiet, studio: Studio | None = None,
) -> MomentsPushReport:
    """Create (once) the dataset's moments project and a task per flight segment; idempotent (tasks are found by
    ``data.segment``)."""
    dataset = Dataset(dataset_dir).require()
    if overlap < 1:
        raise UsageError("--overlap must be at least 1")
    if media_url is None and not conn.local:
        raise UsageError(f"{conn.url} is not this dataset's own server, so it cannot read the flight videos here",
                         hint="pass --media-url PREFIX (where the server finds annotation_media/flights/...)")
    tasks = moment_tasks(dataset, flight_ids)
    studio = studio or Studio(conn)
    studio.check()
    with dataset.writing("annotate"):
        state = AnnotationState(dataset)
        project = _find_project(studio, dataset, state)
        config = render_moments_config(legacy_saliency=has_legacy_saliency(project))
        created = project is None
        settings = dict(label_config=config, maximum_annotations=overlap, overlap_cohort_percentage=100,
                        show_skip_button=True)
        project = upsert_project(studio, dataset, project, kind="moments", marker=PROJECT_MARKER, settings=settings,
                                 summary="Moments: write a query, mark its windows, rate each 2-s stretch.")
        pid = int(project["id"])
        report = MomentsPushReport(conn.url, pid, created, segments=len(tasks))
        log = RunLog(dataset.logs_dir, "annotate-push-moments")
        try:
            if media_url is None:
                place_flight_videos(studio, dataset, pid, {t["flight"]["flight_id"]: t["flight"] for t in tasks}.values(),
                                    MEDIA_DIR, media_name, report)
            prefix = media_url if media_url is not None else LOCAL_FILES_PREFIX
            existing = {str((t.get("data") or {}).get("segment")) for t in studio.tasks(pid)}
            todo = []
            for t in tasks:
                if t["vid"] in existing:
                    report.tasks_existing += 1
                    continue
                f = t["flight"]
                todo.append({"data": {
                    "video": prefix + quote(media_name(f), safe="/"), "fps": round(float(f.get("fps") or 25.0), 5),
                    "segment": t["vid"], "flight_id": f["flight_id"], "flight_name": f["file_name"],
                    "segment_start_s": t["start_s"], "segment_end_s": t["end_s"],
                    "duration_s": float(f["duration_s"]),
                    "header": segment_header(f["file_name"], t["start_s"], t["end_s"], float(f["duration_s"])),
                }})
            report.tasks_created += import_tasks(studio, pid, todo, "moment", say)
            srv = state.server(conn.state_key)
            srv[STATE_KEY] = {"project_id": pid, "overlap": overlap}
            state.save()
            log.write("summary", project_id=pid, segments=len(tasks), created=report.tasks_created,
                      existing=report.tasks_existing, missing_videos=len(report.missing_videos))
        finally:
            log.close()
    return report


# ----------------------------------------------------------------------------------------------------------------
# pull
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class MomentsPullReport:
    url: str
    project_id: int
    annotations: int = 0
    rows_new: int = 0
    rows_updated: int = 0
    kept_deleted: int = 0
    accepted: int = 0
    flags: dict[str, int] = field(default_factory=dict)


def _ranges(result: list[dict[str, Any]], names: tuple[str, ...] = (WINDOWS, SALIENCY)) -> list[tuple[float, float, str]]:
    """(start frame, end frame, label) of every timeline range under ``names``, once per label it carries: the
    label says what a range is (a window or a rating), whichever tag it was drawn with."""
    out: list[tuple[float, float, str]] = []
    for item in result or []:
        if not isinstance(item, dict) or item.get("from_name") not in names:
            continue
        value = item.get("value") or {}
        labels = value.get("timelinelabels") or [""]
        for r in value.get("ranges") or []:
            out.extend((float(r["start"]), float(r["end"]), str(label)) for label in labels)
    return out


def _merge_windows(windows: list[list[float]]) -> list[list[float]]:
    out: list[list[float]] = []
    for s, e in sorted(windows):
        if out and s <= out[-1][1] + 1e-9:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return out


def cell_scores(
    windows: list[list[float]], painted: list[tuple[float, float, int]], seg_start: float, seg_end: float,
) -> tuple[list[int], list[int | None]]:
    """Relevant cells of the segment and, per cell, the painted rating covering most of it (None: unrated)."""
    local = [[s - seg_start, e - seg_start] for s, e in windows]
    cells = relevant_cells(local, seg_end - seg_start)
    scores: list[int | None] = []
    for k in cells:
        a, b = seg_start + k * CELL_S, seg_start + (k + 1) * CELL_S
        best, best_cover = None, 0.0
        for s, e, score in painted:
            cover = min(b, e) - max(a, s)
            if cover > best_cover + 1e-9:
                best, best_cover = score, cover
        scores.append(best)
    return cells, scores


def moment_row(task: dict[str, Any], annotation: dict[str, Any], *, project_id: int, emails: dict[int, str]) -> dict[str, Any]:
    """The ``moments`` row of one exported annotation."""
    data = task["data"]
    fps = float(data.get("fps") or 25.0)
    seg_start, seg_end = float(data["segment_start_s"]), float(data["segment_end_s"])
    result = annotation.get("result") or []
    query = " ".join(
        strip_form_newline(str(t))
        for item in result if isinstance(item, dict) and item.get("from_name") == QUERY
        for t in (item.get("value") or {}).get("text") or []
    ).strip()
    windows = []
    for s, e, label in _ranges(result):
        if label != WINDOW_LABEL:
            continue
        a, b = frames_to_seconds(s, e, fps)
        a, b = max(a, seg_start), min(b, seg_end)
        if b > a:
            windows.append([round(a, 3), round(b, 3)])
    windows = _merge_windows(windows)
    painted = []
    for s, e, label in _ranges(result):
        if label in SALIENCY_LABELS:
            a, b = frames_to_seconds(s, e, fps)
            painted.append((a, b, SALIENCY_LABELS[label]))
    cells, scores = cell_scores(windows, painted, seg_start, seg_end) if windows else ([], [])
    annotator = annotator_of(annotation, emails)
    cancelled = bool(annotation.get("was_cancelled"))
    flags = []
    if not query:
        flags.append("empty_query")
    if not windows:
        flags.append("no_window")
    if any(s is None for s in scores):
        flags.append("unrated_cells")
    return {
        "moment_id": f"ls-p{project_id}-a{int(annotation['id'])}", "query": query, "flight_id": data["flight_id"],
        "segment_start_s": seg_start, "segment_end_s": seg_end, "windows": windows,
        "saliency_clip_ids": cells, "saliency_scores": [[s] for s in scores], "raters": [annotator or "unknown"],
        "annotator": annotator, "source": "simulated" if is_simulated(annotator) else "human",
        "status": "cancelled" if cancelled else "submitted", "flags": flags,
        "accepted": not cancelled and not (set(flags) & BLOCKING), "caption_id": None, "clip_id": None,
        "ls_project_id": project_id, "ls_task_id": int(task["id"]), "ls_annotation_id": int(annotation["id"]),
        "lead_time_s": float(annotation["lead_time"]) if annotation.get("lead_time") is not None else None,
        "created_at": _time(annotation.get("created_at")), "updated_at": _time(annotation.get("updated_at")),
    }


def pull_moments(dataset_dir: Path, conn: Connection, *, say: Say = _quiet, studio: Studio | None = None) -> MomentsPullReport:
    """Export the moments project into the ``moments`` table (owner annotate): this project's rows are replaced,
    rows whose annotation was deleted in Label Studio are kept, flagged and no longer accepted, other rows (v1, other projects) kept."""
    dataset = Dataset(dataset_dir).require()
    studio = studio or Studio(conn)
    studio.check()
    with dataset.writing("annotate"):
        state = AnnotationState(dataset)
        project = _find_project(studio, dataset, state)
        if project is None:
            raise ServiceError(f"{conn.url} has no moments project for this dataset yet",
                               hint=f"run `dvtr-data annotate push --task moments --dataset {dataset.root}` first")
        pid = int(project["id"])
        report = MomentsPullReport(conn.url, pid)
        emails = studio.user_emails()
        flights = set(dataset.read_table("flights").column("flight_id").to_pylist())
        fresh: dict[str, dict[str, Any]] = {}
        for task in studio.export(pid):
            data = task.get("data") or {}
            if data.get("flight_id") not in flights or "segment_start_s" not in data:
                continue
            for annotation in task.get("annotations") or []:
                report.annotations += 1
                row = moment_row(task, annotation, project_id=pid, emails=emails)
                fresh[row["moment_id"]] = row
        merged = merge_pulled(dataset.read_table("moments").to_pylist(), fresh, lambda r: r["moment_id"], pid, report)
        dataset.write_table("moments", merged)
        say(f"moments: {report.rows_new} new, {report.rows_updated} updated, {report.kept_deleted} kept as deleted")
    return report


# ----------------------------------------------------------------------------------------------------------------
# simulate
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class MomentsSimulateReport:
    url: str
    project_id: int
    tasks_with_truth: int = 0
    annotations_created: int = 0
    annotations_existing: int = 0


def _visible_share(truth: dict[str, Any], classes: set[str], a_frame: int, b_frame: int) -> float:
    """Share of frames in [a, b) where any of ``classes`` is visible (truth ``visible`` runs)."""
    if b_frame <= a_frame:
        return 0.0
    hit = 0
    for run in truth.get("visible") or []:
        lo, hi = max(a_frame, run["start_frame"]), min(b_frame, run["end_frame"])
        if hi > lo and classes & set(run["classes"]):
            hit += hi - lo
    return hit / (b_frame - a_frame)


def truth_moments(truth: dict[str, Any], seg_start: float, seg_end: float, *, min_window_s: float = CELL_S) -> list[dict[str, Any]]:
    """Queries a simulated annotator writes for a segment: one per maneuver segment of the truth inside it.

    Query: the maneuver segment's first template caption; window: its span, clipped to the segment; rating of
    each relevant 2-s cell: ``1 + round(3 * share of its frames showing an object class the segment counted)``
    (3 when it counted none), so ratings follow what is really in view.
    """
    fps = float(truth["fps"])
    out = []
    for seg in truth.get("segments") or []:
        a, b = max(seg_start, seg["start_frame"] / fps), min(seg_end, seg["end_frame"] / fps)
        if b - a < min_window_s or not seg.get("captions"):
            continue
        classes = set(seg.get("objects") or {})
        cells = relevant_cells([[a - seg_start, b - seg_start]], seg_end - seg_start)
        scores = []
        for k in cells:
            c0, c1 = seg_start + k * CELL_S, seg_start + (k + 1) * CELL_S
            share = _visible_share(truth, classes, int(round(c0 * fps)), int(round(c1 * fps))) if classes else 2 / 3
            scores.append(1 + round(3 * share))
        out.append({"query": seg["captions"][0], "window": [round(a, 3), round(b, 3)], "cells": cells,
                    "scores": scores})
    return out


def moment_result(m: dict[str, Any], seg_start: float, fps: float) -> list[dict[str, Any]]:
    """A Label Studio annotation result for one truth moment (query, window, painted ratings)."""
    s, e = seconds_to_frames(m["window"][0], m["window"][1], fps)
    result: list[dict[str, Any]] = [
        {"from_name": QUERY, "to_name": VIDEO, "type": "textarea", "value": {"text": [m["query"]]}},
        {"from_name": WINDOWS, "to_name": VIDEO, "type": "timelinelabels",
         "value": {"ranges": [{"start": s, "end": e}], "timelinelabels": [WINDOW_LABEL]}},
    ]
    names = {v: k for k, v in SALIENCY_LABELS.items()}
    for k, score in zip(m["cells"], m["scores"], strict=True):
        a, b = seconds_to_frames(seg_start + k * CELL_S, seg_start + (k + 1) * CELL_S, fps)
        result.append({"from_name": WINDOWS, "to_name": VIDEO, "type": "timelinelabels",
                       "value": {"ranges": [{"start": a, "end": b}], "timelinelabels": [names[score]]}})
    return result


def simulate_moments(
    dataset_dir: Path, conn: Connection, *, seed: int = 0, say: Say = _quiet, studio: Studio | None = None,
) -> MomentsSimulateReport:
    """Answer every moments task of a generated flight from its truth: simulated annotator n writes the n-th
    maneuver's query (re-runs submit only what is missing)."""
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
        project = _find_project(studio, dataset, state)
        if project is None:
            raise ServiceError(f"{conn.url} has no moments project for this dataset yet",
                               hint="run `dvtr-data annotate push --task moments` first")
        pid = int(project["id"])
        report = MomentsSimulateReport(conn.url, pid)
        rng = random.Random(seed)
        plans = []
        for task in studio.tasks(pid, with_annotations=True):
            data = task.get("data") or {}
            truth = truths.get(data.get("flight_id"))
            if truth is None:
                continue
            report.tasks_with_truth += 1
            plans.append((task, truth_moments(truth, float(data["segment_start_s"]), float(data["segment_end_s"]))))
        users = ensure_simulated_users(studio, max((len(m) for _, m in plans), default=0))
        for task, moments in plans:
            data = task["data"]
            done_by = {completed_by_id(a) for a in task.get("annotations") or []}
            for n, m in enumerate(moments):
                if users[n] in done_by:
                    report.annotations_existing += 1
                    continue
                studio.once("submitting a simulated moment", studio.sdk.annotations.create, int(task["id"]),
                            result=moment_result(m, float(data["segment_start_s"]), float(data["fps"])),
                            completed_by=users[n], lead_time=round(rng.uniform(40.0, 150.0), 1))
                report.annotations_created += 1
        say(f"simulated moments: {report.annotations_created} submitted, {report.annotations_existing} already there"
            f" (annotators {simulated_email(1)} ...; domain {SIMULATED_DOMAIN})")
    return report

