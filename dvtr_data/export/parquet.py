"""Plain Parquet: one file per split, one row per clip, its captions as real list columns.

Readable as is by pandas, pyarrow, DuckDB and Hugging Face ``datasets`` (``load_dataset("parquet",
data_files={"test": "test.parquet"})``; the file names also match the hub's split patterns, so ``data_dir`` works).
The schema name and version travel in the file metadata (``dvtr.schema`` = ``export-parquet/1``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dvtr_data import __version__
from dvtr_data.export.view import ExportView
from dvtr_data.importers.common import place_media

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
    return {"skipped": skipped, "files": [f"{s}.parquet" for s in view.splits]}
