"""`annotate pull`: the project's export -> rows of ``captions.parquet``, with validation flags.

One row per caption area of every annotation (``caption_id = ls-p<project>-a<annotation>-<area>``), so a re-pull
replaces rows in place: an edited annotation updates its rows, nothing is duplicated. Rows this project wrote
earlier whose task or annotation has since been deleted in Label Studio are kept (flag ``deleted_in_labelstudio``)
but no longer accepted: a pull never loses a caption, yet a deletion takes the caption out of splits and exports.
Rows other stages wrote (imports, other projects) are left exactly as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from dvtr_data.annotation import checks, labeling
from dvtr_data.annotation.categories import write_clip_categories
from dvtr_data.annotation.client import AnnotationState, Connection, Studio
from dvtr_data.annotation.push import find_project
from dvtr_data.dataset import Dataset
from dvtr_data.errors import ServiceError
from dvtr_data.runlog import RunLog
from dvtr_data.schemas.records import CaptionRow
from dvtr_data.text import strip_form_newline, tokenize

SIMULATED_DOMAIN = "simulated.dvtr.invalid"
DELETED_FLAG = checks.DELETED_FLAG
WRITER = "annotate"  # the writer of the caption rows this command makes (captions.parquet is shared)
COMPARED = ("text", "status", "annotator", "origin", "lead_time_s", "updated_at", "draft_shown", "qc_choices", "category",
            "flags", "accepted", "ls_task_id", "guideline_version")

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass
class PullReport:
    url: str
    project_id: int
    tasks: int = 0
    annotations: int = 0
    rows_new: int = 0
    rows_updated: int = 0
    rows_unchanged: int = 0
    skipped: int = 0
    cancelled: int = 0
    flags: dict[str, int] = field(default_factory=dict)
    deleted_tasks: dict[int, str] = field(default_factory=dict)  # task id -> clip id
    kept_deleted_rows: int = 0  # rows of this project whose task or annotation is gone (kept, flagged, not accepted)
    newly_deleted_rows: int = 0  # of those, the ones this pull found deleted (accepted or not before)
    unaccepted_deleted_rows: int = 0  # of those, the ones that were accepted until this pull
    foreign_tasks: int = 0
    unknown_clips: list[str] = field(default_factory=list)
    log_path: Path | None = None


def caption_id(project_id: int, annotation_id: int, slot: int) -> str:
    return f"ls-p{project_id}-a{annotation_id}-{slot + 1}"


def is_simulated(annotator: str | None) -> bool:
    return annotator is not None and annotator.endswith("@" + SIMULATED_DOMAIN)


def completed_by_id(annotation: dict[str, Any]) -> int | None:
    """The Label Studio user id of an annotation (some exports expand the user into an object)."""
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("id")
    return int(who) if who is not None else None


def annotator_of(annotation: dict[str, Any], emails: dict[int, str]) -> str | None:
    """Who submitted an annotation: their e-mail, else ``user-<id>`` (a user deleted since), else None."""
    who = completed_by_id(annotation)
    return (emails.get(who) or f"user-{who}") if who is not None else None


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _texts_by_area(result: list[dict[str, Any]] | None) -> dict[int, str]:
    out: dict[int, str] = {}
    for item in result or []:
        if not isinstance(item, dict) or item.get("type") != "textarea":
            continue
        slot = labeling.caption_slot(str(item.get("from_name", "")))
        if slot is None:
            continue
        texts = (item.get("value") or {}).get("text") or []
        out[slot] = " ".join(strip_form_newline(str(t)) for t in texts if t is not None)
    return out


def _draft_boxes(result: list[dict[str, Any]] | None) -> dict[int, tuple[int, str]]:
    """Per 0-based slot, the draft box submitted (``caption_1_draft_2``): (0-based draft, text)."""
    out: dict[int, tuple[int, str]] = {}
    for item in result or []:
        if not isinstance(item, dict) or item.get("type") != "textarea":
            continue
        where = labeling.draft_box(str(item.get("from_name", "")))
        if where is None:
            continue
        texts = (item.get("value") or {}).get("text") or []
        out[where[0]] = (where[1], " ".join(strip_form_newline(str(t)) for t in texts if t is not None))
    return out


def _choices(result: list[dict[str, Any]] | None, name: str) -> list[str]:
    for item in result or []:
        if isinstance(item, dict) and item.get("type") == "choices" and item.get("from_name") == name:
            return [str(c) for c in (item.get("value") or {}).get("choices") or []]
    return []


def picked_drafts(data: dict[str, Any], choices: list[str]) -> list[str]:
    """The drafts an annotator picked to start from ("start from: draft i"), in draft order.

    Drafts come from the task's ``draft_texts`` (push writes them), else from its numbered drafts block (tasks
    pushed before the list existed); a pick naming a draft the task does not have is ignored.
    """
    texts = data.get("draft_texts")
    if not isinstance(texts, list):
        texts = []
        for line in str(data.get("drafts") or "").splitlines():
            head, _, tail = line.partition(". ")
            if head.isdigit() and int(head) == len(texts) + 1:
                texts.append(tail)
    chosen = sorted({i for i in (labeling.start_slot(c) for c in choices) if i is not None and i < len(texts)})
    return [str(texts[i]) for i in chosen]


def annotation_rows(
    task: dict[str, Any], annotation: dict[str, Any], *, project_id: int, areas: int, emails: dict[int, str],
    guideline: Callable[[datetime | None], str | None], min_words: int,
) -> list[dict[str, Any]]:
    """The caption rows of one exported annotation (flags except ``duplicate``, which needs the whole clip)."""
    result = annotation.get("result") or []
    data = task.get("data") or {}
    texts = _texts_by_area(result)
    boxes = _draft_boxes(result)  # a box that started out holding a draft: its name says which one
    for slot, (_, text) in boxes.items():
        texts[slot] = text  # Label Studio submits only the box shown, so a draft box is the slot's text
    prediction = annotation.get("prediction") or {}
    drafts = _texts_by_area(prediction.get("result")) if isinstance(prediction, dict) else {}  # a pre-filled box
    # configs before the draft boxes: one multiple choice, the i-th draft ticked is slot i's starting point
    picked = picked_drafts(data, _choices(result, labeling.START_FROM))

    def starting_point(slot: int) -> str | None:
        if slot in boxes:
            shown = picked_drafts(data, [f"{labeling.START_PREFIX}{boxes[slot][0] + 1}"])
            return shown[0] if shown else None
        own = picked_drafts(data, _choices(result, labeling.start_name(slot))) if slot else []
        if own:
            return own[0]
        return picked[slot] if slot < len(picked) else None

    cancelled = bool(annotation.get("was_cancelled"))
    if cancelled:
        slots = sorted(texts) or [0]
        status = "cancelled" if any(t.strip() for t in texts.values()) else "skipped"
    else:
        slots = list(range(max([areas, *(s + 1 for s in texts)])))
        status = "submitted"
    annotator = annotator_of(annotation, emails)
    created, updated = _time(annotation.get("created_at")), _time(annotation.get("updated_at"))
    qc = _choices(result, labeling.QC)
    categories = _choices(result, labeling.CATEGORY)
    category = categories[0] if categories else None
    rows = []
    for slot in slots:
        start = starting_point(slot)
        draft = start if start is not None else drafts.get(slot)
        text = texts.get(slot, "")
        if not text.strip() and start is not None and status == "submitted":
            text = start  # a draft picked and its box emptied: flagged unchanged_draft below, never accepted
        tokens = tokenize(text)
        flags = checks.caption_flags(text, tokens, draft, min_words=min_words) if status == "submitted" else []
        rows.append(
            CaptionRow(
                writer=WRITER,
                caption_id=caption_id(project_id, int(annotation["id"]), slot),
                clip_id=data["clip_id"],
                text=text,
                tokens=tokens,
                origin="simulated" if is_simulated(annotator) else "human",
                status=status,
                annotator=annotator,
                guideline_version=guideline(updated or created) or data.get("guideline_version"),
                ls_project_id=project_id,
                ls_task_id=int(task["id"]),
                ls_annotation_id=int(annotation["id"]),
                lead_time_s=float(annotation["lead_time"]) if annotation.get("lead_time") is not None else None,
                created_at=created,
                updated_at=updated,
                draft_shown=draft,
                edit_distance=checks.edit_distance(draft, text),
                qc_choices=qc,
                category=category,
                flags=flags,
                accepted=False,
            ).as_dict()
        )
    return rows


def pull(
    dataset_dir: Path, conn: Connection, *, min_words: int = checks.MIN_WORDS, say: Say = _quiet,
    studio: Studio | None = None,
) -> PullReport:
    """Export the dataset's project and merge its captions into ``captions.parquet`` (see the module docstring)."""
    dataset = Dataset(dataset_dir).require()
    studio = studio or Studio(conn)
    studio.check()
    with dataset.lock("annotate"):
        return _pull_locked(dataset, conn, studio, min_words, say)


