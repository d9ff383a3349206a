"""QVHighlights JSONL for moment retrieval (Moment-DETR, MS-DETR): every caption is a query in its untrimmed flight.

One line per caption: ``qid``, ``query``, ``vid`` (the flight), ``duration`` (the flight's), ``relevant_windows``
(seconds), ``relevant_clip_ids`` (cells of the 2-second grid the tools cut videos into) and ``saliency_scores`` (three
0-4 scores per relevant cell), plus ``caption_id`` and ``clip_id`` to trace a line back (the tools ignore extra keys).

Windows and scores come from the ``moments`` table when someone annotated them. Without it, a caption's window is
its clip's span inside the flight, and its saliency scores are *derived, not judged*: every relevant cell gets
``round(4 * share of the cell inside the window)`` (2 to 4), the same for all three raters. A cell is relevant when
at least half of it (1 s) lies inside a window, or when it holds the middle of a window shorter than that.
Imported clips have no flight: their own video is the untrimmed video, and their window is the whole of it.

When the ``moments`` table holds accepted rows (annotated in Label Studio with ``annotate push --task moments``),
the export is made of them instead: one line per moment, ``vid`` its segment (``<flight>_s<start>``, at most
150 s), windows in segment time, exactly three 0-4 ratings per relevant cell from up to three distinct raters (the
query's author, then the raters of `annotate push --task ratings` from ``moment_ratings`` in submission order;
fewer raters are filled by repeating the real ones in order, a cell nobody rated gets 2; every line says how many
real raters it has in ``saliency_raters`` and whether it was filled in ``saliency_filled``), and ``qid`` a stable
number derived from the moment id. The official evaluator needs
windows in each length bucket (short <= 10 s, middle 10-30 s, long 30-150 s) of a split; the manifest says
plainly which split cannot fill which bucket.

2-s cells: only whole cells have ids (``int(duration / 2)`` of them, the official ``mk_gt_scores`` size), so a
video of odd duration has no id for its last, partial cell.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

from dvtr_data.errors import DatasetError, UsageError
from dvtr_data.export.view import ExportView
from dvtr_data.media import place_media

CELL_S = 2.0
SALIENCY_NOTE = (
    "saliency_scores derived from coverage: 4 x the share of each 2-s cell inside the window, rounded "
    "(2-4), identical for the three raters; not human judgements"
)


def relevant_cells(windows: list[list[float]], duration: float) -> list[int]:
    n_cells = max(1, int(duration / CELL_S + 1e-9))  # whole cells only: the official mk_gt_scores' size
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
    return {r["caption_id"]: r for r in t.to_pylist() if r["caption_id"]}


def write_qvhighlights(
    view: ExportView, stage: Path, *, media: str, features: Any = None
) -> dict[str, Any]:
    """Moments when annotated (see the module docstring), else one derived query per caption; with
    ``features`` (a `moment_features.FeatureOptions`), also the clip and query feature files."""
    annotated = _annotated_moments(view)
    if annotated:
        return _write_from_moments(view, stage, annotated, media=media, features=features)
    if not view.captions.table.num_rows:
        raise DatasetError(
            f"{view.dataset.root} has no captions and no accepted moments; there is nothing to export",
            hint="annotate moments (`dvtr-data annotate push --task moments`, then `pull`) or captions",
        )
    if features is not None:
        raise DatasetError(
            "features are exported for annotated moments only, and this dataset has none",
            hint="annotate moments (`dvtr-data annotate push --task moments`, then `pull`) and export again",
        )
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


# ----------------------------------------------------------------------------------------------------------------
# the export of annotated moments
# ----------------------------------------------------------------------------------------------------------------
BUCKETS: tuple[tuple[str, float, float], ...] = (("short", 0.0, 10.0), ("middle", 10.0, 30.0), ("long", 30.0, 150.0))
MAX_DURATION_S = 150.0
UNRATED_SCORE = 2
FILL_RULE = (
    "exactly three 0-4 ratings per relevant 2-s cell from up to three distinct raters: the query's author first, "
    "then the rating round's raters (moment_ratings) in submission order; a moment rated by n < 3 raters repeats "
    "their ratings in order (rater columns r1, r2, r1 for n = 2; r1, r1, r1 for n = 1) and its line says "
    "saliency_filled: true; a cell nobody rated gets 2 (fair); each line's saliency_raters says how many real "
    "raters it has"
)
MAX_RATERS = 3


def stable_qid(moment_id: str) -> int:
    """A qid that never changes for a moment (QVHighlights qids are integers): 12 hex digits of its id's hash."""
    return int(hashlib.sha256(moment_id.encode()).hexdigest()[:12], 16)


