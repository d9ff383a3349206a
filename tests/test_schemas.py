"""Schema validation refuses bad tables before anything is written; writes are atomic."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dvtr_data.dataset import Dataset, atomic_path
from dvtr_data.errors import DatasetError, SchemaError
from dvtr_data.schemas import TABLES, empty_table, validate


def flight_row(**over):
    row = {name: None for name in TABLES["flights"].schema.names}
    row.update(
        flight_id="f0123456789abcdef",
        status="ok",
        source_path="/x/a.mp4",
        file_name="a.mp4",
        size_bytes=10,
        settings_hash="abc",
        ingested_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    row.update(over)
    return row


def test_valid_rows_pass_and_carry_the_schema_tag():
    table = validate("flights", [flight_row()])
    assert table.schema.metadata[b"dvtr.schema"] == b"flights/1"
    assert table.num_rows == 1


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"flight_id": "Party_042 "}, "clean id"),  # USRD-style trailing space is never one of our ids
        ({"status": None}, "null"),
        ({"size_bytes": "ten"}, "does not fit"),
    ],
)
def test_bad_rows_are_refused(bad, match):
    with pytest.raises(SchemaError, match=match):
        validate("flights", [flight_row(**bad)])


def test_missing_and_extra_columns_are_refused():
    row = flight_row()
    del row["codec"]
    with pytest.raises(SchemaError, match="missing"):
        validate("flights", [row])
    with pytest.raises(SchemaError, match="extra"):
        validate("flights", [flight_row(surprise=1)])


def test_duplicate_keys_are_refused():
    with pytest.raises(SchemaError, match="duplicate"):
        validate("flights", [flight_row(), flight_row()])


def test_write_table_validates_first_and_leaves_the_old_file(tmp_path):
    ds = Dataset(tmp_path / "ds").create()
    ds.write_table("flights", [flight_row()])
    before = (ds.table_path("flights")).read_bytes()
    with pytest.raises(SchemaError):
        ds.write_table("flights", [flight_row(status=None)])
    assert ds.table_path("flights").read_bytes() == before
    assert not [p for p in ds.root.iterdir() if p.name.endswith(".tmp")]


def test_atomic_path_keeps_target_when_the_writer_fails(tmp_path):
    target = tmp_path / "t.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["t.bin"]


def test_reading_a_table_from_a_newer_schema_version_is_refused(tmp_path):
    ds = Dataset(tmp_path / "ds").create()
    table = empty_table("clips").replace_schema_metadata({b"dvtr.schema": b"clips/99"})
    pq.write_table(table, ds.table_path("clips"))
    with pytest.raises(DatasetError, match="newer"):
        ds.read_table("clips")


def test_missing_table_reads_empty_and_dataset_requires_toml(tmp_path):
    ds = Dataset(tmp_path / "ds").create()
    assert ds.read_table("clips").num_rows == 0
    with pytest.raises(DatasetError, match="not a dvtr-data dataset"):
        Dataset(tmp_path / "nothing").require()


def test_record_stage_round_trips_settings(tmp_path):
    ds = Dataset(tmp_path / "ds").create(name="mine")
    ds.record_stage("ingest", {"window": {"target_s": 5.0}, "dropped": None})
    cfg = ds.config()
    assert cfg["name"] == "mine"
    assert cfg["stages"]["ingest"]["window"] == {"target_s": 5.0}
    assert "dropped" not in cfg["stages"]["ingest"]


def test_list_columns_are_real_lists():
    assert pa.types.is_list(TABLES["clips"].schema.field("qc_reasons").type)
