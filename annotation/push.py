"""`annotate push`: one Label Studio task per clip, with the pre-caption drafts listed in the task.

Drafts are never pre-filled into a caption box. Label Studio's page turns a task's prediction into the annotator's
starting annotation whatever the project's "use predictions to prelabel" setting says (seen on 1.23.2), and a box
holding a draft reads as finished text: hurried annotators submitted draft 1. So drafts live in the task data (a
numbered list, and per draft the text a box starts from when its "draft i" choice is clicked, see
label_config.xml.j2) and push makes no predictions; a re-push removes caption predictions that earlier versions of
push made. Noise drafts (random weights) are listed but offered to no box.

Idempotent by construction: the server is asked which clips already have a task (``data.clip_id``), so a re-run
imports only new clips and never duplicates a task; tasks whose drafts changed get their drafts rewritten. Tasks go
in batches, each batch an atomic import: a server that dies mid-push loses at most the batch in flight, and the
re-run finds the rest.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow.parquet as pq

from dvtr_data.annotation import labeling
from dvtr_data.annotation.client import AnnotationState, Connection, Studio, batched, plain
from dvtr_data.dataset import Dataset
from dvtr_data.errors import DatasetError, PartialFailure, ServiceError, UsageError
from dvtr_data.runlog import RunLog
from dvtr_data.splits.neardup import is_random_model

LOCAL_FILES_PREFIX = "/data/local-files/?d="
PROJECT_MARKER = "dvtr-dataset:"
BATCH = 100
MAX_OVERLAP = 100
"""Annotators per task at most: more is a typo (Label Studio would wait for a hundred billion annotations)."""

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class Drafts:
    """Pre-caption drafts per clip (best first) and the model version they are shown under."""

    model_version: str | None
    by_clip: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    random_weights: bool = False
    """The drafts come from a model with random weights (``<config>/random-s<seed>``, as `split` decides for
    embeddings): noise. They are listed under a plain note and never fill a caption box."""


@dataclass
class PushReport:
    url: str
    project_id: int
    project_created: bool
    clips_selected: int = 0
    tasks_existing: int = 0
    tasks_created: int = 0
    predictions_removed: int = 0  # caption predictions of earlier pushes (they pre-filled the box): removed
    tasks_refreshed: int = 0
    missing_without_task: int = 0
    model_version: str | None = None
    random_drafts: bool = False
    missing_files: list[str] = field(default_factory=list)
    duplicate_tasks: dict[str, list[int]] = field(default_factory=dict)
    log_path: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.missing_files


def load_drafts(dataset: Dataset, per_clip: int | None = None) -> Drafts:
    """Read ``precaptions.parquet`` when the precaption stage has run; no drafts otherwise (push still works)."""
    path = dataset.table_path("precaptions")
    if not path.is_file():
        return Drafts(None)
    try:
        import dvtr_data.schemas.precaption_tables  # noqa: F401  (registers the table's schema)

        table = dataset.read_table("precaptions")
    except ImportError:
        table = pq.read_table(path, columns=["clip_id", "rank", "text", "score", "model", "bank"])
    rows = table.select(["clip_id", "rank", "text", "score", "model", "bank"]).to_pylist()
    versions = sorted({_model_version(r["model"], r["bank"]) for r in rows})
    if len(versions) > 1:
        raise DatasetError(
            f"{path} holds drafts of {len(versions)} model versions ({', '.join(versions[:3])})",
            hint="re-run `dvtr-data precaption` so the table holds one model's drafts",
        )
    by_clip: dict[str, list[tuple[int, str, float]]] = {}
    for r in rows:
        by_clip.setdefault(r["clip_id"], []).append((int(r["rank"]), str(r["text"]), float(r["score"])))
    out: dict[str, list[tuple[str, float]]] = {}
    for clip_id, items in by_clip.items():
        items.sort()
        out[clip_id] = [(text, score) for _, text, score in items[: per_clip or None]]
    random_weights = bool(rows) and all(is_random_model(str(r["model"])) for r in rows)
    return Drafts(versions[0] if versions else None, out, random_weights)


def _model_version(model: str, bank: str | None) -> str:
    return f"{model} | {bank}" if bank else str(model)


def dataset_key(dataset: Dataset) -> str:
    """Identifies a dataset in its project's description, so that a re-run (or a teammate with a copy of the
    folder) finds the project on any server. A random id kept in ``dataset.toml`` tells apart datasets that share
    a name."""
    cfg = dataset.config()
    uid = (cfg.get("stages", {}).get("annotate") or {}).get("dataset_uid")
    if not uid:
        uid = secrets.token_hex(8)
        dataset.record_stage("annotate", {"dataset_uid": uid})
    return f"{cfg.get('name', dataset.root.name)}#{uid}"


def project_title(dataset: Dataset) -> str:
    return f"dvtr · {dataset.config().get('name', dataset.root.name)}"[:50]


def _description(dataset: Dataset) -> str:
    return (
        "Caption drone clips: watch each clip and describe it (see the instructions). "
        f"Created by dvtr-data.\n\n{PROJECT_MARKER} {dataset_key(dataset)}"
    )


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def find_project(studio: Studio, dataset: Dataset, state: AnnotationState) -> dict[str, Any] | None:
    """The dataset's project on this server: the remembered id if it still exists, else the one whose
    description carries the dataset's key."""
    known = state.server(studio.conn.state_key).get("project_id")
    if known is not None:
        project = studio.project(int(known))
        if project is not None:
            return project
    marker = f"{PROJECT_MARKER} {dataset_key(dataset)}"
    matches = [p for p in studio.projects() if marker in (p.get("description") or "")]
    if not matches:
        return None
    matches.sort(key=lambda p: p["id"])
    return matches[0]