def bucket_of(length: float) -> str | None:
    for name, lo, hi in BUCKETS:
        if lo < length <= hi:
            return name
    return None


def three_ratings(scores: list[list[int | None]] | None) -> tuple[list[list[int]], int]:
    """Per cell exactly three ratings (see FILL_RULE), and how many cells nobody rated."""
    out, unrated = [], 0
    for cell in scores or []:
        real = [int(s) for s in cell if s is not None]
        if not real:
            unrated += 1
            real = [UNRATED_SCORE]
        out.append([real[j % len(real)] for j in range(3)] if len(real) < 3 else real[:3])
    return out, unrated


def rater_columns(moment: dict[str, Any], extra: list[dict[str, Any]]) -> tuple[list[list[int | None]], list[str]]:
    """Per cell of ``moment`` the ratings of up to `MAX_RATERS` distinct raters (its own columns first, then the
    ``extra`` rating rows in their order, skipping a rater already counted), and who they are."""
    cells = list(moment["saliency_clip_ids"] or [])
    own = moment["saliency_scores"] or [[] for _ in cells]
    raters = list(moment["raters"] or [])[:MAX_RATERS]
    columns: list[list[int | None]] = [[cell[j] if j < len(cell) else None for cell in own] for j in range(len(raters))]
    for row in extra:
        if len(raters) >= MAX_RATERS:
            break
        if row["rater"] in raters:
            continue
        given = dict(zip(row["saliency_clip_ids"] or [], row["saliency_scores"] or [], strict=True))
        raters.append(row["rater"])
        columns.append([given.get(k) for k in cells])
    return [[col[i] for col in columns] for i in range(len(cells))], raters


def _annotated_moments(view: ExportView) -> list[dict[str, Any]]:
    ds = view.dataset
    if not ds.has_table("moments"):
        return []
    return [r for r in ds.read_table("moments").to_pylist() if r["accepted"] and r["windows"] and r["query"].strip()]


def _segment_splits(view: ExportView) -> dict[str, list[tuple[float, float, str]]]:
    """flight id -> (start, end, split) of its exported clips: a segment takes the split of its clips."""
    out: dict[str, list[tuple[float, float, str]]] = {}
    for split in view.splits:
        for c in view.by_split[split]:
            row = c.clip
            if c.source is None and row.get("flight_id"):
                out.setdefault(row["flight_id"], []).append((float(row["start_s"]), float(row["end_s"]), split))
    return out


