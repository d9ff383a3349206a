"""`dvtr-data ingest` against bad inputs, hung and crashing workers, and a run killed at arbitrary moments.

The matrix (`badinputs.make_matrix`: every bad file plus two good flights, one folder) is ingested ONCE through
the CLI, in-process, with worker processes that segfault or hang for two named files; the tests below then read
that one run's tables, stderr and run log. A second run (the library call) checks resume: no duplicate rows, good
flights skipped. Kill-and-resume runs the installed CLI as a subprocess and SIGKILLs its process group.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from typer.testing import CliRunner

import dvtr_data.ingest.stage as ingest_stage
from dvtr_data.cli import app
from dvtr_data.dataset import Dataset
from dvtr_data.executor import ProcessExecutor
from dvtr_data.ingest import IngestReport, ingest
from dvtr_data.testing import badinputs

STALL_S = 6.0  # the matrix run's stall timeout: the hung worker is stopped after this long

# case -> words its one-line error must hold (case-insensitive)
ERRORS: dict[str, tuple[str, ...]] = {
    "empty": ("empty file",),
    "empty_again": ("empty file",),
    "text": ("not a readable video",),
    "truncated_moov_at_end": ("not a readable video",),
    "undecodable_codec": ("unsupported video codec",),
    "audio_only": ("no video stream", "audio"),
    "one_frame": ("only 1 decodable frame", "too short"),
    "broken_symlink": ("cannot read the file", "no such file"),
    "worker_segfault": ("worker process died",),
    "decoder_hang": ("no progress", "hung decoder"),
    "unreadable": ("cannot read the file", "not a directory"),
}
# case -> words one of its warnings must hold: the flight is ok, with clips
WARNINGS: dict[str, tuple[str, ...]] = {
    "vfr": ("variable frame rate",),
    "rotated": ("rotated 90",),
    "garbage_sidecar": ("garbage_sidecar.SRT",),
    "truncated_faststart": ("truncated",),
    "truncated_fragmented": ("truncated",),
}
CLEAN = ("good_a", "good_b", "non_ascii_path")  # ok, no warning (no sidecar is fine)
TIMESTAMP_COLUMNS = ("ingested_at",)

slow = pytest.mark.slow


# ----------------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------------
def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def rows_by_path(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(row["source_path"], []).append(row)
    return out


def decode_clip(path: Path) -> list[np.ndarray]:
    """Every frame of a clip file as RGB arrays (display orientation is what the file stores)."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def without(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k not in columns} for row in rows]


def table_rows(dataset: Path, name: str, key: str) -> list[dict[str, Any]]:
    rows = Dataset(dataset).read_table(name).to_pylist()
    return sorted(rows, key=lambda r: r[key])


