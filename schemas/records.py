"""Typed rows: one record type per table, the one constructor every writer uses.

Each class mirrors its table's pyarrow schema in `tables.py` field for field (``tests/test_records.py`` holds them
equal): required fields are the schema's non-nullable columns, every nullable column defaults to ``None``. A writer
builds rows with these classes and hands `to_rows` (or `Dataset.replace_rows`) plain dicts, so a misspelt or
forgotten column fails where the row is made, not when the table is written.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any, ClassVar


@dataclass
class Row:
    """Base of the typed rows: ``TABLE`` names the table."""

    TABLE: ClassVar[str] = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def replace(self, **values: Any) -> Any:
        """A copy with ``values`` changed (unknown names are an error)."""
        unknown = set(values) - set(self.columns())
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field(s) {sorted(unknown)}")
        data = self.as_dict()
        data.update(values)
        return type(self)(**data)


@dataclass
class FlightRow(Row):
    """One row of ``flights`` (schema flights/1)."""

    TABLE: ClassVar[str] = "flights"

    flight_id: str
    status: str
    source_path: str
    file_name: str
    size_bytes: int
    settings_hash: str
    ingested_at: datetime
    error: str | None = None
    warnings: list[str] | None = None
    content_hash: str | None = None
    mtime_ns: int | None = None
    duration_s: float | None = None
    n_frames: int | None = None
    fps: float | None = None
    fps_variable: bool | None = None
    width: int | None = None
    height: int | None = None
    rotation: int | None = None
    codec: str | None = None
    pix_fmt: str | None = None
    bit_rate: int | None = None
    has_audio: bool | None = None
    recorded_at: datetime | None = None
    platform: str | None = None
    telemetry_path: str | None = None
    telemetry_format: str | None = None
    telemetry_cues: int | None = None
    n_shots: int | None = None
    n_clips: int | None = None
    licence: str | None = None
    owner: str | None = None
    location_private: bool | None = None


@dataclass
class ClipRow(Row):
    """One row of ``clips`` (schema clips/2)."""

    TABLE: ClassVar[str] = "clips"

    clip_id: str
    flight_id: str
    status: str
    shot_index: int
    window_index: int
    start_frame: int
    end_frame: int
    start_s: float
    end_s: float
    duration_s: float
    qc_verdict: str
    writer: str
    error: str | None = None
    split_reason: str | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    n_frames: int | None = None
    clip_path: str | None = None
    keyframe_paths: list[str] | None = None
    motion: float | None = None
    motion_kind: str | None = None
    sharpness: float | None = None
    exposure: float | None = None
    clipped_dark: float | None = None
    clipped_bright: float | None = None
    qc_reasons: list[str] | None = None
    lat: float | None = None
    lon: float | None = None
    altitude_m: float | None = None
    altitude_kind: str | None = None
    gimbal_pitch: float | None = None
    speed_mps: float | None = None
    telemetry_cues: int | None = None
    category: str | None = None
    category_source: str | None = None


@dataclass
class CaptionRow(Row):
    """One row of ``captions`` (schema captions/2)."""

    TABLE: ClassVar[str] = "captions"

    caption_id: str
    clip_id: str
    text: str
    origin: str
    status: str
    accepted: bool
    writer: str
    tokens: list[str] | None = None
    annotator: str | None = None
    guideline_version: str | None = None
    source_id: str | None = None
    ls_project_id: int | None = None
    ls_task_id: int | None = None
    ls_annotation_id: int | None = None
    lead_time_s: float | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    draft_shown: str | None = None
    edit_distance: int | None = None
    qc_choices: list[str] | None = None
    category: str | None = None
    flags: list[str] | None = None


@dataclass
class ReviewRow(Row):
    """One row of ``reviews`` (schema reviews/1)."""

    TABLE: ClassVar[str] = "reviews"

    review_id: str
    caption_id: str
    clip_id: str
    status: str
    reviewer: str
    author: str | None = None
    reason: str | None = None
    fixed_caption_id: str | None = None
    ls_project_id: int | None = None
    ls_task_id: int | None = None
    ls_annotation_id: int | None = None
    lead_time_s: float | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass
class SplitRow(Row):
    """One row of ``splits`` (schema splits/2)."""

    TABLE: ClassVar[str] = "splits"

    clip_id: str
    split: str
    group_id: str
    writer: str
    group_kind: str | None = None


@dataclass
class ImportRow(Row):
    """One row of ``imports`` (schema imports/1)."""

    TABLE: ClassVar[str] = "imports"

    clip_id: str
    source: str
    format: str
    source_id: str
    source_order: int
    n_captions: int
    imported_at: datetime
    source_split: str | None = None
    list_order: int | None = None
    media_path: str | None = None


@dataclass
class ReleaseRow(Row):
    """One row of ``releases`` (schema releases/1)."""

    TABLE: ClassVar[str] = "releases"

    release: str
    path: str
    created_at: datetime
    tool_version: str
    clips: int
    train_clips: int
    val_clips: int
    test_clips: int
    captions: int
    splits_sha256: str
    captions_sha256: str
    manifest_sha256: str
    previous: str | None = None


@dataclass
class MomentRatingRow(Row):
    """One row of ``moment_ratings`` (schema moment_ratings/1): one rater's 0-4 ratings of a moment's cells."""

    TABLE: ClassVar[str] = "moment_ratings"

    moment_id: str
    rater: str
    source: str
    status: str
    accepted: bool
    saliency_clip_ids: list[int] | None = None
    saliency_scores: list[int | None] | None = None
    flags: list[str] | None = None
    ls_project_id: int | None = None
    ls_task_id: int | None = None
    ls_annotation_id: int | None = None
    lead_time_s: float | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


RECORDS: dict[str, type[Row]] = {
    cls.TABLE: cls for cls in (FlightRow, ClipRow, CaptionRow, SplitRow, ImportRow, ReleaseRow)
}

RECORDS[ReviewRow.TABLE] = ReviewRow  # reviews (annotate review pull)
RECORDS[MomentRatingRow.TABLE] = MomentRatingRow  # moment_ratings (annotate pull --task ratings)


def to_rows(records: list[Row]) -> list[dict[str, Any]]:
    """Plain dicts for `validate` / `Dataset.write_table`."""
    return [r.as_dict() for r in records]
