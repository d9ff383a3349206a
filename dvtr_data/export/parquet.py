"""Plain Parquet: one file per split, one row per clip, its captions as real list columns.

Readable as is by pandas, pyarrow, DuckDB and Hugging Face ``datasets`` (``load_dataset("parquet",
data_files={"test": "test.parquet"})``; the file names also match the hub's split patterns, so ``data_dir`` works).
The schema name and version travel in the file metadata (``dvtr.schema`` = ``export-parquet/1``).

The folder also gets a ``README.md`` with a Hugging Face dataset card: YAML front matter (licence, task
categories, size category, and ``configs`` whose ``data_files`` name the split files, ``val`` published as the
hub's ``validation``) and a short body, so the folder can be uploaded to the hub as is and
``load_dataset(folder)`` reads it. Names, licences and owners come from users: YAML quoting and `md_escape`
keep them data.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from dvtr_data import __version__
from dvtr_data.card.escape import md_escape
from dvtr_data.export.view import ExportView
from dvtr_data.media import place_media

SCHEMA_TAG = b"export-parquet/1"
LIST_COLUMNS = ("caption_ids", "captions", "tokens")

EXPORT_SCHEMA = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field(
            "video_id", pa.string(), nullable=False
        ),  # the id other tools see (published id for imported clips)
        pa.field("split", pa.string(), nullable=False),
        pa.field("group_id", pa.string(), nullable=False),
        pa.field("flight_id", pa.string(), nullable=False),
        pa.field("source", pa.string()),  # the import's name; null for our own clips
        pa.field("source_id", pa.string()),  # the published id, verbatim
        pa.field("start_s", pa.float64()),  # span inside the untrimmed flight
        pa.field("end_s", pa.float64()),
        pa.field("duration_s", pa.float64()),
        pa.field("start_frame", pa.int64()),
        pa.field("end_frame", pa.int64()),
        pa.field("fps", pa.float64()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("clip_path", pa.string()),  # relative to the dataset folder
        pa.field("video", pa.string()),  # relative to this export, when media were exported
        pa.field("keyframe_paths", pa.list_(pa.string())),
        pa.field("lat", pa.float64()),  # null for flights marked location-private
        pa.field("lon", pa.float64()),
        pa.field("altitude_m", pa.float64()),
        pa.field("altitude_kind", pa.string()),
        pa.field("category", pa.string()),
        pa.field("category_source", pa.string()),
        pa.field("n_captions", pa.int32(), nullable=False),
        pa.field("caption_ids", pa.list_(pa.string()), nullable=False),
        pa.field("captions", pa.list_(pa.string()), nullable=False),
        pa.field("tokens", pa.list_(pa.list_(pa.string())), nullable=False),
    ]
)


def _caption_lists(view: ExportView, clips: list) -> dict[str, pa.Array]:
    """``caption_ids``, ``captions`` and ``tokens`` list columns for ``clips``, sliced from the Arrow captions."""
    table = view.captions.table
    counts = np.array([c.n_captions for c in clips], dtype=np.int64)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    if len(clips) and counts.sum():
        rows = np.concatenate([np.arange(c.cap_start, c.cap_end, dtype=np.int64) for c in clips])
    else:
        rows = np.zeros(0, np.int64)
    take = pa.array(rows, pa.int64())
    out = {}
    for name, col in (("caption_ids", "caption_id"), ("captions", "text")):
        out[name] = pa.ListArray.from_arrays(offsets, table.column(col).take(take).combine_chunks())
    tokens = table.column("tokens").take(take).combine_chunks()
    if tokens.null_count:  # a caption without a token list: tokenise it, as the view does
        flat = view.captions.column("tokens")
        tokens = pa.array([flat[i] for i in rows.tolist()], pa.list_(pa.string()))
    out["tokens"] = pa.ListArray.from_arrays(offsets, tokens)
    return out


def write_parquet_export(view: ExportView, stage: Path, *, media: str, drop_gps: bool) -> dict[str, Any]:
    skipped = {"media_missing": 0, "gps_dropped": 0}
    for split in view.splits:
        clips = view.by_split[split]
        cols: dict[str, list[Any]] = {f.name: [] for f in EXPORT_SCHEMA if f.name not in LIST_COLUMNS}
        for c in clips:
            row = c.clip
            video = None
            if media != "none" and row["clip_path"]:
                src = view.dataset.root / row["clip_path"]
                if src.is_file():
                    video = f"videos/{c.clip_id}{Path(row['clip_path']).suffix}"
                    place_media(src, stage / video, media)
                else:
                    skipped["media_missing"] += 1
            hide = drop_gps or c.location_private
            if hide and row["lat"] is not None:
                skipped["gps_dropped"] += 1
            values = {
                "clip_id": c.clip_id,
                "video_id": c.export_id,
                "split": split,
                "group_id": c.group_id,
                "flight_id": row["flight_id"],
                "source": c.source,
                "source_id": c.source_id,
                "start_s": row["start_s"],
                "end_s": row["end_s"],
                "duration_s": row["duration_s"],
                "start_frame": row["start_frame"],
                "end_frame": row["end_frame"],
                "fps": row["fps"],
                "width": row["width"],
                "height": row["height"],
                "clip_path": row["clip_path"],
                "video": video,
                "keyframe_paths": row["keyframe_paths"] or [],
                "lat": None if hide else row["lat"],
                "lon": None if hide else row["lon"],
                "altitude_m": None if hide else row["altitude_m"],
                "altitude_kind": row["altitude_kind"],
                "category": row["category"],
                "category_source": row["category_source"],
                "n_captions": c.n_captions,
            }
            for k, v in values.items():
                cols[k].append(v)
        lists = _caption_lists(view, clips)
        arrays = [
            lists[f.name] if f.name in LIST_COLUMNS else pa.array(cols[f.name], f.type) for f in EXPORT_SCHEMA
        ]
        table = pa.Table.from_arrays(arrays, schema=EXPORT_SCHEMA)
        meta = {
            b"dvtr.schema": SCHEMA_TAG,
            b"dvtr.export": json.dumps(
                {"dataset": view.name, "split": split, "tool_version": __version__}
            ).encode(),
        }
        table = table.replace_schema_metadata(meta)
        pq.write_table(table, stage / f"{split}.parquet", compression="zstd")
    (stage / "README.md").write_text(hub_readme(view, drop_gps=drop_gps), encoding="utf-8")
    return {"skipped": skipped, "files": [f"{s}.parquet" for s in view.splits]}


# Hugging Face dataset card ---------------------------------------------------------------------------------
HUB_SPLIT = {"train": "train", "val": "validation", "test": "test"}
# licence identifiers the hub knows (a subset: the ones footage and datasets are published under)
HUB_LICENCES = frozenset(
    {
        *("apache-2.0", "mit", "bsd-2-clause", "bsd-3-clause", "gpl-3.0", "unlicense"),
        *("cc0-1.0", "pddl", "odc-by", "odbl", "cdla-permissive-2.0", "cdla-sharing-1.0"),
        *("cc-by-2.0", "cc-by-2.5", "cc-by-3.0", "cc-by-4.0", "cc-by-sa-3.0", "cc-by-sa-4.0", "cc-by-nd-4.0"),
        *("cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0", "cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0"),
        *("cc-by-nc-nd-3.0", "cc-by-nc-nd-4.0"),
    }
)
SIZE_CATEGORIES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
)
COLUMN_NOTES = {
    "clip_id": "our clip id: flight id and frame range",
    "video_id": "the id other tools see (the published id for imported clips)",
    "split": "train, val or test",
    "group_id": "clips of one group (flight, place, near-duplicates) are never in two splits",
    "source": "name of the imported published set; empty for our own clips",
    "start_s": "span inside the untrimmed flight, seconds",
    "keyframe_paths": "keyframe images, relative to the dataset folder (not part of this export)",
    "lat": "clip centre position; empty when unknown or for location-private flights",
    "altitude_m": "as the telemetry gives it; see altitude_kind",
    "category": "scene category; category_source says who set it",
    "captions": "accepted captions, raw text (untrusted: escape when rendering)",
    "tokens": "lower-cased word lists, one per caption",
}


def hub_licence(licences: set[str | None]) -> dict[str, str]:
    """Front-matter licence fields: a hub identifier when every row has one known licence; ``other`` (with a
    ``license_name``) for one unknown or several licences; ``unknown`` when none was stated."""
    stated = {str(x).strip() for x in licences if x and str(x).strip()}
    if not stated or None in licences or "" in licences:
        return {"license": "unknown"} if not stated else {"license": "other", "license_name": "mixed"}
    if len(stated) > 1:
        return {"license": "other", "license_name": "mixed"}
    only = stated.pop()
    slug = "-".join(only.lower().replace("_", " ").split())
    if slug in HUB_LICENCES:
        return {"license": slug}
    clean = "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in slug).strip("-") or "custom"
    return {"license": "other", "license_name": clean}


def size_category(n: int) -> str:
    for limit, name in SIZE_CATEGORIES:
        if n < limit:
            return name
    return "n>100M"


def hub_readme(view: ExportView, *, drop_gps: bool) -> str:
    """The export's ``README.md``: hub front matter, and a body saying what the files hold on what terms."""
    clip_flights = {c.clip["flight_id"] for c in view.all_clips() if c.source is None}  # never null in clips
    flights_t = view.dataset.read_table("flights")
    by_flight = {r["flight_id"]: r for r in flights_t.select(["flight_id", "licence", "owner"]).to_pylist()}
    licences = [by_flight.get(f, {}).get("licence") for f in sorted(clip_flights)]
    owners = [by_flight.get(f, {}).get("owner") for f in sorted(clip_flights)]
    imported = sorted({c.source for c in view.all_clips() if c.source is not None})
    counts = view.counts()
    n_rows = sum(v["clips"] for v in counts.values())
    lic = hub_licence(set(licences) | ({None} if imported else set()))
    front: dict[str, Any] = {
        **lic,
        "pretty_name": view.name,
        "task_categories": ["text-to-video", "video-text-to-text"],
        "tags": ["video-text-retrieval", "aerial", "drone", "dvtr-data"],
        "size_categories": [size_category(n_rows)],
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": HUB_SPLIT.get(s, s), "path": f"{s}.parquet"} for s in view.splits],
            }
        ],
    }
    yaml_text = yaml.safe_dump(front, sort_keys=False, allow_unicode=True, width=1000)

    def tally(values: list[Any]) -> str:
        seen: dict[str, int] = {}
        for v in values:
            key = str(v).strip() if v and str(v).strip() else "not stated"
            seen[key] = seen.get(key, 0) + 1
        return (
            "; ".join(f"{md_escape(k)} ({n} flight{'s' if n != 1 else ''})" for k, n in seen.items()) or "-"
        )

    lines = [
        f"# {md_escape(view.name)}",
        "",
        (
            f"Video-text retrieval clips of drone flights, exported by dvtr-data {__version__} on "
            f"{datetime.now(UTC).date().isoformat()}: one Parquet file per split, one row per clip, its "
            "accepted captions as list columns (schema `export-parquet/1` in each file's metadata)."
        ),
        "",
        "| split | file | clips | captions |",
        "|---|---|---:|---:|",
        *(
            f"| {HUB_SPLIT.get(s, s)} | {s}.parquet | {counts[s]['clips']} | {counts[s]['captions']} |"
            for s in view.splits
        ),
        "",
        "```python",
        "from datasets import load_dataset",
        'ds = load_dataset("path/to/this/folder")  # or the hub repository holding it',
        "```",
        "",
        "## Licence and owner",
        "",
        f"Own footage: {tally(licences)}. Owner: {tally(owners)}."
        + (
            f" Imported clips ({', '.join(md_escape(x) for x in imported)}) keep the licence and terms "
            "of the set they were published in."
            if imported
            else ""
        ),
        "",
        "## Positions",
        "",
        "No positions: this export was made with `--drop-gps`."
        if drop_gps
        else "Positions (`lat`, `lon`, `altitude_m`) are left empty for flights marked location-private.",
        "",
        "## Columns",
        "",
        *(
            f"- `{f.name}` ({f.type}){': ' + COLUMN_NOTES[f.name] if f.name in COLUMN_NOTES else ''}"
            for f in EXPORT_SCHEMA
        ),
        "",
        (
            "The full dataset card (coverage map, known limitations and biases, caption statistics) is "
            "written by `dvtr-data card`."
        ),
        "",
    ]
    return f"---\n{yaml_text}---\n\n" + "\n".join(lines)
