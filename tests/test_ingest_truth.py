"""Ingest tells the truth on an edit with cuts and fades: no clip holds a transition frame, every clip's
telemetry describes its own place, impossible values are left out and flagged, a sidecar that does not belong
to its video is a flight warning and is not attached (unless trusted), GoPro GPMF telemetry is read.

Expectations come from the generator's truth (transition frames, each shot's home point) and from the faults
the tests inject themselves, never from ingest's own output.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from dvtr_data.dataset import Dataset
from dvtr_data.ingest import IngestConfig, ingest
from dvtr_data.ingest.windows import WindowRule
from dvtr_data.synth.flights import render_flight
from dvtr_data.synth.sidecar import inject_glitch
from dvtr_data.telemetry import TelemetryLimits, haversine_m, parse_srt, write_dji_fly_srt
from dvtr_data.testing.flights import EDIT

KARMA = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "videos" / "gopro_gpmf-parser" / "karma.mp4"

SHORT = WindowRule(target_s=1.0, min_s=0.5, max_s=2.0)
CFG = IngestConfig(window=SHORT, cut=False)


@pytest.fixture(scope="module")
def edit(tmp_path_factory) -> Path:
    return render_flight(EDIT, tmp_path_factory.mktemp("edit"))


def truth_of(video: Path) -> dict:
    return json.loads(video.with_name(video.stem + ".truth.json").read_text())


def copy_flight(video: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(video, dest / video.name)
    return dest / video.name


def ingest_one(video: Path, ds_dir: Path, cfg: IngestConfig = CFG) -> tuple[dict, list[dict]]:
    report = ingest([video], ds_dir, cfg, workers=1)
    assert report.ok, report.errors
    ds = Dataset(ds_dir)
    (flight,) = ds.read_table("flights").to_pylist()
    return flight, sorted(ds.read_table("clips").to_pylist(), key=lambda c: c["start_frame"])


def own_shot(truth: dict, clip: dict) -> dict:
    mid = (clip["start_frame"] + clip["end_frame"]) // 2
    return next(s for s in truth["shots"] if s["start_frame"] <= mid < s["end_frame"])


@pytest.fixture(scope="module")
def clean(edit, tmp_path_factory):
    return ingest_one(edit, tmp_path_factory.mktemp("ds") / "dataset")


def test_no_clip_holds_a_transition_frame_and_shots_end_with_their_transition(edit, clean):
    truth = truth_of(edit)
    flight, clips = clean
    assert clips
    for clip in clips:
        for f in truth["fades"]:  # detection may be off by up to 3 frames at an edge, never more
            assert clip["end_frame"] <= f["start"] + 3 or clip["start_frame"] >= f["end"] - 3, (clip["clip_id"], f)
        shot = own_shot(truth, clip)  # and never spans two shots
        assert clip["start_frame"] >= shot["start_frame"] - 3 and clip["end_frame"] <= shot["end_frame"] + 3
    reasons = [c["split_reason"] for c in clips]
    for kind in ("transition:dissolve", "transition:fade_black", "transition:fade_white"):
        assert reasons.count(kind) == 1, reasons
    assert reasons.count("cut") == 1 and reasons[-1] == "end"


def test_every_clip_centre_is_its_own_place_and_no_speed_is_impossible(edit, clean):
    truth = truth_of(edit)
    flight, clips = clean
    homes = [(s["home"]["lat"], s["home"]["lon"]) for s in truth["shots"]]
    # the shots' places are hundreds of kilometres apart: a centre "between two places" is far from both
    assert min(haversine_m(a[0], a[1], b[0], b[1]) for i, a in enumerate(homes) for b in homes[i + 1:]) > 50_000
    for clip in clips:
        home = own_shot(truth, clip)["home"]
        assert clip["lat"] is not None
        # a 2.4 s shot at 12 m/s stays within a few hundred metres of where its world starts
        assert haversine_m(clip["lat"], clip["lon"], home["lat"], home["lon"]) < 2_000, clip["clip_id"]
        assert clip["speed_mps"] is None or 0 <= clip["speed_mps"] <= 50.0
        assert not any(r.startswith("telemetry:") for r in clip["qc_reasons"]), clip["qc_reasons"]
    assert flight["warnings"] == []  # a clean generated flight: nothing to warn about


def test_glitches_are_left_out_flagged_in_qc_and_counted_once_per_kind(edit, clean, tmp_path):
    truth = truth_of(edit)
    video = copy_flight(edit, tmp_path / "in")
    tel = parse_srt(edit.with_suffix(".SRT"))
    cues = list(tel.cues)
    inject_glitch(cues, "jump_100km", 10)  # inside the first clip [0, 25)
    inject_glitch(cues, "altitude_spike", 140)  # inside a clip of the third shot
    write_dji_fly_srt(cues, float(EDIT.fps), video.with_suffix(".SRT"))
    flight, clips = ingest_one(video, tmp_path / "ds")
    _, before = clean
    assert [c["clip_id"] for c in clips] == [c["clip_id"] for c in before]
    telemetry_lines = [w for w in flight["warnings"] if w.startswith("telemetry:")]
    assert len(telemetry_lines) == 2 and len(flight["warnings"]) == 2, flight["warnings"]
    first = clips[0]
    assert first["start_frame"] <= 10 < first["end_frame"]
    assert "telemetry:position_jump" in first["qc_reasons"]
    home = own_shot(truth, first)["home"]
    assert haversine_m(first["lat"], first["lon"], home["lat"], home["lon"]) < 2_000  # not 100 km off
    spiked = next(c for c in clips if c["start_frame"] <= 140 < c["end_frame"])
    assert "telemetry:altitude_spike" in spiked["qc_reasons"] and spiked["altitude_m"] < 200
    # the flags inform, they do not reject: verdicts are the picture's, as without the glitches
    assert [c["qc_verdict"] for c in clips] == [c["qc_verdict"] for c in before]


def _wrong_sidecars(edit: Path) -> dict[str, list]:
    """The bad-sidecar matrix: each a way a sidecar fails to belong to its video."""
    cues = list(parse_srt(edit.with_suffix(".SRT")).cues)
    step = 1.0 / float(EDIT.fps)
    truncated = cues[: len(cues) // 2]
    offset = [replace(c, start_s=c.start_s + 3.0, end_s=c.end_s + 3.0) for c in cues]
    n = len(cues)
    longer = [replace(c, start_s=c.start_s + r * n * step, end_s=c.end_s + r * n * step, frame=c.frame + r * n,
                      index=c.index + r * n) for r in range(20) for c in cues]
    return {"truncated": truncated, "offset": offset, "another flight (20x longer)": longer}


@pytest.mark.parametrize("case", ["truncated", "offset", "another flight (20x longer)"])
def test_a_sidecar_that_does_not_match_is_one_warning_and_not_attached_unless_trusted(edit, tmp_path, case):
    video = copy_flight(edit, tmp_path / "in")
    write_dji_fly_srt(_wrong_sidecars(edit)[case], float(EDIT.fps), video.with_suffix(".SRT"))
    flight, clips = ingest_one(video, tmp_path / "ds")
    assert len(flight["warnings"]) == 1, flight["warnings"]
    line = flight["warnings"][0]
    assert "does not match its video" in line and "--trust-sidecar" in line and "\n" not in line
    assert all(c["lat"] is None and c["altitude_m"] is None for c in clips)
    assert flight["telemetry_cues"] is None

    trusted, clips = ingest_one(video, tmp_path / "ds_trusted", replace(CFG, trust_sidecar=True))
    assert any("attached anyway" in w for w in trusted["warnings"])
    assert any(c["lat"] is not None for c in clips)


def test_tolerance_is_settable_in_the_config(edit, tmp_path):
    video = copy_flight(edit, tmp_path / "in")
    cues = list(parse_srt(edit.with_suffix(".SRT")).cues)
    write_dji_fly_srt(cues[:-40], float(EDIT.fps), video.with_suffix(".SRT"))  # 1.6 s short of a 12 s video
    flight, clips = ingest_one(video, tmp_path / "ds")
    assert len(flight["warnings"]) == 1 and "does not match" in flight["warnings"][0]
    loose = replace(CFG, telemetry=TelemetryLimits(sidecar_tolerance_s=2.0))
    flight, clips = ingest_one(video, tmp_path / "ds_loose", loose)
    assert flight["warnings"] == [] and clips[0]["lat"] is not None


@pytest.mark.skipif(not KARMA.exists(), reason="real sample data absent (../shared/realdata)")
def test_gopro_karma_gets_positions_from_its_gpmf_track(tmp_path):
    flight, clips = ingest_one(KARMA, tmp_path / "ds")
    assert flight["telemetry_cues"] and flight["telemetry_cues"] > 0
    assert clips and all(c["lat"] is not None for c in clips)
    for c in clips:  # the Karma flew along a bluff near Carlsbad, California (GoPro's sample)
        assert 33.1250 < c["lat"] < 33.1265 and -117.3318 < c["lon"] < -117.3308
        assert c["speed_mps"] is None or c["speed_mps"] < 50
    assert not math.isnan(clips[0]["lat"])


def test_cli_trust_sidecar_option_attaches_a_mismatched_sidecar(edit, tmp_path):
    from typer.testing import CliRunner

    from dvtr_data.cli import app

    video = copy_flight(edit, tmp_path / "in")
    write_dji_fly_srt(_wrong_sidecars(edit)["truncated"], float(EDIT.fps), video.with_suffix(".SRT"))
    args = ["ingest", str(video.parent), "--dataset", str(tmp_path / "ds"), "--no-cut", "--workers", "1"]
    result = CliRunner().invoke(app, [*args, "--trust-sidecar"])
    assert result.exit_code == 0, result.output
    clips = Dataset(tmp_path / "ds").read_table("clips").to_pylist()
    assert any(c["lat"] is not None for c in clips)


def test_the_cards_map_shows_only_real_places(edit, clean, tmp_path):
    from dvtr_data.card.stats import dataset_stats

    truth = truth_of(edit)
    flight, clips = clean
    ds_dir = tmp_path / "ds"
    ingest_one(edit, ds_dir)
    points = dataset_stats(Dataset(ds_dir))["locations"]
    assert len(points) == len(clips)
    homes = [(s["home"]["lat"], s["home"]["lon"]) for s in truth["shots"]]
    for lat, lon, _ in points:  # every plotted point is within 2 km of a place the edit really shows
        assert min(haversine_m(lat, lon, h[0], h[1]) for h in homes) < 2_000