def ensure_project(
    studio: Studio, dataset: Dataset, state: AnnotationState, setup: labeling.LabelingSetup, overlap: int,
) -> tuple[dict[str, Any], bool]:
    """Find or create the project; bring its config, instructions and overlap up to date.
    """
    key = studio.conn.state_key
    config = labeling.render_label_config(setup)
    instructions = labeling.guidelines_html()
    version = labeling.guideline_version()
    settings: dict[str, Any] = dict(
        label_config=config,
        expert_instruction=instructions + f"\n<p><small>Guidelines version {version}</small></p>",
        show_instruction=True,
        show_skip_button=True,
        # drafts are never pre-filled: a box holding a draft reads as finished text and hurried annotators submit
        # it; the drafts are listed beside an empty box, each one click away ("start from" choices)
        show_collab_predictions=False,
        maximum_annotations=overlap,
        overlap_cohort_percentage=100,
    )
    found = find_project(studio, dataset, state)
    created = found is None
    if found is None:
        project: dict[str, Any] = plain(studio.once(
            "creating the project", studio.sdk.projects.create, title=project_title(dataset),
            description=_description(dataset), **settings,
        ))
    else:
        project = found
        changes = {k: v for k, v in settings.items() if k != "label_config" and project.get(k) != v}
        # the labeling config is ours to change only when our template or K changed since the last push, so a
        # team's edits in the UI survive re-runs
        if state.server(key).get("label_config_sha256") != _sha(config) and project.get("label_config") != config:
            changes["label_config"] = config
        if changes:
            studio.call("updating the project settings", studio.sdk.projects.update, project["id"], **changes)
    srv = state.server(key)
    srv.pop("label_config", None)
    srv.update(project_id=int(project["id"]), label_config_sha256=_sha(config), captions_per_task=setup.captions_per_task, overlap=overlap)
    state.note_guidelines(key, version)
    state.save()
    return project, created


def ensure_storage(studio: Studio, project_id: int, path: Path) -> None:
    """A Local Files import storage covering the clip folder; without it the server answers 404 for every clip."""
    existing = studio.call("listing storages", studio.sdk.import_storage.local.list, project=project_id)
    for storage in existing:
        storage = plain(storage)
        if str(storage.get("path", "")).rstrip("/") == str(path).rstrip("/"):
            return
    studio.once(
        "adding the clip folder as Local Files storage", studio.sdk.import_storage.local.create, project=project_id,
        path=str(path), use_blob_urls=True, title="dvtr clips", description="clip files of the dataset (read only)",
    )


