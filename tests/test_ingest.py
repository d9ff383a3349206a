"""Ingest on simulated flights whose truth is known: cuts, windows, frame-exact clips, telemetry, resume."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from dvtr_data.cli import app
from dvtr_data.dataset import Dataset
from dvtr_data.ingest import IngestConfig, ingest
from dvtr_data.ingest.probe import probe_video
from dvtr_data.ingest.scan import scan_flight
from dvtr_data.ingest.windows import WindowRule

# Short windows so that the tiny flights' shots (1.6-5 s) yield several clips each.
SHORT = WindowRule(target_s=1.0, min_s=0.5, max_s=2.0)


@pytest.fixture(scope="module")
def flights(tmp_path_factory) -> list[Path]:
    from dvtr_data.synth import generate

    return generate(tmp_path_factory.mktemp("flights"), preset="tiny", seed=0)


@pytest.fixture(scope="module")
def built(flights, tmp_path_factory):
    ds_dir = tmp_path_factory.mktemp("ds") / "dataset"
    report = ingest([flights[0].parent], ds_dir, IngestConfig(window=SHORT), workers=2)
    return report, Dataset(ds_dir)


def truth_of(video: Path) -> dict:
    return json.loads(video.with_name(video.stem + ".truth.json").read_text())


def decode_all(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="gray").astype(np.float32) for f in c.decode(video=0)]


def test_every_hard_cut_is_found_within_two_frames_and_no_false_cut(flights):
    for video in flights:
        truth = truth_of(video)
        probe = probe_video(video)
        scan = scan_flight(video, probe.fps_fraction, probe.n_frames)
        assert scan.n_frames == truth["n_frames"]
        for cut in truth["cuts"]:
            assert any(abs(c - cut) <= 2 for c in scan.cuts), f"{video.name}: cut at {cut} missed (found {scan.cuts})"
        fades = [(f["start"], f["end"]) for f in truth["fades"]]
        for c in scan.cuts:
            near_cut = any(abs(c - cut) <= 2 for cut in truth["cuts"])
            in_fade = any(a - 2 <= c <= b + 2 for a, b in fades)  # a gradual transition may or may not cut
            assert near_cut or in_fade, f"{video.name}: false cut at {c} (truth cuts {truth['cuts']}, fades {fades})"


def test_ingest_of_simulated_flights(built, flights):
    report, ds = built
    assert report.ok, report.errors
    assert report.flights_done == len(flights)
    flights_rows = {Path(f["source_path"]).name: f for f in ds.read_table("flights").to_pylist()}
    clips = ds.read_table("clips").to_pylist()
    assert clips
    fps_tol = {}
    for video in flights:
        truth = truth_of(video)
        row = flights_rows[video.name]
        assert row["n_frames"] == truth["n_frames"]
        assert (row["width"], row["height"]) == (truth["width"], truth["height"])
        assert Fraction(row["fps"]).limit_denominator(1001) == Fraction(truth["fps_num"], truth["fps_den"])
        assert row["telemetry_format"] and row["telemetry_cues"] == truth["n_frames"]  # one DJI cue per frame
        fps_tol[row["flight_id"]] = truth
    for clip in clips:
        truth = fps_tol[clip["flight_id"]]
        fps = truth["fps_num"] / truth["fps_den"]
        n = clip["end_frame"] - clip["start_frame"]
        # window rule: min 0.5 s, max 2 s, inside one true shot (never across a cut)
        assert round(0.5 * fps) <= n <= round(2.0 * fps)
        cuts = truth["cuts"]
        assert not any(clip["start_frame"] < c - 2 and c + 2 < clip["end_frame"] for c in cuts)
        assert clip["start_s"] == pytest.approx(clip["start_frame"] / fps, abs=1e-6)
        # telemetry summary from the sidecar: the simulated home point is a real place
        assert clip["lat"] is not None and -90 <= clip["lat"] <= 90 and clip["altitude_kind"] == "relative"
        assert 20 < clip["altitude_m"] < 200


def test_clip_files_hold_exactly_the_frames_of_their_span(built, flights):
    _, ds = built
    by_id = {f["flight_id"]: Path(f["source_path"]) for f in ds.read_table("flights").to_pylist()}
    clips = [c for c in ds.read_table("clips").to_pylist() if c["clip_path"]]
    assert clips, "no clip file was written"
    sources: dict[str, list[np.ndarray]] = {}
    for clip in clips[:6]:
        src = sources.setdefault(clip["flight_id"], decode_all(by_id[clip["flight_id"]]))
        frames = decode_all(ds.root / clip["clip_path"])
        assert len(frames) == clip["end_frame"] - clip["start_frame"] == clip["n_frames"]
        # the first and last clip frames match their source frames better than the neighbouring ones
        for k, j in ((0, clip["start_frame"]), (len(frames) - 1, clip["end_frame"] - 1)):
            errors = {d: np.abs(frames[k] - src[j + d]).mean() for d in (-1, 0, 1) if 0 <= j + d < len(src)}
            assert min(errors, key=errors.get) == 0, f"{clip['clip_id']} frame {k}: {errors}"
        for key in clip["keyframe_paths"]:
            assert (ds.root / key).stat().st_size > 0


def test_rerun_skips_everything_and_changes_nothing(built, flights):
    report, ds = built
    before = ds.read_table("clips").to_pylist()
    again = ingest([flights[0].parent], ds.root, IngestConfig(window=SHORT), workers=1)
    assert again.flights_skipped == len(flights) and again.flights_done == 0
    assert ds.read_table("clips").to_pylist() == before


def test_changed_settings_reingest_and_remove_stale_clip_files(flights, tmp_path):
    one = flights[2]  # the long uncut flight
    ingest([one], tmp_path / "ds", IngestConfig(window=SHORT), workers=0)
    ds = Dataset(tmp_path / "ds")
    first = {c["clip_id"] for c in ds.read_table("clips").to_pylist()}
    report = ingest([one], tmp_path / "ds", IngestConfig(window=WindowRule(2.0, 1.0, 4.0)), workers=0)
    assert report.flights_done == 1
    second = {c["clip_id"] for c in ds.read_table("clips").to_pylist()}
    assert first != second
    on_disk = {p.stem for p in (ds.root / "clips").rglob("*.mp4")}
    assert on_disk <= second and not (on_disk & (first - second))


def test_no_cut_writes_only_the_catalog(flights, tmp_path):
    report = ingest([flights[2]], tmp_path / "ds", IngestConfig(window=SHORT, cut=False), workers=0)
    assert report.ok
    clips = Dataset(tmp_path / "ds").read_table("clips").to_pylist()
    assert clips and all(c["clip_path"] is None for c in clips)
    assert not (tmp_path / "ds" / "clips").exists() or not list((tmp_path / "ds" / "clips").rglob("*.mp4"))


def test_info_command_reports_the_dataset(built):
    _, ds = built
    result = CliRunner().invoke(app, ["info", "--dataset", str(ds.root)], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    n_clips = ds.read_table("clips").num_rows
    assert f"{n_clips} (" in result.output
    assert "clips with GPS" in result.output
