"""`dvtr-data clips`: the listing library on hand-written tables, and the command through CliRunner."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dvtr_data.cli import app
from dvtr_data.clips_listing import list_clips
from dvtr_data.dataset import Dataset
from dvtr_data.errors import DatasetError, UsageError
from dvtr_data.schemas.records import CaptionRow, ClipRow, FlightRow, SplitRow

# a file name that rich would read as markup if it were printed as such
MARKUP_NAME = "[bold]vol d'été[/bold].mp4"
FA = "f" + "a" * 16
FB = "f" + "b" * 16
A1, A2, B1 = f"{FA}-0000000-0000150", f"{FA}-0000150-0000300", f"{FB}-0000000-0000100"
IMPORTED = "usrd-x1"


def _clip(
    cid: str, fid: str, start_s: float, end_s: float, verdict: str, reasons: list[str], writer: str = "ingest"
) -> dict:
    return ClipRow(
        clip_id=cid,
        flight_id=fid,
        status="ok",
        shot_index=0,
        window_index=0,
        start_frame=0,
        end_frame=1,
        start_s=start_s,
        end_s=end_s,
        duration_s=end_s - start_s,
        qc_verdict=verdict,
        qc_reasons=reasons,
        writer=writer,
    ).as_dict()


def _caption(n: int, cid: str, accepted: bool, text: str = "a road") -> dict:
    return CaptionRow(
        caption_id=f"c{n}",
        clip_id=cid,
        text=text,
        origin="human",
        status="submitted",
        accepted=accepted,
        writer="annotate",
    ).as_dict()


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    ds = Dataset(tmp_path / "ds").create()
    now = datetime(2026, 1, 1, tzinfo=UTC)
    flights = [
        FlightRow(
            flight_id=fid,
            status="ok",
            source_path=f"/x/{name}",
            file_name=name,
            size_bytes=1,
            settings_hash="s",
            ingested_at=now,
        ).as_dict()
        for fid, name in ((FA, MARKUP_NAME), (FB, "b.mp4"))
    ]
    with ds.writing("test"):
        ds.write_table("flights", flights)
        ds.replace_rows(
            "clips",
            "ingest",
            [
                _clip(A1, FA, 0.0, 5.0, "pass", []),
                _clip(A2, FA, 5.0, 10.0, "reject", ["blurry", "too_dark"]),
                _clip(B1, FB, 0.0, 3.3, "pass", []),
            ],
        )
        ds.replace_rows(
            "clips", "import:usrd", [_clip(IMPORTED, IMPORTED, 0.0, 8.0, "pass", [], "import:usrd")]
        )
        ds.replace_rows(
            "captions",
            "annotate",
            [
                _caption(1, A1, True),
                _caption(2, A1, False, "[red]not markup[/red]"),
                _caption(3, B1, True),
            ],
        )
        ds.replace_rows(
            "splits",
            "split",
            [
                SplitRow(clip_id=A1, split="train", group_id="g1", writer="split").as_dict(),
                SplitRow(clip_id=B1, split="test", group_id="g2", writer="split").as_dict(),
            ],
        )
    return ds.root


# ---- library -----------------------------------------------------------------------------------------------
def test_every_clip_with_span_qc_captions_and_split(dataset: Path) -> None:
    rows = list_clips(dataset)
    # sorted by source: "[bold]..." < "b.mp4" < "import:usrd" (ASCII order), then by start time
    assert [r.clip_id for r in rows] == [A1, A2, B1, IMPORTED]
    assert [r.source for r in rows] == [MARKUP_NAME, MARKUP_NAME, "b.mp4", "import:usrd"]
    assert [(r.start_s, r.end_s) for r in rows] == [(0.0, 5.0), (5.0, 10.0), (0.0, 3.3), (0.0, 8.0)]
    assert [(r.captions_accepted, r.captions_total) for r in rows] == [(1, 2), (0, 0), (1, 1), (0, 0)]
    assert [r.split for r in rows] == ["train", None, "test", None]
    assert rows[1].qc_verdict == "reject" and rows[1].qc_reasons == ["blurry", "too_dark"]


def test_filters_by_flight_id_file_name_import_and_qc(dataset: Path) -> None:
    assert [r.clip_id for r in list_clips(dataset, [MARKUP_NAME])] == [A1, A2]
    assert [r.clip_id for r in list_clips(dataset, [FB])] == [B1]
    assert [r.clip_id for r in list_clips(dataset, ["usrd", "b.mp4"])] == [B1, IMPORTED]
    assert [r.clip_id for r in list_clips(dataset, qc="reject")] == [A2]
    assert [r.clip_id for r in list_clips(dataset, [MARKUP_NAME], qc="pass")] == [A1]


def test_unknown_flight_and_verdict_are_usage_errors_with_a_hint(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError) as exc:
        list_clips(dataset, ["b.mp3"])
    assert "b.mp4" in (exc.value.hint or "")
    with pytest.raises(UsageError):
        list_clips(dataset, qc="maybe")
    with pytest.raises(DatasetError):
        list_clips(tmp_path / "nowhere")


# ---- command -----------------------------------------------------------------------------------------------
def invoke(*args: str):
    return CliRunner().invoke(app, ["clips", *args], env={"COLUMNS": "80", "NO_COLOR": "1"})


def test_json_is_one_array_equal_to_the_library_listing(dataset: Path) -> None:
    result = invoke("--dataset", str(dataset), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data == [r.as_dict() for r in list_clips(dataset)]
    assert data[0]["source"] == MARKUP_NAME  # verbatim, brackets and accents included
    assert "\x1b[" not in result.stdout


def test_table_fits_80_columns_and_prints_user_text_verbatim(dataset: Path) -> None:
    result = invoke("--dataset", str(dataset))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert MARKUP_NAME in result.stdout  # not swallowed as a [bold] tag
    for cid in (A1, A2, B1, IMPORTED):
        assert cid in result.stdout  # whole ids, not cut with an ellipsis
    a2 = next(line for line in lines if A2 in line)
    assert "5.00-10.00" in a2 and "reject" in a2 and "0/0" in a2
    a1 = next(line for line in lines if A1 in line)
    assert "1/2" in a1 and "train" in a1
    assert "4 clip(s): 3 pass QC, 2 with an accepted caption" in result.stdout


@pytest.mark.boundary
def test_qc_filter_and_errors_through_the_command(dataset: Path, tmp_path: Path) -> None:
    result = invoke("--dataset", str(dataset), "--qc", "reject", "--json")
    assert [c["clip_id"] for c in json.loads(result.stdout)] == [A2]
    bad = invoke("--dataset", str(dataset), "--flight", "nope.mp4")
    assert bad.exit_code == 2
    assert invoke("--dataset", str(dataset), "--qc", "maybe").exit_code == 2
    assert invoke("--dataset", str(tmp_path / "nowhere")).exit_code == 4
    empty = invoke("--dataset", str(dataset), "--flight", "b.mp4", "--qc", "reject")
    assert empty.exit_code == 0 and "no clips match" in empty.stdout


def test_ingest_help_states_the_tail_rule() -> None:
    result = CliRunner().invoke(app, ["ingest", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    text = " ".join(result.stdout.split())
    assert "shorter than half of --target" in text
    assert "within --max" in text and "at least --min" in text


def _small_video(path: Path, seconds: float = 2.0, fps: int = 15) -> Path:
    """A sharp, slowly panning 160x96 H.264 clip: enough for ingest to catalogue a few windows."""
    import av
    import numpy as np

    rng = np.random.default_rng(3)
    world = rng.integers(0, 256, (96, 160 + 2 * round(seconds * fps), 3), dtype=np.uint8)
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        for i in range(round(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(world[:, 2 * i : 2 * i + 160]), format="rgb24"
            )
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def test_ingest_no_cut_reports_clips_catalogued_not_written(tmp_path: Path) -> None:
    video = _small_video(tmp_path / "flight.mp4")
    args = ["ingest", str(video), "--dataset", str(tmp_path / "ds"), "--workers", "0"]
    args += ["--target", "1", "--min", "0.5", "--max", "2", "--no-cut"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    assert "2 clip(s) catalogued" in result.stdout and "written" not in result.stdout
    assert not list((tmp_path / "ds").rglob("*.mp4"))
    listed = list_clips(tmp_path / "ds")
    assert [(r.start_s, r.end_s) for r in listed] == [(0.0, 1.0), (1.0, 2.0)]
    assert all(r.clip_path is None for r in listed)