def select_clips(
    dataset: Dataset, clip_ids: list[str] | None = None, include_rejected: bool = False, limit: int | None = None,
) -> list[dict[str, Any]]:
    """Clips to push: those with a file that passed QC (or exactly the ones named), in flight order."""
    clips = [c for c in dataset.read_table("clips").to_pylist() if c["status"] == "ok"]
    if clip_ids:
        by_id = {c["clip_id"]: c for c in clips}
        unknown = [cid for cid in clip_ids if cid not in by_id]
        if unknown:
            raise UsageError(f"{len(unknown)} clip id(s) not in the dataset, e.g. {unknown[0]!r}",
                             hint="list clip ids with `dvtr-data clips --dataset DIR`")
        chosen = [by_id[cid] for cid in dict.fromkeys(clip_ids)]
    else:
        chosen = [c for c in clips if include_rejected or c["qc_verdict"] == "pass"]
    no_file = [c["clip_id"] for c in chosen if not c.get("clip_path")]
    if clip_ids and no_file:
        raise UsageError(f"{len(no_file)} chosen clip(s) have no clip file (ingested with --no-cut), e.g. {no_file[0]!r}")
    chosen = [c for c in chosen if c.get("clip_path")]
    chosen.sort(key=lambda c: (c["flight_id"], c["start_frame"]))
    return chosen[:limit] if limit else chosen


def _num(value: Any) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def task_data(
    clip: dict[str, Any], flight: dict[str, Any] | None, drafts: list[str], media_prefix: str, guideline: str,
    random_weights: bool = False,
) -> dict[str, Any]:
    """The task's data: what the page shows (video, header, drafts) and what pull needs back (ids, span, fps)."""
    name = (flight or {}).get("file_name") or clip["flight_id"]
    fps = _num(clip.get("fps")) or _num((flight or {}).get("fps")) or 25.0
    return {
        "video": media_prefix + quote(clip["clip_path"], safe="/"),
        "fps": round(fps, 5),
        "clip_id": clip["clip_id"],
        "flight_id": clip["flight_id"],
        "flight_name": name,
        "start_s": round(float(clip["start_s"]), 3),
        "end_s": round(float(clip["end_s"]), 3),
        "duration_s": round(float(clip["duration_s"]), 3),
        "n_frames": clip.get("n_frames"),
        "altitude_m": _num(clip.get("altitude_m")),
        "altitude_kind": clip.get("altitude_kind"),
        "header": labeling.task_header(
            name, clip["start_s"], clip["end_s"], _num((flight or {}).get("duration_s")), _num(clip.get("altitude_m")),
            clip.get("altitude_kind"),
        ),
        "drafts": labeling.drafts_block(drafts, random_weights),
        "draft_texts": list(drafts[: labeling.MAX_DRAFTS]),  # what pull resolves a "start from: draft i" pick to
        **labeling.start_fields(drafts, random_weights),  # the one-click start: choices offered, each box's text
        "guideline_version": guideline,
    }