def _split_of(spans: list[tuple[float, float, str]], start: float, end: float) -> str | None:
    """The split holding most of the segment's clip time; a segment no clip overlaps (a stretch ingest cut
    nothing from) takes the split holding most of its flight's clips."""
    votes: dict[str, float] = {}
    for a, b, split in spans:
        overlap = min(b, end) - max(a, start)
        if overlap > 0:
            votes[split] = votes.get(split, 0.0) + overlap
    if not votes:
        for a, b, split in spans:
            votes[split] = votes.get(split, 0.0) + b - a
    if not votes:
        return None
    return sorted(votes.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


def _write_from_moments(
    view: ExportView, stage: Path, moments: list[dict[str, Any]], *, media: str, features: Any
) -> dict[str, Any]:
    from dvtr_data.annotation.moments import relevant_cells as segment_cells
    from dvtr_data.annotation.moments import segment_vid
    from dvtr_data.annotation.ratings import accepted_ratings

    spans = _segment_splits(view)
    ratings = accepted_ratings(view.dataset)
    rated_moments = 0
    skipped = {"no_split": 0, "longer_than_150s": 0, "videos_missing": 0, "outside_segment": 0}
    by_split: dict[str, list[dict[str, Any]]] = {s: [] for s in view.splits}
    segments: dict[str, tuple[str, float, float]] = {}
    qids: dict[int, str] = {}
    filled = unrated = 0
    raters_hist: Counter[int] = Counter()
    for m in sorted(moments, key=lambda r: r["moment_id"]):
        start, end = float(m["segment_start_s"]), float(m["segment_end_s"])
        duration = round(end - start, 3)
        if duration > MAX_DURATION_S + 1e-6:
            skipped["longer_than_150s"] += 1
            continue
        split = _split_of(spans.get(m["flight_id"], []), start, end)
        if split is None:
            skipped["no_split"] += 1
            continue
        windows = [
            [round(max(0.0, a - start), 3), round(min(duration, b - start), 3)] for a, b in m["windows"] if b > start and a < end
        ]
        windows = [w for w in windows if w[1] > w[0]]
        if not windows:
            skipped["outside_segment"] += 1
            continue
        cells = list(m["saliency_clip_ids"] or [])
        scores, raters = rater_columns(m, ratings.get(m["moment_id"], []))
        rated_moments += int(len(raters) > len(m["raters"] or []))
        if not cells or len(scores) != len(cells):
            cells, scores = segment_cells(windows, duration), []
        keep = [i for i, k in enumerate(cells) if k < max(1, int(duration / CELL_S + 1e-9))]
        cells = [cells[i] for i in keep]
        scores = [scores[i] for i in keep] if scores else [[] for _ in cells]
        three, none = three_ratings(scores)
        n_raters = len(raters)
        raters_hist[n_raters] += 1
        filled += int(n_raters < 3)
        unrated += none
        qid = stable_qid(m["moment_id"])
        if qids.setdefault(qid, m["moment_id"]) != m["moment_id"]:
            raise DatasetError(f"moments {qids[qid]!r} and {m['moment_id']!r} hash to one qid; rename one")
        vid = segment_vid(m["flight_id"], start)
        segments[vid] = (m["flight_id"], start, end)
        by_split[split].append({
            "qid": qid, "query": " ".join(m["query"].split()), "duration": duration, "vid": vid,
            "relevant_clip_ids": cells, "saliency_scores": three, "relevant_windows": windows,
            "saliency_raters": n_raters, "saliency_filled": n_raters < MAX_RATERS, "moment_id": m["moment_id"],
            "flight_id": m["flight_id"],
            "segment": [start, end],
        })
    notes = []
    buckets: dict[str, dict[str, int]] = {}
    written = 0
    for split in view.splits:
        lines = sorted(by_split[split], key=lambda q: q["qid"])
        (stage / f"highlight_{split}_release.jsonl").write_text(
            "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in lines), encoding="utf-8"
        )
        written += len(lines)
        counts = {name: 0 for name, _, _ in BUCKETS}
        for q in lines:
            for a, b in q["relevant_windows"]:
                name = bucket_of(b - a)
                if name:
                    counts[name] += 1
        buckets[split] = counts
        empty = [name for name, n in counts.items() if n == 0]
        if lines and empty:
            notes.append(
                f"split {split}: no window in length bucket(s) {', '.join(empty)} (short <= 10 s, middle 10-30 s, "
                "long 30-150 s): the official standalone_eval/eval.py cannot score this split (it needs every "
                "bucket); dvtr's qvh_eval reports null for the empty bucket(s)"
            )
    if filled:
        notes.append(f"{filled} moment(s) have fewer than three raters (their lines say saliency_filled: true): "
                     f"{FILL_RULE}")
    if unrated:
        notes.append(f"{unrated} relevant cell(s) nobody rated got {UNRATED_SCORE}")
    for name, n in skipped.items():
        if n:
            notes.append(f"{n} moment(s) skipped: {name.replace('_', ' ')}")
    flights = view.flights
    if media != "none":
        folder = stage / "videos"
        folder.mkdir()
        for fid in sorted({f for f, _, _ in segments.values()}):
            src = Path(str((flights.get(fid) or {}).get("source_path") or ""))
            if not src.is_file():
                skipped["videos_missing"] += 1
                continue
            place_media(src, folder / f"{fid}{src.suffix.lower() or '.mp4'}", media)
    extra: dict[str, Any] = {
        "source": "moments",
        "saliency": {"rule": FILL_RULE, "moments_filled": filled, "cells_unrated": unrated,
                     "moments_with_rating_round": rated_moments,
                     "raters": {str(k): v for k, v in sorted(raters_hist.items())}},
        "length_buckets": buckets,
        "segments": {vid: {"flight_id": f, "start_s": a, "end_s": b} for vid, (f, a, b) in sorted(segments.items())},
        "clip_length_s": CELL_S,
    }
    if features is not None:
        from dvtr_data.export.moment_features import write_moment_features

        queries = {q["qid"]: q["query"] for split in view.splits for q in by_split[split]}
        sources = {}
        for vid, (fid, a, b) in segments.items():
            sources[vid] = (Path(str((flights.get(fid) or {}).get("source_path") or "")), a, b)
        extra["features"] = write_moment_features(stage / "features", sources, queries, features)
    return {
        "skipped": skipped,
        "notes": notes,
        "written": written,
        "empty_reason": "no accepted moment belongs to a flight with clips in the exported splits",
        "extra": extra,
    }
