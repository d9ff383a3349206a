"""`annotate review push` / `review pull`: a review step built on Label Studio's open-source edition.

The open-source edition has no review stream, so the review is a Label Studio project of its own: one task per
submitted caption (the clip's video, the caption's text, and the caption's author), with three controls: a verdict
(accept, reject, fix), a reason and a fixed text. Pull turns each review annotation into a row of ``reviews``
(owner annotate) and each fix into a new caption row (writer ``review``) whose id the review row carries in
``fixed_caption_id``; the caption reviewed is never changed: readers join the verdict (``reviewed.py``).

A reviewer never reviews their own caption. Label Studio's community edition cannot hide a task from one user, so
the task carries its author and pull refuses a review whose reviewer is that author: it is not recorded, and pull
names it (another reviewer must review the caption). A rejection needs a reason and a fix needs its text; a review
without them is left out and counted, so the reviewer can complete it and pull again.

Idempotent like `push`/`pull`: a re-push adds tasks only for captions without one; a re-pull replaces this
project's review and fix rows by what the server holds now (a review deleted in Label Studio withdraws its
verdict and its fix).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from dvtr_data.annotation import checks, labeling, reviewed
from dvtr_data.annotation.client import AnnotationState, Connection, Studio, batched, plain
from dvtr_data.annotation.pull import DELETED_FLAG, SIMULATED_DOMAIN, _time, annotator_of, is_simulated
from dvtr_data.annotation.pull import WRITER as CAPTION_WRITER
from dvtr_data.annotation.push import BATCH, LOCAL_FILES_PREFIX, dataset_key, ensure_storage, project_title
from dvtr_data.dataset import Dataset
from dvtr_data.errors import ServiceError, UsageError
from dvtr_data.runlog import RunLog
from dvtr_data.schemas.records import CaptionRow, ReviewRow
from dvtr_data.text import strip_form_newline, tokenize

FIX_WRITER = "review"  # the writer of fix rows in captions.parquet
REVIEW_MARKER = "dvtr-review-of:"
VERDICT, REASON, FIX, CAPTION = "verdict", "reason", "fix", "caption"
CHOICE_ACCEPT, CHOICE_REJECT, CHOICE_FIX = "accept", "reject", "fix"
_STATUS_OF = {CHOICE_ACCEPT: reviewed.ACCEPTED, CHOICE_REJECT: reviewed.REJECTED, CHOICE_FIX: reviewed.FIXED}
MAX_OVERLAP = 10

REVIEW_CONFIG = f"""<View>
  <Header value="$header" size="5"/>
  <View style="display: flex; gap: 16px; align-items: flex-start">
    <View style="flex: 0 0 640px; max-width: 640px">
      <Video name="video" value="$video" frameRate="$fps" height="360"/>
    </View>
    <View style="flex: 1 1 auto; min-width: 0">
      <Header value="The caption to review (check every word against the video)" size="6"/>
      <Text name="{CAPTION}" value="$caption" granularity="paragraph"/>
      <Header value="Verdict" size="6"/>
      <Choices name="{VERDICT}" toName="video" choice="single" showInline="true">
        <Choice value="{CHOICE_ACCEPT}"/>
        <Choice value="{CHOICE_REJECT}"/>
        <Choice value="{CHOICE_FIX}"/>
      </Choices>
      <Header value="Reason (required to reject; say what is wrong)" size="6"/>
      <TextArea name="{REASON}" toName="video" rows="2" editable="true" maxSubmissions="1"
                placeholder="e.g. wrong count: three cars, not two"/>
      <Header value="Fixed caption (to fix: the whole corrected text)" size="6"/>
      <TextArea name="{FIX}" toName="video" rows="3" editable="true" maxSubmissions="1"
                placeholder="The corrected caption, complete"/>
    </View>
  </View>
  <Style>textarea {{ border: 1px solid #8c8c8c !important; background: #fff !important; }}</Style>
</View>
"""

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass
class ReviewPushReport:
    url: str
    project_id: int
    project_created: bool
    candidates: int = 0
    tasks_existing: int = 0
    tasks_created: int = 0
    log_path: Path | None = None


@dataclass
class ReviewPullReport:
    url: str
    project_id: int
    tasks: int = 0
    reviews: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    fixes: int = 0
    fixes_accepted: int = 0
    self_reviews: list[tuple[str, str]] = field(default_factory=list)  # (caption id, reviewer) refused
    incomplete: list[tuple[str, str]] = field(default_factory=list)  # (caption id, what is missing) left out
    skipped: int = 0
    unknown_captions: list[str] = field(default_factory=list)
    log_path: Path | None = None


def review_id(project_id: int, annotation_id: int) -> str:
    return f"rv-p{project_id}-a{annotation_id}"


def fix_caption_id(rid: str) -> str:
    return f"{rid}-fix"


def review_candidates(dataset: Dataset) -> list[dict[str, Any]]:
    """Captions a reviewer should see: submitted in Label Studio, with text, not deleted there since."""
    rows = dataset.read_table("captions").to_pylist()
    return [
        r for r in rows
        if r["writer"] == CAPTION_WRITER and r["status"] == "submitted" and r["text"].strip()
        and DELETED_FLAG not in (r["flags"] or [])
    ]


def _description(dataset: Dataset) -> str:
    return (
        "Review captions: accept, reject with a reason, or fix. Never review your own captions (pull refuses them). "
        f"Created by dvtr-data.\n\n{REVIEW_MARKER} {dataset_key(dataset)}"
    )


def find_review_project(studio: Studio, dataset: Dataset, state: AnnotationState) -> dict[str, Any] | None:
    known = state.server(studio.conn.state_key).get("review_project_id")
    if known is not None:
        project = studio.project(int(known))
        if project is not None:
            return project
    marker = f"{REVIEW_MARKER} {dataset_key(dataset)}"
    matches = sorted((p for p in studio.projects() if marker in (p.get("description") or "")), key=lambda p: p["id"])
    return matches[0] if matches else None


def review_task_data(caption: dict[str, Any], clip: dict[str, Any], flight: dict[str, Any] | None, prefix: str) -> dict[str, Any]:
    """What the reviewer sees (video, header, caption) and what pull needs back (ids, the author)."""
    name = (flight or {}).get("file_name") or clip["flight_id"]
    return {
        "video": prefix + quote(clip["clip_path"], safe="/"),
        "fps": round(float(clip.get("fps") or (flight or {}).get("fps") or 25.0), 5),
        "header": labeling.task_header(name, clip["start_s"], clip["end_s"], None, None, None),
        "caption": caption["text"],
        "caption_id": caption["caption_id"],
        "clip_id": caption["clip_id"],
        "author": caption["annotator"],
    }


def review_push(
    dataset_dir: Path, conn: Connection, *, overlap: int = 1, limit: int | None = None, media_url: str | None = None,
    storage_path: Path | None = None, say: Say = _quiet, studio: Studio | None = None,
) -> ReviewPushReport:
    """Create (once) the dataset's review project and add a task per submitted caption that has none yet."""
    dataset = Dataset(dataset_dir).require()
    if not 1 <= overlap <= MAX_OVERLAP:
        raise UsageError(f"--overlap must be between 1 and {MAX_OVERLAP} reviewers per caption; got {overlap}")
    if media_url is None and not conn.local:
        raise UsageError(
            f"{conn.url} is not this dataset's own server, so it cannot read the clip files from this folder",
            hint="pass --media-url PREFIX, as for `annotate push`",
        )
    prefix = media_url if media_url is not None else LOCAL_FILES_PREFIX
    if storage_path is None and media_url is None:
        storage_path = dataset.clips_dir
    studio = studio or Studio(conn)
    studio.check()
    with dataset.lock("annotate"):
        state = AnnotationState(dataset)
        captions = review_candidates(dataset)
        clips = {c["clip_id"]: c for c in dataset.read_table("clips").to_pylist()}
        flights = {f["flight_id"]: f for f in dataset.read_table("flights").to_pylist()}
        captions = [c for c in captions if clips.get(c["clip_id"], {}).get("clip_path")]
        captions.sort(key=lambda c: (c["clip_id"], c["caption_id"]))
        settings: dict[str, Any] = dict(
            label_config=REVIEW_CONFIG, maximum_annotations=overlap, overlap_cohort_percentage=100,
            show_skip_button=True, show_collab_predictions=False, show_instruction=True,
            expert_instruction="<p>Watch the clip, then accept the caption, reject it with a reason, or fix it "
            "(write the whole corrected caption). Skip captions you wrote yourself: pull refuses self-reviews.</p>",
        )
        project = find_review_project(studio, dataset, state)
        created = project is None
        if project is None:
            title = ("review · " + project_title(dataset).removeprefix("dvtr · "))[:50]
            project = plain(studio.once("creating the review project", studio.sdk.projects.create, title=title,
                                        description=_description(dataset), **settings))
        else:
            changes = {k: v for k, v in settings.items() if project.get(k) != v}
            if changes:
                studio.call("updating the review project", studio.sdk.projects.update, project["id"], **changes)
        pid = int(project["id"])
        report = ReviewPushReport(conn.url, pid, created, candidates=len(captions))
        log = RunLog(dataset.logs_dir, "annotate-review-push")
        report.log_path = log.path
        try:
            if storage_path is not None:
                ensure_storage(studio, pid, storage_path)
            have = {(t.get("data") or {}).get("caption_id") for t in studio.tasks(pid)}
            todo = [c for c in captions if c["caption_id"] not in have]
            report.tasks_existing = len(captions) - len(todo)
            if limit is not None:
                todo = todo[:limit]
            for batch in batched(todo, BATCH):
                items = [{"data": review_task_data(c, clips[c["clip_id"]], flights.get(clips[c["clip_id"]]["flight_id"]), prefix)}
                         for c in batch]
                studio.once(f"importing review tasks ({report.tasks_created} of {len(todo)} done)",
                            studio.sdk.projects.import_tasks, pid, request=items, return_task_ids=True)
                report.tasks_created += len(batch)
                say(f"imported {report.tasks_created} of {len(todo)} review task(s)")
            srv = state.server(conn.state_key)
            srv["review_project_id"] = pid
            srv["review_overlap"] = overlap
            state.save()
        except ServiceError as exc:
            log.write("error", error=str(exc))
            raise
        finally:
            log.write("summary", project_id=pid, candidates=report.candidates, created=report.tasks_created,
                      existing=report.tasks_existing)
            log.close()
    return report


# ----------------------------------------------------------------------------------------------------------------
# pull
# ----------------------------------------------------------------------------------------------------------------
def _text(result: list[dict[str, Any]], name: str) -> str:
    for item in result or []:
        if isinstance(item, dict) and item.get("type") == "textarea" and item.get("from_name") == name:
            texts = (item.get("value") or {}).get("text") or []
            return " ".join(strip_form_newline(str(t)) for t in texts if t is not None).strip()
    return ""


def _choice(result: list[dict[str, Any]], name: str) -> str | None:
    for item in result or []:
        if isinstance(item, dict) and item.get("type") == "choices" and item.get("from_name") == name:
            chosen = (item.get("value") or {}).get("choices") or []
            return str(chosen[0]) if chosen else None
    return None


def review_verdict(result: list[dict[str, Any]]) -> tuple[str | None, str, str, str | None]:
    """(status, reason, fixed text, what is missing) of one review annotation's result.

    A fixed text without a verdict counts as a fix (the reviewer wrote one); a rejection needs a reason, a fix its
    text; what is missing is None when the review is complete.
    """
    choice = _choice(result, VERDICT)
    reason, fixed = _text(result, REASON), _text(result, FIX)
    if choice is None and fixed:
        choice = CHOICE_FIX
    status = _STATUS_OF.get(choice or "")
    if status is None:
        return None, reason, fixed, "no verdict"
    if status == reviewed.REJECTED and not reason:
        return status, reason, fixed, "no reason for its rejection"
    if status == reviewed.FIXED and not fixed:
        return status, reason, fixed, "no text for its fix"
    return status, reason, fixed, None


def review_pull(
    dataset_dir: Path, conn: Connection, *, min_words: int = checks.MIN_WORDS, say: Say = _quiet, studio: Studio | None = None,
) -> ReviewPullReport:
    """Export the review project into ``reviews`` and fix rows of ``captions`` (see the module docstring)."""
    dataset = Dataset(dataset_dir).require()
    studio = studio or Studio(conn)
    studio.check()
    with dataset.lock("annotate"):
        state = AnnotationState(dataset)
        project = find_review_project(studio, dataset, state)
        if project is None:
            raise ServiceError(f"{conn.url} has no review project for this dataset yet",
                               hint=f"run `dvtr-data annotate review push --dataset {dataset.root}` first")
        pid = int(project["id"])
        report = ReviewPullReport(conn.url, pid)
        log = RunLog(dataset.logs_dir, "annotate-review-pull")
        report.log_path = log.path
        try:
            exported = studio.export(pid)
            emails = studio.user_emails()
            _pull_locked(dataset, pid, exported, emails, min_words, report)
        except ServiceError as exc:
            log.write("error", error=str(exc))
            raise
        finally:
            log.write("summary", project_id=pid, reviews=report.reviews, by_status=report.by_status, fixes=report.fixes,
                      self_reviews=len(report.self_reviews), incomplete=len(report.incomplete))
            log.close()
    return report


def _pull_locked(
    dataset: Dataset, pid: int, exported: list[dict[str, Any]], emails: dict[int, str], min_words: int,
    report: ReviewPullReport,
) -> None:
    everything = dataset.read_table("captions").to_pylist()
    by_id = {r["caption_id"]: r for r in everything}
    reviews: list[dict[str, Any]] = []
    fixes: list[dict[str, Any]] = []
    for task in exported:
        data = task.get("data") or {}
        cid = data.get("caption_id")
        if not cid:
            continue
        original = by_id.get(str(cid))
        if original is None:
            report.unknown_captions.append(str(cid))
            continue
        report.tasks += 1
        for ann in task.get("annotations") or []:
            if ann.get("was_cancelled"):
                report.skipped += 1
                continue
            reviewer = annotator_of(ann, emails) or "?"
            author = original["annotator"] or data.get("author")
            if author and reviewer == author:
                report.self_reviews.append((str(cid), reviewer))
                continue
            status, reason, fixed, missing = review_verdict(ann.get("result") or [])
            if missing is not None or status is None:
                report.incomplete.append((str(cid), missing or "no verdict"))
                continue
            rid = review_id(pid, int(ann["id"]))
            created, updated = _time(ann.get("created_at")), _time(ann.get("updated_at"))
            lead = float(ann["lead_time"]) if ann.get("lead_time") is not None else None
            fixed_id = fix_caption_id(rid) if status == reviewed.FIXED else None
            reviews.append(ReviewRow(
                review_id=rid, caption_id=str(cid), clip_id=original["clip_id"], status=status, reviewer=reviewer,
                author=author, reason=reason or None, fixed_caption_id=fixed_id, ls_project_id=pid,
                ls_task_id=int(task["id"]), ls_annotation_id=int(ann["id"]), lead_time_s=lead, created_at=created,
                updated_at=updated,
            ).as_dict())
            report.by_status[status] = report.by_status.get(status, 0) + 1
            if fixed_id is not None:
                tokens = tokenize(fixed)
                fixes.append(CaptionRow(
                    writer=FIX_WRITER, caption_id=fixed_id, clip_id=original["clip_id"], text=fixed, tokens=tokens,
                    origin="simulated" if is_simulated(reviewer) else "human", status="submitted", annotator=reviewer,
                    guideline_version=original["guideline_version"], ls_project_id=pid, ls_task_id=int(task["id"]),
                    ls_annotation_id=int(ann["id"]), lead_time_s=lead, created_at=created, updated_at=updated,
                    draft_shown=original["text"], edit_distance=checks.edit_distance(original["text"], fixed),
                    qc_choices=original["qc_choices"], category=original["category"],
                    flags=checks.caption_flags(fixed, tokens, original["text"], min_words=min_words), accepted=False,
                ).as_dict())
    report.reviews = len(reviews)
    # rows of other review projects (another server) stay; this project's are replaced by what it holds now
    kept = [r for r in dataset.read_table("reviews").to_pylist() if r["ls_project_id"] != pid]
    others = [r for r in everything if r["writer"] != FIX_WRITER]
    kept_fixes = [r for r in everything if r["writer"] == FIX_WRITER and r["ls_project_id"] != pid]
    fix_ids = {r["caption_id"] for r in fixes}
    checks.mark_duplicates([*others, *kept_fixes, *fixes], mine=lambda r: r["caption_id"] in fix_ids)
    for row in fixes:
        row["accepted"] = checks.accepted(row)
    report.fixes = len(fixes)
    report.fixes_accepted = sum(1 for r in fixes if r["accepted"])
    dataset.write_table("reviews", [*kept, *reviews])
    dataset.replace_rows("captions", FIX_WRITER, [*kept_fixes, *fixes])
    dataset.record_stage("annotate_review_pull", {"project_id": pid, "reviews": len(reviews), "fixes": len(fixes)})


__all__ = [
    "FIX_WRITER", "REVIEW_CONFIG", "SIMULATED_DOMAIN", "ReviewPullReport", "ReviewPushReport", "review_candidates",
    "review_pull", "review_push", "review_verdict",
]