def push(
    dataset_dir: Path,
    conn: Connection,
    *,
    captions_per_task: int | None = None,
    overlap: int | None = None,
    clip_ids: list[str] | None = None,
    include_rejected: bool = False,
    limit: int | None = None,
    media_url: str | None = None,
    storage_path: Path | None = None,
    batch_size: int = BATCH,
    say: Say = _quiet,
    studio: Studio | None = None,
) -> PushReport:
    """Create (once) the dataset's project and import a task per selected clip; see the module docstring."""
    dataset = Dataset(dataset_dir).require()
    state = AnnotationState(dataset)
    remembered = state.server(conn.state_key)
    # options left out keep what the last push used, so a plain re-run never reshapes the project
    if captions_per_task is None:
        captions_per_task = remembered.get("captions_per_task") or 1
    setup = labeling.LabelingSetup(captions_per_task=captions_per_task)
    setup.check()
    if overlap is None:
        overlap = remembered.get("overlap") or 1
    if not 1 <= overlap <= MAX_OVERLAP:
        raise UsageError(f"--overlap must be between 1 and {MAX_OVERLAP} annotators per task; got {overlap}")
    clips = select_clips(dataset, clip_ids, include_rejected, limit)
    flights = {f["flight_id"]: f for f in dataset.read_table("flights").to_pylist()}
    drafts = load_drafts(dataset, per_clip=max(setup.captions_per_task, 5))

    if media_url is None and not conn.local:
        raise UsageError(
            f"{conn.url} is not this dataset's own server, so it cannot read the clip files from this folder",
            hint="pass --media-url PREFIX (where the server finds clips/..., e.g. /data/local-files/?d=datasets/mine/ "
            "with --storage-path, or an https:// or s3:// prefix)",
        )
    prefix = media_url if media_url is not None else LOCAL_FILES_PREFIX
    if storage_path is None and media_url is None:
        storage_path = dataset.clips_dir

    missing_ids: list[str] = []
    if media_url is None:  # our own server reads the files from this folder: check they are there
        missing_ids = [c["clip_path"] for c in clips if not (dataset.root / c["clip_path"]).is_file()]

    studio = studio or Studio(conn)
    studio.check()
    with dataset.lock("annotate"):
        return _push_locked(dataset, conn, studio, state, setup, overlap, clips, flights, drafts, prefix, storage_path,
                            missing_ids, batch_size, say)


def _push_locked(
    dataset: Dataset, conn: Connection, studio: Studio, state: AnnotationState, setup: labeling.LabelingSetup,
    overlap: int, clips: list[dict[str, Any]], flights: dict[str, dict[str, Any]], drafts: Drafts, prefix: str,
    storage_path: Path | None, missing_ids: list[str], batch_size: int, say: Say,
) -> PushReport:
    project, created = ensure_project(studio, dataset, state, setup, overlap)
    pid = int(project["id"])
    report = PushReport(conn.url, pid, created, clips_selected=len(clips), model_version=drafts.model_version,
                        random_drafts=drafts.random_weights, missing_files=missing_ids)
    log = RunLog(dataset.logs_dir, "annotate-push")
    report.log_path = log.path
    log.write("start", url=conn.url, project_id=pid, project_created=created, clips=report.clips_selected,
              model_version=drafts.model_version, captions_per_task=setup.captions_per_task, overlap=overlap)
    for path in missing_ids:
        log.write("missing_file", clip_path=path)
    try:
        if storage_path is not None:
            ensure_storage(studio, pid, storage_path)

        existing: dict[str, list[int]] = {}
        task_rows: dict[int, dict[str, Any]] = {}
        for task in studio.tasks(pid):
            cid = (task.get("data") or {}).get("clip_id")
            if cid:
                existing.setdefault(cid, []).append(int(task["id"]))
                task_rows[int(task["id"])] = task
        report.duplicate_tasks = {cid: ids for cid, ids in existing.items() if len(ids) > 1}
        absent = set(missing_ids)
        todo = [c for c in clips if c["clip_id"] not in existing and c["clip_path"] not in absent]
        report.tasks_existing = sum(1 for c in clips if c["clip_id"] in existing)
        report.missing_without_task = sum(1 for c in clips if c["clip_path"] in absent and c["clip_id"] not in existing)
        guideline = labeling.guideline_version()
        for batch in batched(todo, batch_size):
            items = []
            for clip in batch:
                clip_drafts = drafts.by_clip.get(clip["clip_id"], [])
                item: dict[str, Any] = {
                    "data": task_data(clip, flights.get(clip["flight_id"]), [t for t, _ in clip_drafts], prefix, guideline,
                                      drafts.random_weights)
                }
                items.append(item)
            resp = studio.once(
                f"importing tasks ({report.tasks_created} of {len(todo)} done)", studio.sdk.projects.import_tasks, pid,
                request=items, return_task_ids=True,
            )
            ids = list(getattr(resp, "task_ids", None) or [])
            for clip, tid in zip(batch, ids, strict=False):
                existing[clip["clip_id"]] = [int(tid)]
            report.tasks_created += len(batch)
            log.write("imported", tasks=len(batch), task_ids=ids)
            say(f"imported {report.tasks_created} of {len(todo)} new task(s)")

        report.tasks_refreshed = _refresh_drafts_block(studio, clips, existing, task_rows, drafts)
        report.predictions_removed = _remove_prefills(studio, pid, log)
        srv = state.server(conn.state_key)
        srv["tasks"] = {cid: ids[0] for cid, ids in existing.items()}
        srv["model_version"] = drafts.model_version
        if storage_path is not None:  # `serve` compares it with where the dataset is now (moved: videos 404)
            srv["storage_path"] = str(storage_path)
        state.save()
    except ServiceError as exc:
        log.write("error", error=str(exc), tasks_created=report.tasks_created)
        raise
    finally:
        log.write("summary", tasks_created=report.tasks_created, tasks_existing=report.tasks_existing,
                  predictions_removed=report.predictions_removed,
                  missing_files=len(missing_ids))
        log.close()
    dataset.record_stage("annotate_push", {"url": conn.url if not conn.local else "local", "project_id": pid,
                                           "captions_per_task": setup.captions_per_task, "overlap": overlap,
                                           "model_version": drafts.model_version, "tasks": len(existing)})
    return report