def _pull_locked(dataset: Dataset, conn: Connection, studio: Studio, min_words: int, say: Say) -> PullReport:
    state = AnnotationState(dataset)
    project = find_project(studio, dataset, state)
    if project is None:
        raise ServiceError(
            f"{conn.url} has no project for this dataset yet",
            hint=f"run `dvtr-data annotate push --dataset {dataset.root}` first",
        )
    pid = int(project["id"])
    key = conn.state_key
    areas = labeling.captions_per_task_of(project.get("label_config") or "<View/>") or 1
    report = PullReport(conn.url, pid)
    log = RunLog(dataset.logs_dir, "annotate-pull")
    report.log_path = log.path
    log.write("start", url=conn.url, project_id=pid)
    try:
        exported = studio.export(pid)
        emails = studio.user_emails()
        clip_ids = set(dataset.read_table("clips").column("clip_id").to_pylist())
        fresh: list[dict[str, Any]] = []
        seen_tasks: set[int] = set()
        for task in exported:
            data = task.get("data") or {}
            cid = data.get("clip_id")
            if not cid:
                report.foreign_tasks += 1
                continue
            if cid not in clip_ids:
                report.unknown_clips.append(str(cid))
                continue
            seen_tasks.add(int(task["id"]))
            report.tasks += 1
            for annotation in task.get("annotations") or []:
                report.annotations += 1
                fresh.extend(
                    annotation_rows(task, annotation, project_id=pid, areas=areas, emails=emails,
                                    guideline=lambda when: state.guideline_at(key, when), min_words=min_words)
                )
        merged = _merge(dataset, pid, fresh, seen_tasks, report)
        dataset.replace_rows("captions", WRITER, merged)
        log.write("categories", clips=write_clip_categories(dataset))  # the annotators' majority, per clip
        for row in fresh:
            if row["status"] == "skipped":
                report.skipped += 1
            elif row["status"] == "cancelled":
                report.cancelled += 1
            for flag in row["flags"]:
                report.flags[flag] = report.flags.get(flag, 0) + 1
        for tid, cid in report.deleted_tasks.items():
            log.write("task_deleted", task_id=tid, clip_id=cid)
        log.write("summary", tasks=report.tasks, annotations=report.annotations, new=report.rows_new,
                  updated=report.rows_updated, unchanged=report.rows_unchanged, kept_deleted=report.kept_deleted_rows,
                  newly_deleted=report.newly_deleted_rows, unaccepted_deleted=report.unaccepted_deleted_rows,
                  flags=report.flags)
    except ServiceError as exc:
        log.write("error", error=str(exc))
        raise
    finally:
        log.close()
    dataset.record_stage("annotate_pull", {"url": conn.url if not conn.local else "local", "project_id": pid,
                                           "captions": report.rows_new + report.rows_updated + report.rows_unchanged})
    return report


