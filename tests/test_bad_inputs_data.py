"""Hostile and faulty inputs on the data side (issue 11, items 2, 3, 4, 8, 10, 12's ingest options and 15).

One named test per case; each reproduces what the issue saw fail and pins the fixed behaviour:

- item 2: a caption deleted in Label Studio (its annotation, or its whole task) stays as a row but is no longer
  accepted, so it leaves splits and exports; `annotate pull` says how many rows that was;
- item 3: one file under two names is ingested once: one flight row, the first name kept, no re-cut on later runs;
- item 4: a dataset folder inside the input folder (and the target dataset) is never input;
- item 8: a large SRT sidecar is parsed in bounded memory, and parsing it beats the stall watchdog;
- item 10: a full disk during ingest is one line naming it, exit 4;
- item 12: bad ingest options are exit 2 before any flight is decoded;
- item 15: of two video streams the main one (longest, then largest) is used, with a flight warning.

Every video is generated into tmp with PyAV (`dvtr_data.testing.badinputs`); flights run in-process (workers 0).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from typer.testing import CliRunner

import dvtr_data.annotation.pull as pull_module
import dvtr_data.cli.annotate as cli_annotate
import dvtr_data.ingest.stage as ingest_stage
from dvtr_data.annotation.client import Connection, Studio
from dvtr_data.annotation.pull import DELETED_FLAG, pull
from dvtr_data.annotation.push import push
from dvtr_data.cli import app
from dvtr_data.dataset import Dataset
from dvtr_data.ingest import IngestConfig, ingest
from dvtr_data.ingest.cutting import EncoderSettings
from dvtr_data.ingest.windows import WindowRule
from dvtr_data.splits.build import accepted_caption_counts
from dvtr_data.telemetry import dji_srt
from dvtr_data.telemetry.dji_srt import parse_srt
from dvtr_data.testing import badinputs
from dvtr_data.testing.labelstudio import FakeSDK, FakeServer, caption_result, make_dataset

slow = pytest.mark.slow
KEY = "0123456789abcdef0123456789abcdef01234567"
LOCAL = Connection("http://127.0.0.1:8080", KEY, local=True)
# 1-3 s windows, so a 3 s generated flight gives a couple of clips
SHORT = IngestConfig(window=WindowRule(target_s=1.5, min_s=1.0, max_s=3.0))


def studio_for(srv: FakeServer) -> Studio:
    return Studio(LOCAL, sdk=FakeSDK(srv))


def task_of(srv: FakeServer, clip_id: str) -> int:
    return next(t["id"] for t in srv.tasks.values() if t["data"]["clip_id"] == clip_id)


def annotate(srv: FakeServer, clip_id: str, text: str) -> int:
    return FakeSDK(srv).annotations.create(task_of(srv, clip_id), result=caption_result(text))["id"]


def clip_files(dataset: Path) -> dict[str, int]:
    """Every clip file and keyframe with its mtime (ns): a re-cut rewrites them (atomic replace: a new mtime)."""
    return {str(p.relative_to(dataset)): p.stat().st_mtime_ns for p in sorted((dataset / "clips").rglob("*")) if p.is_file()}


def events(report: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(report.log_path).read_text().splitlines()]


# ----------------------------------------------------------------------------------------------------------------
# item 2: deleted in Label Studio means out of splits and exports
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.boundary
def test_caption_deleted_in_labelstudio_is_no_longer_accepted_and_pull_says_so(tmp_path, monkeypatch):
    ds = make_dataset(tmp_path / "ds", n_clips=2)
    srv = FakeServer()
    push(ds.root, LOCAL, studio=studio_for(srv))
    c1, c2 = ds.read_table("clips").column("clip_id").to_pylist()
    annotate(srv, c1, "Three boats float on a calm lake near the shore.")
    gone = annotate(srv, c2, "A truck drives across a long bridge over a river.")
    pull(ds.root, LOCAL, studio=studio_for(srv))
    assert accepted_caption_counts(ds.read_table("captions")) == {c1: 1, c2: 1}

    del srv.annotations[gone]  # the annotator deletes the caption; the task stays
    monkeypatch.setattr(cli_annotate, "_connection", lambda *_: LOCAL)
    monkeypatch.setattr(pull_module, "Studio", lambda conn: studio_for(srv))
    result = CliRunner().invoke(app, ["annotate", "pull", "--dataset", str(ds.root)])
    assert result.exit_code == 0, result.output
    rows = {r["clip_id"]: r for r in ds.read_table("captions").to_pylist()}
    assert len(rows) == 2  # kept: a pull never loses a caption
    assert rows[c2]["flags"] == [DELETED_FLAG] and rows[c2]["accepted"] is False
    assert rows[c1]["accepted"] is True
    assert accepted_caption_counts(ds.read_table("captions")) == {c1: 1}  # out of splits (and exports)
    warning = " ".join(result.stderr.split())
    assert "1 caption row(s) were deleted in Label Studio (1 found by this pull, 1 of them accepted until now)" in warning
    assert "no longer accepted" in warning and "task(s) deleted" not in warning  # no task was deleted

    again = pull(ds.root, LOCAL, studio=studio_for(srv))  # a re-pull finds nothing new, keeps it out
    assert (again.kept_deleted_rows, again.newly_deleted_rows, again.unaccepted_deleted_rows) == (1, 0, 0)
    assert accepted_caption_counts(ds.read_table("captions")) == {c1: 1}


def test_task_deleted_in_labelstudio_takes_its_captions_out_of_splits(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_clips=2)
    srv = FakeServer()
    push(ds.root, LOCAL, studio=studio_for(srv))
    c1, c2 = ds.read_table("clips").column("clip_id").to_pylist()
    annotate(srv, c1, "Three boats float on a calm lake near the shore.")
    annotate(srv, c2, "A truck drives across a long bridge over a river.")
    annotate(srv, c2, "A white truck crosses a bridge above the river water.")
    pull(ds.root, LOCAL, studio=studio_for(srv))
    tid = task_of(srv, c2)
    FakeSDK(srv).tasks.delete(str(tid))
    report = pull(ds.root, LOCAL, studio=studio_for(srv))
    assert report.deleted_tasks == {tid: c2}
    assert (report.kept_deleted_rows, report.newly_deleted_rows, report.unaccepted_deleted_rows) == (2, 2, 2)
    rows = ds.read_table("captions").to_pylist()
    assert [r["accepted"] for r in rows if r["clip_id"] == c2] == [False, False]
    assert accepted_caption_counts(ds.read_table("captions")) == {c1: 1}


# ----------------------------------------------------------------------------------------------------------------
# item 3: one file, two names
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("second_name_from", ["the start", "run 2"])
def test_duplicate_file_under_two_names_is_ingested_once_and_never_recut(tmp_path, second_name_from):
    flights = tmp_path / "flights"
    first = badinputs.good_video(flights / "a_flight.mp4", seed=3)
    second = flights / "b_copy.mp4"
    dataset = tmp_path / "ds"
    if second_name_from == "the start":
        shutil.copyfile(first, second)
    runs = []
    for run in range(3):
        if run == 1 and not second.exists():
            shutil.copyfile(first, second)
        runs.append(ingest([flights], dataset, SHORT, workers=0))
        rows = Dataset(dataset).read_table("flights").to_pylist()
        assert [r["source_path"] for r in rows] == [str(first.absolute())], f"run {run + 1}"
        if run == 0:
            files = clip_files(dataset)
            assert any(name.endswith(".mp4") for name in files)
        assert clip_files(dataset) == files, f"run {run + 1} re-cut the flight"
    for run in runs[1:]:
        assert (run.flights_done, run.flights_skipped, run.duplicates) == (0, 1, 1)
        assert run.warnings == [f"{second.absolute()}: same content as {first.absolute()}; ingested once"]
    assert runs[0].duplicates == (1 if second_name_from == "the start" else 0) and runs[0].flights_done == 1


# ----------------------------------------------------------------------------------------------------------------
# item 4: a dataset inside the input folder
# ----------------------------------------------------------------------------------------------------------------
def test_dataset_folder_inside_the_input_folder_is_never_input(tmp_path):
    flights = tmp_path / "flights"
    badinputs.good_video(flights / "flight.mp4", seed=5)
    other = Dataset(flights / "older-dataset").create()  # a second dataset of ours, with a clip file in it
    badinputs.good_video(other.root / "clips" / "fx" / "fx-0000000-0000030.mp4", seed=6, seconds=1.0)
    dataset = flights / "ds"  # the target lives inside the input folder too
    counts = []
    for _ in range(3):
        report = ingest([flights], dataset, SHORT, workers=0)
        counts.append(len(Dataset(dataset).read_table("flights")))
        notes = [w for w in report.warnings if "dataset folder" in w]
        assert len(notes) == 1 and "never taken as flights" in notes[0]
    assert counts == [1, 1, 1]  # was 2, 4, 6
    assert Dataset(dataset).read_table("flights").column("file_name").to_pylist() == ["flight.mp4"]


# ----------------------------------------------------------------------------------------------------------------
# item 8: a huge SRT sidecar
# ----------------------------------------------------------------------------------------------------------------
def write_fly_srt(path: Path, n: int) -> None:
    """``n`` DJI Fly cues (about 330 bytes each) whose position, height and clock change every cue, written
    fast by hand (the srt library's writer is slow for millions of cues)."""
    t0 = datetime(2024, 5, 1, 12, 0, 0)
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for k in range(n):
            a, b = k * 33, (k + 1) * 33
            ts = t0 + timedelta(milliseconds=a)
            fh.write(
                f"{k + 1}\n00:{a // 60000:02d}:{a // 1000 % 60:02d},{a % 1000:03d} --> "
                f"00:{b // 60000:02d}:{b // 1000 % 60:02d},{b % 1000:03d}\n"
                f'<font size="28">FrameCnt: {k + 1}, DiffTime: 33ms\n'
                f"{ts:%Y-%m-%d %H:%M:%S}.{ts.microsecond // 1000:03d}\n"
                f"[iso: 100] [shutter: 1/500.0] [fnum: 1.7] [ev: 0] [color_md: default] [focal_len: 24.00] "
                f"[latitude: {45 + k * 1e-6:.6f}] [longitude: {7 + k * 1e-6:.6f}] "
                f"[rel_alt: {50 + k % 997 * 0.01:.3f} abs_alt: 300.500] [gb_yaw: 10.0 gb_pitch: -30.0 gb_roll: 0.0] "
                f"[ct: 5500] </font>\n\n"
            )


PEAK_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from dvtr_data.telemetry.dji_srt import parse_srt

    def kib(field):
        with open("/proc/self/status") as fh:
            return int(next(line.split()[1] for line in fh if line.startswith(field + ":")))

    with open("/proc/self/clear_refs", "w") as fh:  # the peak so far (imports) is forgotten: VmHWM = VmRSS
        fh.write("5")
    before = kib("VmRSS")
    tel = parse_srt(sys.argv[1], fps=30.0)
    print(json.dumps({"grew": (kib("VmHWM") - before) * 1024, "cues": len(tel.cues), "layout": tel.layout,
                      "warnings": tel.warnings, "last_lat": tel.cues[-1].lat}))
    """
)


@slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="measures the peak resident size in /proc (Linux)")
def test_huge_srt_sidecar_is_parsed_in_bounded_memory(tmp_path):
    # ~40 MB: over STREAM_ABOVE, so streamed. The whole-file reader held the bytes, the text, the srt library's
    # subtitles and the cues at once (about 10x the file; 9.9x measured on a 10 MB file of this kind).
    n = 120_000
    path = tmp_path / "DJI_0001.SRT"
    write_fly_srt(path, n)
    size = path.stat().st_size
    assert size > dji_srt.STREAM_ABOVE
    out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(path)], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    got = json.loads(out.stdout)
    assert (got["cues"], got["layout"], got["warnings"]) == (n, "dji-fly-font", [])
    assert got["last_lat"] == pytest.approx(45 + (n - 1) * 1e-6)
    assert got["grew"] < 2 * size, f"peak grew by {got['grew'] / size:.2f}x the file's size"


def test_streamed_srt_reads_like_the_whole_file_reader(tmp_path, monkeypatch):
    path = tmp_path / "DJI_0002.SRT"
    write_fly_srt(path, 3000)
    with path.open("ab") as fh:  # a damaged tail: undecodable bytes and a cut-off last cue
        fh.write(b"3001\r\n00:01:39,033 --> 00:01:39,066\r\n<font size=\"28\">FrameCnt: 3001 \xff\xfe [latitude: 45.1]")
    whole = parse_srt(path, fps=30.0)
    monkeypatch.setattr(dji_srt, "STREAM_ABOVE", 0)
    beats: list[tuple[int, int]] = []
    streamed = parse_srt(path, fps=30.0, progress=lambda done, total: beats.append((done, total)))
    assert streamed.cues == whole.cues and len(streamed.cues) == 3001
    assert (streamed.layout, streamed.cue_rate_hz, streamed.time_source) == (whole.layout, whole.cue_rate_hz, whole.time_source)
    assert sorted(streamed.warnings) == sorted(whole.warnings)
    assert any("not valid UTF-8: 2 undecodable" in w for w in streamed.warnings)
    assert any("incomplete" in w for w in streamed.warnings)
    size = path.stat().st_size
    assert len(beats) >= 2 and beats[-1] == (size, size)  # progress in bytes, ending at the file's size


def test_parsing_a_sidecar_beats_the_stall_watchdog(tmp_path, monkeypatch):
    """The worker's heartbeat is called while the sidecar is parsed: the parse is progress, not a hung decoder
    (a 565 MB sidecar under --stall-timeout 30 failed its flight). Counted, not timed."""
    video = badinputs.good_video(tmp_path / "DJI_0003.mp4", seed=7, seconds=2.0)
    sidecar = tmp_path / "DJI_0003.SRT"
    write_fly_srt(sidecar, 20_000)  # 2048 cues between beats: about 10 beats
    monkeypatch.setattr(dji_srt, "STREAM_ABOVE", 0)
    beats: list[tuple[int, int]] = []
    job = ingest_stage.FlightJob(str(video), str(sidecar), str(tmp_path / "ds"), SHORT, video.stat().st_size, 0)
    result = ingest_stage.ingest_flight(job, lambda done, total: beats.append((done, total)))
    # 20,000 cues of 1/30 s do not match a 2 s video: a warning, the flight is fine (parsed all the same)
    assert result["flight"]["status"] == "ok"
    assert any("DJI_0003.SRT" in w and "match" in w for w in result["flight"]["warnings"]), result["flight"]["warnings"]
    n = result["flight"]["n_frames"]
    during_parse = [b for b in beats if b == (n, 2 * n)]  # after the scan pass, before the cutting pass
    assert len(during_parse) >= 20_000 // dji_srt._PROGRESS_EVERY


def test_telemetry_work_after_parsing_keeps_the_worker_alive(tmp_path, monkeypatch):
    """The plausibility check and summaries over millions of cues outlast a short --stall-timeout too: while
    they run, a helper thread beats. The stub below returns only once beats arrived while it was running (it
    gives up after a minute, which fails the test): liveness, not speed."""
    video = badinputs.good_video(tmp_path / "DJI_0004.mp4", seed=12, seconds=2.0)
    monkeypatch.setattr(ingest_stage, "KEEP_ALIVE_S", 0.01)
    beats: list[tuple[int, int]] = []
    three = threading.Event()
    seen: dict[str, int] = {}

    def beat(done: int, total: int) -> None:
        beats.append((done, total))
        if len(beats) >= seen.get("from", 10**9) + 3:
            three.set()

    def slow_summaries(*_: Any) -> None:
        seen["from"] = len(beats)
        seen["got"] = three.wait(60.0)
        return None

    monkeypatch.setattr(ingest_stage, "_summaries", slow_summaries)
    job = ingest_stage.FlightJob(str(video), None, str(tmp_path / "ds"), SHORT, video.stat().st_size, 0)
    result = ingest_stage.ingest_flight(job, beat)
    assert result["flight"]["status"] == "ok" and seen["got"] is True
    n = result["flight"]["n_frames"]
    assert beats.count((n, 2 * n)) >= 3  # the keep-alive beats say "scan done, cutting not started"


# ----------------------------------------------------------------------------------------------------------------
# item 10: disk full
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.boundary
def test_disk_full_during_ingest_is_one_line_exit_4(tmp_path, monkeypatch):
    flights = tmp_path / "flights"
    badinputs.good_video(flights / "flight.mp4", seed=8, seconds=2.0)
    dataset = tmp_path / "ds"
    full = {"now": False}
    real_write_parquet, real_log_write = ingest_stage.write_parquet, ingest_stage.RunLog.write

    def write_parquet(path: Path, table: Any) -> None:  # the disk fills up at the first committed part
        full["now"] = True
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    def log_write(self: Any, event: str, **fields: Any) -> None:  # and then the run log cannot write either
        if full["now"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_log_write(self, event, **fields)

    monkeypatch.setattr(ingest_stage, "write_parquet", write_parquet)
    monkeypatch.setattr(ingest_stage.RunLog, "write", log_write)
    result = CliRunner().invoke(app, ["ingest", str(flights), "--dataset", str(dataset), "--workers", "0"])
    assert result.exit_code == 4, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: disk full"), result.stderr
    assert str(dataset / ".work" / "ingest") in " ".join(result.stderr.split())  # names where it could not write
    assert "Traceback" not in result.output and "internal error" not in result.output

    monkeypatch.setattr(ingest_stage, "write_parquet", real_write_parquet)  # space freed: the same command resumes
    monkeypatch.setattr(ingest_stage.RunLog, "write", real_log_write)
    result = CliRunner().invoke(app, ["ingest", str(flights), "--dataset", str(dataset), "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert len(Dataset(dataset).read_table("flights")) == 1


# ----------------------------------------------------------------------------------------------------------------
# item 12: ingest options checked before any work
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.boundary
@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("--crf", "-5", "--crf must be between 0 and 51"),
        ("--crf", "52", "--crf must be between 0 and 51"),
        ("--preset", "nope", "unknown libx264 preset 'nope'"),
        ("--stall-timeout", "-1", "--stall-timeout must be a positive number"),
        ("--stall-timeout", "0", "--stall-timeout must be a positive number"),
        ("--workers", "-1", "--workers must be 0 (in-process) or more"),
        ("--max-height", "8", "--max-height must be 0"),
    ],
)
def test_bad_ingest_option_is_exit_2_before_any_flight_is_decoded(tmp_path, monkeypatch, option, value, words):
    flights = tmp_path / "flights"
    badinputs.good_video(flights / "flight.mp4", seed=9, seconds=1.0)

    def no_decoding(*_: Any, **__: Any) -> None:
        raise AssertionError("a flight was decoded before the options were checked")

    monkeypatch.setattr(ingest_stage, "scan_flight", no_decoding)
    monkeypatch.setattr(ingest_stage, "probe_video", no_decoding)
    dataset = tmp_path / "ds"
    result = CliRunner().invoke(app, ["ingest", str(flights), "--dataset", str(dataset), "--workers", "0", option, value])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and words in lines[0], result.stderr
    assert not dataset.exists()  # nothing was started


def test_encoder_settings_check_accepts_the_edges():
    for ok in (EncoderSettings(crf=0, max_height=0), EncoderSettings(crf=51, preset="placebo", max_height=16)):
        ok.check()
    ingest_stage.check_run_options(None, float("inf"))  # default workers; never stop a flight


# ----------------------------------------------------------------------------------------------------------------
# item 15: two video streams
# ----------------------------------------------------------------------------------------------------------------
def two_stream_video(path: Path) -> Path:
    """A short small stream first (1 s, 160x90, flat grey), then the recording (3 s, 320x180, a textured pan)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as out:
        small = out.add_stream("libx264", rate=badinputs.FPS)
        main = out.add_stream("libx264", rate=badinputs.FPS)
        for stream, (w, h) in ((small, (160, 90)), (main, badinputs.SIZE)):
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.options = {"preset": "ultrafast", "crf": "23"}
        grey = np.full((90, 160, 3), 128, np.uint8)
        pan = badinputs.pan_frames(11, 3 * badinputs.FPS, *badinputs.SIZE)
        for i, rgb in enumerate(pan):
            pairs = [(main, rgb)] + ([(small, grey)] if i < badinputs.FPS else [])
            for stream, picture in pairs:
                frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
                frame.pts, frame.time_base = i, Fraction(1, badinputs.FPS)
                out.mux(stream.encode(frame))
        for stream in (small, main):
            out.mux(stream.encode(None))
    return path


def test_two_video_streams_use_the_main_one_and_say_so(tmp_path):
    video = two_stream_video(tmp_path / "flights" / "two_streams.mp4")
    with av.open(str(video)) as c:  # the fixture is what it claims: the small stream first
        assert [(s.index, s.codec_context.width) for s in c.streams.video] == [(0, 160), (1, 320)]
    dataset = tmp_path / "ds"
    report = ingest([video.parent], dataset, SHORT, workers=0)
    flight = Dataset(dataset).read_table("flights").to_pylist()[0]
    assert flight["status"] == "ok"
    assert (flight["width"], flight["height"], flight["n_frames"]) == (320, 180, 3 * badinputs.FPS)
    assert any("2 video streams" in w and "stream 1, 320x180, 3.0 s" in w for w in flight["warnings"]), flight["warnings"]
    assert any("2 video streams" in w for w in report.warnings)
    clips = [c for c in Dataset(dataset).read_table("clips").to_pylist() if c["clip_path"]]
    assert clips and clips[-1]["end_frame"] > badinputs.FPS  # frames past the small stream's 1 s
    with av.open(str(dataset / clips[0]["clip_path"])) as c:  # the clip file shows the pan, not the grey
        frame = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert frame.shape[:2] == (180, 320) and float(frame.std()) > 20
