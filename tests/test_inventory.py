"""`info`'s QC lines: "rejected for" counts rejected clips' reasons only; flags on kept clips are listed apart."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from typer.testing import CliRunner

from dvtr_data.cli import app
from dvtr_data.dataset import Dataset
from dvtr_data.inventory import inventory
from dvtr_data.schemas.records import ClipRow, FlightRow

FID = "f" + "c" * 16


def _clip(n: int, verdict: str, reasons: list[str]) -> dict:
    return ClipRow(clip_id=f"{FID}-{n:07d}-{n + 1:07d}", flight_id=FID, status="ok", shot_index=0, window_index=n,
                   start_frame=n, end_frame=n + 1, start_s=float(n), end_s=n + 1.0, duration_s=1.0,
                   qc_verdict=verdict, qc_reasons=reasons, writer="ingest").as_dict()


def _dataset(root: Path) -> Path:
    ds = Dataset(root).create()
    flight = FlightRow(flight_id=FID, status="ok", source_path="/x/a.mp4", file_name="a.mp4", size_bytes=1,
                       settings_hash="s", ingested_at=datetime(2026, 1, 1, tzinfo=UTC)).as_dict()
    with ds.writing("test"):
        ds.write_table("flights", [flight])
        ds.replace_rows("clips", "ingest", [
            _clip(0, "reject", ["blurry", "too_dark"]),
            _clip(1, "reject", ["blurry"]),
            _clip(2, "pass", ["telemetry:position_jump"]),  # a flag on a kept clip: not a rejection
            _clip(3, "pass", ["telemetry:position_jump", "telemetry:altitude_spike"]),
            _clip(4, "pass", []),
        ])
    return ds.root


def test_rejected_for_counts_only_rejected_clips_and_flags_are_apart(tmp_path: Path) -> None:
    inv = inventory(Dataset(_dataset(tmp_path / "ds")))
    assert inv.qc_reasons == {"blurry": 2, "too_dark": 1}
    assert inv.qc_flags == {"telemetry:position_jump": 2, "telemetry:altitude_spike": 1}


def test_info_prints_both_lines(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["info", "--dataset", str(_dataset(tmp_path / "ds"))], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rejected = next(line for line in result.stdout.splitlines() if "rejected for" in line)
    assert "blurry 2" in rejected and "too_dark 1" in rejected and "telemetry" not in rejected
    flagged = next(line for line in result.stdout.splitlines() if "flagged, kept" in line)
    assert "telemetry:altitude_spike 1" in flagged and "telemetry:position_jump 2" in flagged


def test_tables_lists_every_table_the_dataset_has(tmp_path: Path) -> None:
    ds = Dataset(_dataset(tmp_path / "ds"))
    assert inventory(ds).tables == {"flights": 1, "clips": 5}  # the two written above, nothing invented
    with ds.writing("test"):
        ds.write_table("moment_ratings", [])  # a table of the moments round trip, empty: listed with 0 rows
    assert inventory(ds).tables == {"flights": 1, "clips": 5, "moment_ratings": 0}