@dataclass
class MatrixRun:
    cases: dict[str, Path]
    folder: Path
    dataset: Path
    exit_code: int
    stdout: str
    stderr: str
    flights: list[dict[str, Any]]
    clips: list[dict[str, Any]]
    events: list[dict[str, Any]]
    rerun: IngestReport
    rerun_flights: list[dict[str, Any]]
    rerun_clips: list[dict[str, Any]]
    rerun_events: list[dict[str, Any]]

    def row(self, case: str) -> dict[str, Any]:
        """The one flight row of a case (matched on the resolved path, as discovery records it)."""
        rows = rows_by_path(self.flights).get(str(self.cases[case].absolute()), [])
        assert len(rows) == 1, f"{case}: expected one flight row for {self.cases[case]}, got {len(rows)}"
        return rows[0]

    def clips_of(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        return [c for c in self.clips if c["flight_id"] == row["flight_id"]]


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> MatrixRun:
    """Ingest the whole matrix once through the CLI (in-process), then once more through the library."""
    root = tmp_path_factory.mktemp("matrix")
    folder = root / "flights"
    cases = badinputs.make_matrix(folder)
    dataset = root / "dataset"

    def faulty(workers: int | None, stall_timeout: float = 120.0) -> ProcessExecutor:
        return badinputs.FaultyExecutor(workers, stall_timeout)

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("DVTR_DEBUG", raising=False)  # what users see: one line per failure (see conftest.py)
        mp.setattr(ingest_stage, "make_executor", faulty)
        result = CliRunner().invoke(
            app, ["ingest", str(folder), "--dataset", str(dataset), "--workers", "2", "--stall-timeout", str(STALL_S)]
        )
    logs = sorted((dataset / "logs").glob("*.jsonl"))
    assert len(logs) == 1, logs
    flights = Dataset(dataset).read_table("flights").to_pylist()
    clips = Dataset(dataset).read_table("clips").to_pylist()

    rerun = ingest([folder], dataset, workers=2, executor=badinputs.FaultyExecutor(2, STALL_S))
    assert rerun.log_path is not None and rerun.log_path != logs[0]
    return MatrixRun(
        cases=cases,
        folder=folder,
        dataset=dataset,
        exit_code=result.exit_code,
        stdout=result.stdout,
        stderr=result.stderr,
        flights=flights,
        clips=clips,
        events=read_events(logs[0]),
        rerun=rerun,
        rerun_flights=Dataset(dataset).read_table("flights").to_pylist(),
        rerun_clips=Dataset(dataset).read_table("clips").to_pylist(),
        rerun_events=read_events(rerun.log_path),
    )


# ----------------------------------------------------------------------------------------------------------------
# the matrix: one run over every bad input
# ----------------------------------------------------------------------------------------------------------------
def test_the_unreadable_case_is_unreadable_for_root_too(tmp_path: Path) -> None:
    """The case must stay meaningful whoever runs the suite (a chmod-000 file is readable by root)."""
    path = badinputs.unreadable(tmp_path / "flights" / "unreadable.mp4", seed=14)
    with pytest.raises(NotADirectoryError):
        path.open("rb")
    assert not os.access(path, os.R_OK)


@slow
def test_every_input_gives_exactly_one_flight_row(matrix: MatrixRun) -> None:
    assert set(matrix.cases) == set(ERRORS) | set(WARNINGS) | set(CLEAN)
    by_path = rows_by_path(matrix.flights)
    expected = {str(p.absolute()): case for case, p in matrix.cases.items()}
    missing = sorted(case for path, case in expected.items() if path not in by_path)
    extra = sorted(set(by_path) - set(expected))
    doubled = sorted(expected.get(p, p) for p, rows in by_path.items() if len(rows) > 1)
    assert not (missing or extra or doubled), f"no row: {missing}; unexpected: {extra}; doubled: {doubled}"
    assert len({r["flight_id"] for r in matrix.flights}) == len(matrix.flights)


@slow
@pytest.mark.parametrize("case", list(ERRORS))
def test_bad_input_is_one_error_row(matrix: MatrixRun, case: str) -> None:
    row = matrix.row(case)
    error = row["error"] or ""
    assert row["status"] == "error", f"{case}: status {row['status']!r}, warnings {row['warnings']}"
    assert "\n" not in error and error.strip() == error
    assert Path(row["source_path"]).name in error, f"{case}: the error does not name the file: {error!r}"
    for word in ERRORS[case]:
        assert word.lower() in error.lower(), f"{case}: {word!r} not in {error!r}"
    assert matrix.clips_of(row) == []


@slow
@pytest.mark.parametrize("case", list(WARNINGS))
def test_questionable_input_is_ok_with_a_warning(matrix: MatrixRun, case: str) -> None:
    row = matrix.row(case)
    assert row["status"] == "ok", f"{case}: {row['error']}"
    warnings = row["warnings"] or []
    assert any(all(w.lower() in text.lower() for w in WARNINGS[case]) for text in warnings), (
        f"{case}: no warning with {WARNINGS[case]} in {warnings}"
    )
    clips = matrix.clips_of(row)
    assert clips and all(c["status"] == "ok" for c in clips)
    assert all((matrix.dataset / c["clip_path"]).is_file() for c in clips if c["qc_verdict"] == "pass")


@slow
@pytest.mark.parametrize("case", CLEAN)
def test_good_flight_completes_with_clips(matrix: MatrixRun, case: str) -> None:
    row = matrix.row(case)
    assert row["status"] == "ok" and row["error"] is None
    assert row["warnings"] == [], row["warnings"]  # no sidecar is not worth a warning
    assert row["telemetry_path"] is None
    assert row["file_name"] == matrix.cases[case].name
    assert (row["width"], row["height"], row["n_frames"]) == (320, 180, 90)
    clips = matrix.clips_of(row)
    assert clips and all(c["status"] == "ok" and c["qc_verdict"] == "pass" for c in clips), clips
    for clip in clips:
        frames = decode_clip(matrix.dataset / clip["clip_path"])
        assert len(frames) == clip["n_frames"] == clip["end_frame"] - clip["start_frame"]
        assert frames[0].shape == (clip["height"], clip["width"], 3)
        assert all((matrix.dataset / k).is_file() for k in clip["keyframe_paths"])


@slow
def test_rotated_phone_video_is_cut_upright(matrix: MatrixRun) -> None:
    row = matrix.row("rotated")
    assert row["rotation"] == 90
    assert (row["width"], row["height"]) == (180, 320)  # display size
    clips = matrix.clips_of(row)
    assert clips
    mark = badinputs.UPRIGHT_MARK
    for clip in clips:
        assert clip["width"] < clip["height"], clip
        frames = decode_clip(matrix.dataset / clip["clip_path"])
        h, w = frames[0].shape[:2]
        assert w < h and (w, h) == (clip["width"], clip["height"])
        top = float(np.mean([f[1 : mark - 1].mean() for f in frames]))
        bottom = float(np.mean([f[h - mark + 1 : h - 1].mean() for f in frames]))
        assert top > 200 and bottom < 60, f"clip is not upright: top band {top:.0f}, bottom band {bottom:.0f}"


@slow
@pytest.mark.parametrize("case", ["truncated_faststart", "truncated_fragmented"])
def test_truncated_but_decodable_keeps_the_frames_before_the_cut(matrix: MatrixRun, case: str) -> None:
    row = matrix.row(case)
    full = 5 * badinputs.FPS  # the file was 5 s before the cut
    assert row["status"] == "ok"
    assert full * badinputs.TRUNCATE_AT * 0.8 < row["n_frames"] < full * badinputs.TRUNCATE_AT * 1.1
    for clip in matrix.clips_of(row):
        assert clip["end_frame"] <= row["n_frames"]
        assert len(decode_clip(matrix.dataset / clip["clip_path"])) == clip["n_frames"]


@slow
def test_variable_frame_rate_times_follow_the_source(matrix: MatrixRun) -> None:
    row = matrix.row("vfr")
    assert row["fps_variable"] is True
    clips = sorted(matrix.clips_of(row), key=lambda c: c["start_frame"])
    # times come from the jittered pts: about 42 ms a frame on average, not the nominal 33 ms
    assert clips[-1]["end_s"] == pytest.approx(row["duration_s"])
    assert row["duration_s"] > 90 / 30 * 1.1
    for clip in clips:
        assert len(decode_clip(matrix.dataset / clip["clip_path"])) == clip["end_frame"] - clip["start_frame"]


@slow
def test_paths_with_spaces_accents_and_uppercase_extension(matrix: MatrixRun) -> None:
    row = matrix.row("non_ascii_path")
    assert row["file_name"] == "Überflug 1.MP4"
    assert "vols d'été" in row["source_path"]


@slow
def test_garbage_sidecar_is_paired_and_only_warned_about(matrix: MatrixRun) -> None:
    row = matrix.row("garbage_sidecar")
    assert row["status"] == "ok"
    assert row["telemetry_path"] == str(matrix.cases["garbage_sidecar"].absolute().with_suffix(".SRT"))
    assert all(c["lat"] is None for c in matrix.clips_of(row))


@slow
def test_a_folder_named_like_a_video_is_not_a_flight(matrix: MatrixRun) -> None:
    assert not [r for r in matrix.flights if "a folder.mp4" in r["source_path"]]
    assert "a folder.mp4" not in matrix.stderr


@slow
@pytest.mark.boundary
def test_cli_exits_1_with_one_stderr_line_per_failure(matrix: MatrixRun) -> None:
    assert matrix.exit_code == 1, matrix.stdout + matrix.stderr
    assert "Traceback" not in matrix.stderr and "internal error" not in matrix.stderr
    failed = [line for line in matrix.stderr.splitlines() if line.startswith("failed:")]
    errors = [r for r in matrix.flights if r["status"] == "error"]
    for row in errors:
        mine = [line for line in failed if row["source_path"] in line]
        assert len(mine) == 1, f"{row['file_name']}: {len(mine)} 'failed:' lines on stderr: {mine}"
    assert len(failed) == len(errors)


@slow
def test_cli_summary_counts_match_the_table(matrix: MatrixRun) -> None:
    ok = len([r for r in matrix.flights if r["status"] == "ok"])
    failed = len([r for r in matrix.flights if r["status"] == "error"])
    summary = " ".join(matrix.stdout.split())
    assert f"ingested {ok} flight(s)" in summary and f"{failed} failed" in summary, summary


@slow
def test_run_log_has_one_error_event_per_failed_flight(matrix: MatrixRun) -> None:
    events = matrix.events
    assert events[0]["event"] == "start" and events[-1]["event"] == "summary"
    errors = [e for e in events if e["event"] == "error"]
    failed = [r for r in matrix.flights if r["status"] == "error"]
    assert sorted(e["path"] for e in errors) == sorted(r["source_path"] for r in failed)
    assert {e["path"]: e["error"] for e in errors} == {r["source_path"]: r["error"] for r in failed}
    assert events[-1]["flights_failed"] == len(failed)


@slow
def test_rerun_skips_good_flights_and_duplicates_nothing(matrix: MatrixRun) -> None:
    ok_before = {r["source_path"]: r for r in matrix.flights if r["status"] == "ok"}
    report = matrix.rerun
    assert report.flights_skipped == len(ok_before)
    skipped = {e["path"] for e in matrix.rerun_events if e["event"] == "skip"}
    assert skipped == set(ok_before)
    assert not [e for e in matrix.rerun_events if e["event"] == "done"]

    flights, clips = matrix.rerun_flights, matrix.rerun_clips
    assert len(flights) == len(matrix.flights)
    assert len({r["flight_id"] for r in flights}) == len(flights)
    assert len({r["source_path"] for r in flights}) == len(flights)
    assert len({c["clip_id"] for c in clips}) == len(clips)

    def comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(without(rows, TIMESTAMP_COLUMNS), key=lambda r: r["flight_id"])

    assert comparable(flights) == comparable(matrix.flights)
    assert sorted(c["clip_id"] for c in clips) == sorted(c["clip_id"] for c in matrix.clips)
    assert report.flights_failed == len([r for r in flights if r["status"] == "error"])
    assert len(report.errors) == report.flights_failed


# ----------------------------------------------------------------------------------------------------------------
# the watchdog and crashing workers, on the executor itself
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_stall_timeout_stops_a_hung_worker_and_the_rest_complete() -> None:
    outcomes = list(ProcessExecutor(workers=2, stall_timeout=1.5).run(badinputs.sleepy, [0, 1, "hang", 3, 4]))
    assert sorted(o.index for o in outcomes) == [0, 1, 2, 3, 4]
    failed = [o for o in outcomes if o.error is not None]
    # stopped by the watchdog (not waited for: the hang sleeps an hour), and only the hang
    assert [(o.item, o.status) for o in failed] == [("hang", "stalled")]
    assert "no progress for 1.5 s" in failed[0].error and "\n" not in failed[0].error
    assert sorted(o.record for o in outcomes if o.error is None) == [0, 1, 3, 4]


@pytest.mark.timeout(60)
def test_a_worker_that_dies_hard_is_one_error() -> None:
    outcomes = list(ProcessExecutor(workers=2, stall_timeout=30).run(badinputs.crashy, ["a", "exit", "segfault", "b"]))
    by_item = {o.item: o for o in outcomes}
    assert len(outcomes) == 4
    assert by_item["a"].record == "a" and by_item["b"].record == "b"
    assert by_item["exit"].error == "worker process died (exit code 3)"
    assert by_item["segfault"].error == f"worker process died (exit code {-signal.SIGSEGV})"


# ----------------------------------------------------------------------------------------------------------------
# kill and resume
# ----------------------------------------------------------------------------------------------------------------
KILL_FLIGHTS = 4


def committed_ids(dataset: Path) -> set[str]:
    return {p.name.split(".")[0] for p in (dataset / ".work" / "ingest").glob("*.flight.parquet")}


def clip_tmp_exists(dataset: Path) -> bool:
    return any((dataset / "clips").glob("*/.*.tmp"))


def uncommitted_clip_exists(dataset: Path) -> bool:
    """A finished clip file of a flight that is not committed yet (killed mid-flight, after a clip)."""
    done = committed_ids(dataset)
    return any(p.parent.name not in done for p in (dataset / "clips").glob("*/*.mp4"))


def two_flights_committed(dataset: Path) -> bool:
    return len(committed_ids(dataset)) >= 2


def cli_command(flights: Path, dataset: Path) -> list[str]:
    return [sys.executable, "-m", "dvtr_data.cli", "ingest", str(flights), "--dataset", str(dataset), "--workers", "1"]


def run_and_kill(flights: Path, dataset: Path, when: Callable[[Path], bool]) -> None:
    """Start the CLI, SIGKILL its whole process group (workers included) as soon as ``when(dataset)`` holds.

    No deadline of its own: a run that ends first fails the test, one that never gets there is stopped by the
    test's timeout mark.
    """
    proc = subprocess.Popen(
        cli_command(flights, dataset), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    fired = False
    try:
        while proc.poll() is None:
            if dataset.exists() and when(dataset):
                os.killpg(proc.pid, signal.SIGKILL)
                fired = True
                break
            time.sleep(0.005)
    finally:
        if proc.poll() is None and not fired:
            os.killpg(proc.pid, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=30)
    assert fired and proc.returncode == -signal.SIGKILL, (
        f"the run was not killed at {when.__name__} (exit {proc.returncode}): {stderr.decode()[-2000:]}"
    )


def run_to_end(flights: Path, dataset: Path) -> str:
    proc = subprocess.run(cli_command(flights, dataset), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return " ".join(proc.stdout.split())


def clip_files(dataset: Path) -> list[str]:
    return sorted(str(p.relative_to(dataset)) for p in (dataset / "clips").rglob("*") if p.is_file())


def temp_files(dataset: Path) -> list[str]:
    return sorted(str(p.relative_to(dataset)) for p in dataset.rglob(".*.tmp"))


@pytest.fixture(scope="module")
def kill_flights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four 8 s 640x360 flights (two clips each): slow enough to be killed at chosen moments."""
    folder = tmp_path_factory.mktemp("kill") / "flights"
    for i in range(KILL_FLIGHTS):
        badinputs.good_video(folder / f"flight_{i}.mp4", seed=100 + i, seconds=8.0, size=(640, 360))
    return folder


@slow
@pytest.mark.timeout(400)
def test_killed_runs_resume_to_the_same_dataset(kill_flights: Path, tmp_path: Path) -> None:
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    run_to_end(kill_flights, reference)

    run_and_kill(kill_flights, resumed, clip_tmp_exists)  # in the middle of writing the first clip file
    assert not committed_ids(resumed)
    run_and_kill(kill_flights, resumed, uncommitted_clip_exists)  # a flight half cut: a clip file, no commit
    run_and_kill(kill_flights, resumed, two_flights_committed)  # mid-way: later flights must not be redone
    before = committed_ids(resumed)
    summary = run_to_end(kill_flights, resumed)
    assert f"skipped {len(before)} up to date" in summary and "0 failed" in summary

    for name, key in (("flights", "flight_id"), ("clips", "clip_id")):
        got = without(table_rows(resumed, name, key), TIMESTAMP_COLUMNS)
        want = without(table_rows(reference, name, key), TIMESTAMP_COLUMNS)
        assert got == want, f"{name} differ after kill and resume"
    assert len(table_rows(reference, "flights", "flight_id")) == KILL_FLIGHTS
    assert clip_files(resumed) == clip_files(reference)
    assert temp_files(resumed) == []
    for rel in clip_files(resumed):
        if rel.endswith(".mp4"):
            frames = len(decode_clip(resumed / rel))
            assert frames == len(decode_clip(reference / rel)), rel


@slow
@pytest.mark.timeout(120)
def test_temp_files_left_by_a_killed_write_are_swept(tmp_path: Path) -> None:
    """A SIGKILL inside an atomic write leaves ``.<name>.<random>.tmp`` beside the target; a re-run sweeps it.

    Killing at that instant is luck, so the leftovers of a kill during the final table write (every flight
    committed) and during a part commit are planted the way `atomic_path` names them.
    """
    flights = tmp_path / "flights"
    badinputs.good_video(flights / "one.mp4", seed=200, seconds=3.0)
    dataset = tmp_path / "dataset"
    first = ingest([flights], dataset, workers=1)
    assert first.ok and first.flights_done == 1
    fid = next(iter(committed_ids(dataset)))
    leftovers = (
        dataset / ".flights.parquet.q8z3k1x0.tmp",  # killed while writing the merged table
        dataset / ".work" / "ingest" / f".{fid}.flight.parquet.w2m9d4a7.tmp",  # killed while committing a flight
    )
    for leftover in leftovers:
        leftover.write_bytes(b"PAR1 half written")
    second = ingest([flights], dataset, workers=1)
    assert second.ok and second.flights_skipped == 1
    assert temp_files(dataset) == []
