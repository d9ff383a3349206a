"""QVHighlights JSONL for moment retrieval (Moment-DETR, MS-DETR): every caption is a query in its untrimmed flight.

One line per caption: ``qid``, ``query``, ``vid`` (the flight), ``duration`` (the flight's), ``relevant_windows``
(seconds), ``relevant_clip_ids`` (cells of the 2-second grid the tools cut videos into) and ``saliency_scores`` (three
0-4 scores per relevant cell), plus ``caption_id`` and ``clip_id`` to trace a line back (the tools ignore extra keys).

Windows and scores come from the ``moments`` table when someone annotated them. Without it, a caption's window is
its clip's span inside the flight, and its saliency scores are *derived, not judged*: every relevant cell gets
``round(4 * share of the cell inside the window)`` (2 to 4), the same for all three raters. A cell is relevant when
at least half of it (1 s) lies inside a window, or when it holds the middle of a window shorter than that.
Imported clips have no flight: their own video is the untrimmed video, and their window is the whole of it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from dvtr_data.errors import UsageError
from dvtr_data.export.view import ExportView
from dvtr_data.media import place_media

CELL_S = 2.0
SALIENCY_NOTE = (
    "saliency_scores derived from coverage: 4 x the share of each 2-s cell inside the window, rounded "
    "(2-4), identical for the three raters; not human judgements"
)


def relevant_cells(windows: list[list[float]], duration: float) -> list[int]:
    n_cells = max(1, math.ceil(duration / CELL_S - 1e-9))
    cells: set[int] = set()
    for start, end in windows:
        hit = False
        for k in range(max(0, int(start // CELL_S)), min(n_cells, int(math.ceil(end / CELL_S)))):
            overlap = min(end, (k + 1) * CELL_S) - max(start, k * CELL_S)
            if overlap >= CELL_S / 2 - 1e-9:
                cells.add(k)
                hit = True
        if not hit:
            cells.add(min(n_cells - 1, int(((start + end) / 2) // CELL_S)))
    return sorted(cells)


def derived_saliency(windows: list[list[float]], cells: list[int]) -> list[list[int]]:
    out = []
    for k in cells:
        cover = sum(max(0.0, min(e, (k + 1) * CELL_S) - max(s, k * CELL_S)) for s, e in windows)
        score = max(1, min(4, round(4 * min(1.0, cover / CELL_S))))
        out.append([score, score, score])
    return out


def _add_video(videos: dict[str, Path], vid: str, path: Path) -> None:
    if videos.setdefault(vid, path) != path:
        raise UsageError(
            f"video id {vid!r} names two different videos of this export",
            hint="export with --ids clean, or one split at a time",
        )


def _moments(view: ExportView) -> dict[str, dict[str, Any]]:
    ds = view.dataset
    if not ds.has_table("moments"):
        return {}
    t = ds.read_table("moments")
    return {r["caption_id"]: r for r in t.to_pylist()}


def write_qvhighlights(view: ExportView, stage: Path, *, media: str) -> dict[str, Any]:
    moments = _moments(view)
    skipped = {"unknown_duration": 0, "videos_missing": 0}
    used_moments = derived = 0
    videos: dict[str, Path] = {}
    qid = written = 0
    for split in view.splits:
        lines = []
        for c in view.by_split[split]:
            row = c.clip
            flight = view.flights.get(row["flight_id"]) if c.source is None else None
            if flight is not None and flight.get("duration_s"):
                vid, duration = row["flight_id"], float(flight["duration_s"])
                start, end = float(row["start_s"]), float(row["end_s"])
                if media != "none" and flight.get("source_path") and vid not in videos:
                    _add_video(videos, vid, Path(flight["source_path"]))
            else:
                vid, duration = c.export_id, float(row["duration_s"] or 0.0)
                start, end = 0.0, duration
                if row["clip_path"] and media != "none":
                    _add_video(videos, vid, view.dataset.root / row["clip_path"])
            span = [[round(start, 3), round(end, 3)]]
            span_cells = relevant_cells(span, duration) if duration > 0 else []
            span_scores = derived_saliency(span, span_cells)
            for cap_id, text in zip(c.caption_ids, c.texts, strict=True):
                qid += 1
                if duration <= 0:
                    skipped["unknown_duration"] += 1
                    continue
                m = moments.get(cap_id)
                if m is not None and m["windows"]:
                    windows = [[float(a), float(b)] for a, b in m["windows"]]
                    cells = list(m["saliency_clip_ids"] or []) or relevant_cells(windows, duration)
                    scores = (
                        m["saliency_scores"] if m["saliency_scores"] else derived_saliency(windows, cells)
                    )
                    used_moments += 1
                else:
                    windows, cells, scores = span, span_cells, span_scores
                    derived += 1
                lines.append(
                    json.dumps(
                        {
                            "qid": qid,
                            "query": " ".join(text.split()),
                            "duration": round(duration, 3),
                            "vid": vid,
                            "relevant_clip_ids": cells,
                            "saliency_scores": scores,
                            "relevant_windows": windows,
                            "caption_id": cap_id,
                            "clip_id": c.clip_id,
                        },
                        ensure_ascii=False,
                    )
                )
        (stage / f"highlight_{split}_release.jsonl").write_text(
            "".join(ln + "\n" for ln in lines), encoding="utf-8"
        )
        written += len(lines)
    notes = []
    if derived:
        notes.append(f"{derived} query(ies) use the clip span as window; {SALIENCY_NOTE}")
    if media != "none":
        folder = stage / "videos"
        folder.mkdir()
        for vid, src in sorted(videos.items()):
            if not src.is_file():
                skipped["videos_missing"] += 1
                continue
            place_media(src, folder / f"{vid}{src.suffix.lower() or '.mp4'}", media)
    return {
        "skipped": skipped,
        "notes": notes,
        "written": written,
        "empty_reason": "no caption belongs to a clip of known duration (imported without videos?)",
        "extra": {
            "saliency": {"from_moments": used_moments, "derived": derived, "rule": SALIENCY_NOTE},
            "clip_length_s": CELL_S,
        },
    }