def _merge(dataset: Dataset, pid: int, fresh: list[dict[str, Any]], seen_tasks: set[int], report: PullReport) -> list[dict[str, Any]]:
    """This command's rows, merged: its rows of this project are replaced by the fresh ones or kept as deleted.

    Other writers' rows (imports, the demo) are not returned and never changed; they only count as context for
    the duplicate check.
    """
    everything = dataset.read_table("captions").to_pylist()
    old_rows = [r for r in everything if r["writer"] == WRITER]
    strangers = [r for r in everything if r["writer"] != WRITER]
    fresh_by_id = {r["caption_id"]: r for r in fresh}

    def ours(row: dict[str, Any]) -> bool:
        return row["ls_project_id"] == pid and str(row["caption_id"]).startswith("ls-")

    merged: list[dict[str, Any]] = []
    placed: set[str] = set()
    for row in old_rows:
        cid = row["caption_id"]
        if cid in fresh_by_id:
            merged.append(fresh_by_id[cid])
            placed.add(cid)
        elif ours(row):
            if DELETED_FLAG not in (row["flags"] or []):
                row["flags"] = [*(row["flags"] or []), DELETED_FLAG]
                report.newly_deleted_rows += 1
            if row["accepted"]:
                report.unaccepted_deleted_rows += 1
            row["accepted"] = False  # deleted in Label Studio: out of splits and exports, the row itself is kept
            if row["ls_task_id"] not in seen_tasks:
                report.deleted_tasks.setdefault(int(row["ls_task_id"]), row["clip_id"])
            report.kept_deleted_rows += 1
            merged.append(row)
        else:
            merged.append(row)
    new_rows = [r for r in fresh if r["caption_id"] not in placed]
    new_rows.sort(key=lambda r: (r["clip_id"], r["created_at"] is None, r["created_at"] or 0, r["caption_id"]))
    merged.extend(new_rows)

    fresh_ids = set(fresh_by_id)
    checks.mark_duplicates([*strangers, *merged], mine=lambda r: r["caption_id"] in fresh_ids)
    for row in merged:
        if row["caption_id"] in fresh_ids:
            row["accepted"] = checks.accepted(row)
    old_by_id = {r["caption_id"]: r for r in old_rows}
    for cid, row in fresh_by_id.items():
        before = old_by_id.get(cid)
        if before is None:
            report.rows_new += 1
        elif any(_differs(before.get(c), row.get(c)) for c in COMPARED):
            report.rows_updated += 1
        else:
            report.rows_unchanged += 1
    return merged


def _differs(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) > 1e-6
    if isinstance(a, datetime) and isinstance(b, datetime):
        return abs((a - b).total_seconds()) > 1e-3
    return a != b
