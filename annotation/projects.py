"""What the moments and ratings projects share: finding their project, creating or updating it, placing the
flight videos Label Studio plays, and merging a pull into a table that keeps deleted annotations on record.

The captions project (push.py) and the review project (review.py) keep their own variants: their tasks play clip
files, not flights, and the captions project is keyed by server state alone.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import Any, Protocol

from dvtr_data.annotation.checks import DELETED_FLAG
from dvtr_data.annotation.client import AnnotationState, Studio, batched, plain
from dvtr_data.annotation.push import dataset_key, ensure_storage
from dvtr_data.dataset import Dataset
from dvtr_data.media import place_media


def find_project(studio: Studio, dataset: Dataset, state: AnnotationState, state_key: str,
                 marker: str) -> dict[str, Any] | None:
    """The project this dataset's state names for ``state_key``, else the oldest whose description carries
    ``marker`` and this dataset's key (a state file lost or copied to another machine)."""
    known = state.server(studio.conn.state_key).get(state_key, {}).get("project_id")
    if known is not None:
        project = studio.project(int(known))
        if project is not None:
            return project
    tag = f"{marker} {dataset_key(dataset)}"
    matches = sorted((p for p in studio.projects() if tag in (p.get("description") or "")), key=lambda p: p["id"])
    return matches[0] if matches else None


def upsert_project(studio: Studio, dataset: Dataset, project: dict[str, Any] | None, *, kind: str, summary: str,
                   marker: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Create the ``kind`` project (title, description with ``marker``) or bring an existing one's settings up
    to date, changing only what differs."""
    if project is None:
        return plain(studio.once(
            f"creating the {kind} project", studio.sdk.projects.create,
            title=f"dvtr {kind} · {dataset.config().get('name', dataset.root.name)}"[:50],
            description=f"{summary} Created by dvtr-data.\n\n{marker} {dataset_key(dataset)}", **settings,
        ))
    changes = {k: v for k, v in settings.items() if project.get(k) != v}
    if changes:
        studio.call(f"updating the {kind} project", studio.sdk.projects.update, project["id"], **changes)
    return project


class MediaReport(Protocol):
    """The part of a push report that `place_flight_videos` fills."""

    media_placed: int
    missing_videos: list[str]


def place_flight_videos(studio: Studio, dataset: Dataset, project_id: int, flights: Iterable[dict[str, Any]],
                        media_dir: str, media_name: Callable[[dict[str, Any]], str], report: MediaReport) -> None:
    """Hard-link (else copy) each flight's video under ``media_dir`` of the dataset, the folder Label Studio's
    Local Files storage serves; a video already there at its size is kept, a missing source is reported."""
    for flight in flights:
        src = Path(str(flight.get("source_path") or ""))
        dst = dataset.root / media_name(flight)
        if dst.is_file() and dst.stat().st_size == flight.get("size_bytes"):
            continue
        if not src.is_file():
            report.missing_videos.append(str(src))
            continue
        place_media(src, dst, "link")
        report.media_placed += 1
    (dataset.root / media_dir).mkdir(parents=True, exist_ok=True)
    ensure_storage(studio, project_id, dataset.root / media_dir)


class PullCounts(Protocol):
    """The part of a pull report that `merge_pulled` fills."""

    rows_new: int
    rows_updated: int
    kept_deleted: int
    accepted: int
    flags: dict[str, int]


def merge_pulled(old: list[dict[str, Any]], fresh: dict[Any, dict[str, Any]], key: Callable[[dict[str, Any]], Hashable],
                 project_id: int, counts: PullCounts) -> list[dict[str, Any]]:
    """This project's rows replaced by ``fresh`` (keyed by ``key``); a row of this project no longer in Label
    Studio is kept, flagged and no longer accepted (the record keeps it, exports leave it out); other rows kept."""
    merged = []
    for row in old:
        if key(row) in fresh:
            counts.rows_updated += 1
            continue
        if row.get("ls_project_id") == project_id:
            if DELETED_FLAG not in (row["flags"] or []):
                row["flags"] = [*(row["flags"] or []), DELETED_FLAG]
            row["accepted"] = False
            counts.kept_deleted += 1
        merged.append(row)
    counts.rows_new = len(fresh) - counts.rows_updated
    merged.extend(sorted(fresh.values(), key=lambda r: (r["ls_task_id"], r["ls_annotation_id"])))
    for row in fresh.values():
        counts.accepted += int(row["accepted"])
        for flag in row["flags"]:
            counts.flags[flag] = counts.flags.get(flag, 0) + 1
    return merged


def import_tasks(studio: Studio, project_id: int, todo: list[dict[str, Any]], kind: str,
                 say: Callable[[str], None]) -> int:
    """Import ``todo`` in batches of 100, saying progress after each; returns how many were imported."""
    done = 0
    for batch in batched(todo, 100):
        studio.once(f"importing {kind} tasks", studio.sdk.projects.import_tasks, project_id, request=batch,
                    return_task_ids=True)
        done += len(batch)
        say(f"imported {done} of {len(todo)} new {kind} task(s)")
    return done
