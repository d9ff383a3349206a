"""Schemas of the dataset tables. One `TableSchema` per table; bump ``version`` on any incompatible change."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from dvtr_data.errors import SchemaError

SCHEMA_METADATA_KEY = b"dvtr.schema"
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class TableSchema:
    """A table's name, version, arrow schema, key columns, id columns that must be clean, and who writes it.

    Ownership (architecture.md): a table has one ``owner`` (the only command that writes it), or its rows carry
    their writer in ``writer_column`` and each writer replaces only its own rows (`Dataset.replace_rows`).
    """

    name: str
    version: int
    schema: pa.Schema
    key: tuple[str, ...]
    clean_ids: tuple[str, ...] = field(default=())
    owner: str | None = None
    writer_column: str | None = None

    @property
    def tag(self) -> str:
        return f"{self.name}/{self.version}"

    def with_metadata(self) -> pa.Schema:
        return self.schema.with_metadata({SCHEMA_METADATA_KEY: self.tag.encode()})


def _f(name: str, typ: pa.DataType, nullable: bool = True) -> pa.Field:
    return pa.field(name, typ, nullable=nullable)


_STR = pa.string()
_F64 = pa.float64()
_I64 = pa.int64()
_TS = pa.timestamp("us", tz="UTC")



FLIGHTS = TableSchema(
    name="flights",
    version=1,
    owner="ingest",
    key=("flight_id",),
    clean_ids=("flight_id",),
    schema=pa.schema(
        [
            _f("flight_id", _STR, False),  # "f" + first 16 hex digits of the content sha256
            _f("status", _STR, False),  # ok | error
            _f("error", _STR),  # one line: what went wrong and where
            _f("warnings", pa.list_(_STR)),  # e.g. a malformed sidecar
            _f("source_path", _STR, False),
            _f("file_name", _STR, False),
            _f("size_bytes", _I64, False),
            _f("content_hash", _STR),  # sha256 of the whole file
            _f("mtime_ns", _I64),
            _f("duration_s", _F64),
            _f("n_frames", _I64),
            _f("fps", _F64),  # nominal (average) frame rate
            _f("fps_variable", pa.bool_()),
            _f("width", pa.int32()),  # display size, after rotation
            _f("height", pa.int32()),
            _f("rotation", pa.int16()),  # degrees clockwise the stored frames must be turned for display
            _f("codec", _STR),
            _f("pix_fmt", _STR),
            _f("bit_rate", _I64),
            _f("has_audio", pa.bool_()),
            _f("recorded_at", _TS),  # from telemetry or container metadata, when known
            _f("platform", _STR),  # drone / camera, when known
            _f("telemetry_path", _STR),
            _f("telemetry_format", _STR),
            _f("telemetry_cues", _I64),
            _f("n_shots", pa.int32()),
            _f("n_clips", pa.int32()),
            _f("licence", _STR),
            _f("owner", _STR),
            _f("location_private", pa.bool_()),  # drop GPS before publishing
            _f("settings_hash", _STR, False),  # ingest settings this row was made with
            _f("ingested_at", _TS, False),
        ]
    ),
)

CLIPS = TableSchema(
    name="clips",
    version=2,  # 2: `writer` (ingest | import:<name>)
    writer_column="writer",
    key=("clip_id",),
    clean_ids=("clip_id", "flight_id"),
    schema=pa.schema(
        [
            _f("clip_id", _STR, False),  # "<flight_id>-<start_frame>-<end_frame>"
            _f("flight_id", _STR, False),
            _f("status", _STR, False),  # ok | error
            _f("error", _STR),
            _f("shot_index", pa.int32(), False),  # index of the shot (cut detection) within the flight
            _f("window_index", pa.int32(), False),  # index of the window within the shot
            _f("start_frame", _I64, False),  # inclusive, in the flight's decode order
            _f("end_frame", _I64, False),  # exclusive
            _f("start_s", _F64, False),  # seconds inside the untrimmed flight
            _f("end_s", _F64, False),
            _f("duration_s", _F64, False),
            _f("split_reason", _STR),  # why the window ends here: cut | window | tail | telemetry:<event> | end
            _f("fps", _F64),  # of the clip file (CFR)
            _f("width", pa.int32()),
            _f("height", pa.int32()),
            _f("n_frames", _I64),
            _f("clip_path", _STR),  # relative to the dataset folder; null with --no-cut
            _f("keyframe_paths", pa.list_(_STR)),
            _f("motion", _F64),  # mean abs luma change over one second on a blurred ~256 px grey image, 0-255
            _f("motion_kind", _STR),  # hover | moving
            _f("sharpness", _F64),  # variance of the Laplacian, median over sampled frames
            _f("exposure", _F64),  # mean luma 0-255
            _f("clipped_dark", _F64),  # share of pixels <= 8
            _f("clipped_bright", _F64),  # share of pixels >= 247
            _f("qc_verdict", _STR, False),  # pass | reject
            _f("qc_reasons", pa.list_(_STR)),
            _f("lat", _F64),
            _f("lon", _F64),
            _f("altitude_m", _F64),
            _f("altitude_kind", _STR),  # relative | absolute | barometric | null
            _f("gimbal_pitch", _F64),
            _f("speed_mps", _F64),
            _f("telemetry_cues", _I64),  # cues that fell inside the clip
            _f("category", _STR),
            _f("category_source", _STR),  # taxonomy | user | zero-shot | null
            _f("writer", _STR, False),  # ingest | import:<name>
        ]
    ),
)

CAPTIONS = TableSchema(
    name="captions",
    version=2,  # 2: `writer` (annotate | import:<name> | demo)
    writer_column="writer",
    key=("caption_id",),
    clean_ids=("caption_id", "clip_id"),
    schema=pa.schema(
        [
            _f("caption_id", _STR, False),  # stable: from origin, clip and source ids (e.g. Label Studio annotation)
            _f("clip_id", _STR, False),
            _f("text", _STR, False),  # raw text exactly as written (untrusted: escape wherever rendered)
            _f("tokens", pa.list_(_STR)),  # normalised token list (lower-cased words), as CLIP4Clip loaders expect
            _f("origin", _STR, False),  # human | imported | precaption | simulated
            _f("status", _STR, False),  # submitted | cancelled | skipped
            _f("annotator", _STR),
            _f("guideline_version", _STR),
            _f("source_id", _STR),  # imported datasets: the published video id, verbatim (may end in a space)
            _f("ls_project_id", _I64),
            _f("ls_task_id", _I64),
            _f("ls_annotation_id", _I64),
            _f("lead_time_s", _F64),
            _f("created_at", _TS),
            _f("updated_at", _TS),
            _f("draft_shown", _STR),  # the pre-caption the annotator saw
            _f("edit_distance", _I64),  # characters from the draft shown to the text
            _f("qc_choices", pa.list_(_STR)),  # the annotator's QC choices (usable, too blurry, ...)
            _f("category", _STR),
            _f("flags", pa.list_(_STR)),  # empty | too_short | duplicate | unchanged_draft | non_language | deleted_in_labelstudio (non-blocking)
            _f("accepted", pa.bool_(), False),  # usable for training: submitted and no blocking flag
            _f("writer", _STR, False),  # annotate (pull) | import:<name> | demo
        ]
    ),
)

SPLITS = TableSchema(
    name="splits",
    version=2,  # 2: `writer` (split | import:<name>, the published split)
    writer_column="writer",
    key=("clip_id",),
    clean_ids=("clip_id",),
    schema=pa.schema(
        [
            _f("clip_id", _STR, False),
            _f("split", _STR, False),  # train | val | test | (excluded)
            _f("group_id", _STR, False),  # clips of one group never straddle splits
            _f("group_kind", _STR),  # flight | location | near-duplicate | merged | published
            _f("writer", _STR, False),  # split | import:<name>
        ]
    ),
)

TABLES: dict[str, TableSchema] = {t.name: t for t in (FLIGHTS, CLIPS, CAPTIONS, SPLITS)}


def schema_of(name: str) -> TableSchema:
    try:
        return TABLES[name]
    except KeyError:
        raise SchemaError(f"unknown table {name!r}; known: {', '.join(sorted(TABLES))}") from None


def empty_table(name: str) -> pa.Table:
    return schema_of(name).with_metadata().empty_table()


def _register(table: TableSchema) -> None:
    TABLES[table.name] = table


def validate(name: str, table: pa.Table | list[dict]) -> pa.Table:
    """Return ``table`` cast to the schema of ``name`` with its metadata, or raise `SchemaError`.

    Checks: exactly the declared columns (none missing, none extra), types castable without loss, no nulls in
    non-nullable columns, unique keys, ids free of whitespace and odd characters.
    """
    spec = schema_of(name)
    if isinstance(table, list):
        absent_keys = {c for row in table for c in spec.schema.names if c not in row}
        extra_keys = {c for row in table for c in row if c not in spec.schema.names}
        if absent_keys or extra_keys:
            raise SchemaError(
                f"{name}: rows do not match schema {spec.tag}: missing {sorted(absent_keys)}, "
                f"extra {sorted(extra_keys)}"
            )
        try:
            table = pa.Table.from_pylist(table, schema=spec.schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise SchemaError(f"{name}: a value does not fit schema {spec.tag}: {exc}") from exc
    names = table.schema.names
    missing = [c for c in spec.schema.names if c not in names]
    extra = [c for c in names if c not in spec.schema.names]
    if missing or extra:
        raise SchemaError(f"{name}: columns do not match schema {spec.tag}: missing {missing}, extra {extra}")
    table = table.select(spec.schema.names)
    for fld in spec.schema:
        if not fld.nullable and table.column(fld.name).null_count:
            raise SchemaError(f"{name}: column {fld.name!r} has {table.column(fld.name).null_count} null value(s)")
    try:
        table = table.cast(spec.schema, safe=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError) as exc:
        raise SchemaError(f"{name}: a column does not fit schema {spec.tag}: {exc}") from exc
    if spec.key and table.num_rows:
        keys = table.group_by(list(spec.key)).aggregate([([], "count_all")])
        dup = keys.filter(pc.greater(keys.column("count_all"), 1))
        if dup.num_rows:
            first = {k: dup.column(k)[0].as_py() for k in spec.key}
            raise SchemaError(f"{name}: {dup.num_rows} duplicate key(s) on {list(spec.key)}, e.g. {first}")
    for col in spec.clean_ids:
        for value in table.column(col).to_pylist():
            if value is not None and not _ID_RE.match(value):
                raise SchemaError(f"{name}: id {value!r} in column {col!r} is not a clean id")
    return table.replace_schema_metadata({SCHEMA_METADATA_KEY: spec.tag.encode()})