def _refresh_drafts_block(
    studio: Studio, clips: list[dict[str, Any]], tasks: dict[str, list[int]], rows: dict[int, dict[str, Any]], drafts: Drafts,
) -> int:
    """Rewrite the drafts of existing tasks whose drafts changed (e.g. tasks pushed before precaption ran, or before
    the one-click start existed)."""
    changed = 0
    for clip in clips:
        texts = [t for t, _ in drafts.by_clip.get(clip["clip_id"], [])]
        fresh = {"drafts": labeling.drafts_block(texts, drafts.random_weights), "draft_texts": texts[: labeling.MAX_DRAFTS],
                 **labeling.start_fields(texts, drafts.random_weights)}
        for tid in tasks.get(clip["clip_id"], []):
            data = (rows.get(tid) or {}).get("data")
            if data is None or all(data.get(k) == v for k, v in fresh.items()):
                continue
            studio.call("refreshing a task's drafts", studio.sdk.tasks.update, str(tid), data={**data, **fresh})
            changed += 1
    return changed


def _remove_prefills(studio: Studio, pid: int, log: RunLog) -> int:
    """Delete the project's predictions that fill a caption box (earlier pushes made one per task): Label Studio
    would turn them into the annotator's starting text. Predictions of other controls (a team's own) stay."""
    removed = 0
    for pred in studio.predictions(pid):
        fills = any(
            isinstance(item, dict) and item.get("type") == "textarea"
            and (labeling.caption_slot(str(item.get("from_name", ""))) is not None
                 or labeling.draft_box(str(item.get("from_name", ""))) is not None)
            for item in pred.get("result") or []
        )
        if fills:
            studio.call("removing a pre-filling prediction", studio.sdk.predictions.delete, pred["id"])
            removed += 1
    if removed:
        log.write("predictions_removed", count=removed)
    return removed


def raise_for_report(report: PushReport, dataset_dir: Path) -> None:
    """The run finished, but some clips could not be pushed: exit code 1 with what to do."""
    if report.missing_files:
        n, new = len(report.missing_files), report.missing_without_task
        raise PartialFailure(
            f"{n} clip file(s) missing from {Dataset(dataset_dir).root} (e.g. {report.missing_files[0]}): annotators "
            f"cannot play them{f', and {new} of them got no task' if new else ''}",
            hint="re-run `dvtr-data ingest` for their flights to rewrite the files, then push again",
        )
